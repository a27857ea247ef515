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
use super::events::{ClusterEvent, EventKind, EventLog};
use super::fabric::FabricCore;
use super::instance::RoleInstance;
use super::node::{NodeRecord, NodeState};
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

impl FabricCore {
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
        Self {
            deployments: snapshot
                .deployments
                .into_iter()
                .map(|d| (d.name.clone(), d))
                .collect(),
            config,
            nodes,
            events,
            instances,
            cluster: snapshot.cluster,
            cluster_certificates: Vec::new(),
            expiry_raised: std::collections::BTreeMap::new(),
            identity: snapshot.identity,
            state_lost: None,
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
