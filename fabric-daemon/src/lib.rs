//! The small tools every Fabric daemon shares, each in one home.
//!
//! - [`shutdown`]: the signal that stops a daemon (SIGTERM or Ctrl-C).
//! - [`task`]: a background task that ends with whatever owns it.
//! - [`cpu`]: CPU-heavy work off the async workers, on half the cores.
//! - [`files`]: a file written whole or not at all (write, then rename).
//! - [`metrics_text`]: /metrics in the format the scraper asked for.
//! - [`tls_accept`]: a TLS listener strangers cannot exhaust.
//! - [`failover`]: one gRPC channel over a redundant controller's addresses.
//! - [`https`]: one HTTPS `GET /` of a role endpoint, as a client would.
//! - [`logging`]: the log set-up every daemon's `main` starts with.
//! - [`untrusted`]: outside text shown short and safe in logs; throttled logs.

pub mod cpu;
pub mod failover;
pub mod files;
pub mod https;
pub mod latency;
pub mod logging;
pub mod metrics_text;
pub mod shutdown;
pub mod task;
pub mod tls_accept;
pub mod untrusted;
