//! `fabricctl status`: the nodes and deployments of a cluster, as a table
//! or as JSON.
//!
//! The JSON form is a stable contract for scripts and tests
//! ([`StatusJson`]); the table is for people: nodes first (with any fault
//! reports their host agents sent), then one section per deployment.

use crate::cli::{GlobalArgs, Output, StatusArgs};
pub use crate::instances::InstanceJson;
use crate::instances::{self, DETAIL_WIDTH};
use crate::output;
use crate::target::Target;
use crate::timefmt;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterStatus, DeploymentStatus, GetStatusRequest, NodeState, NodeStatus};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
        }
    }

    /// The human table: a header line, one row per node, the nodes' fault
    /// reports if any, then a section per deployment.
    pub fn to_table(&self) -> String {
        let counts = if self.counts.is_empty() {
            "no nodes".to_owned()
        } else {
            self.counts
                .iter()
                .map(|(state, n)| format!("{n} {state}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let secs = |s: Option<f64>| s.map_or("-".into(), |s| format!("{s}s"));
        let mut out = format!(
            "cluster {}  mode {}  nodes {} ({})  heartbeat {}  timeout {}  controller {} pid {}\n",
            self.cluster,
            or_dash(&self.mode),
            self.nodes.len(),
            counts,
            secs(self.heartbeat_interval_s),
            secs(self.node_timeout_s),
            or_dash(&self.controller_version),
            self.controller_pid,
        );
        let mut rows = vec![
            [
                "NODE",
                "STATE",
                "FD",
                "UD",
                "VMS",
                "HEARTBEAT",
                "PID",
                "VERSION",
                "RESTARTS",
            ]
            .map(str::to_owned)
            .to_vec(),
        ];
        for n in &self.nodes {
            rows.push(vec![
                n.id.clone(),
                n.state.clone(),
                n.fault_domain.to_string(),
                n.update_domain.to_string(),
                format!("{}/{}", n.used_vm_slots, n.capacity),
                n.seconds_since_heartbeat
                    .map_or("-".into(), |s| format!("{s:.1}s")),
                n.pid.to_string(),
                or_dash(&n.agent_version).to_owned(),
                n.restarts.to_string(),
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
        }
    }
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
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

/// Fetches the cluster status.
pub async fn fetch(target: &Target) -> anyhow::Result<ClusterStatus> {
    let channel = target.connect().await?;
    let mut client = OperatorServiceClient::new(channel);
    let status = client
        .get_status(GetStatusRequest {})
        .await
        .map_err(|s| target.first_rpc_error("GetStatus", &s))?;
    Ok(status.into_inner())
}

pub async fn run(global: &GlobalArgs, args: &StatusArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let status = StatusJson::from_proto(&fetch(&target).await?);
    match args.output {
        Output::Json => output::line(&serde_json::to_string_pretty(&status)?),
        Output::Table => output::line(status.to_table().trim_end()),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_proto::v1::RoleInstanceStatus;

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
        }
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
            lines[0].starts_with("cluster local  mode Normal  nodes 3 ("),
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
