//! `fabricctl status`: the nodes and deployments of a cluster, as a table,
//! as JSON, or as JSON Lines streamed a page at a time (see
//! [`crate::status_lines`]).
//!
//! The JSON form is a stable contract for scripts and tests
//! ([`StatusJson`]); the table is for people: the cluster's mode and Human
//! Investigate (HI) count first, loudly if the cluster is in HI mode, then
//! the nodes (with any fault reports their host agents sent and the
//! incidents the controller built from them), then one section per
//! deployment.

use crate::cli::{GlobalArgs, Output, StatusArgs};
pub use crate::instances::InstanceJson;
use crate::instances::{self, DETAIL_WIDTH};
use crate::output;
use crate::target::Target;
use crate::timefmt;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{
    ClusterStatus, DeploymentStatus, GetStatusRequest, Incident, NodeState, NodeStatus, Switches,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A condition of the controller itself (see `fabricctl status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct AlarmJson {
    pub kind: String,
    pub summary: String,
}

/// `fabricctl status -o json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatusJson {
    pub cluster: String,
    pub mode: String,
    pub heartbeat_interval_s: Option<f64>,
    pub node_timeout_s: Option<f64>,
    pub controller_version: String,
    pub controller_pid: u32,
    /// Node count per state name.
    pub counts: BTreeMap<String, usize>,
    /// Sorted by node id, host-2 before host-10.
    pub nodes: Vec<NodeJson>,
    /// Sorted by name.
    #[serde(default)]
    pub deployments: Vec<DeploymentJson>,
    /// Why the cluster is in its mode; empty if the controller gave no reason.
    #[serde(default)]
    pub mode_reason: String,
    /// Nodes in Human Investigate.
    #[serde(default)]
    pub hi_count: u32,
    /// The HI threshold as configured: "3" (nodes) or "20%" (of the nodes).
    #[serde(default)]
    pub hi_threshold: String,
    /// The threshold in nodes for the current cluster size.
    #[serde(default)]
    pub hi_threshold_nodes: u32,
    #[serde(default)]
    pub switches: SwitchesJson,
    /// The controller's own troubles (state not saved, state lost).
    #[serde(default)]
    pub alarms: Vec<AlarmJson>,
    /// Fault reports grouped by cause, oldest first.
    #[serde(default)]
    pub incidents: Vec<IncidentJson>,
    /// Role instances moved by healing and not yet Running.
    #[serde(default)]
    pub healing_in_flight: u32,
    /// Role instances waiting for a place.
    #[serde(default)]
    pub pending_instances: u32,
    /// Certificates inside the expiry warning window, soonest first.
    #[serde(default)]
    pub expiring_certificates: Vec<ExpiringJson>,
    /// The latest rollout of the fabric's own software; null if none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateJson>,
    /// The controller's dashboard, when `fabricctl` knows it (context).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    /// A redundant controller's leader and term; null for one controller.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replication: Option<ReplicationJson>,
}

/// `replication` in `fabricctl status -o json`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ReplicationJson {
    pub term: i64,
    pub leader: String,
    pub replicas: Vec<String>,
    pub leader_since: Option<String>,
    pub store: String,
}

/// A certificate close to expiry, in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiringJson {
    /// Empty for the cluster's own certificates.
    pub deployment: String,
    pub role: String,
    pub certificate: String,
    /// RFC 3339.
    pub not_after: Option<String>,
    /// "warning", "incident" or "expired".
    pub level: String,
    pub advice: String,
}

/// The operators' switches in [`StatusJson`]; all on unless switched off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SwitchesJson {
    /// Automatic service healing.
    pub healing: bool,
    /// Internally initiated updates.
    pub updates: bool,
    /// Service management (deploy, scale, delete).
    pub management: bool,
}

impl Default for SwitchesJson {
    fn default() -> Self {
        Self {
            healing: true,
            updates: true,
            management: true,
        }
    }
}

impl SwitchesJson {
    /// A controller that sends no switches has none switched off.
    pub fn from_proto(s: Option<&Switches>) -> Self {
        s.map_or_else(Self::default, |s| Self {
            healing: s.healing,
            updates: s.updates,
            management: s.management,
        })
    }

    fn all_on(&self) -> bool {
        self.healing && self.updates && self.management
    }
}

/// Fault reports sharing one cause (reason and agent version), in
/// [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IncidentJson {
    pub reason: String,
    pub agent_version: String,
    /// The nodes that reported it, sorted.
    pub nodes: Vec<String>,
    /// "<deployment>.<role>" whose VMs failed, sorted.
    pub roles: Vec<String>,
    /// Classified as a software fault: its servers stay in service and
    /// healing of its roles is paused. False while still being classified.
    pub software_fault: bool,
    /// RFC 3339, if known.
    pub first_seen: Option<String>,
}

impl IncidentJson {
    pub fn from_proto(i: &Incident) -> Self {
        let mut nodes = i.nodes.clone();
        nodes.sort_by_key(|n| natural_key(n));
        let mut roles = i.roles.clone();
        roles.sort();
        Self {
            reason: i.reason.clone(),
            agent_version: i.agent_version.clone(),
            nodes,
            roles,
            software_fault: i.software_fault,
            first_seen: i.first_seen.as_ref().map(|t| timefmt::rfc3339(Some(t))),
        }
    }

