//! Tests of deploy, scale, delete and VM reconciliation in the core.

use super::services::DeployOutcome;
use super::*;
use std::time::{Duration, SystemTime};

fn at(secs: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

/// A cluster of `n` Ready nodes, node i in fault domain i % 2, update domain i % 3.
fn cluster(n: u32, slots: u32) -> FabricCore {
    let mut core = FabricCore::new(CoreConfig::default(), at(0));
    for i in 1..=n {
        core.register(
            at(0),
            NodeId::new(format!("host-{i}")),
            NodeInfo {
                fault_domain: i % 2,
                update_domain: i % 3,
                capacity_vm_slots: slots,
                ..NodeInfo::default()
            },
            "boot",
        );
    }
    core
}

fn cert(fingerprint: &str) -> CertificateInfo {
    CertificateInfo {
        name: "https".into(),
        fingerprint: fingerprint.into(),
        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 32),
    }
}

fn spec(name: &str, roles: &[(&str, u32)], fingerprint: &str) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("d", name).unwrap(),
        roles: roles
            .iter()
            .map(|(r, n)| RoleSpec {
                guest: Default::default(),
                name: Name::parse("r", r).unwrap(),
                instances: *n,
                certificates: vec![cert(fingerprint)],
            })
            .collect(),
    }
}

/// A report of incarnation 1 of `id`, its role serving.
fn running(id: &InstanceId) -> VmObservation {
    VmObservation {
        id: id.clone(),
        incarnation: 1,
        state: VmState::Running,
        pid: 7,
        endpoint: "127.0.0.1:9".into(),
        detail: String::new(),
        transfer_cert_fingerprint: "ff".into(),
    }
}

fn nodes_of(core: &FabricCore, role: &str) -> Vec<NodeId> {
    core.instances()
        .filter(|i| i.id.role.as_str() == role)
        .filter_map(|i| i.node().cloned())
        .collect()
}

#[test]
fn deploy_spreads_instances_across_fault_domains() {
    let mut core = cluster(4, 4);
    let (outcome, events) = core
        .deploy(at(1), spec("web", &[("frontend", 2), ("worker", 3)], "aa"))
        .unwrap();
    let DeployOutcome::Created(ids) = outcome else {
        panic!("not created")
    };
    assert_eq!(ids.len(), 5);
    assert_eq!(events[0].kind, EventKind::DeploymentCreated);
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == EventKind::InstancePlaced)
            .count(),
        5
    );
    let fds: std::collections::BTreeSet<u32> = nodes_of(&core, "frontend")
        .iter()
        .map(|n| core.node(n).unwrap().info.fault_domain)
        .collect();
    assert_eq!(
        fds.len(),
        2,
        "frontend's two instances share a fault domain"
    );
    for i in core.instances() {
        assert_eq!(i.incarnation(), 1);
        assert_eq!(i.state(), InstanceState::Starting);
    }
}

#[test]
fn deploy_is_refused_whole_when_slots_are_short() {
    let mut core = cluster(2, 2);
    let err = core
        .deploy(at(1), spec("web", &[("a", 3), ("b", 2)], "aa"))
        .unwrap_err();
    assert_eq!(err, CoreError::NotEnoughSlots { needed: 5, free: 4 });
    assert_eq!(core.instances().count(), 0);
    assert_eq!(core.deployments().count(), 0);
}

#[test]
fn zero_instances_and_changed_shapes_are_refused() {
    let mut core = cluster(2, 4);
    assert!(matches!(
        core.deploy(at(1), spec("web", &[("a", 0)], "aa")),
        Err(CoreError::ZeroInstances(_))
    ));
    core.deploy(at(1), spec("web", &[("a", 1)], "aa")).unwrap();
    assert!(matches!(
        core.deploy(at(2), spec("web", &[("a", 2)], "aa")),
        Err(CoreError::DeploymentExists(_))
    ));
}

