//! GetStatus's filters and pages, validated at the edge: a cluster of
//! thousands of servers and a hundred thousand instances cannot be listed in
//! one reply (gRPC's 4 MiB message limit, and no operator reads it), so an
//! operator asks for the servers and instances that matter, a page at a time.

use super::ApiError;
use fabric_core::{
    FabricCore, InstanceId, InstanceState, NodeId, NodeRecord, NodeState, RoleInstance,
};
use fabric_proto::v1 as pb;

/// A validated GetStatusRequest.
#[derive(Debug, Default)]
pub struct StatusFilter {
    node: Option<NodeId>,
    node_state: Option<NodeState>,
    instance_state: Option<InstanceState>,
    fault_domain: Option<u32>,
    update_domain: Option<u32>,
    limit: Option<usize>,
    after: Option<InstanceId>,
}

/// A node id is a certificate name: a DNS name at most.
const MAX_NODE_ID: usize = 253;

fn one_of<T: Copy>(
    what: &str,
    given: &str,
    all: &[T],
    name: impl Fn(T) -> &'static str,
) -> Result<T, ApiError> {
    all.iter()
        .copied()
        .find(|s| name(*s).eq_ignore_ascii_case(given))
        .ok_or_else(|| {
            let names: Vec<_> = all.iter().map(|s| name(*s)).collect();
            ApiError::InvalidArgument(format!(
                "{what} {:?} is not one of {}",
                fabric_daemon::untrusted::shown(given),
                names.join(", ")
            ))
        })
}

impl StatusFilter {
    pub fn parse(req: &pb::GetStatusRequest) -> Result<Self, ApiError> {
        if req.node.len() > MAX_NODE_ID {
            return Err(ApiError::InvalidArgument(format!(
                "node is longer than {MAX_NODE_ID} bytes"
            )));
        }
        let node = (!req.node.is_empty()).then(|| NodeId::new(req.node.clone()));
        let node_state = (!req.node_state.is_empty())
            .then(|| {
                one_of(
                    "node state",
                    &req.node_state,
                    &NodeState::ALL,
                    NodeState::as_str,
                )
            })
            .transpose()?;
        let instance_state = (!req.instance_state.is_empty())
            .then(|| {
                one_of(
                    "instance state",
                    &req.instance_state,
                    &InstanceState::ALL,
                    InstanceState::as_str,
                )
            })
            .transpose()?;
        let after = (!req.instances_after.is_empty())
            .then(|| InstanceId::parse(&req.instances_after))
            .transpose()
            .map_err(|e| ApiError::InvalidArgument(format!("instances_after: {e}")))?;
        Ok(Self {
            node,
            node_state,
            instance_state,
            fault_domain: req.fault_domain,
            update_domain: req.update_domain,
            limit: (req.instance_limit > 0).then_some(req.instance_limit as usize),
            after,
        })
    }

    fn filters_nodes(&self) -> bool {
        self.node.is_some()
            || self.node_state.is_some()
            || self.fault_domain.is_some()
            || self.update_domain.is_some()
    }

    pub fn node(&self, n: &NodeRecord) -> bool {
        self.node.as_ref().is_none_or(|id| *id == n.id)
            && self.node_state.is_none_or(|s| s == n.state)
            && self.fault_domain.is_none_or(|d| d == n.info.fault_domain)
            && self.update_domain.is_none_or(|d| d == n.info.update_domain)
    }

