//! The core's state as plain data, to persist it and to restore it after a
//! controller restart.
//!
//! What is kept: nodes, deployments, role instances with their placements and
//! incarnations, the cluster's mode, switches and incidents, and the event
//! log. What is deliberately not kept: monotonic clock readings, which mean
//! nothing in another process. On restore every node gets a fresh heartbeat
//! grace from "now", so the controller's own absence never makes a node
//! Unresponsive, let alone starts a healing storm (kubernetes#24597).

use super::clock::Moment;
use super::cluster::ClusterState;
use super::config::CoreConfig;
use super::deployment::DeploymentSpec;
use super::deployment::{InstanceId, Name};
use super::events::{ClusterEvent, EventKind, EventLog};
use super::fabric::FabricCore;
use super::instance::RoleInstance;
use super::node::{NodeId, NodeRecord, NodeState};
use super::tracked::Tracked;
use serde::{Deserialize, Serialize};

/// Everything the core must not forget.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CoreSnapshot {
    pub nodes: Vec<NodeRecord>,
    pub deployments: Vec<DeploymentSpec>,
    pub instances: Vec<RoleInstance>,
    pub cluster: ClusterState,
    pub events: Vec<ClusterEvent>,
    pub next_event_sequence: u64,
    /// Absent in state files written before identities existed.
    #[serde(default)]
    pub identity: super::identity::ClusterIdentity,
    /// Packages and the latest rollout; absent in older state files.
    #[serde(default)]
    pub software: super::rollout::SoftwareState,
}

/// What changed since the last save, for a store whose write costs the
/// change (see [`super::tracked`]): the entries marked changed (each present,
/// or removed), the events recorded since, and the small cluster-wide parts
/// whole.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct CoreChanges {
    pub nodes: Vec<NodeRecord>,
    pub nodes_removed: Vec<NodeId>,
    pub deployments: Vec<DeploymentSpec>,
    pub deployments_removed: Vec<Name>,
    pub instances: Vec<RoleInstance>,
    pub instances_removed: Vec<InstanceId>,
    pub cluster: ClusterState,
    pub identity: super::identity::ClusterIdentity,
    pub software: super::rollout::SoftwareState,
    pub events: Vec<ClusterEvent>,
    pub next_event_sequence: u64,
}

