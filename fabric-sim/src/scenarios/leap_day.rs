//! `leap-day-2012`: the transfer-certificate bug of Feb 29, 2012.
//!
//! A cluster in the middle of a rollout: every server gets a new VM at
//! 00:00 UTC, and every new guest agent fails to create its transfer
//! certificate (valid-to 2013-02-29 does not exist). First as in 2012: the
//! guest agent exits silently, the host agent waits out its 25-minute
//! timeout three times, reports the server faulty, the controller moves it
//! to Human Investigate and heals its VMs onto other servers, and the HI
//! threshold trips 75 minutes after midnight. Then with Fabric's fixes: the
//! guest agent reports why it failed (fail fast), and the controller sees
//! the same guest-software cause on several servers (fault classification):
//! no server goes to HI, and the common cause is named within minutes.
//!
//! The code that plays each part: guest-agent/src/transfer_cert.rs (the
//! bug, on demand), host-agent/src/vm/record.rs (the strike rule),
//! fabric-core/src/faults.rs (classification),
//! core/lifecycle.rs (the threshold), core/healing.rs.

use super::{Line, Phase, Report, line, service};
use crate::host::GuestModel;
use crate::{SimConfig, World};
use fabric_core::{CoreConfig, EventKind, HiThreshold, NodeState};
use std::time::{Duration, SystemTime};

/// The 2012 host agent's wait for a guest agent.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(25 * 60);
/// 2012-02-29T00:00:00Z.
pub const LEAP_DAY: u64 = 1_330_473_600;
const HOSTS: u32 = 20;

fn world(fixed: bool) -> World {
    World::new(config(fixed))
}

fn config(fixed: bool) -> SimConfig {
    SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(5),
            node_timeout: Duration::from_secs(15),
            hi_threshold: HiThreshold::Percent(25),
            fault_classification: fixed,
            healing_concurrency: 64,
            ..CoreConfig::default()
        },
        hosts: HOSTS,
        capacity: 2,
        step: Duration::from_secs(5),
        guest: GuestModel {
            connect_timeout: GUEST_TIMEOUT,
            clean_vm_strikes: 3,
            leap_day_bug: true,
            fail_fast: fixed,
            agent_version: "2012.2.28".into(),
            ..GuestModel::default()
        },
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(LEAP_DAY),
        ..SimConfig::default()
    }
}

fn phase(fixed: bool, instances: u32, hours: u64) -> Phase {
    let mut w = world(fixed);
    let start = w.now.mono;
    // A rollout: one new VM on every server at midnight.
    w.deploy(service(
        "customer",
        instances,
        SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
    ))
    .expect("deploy");
    w.run_for(Duration::from_secs(hours * 3600));
    let interesting = |k: EventKind| {
        matches!(
            k,
            EventKind::NodeFaultReported
                | EventKind::NodeFaultHeld
                | EventKind::NodeHumanInvestigate
                | EventKind::ClusterHumanInvestigate
                | EventKind::SoftwareFault
                | EventKind::InstanceHealing
        )
    };
    // The first few of each kind tell the story; the rest repeat it.
    let mut shown: std::collections::BTreeMap<&str, usize> = Default::default();
    let mut timeline: Vec<Line> = Vec::new();
    for e in w.events.iter().filter(|e| interesting(e.kind)) {
        let n = shown.entry(e.kind.as_str()).or_default();
        *n += 1;
        if *n <= 3 || e.kind == EventKind::ClusterHumanInvestigate {
            timeline.push(line(e, start));
        }
    }
    let count = |k: EventKind| w.events.iter().filter(|e| e.kind == k).count();
    timeline.push(Line {
        at: w.now.mono - start,
        text: format!(
            "after {hours} hours: {} fault reports, {} instances moved by healing, {} servers in HI, cluster {}",
            count(EventKind::NodeFaultReported),
            count(EventKind::InstanceHealing),
            w.core.nodes().filter(|n| n.state == NodeState::HumanInvestigate).count(),
            w.core.cluster().mode
        ),
    });
    let outcome = super::hi_outcome(&w, start, &w.events);
    Phase {
        title: match (fixed, instances == HOSTS) {
            (true, _) => {
                "with Fabric's improvements: fail fast + fault classification (rollout cluster)"
                    .into()
            }
            (false, true) => {
                "as in 2012, a cluster mid-rollout: a new VM on every server at midnight".into()
            }
            (false, false) => format!(
                "as in 2012, a quiet cluster: {instances} new VMs; healing carries the bug to healthy servers"
            ),
        },
        timeline,
        outcome,
    }
}

/// A cluster whose guests' calendar reaches Feb 29 one hour in: its VMs
/// start on Feb 28 and run; only those started from midnight on fail.
fn rollout_world(fixed: bool) -> World {
    let mut c = config(fixed);
    c.start -= Duration::from_secs(3600);
    c.guest.bug_after = Duration::from_secs(3600);
    World::new(c)
}

pub fn run() -> Report {
    let then = phase(false, HOSTS, 2);
    let quiet = phase(false, 3, 5);
    let now = phase(true, HOSTS, 2);
    let (rollout_then, facts_then) =
        super::leap_day_rollout::phase(rollout_world(false), false, HOSTS);
    let (rollout_now, facts_now) = super::leap_day_rollout::phase(rollout_world(true), true, HOSTS);
    let mut summary = vec![
        "postmortem: bug at 00:00 UTC Feb 29; HI threshold hit 75 minutes later (3 x 25-minute timeout)"
            .to_owned(),
    ];
    summary.push(match then.outcome.threshold_tripped {
        Some(t) => format!(
            "replayed:   threshold tripped at {} after midnight, {} servers in HI",
            super::clock(t),
            then.outcome.servers_hi
        ),
        None => "replayed:   the threshold did not trip (unexpected)".into(),
    });
    summary.push(format!(
        "replayed:   in a quiet cluster healing moved {} instances and {} servers went to HI{}",
        quiet.outcome.healed,
        quiet.outcome.servers_hi,
        quiet
            .outcome
            .threshold_tripped
            .map(|t| format!("; threshold tripped at {}", super::clock(t)))
            .unwrap_or_default()
    ));
    summary.push(match &now.outcome.software_fault {
        Some((t, cause)) => format!(
            "improved:   {} servers in HI; software fault named at {}: {cause}",
            now.outcome.servers_hi,
            super::clock(*t)
        ),
        None => format!(
            "improved:   {} servers in HI; no software fault classified (unexpected)",
            now.outcome.servers_hi
        ),
    });
    summary.push(match &facts_then.stopped {
        Some((t, why)) => format!(
            "rollout:    as in 2012, {} servers in HI; the rollout stopped at {}: {}",
            rollout_then.outcome.servers_hi,
            super::clock(*t),
            why.split(": ").nth(1).unwrap_or(why)
        ),
        None => "rollout:    as in 2012, the rollout never stopped (unexpected)".into(),
    });
    summary.push(match &facts_now.stopped {
        Some((t, _)) => format!(
            "rollout:    with Fabric, {} servers in HI; its gate stopped it at {} after {} server(s) changed",
            rollout_now.outcome.servers_hi,
            super::clock(*t),
            facts_now.servers_touched
        ),
        None => "rollout:    with Fabric, the rollout never stopped (unexpected)".into(),
    });
    Report {
        name: "leap-day-2012",
        phases: vec![then, quiet, now, rollout_then, rollout_now],
        summary,
    }
}
