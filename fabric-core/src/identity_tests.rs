//! Tests of state-lost mode and its recovery (issue 13, finding 2).

use super::*;
use std::time::{Duration, SystemTime};

fn at(secs: u64) -> Moment {
    Moment {
        mono: Duration::from_secs(secs),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(secs),
    }
}

fn node(i: u32) -> NodeId {
    NodeId::new(format!("host-{i}"))
}

/// A controller that starts empty (its state was lost), with 2 hosts back.
fn empty_controller() -> FabricCore {
    let mut core = FabricCore::new(CoreConfig::default(), at(0)).with_cluster_id("new");
    for i in 1..=2 {
        core.register(
            at(0),
            node(i),
            NodeInfo {
                fault_domain: i,
                update_domain: i,
                capacity_vm_slots: 4,
                ..NodeInfo::default()
            },
            "boot",
        );
    }
    core
}

fn running(id: &str, incarnation: u64) -> VmObservation {
    VmObservation {
        id: InstanceId::parse(id).unwrap(),
        incarnation,
        state: VmState::Running,
        pid: 7,
        endpoint: "127.0.0.1:8443".into(),
        detail: String::new(),
        transfer_cert_fingerprint: "ab".into(),
    }
}

fn memory(id: &str, generation: u64) -> Option<HostMemory> {
    Some(HostMemory {
        cluster_id: id.into(),
        generation,
    })
}

#[test]
fn who_is_behind() {
    let me = ClusterIdentity {
        id: "a".into(),
        generation: 10,
        replaces: Some("old".into()),
    };
    let m = |id: &str, generation| HostMemory {
        cluster_id: id.into(),
        generation,
    };
    assert!(!me.is_behind(&m("", 99)), "a host that obeyed no one");
    assert!(!me.is_behind(&m("a", 10)));
    assert!(me.is_behind(&m("a", 11)), "an older backup");
    assert!(me.is_behind(&m("b", 1)), "another cluster's state");
    assert!(!me.is_behind(&m("old", 500)), "the cluster a wipe replaced");
}

#[test]
fn a_host_that_remembers_more_stops_nothing_and_heals_nothing() {
    let mut core = empty_controller();
    let vms = vec![running("web.frontend.0", 3), running("web.frontend.2", 1)];
    let events = core.host_memory(at(1), &node(1), memory("old", 40), &vms, true);
    assert_eq!(events[0].kind, EventKind::StateLost);
    assert!(events[0].reason.contains("recover"), "{}", events[0].reason);
    // Every host is answered HOLD: no desired set, so nothing is stopped.
    let (reply, _) = core.heartbeat(at(2), &node(1), "boot", 1, vms.clone());
    assert_eq!(reply.outcome, HeartbeatOutcome::Hold);
    assert!(reply.desired.is_empty());
    let (reply, _) = core.heartbeat(at(2), &node(2), "boot", 1, vec![]);
    assert_eq!(reply.outcome, HeartbeatOutcome::Hold);
    // No deployments meanwhile.
    let spec = DeploymentSpec {
        priority: 0,
        name: Name::parse("d", "web").unwrap(),
        roles: vec![],
    };
    assert_eq!(core.deploy(at(3), spec).unwrap_err(), CoreError::StateLost);
    assert!(core.heal(at(3)).is_empty());
}

#[test]
fn a_partial_report_in_state_lost_mode_updates_what_the_host_said_before() {
    let mut core = empty_controller();
    let vms = vec![running("web.frontend.0", 3), running("web.frontend.2", 1)];
    core.host_memory(at(1), &node(1), memory("old", 40), &vms, true);
    // Only the VM that changed, and a new one: the other is still known.
    let changed = vec![running("web.frontend.0", 4), running("web.frontend.1", 1)];
    core.host_memory(at(2), &node(1), memory("old", 40), &changed, false);
    let mut known: Vec<_> = core.state_lost().unwrap().reports[&node(1)]
        .iter()
        .map(|v| (v.id.to_string(), v.incarnation))
        .collect();
    known.sort();
    assert_eq!(
        known,
        [
            ("web.frontend.0".to_owned(), 4),
            ("web.frontend.1".to_owned(), 1),
            ("web.frontend.2".to_owned(), 1)
        ]
    );
    // A complete report replaces them.
    core.host_memory(at(3), &node(1), memory("old", 40), &changed[..1], true);
    assert_eq!(core.state_lost().unwrap().reports[&node(1)].len(), 1);
    // And every host is asked for all its VMs while the state is lost.
    let (reply, _) = core.heartbeat(at(4), &node(1), "boot", 1, vec![]);
    assert!(reply.send_complete_reports);
}

#[test]
fn adopting_rebuilds_what_the_hosts_run() {
    let mut core = empty_controller();
    let vms = vec![running("web.frontend.0", 3), running("web.frontend.2", 1)];
    core.host_memory(at(1), &node(1), memory("old", 40), &vms, true);
    core.host_memory(at(1), &node(2), memory("old", 41), &[], true);
    let events = core.recover(at(5), Recovery::Adopt, "alice").unwrap();
    assert_eq!(events[0].kind, EventKind::StateRecovered);
    assert!(core.state_lost().is_none());
    assert_eq!(core.identity().id, "old");
    assert_eq!(core.identity().generation, 41);
    // The running instances stay where they run, at their incarnations;
    // the one no host runs (index 1) is placed anew.
    let web: Vec<_> = core.instances().collect();
    assert_eq!(web.len(), 3);
    assert_eq!(web[0].node(), Some(&node(1)));
    assert_eq!(web[0].incarnation(), 3);
    assert_eq!(web[0].state(), InstanceState::Running);
    assert_eq!(web[2].node(), Some(&node(1)));
    assert!(web[1].node().is_some(), "the missing instance was placed");
    // The next heartbeat keeps both running VMs.
    let (reply, _) = core.heartbeat(at(6), &node(1), "boot", 2, vms);
    assert_eq!(reply.outcome, HeartbeatOutcome::Accepted);
    let kept: Vec<_> = reply
        .desired
        .iter()
        .map(|a| (a.id.to_string(), a.incarnation))
        .collect();
    assert!(kept.contains(&("web.frontend.0".into(), 3)), "{kept:?}");
    assert!(kept.contains(&("web.frontend.2".into(), 1)), "{kept:?}");
    assert_eq!(
        core.recover(at(7), Recovery::Adopt, "alice").unwrap_err(),
        CoreError::StateNotLost
    );
}

#[test]
fn a_confirmed_wipe_replaces_the_hosts_cluster() {
    let mut core = empty_controller();
    core.host_memory(
        at(1),
        &node(1),
        memory("old", 40),
        &[running("web.frontend.0", 3)],
        true,
    );
    core.recover(at(5), Recovery::Wipe, "alice").unwrap();
    assert_eq!(core.identity().id, "new");
    assert_eq!(core.identity().replaces.as_deref(), Some("old"));
    assert!(core.identity().generation >= 40);
    // Hosts' memory of the old cluster no longer counts as evidence.
    assert!(
        core.host_memory(at(6), &node(1), memory("old", 40), &[], true)
            .is_empty()
    );
    let (reply, _) = core.heartbeat(at(6), &node(1), "boot", 2, vec![]);
    assert_eq!(reply.outcome, HeartbeatOutcome::Accepted);
    assert!(
        reply.desired.is_empty(),
        "nothing listed: the host stops its VMs"
    );
}
