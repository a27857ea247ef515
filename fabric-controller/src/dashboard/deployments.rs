//! The dashboard's deployments, readable at 100,000 instances: per
//! deployment a count of its instances in each state, then at most
//! [`INSTANCES_SHOWN`] instances one by one, problems first (Pending, Lost,
//! Unknown, being healed, starting), so a page over a big cluster lists what
//! needs attention instead of 20,000 Running rows.

use fabric_core::{FabricCore, InstanceState, Name, RoleInstance};
use serde::Serialize;
use std::collections::BTreeMap;

/// The most instances a deployment lists one by one.
pub const INSTANCES_SHOWN: usize = 100;

#[derive(Debug, Serialize)]
pub struct DeploymentView {
    pub name: String,
    /// Every instance of the deployment.
    pub instances_total: usize,
    /// Instances per shown state, only states present.
    pub by_state: BTreeMap<&'static str, usize>,
    /// At most [`INSTANCES_SHOWN`], problems first.
    pub instances: Vec<InstanceView>,
}

#[derive(Debug, Serialize)]
pub struct InstanceView {
    pub id: String,
    pub node: String,
    pub state: &'static str,
    pub incarnation: u64,
    pub endpoint: String,
    pub healing_from: String,
    pub detail: String,
    /// The role's guest agent when it is not Fabric's ("waagent").
    #[serde(skip_serializing_if = "String::is_empty")]
    pub guest: String,
}

/// Lower is listed first: what a person must look at before what works.
fn urgency(state: InstanceState, healing: bool) -> u8 {
    match state {
        InstanceState::Pending => 0,
        InstanceState::Lost => 1,
        InstanceState::Unknown => 2,
        _ if healing => 3,
        InstanceState::Reinitializing => 4,
        InstanceState::Starting | InstanceState::Provisioned => 5,
        InstanceState::Running => 6,
    }
}

pub fn deployments(core: &FabricCore) -> Vec<DeploymentView> {
    let mut by_deployment: BTreeMap<&Name, Vec<(u8, InstanceState, &RoleInstance)>> =
        core.deployments().map(|d| (&d.name, Vec::new())).collect();
    for i in core.instances() {
        if let Some(list) = by_deployment.get_mut(&i.id.deployment) {
            let state = core.status_of(i);
            list.push((urgency(state, i.healing().is_some()), state, i));
        }
    }
    by_deployment
        .into_iter()
        .map(|(name, mut list)| {
            let spec = core.deployments().find(|d| &d.name == name);
            let mut by_state = BTreeMap::new();
            for (_, state, _) in &list {
                *by_state.entry(state.as_str()).or_default() += 1;
            }
            let instances_total = list.len();
            // Instances come in id order; a stable sort keeps it per rank.
            list.sort_by_key(|(rank, _, _)| *rank);
            list.truncate(INSTANCES_SHOWN);
            DeploymentView {
                name: name.to_string(),
                instances_total,
                by_state,
                instances: list
                    .into_iter()
                    .map(|(_, state, i)| InstanceView {
                        id: i.id.to_string(),
                        node: i.node().map(|n| n.to_string()).unwrap_or_default(),
                        state: state.as_str(),
                        incarnation: i.incarnation(),
                        endpoint: i.endpoint().to_owned(),
                        healing_from: i
                            .healing_from()
                            .map(ToString::to_string)
                            .unwrap_or_default(),
                        detail: i.detail().to_owned(),
                        guest: crate::api::convert::guest_name(
                            spec.and_then(|d| d.role(&i.id.role)),
                        ),
                    })
                    .collect(),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::{at, deployment, node};
    use fabric_core::{CoreConfig, NodeId};

    #[test]
    fn a_big_deployment_counts_every_instance_and_lists_problems_first() {
        let mut core = FabricCore::new(CoreConfig::default(), at(0));
        // Ten servers register early and are never heard from again: at 12
        // they are Unresponsive and their instances Unknown.
        for i in 0..80u32 {
            let t = if i < 10 { 0 } else { 8 };
            core.register(
                at(t),
                NodeId::new(format!("host-{i:02}")),
                node(i % 5, 4),
                "b",
            );
        }
        let mut d = deployment("big");
        d.spec.roles[0].instances = 250;
        core.deploy(at(8), d.spec).unwrap();
        core.deploy(at(8), deployment("small").spec).unwrap();
        core.tick(at(12));

        let views = deployments(&core);
        assert_eq!(
            views.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
            ["big", "small"]
        );
        let big = &views[0];
        assert_eq!(big.instances_total, 250);
        assert_eq!(big.by_state.values().sum::<usize>(), 250);
        let unknown = big.by_state.get("Unknown").copied().unwrap_or(0);
        assert!(unknown > 0, "{:?}", big.by_state);
        assert_eq!(big.instances.len(), INSTANCES_SHOWN);
        assert!(
            big.instances[..unknown]
                .iter()
                .all(|i| i.state == "Unknown"),
            "the Unknown instances are listed first"
        );
        assert!(
            big.instances[unknown..]
                .iter()
                .all(|i| i.state == "Starting")
        );
        assert_eq!((views[1].instances_total, views[1].instances.len()), (1, 1));
    }
}
