//! The controller's configuration: flags, an optional TOML file, defaults.
//!
//! Precedence is flag > file > default. Everything is resolved and validated
//! once into a [`ControllerConfig`] at start, so a bad value stops the process
//! with a message naming the value instead of failing later.

use anyhow::{Context, bail};
use fabric_core::{CoreConfig, HiThreshold};
use fabric_pki::tls::TlsFiles;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Command-line flags of `fabric-controller`.
#[derive(Debug, Default, clap::Parser)]
#[command(
    name = "fabric-controller",
    version,
    about = "Fabric's fabric controller"
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// TOML configuration file; flags override its values.
    #[arg(long, env = "FABRIC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Name of the cluster this controller manages [default: local].
    #[arg(long, env = "FABRIC_CLUSTER")]
    pub cluster: Option<String>,
    /// Address to listen on [default: 127.0.0.1:7400]; port 0 picks a free port.
    #[arg(long, env = "FABRIC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// After binding, write the bound address to this file (for port 0).
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    /// Directory with ca.pem, controller.pem and controller.key.
    #[arg(long, env = "FABRIC_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
    /// Cluster CA certificate (overrides --pki-dir).
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// The controller's certificate (overrides --pki-dir).
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// The controller's private key (overrides --pki-dir).
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// How often host agents heartbeat [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Silence after which a node is Unresponsive [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub node_timeout: Option<Duration>,
    /// Time a node may stay Unresponsive before it goes to Human
    /// Investigate and its instances are healed [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub unresponsive_grace: Option<Duration>,
    /// Role instances healed at once [default: 16].
    #[arg(long)]
    pub healing_concurrency: Option<u32>,
    /// HI nodes that put the cluster in HI mode: a count ("3") or a share
    /// ("20%") [default: 20%].
    #[arg(long, value_parser = HiThreshold::parse)]
    pub hi_threshold: Option<HiThreshold>,
    /// Tell guest-software faults from hardware faults [default: true];
    /// false replays 2012 (every fault report moves its server to HI).
    #[arg(long)]
    pub fault_classification: Option<bool>,
    /// How long a server reporting a guest-software fault is kept in service
    /// while other servers are watched for the same cause [default: 60s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub classification_hold: Option<Duration>,
    /// Servers that must report the same cause for a software fault [default: 2].
    #[arg(long)]
    pub software_fault_min_nodes: Option<u32>,
    /// Directory for the controller's state.
    #[arg(long, env = "FABRIC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address of the read-only HTTP server: the dashboard (/) and
    /// Prometheus metrics (/metrics) [default: none, not served].
    #[arg(long, env = "FABRIC_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// After binding the HTTP server, write its address to this file.
    #[arg(long)]
    pub http_addr_file: Option<PathBuf>,
    /// Warn this long before a deployed or cluster certificate expires
    /// [default: 180 days].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub certificate_warning: Option<Duration>,
    /// Raise an incident this long before it expires [default: 90 days].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub certificate_incident: Option<Duration>,
    /// Name, at deploy, certificates of different deployments expiring
    /// within this much of each other; 0s turns it off [default: 1 day].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub certificate_spread: Option<Duration>,
    /// How far a heartbeat's sequence number may run ahead of the last one,
    /// beyond one per 50 ms of silence, before it is refused [default: 1024].
    #[arg(long)]
    pub sequence_jump_limit: Option<u64>,
    /// Stale heartbeats in a row before the host is told to register again
    /// [default: 3].
    #[arg(long)]
    pub stale_heartbeats_before_register: Option<u32>,
    /// A tick this late means the controller itself stalled: every node gets
    /// a fresh heartbeat grace [default: 5s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub stall_tolerance: Option<Duration>,
    /// A rollout step's health gate must hold this long before the next
    /// step [default: 30s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub rollout_gate_stable: Option<Duration>,
    /// A step whose gate has not held by then fails [default: 10m].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub rollout_gate_timeout: Option<Duration>,
    /// How often role endpoints of a rollout's current step are probed
    /// [default: 1s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub probe_interval: Option<Duration>,
    /// Longest wait for one endpoint probe (connect and TLS handshake)
    /// [default: 2s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub probe_timeout: Option<Duration>,
    /// Longest a TLS handshake on the gRPC listener may take [default: 10s].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub handshake_timeout: Option<Duration>,
    /// TLS handshakes in progress at once; a new one evicts the oldest
    /// [default: 256].
    #[arg(long, value_parser = clap::value_parser!(usize))]
    pub max_handshaking: Option<usize>,
    /// Established gRPC connections served at once [default: 4096].
    #[arg(long, value_parser = clap::value_parser!(usize))]
    pub max_connections: Option<usize>,
    /// After a decision with events wakes the timer loop, how long it waits
    /// for more before it ticks, so a burst makes one tick [default: 20ms].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub tick_coalesce: Option<Duration>,
    /// etcd members (host:port, comma-separated): run as one replica of a
    /// redundant controller whose state is in etcd [default: none, the
    /// state directory holds the state and there is one controller].
    #[arg(long, env = "FABRIC_ETCD", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// Where this cluster's keys are in etcd [default: /fabric/<cluster>/].
    #[arg(long)]
    pub etcd_prefix: Option<String>,
    /// The leader's etcd lease, whole seconds [default: 15s, as Kubernetes].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub leader_lease: Option<Duration>,
    /// A leader that cannot renew its lease for this long steps down
    /// [default: 10s, as Kubernetes].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub renew_deadline: Option<Duration>,
    /// How often the lease is renewed and a failed etcd call retried
    /// [default: 2s, as Kubernetes].
    #[arg(long, value_parser = humantime::parse_duration)]
    pub retry_period: Option<Duration>,
    /// This replica's address as clients reach it, shown as the leader's
    /// [default: https://<listen>].
    #[arg(long, env = "FABRIC_ADVERTISE")]
    pub advertise: Option<String>,
}

