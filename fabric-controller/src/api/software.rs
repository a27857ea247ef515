//! Protobuf <-> domain conversions for the fabric's own software: what a
//! server runs, package manifests, update plans and rollout status. Every
//! field from a host or an operator is validated into a bounded core type.

use super::ApiError;
use super::convert::{text, timestamp};
use fabric_core::rollout::{Rollout, Target};
use fabric_core::software::{Artifact, Manifest, Plugin, Version};
use fabric_core::{OnFailure, Software, UpdatePlan};
use fabric_proto::v1 as pb;
use std::time::Duration;

/// Largest artifact accepted (a debug build of the host agent fits).
pub const MAX_ARTIFACT: u64 = 512 * 1024 * 1024;
/// Longest gate window an operator may ask for.
const MAX_GATE: Duration = Duration::from_secs(24 * 3600);

fn version(what: &str, value: &str) -> Result<Version, ApiError> {
    Version::parse(what, value).map_err(ApiError::InvalidArgument)
}

/// What a host agent says it runs. Versions it reports are shown, not
/// trusted for anything but display and the gate's comparison, so they are
/// only bounded texts; the package name must be a valid version.
pub fn running(report: Option<pb::RunningSoftware>) -> Result<Software, ApiError> {
    let Some(s) = report else {
        return Ok(Software::default());
    };
    Ok(Software {
        package: if s.package.is_empty() {
            None
        } else {
            Some(version("package", &s.package)?)
        },
        host_agent: bounded_version("host_agent version", &s.host_agent)?,
        guest_agent: bounded_version("guest_agent version", &s.guest_agent)?,
        plugin: bounded_version("plugin version", &s.plugin)?,
    })
}

fn bounded_version(what: &str, value: &str) -> Result<String, ApiError> {
    if value.len() > fabric_core::software::MAX_VERSION_LEN {
        return Err(ApiError::InvalidArgument(format!(
            "{what} is longer than {} bytes",
            fabric_core::software::MAX_VERSION_LEN
        )));
    }
    text(what, value, false)
}

pub fn running_pb(s: &Software) -> pb::RunningSoftware {
    pb::RunningSoftware {
        package: s
            .package
            .as_ref()
            .map(|v| v.to_string())
            .unwrap_or_default(),
        host_agent: s.host_agent.clone(),
        guest_agent: s.guest_agent.clone(),
        plugin: s.plugin.clone(),
    }
}

fn artifact(what: &str, a: Option<pb::Artifact>) -> Result<Artifact, ApiError> {
    let a =
        a.ok_or_else(|| ApiError::InvalidArgument(format!("the {what} artifact is missing")))?;
    if a.size == 0 || a.size > MAX_ARTIFACT {
        return Err(ApiError::InvalidArgument(format!(
            "the {what} is {} bytes; it must be 1 to {MAX_ARTIFACT}",
            a.size
        )));
    }
    let artifact = Artifact {
        version: version(&format!("{what} version"), &a.version)?,
        file: a.file,
        size: a.size,
        sha256: a.sha256,
        flags: a.flags,
    };
    fabric_core::software::check_artifact(what, &artifact).map_err(ApiError::InvalidArgument)?;
    Ok(artifact)
}

/// A manifest from an operator, validated (sizes, digests' form, names).
pub fn manifest(m: pb::PackageManifest) -> Result<Manifest, ApiError> {
    let host_agent = artifact("host agent", m.host_agent)?;
    let guest_agent = artifact("guest agent", m.guest_agent)?;
    let plugin = artifact("networking plugin", m.plugin)?;
    // A restarted host agent recognises its VMs' guest agents by program
    // name before it signals one (pids are reused).
    if !guest_agent.file.contains("guest-agent") {
        return Err(ApiError::InvalidArgument(format!(
            "the guest agent's file name {:?} must contain \"guest-agent\" (host agents \
             recognise VMs' processes by it)",
            guest_agent.file
        )));
    }
    let files = [&host_agent.file, &guest_agent.file, &plugin.file];
    if files[0] == files[1] || files[0] == files[2] || files[1] == files[2] {
        return Err(ApiError::InvalidArgument(
            "the host agent, guest agent and plugin need three different file names".into(),
        ));
    }
    for c in &m.plugin_compatible_host_agents {
        bounded_version("a compatible host agent version", c)?;
    }
    Ok(Manifest {
        version: version("package version", &m.version)?,
        host_agent,
        guest_agent,
        plugin: Plugin {
            artifact: plugin,
            compatible_host_agents: m.plugin_compatible_host_agents,
        },
        forced: false,
    })
}

fn artifact_pb(a: &Artifact) -> pb::Artifact {
    pb::Artifact {
        version: a.version.to_string(),
        file: a.file.clone(),
        size: a.size,
        sha256: a.sha256.clone(),
        flags: a.flags.clone(),
    }
}

