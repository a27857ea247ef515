//! What the host agent knows about itself, shared between its tasks and
//! served by `GetHostStatus`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// Identity and counters of this host agent process.
#[derive(Debug)]
pub struct HostState {
    /// From our certificate.
    pub node_id: String,
    pub cluster: String,
    /// Random per process start; tells the controller we restarted.
    pub boot_id: String,
    connected: AtomicBool,
    heartbeats_sent: AtomicU64,
    heartbeats_failed: AtomicU64,
}

impl HostState {
    pub fn new(node_id: String, cluster: String) -> Self {
        Self {
            node_id,
            cluster,
            boot_id: uuid::Uuid::new_v4().to_string(),
            connected: AtomicBool::new(false),
            heartbeats_sent: AtomicU64::new(0),
            heartbeats_failed: AtomicU64::new(0),
        }
    }

    pub fn record_success(&self) {
        self.connected.store(true, Ordering::Relaxed);
        self.heartbeats_sent.fetch_add(1, Ordering::Relaxed);
    }

    pub fn record_failure(&self) {
        self.connected.store(false, Ordering::Relaxed);
        self.heartbeats_failed.fetch_add(1, Ordering::Relaxed);
    }

    pub fn connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn heartbeats_sent(&self) -> u64 {
        self.heartbeats_sent.load(Ordering::Relaxed)
    }

    pub fn heartbeats_failed(&self) -> u64 {
        self.heartbeats_failed.load(Ordering::Relaxed)
    }
}
