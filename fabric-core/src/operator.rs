//! What only an operator may do: return a server from Human Investigate,
//! resume a cluster from HI mode, and flip the graceful-degradation switches.
//! Each is recorded as an event naming who did it and why.

use super::CoreError;
use super::clock::Moment;
use super::cluster::{ClusterMode, Switch};
use super::events::{ClusterEvent, EventKind};
use super::fabric::FabricCore;
use super::node::{NodeId, NodeState};

impl FabricCore {
    /// `fabricctl node repair ID`: HI -> Ready. The node gets a fresh
    /// heartbeat grace from now.
    pub fn repair(
        &mut self,
        now: Moment,
        id: &NodeId,
        who: &str,
        why: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let node = self
            .nodes
            .get_mut(id)
            .ok_or_else(|| CoreError::UnknownNode(id.clone()))?;
        if node.state != NodeState::HumanInvestigate {
            return Err(CoreError::NotInHumanInvestigate(id.clone(), node.state));
        }
        node.last_heard = now.mono;
        let mut events: Vec<ClusterEvent> = self
            .move_node(
                now,
                id,
                NodeState::Ready,
                format!("repaired by {who}: {why}"),
                None,
            )
            .into_iter()
            .collect();
        events.extend(self.heal(now));
        Ok(events)
    }

    /// `fabricctl cluster resume`: leave HI mode, clear classified incidents
    /// (their roles may be healed again), and give every node a fresh
    /// heartbeat grace so the cluster does not trip again at once on silence
    /// that began while operators were working.
    pub fn resume(&mut self, now: Moment, who: &str) -> Vec<ClusterEvent> {
        let was = self.cluster.mode;
        self.cluster.mode = ClusterMode::Normal;
        self.cluster.mode_since = Some(now);
        self.cluster.mode_reason = format!("resumed by {who}");
        let incidents = self.cluster.incidents.len();
        self.cluster.incidents.clear();
        for node in self.nodes.values_mut() {
            node.last_heard = now.mono;
            if node.state == NodeState::Unresponsive {
                node.state_since = now;
            }
        }
        let mut events = vec![self.events.record(
            now,
            EventKind::ClusterResumed,
            None,
            format!(
                "resumed by {who} (was {was}); {incidents} incident(s) cleared; every node has a \
                 fresh heartbeat grace; {} node(s) still in HI until repaired",
                self.hi_count()
            ),
        )];
        events.extend(self.heal(now));
        events
    }

    /// `fabricctl cluster set SWITCH on|off`.
    pub fn set_switch(
        &mut self,
        now: Moment,
        switch: Switch,
        on: bool,
        who: &str,
    ) -> Vec<ClusterEvent> {
        self.cluster.switches.set(switch, on);
        let mut events = vec![self.events.record(
            now,
            EventKind::ClusterSwitch,
            None,
            format!(
                "{} switched {} by {who}",
                switch.as_str(),
                if on { "on" } else { "off" }
            ),
        )];
        if switch == Switch::Healing && on {
            events.extend(self.heal(now));
        }
        events
    }
}
