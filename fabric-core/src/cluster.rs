//! Cluster-wide state: its mode, the operators' switches, and incidents.
//!
//! The postmortem's brake: when too many servers are in Human Investigate the
//! whole cluster enters HI mode, in which automatic service healing and
//! internally initiated updates stop until an operator resumes. Its lesson on
//! graceful degradation: finer switches, so service management (deploy,
//! scale, delete) can stay up while healing is off, or the reverse.

use super::clock::Moment;
use super::deployment::Name;
use super::node::NodeId;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// The cluster's mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ClusterMode {
    Normal,
    /// The HI threshold was reached: no automatic healing, no internal
    /// updates, until `resume`.
    HumanInvestigate,
}

impl ClusterMode {
    pub fn as_str(self) -> &'static str {
        match self {
            ClusterMode::Normal => "Normal",
            ClusterMode::HumanInvestigate => "HumanInvestigate",
        }
    }
}

impl fmt::Display for ClusterMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One of the operators' switches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Switch {
    /// Automatic service healing.
    Healing,
    /// Internally initiated updates: off, a rollout of the fabric's own
    /// software stops where it is (see [`crate::rollout`]).
    Updates,
    /// Service management: deploy, scale, delete.
    Management,
}

impl Switch {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "healing" => Ok(Switch::Healing),
            "updates" => Ok(Switch::Updates),
            "management" => Ok(Switch::Management),
            other => Err(format!(
                "unknown switch {other:?}: expected healing, updates or management"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Switch::Healing => "healing",
            Switch::Updates => "updates",
            Switch::Management => "management",
        }
    }
}

/// The switches' positions; all on by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Switches {
    pub healing: bool,
    pub updates: bool,
    pub management: bool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            healing: true,
            updates: true,
            management: true,
        }
    }
}

impl Switches {
    pub fn get(&self, s: Switch) -> bool {
        match s {
            Switch::Healing => self.healing,
            Switch::Updates => self.updates,
            Switch::Management => self.management,
        }
    }

    pub fn set(&mut self, s: Switch, on: bool) {
        match s {
            Switch::Healing => self.healing = on,
            Switch::Updates => self.updates = on,
            Switch::Management => self.management = on,
        }
    }
}

/// What makes two fault reports "the same cause".
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct FaultSignature {
    pub reason: String,
    pub agent_version: String,
}

/// Fault reports sharing one signature, and whether they were classified as
/// a guest-software fault.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Incident {
    pub signature: FaultSignature,
    pub nodes: BTreeSet<NodeId>,
    /// The (deployment, role) whose VMs failed; healing of these is paused
    /// once the incident is classified.
    pub roles: BTreeSet<(Name, Name)>,
    pub first_seen: Moment,
    pub classified: Option<Moment>,
}

/// The cluster's mode, switches and incidents.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct ClusterState {
    pub mode: ClusterMode,
    pub mode_since: Option<Moment>,
    pub mode_reason: String,
    pub switches: Switches,
    /// Saved as a list: JSON map keys must be strings, and a signature is
    /// a struct (each incident carries its own signature).
    #[serde(with = "incidents_as_list")]
    pub incidents: BTreeMap<FaultSignature, Incident>,
    /// The last time the threshold tripped: when, with how many HI nodes,
    /// against what threshold (in nodes).
    pub last_trip: Option<(Moment, usize, usize)>,
}

impl Default for ClusterState {
    fn default() -> Self {
        Self {
            mode: ClusterMode::Normal,
            mode_since: None,
            mode_reason: String::new(),
            switches: Switches::default(),
            incidents: BTreeMap::new(),
            last_trip: None,
        }
    }
}

impl ClusterState {
    /// Whether automatic healing may run now.
    pub fn healing_allowed(&self) -> bool {
        self.mode == ClusterMode::Normal && self.switches.healing
    }

    /// Whether healing of this role is paused by a classified software fault.
    pub fn role_paused(&self, deployment: &Name, role: &Name) -> bool {
        self.incidents.values().any(|i| {
            i.classified.is_some() && i.roles.contains(&(deployment.clone(), role.clone()))
        })
    }
}

/// [`ClusterState::incidents`] on disk: a list of incidents, keyed again by
/// their own signatures when read.
mod incidents_as_list {
    use super::{FaultSignature, Incident};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<FaultSignature, Incident>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        map.values().collect::<Vec<_>>().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<FaultSignature, Incident>, D::Error> {
        Ok(Vec::<Incident>::deserialize(d)?
            .into_iter()
            .map(|i| (i.signature.clone(), i))
            .collect())
    }
}
