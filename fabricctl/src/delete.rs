//! `fabricctl delete NAME`: remove a deployment.
//!
//! The controller forgets the deployment at once; its VMs stop as each host
//! agent learns, at its next heartbeat, that they are no longer wanted.

use crate::cli::{DeleteArgs, GlobalArgs};
use crate::output;
use crate::target::Target;
use fabric_proto::v1::DeleteDeploymentRequest;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;

pub async fn run(global: &GlobalArgs, args: &DeleteArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let channel = target.connect().await?;
    OperatorServiceClient::new(channel)
        .delete_deployment(DeleteDeploymentRequest {
            deployment: args.name.clone(),
        })
        .await
        .map_err(|s| target.management_error("delete", "DeleteDeployment", &s))?;
    output::line(&format!(
        "deleted {} (its VMs stop at the host agents' next heartbeat)",
        args.name
    ));
    Ok(())
}
