//! Prometheus metrics of a host agent, served at `/metrics` by
//! [`crate::http`] (OpenMetrics text).
//!
//! - `fabric_host_guest_init_seconds`: from spawning a guest agent to its
//!   role Running, per incarnation: how long a VM takes to come up, and
//!   what the 2012 guest agents never reached;
//! - `fabric_host_secret_deliveries_total{result}`: Hellos answered with
//!   sealed secrets, and Hellos refused;
//! - `fabric_host_vms{state}`: this server's VMs by state, read from the VM
//!   table at scrape time;
//! - `fabric_host_heartbeats_sent_total` / `_failed_total`: the link to the
//!   controller, the very counters [`HostState`] keeps;
//! - `fabric_host_heartbeat_seconds`: heartbeat round trips as this host
//!   sees them (what the controller's load means to its servers);
//! - `fabric_host_vm_isolation{mode}`: 1 for how VMs are kept apart
//!   (`per-vm-users`, `shared-user`, `shared-user-not-root`).

use crate::state::HostState;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::sync::Mutex;
use tokio::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

pub struct HostMetrics {
    registry: Registry,
    init_seconds: Histogram,
    secret_deliveries: Family<ResultLabel, Counter>,
    vms: Family<StateLabel, Gauge>,
    isolation: Family<ModeLabel, Gauge>,
    /// The HostService listener's TLS accept counters.
    accept: fabric_daemon::tls_accept::AcceptStats,
    /// Spawn time per (VM, incarnation) until its role runs.
    spawned: Mutex<HashMap<(String, u64), Instant>>,
}

impl HostMetrics {
    /// The metrics of the host agent whose state is `host`.
    pub fn new(host: &HostState) -> Self {
        let mut registry = Registry::with_prefix("fabric_host");
        // 50 ms .. ~30 min: a healthy VM, up to the 25-minute connect timeout.
        let init_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 16));
        registry.register(
            "guest_init_seconds",
            "From spawning a guest agent to its role Running",
            init_seconds.clone(),
        );
        let secret_deliveries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "secret_deliveries",
            "Guest agent Hellos answered with sealed secrets (delivered) or refused",
            secret_deliveries.clone(),
        );
        let vms = Family::<StateLabel, Gauge>::default();
        registry.register("vms", "This server's VMs by state", vms.clone());
        registry.register(
            "heartbeats_sent",
            "Heartbeats the controller accepted",
            host.heartbeats_sent.clone(),
        );
        registry.register(
            "heartbeats_failed",
            "Heartbeats that failed (controller away or refusing)",
            host.heartbeats_failed.clone(),
        );
        registry.register(
            "heartbeat_seconds",
            "Heartbeat round trips to the controller, as this host sees them",
            host.heartbeat_seconds.clone(),
        );
        let isolation = Family::<ModeLabel, Gauge>::default();
        registry.register(
            "vm_isolation",
            "How this server's VMs are kept apart (1 for the mode in force)",
            isolation.clone(),
        );
        let accept = fabric_daemon::tls_accept::AcceptStats::default();
        for (name, help, counter) in [
            (
                "tls_handshakes_failed",
                "TLS handshakes refused",
                &accept.failed,
            ),
            (
                "tls_handshakes_timed_out",
                "TLS handshakes not finished in time",
                &accept.timed_out,
            ),
            (
                "tls_handshakes_evicted",
                "TLS handshakes cut off for newer ones",
                &accept.evicted,
            ),
        ] {
            registry.register(
                name,
                format!("{help} (HostService and GuestService listeners)"),
                counter.clone(),
            );
        }
        Self {
            registry,
            init_seconds,
            secret_deliveries,
            vms,
            isolation,
            accept,
            spawned: Mutex::new(HashMap::new()),
        }
    }

    fn spawned(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u64), Instant>> {
        self.spawned.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A guest agent of `vm` incarnation `incarnation` was just spawned.
    pub fn guest_spawned(&self, vm: &str, incarnation: u64) {
        let mut spawned = self.spawned();
        // Older incarnations of the VM will never run now.
        spawned.retain(|(v, _), _| v != vm);
        spawned.insert((vm.to_owned(), incarnation), Instant::now());
    }

    /// Its role reported Running.
    pub fn role_running(&self, vm: &str, incarnation: u64) {
        if let Some(at) = self.spawned().remove(&(vm.to_owned(), incarnation)) {
            self.init_seconds.observe(at.elapsed().as_secs_f64());
        }
    }

    /// The counters the HostService listener feeds.
    pub fn accept_stats(&self) -> &fabric_daemon::tls_accept::AcceptStats {
        &self.accept
    }

    /// How VMs are kept apart on this server.
    pub fn vm_isolation(&self, mode: &str) {
        self.isolation
            .get_or_create(&ModeLabel { mode: mode.into() })
            .set(1);
    }

    pub fn secrets(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "refused" };
        self.secret_deliveries
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Encodes everything, with the VM gauge set from `states`.
    pub fn render(&self, states: &[&str]) -> String {
        self.vms.clear();
        for state in [
            "Starting",
            "Provisioned",
            "Running",
            "Reinitializing",
            "Stopped",
        ] {
            self.vms
                .get_or_create(&StateLabel {
                    state: state.into(),
                })
                .set(0);
        }
        for state in states {
            self.vms
                .get_or_create(&StateLabel {
                    state: (*state).to_owned(),
                })
                .inc();
        }
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn init_latency_is_observed_once_per_incarnation() {
        let host = HostState::new("host-1".into(), "c".into());
        let m = HostMetrics::new(&host);
        m.guest_spawned("web.api.0", 1);
        m.guest_spawned("web.api.0", 2);
        m.role_running("web.api.0", 1);
        m.role_running("web.api.0", 2);
        m.role_running("web.api.0", 2);
        for _ in 0..3 {
            host.record_success();
        }
        let text = m.render(&["Running"]);
        assert!(
            text.contains("fabric_host_guest_init_seconds_count 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fabric_host_vms{state=\"Running\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("fabric_host_heartbeats_sent_total 3\n"),
            "{text}"
        );
    }
}
