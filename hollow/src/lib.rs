//! Hollow hosts: the real host agent, many to a process, with VMs that are
//! tasks instead of guest-agent processes (kubemark's "hollow nodes" for
//! Fabric). They let one machine hold a cluster of the postmortem's size
//! ("about 1000" servers) against a real controller, so that what is measured
//! is the controller and the host agent's own code, not a model of them.
//!
//! - [`guest`]: the runtime a hollow host runs its VMs with.
//! - [`hosts`]: starting and stopping many hosts in one process.

pub mod guest;
pub mod hosts;
