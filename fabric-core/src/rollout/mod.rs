//! Rolling out the fabric's own software, one update domain at a time.
//!
//! The 2012 postmortem: "many clusters were also in the midst of the rollout
//! of a new version of the FC, HA and GA"; "the critical alarms on the
//! updating clusters automatically stopped the updates"; the HI threshold
//! "stops all internally initiated software updates"; and the secondary
//! outage, where a "blast" of an incompatible host agent and networking
//! plugin took every VM's network down because the test "had not included
//! testing network connectivity to the VMs".
//!
//! A [`Rollout`] walks a list of [`Step`]s (a canary group, then each update
//! domain in order; or one step with every server for `--blast`). In a step:
//!
//! 1. Its servers are *released*: their heartbeat replies name the target
//!    package (see [`crate::FabricCore::target_software`]); each host agent
//!    fetches it and restarts into it, re-adopting its running VMs.
//! 2. Once a server reports the target, its role instances are reincarnated
//!    in place (same server, next incarnation): that is how the package's
//!    guest agent reaches VMs, domain by domain, as Azure's update-domain
//!    walk restarts instances.
//! 3. The **gate** ([`gate`]) holds the step until every server of it is
//!    Ready on the target, every role instance there is Running, and every
//!    role endpoint there answered a probe from outside its server, all for
//!    the stable time. Failing for the gate timeout pauses the rollout or
//!    rolls it back (`OnFailure`).
//!
//! Brakes ([`walk`]): cluster HI mode, the `updates` switch off, or a failed
//! gate stop the rollout where it is: no further server is released, and
//! none is told to change. It goes on only by an operator's word
//! (`update resume`), never by itself.

pub mod gate;
mod operator;
pub mod plan;
pub mod walk;

pub use plan::{OnFailure, UpdatePlan};
pub use walk::{ProbeResult, ProbeTarget};

use crate::clock::Moment;
use crate::deployment::InstanceId;
use crate::node::NodeId;
use crate::software::Version;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

/// Which way the walk goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Direction {
    /// Toward the plan's package.
    Forward,
    /// Back to each server's previous package, steps in reverse order.
    Back,
}

impl Direction {
    /// "forward" or "back", as status, JSON and metrics show it.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Forward => "forward",
            Direction::Back => "back",
        }
    }
}

/// One group of servers updated together.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Step {
    /// "canary", "update domain 2", "every server (blast)".
    pub label: String,
    pub nodes: BTreeSet<NodeId>,
}

/// Why a rollout stopped where it is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum StopReason {
    /// `update pause`.
    Operator(String),
    /// The cluster entered HI mode (the postmortem's brake).
    ClusterHumanInvestigate,
    /// `cluster set updates off`.
    UpdatesOff,
    /// The step's gate did not pass within the gate timeout.
    GateFailed(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Operator(who) => write!(f, "paused by {who}"),
            StopReason::ClusterHumanInvestigate => {
                f.write_str("the cluster is in HI mode: internally initiated updates stop")
            }
            StopReason::UpdatesOff => f.write_str("the updates switch is off"),
            StopReason::GateFailed(why) => write!(f, "health gate failed: {why}"),
        }
    }
}

/// Where a rollout is.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum RolloutStatus {
    Running,
    Paused(StopReason),
    /// Every step passed its gate.
    Succeeded,
    /// Rolled back: every touched server is on its previous package again.
    RolledBack,
    /// Ended by an operator where it stood: each server keeps what it runs
    /// (a cluster of mixed versions, as 2012's were).
    Abandoned,
}

impl RolloutStatus {
    pub fn finished(&self) -> bool {
        matches!(
            self,
            RolloutStatus::Succeeded | RolloutStatus::RolledBack | RolloutStatus::Abandoned
        )
    }

    /// Why it stopped, in words; empty unless Paused.
    pub fn stopped_because(&self) -> String {
        match self {
            RolloutStatus::Paused(why) => why.to_string(),
            _ => String::new(),
        }
    }

    pub fn label(&self) -> &'static str {
        match self {
            RolloutStatus::Running => "Running",
            RolloutStatus::Paused(_) => "Paused",
            RolloutStatus::Succeeded => "Succeeded",
            RolloutStatus::RolledBack => "RolledBack",
            RolloutStatus::Abandoned => "Abandoned",
        }
    }
}

/// What a server is told to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    /// This package (its manifest comes with the reply).
    Package(Box<crate::software::Manifest>),
    /// The binaries the server was set up with.
    Base,
}

/// The last probe of one role endpoint, as the shell reported it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    pub incarnation: u64,
    pub ok: bool,
    pub detail: String,
    /// Monotonic reading; probes are not kept across a controller restart.
    pub at: Duration,
}

/// A rollout of one package over the cluster.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Rollout {
    /// Counts rollouts in this cluster, from 1.
    pub id: u64,
    pub plan: UpdatePlan,
    pub started: Moment,
    pub direction: Direction,
    pub steps: Vec<Step>,
    /// Index of the current step in `steps`.
    pub step: usize,
    pub step_started: Moment,
    /// The gate has held since then (monotonic); `None`: not healthy now.
    pub healthy_since: Option<Duration>,
    /// The gate's last verdict, in words.
    pub gate: String,
    pub status: RolloutStatus,
    /// Each server's package before this rollout touched it (`None`: base).
    pub previous: BTreeMap<NodeId, Option<Version>>,
    /// Servers of the current step that were told to change.
    pub released: BTreeSet<NodeId>,
    /// Instances this walk reincarnated, with the incarnation it gave them.
    #[serde(with = "as_pairs")]
    pub reincarnated: BTreeMap<InstanceId, u64>,
    /// Latest endpoint probe per instance of the current step.
    #[serde(skip)]
    pub probes: BTreeMap<InstanceId, Probe>,
    /// Servers whose steps passed their gate, in this direction.
    pub done: BTreeSet<NodeId>,
    pub finished: Option<Moment>,
}

impl Rollout {
    /// "step 2 of 4 (update domain 1)".
    pub fn position(&self) -> String {
        match self.steps.get(self.step) {
            Some(s) => format!(
                "step {} of {} ({})",
                self.step + 1,
                self.steps.len(),
                s.label
            ),
            None => format!("{} steps", self.steps.len()),
        }
    }

    pub fn current_step(&self) -> Option<&Step> {
        self.steps.get(self.step)
    }

    /// After a controller restart: monotonic readings mean nothing, so the
    /// gate starts over (a fresh timeout, a fresh stable window, new probes).
    pub(crate) fn rebase(&mut self, now: Moment) {
        self.step_started.mono = now.mono;
        self.healthy_since = None;
        self.probes.clear();
    }
}

/// The fabric's software as the controller keeps it: the packages it holds
/// and the latest rollout.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SoftwareState {
    pub packages: BTreeMap<Version, crate::software::Manifest>,
    pub rollout: Option<Rollout>,
    /// Rollouts started in this cluster, to number them.
    pub rollouts_started: u64,
}

/// A map keyed by instance saved as a list of pairs: JSON map keys must be
/// strings, and an [`InstanceId`] is a struct.
mod as_pairs {
    use crate::deployment::InstanceId;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<InstanceId, u64>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.iter().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<InstanceId, u64>, D::Error> {
        Ok(Vec::<(InstanceId, u64)>::deserialize(d)?
            .into_iter()
            .collect())
    }
}
