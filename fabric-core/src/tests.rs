//! Unit and property tests of the core, driven by a manual clock.

use super::*;
use proptest::prelude::*;
use std::time::{Duration, SystemTime};

const HB: Duration = Duration::from_secs(1);
const TIMEOUT: Duration = Duration::from_secs(5);

fn config() -> CoreConfig {
    CoreConfig {
        heartbeat_interval: HB,
        node_timeout: TIMEOUT,
        event_retention: 1000,
        ..CoreConfig::default()
    }
}

fn at(mono: Duration) -> Moment {
    Moment {
        mono,
        wall: SystemTime::UNIX_EPOCH + mono,
    }
}

fn info() -> NodeInfo {
    NodeInfo {
        fault_domain: 1,
        update_domain: 2,
        capacity_vm_slots: 4,
        agent_version: "test".into(),
        host_endpoint: "127.0.0.1:1".into(),
        pid: 42,
    }
}

fn core_with(node: &str) -> (FabricCore, NodeId) {
    let mut core = FabricCore::new(config(), at(Duration::ZERO));
    let id = NodeId::new(node);
    let (outcome, events) = core.register(at(Duration::ZERO), id.clone(), info(), "boot-1");
    assert_eq!(outcome, RegisterOutcome::New);
    assert_eq!(events[0].kind, EventKind::NodeRegistered);
    (core, id)
}

fn state(core: &FabricCore, id: &NodeId) -> NodeState {
    core.node(id).unwrap().state
}

#[test]
fn expires_exactly_at_node_timeout() {
    let (mut core, id) = core_with("host-1");
    let just_before = TIMEOUT - Duration::from_nanos(1);
    assert!(core.expire(at(just_before)).is_empty());
    assert_eq!(state(&core, &id), NodeState::Ready);
    assert_eq!(core.next_deadline(at(just_before)), Some(TIMEOUT));

    let events = core.expire(at(TIMEOUT));
    assert_eq!(state(&core, &id), NodeState::Unresponsive);
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::NodeUnresponsive);
    assert_eq!(events[0].node.as_ref(), Some(&id));
    assert!(events[0].reason.contains("no heartbeat for 5.0s"));
    // Once Unresponsive, nothing more to expire and no repeated event.
    assert!(core.expire(at(TIMEOUT * 3)).is_empty());
    // The next deadline is its Unresponsive grace, not another expiry.
    assert_eq!(
        core.next_deadline(at(TIMEOUT * 3)),
        Some(TIMEOUT + config().unresponsive_grace)
    );
}

#[test]
fn heartbeat_brings_an_unresponsive_node_back() {
    let (mut core, id) = core_with("host-1");
    core.expire(at(TIMEOUT));
    let (HeartbeatReply { outcome, .. }, events) =
        core.heartbeat(at(TIMEOUT * 2), &id, "boot-1", 1, vec![]);
    assert_eq!(outcome, HeartbeatOutcome::Accepted);
    assert_eq!(state(&core, &id), NodeState::Ready);
    assert_eq!(events[0].kind, EventKind::NodeReady);
    assert!(events[0].reason.contains("10.0s of silence"));
}

#[test]
fn restart_is_recognised_by_a_new_boot_id() {
    let (mut core, id) = core_with("host-1");
    core.heartbeat(at(HB), &id, "boot-1", 7, vec![]);
    let (outcome, events) = core.register(at(HB * 2), id.clone(), info(), "boot-2");
    assert_eq!(outcome, RegisterOutcome::Restarted);
    assert_eq!(events[0].kind, EventKind::NodeRestarted);
    let node = core.node(&id).unwrap();
    assert_eq!(node.restarts, 1);
    assert_eq!(
        node.last_sequence, 0,
        "sequence numbers restart with the boot"
    );
    // The new boot's first heartbeat (sequence 1) is accepted although the old
    // boot had reached 7.
    assert_eq!(
        core.heartbeat(at(HB * 3), &id, "boot-2", 1, vec![])
            .0
            .outcome,
        HeartbeatOutcome::Accepted
    );
    // A late heartbeat from the old boot is not accepted.
    assert_eq!(
        core.heartbeat(at(HB * 3), &id, "boot-1", 8, vec![])
            .0
            .outcome,
        HeartbeatOutcome::RegisterAgain
    );
    // Same boot id again is a reconnect, not a restart.
    let (outcome, events) = core.register(at(HB * 4), id.clone(), info(), "boot-2");
    assert_eq!(outcome, RegisterOutcome::Reconnected);
    assert!(events.is_empty());
}

#[test]
fn restart_after_silence_makes_the_node_ready() {
    let (mut core, id) = core_with("host-1");
    core.expire(at(TIMEOUT));
    let (_, events) = core.register(at(TIMEOUT + HB), id.clone(), info(), "boot-2");
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EventKind::NodeRestarted, EventKind::NodeReady]);
    assert_eq!(state(&core, &id), NodeState::Ready);
}

