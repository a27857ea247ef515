//! How fast the pure core plans service healing: 10,000 role instances off
//! 500 failed hosts in a 5,000-host cluster, on one core, no I/O.
//!
//! The baseline, measured in the same run, is the core placing the cluster's
//! initial deployments (the same placement code, no healing bookkeeping), so
//! the two figures can be read as a ratio on a noisy machine.
//!
//! Run: `cargo run --release -p fabric-bench --bin healing-plan`.

use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, FaultCause, FaultReport, HiThreshold,
    Moment, Name, NodeId, NodeInfo, NodeState, RoleSpec,
};
use std::time::{Duration, Instant, SystemTime};

const HOSTS: u32 = 5_000;
const FAILED: u32 = 500;
const SLOTS: u32 = 24;
/// 100 deployments of 2 roles x 500 instances: 100,000 instances, 20 per host.
const DEPLOYMENTS: u32 = 100;
const PER_ROLE: u32 = 500;

fn at(secs: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

fn role(name: &str) -> RoleSpec {
    RoleSpec {
        guest: Default::default(),
        name: Name::parse("role", name).unwrap(),
        instances: PER_ROLE,
        certificates: vec![CertificateInfo {
            name: "https".into(),
            fingerprint: "00".repeat(32),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
        }],
    }
}

fn main() {
    let config = CoreConfig {
        // Let one round plan every heal, to time the planning itself.
        healing_concurrency: u32::MAX,
        hi_threshold: HiThreshold::Count(FAILED + 1),
        ..CoreConfig::default()
    };
    let mut core = FabricCore::new(config, at(0));
    for i in 1..=HOSTS {
        core.register(
            at(0),
            NodeId::new(format!("host-{i}")),
            NodeInfo {
                fault_domain: i % 20,
                update_domain: i % 10,
                capacity_vm_slots: SLOTS,
                ..NodeInfo::default()
            },
            "boot",
        );
    }

    let started = Instant::now();
    for d in 0..DEPLOYMENTS {
        let spec = DeploymentSpec {
            priority: 0,
            name: Name::parse("d", &format!("svc-{d}")).unwrap(),
            roles: vec![role("front"), role("back")],
        };
        core.deploy(at(1), spec).expect("deploy");
    }
    let deploy_time = started.elapsed();
    let placed = u64::from(DEPLOYMENTS * 2 * PER_ROLE);

    // Fail 500 hosts spread over the cluster (every tenth).
    let failed: Vec<NodeId> = (1..=FAILED)
        .map(|k| NodeId::new(format!("host-{}", k * (HOSTS / FAILED))))
        .collect();
    let on_failed = core
        .instances()
        .filter(|i| i.node().is_some_and(|n| failed.contains(n)))
        .count();
    for id in &failed {
        core.report_fault(
            at(2),
            id,
            &FaultReport::new(
                FaultCause::HostHardware,
                "host agent: hardware failure",
                "bench",
                vec![],
            ),
        )
        .expect("report");
    }
    assert!(
        failed
            .iter()
            .all(|id| core.node(id).unwrap().state == NodeState::HumanInvestigate)
    );

    let started = Instant::now();
    let events = core.tick(at(3));
    let heal_time = started.elapsed();
    let healed = events
        .iter()
        .filter(|e| e.kind == fabric_core::EventKind::InstanceHealing)
        .count();
    let left = core
        .instances()
        .filter(|i| i.node().is_some_and(|n| failed.contains(n)))
        .count();

    let rate = |n: u64, d: Duration| n as f64 / d.as_secs_f64();
    println!("Healing plan in the pure core (release build, one core, no I/O)");
    println!(
        "  cluster: {HOSTS} hosts x {SLOTS} slots, {placed} instances in {DEPLOYMENTS} deployments"
    );
    println!(
        "  baseline, initial placement: {placed} placements in {:.3} s = {:.0} placements/s",
        deploy_time.as_secs_f64(),
        rate(placed, deploy_time)
    );
    println!(
        "  healing: {healed} of {on_failed} instances off {FAILED} failed hosts planned in {:.3} s \
         = {:.0} placements/s ({left} left on failed hosts)",
        heal_time.as_secs_f64(),
        rate(healed as u64, heal_time)
    );
    println!(
        "  healing rate / initial placement rate: {:.2}",
        rate(healed as u64, heal_time) / rate(placed, deploy_time)
    );
    println!("  Nomad C1M for scale: ~3,750 placements/s across a fleet");
}
