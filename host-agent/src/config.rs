//! The host agent's configuration, from flags (and the environment, so a
//! compose file can set a host's fault and update domains).

use fabric_pki::tls::TlsFiles;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Command-line flags of `host-agent`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "host-agent",
    version,
    about = "Fabric's host agent (one per server)"
)]
pub struct Args {
    /// The fabric controller's URL, e.g. https://127.0.0.1:7400.
    #[arg(long, env = "FABRIC_CONTROLLER")]
    pub controller: String,
    /// Name the controller's certificate must carry.
    #[arg(long, env = "FABRIC_CONTROLLER_NAME", default_value = "localhost")]
    pub controller_name: String,
    /// Directory with ca.pem and hosts/<node>.pem|key (with --node).
    #[arg(long, env = "FABRIC_PKI_DIR")]
    pub pki_dir: Option<PathBuf>,
    /// This server's node id, used only to find its files under --pki-dir;
    /// the identity itself is always the one in the certificate.
    #[arg(long, env = "FABRIC_NODE")]
    pub node: Option<String>,
    /// Cluster CA certificate.
    #[arg(long)]
    pub ca: Option<PathBuf>,
    /// This host agent's certificate.
    #[arg(long)]
    pub cert: Option<PathBuf>,
    /// This host agent's private key.
    #[arg(long)]
    pub key: Option<PathBuf>,
    /// Address of the host agent's own gRPC service.
    #[arg(long, env = "FABRIC_HOST_LISTEN", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// Address other parties should use to reach us, if not the bound one
    /// (e.g. a container's DNS name).
    #[arg(long, env = "FABRIC_ADVERTISE")]
    pub advertise: Option<String>,
    /// After binding, write the bound address to this file.
    #[arg(long)]
    pub addr_file: Option<PathBuf>,
    #[arg(long, env = "FABRIC_FAULT_DOMAIN", default_value_t = 0)]
    pub fault_domain: u32,
    #[arg(long, env = "FABRIC_UPDATE_DOMAIN", default_value_t = 0)]
    pub update_domain: u32,
    /// How many VMs this server can run.
    #[arg(long, env = "FABRIC_CAPACITY", default_value_t = 4)]
    pub capacity: u32,
    /// Heartbeat period; by default the one the controller asks for.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Option<Duration>,
    /// Longest wait between reconnection attempts while the controller is away.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub max_backoff: Duration,
    /// Directory for this server's state (VM directories later).
    #[arg(long, env = "FABRIC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
}

/// Validated host agent configuration.
#[derive(Clone, Debug)]
pub struct HostConfig {
    pub controller: String,
    pub controller_name: String,
    pub tls: TlsFiles,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub addr_file: Option<PathBuf>,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub heartbeat_interval: Option<Duration>,
    pub max_backoff: Duration,
    pub state_dir: Option<PathBuf>,
}

impl Args {
    pub fn resolve(self) -> anyhow::Result<HostConfig> {
        let from_dir = |name: String| self.pki_dir.as_ref().map(|d| d.join(name));
        let node = self.node.clone().unwrap_or_default();
        let (Some(ca), Some(cert), Some(key)) = (
            self.ca.clone().or_else(|| from_dir("ca.pem".into())),
            self.cert
                .clone()
                .or_else(|| (!node.is_empty()).then(|| from_dir(format!("hosts/{node}.pem")))?),
            self.key
                .clone()
                .or_else(|| (!node.is_empty()).then(|| from_dir(format!("hosts/{node}.key")))?),
        ) else {
            anyhow::bail!(
                "no TLS files: pass --pki-dir DIR --node NAME, or --ca, --cert and --key"
            );
        };
        if !self.controller.starts_with("https://") {
            anyhow::bail!(
                "--controller {:?} must be an https:// URL (all traffic is mutual TLS)",
                self.controller
            );
        }
        if self.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            anyhow::bail!("--heartbeat-interval must be greater than zero");
        }
        Ok(HostConfig {
            controller: self.controller,
            controller_name: self.controller_name,
            tls: TlsFiles { ca, cert, key },
            listen: self.listen,
            advertise: self.advertise,
            addr_file: self.addr_file,
            fault_domain: self.fault_domain,
            update_domain: self.update_domain,
            capacity: self.capacity,
            heartbeat_interval: self.heartbeat_interval,
            max_backoff: self.max_backoff,
            state_dir: self.state_dir,
        })
    }
}
