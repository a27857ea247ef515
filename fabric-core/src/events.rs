//! The cluster event log: every state transition, with its time and reason.
//!
//! Events are how operators and students see *why* the controller did what it
//! did. Sequence numbers are strictly increasing so a watcher can resume after
//! the last one it saw. Only the newest `retention` events are kept in memory.

use super::clock::Moment;
use super::node::NodeId;
use std::collections::VecDeque;

/// What kind of thing happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum EventKind {
    ControllerStarted,
    ControllerStalled,
    StateLost,
    StateRecovered,
    NodeRegistered,
    NodeRestarted,
    NodeUnresponsive,
    NodeReady,
    NodeFaultReported,
    DeploymentCreated,
    DeploymentRotated,
    DeploymentScaled,
    DeploymentDeleted,
    InstancePlaced,
    InstanceRunning,
    InstanceReinitialized,
    NodeHumanInvestigate,
    NodeFaultHeld,
    NodeRepaired,
    ClusterHumanInvestigate,
    ClusterResumed,
    ClusterSwitch,
    SoftwareFault,
    InstanceHealing,
    InstanceHealed,
    InstancePending,
    CertificateWarning,
    CertificateIncident,
    CertificateExpired,
    CertificateTogether,
    PackageAdded,
    UpdateStarted,
    UpdateProgress,
    UpdateStopped,
    UpdateResumed,
    UpdateRollback,
    UpdateFinished,
}

impl EventKind {
    /// Stable machine-readable name, used on the wire and in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::ControllerStarted => "controller.started",
            EventKind::ControllerStalled => "controller.stalled",
            EventKind::StateLost => "controller.state_lost",
            EventKind::StateRecovered => "controller.state_recovered",
            EventKind::NodeRegistered => "node.registered",
            EventKind::NodeRestarted => "node.restarted",
            EventKind::NodeUnresponsive => "node.unresponsive",
            EventKind::NodeReady => "node.ready",
            EventKind::NodeFaultReported => "node.fault_reported",
            EventKind::DeploymentCreated => "deployment.created",
            EventKind::DeploymentRotated => "deployment.rotated",
            EventKind::DeploymentScaled => "deployment.scaled",
            EventKind::DeploymentDeleted => "deployment.deleted",
            EventKind::InstancePlaced => "instance.placed",
            EventKind::InstanceRunning => "instance.running",
            EventKind::InstanceReinitialized => "instance.reinitialized",
            EventKind::NodeHumanInvestigate => "node.human_investigate",
            EventKind::NodeFaultHeld => "node.fault_held",
            EventKind::NodeRepaired => "node.repaired",
            EventKind::ClusterHumanInvestigate => "cluster.human_investigate",
            EventKind::ClusterResumed => "cluster.resumed",
            EventKind::ClusterSwitch => "cluster.switch",
            EventKind::SoftwareFault => "cluster.software_fault",
            EventKind::InstanceHealing => "instance.healing",
            EventKind::InstanceHealed => "instance.healed",
            EventKind::InstancePending => "instance.pending",
            EventKind::CertificateWarning => "certificate.warning",
            EventKind::CertificateIncident => "certificate.incident",
            EventKind::CertificateExpired => "certificate.expired",
            EventKind::CertificateTogether => "certificate.together",
            EventKind::PackageAdded => "software.package_added",
            EventKind::UpdateStarted => "update.started",
            EventKind::UpdateProgress => "update.progress",
            EventKind::UpdateStopped => "update.stopped",
            EventKind::UpdateResumed => "update.resumed",
            EventKind::UpdateRollback => "update.rollback",
            EventKind::UpdateFinished => "update.finished",
        }
    }
}

/// One entry of the log.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ClusterEvent {
    pub sequence: u64,
    pub at: Moment,
    pub kind: EventKind,
    pub node: Option<NodeId>,
    pub reason: String,
    /// The span of time this event measures, where it measures one: the
    /// silence before a node went Unresponsive, the time a healed instance
    /// took to run again. Metrics read it; older saved logs have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub took: Option<std::time::Duration>,
}

/// A bounded, append-only log of cluster events.
#[derive(Clone, Debug)]
pub struct EventLog {
    events: VecDeque<ClusterEvent>,
    next_sequence: u64,
    retention: usize,
}

/// `text` cut to at most `max` bytes at a character boundary, for texts that
/// come from outside (a probe's error, a host's words).
pub fn bounded(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

impl EventLog {
    pub fn new(retention: usize) -> Self {
        Self {
            events: VecDeque::new(),
            next_sequence: 1,
            retention: retention.max(1),
        }
    }

    /// A log that continues an earlier one: keeps its newest events and goes
    /// on numbering after them.
    pub fn restore(retention: usize, mut events: Vec<ClusterEvent>, next_sequence: u64) -> Self {
        let retention = retention.max(1);
        if events.len() > retention {
            events.drain(..events.len() - retention);
        }
        let floor = events.last().map_or(1, |e| e.sequence + 1);
        Self {
            events: events.into(),
            next_sequence: next_sequence.max(floor),
            retention,
        }
    }

    /// Appends an event and returns a copy of it (with its sequence number).
    pub fn record(
        &mut self,
        at: Moment,
        kind: EventKind,
        node: Option<&NodeId>,
        reason: impl Into<String>,
    ) -> ClusterEvent {
        self.record_timed(at, kind, node, reason, None)
    }

    /// Like [`EventLog::record`] for an event that measures a span of time.
    pub fn record_timed(
        &mut self,
        at: Moment,
        kind: EventKind,
        node: Option<&NodeId>,
        reason: impl Into<String>,
        took: Option<std::time::Duration>,
    ) -> ClusterEvent {
        let event = ClusterEvent {
            sequence: self.next_sequence,
            at,
            kind,
            node: node.cloned(),
            reason: reason.into(),
            took,
        };
        self.next_sequence += 1;
        if self.events.len() == self.retention {
            self.events.pop_front();
        }
        self.events.push_back(event.clone());
        event
    }

    /// Events with a sequence number above `after`, oldest first, at most
    /// `limit` of them (the newest ones if there are more).
    pub fn after(&self, after: u64, limit: Option<usize>) -> Vec<ClusterEvent> {
        // Sequences increase along the log: find the first newer one by
        // bisection, so a save or a client's "since" costs what is newer.
        let first = self.events.partition_point(|e| e.sequence <= after);
        let newer: Vec<_> = self.events.range(first..).cloned().collect();
        match limit {
            Some(n) if newer.len() > n => newer[newer.len() - n..].to_vec(),
            _ => newer,
        }
    }

    /// Sequence number of the newest event, 0 if none.
    pub fn last_sequence(&self) -> u64 {
        self.next_sequence - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn at() -> Moment {
        Moment {
            mono: Duration::ZERO,
            wall: SystemTime::UNIX_EPOCH,
        }
    }

    #[test]
    fn keeps_only_the_newest_and_sequences_increase() {
        let mut log = EventLog::new(3);
        for i in 0..5 {
            log.record(at(), EventKind::NodeReady, None, format!("{i}"));
        }
        let seqs: Vec<_> = log.after(0, None).iter().map(|e| e.sequence).collect();
        assert_eq!(seqs, vec![3, 4, 5]);
        assert_eq!(log.after(4, None).len(), 1);
        assert_eq!(log.after(0, Some(2))[0].sequence, 4);
        assert_eq!(log.last_sequence(), 5);
    }
}
