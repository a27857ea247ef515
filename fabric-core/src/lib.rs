//! The fabric controller's pure core: every decision, no I/O.
//!
//! Plain data in, decisions out. The core never reads a clock (the caller
//! passes `now`), never touches the network or disk, and never spawns tasks.
//! gRPC handlers and background loops (fabric-controller's server) are thin shells
//! that lock the core, call one method, and carry out what it returns. This is
//! what lets the tests drive thousands of heartbeats in virtual time and what
//! keeps the controller's logic readable in one place.
//!
//! - [`clock`]: the [`Moment`] type and the injected [`Clock`].
//! - [`node`]: node identity, description and health state.
//! - [`events`]: the cluster event log.
//! - [`config`]: the core's timeouts and their validation.
//! - [`fabric`]: [`FabricCore`], the node registry and heartbeat bookkeeping.
//! - [`deployment`], [`instance`]: service definitions and role instances.
//! - [`placement`]: spreading instances across fault and update domains.
//! - [`services`]: deploy, scale, delete, and reconciling with VM reports.
//! - [`lifecycle`]: Unresponsive -> Human Investigate, the HI threshold, `tick`.
//! - [`faults`]: fault reports, and telling software faults from hardware.
//! - [`healing`]: moving role instances off failed servers.
//! - [`operator`]: repair, resume, and the graceful-degradation switches.
//! - [`cluster`]: the cluster's mode, switches and incidents.
//! - [`snapshot`]: the state to persist, and restoring it with fresh graces.
//! - [`expiry`]: warning and incident events before certificates expire.
//! - [`software`]: packages of the fabric's own software and the networking
//!   plugin's compatibility check.
//! - [`rollout`]: rolling a package out by update domain, its health gate
//!   and its brakes.
//! - [`identity`]: the cluster's identity and state generation; state-lost
//!   mode and its recovery (no silent wipe).

pub mod by_node;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod deployment;
pub mod events;
pub mod expiry;
pub mod fabric;
pub mod faults;
pub mod healing;
pub mod identity;
pub mod instance;
pub mod lifecycle;
pub mod node;
pub mod operator;
pub mod placement;
pub mod rollout;
pub mod services;
pub mod snapshot;
pub mod software;
pub mod tracked;

pub use clock::{Clock, ManualClock, Moment};
pub use cluster::{ClusterMode, ClusterState, Switch, Switches};
pub use config::{CoreConfig, HiThreshold};
pub use deployment::{CertificateInfo, DeploymentSpec, Guest, InstanceId, Name, RoleSpec};
pub use events::{ClusterEvent, EventKind, EventLog};
pub use fabric::{
    Beat, DesiredDirty, FabricCore, HeartbeatOutcome, HeartbeatReply, RegisterOutcome,
};
pub use faults::{FaultCause, FaultReport};
pub use identity::{ClusterIdentity, HostMemory, Recovery};
pub use instance::{InstanceState, RoleInstance, VmAssignment, VmObservation, VmState};
pub use node::{NodeId, NodeInfo, NodeRecord, NodeState};
pub use rollout::{OnFailure, Rollout, RolloutStatus, Target, UpdatePlan};
pub use software::{Manifest, Software, Version};

/// Errors the core returns for requests it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
    #[error(
        "deployment {0} already exists with different roles or instance counts; use scale or delete"
    )]
    DeploymentExists(Name),
    #[error("no deployment named {0}")]
    NoSuchDeployment(String),
    #[error("deployment {0} has no role named {1}")]
    NoSuchRole(Name, String),
    #[error("role {0} asks for zero instances; delete the deployment instead")]
    ZeroInstances(Name),
    #[error("not enough VM slots: {needed} more instances needed, {free} free on Ready servers")]
    NotEnoughSlots { needed: u64, free: u64 },
    #[error("service management is switched off (fabricctl cluster set management on)")]
    ManagementOff,
    #[error("node {0} is {1}, not in Human Investigate")]
    NotInHumanInvestigate(NodeId, NodeState),
    #[error("VM {vm} (incarnation {incarnation}) is not assigned to node {node}")]
    NotAssigned {
        vm: String,
        incarnation: u64,
        node: NodeId,
    },
    #[error(
        "node {node}: this report comes from host agent boot {reported}, not the one registered; \
         register again"
    )]
    OtherBoot { node: NodeId, reported: String },
    #[error(
        "this controller lost its state (a host obeyed a newer one): nothing can be deployed, \
         scaled or deleted until `fabricctl cluster recover --adopt` (or --wipe --yes)"
    )]
    StateLost,
    #[error("the controller's state is not lost: there is nothing to recover")]
    StateNotLost,
    #[error("bad package: {0}")]
    BadPackage(String),
    #[error("{0}")]
    Incompatible(Box<software::Incompatible>),
    #[error("package {0} already exists with other contents; give the new one another version")]
    PackageExists(String),
    #[error("no package {0} (fabricctl package list shows the packages)")]
    NoSuchPackage(String),
    #[error(
        "update {id} to {package} is not finished: resume it, roll it back, or pause and abandon it first"
    )]
    UpdateInProgress { id: u64, package: String },
    #[error("{0}")]
    BadPlan(String),
    #[error("updates are stopped: {0}")]
    UpdatesStopped(String),
    #[error("no update to act on: {0}")]
    NoUpdate(String),
}

#[cfg(test)]
mod healing_tests;
#[cfg(test)]
mod identity_tests;
#[cfg(test)]
mod rollout_tests;
#[cfg(test)]
mod services_tests;
#[cfg(test)]
mod tests;
