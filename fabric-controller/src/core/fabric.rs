//! [`FabricCore`]: the node registry and heartbeat bookkeeping.
//!
//! Rules, each a transition recorded as a [`ClusterEvent`]:
//! - A node silent for `node_timeout` (measured from its last registration or
//!   accepted heartbeat) goes Ready -> Unresponsive, exactly at the timeout.
//! - An accepted heartbeat from an Unresponsive node makes it Ready again.
//! - A registration with a new boot id means the host agent restarted; its
//!   heartbeat sequence numbers start over.
//! - A heartbeat whose sequence number is not above the last accepted one
//!   (late, duplicated or reordered on the wire) is ignored entirely: it
//!   neither refreshes the node nor changes its state.

use super::clock::Moment;
use super::cluster::ClusterState;
use super::config::CoreConfig;
use super::deployment::{DeploymentSpec, InstanceId, Name};
use super::events::{ClusterEvent, EventKind, EventLog};
use super::instance::RoleInstance;
use super::node::{NodeId, NodeInfo, NodeRecord, NodeState};
use std::collections::BTreeMap;
use std::time::Duration;

/// What a registration turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RegisterOutcome {
    /// First time this node was seen.
    New,
    /// Same boot id as before (e.g. the host agent reconnected).
    Reconnected,
    /// A new boot id: the host agent process restarted.
    Restarted,
}

/// What the core did with a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Accepted,
    /// Sequence number not above the last accepted one: ignored.
    Stale,
    /// Unknown node or a boot id the core has not seen registered.
    RegisterAgain,
}

/// The controller's state and decisions. See the module docs for the rules.
#[derive(Debug)]
pub struct FabricCore {
    pub(super) config: CoreConfig,
    pub(super) nodes: BTreeMap<NodeId, NodeRecord>,
    pub(super) events: EventLog,
    pub(super) deployments: BTreeMap<Name, DeploymentSpec>,
    pub(super) instances: BTreeMap<InstanceId, RoleInstance>,
    pub(super) cluster: ClusterState,
    /// The cluster's own certificates, watched like deployed ones.
    pub(super) cluster_certificates: Vec<super::expiry::ClusterCertificate>,
    /// The highest expiry level already raised per certificate.
    pub(super) expiry_raised: BTreeMap<String, super::expiry::ExpiryLevel>,
}

impl FabricCore {
    pub fn new(config: CoreConfig, now: Moment) -> Self {
        let mut events = EventLog::new(config.event_retention);
        events.record(
            now,
            EventKind::ControllerStarted,
            None,
            format!(
                "heartbeat_interval {:?}, node_timeout {:?}",
                config.heartbeat_interval, config.node_timeout
            ),
        );
        Self {
            config,
            nodes: BTreeMap::new(),
            events,
            deployments: BTreeMap::new(),
            instances: BTreeMap::new(),
            cluster: ClusterState::default(),
            cluster_certificates: Vec::new(),
            expiry_raised: BTreeMap::new(),
        }
    }

    pub fn config(&self) -> &CoreConfig {
        &self.config
    }

    pub fn nodes(&self) -> impl Iterator<Item = &NodeRecord> {
        self.nodes.values()
    }

    pub fn node(&self, id: &NodeId) -> Option<&NodeRecord> {
        self.nodes.get(id)
    }

    pub fn events(&self) -> &EventLog {
        &self.events
    }

