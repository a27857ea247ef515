//! Role instances as scripts and people see them.
//!
//! `status` lists every instance of every deployment; `deploy` and `scale`
//! show the instances their call placed. All of them use the same JSON
//! object ([`InstanceJson`]) and the same columns, in the same order.

use crate::status::{natural_key, render_rows};
use fabric_proto::v1::RoleInstanceStatus;
use serde::{Deserialize, Serialize};

/// Longest DETAIL shown in a table; JSON always has all of it.
pub const DETAIL_WIDTH: usize = 60;

/// One role instance (`deployments[].instances[]` in `status -o json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceJson {
    /// "<deployment>.<role>.<index>", also the VM id.
    pub id: String,
    pub deployment: String,
    pub role: String,
    pub index: u32,
    /// The node it is placed on; empty while pending.
    pub node: String,
    /// "Pending", "Starting", "Provisioned", "Running" or "Reinitializing";
    /// "Unknown" while its server is Unresponsive, "Lost" while its server is
    /// in Human Investigate and it has not been healed.
    pub state: String,
    pub incarnation: u64,
    /// The role's HTTPS endpoint (host:port); empty until running.
    pub endpoint: String,
    /// The guest agent's pid; 0 if none.
    pub pid: u32,
    /// Why it is pending or was last reinitialized; may be empty.
    pub detail: String,
    pub transfer_cert_fingerprint: String,
    /// While service healing moves it: the node it came from; null otherwise.
    #[serde(default)]
    pub healing_from: Option<String>,
    /// The role's guest agent when it is not Fabric's ("waagent"); absent
    /// for Fabric's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub guest: Option<String>,
}

impl InstanceJson {
    pub fn from_proto(i: &RoleInstanceStatus) -> Self {
        Self {
            id: i.instance_id.clone(),
            deployment: i.deployment.clone(),
            role: i.role.clone(),
            index: i.index,
            node: i.node_id.clone(),
            state: i.state.clone(),
            incarnation: i.incarnation,
            endpoint: i.endpoint.clone(),
            pid: i.pid,
            detail: i.detail.clone(),
            transfer_cert_fingerprint: i.transfer_cert_fingerprint.clone(),
            healing_from: Some(i.healing_from.clone()).filter(|n| !n.is_empty()),
            guest: Some(i.guest.clone()).filter(|g| !g.is_empty()),
        }
    }

    /// The INSTANCE cell: its id, and its guest when not Fabric's.
    pub fn id_cell(&self) -> String {
        match &self.guest {
            Some(guest) => format!("{} ({guest})", self.id),
            None => self.id.clone(),
        }
    }

    /// The NODE cell: "host-3", "-" while pending, with "<- host-2" while
    /// healing moves it from host-2.
    pub fn node_cell(&self) -> String {
        match &self.healing_from {
            Some(from) => format!("{} <- {from}", dash(&self.node)),
            None => dash(&self.node),
        }
    }

    /// Converts and sorts: by deployment, role, then index.
    pub fn list(instances: &[RoleInstanceStatus]) -> Vec<Self> {
        let mut list: Vec<Self> = instances.iter().map(Self::from_proto).collect();
        list.sort_by(|a, b| {
            (&a.deployment, &a.role, a.index, natural_key(&a.id)).cmp(&(
                &b.deployment,
                &b.role,
                b.index,
                natural_key(&b.id),
            ))
        });
        list
    }
}

/// The instance table of `status`: every column.
pub fn full_table(instances: &[InstanceJson]) -> String {
    let mut rows = vec![
        [
            "INSTANCE",
            "NODE",
            "STATE",
            "INCARNATION",
            "ENDPOINT",
            "PID",
            "DETAIL",
        ]
        .map(str::to_owned)
        .to_vec(),
    ];
    for i in instances {
        rows.push(vec![
            i.id_cell(),
            i.node_cell(),
            i.state.clone(),
            i.incarnation.to_string(),
            dash(&i.endpoint),
            if i.pid == 0 {
                "-".into()
            } else {
                i.pid.to_string()
            },
            truncate(&i.detail, DETAIL_WIDTH),
        ]);
    }
    render_rows(&rows)
}

/// The instance table of `deploy` and `scale`: where each one went.
pub fn placement_table(instances: &[InstanceJson]) -> String {
    let mut rows = vec![
        ["INSTANCE", "NODE", "STATE", "INCARNATION"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for i in instances {
        rows.push(vec![
            i.id.clone(),
            i.node_cell(),
            i.state.clone(),
            i.incarnation.to_string(),
        ]);
    }
    render_rows(&rows)
}

fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_owned()
    }
}

