//! leap-day-2012's rollout: "many clusters were also in the midst of the
//! rollout of a new version of the FC, HA and GA", and the rollout is what
//! made the bug strike at once: each update domain's VMs were restarted on
//! the new guest agent, and on Feb 29 every new guest agent failed to
//! create its transfer certificate.
//!
//! The cluster's VMs start on Feb 28 and run fine. At midnight UTC a
//! rollout of a new package starts (the real walk, fabric-core/src/rollout/),
//! and its first update domain's VMs are restarted into the bug.
//!
//! - As in 2012 (silent guest failures, no classification, and no health
//!   gate to speak of: the walk waits a day for its gate): domain 0's
//!   servers strike out after 75 minutes and go to HI, healing carries
//!   their VMs, and the bug, to other servers, and the HI threshold trips,
//!   which stops the rollout: "the HI threshold stops all internally
//!   initiated software updates".
//! - With Fabric (fail fast, classification, the default gate): the same
//!   cause from domain 0's servers is named a software fault at once, no
//!   server goes to HI, and the gate stops the rollout after its first
//!   domain.

use super::{Line, Phase, line, service};
use crate::World;
use fabric_core::{EventKind, UpdatePlan, Version};
use std::time::{Duration, SystemTime};

/// What a rollout phase showed, beside its [`Outcome`].
pub struct Facts {
    /// When the rollout stopped and why, if it did.
    pub stopped: Option<(Duration, String)>,
    /// Servers the rollout released.
    pub servers_touched: usize,
}

/// Runs one rollout phase on `w`, built by the leap-day scenario (its
/// guests' calendar reaches Feb 29 one hour in).
pub fn phase(mut w: World, fixed: bool, hosts: u32) -> (Phase, Facts) {
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33);
    w.deploy(service("customer", hosts, far)).expect("deploy");
    // Feb 28, 23:00 to midnight: every VM runs.
    w.run_for(Duration::from_secs(3600));
    let start = w.now.mono;
    let now = w.now;
    w.core
        .add_package(
            now,
            super::package("new-fc-ha-ga", "2012.2.29", "2012.2.29", "net-1", "2012.*"),
            false,
            "sim",
        )
        .expect("a compatible package");
    let mut plan = UpdatePlan::new(Version::parse("package", "new-fc-ha-ga").expect("valid"));
    if !fixed {
        // No health gate to speak of: the walk waits a day for it.
        plan.gate_timeout = Some(Duration::from_secs(24 * 3600));
    }
    let seen = w.events.len();
    let events = w.core.start_update(now, plan, "sim").expect("start");
    w.events.extend(events);
    w.run_for(Duration::from_secs(3 * 3600));
    let interesting = |k: EventKind| {
        matches!(
            k,
            EventKind::UpdateStarted
                | EventKind::UpdateProgress
                | EventKind::UpdateStopped
                | EventKind::NodeHumanInvestigate
                | EventKind::ClusterHumanInvestigate
                | EventKind::SoftwareFault
        )
    };
    let timeline: Vec<Line> = w.events[seen..]
        .iter()
        .filter(|e| interesting(e.kind))
        .map(|e| line(e, start))
        .collect();
    let stopped = w.events[seen..]
        .iter()
        .find(|e| e.kind == EventKind::UpdateStopped)
        .map(|e| (e.at.mono - start, e.reason.clone()));
    let servers_touched = w
        .core
        .nodes()
        .filter(|n| {
            n.info
                .software
                .package
                .as_ref()
                .is_some_and(|p| p.as_str() == "new-fc-ha-ga")
        })
        .count();
    let outcome = super::hi_outcome(&w, start, &w.events[seen..]);
    let title = if fixed {
        "with Fabric, mid-rollout: fail fast, classification, and the rollout's health gate"
    } else {
        "as in 2012, mid-rollout: at midnight the walk restarts its first update domain's VMs"
    };
    (
        Phase {
            title: title.into(),
            timeline,
            outcome,
        },
        Facts {
            stopped,
            servers_touched,
        },
    )
}