/// What to do instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Exit 0 if the controller configured by these flags (or environment)
    /// answers health SERVING on its listen address; for container
    /// healthchecks, which have no shell or curl.
    Probe {
        /// How long to wait for the answer.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
        timeout: Duration,
    },
}

/// The TOML file; every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub cluster: Option<String>,
    pub listen: Option<SocketAddr>,
    pub pki_dir: Option<PathBuf>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    #[serde(default, with = "humantime_serde")]
    pub heartbeat_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub node_timeout: Option<Duration>,
    pub event_retention: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub unresponsive_grace: Option<Duration>,
    pub healing_concurrency: Option<u32>,
    /// "3" or "20%".
    pub hi_threshold: Option<String>,
    pub fault_classification: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    pub classification_hold: Option<Duration>,
    pub software_fault_min_nodes: Option<u32>,
    pub state_dir: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    #[serde(default, with = "humantime_serde")]
    pub certificate_warning: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub certificate_incident: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub certificate_spread: Option<Duration>,
    pub sequence_jump_limit: Option<u64>,
    pub stale_heartbeats_before_register: Option<u32>,
    #[serde(default, with = "humantime_serde")]
    pub stall_tolerance: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub rollout_gate_stable: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub rollout_gate_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub probe_interval: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub probe_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub handshake_timeout: Option<Duration>,
    pub max_handshaking: Option<usize>,
    pub max_connections: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    pub tick_coalesce: Option<Duration>,
    pub etcd: Option<Vec<String>>,
    pub etcd_prefix: Option<String>,
    #[serde(default, with = "humantime_serde")]
    pub leader_lease: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub renew_deadline: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub retry_period: Option<Duration>,
    pub advertise: Option<String>,
}

/// How long the timer loop waits for more events once woken.
pub const DEFAULT_TICK_COALESCE: Duration = Duration::from_millis(20);

/// Everything the controller needs to run, validated.
#[derive(Clone, Debug)]
pub struct ControllerConfig {
    pub cluster: String,
    pub listen: SocketAddr,
    pub addr_file: Option<PathBuf>,
    pub tls: TlsFiles,
    pub core: CoreConfig,
    /// How the rollout's endpoint probes run.
    pub probe: crate::probe::ProbeConfig,
    pub state_dir: Option<PathBuf>,
    /// The dashboard and metrics server; `None`: not served.
    pub http_listen: Option<SocketAddr>,
    pub http_addr_file: Option<PathBuf>,
    /// The gRPC listener's handshake timeout and connection limits.
    pub accept: fabric_daemon::tls_accept::Limits,
    /// See `Args::tick_coalesce`.
    pub tick_coalesce: Duration,
    /// Set: this controller is one replica, its state in etcd.
    pub replica: Option<crate::replica::ReplicaConfig>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7400";

impl FileConfig {
    pub fn read(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))
    }
}

