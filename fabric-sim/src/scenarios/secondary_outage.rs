//! `secondary-outage-2012`: the repair that took VMs off the network.
//!
//! Seven clusters were mid-rollout (new host agent, new networking plugin)
//! when the leap-day bug struck. The repair: the older host agent shipped
//! with the newer plugin, "blasted" to every server at once. "The two were
//! incompatible"; every VM of those servers lost its network, and the
//! single-server test "had not included testing network connectivity to
//! the VMs".
//!
//! Eight servers in four update domains run one service of eight
//! instances; a rollout of host agent 2.0 and plugin net-2 has reached two
//! servers (a canary) and is abandoned there. The repair package (host
//! agent 1.0 with plugin net-2, which declares only 2.x host agents) goes
//! out as in 2012, forced and blasted; then as in Fabric: refused, then
//! forced but walked one update domain at a time, its gate probing the
//! endpoints and rolling back. The report counts instance-seconds of
//! endpoints no client could reach.
//!
//! Parts: fabric-core/src/software.rs (the check), fabric-core/src/rollout/
//! (the walk, its gate), and the host model's plugin (crate::host).

use super::{IncidentClock, Line, Outcome, Phase, Report, line, service};
use crate::{SimConfig, World};
use fabric_core::software::Version;
use fabric_core::{CoreConfig, EventKind, OnFailure, RolloutStatus, UpdatePlan};
use std::time::{Duration, SystemTime};

const INSTANCES: u32 = 8;
/// The postmortem's rollout pace is not stated; Fabric's defaults.
const GATE_STABLE: Duration = Duration::from_secs(30);
const GATE_TIMEOUT: Duration = Duration::from_secs(600);

/// The postmortem's milestones, minutes after 2:47AM PST Feb 29, in its
/// own words.
const MILESTONES: &[(u64, &str)] = &[
    (
        0,
        "At 2:47 AM PST on the 29th, we pushed the incompatible combination of components to \
         those seven clusters and every VM, including ones that had been healthy previously, \
         causing them to become disconnected from the network.",
    ),
    (
        53,
        "We quickly produced a corrected HA package and at 3:40 AM PST tested again, this time \
         verifying VM connectivity and other aspects of VM health.",
    ),
    (
        173,
        "Given the impact on these seven clusters, we chose to blast out the fix starting at \
         5:40 AM PST.",
    ),
    (
        313,
        "The clusters were largely operational again by 8:00 AM PST, but a number of servers \
         were in corrupted states as a result of the various transitions.",
    ),
];

fn milestones() -> Vec<Line> {
    super::milestones_at_minutes(MILESTONES)
}

fn version(v: &str) -> Version {
    Version::parse("version", v).expect("valid version")
}

fn package(name: &str, host_agent: &str, plugin: &str, compatible: &str) -> fabric_core::Manifest {
    super::package(name, host_agent, host_agent, plugin, compatible)
}

/// A cluster mid-rollout: two servers on the new pair, six on the base.
fn mixed_cluster() -> World {
    let mut w = World::new(SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            unresponsive_grace: Duration::from_secs(30),
            ..CoreConfig::default()
        },
        hosts: 8,
        fault_domains: 4,
        update_domains: 4,
        capacity: 4,
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_330_560_000),
        ..SimConfig::default()
    });
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33);
    w.deploy(service("web", INSTANCES, far)).expect("deploy");
    w.run_for(Duration::from_secs(30));
    let now = w.now;
    w.core
        .add_package(
            now,
            package("ha2-net2", "2.0", "net-2", "2.*"),
            false,
            "sim",
        )
        .expect("the new pair is compatible");
    let mut plan = UpdatePlan::new(version("ha2-net2"));
    plan.canary = 2;
    plan.gate_stable = Some(Duration::from_secs(24 * 3600));
    plan.gate_timeout = Some(Duration::from_secs(48 * 3600));
    let events = w.core.start_update(now, plan, "sim").expect("start");
    w.events.extend(events);
    w.run_for(Duration::from_secs(30));
    let now = w.now;
    w.events
        .extend(w.core.pause_update(now, "sim").expect("pause"));
    w.events
        .extend(w.core.abandon_update(now, "sim").expect("abandon"));
    w
}

