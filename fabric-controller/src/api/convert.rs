//! Protobuf <-> domain conversions, with validation on the way in.
//!
//! Protobuf types stop here: everything past this module works with the
//! core's types, which cannot hold an invalid value.

use super::ApiError;
use crate::core::{ClusterEvent, NodeId, NodeInfo, NodeRecord, NodeState};
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

fn text(field: &str, value: &str, required: bool) -> Result<String, ApiError> {
    if required && value.is_empty() {
        return Err(ApiError::InvalidArgument(format!("{field} is required")));
    }
    if value.len() > MAX_TEXT {
        return Err(ApiError::InvalidArgument(format!(
            "{field} is longer than {MAX_TEXT} bytes"
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

pub fn node_status(n: &NodeRecord, since_last_heartbeat: Duration) -> pb::NodeStatus {
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
}
