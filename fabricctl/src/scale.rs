//! `fabricctl scale NAME ROLE N`: set how many instances a role runs.
//!
//! Scaling out places new instances like a deploy does (all or none);
//! scaling in stops the highest indices. Zero is refused by the controller:
//! `fabricctl delete` removes a deployment.

use crate::cli::{GlobalArgs, ScaleArgs};
use crate::instances::{self, InstanceJson};
use crate::output;
use crate::target::Target;
use fabric_proto::v1::ScaleRequest;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;

pub async fn run(global: &GlobalArgs, args: &ScaleArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let channel = target.connect().await?;
    let response = OperatorServiceClient::new(channel)
        .scale(ScaleRequest {
            deployment: args.name.clone(),
            role: args.role.clone(),
            instances: args.instances,
        })
        .await
        .map_err(|s| target.management_error("scale", "Scale", &s))?
        .into_inner();
    let list = InstanceJson::list(&response.instances);
    let mut text = format!(
        "scaled {}/{} to {} instance{}",
        args.name,
        args.role,
        args.instances,
        if args.instances == 1 { "" } else { "s" }
    );
    if !list.is_empty() {
        text.push('\n');
        text.push_str(&instances::placement_table(&list));
    }
    output::line(text.trim_end());
    Ok(())
}