    /// Two lines: what and why, then where.
    fn to_table(&self) -> String {
        let (kind, roles) = if self.software_fault {
            ("software fault", "roles paused")
        } else {
            ("being classified", "roles")
        };
        format!(
            "  {kind}: {} (agent {})\n    nodes {}; {roles} {}; first seen {}\n",
            instances::truncate(&self.reason, 2 * DETAIL_WIDTH),
            or_dash(&self.agent_version),
            list_or_dash(&self.nodes),
            list_or_dash(&self.roles),
            self.first_seen.as_deref().unwrap_or("-"),
        )
    }
}

/// One node in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeJson {
    pub id: String,
    /// "Ready", "Unresponsive" or "HumanInvestigate" ("Unspecified" if the
    /// controller sent nothing).
    pub state: String,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    /// Seconds since the last accepted heartbeat; null if never.
    pub seconds_since_heartbeat: Option<f64>,
    pub pid: u32,
    pub boot_id: String,
    pub agent_version: String,
    pub restarts: u64,
    pub host_endpoint: String,
    pub last_sequence: u64,
    /// When the node entered its state (RFC 3339), if known.
    pub state_since: Option<String>,
    /// VM slots used by role instances placed here (of `capacity`).
    #[serde(default)]
    pub used_vm_slots: u32,
    /// The last fault the host agent reported, with its reason; null if none.
    #[serde(default)]
    pub last_fault_report: Option<String>,
    /// Why the node is in its state; empty if the controller gave no reason.
    #[serde(default)]
    pub state_reason: String,
    /// A guest-software fault report of this node is held for
    /// classification (the node stays in service meanwhile).
    #[serde(default)]
    pub fault_held: bool,
    /// The package it runs ("base": the binaries it was set up with).
    #[serde(default)]
    pub package: String,
    #[serde(default)]
    pub guest_agent_version: String,
    #[serde(default)]
    pub plugin_version: String,
}

/// The rollout in [`StatusJson`] (see `fabricctl update status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpdateJson {
    pub id: u64,
    pub package: String,
    /// "Running", "Paused", "Succeeded" or "RolledBack".
    pub status: String,
    /// "forward" or "back".
    pub direction: String,
    pub position: String,
    pub stopped_because: String,
    pub gate: String,
    /// Each step's label and servers, in walk order.
    pub steps: Vec<(String, Vec<String>)>,
    /// Index of the current step.
    pub step: u32,
}

impl UpdateJson {
    pub fn from_proto(u: &fabric_proto::v1::UpdateStatus) -> Option<Self> {
        (u.id != 0).then(|| Self {
            id: u.id,
            package: u.package.clone(),
            status: u.status.clone(),
            direction: u.direction.clone(),
            position: u.position.clone(),
            stopped_because: u.stopped_because.clone(),
            gate: u.gate.clone(),
            steps: u
                .steps
                .iter()
                .map(|s| (s.label.clone(), s.nodes.clone()))
                .collect(),
            step: u.step,
        })
    }
}

/// One deployment in [`StatusJson`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentJson {
    pub name: String,
    /// Sorted by role, then index.
    pub instances: Vec<InstanceJson>,
    /// Expiry (RFC 3339) of each deployed certificate, by "<role>/<cert>".
    pub certificate_not_after: BTreeMap<String, String>,
}

impl DeploymentJson {
    pub fn from_proto(d: &DeploymentStatus) -> Self {
        Self {
            name: d.name.clone(),
            instances: InstanceJson::list(&d.instances),
            certificate_not_after: d
                .certificate_not_after
                .iter()
                .map(|(k, t)| (k.clone(), timefmt::rfc3339(Some(t))))
                .collect(),
        }
    }

    /// "deployment web: 3 instances (2 Running, 1 Starting)", then the
    /// certificate expiries, then the instance table.
    pub fn to_table(&self) -> String {
        let mut states: BTreeMap<&str, usize> = BTreeMap::new();
        for i in &self.instances {
            *states.entry(i.state.as_str()).or_insert(0) += 1;
        }
        let states = states
            .iter()
            .map(|(s, n)| format!("{n} {s}"))
            .collect::<Vec<_>>()
            .join(", ");
        let mut out = format!(
            "deployment {}: {} instance{}{}\n",
            self.name,
            self.instances.len(),
            if self.instances.len() == 1 { "" } else { "s" },
            if states.is_empty() {
                String::new()
            } else {
                format!(" ({states})")
            }
        );
        if !self.certificate_not_after.is_empty() {
            let certs = self
                .certificate_not_after
                .iter()
                .map(|(k, t)| format!("{k} until {t}"))
                .collect::<Vec<_>>()
                .join(", ");
            out.push_str(&format!("certificates: {certs}\n"));
        }
        out.push_str(&instances::full_table(&self.instances));
        out
    }
}

/// Longest node state reason shown in the table; JSON has all of it.
pub const STATE_REASON_WIDTH: usize = 48;

/// The cluster mode in which automatic healing and internal updates stop.
pub const HI_MODE: &str = "HumanInvestigate";

/// The STATE cell of a node: "HI" for Human Investigate, "(held)" while a
/// fault report of it is held for classification.
pub fn state_cell(n: &NodeJson) -> String {
    let state = if n.state == state_name(NodeState::HumanInvestigate) {
        "HI"
    } else {
        n.state.as_str()
    };
    if n.fault_held {
        format!("{state} (held)")
    } else {
        state.to_owned()
    }
}

/// The display name of a node state.
pub fn state_name(state: NodeState) -> &'static str {
    match state {
        NodeState::Ready => "Ready",
        NodeState::Unresponsive => "Unresponsive",
        NodeState::HumanInvestigate => "HumanInvestigate",
        NodeState::Unspecified => "Unspecified",
    }
}

