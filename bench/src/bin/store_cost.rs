//! What durability costs the controller: the time to save its state per
//! decision, and the memory and disk it uses per 1,000 VMs.
//!
//! The baseline, in the same run, is writing the whole state per decision
//! (what the single-file store did); the figure is the log store's append of
//! what the decision changed.
//!
//! Run: `cargo run --release -p fabric-bench --bin store-cost`.

use fabric_controller::store::log::LogStore;
use fabric_controller::store::{ChangeRecord, PersistedState, Save, Store};
use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, Moment, Name, NodeId, NodeInfo,
    RoleSpec, VmObservation, VmState,
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

/// One decision's worth of change: host `i`'s first VM reported Running.
fn one_event(core: &mut FabricCore, round: u64) {
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

fn main() {
    println!(
        "Controller durability cost per decision (release build; fsync): the log store's \
         append against the full state file it replaced, in the same run"
    );
    for vms in [1_000u32, 10_000, 100_000] {
        let before = rss_kib();
        let mut core = cluster(vms);
        let after = rss_kib();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut store = LogStore::new(dir.path()).expect("store");
        let rounds = if vms >= 100_000 { 5 } else { 20 };

        // The baseline: a whole state per decision (the single-file store).
        let mut generation = 0;
        let started = Instant::now();
        for round in 0..rounds {
            one_event(&mut core, round);
            generation += 1;
            let mut snapshot = core.snapshot();
            snapshot.identity.generation = generation;
            let state = PersistedState {
                core: snapshot,
                secrets: vec![],
            };
            store.save(Save::Full(&state)).expect("save");
            core.all_saved();
        }
        let full = started.elapsed() / rounds as u32;
        let size = std::fs::metadata(store.path()).expect("file").len();

        // O(change): what one decision changed, appended.
        let appends = 200u64;
        let started = Instant::now();
        let mut bytes = 0;
        for round in rounds..rounds + appends {
            one_event(&mut core, round);
            generation += 1;
            let record = ChangeRecord {
                core: core.take_changes(generation),
                secrets: None,
            };
            bytes += serde_json::to_vec(&record).expect("encode").len();
            store.save(Save::Changes(&record)).expect("append");
        }
        let append = started.elapsed() / appends as u32;

        let started = Instant::now();
        let loaded = store.load().expect("load").expect("state");
        let load = started.elapsed();
        assert_eq!(loaded.core.instances.len(), vms as usize);
        println!(
            "  {vms:>7} VMs: append {:.3} ms per decision ({} bytes) vs whole state {:.2} ms \
             ({:.0} KiB): {:.1}x less; load (snapshot + {appends} records) {:.1} ms; \
             core memory ~{} KiB ({:.0} KiB per 1,000 VMs)",
            append.as_secs_f64() * 1e3,
            bytes / appends as usize,
            full.as_secs_f64() * 1e3,
            size as f64 / 1024.0,
            full.as_secs_f64() / append.as_secs_f64(),
            load.as_secs_f64() * 1e3,
            after.saturating_sub(before),
            after.saturating_sub(before) as f64 / (f64::from(vms) / 1000.0),
        );
    }
}