impl CoreChanges {
    /// How many entries (and events) it carries.
    pub fn len(&self) -> usize {
        self.nodes.len()
            + self.nodes_removed.len()
            + self.deployments.len()
            + self.deployments_removed.len()
            + self.instances.len()
            + self.instances_removed.len()
            + self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Splits the keys a [`Tracked`] map marked into entries to write and keys
/// to delete.
fn split<K: Ord + Clone, V: Clone>(map: &mut Tracked<K, V>) -> (Vec<V>, Vec<K>) {
    let mut present = Vec::new();
    let mut removed = Vec::new();
    for k in map.take_unsaved() {
        match map.get(&k) {
            Some(v) => present.push(v.clone()),
            None => removed.push(k),
        }
    }
    (present, removed)
}

impl CoreSnapshot {
    /// Folds one save's changes in.
    pub fn apply(&mut self, changes: CoreChanges) {
        self.apply_all([changes]);
    }

    /// Folds saves' changes in, in order (a store reading its log after the
    /// snapshot it compacted to). Costs the state once plus the changes, not
    /// the state per save.
    pub fn apply_all(&mut self, all: impl IntoIterator<Item = CoreChanges>) {
        use std::collections::BTreeMap;
        fn keyed<K: Ord, V>(list: &mut Vec<V>, key: impl Fn(&V) -> K) -> BTreeMap<K, V> {
            std::mem::take(list)
                .into_iter()
                .map(|v| (key(&v), v))
                .collect()
        }
        fn merge<K: Ord, V>(
            map: &mut BTreeMap<K, V>,
            key: impl Fn(&V) -> K,
            present: Vec<V>,
            removed: Vec<K>,
        ) {
            for k in removed {
                map.remove(&k);
            }
            for v in present {
                map.insert(key(&v), v);
            }
        }
        let node_key = |n: &NodeRecord| n.id.clone();
        let deployment_key = |d: &DeploymentSpec| d.name.clone();
        let instance_key = |i: &RoleInstance| i.id.clone();
        let mut nodes = keyed(&mut self.nodes, node_key);
        let mut deployments = keyed(&mut self.deployments, deployment_key);
        let mut instances = keyed(&mut self.instances, instance_key);
        for changes in all {
            merge(&mut nodes, node_key, changes.nodes, changes.nodes_removed);
            merge(
                &mut deployments,
                deployment_key,
                changes.deployments,
                changes.deployments_removed,
            );
            merge(
                &mut instances,
                instance_key,
                changes.instances,
                changes.instances_removed,
            );
            self.cluster = changes.cluster;
            self.identity = changes.identity;
            self.software = changes.software;
            let last = self.events.last().map_or(0, |e| e.sequence);
            self.events
                .extend(changes.events.into_iter().filter(|e| e.sequence > last));
            self.next_event_sequence = self.next_event_sequence.max(changes.next_event_sequence);
        }
        self.nodes = nodes.into_values().collect();
        self.deployments = deployments.into_values().collect();
        self.instances = instances.into_values().collect();
    }
}

impl FabricCore {
    /// What changed since the last [`FabricCore::take_changes`] or
    /// [`FabricCore::all_saved`], with `generation` as the identity's (the
    /// generation this save will be). Drains the marks: a store that fails
    /// to write them must save a full snapshot next.
    pub fn take_changes(&mut self, generation: u64) -> CoreChanges {
        let (nodes, nodes_removed) = split(&mut self.nodes);
        let (deployments, deployments_removed) = split(&mut self.deployments);
        let (instances, instances_removed) = split(&mut self.instances);
        let events = self.events.after(self.events_saved_through, None);
        self.events_saved_through = self.events.last_sequence();
        let mut identity = self.identity.clone();
        identity.generation = generation;
        CoreChanges {
            nodes,
            nodes_removed,
            deployments,
            deployments_removed,
            instances,
            instances_removed,
            cluster: self.cluster.clone(),
            identity,
            software: self.software.clone(),
            events,
            next_event_sequence: self.events.last_sequence() + 1,
        }
    }

    /// Everything is saved (a full snapshot was written): drops the marks.
    pub fn all_saved(&mut self) {
        self.nodes.all_saved();
        self.deployments.all_saved();
        self.instances.all_saved();
        self.events_saved_through = self.events.last_sequence();
    }

    pub fn snapshot(&self) -> CoreSnapshot {
        CoreSnapshot {
            nodes: self.nodes.values().cloned().collect(),
            deployments: self.deployments.values().cloned().collect(),
            instances: self.instances.values().cloned().collect(),
            cluster: self.cluster.clone(),
            events: self.events.after(0, None),
            next_event_sequence: self.events.last_sequence() + 1,
            identity: self.identity.clone(),
            software: self.software.clone(),
        }
    }

    /// Rebuilds the core from a snapshot taken by an earlier process. Every
    /// monotonic reading is rebased to `now`: each node's heartbeat deadline,
    /// Unresponsive grace and fault hold start over.
    pub fn restore(config: CoreConfig, snapshot: CoreSnapshot, now: Moment) -> Self {
        let mut events = EventLog::restore(
            config.event_retention,
            snapshot.events,
            snapshot.next_event_sequence,
        );
        let mut nodes = std::collections::BTreeMap::new();
        let mut unresponsive = 0;
        for mut n in snapshot.nodes {
            n.last_heard = now.mono;
            n.state_since.mono = now.mono;
            if let Some(hold) = n.hold.as_mut() {
                hold.until = now.mono + config.classification_hold;
            }
            if n.state == NodeState::Unresponsive {
                unresponsive += 1;
            }
            nodes.insert(n.id.clone(), n);
        }
        let mut instances = std::collections::BTreeMap::new();
        for mut i in snapshot.instances {
            i.rebase(now);
            instances.insert(i.id.clone(), i);
        }
        events.record(
            now,
            EventKind::ControllerStarted,
            None,
            format!(
                "restarted with saved state: {} nodes ({unresponsive} Unresponsive), {} deployments, \
                 {} role instances, mode {}; every node has a fresh heartbeat grace",
                nodes.len(),
                snapshot.deployments.len(),
                instances.len(),
                snapshot.cluster.mode
            ),
        );
        let mut instances: Tracked<_, _> = instances.into_iter().collect();
        let mut by_node = crate::by_node::ByNode::default();
        by_node.refresh(&mut instances);
        Self {
            deployments: snapshot
                .deployments
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            config,
            nodes: nodes.into_iter().collect(),
            events,
            instances,
            by_node,
            events_saved_through: 0,
            desired_global: 0,
            cluster: snapshot.cluster,
            cluster_certificates: Vec::new(),
            expiry_raised: std::collections::BTreeMap::new(),
            identity: snapshot.identity,
            state_lost: None,
            // A restored controller asks every host for all its reports.
            reports_complete: Default::default(),
            software: {
                let mut software = snapshot.software;
                if let Some(r) = software.rollout.as_mut() {
                    r.rebase(now);
                }
                software
            },
        }
    }
}
