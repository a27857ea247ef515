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
    /// Per cluster, when its HI threshold tripped, if it did.
    pub trips: Vec<(&'static str, Option<Duration>)>,
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

/// One cluster of the story: its world, and what is done to it.
struct Cluster {
    name: &'static str,
    w: World,
    /// Mid-rollout at the trigger (else: quiet, a few new VMs at 4:00PM).
    updating: bool,
    /// Index of its first event from the trigger on.
    seen: usize,
    management_off: Option<Duration>,
    management_on: Option<Duration>,
}

/// The 3:00PM set-up of an updating cluster: customers' VMs, and every
/// update domain but the last already on the new package.
fn set_up_updating(w: &mut World) {
    for d in customers() {
        w.deploy(d).expect("deploy");
    }
    let now = w.now;
    w.core
        .add_package(now, rollout_package(), false, "sim")
        .expect("a compatible package");
    let last_domain = w.config.update_domains - 1;
    let guest = w.config.guest.clone();
    for h in w.hosts.iter_mut().filter(|h| h.update_domain < last_domain) {
        h.restart_into(Target::Package(Box::new(rollout_package())), &guest);
    }
}

/// What happens at 4:00PM: the walk reaches the last update domain, or a
/// customer deploys three new VMs into a quiet cluster.
fn trigger(c: &mut Cluster, fixed: bool) {
    let w = &mut c.w;
    if !c.updating {
        let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33);
        w.deploy(service("newapp", 3, far)).expect("deploy");
        return;
    }
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
}

/// 2:11AM: the fix reaches a cluster: a stopped rollout ends where it
/// stands, servers in HI are repaired, the cluster resumes, and the fixed
/// guest agent is rolled out by update domain (behind a canary with
/// Fabric).
fn push_fix(w: &mut World, fixed: bool) {
    let now = w.now;
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
}

