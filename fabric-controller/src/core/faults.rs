//! Fault reports from host agents, and telling software faults from hardware.
//!
//! In 2012 every "server faulty" report moved its server to Human
//! Investigate, although the cause was a guest agent bug: healing then moved
//! the VMs to healthy servers, where the bug struck again. With
//! classification on (the default), a report whose reason is a guest-agent
//! failure holds its server in service for `classification_hold`; if servers
//! numbering `software_fault_min_nodes` report the same reason at the same
//! agent version, it is a software fault: none of them goes to HI, healing of
//! the affected roles pauses, and an event names the common cause. A report
//! that stays alone goes to HI when its hold runs out. Any other reason (the
//! host agent suspects its hardware) moves the server to HI at once.

use super::CoreError;
use super::clock::Moment;
use super::cluster::{FaultSignature, Incident};
use super::deployment::InstanceId;
use super::events::{ClusterEvent, EventKind};
use super::fabric::{FabricCore, secs};
use super::node::{FaultHold, NodeId, NodeState};
use std::collections::BTreeSet;

/// Reasons host agents give for guest-software failures start with this.
pub const GUEST_REASON_PREFIX: &str = "guest agent";

impl FabricCore {
    /// A host agent reports its server faulty, naming the VMs whose failures
    /// led to it (may be empty).
    pub fn report_fault(
        &mut self,
        now: Moment,
        id: &NodeId,
        reason: &str,
        agent_version: &str,
        vms: &[InstanceId],
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let Some(node) = self.nodes.get_mut(id) else {
            return Err(CoreError::UnknownNode(id.clone()));
        };
        node.last_fault_report = Some(format!("{reason} (agent {agent_version})"));
        let already_hi = node.state == NodeState::HumanInvestigate;
        let mut events = vec![self.events.record(
            now,
            EventKind::NodeFaultReported,
            Some(id),
            format!("host agent reports the server faulty: {reason} (agent {agent_version})"),
        )];
        if already_hi {
            return Ok(events);
        }
        let guest_software = reason.starts_with(GUEST_REASON_PREFIX);
        if !self.config.fault_classification || !guest_software {
            let why = if self.config.fault_classification {
                format!("fault reported: {reason}")
            } else {
                format!(
                    "fault reported: {reason} (fault classification off: every report moves its server to HI)"
                )
            };
            events.extend(self.enter_hi(now, id, why));
            return Ok(events);
        }

        let signature = FaultSignature {
            reason: reason.to_owned(),
            agent_version: agent_version.to_owned(),
        };
        let roles: BTreeSet<_> = vms
            .iter()
            .map(|vm| (vm.deployment.clone(), vm.role.clone()))
            .collect();
        let incident = self
            .cluster
            .incidents
            .entry(signature.clone())
            .or_insert_with(|| Incident {
                signature: signature.clone(),
                nodes: BTreeSet::new(),
                roles: BTreeSet::new(),
                first_seen: now,
                classified: None,
            });
        incident.nodes.insert(id.clone());
        incident.roles.extend(roles);

        if incident.classified.is_some() {
            events.push(self.events.record(
                now,
                EventKind::NodeFaultHeld,
                Some(id),
                format!(
                    "matches the known software fault {reason:?} (agent {agent_version}): \
                     server kept in service"
                ),
            ));
            return Ok(events);
        }
        if incident.nodes.len() >= self.config.software_fault_min_nodes as usize {
            incident.classified = Some(now);
            let nodes: Vec<String> = incident.nodes.iter().map(ToString::to_string).collect();
            let roles: Vec<String> = incident
                .roles
                .iter()
                .map(|(d, r)| format!("{d}.{r}"))
                .collect();
            let why = format!(
                "software fault: {} servers ({}) report {reason:?} from guest agent version \
                 {agent_version}; servers kept in service, healing paused for {}",
                nodes.len(),
                nodes.join(", "),
                if roles.is_empty() {
                    "no role".to_owned()
                } else {
                    roles.join(", ")
                }
            );
            let reporters = incident.nodes.clone();
            for n in reporters {
                if let Some(node) = self.nodes.get_mut(&n) {
                    node.hold = None;
                }
            }
            events.push(self.events.record(now, EventKind::SoftwareFault, None, why));
            return Ok(events);
        }
        let until = now.mono + self.config.classification_hold;
        if let Some(node) = self.nodes.get_mut(id) {
            node.hold = Some(FaultHold { signature, until });
        }
        events.push(self.events.record(
            now,
            EventKind::NodeFaultHeld,
            Some(id),
            format!(
                "guest-software reason: kept in service for up to {} while other servers are \
                 watched for the same cause",
                secs(self.config.classification_hold)
            ),
        ));
        Ok(events)
    }
}
