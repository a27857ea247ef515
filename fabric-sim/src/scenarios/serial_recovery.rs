//! `serial-recovery-2009`: several servers fail at once, and recovery goes
//! "a few applications at a time".
//!
//! Four of twelve servers lose power together. Two services run there: a
//! single-instance one and a two-instance one (its instances in different
//! fault domains). As in 2009, healing moves one instance at a time; with
//! Fabric it moves up to 16 at once. The report gives the time until every
//! instance runs again and, per service, the longest time it had no
//! instance running: the single-instance service is down until its one
//! instance is healed, the two-instance one never goes down.
//!
//! Parts: fabric-core/src/healing.rs (bounded concurrency,
//! most-hurt roles first), core/placement.rs (fault domains).

use super::{Line, Outcome, Phase, Report, line, service};
use crate::host::GuestModel;
use crate::{SimConfig, World};
use fabric_core::{CoreConfig, EventKind, HiThreshold, InstanceState};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

const FAILED: usize = 4;

fn phase(concurrency: u32) -> Phase {
    let mut w = World::new(SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            unresponsive_grace: Duration::from_secs(5),
            healing_concurrency: concurrency,
            hi_threshold: HiThreshold::Percent(50),
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
    while w.now.mono - start < limit {
        w.step();
        let at = w.now.mono - start;
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
        text: format!("power lost on {}", victims.join(", ")),
    }];
    let mut healed = 0;
    for e in &w.events[events_before..] {
        match e.kind {
            EventKind::NodeHumanInvestigate => timeline.push(line(e, start)),
            EventKind::InstanceHealed => {
                healed += 1;
                if healed <= 3 || e.reason.contains("single.") || e.reason.contains("pair.") {
                    timeline.push(line(e, start));
                }
            }
            _ => {}
        }
    }
    if let Some(t) = all_running_after {
        timeline.push(Line {
            at: t,
            text: format!("every instance Running again ({healed} healed)"),
        });
    }
    Phase {
        title: format!("healing concurrency {concurrency}"),
        timeline,
        outcome: Outcome {
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
    let serial = phase(1);
    let parallel = phase(16);
    let describe = |p: &Phase| {
        format!(
            "{}: all back after {}; longest outage: {}",
            p.title,
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
    let summary = vec![
        "2009: recovery went a few applications at a time; single-instance applications went down"
            .to_owned(),
        describe(&serial),
        describe(&parallel),
    ];
    Report {
        name: "serial-recovery-2009",
        phases: vec![serial, parallel],
        summary,
        ..Default::default()
    }
}
