//! Protobuf <-> domain conversions, with validation on the way in.
//!
//! Protobuf types stop here: everything past this module works with the
//! core's types, which cannot hold an invalid value.

use super::ApiError;
use fabric_core::{ClusterEvent, FaultCause, FaultReport, NodeId, NodeInfo, NodeRecord, NodeState};
use fabric_proto::v1 as pb;
use std::time::{Duration, SystemTime};

/// Longest free-text field accepted from a host agent.
const MAX_TEXT: usize = 256;
/// Upper bound on a server's declared VM slots; protects placement maths.
pub const MAX_VM_SLOTS: u32 = 1024;

/// A validated Register call.
#[derive(Debug)]
pub struct Registration {
    pub info: NodeInfo,
    pub boot_id: String,
}

pub(crate) fn text(field: &str, value: &str, required: bool) -> Result<String, ApiError> {
    if required && value.is_empty() {
        return Err(ApiError::InvalidArgument(format!("{field} is required")));
    }
    if value.len() > MAX_TEXT {
        return Err(ApiError::InvalidArgument(format!(
            "{field} is longer than {MAX_TEXT} bytes"
        )));
    }
    // Texts end up in events, logs and the dashboard: no line breaks or
    // terminal escapes that could forge a line there.
    if value.chars().any(char::is_control) {
        return Err(ApiError::InvalidArgument(format!(
            "{field} contains control characters"
        )));
    }
    Ok(value.to_owned())
}

/// The node id in a request is only a cross-check of the certificate.
pub fn check_claimed_node(claimed: &str, caller: &NodeId) -> Result<(), ApiError> {
    if claimed.is_empty() || claimed == caller.as_str() {
        Ok(())
    } else {
        Err(ApiError::PermissionDenied(format!(
            "certificate is for node {caller}, but the request claims node {claimed:?}"
        )))
    }
}

pub fn registration(req: pb::RegisterRequest, caller: &NodeId) -> Result<Registration, ApiError> {
    let node = req
        .node
        .ok_or_else(|| ApiError::InvalidArgument("node description is required".into()))?;
    check_claimed_node(&node.node_id, caller)?;
    if node.capacity_vm_slots > MAX_VM_SLOTS {
        return Err(ApiError::InvalidArgument(format!(
            "capacity_vm_slots {} is above the maximum of {MAX_VM_SLOTS}",
            node.capacity_vm_slots
        )));
    }
    Ok(Registration {
        info: NodeInfo {
            fault_domain: node.fault_domain,
            update_domain: node.update_domain,
            capacity_vm_slots: node.capacity_vm_slots,
            agent_version: text("agent_version", &node.agent_version, false)?,
            host_endpoint: text("host_endpoint", &node.host_endpoint, false)?,
            pid: node.pid,
            software: super::software::running(node.software)?,
            role_probe_host: match node.role_probe_host.as_str() {
                "" => None,
                host => {
                    Some(fabric_core::node::probe_host(host).map_err(ApiError::InvalidArgument)?)
                }
            },
        },
        boot_id: text("boot_id", &req.boot_id, true)?,
    })
}

pub fn boot_id(value: &str) -> Result<String, ApiError> {
    text("boot_id", value, true)
}

pub fn reason(value: &str) -> Result<String, ApiError> {
    text("reason", value, true)
}

pub fn agent_version(value: &str) -> Result<String, ApiError> {
    text("agent_version", value, false)
}

/// A host agent's fault report. An unknown cause number (a newer agent)
/// reads as unspecified, which the core treats as hardware: the cautious
/// reading, and the report is not lost.
pub fn fault_report(report: pb::FaultReport) -> Result<FaultReport, ApiError> {
    // A server runs at most MAX_VM_SLOTS VMs, so no honest report names more.
    if report.vm_ids.len() > MAX_VM_SLOTS as usize {
        return Err(ApiError::InvalidArgument(format!(
            "fault report names {} VMs, above the maximum of {MAX_VM_SLOTS} a server can run",
            report.vm_ids.len()
        )));
    }
    let cause = match pb::FaultCause::try_from(report.cause) {
        Ok(pb::FaultCause::GuestTimeouts) => FaultCause::GuestTimeouts,
        Ok(pb::FaultCause::GuestInitError) => FaultCause::GuestInitError,
        Ok(pb::FaultCause::HostHardware) => FaultCause::HostHardware,
        Ok(pb::FaultCause::Operator) => FaultCause::Operator,
        Ok(pb::FaultCause::Unspecified) | Err(_) => FaultCause::Unspecified,
    };
    let vms = report
        .vm_ids
        .iter()
        .map(|v| instance_id(v))
        .collect::<Result<_, _>>()?;
    let made = FaultReport::new(
        cause,
        reason(&report.reason)?,
        agent_version(&report.agent_version)?,
        vms,
    );
    // An older host agent may not say which boot reports; a newer one must
    // be its registered boot (checked by the core).
    Ok(if report.boot_id.is_empty() {
        made
    } else {
        made.from_boot(boot_id(&report.boot_id)?)
    })
}

