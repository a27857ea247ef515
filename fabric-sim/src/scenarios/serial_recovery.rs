//! `serial-recovery-2009`: "During a routine operating system upgrade ...
//! the deployment service within Windows Azure began to slow down due to
//! networking issues. This caused a large number of servers to time out
//! and fail", and recovery went "a few applications at a time".
//!
//! The upgrade times out four of twelve servers at once (they fail). Two
//! services run there: a single-instance one and a two-instance one (its
//! instances in different fault domains). Three phases:
//!
//! 1. as in 2009: healing one instance at a time;
//! 2. Fabric's defaults: 16 at a time, but the HI threshold (20%: 3 of 12)
//!    trips at the third failed server and stops healing: four servers at
//!    once looks like a cascade, and Fabric cannot tell a platform-wide
//!    timeout from one. The brake holds until an operator resumes (here
//!    after 10 minutes), then everything heals in parallel;
//! 3. Fabric with the operator's judgement up front (a platform upgrade,
//!    not a cascade: threshold 50%): parallel healing at once.
//!
//! The report gives the time until every instance runs again and, per
//! service, the longest time it had no instance running.
//!
//! Parts: fabric-core/src/healing.rs (bounded concurrency, priority and
//! most-hurt roles first), fabric-core/src/lifecycle.rs (the threshold),
//! fabric-core/src/placement.rs (fault domains).

use super::{Line, Outcome, Phase, Report, service};
use crate::host::GuestModel;
use crate::{SimConfig, World};
use fabric_core::{CoreConfig, EventKind, HiThreshold, InstanceState};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const FAILED: usize = 4;
/// When the operator resumes a cluster the threshold stopped (phase 2).
const OPERATOR_RESUMES: Duration = Duration::from_secs(600);

/// One phase's settings.
struct Setup {
    title: &'static str,
    concurrency: u32,
    threshold: u32,
    /// Resume the cluster this long after the failure, if in HI mode.
    resume_after: Option<Duration>,
}

fn phase(setup: &Setup) -> Phase {
    let concurrency = setup.concurrency;
    let mut w = World::new(SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            unresponsive_grace: Duration::from_secs(5),
            healing_concurrency: concurrency,
            hi_threshold: HiThreshold::Percent(setup.threshold),
            ..CoreConfig::default()
        },
        hosts: 12,
        capacity: 4,
        step: Duration::from_millis(500),
        guest: GuestModel {
            // A VM takes this long to boot and run its role.
            boot_time: Duration::from_secs(20),
            ..GuestModel::default()
        },
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_230_768_000),
        ..SimConfig::default()
    });
    let far = SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33);
    w.deploy(service("single", 1, far)).expect("deploy");
    w.deploy(service("pair", 2, far)).expect("deploy");
    w.deploy(service("batch", 20, far)).expect("deploy");
    w.run_for(Duration::from_secs(60));
    // The failed servers: the single instance's, and the fullest others.
    // One of the pair's two servers survives: losing both at once is what
    // fault domains make unlikely, and the point is what one loss does.
    let mut load: BTreeMap<String, usize> = BTreeMap::new();
    let mut single_home = String::new();
    let mut pair_homes = Vec::new();
    for i in w.core.instances() {
        if let Some(n) = i.node() {
            *load.entry(n.to_string()).or_default() += 1;
            match i.id.deployment.as_str() {
                "single" => single_home = n.to_string(),
                "pair" => pair_homes.push(n.to_string()),
                _ => {}
            }
        }
    }
    let spared = pair_homes.last().cloned().unwrap_or_default();
    let mut victims = vec![single_home.clone()];
    let mut by_load: Vec<_> = load
        .into_iter()
        .filter(|(n, _)| *n != single_home && *n != spared)
        .collect();
    by_load.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    victims.extend(by_load.into_iter().take(FAILED - 1).map(|(n, _)| n));
    let start = w.now.mono;
    let events_before = w.events.len();
    for v in &victims {
        w.host(v).power_off();
    }
    let mut down_since: BTreeMap<String, Option<Duration>> = BTreeMap::new();
    let mut longest: BTreeMap<String, Duration> = BTreeMap::new();
    let mut all_running_after = None;
    let limit = Duration::from_secs(3600);
    let mut resumed = false;
    while w.now.mono - start < limit {
        w.step();
        let at = w.now.mono - start;
        if let Some(after) = setup.resume_after
            && at >= after
            && !resumed
            && w.core.cluster().mode == fabric_core::ClusterMode::HumanInvestigate
        {
            resumed = true;
            w.resume();
        }
        let mut running: BTreeMap<String, usize> = BTreeMap::new();
        let mut all = true;
        for i in w.core.instances() {
            let d = i.id.deployment.to_string();
            let r = i.state() == InstanceState::Running
                && i.node().is_some_and(|n| !victims.contains(&n.to_string()));
            *running.entry(d).or_default() += usize::from(r);
            all &= r;
        }
        for (d, n) in running {
            let since = down_since.entry(d.clone()).or_default();
            if n == 0 {
                since.get_or_insert(at);
            } else if let Some(s) = since.take() {
                let l = longest.entry(d).or_default();
                *l = (*l).max(at - s);
            }
        }
        if all && all_running_after.is_none() {
            all_running_after = Some(at);
            break;
        }
    }
    let mut timeline: Vec<Line> = vec![Line {
        at: Duration::ZERO,
        text: format!(
            "the OS upgrade's deployment service slows: {} time out and fail",
            victims.join(", ")
        ),
    }];
    // Every event, the VMs' restarts counted per hour.
    timeline.extend(super::timeline(
        &w.events[events_before..],
        start,
        &[EventKind::InstanceReinitialized],
    ));
    let healed = w.events[events_before..]
        .iter()
        .filter(|e| e.kind == EventKind::InstanceHealed)
        .count();
    let threshold_tripped = w.events[events_before..]
        .iter()
        .find(|e| e.kind == EventKind::ClusterHumanInvestigate)
        .map(|e| e.at.mono - start);
    if let Some(t) = all_running_after {
        timeline.push(Line {
            at: t,
            text: format!("every instance Running again ({healed} healed)"),
        });
    }
    Phase {
        title: setup.title.into(),
        timeline,
        outcome: Outcome {
            threshold_tripped,
            healed,
            all_running_after,
            longest_outage: ["single", "pair"]
                .iter()
                .map(|d| (d.to_string(), longest.get(*d).copied().unwrap_or_default()))
                .collect(),
            ..Outcome::default()
        },
        ..Default::default()
    }
}

