//! Which role instances each server holds: an index beside the instances,
//! kept up to date from the instances' change marks (see [`super::tracked`]).
//!
//! Every heartbeat's reply carries the server's desired set; found by
//! scanning every instance, a cluster of 5,000 servers with 20 VMs each at
//! one heartbeat a second would cost 5,000 x 100,000 comparisons a second.
//! With the index a reply costs the server's own instances.

use super::deployment::InstanceId;
use super::instance::RoleInstance;
use super::node::NodeId;
use super::tracked::Tracked;
use std::collections::{BTreeMap, BTreeSet, HashMap};

#[derive(Clone, Debug, Default)]
pub struct ByNode {
    on: BTreeMap<NodeId, BTreeSet<InstanceId>>,
    node_of: HashMap<InstanceId, NodeId>,
    /// Servers holding (or having held) an instance that changed since
    /// [`ByNode::take_touched`]: whose desired set may differ.
    touched: BTreeSet<NodeId>,
    /// Instances on no server (Pending): with the servers in Human
    /// Investigate, what a healing round looks at, without a pass over
    /// every instance at every tick.
    unplaced: BTreeSet<InstanceId>,
}

impl ByNode {
    /// Brings the index up to date with the instances changed since the last
    /// call: O(changes).
    pub fn refresh(&mut self, instances: &mut Tracked<InstanceId, RoleInstance>) {
        for id in instances.take_unindexed() {
            let instance = instances.get(&id);
            let now = instance.and_then(|i| i.node()).cloned();
            if instance.is_some() && now.is_none() {
                self.unplaced.insert(id.clone());
            } else {
                self.unplaced.remove(&id);
            }
            let before = self.node_of.get(&id);
            // An instance that changed in place (a new incarnation) changes
            // its server's desired set too.
            self.touched.extend(before.cloned());
            self.touched.extend(now.clone());
            if before == now.as_ref() {
                continue;
            }
            if let Some(old) = self.node_of.remove(&id)
                && let Some(set) = self.on.get_mut(&old)
            {
                set.remove(&id);
                if set.is_empty() {
                    self.on.remove(&old);
                }
            }
            if let Some(node) = now {
                self.on.entry(node.clone()).or_default().insert(id.clone());
                self.node_of.insert(id, node);
            }
        }
    }

    /// The servers touched since the last call (see [`ByNode::touched`]).
    pub fn take_touched(&mut self) -> BTreeSet<NodeId> {
        std::mem::take(&mut self.touched)
    }

    /// The instances on `node`, as of the last refresh.
    pub fn on(&self, node: &NodeId) -> impl Iterator<Item = &InstanceId> {
        self.on.get(node).into_iter().flatten()
    }

    /// Every server holding instances, with them, as of the last refresh.
    pub fn servers(&self) -> impl Iterator<Item = (&NodeId, &BTreeSet<InstanceId>)> {
        self.on.iter()
    }

    /// The instances on no server, as of the last refresh.
    pub fn unplaced(&self) -> impl Iterator<Item = &InstanceId> {
        self.unplaced.iter()
    }
}