impl StatusJson {
    pub fn from_proto(status: &ClusterStatus) -> Self {
        let mut nodes: Vec<NodeJson> = status.nodes.iter().map(NodeJson::from_proto).collect();
        nodes.sort_by_key(|a| natural_key(&a.id));
        let mut counts = BTreeMap::new();
        for n in &nodes {
            *counts.entry(n.state.clone()).or_insert(0) += 1;
        }
        Self {
            cluster: status.cluster_name.clone(),
            mode: status.mode.clone(),
            heartbeat_interval_s: timefmt::seconds(status.heartbeat_interval.as_ref()),
            node_timeout_s: timefmt::seconds(status.node_timeout.as_ref()),
            controller_version: status.controller_version.clone(),
            controller_pid: status.controller_pid,
            counts,
            nodes,
            deployments: {
                let mut d: Vec<DeploymentJson> = status
                    .deployments
                    .iter()
                    .map(DeploymentJson::from_proto)
                    .collect();
                d.sort_by(|a, b| a.name.cmp(&b.name));
                d
            },
            mode_reason: status.mode_reason.clone(),
            hi_count: status.hi_count,
            hi_threshold: status.hi_threshold.clone(),
            hi_threshold_nodes: status.hi_threshold_nodes,
            switches: SwitchesJson::from_proto(status.switches.as_ref()),
            alarms: status
                .alarms
                .iter()
                .map(|a| AlarmJson {
                    kind: a.kind.clone(),
                    summary: a.summary.clone(),
                })
                .collect(),
            incidents: status
                .incidents
                .iter()
                .map(IncidentJson::from_proto)
                .collect(),
            healing_in_flight: status.healing_in_flight,
            pending_instances: status.pending_instances,
            expiring_certificates: status
                .expiring_certificates
                .iter()
                .map(|c| ExpiringJson {
                    deployment: c.deployment.clone(),
                    role: c.role.clone(),
                    certificate: c.certificate.clone(),
                    not_after: c.not_after.as_ref().map(|t| timefmt::rfc3339(Some(t))),
                    level: c.level.clone(),
                    advice: c.advice.clone(),
                })
                .collect(),
            update: status.update.as_ref().and_then(UpdateJson::from_proto),
            dashboard: None,
            replication: status.replication.as_ref().map(|r| ReplicationJson {
                term: r.term,
                leader: r.leader.clone(),
                replicas: r.replicas.clone(),
                leader_since: r.leader_since.as_ref().map(|t| timefmt::rfc3339(Some(t))),
                store: r.store.clone(),
            }),
        }
    }

    /// The first line: cluster, mode, HI count against the threshold,
    /// healing and pending work, nodes by state, timings, controller.
    fn header(&self) -> String {
        let counts = if self.counts.is_empty() {
            "no nodes".to_owned()
        } else {
            self.counts
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let hi = if self.hi_threshold.is_empty() {
            String::new()
        } else {
            format!(
                "  HI {}/{} (threshold {})",
                self.hi_count, self.hi_threshold_nodes, self.hi_threshold
            )
        };
        let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s}s"));
        format!(
            "cluster {}  mode {}{hi}  healing {} in flight  pending {}  nodes {} ({})  heartbeat {}  timeout {}  controller {} pid {}\n",
            self.cluster,
            or_dash(&self.mode),
            self.healing_in_flight,
            self.pending_instances,
            self.nodes.len(),
            counts,
            secs(self.heartbeat_interval_s),
            secs(self.node_timeout_s),
            or_dash(&self.controller_version),
            self.controller_pid,
        )
    }

    /// Lines that must not be missed: HI mode and switched-off switches.
    fn alerts(&self) -> String {
        let mut out = String::new();
        if self.mode == HI_MODE {
            out.push_str(&format!(
                "!! CLUSTER IN HUMAN INVESTIGATE: {}\n",
                if self.mode_reason.is_empty() {
                    "automatic service healing and internal updates stopped"
                } else {
                    self.mode_reason.as_str()
                }
            ));
            out.push_str(
                "!! find the cause, `fabricctl node repair ID` the servers that are fine, then `fabricctl cluster resume`\n",
            );
        }
        if !self.switches.all_on() {
            let word = |on: bool| if on { "on" } else { "OFF" };
            out.push_str(&format!(
                "switches: healing {}, updates {}, management {} (`fabricctl cluster set SWITCH on`)\n",
                word(self.switches.healing),
                word(self.switches.updates),
                word(self.switches.management),
            ));
        }
        out
    }

