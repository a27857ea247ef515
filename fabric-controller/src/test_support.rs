//! What the controller's unit tests share: a one-role deployment, a
//! server description, a moment in test time, and a core whose decisions
//! stores save.

use crate::api::convert::ValidatedDeployment;
use crate::store::{ChangeRecord, PersistedState};
use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, Moment, Name, NodeId, NodeInfo,
    RoleSpec,
};
use std::time::{Duration, SystemTime};

/// Deployment `name`: one role `r` of one instance, with a certificate far
/// from expiry.
pub fn deployment(name: &str) -> ValidatedDeployment {
    ValidatedDeployment {
        spec: DeploymentSpec {
            priority: 0,
            name: Name::parse("deployment", name).unwrap(),
            roles: vec![RoleSpec {
                guest: Default::default(),
                name: Name::parse("role", "r").unwrap(),
                instances: 1,
                certificates: vec![CertificateInfo {
                    name: "https".into(),
                    fingerprint: "aa".into(),
                    not_after: SystemTime::now() + Duration::from_secs(1 << 30),
                }],
            }],
        },
        secrets: Vec::new(),
    }
}

/// A server in fault and update domain `domain` with `slots` VM slots.
pub fn node(domain: u32, slots: u32) -> NodeInfo {
    NodeInfo {
        fault_domain: domain,
        update_domain: domain,
        capacity_vm_slots: slots,
        agent_version: "test".into(),
        host_endpoint: "127.0.0.1:1".into(),
        role_probe_host: None,
        pid: 1,
        software: Default::default(),
    }
}

/// `s` seconds into test time, on both clocks.
pub fn at(s: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(s),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(s),
    }
}

/// A core that makes decisions, and the states its saves stand for.
pub struct Cluster {
    pub core: FabricCore,
    pub generation: u64,
}

impl Cluster {
    pub fn new() -> Self {
        let mut core = FabricCore::new(CoreConfig::default(), at(0));
        for i in 0..3 {
            core.register(at(0), NodeId::new(format!("host-{i}")), node(i, 40), "b");
        }
        Self {
            core,
            generation: 0,
        }
    }

    /// One more decision (a deployment of two instances).
    pub fn decide(&mut self, n: u64) {
        let mut d = deployment(&format!("d{n}"));
        d.spec.roles[0].instances = 2;
        self.core.deploy(at(n), d.spec).unwrap();
    }

    pub fn whole(&self) -> PersistedState {
        let mut core = self.core.snapshot();
        core.identity.generation = self.generation;
        PersistedState {
            core,
            secrets: vec![],
        }
    }

    pub fn full(&mut self) -> PersistedState {
        self.generation += 1;
        let state = self.whole();
        self.core.all_saved();
        state
    }

    pub fn changes(&mut self) -> ChangeRecord {
        self.generation += 1;
        ChangeRecord {
            core: self.core.take_changes(self.generation),
            secrets: None,
        }
    }
}
