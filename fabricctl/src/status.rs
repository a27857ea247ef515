//! `fabricctl status`: the nodes of a cluster as a table or as JSON.
//!
//! The JSON form is a stable contract for scripts and tests
//! ([`StatusJson`]); the table is for people.

use crate::cli::{GlobalArgs, Output, StatusArgs};
use crate::output;
use crate::target::Target;
use crate::timefmt;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterStatus, GetStatusRequest, NodeState, NodeStatus};
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
        }
    }

    /// The human table: a header line, then one row per node.
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
                "SLOTS",
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
                n.capacity.to_string(),
                n.seconds_since_heartbeat
                    .map_or("-".into(), |s| format!("{s:.1}s")),
                n.pid.to_string(),
                or_dash(&n.agent_version).to_owned(),
                n.restarts.to_string(),
            ]);
        }
        out.push_str(&render_rows(&rows));
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
        }
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
        ] {
            assert!(n.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["nodes"][0]["state"], "HumanInvestigate");
        assert_eq!(v["counts"]["Ready"], 1);
        // Round trip through the public struct, as tests of the CLI do.
        let back: StatusJson = serde_json::from_value(v).unwrap();
        assert_eq!(back.nodes.len(), 3);
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