#[test]
fn redeploying_the_same_shape_rotates_certificates() {
    let mut core = cluster(2, 4);
    core.deploy(at(1), spec("web", &[("a", 2)], "aaaa"))
        .unwrap();
    let node = core.instances().next().unwrap().node().cloned().unwrap();
    let before = core.desired_vms(&node)[0].secrets_version.clone();
    let (outcome, events) = core
        .deploy(at(2), spec("web", &[("a", 2)], "bbbb"))
        .unwrap();
    assert_eq!(outcome, DeployOutcome::Rotated);
    assert_eq!(events[0].kind, EventKind::DeploymentRotated);
    let after = core.desired_vms(&node)[0].secrets_version.clone();
    assert_ne!(before, after);
    // Nothing was re-placed or reincarnated.
    assert!(core.instances().all(|i| i.incarnation() == 1));
}

#[test]
fn scale_out_and_in() {
    let mut core = cluster(3, 4);
    core.deploy(at(1), spec("web", &[("a", 1)], "aa")).unwrap();
    core.scale(at(2), "web", "a", 3).unwrap();
    assert_eq!(nodes_of(&core, "a").len(), 3);
    let distinct: std::collections::BTreeSet<_> = nodes_of(&core, "a").into_iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "scale-out stacked instances on one server"
    );
    core.scale(at(3), "web", "a", 1).unwrap();
    let ids: Vec<String> = core.instances().map(|i| i.id.to_string()).collect();
    assert_eq!(ids, vec!["web.a.0"]);
    assert!(matches!(
        core.scale(at(4), "web", "a", 13),
        Err(CoreError::NotEnoughSlots { .. })
    ));
    assert!(matches!(
        core.scale(at(4), "nope", "a", 1),
        Err(CoreError::NoSuchDeployment(_))
    ));
    assert!(matches!(
        core.scale(at(4), "web", "b", 1),
        Err(CoreError::NoSuchRole(..))
    ));
}

#[test]
fn delete_empties_desired_state() {
    let mut core = cluster(1, 4);
    core.deploy(at(1), spec("web", &[("a", 2)], "aa")).unwrap();
    let node = NodeId::new("host-1");
    assert_eq!(core.desired_vms(&node).len(), 2);
    core.delete(at(2), "web").unwrap();
    assert!(core.desired_vms(&node).is_empty());
    assert!(matches!(
        core.delete(at(3), "web"),
        Err(CoreError::NoSuchDeployment(_))
    ));
}

#[test]
fn vm_reports_update_instances_and_raise_events() {
    let mut core = cluster(1, 4);
    core.deploy(at(1), spec("web", &[("a", 1)], "aa")).unwrap();
    let node = NodeId::new("host-1");
    let id = InstanceId::parse("web.a.0").unwrap();
    let report = |incarnation, state| VmObservation {
        id: id.clone(),
        incarnation,
        state,
        pid: 77,
        endpoint: "127.0.0.1:9".into(),
        detail: "guest agent heartbeat timed out".into(),
        transfer_cert_fingerprint: "ff".into(),
    };
    let events = core.observe_vms(at(2), &node, vec![report(1, VmState::Running)]);
    assert_eq!(events[0].kind, EventKind::InstanceRunning);
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Running);
    // A reinitialization by the host agent raises the incarnation for good.
    let events = core.observe_vms(at(3), &node, vec![report(2, VmState::Starting)]);
    assert_eq!(events[0].kind, EventKind::InstanceReinitialized);
    assert!(events[0].reason.contains("heartbeat timed out"));
    assert_eq!(core.instance(&id).unwrap().incarnation(), 2);
    assert_eq!(core.desired_vms(&node)[0].incarnation, 2);
    // An older incarnation's report changes nothing.
    core.observe_vms(at(4), &node, vec![report(1, VmState::Running)]);
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Starting);
    // Another node's report about this instance is ignored.
    core.observe_vms(
        at(5),
        &NodeId::new("host-9"),
        vec![report(3, VmState::Running)],
    );
    assert_eq!(core.instance(&id).unwrap().incarnation(), 2);
}

