//! leap-day-2012 to the end, in one updating cluster: from the trigger at
//! 4:00PM PST to service management restored after 5:23AM, at the
//! postmortem's own times.
//!
//! "Many clusters were also in the midst of the rollout of a new version of
//! the FC, HA and GA. That ensured that the bug would be hit immediately in
//! those clusters". The cluster here is one of those "almost done with
//! their rollouts" (the ones that were "completely repaired"): three update
//! domains of four already run the new package, and at 4:00PM the walk
//! restarts the last domain's VMs on the new guest agent, which has the bug
//! like the old one (the seven clusters that had *just started* theirs are
//! `secondary-outage-2012`).
//!
//! - As in 2012 (silent guest failures, no classification, no health gate
//!   to speak of): the last domain's servers strike out after 3 x 25
//!   minutes and go to HI; the HI threshold trips and stops healing and the
//!   rollout. The operators act at the postmortem's times: service
//!   management off at 6:55PM; at 2:11AM, the fixed guest agent proven in
//!   one production cluster, they repair the servers, resume the cluster
//!   and roll the fix out by update domain, then turn service management
//!   back on.
//! - With Fabric (fail fast, classification, a canary and the rollout's
//!   gate): the cause is named seconds after the trigger, no server leaves
//!   service, the gate stops the rollout after its canary servers, so the
//!   bug takes their VMs and no others, and service management
//!   stays on;
//!   the fix, no sooner (a fix is written by people), goes out at 2:11AM
//!   behind a canary.
//!
//! Both phases carry the "UP" column: customer instances a client could
//! reach, from the modelled hosts (`World::serving`).

use super::{Outcome, Phase, service};
use crate::World;
use fabric_core::{EventKind, Manifest, Switch, Target, UpdatePlan, Version};
use std::time::{Duration, SystemTime};

/// The rollout under way on Feb 28, and the fix of Feb 29.
pub const ROLLOUT: &str = "new-fc-ha-ga";
pub const FIX: &str = "ga-fix";
/// The guest agent the fix brings (the only one without the bug).
pub const FIXED_GA: &str = "2.0.1";

/// Minutes after the 4:00PM trigger at which the operators act, as the
/// postmortem tells it.
const MANAGEMENT_OFF: u64 = 175; // 6:55PM
const FIX_PUSHED: u64 = 611; // 2:11AM
/// The replay runs to 5:30AM PST.
const END: u64 = 810;

/// What one phase showed, beside its [`Outcome`].
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// When the rollout of the buggy package stopped, and why.
    pub rollout_stopped: Option<(Duration, String)>,
    /// When service management went off and came back, if it did.
    pub management_off: Option<Duration>,
    pub management_on: Option<Duration>,
    /// The fewest customer instances up before the fix, and when all were
    /// up again.
    pub fewest_up: usize,
    pub all_up_again: Option<Duration>,
    /// Customer instance-hours lost (instances unreachable x time).
    pub instance_hours_lost: f64,
}

/// The customers' services: a few with several instances, a few with one
/// (the postmortem: "some applications had single VMs offline ... most
/// applications with multiple VMs maintained availability").
fn customers() -> Vec<fabric_core::DeploymentSpec> {
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33);
    [
        ("storefront", 6),
        ("api", 6),
        ("acs", 4),
        ("blog", 1),
        ("crm", 1),
        ("wiki", 1),
        ("forum", 1),
    ]
    .into_iter()
    .map(|(name, n)| service(name, n, far))
    .collect()
}

fn rollout_package() -> Manifest {
    super::package(ROLLOUT, "2.0", "2.0", "net-2", "2.*")
}

fn fix_package() -> Manifest {
    super::package(FIX, "2.0", FIXED_GA, "net-2", "2.*")
}

