//! The 2012 leap-day cascade, replayed in virtual time against the real core,
//! then replayed again with Fabric's fixes (fail fast, fault classification).
//!
//! 2012: every new VM's guest agent fails creating its transfer certificate
//! and exits silently; the host agent waits 25 minutes, reinitializes the VM,
//! and after three clean-VM timeouts reports the server faulty; the fabric
//! controller moves the server to Human Investigate and heals its VMs onto
//! healthy servers, where the bug strikes again; in clusters where every
//! server was getting new VMs (a rollout), the HI threshold tripped 75 minutes
//! (3 x 25) after midnight.

use fabric_core::{
    CertificateInfo, ClusterMode, CoreConfig, DeploymentSpec, EventKind, HiThreshold, Name,
    NodeState, RoleSpec,
};
use fabric_sim::host::GuestModel;
use fabric_sim::{SimConfig, World};
use std::collections::BTreeSet;
use std::time::{Duration, SystemTime};

const GUEST_TIMEOUT: Duration = Duration::from_secs(25 * 60);
const STEP: Duration = Duration::from_secs(5);

fn service(instances: u32) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("d", "customer").unwrap(),
        roles: vec![RoleSpec {
            guest: Default::default(),
            name: Name::parse("r", "web").unwrap(),
            instances,
            certificates: vec![CertificateInfo {
                name: "https".into(),
                fingerprint: "ab".repeat(32),
                not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
            }],
        }],
    }
}

fn world(threshold: HiThreshold, classification: bool, fail_fast: bool) -> World {
    World::new(SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(5),
            node_timeout: Duration::from_secs(15),
            hi_threshold: threshold,
            fault_classification: classification,
            healing_concurrency: 64,
            ..CoreConfig::default()
        },
        hosts: 20,
        capacity: 2,
        step: STEP,
        guest: GuestModel {
            connect_timeout: GUEST_TIMEOUT,
            clean_vm_strikes: 3,
            leap_day_bug: true,
            fail_fast,
            agent_version: "2012.2.28".into(),
            ..GuestModel::default()
        },
        // 2012-02-29T00:00:00Z
        start: SystemTime::UNIX_EPOCH + Duration::from_secs(1_330_473_600),
        ..SimConfig::default()
    })
}

fn hi_nodes(world: &World) -> BTreeSet<String> {
    world
        .core
        .nodes()
        .filter(|n| n.state == NodeState::HumanInvestigate)
        .map(|n| n.id.to_string())
        .collect()
}

#[test]
fn rollout_cluster_trips_the_threshold_at_three_guest_timeouts() {
    // Every server gets a new VM at midnight, as in the clusters that were
    // mid-rollout in 2012.
    let mut w = world(HiThreshold::Percent(25), false, false);
    w.deploy(service(20)).unwrap();
    w.run_for(Duration::from_secs(2 * 3600));
    assert_eq!(w.core.cluster().mode, ClusterMode::HumanInvestigate);
    let (tripped, count, threshold) = w.core.cluster().last_trip.expect("threshold tripped");
    assert_eq!((count, threshold), (5, 5));
    // Three timeouts, plus what the host agent's record adds between them
    // (its respawn backoff, taken at the next 5 s step) and a heartbeat.
    let expected = GUEST_TIMEOUT * 3;
    assert!(
        tripped.mono >= expected && tripped.mono <= expected + Duration::from_secs(30),
        "tripped at {:?}, expected 75 minutes",
        tripped.mono
    );
    // After the trip, nothing more was healed.
    let last_heal = w
        .events
        .iter()
        .filter(|e| e.kind == EventKind::InstanceHealing)
        .map(|e| e.at.mono)
        .max();
    assert!(last_heal.is_none_or(|t| t <= tripped.mono));
}

#[test]
fn healing_spreads_the_bug_to_healthy_servers() {
    // A quiet cluster: three customer VMs. Each heal moves the bug to a fresh
    // server, which fails 75 minutes later.
    let mut w = world(HiThreshold::Count(8), false, false);
    w.deploy(service(3)).unwrap();
    let first: BTreeSet<String> = w
        .core
        .instances()
        .filter_map(|i| i.node().map(|n| n.to_string()))
        .collect();
    w.run_for(Duration::from_secs(6 * 3600));
    let hi = hi_nodes(&w);
    assert!(
        hi.len() >= 8,
        "only {} servers in HI after six hours: {hi:?}",
        hi.len()
    );
    assert!(
        hi.difference(&first).count() >= 5,
        "the failure did not spread beyond the first servers"
    );
    assert_eq!(w.core.cluster().mode, ClusterMode::HumanInvestigate);
}

#[test]
fn with_fail_fast_and_classification_no_server_goes_hi() {
    let mut w = world(HiThreshold::Percent(25), true, true);
    w.deploy(service(20)).unwrap();
    w.run_for(Duration::from_secs(2 * 3600));
    assert!(hi_nodes(&w).is_empty(), "servers in HI: {:?}", hi_nodes(&w));
    assert_eq!(w.core.cluster().mode, ClusterMode::Normal);
    let fault = w
        .events
        .iter()
        .find(|e| e.kind == EventKind::SoftwareFault)
        .expect("a software fault was classified");
    assert!(
        fault.reason.contains("invalid valid-to date 2013-02-29"),
        "{}",
        fault.reason
    );
    assert!(fault.reason.contains("2012.2.28"), "{}", fault.reason);
    // Found within minutes, not after 75.
    assert!(
        fault.at.mono < Duration::from_secs(60),
        "classified at {:?}",
        fault.at.mono
    );
    let incident = w.core.cluster().incidents.values().next().unwrap();
    assert!(incident.classified.is_some());
    assert!(w.core.cluster().role_paused(
        &Name::parse("d", "customer").unwrap(),
        &Name::parse("r", "web").unwrap()
    ));
}

#[test]
fn a_lone_guest_fault_goes_to_hi_after_the_hold_and_is_classified_when_it_recurs() {
    // One server alone is not a pattern: it goes to HI when its hold runs
    // out. Healing then carries the bug to a second server, whose identical
    // report makes it a software fault: that server stays in service.
    let mut w = world(HiThreshold::Percent(50), true, true);
    w.deploy(service(1)).unwrap();
    w.run_for(Duration::from_secs(600));
    let hi = hi_nodes(&w);
    assert_eq!(hi.len(), 1, "servers in HI: {hi:?}");
    let held = w
        .events
        .iter()
        .find(|e| e.kind == EventKind::NodeFaultHeld)
        .expect("the first report was held");
    let hi_at = w
        .events
        .iter()
        .find(|e| e.kind == EventKind::NodeHumanInvestigate)
        .unwrap()
        .at
        .mono;
    assert!(hi_at >= held.at.mono + w.core.config().classification_hold);
    let fault = w
        .events
        .iter()
        .find(|e| e.kind == EventKind::SoftwareFault)
        .expect("classified once a second server reported the same cause");
    assert!(fault.at.mono > hi_at);
}
