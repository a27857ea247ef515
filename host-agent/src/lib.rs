//! The host agent (HA): one per server.
//!
//! It registers with the fabric controller and heartbeats to it
//! ([`controller_link`]), serves its own status ([`host_service`]), and runs
//! the VMs the controller assigns it, one guest agent process each ([`vm`]),
//! which talk to it through [`guest_service`]. [`software`] moves it to the
//! package a rollout names. [`http`] serves its
//! Prometheus [`metrics`].

pub mod addr_file;
pub mod backoff;
pub mod config;
pub mod controller_link;
pub mod guest_service;
pub mod guest_tls;
pub mod heartbeat_delta;
pub mod host_service;
pub mod http;
pub mod metrics;
pub mod netplug;
pub mod obeyed;
pub mod secrets;
pub mod server;
pub mod software;
pub mod state;
pub mod vm;
