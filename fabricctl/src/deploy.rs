//! `fabricctl deploy FILE`: create a deployment, or rotate its certificates.
//!
//! The definition is read and its files checked here ([`definition`]), so a
//! typo in a path fails before anything is sent; the controller validates
//! the rest and places every instance or none. Deploying a name that exists
//! with the same roles and instance counts replaces its certificates: that
//! is how certificates are rotated.

use crate::cli::{DeployArgs, GlobalArgs};
use crate::definition;
use crate::instances::{self, InstanceJson};
use crate::output;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{DeployRequest, DeployResponse, ServiceDefinition};

/// Sends `service` to the controller.
pub async fn deploy(target: &Target, service: ServiceDefinition) -> anyhow::Result<DeployResponse> {
    let channel = target.connect().await?;
    let response = OperatorServiceClient::new(channel)
        .deploy(DeployRequest {
            service: Some(service),
        })
        .await
        .map_err(|s| target.management_error("deploy", "Deploy", &s))?;
    Ok(response.into_inner())
}

/// What `deploy` prints: one summary line, then where each instance is.
pub fn report(response: &DeployResponse) -> String {
    let list = InstanceJson::list(&response.instances);
    let headline = if response.rotated {
        format!("rotated certificates of {}", response.deployment)
    } else {
        format!(
            "deployed {}: {} instance{} placed",
            response.deployment,
            list.len(),
            if list.len() == 1 { "" } else { "s" }
        )
    };
    if list.is_empty() {
        headline
    } else {
        format!("{headline}\n{}", instances::placement_table(&list))
    }
}

pub async fn run(global: &GlobalArgs, args: &DeployArgs) -> anyhow::Result<()> {
    let service = definition::load(&args.file)?;
    let warnings = single_instance_warnings(&service);
    let target = Target::controller(global)?;
    let response = deploy(&target, service).await?;
    output::line(report(&response).trim_end());
    for w in warnings {
        eprintln!("{w}");
    }
    Ok(())
}

/// One warning per role with a single instance: it goes down with its
/// server, whatever healing does. The 2009 lesson: "Any application
/// running only a single instance went down when its server went down"; the
/// remedy was two instances by default.
pub fn single_instance_warnings(service: &ServiceDefinition) -> Vec<String> {
    service
        .roles
        .iter()
        .filter(|r| r.instances == 1)
        .map(|r| {
            format!(
                "warning: role {}.{} has a single instance: it is down whenever its server is, \
                 until healing restarts it elsewhere; two or more, placed in different fault \
                 domains, keep it up",
                service.name, r.name
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_proto::v1::RoleInstanceStatus;

    fn instance(role: &str, index: u32, node: &str) -> RoleInstanceStatus {
        RoleInstanceStatus {
            instance_id: format!("web.{role}.{index}"),
            deployment: "web".into(),
            role: role.into(),
            index,
            node_id: node.into(),
            state: "Starting".into(),
            incarnation: 1,
            ..Default::default()
        }
    }

    #[test]
    fn created_and_rotated() {
        let mut response = DeployResponse {
            deployment: "web".into(),
            rotated: false,
            instances: vec![
                instance("frontend", 0, "host-1"),
                instance("frontend", 1, "host-2"),
                instance("api", 0, "host-3"),
            ],
        };
        let text = report(&response);
        let lines: Vec<_> = text.lines().collect();
        assert_eq!(lines[0], "deployed web: 3 instances placed");
        assert!(lines[1].starts_with("INSTANCE"));
        assert_eq!(
            lines[2].split_whitespace().collect::<Vec<_>>(),
            ["web.api.0", "host-3", "Starting", "1"]
        );
        assert_eq!(lines.len(), 5);
        response.rotated = true;
        assert!(report(&response).starts_with("rotated certificates of web\n"));
        response.instances.clear();
        assert_eq!(report(&response), "rotated certificates of web");
    }

    #[test]
    fn a_single_instance_role_is_warned_about() {
        let role = |name: &str, instances| fabric_proto::v1::RoleDefinition {
            name: name.into(),
            instances,
            certificates: vec![],
            guest: String::new(),
        };
        let service = ServiceDefinition {
            name: "web".into(),
            roles: vec![role("frontend", 2), role("api", 1)],
            priority: 0,
        };
        let warnings = single_instance_warnings(&service);
        assert_eq!(warnings.len(), 1);
        assert!(
            warnings[0].contains("web.api has a single instance"),
            "{warnings:?}"
        );
    }
}
