//! The fabric controller (FC): manages one cluster of servers.
//!
//! Layout, from the inside out:
//! - `fabric_core` (its own crate): every decision, pure; the compiler keeps
//!   it free of I/O. [`clock`] is where its time comes from here.
//! - [`controller`]: the core behind a lock, with the clock and event fan-out.
//! - [`api`]: gRPC services; validation and the one error-to-status mapping.
//! - [`server`]: TLS, health, reflection and background loops; [`server::run`].
//! - [`secrets`]: deployed certificates' private keys, kept out of the core.
//! - [`config`]: flags and config file, resolved once.
//! - [`store`]: durable state, written before the controller acts (in the
//!   state directory, or in etcd for a controller with [`replica`]s);
//!   [`commit`]: the decisions nobody waits on, written in batches.
//! - [`metrics`]: Prometheus counters, histograms and gauges.
//! - [`probe`]: the rollout gate's probes of role endpoints.
//! - [`dashboard`]: the read-only HTTP server: dashboard page, its JSON, /metrics.

pub mod api;
pub mod clock;
pub mod commit;
pub mod config;
pub mod controller;
pub mod dashboard;
pub mod metrics;
pub mod probe;
pub mod replica;
pub mod secrets;
pub mod server;
pub mod store;
#[cfg(test)]
mod test_support;
