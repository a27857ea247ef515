//! A controller's state of a given size and one decision's change, for the
//! store benchmarks (store-cost, replicas): one home for both.

use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, Moment, Name, NodeId, NodeInfo,
    RoleSpec, VmObservation, VmState,
};
use std::time::{Duration, SystemTime};

/// `secs` seconds into the model's time, on both clocks.
pub fn at(secs: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

/// `vms` VMs, in deployments of 100 on servers of 8 slots.
pub fn cluster(vms: u32) -> FabricCore {
    let mut core = FabricCore::new(CoreConfig::default(), at(0));
    let hosts = vms.div_ceil(8);
    for i in 1..=hosts {
        core.register(
            at(0),
            NodeId::new(format!("host-{i}")),
            NodeInfo {
                fault_domain: i % 10,
                update_domain: i % 5,
                capacity_vm_slots: 8,
                agent_version: "0.1.0".into(),
                host_endpoint: format!("10.0.{}.{}:7500", i / 250, i % 250),
                role_probe_host: None,
                pid: i,
                software: Default::default(),
            },
            "boot",
        );
    }
    for d in 0..vms / 100 {
        let spec = DeploymentSpec {
            priority: 0,
            name: Name::parse("d", &format!("svc-{d}")).unwrap(),
            roles: vec![RoleSpec {
                guest: Default::default(),
                name: Name::parse("r", "web").unwrap(),
                instances: 100,
                certificates: vec![CertificateInfo {
                    name: "https".into(),
                    fingerprint: "ab".repeat(32),
                    not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
                }],
            }],
        };
        core.deploy(at(1), spec).expect("deploy");
    }
    core
}

/// One decision's worth of change: host `i`'s first VM reported Running.
pub fn one_event(core: &mut FabricCore, round: u64) {
    let hosts = core.nodes().count() as u64;
    let host = NodeId::new(format!("host-{}", 1 + round % hosts));
    let Some(vm) = core
        .instances()
        .find(|i| i.node() == Some(&host))
        .map(|i| (i.id.clone(), i.incarnation()))
    else {
        return;
    };
    let report = VmObservation {
        id: vm.0,
        incarnation: vm.1,
        state: if round.is_multiple_of(2) {
            VmState::Running
        } else {
            VmState::Starting
        },
        endpoint: format!("10.0.0.1:{}", 20_000 + round % 1000),
        pid: round as u32,
        detail: String::new(),
        transfer_cert_fingerprint: String::new(),
    };
    core.heartbeat(at(2 + round), &host, "boot", 1 + round, vec![report]);
}
