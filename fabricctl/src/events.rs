//! `fabricctl events`: the controller's event log, listed or followed.

use crate::cli::{EventsArgs, GlobalArgs, Output};
use crate::output;
use crate::target::Target;
use crate::timefmt;
use crate::watch;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterEvent, ListEventsRequest};
use serde::{Deserialize, Serialize};

/// One event in `-o json` output (one object per line).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventJson {
    pub sequence: u64,
    /// RFC 3339, UTC.
    pub time: String,
    pub kind: String,
    /// Empty when the event concerns no single node.
    pub node: String,
    pub reason: String,
}

impl EventJson {
    pub fn from_proto(e: &ClusterEvent) -> Self {
        Self {
            sequence: e.sequence,
            time: timefmt::rfc3339(e.time.as_ref()),
            kind: e.kind.clone(),
            node: e.node_id.clone(),
            reason: e.reason.clone(),
        }
    }
}

/// One event as a line of text: `SEQ TIME KIND NODE REASON`.
pub fn table_line(e: &ClusterEvent) -> String {
    format!(
        "{:>5}  {}  {:<22}  {:<8}  {}",
        e.sequence,
        timefmt::rfc3339(e.time.as_ref()),
        e.kind,
        if e.node_id.is_empty() {
            "-"
        } else {
            &e.node_id
        },
        e.reason
    )
    .trim_end()
    .to_owned()
}

/// The short line `fabricctl up` prints: `TIME KIND NODE REASON`.
pub fn short_line(e: &ClusterEvent) -> String {
    format!(
        "{}  {:<22}  {:<8}  {}",
        timefmt::clock(e.time.as_ref()),
        e.kind,
        if e.node_id.is_empty() {
            "-"
        } else {
            &e.node_id
        },
        e.reason
    )
    .trim_end()
    .to_owned()
}

fn render(output: Output, e: &ClusterEvent) -> String {
    match output {
        Output::Table => table_line(e),
        Output::Json | Output::Jsonl => serde_json::to_string(&EventJson::from_proto(e))
            .unwrap_or_else(|err| format!("{{\"error\":\"{err}\"}}")),
    }
}

pub async fn run(global: &GlobalArgs, args: &EventsArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let channel = target.connect().await?;
    let mut client = OperatorServiceClient::new(channel);
    let events = client
        .list_events(ListEventsRequest {
            after_sequence: args.after,
            limit: 0,
        })
        .await
        .map_err(|s| target.first_rpc_error("ListEvents", &s))?
        .into_inner()
        .events;
    let mut last = args.after;
    for e in &events {
        output::line(&render(args.output, e));
        last = last.max(e.sequence);
    }
    if args.follow {
        let format = args.output;
        let follow = watch::follow(
            &target,
            last,
            |e| output::line(&render(format, e)),
            |note| eprintln!("fabricctl: {note}"),
        );
        tokio::select! {
            r = follow => r?,
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> ClusterEvent {
        ClusterEvent {
            sequence: 7,
            time: Some(prost_types::Timestamp {
                seconds: 1_330_473_600,
                nanos: 0,
            }),
            kind: "node.unresponsive".into(),
            node_id: "host-2".into(),
            reason: "no heartbeat for 5s".into(),
        }
    }

    #[test]
    fn json_line() {
        let line = render(Output::Json, &event());
        assert!(!line.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(v["sequence"], 7);
        assert_eq!(v["time"], "2012-02-29T00:00:00.000Z");
        assert_eq!(v["kind"], "node.unresponsive");
        assert_eq!(v["node"], "host-2");
        assert_eq!(v["reason"], "no heartbeat for 5s");
    }

    #[test]
    fn text_lines() {
        let t = table_line(&event());
        assert!(
            t.trim_start()
                .starts_with("7  2012-02-29T00:00:00.000Z  node.unresponsive")
        );
        assert!(t.ends_with("host-2    no heartbeat for 5s"), "{t}");
        let s = short_line(&event());
        assert!(s.starts_with("00:00:00.000Z  node.unresponsive"));
    }
}