/// Runs one phase on two clusters in step, an updating one and a quiet
/// one, built by `world` (20 servers in 4 update domains, an hour before
/// midnight UTC). `fixed`: with Fabric's ways.
pub fn phase(world: impl Fn() -> World, fixed: bool) -> (Phase, Facts) {
    let mut clusters: Vec<Cluster> = [("a", true), ("b", false)]
        .into_iter()
        .map(|(name, updating)| {
            let mut w = world();
            if updating {
                set_up_updating(&mut w);
            } else {
                for d in customers() {
                    w.deploy(d).expect("deploy");
                }
            }
            Cluster {
                name,
                w,
                updating,
                seen: 0,
                management_off: None,
                management_on: None,
            }
        })
        .collect();
    // 3:00 to 4:00PM PST (23:00 to midnight UTC): every VM runs.
    for c in &mut clusters {
        c.w.run_for(Duration::from_secs(3600));
    }
    let start = clusters[0].w.now.mono;
    for c in &mut clusters {
        c.seen = c.w.events.len();
        trigger(c, fixed);
    }
    let mut facts = Facts::default();
    let mut fix_pushed = false;
    while clusters[0].w.now.mono - start < minutes(END) {
        for c in &mut clusters {
            c.w.step();
        }
        let at = clusters[0].w.now.mono - start;
        // 6:55PM: "we disabled service management functionality in all
        // clusters worldwide" (fabricctl cluster set management off
        // --clusters a,b): each cluster acknowledges for itself.
        if !fixed && at >= minutes(MANAGEMENT_OFF) && facts.management_off.is_none() {
            facts.management_off = Some(at);
            for c in &mut clusters {
                let events =
                    c.w.core
                        .set_switch(c.w.now, Switch::Management, false, "ops");
                c.w.events.extend(events);
                c.management_off = Some(at);
            }
        }
        // 2:11AM: "we pushed the fix to all clusters".
        if at >= minutes(FIX_PUSHED) && !fix_pushed {
            fix_pushed = true;
            for c in &mut clusters {
                push_fix(&mut c.w, fixed);
            }
        }
        // "As clusters were updated we restored service management
        // functionality for them."
        for c in &mut clusters {
            let done = c.w.core.rollout().is_some_and(|r| {
                r.plan.package.as_str() == FIX && r.status == fabric_core::RolloutStatus::Succeeded
            });
            if done && c.management_off.is_some() && c.management_on.is_none() {
                let events =
                    c.w.core
                        .set_switch(c.w.now, Switch::Management, true, "ops");
                c.w.events.extend(events);
                c.management_on = Some(at);
            }
        }
    }
    facts.management_on = clusters.iter().filter_map(|c| c.management_on).max();

    // What it showed, both clusters together; each event's server named
    // with its cluster ("a/host-4").
    let instances: usize = clusters.iter().map(|c| c.w.core.instances().count()).sum();
    let mut timeline = Vec::new();
    let mut all_events = Vec::new();
    for c in &clusters {
        let events = &c.w.events[c.seen..];
        all_events.extend(events.iter().cloned());
        for mut l in super::timeline(events, start, &[EventKind::InstanceReinitialized]) {
            l.text = name_cluster(&l.text, c.name);
            timeline.push(l);
        }
    }
    timeline.sort_by_key(|l: &super::Line| l.at);
    all_events.sort_by_key(|e| e.at.mono);
    facts.rollout_stopped = all_events
        .iter()
        .find(|e| e.kind == EventKind::UpdateStopped)
        .map(|e| (e.at.mono - start, e.reason.clone()));
    // From the trigger on: what was up then, and every change after, summed
    // over the clusters.
    let mut changes: Vec<Duration> = vec![Duration::ZERO];
    for c in &clusters {
        changes.extend(
            c.w.serving
                .iter()
                .filter(|(t, _)| *t > start)
                .map(|(t, _)| *t - start),
        );
    }
    changes.sort();
    changes.dedup();
    let serving: Vec<(Duration, usize)> = changes
        .into_iter()
        .map(|t| {
            let up = clusters.iter().map(|c| c.w.serving_at(start + t)).sum();
            (t, up)
        })
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
    let end = clusters[0].w.now.mono - start;
    facts.instance_hours_lost = serving
        .iter()
        .zip(serving.iter().skip(1).map(|(t, _)| *t).chain([end]))
        .map(|((from, n), to)| (to.saturating_sub(*from)).as_secs_f64() * (instances - n) as f64)
        .sum::<f64>()
        / 3600.0;
    let first_trip = |c: &Cluster| {
        c.w.events[c.seen..]
            .iter()
            .find(|e| e.kind == EventKind::ClusterHumanInvestigate)
            .map(|e| e.at.mono - start)
    };
    facts.trips = clusters.iter().map(|c| (c.name, first_trip(c))).collect();
    let outcome = Outcome {
        servers_hi: all_events
            .iter()
            .filter(|e| e.kind == EventKind::NodeHumanInvestigate)
            .count(),
        threshold_tripped: all_events
            .iter()
            .find(|e| e.kind == EventKind::ClusterHumanInvestigate)
            .map(|e| e.at.mono - start),
        software_fault: all_events
            .iter()
            .find(|e| e.kind == EventKind::SoftwareFault)
            .map(|e| (e.at.mono - start, e.reason.clone())),
        healed: all_events
            .iter()
            .filter(|e| e.kind == EventKind::InstanceHealing)
            .count(),
        all_running_after: facts.all_up_again,
        ..Outcome::default()
    };
    let title = if fixed {
        "with Fabric, the same two clusters: fail fast, fault classification, the rollout's \
         gate, the fix behind a canary"
    } else {
        "as in 2012, to the end, two clusters: a almost done with its rollout (at 4:00PM PST the \
         walk restarts its last domain's VMs), b quiet (3 new VMs at 4:00PM)"
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

/// An event line with its server named by cluster: "node.x host-4 ..."
/// becomes "node.x a/host-4 ...", "update.y - ..." becomes "update.y a ...".
fn name_cluster(text: &str, cluster: &str) -> String {
    let mut words = text.splitn(2, char::is_whitespace);
    let (Some(kind), Some(rest)) = (words.next(), words.next()) else {
        return format!("{cluster}: {text}");
    };
    if !kind.contains('.') {
        return format!("{cluster}: {text}");
    }
    let rest = rest.trim_start();
    let mut parts = rest.splitn(2, char::is_whitespace);
    let node = parts.next().unwrap_or("-");
    let after = parts.next().unwrap_or("").trim_start();
    let named = if node == "-" {
        cluster.to_owned()
    } else {
        format!("{cluster}/{node}")
    };
    format!("{kind} {named} {after}")
}

fn minutes(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// The lines the summary gives for one phase.
pub fn summary(label: &str, outcome: &Outcome, facts: &Facts, instances: usize) -> Vec<String> {
    let at = |d: Duration| super::leap_day::pst(d);
    let trips: Vec<String> = facts
        .trips
        .iter()
        .filter_map(|(c, t)| t.map(|t| format!("{c} at {}", at(t))))
        .collect();
    let mut lines = vec![format!(
        "{label}: {} servers to HI{}{}; rollout stopped {}",
        outcome.servers_hi,
        if trips.is_empty() {
            String::new()
        } else {
            format!(", HI threshold tripped in {}", trips.join(", "))
        },
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
