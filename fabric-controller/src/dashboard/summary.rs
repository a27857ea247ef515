//! What the dashboard shows, computed from the core under its lock: a
//! situation summary first (what a person must grasp in five seconds), then
//! servers by fault and update domain (see [`super::servers`]), deployments
//! (see [`super::deployments`]), healing and the latest events. Bounded in
//! size whatever the cluster's: counts for everything, lists for problems.

use super::deployments::{DeploymentView, deployments};
use super::servers::{DomainCell, NodeView, servers};
use fabric_core::expiry::ExpiringCertificate;
use fabric_core::{ClusterEvent, FabricCore, InstanceState, Moment, NodeState};
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::SystemTime;

/// How many of the newest events the page shows.
pub const EVENTS_SHOWN: usize = 40;

#[derive(Debug, Serialize)]
pub struct Summary {
    pub cluster: String,
    pub mode: &'static str,
    pub mode_reason: String,
    pub hi_count: usize,
    pub hi_threshold: String,
    pub hi_threshold_nodes: usize,
    pub switches: Switches,
    /// Node count per state, every state present.
    pub nodes_by_state: BTreeMap<&'static str, usize>,
    pub instances: InstanceCounts,
    /// Things an operator must act on, most serious first.
    pub incidents: Vec<IncidentView>,
    pub certificates: Vec<CertificateView>,
    /// Every server counted by fault and update domain.
    pub domains: Vec<DomainCell>,
    /// At most [`super::servers::SERVERS_SHOWN`] servers, problems first.
    pub nodes: Vec<NodeView>,
    pub nodes_total: usize,
    pub deployments: Vec<DeploymentView>,
    pub events: Vec<EventView>,
    pub generated_at: String,
    /// The latest rollout of the fabric's own software, if any.
    pub rollout: Option<RolloutView>,
    /// Per update domain, how many servers run each package: the cluster's
    /// version mix as a rollout moves through it.
    pub versions: Vec<DomainVersions>,
    /// The controller's replicas, when it has them (see `crate::replica`).
    pub replication: Option<ReplicationView>,
}

/// A redundant controller's leadership: the page shows who leads, since
/// when, and who stands by.
#[derive(Debug, Serialize)]
pub struct ReplicationView {
    pub term: i64,
    pub leader: String,
    pub replicas: Vec<String>,
    pub leader_since: String,
}

#[derive(Debug, Serialize)]
pub struct RolloutView {
    pub id: u64,
    pub package: String,
    pub status: &'static str,
    /// "forward" or "back".
    pub direction: &'static str,
    /// From 1; equals `steps` when finished.
    pub step: usize,
    pub steps: usize,
    pub position: String,
    pub servers_done: usize,
    pub servers_total: usize,
    pub gate: String,
    pub stopped_because: String,
}

#[derive(Debug, Serialize)]
pub struct DomainVersions {
    pub update_domain: u32,
    /// Package ("base" or a version) -> servers.
    pub packages: BTreeMap<String, usize>,
}

#[derive(Debug, Serialize)]
pub struct Switches {
    pub healing: bool,
    pub updates: bool,
    pub management: bool,
}

#[derive(Debug, Default, Serialize)]
pub struct InstanceCounts {
    pub total: usize,
    pub running: usize,
    pub healing: usize,
    pub pending: usize,
    pub other: usize,
}

#[derive(Debug, Serialize)]
pub struct IncidentView {
    pub kind: &'static str,
    pub summary: String,
}

#[derive(Debug, Serialize)]
pub struct CertificateView {
    pub deployment: String,
    pub role: String,
    pub certificate: String,
    pub not_after: String,
    pub level: &'static str,
    pub advice: String,
}

#[derive(Debug, Serialize)]
pub struct EventView {
    pub sequence: u64,
    pub time: String,
    pub kind: &'static str,
    pub node: String,
    pub reason: String,
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_millis(t).to_string()
}

