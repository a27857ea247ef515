//! No silent wipe: the cluster's identity, its state generation, and the
//! state-lost mode.
//!
//! A controller started on an empty state directory by mistake (or with its
//! state file deleted, or restored from an old backup) must not take its
//! empty (or old) memory for the truth: told "run nothing", every host agent
//! would stop every VM. So the cluster has an identity (a random id made when
//! the cluster is created) and a generation (raised by every save), both
//! written with its state and sent in every heartbeat reply; each host agent
//! remembers the newest it obeyed and sends that back in its heartbeats.
//!
//! A host that remembers another cluster, or a newer generation of this one,
//! proves the controller lost state. The controller then enters state-lost
//! mode: it stops nothing (every heartbeat is answered HOLD, no desired set),
//! heals nothing, refuses deployments, keeps the VM reports hosts send, and
//! waits for an operator's explicit recovery ([`Recovery`]): adopt what the
//! hosts run, rebuilding deployments from their reports, or a confirmed wipe,
//! after which the hosts accept this controller as the one that replaced
//! theirs. Host agents check the same thing on their side and refuse desired
//! sets from a controller of an unknown cluster or an older generation.

use super::CoreError;
use super::clock::Moment;
use super::deployment::{DeploymentSpec, InstanceId, Name, RoleSpec};
use super::events::{ClusterEvent, EventKind};
use super::fabric::FabricCore;
use super::instance::{InstanceState, RoleInstance, VmObservation, VmState};
use super::node::NodeId;
use std::collections::BTreeMap;

/// Who this cluster's state is, and how new.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterIdentity {
    /// Random, made when the cluster's state was created; empty only in a
    /// state file written before identities existed.
    pub id: String,
    /// The number of the last save; raised by every save.
    pub generation: u64,
    /// The cluster id an operator's confirmed wipe replaced, if any: hosts
    /// that remember it accept this cluster in its place.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// What a host agent remembers of the newest controller state it obeyed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostMemory {
    pub cluster_id: String,
    pub generation: u64,
}

impl ClusterIdentity {
    /// Whether `memory` proves this state is not the newest: a host obeyed
    /// another cluster (not one this one replaced) or a later generation.
    pub fn is_behind(&self, memory: &HostMemory) -> bool {
        if memory.cluster_id.is_empty() {
            return false;
        }
        if memory.cluster_id == self.id {
            memory.generation > self.generation
        } else {
            self.replaces.as_deref() != Some(memory.cluster_id.as_str())
        }
    }
}

/// The controller's record that its state is not the newest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StateLost {
    pub since: Moment,
    /// Each host that proved it, and what it remembers.
    pub evidence: BTreeMap<NodeId, HostMemory>,
    /// The latest VM reports of every host heard from since, to rebuild from.
    pub reports: BTreeMap<NodeId, Vec<VmObservation>>,
}

/// An operator's way out of state-lost mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Take the hosts' cluster as this one: deployments and instances are
    /// rebuilt from what the hosts run (without certificates, which hosts
    /// never report: deploy each definition again to restore them).
    Adopt,
    /// Keep this controller's state and have hosts accept it: they then stop
    /// every VM this state does not list. Destructive; confirmed by the
    /// operator.
    Wipe,
}

impl FabricCore {
    pub fn identity(&self) -> &ClusterIdentity {
        &self.identity
    }

    /// A new cluster's identity, made by the shell (the core has no
    /// randomness).
    pub fn with_cluster_id(mut self, id: impl Into<String>) -> Self {
        self.identity.id = id.into();
        self
    }

    /// The shell saved the state as `generation`.
    pub fn saved_as(&mut self, generation: u64) {
        self.identity.generation = generation;
    }

    pub fn state_lost(&self) -> Option<&StateLost> {
        self.state_lost.as_ref()
    }

