//! The fabric controller (FC): manages one cluster of servers.
//!
//! Layout, from the inside out:
//! - [`core`]: pure decisions (node registry, heartbeat expiry, events).
//! - [`controller`]: the core behind a lock, with the clock and event fan-out.
//! - [`api`]: gRPC services; validation and the one error-to-status mapping.
//! - [`server`]: TLS, health, reflection and background loops; [`server::run`].
//! - [`secrets`]: deployed certificates' private keys, kept out of the core.
//! - [`config`]: flags and config file, resolved once.
//! - [`sim`]: the real core in a seeded, virtual-time model of a cluster.
//! - [`scenarios`]: the 2009, 2012 and 2013 incidents replayed in [`sim`].
//! - [`store`]: durable state, written before the controller acts.
//! - [`metrics`]: Prometheus counters, histograms and gauges.
//! - [`dashboard`]: the read-only HTTP server: dashboard page, its JSON, /metrics.

pub mod api;
pub mod config;
pub mod controller;
pub mod core;
pub mod dashboard;
pub mod metrics;
pub mod scenarios;
pub mod secrets;
pub mod server;
pub mod sim;
pub mod store;
