//! What the host agent knows about itself, shared between its tasks and
//! served by `GetHostStatus`.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use std::sync::atomic::{AtomicBool, Ordering};

/// Identity and counters of this host agent process.
#[derive(Debug)]
pub struct HostState {
    /// From our certificate.
    pub node_id: String,
    pub cluster: String,
    /// Random per process start; tells the controller we restarted.
    pub boot_id: String,
    connected: AtomicBool,
    /// Prometheus counters, so [`crate::metrics`] exports these very values.
    pub(crate) heartbeats_sent: Counter,
    pub(crate) heartbeats_failed: Counter,
    /// Heartbeat round trips as this host sees them (request sent to reply
    /// read), exported as `fabric_host_heartbeat_seconds`.
    pub(crate) heartbeat_seconds: Histogram,
}

impl HostState {
    pub fn new(node_id: String, cluster: String) -> Self {
        Self {
            node_id,
            cluster,
            boot_id: uuid::Uuid::new_v4().to_string(),
            connected: AtomicBool::new(false),
            heartbeats_sent: Counter::default(),
            heartbeats_failed: Counter::default(),
            // 100 us .. ~6.5 s, doubling.
            heartbeat_seconds: Histogram::new(exponential_buckets(0.0001, 2.0, 17)),
        }
    }

    /// A heartbeat's reply came back after `took`.
    pub fn record_round_trip(&self, took: std::time::Duration) {
        self.heartbeat_seconds.observe(took.as_secs_f64());
    }

    pub fn record_success(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.heartbeats_sent.inc();
    }

    pub fn record_failure(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.heartbeats_failed.inc();
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn heartbeats_sent(&self) -> u64 {
        self.heartbeats_sent.get()
    }

    pub fn heartbeats_failed(&self) -> u64 {
        self.heartbeats_failed.get()
    }
}
