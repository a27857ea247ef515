//! `fabricctl cluster resume`, `fabricctl cluster set SWITCH on|off
//! [--clusters DIR,DIR...]` and
//! `fabricctl cluster recover --adopt | --wipe --yes`.
//!
//! When too many nodes are in Human Investigate the controller puts the
//! whole cluster in HI mode: automatic service healing and internal updates
//! stop until an operator resumes (the brake the 2012 outage lacked). The
//! switches degrade the cluster gracefully by hand: healing, updates and
//! service management can each be turned off without the others. Both read
//! the status first, so the output says what changed.

use crate::cli::{GlobalArgs, RecoverArgs, SetArgs, SwitchName};
use crate::output;
use crate::status::HI_MODE;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{
    ClusterStatus, GetStatusRequest, NodeState, RecoverStateRequest, ResumeClusterRequest,
    SetSwitchRequest, recover_state_request,
};
use tonic::transport::Channel;

async fn connect(
    global: &GlobalArgs,
) -> anyhow::Result<(Target, OperatorServiceClient<Channel>, ClusterStatus)> {
    let target = Target::controller(global)?;
    let mut client = OperatorServiceClient::new(target.connect().await?);
    let status = client
        .get_status(GetStatusRequest::default())
        .await
        .map_err(|s| target.first_rpc_error("GetStatus", &s))?
        .into_inner();
    Ok((target, client, status))
}

/// `fabricctl cluster recover --adopt | --wipe --yes`.
pub async fn recover(global: &GlobalArgs, args: &RecoverArgs) -> anyhow::Result<()> {
    let (target, mut client, _) = connect(global).await?;
    let action = if args.adopt {
        recover_state_request::Action::Adopt
    } else {
        recover_state_request::Action::Wipe
    };
    let done = client
        .recover_state(RecoverStateRequest {
            action: action as i32,
        })
        .await
        .map_err(|s| target.operator_error("recover", None, "RecoverState", &s))?
        .into_inner();
    output::line(&done.summary);
    Ok(())
}

pub async fn resume(global: &GlobalArgs) -> anyhow::Result<()> {
    let (target, mut client, before) = connect(global).await?;
    client
        .resume_cluster(ResumeClusterRequest {})
        .await
        .map_err(|s| target.operator_error("resume", None, "ResumeCluster", &s))?;
    output::line(&resumed(&before));
    Ok(())
}

/// What `cluster resume` prints, from the status read just before.
pub fn resumed(before: &ClusterStatus) -> String {
    let mut text = if before.mode == HI_MODE {
        "cluster resumed: HumanInvestigate -> Normal; healing may move instances again".to_owned()
    } else {
        format!(
            "cluster resumed: was already {}",
            if before.mode.is_empty() {
                "Normal"
            } else {
                &before.mode
            }
        )
    };
    text.push_str("; every node has a fresh heartbeat grace");
    let mut held: Vec<&str> = before
        .nodes
        .iter()
        .filter(|n| n.state() == NodeState::HumanInvestigate)
        .map(|n| n.node_id.as_str())
        .collect();
    held.sort_by_key(|id| crate::status::natural_key(id));
    if !held.is_empty() {
        text.push_str(&format!(
            "\nstill in Human Investigate until repaired: {} (`fabricctl node repair ID`)",
            held.join(", ")
        ));
    }
    text
}