#[test]
fn only_the_assigned_node_may_fetch_secrets() {
    let mut core = cluster(2, 1);
    core.deploy(at(1), spec("web", &[("a", 1)], "aa")).unwrap();
    let id = InstanceId::parse("web.a.0").unwrap();
    let owner = core.instance(&id).unwrap().node().cloned().unwrap();
    let other = core
        .nodes()
        .map(|n| n.id.clone())
        .find(|n| n != &owner)
        .unwrap();
    assert!(core.authorize_secrets(&owner, &id, 1).is_ok());
    assert!(matches!(
        core.authorize_secrets(&other, &id, 1),
        Err(CoreError::NotAssigned { .. })
    ));
    assert!(
        core.authorize_secrets(&owner, &InstanceId::parse("web.a.1").unwrap(), 1)
            .is_err()
    );
}

/// The heartbeat rule the gRPC shell once held on its own and the simulator
/// wrote again; both now call [`FabricCore::heartbeat`] and nothing else can
/// fold VM reports in (`observe_vms` is private to the core).
#[test]
fn a_heartbeat_counts_its_reports_only_when_accepted() {
    let mut core = cluster(1, 4);
    core.deploy(at(1), spec("web", &[("a", 1)], "aa")).unwrap();
    let node = NodeId::new("host-1");
    let id = InstanceId::parse("web.a.0").unwrap();
    let running = vec![running(&id)];
    let (reply, _) = core.heartbeat(at(2), &node, "boot", 5, Vec::new());
    assert_eq!(reply.outcome, HeartbeatOutcome::Accepted);
    assert_eq!(reply.desired.len(), 1);
    // A stale heartbeat (sequence not above 5) is answered with the desired
    // set, but its reports may be older than what is known: ignored.
    let (reply, events) = core.heartbeat(at(3), &node, "boot", 4, running.clone());
    assert_eq!(reply.outcome, HeartbeatOutcome::Stale);
    assert_eq!(reply.desired.len(), 1);
    assert!(events.is_empty());
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Starting);
    // An unknown boot is told to register again, with no desired set.
    let (reply, _) = core.heartbeat(at(3), &node, "other-boot", 6, running.clone());
    assert_eq!(reply.outcome, HeartbeatOutcome::RegisterAgain);
    assert!(reply.desired.is_empty());
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Starting);
    // Accepted: the report counts.
    let (_, events) = core.heartbeat(at(4), &node, "boot", 6, running);
    assert_eq!(events[0].kind, EventKind::InstanceRunning);
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Running);
}

/// A heartbeat that names the desired set its host runs by is not sent it
/// again while it holds; any change to the set (an incarnation, a rotation,
/// a new instance) changes the digest and the set is sent whole.
#[test]
fn an_unchanged_desired_set_is_not_sent_again() {
    let mut core = cluster(1, 4);
    core.deploy(at(1), spec("web", &[("a", 2)], "aa")).unwrap();
    let node = NodeId::new("host-1");
    let beat = |sequence, known| Beat {
        sequence,
        vms: Vec::new(),
        complete: true,
        known_desired: known,
    };
    let (first, _) = core.heartbeat_with(at(2), &node, "boot", beat(1, None));
    assert_eq!(first.desired.len(), 2);
    assert!(!first.desired_unchanged);
    assert_ne!(first.desired_digest, 0);
    let digest = first.desired_digest;
    let (same, _) = core.heartbeat_with(at(3), &node, "boot", beat(2, Some(digest)));
    assert!(same.desired_unchanged && same.desired.is_empty());
    assert_eq!(same.desired_digest, digest);
    // A digest the controller never made: the whole set.
    let (other, _) = core.heartbeat_with(at(3), &node, "boot", beat(3, Some(digest ^ 1)));
    assert_eq!(other.desired.len(), 2);
    // Certificates rotated: same instances, new secrets version.
    core.deploy(at(4), spec("web", &[("a", 2)], "bb")).unwrap();
    let (rotated, _) = core.heartbeat_with(at(5), &node, "boot", beat(4, Some(digest)));
    assert!(!rotated.desired_unchanged);
    assert_eq!(rotated.desired.len(), 2);
    assert_ne!(rotated.desired_digest, digest);
    // Scaled out: a third instance.
    let digest = rotated.desired_digest;
    core.scale(at(6), "web", "a", 3).unwrap();
    let (scaled, _) = core.heartbeat_with(at(7), &node, "boot", beat(5, Some(digest)));
    assert_eq!(scaled.desired.len(), 3);
    // The digest a WatchDesired stream compares moves with it.
    assert_eq!(core.desired_vms_digest(&node), scaled.desired_digest);
}

