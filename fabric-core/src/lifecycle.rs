//! Node lifecycle beyond heartbeats: Unresponsive -> Human Investigate, the
//! per-cluster HI threshold, and the periodic `tick` that drives it all.
//!
//! ```text
//!   Ready --(silent node_timeout)--> Unresponsive --(unresponsive_grace)--> HI
//!     ^                                 |                                    |
//!     +------(heartbeat)----------------+                                    |
//!     +------(operator repair)-----------------------------------------------+
//!   Ready --(fault report: hardware, or classification off)----------------> HI
//!   Ready --(fault report: guest software)--> held --(hold expires alone)--> HI
//! ```
//!
//! A node in HI stays there however it heartbeats: only an operator returns
//! it to service. When the number of HI nodes reaches the cluster's HI
//! threshold, the cluster enters HI mode (see [`super::cluster`]).

use super::clock::Moment;
use super::cluster::ClusterMode;
use super::events::{ClusterEvent, EventKind};
use super::fabric::{FabricCore, secs};
use super::node::{NodeId, NodeState};
use std::time::Duration;

impl FabricCore {
    /// Number of nodes in Human Investigate.
    pub fn hi_count(&self) -> usize {
        self.nodes
            .values()
            .filter(|n| n.state == NodeState::HumanInvestigate)
            .count()
    }

    /// The threshold in nodes for the current cluster size.
    pub fn hi_threshold_nodes(&self) -> usize {
        self.config.hi_threshold.nodes(self.nodes.len())
    }

    pub fn cluster(&self) -> &super::cluster::ClusterState {
        &self.cluster
    }

    /// Input: the controller's own timer fired `late` after the deadline it
    /// was set for. Up to `stall_tolerance` that is ordinary scheduling and
    /// this is a plain [`FabricCore::tick`]. Beyond it the controller itself
    /// was stopped or starved (SIGSTOP, a paused VM, an overloaded machine):
    /// the heartbeats that arrived meanwhile were not read either, so the
    /// silence is the controller's, not the hosts'. Every node then gets a
    /// fresh heartbeat grace, as after a restart, instead of a flap to
    /// Unresponsive and back (and a false alarm in events and metrics). A
    /// host that is really gone is found one `node_timeout` later.
    pub fn tick_late(&mut self, now: Moment, late: Duration) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        if late >= self.config.stall_tolerance {
            for node in self.nodes.values_mut() {
                node.last_heard = node.last_heard.max(now.mono);
                if node.state == NodeState::Unresponsive {
                    node.state_since = now;
                }
            }
            events.push(self.events.record(
                now,
                EventKind::ControllerStalled,
                None,
                format!(
                    "the controller itself stalled: its timer fired {} late (stall_tolerance {}); \
                     every node has a fresh heartbeat grace",
                    secs(late),
                    secs(self.config.stall_tolerance)
                ),
            ));
        }
        events.extend(self.tick(now));
        events
    }

    /// Everything time-driven: heartbeat expiry, Unresponsive -> HI after the
    /// grace, expired fault holds -> HI, then one round of service healing.
    pub fn tick(&mut self, now: Moment) -> Vec<ClusterEvent> {
        let mut events = self.expire(now);
        let grace = self.config.unresponsive_grace;
        let overdue: Vec<(NodeId, String)> = self
            .nodes
            .values()
            .filter_map(|n| {
                if n.state == NodeState::Unresponsive && now.since(n.state_since.mono) >= grace {
                    Some((
                        n.id.clone(),
                        format!(
                            "unresponsive for {} (unresponsive_grace {})",
                            secs(now.since(n.state_since.mono)),
                            secs(grace)
                        ),
                    ))
                } else if n.state == NodeState::Ready
                    && n.hold.as_ref().is_some_and(|h| now.mono >= h.until)
                {
                    let h = n.hold.as_ref().expect("checked");
                    Some((
                        n.id.clone(),
                        format!(
                            "fault report not matched by other servers within the hold: {} (agent {})",
                            h.signature.reason, h.signature.agent_version
                        ),
                    ))
                } else {
                    None
                }
            })
            .collect();
        for (id, reason) in overdue {
            events.extend(self.enter_hi(now, &id, reason));
        }
        events.extend(self.heal(now));
        events.extend(self.watch_expiry(now));
        events.extend(self.advance_rollout(now));
        events
    }

    /// The monotonic time at which [`FabricCore::tick`] next has time-driven
    /// work: a heartbeat deadline, a grace running out, a hold expiring, a
    /// certificate entering its warning or incident window or expiring.
    pub fn next_deadline(&self, now: Moment) -> Option<Duration> {
        let grace = self.config.unresponsive_grace;
        let node_deadlines = self.nodes.values().filter_map(|n| match n.state {
            NodeState::Ready => {
                let expiry = n.last_heard + self.config.node_timeout;
                Some(n.hold.as_ref().map_or(expiry, |h| expiry.min(h.until)))
            }
            NodeState::Unresponsive => Some(n.state_since.mono + grace),
            NodeState::HumanInvestigate => None,
        });
        node_deadlines
            .chain(self.next_expiry_change(now))
            .chain(self.next_rollout_deadline())
            .min()
    }

    /// Moves a node to Human Investigate, then checks the cluster threshold.
    pub(super) fn enter_hi(
        &mut self,
        now: Moment,
        id: &NodeId,
        reason: String,
    ) -> Vec<ClusterEvent> {
        let Some(entered) = self.move_node(now, id, NodeState::HumanInvestigate, reason, None)
        else {
            return Vec::new();
        };
        let mut events = vec![entered];
        let (count, threshold) = (self.hi_count(), self.hi_threshold_nodes());
        if self.cluster.mode == ClusterMode::Normal && count >= threshold {
            let why = format!(
                "{count} of {} nodes in Human Investigate, HI threshold {} ({threshold} nodes): \
                 automatic service healing and internal updates stopped; \
                 service management stays available",
                self.nodes.len(),
                self.config.hi_threshold
            );
            self.cluster.mode = ClusterMode::HumanInvestigate;
            self.cluster.mode_since = Some(now);
            self.cluster.mode_reason = why.clone();
            self.cluster.last_trip = Some((now, count, threshold));
            events.push(
                self.events
                    .record(now, EventKind::ClusterHumanInvestigate, Some(id), why),
            );
        }
        events
    }
}
