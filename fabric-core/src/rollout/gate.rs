//! The health gate between steps: is the step's part of the cluster whole
//! again on the new software, as a client sees it?
//!
//! Three checks, all on the step's servers: each is Ready and reports the
//! target package; each role instance there is Running (at or past the
//! incarnation the rollout gave it); and, walking forward, each role
//! endpoint there answered the shell's probe from outside its server at its
//! current incarnation. The last check is the 2012 lesson: the secondary
//! outage's single-server test "had not included testing network
//! connectivity to the VMs", so a VM that runs but cannot be reached passed.

use super::{Direction, Rollout};
use crate::fabric::FabricCore;
use crate::instance::InstanceState;
use crate::node::NodeState;

/// The gate's verdict on the current step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// Every check passes now.
    pub healthy: bool,
    /// Counts, e.g. "servers 2/2 on p2, instances 3/4 Running, endpoints 3/4 reachable".
    pub summary: String,
    /// The first thing that fails, in words.
    pub problem: Option<String>,
}

/// Evaluates the gate of `rollout`'s current step.
pub fn evaluate(core: &FabricCore, rollout: &Rollout) -> Verdict {
    let Some(step) = rollout.current_step() else {
        return Verdict {
            healthy: true,
            summary: "no step".into(),
            problem: None,
        };
    };
    let mut problems = Vec::new();
    let mut servers_ok = 0;
    for id in &step.nodes {
        let wanted = core.wanted_package(rollout, id);
        match core.node(id) {
            None => problems.push(format!("{id} is not registered")),
            Some(n) if n.state != NodeState::Ready => problems.push(format!("{id} is {}", n.state)),
            Some(n) if n.info.software.package != wanted => problems.push(format!(
                "{id} runs {}, not {}",
                n.info.software.package_label(),
                wanted.as_ref().map_or("base", |v| v.as_str())
            )),
            Some(_) => servers_ok += 1,
        }
    }
    let (mut instances, mut running, mut reachable) = (0, 0, 0);
    for i in core
        .instances()
        .filter(|i| i.node().is_some_and(|n| step.nodes.contains(n)))
    {
        instances += 1;
        let given = rollout.reincarnated.get(&i.id).copied().unwrap_or(0);
        let state = core.status_of(i);
        if state != InstanceState::Running || i.incarnation() < given {
            let detail = if i.detail().is_empty() {
                String::new()
            } else {
                format!(": {}", crate::events::bounded(i.detail(), 300))
            };
            problems.push(format!(
                "{} is {state} (incarnation {}){detail}",
                i.id,
                i.incarnation()
            ));
            continue;
        }
        running += 1;
        if rollout.direction == Direction::Back {
            continue;
        }
        match rollout.probes.get(&i.id) {
            Some(p) if p.incarnation == i.incarnation() && p.ok => reachable += 1,
            Some(p) if p.incarnation == i.incarnation() => problems.push(format!(
                "{} endpoint {} unreachable from outside its server: {}",
                i.id,
                i.endpoint(),
                p.detail
            )),
            _ => problems.push(format!("{} endpoint {} not probed yet", i.id, i.endpoint())),
        }
    }
    let target = match rollout.direction {
        Direction::Forward => rollout.plan.package.to_string(),
        Direction::Back => "their previous package".into(),
    };
    let mut summary = format!(
        "servers {servers_ok}/{} on {target} and Ready, instances {running}/{instances} Running",
        step.nodes.len()
    );
    if rollout.direction == Direction::Forward {
        summary.push_str(&format!(", endpoints {reachable}/{instances} reachable"));
    }
    Verdict {
        healthy: problems.is_empty(),
        summary,
        problem: problems.into_iter().next(),
    }
}