pub fn manifest_pb(m: &Manifest) -> pb::PackageManifest {
    pb::PackageManifest {
        version: m.version.to_string(),
        host_agent: Some(artifact_pb(&m.host_agent)),
        guest_agent: Some(artifact_pb(&m.guest_agent)),
        plugin: Some(artifact_pb(&m.plugin.artifact)),
        plugin_compatible_host_agents: m.plugin.compatible_host_agents.clone(),
        forced: m.forced,
    }
}

pub fn target_pb(t: &Target, update_id: u64) -> pb::SoftwareTarget {
    pb::SoftwareTarget {
        package: match t {
            Target::Package(m) => Some(manifest_pb(m)),
            Target::Base => None,
        },
        update_id,
    }
}

fn gate(what: &str, d: Option<prost_types::Duration>) -> Result<Option<Duration>, ApiError> {
    let Some(d) = d else { return Ok(None) };
    let d = Duration::try_from(d)
        .map_err(|_| ApiError::InvalidArgument(format!("{what} must not be negative")))?;
    if d > MAX_GATE {
        return Err(ApiError::InvalidArgument(format!(
            "{what} of {d:?} is longer than {MAX_GATE:?}"
        )));
    }
    Ok((!d.is_zero()).then_some(d))
}

pub fn update_plan(req: pb::StartUpdateRequest) -> Result<UpdatePlan, ApiError> {
    let mut plan = UpdatePlan::new(version("package", &req.package)?);
    plan.on_failure = if req.on_failure.is_empty() {
        OnFailure::Pause
    } else {
        OnFailure::parse(&req.on_failure).map_err(ApiError::InvalidArgument)?
    };
    if req.canary > crate::api::convert::MAX_INSTANCES {
        return Err(ApiError::InvalidArgument(format!(
            "canary of {} servers is more than a cluster holds",
            req.canary
        )));
    }
    plan.canary = req.canary;
    plan.blast = req.blast;
    plan.force = req.force;
    plan.gate_stable = gate("gate_stable", req.gate_stable)?;
    plan.gate_timeout = gate("gate_timeout", req.gate_timeout)?;
    if let (Some(s), Some(t)) = (plan.gate_stable, plan.gate_timeout)
        && t <= s
    {
        return Err(ApiError::InvalidArgument(format!(
            "gate_timeout ({t:?}) must be longer than gate_stable ({s:?})"
        )));
    }
    plan.reincarnate = !req.keep_instances;
    Ok(plan)
}

pub fn update_status(r: Option<&Rollout>) -> pb::UpdateStatus {
    let Some(r) = r else {
        return pb::UpdateStatus::default();
    };
    pb::UpdateStatus {
        id: r.id,
        package: r.plan.package.to_string(),
        status: r.status.label().to_owned(),
        stopped_because: r.status.stopped_because(),
        direction: r.direction.as_str().into(),
        steps: r
            .steps
            .iter()
            .map(|s| pb::UpdateStep {
                label: s.label.clone(),
                nodes: s.nodes.iter().map(|n| n.to_string()).collect(),
            })
            .collect(),
        step: r.step as u32,
        gate: r.gate.clone(),
        done: r.done.iter().map(|n| n.to_string()).collect(),
        released: r.released.iter().map(|n| n.to_string()).collect(),
        started: Some(timestamp(r.started.wall)),
        finished: r.finished.map(|f| timestamp(f.wall)),
        on_failure: r.plan.on_failure.as_str().into(),
        position: r.position(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(file: &str) -> Option<pb::Artifact> {
        Some(pb::Artifact {
            version: "1.0".into(),
            file: file.into(),
            size: 10,
            sha256: "0".repeat(64),
            flags: vec![],
        })
    }

    fn manifest(ha: &str, ga: &str, np: &str) -> pb::PackageManifest {
        pb::PackageManifest {
            version: "p1".into(),
            host_agent: artifact(ha),
            guest_agent: artifact(ga),
            plugin: artifact(np),
            plugin_compatible_host_agents: vec!["1.*".into()],
            forced: false,
        }
    }

    #[test]
    fn manifests_are_checked_with_the_field_named() {
        super::manifest(manifest("host-agent", "guest-agent", "netplug")).unwrap();
        for (bad, says) in [
            (manifest("host-agent", "ga", "netplug"), "guest-agent"),
            (
                manifest("host-agent", "guest-agent", "host-agent"),
                "different file names",
            ),
            (
                manifest("../host-agent", "guest-agent", "netplug"),
                "plain file name",
            ),
        ] {
            let err = super::manifest(bad).unwrap_err().to_string();
            assert!(err.contains(says), "{err}");
        }
        let mut huge = manifest("host-agent", "guest-agent", "netplug");
        huge.host_agent.as_mut().unwrap().size = MAX_ARTIFACT + 1;
        let err = super::manifest(huge).unwrap_err().to_string();
        assert!(err.contains("bytes"), "{err}");
        let mut none = manifest("host-agent", "guest-agent", "netplug");
        none.plugin = None;
        let err = super::manifest(none).unwrap_err().to_string();
        assert!(
            err.contains("networking plugin artifact is missing"),
            "{err}"
        );
    }
}