    /// The page of instances the filter matches, in id order, how many
    /// matched in all, and the cursor of the next page.
    pub fn instances<'a>(
        &self,
        core: &'a FabricCore,
    ) -> (Vec<&'a RoleInstance>, usize, Option<&'a InstanceId>) {
        let on_matching_node = |i: &RoleInstance| {
            !self.filters_nodes()
                || i.node()
                    .and_then(|id| core.node(id))
                    .is_some_and(|n| self.node(n))
        };
        let matching = core.instances().filter(|i| {
            on_matching_node(i) && self.instance_state.is_none_or(|s| core.status_of(i) == s)
        });
        let mut page = Vec::new();
        let mut matched = 0;
        let mut more = false;
        for i in matching {
            matched += 1;
            if self.after.as_ref().is_some_and(|after| i.id <= *after) {
                continue;
            }
            if self.limit.is_some_and(|limit| page.len() >= limit) {
                more = true;
                continue;
            }
            page.push(i);
        }
        let next = more.then(|| page.last().map(|i| &i.id)).flatten();
        (page, matched, next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, deployment, node};
    use fabric_core::CoreConfig;

    /// Three nodes in domains 0, 1, 2; deployments a (4 instances) and b (2).
    fn core() -> FabricCore {
        let mut core = FabricCore::new(CoreConfig::default(), at(0));
        for i in 0..3 {
            core.register(at(0), NodeId::new(format!("host-{i}")), node(i, 8), "b");
        }
        for (name, n) in [("a", 4), ("b", 2)] {
            let mut d = deployment(name);
            d.spec.roles[0].instances = n;
            core.deploy(at(1), d.spec).unwrap();
        }
        core
    }

    fn ids(page: &[&RoleInstance]) -> Vec<String> {
        page.iter().map(|i| i.id.to_string()).collect()
    }

    #[test]
    fn filters_select_nodes_and_their_instances_and_pages_cover_each_once() {
        let core = core();
        let all = StatusFilter::parse(&pb::GetStatusRequest::default()).unwrap();
        let (page, matched, next) = all.instances(&core);
        assert_eq!((page.len(), matched, next), (6, 6, None));

        let on = |req: pb::GetStatusRequest| {
            let f = StatusFilter::parse(&req).unwrap();
            let nodes: Vec<_> = core
                .nodes()
                .filter(|n| f.node(n))
                .map(|n| n.id.to_string())
                .collect();
            let (page, matched, _) = f.instances(&core);
            assert_eq!(page.len(), matched, "no limit: one page");
            for i in &page {
                assert!(
                    nodes.contains(&i.node().unwrap().to_string()),
                    "{} off {nodes:?}",
                    i.id
                );
            }
            (nodes, page.len())
        };
        let (nodes, n1) = on(pb::GetStatusRequest {
            fault_domain: Some(1),
            ..Default::default()
        });
        assert_eq!(nodes, ["host-1"]);
        let (nodes, n0) = on(pb::GetStatusRequest {
            node: "host-0".into(),
            ..Default::default()
        });
        assert_eq!(nodes, ["host-0"]);
        let (_, n2) = on(pb::GetStatusRequest {
            update_domain: Some(2),
            ..Default::default()
        });
        assert_eq!(n0 + n1 + n2, 6, "every instance is on one of the three");
        let (nodes, n) = on(pb::GetStatusRequest {
            node_state: "humaninvestigate".into(),
            ..Default::default()
        });
        assert!(nodes.is_empty() && n == 0);
        let (_, starting) = on(pb::GetStatusRequest {
            instance_state: "Starting".into(),
            ..Default::default()
        });
        assert_eq!(starting, 6, "none has been reported Running");

        // Pages of 4: every instance once, in order, across deployments.
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let f = StatusFilter::parse(&pb::GetStatusRequest {
                instance_limit: 4,
                instances_after: after.clone(),
                ..Default::default()
            })
            .unwrap();
            let (page, matched, next) = f.instances(&core);
            assert_eq!(matched, 6);
            seen.extend(ids(&page));
            match next {
                Some(id) => after = id.to_string(),
                None => break,
            }
        }
        assert_eq!(seen, ids(&all.instances(&core).0));
    }

    #[test]
    fn bad_filters_are_refused_in_the_operators_words() {
        let refused =
            |req: pb::GetStatusRequest| StatusFilter::parse(&req).unwrap_err().to_string();
        let e = refused(pb::GetStatusRequest {
            node_state: "Asleep".into(),
            ..Default::default()
        });
        assert!(
            e.contains("node state \"Asleep\" is not one of Ready, Unresponsive"),
            "{e}"
        );
        let e = refused(pb::GetStatusRequest {
            instance_state: "Dancing".into(),
            ..Default::default()
        });
        assert!(
            e.contains("instance state \"Dancing\" is not one of Pending"),
            "{e}"
        );
        let e = refused(pb::GetStatusRequest {
            instances_after: "nope".into(),
            ..Default::default()
        });
        assert!(e.contains("instances_after"), "{e}");
        let e = refused(pb::GetStatusRequest {
            node: "x".repeat(300),
            ..Default::default()
        });
        assert!(e.contains("longer than 253"), "{e}");
    }
}
