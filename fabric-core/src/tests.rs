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
        role_probe_host: None,
        pid: 42,
        software: Software::default(),
    }
}

fn core_with(node: &str) -> (FabricCore, NodeId) {
    core_configured(node, config())
}

fn core_configured(node: &str, config: CoreConfig) -> (FabricCore, NodeId) {
    let mut core = FabricCore::new(config, at(Duration::ZERO));
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

/// Issue 13, finding 5: one heartbeat numbered 2^64-1 under a host's own
/// identity is refused, so the host's own heartbeats go on being accepted.
#[test]
fn an_implausible_sequence_jump_is_refused() {
    let (mut core, id) = core_with("host-1");
    let beat = |core: &mut FabricCore, t, seq| core.heartbeat(at(t), &id, "boot-1", seq, vec![]).0;
    assert_eq!(beat(&mut core, HB, 1).outcome, HeartbeatOutcome::Accepted);
    let refused = beat(&mut core, HB * 2, u64::MAX);
    assert!(
        matches!(
            refused.outcome,
            HeartbeatOutcome::ImplausibleSequence { last: 1, .. }
        ),
        "{refused:?}"
    );
    assert!(refused.desired.is_empty());
    assert_eq!(core.node(&id).unwrap().last_sequence, 1);
    assert_eq!(
        beat(&mut core, HB * 3, 2).outcome,
        HeartbeatOutcome::Accepted
    );
    // A long silence allows a longer gap: one per 50 ms, plus the limit.
    let after_an_hour = Duration::from_secs(3600);
    assert_eq!(
        beat(&mut core, after_an_hour, 2 + 1024 + 60_000).outcome,
        HeartbeatOutcome::Accepted
    );
}

/// Issue 13, finding 5: a host whose heartbeats stay stale (its numbers
/// went wrong) is told to register again, and is believed afterwards.
#[test]
fn a_host_whose_heartbeats_stay_stale_registers_again() {
    let (mut core, id) = core_with("host-1");
    assert_eq!(
        core.heartbeat(at(HB), &id, "boot-1", 500, vec![]).0.outcome,
        HeartbeatOutcome::Accepted
    );
    let outcomes: Vec<_> = (1..=3)
        .map(|seq| {
            core.heartbeat(at(HB * (1 + seq)), &id, "boot-1", seq as u64, vec![])
                .0
                .outcome
        })
        .collect();
    assert_eq!(
        outcomes,
        [
            HeartbeatOutcome::Stale,
            HeartbeatOutcome::Stale,
            HeartbeatOutcome::RegisterAgain
        ]
    );
    let (outcome, _) = core.register(at(HB * 5), id.clone(), info(), "boot-1");
    assert_eq!(outcome, RegisterOutcome::Reconnected);
    assert_eq!(
        core.heartbeat(at(HB * 6), &id, "boot-1", 4, vec![])
            .0
            .outcome,
        HeartbeatOutcome::Accepted
    );
}

/// Issue 13, finding 9: a controller whose own timer fired long after its
/// deadline (it was stopped) gives every node a fresh grace: no flap to
/// Unresponsive, and an event that says why.
#[test]
fn a_stalled_controller_gives_nodes_a_fresh_grace() {
    let (mut core, id) = core_with("host-1");
    let woke = TIMEOUT * 4;
    let events = core.tick_late(at(woke), woke - TIMEOUT);
    let kinds: Vec<_> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, [EventKind::ControllerStalled]);
    assert!(events[0].reason.contains("fresh heartbeat grace"));
    assert_eq!(state(&core, &id), NodeState::Ready);
    assert_eq!(core.next_deadline(at(woke)), Some(woke + TIMEOUT));
    // Ordinary lateness is a plain tick: a silent node still expires.
    let (mut core, id) = core_with("host-1");
    core.tick_late(at(TIMEOUT), Duration::from_millis(10));
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
        // Runs of stale heartbeats are this property's point, so the
        // register-again rule (tested on its own) stays out of the way.
        let (mut core, id) = core_configured("host-1", CoreConfig {
            stale_heartbeats_before_register: u32::MAX,
            ..config()
        });
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

/// Issue 13, finding 9: a fault report from a host agent boot other than the
/// registered one (a late call of a process since restarted) moves nothing.
#[test]
fn a_fault_report_from_another_boot_is_refused() {
    let (mut core, id) = core_with("host-1");
    let report = FaultReport::new(FaultCause::HostHardware, "disk", "test", vec![]);
    let err = core
        .report_fault(at(HB), &id, &report.clone().from_boot("boot-0"))
        .unwrap_err();
    assert!(matches!(err, CoreError::OtherBoot { .. }), "{err}");
    assert_eq!(state(&core, &id), NodeState::Ready);
    core.report_fault(at(HB), &id, &report.from_boot("boot-1"))
        .unwrap();
    assert_eq!(state(&core, &id), NodeState::HumanInvestigate);
}

/// Issue 13, finding 8: a node in Human Investigate is told so in every
/// heartbeat reply, so its host agent starts nothing until repaired.
#[test]
fn a_node_in_human_investigate_is_told_so() {
    let (mut core, id) = core_with("host-1");
    assert!(
        !core
            .heartbeat(at(HB), &id, "boot-1", 1, vec![])
            .0
            .human_investigate
    );
    core.report_fault(
        at(HB),
        &id,
        &FaultReport::new(FaultCause::HostHardware, "disk", "test", vec![]),
    )
    .unwrap();
    assert!(
        core.heartbeat(at(HB * 2), &id, "boot-1", 2, vec![])
            .0
            .human_investigate
    );
    core.repair(at(HB * 3), &id, "alice", "new disk").unwrap();
    assert!(
        !core
            .heartbeat(at(HB * 4), &id, "boot-1", 3, vec![])
            .0
            .human_investigate
    );
}