    /// Input: what a host agent remembers, sent with its heartbeat, and the
    /// VMs it reports. Enters state-lost mode when the memory proves this
    /// state is not the newest; while in it, keeps every host's latest VM
    /// reports for [`Recovery::Adopt`].
    pub fn host_memory(
        &mut self,
        now: Moment,
        node: &NodeId,
        memory: Option<HostMemory>,
        vms: &[VmObservation],
        complete: bool,
    ) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        if let Some(memory) = memory.filter(|m| self.identity.is_behind(m)) {
            if self.state_lost.is_none() {
                events.push(self.events.record(
                    now,
                    EventKind::StateLost,
                    Some(node),
                    format!(
                        "host {node} obeyed cluster {} generation {}, but this controller's state \
                         is cluster {} generation {}: its state was lost or is old. Nothing is \
                         stopped or healed until an operator recovers (fabricctl cluster recover \
                         --adopt, or --wipe --yes)",
                        memory.cluster_id,
                        memory.generation,
                        self.identity.id,
                        self.identity.generation
                    ),
                ));
                self.state_lost = Some(StateLost {
                    since: now,
                    evidence: BTreeMap::new(),
                    reports: BTreeMap::new(),
                });
            }
            if let Some(lost) = self.state_lost.as_mut() {
                lost.evidence.insert(node.clone(), memory);
            }
        }
        if let Some(lost) = self.state_lost.as_mut() {
            // A host reports only what changed unless it reports everything
            // (see `Beat`): a partial report updates what it said before.
            let known = lost.reports.entry(node.clone()).or_default();
            if complete {
                *known = vms.to_vec();
            } else {
                for vm in vms {
                    match known.iter_mut().find(|k| k.id == vm.id) {
                        Some(k) => k.clone_from(vm),
                        None => known.push(vm.clone()),
                    }
                }
            }
        }
        events
    }

    /// Input: an operator's recovery from state-lost mode.
    pub fn recover(
        &mut self,
        now: Moment,
        how: Recovery,
        who: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let Some(lost) = self.state_lost.take() else {
            return Err(CoreError::StateNotLost);
        };
        // The cluster the hosts obeyed: the one most of them remember.
        let mut votes: BTreeMap<&str, usize> = BTreeMap::new();
        for m in lost.evidence.values() {
            *votes.entry(m.cluster_id.as_str()).or_default() += 1;
        }
        let theirs = votes
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(id, _)| (*id).to_owned())
            .unwrap_or_default();
        let newest = lost
            .evidence
            .values()
            .map(|m| m.generation)
            .max()
            .unwrap_or(0);
        let reason = match how {
            Recovery::Adopt => {
                let rebuilt = self.rebuild(now, &lost.reports);
                self.identity = ClusterIdentity {
                    id: theirs.clone(),
                    generation: newest.max(self.identity.generation),
                    replaces: None,
                };
                format!(
                    "state recovered by {who}: adopted cluster {theirs} from {} host(s)' reports: \
                     {rebuilt}; deploy each definition again to restore its certificates",
                    lost.reports.len()
                )
            }
            Recovery::Wipe => {
                self.identity.replaces = Some(theirs.clone());
                self.identity.generation = self.identity.generation.max(newest);
                format!(
                    "state wiped by {who}: cluster {} replaces {theirs}; hosts now stop every VM \
                     this state does not list",
                    self.identity.id
                )
            }
        };
        let mut events = vec![
            self.events
                .record(now, EventKind::StateRecovered, None, reason),
        ];
        events.extend(self.heal(now));
        Ok(events)
    }

    /// Deployments and instances as the hosts run them; returns a summary.
    fn rebuild(&mut self, now: Moment, reports: &BTreeMap<NodeId, Vec<VmObservation>>) -> String {
        // The newest incarnation of each instance any host runs.
        let mut running: BTreeMap<InstanceId, (&NodeId, &VmObservation)> = BTreeMap::new();
        for (node, vms) in reports {
            if !self.nodes.contains_key(node) {
                continue;
            }
            for vm in vms.iter().filter(|v| v.state != VmState::Stopped) {
                let newer = running
                    .get(&vm.id)
                    .is_none_or(|(_, seen)| vm.incarnation > seen.incarnation);
                if newer {
                    running.insert(vm.id.clone(), (node, vm));
                }
            }
        }
        let mut shapes: BTreeMap<Name, BTreeMap<Name, u32>> = BTreeMap::new();
        for id in running.keys() {
            let count = shapes
                .entry(id.deployment.clone())
                .or_default()
                .entry(id.role.clone())
                .or_default();
            *count = (*count).max(id.index + 1);
        }
        let mut deployments = 0;
        for (name, roles) in &shapes {
            if self.deployments.contains_key(name) {
                continue;
            }
            deployments += 1;
            self.deployments.insert(
                name.clone(),
                DeploymentSpec {
                    priority: 0,
                    name: name.clone(),
                    roles: roles
                        .iter()
                        .map(|(role, instances)| RoleSpec {
                            name: role.clone(),
                            instances: *instances,
                            certificates: Vec::new(),
                            // Hosts do not report which guest a VM runs;
                            // deploying the definition again restores it.
                            guest: Default::default(),
                        })
                        .collect(),
                },
            );
            for (role, instances) in roles {
                for index in 0..*instances {
                    let id = InstanceId {
                        deployment: name.clone(),
                        role: role.clone(),
                        index,
                    };
                    let instance = match running.get(&id) {
                        Some((node, vm)) => {
                            let mut i = RoleInstance::placed(id.clone(), (*node).clone());
                            i.follow_incarnation(vm.incarnation);
                            let state = match vm.state {
                                VmState::Starting => InstanceState::Starting,
                                VmState::Provisioned => InstanceState::Provisioned,
                                VmState::Running => InstanceState::Running,
                                VmState::Reinitializing | VmState::Stopped => {
                                    InstanceState::Reinitializing
                                }
                            };
                            i.observe((*vm).clone(), state);
                            i
                        }
                        None => {
                            // No host runs it: it waits to be placed.
                            let mut i = RoleInstance::placed(id.clone(), NodeId::new("-"));
                            i.unplace(now, "rebuilt: no host reported this instance".into());
                            i
                        }
                    };
                    self.instances.insert(id, instance);
                }
            }
        }
        format!(
            "{deployments} deployment(s), {} running instance(s)",
            running.len()
        )
    }
}
