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
//!   neither refreshes the node nor changes its state. After
//!   `stale_heartbeats_before_register` of them in a row the host agent is
//!   told to register again, and its sequence starts over: a host whose
//!   numbers went wrong is recovered, not declared lost.
//! - A sequence number implausibly far ahead (more than
//!   `sequence_jump_limit` plus one per 50 ms of silence) is refused: one bad
//!   heartbeat must not make every later one stale.

use super::clock::Moment;
use super::cluster::ClusterState;
use super::config::CoreConfig;
use super::deployment::{DeploymentSpec, InstanceId, Name};
use super::events::{ClusterEvent, EventKind, EventLog};
use super::instance::{RoleInstance, VmAssignment, VmObservation};
use super::node::{NodeId, NodeInfo, NodeRecord, NodeState};
use super::tracked::Tracked;
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

/// What a host agent is told in answer to its heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatReply {
    pub outcome: HeartbeatOutcome,
    /// The complete set of VMs the node should run; empty with
    /// [`HeartbeatOutcome::RegisterAgain`].
    pub desired: Vec<VmAssignment>,
    /// The node is in Human Investigate: it starts nothing (not even a VM it
    /// would reinitialize) until an operator repairs it.
    pub human_investigate: bool,
    /// The software the node should restart into (a rollout released it);
    /// `None`: keep running what it runs.
    pub target: Option<super::rollout::Target>,
    /// The rollout that names `target` (0 without one).
    pub target_update: u64,
    /// A digest of the desired set (see [`FabricCore::desired_vms_digest`]);
    /// 0 when the reply carries none. The host names it in its next
    /// heartbeat ([`Beat::known_desired`]).
    pub desired_digest: u64,
    /// `desired` is left empty because the set equals the one the host
    /// named ([`Beat::known_desired`]): it keeps running by that one.
    pub desired_unchanged: bool,
    /// This controller has not seen every VM of the server since it started
    /// or the server registered: the next heartbeat should report them all
    /// ([`Beat::complete`]).
    pub send_complete_reports: bool,
}

/// A heartbeat as the core reads it: its sequence number, its VM reports,
/// and what the host already knows.
///
/// A host reports every VM in its first heartbeat to a controller and
/// whenever asked ([`HeartbeatReply::send_complete_reports`]); in between
/// only the VMs whose report changed since its last accepted heartbeat. And
/// it names the desired set it runs by, so that an unchanged set is not
/// sent again. At 5,000 servers with 20 VMs each, a heartbeat that repeats
/// 20 unchanged reports and is answered with 20 unchanged assignments cost
/// the controller about 260 us against 73 us for a bare one: the whole of
/// a core at one heartbeat a second (docs/performance.md).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Beat {
    pub sequence: u64,
    pub vms: Vec<VmObservation>,
    /// `vms` is every VM the host runs; otherwise only those whose report
    /// changed since its last accepted heartbeat.
    pub complete: bool,
    /// The digest of the desired set the host runs by, from an earlier reply
    /// it obeyed.
    pub known_desired: Option<u64>,
}

impl Beat {
    /// A heartbeat reporting every VM, knowing no desired set: what a host
    /// agent without delta reports sends (and the simulator, and tests).
    pub fn complete(sequence: u64, vms: Vec<VmObservation>) -> Self {
        Self {
            sequence,
            vms,
            complete: true,
            known_desired: None,
        }
    }
}

/// What the core did with a heartbeat.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    Accepted,
    /// Sequence number not above the last accepted one: ignored.
    Stale,
    /// Unknown node, a boot id the core has not seen registered, or too many
    /// stale heartbeats in a row.
    RegisterAgain,
    /// The sequence number jumps implausibly far: refused, nothing changes.
    ImplausibleSequence {
        last: u64,
        limit: u64,
    },
    /// Accepted (the node's liveness is recorded), but the controller cannot
    /// stand by its desired set (it is not saved, or the controller lost its
    /// state): the host keeps running what it runs. Set by the shell, or by
    /// the core in state-lost mode.
    Hold,
}

/// Whose desired sets may have changed (see
/// [`FabricCore::take_desired_dirty`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DesiredDirty {
    All,
    Nodes(std::collections::BTreeSet<NodeId>),
}

