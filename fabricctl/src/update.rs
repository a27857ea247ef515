//! `fabricctl update start PACKAGE | status | pause | resume | rollback`.
//!
//! The controller walks update domains one at a time, each held by its
//! health gate (servers Ready on the package, role instances Running, role
//! endpoints reachable from outside); cluster HI mode, the updates switch
//! or a failed gate stop it where it is. These commands start it, show it,
//! and carry an operator's word: pause, go on, go back.

use crate::cli::{GlobalArgs, UpdateCommand, UpdateStartArgs};
use crate::output;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{self as pb, update_action_request::Action};

pub async fn run(global: &GlobalArgs, command: &UpdateCommand) -> anyhow::Result<()> {
    let target = Target::controller(global)?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let status = match command {
        UpdateCommand::Start(args) => client
            .start_update(request(args))
            .await
            .map_err(|s| target.operator_error("start the update", None, "StartUpdate", &s))?,
        UpdateCommand::Status => client
            .get_update(pb::GetUpdateRequest {})
            .await
            .map_err(|s| target.operator_error("read the update", None, "GetUpdate", &s))?,
        UpdateCommand::Pause
        | UpdateCommand::Resume
        | UpdateCommand::Rollback
        | UpdateCommand::Abandon => {
            let (action, verb) = match command {
                UpdateCommand::Pause => (Action::Pause, "pause the update"),
                UpdateCommand::Resume => (Action::Resume, "resume the update"),
                UpdateCommand::Abandon => (Action::Abandon, "abandon the update"),
                _ => (Action::Rollback, "roll the update back"),
            };
            client
                .update_action(pb::UpdateActionRequest {
                    action: action as i32,
                })
                .await
                .map_err(|s| target.operator_error(verb, None, "UpdateAction", &s))?
        }
    }
    .into_inner();
    output::line(&describe(&status));
    Ok(())
}

fn request(args: &UpdateStartArgs) -> pb::StartUpdateRequest {
    if args.blast {
        eprintln!(
            "WARNING: --blast updates every server at once, as the 2012 repair did; the health \
             gate runs only after every server has changed"
        );
    }
    pb::StartUpdateRequest {
        package: args.package.clone(),
        on_failure: args.on_failure.clone(),
        canary: args.canary,
        blast: args.blast,
        force: args.force,
        gate_stable: args
            .gate_stable
            .and_then(|d| prost_types::Duration::try_from(d).ok()),
        gate_timeout: args
            .gate_timeout
            .and_then(|d| prost_types::Duration::try_from(d).ok()),
        keep_instances: args.keep_instances,
    }
}

/// "update 2 to p2: Paused (rolling back), step 1 of 2 (update domain 1)":
/// the first line of `update status`, and the rollout's line in `status`.
pub fn headline(id: u64, package: &str, status: &str, direction: &str, position: &str) -> String {
    let back = direction == "back" && matches!(status, "Running" | "Paused");
    format!(
        "update {id} to {package}: {status}{}, {position}",
        if back { " (rolling back)" } else { "" }
    )
}

/// The rollout in a few lines: which, where, its gate, why it stopped.
pub fn describe(u: &pb::UpdateStatus) -> String {
    if u.id == 0 {
        return "no update has been started (fabricctl update start PACKAGE)".into();
    }
    let mut out = headline(u.id, &u.package, &u.status, &u.direction, &u.position);
    if !u.stopped_because.is_empty() {
        out.push_str(&format!("\n  stopped: {}", u.stopped_because));
    }
    if !u.gate.is_empty() {
        out.push_str(&format!("\n  gate: {}", u.gate));
    }
    for (i, s) in u.steps.iter().enumerate() {
        let mark = match (i as u32).cmp(&u.step) {
            std::cmp::Ordering::Less => "done",
            std::cmp::Ordering::Equal if u.status == "Running" || u.status == "Paused" => "now ",
            std::cmp::Ordering::Equal => "done",
            std::cmp::Ordering::Greater => "    ",
        };
        out.push_str(&format!(
            "\n  [{mark}] step {}: {} ({})",
            i + 1,
            s.label,
            s.nodes.join(", ")
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_a_stopped_rollout_with_its_reason_and_steps() {
        let u = pb::UpdateStatus {
            id: 2,
            package: "p2".into(),
            status: "Paused".into(),
            stopped_because: "the cluster is in HI mode".into(),
            direction: "forward".into(),
            steps: vec![
                pb::UpdateStep {
                    label: "update domain 0".into(),
                    nodes: vec!["host-1".into()],
                },
                pb::UpdateStep {
                    label: "update domain 1".into(),
                    nodes: vec!["host-2".into()],
                },
            ],
            step: 1,
            gate: "servers 0/1 on p2".into(),
            position: "step 2 of 2 (update domain 1)".into(),
            ..Default::default()
        };
        let text = describe(&u);
        assert!(
            text.starts_with("update 2 to p2: Paused, step 2 of 2"),
            "{text}"
        );
        assert!(
            text.contains("stopped: the cluster is in HI mode"),
            "{text}"
        );
        assert!(
            text.contains("[done] step 1: update domain 0 (host-1)"),
            "{text}"
        );
        assert!(text.contains("[now ] step 2"), "{text}");
        assert_eq!(
            describe(&pb::UpdateStatus::default()),
            "no update has been started (fabricctl update start PACKAGE)"
        );
    }
}
