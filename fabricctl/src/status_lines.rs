//! `fabricctl status -o jsonl`: the status as JSON Lines, printed as each
//! page of instances arrives, so a script reading a cluster of 100,000
//! instances sees the first line at once and `fabricctl` holds one page
//! (5,000 instances by default, `--page-size`), never the whole cluster.
//!
//! Every line is one object with a `kind`, in this order:
//! - `cluster`: the fields of `-o json` ([`StatusJson`]) but `nodes` and
//!   `deployments`, plus `instances_matched` (how many instances the filter
//!   selects: the number of `instance` lines to expect without `--limit`);
//! - `node`: one per node, as in `-o json`'s `nodes`;
//! - `deployment`: one per deployment, its name and certificate expiries;
//! - `instance`: one per instance, as in `-o json`'s deployments.
//!
//! Pages are read one after another, not as one snapshot: an instance
//! that moves between two pages is still printed once (pages go by
//! instance id), with what the controller said when its page was read.

use crate::output;
use crate::status::{DeploymentJson, InstanceJson, NodeJson, StatusJson, for_each_page};
use crate::target::Target;
use fabric_proto::v1::GetStatusRequest;
use serde::Serialize;

/// One line: `{"kind": ..., ...item's fields}`.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'static str,
    #[serde(flatten)]
    item: &'a T,
}

fn print_line<T: Serialize>(kind: &'static str, item: &T) -> anyhow::Result<()> {
    output::line(&serde_json::to_string(&Line { kind, item })?);
    Ok(())
}

/// The `cluster` line: [`StatusJson`] without its lists.
#[derive(Serialize)]
struct ClusterLine {
    #[serde(flatten)]
    status: serde_json::Value,
    instances_matched: u32,
}

pub async fn print(
    target: &Target,
    filter: GetStatusRequest,
    limit: Option<u32>,
    page_size: u32,
    dashboard: Option<String>,
) -> anyhow::Result<()> {
    let mut first = true;
    for_each_page(target, filter, limit, page_size, |page| {
        if std::mem::take(&mut first) {
            let mut status = StatusJson::from_proto(&page);
            status.dashboard = dashboard.clone();
            let nodes: Vec<NodeJson> = std::mem::take(&mut status.nodes);
            let deployments: Vec<DeploymentJson> = std::mem::take(&mut status.deployments);
            let mut value = serde_json::to_value(&status)?;
            if let Some(fields) = value.as_object_mut() {
                fields.remove("nodes");
                fields.remove("deployments");
            }
            print_line(
                "cluster",
                &ClusterLine {
                    status: value,
                    instances_matched: page.instances_matched,
                },
            )?;
            for n in &nodes {
                print_line("node", n)?;
            }
            for d in &deployments {
                print_line(
                    "deployment",
                    &serde_json::json!({
                        "name": d.name,
                        "certificate_not_after": d.certificate_not_after,
                    }),
                )?;
            }
        }
        for d in &page.deployments {
            for i in InstanceJson::list(&d.instances) {
                print_line("instance", &i)?;
            }
        }
        Ok(())
    })
    .await
}
