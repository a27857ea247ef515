//! Service management and reconciliation, as decisions on [`FabricCore`].
//!
//! - `deploy` creates a deployment and places every role instance at once, or
//!   refuses it whole (nothing half-placed); deploying an existing name with
//!   the same roles and counts rotates its certificates instead.
//! - `scale` adds instances (placed like new ones) or removes the highest
//!   indices; `delete` removes a deployment and all its instances.
//! - `desired_vms` is what one server should run: the answer to each
//!   heartbeat. Host agents converge on it, which also stops the VMs of
//!   deleted or scaled-in instances.
//! - `observe_vms` folds a heartbeat's VM reports into the instances' states.

use super::CoreError;
use super::clock::Moment;
use super::deployment::{DeploymentSpec, InstanceId, Name, RoleSpec};
use super::events::{ClusterEvent, EventKind};
use super::fabric::FabricCore;
use super::instance::{InstanceState, RoleInstance, VmAssignment, VmObservation, VmState};
use super::node::{NodeId, NodeState};
use super::placement::{self, Candidate, RoleSpread};

/// What `deploy` did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeployOutcome {
    Created(Vec<InstanceId>),
    /// Same shape as before: only the certificates changed.
    Rotated,
}

impl FabricCore {
    pub fn deployments(&self) -> impl Iterator<Item = &DeploymentSpec> {
        self.deployments.values()
    }

    pub fn instances(&self) -> impl Iterator<Item = &RoleInstance> {
        self.instances.values()
    }

    pub fn instance(&self, id: &InstanceId) -> Option<&RoleInstance> {
        self.instances.get(id)
    }

    /// The state to show for an instance: what its host reported, unless the
    /// controller can no longer trust that report. On an Unresponsive server
    /// a VM may have died unseen (Unknown); on a server in Human
    /// Investigate nothing it reported counts until it is healed (Lost).
    /// Status, the dashboard and metrics show this, never a dead VM as
    /// Running.
    pub fn status_of(&self, instance: &RoleInstance) -> InstanceState {
        let server = instance
            .node()
            .and_then(|n| self.nodes.get(n))
            .map(|n| n.state);
        shown(instance, server)
    }

    /// How many instances status shows in each state ([`FabricCore::status_of`]
    /// of each), in [`InstanceState::ALL`]'s order: what a metrics scrape
    /// counts. The servers' states are looked up once, not per instance
    /// (100,000 lookups by name in the node table per scrape were most of
    /// its cost).
    pub fn status_counts(&self) -> [usize; InstanceState::ALL.len()] {
        let servers: std::collections::HashMap<&NodeId, NodeState> =
            self.nodes.values().map(|n| (&n.id, n.state)).collect();
        let mut counts = [0; InstanceState::ALL.len()];
        for i in self.instances.values() {
            let state = shown(i, i.node().and_then(|n| servers.get(n)).copied());
            if let Some(k) = InstanceState::ALL.iter().position(|s| *s == state) {
                counts[k] += 1;
            }
        }
        counts
    }

    /// Used slots of every node with instances, in one pass.
    pub fn slots_in_use(&self) -> std::collections::HashMap<&NodeId, u32> {
        let mut used = std::collections::HashMap::new();
        for node in self.instances.values().filter_map(RoleInstance::node) {
            *used.entry(node).or_insert(0) += 1;
        }
        used
    }