pub fn duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration::try_from(d).unwrap_or(prost_types::Duration {
        seconds: i64::MAX,
        nanos: 0,
    })
}

pub fn timestamp(t: SystemTime) -> prost_types::Timestamp {
    prost_types::Timestamp::from(t)
}

pub fn node_state(s: NodeState) -> pb::NodeState {
    match s {
        NodeState::Ready => pb::NodeState::Ready,
        NodeState::Unresponsive => pb::NodeState::Unresponsive,
        NodeState::HumanInvestigate => pb::NodeState::HumanInvestigate,
    }
}

pub fn node_status(n: &NodeRecord, since_last_heartbeat: Duration, used: u32) -> pb::NodeStatus {
    pb::NodeStatus {
        node_id: n.id.to_string(),
        state: node_state(n.state) as i32,
        fault_domain: n.info.fault_domain,
        update_domain: n.info.update_domain,
        capacity_vm_slots: n.info.capacity_vm_slots,
        agent_version: n.info.agent_version.clone(),
        boot_id: n.boot_id.clone(),
        last_sequence: n.last_sequence,
        since_last_heartbeat: Some(duration(since_last_heartbeat)),
        host_endpoint: n.info.host_endpoint.clone(),
        pid: n.info.pid,
        state_since: Some(timestamp(n.state_since.wall)),
        restarts: n.restarts,
        last_fault_report: n.last_fault_report.clone().unwrap_or_default(),
        used_vm_slots: used,
        state_reason: n.state_reason.clone(),
        fault_held: n.hold.is_some(),
        software: Some(super::software::running_pb(&n.info.software)),
    }
}

pub fn event(e: &ClusterEvent) -> pb::ClusterEvent {
    pb::ClusterEvent {
        sequence: e.sequence,
        time: Some(timestamp(e.at.wall)),
        kind: e.kind.as_str().to_owned(),
        node_id: e.node.as_ref().map(|n| n.to_string()).unwrap_or_default(),
        reason: e.reason.clone(),
    }
}

// ---------------------------------------------------------------------------
// Deployments and VMs
// ---------------------------------------------------------------------------

use crate::secrets::RoleCertificate;
use fabric_core::{
    DeploymentSpec, FabricCore, InstanceId, InstanceState, Name, RoleInstance, RoleSpec,
    VmAssignment, VmObservation, VmState,
};

/// Largest PEM accepted for one certificate or key.
const MAX_PEM: usize = 64 * 1024;
/// Upper bound on one role's instance count.
pub const MAX_INSTANCES: u32 = 10_000;

/// A validated Deploy request: the spec for the core, the keys for the store.
pub struct ValidatedDeployment {
    pub spec: DeploymentSpec,
    pub secrets: Vec<(Name, Vec<RoleCertificate>)>,
}

/// Highest healing priority a service may declare.
pub const MAX_PRIORITY: u32 = 1000;

pub fn name(what: &str, value: &str) -> Result<Name, ApiError> {
    Name::parse(what, value).map_err(ApiError::InvalidArgument)
}