/// Reports of only what changed count like any report; a host is asked for
/// all of them until a complete report was accepted from its boot, and
/// again after it registers or changes state.
#[test]
fn a_host_is_asked_for_every_vm_until_the_controller_has_heard_them_all() {
    let mut core = cluster(1, 4);
    core.deploy(at(1), spec("web", &[("a", 2)], "aa")).unwrap();
    let node = NodeId::new("host-1");
    let id = InstanceId::parse("web.a.1").unwrap();
    let running = running(&id);
    let partial = |sequence, vms| Beat {
        sequence,
        vms,
        complete: false,
        known_desired: None,
    };
    // Changes only, before any complete report: counted, and asked for all.
    let (reply, events) = core.heartbeat_with(at(2), &node, "boot", partial(1, vec![running]));
    assert_eq!(events[0].kind, EventKind::InstanceRunning);
    assert!(reply.send_complete_reports);
    let (reply, _) = core.heartbeat_with(at(3), &node, "boot", Beat::complete(2, vec![]));
    assert!(!reply.send_complete_reports);
    let (reply, _) = core.heartbeat_with(at(4), &node, "boot", partial(3, vec![]));
    assert!(!reply.send_complete_reports);
    assert_eq!(core.instance(&id).unwrap().state(), InstanceState::Running);
    core.register(
        at(5),
        node.clone(),
        core.node(&node).unwrap().info.clone(),
        "boot",
    );
    let (reply, _) = core.heartbeat_with(at(5), &node, "boot", partial(5, vec![]));
    assert!(reply.send_complete_reports, "asked again after registering");
    // A stale complete report is not read, so not heard.
    let (reply, _) = core.heartbeat_with(at(5), &node, "boot", Beat::complete(4, vec![]));
    assert_eq!(reply.outcome, HeartbeatOutcome::Stale);
    assert!(reply.send_complete_reports);
    let (reply, _) = core.heartbeat_with(at(5), &node, "boot", Beat::complete(6, vec![]));
    assert!(!reply.send_complete_reports);
    // Silent past the node timeout: Unresponsive, then back, asked again.
    core.expire(at(60));
    let (reply, _) = core.heartbeat_with(at(61), &node, "boot", partial(7, vec![]));
    assert!(
        reply.send_complete_reports,
        "asked again after a state change"
    );
}

