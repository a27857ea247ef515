//! Fault reports from host agents, and telling software faults from hardware.
//!
//! In 2012 every "server faulty" report moved its server to Human
//! Investigate, although the cause was a guest agent bug: healing then moved
//! the VMs to healthy servers, where the bug struck again. With
//! classification on (the default), a report whose cause is a guest-agent
//! failure ([`FaultCause::is_guest_software`]) holds its server in service for
//! `classification_hold`; if servers numbering `software_fault_min_nodes`
//! report the same reason at the same agent version, it is a software fault:
//! none of them goes to HI, healing of the affected roles pauses, and an event
//! names the common cause. A report that stays alone goes to HI when its hold
//! runs out. Any other cause (the host agent suspects its hardware) moves the
//! server to HI at once. The cause is a typed field of the report, set by the
//! host agent where it sees the failure; the reason text is for people only.

use super::CoreError;
use super::clock::Moment;
use super::cluster::{FaultSignature, Incident};
use super::deployment::InstanceId;
use super::events::{ClusterEvent, EventKind};
use super::fabric::{FabricCore, secs};
use super::node::{FaultHold, NodeId, NodeState};
use std::collections::BTreeSet;

/// Why a host agent reports its server faulty, as the host agent saw it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultCause {
    /// Clean VMs whose guest agents never connected or fell silent, struck
    /// `clean_vm_strikes` times (the 2012 report).
    GuestTimeouts,
    /// Clean VMs whose guest agents reported an init error or sent an
    /// unusable Hello.
    GuestInitError,
    /// The host agent sees trouble on its own server (it cannot start VMs).
    HostHardware,
    /// An operator asked for the report.
    Operator,
    /// The host agent did not say (an older agent): treated as hardware, the
    /// cautious reading.
    Unspecified,
}

impl FaultCause {
    /// Whether the fault lies in guest software, so that the same report from
    /// several servers points at the software rather than at each server.
    pub fn is_guest_software(self) -> bool {
        matches!(self, FaultCause::GuestTimeouts | FaultCause::GuestInitError)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FaultCause::GuestTimeouts => "guest timeouts",
            FaultCause::GuestInitError => "guest init error",
            FaultCause::HostHardware => "host hardware",
            FaultCause::Operator => "operator",
            FaultCause::Unspecified => "unspecified",
        }
    }
}

/// A host agent's report that its server is faulty, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultReport {
    pub cause: FaultCause,
    /// In words, for people; classification compares it but never parses it.
    pub reason: String,
    /// The version of the agent whose failure is reported.
    pub agent_version: String,
    /// The VMs whose failures led to the report (may be empty).
    pub vms: Vec<InstanceId>,
    /// The boot of the host agent that made the report, when it said: a
    /// report from a boot other than the registered one (a delayed call of
    /// a host agent since restarted) is refused, not acted on.
    pub boot_id: Option<String>,
}

impl FaultReport {
    pub fn new(
        cause: FaultCause,
        reason: impl Into<String>,
        agent_version: impl Into<String>,
        vms: Vec<InstanceId>,
    ) -> Self {
        Self {
            cause,
            reason: reason.into(),
            agent_version: agent_version.into(),
            vms,
            boot_id: None,
        }
    }

    /// The same report, as made by host agent boot `boot_id`.
    pub fn from_boot(mut self, boot_id: impl Into<String>) -> Self {
        self.boot_id = Some(boot_id.into());
        self
    }
}

impl FabricCore {
    /// Input: a host agent reports its server faulty.
    pub fn report_fault(
        &mut self,
        now: Moment,
        id: &NodeId,
        report: &FaultReport,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let FaultReport {
            cause,
            reason,
            agent_version,
            vms,
            boot_id,
        } = report;
        let Some(node) = self.nodes.get_mut(id) else {
            return Err(CoreError::UnknownNode(id.clone()));
        };
        if let Some(boot) = boot_id
            && *boot != node.boot_id
        {
            return Err(CoreError::OtherBoot {
                node: id.clone(),
                reported: boot.clone(),
            });
        }
        node.last_fault_report = Some(format!("{reason} (agent {agent_version})"));
        let already_hi = node.state == NodeState::HumanInvestigate;
        let mut events = vec![self.events.record(
            now,
            EventKind::NodeFaultReported,
            Some(id),
            format!(
                "host agent reports the server faulty ({}): {reason} (agent {agent_version})",
                cause.as_str()
            ),
        )];
        if already_hi {
            return Ok(events);
        }
        if !self.config.fault_classification || !cause.is_guest_software() {
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
