//! The host agent (HA): one per server.
//!
//! It registers with the fabric controller and heartbeats to it
//! ([`controller_link`]), and serves its own status ([`host_service`]).
//! Running VMs (guest-agent processes) builds on this.

pub mod backoff;
pub mod config;
pub mod controller_link;
pub mod host_service;
pub mod server;
pub mod state;