    /// Ready servers as placement candidates.
    pub(super) fn candidates(&self) -> Vec<Candidate> {
        let used = self.slots_in_use();
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::Ready)
            .map(|n| Candidate {
                id: n.id.clone(),
                fault_domain: n.info.fault_domain,
                update_domain: n.info.update_domain,
                capacity: n.info.capacity_vm_slots,
                used: used.get(&n.id).copied().unwrap_or(0),
            })
            .collect()
    }

    /// Where the instances of each of `roles` run, on servers that are not in
    /// HI, in one pass over the instances.
    pub(super) fn spreads(
        &self,
        roles: &std::collections::BTreeSet<(Name, Name)>,
    ) -> std::collections::BTreeMap<(Name, Name), RoleSpread> {
        let mut spreads: std::collections::BTreeMap<(Name, Name), RoleSpread> = roles
            .iter()
            .map(|r| (r.clone(), RoleSpread::default()))
            .collect();
        for i in self.instances.values() {
            let Some(node) = i.node().and_then(|n| self.nodes.get(n)) else {
                continue;
            };
            if node.state == NodeState::HumanInvestigate {
                continue;
            }
            if let Some(spread) = spreads.get_mut(&(i.id.deployment.clone(), i.id.role.clone())) {
                spread.add(&node.id, node.info.fault_domain, node.info.update_domain);
            }
        }
        spreads
    }

    /// Where the instances of one role run, on servers that are not in HI.
    pub(super) fn spread(&self, deployment: &Name, role: &Name) -> RoleSpread {
        let mut spread = RoleSpread::default();
        for i in self.instances.values() {
            if &i.id.deployment != deployment || &i.id.role != role {
                continue;
            }
            if let Some(n) = i.node().and_then(|n| self.nodes.get(n))
                && n.state != NodeState::HumanInvestigate
            {
                spread.add(&n.id, n.info.fault_domain, n.info.update_domain);
            }
        }
        spread
    }

    /// Creates `spec`, or rotates its certificates if it exists with the same
    /// shape. Refuses the whole request if any instance cannot be placed.
    pub fn deploy(
        &mut self,
        now: Moment,
        spec: DeploymentSpec,
    ) -> Result<(DeployOutcome, Vec<ClusterEvent>), CoreError> {
        self.management_allowed()?;
        if let Some(role) = spec.roles.iter().find(|r| r.instances == 0) {
            return Err(CoreError::ZeroInstances(role.name.clone()));
        }
        if let Some(existing) = self.deployments.get(&spec.name) {
            if !existing.same_shape(&spec) {
                return Err(CoreError::DeploymentExists(spec.name.clone()));
            }
            let changed: Vec<String> = spec
                .roles
                .iter()
                .zip(&existing.roles)
                .filter(|(new, old)| new.secrets_version() != old.secrets_version())
                .map(|(new, _)| new.name.to_string())
                .collect();
            let event = self.events.record(
                now,
                EventKind::DeploymentRotated,
                None,
                if changed.is_empty() {
                    format!("{}: redeployed unchanged", spec.name)
                } else {
                    format!(
                        "{}: new certificates for role(s) {}",
                        spec.name,
                        changed.join(", ")
                    )
                },
            );
            let mut events = vec![event];
            events.extend(self.certificates_together(now, &spec));
            self.deployments.insert(spec.name.clone(), spec);
            return Ok((DeployOutcome::Rotated, events));
        }

        let mut placer = placement::Placer::new(self.candidates());
        let free = placer.free();
        if spec.total_instances() > free {
            return Err(CoreError::NotEnoughSlots {
                needed: spec.total_instances(),
                free,
            });
        }
        let mut placed = Vec::new();
        for role in &spec.roles {
            let mut spread = RoleSpread::default();
            let nodes = placer
                .place(&mut spread, role.instances)
                .expect("total free slots were checked");
            for (index, node) in nodes.into_iter().enumerate() {
                placed.push((self.new_id(&spec.name, role, index as u32), node));
            }
        }
        let mut events = vec![self.events.record(
            now,
            EventKind::DeploymentCreated,
            None,
            format!(
                "{}: {}",
                spec.name,
                spec.roles
                    .iter()
                    .map(|r| format!("{} x{}", r.name, r.instances))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )];
        let ids = placed.iter().map(|(id, _)| id.clone()).collect();
        for (id, node) in placed {
            events.push(self.place_instance(now, id, node));
        }
        events.extend(self.certificates_together(now, &spec));
        self.deployments.insert(spec.name.clone(), spec);
        Ok((DeployOutcome::Created(ids), events))
    }

    fn new_id(&self, deployment: &Name, role: &RoleSpec, index: u32) -> InstanceId {
        InstanceId {
            deployment: deployment.clone(),
            role: role.name.clone(),
            index,
        }
    }

    fn place_instance(&mut self, now: Moment, id: InstanceId, node: NodeId) -> ClusterEvent {
        let event = self.events.record(
            now,
            EventKind::InstancePlaced,
            Some(&node),
            format!("{id} incarnation 1"),
        );
        self.instances
            .insert(id.clone(), RoleInstance::placed(id, node));
        event
    }

    /// Sets the instance count of one role.
    pub fn scale(
        &mut self,
        now: Moment,
        deployment: &str,
        role: &str,
        count: u32,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        self.management_allowed()?;
        let spec = Name::parse("deployment", deployment)
            .ok()
            .and_then(|n| self.deployments.get(&n))
            .ok_or_else(|| CoreError::NoSuchDeployment(deployment.to_owned()))?;
        let role_spec = spec
            .roles
            .iter()
            .find(|r| r.name.as_str() == role)
            .ok_or_else(|| CoreError::NoSuchRole(spec.name.clone(), role.to_owned()))?
            .clone();
        if count == 0 {
            return Err(CoreError::ZeroInstances(role_spec.name));
        }
        let name = spec.name.clone();
        let current = role_spec.instances;
        let mut events = Vec::new();
        if count > current {
            let mut placer = placement::Placer::new(self.candidates());
            let mut spread = self.spread(&name, &role_spec.name);
            let needed = count - current;
            let free = placer.free();
            let nodes = placer
                .place(&mut spread, needed)
                .ok_or(CoreError::NotEnoughSlots {
                    needed: u64::from(needed),
                    free,
                })?;
            for (offset, node) in nodes.into_iter().enumerate() {
                let id = self.new_id(&name, &role_spec, current + offset as u32);
                events.push(self.place_instance(now, id, node));
            }
        } else {
            self.instances.retain(|id, _| {
                !(id.deployment == name && id.role == role_spec.name && id.index >= count)
            });
        }
        let spec = self.deployments.get_mut(&name).expect("looked up above");
        if let Some(r) = spec.roles.iter_mut().find(|r| r.name == role_spec.name) {
            r.instances = count;
        }
        events.insert(
            0,
            self.events.record(
                now,
                EventKind::DeploymentScaled,
                None,
                format!("{name}.{}: {current} -> {count} instances", role_spec.name),
            ),
        );
        Ok(events)
    }

    /// Removes a deployment; its VMs stop as host agents converge.
    pub fn delete(&mut self, now: Moment, deployment: &str) -> Result<ClusterEvent, CoreError> {
        self.management_allowed()?;
        let name = Name::parse("deployment", deployment)
            .ok()
            .filter(|n| self.deployments.contains_key(n))
            .ok_or_else(|| CoreError::NoSuchDeployment(deployment.to_owned()))?;
        self.deployments.remove(&name);
        let before = self.instances.len();
        self.instances.retain(|id, _| id.deployment != name);
        Ok(self.events.record(
            now,
            EventKind::DeploymentDeleted,
            None,
            format!(
                "{name}: {} instances stopped",
                before - self.instances.len()
            ),
        ))
    }

    fn management_allowed(&self) -> Result<(), CoreError> {
        if self.state_lost.is_some() {
            return Err(CoreError::StateLost);
        }
        if self.cluster.switches.management {
            Ok(())
        } else {
            Err(CoreError::ManagementOff)
        }
    }

    /// The complete set of VMs `node` should run.
    pub(crate) fn desired_vms(&mut self, node: &NodeId) -> Vec<VmAssignment> {
        self.by_node.refresh(&mut self.instances);
        self.by_node
            .on(node)
            .filter_map(|id| self.instances.get(id))
            .map(|i| {
                let role = self
                    .deployments
                    .get(&i.id.deployment)
                    .and_then(|d| d.role(&i.id.role));
                VmAssignment {
                    id: i.id.clone(),
                    incarnation: i.incarnation(),
                    secrets_version: role.map(RoleSpec::secrets_version).unwrap_or_default(),
                    guest: role.map(|r| r.guest).unwrap_or_default(),
                }
            })
            .collect()
    }

    /// A digest of [`FabricCore::desired_vms`] without building it: what a
    /// heartbeat compares with the digest its host names, so that an
    /// unchanged set costs hashing the server's instances, not building,
    /// encoding and sending them. Never 0 (a host that names none sends 0).
    pub fn desired_vms_digest(&mut self, node: &NodeId) -> u64 {
        use std::hash::{Hash, Hasher};
        self.by_node.refresh(&mut self.instances);
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for i in self
            .by_node
            .on(node)
            .filter_map(|id| self.instances.get(id))
        {
            i.id.hash(&mut hasher);
            i.incarnation().hash(&mut hasher);
            let role = self
                .deployments
                .get(&i.id.deployment)
                .and_then(|d| d.role(&i.id.role));
            match role {
                Some(role) => {
                    role.guest.hash(&mut hasher);
                    // What secrets_version() is made of, without its string.
                    for c in &role.certificates {
                        c.fingerprint.hash(&mut hasher);
                    }
                }
                None => 0u8.hash(&mut hasher),
            }
        }
        hasher.finish().max(1)
    }

    /// Folds one heartbeat's VM reports from `node` into the instances.
    /// Reports of VMs not assigned to `node` are ignored: the host agent stops
    /// those VMs when it sees they are not desired.
    pub(crate) fn observe_vms(
        &mut self,
        now: Moment,
        node: &NodeId,
        reports: Vec<VmObservation>,
    ) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        for report in reports {
            // Marked changed below only if it is: most reports repeat the
            // last one.
            let id = report.id.clone();
            let Some(instance) = self.instances.get_mut_unmarked(&id) else {
                continue;
            };
            if instance.node() != Some(node) || report.incarnation < instance.incarnation() {
                continue;
            }
            let mut changed = false;
            let new_state = match report.state {
                VmState::Starting => InstanceState::Starting,
                VmState::Provisioned => InstanceState::Provisioned,
                VmState::Running => InstanceState::Running,
                VmState::Reinitializing => InstanceState::Reinitializing,
                VmState::Stopped => continue,
            };
            if report.incarnation > instance.incarnation() {
                events.push(self.events.record(
                    now,
                    EventKind::InstanceReinitialized,
                    Some(node),
                    format!(
                        "{} incarnation {} -> {}: {}",
                        report.id,
                        instance.incarnation(),
                        report.incarnation,
                        if report.detail.is_empty() {
                            "reinitialized by the host agent"
                        } else {
                            &report.detail
                        }
                    ),
                ));
                instance.follow_incarnation(report.incarnation);
                changed = true;
            }
            if new_state == InstanceState::Running && instance.state() != InstanceState::Running {
                events.push(self.events.record(
                    now,
                    EventKind::InstanceRunning,
                    Some(node),
                    format!(
                        "{} incarnation {} serving at {}",
                        report.id, report.incarnation, report.endpoint
                    ),
                ));
                changed = true;
                if let Some(healing) = instance.finish_healing() {
                    let took = now.since(healing.since.mono);
                    events.push(self.events.record_timed(
                        now,
                        EventKind::InstanceHealed,
                        Some(node),
                        format!(
                            "{} running again{} after {:.1}s",
                            report.id,
                            healing
                                .from
                                .map(|f| format!(" (moved off {f})"))
                                .unwrap_or_default(),
                            took.as_secs_f64()
                        ),
                        Some(took),
                    ));
                }
            }
            if instance.observe(report, new_state) || changed {
                self.instances.touch(&id);
            }
        }
        events
    }

    /// Checks that `node` may fetch the secrets of VM `vm` at `incarnation`,
    /// and returns the deployment and role whose certificates it may have.
    pub fn authorize_secrets(
        &self,
        node: &NodeId,
        vm: &InstanceId,
        incarnation: u64,
    ) -> Result<(Name, Name), CoreError> {
        match self.instances.get(vm) {
            Some(i) if i.node() == Some(node) && incarnation >= i.incarnation() => {
                Ok((vm.deployment.clone(), vm.role.clone()))
            }
            _ => Err(CoreError::NotAssigned {
                vm: vm.to_string(),
                incarnation,
                node: node.clone(),
            }),
        }
    }
}

/// The state status shows for `instance` on a server in state `server`
/// (`None`: on no server, or one the controller does not know): see
/// [`FabricCore::status_of`].
fn shown(instance: &RoleInstance, server: Option<NodeState>) -> InstanceState {
    match server {
        Some(NodeState::Unresponsive) => InstanceState::Unknown,
        Some(NodeState::HumanInvestigate) => InstanceState::Lost,
        Some(NodeState::Ready) | None => instance.state(),
    }
}