pub fn service_definition(
    definition: Option<pb::ServiceDefinition>,
    now: SystemTime,
) -> Result<ValidatedDeployment, ApiError> {
    let def = definition
        .ok_or_else(|| ApiError::InvalidArgument("service definition is required".into()))?;
    let deployment = name("service name", &def.name)?;
    let priority = def.priority;
    if priority > MAX_PRIORITY {
        return Err(ApiError::InvalidArgument(format!(
            "service {deployment}: priority {priority} is above the maximum of {MAX_PRIORITY}"
        )));
    }
    if def.roles.is_empty() {
        return Err(ApiError::InvalidArgument(format!(
            "service {deployment} has no roles"
        )));
    }
    let mut roles = Vec::new();
    let mut secrets = Vec::new();
    for role in def.roles {
        let role_name = name("role name", &role.name)?;
        if roles.iter().any(|r: &RoleSpec| r.name == role_name) {
            return Err(ApiError::InvalidArgument(format!(
                "service {deployment}: duplicate role name {role_name}"
            )));
        }
        if role.instances > MAX_INSTANCES {
            return Err(ApiError::InvalidArgument(format!(
                "role {role_name}: {} instances is above the maximum of {MAX_INSTANCES}",
                role.instances
            )));
        }
        if role.certificates.is_empty() {
            return Err(ApiError::InvalidArgument(format!(
                "role {role_name} has no certificate for its HTTPS endpoint"
            )));
        }
        let mut infos = Vec::new();
        let mut material = Vec::new();
        for cert in role.certificates {
            fabric_pki::identity::validate_label("certificate name", &cert.name)
                .map_err(|e| ApiError::InvalidArgument(format!("role {role_name}: {e}")))?;
            if infos
                .iter()
                .any(|i: &fabric_core::CertificateInfo| i.name == cert.name)
            {
                return Err(ApiError::InvalidArgument(format!(
                    "role {role_name}: duplicate certificate name {:?}",
                    cert.name
                )));
            }
            if cert.cert_pem.len() > MAX_PEM || cert.key_pem.len() > MAX_PEM {
                return Err(ApiError::InvalidArgument(format!(
                    "role {role_name}: certificate {:?} is larger than {MAX_PEM} bytes",
                    cert.name
                )));
            }
            let info =
                super::role_certificates::inspect(&cert.name, &cert.cert_pem, &cert.key_pem, now)
                    .map_err(|e| ApiError::InvalidArgument(format!("role {role_name}: {e}")))?;
            infos.push(info);
            material.push(RoleCertificate {
                name: cert.name,
                cert_pem: cert.cert_pem,
                key_pem: cert.key_pem.into(),
            });
        }
        let guest = fabric_core::Guest::parse(&role.guest)
            .map_err(|e| ApiError::InvalidArgument(format!("role {role_name}: {e}")))?;
        if guest == fabric_core::Guest::Waagent {
            // WALinuxAgent pairs each key with its certificate through
            // `openssl rsa`: an EC key stops its goal-state processing.
            if let Some(c) = material
                .iter()
                .find(|c| !super::role_certificates::is_rsa(&c.cert_pem))
            {
                return Err(ApiError::InvalidArgument(format!(
                    "role {role_name}: certificate {:?} is not RSA, and guest \"waagent\" \
                     (Azure's WALinuxAgent) opens RSA certificates only",
                    c.name
                )));
            }
        }
        secrets.push((role_name.clone(), material));
        roles.push(RoleSpec {
            guest,
            name: role_name,
            instances: role.instances,
            certificates: infos,
        });
    }
    Ok(ValidatedDeployment {
        spec: DeploymentSpec {
            priority,
            name: deployment,
            roles,
        },
        secrets,
    })
}

/// What a host remembers of the controller it last obeyed; `None` before the
/// first (or from an older host agent).
pub fn host_memory(
    cluster_id: &str,
    generation: u64,
) -> Result<Option<fabric_core::HostMemory>, ApiError> {
    if cluster_id.is_empty() {
        return Ok(None);
    }
    let id = text("known_cluster_id", cluster_id, true)?;
    Ok(Some(fabric_core::HostMemory {
        cluster_id: id,
        generation,
    }))
}

pub fn instance_id(value: &str) -> Result<InstanceId, ApiError> {
    InstanceId::parse(value).map_err(|e| ApiError::InvalidArgument(format!("vm_id: {e}")))
}

/// VM reports from a heartbeat. Malformed ones are dropped, not fatal: one
/// bad entry must not stop a server's liveness from being recorded.
///
/// A host runs at most [`MAX_VM_SLOTS`] VMs, so no more reports are read. An
/// endpoint that is not `IP:PORT` is dropped: host agents check their guests'
/// endpoints, and this is the second wall, so that no text a guest chose is
/// ever shown to operators as an instance's address.
pub fn vm_observations(reports: Vec<pb::VmReport>) -> Vec<VmObservation> {
    reports
        .into_iter()
        .take(MAX_VM_SLOTS as usize)
        .filter_map(|r| {
            let state = match pb::VmState::try_from(r.state).ok()? {
                pb::VmState::VmStarting => VmState::Starting,
                pb::VmState::VmProvisioned => VmState::Provisioned,
                pb::VmState::VmRunning => VmState::Running,
                pb::VmState::VmReinitializing => VmState::Reinitializing,
                pb::VmState::VmStopped => VmState::Stopped,
                pb::VmState::Unspecified => return None,
            };
            Some(VmObservation {
                id: InstanceId::parse(&r.vm_id).ok()?,
                incarnation: r.incarnation,
                state,
                pid: r.pid,
                endpoint: socket_address(r.endpoint),
                detail: truncate(r.detail),
                transfer_cert_fingerprint: truncate(r.transfer_cert_fingerprint),
            })
        })
        .collect()
}

