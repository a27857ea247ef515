//! The fabric controller's pure core: every decision, no I/O.
//!
//! Plain data in, decisions out. The core never reads a clock (the caller
//! passes `now`), never touches the network or disk, and never spawns tasks.
//! gRPC handlers and background loops (see [`crate::server`]) are thin shells
//! that lock the core, call one method, and carry out what it returns. This is
//! what lets the tests drive thousands of heartbeats in virtual time and what
//! keeps the controller's logic readable in one place.
//!
//! - [`clock`]: the [`Moment`] type and the injected [`Clock`].
//! - [`node`]: node identity, description and health state.
//! - [`events`]: the cluster event log.
//! - [`config`]: the core's timeouts and their validation.
//! - [`fabric`]: [`FabricCore`], the node registry and heartbeat bookkeeping.

pub mod clock;
pub mod config;
pub mod events;
pub mod fabric;
pub mod node;

pub use clock::{Clock, ManualClock, Moment, SystemClock};
pub use config::CoreConfig;
pub use events::{ClusterEvent, EventKind, EventLog};
pub use fabric::{FabricCore, HeartbeatOutcome, RegisterOutcome};
pub use node::{NodeId, NodeInfo, NodeRecord, NodeState};

/// Errors the core returns for requests it refuses.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CoreError {
    #[error("node {0} is not registered")]
    UnknownNode(NodeId),
}

#[cfg(test)]
mod tests;
