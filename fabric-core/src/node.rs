//! A server as the fabric controller knows it.

use super::clock::Moment;
use std::fmt;
use std::time::Duration;

/// A node (server) id, as named in its host agent's certificate.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct NodeId(String);

impl NodeId {
    pub fn new(id: impl Into<String>) -> Self {
        Self(id.into())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Health of a node, in the postmortem's terms.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum NodeState {
    /// Heartbeating; may run VMs.
    Ready,
    /// Missed heartbeats for `node_timeout`; may come back by itself.
    Unresponsive,
    /// Human Investigate: taken out of service until an operator repairs it.
    HumanInvestigate,
}

impl NodeState {
    /// Every state (filters).
    pub const ALL: [NodeState; 3] = [
        NodeState::Ready,
        NodeState::Unresponsive,
        NodeState::HumanInvestigate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Ready => "Ready",
            NodeState::Unresponsive => "Unresponsive",
            NodeState::HumanInvestigate => "HumanInvestigate",
        }
    }
}

impl fmt::Display for NodeState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a host agent declares about its server when it registers.
#[derive(Clone, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub struct NodeInfo {
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity_vm_slots: u32,
    pub agent_version: String,
    pub host_endpoint: String,
    pub pid: u32,
    /// The package, host agent, guest agent and plugin it runs (this boot).
    #[serde(default)]
    pub software: super::software::Software,
    /// Where the controller reaches this server's role endpoints, if not at
    /// the address they name (see [`probe_host`]).
    #[serde(default)]
    pub role_probe_host: Option<String>,
}

/// Checks a server's role probe host: a DNS name or an IP address, as a
/// host agent declares it (`--role-probe-host`). The controller connects
/// there, so nothing else (no port, path or user) may ride along.
pub fn probe_host(text: &str) -> Result<String, String> {
    if text.parse::<std::net::IpAddr>().is_ok() {
        return Ok(text.to_owned());
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
    };
    if text.is_empty() || text.len() > 253 || !text.split('.').all(label_ok) {
        return Err(format!(
            "role probe host {:?} is neither an IP address nor a DNS name",
            text.chars().take(80).collect::<String>()
        ));
    }
    Ok(text.to_owned())
}

/// `endpoint` ("ip:port") with its host replaced by `host`, as the
/// controller's prober dials it; unchanged without a probe host or a port.
pub fn probe_endpoint(endpoint: &str, host: Option<&str>) -> String {
    match (host, endpoint.rsplit_once(':')) {
        (Some(h), Some((_, port))) if h.contains(':') => format!("[{h}]:{port}"),
        (Some(h), Some((_, port))) => format!("{h}:{port}"),
        _ => endpoint.to_owned(),
    }
}

/// Everything the core tracks about one node.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NodeRecord {
    pub id: NodeId,
    pub info: NodeInfo,
    pub state: NodeState,
    /// When the node entered `state`.
    pub state_since: Moment,
    /// The host agent process instance; changes when it restarts.
    pub boot_id: String,
    /// Highest heartbeat sequence number accepted in this boot.
    pub last_sequence: u64,
    /// Stale heartbeats in a row (see `CoreConfig::stale_heartbeats_before_register`).
    #[serde(default)]
    pub stale_streak: u32,
    /// Monotonic time of the last registration or accepted heartbeat.
    pub last_heard: Duration,
    /// How many times a new boot id was seen.
    pub restarts: u64,
    /// The last fault the host agent reported, with its reason.
    pub last_fault_report: Option<String>,
    /// Why the node is in its current state, in words.
    pub state_reason: String,
    /// A guest-software fault report waiting for classification: the node
    /// stays in service until `until` (monotonic), then goes to HI unless
    /// other servers reported the same cause meanwhile.
    pub hold: Option<FaultHold>,
}

/// See [`NodeRecord::hold`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FaultHold {
    pub signature: super::cluster::FaultSignature,
    pub until: Duration,
}

#[cfg(test)]
mod probe_tests {
    use super::*;

    #[test]
    fn a_probe_host_replaces_only_the_host_of_an_endpoint() {
        assert_eq!(probe_endpoint("127.0.0.1:19120", None), "127.0.0.1:19120");
        assert_eq!(
            probe_endpoint("127.0.0.1:19120", Some("host-a2")),
            "host-a2:19120"
        );
        assert_eq!(
            probe_endpoint("127.0.0.1:19120", Some("fd00::7")),
            "[fd00::7]:19120"
        );
        assert_eq!(probe_endpoint("no-port", Some("host-a2")), "no-port");
    }
}