pub fn run() -> Report {
    let phases: Vec<Phase> = [
        Setup {
            title: "as in 2009: an OS upgrade times out 4 of 12 servers; healing one at a time",
            concurrency: 1,
            threshold: 50,
            resume_after: None,
        },
        Setup {
            title: "Fabric's defaults: healing 16 at a time, but 4 of 12 servers trips the 20% HI \
                    threshold; an operator resumes after 10 minutes",
            concurrency: 16,
            threshold: 20,
            resume_after: Some(OPERATOR_RESUMES),
        },
        Setup {
            title: "Fabric, the operator having judged it a platform upgrade, not a cascade \
                    (threshold 50%): healing 16 at a time",
            concurrency: 16,
            threshold: 50,
            resume_after: None,
        },
    ]
    .iter()
    .map(phase)
    .collect();
    let label = ["2009", "defaults", "judged"];
    let describe = |i: usize, p: &Phase| {
        format!(
            "{}: {}all back after {}; longest outage: {}",
            label[i],
            p.outcome
                .threshold_tripped
                .map_or(String::new(), |t| format!(
                    "HI threshold tripped at {}, healing stopped until the resume; ",
                    super::clock(t)
                )),
            p.outcome
                .all_running_after
                .map_or("never (1 hour)".into(), super::clock),
            p.outcome
                .longest_outage
                .iter()
                .map(|(d, t)| format!("{d} {}", super::clock(*t)))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let mut summary = vec![
        "2009: recovery went a few applications at a time; single-instance applications went down"
            .to_owned(),
    ];
    summary.extend(phases.iter().enumerate().map(|(i, p)| describe(i, p)));
    summary.push(
        "the tension: the brake that stops a cascade (2012) also stops the parallel recovery 2009 \
         needed; Fabric stops and asks a person rather than guess which one it sees"
            .into(),
    );
    Report {
        name: "serial-recovery-2009",
        phases,
        summary,
        source: "2009",
        invented: vec![
            "the cluster (12 servers), its services and how many servers the upgrade failed \
             (the explanation says \"a large number\")"
                .into(),
            "the VMs' 20-second boot, and the 10 minutes before an operator resumes".into(),
        ],
        ..Default::default()
    }
}