/// When 2012's corrected package went out: 5:40AM, 173 minutes after the
/// 2:47AM blast.
const FIX_BLASTED: Duration = Duration::from_secs(173 * 60);

/// Runs `plan` of the repair package to its end; returns the timeline,
/// the instance-seconds unreachable, and the servers it changed. With
/// `fix_2012`, as in 2012: nothing stops the broken package, and at
/// [`FIX_BLASTED`] a corrected one (host agent 1.0 with a plugin that
/// declares it) is blasted out.
fn repair(
    w: &mut World,
    plan: UpdatePlan,
    timeline: &mut Vec<Line>,
    fix_2012: bool,
) -> (f64, usize) {
    let start = w.now.mono;
    let seen = w.events.len();
    let now = w.now;
    let events = w.core.start_update(now, plan, "sim").expect("forced start");
    w.events.extend(events);
    // Servers that ran the repair package at some point.
    let mut touched = std::collections::BTreeSet::new();
    let mut unreachable = 0.0;
    let step = w.config.step.as_secs_f64();
    let limit = start + Duration::from_secs(6 * 3600);
    let mut fixed = !fix_2012;
    while w.now.mono < limit {
        w.step();
        unreachable += step * w.unreachable() as f64;
        touched.extend(
            w.core
                .nodes()
                .filter(|n| {
                    n.info
                        .software
                        .package
                        .as_ref()
                        .is_some_and(|p| p.as_str() == "repair-ha1-net2")
                })
                .map(|n| n.id.clone()),
        );
        if !fixed && w.now.mono - start >= FIX_BLASTED {
            fixed = true;
            let now = w.now;
            if let Ok(events) = w.core.pause_update(now, "ops") {
                w.events.extend(events);
            }
            if let Ok(events) = w.core.abandon_update(now, "ops") {
                w.events.extend(events);
            }
            w.core
                .add_package(
                    now,
                    package("fixed-ha1-net1", "1.0", "net-1", "1.*"),
                    false,
                    "ops",
                )
                .expect("the corrected pair is compatible");
            let mut fix = UpdatePlan::new(version("fixed-ha1-net1"));
            fix.blast = true;
            // Rolling the fix back would return servers to the broken
            // pair, which Fabric refuses without force; 2012 checked
            // nothing, so the replay forces it.
            fix.force = true;
            let events = w.core.start_update(now, fix, "ops").expect("the fix");
            w.events.extend(events);
        }
        let over = w.core.rollout().is_some_and(|r| r.status.finished());
        if fixed && over && w.unreachable() == 0 {
            break;
        }
    }
    timeline.extend(
        w.events[seen..]
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventKind::UpdateStarted
                        | EventKind::UpdateProgress
                        | EventKind::UpdateStopped
                        | EventKind::UpdateRollback
                        | EventKind::UpdateFinished
                )
            })
            .map(|e| line(e, start)),
    );
    (unreachable, touched.len())
}

fn plan(blast: bool) -> UpdatePlan {
    let mut plan = UpdatePlan::new(version("repair-ha1-net2"));
    plan.force = true;
    plan.blast = blast;
    plan.on_failure = OnFailure::Rollback;
    plan.gate_stable = Some(GATE_STABLE);
    plan.gate_timeout = Some(GATE_TIMEOUT);
    plan
}

/// Runs both phases.
pub fn run() -> Report {
    report().0
}

