//! What durability costs the controller: the time to save its state per
//! decision, and the memory and disk it uses per 1,000 VMs.
//!
//! The baseline, in the same run, is serializing the same state to memory
//! without touching the disk, so fsync's share is visible as a ratio.
//!
//! Run: `cargo run --release -p fabric-bench --bin store-cost`.

use fabric_controller::store::file::FileStore;
use fabric_controller::store::{PersistedState, Store};
use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, Moment, Name, NodeId, NodeInfo,
    RoleSpec,
};
use std::time::{Duration, Instant, SystemTime};

fn at(secs: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

fn cluster(vms: u32) -> FabricCore {
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

fn main() {
    println!("Controller durability cost (release build; FileStore with fsync)");
    for vms in [1_000u32, 10_000] {
        let before = rss_kib();
        let core = cluster(vms);
        let after = rss_kib();
        let state = PersistedState {
            core: core.snapshot(),
            secrets: vec![],
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = FileStore::new(dir.path()).expect("store");
        let rounds = if vms > 5_000 { 20 } else { 100 };
        let started = Instant::now();
        for _ in 0..rounds {
            let _ = serde_json::to_vec(&state).expect("encode");
        }
        let encode = started.elapsed() / rounds;
        let started = Instant::now();
        for _ in 0..rounds {
            store.save(&state).expect("save");
        }
        let save = started.elapsed() / rounds;
        let size = std::fs::metadata(store.path()).expect("file").len();
        let started = Instant::now();
        let loaded = store.load().expect("load").expect("state");
        let load = started.elapsed();
        assert_eq!(loaded.core.instances.len(), vms as usize);
        println!(
            "  {vms:>6} VMs: save {:.2} ms per decision (encode only {:.2} ms, x{:.1}), load {:.1} ms, \
             file {:.0} KiB ({:.0} KiB per 1,000 VMs), core memory ~{} KiB ({:.0} KiB per 1,000 VMs)",
            save.as_secs_f64() * 1e3,
            encode.as_secs_f64() * 1e3,
            save.as_secs_f64() / encode.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            size as f64 / 1024.0,
            size as f64 / 1024.0 / (f64::from(vms) / 1000.0),
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / (f64::from(vms) / 1000.0),
        );
    }
}
