//! Service healing: reincarnating the role instances of failed servers on
//! healthy ones.
//!
//! An instance needs a home when its server is in Human Investigate, or when
//! it is Pending (an earlier heal found no room). Each round:
//! - nothing happens while the cluster is in HI mode or healing is switched
//!   off, and roles paused by a classified software fault are skipped;
//! - at most `healing_concurrency` instances are in flight (moved but not yet
//!   Running), so recovery is parallel (the 2009 lesson) yet bounded;
//! - higher-priority deployments go first (infrastructure services before
//!   what depends on them: the 2012 postmortem's "dependency priorities"),
//!   then, within a priority, the roles that lost the largest share of
//!   their instances;
//! - each instance gets a new incarnation on a Ready server chosen by the
//!   usual placement rules; one that fits nowhere becomes Pending with the
//!   reason, and is placed in a later round once capacity returns.
//!
//! The old server is fenced by desired state: it no longer appears in that
//! server's desired VMs, so if the server comes back its host agent stops the
//! old VM, and reports about the old incarnation are ignored.

use super::clock::Moment;
use super::deployment::{InstanceId, Name};
use super::events::{ClusterEvent, EventKind};
use super::fabric::FabricCore;
use super::instance::InstanceState;
use super::node::NodeState;
use super::placement;

use std::collections::BTreeMap;

impl FabricCore {
    pub(crate) fn needs_home(&self, id: &InstanceId) -> bool {
        let Some(i) = self.instances.get(id) else {
            return false;
        };
        match i.node() {
            None => true,
            Some(n) => self
                .nodes
                .get(n)
                .is_none_or(|n| n.state == NodeState::HumanInvestigate),
        }
    }

    /// Every instance that [`FabricCore::needs_home`], in id order: the
    /// unplaced ones and those on servers in Human Investigate (or gone),
    /// found from the per-server index. A tick runs a healing round, and
    /// ticks follow every decision with events: a pass over 100,000
    /// instances there cost the controller most of a core while they
    /// started (docs/performance.md).
    pub(crate) fn homeless(&mut self) -> std::collections::BTreeSet<InstanceId> {
        self.by_node.refresh(&mut self.instances);
        let mut queue: std::collections::BTreeSet<InstanceId> =
            self.by_node.unplaced().cloned().collect();
        for (node, ids) in self.by_node.servers() {
            let gone = self
                .nodes
                .get(node)
                .is_none_or(|n| n.state == NodeState::HumanInvestigate);
            if gone {
                queue.extend(ids.iter().cloned());
            }
        }
        debug_assert!(queue.iter().all(|id| self.needs_home(id)));
        queue
    }

    /// Instances being healed and not yet Running.
    pub fn healing_in_flight(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.healing_in_flight())
            .count()
    }

    /// Instances waiting for a server.
    pub fn pending_instances(&self) -> usize {
        self.instances
            .values()
            .filter(|i| i.state() == InstanceState::Pending)
            .count()
    }

    /// One round of service healing. See the module docs.
    pub fn heal(&mut self, now: Moment) -> Vec<ClusterEvent> {
        // A controller that lost its state knows neither what runs nor where.
        if !self.cluster.healing_allowed() || self.state_lost.is_some() {
            return Vec::new();
        }
        let queue: Vec<InstanceId> = self
            .homeless()
            .into_iter()
            .filter(|id| !self.cluster.role_paused(&id.deployment, &id.role))
            .collect();
        if queue.is_empty() {
            return Vec::new();
        }
        let budget =
            (self.config.healing_concurrency as usize).saturating_sub(self.healing_in_flight());
        if budget == 0 {
            return Vec::new();
        }
        // Share of each role's instances that are not healthy where they are.
        let mut lost: BTreeMap<(&Name, &Name), (usize, usize)> = BTreeMap::new();
        for i in self.instances.values() {
            let entry = lost.entry((&i.id.deployment, &i.id.role)).or_default();
            entry.1 += 1;
            if self.needs_home(&i.id) {
                entry.0 += 1;
            }
        }
        let priority = |id: &InstanceId| {
            self.deployments
                .get(&id.deployment)
                .map_or(0, |d| d.priority)
        };
        let mut ordered: Vec<(u32, (usize, usize), InstanceId)> = queue
            .into_iter()
            .map(|id| (priority(&id), lost[&(&id.deployment, &id.role)], id))
            .collect();
        // Higher priority first; then the larger share lost, compared as
        // fractions down/total without floats; then by id, so a round is
        // deterministic.
        ordered.sort_by(|(pa, (da, ta), a), (pb, (db, tb), b)| {
            pb.cmp(pa)
                .then_with(|| (db * ta).cmp(&(da * tb)))
                .then_with(|| a.cmp(b))
        });
        let queue: Vec<InstanceId> = ordered.into_iter().map(|(_, _, id)| id).collect();

        let mut events = Vec::new();
        let mut placer = placement::Placer::new(self.candidates());
        // Every affected role's spread is built in one pass per round and
        // kept up to date by `place`, so planning stays linear in the cluster.
        let roles = queue
            .iter()
            .map(|id| (id.deployment.clone(), id.role.clone()))
            .collect();
        let mut spreads = self.spreads(&roles);
        let mut placed = 0;
        for id in queue {
            if placed >= budget {
                break;
            }
            let spread = spreads
                .entry((id.deployment.clone(), id.role.clone()))
                .or_default();
            let chosen = placer.place(spread, 1);
            let instance = self.instances.get_mut(&id).expect("queued from instances");
            match chosen {
                Some(nodes) => {
                    let to = nodes.into_iter().next().expect("placed one");
                    let note = match instance.node() {
                        Some(f) => format!("healed off {f}"),
                        None => "placed after waiting for capacity".into(),
                    };
                    let from = instance.reincarnate(now, to.clone(), note);
                    let reason = format!(
                        "{id} incarnation {} placed on {to}{}",
                        instance.incarnation(),
                        from.map(|f| format!(", healed off {f}"))
                            .unwrap_or_default()
                    );
                    events.push(self.events.record(
                        now,
                        EventKind::InstanceHealing,
                        Some(&to),
                        reason,
                    ));
                    placed += 1;
                }
                None => {
                    if instance.state() != InstanceState::Pending {
                        let from =
                            instance.unplace(now, "no Ready server with a free VM slot".into());
                        events.push(self.events.record(
                            now,
                            EventKind::InstancePending,
                            from.as_ref(),
                            format!("{id} pending: no Ready server with a free VM slot"),
                        ));
                    }
                }
            }
        }
        events
    }
}
