//! Prometheus metrics of the fabric controller (OpenMetrics text at
//! `/metrics`, see [`crate::dashboard`]).
//!
//! Two kinds, kept apart on purpose:
//! - *counters and histograms* move as things happen: heartbeats received,
//!   secret deliveries and refusals, healing operations, and two latencies
//!   the core measures in its events (`took`): detection (last heartbeat to
//!   Unresponsive) and time to heal (moved to Running again);
//! - *gauges* are read from the core at scrape time (nodes by state, cluster
//!   mode, HI count and threshold, role instances by state, pending and
//!   healing instances, certificate expiry), so they can never drift from
//!   the state they describe.
//!
//! Certificate expiry is exported for every deployed certificate and for
//! the cluster's own (CA, controller): the 2013 lesson was to watch what is
//! actually served, not the secret store.

use crate::core::{ClusterEvent, EventKind, FabricCore, InstanceState, NodeState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::Mutex;
use std::time::SystemTime;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModeLabel {
    mode: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CertificateLabels {
    /// Empty for the cluster's own certificates.
    deployment: String,
    role: String,
    certificate: String,
}

/// A certificate of the cluster itself, for the expiry gauge.
#[derive(Clone, Debug)]
pub struct OwnCertificate {
    pub name: String,
    pub not_after: SystemTime,
}

/// Every metric of the controller, registered once.
pub struct ControllerMetrics {
    registry: Registry,
    heartbeats: Counter,
    secret_deliveries: Family<ResultLabel, Counter>,
    healing_started: Counter,
    healing_completed: Counter,
    detection_seconds: Histogram,
    time_to_heal_seconds: Histogram,
    nodes: Family<StateLabel, Gauge>,
    cluster_mode: Family<ModeLabel, Gauge>,
    hi_nodes: Gauge,
    hi_threshold_nodes: Gauge,
    instances: Family<StateLabel, Gauge>,
    pending_instances: Gauge,
    healing_in_flight: Gauge,
    certificate_expiry: Family<CertificateLabels, Gauge>,
    own_certificates: Mutex<Vec<OwnCertificate>>,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("fabric");
        let heartbeats = Counter::default();
        registry.register(
            "heartbeats_received",
            "Host-agent heartbeats the controller received",
            heartbeats.clone(),
        );
        let secret_deliveries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "secret_deliveries",
            "FetchSecrets answers by result (delivered, refused)",
            secret_deliveries.clone(),
        );
        let healing_started = Counter::default();
        registry.register(
            "healing_operations_started",
            "Role instances service healing moved off a failed server",
            healing_started.clone(),
        );
        let healing_completed = Counter::default();
        registry.register(
            "healing_operations_completed",
            "Healed role instances Running again at their new server",
            healing_completed.clone(),
        );
        // 50 ms .. ~100 s: covers loopback test clusters and production timeouts.
        let detection_seconds = Histogram::new(exponential_buckets(0.05, 2.0, 12));
        registry.register(
            "detection_latency_seconds",
            "Silence from a node's last heartbeat until the controller marked it Unresponsive",
            detection_seconds.clone(),
        );
        let time_to_heal_seconds = Histogram::new(exponential_buckets(0.1, 2.0, 12));
        registry.register(
            "time_to_heal_seconds",
            "From service healing moving an instance to it Running again",
            time_to_heal_seconds.clone(),
        );
        let nodes = Family::<StateLabel, Gauge>::default();
        registry.register("nodes", "Nodes by state", nodes.clone());
        let cluster_mode = Family::<ModeLabel, Gauge>::default();
        registry.register(
            "cluster_mode",
            "1 for the cluster's current mode (Normal or HumanInvestigate)",
            cluster_mode.clone(),
        );
        let hi_nodes = Gauge::default();
        registry.register("hi_nodes", "Nodes in Human Investigate", hi_nodes.clone());
        let hi_threshold_nodes = Gauge::default();
        registry.register(
            "hi_threshold_nodes",
            "HI nodes that put the cluster in HI mode",
            hi_threshold_nodes.clone(),
        );
        let instances = Family::<StateLabel, Gauge>::default();
        registry.register(
            "role_instances",
            "Role instances by state",
            instances.clone(),
        );
        let pending_instances = Gauge::default();
        registry.register(
            "pending_instances",
            "Role instances placed nowhere (no capacity)",
            pending_instances.clone(),
        );
        let healing_in_flight = Gauge::default();
        registry.register(
            "healing_in_flight",
            "Role instances moved by healing, not yet Running",
            healing_in_flight.clone(),
        );
        let certificate_expiry = Family::<CertificateLabels, Gauge>::default();
        registry.register(
            "certificate_expiry_timestamp_seconds",
            "Not-after of every deployed certificate and the cluster's own (deployment empty), Unix seconds",
            certificate_expiry.clone(),
        );
        Self {
            registry,
            heartbeats,
            secret_deliveries,
            healing_started,
            healing_completed,
            detection_seconds,
            time_to_heal_seconds,
            nodes,
            cluster_mode,
            hi_nodes,
            hi_threshold_nodes,
            instances,
            pending_instances,
            healing_in_flight,
            certificate_expiry,
            own_certificates: Mutex::new(Vec::new()),
        }
    }

    /// The cluster's own certificates, exported with the deployed ones.
    pub fn set_own_certificates(&self, certs: Vec<OwnCertificate>) {
        *self
            .own_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = certs;
    }

    pub fn heartbeat(&self) {
        self.heartbeats.inc();
    }

    pub fn secrets(&self, delivered: bool) {
        let result = if delivered { "delivered" } else { "refused" };
        self.secret_deliveries
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Counts what an event says happened.
    pub fn observe(&self, e: &ClusterEvent) {
        match e.kind {
            EventKind::InstanceHealing => {
                self.healing_started.inc();
            }
            EventKind::InstanceHealed => {
                self.healing_completed.inc();
                if let Some(took) = e.took {
                    self.time_to_heal_seconds.observe(took.as_secs_f64());
                }
            }
            EventKind::NodeUnresponsive => {
                if let Some(took) = e.took {
                    self.detection_seconds.observe(took.as_secs_f64());
                }
            }
            _ => {}
        }
    }

    /// Sets the gauges from `core` and encodes everything as OpenMetrics text.
    pub fn render(&self, core: &FabricCore) -> String {
        self.nodes.clear();
        for state in [
            NodeState::Ready,
            NodeState::Unresponsive,
            NodeState::HumanInvestigate,
        ] {
            self.nodes.get_or_create(&label(state.as_str())).set(0);
        }
        for n in core.nodes() {
            self.nodes.get_or_create(&label(n.state.as_str())).inc();
        }
        self.instances.clear();
        for state in [
            InstanceState::Pending,
            InstanceState::Starting,
            InstanceState::Provisioned,
            InstanceState::Running,
            InstanceState::Reinitializing,
        ] {
            self.instances.get_or_create(&label(state.as_str())).set(0);
        }
        for i in core.instances() {
            self.instances.get_or_create(&label(i.state.as_str())).inc();
        }
        self.cluster_mode.clear();
        let mode = core.cluster().mode;
        for m in [
            crate::core::ClusterMode::Normal,
            crate::core::ClusterMode::HumanInvestigate,
        ] {
            self.cluster_mode
                .get_or_create(&ModeLabel {
                    mode: m.as_str().into(),
                })
                .set(i64::from(m == mode));
        }
        self.hi_nodes.set(core.hi_count() as i64);
        self.hi_threshold_nodes
            .set(core.hi_threshold_nodes() as i64);
        self.pending_instances.set(core.pending_instances() as i64);
        self.healing_in_flight.set(core.healing_in_flight() as i64);
        self.certificate_expiry.clear();
        for d in core.deployments() {
            for r in &d.roles {
                for c in &r.certificates {
                    self.certificate_expiry
                        .get_or_create(&CertificateLabels {
                            deployment: d.name.to_string(),
                            role: r.name.to_string(),
                            certificate: c.name.clone(),
                        })
                        .set(unix_seconds(c.not_after));
                }
            }
        }
        for c in self
            .own_certificates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            self.certificate_expiry
                .get_or_create(&CertificateLabels {
                    deployment: String::new(),
                    role: String::new(),
                    certificate: c.name.clone(),
                })
                .set(unix_seconds(c.not_after));
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

fn label(state: &str) -> StateLabel {
    StateLabel {
        state: state.to_owned(),
    }
}

fn unix_seconds(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    }
}