impl Args {
    /// Merges flags over the config file over defaults, and validates.
    pub fn resolve(self) -> anyhow::Result<ControllerConfig> {
        let file = match &self.config {
            Some(path) => FileConfig::read(path)?,
            None => FileConfig::default(),
        };
        let defaults = CoreConfig::default();
        let core = CoreConfig {
            heartbeat_interval: self
                .heartbeat_interval
                .or(file.heartbeat_interval)
                .unwrap_or(defaults.heartbeat_interval),
            node_timeout: self
                .node_timeout
                .or(file.node_timeout)
                .unwrap_or(defaults.node_timeout),
            event_retention: file.event_retention.unwrap_or(defaults.event_retention),
            unresponsive_grace: self
                .unresponsive_grace
                .or(file.unresponsive_grace)
                .unwrap_or(defaults.unresponsive_grace),
            healing_concurrency: self
                .healing_concurrency
                .or(file.healing_concurrency)
                .unwrap_or(defaults.healing_concurrency),
            hi_threshold: match (self.hi_threshold, &file.hi_threshold) {
                (Some(t), _) => t,
                (None, Some(text)) => HiThreshold::parse(text).map_err(anyhow::Error::msg)?,
                (None, None) => defaults.hi_threshold,
            },
            fault_classification: self
                .fault_classification
                .or(file.fault_classification)
                .unwrap_or(defaults.fault_classification),
            classification_hold: self
                .classification_hold
                .or(file.classification_hold)
                .unwrap_or(defaults.classification_hold),
            software_fault_min_nodes: self
                .software_fault_min_nodes
                .or(file.software_fault_min_nodes)
                .unwrap_or(defaults.software_fault_min_nodes),
            certificate_warning: self
                .certificate_warning
                .or(file.certificate_warning)
                .unwrap_or(defaults.certificate_warning),
            certificate_incident: self
                .certificate_incident
                .or(file.certificate_incident)
                .unwrap_or(defaults.certificate_incident),
            certificate_spread: self
                .certificate_spread
                .or(file.certificate_spread)
                .unwrap_or(defaults.certificate_spread),
            sequence_jump_limit: self
                .sequence_jump_limit
                .or(file.sequence_jump_limit)
                .unwrap_or(defaults.sequence_jump_limit),
            stale_heartbeats_before_register: self
                .stale_heartbeats_before_register
                .or(file.stale_heartbeats_before_register)
                .unwrap_or(defaults.stale_heartbeats_before_register),
            stall_tolerance: self
                .stall_tolerance
                .or(file.stall_tolerance)
                .unwrap_or(defaults.stall_tolerance),
            rollout_gate_stable: self
                .rollout_gate_stable
                .or(file.rollout_gate_stable)
                .unwrap_or(defaults.rollout_gate_stable),
            rollout_gate_timeout: self
                .rollout_gate_timeout
                .or(file.rollout_gate_timeout)
                .unwrap_or(defaults.rollout_gate_timeout),
        };
        let probe = crate::probe::ProbeConfig {
            interval: self
                .probe_interval
                .or(file.probe_interval)
                .unwrap_or(crate::probe::ProbeConfig::default().interval),
            timeout: self
                .probe_timeout
                .or(file.probe_timeout)
                .unwrap_or(crate::probe::ProbeConfig::default().timeout),
        };
        if probe.interval.is_zero() || probe.timeout.is_zero() {
            bail!("--probe-interval and --probe-timeout must be greater than zero");
        }
        core.validate()?;
        let cluster = self
            .cluster
            .or(file.cluster)
            .unwrap_or_else(|| "local".to_owned());
        fabric_pki::identity::validate_label("cluster name", &cluster)?;
        let pki_dir = self.pki_dir.or(file.pki_dir);
        let pick = |flag: Option<PathBuf>, file: Option<PathBuf>, name: &str| {
            flag.or(file)
                .or_else(|| pki_dir.as_ref().map(|d| d.join(name)))
        };
        let (Some(ca), Some(cert), Some(key)) = (
            pick(self.ca, file.ca, "ca.pem"),
            pick(self.cert, file.cert, "controller.pem"),
            pick(self.key, file.key, "controller.key"),
        ) else {
            bail!("no TLS files: pass --pki-dir DIR, or --ca, --cert and --key");
        };
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("valid default"));
        let state_dir = self.state_dir.or(file.state_dir);
        let etcd = match self.etcd.is_empty() {
            true => file.etcd.unwrap_or_default(),
            false => self.etcd,
        };
        let replica = match etcd.is_empty() {
            true => None,
            false => {
                use crate::replica::*;
                let replica = ReplicaConfig {
                    etcd,
                    prefix: self
                        .etcd_prefix
                        .or(file.etcd_prefix)
                        .unwrap_or_else(|| format!("/fabric/{cluster}/")),
                    lease: self
                        .leader_lease
                        .or(file.leader_lease)
                        .unwrap_or(DEFAULT_LEASE),
                    renew_deadline: self
                        .renew_deadline
                        .or(file.renew_deadline)
                        .unwrap_or(DEFAULT_RENEW_DEADLINE),
                    retry_period: self
                        .retry_period
                        .or(file.retry_period)
                        .unwrap_or(DEFAULT_RETRY_PERIOD),
                    advertise: self
                        .advertise
                        .or(file.advertise)
                        .unwrap_or_else(|| format!("https://{listen}")),
                };
                replica.validate().map_err(anyhow::Error::msg)?;
                if listen.port() == 0 {
                    bail!(
                        "--listen {listen} with --etcd needs a fixed port: a replica binds it \
                         at each term as leader, and clients must find it again"
                    );
                }
                if !replica.prefix.ends_with('/') {
                    bail!("--etcd-prefix {:?} must end with '/'", replica.prefix);
                }
                if state_dir.is_none() {
                    bail!(
                        "--etcd needs --state-dir: it holds the secrets key every replica \
                         shares (give replicas the same directory, or the same secrets.key) \
                         and uploaded packages"
                    );
                }
                Some(replica)
            }
        };
        Ok(ControllerConfig {
            cluster,
            listen,
            addr_file: self.addr_file,
            tls: TlsFiles { ca, cert, key },
            core,
            probe,
            state_dir,
            http_listen: self.http_listen.or(file.http_listen),
            http_addr_file: self.http_addr_file,
            accept: {
                let defaults = fabric_daemon::tls_accept::Limits::default();
                fabric_daemon::tls_accept::Limits {
                    handshake_timeout: self
                        .handshake_timeout
                        .or(file.handshake_timeout)
                        .unwrap_or(defaults.handshake_timeout),
                    max_handshaking: self
                        .max_handshaking
                        .or(file.max_handshaking)
                        .unwrap_or(defaults.max_handshaking),
                    max_connections: self
                        .max_connections
                        .or(file.max_connections)
                        .unwrap_or(defaults.max_connections),
                }
            },
            tick_coalesce: self
                .tick_coalesce
                .or(file.tick_coalesce)
                .unwrap_or(DEFAULT_TICK_COALESCE),
            replica,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn flags_override_the_file_and_defaults_fill_the_rest() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(
            file,
            "cluster = \"alpha\"\nnode_timeout = \"20s\"\nheartbeat_interval = \"3s\"\npki_dir = \"/pki\""
        )
        .unwrap();
        let args = Args {
            config: Some(file.path().to_owned()),
            heartbeat_interval: Some(Duration::from_secs(1)),
            ..Args::default()
        };
        let c = args.resolve().unwrap();
        assert_eq!(c.cluster, "alpha");
        assert_eq!(c.core.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(c.core.node_timeout, Duration::from_secs(20));
        assert_eq!(c.tls.cert, PathBuf::from("/pki/controller.pem"));
        assert_eq!(c.listen, DEFAULT_LISTEN.parse().unwrap());
    }

    #[test]
    fn unknown_keys_and_bad_timeouts_are_refused() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        writeln!(file, "node_timout = \"20s\"").unwrap();
        let err = Args {
            config: Some(file.path().to_owned()),
            ..Args::default()
        }
        .resolve()
        .unwrap_err();
        assert!(format!("{err:#}").contains("node_timout"), "{err:#}");

        let err = Args {
            pki_dir: Some("/pki".into()),
            heartbeat_interval: Some(Duration::from_secs(5)),
            node_timeout: Some(Duration::from_secs(6)),
            ..Args::default()
        }
        .resolve()
        .unwrap_err();
        assert!(err.to_string().contains("at least twice"), "{err}");
    }

    #[test]
    fn a_replica_is_refused_without_a_state_dir_a_fixed_port_or_sane_timings() {
        let replica = |extra: &dyn Fn(&mut Args)| {
            let mut args = Args {
                pki_dir: Some("/pki".into()),
                etcd: vec!["127.0.0.1:2379".into()],
                state_dir: Some("/state".into()),
                listen: Some("127.0.0.1:7400".parse().unwrap()),
                ..Args::default()
            };
            extra(&mut args);
            args.resolve().map_err(|e| e.to_string())
        };
        let ok = replica(&|_| {}).expect("a replica");
        let r = ok.replica.expect("replica config");
        assert_eq!(r.prefix, "/fabric/local/");
        assert_eq!(r.advertise, "https://127.0.0.1:7400");
        assert_eq!(
            (r.lease, r.renew_deadline, r.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        for (change, words) in [
            (
                (&|a: &mut Args| a.state_dir = None) as &dyn Fn(&mut Args),
                "needs --state-dir",
            ),
            (
                &|a: &mut Args| a.listen = Some("127.0.0.1:0".parse().unwrap()),
                "fixed port",
            ),
            (
                &|a: &mut Args| a.leader_lease = Some(Duration::from_millis(1500)),
                "whole seconds",
            ),
            (
                &|a: &mut Args| a.renew_deadline = Some(Duration::from_secs(20)),
                "shorter than --leader-lease",
            ),
            (
                &|a: &mut Args| a.etcd_prefix = Some("/a".into()),
                "must end with '/'",
            ),
            (
                &|a: &mut Args| a.etcd = vec!["127.0.0.1:2379".into(); 17],
                "at most 16",
            ),
        ] {
            let err = replica(change).expect_err(words);
            assert!(err.contains(words), "{err}");
        }
    }
}
