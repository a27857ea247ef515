//! Real incidents replayed in virtual time against the real core: the 2012
//! leap-day cascade, the 2009 serial recovery, the 2013 certificate expiry.
//!
//! Each scenario runs the simulated [`crate::World`] twice, first as the incident
//! happened and then with Fabric's improvements, and returns a [`Report`]:
//! a timeline (virtual time since the scenario's start), a summary, and an
//! [`Outcome`] that tests and `fabricctl scenario run --simulate` check. A
//! run takes well under a second of real time for hours of cluster time.
//!
//! - [`leap_day`] replays `leap-day-2012`;
//! - [`serial_recovery`] replays `serial-recovery-2009`;
//! - [`cert_expiry`] replays `cert-expiry-2013`;
//! - [`secondary_outage`] replays `secondary-outage-2012`.

pub mod cert_expiry;
pub mod leap_day;
pub mod leap_day_rollout;
pub mod secondary_outage;
pub mod serial_recovery;

use fabric_core::{ClusterEvent, DeploymentSpec, Name, RoleSpec};
use std::time::{Duration, SystemTime};

/// One line of a timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Line {
    /// Virtual time since the scenario started.
    pub at: Duration,
    pub text: String,
}

/// What one scenario showed.
#[derive(Clone, Debug, Default)]
pub struct Report {
    pub name: &'static str,
    /// "as it happened" first, then "with Fabric's improvements".
    pub phases: Vec<Phase>,
    /// Side-by-side findings, one per line.
    pub summary: Vec<String>,
}

/// One run of a scenario.
#[derive(Clone, Debug, Default)]
pub struct Phase {
    pub title: String,
    pub timeline: Vec<Line>,
    pub outcome: Outcome,
}

/// The measured facts of one run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outcome {
    /// Servers that went to Human Investigate.
    pub servers_hi: usize,
    /// Role instances service healing moved.
    pub healed: usize,
    /// When the HI threshold tripped, if it did.
    pub threshold_tripped: Option<Duration>,
    /// When a software fault was classified, and its cause.
    pub software_fault: Option<(Duration, String)>,
    /// Until every role instance was Running again, if it was.
    pub all_running_after: Option<Duration>,
    /// Per deployment: the longest time it had no instance Running.
    pub longest_outage: Vec<(String, Duration)>,
    /// Certificate events raised, by kind name, with when.
    pub certificate_events: Vec<(Duration, String)>,
    /// Time clients were served an expired certificate.
    pub expired_served_for: Duration,
}

/// Every scenario by name, with a one-line description.
pub const SCENARIOS: &[(&str, &str)] = &[
    (
        "leap-day-2012",
        "guest agents fail on Feb 29; strikes, HI, healing spreads it, the threshold trips (then: fail fast + classification)",
    ),
    (
        "serial-recovery-2009",
        "several servers fail at once; healing one at a time versus in parallel; single- vs two-instance services",
    ),
    (
        "cert-expiry-2013",
        "deployed certificates near expiry: warnings at 180 days, incident at 90, what clients see if nobody rotates",
    ),
    (
        "secondary-outage-2012",
        "the repair: an older host agent with a newer networking plugin, blasted (then: refused, or walked by update domain behind an endpoint gate)",
    ),
];

/// Runs scenario `name` in virtual time.
pub fn run(name: &str) -> Option<Report> {
    match name {
        "leap-day-2012" => Some(leap_day::run()),
        "serial-recovery-2009" => Some(serial_recovery::run()),
        "cert-expiry-2013" => Some(cert_expiry::run()),
        "secondary-outage-2012" => Some(secondary_outage::run()),
        _ => None,
    }
}

/// A deployment with one role of `instances`, serving a certificate valid
/// until `not_after`.
pub(crate) fn service(name: &str, instances: u32, not_after: SystemTime) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("deployment", name).expect("valid name"),
        roles: vec![RoleSpec {
            name: Name::parse("role", "web").expect("valid name"),
            instances,
            certificates: vec![fabric_core::CertificateInfo {
                name: "https".into(),
                fingerprint: format!("{:0>64}", hex::encode(name)),
                not_after,
            }],
        }],
    }
}

/// A package manifest for the simulator: its files are never read, so
/// their digests are placeholders.
pub(crate) fn package(
    name: &str,
    host_agent: &str,
    guest_agent: &str,
    plugin: &str,
    compatible: &str,
) -> fabric_core::Manifest {
    use fabric_core::software::{Artifact, Plugin, Version};
    let version = |v: &str| Version::parse("version", v).expect("valid version");
    let artifact = |v: &str, file: &str| Artifact {
        version: version(v),
        file: file.into(),
        size: 1,
        sha256: "0".repeat(64),
        flags: Vec::new(),
    };
    fabric_core::Manifest {
        version: version(name),
        host_agent: artifact(host_agent, "host-agent"),
        guest_agent: artifact(guest_agent, "guest-agent"),
        plugin: Plugin {
            artifact: artifact(plugin, "netplug"),
            compatible_host_agents: vec![compatible.into()],
        },
        forced: false,
    }
}

/// The HI side of a run's [`Outcome`]: servers in HI now, when the HI
/// threshold tripped (if the cluster is still in HI mode), the first
/// software fault and the heals among `events`, times since `start`.
pub(crate) fn hi_outcome(w: &crate::World, start: Duration, events: &[ClusterEvent]) -> Outcome {
    use fabric_core::{ClusterMode, EventKind, NodeState};
    Outcome {
        servers_hi: w
            .core
            .nodes()
            .filter(|n| n.state == NodeState::HumanInvestigate)
            .count(),
        threshold_tripped: w
            .core
            .cluster()
            .last_trip
            .filter(|_| w.core.cluster().mode == ClusterMode::HumanInvestigate)
            .map(|(at, _, _)| at.mono.saturating_sub(start)),
        software_fault: events
            .iter()
            .find(|e| e.kind == EventKind::SoftwareFault)
            .map(|e| (e.at.mono.saturating_sub(start), e.reason.clone())),
        healed: events
            .iter()
            .filter(|e| e.kind == EventKind::InstanceHealing)
            .count(),
        ..Outcome::default()
    }
}

/// A timeline line for event `e` of a run that started at `start` (mono).
pub(crate) fn line(e: &ClusterEvent, start: Duration) -> Line {
    Line {
        at: e.at.mono.saturating_sub(start),
        text: format!(
            "{:<26} {:<8} {}",
            e.kind.as_str(),
            e.node.as_ref().map_or("-", |n| n.as_str()),
            e.reason
        ),
    }
}

/// "1h15m00s" style for a virtual time.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 86_400 {
        format!("day {:>3} {:02}h", s / 86_400, (s % 86_400) / 3600)
    } else {
        format!("{:02}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
    }
}