/// The per-server index (by_node.rs) agrees with a scan of every instance
/// after each kind of change: deploy, scale out and in, heal off a lost
/// server, delete, and a restore from a snapshot.
#[test]
fn the_per_server_index_agrees_with_a_scan_after_every_kind_of_change() {
    fn check(core: &mut FabricCore, when: &str) {
        let nodes: Vec<NodeId> = core.nodes().map(|n| n.id.clone()).collect();
        for node in nodes {
            let mut indexed: Vec<_> = core.desired_vms(&node).into_iter().map(|d| d.id).collect();
            let mut scanned: Vec<_> = core
                .instances()
                .filter(|i| i.node() == Some(&node))
                .map(|i| i.id.clone())
                .collect();
            indexed.sort();
            scanned.sort();
            assert_eq!(indexed, scanned, "{node} after {when}");
        }
        // What a healing round looks at, from the index and by a scan.
        let homeless: Vec<_> = core.homeless().into_iter().collect();
        let mut scanned: Vec<_> = core
            .instances()
            .filter(|i| core.needs_home(&i.id))
            .map(|i| i.id.clone())
            .collect();
        scanned.sort();
        assert_eq!(homeless, scanned, "instances needing a home after {when}");
    }
    let mut core = cluster(4, 8);
    // One lost server of four must not stop healing here.
    core.config.hi_threshold = HiThreshold::Count(2);
    core.deploy(at(1), spec("web", &[("a", 5), ("b", 3)], "aa"))
        .unwrap();
    check(&mut core, "deploy");
    core.scale(at(2), "web", "a", 9).unwrap();
    check(&mut core, "scale out");
    core.scale(at(3), "web", "b", 1).unwrap();
    check(&mut core, "scale in");
    // host-1 falls silent: Unresponsive, then HI after the grace, then
    // healed once healing is switched back on.
    core.set_switch(at(4), crate::cluster::Switch::Healing, false, "test");
    for s in (10..=300).step_by(10) {
        for i in 2..=4 {
            core.heartbeat(at(s), &NodeId::new(format!("host-{i}")), "boot", s, vec![]);
        }
        core.tick(at(s));
    }
    assert!(
        !core.homeless().is_empty(),
        "host-1's instances wait for a home"
    );
    check(&mut core, "a server in HI");
    core.set_switch(at(301), crate::cluster::Switch::Healing, true, "test");
    core.tick(at(302));
    assert!(
        core.instances()
            .all(|i| i.node() != Some(&NodeId::new("host-1"))),
        "healed off host-1"
    );
    check(&mut core, "healing");
    let mut restored = FabricCore::restore(CoreConfig::default(), core.snapshot(), at(900));
    check(&mut restored, "restore");
    core.delete(at(1000), "web").unwrap();
    check(&mut core, "delete");
}

/// A snapshot with each save's changes folded in is the snapshot of the core
/// itself: what an O(change) store writes loses nothing.
#[test]
fn a_snapshot_plus_every_saves_changes_is_the_core() {
    let mut core = cluster(4, 8);
    core.config.hi_threshold = HiThreshold::Count(2);
    let mut base = core.snapshot();
    core.all_saved();
    let mut generation = 0;
    let mut save = |core: &mut FabricCore, base: &mut crate::snapshot::CoreSnapshot| {
        generation += 1;
        base.apply(core.take_changes(generation));
        let mut whole = core.snapshot();
        whole.identity.generation = generation;
        // A heartbeat's own fields (sequence, last heard) are saved with
        // the node's next real change only, by design (see fabric.rs).
        let json = |s: &crate::snapshot::CoreSnapshot| {
            let mut s = s.clone();
            for n in &mut s.nodes {
                n.last_sequence = 0;
                n.stale_streak = 0;
                n.last_heard = Duration::ZERO;
            }
            serde_json::to_string(&s).unwrap()
        };
        let (folded, whole) = (json(base), json(&whole));
        let at = folded
            .bytes()
            .zip(whole.bytes())
            .position(|(a, b)| a != b)
            .unwrap_or(folded.len().min(whole.len()));
        assert!(
            folded == whole,
            "save {generation}: differs at byte {at}: {:?} vs {:?}",
            &folded[at.saturating_sub(80)..(at + 80).min(folded.len())],
            &whole[at.saturating_sub(80)..(at + 80).min(whole.len())]
        );
    };
    core.deploy(at(1), spec("web", &[("a", 5), ("b", 3)], "aa"))
        .unwrap();
    save(&mut core, &mut base);
    core.scale(at(2), "web", "a", 9).unwrap();
    core.scale(at(3), "web", "b", 1).unwrap();
    save(&mut core, &mut base);
    for s in (10..=300).step_by(10) {
        for i in 2..=4 {
            core.heartbeat(at(s), &NodeId::new(format!("host-{i}")), "boot", s, vec![]);
        }
        core.tick(at(s));
        if s % 50 == 0 {
            save(&mut core, &mut base);
        }
    }
    core.deploy(at(400), spec("api", &[("x", 2)], "bb"))
        .unwrap();
    core.delete(at(401), "web").unwrap();
    save(&mut core, &mut base);
    let quiet = core.take_changes(generation + 1);
    assert!(quiet.is_empty(), "nothing changed since: {quiet:?}");
}
