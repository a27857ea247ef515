//! The networking plugin: the host agent's part that makes each VM's role
//! endpoint reachable from outside its server.
//!
//! A guest agent serves its role on a private address inside its server;
//! the plugin listens on the role's public address and forwards every
//! connection there, byte for byte (TLS runs end to end between the client
//! and the VM: the plugin never sees a key). The host agent programs it by
//! writing a bindings file, whole, and the plugin applies each new version
//! within [`POLL`]. It runs as a process of its own, like a VM, so a host
//! agent that restarts (or is replaced by a rollout) does not take the
//! network down with it.
//!
//! The bindings file has an interface version, `api`: the host agent writes
//! the one it speaks, the plugin reads only the one it speaks. In 2012 an
//! older host agent was shipped with a newer networking plugin; "the two
//! were incompatible", and every VM on those servers lost its network while
//! the VMs themselves ran. That is what a mismatch does here: the plugin
//! says why in its status file and log, binds nothing, and every endpoint of
//! the server is unreachable until a compatible pair runs again.
//!
//! - [`bindings`]: the file the host agent writes, in both interface versions.
//! - [`forward`]: listeners and the forwarding of connections.

pub mod bindings;
pub mod forward;

use std::time::Duration;

/// How often the plugin looks for a new bindings file.
pub const POLL: Duration = Duration::from_millis(200);