/// `s` on one line, at most `max` characters (the last one "…" if cut);
/// "-" if empty.
pub fn truncate(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.is_empty() {
        return "-".into();
    }
    if s.chars().count() <= max {
        return s;
    }
    let mut cut: String = s.chars().take(max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(role: &str, index: u32, node: &str, state: &str) -> RoleInstanceStatus {
        RoleInstanceStatus {
            instance_id: format!("web.{role}.{index}"),
            deployment: "web".into(),
            role: role.into(),
            index,
            node_id: node.into(),
            state: state.into(),
            incarnation: 1,
            endpoint: String::new(),
            pid: 0,
            detail: String::new(),
            transfer_cert_fingerprint: String::new(),
            healing_from: String::new(),
            guest: String::new(),
        }
    }

    #[test]
    fn sorted_by_role_then_index() {
        let list = InstanceJson::list(&[
            instance("frontend", 10, "host-1", "Running"),
            instance("frontend", 2, "host-2", "Running"),
            instance("api", 0, "", "Pending"),
        ]);
        let ids: Vec<_> = list.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["web.api.0", "web.frontend.2", "web.frontend.10"]);
    }

    #[test]
    fn tables() {
        let mut running = instance("frontend", 0, "host-1", "Running");
        running.endpoint = "127.0.0.1:41000".into();
        running.pid = 4242;
        let mut pending = instance("api", 0, "", "Reinitializing");
        pending.detail = format!("guest agent did not connect\nwithin 25m {}", "x".repeat(80));
        let list = InstanceJson::list(&[running, pending]);
        let full = full_table(&list);
        let lines: Vec<_> = full.lines().collect();
        let header: Vec<_> = lines[0].split_whitespace().collect();
        assert_eq!(
            header,
            [
                "INSTANCE",
                "NODE",
                "STATE",
                "INCARNATION",
                "ENDPOINT",
                "PID",
                "DETAIL"
            ]
        );
        let row: Vec<_> = lines[1].split_whitespace().take(6).collect();
        assert_eq!(row, ["web.api.0", "-", "Reinitializing", "1", "-", "-"]);
        assert!(lines[1].ends_with('…'), "{}", lines[1]);
        assert!(lines[1].contains("guest agent did not connect within 25m"));
        assert!(
            lines[2].contains("127.0.0.1:41000  4242  -"),
            "{}",
            lines[2]
        );
        let short = placement_table(&list);
        let header: Vec<_> = short.lines().next().unwrap().split_whitespace().collect();
        assert_eq!(header, ["INSTANCE", "NODE", "STATE", "INCARNATION"]);
        assert_eq!(short.lines().count(), 3);
    }

    #[test]
    fn healing_shows_where_from() {
        let mut moved = instance("frontend", 0, "host-3", "Starting");
        moved.healing_from = "host-2".into();
        let mut pending = instance("frontend", 1, "", "Pending");
        pending.healing_from = "host-2".into();
        pending.detail = "no Ready server has a free VM slot".into();
        let list = InstanceJson::list(&[moved, pending]);
        assert_eq!(list[0].healing_from.as_deref(), Some("host-2"));
        let full = full_table(&list);
        let lines: Vec<_> = full.lines().collect();
        assert!(
            lines[1].starts_with("web.frontend.0  host-3 <- host-2  Starting"),
            "{}",
            lines[1]
        );
        assert!(
            lines[2].starts_with("web.frontend.1  - <- host-2       Pending"),
            "{}",
            lines[2]
        );
        assert!(lines[2].ends_with("no Ready server has a free VM slot"));
        let v = serde_json::to_value(&list[0]).unwrap();
        assert_eq!(v["healing_from"], "host-2");
        let settled = InstanceJson::list(&[instance("api", 0, "host-1", "Running")]);
        let mut v = serde_json::to_value(&settled[0]).unwrap();
        assert_eq!(v["healing_from"], serde_json::Value::Null);
        // JSON from before healing existed still parses.
        v.as_object_mut().unwrap().remove("healing_from");
        let back: InstanceJson = serde_json::from_value(v).unwrap();
        assert_eq!(back, settled[0]);
    }

    #[test]
    fn a_guest_other_than_fabrics_is_named() {
        let mut azure = instance("agent", 0, "host-1", "Running");
        azure.guest = "waagent".into();
        let list = InstanceJson::list(&[azure, instance("api", 0, "host-1", "Running")]);
        let full = full_table(&list);
        assert!(full.contains("web.agent.0 (waagent)"), "{full}");
        assert!(full.contains("web.api.0 "), "{full}");
        assert_eq!(serde_json::to_value(&list[0]).unwrap()["guest"], "waagent");
        // Fabric's guest is not named: JSON stays as it was.
        assert!(
            serde_json::to_value(&list[1])
                .unwrap()
                .get("guest")
                .is_none()
        );
    }

    #[test]
    fn truncation() {
        assert_eq!(truncate("", 5), "-");
        assert_eq!(truncate("abcde", 5), "abcde");
        assert_eq!(truncate("abcdef", 5), "abcd…");
        assert_eq!(truncate("a\n b", 5), "a b");
    }
}
