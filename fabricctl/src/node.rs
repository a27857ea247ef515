//! `fabricctl node repair ID`: return a server from Human Investigate.
//!
//! Only an operator moves a node out of Human Investigate (HI): the
//! controller put it there because it stayed silent or its host agent
//! reported it faulty, and only a person can say the cause is gone. The node
//! is Ready at once, with a fresh heartbeat grace, and may take role
//! instances again. The cluster's own HI mode is separate: it ends with
//! `fabricctl cluster resume`.

use crate::cli::{GlobalArgs, RepairArgs};
use crate::output;
use crate::status::HI_MODE;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterStatus, GetStatusRequest, RepairNodeRequest};

pub async fn run(global: &GlobalArgs, args: &RepairArgs) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    client
        .repair_node(RepairNodeRequest {
            node_id: args.id.clone(),
            reason: args.reason.clone(),
        })
        .await
        .map_err(|s| target.operator_error("repair", Some(&args.id), "RepairNode", &s))?;
    // Only to say what is left to do; the repair itself is done.
    let after = client
        .get_status(GetStatusRequest::default())
        .await
        .ok()
        .map(tonic::Response::into_inner);
    output::line(&repaired(&args.id, after.as_ref()));
    Ok(())
}

/// What `node repair` prints: the transition, and whether the cluster is
/// still in HI mode (so healing still waits for a resume).
pub fn repaired(id: &str, after: Option<&ClusterStatus>) -> String {
    let mut text = format!("{id} repaired: HumanInvestigate -> Ready");
    if let Some(status) = after.filter(|s| s.mode == HI_MODE) {
        text.push_str(&format!(
            "\ncluster still in Human Investigate mode ({} node{} in HI): healing and updates \
             stay stopped until `fabricctl cluster resume`",
            status.hi_count,
            if status.hi_count == 1 { "" } else { "s" }
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repaired_line() {
        assert_eq!(
            repaired("host-2", None),
            "host-2 repaired: HumanInvestigate -> Ready"
        );
        let normal = ClusterStatus {
            mode: "Normal".into(),
            ..Default::default()
        };
        assert_eq!(
            repaired("host-2", Some(&normal)),
            "host-2 repaired: HumanInvestigate -> Ready"
        );
        let hi = ClusterStatus {
            mode: HI_MODE.into(),
            hi_count: 1,
            ..Default::default()
        };
        assert_eq!(
            repaired("host-2", Some(&hi)),
            "host-2 repaired: HumanInvestigate -> Ready\ncluster still in Human Investigate mode \
             (1 node in HI): healing and updates stay stopped until `fabricctl cluster resume`"
        );
    }
}