/// The controller's state and decisions. See the module docs for the rules.
/// `Clone` so the shell can take back an operator's decision that could not
/// be saved.
#[derive(Clone, Debug)]
pub struct FabricCore {
    pub(super) config: CoreConfig,
    pub(super) nodes: Tracked<NodeId, NodeRecord>,
    pub(super) events: EventLog,
    pub(super) deployments: Tracked<Name, DeploymentSpec>,
    pub(super) instances: Tracked<InstanceId, RoleInstance>,
    /// Which instances each server holds, so a heartbeat's desired set costs
    /// that server's instances, not the cluster's (see [`super::by_node`]).
    pub(super) by_node: super::by_node::ByNode,
    /// A digest of the cluster-wide facts replies depend on, as of the last
    /// [`FabricCore::take_desired_dirty`].
    pub(super) desired_global: u64,
    /// The last event sequence a save carried (see
    /// [`FabricCore::take_changes`]).
    pub(super) events_saved_through: u64,
    pub(super) cluster: ClusterState,
    /// The cluster's own certificates, watched like deployed ones.
    pub(super) cluster_certificates: Vec<super::expiry::ClusterCertificate>,
    /// The highest expiry level already raised per certificate.
    pub(super) expiry_raised: BTreeMap<String, super::expiry::ExpiryLevel>,
    /// Who this cluster is and how new its state (see [`super::identity`]).
    pub(super) identity: super::identity::ClusterIdentity,
    /// Set when a host proved this state is not the newest.
    pub(super) state_lost: Option<super::identity::StateLost>,
    /// Packages of the fabric's own software and the latest rollout.
    pub(super) software: super::rollout::SoftwareState,
    /// Servers whose every VM this controller has heard of since it started
    /// and they registered ([`Beat::complete`]); the others are asked for
    /// all their reports. Not saved, on purpose: a controller that restarts
    /// (or a replica that takes over) may have lost observations it had
    /// acknowledged, so it asks every host again.
    pub(super) reports_complete: std::collections::HashSet<NodeId>,
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
            nodes: Tracked::default(),
            events,
            deployments: Tracked::default(),
            instances: Tracked::default(),
            by_node: Default::default(),
            events_saved_through: 0,
            desired_global: 0,
            cluster: ClusterState::default(),
            cluster_certificates: Vec::new(),
            expiry_raised: BTreeMap::new(),
            identity: Default::default(),
            state_lost: None,
            software: Default::default(),
            reports_complete: Default::default(),
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
        // A registration starts the host's reports over: all of them next.
        self.reports_complete.remove(&id);
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
                    stale_streak: 0,
                    last_heard: now.mono,
                    restarts: 0,
                    last_fault_report: None,
                    state_reason: "registered".into(),
                    hold: None,
                },
            );
            return (RegisterOutcome::New, raised);
        };

        // Either way the sequence starts over: a new boot counts from 1, and
        // a host told to register again after stale heartbeats is believed
        // from its next number on.
        node.last_sequence = 0;
        node.stale_streak = 0;
        let outcome = if node.boot_id == boot_id {
            RegisterOutcome::Reconnected
        } else {
            node.restarts += 1;
            node.boot_id = boot_id.to_owned();
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
            raised.extend(self.move_node(
                now,
                &id,
                NodeState::Ready,
                format!("host agent registered after {} of silence", secs(silence)),
                None,
            ));
        }
        (outcome, raised)
    }

    /// Input: a host agent's heartbeat reporting every VM
    /// ([`Beat::complete`]); see [`FabricCore::heartbeat_with`].
    pub fn heartbeat(
        &mut self,
        now: Moment,
        id: &NodeId,
        boot_id: &str,
        sequence: u64,
        vms: Vec<VmObservation>,
    ) -> (HeartbeatReply, Vec<ClusterEvent>) {
        self.heartbeat_with(now, id, boot_id, Beat::complete(sequence, vms))
    }

    /// Input: a host agent's heartbeat, with its VM reports. Returns what the
    /// node is told (accepted or not, and the VMs it should run) and the
    /// events raised. The gRPC shell and the simulator both call this, so
    /// the rule below exists once:
    /// - VM reports count only on an accepted heartbeat: a stale one may
    ///   describe a VM state older than what is already known;
    /// - a node told to register again gets no desired set (the controller
    ///   does not know which boot it is talking to);
    /// - a desired set equal to the one the host names is not sent again,
    ///   and a host whose VMs this controller has not all heard of is asked
    ///   for all of them (see [`Beat`]).
    pub fn heartbeat_with(
        &mut self,
        now: Moment,
        id: &NodeId,
        boot_id: &str,
        beat: Beat,
    ) -> (HeartbeatReply, Vec<ClusterEvent>) {
        let (outcome, mut events) = self.accept_heartbeat(now, id, boot_id, beat.sequence);
        if outcome == HeartbeatOutcome::Accepted {
            if beat.complete {
                self.reports_complete.insert(id.clone());
            }
            events.extend(self.observe_vms(now, id, beat.vms));
        }
        // A controller that lost its state stands by no desired set.
        let outcome = match outcome {
            HeartbeatOutcome::Accepted if self.state_lost.is_some() => HeartbeatOutcome::Hold,
            other => other,
        };
        let (desired, desired_digest, desired_unchanged) = match outcome {
            HeartbeatOutcome::RegisterAgain
            | HeartbeatOutcome::ImplausibleSequence { .. }
            | HeartbeatOutcome::Hold => (Vec::new(), 0, false),
            HeartbeatOutcome::Accepted | HeartbeatOutcome::Stale => {
                let digest = self.desired_vms_digest(id);
                if beat.known_desired == Some(digest) {
                    (Vec::new(), digest, true)
                } else {
                    (self.desired_vms(id), digest, false)
                }
            }
        };
        let human_investigate = self
            .nodes
            .get(id)
            .is_some_and(|n| n.state == NodeState::HumanInvestigate);
        let target = match outcome {
            HeartbeatOutcome::Accepted | HeartbeatOutcome::Stale => self.target_software(id),
            _ => None,
        };
        // Recovery from a lost state reads what each host runs: all of it.
        let send_complete_reports =
            self.state_lost.is_some() || !self.reports_complete.contains(id);
        (
            HeartbeatReply {
                outcome,
                desired,
                human_investigate,
                target_update: if target.is_some() {
                    self.software.rollout.as_ref().map_or(0, |r| r.id)
                } else {
                    0
                },
                target,
                desired_digest,
                desired_unchanged,
                send_complete_reports,
            },
            events,
        )
    }

    /// The servers whose [`FabricCore::desired_digest`] may have changed
    /// since the last call: those whose instances changed, or whose own
    /// record did (HI), or every server when something cluster-wide that
    /// replies depend on changed (a deployment's secrets, the rollout, the
    /// cluster's mode or switches). Costs the changes, so that telling
    /// servers of a decision does not cost the cluster.
    pub fn take_desired_dirty(&mut self) -> DesiredDirty {
        self.by_node.refresh(&mut self.instances);
        let mut nodes = self.by_node.take_touched();
        nodes.extend(self.nodes.take_unindexed());
        let deployments_changed = !self.deployments.take_unindexed().is_empty();
        let global = {
            use std::hash::{Hash, Hasher};
            let mut h = std::collections::hash_map::DefaultHasher::new();
            // Debug text: these types are small and have no Hash of their own.
            format!("{:?}", self.cluster.mode).hash(&mut h);
            self.cluster.switches.updates.hash(&mut h);
            self.cluster.switches.healing.hash(&mut h);
            self.cluster.switches.management.hash(&mut h);
            if let Some(r) = &self.software.rollout {
                r.id.hash(&mut h);
                format!("{:?}", r.status).hash(&mut h);
                r.released.len().hash(&mut h);
            }
            h.finish()
        };
        let global_changed = std::mem::replace(&mut self.desired_global, global) != global;
        if deployments_changed || global_changed {
            DesiredDirty::All
        } else {
            DesiredDirty::Nodes(nodes)
        }
    }

    /// A digest of what a heartbeat reply would tell `node` to do (its
    /// desired VMs, whether it is in HI, the rollout step naming it): when it
    /// changes, the node is told to heartbeat at once rather than at its next
    /// interval (the controller's WatchDesired stream).
    pub fn desired_digest(&mut self, node: &NodeId) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.desired_vms_digest(node).hash(&mut hasher);
        self.nodes
            .get(node)
            .is_some_and(|n| n.state == NodeState::HumanInvestigate)
            .hash(&mut hasher);
        let target = self.target_software(node);
        target.is_some().hash(&mut hasher);
        if target.is_some() {
            self.software
                .rollout
                .as_ref()
                .map(|r| r.id)
                .hash(&mut hasher);
        }
        hasher.finish()
    }

    /// The liveness half of a heartbeat: sequence and boot checks, and
    /// Unresponsive -> Ready.
    fn accept_heartbeat(
        &mut self,
        now: Moment,
        id: &NodeId,
        boot_id: &str,
        sequence: u64,
    ) -> (HeartbeatOutcome, Vec<ClusterEvent>) {
        // What a heartbeat changes (sequence, last heard) is saved with the
        // node's next real change: a save per heartbeat would cost the store
        // a write per server per second for nothing a restart needs (it
        // gives every node a fresh grace and accepts the next sequence).
        let Some(node) = self.nodes.get_mut_unmarked(id) else {
            return (HeartbeatOutcome::RegisterAgain, Vec::new());
        };
        if node.boot_id != boot_id {
            return (HeartbeatOutcome::RegisterAgain, Vec::new());
        }
        let silence = now.since(node.last_heard);
        if sequence <= node.last_sequence {
            node.stale_streak += 1;
            if node.stale_streak >= self.config.stale_heartbeats_before_register {
                return (HeartbeatOutcome::RegisterAgain, Vec::new());
            }
            return (HeartbeatOutcome::Stale, Vec::new());
        }
        let limit = node.last_sequence.saturating_add(
            self.config
                .sequence_jump_limit
                .saturating_add((silence.as_millis() / 50) as u64),
        );
        if sequence > limit {
            return (
                HeartbeatOutcome::ImplausibleSequence {
                    last: node.last_sequence,
                    limit,
                },
                Vec::new(),
            );
        }
        node.last_sequence = sequence;
        node.stale_streak = 0;
        node.last_heard = now.mono;
        let mut raised = Vec::new();
        if node.state == NodeState::Unresponsive {
            raised.extend(self.move_node(
                now,
                id,
                NodeState::Ready,
                format!("heartbeat received after {} of silence", secs(silence)),
                None,
            ));
        }
        (HeartbeatOutcome::Accepted, raised)
    }

    /// Marks every Ready node silent for at least `node_timeout` Unresponsive.
    pub fn expire(&mut self, now: Moment) -> Vec<ClusterEvent> {
        let timeout = self.config.node_timeout;
        let silent: Vec<(NodeId, Duration)> = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::Ready)
            .map(|n| (n.id.clone(), now.since(n.last_heard)))
            .filter(|(_, silence)| *silence >= timeout)
            .collect();
        silent
            .into_iter()
            .filter_map(|(id, silence)| {
                self.move_node(
                    now,
                    &id,
                    NodeState::Unresponsive,
                    format!(
                        "no heartbeat for {} (node_timeout {})",
                        secs(silence),
                        secs(timeout)
                    ),
                    Some(silence),
                )
            })
            .collect()
    }

    /// The one place a node changes state: its state, since when, why, and
    /// the event that says so. A fault hold belongs to a node in service, so
    /// it ends when the node enters or leaves Human Investigate. Returns
    /// `None` for an unknown node or one already in `to`.
    pub(super) fn move_node(
        &mut self,
        now: Moment,
        id: &NodeId,
        to: NodeState,
        reason: String,
        timed: Option<Duration>,
    ) -> Option<ClusterEvent> {
        let node = self.nodes.get_mut(id)?;
        let from = node.state;
        if from == to {
            return None;
        }
        let kind = match (from, to) {
            (NodeState::HumanInvestigate, NodeState::Ready) => EventKind::NodeRepaired,
            (_, NodeState::Ready) => EventKind::NodeReady,
            (_, NodeState::Unresponsive) => EventKind::NodeUnresponsive,
            (_, NodeState::HumanInvestigate) => EventKind::NodeHumanInvestigate,
        };
        if from == NodeState::HumanInvestigate || to == NodeState::HumanInvestigate {
            node.hold = None;
        }
        // Whatever the server did meanwhile, hear all of it again.
        self.reports_complete.remove(id);
        node.state = to;
        node.state_since = now;
        node.state_reason = reason.clone();
        Some(self.events.record_timed(now, kind, Some(id), reason, timed))
    }
}

pub(super) fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