/// `text` if it is an `IP:PORT`, else nothing.
fn socket_address(text: String) -> String {
    if text.len() <= 64 && text.parse::<std::net::SocketAddr>().is_ok() {
        text
    } else {
        String::new()
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > MAX_TEXT {
        let mut end = MAX_TEXT;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

pub fn assignment(a: &VmAssignment) -> pb::VmAssignment {
    pb::VmAssignment {
        vm_id: a.id.to_string(),
        deployment: a.id.deployment.to_string(),
        role: a.id.role.to_string(),
        instance: a.id.index,
        incarnation: a.incarnation,
        secrets_version: a.secrets_version.clone(),
        guest: a.guest.as_str().into(),
    }
}

/// An instance as status shows it; `shown` is [`fabric_core::FabricCore::status_of`].
pub fn instance_status(i: &RoleInstance, shown: InstanceState) -> pb::RoleInstanceStatus {
    pb::RoleInstanceStatus {
        instance_id: i.id.to_string(),
        deployment: i.id.deployment.to_string(),
        role: i.id.role.to_string(),
        index: i.id.index,
        node_id: i.node().map(|n| n.to_string()).unwrap_or_default(),
        state: shown.as_str().to_owned(),
        incarnation: i.incarnation(),
        endpoint: i.endpoint().to_owned(),
        pid: i.pid(),
        detail: i.detail().to_owned(),
        transfer_cert_fingerprint: i.transfer_cert_fingerprint().to_owned(),
        healing_from: i
            .healing_from()
            .map(ToString::to_string)
            .unwrap_or_default(),
        guest: String::new(),
    }
}

/// The guest of `role` as status names it: empty for Fabric's.
pub fn guest_name(role: Option<&fabric_core::RoleSpec>) -> String {
    match role.map(|r| r.guest).unwrap_or_default() {
        fabric_core::Guest::Fabric => String::new(),
        other => other.as_str().to_owned(),
    }
}

pub fn incident(i: &fabric_core::cluster::Incident) -> pb::Incident {
    pb::Incident {
        reason: i.signature.reason.clone(),
        agent_version: i.signature.agent_version.clone(),
        nodes: i.nodes.iter().map(ToString::to_string).collect(),
        roles: i.roles.iter().map(|(d, r)| format!("{d}.{r}")).collect(),
        software_fault: i.classified.is_some(),
        first_seen: Some(timestamp(i.first_seen.wall)),
    }
}

pub fn expiring_certificate(
    c: &fabric_core::expiry::ExpiringCertificate,
) -> pb::ExpiringCertificate {
    pb::ExpiringCertificate {
        deployment: c
            .deployment
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        role: c.role.as_ref().map(ToString::to_string).unwrap_or_default(),
        certificate: c.certificate.clone(),
        not_after: Some(timestamp(c.not_after)),
        level: c.level.as_str().to_owned(),
        advice: c.advice(),
    }
}

pub fn switches(s: &fabric_core::Switches) -> pb::Switches {
    pb::Switches {
        healing: s.healing,
        updates: s.updates,
        management: s.management,
    }
}

/// A deployment with those of `page`'s instances that are its own.
pub fn deployment_status(
    spec: &DeploymentSpec,
    core: &FabricCore,
    page: &[&RoleInstance],
) -> pb::DeploymentStatus {
    pb::DeploymentStatus {
        name: spec.name.to_string(),
        instances: page
            .iter()
            .filter(|i| i.id.deployment == spec.name)
            .map(|i| pb::RoleInstanceStatus {
                guest: guest_name(spec.role(&i.id.role)),
                ..instance_status(i, core.status_of(i))
            })
            .collect(),
        certificate_not_after: spec
            .roles
            .iter()
            .flat_map(|r| {
                r.certificates
                    .iter()
                    .map(move |c| (format!("{}/{}", r.name, c.name), timestamp(c.not_after)))
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(node_id: &str, boot: &str, slots: u32) -> pb::RegisterRequest {
        pb::RegisterRequest {
            node: Some(pb::NodeDescription {
                node_id: node_id.into(),
                capacity_vm_slots: slots,
                ..Default::default()
            }),
            boot_id: boot.into(),
        }
    }

    #[test]
    fn registration_is_validated() {
        let me = NodeId::new("host-2");
        assert!(registration(request("host-2", "b", 4), &me).is_ok());
        assert!(registration(request("", "b", 4), &me).is_ok());
        assert!(matches!(
            registration(request("host-3", "b", 4), &me),
            Err(ApiError::PermissionDenied(_))
        ));
        assert!(matches!(
            registration(request("", "", 4), &me),
            Err(ApiError::InvalidArgument(m)) if m.contains("boot_id")
        ));
        assert!(matches!(
            registration(request("", "b", MAX_VM_SLOTS + 1), &me),
            Err(ApiError::InvalidArgument(m)) if m.contains("capacity")
        ));
        let no_node = pb::RegisterRequest {
            node: None,
            boot_id: "b".into(),
        };
        assert!(registration(no_node, &me).is_err());
    }

    #[test]
    fn a_service_priority_is_bounded() {
        let definition = |priority| pb::ServiceDefinition {
            name: "web".into(),
            roles: vec![],
            priority,
        };
        // Checked before the roles, so an empty service shows which error
        // each priority meets.
        let err = |priority| {
            service_definition(Some(definition(priority)), SystemTime::UNIX_EPOCH)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default()
        };
        assert!(
            err(MAX_PRIORITY).contains("has no roles"),
            "{}",
            err(MAX_PRIORITY)
        );
        assert!(
            err(MAX_PRIORITY + 1).contains("priority 1001 is above the maximum of 1000"),
            "{}",
            err(MAX_PRIORITY + 1)
        );
    }

    #[test]
    fn a_role_probe_host_is_a_name_or_an_address_and_nothing_more() {
        let me = NodeId::new("host-2");
        let with = |host: &str| {
            let mut r = request("host-2", "b", 4);
            r.node.as_mut().unwrap().role_probe_host = host.into();
            registration(r, &me).map(|r| r.info.role_probe_host)
        };
        assert_eq!(with("").unwrap(), None);
        assert_eq!(with("host-a2").unwrap().as_deref(), Some("host-a2"));
        assert_eq!(with("10.0.0.7").unwrap().as_deref(), Some("10.0.0.7"));
        assert_eq!(with("fd00::7").unwrap().as_deref(), Some("fd00::7"));
        for bad in ["host:80", "evil/path", "a@b", "-x", "x\n", &"a".repeat(300)] {
            assert!(
                matches!(with(bad), Err(ApiError::InvalidArgument(m)) if m.contains("probe host")),
                "{bad:?} accepted"
            );
        }
    }

    fn fault(cause: i32, vms: usize) -> pb::FaultReport {
        pb::FaultReport {
            node_id: String::new(),
            boot_id: "b".into(),
            reason: "guest agent never connected within 25m".into(),
            agent_version: "0.1.0".into(),
            vm_ids: (0..vms).map(|i| format!("web.a.{i}")).collect(),
            cause,
        }
    }

    #[test]
    fn vm_reports_show_only_addresses_and_are_bounded() {
        let report = |endpoint: &str| pb::VmReport {
            vm_id: "web.frontend.0".into(),
            incarnation: 1,
            state: pb::VmState::VmRunning as i32,
            endpoint: endpoint.into(),
            ..Default::default()
        };
        let seen = vm_observations(vec![
            report("127.0.0.1:8443"),
            report("<script>alert(1)</script>"),
            report(&"1".repeat(4 << 20)),
        ]);
        let endpoints: Vec<_> = seen.iter().map(|o| o.endpoint.as_str()).collect();
        assert_eq!(endpoints, ["127.0.0.1:8443", "", ""]);
        let many = vec![report("127.0.0.1:1"); MAX_VM_SLOTS as usize + 10];
        assert_eq!(vm_observations(many).len(), MAX_VM_SLOTS as usize);
    }

    #[test]
    fn fault_reports_keep_their_cause_and_bound_their_vms() {
        let timeouts = fault(pb::FaultCause::GuestTimeouts as i32, 1);
        assert_eq!(
            fault_report(timeouts).unwrap().cause,
            FaultCause::GuestTimeouts
        );
        // Not given, or a number this controller does not know: the report
        // is kept, read as unspecified (the core treats it as hardware).
        for unknown in [0, 99] {
            assert_eq!(
                fault_report(fault(unknown, 1)).unwrap().cause,
                FaultCause::Unspecified
            );
        }
        assert!(fault_report(fault(1, MAX_VM_SLOTS as usize)).is_ok());
        assert!(matches!(
            fault_report(fault(1, MAX_VM_SLOTS as usize + 1)),
            Err(ApiError::InvalidArgument(m)) if m.contains("VMs")
        ));
    }
}
