//! Choosing a server for a role instance.
//!
//! Instances of one role are spread so that losing a fault domain (a rack, a
//! power feed) or updating an update domain takes down as few of them as
//! possible, and never over a server's VM slots. For each instance, in turn,
//! the candidate with the lowest score wins, comparing in this order:
//! 1. instances of this role already in the candidate's fault domain,
//! 2. instances of this role already in its update domain,
//! 3. instances of this role already on the server,
//! 4. VM slots already used on the server (balance load),
//! 5. the node id (so the result is deterministic).
//!
//! Greedy placement is optimal for the spread of a single role when domains
//! are balanced. Each candidate is scored in O(1) from per-role counters, so
//! one placement is O(nodes), which keeps planning thousands of placements
//! fast.

use super::node::NodeId;
use rustc_hash::FxHashMap as HashMap;
use std::collections::BTreeMap;

/// What placement needs to know about a Ready server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub used: u32,
}

/// Where one role's instances already run, as counts per fault domain,
/// update domain and server.
#[derive(Clone, Debug, Default)]
pub struct RoleSpread {
    per_fd: HashMap<u32, usize>,
    per_ud: HashMap<u32, usize>,
    per_node: HashMap<NodeId, usize>,
}

impl RoleSpread {
    /// Records one instance on `node` (in fault domain `fd`, update domain `ud`).
    pub fn add(&mut self, node: &NodeId, fd: u32, ud: u32) {
        *self.per_fd.entry(fd).or_default() += 1;
        *self.per_ud.entry(ud).or_default() += 1;
        *self.per_node.entry(node.clone()).or_default() += 1;
    }

    /// Instances of the role already in fault domain `fd`, then in update
    /// domain `ud`: the first two parts of a candidate's score.
    fn domain_score(&self, fd: u32, ud: u32) -> (usize, usize) {
        (
            self.per_fd.get(&fd).copied().unwrap_or(0),
            self.per_ud.get(&ud).copied().unwrap_or(0),
        )
    }

    fn on_node(&self, node: &NodeId) -> usize {
        self.per_node.get(node).copied().unwrap_or(0)
    }
}

/// Places role instances on a fixed set of candidates, one planning round
/// at a time (a deploy, a scale-out, a round of healing).
///
/// Candidates are grouped by (fault domain, update domain): the first two
/// parts of the score depend only on the group, so each placement looks at
/// every group once and then only at the servers of the best groups, instead
/// of at every server.
#[derive(Debug)]
pub struct Placer {
    candidates: Vec<Candidate>,
    /// Candidate indices by (fault domain, update domain), with the group's
    /// free slots.
    groups: BTreeMap<(u32, u32), (Vec<usize>, u64)>,
    free: u64,
}

impl Placer {
    pub fn new(candidates: Vec<Candidate>) -> Self {
        let mut groups: BTreeMap<(u32, u32), (Vec<usize>, u64)> = BTreeMap::new();
        let mut free = 0;
        for (i, c) in candidates.iter().enumerate() {
            let slots = u64::from(c.capacity.saturating_sub(c.used));
            let group = groups.entry((c.fault_domain, c.update_domain)).or_default();
            group.0.push(i);
            group.1 += slots;
            free += slots;
        }
        Self {
            candidates,
            groups,
            free,
        }
    }

    /// Free VM slots left on all candidates.
    pub fn free(&self) -> u64 {
        self.free
    }

    /// Places `count` more instances of the role whose current spread is
    /// `spread`. Returns the chosen nodes (a node may appear more than once)
    /// and updates `spread`. Returns `None`, changing nothing, if there are
    /// not enough free slots.
    pub fn place(&mut self, spread: &mut RoleSpread, count: u32) -> Option<Vec<NodeId>> {
        if self.free < u64::from(count) {
            return None;
        }
        let mut chosen = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let best_group = self
                .groups
                .iter()
                .filter(|(_, (_, free))| *free > 0)
                .map(|(&(fd, ud), _)| spread.domain_score(fd, ud))
                .min()
                .expect("free slots were counted above");
            let best = self
                .groups
                .iter()
                .filter(|((fd, ud), (_, free))| {
                    *free > 0 && spread.domain_score(*fd, *ud) == best_group
                })
                .flat_map(|(_, (members, _))| members.iter().copied())
                .filter(|&i| self.candidates[i].used < self.candidates[i].capacity)
                .min_by(|&a, &b| {
                    let (a, b) = (&self.candidates[a], &self.candidates[b]);
                    (spread.on_node(&a.id), a.used, &a.id).cmp(&(
                        spread.on_node(&b.id),
                        b.used,
                        &b.id,
                    ))
                })
                .expect("a group with free slots has a server with a free slot");
            let c = &mut self.candidates[best];
            c.used += 1;
            self.free -= 1;
            if let Some(group) = self.groups.get_mut(&(c.fault_domain, c.update_domain)) {
                group.1 -= 1;
            }
            spread.add(&c.id, c.fault_domain, c.update_domain);
            chosen.push(c.id.clone());
        }
        Some(chosen)
    }
}

/// Places `count` instances on `candidates` in one go (see [`Placer`]),
/// writing the used slots back.
pub fn place(
    candidates: &mut [Candidate],
    spread: &mut RoleSpread,
    count: u32,
) -> Option<Vec<NodeId>> {
    let mut placer = Placer::new(candidates.to_vec());
    let chosen = placer.place(spread, count)?;
    candidates.clone_from_slice(&placer.candidates);
    Some(chosen)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(i: u32, fd: u32, ud: u32, capacity: u32) -> Candidate {
        Candidate {
            id: NodeId::new(format!("host-{i}")),
            fault_domain: fd,
            update_domain: ud,
            capacity,
            used: 0,
        }
    }

    #[test]
    fn spreads_across_fault_then_update_domains() {
        // Two fault domains; host-1 and host-2 share fault domain 0.
        let mut nodes = vec![node(1, 0, 0, 4), node(2, 0, 1, 4), node(3, 1, 0, 4)];
        let mut spread = RoleSpread::default();
        let chosen = place(&mut nodes, &mut spread, 2).unwrap();
        let fds: Vec<u32> = chosen
            .iter()
            .map(|id| nodes.iter().find(|n| &n.id == id).unwrap().fault_domain)
            .collect();
        assert_ne!(
            fds[0], fds[1],
            "two instances in one fault domain: {chosen:?}"
        );
        // The third goes to the remaining node of FD 0 with an unused UD.
        let third = place(&mut nodes, &mut spread, 1).unwrap();
        assert_eq!(third[0].as_str(), "host-2");
    }

    #[test]
    fn respects_capacity_and_refuses_when_full() {
        let mut nodes = vec![node(1, 0, 0, 1), node(2, 1, 1, 2)];
        let mut spread = RoleSpread::default();
        assert!(place(&mut nodes, &mut spread, 4).is_none());
        assert_eq!(
            nodes.iter().map(|n| n.used).sum::<u32>(),
            0,
            "changed on failure"
        );
        let chosen = place(&mut nodes, &mut spread, 3).unwrap();
        assert_eq!(chosen.len(), 3);
        assert!(nodes.iter().all(|n| n.used <= n.capacity));
        assert!(place(&mut nodes, &mut spread, 1).is_none());
    }
}