/// Runs one phase on `w` (20 servers in 4 update domains; the guests'
/// calendar reaches Feb 29 one hour in). `fixed`: with Fabric's ways.
pub fn phase(mut w: World, fixed: bool) -> (Phase, Facts) {
    let instances: usize = customers()
        .iter()
        .map(|d| d.total_instances() as usize)
        .sum();
    for d in customers() {
        w.deploy(d).expect("deploy");
    }
    // The earlier update domains already run the new package.
    let now = w.now;
    w.core
        .add_package(now, rollout_package(), false, "sim")
        .expect("a compatible package");
    let last_domain = w.config.update_domains - 1;
    let guest = w.config.guest.clone();
    for h in w.hosts.iter_mut().filter(|h| h.update_domain < last_domain) {
        h.restart_into(Target::Package(Box::new(rollout_package())), &guest);
    }
    // 3:00 to 4:00PM PST (23:00 to midnight UTC): every VM runs.
    w.run_for(Duration::from_secs(3600));
    let start = w.now.mono;
    let seen = w.events.len();
    let mut facts = Facts::default();

    // 4:00PM: the walk reaches the last update domain.
    let mut plan = UpdatePlan::new(Version::parse("package", ROLLOUT).expect("valid"));
    if fixed {
        // Two servers first, gated: the bug takes their VMs and no others.
        // Two, not one: fault classification needs the same cause from two
        // servers (--software-fault-min-nodes) to call it software; a
        // canary of one strikes out alone and is taken for hardware.
        plan.canary = 2;
    } else {
        // No health gate to speak of: the walk would wait a day for it.
        plan.gate_timeout = Some(Duration::from_secs(24 * 3600));
    }
    let events = w.core.start_update(w.now, plan, "sim").expect("start");
    w.events.extend(events);

    if !fixed {
        w.run_for(minutes(MANAGEMENT_OFF));
        // 6:55PM: "we disabled service management functionality in all
        // clusters worldwide" (fabricctl cluster set management off
        // --clusters ...).
        let events = w.core.set_switch(w.now, Switch::Management, false, "ops");
        w.events.extend(events);
        facts.management_off = Some(w.now.mono - start);
        w.run_for(minutes(FIX_PUSHED - MANAGEMENT_OFF));
    } else {
        w.run_for(minutes(FIX_PUSHED));
    }

    // 2:11AM: the fix, proven in one production cluster, comes here.
    let now = w.now;
    // The stopped rollout ends where it stands.
    if let Ok(events) = w.core.abandon_update(now, "ops") {
        w.events.extend(events);
    }
    let in_hi: Vec<_> = w
        .core
        .nodes()
        .filter(|n| n.state == fabric_core::NodeState::HumanInvestigate)
        .map(|n| n.id.clone())
        .collect();
    for node in &in_hi {
        w.repair(node).expect("repair a server in HI");
    }
    w.resume();
    let now = w.now;
    w.core
        .add_package(now, fix_package(), false, "sim")
        .expect("a compatible fix");
    let mut plan = UpdatePlan::new(Version::parse("package", FIX).expect("valid"));
    if fixed {
        // Canary the fix, as the postmortem's first production cluster did.
        plan.canary = 1;
    }
    let events = w
        .core
        .start_update(w.now, plan, "sim")
        .expect("start the fix");
    w.events.extend(events);
    // Service management comes back once this cluster runs the fix.
    while w.now.mono - start < minutes(END) {
        w.step();
        let done = w.core.rollout().is_some_and(|r| {
            r.plan.package.as_str() == FIX && r.status == fabric_core::RolloutStatus::Succeeded
        });
        if done && facts.management_off.is_some() && facts.management_on.is_none() {
            let events = w.core.set_switch(w.now, Switch::Management, true, "ops");
            w.events.extend(events);
            facts.management_on = Some(w.now.mono - start);
        }
    }

    // What it showed.
    let events = &w.events[seen..];
    facts.rollout_stopped = events
        .iter()
        .find(|e| e.kind == EventKind::UpdateStopped)
        .map(|e| (e.at.mono - start, e.reason.clone()));
    // From the trigger on: what was up then, and every change after.
    let serving: Vec<(Duration, usize)> = std::iter::once((Duration::ZERO, w.serving_at(start)))
        .chain(
            w.serving
                .iter()
                .filter(|(t, _)| *t > start)
                .map(|(t, n)| (*t - start, *n)),
        )
        .collect();
    // The bug's damage: the fix's own walk restarts VMs domain by domain
    // (a brief dip of its own), so only what came before it counts here.
    facts.fewest_up = serving
        .iter()
        .filter(|(t, _)| *t < minutes(FIX_PUSHED))
        .map(|(_, n)| *n)
        .min()
        .unwrap_or(instances);
    facts.all_up_again = serving
        .iter()
        .rev()
        .take_while(|(_, n)| *n == instances)
        .last()
        .map(|(t, _)| *t)
        .filter(|t| !t.is_zero());
    let end = w.now.mono - start;
    facts.instance_hours_lost = serving
        .iter()
        .zip(serving.iter().skip(1).map(|(t, _)| *t).chain([end]))
        .map(|((from, n), to)| (to.saturating_sub(*from)).as_secs_f64() * (instances - n) as f64)
        .sum::<f64>()
        / 3600.0;
    let outcome = Outcome {
        servers_hi: events
            .iter()
            .filter(|e| e.kind == EventKind::NodeHumanInvestigate)
            .count(),
        threshold_tripped: events
            .iter()
            .find(|e| e.kind == EventKind::ClusterHumanInvestigate)
            .map(|e| e.at.mono - start),
        software_fault: events
            .iter()
            .find(|e| e.kind == EventKind::SoftwareFault)
            .map(|e| (e.at.mono - start, e.reason.clone())),
        healed: events
            .iter()
            .filter(|e| e.kind == EventKind::InstanceHealing)
            .count(),
        all_running_after: facts.all_up_again,
        ..Outcome::default()
    };
    let timeline = super::timeline(events, start, &[EventKind::InstanceReinitialized]);
    let title = if fixed {
        "with Fabric, the same cluster: fail fast, fault classification, the rollout's gate, \
         the fix behind a canary"
    } else {
        "as in 2012, to the end: a cluster almost done with its rollout (3 of 4 update domains \
         on the new FC/HA/GA); at 4:00PM PST the walk restarts the last domain's VMs"
    };
    (
        Phase {
            title: title.into(),
            timeline,
            outcome,
            milestones: super::leap_day::milestones(),
            serving,
            instances,
        },
        facts,
    )
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// The lines the summary gives for one phase.
pub fn summary(label: &str, outcome: &Outcome, facts: &Facts, instances: usize) -> Vec<String> {
    let at = |d: Duration| super::leap_day::pst(d);
    let mut lines = vec![format!(
        "{label}: {} servers to HI{}{}; rollout stopped {}",
        outcome.servers_hi,
        outcome
            .threshold_tripped
            .map(|t| format!(", HI threshold at {}", at(t)))
            .unwrap_or_default(),
        outcome
            .software_fault
            .as_ref()
            .map(|(t, _)| format!(", cause named at {}", at(*t)))
            .unwrap_or_default(),
        facts
            .rollout_stopped
            .as_ref()
            .map(|(t, why)| format!("at {} ({})", at(*t), why.split(": ").nth(1).unwrap_or(why)))
            .unwrap_or_else(|| "never".into()),
    )];
    lines.push(format!(
        "{label}: fewest customer instances up before the fix {}/{instances}; {:.1} \
         instance-hours lost; all up again {}; service management {}",
        facts.fewest_up,
        facts.instance_hours_lost,
        facts
            .all_up_again
            .map(|t| format!("at {}", at(t)))
            .unwrap_or_else(|| "never".into()),
        match (facts.management_off, facts.management_on) {
            (Some(off), Some(on)) => format!("off {} to {}", at(off), at(on)),
            (Some(off), None) => format!("off from {}", at(off)),
            _ => "on throughout".into(),
        }
    ));
    lines
}
