//! What the controller's unit tests share: a one-role deployment, a
//! server description and a moment in test time.

use crate::api::convert::ValidatedDeployment;
use fabric_core::{CertificateInfo, DeploymentSpec, Moment, Name, NodeInfo, RoleSpec};
use std::time::{Duration, SystemTime};

/// Deployment `name`: one role `r` of one instance, with a certificate far
/// from expiry.
pub fn deployment(name: &str) -> ValidatedDeployment {
    ValidatedDeployment {
        spec: DeploymentSpec {
            priority: 0,
            name: Name::parse("deployment", name).unwrap(),
            roles: vec![RoleSpec {
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