#[test]
fn stale_heartbeats_are_ignored() {
    let (mut core, id) = core_with("host-1");
    assert_eq!(
        core.heartbeat(at(HB), &id, "boot-1", 5, vec![]).0.outcome,
        HeartbeatOutcome::Accepted
    );
    // Older and duplicate sequence numbers change nothing, not even liveness.
    for seq in [4, 5] {
        assert_eq!(
            core.heartbeat(at(HB * 4), &id, "boot-1", seq, vec![])
                .0
                .outcome,
            HeartbeatOutcome::Stale
        );
    }
    assert_eq!(core.node(&id).unwrap().last_heard, HB);
    core.expire(at(HB + TIMEOUT));
    assert_eq!(state(&core, &id), NodeState::Unresponsive);
}

#[test]
fn unknown_nodes_are_asked_to_register() {
    let mut core = FabricCore::new(config(), at(Duration::ZERO));
    let id = NodeId::new("host-9");
    assert_eq!(
        core.heartbeat(at(HB), &id, "b", 1, vec![]).0.outcome,
        HeartbeatOutcome::RegisterAgain
    );
    assert_eq!(
        core.report_fault(
            at(HB),
            &id,
            &FaultReport::new(FaultCause::HostHardware, "x", "v", vec![])
        ),
        Err(CoreError::UnknownNode(id))
    );
}

#[test]
fn fault_reports_are_recorded_with_their_reason() {
    let (mut core, id) = core_with("host-1");
    let events = core
        .report_fault(
            at(HB),
            &id,
            &FaultReport::new(
                FaultCause::GuestTimeouts,
                "guest agent never connected",
                "0.1.0",
                vec![],
            ),
        )
        .unwrap();
    let event = &events[0];
    assert_eq!(event.kind, EventKind::NodeFaultReported);
    assert!(event.reason.contains("guest agent never connected"));
    assert!(event.reason.contains("0.1.0"));
}

#[test]
fn classification_reads_the_cause_not_the_reasons_words() {
    // A guest-software cause is held in service, whatever its text says.
    let (mut core, id) = core_with("host-1");
    let held = FaultReport::new(
        FaultCause::GuestTimeouts,
        "VM boot stalled",
        "0.1.0",
        vec![],
    );
    let events = core.report_fault(at(HB), &id, &held).unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::NodeFaultHeld);
    assert_eq!(state(&core, &id), NodeState::Ready);
    // Hardware, or no cause given, goes to HI at once, even in a guest's words.
    for cause in [FaultCause::HostHardware, FaultCause::Unspecified] {
        let (mut core, id) = core_with("host-1");
        let report = FaultReport::new(cause, "guest agent never connected", "0.1.0", vec![]);
        core.report_fault(at(HB), &id, &report).unwrap();
        assert_eq!(state(&core, &id), NodeState::HumanInvestigate, "{cause:?}");
    }
}

proptest! {
    /// Heartbeats that each arrive within `node_timeout` of the previous one
    /// never let the node leave Ready, however the expiry checks interleave.
    #[test]
    fn no_flapping_when_heartbeats_arrive_inside_the_timeout(
        gaps_ms in prop::collection::vec(1u64..5_000, 1..200),
        checks_per_gap in 1usize..4,
    ) {
        let (mut core, id) = core_with("host-1");
        let mut now = Duration::ZERO;
        for (i, gap) in gaps_ms.iter().enumerate() {
            let gap = Duration::from_millis(*gap);
            // Expiry checks strictly inside the gap.
            for k in 1..=checks_per_gap {
                let t = now + gap * k as u32 / (checks_per_gap as u32 + 1);
                prop_assert!(core.expire(at(t)).is_empty());
            }
            now += gap;
            let (HeartbeatReply { outcome, .. }, events) = core.heartbeat(at(now), &id, "boot-1", i as u64 + 1, vec![]);
            prop_assert_eq!(outcome, HeartbeatOutcome::Accepted);
            prop_assert!(events.is_empty());
            prop_assert_eq!(state(&core, &id), NodeState::Ready);
        }
    }

    /// Whatever order heartbeats arrive in, the node's last accepted sequence
    /// number is the maximum seen and only increasing ones were accepted.
    #[test]
    fn reordered_heartbeats_only_move_forward(seqs in prop::collection::vec(1u64..50, 1..100)) {
        let (mut core, id) = core_with("host-1");
        let mut max = 0;
        for (i, seq) in seqs.iter().enumerate() {
            let (HeartbeatReply { outcome, .. }, _) = core.heartbeat(at(HB * i as u32), &id, "boot-1", *seq, vec![]);
            if *seq > max {
                prop_assert_eq!(outcome, HeartbeatOutcome::Accepted);
                max = *seq;
            } else {
                prop_assert_eq!(outcome, HeartbeatOutcome::Stale);
            }
            prop_assert_eq!(core.node(&id).unwrap().last_sequence, max);
        }
    }
}
