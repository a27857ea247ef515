//! Role instances and what host agents report about the VMs running them.

use super::deployment::InstanceId;
use super::node::NodeId;
use std::fmt;

/// Where a role instance is in its life, as far as the controller knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InstanceState {
    /// Not placed on any server (no capacity); the detail says why.
    Pending,
    /// Placed; the host agent has not reported its VM yet, or the guest agent
    /// has not connected.
    Starting,
    /// The guest agent presented its transfer certificate and got its secrets.
    Provisioned,
    /// The role's HTTPS endpoint is serving.
    Running,
    /// The host agent is reinitializing its VM (new incarnation).
    Reinitializing,
}

impl InstanceState {
    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "Pending",
            InstanceState::Starting => "Starting",
            InstanceState::Provisioned => "Provisioned",
            InstanceState::Running => "Running",
            InstanceState::Reinitializing => "Reinitializing",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role instance and the VM currently running it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleInstance {
    pub id: InstanceId,
    pub node: Option<NodeId>,
    /// Highest incarnation assigned or reported. The controller never asks
    /// for a lower one.
    pub incarnation: u64,
    pub state: InstanceState,
    pub endpoint: String,
    pub pid: u32,
    pub detail: String,
    pub transfer_cert_fingerprint: String,
    /// Set while service healing has moved this instance and it is not yet
    /// Running at its new home: when the heal started and where from.
    pub healing: Option<Healing>,
}

impl RoleInstance {
    /// The server service healing is moving this instance from, if it is.
    pub fn healing_from(&self) -> Option<&NodeId> {
        self.healing.as_ref().and_then(|h| h.from.as_ref())
    }
}

/// An instance being healed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Healing {
    pub since: super::clock::Moment,
    pub from: Option<NodeId>,
}

/// A VM state as a host agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    Starting,
    Provisioned,
    Running,
    Reinitializing,
    Stopped,
}

/// One VM report from a host agent's heartbeat, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmObservation {
    pub id: InstanceId,
    pub incarnation: u64,
    pub state: VmState,
    pub pid: u32,
    pub endpoint: String,
    pub detail: String,
    pub transfer_cert_fingerprint: String,
}

/// A VM the controller wants a server to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmAssignment {
    pub id: InstanceId,
    pub incarnation: u64,
    pub secrets_version: String,
}
