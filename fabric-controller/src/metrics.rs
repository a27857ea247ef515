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

use fabric_core::{ClusterEvent, EventKind, FabricCore, InstanceState, NodeState};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
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
struct KindLabel {
    kind: String,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SoftwareLabels {
    /// "base" or the package's version.
    package: String,
    host_agent: String,
    guest_agent: String,
    plugin: String,
    update_domain: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RolloutLabels {
    package: String,
    /// Running, Paused, Succeeded, RolledBack.
    status: String,
    /// forward or back.
    direction: String,
}

/// Every metric of the controller, registered once.
pub struct ControllerMetrics {
    registry: Registry,
    heartbeats: Counter,
    /// VM reports the heartbeats carried (only changed ones, from hosts
    /// that send deltas).
    heartbeat_vm_reports: Counter,
    /// Desired sets answered: sent whole, or "unchanged".
    desired_sets: Family<KindLabel, Counter>,
    save_failures: Counter,
    /// Saves by kind (changes appended, whole state written) and their time.
    save_seconds: Family<KindLabel, Histogram>,
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
    software: Family<SoftwareLabels, Gauge>,
    rollout_step: Family<RolloutLabels, Gauge>,
    rollout_steps: Family<RolloutLabels, Gauge>,
    /// The gRPC listener's TLS accept counters (fabric_daemon::tls_accept).
    accept: fabric_daemon::tls_accept::AcceptStats,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ControllerMetrics {
    pub fn new() -> Self {
        let mut this = Self {
            registry: Registry::with_prefix("fabric"),
            heartbeats: Counter::default(),
            heartbeat_vm_reports: Counter::default(),
            desired_sets: Family::default(),
            save_failures: Counter::default(),
            save_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 2.0, 16))
            }),
            secret_deliveries: Family::default(),
            healing_started: Counter::default(),
            healing_completed: Counter::default(),
            // 50 ms .. ~100 s: loopback test clusters up to production timeouts.
            detection_seconds: Histogram::new(exponential_buckets(0.05, 2.0, 12)),
            time_to_heal_seconds: Histogram::new(exponential_buckets(0.1, 2.0, 12)),
            nodes: Family::default(),
            cluster_mode: Family::default(),
            hi_nodes: Gauge::default(),
            hi_threshold_nodes: Gauge::default(),
            instances: Family::default(),
            pending_instances: Gauge::default(),
            healing_in_flight: Gauge::default(),
            certificate_expiry: Family::default(),
            software: Family::default(),
            rollout_step: Family::default(),
            rollout_steps: Family::default(),
            accept: Default::default(),
        };
        register_accept(&mut this.registry, &this.accept);
        add(
            &mut this.registry,
            "refused_identities",
            "Callers refused for their certificate's cluster or role",
            &*crate::api::REFUSED_IDENTITIES,
        );
        add(
            &mut this.registry,
            "heartbeats_received",
            "Host-agent heartbeats the controller received",
            &this.heartbeats,
        );
        add(
            &mut this.registry,
            "heartbeat_vm_reports",
            "VM reports carried by heartbeats (a host sends those that changed, and all of \
             them when asked)",
            &this.heartbeat_vm_reports,
        );
        add(
            &mut this.registry,
            "desired_sets",
            "Desired sets in heartbeat replies, by kind: full (listed) or unchanged (the host \
             named it)",
            &this.desired_sets,
        );
        add(
            &mut this.registry,
            "state_save_failures",
            "Saves of the controller's state that failed (the decision was refused or held)",
            &this.save_failures,
        );
        add(
            &mut this.registry,
            "state_save_seconds",
            "Time to save the controller's state durably, by kind: changes (appended to the \
             log) or full (a compaction into a new snapshot)",
            &this.save_seconds,
        );
        add(
            &mut this.registry,
            "secret_deliveries",
            "FetchSecrets answers by result (delivered, refused)",
            &this.secret_deliveries,
        );
        add(
            &mut this.registry,
            "healing_operations_started",
            "Role instances service healing moved off a failed server",
            &this.healing_started,
        );
        add(
            &mut this.registry,
            "healing_operations_completed",
            "Healed role instances Running again at their new server",
            &this.healing_completed,
        );
        add(
            &mut this.registry,
            "detection_latency_seconds",
            "Silence from a node's last heartbeat until the controller marked it Unresponsive",
            &this.detection_seconds,
        );
        add(
            &mut this.registry,
            "time_to_heal_seconds",
            "From service healing moving an instance to it Running again",
            &this.time_to_heal_seconds,
        );
        add(&mut this.registry, "nodes", "Nodes by state", &this.nodes);
        add(
            &mut this.registry,
            "cluster_mode",
            "1 for the cluster's current mode (Normal or HumanInvestigate)",
            &this.cluster_mode,
        );
        add(
            &mut this.registry,
            "hi_nodes",
            "Nodes in Human Investigate",
            &this.hi_nodes,
        );
        add(
            &mut this.registry,
            "hi_threshold_nodes",
            "HI nodes that put the cluster in HI mode",
            &this.hi_threshold_nodes,
        );
        add(
            &mut this.registry,
            "role_instances",
            "Role instances by state",
            &this.instances,
        );
        add(
            &mut this.registry,
            "pending_instances",
            "Role instances placed nowhere (no capacity)",
            &this.pending_instances,
        );
        add(
            &mut this.registry,
            "healing_in_flight",
            "Role instances moved by healing, not yet Running",
            &this.healing_in_flight,
        );
        add(
            &mut this.registry,
            "certificate_expiry_timestamp_seconds",
            "Not-after of every deployed certificate and the cluster's own (deployment empty), Unix seconds",
            &this.certificate_expiry,
        );
        add(
            &mut this.registry,
            "servers_by_software",
            "Servers by the package, host agent, guest agent and plugin they run, per update domain (the cluster's version mix)",
            &this.software,
        );
        add(
            &mut this.registry,
            "rollout_step",
            "The latest rollout's current step, from 1 (its steps count is fabric_rollout_steps)",
            &this.rollout_step,
        );
        add(
            &mut this.registry,
            "rollout_steps",
            "Steps of the latest rollout",
            &this.rollout_steps,
        );
        this
    }

    /// The counters the gRPC listener feeds.
    pub fn accept_stats(&self) -> &fabric_daemon::tls_accept::AcceptStats {
        &self.accept
    }

    /// A heartbeat carrying `reports` VM reports.
    pub fn heartbeat(&self, reports: usize) {
        self.heartbeats.inc();
        self.heartbeat_vm_reports.inc_by(reports as u64);
    }

    /// A reply's desired set: listed whole, or said to be unchanged.
    pub fn desired_set(&self, unchanged: bool) {
        let kind = if unchanged { "unchanged" } else { "full" };
        self.desired_sets
            .get_or_create(&KindLabel { kind: kind.into() })
            .inc();
    }

    pub fn save_failed(&self) {
        self.save_failures.inc();
    }

    /// A save succeeded: `full` for a whole state, else changes.
    pub fn saved(&self, full: bool, took: std::time::Duration) {
        let kind = if full { "full" } else { "changes" };
        self.save_seconds
            .get_or_create(&KindLabel { kind: kind.into() })
            .observe(took.as_secs_f64());
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
        // Counted by the core, then set once per state: a labelled gauge
        // looked up per instance (a label string built and hashed each
        // time) made a scrape of 100,000 instances hold the core for a
        // tenth of a second.
        self.instances.clear();
        for (state, count) in InstanceState::ALL.iter().zip(core.status_counts()) {
            self.instances
                .get_or_create(&label(state.as_str()))
                .set(count as i64);
        }
        self.cluster_mode.clear();
        let mode = core.cluster().mode;
        for m in [
            fabric_core::ClusterMode::Normal,
            fabric_core::ClusterMode::HumanInvestigate,
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
        for c in core.cluster_certificates() {
            self.certificate_expiry
                .get_or_create(&CertificateLabels {
                    deployment: String::new(),
                    role: String::new(),
                    certificate: c.name.clone(),
                })
                .set(unix_seconds(c.not_after));
        }
        self.software.clear();
        for n in core.nodes() {
            let s = &n.info.software;
            self.software
                .get_or_create(&SoftwareLabels {
                    package: s.package_label().to_owned(),
                    host_agent: s.host_agent.clone(),
                    guest_agent: s.guest_agent.clone(),
                    plugin: s.plugin.clone(),
                    update_domain: n.info.update_domain.to_string(),
                })
                .inc();
        }
        self.rollout_step.clear();
        self.rollout_steps.clear();
        if let Some(r) = core.rollout() {
            let labels = RolloutLabels {
                package: r.plan.package.to_string(),
                status: r.status.label().to_owned(),
                direction: r.direction.as_str().to_owned(),
            };
            self.rollout_step
                .get_or_create(&labels)
                .set((r.step + 1).min(r.steps.len()) as i64);
            self.rollout_steps
                .get_or_create(&labels)
                .set(r.steps.len() as i64);
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }
}

/// Registers a clone of `metric` (a clone shares its value), so the struct
/// keeps the handle it updates and the registry encodes the same metric.
/// The listener's counters, one metric each (`fabric_tls_*`).
fn register_accept(registry: &mut Registry, a: &fabric_daemon::tls_accept::AcceptStats) {
    add(
        registry,
        "tls_handshakes_accepted",
        "TLS handshakes completed and served",
        &a.accepted,
    );
    add(
        registry,
        "tls_handshakes_failed",
        "TLS handshakes refused (no or a stranger's certificate, garbage)",
        &a.failed,
    );
    add(
        registry,
        "tls_handshakes_timed_out",
        "TLS handshakes not finished within the handshake timeout",
        &a.timed_out,
    );
    add(
        registry,
        "tls_handshakes_evicted",
        "TLS handshakes cut off to make room for newer ones",
        &a.evicted,
    );
    add(
        registry,
        "tls_connections_over_limit",
        "Connections closed because the connection limit was reached",
        &a.over_limit,
    );
    add(
        registry,
        "tls_accept_errors",
        "Accept errors on the gRPC listener (usually out of descriptors)",
        &a.accept_errors,
    );
    add(
        registry,
        "tls_connections_open",
        "Established gRPC connections open now",
        &a.open,
    );
}

fn add<M: prometheus_client::registry::Metric + Clone>(
    registry: &mut Registry,
    name: &str,
    help: &str,
    metric: &M,
) {
    registry.register(name, help, metric.clone());
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