    /// A host agent (re)registers. Returns what it was and the events raised.
    pub fn register(
        &mut self,
        now: Moment,
        id: NodeId,
        info: NodeInfo,
        boot_id: &str,
    ) -> (RegisterOutcome, Vec<ClusterEvent>) {
        let mut raised = Vec::new();
        let Some(node) = self.nodes.get_mut(&id) else {
            raised.push(self.events.record(
                now,
                EventKind::NodeRegistered,
                Some(&id),
                format!(
                    "fault domain {}, update domain {}, {} VM slots, agent {}",
                    info.fault_domain,
                    info.update_domain,
                    info.capacity_vm_slots,
                    info.agent_version
                ),
            ));
            self.nodes.insert(
                id.clone(),
                NodeRecord {
                    id,
                    info,
                    state: NodeState::Ready,
                    state_since: now,
                    boot_id: boot_id.to_owned(),
                    last_sequence: 0,
                    last_heard: now.mono,
                    restarts: 0,
                    last_fault_report: None,
                    state_reason: "registered".into(),
                    hold: None,
                },
            );
            return (RegisterOutcome::New, raised);
        };

        let outcome = if node.boot_id == boot_id {
            RegisterOutcome::Reconnected
        } else {
            node.restarts += 1;
            node.boot_id = boot_id.to_owned();
            node.last_sequence = 0;
            raised.push(self.events.record(
                now,
                EventKind::NodeRestarted,
                Some(&id),
                format!(
                    "host agent restarted (new boot id, pid {}, restart #{})",
                    info.pid, node.restarts
                ),
            ));
            RegisterOutcome::Restarted
        };
        node.info = info;
        let silence = now.since(node.last_heard);
        node.last_heard = now.mono;
        if node.state == NodeState::Unresponsive {
            node.state = NodeState::Ready;
            node.state_since = now;
            node.state_reason = format!("host agent registered after {} of silence", secs(silence));
            raised.push(self.events.record(
                now,
                EventKind::NodeReady,
                Some(&id),
                node.state_reason.clone(),
            ));
        }
        (outcome, raised)
    }

    /// A heartbeat arrives from `id` in boot `boot_id` with `sequence`.
    pub fn heartbeat(
        &mut self,
        now: Moment,
        id: &NodeId,
        boot_id: &str,
        sequence: u64,
    ) -> (HeartbeatOutcome, Vec<ClusterEvent>) {
        let Some(node) = self.nodes.get_mut(id) else {
            return (HeartbeatOutcome::RegisterAgain, Vec::new());
        };
        if node.boot_id != boot_id {
            return (HeartbeatOutcome::RegisterAgain, Vec::new());
        }
        if sequence <= node.last_sequence {
            return (HeartbeatOutcome::Stale, Vec::new());
        }
        node.last_sequence = sequence;
        let silence = now.since(node.last_heard);
        node.last_heard = now.mono;
        let mut raised = Vec::new();
        if node.state == NodeState::Unresponsive {
            node.state = NodeState::Ready;
            node.state_since = now;
            node.state_reason = format!("heartbeat received after {} of silence", secs(silence));
            raised.push(self.events.record(
                now,
                EventKind::NodeReady,
                Some(id),
                node.state_reason.clone(),
            ));
        }
        (HeartbeatOutcome::Accepted, raised)
    }

    /// Marks every Ready node silent for at least `node_timeout` Unresponsive.
    pub fn expire(&mut self, now: Moment) -> Vec<ClusterEvent> {
        let timeout = self.config.node_timeout;
        let mut raised = Vec::new();
        for node in self.nodes.values_mut() {
            let silence = now.since(node.last_heard);
            if node.state == NodeState::Ready && silence >= timeout {
                node.state = NodeState::Unresponsive;
                node.state_since = now;
                node.state_reason = format!(
                    "no heartbeat for {} (node_timeout {})",
                    secs(silence),
                    secs(timeout)
                );
                raised.push(self.events.record_timed(
                    now,
                    EventKind::NodeUnresponsive,
                    Some(&node.id),
                    node.state_reason.clone(),
                    Some(silence),
                ));
            }
        }
        raised
    }

    /// The monotonic time at which [`FabricCore::expire`] next has work to do,
    /// so the shell can sleep exactly until then.
    pub fn next_expiry(&self) -> Option<Duration> {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Ready)
            .map(|n| n.last_heard + self.config.node_timeout)
            .min()
    }
}

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