pub async fn set(global: &GlobalArgs, args: &SetArgs) -> anyhow::Result<()> {
    if args.clusters.is_empty() {
        let (_, text) = set_one(global.clone(), args.switch, args.position.is_on()).await?;
        output::line(&text);
        return Ok(());
    }
    if global.endpoint.is_some() || global.ca.is_some() || global.cert.is_some() {
        anyhow::bail!(
            "--clusters reads each cluster's endpoint and certificates from its state \
             directory; leave out --endpoint, --ca and --cert"
        );
    }
    // Every cluster at once, each answering for itself.
    let mut each = tokio::task::JoinSet::new();
    for (i, dir) in args.clusters.iter().enumerate() {
        let global = GlobalArgs {
            state_dir: dir.clone(),
            ..global.clone()
        };
        let (switch, on) = (args.switch, args.position.is_on());
        each.spawn(async move { (i, set_one(global, switch, on).await) });
    }
    let mut answers: Vec<_> = each.join_all().await;
    answers.sort_by_key(|(i, _)| *i);
    let mut failed = Vec::new();
    for (dir, (_, answer)) in args.clusters.iter().zip(answers) {
        match answer {
            Ok((name, text)) => {
                output::line(&format!("cluster {name} ({}): {text}", dir.display()))
            }
            Err(e) => {
                output::line(&format!("{}: not switched: {e:#}", dir.display()));
                failed.push(dir.display().to_string());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        anyhow::bail!(
            "{} of {} clusters not switched: {}",
            failed.len(),
            args.clusters.len(),
            failed.join(", ")
        )
    }
}

/// Sets `switch` in the cluster `global` names; its name and what to print.
async fn set_one(
    global: GlobalArgs,
    switch: SwitchName,
    on: bool,
) -> anyhow::Result<(String, String)> {
    let (target, mut client, before) = connect(&global).await?;
    client
        .set_switch(SetSwitchRequest {
            switch: switch.as_str().into(),
            on,
        })
        .await
        .map_err(|s| target.operator_error("switch", None, "SetSwitch", &s))?;
    Ok((before.cluster_name.clone(), switched(switch, on, &before)))
}

/// What `cluster set` prints: the change and what it means.
pub fn switched(switch: SwitchName, on: bool, before: &ClusterStatus) -> String {
    let was = before.switches.map(|s| match switch {
        SwitchName::Healing => s.healing,
        SwitchName::Updates => s.updates,
        SwitchName::Management => s.management,
    });
    let word = |on: bool| if on { "on" } else { "off" };
    let meaning = match (switch, on) {
        (SwitchName::Healing, true) => "automatic service healing allowed",
        (SwitchName::Healing, false) => {
            "automatic service healing stopped: instances on failed servers stay put"
        }
        (SwitchName::Updates, true) => "internally initiated updates allowed",
        (SwitchName::Updates, false) => "internally initiated updates stopped",
        (SwitchName::Management, true) => "deploy, scale and delete accepted",
        (SwitchName::Management, false) => "deploy, scale and delete refused",
    };
    let change = match was {
        Some(was) if was == on => format!("{} (unchanged)", word(on)),
        Some(was) => format!("{} -> {}", word(was), word(on)),
        None => word(on).to_owned(),
    };
    let mut text = format!("{}: {change} ({meaning})", switch.as_str());
    if on && switch != SwitchName::Management && before.mode == HI_MODE {
        text.push_str(
            "\ncluster is in Human Investigate mode: nothing moves until `fabricctl cluster resume`",
        );
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_proto::v1::{NodeStatus, Switches};

    fn status(mode: &str, hi: &[&str]) -> ClusterStatus {
        ClusterStatus {
            mode: mode.into(),
            nodes: ["host-10", "host-2", "host-3"]
                .iter()
                .map(|id| NodeStatus {
                    node_id: (*id).into(),
                    state: if hi.contains(id) {
                        NodeState::HumanInvestigate
                    } else {
                        NodeState::Ready
                    } as i32,
                    ..Default::default()
                })
                .collect(),
            switches: Some(Switches {
                healing: true,
                updates: true,
                management: false,
            }),
            ..Default::default()
        }
    }

    #[test]
    fn resumed_lines() {
        assert_eq!(
            resumed(&status(HI_MODE, &["host-10", "host-2"])),
            "cluster resumed: HumanInvestigate -> Normal; healing may move instances again; \
             every node has a fresh heartbeat grace\nstill in Human Investigate until repaired: \
             host-2, host-10 (`fabricctl node repair ID`)"
        );
        assert_eq!(
            resumed(&status("Normal", &[])),
            "cluster resumed: was already Normal; every node has a fresh heartbeat grace"
        );
    }

    #[test]
    fn switched_lines() {
        let normal = status("Normal", &[]);
        assert_eq!(
            switched(SwitchName::Healing, false, &normal),
            "healing: on -> off (automatic service healing stopped: instances on failed servers stay put)"
        );
        assert_eq!(
            switched(SwitchName::Management, true, &normal),
            "management: off -> on (deploy, scale and delete accepted)"
        );
        assert_eq!(
            switched(SwitchName::Updates, true, &normal),
            "updates: on (unchanged) (internally initiated updates allowed)"
        );
        let old = ClusterStatus::default();
        assert_eq!(
            switched(SwitchName::Updates, false, &old),
            "updates: off (internally initiated updates stopped)"
        );
        let hi = status(HI_MODE, &["host-2"]);
        assert!(switched(SwitchName::Healing, true, &hi).ends_with(
            "\ncluster is in Human Investigate mode: nothing moves until `fabricctl cluster resume`"
        ));
        assert!(!switched(SwitchName::Management, true, &hi).contains('\n'));
    }
}