    /// The human table: a header line, any alerts (HI mode, switches off),
    /// one row per node, the nodes' fault reports and incidents if any, then
    /// a section per deployment.
    pub fn to_table(&self) -> String {
        let mut out = self.header();
        if let Some(r) = &self.replication {
            out.push_str(&format!(
                "replicas {} ({}): leader {} term {} since {}; state in {}\n",
                r.replicas.len(),
                r.replicas.join(", "),
                r.leader,
                r.term,
                r.leader_since.as_deref().unwrap_or("-"),
                r.store,
            ));
        }
        out.push_str(&self.alerts());
        if let Some(u) = self
            .update
            .as_ref()
            .filter(|u| u.status == "Running" || u.status == "Paused")
        {
            out.push_str(&format!(
                "{}{}\n",
                crate::update::headline(u.id, &u.package, &u.status, &u.direction, &u.position),
                if u.stopped_because.is_empty() {
                    String::new()
                } else {
                    format!(" - stopped: {}", u.stopped_because)
                }
            ));
        }
        let mut rows = vec![
            [
                "NODE",
                "STATE",
                "FD",
                "UD",
                "VMS",
                "HEARTBEAT",
                "PID",
                "PACKAGE",
                "VERSION",
                "RESTARTS",
                "REASON",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for n in &self.nodes {
            rows.push(vec![
                n.id.clone(),
                state_cell(n),
                n.fault_domain.to_string(),
                n.update_domain.to_string(),
                format!("{}/{}", n.used_vm_slots, n.capacity),
                n.seconds_since_heartbeat
                    .map_or("-".into(), |s| format!("{s:.1}s")),
                n.pid.to_string(),
                n.package.clone(),
                or_dash(&n.agent_version).to_owned(),
                n.restarts.to_string(),
                instances::truncate(&n.state_reason, STATE_REASON_WIDTH),
            ]);
        }
        out.push_str(&render_rows(&rows));
        let faults: Vec<_> = self
            .nodes
            .iter()
            .filter_map(|n| Some((n, n.last_fault_report.as_deref()?)))
            .collect();
        if !faults.is_empty() {
            out.push_str("\nfault reports\n");
            for (n, report) in faults {
                out.push_str(&format!(
                    "  {}: {}\n",
                    n.id,
                    instances::truncate(report, 2 * DETAIL_WIDTH)
                ));
            }
        }
        if !self.alarms.is_empty() {
            out.push_str("\nCONTROLLER ALARMS\n");
            for a in &self.alarms {
                out.push_str(&format!("  {}: {}\n", a.kind.to_uppercase(), a.summary));
            }
        }
        if !self.incidents.is_empty() {
            out.push_str("\nincidents\n");
            for i in &self.incidents {
                out.push_str(&i.to_table());
            }
        }
        if !self.expiring_certificates.is_empty() {
            out.push_str("\ncertificates expiring\n");
            for c in &self.expiring_certificates {
                out.push_str(&format!(
                    "  {} {}{} until {}: {}\n",
                    c.level.to_uppercase(),
                    c.certificate,
                    if c.deployment.is_empty() {
                        String::new()
                    } else {
                        format!(" ({}/{})", c.deployment, c.role)
                    },
                    c.not_after.as_deref().unwrap_or("?"),
                    c.advice
                ));
            }
        }
        if let Some(url) = &self.dashboard {
            out.push_str(&format!("\ndashboard {url}\n"));
        }
        for d in &self.deployments {
            out.push('\n');
            out.push_str(&d.to_table());
        }
        out
    }
}

impl NodeJson {
    pub fn from_proto(n: &NodeStatus) -> Self {
        Self {
            id: n.node_id.clone(),
            state: state_name(n.state()).to_owned(),
            fault_domain: n.fault_domain,
            update_domain: n.update_domain,
            capacity: n.capacity_vm_slots,
            seconds_since_heartbeat: timefmt::seconds(n.since_last_heartbeat.as_ref()),
            pid: n.pid,
            boot_id: n.boot_id.clone(),
            agent_version: n.agent_version.clone(),
            restarts: n.restarts,
            host_endpoint: n.host_endpoint.clone(),
            last_sequence: n.last_sequence,
            state_since: n.state_since.as_ref().map(|t| timefmt::rfc3339(Some(t))),
            used_vm_slots: n.used_vm_slots,
            last_fault_report: Some(n.last_fault_report.clone()).filter(|r| !r.is_empty()),
            state_reason: n.state_reason.clone(),
            fault_held: n.fault_held,
            package: n
                .software
                .as_ref()
                .map(|s| s.package.clone())
                .filter(|p| !p.is_empty())
                .unwrap_or_else(|| "base".into()),
            guest_agent_version: n
                .software
                .as_ref()
                .map(|s| s.guest_agent.clone())
                .unwrap_or_default(),
            plugin_version: n
                .software
                .as_ref()
                .map(|s| s.plugin.clone())
                .unwrap_or_default(),
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}

fn list_or_dash(items: &[String]) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.join(", ")
    }
}

/// Sort key that orders embedded numbers numerically ("host-2" < "host-10").
pub fn natural_key(id: &str) -> (String, u64, String) {
    let digits_at = id
        .char_indices()
        .rev()
        .take_while(|(_, c)| c.is_ascii_digit())
        .last()
        .map(|(i, _)| i);
    match digits_at {
        Some(i) => (
            id[..i].to_owned(),
            id[i..].parse().unwrap_or(u64::MAX),
            id.to_owned(),
        ),
        None => (id.to_owned(), 0, id.to_owned()),
    }
}

/// Left-aligned columns separated by two spaces, no trailing spaces.
pub fn render_rows(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .filter_map(|r| r.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            if c + 1 < row.len() {
                line.push_str(&" ".repeat(widths[c] - cell.chars().count()));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// Instances per GetStatus reply by default: well under gRPC's 4 MiB
/// message limit.
pub const PAGE: u32 = 5_000;

/// The whole cluster's status (every instance, a page at a time).
pub async fn fetch(target: &Target) -> anyhow::Result<ClusterStatus> {
    fetch_matching(target, GetStatusRequest::default(), None, PAGE).await
}

/// The status `filter` selects, with at most `limit` instances (all if
/// `None`), asked for `page` instances at a time and joined.
pub async fn fetch_matching(
    target: &Target,
    filter: GetStatusRequest,
    limit: Option<u32>,
    page: u32,
) -> anyhow::Result<ClusterStatus> {
    let mut whole: Option<ClusterStatus> = None;
    for_each_page(target, filter, limit, page, |page| {
        match whole.as_mut() {
            None => whole = Some(page),
            Some(whole) => {
                for d in page.deployments {
                    if let Some(mine) = whole.deployments.iter_mut().find(|m| m.name == d.name) {
                        mine.instances.extend(d.instances);
                    }
                }
            }
        }
        Ok(())
    })
    .await?;
    let mut whole = whole.expect("for_each_page calls at least once");
    whole.next_instances_after.clear();
    Ok(whole)
}

/// Asks for the status `filter` selects `page` instances at a time,
/// handing each page to `each` as it arrives, until `limit` instances (all
/// if `None`). Every page is a whole status (cluster, nodes, every
/// deployment) with its own slice of the instances; they are read one
/// after another, not as one snapshot.
pub async fn for_each_page(
    target: &Target,
    filter: GetStatusRequest,
    limit: Option<u32>,
    page: u32,
    mut each: impl FnMut(ClusterStatus) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let channel = target.connect().await?;
    let mut client = OperatorServiceClient::new(channel);
    let (mut after, mut shown) = (String::new(), 0u32);
    loop {
        let wanted = limit.map_or(page, |l| l.saturating_sub(shown).min(page));
        let reply = client
            .get_status(GetStatusRequest {
                instance_limit: wanted,
                instances_after: after,
                ..filter.clone()
            })
            .await
            .map(tonic::Response::into_inner)
            .map_err(|s| target.first_rpc_error("GetStatus", &s))?;
        after = reply.next_instances_after.clone();
        shown += instance_count(&reply);
        each(reply)?;
        if after.is_empty() || limit.is_some_and(|l| shown >= l) {
            return Ok(());
        }
    }
}

/// The instances a status holds (all deployments).
pub fn instance_count(s: &ClusterStatus) -> u32 {
    s.deployments.iter().map(|d| d.instances.len() as u32).sum()
}

/// What `fabricctl status`'s filters ask of the controller.
fn filter_of(args: &StatusArgs) -> anyhow::Result<GetStatusRequest> {
    let node_states = fabric_core::NodeState::ALL.map(fabric_core::NodeState::as_str);
    let instance_states = fabric_core::InstanceState::ALL.map(fabric_core::InstanceState::as_str);
    let is = |list: &[&str], s: &str| list.iter().any(|n| n.eq_ignore_ascii_case(s));
    let (node_state, instance_state) = match &args.state {
        Some(s) if is(&node_states, s) => (s.clone(), String::new()),
        Some(s) if is(&instance_states, s) => (String::new(), s.clone()),
        Some(s) => anyhow::bail!(
            "--state {s:?} is neither a node state ({}) nor an instance state ({})",
            node_states.join(", "),
            instance_states.join(", ")
        ),
        None => (String::new(), String::new()),
    };
    Ok(GetStatusRequest {
        node: args.node.clone().unwrap_or_default(),
        node_state,
        instance_state,
        fault_domain: args.fault_domain,
        update_domain: args.update_domain,
        ..GetStatusRequest::default()
    })
}

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let limit = (args.limit > 0).then_some(args.limit);
    let dashboard = match global.endpoint {
        None => crate::context::Context::load(&global.state_dir)?.and_then(|c| c.dashboard),
        Some(_) => None,
    };
    let filter = filter_of(args)?;
    if args.output == Output::Jsonl {
        // Streamed: never joined into one status.
        return crate::status_lines::print(&target, filter, limit, args.page_size, dashboard).await;
    }
    let proto = fetch_matching(&target, filter, limit, args.page_size).await?;
    let matched = proto.instances_matched;
    let shown = instance_count(&proto);
    let mut status = StatusJson::from_proto(&proto);
    status.dashboard = dashboard;
    if args.output == Output::Json {
        output::line(&serde_json::to_string_pretty(&status)?);
        return Ok(());
    }
    output::line(status.to_table().trim_end());
    if shown < matched {
        output::line(&format!(
            "({shown} of {matched} matching instances shown; --limit 0 shows all)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_proto::v1::RoleInstanceStatus;

    fn status_args(args: &[&str]) -> StatusArgs {
        let mut argv = vec!["fabricctl", "status"];
        argv.extend_from_slice(args);
        match <crate::cli::Cli as clap::Parser>::try_parse_from(argv)
            .unwrap()
            .command
        {
            crate::cli::Command::Status(a) => a,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn state_filters_go_to_nodes_or_instances_and_unknown_words_are_refused() {
        let f = filter_of(&status_args(&[
            "--state",
            "humaninvestigate",
            "--fault-domain",
            "2",
        ]))
        .unwrap();
        assert_eq!(
            (f.node_state.as_str(), f.instance_state.as_str()),
            ("humaninvestigate", "")
        );
        assert_eq!(f.fault_domain, Some(2));
        let f = filter_of(&status_args(&["--state", "Lost", "--node", "host-3"])).unwrap();
        assert_eq!(
            (f.node_state.as_str(), f.instance_state.as_str()),
            ("", "Lost")
        );
        assert_eq!(f.node, "host-3");
        let e = filter_of(&status_args(&["--state", "Asleep"]))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("neither a node state (Ready, Unresponsive, HumanInvestigate)")
                && e.contains("Reinitializing, Unknown, Lost"),
            "{e}"
        );
    }

    fn node(id: &str, state: NodeState, since_ms: i32) -> NodeStatus {
        NodeStatus {
            node_id: id.into(),
            state: state as i32,
            fault_domain: 1,
            update_domain: 2,
            capacity_vm_slots: 4,
            agent_version: "0.1.0".into(),
            boot_id: "b".into(),
            last_sequence: 9,
            since_last_heartbeat: Some(prost_types::Duration {
                seconds: 0,
                nanos: since_ms * 1_000_000,
            }),
            host_endpoint: "127.0.0.1:5000".into(),
            pid: 77,
            state_since: None,
            restarts: 1,
            last_fault_report: String::new(),
            used_vm_slots: 0,
            state_reason: String::new(),
            fault_held: false,
            software: None,
        }
    }

    fn instance(role: &str, index: u32, node: &str, state: &str) -> RoleInstanceStatus {
        RoleInstanceStatus {
            instance_id: format!("web.{role}.{index}"),
            deployment: "web".into(),
            role: role.into(),
            index,
            node_id: node.into(),
            state: state.into(),
            incarnation: 2,
            endpoint: "127.0.0.1:41000".into(),
            pid: 4242,
            detail: "guest agent did not connect within 25m".into(),
            transfer_cert_fingerprint: "ab12".into(),
            healing_from: String::new(),
            guest: String::new(),
        }
    }

    /// [`sample`] with a deployment and a node that reported a fault.
    fn with_deployments() -> ClusterStatus {
        let mut s = sample();
        s.nodes[0].used_vm_slots = 2;
        s.nodes[2].last_fault_report =
            "3 consecutive clean-VM failures: guest agent never connected".into();
        s.deployments = vec![DeploymentStatus {
            name: "web".into(),
            instances: vec![
                instance("frontend", 1, "host-10", "Running"),
                instance("api", 0, "", "Pending"),
                instance("frontend", 0, "host-10", "Starting"),
            ],
            certificate_not_after: [
                (
                    "frontend/https".to_owned(),
                    prost_types::Timestamp {
                        seconds: 1_330_473_600,
                        nanos: 0,
                    },
                ),
                (
                    "api/https".to_owned(),
                    prost_types::Timestamp {
                        seconds: 1_330_473_600,
                        nanos: 0,
                    },
                ),
            ]
            .into(),
        }];
        s
    }

    fn sample() -> ClusterStatus {
        ClusterStatus {
            cluster_name: "local".into(),
            mode: "Normal".into(),
            nodes: vec![
                node("host-10", NodeState::Ready, 250),
                node("host-2", NodeState::Unresponsive, 500),
                node("host-1", NodeState::HumanInvestigate, 0),
            ],
            heartbeat_interval: Some(prost_types::Duration {
                seconds: 1,
                nanos: 0,
            }),
            node_timeout: Some(prost_types::Duration {
                seconds: 5,
                nanos: 0,
            }),
            controller_version: "0.1.0".into(),
            controller_pid: 12,
            deployments: vec![],
            ..Default::default()
        }
    }

    /// A cluster in HI mode after a leap-day-like guest failure: two nodes
    /// reported the same cause (a software fault), one more is held, one
    /// went silent; healing moves an instance off it.
    fn in_hi_mode() -> ClusterStatus {
        let mut s = with_deployments();
        s.mode = "HumanInvestigate".into();
        s.mode_reason = "2 of 3 nodes in Human Investigate, HI threshold 2 (2 nodes)".into();
        s.hi_count = 2;
        s.hi_threshold = "2".into();
        s.hi_threshold_nodes = 2;
        s.healing_in_flight = 1;
        s.pending_instances = 1;
        s.switches = Some(Switches {
            healing: false,
            updates: true,
            management: true,
        });
        s.nodes[0].fault_held = true;
        s.nodes[0].state_reason = "guest-software fault report held for 20s".into();
        s.nodes[1].state = NodeState::HumanInvestigate as i32;
        s.nodes[1].state_reason = format!("unresponsive for 10.0s {}", "x".repeat(60));
        s.incidents = vec![Incident {
            reason: "guest agent failed creating transfer certificate: invalid date".into(),
            agent_version: "0.1.0".into(),
            nodes: vec!["host-10".into(), "host-1".into()],
            roles: vec!["web.frontend".into()],
            software_fault: true,
            first_seen: Some(prost_types::Timestamp {
                seconds: 1_330_473_600,
                nanos: 0,
            }),
        }];
        s.deployments[0].instances[0].healing_from = "host-2".into();
        s
    }

    #[test]
    fn json_shape() {
        let v = serde_json::to_value(StatusJson::from_proto(&sample())).unwrap();
        assert_eq!(v["cluster"], "local");
        assert_eq!(v["mode"], "Normal");
        assert_eq!(v["heartbeat_interval_s"], 1.0);
        assert_eq!(v["node_timeout_s"], 5.0);
        let ids: Vec<_> = v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["host-1", "host-2", "host-10"]);
        let n = &v["nodes"][1];
        assert_eq!(n["state"], "Unresponsive");
        assert_eq!(n["seconds_since_heartbeat"], 0.5);
        for key in [
            "fault_domain",
            "update_domain",
            "capacity",
            "pid",
            "boot_id",
            "agent_version",
            "restarts",
            "host_endpoint",
            "used_vm_slots",
            "last_fault_report",
        ] {
            assert!(n.get(key).is_some(), "missing {key}");
        }
        assert_eq!(n["last_fault_report"], serde_json::Value::Null);
        assert_eq!(n["state_reason"], "");
        assert_eq!(n["fault_held"], false);
        assert_eq!(v["deployments"], serde_json::json!([]));
        assert_eq!(v["nodes"][0]["state"], "HumanInvestigate");
        assert_eq!(v["counts"]["Ready"], 1);
        // Round trip through the public struct, as tests of the CLI do.
        let back: StatusJson = serde_json::from_value(v).unwrap();
        assert_eq!(back.nodes.len(), 3);
    }

    #[test]
    fn json_shape_with_deployments() {
        let v = serde_json::to_value(StatusJson::from_proto(&with_deployments())).unwrap();
        assert_eq!(v["nodes"][2]["id"], "host-10");
        assert_eq!(v["nodes"][2]["used_vm_slots"], 2);
        assert_eq!(
            v["nodes"][0]["last_fault_report"],
            "3 consecutive clean-VM failures: guest agent never connected"
        );
        let d = &v["deployments"][0];
        assert_eq!(d["name"], "web");
        assert_eq!(
            d["certificate_not_after"],
            serde_json::json!({
                "api/https": "2012-02-29T00:00:00.000Z",
                "frontend/https": "2012-02-29T00:00:00.000Z",
            })
        );
        let ids: Vec<_> = d["instances"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        assert_eq!(ids, ["web.api.0", "web.frontend.0", "web.frontend.1"]);
        assert_eq!(
            d["instances"][2],
            serde_json::json!({
                "id": "web.frontend.1",
                "deployment": "web",
                "role": "frontend",
                "index": 1,
                "node": "host-10",
                "state": "Running",
                "incarnation": 2,
                "endpoint": "127.0.0.1:41000",
                "pid": 4242,
                "detail": "guest agent did not connect within 25m",
                "transfer_cert_fingerprint": "ab12",
                "healing_from": null,
            })
        );
        assert_eq!(d["instances"][0]["node"], "");
        let back: StatusJson = serde_json::from_value(v).unwrap();
        assert_eq!(back.deployments[0].instances.len(), 3);
        // JSON from before deployments existed still parses.
        let mut old = serde_json::to_value(StatusJson::from_proto(&sample())).unwrap();
        old.as_object_mut().unwrap().remove("deployments");
        for n in old["nodes"].as_array_mut().unwrap() {
            n.as_object_mut().unwrap().remove("used_vm_slots");
            n.as_object_mut().unwrap().remove("last_fault_report");
        }
        let back: StatusJson = serde_json::from_value(old).unwrap();
        assert!(back.deployments.is_empty());
    }

    #[test]
    fn json_shape_of_healing_and_hi() {
        let v = serde_json::to_value(StatusJson::from_proto(&in_hi_mode())).unwrap();
        assert_eq!(v["mode"], "HumanInvestigate");
        assert_eq!(
            v["mode_reason"],
            "2 of 3 nodes in Human Investigate, HI threshold 2 (2 nodes)"
        );
        assert_eq!(
            (&v["hi_count"], &v["hi_threshold"], &v["hi_threshold_nodes"]),
            (&2.into(), &"2".into(), &2.into())
        );
        assert_eq!(
            v["switches"],
            serde_json::json!({"healing": false, "updates": true, "management": true})
        );
        assert_eq!(
            v["incidents"],
            serde_json::json!([{
                "reason": "guest agent failed creating transfer certificate: invalid date",
                "agent_version": "0.1.0",
                "nodes": ["host-1", "host-10"],
                "roles": ["web.frontend"],
                "software_fault": true,
                "first_seen": "2012-02-29T00:00:00.000Z",
            }])
        );
        assert_eq!(
            (&v["healing_in_flight"], &v["pending_instances"]),
            (&1.into(), &1.into())
        );
        // Nodes sorted: host-1, host-2, host-10.
        assert_eq!(v["nodes"][1]["state"], "HumanInvestigate");
        assert!(
            v["nodes"][1]["state_reason"]
                .as_str()
                .unwrap()
                .starts_with("unresponsive for 10.0s")
        );
        assert_eq!(v["nodes"][2]["fault_held"], true);
        assert_eq!(v["counts"]["HumanInvestigate"], 2);
        let moved = &v["deployments"][0]["instances"][2];
        assert_eq!(moved["id"], "web.frontend.1");
        assert_eq!(moved["healing_from"], "host-2");
        let back: StatusJson = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back, StatusJson::from_proto(&in_hi_mode()));
        // JSON from before HI and healing existed still parses, with every
        // switch on.
        let mut old = v;
        for key in [
            "mode_reason",
            "hi_count",
            "hi_threshold",
            "hi_threshold_nodes",
            "switches",
            "incidents",
            "healing_in_flight",
            "pending_instances",
        ] {
            old.as_object_mut().unwrap().remove(key).unwrap();
        }
        for n in old["nodes"].as_array_mut().unwrap() {
            n.as_object_mut().unwrap().remove("state_reason");
            n.as_object_mut().unwrap().remove("fault_held");
        }
        let back: StatusJson = serde_json::from_value(old).unwrap();
        assert_eq!(back.switches, SwitchesJson::default());
        assert!(back.switches.healing && back.incidents.is_empty());
        assert_eq!((back.hi_count, back.hi_threshold.as_str()), (0, ""));
        // A controller that sends no switches has none off.
        let v = serde_json::to_value(StatusJson::from_proto(&sample())).unwrap();
        assert_eq!(
            v["switches"],
            serde_json::json!({"healing": true, "updates": true, "management": true})
        );
        assert_eq!(v["incidents"], serde_json::json!([]));
    }

    #[test]
    fn table_in_hi_mode() {
        let t = StatusJson::from_proto(&in_hi_mode()).to_table();
        let lines: Vec<_> = t.lines().collect();
        assert!(
            lines[0].starts_with(
                "cluster local  mode HumanInvestigate  HI 2/2 (threshold 2)  healing 1 in flight  pending 1  nodes 3 ("
            ),
            "{}",
            lines[0]
        );
        assert_eq!(
            lines[1],
            "!! CLUSTER IN HUMAN INVESTIGATE: 2 of 3 nodes in Human Investigate, HI threshold 2 (2 nodes)"
        );
        assert!(lines[2].starts_with("!! find the cause"), "{}", lines[2]);
        assert_eq!(
            lines[3],
            "switches: healing OFF, updates on, management on (`fabricctl cluster set SWITCH on`)"
        );
        assert!(lines[4].starts_with("NODE "), "{}", lines[4]);
        assert!(lines[4].ends_with("  REASON"), "{}", lines[4]);
        fn cells(l: &str) -> Vec<&str> {
            l.split("  ")
                .filter(|c| !c.is_empty())
                .map(str::trim)
                .collect()
        }
        assert_eq!(cells(lines[5])[..2], ["host-1", "HI"]);
        assert_eq!(cells(lines[6])[..2], ["host-2", "HI"]);
        assert!(lines[6].ends_with('…'), "{}", lines[6]);
        assert!(lines[6].contains("unresponsive for 10.0s"), "{}", lines[6]);
        assert_eq!(cells(lines[7])[..2], ["host-10", "Ready (held)"]);
        assert!(lines[7].ends_with("guest-software fault report held for 20s"));
        let at = lines.iter().position(|l| *l == "incidents").unwrap();
        assert_eq!(
            lines[at + 1],
            "  software fault: guest agent failed creating transfer certificate: invalid date (agent 0.1.0)"
        );
        assert_eq!(
            lines[at + 2],
            "    nodes host-1, host-10; roles paused web.frontend; first seen 2012-02-29T00:00:00.000Z"
        );
        let moved = lines
            .iter()
            .find(|l| l.starts_with("web.frontend.1 "))
            .unwrap();
        assert!(moved.contains("host-10 <- host-2"), "{moved}");
    }

    #[test]
    fn table_in_normal_mode_has_no_alerts() {
        let mut s = sample();
        s.hi_count = 1;
        s.hi_threshold = "20%".into();
        s.hi_threshold_nodes = 1;
        s.incidents = vec![Incident {
            reason: "guest agent never connected within 25m".into(),
            agent_version: "0.1.0".into(),
            nodes: vec!["host-2".into()],
            ..Default::default()
        }];
        let t = StatusJson::from_proto(&s).to_table();
        let lines: Vec<_> = t.lines().collect();
        assert!(
            lines[0].contains(
                "  mode Normal  HI 1/1 (threshold 20%)  healing 0 in flight  pending 0  "
            ),
            "{}",
            lines[0]
        );
        assert!(lines[1].starts_with("NODE"), "{}", lines[1]);
        assert!(!t.contains("!!") && !t.contains("switches:"));
        assert_eq!(
            lines[lines.len() - 2],
            "  being classified: guest agent never connected within 25m (agent 0.1.0)"
        );
        assert_eq!(
            lines[lines.len() - 1],
            "    nodes host-2; roles -; first seen -"
        );
    }

    #[test]
    fn table_with_deployments() {
        let t = StatusJson::from_proto(&with_deployments()).to_table();
        let lines: Vec<_> = t.lines().collect();
        assert!(lines[1].contains("  VMS  "), "{}", lines[1]);
        assert!(lines[4].starts_with("host-10 "), "{}", lines[4]);
        assert!(lines[4].contains("  2/4  "), "{}", lines[4]);
        assert_eq!(lines[5], "");
        assert_eq!(lines[6], "fault reports");
        assert_eq!(
            lines[7],
            "  host-1: 3 consecutive clean-VM failures: guest agent never connected"
        );
        assert_eq!(lines[8], "");
        assert_eq!(
            lines[9],
            "deployment web: 3 instances (1 Pending, 1 Running, 1 Starting)"
        );
        assert_eq!(
            lines[10],
            "certificates: api/https until 2012-02-29T00:00:00.000Z, frontend/https until 2012-02-29T00:00:00.000Z"
        );
        assert!(lines[11].starts_with("INSTANCE"), "{}", lines[11]);
        assert!(lines[12].starts_with("web.api.0 "), "{}", lines[12]);
        assert!(
            lines[14].starts_with("web.frontend.1  host-10"),
            "{}",
            lines[14]
        );
        assert_eq!(lines.len(), 15);
    }

    #[test]
    fn table() {
        let t = StatusJson::from_proto(&sample()).to_table();
        let lines: Vec<_> = t.lines().collect();
        assert!(
            lines[0].starts_with(
                "cluster local  mode Normal  healing 0 in flight  pending 0  nodes 3 ("
            ),
            "{}",
            lines[0]
        );
        assert!(lines[0].contains("1 Ready"));
        assert!(lines[1].starts_with("NODE"));
        assert!(lines[2].starts_with("host-1 "));
        assert!(
            lines[4].contains("0.2s") || lines[4].contains("0.3s"),
            "{}",
            lines[4]
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn natural_order() {
        assert!(natural_key("host-2") < natural_key("host-10"));
        assert!(natural_key("a") < natural_key("b"));
    }
}
