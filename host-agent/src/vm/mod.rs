//! The VMs of this server, each run by a guest agent process.
//!
//! - [`record`]: one VM's life as a state machine (timeouts, tokens,
//!   the clean-VM strike rule), free of processes and clocks.
//! - [`manager`]: the table of VMs and the effects of their transitions;
//!   reconciling with the controller's desired set.
//! - [`supervisor`]: the task that fires deadlines.
//! - [`process`]: spawning, killing and reaping guest agents; VM files.
//! - [`runtime`]: the seam for VMs run some other way (hollow hosts).
//! - [`persist`]: each VM's on-disk record, for re-adoption after a restart.
//! - [`rotation`]: pushing rotated certificates to guest agents.
//! - [`token`]: start and session tokens.
//! - [`endpoint`]: the role endpoints a VM may report.
//! - [`users`]: one user per VM, when the host agent is root.
//! - [`waagent`]: VMs run by Azure's WALinuxAgent over the wire protocol.

pub mod endpoint;
pub mod manager;
pub mod persist;
pub mod process;
pub mod record;
pub mod refusal;
pub mod rotation;
pub mod runtime;
pub mod supervisor;
pub mod token;
pub mod users;
pub mod waagent;

pub use manager::{PluginView, VmManager, VmSettings};
pub use record::Policy;