/// The report, and the figures a test checks: (blast instance-seconds,
/// servers), (walk instance-seconds, servers), whether the walk rolled back.
pub fn report() -> (Report, (f64, usize), (f64, usize), bool) {
    let repair_package = package("repair-ha1-net2", "1.0", "net-2", "2.*");

    let mut w = mixed_cluster();
    let mut blast_timeline = Vec::new();
    let now = w.now;
    w.core
        .add_package(now, repair_package.clone(), true, "sim")
        .expect("forced");
    // As in 2012: no gate to stop it (the walk would wait a day for one).
    let mut blast = plan(true);
    blast.on_failure = OnFailure::Pause;
    blast.gate_timeout = Some(Duration::from_secs(24 * 3600));
    let (blast_down, blast_touched) = repair(&mut w, blast, &mut blast_timeline, true);

    let mut w = mixed_cluster();
    let mut walk_timeline = Vec::new();
    let now = w.now;
    let refused = w
        .core
        .add_package(now, repair_package.clone(), false, "sim")
        .expect_err("an incompatible pair is refused");
    walk_timeline.push(Line {
        at: Duration::ZERO,
        text: format!("package add refused: {refused}"),
    });
    w.core
        .add_package(now, repair_package, true, "sim")
        .expect("forced");
    let mut unforced = plan(false);
    unforced.force = false;
    let refused = w
        .core
        .start_update(now, unforced, "sim")
        .expect_err("refused again at start");
    walk_timeline.push(Line {
        at: Duration::ZERO,
        text: format!("update start refused: {refused}"),
    });
    let (walk_down, walk_touched) = repair(&mut w, plan(false), &mut walk_timeline, false);
    let rolled_back = w
        .core
        .rollout()
        .is_some_and(|r| r.status == RolloutStatus::RolledBack);

    let report = Report {
        name: "secondary-outage-2012",
        phases: vec![
            Phase {
                title: "as it happened: host agent 1.0 with plugin net-2 blasted to every server; \
                        at 5:40AM a corrected package blasted out"
                    .into(),
                timeline: blast_timeline,
                outcome: Outcome::default(),
                milestones: milestones(),
                ..Default::default()
            },
            Phase {
                title: "with Fabric: refused twice; forced anyway, walked by update domain, gated on endpoints"
                    .into(),
                timeline: walk_timeline,
                outcome: Outcome::default(),
                milestones: milestones(),
                ..Default::default()
            },
        ],
        summary: vec![
            format!(
                "blast: {blast_touched} of 8 servers changed, {blast_down:.0} instance-seconds ({:.1} instance-hours) of endpoints unreachable until the 5:40AM fix",
                blast_down / 3600.0
            ),
            format!(
                "domain walk: {walk_touched} server(s) changed, {walk_down:.0} instance-seconds unreachable, {}",
                if rolled_back {
                    "rolled back by its gate"
                } else {
                    "NOT rolled back"
                }
            ),
            "unforced: refused at package add and at update start, naming both versions; 0 instance-seconds"
                .into(),
        ],
        // Both runs start when the 2012 blast went out.
        source: "2012",
        clock: Some(IncidentClock {
            zone: "PST",
            start: super::leap_day::TRIGGER_PST + (10 * 60 + 47) * 60,
        }),
        invented: vec![
            "the cluster (8 servers, 4 update domains, one service of 8 instances) and how far \
             its rollout had got (2 servers): the postmortem says only that most servers had \
             the old pair and some the new"
                .into(),
            "versions 1.0, 2.0, net-2 and the package names; the gate's times (Fabric's \
             defaults, 30 s stable, 10 min timeout)"
                .into(),
            "the plugin's failure as a refused connection: the postmortem says the VMs had \
             \"no networking capability\""
                .into(),
        ],
    };
    (
        report,
        (blast_down, blast_touched),
        (walk_down, walk_touched),
        rolled_back,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_gate_contains_what_the_blast_spread() {
        let (report, (blast, blast_servers), (walk, walk_servers), rolled_back) = super::report();
        assert_eq!(blast_servers, 8, "{:#?}", report.phases[0].timeline);
        assert_eq!(walk_servers, 2, "{:#?}", report.phases[1].timeline);
        assert!(rolled_back, "{:#?}", report.phases[1].timeline);
        assert!(blast > 0.0 && walk > 0.0, "{blast} {walk}");
        // Two servers of eight, with the same gate timeout: a quarter.
        assert!(walk * 3.0 < blast, "walk {walk} vs blast {blast}");
        let refusals = &report.phases[1].timeline[..2];
        assert!(
            refusals
                .iter()
                .all(|l| l.text.contains("net-2") && l.text.contains("1.0"))
        );
    }
}
