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
//! are balanced and is O(nodes) per instance, which keeps planning thousands
//! of placements fast.

use super::node::NodeId;

/// What placement needs to know about a Ready server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub id: NodeId,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub used: u32,
}

/// Where the role's instances already run.
#[derive(Clone, Debug, Default)]
pub struct RoleSpread {
    pub nodes: Vec<(NodeId, u32, u32)>,
}

impl RoleSpread {
    fn score(&self, c: &Candidate) -> (usize, usize, usize, u32) {
        let in_fd = self.nodes.iter().filter(|n| n.1 == c.fault_domain).count();
        let in_ud = self.nodes.iter().filter(|n| n.2 == c.update_domain).count();
        let on_node = self.nodes.iter().filter(|n| n.0 == c.id).count();
        (in_fd, in_ud, on_node, c.used)
    }
}

/// Places `count` more instances of a role. Returns the chosen nodes (a node
/// may appear more than once), and updates `candidates`' used slots and
/// `spread`. Returns `None`, changing nothing, if there are not enough slots.
pub fn place(
    candidates: &mut [Candidate],
    spread: &mut RoleSpread,
    count: u32,
) -> Option<Vec<NodeId>> {
    let free: u64 = candidates
        .iter()
        .map(|c| u64::from(c.capacity.saturating_sub(c.used)))
        .sum();
    if free < u64::from(count) {
        return None;
    }
    let mut chosen = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let best = candidates
            .iter_mut()
            .filter(|c| c.used < c.capacity)
            .min_by(|a, b| {
                spread
                    .score(a)
                    .cmp(&spread.score(b))
                    .then_with(|| a.id.cmp(&b.id))
            })
            .expect("free slots were counted above");
        best.used += 1;
        spread
            .nodes
            .push((best.id.clone(), best.fault_domain, best.update_domain));
        chosen.push(best.id.clone());
    }
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
