//! Shared harness for the `guest-agent run` tests: a fake host agent (GuestService over TLS with a
//! real cluster host certificate), role certificates from a test CA, the agent as a real process,
//! an HTTPS client that trusts only the test CA, and polling with deadlines.

#![allow(dead_code)] // Each test file uses a different part of the harness.

pub mod fake_host;
pub mod ga_process;
pub mod role_certs;
pub mod role_client;

use std::future::Future;
use std::time::Duration;

/// How long anything in these tests may take before it counts as a failure.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// Polls `check` every 20 ms until it returns `Some`, or panics after [`DEADLINE`] with `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + DEADLINE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// SHA-256 of `der`, lowercase hex.
pub fn sha256_hex(der: &[u8]) -> String {
    guest_agent::fingerprint::sha256_hex(der)
}