impl Summary {
    pub fn of(cluster: &str, core: &FabricCore, now: Moment) -> Self {
        let state = core.cluster();
        let mut nodes_by_state: BTreeMap<&'static str, usize> =
            NodeState::ALL.iter().map(|s| (s.as_str(), 0)).collect();
        let mut counts = InstanceCounts::default();
        for i in core.instances() {
            counts.total += 1;
            match (core.status_of(i), i.healing().is_some()) {
                (InstanceState::Pending, _) => counts.pending += 1,
                (_, true) => counts.healing += 1,
                (InstanceState::Running, false) => counts.running += 1,
                _ => counts.other += 1,
            }
        }
        for n in core.nodes() {
            *nodes_by_state.entry(n.state.as_str()).or_default() += 1;
        }
        let nodes_total = nodes_by_state.values().sum();
        let servers = servers(core, now);
        let certificates: Vec<CertificateView> = core
            .expiring_certificates(now.wall)
            .into_iter()
            .map(|c: ExpiringCertificate| CertificateView {
                advice: c.advice(),
                deployment: c.deployment.map(|d| d.to_string()).unwrap_or_default(),
                role: c.role.map(|r| r.to_string()).unwrap_or_default(),
                certificate: c.certificate,
                not_after: rfc3339(c.not_after),
                level: c.level.as_str(),
            })
            .collect();
        let mut incidents = Vec::new();
        if state.mode == fabric_core::ClusterMode::HumanInvestigate {
            incidents.push(IncidentView {
                kind: "cluster in Human Investigate",
                summary: format!(
                    "{}: automatic healing and internal updates are stopped until `fabricctl cluster resume`",
                    state.mode_reason
                ),
            });
        }
        for n in core
            .nodes()
            .filter(|n| n.state == NodeState::HumanInvestigate)
        {
            incidents.push(IncidentView {
                kind: "server in Human Investigate",
                summary: format!(
                    "{}: {}; {}; `fabricctl node repair {}` once it was looked at",
                    n.id,
                    n.state_reason,
                    if state.healing_allowed() {
                        "its instances are healed elsewhere"
                    } else {
                        "healing is stopped, so its instances are lost until it resumes"
                    },
                    n.id
                ),
            });
        }
        for i in state.incidents.values() {
            incidents.push(IncidentView {
                kind: if i.classified.is_some() {
                    "software fault (common cause)"
                } else {
                    "fault under classification"
                },
                summary: format!(
                    "{} (agent {}) on {} server(s): {}",
                    i.signature.reason,
                    i.signature.agent_version,
                    i.nodes.len(),
                    i.nodes
                        .iter()
                        .map(|n| n.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        for c in certificates.iter().filter(|c| c.level != "warning") {
            incidents.push(IncidentView {
                kind: if c.level == "expired" {
                    "certificate expired"
                } else {
                    "certificate expiring"
                },
                summary: format!("{} until {}: {}", c.certificate, c.not_after, c.advice),
            });
        }
        let rollout = core.rollout().map(rollout_view);
        if let Some(r) = rollout.as_ref().filter(|r| r.status == "Paused") {
            incidents.push(IncidentView {
                kind: "rollout stopped",
                summary: format!(
                    "update {} to {} at {}: {}; `fabricctl update resume` or `fabricctl update rollback`",
                    r.id, r.package, r.position, r.stopped_because
                ),
            });
        }
        let mut by_domain: BTreeMap<u32, BTreeMap<String, usize>> = BTreeMap::new();
        for n in core.nodes() {
            *by_domain
                .entry(n.info.update_domain)
                .or_default()
                .entry(n.info.software.package_label().to_owned())
                .or_default() += 1;
        }
        let versions = by_domain
            .into_iter()
            .map(|(update_domain, packages)| DomainVersions {
                update_domain,
                packages,
            })
            .collect();
        let last = core.events().last_sequence();
        let events = core
            .events()
            .after(last.saturating_sub(EVENTS_SHOWN as u64), None)
            .iter()
            .rev()
            .map(event_view)
            .collect();
        Summary {
            cluster: cluster.to_owned(),
            mode: state.mode.as_str(),
            mode_reason: state.mode_reason.clone(),
            hi_count: core.hi_count(),
            hi_threshold: core.config().hi_threshold.to_string(),
            hi_threshold_nodes: core.hi_threshold_nodes(),
            switches: Switches {
                healing: state.switches.healing,
                updates: state.switches.updates,
                management: state.switches.management,
            },
            nodes_by_state,
            instances: counts,
            incidents,
            certificates,
            domains: servers.domains,
            nodes: servers.nodes,
            nodes_total,
            deployments: deployments(core),
            events,
            generated_at: rfc3339(now.wall),
            rollout,
            versions,
            replication: None,
        }
    }
}

impl ReplicationView {
    pub fn of(term: &crate::replica::Term) -> Self {
        Self {
            term: term.number,
            leader: term.leader.clone(),
            replicas: term
                .replicas
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            leader_since: rfc3339(term.since),
        }
    }
}

fn rollout_view(r: &fabric_core::Rollout) -> RolloutView {
    RolloutView {
        id: r.id,
        package: r.plan.package.to_string(),
        status: r.status.label(),
        direction: r.direction.as_str(),
        step: (r.step + 1).min(r.steps.len()),
        steps: r.steps.len(),
        position: r.position(),
        servers_done: r.done.len(),
        servers_total: r.steps.iter().map(|s| s.nodes.len()).sum(),
        gate: r.gate.clone(),
        stopped_because: r.status.stopped_because(),
    }
}

fn event_view(e: &ClusterEvent) -> EventView {
    EventView {
        sequence: e.sequence,
        time: rfc3339(e.at.wall),
        kind: e.kind.as_str(),
        node: e.node.as_ref().map(|n| n.to_string()).unwrap_or_default(),
        reason: e.reason.clone(),
    }
}
