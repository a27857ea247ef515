//! leap-day-2012: the transfer-certificate bug of Feb 29, 2012, replayed to
//! the end at the postmortem's own times (PST), with its milestones quoted
//! among the events.
//!
//! Two phases, each on two clusters run in step: `a` almost done with a
//! rollout of new FC, HA and GA versions, `b` quiet (three new VMs at the
//! trigger), as "the bug worked its way more slowly through clusters that
//! were not being updated":
//! - as in 2012, from the trigger at 4:00PM to service management turned
//!   off in both at 6:55PM and restored cluster by cluster after the fix
//!   ([`super::leap_day_story`]);
//! - the same clusters with Fabric's ways (fail fast, fault
//!   classification, the rollout's health gate, the fix behind a canary).
//!
//! The code that plays each part: guest-agent/src/transfer_cert.rs (the
//! bug, on real processes), fabric-sim/src/host.rs (the strike rule as the
//! simulator models it; host-agent/src/vm/record.rs on real processes),
//! fabric-core/src/faults.rs (classification), fabric-core/src/lifecycle.rs
//! (the threshold), fabric-core/src/healing.rs, fabric-core/src/rollout/.

use super::{IncidentClock, Line, Report};
use crate::host::GuestModel;
use crate::{SimConfig, World};
use fabric_core::{CoreConfig, HiThreshold};
use std::time::{Duration, SystemTime};

/// The 2012 host agent's wait for a guest agent.
pub const GUEST_TIMEOUT: Duration = Duration::from_secs(25 * 60);
/// 2012-02-29T00:00:00Z.
pub const LEAP_DAY: u64 = 1_330_473_600;
/// 4:00PM PST Feb 28 (the trigger), as seconds of the PST clock.
pub const TRIGGER_PST: u64 = LEAP_DAY - 8 * 3600;
const HOSTS: u32 = 20;

/// The postmortem's milestones, minutes after the 4:00PM PST trigger, in
/// its own words.
const MILESTONES: &[(u64, &str)] = &[
    (
        0,
        "The leap day bug immediately triggered at 4:00PM PST, February 28th (00:00 UST \
         February 29th) when GAs in new VMs tried to generate certificates.",
    ),
    (
        75,
        "the server HI threshold hit precisely 75 minutes (3 times 25 minute timeout) later at \
         5:15PM PST.",
    ),
    (158, "at 6:38PM PST our developers identified the bug."),
    (
        175,
        "we disabled service management functionality in all clusters worldwide at 6:55PM PST.",
    ),
    (
        360,
        "We created a test and rollout plan for the updated GA by approximately 10:00PM PST,",
    ),
    (440, "had the updated GA code ready at 11:20PM PST,"),
    (
        590,
        "and finished testing it in a test cluster at 1:50AM PST, February 29th.",
    ),
    (
        611,
        "We next initiated rollout of the GA to one production cluster and that completed \
         successfully at 2:11AM PST, at which time we pushed the fix to all clusters.",
    ),
    (
        803,
        "at 5:23AM PST we announced service management had been restored to the majority of our \
         clusters.",
    ),
];

/// The milestones as timeline lines (time since the trigger).
pub fn milestones() -> Vec<Line> {
    super::milestones_at_minutes(MILESTONES)
}

/// "5:15:05PM" for a time since the trigger.
pub fn pst(since_trigger: Duration) -> String {
    let full = super::wall_clock(TRIGGER_PST + since_trigger.as_secs());
    // "Feb 28 5:15:05PM": the summary reads better without the date.
    full.split(' ').nth(2).unwrap_or(&full).to_owned() + " PST"
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
        update_domains: 4,
        capacity: 2,
        step: Duration::from_secs(5),
        guest: GuestModel {
            connect_timeout: GUEST_TIMEOUT,
            clean_vm_strikes: 3,
            leap_day_bug: true,
            fail_fast: fixed,
            agent_version: "1.0".into(),
            fixed_guest_agents: vec![super::leap_day_story::FIXED_GA.into()],
            ..GuestModel::default()
        },
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(LEAP_DAY),
        ..SimConfig::default()
    }
}

/// A cluster an hour before midnight UTC: its VMs start on Feb 28 and
/// run; only guest agents started from midnight on compute the date that
/// does not exist.
fn story_world(fixed: bool) -> World {
    let mut c = config(fixed);
    c.start -= Duration::from_secs(3600);
    World::new(c)
}

pub fn run() -> Report {
    use super::leap_day_story as story;
    let (then, then_facts) = story::phase(|| story_world(false), false);
    let (now, now_facts) = story::phase(|| story_world(true), true);
    let mut summary = vec![
        "postmortem: trigger 4:00PM PST; HI threshold 5:15PM (3 x 25 minutes); bug named 6:38PM; \
         service management off 6:55PM; fix in one production cluster 2:11AM, then all"
            .to_owned(),
    ];
    summary.extend(story::summary(
        "2012",
        &then.outcome,
        &then_facts,
        then.instances,
    ));
    summary.extend(story::summary(
        "Fabric",
        &now.outcome,
        &now_facts,
        now.instances,
    ));
    Report {
        name: "leap-day-2012",
        phases: vec![then, now],
        summary,
        source: "2012",
        clock: Some(IncidentClock {
            zone: "PST",
            start: TRIGGER_PST,
        }),
        invented: vec![
            "two clusters of 20 servers in 4 update domains, their services and the HI threshold \
             (25%): the postmortem gives none of them"
                .into(),
            "package and agent versions (1.0, 2.0, 2.0.1, net-2) and the names new-fc-ha-ga and \
             ga-fix"
                .into(),
            "the guest agent's error text with Fabric's fail-fast fix (the 2012 agent said \
             nothing: it exited)"
                .into(),
            "when the fix reaches these clusters: at 2:11AM, when the postmortem says it was \
             pushed to all clusters"
                .into(),
        ],
    }
}
