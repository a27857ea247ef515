//! The dashboard's server view, readable at a thousand servers: a grid of
//! fault domain by update domain (every server counted, the worst state of
//! each cell shown, as the postmortem's operators thought of a cluster:
//! racks and update walks), then at most [`SERVERS_SHOWN`] servers one by
//! one, problems first (Human Investigate, Unresponsive, then servers whose
//! VMs are not all Running). A small cluster is shown whole; a big one shows
//! every server that needs a person's eyes and a sample of the healthy
//! rest, and says how many it left out.
//!
//! Built in passes over the core's instances without allocating per
//! instance, so a summary of 100,000 instances each second stays cheap.

use fabric_core::{FabricCore, InstanceState, Moment, NodeId, NodeRecord, NodeState};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// The most servers the page lists one by one.
pub const SERVERS_SHOWN: usize = 60;

#[derive(Debug, Serialize)]
pub struct NodeView {
    pub id: String,
    pub state: &'static str,
    pub reason: String,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub seconds_since_heartbeat: f64,
    /// "base" or the package it runs.
    pub package: String,
    pub vms: Vec<VmView>,
}

#[derive(Debug, Serialize)]
pub struct VmView {
    pub instance: String,
    pub state: &'static str,
    pub incarnation: u64,
    pub healing: bool,
}

/// One fault domain x update domain cell: every server in it counted.
#[derive(Debug, Default, Serialize)]
pub struct DomainCell {
    pub fault_domain: u32,
    pub update_domain: u32,
    /// Servers per state, only states present.
    pub servers: BTreeMap<&'static str, usize>,
    pub instances: usize,
    pub running: usize,
    /// The worst server in the cell.
    pub worst: Health,
}

/// How a server looks to a person, most urgent first (the derived order is
/// the listing order).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Health {
    HumanInvestigate,
    Unresponsive,
    /// Ready, but not every instance on it is Running (starting, failing,
    /// or being healed onto it).
    Degraded,
    #[default]
    Ready,
}

/// The servers part of the summary.
pub struct Servers {
    pub nodes: Vec<NodeView>,
    pub domains: Vec<DomainCell>,
}

/// What one pass over the instances learns per server.
#[derive(Default)]
struct Tally {
    vms: usize,
    running: usize,
}

fn health(node: &NodeRecord, tally: Option<&Tally>) -> Health {
    match node.state {
        NodeState::HumanInvestigate => Health::HumanInvestigate,
        NodeState::Unresponsive => Health::Unresponsive,
        NodeState::Ready if tally.is_some_and(|t| t.running < t.vms) => Health::Degraded,
        NodeState::Ready => Health::Ready,
    }
}

pub fn servers(core: &FabricCore, now: Moment) -> Servers {
    let mut tallies: HashMap<&NodeId, Tally> = HashMap::new();
    for i in core.instances() {
        if let Some(node) = i.node() {
            let t = tallies.entry(node).or_default();
            t.vms += 1;
            // A VM being healed onto a server counts as not yet Running
            // there, whatever it reported.
            if core.status_of(i) == InstanceState::Running && i.healing().is_none() {
                t.running += 1;
            }
        }
    }
    let mut cells: BTreeMap<(u32, u32), DomainCell> = BTreeMap::new();
    let mut ranked: Vec<(Health, &NodeRecord)> = Vec::new();
    for n in core.nodes() {
        let tally = tallies.get(&n.id);
        let health = health(n, tally);
        let key = (n.info.fault_domain, n.info.update_domain);
        let cell = cells.entry(key).or_insert_with(|| DomainCell {
            fault_domain: key.0,
            update_domain: key.1,
            ..DomainCell::default()
        });
        *cell.servers.entry(n.state.as_str()).or_default() += 1;
        cell.instances += tally.map_or(0, |t| t.vms);
        cell.running += tally.map_or(0, |t| t.running);
        cell.worst = cell.worst.min(health);
        ranked.push((health, n));
    }
    // Nodes come in id order; a stable sort keeps it within each rank.
    ranked.sort_by_key(|(health, _)| *health);
    ranked.truncate(SERVERS_SHOWN);
    let mut vms: HashMap<&NodeId, Vec<VmView>> =
        ranked.iter().map(|(_, n)| (&n.id, Vec::new())).collect();
    for i in core.instances() {
        if let Some(list) = i.node().and_then(|n| vms.get_mut(n)) {
            list.push(VmView {
                instance: i.id.to_string(),
                state: core.status_of(i).as_str(),
                incarnation: i.incarnation(),
                healing: i.healing().is_some(),
            });
        }
    }
    let nodes = ranked
        .iter()
        .map(|(_, n)| NodeView {
            id: n.id.to_string(),
            state: n.state.as_str(),
            reason: n.state_reason.clone(),
            fault_domain: n.info.fault_domain,
            update_domain: n.info.update_domain,
            capacity: n.info.capacity_vm_slots,
            seconds_since_heartbeat: now.since(n.last_heard).as_secs_f64(),
            package: n.info.software.package_label().to_owned(),
            vms: vms.remove(&n.id).unwrap_or_default(),
        })
        .collect();
    Servers {
        nodes,
        domains: cells.into_values().collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, deployment, node};
    use fabric_core::CoreConfig;

    #[test]
    fn a_big_cluster_lists_its_problems_first_and_counts_every_server() {
        let mut core = FabricCore::new(CoreConfig::default(), at(0));
        // 100 servers over 4 fault x 5 update domains. The last two
        // register early and are never heard from again: Unresponsive.
        for i in (98..100u32).chain(0..98) {
            let mut info = node(0, 4);
            info.fault_domain = i % 4;
            info.update_domain = i % 5;
            let t = if i >= 98 { 0 } else { 8 };
            core.register(at(t), NodeId::new(format!("host-{i:03}")), info, "b");
        }
        let mut d = deployment("a");
        d.spec.roles[0].instances = 300;
        core.deploy(at(8), d.spec).unwrap();
        core.tick(at(12));
        let late = ["host-098", "host-099"];
        for id in late {
            assert_eq!(
                core.node(&NodeId::new(id)).unwrap().state,
                NodeState::Unresponsive
            );
        }

        let s = servers(&core, at(12));
        assert_eq!(s.nodes.len(), SERVERS_SHOWN);
        assert_eq!(
            s.nodes[..2]
                .iter()
                .map(|n| n.id.as_str())
                .collect::<Vec<_>>(),
            late,
            "the Unresponsive servers come first"
        );
        // Nothing has reported Running: every other listed server is
        // Degraded-first by id, and lists its own VMs.
        assert_eq!(s.nodes[2].id, "host-000");
        for n in &s.nodes {
            assert!(!n.vms.is_empty() && n.vms.len() <= 4, "{}", n.id);
        }
        // The grid counts every server and every instance once.
        assert_eq!(s.domains.len(), 20);
        let servers: usize = s.domains.iter().flat_map(|c| c.servers.values()).sum();
        let instances: usize = s.domains.iter().map(|c| c.instances).sum();
        assert_eq!((servers, instances), (100, 300));
        for c in &s.domains {
            let has_late = late.iter().any(|id| {
                let n = core.node(&NodeId::new(*id)).unwrap();
                (n.info.fault_domain, n.info.update_domain) == (c.fault_domain, c.update_domain)
            });
            let want = if has_late {
                Health::Unresponsive
            } else {
                Health::Degraded
            };
            assert_eq!(
                c.worst, want,
                "FD {} UD {}",
                c.fault_domain, c.update_domain
            );
        }
    }
}
