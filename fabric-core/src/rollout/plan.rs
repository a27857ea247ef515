//! What an operator asks for with `fabricctl update start`.

use crate::software::Version;
use std::time::Duration;

/// What a failed gate does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum OnFailure {
    /// Stop where it is and wait for an operator (Service Fabric's Manual,
    /// Kubernetes' and Nomad's only behaviour by default).
    #[default]
    Pause,
    /// Walk back to each server's previous package (Service Fabric's
    /// Rollback, Nomad's auto_revert).
    Rollback,
}

impl OnFailure {
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pause" => Ok(OnFailure::Pause),
            "rollback" => Ok(OnFailure::Rollback),
            other => Err(format!(
                "unknown failure action {other:?}: expected pause or rollback"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OnFailure::Pause => "pause",
            OnFailure::Rollback => "rollback",
        }
    }
}

/// A validated update request.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UpdatePlan {
    pub package: Version,
    pub on_failure: OnFailure,
    /// Update this many servers first, gated, before the domain walk.
    pub canary: u32,
    /// Every server at once (the 2012 repair); the gate still runs after.
    pub blast: bool,
    /// Start although the package's plugin does not declare its host agent.
    pub force: bool,
    /// How long the gate must hold; `None`: the cluster's default.
    pub gate_stable: Option<Duration>,
    /// How long a step may take to pass its gate; `None`: the default.
    pub gate_timeout: Option<Duration>,
    /// Reincarnate each updated server's role instances so they start on
    /// the package's guest agent (the default); off, a new guest agent
    /// reaches VMs only as they are reinitialized for other reasons.
    pub reincarnate: bool,
}

impl UpdatePlan {
    /// The plan for `package` with every default.
    pub fn new(package: Version) -> Self {
        Self {
            package,
            on_failure: OnFailure::Pause,
            canary: 0,
            blast: false,
            force: false,
            gate_stable: None,
            gate_timeout: None,
            reincarnate: true,
        }
    }
}
