//! Fuzzing the edge (issue 13): arbitrary bytes decoded as every message a
//! host, guest or operator sends, then through its validator. Nothing may
//! panic, and whatever a validator accepts is within its bounds. Run by
//! `cargo test` (proptest's 256 cases per property), so CI runs it on every
//! change; `PROPTEST_CASES=100000` runs it longer.

use super::convert;
use fabric_core::NodeId;
use fabric_proto::v1 as pb;
use proptest::prelude::*;
use prost::Message;
use std::time::SystemTime;

/// Bytes that are often a valid message of some shape: raw noise, and
/// encodings of messages built from arbitrary strings.
fn noise() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..2048)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,300}",
        "[a-z0-9.\\-_]{0,40}",
        "(127\\.0\\.0\\.1|6\\.6\\.6\\.6|\\[::1\\]):[0-9]{1,6}",
    ]
}

proptest! {
    #[test]
    fn node_messages_never_panic(bytes in noise()) {
        let me = NodeId::new("host-1");
        if let Ok(m) = pb::RegisterRequest::decode(bytes.as_slice())
            && let Ok(r) = convert::registration(m, &me)
        {
            prop_assert!(r.info.capacity_vm_slots <= convert::MAX_VM_SLOTS);
        }
        if let Ok(m) = pb::HeartbeatRequest::decode(bytes.as_slice()) {
            let _ = convert::boot_id(&m.boot_id);
            let _ = convert::host_memory(&m.known_cluster_id, m.known_generation);
            let seen = convert::vm_observations(m.vms);
            prop_assert!(seen.len() <= convert::MAX_VM_SLOTS as usize);
            for o in seen {
                prop_assert!(o.endpoint.is_empty() || o.endpoint.parse::<std::net::SocketAddr>().is_ok());
                prop_assert!(o.detail.len() <= 256);
            }
        }
        if let Ok(m) = pb::FaultReport::decode(bytes.as_slice())
            && let Ok(r) = convert::fault_report(m)
        {
            prop_assert!(r.reason.len() <= 256);
            prop_assert!(r.vms.len() <= convert::MAX_VM_SLOTS as usize);
        }
    }

    #[test]
    fn operator_messages_never_panic(bytes in noise()) {
        if let Ok(m) = pb::DeployRequest::decode(bytes.as_slice()) {
            let _ = convert::service_definition(m.service, SystemTime::now());
        }
        if let Ok(m) = pb::ScaleRequest::decode(bytes.as_slice()) {
            let _ = convert::name("deployment", &m.deployment);
        }
    }

    #[test]
    fn validators_never_panic_and_keep_their_bounds(
        boot in text(),
        reason in text(),
        version in text(),
        vm in text(),
        endpoint in text(),
        slots in any::<u32>(),
        cause in any::<i32>(),
    ) {
        let me = NodeId::new("host-1");
        let reg = pb::RegisterRequest {
            node: Some(pb::NodeDescription {
                node_id: "host-1".into(),
                capacity_vm_slots: slots,
                agent_version: version.clone(),
                host_endpoint: endpoint.clone(),
                ..Default::default()
            }),
            boot_id: boot.clone(),
        };
        if let Ok(r) = convert::registration(reg, &me) {
            prop_assert!(r.info.capacity_vm_slots <= convert::MAX_VM_SLOTS);
            prop_assert!(!r.info.agent_version.chars().any(char::is_control));
        }
        let report = pb::FaultReport {
            boot_id: boot,
            reason,
            agent_version: version,
            vm_ids: vec![vm.clone()],
            cause,
            ..Default::default()
        };
        if let Ok(r) = convert::fault_report(report) {
            prop_assert!(!r.reason.chars().any(char::is_control));
        }
        let seen = convert::vm_observations(vec![pb::VmReport {
            vm_id: vm,
            endpoint,
            state: cause,
            ..Default::default()
        }]);
        for o in seen {
            prop_assert!(o.endpoint.is_empty() || o.endpoint.parse::<std::net::SocketAddr>().is_ok());
        }
    }
}
