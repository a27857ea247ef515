//! The host agent's configuration, from flags (and the environment, so a
//! compose file can set a host's fault and update domains).

use fabric_pki::tls::TlsFiles;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Command-line flags of `host-agent`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "host-agent",
    version,
    about = "Fabric's host agent (one per server)",
    // A package's flags are appended to the base's arguments when the host
    // agent restarts into it (see software.rs): the last occurrence wins.
    args_override_self = true
)]
pub struct Args {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// The fabric controller's URL, e.g. https://127.0.0.1:7400; for a
    /// controller with replicas, every replica's, comma-separated (the one
    /// that leads answers).
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
    /// Address of the plain-HTTP Prometheus endpoint (/metrics); none by
    /// default.
    #[arg(long, env = "FABRIC_HOST_HTTP_LISTEN")]
    pub http_listen: Option<SocketAddr>,
    /// After binding --http-listen, write the bound address to this file
    /// (port 0 picks any free port; a launcher reads it from here).
    #[arg(long, requires = "http_listen")]
    pub http_addr_file: Option<PathBuf>,
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
    /// Longest wait for the controller to answer a call, connecting
    /// included; then the next controller address is tried. Keep it well
    /// under the controller's node timeout, so a host whose controller
    /// replica was paused reaches the new leader in time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "5s")]
    pub controller_timeout: Duration,
    /// Shortest time between two heartbeats sent for a change (a VM's role
    /// began to serve, the controller pushed a change) rather than at the
    /// interval: a burst of changes makes one heartbeat.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "25ms")]
    pub report_coalesce: Duration,
    /// Report every VM at least once per this many heartbeats; in between a
    /// heartbeat reports only the VMs whose report changed since the
    /// controller accepted one (and every VM after registering or when the
    /// controller asks). 1: every heartbeat reports every VM.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..))]
    pub complete_report_every: u32,
    /// The longest `<state>/obeyed.json` may lag the newest controller
    /// generation obeyed while the host acts on nothing; it is always
    /// written before the host acts on a desired set.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "10s")]
    pub obeyed_sync_interval: Duration,
    /// Directory for this server's state: VM directories, guest agent logs
    /// and pid files. Default: a directory named after the node under the
    /// system temp directory.
    #[arg(long, env = "FABRIC_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Address of the GuestService that guest agents call (TLS with the host
    /// certificate, no client certificate).
    #[arg(long, env = "FABRIC_GUEST_LISTEN", default_value = "127.0.0.1:0")]
    pub guest_listen: SocketAddr,
    /// How long a new guest agent may take to say Hello before its VM is
    /// reinitialized (the 2012 postmortem's 25 minutes by default).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "25m")]
    pub guest_connect_timeout: Duration,
    /// Silence after which a guest agent that said Hello is presumed dead.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "15s")]
    pub guest_heartbeat_timeout: Duration,
    /// Heartbeat period asked of guest agents (sent in GuestWelcome).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
    pub guest_heartbeat_interval: Duration,
    /// Consecutive failures of a clean VM (one whose role never ran) after
    /// which this server reports itself faulty to the controller.
    #[arg(long, default_value_t = 3)]
    pub clean_vm_strikes: u32,
    /// The guest agent executable. Default: `guest-agent` next to this
    /// executable.
    #[arg(long, env = "FABRIC_GUEST_AGENT_BIN")]
    pub guest_agent_bin: Option<PathBuf>,
    /// Azure's guest agent, for roles with `guest = "waagent"`. Default:
    /// `waagent` on PATH or in /usr/sbin (Debian's waagent package); none
    /// found, such VMs fail to start, saying why.
    #[arg(long, env = "FABRIC_WAAGENT")]
    pub waagent: Option<PathBuf>,
    /// IP the guest agents bind (their role endpoint and their own gRPC).
    #[arg(long, default_value = "127.0.0.1")]
    pub vm_listen_ip: IpAddr,
    /// IP the roles' HTTPS endpoints bind (default: --vm-listen-ip); 0.0.0.0
    /// in a container whose ports are published.
    #[arg(long, env = "FABRIC_ROLE_LISTEN_IP")]
    pub role_listen_ip: Option<IpAddr>,
    /// Lowest port a role endpoint may bind; with --role-port-max each role
    /// takes the first free port of the range (the ports a container
    /// publishes) instead of any free port.
    #[arg(long, env = "FABRIC_ROLE_PORT_MIN", requires = "role_port_max")]
    pub role_port_min: Option<u16>,
    /// Highest port a role endpoint may bind (see --role-port-min).
    #[arg(long, env = "FABRIC_ROLE_PORT_MAX", requires = "role_port_min")]
    pub role_port_max: Option<u16>,
    /// IP reported as the role endpoints' address when clients reach them
    /// by another one than the bound (127.0.0.1 where a container publishes
    /// the same port numbers on the Docker machine's loopback).
    #[arg(long, env = "FABRIC_ROLE_ADVERTISE_IP")]
    pub role_advertise_ip: Option<IpAddr>,
    /// Where the controller reaches this server's role endpoints when not at
    /// the address they name (a host name or IP): in docker-compose the
    /// endpoints name the Docker machine's loopback, while the controller
    /// dials the server by its name on the cluster's network.
    #[arg(long, env = "FABRIC_ROLE_PROBE_HOST", value_parser = parse_probe_host)]
    pub role_probe_host: Option<String>,
    /// Start the guests' calendar clock at this RFC 3339 instant (it then
    /// advances in real time); passed to each guest agent as --now.
    #[arg(long)]
    pub guest_now: Option<String>,
    /// Run each VM as a user of its own (needs root): see docs/security.md.
    #[arg(long, env = "FABRIC_VM_USERS")]
    pub vm_users: bool,
    /// The first user id given to VMs with --vm-users.
    #[arg(long, default_value_t = 20_000)]
    pub vm_uid_base: u32,
    /// Make guest agents compute their transfer certificate's expiry the
    /// 2012 way (fails on Feb 29).
    #[arg(long)]
    pub leap_day_bug: bool,
    /// Make guest agents exit silently on init failure (the 2012 behaviour)
    /// instead of reporting it.
    #[arg(long)]
    pub silent_guest_failures: bool,
    /// The package this host agent runs. Set by the host agent itself when
    /// it restarts into a package a rollout names; none: the base binaries.
    #[arg(long)]
    pub package: Option<String>,
    /// The host agent version reported to the controller.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub host_agent_version: String,
    /// The version of the guest agent (--guest-agent-bin) this host starts.
    #[arg(long, default_value = env!("CARGO_PKG_VERSION"))]
    pub guest_agent_version: String,
    /// The networking plugin version reported to the controller.
    #[arg(long, default_value = "builtin")]
    pub plugin_version: String,
    /// The networking plugin (`fabric-netplug`): with it, each role serves
    /// on a private address and the plugin forwards the role's public
    /// endpoint there; without it, each role binds its public endpoint
    /// itself.
    #[arg(long, env = "FABRIC_NETPLUG_BIN")]
    pub netplug_bin: Option<PathBuf>,
    /// The bindings interface version this host agent writes for the plugin.
    #[arg(long, default_value_t = 1)]
    pub netplug_api: u32,
    /// An extra argument for the plugin (a package's plugin flags); repeat.
    #[arg(long = "netplug-arg", allow_hyphen_values = true)]
    pub netplug_args: Vec<String>,
    /// An extra argument for every guest agent this host starts (a
    /// package's guest agent flags); repeat for more.
    #[arg(long = "guest-agent-arg", allow_hyphen_values = true)]
    pub guest_agent_args: Vec<String>,
    /// How long each VM takes to boot before its guest agent starts (passed to each guest agent
    /// as --boot-time; a modelled delay, so healing many VMs takes the time it takes on real
    /// ones). Counts against --guest-connect-timeout.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub guest_boot_time: Duration,
}

/// What to do instead of serving.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Exit 0 if the host agent configured by these flags (or environment)
    /// answers health SERVING on its listen address; for container
    /// healthchecks, which have no shell or curl.
    Probe {
        /// How long to wait for the answer.
        #[arg(long, value_parser = humantime::parse_duration, default_value = "3s")]
        timeout: Duration,
    },
}

/// The most controller addresses a host agent takes (replicas: 3 or 5).
pub const MAX_CONTROLLERS: usize = 16;

/// Validated host agent configuration.
#[derive(Clone, Debug)]
pub struct HostConfig {
    /// Every controller replica's URL (one for a single controller).
    pub controllers: Vec<String>,
    pub controller_name: String,
    pub tls: TlsFiles,
    pub listen: SocketAddr,
    pub advertise: Option<String>,
    pub addr_file: Option<PathBuf>,
    pub http_listen: Option<SocketAddr>,
    pub http_addr_file: Option<PathBuf>,
    /// Declared at registration (see `--role-probe-host`).
    pub role_probe_host: Option<String>,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub heartbeat_interval: Option<Duration>,
    pub max_backoff: Duration,
    pub controller_timeout: Duration,
    pub report_coalesce: Duration,
    pub complete_report_every: u32,
    pub obeyed_sync_interval: Duration,
    pub state_dir: Option<PathBuf>,
    pub guests: GuestConfig,
    /// What this host agent runs (package and versions), reported at
    /// registration.
    pub running: crate::software::Running,
}

/// How this host runs its VMs' guest agents.
#[derive(Clone, Debug)]
pub struct GuestConfig {
    pub listen: SocketAddr,
    pub connect_timeout: Duration,
    pub heartbeat_timeout: Duration,
    pub heartbeat_interval: Duration,
    pub clean_vm_strikes: u32,
    pub agent_bin: PathBuf,
    /// The `waagent` script, if this server has one.
    pub waagent: Option<PathBuf>,
    pub vm_listen_ip: IpAddr,
    /// Where role endpoints bind and what they report.
    pub role: RoleEndpoints,
    /// The guests' clock at host agent start (see `--guest-now`).
    pub now: Option<OffsetDateTime>,
    pub leap_day_bug: bool,
    pub silent_failures: bool,
    /// The modelled VM boot (see `--guest-boot-time`).
    pub boot_time: Duration,
    /// `--vm-users`: the first VM user id, if asked for.
    pub vm_users: Option<u32>,
    /// Extra arguments for every guest agent (a package's flags).
    pub extra_args: Vec<String>,
    /// The networking plugin, if this host runs one.
    pub netplug: Option<NetplugConfig>,
}

/// How this host runs its networking plugin.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NetplugConfig {
    pub bin: PathBuf,
    pub api: u32,
    pub args: Vec<String>,
}

/// Where the guest agents' role endpoints bind, passed to each guest agent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RoleEndpoints {
    /// `None`: the VM listen IP.
    pub listen_ip: Option<IpAddr>,
    /// Inclusive port range; `None`: any free port.
    pub ports: Option<(u16, u16)>,
    /// `None`: report the bound address.
    pub advertise_ip: Option<IpAddr>,
}

impl RoleEndpoints {
    /// What a VM of this host may report as its role endpoint: the IP it is
    /// told to advertise (or bind), within the port range it is given.
    pub fn rule(&self, vm_listen_ip: IpAddr) -> crate::vm::endpoint::EndpointRule {
        crate::vm::endpoint::EndpointRule {
            ip: self.advertise_ip.or(self.listen_ip).unwrap_or(vm_listen_ip),
            ports: self.ports,
        }
    }
}

impl Default for GuestConfig {
    /// The flags' defaults (for tests and embedders that build a
    /// [`HostConfig`] by hand).
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            connect_timeout: Duration::from_secs(25 * 60),
            heartbeat_timeout: Duration::from_secs(15),
            heartbeat_interval: Duration::from_secs(3),
            clean_vm_strikes: 3,
            agent_bin: default_guest_agent_bin().unwrap_or_else(|_| "guest-agent".into()),
            waagent: None,
            vm_listen_ip: IpAddr::from([127, 0, 0, 1]),
            role: RoleEndpoints::default(),
            now: None,
            leap_day_bug: false,
            silent_failures: false,
            boot_time: Duration::ZERO,
            vm_users: None,
            extra_args: Vec::new(),
            netplug: None,
        }
    }
}

impl HostConfig {
    /// The state directory; without `--state-dir`, one named after `node`
    /// under the system temp directory, so two hosts on one machine never
    /// share VM directories.
    pub fn state_dir_for(&self, node: &str) -> PathBuf {
        self.state_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join(format!("fabric-host-{node}")))
    }
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
        let controllers: Vec<String> = self
            .controller
            .split(',')
            .map(str::trim)
            .filter(|u| !u.is_empty())
            .map(str::to_owned)
            .collect();
        if controllers.is_empty() {
            anyhow::bail!("--controller names no URL");
        }
        if controllers.len() > MAX_CONTROLLERS {
            anyhow::bail!(
                "--controller names {} URLs; at most {MAX_CONTROLLERS} (one per controller replica)",
                controllers.len()
            );
        }
        if let Some(bad) = controllers.iter().find(|u| !u.starts_with("https://")) {
            anyhow::bail!(
                "--controller {bad:?} must be an https:// URL (all traffic is mutual TLS)"
            );
        }
        if self.controller_timeout.is_zero() {
            anyhow::bail!("--controller-timeout must be greater than zero");
        }
        if self.heartbeat_interval.is_some_and(|d| d.is_zero()) {
            anyhow::bail!("--heartbeat-interval must be greater than zero");
        }
        let guests = self.guest_config()?;
        Ok(HostConfig {
            controllers,
            controller_name: self.controller_name,
            tls: TlsFiles { ca, cert, key },
            listen: self.listen,
            advertise: self.advertise,
            addr_file: self.addr_file,
            http_listen: self.http_listen,
            http_addr_file: self.http_addr_file,
            role_probe_host: self.role_probe_host.clone(),
            fault_domain: self.fault_domain,
            update_domain: self.update_domain,
            capacity: self.capacity,
            heartbeat_interval: self.heartbeat_interval,
            max_backoff: self.max_backoff,
            controller_timeout: self.controller_timeout,
            report_coalesce: self.report_coalesce,
            complete_report_every: self.complete_report_every,
            obeyed_sync_interval: self.obeyed_sync_interval,
            state_dir: self.state_dir,
            guests,
            running: crate::software::Running {
                package: self.package,
                host_agent: self.host_agent_version,
                guest_agent: self.guest_agent_version,
                plugin: self.plugin_version,
            },
        })
    }

    fn guest_config(&self) -> anyhow::Result<GuestConfig> {
        for (flag, value) in [
            ("--guest-connect-timeout", self.guest_connect_timeout),
            ("--guest-heartbeat-timeout", self.guest_heartbeat_timeout),
            ("--guest-heartbeat-interval", self.guest_heartbeat_interval),
        ] {
            if value.is_zero() {
                anyhow::bail!("{flag} must be greater than zero");
            }
        }
        // A guest that heartbeats no faster than the timeout would be
        // declared dead between two perfectly punctual heartbeats.
        if self.guest_heartbeat_interval >= self.guest_heartbeat_timeout {
            anyhow::bail!(
                "--guest-heartbeat-interval ({}) must be shorter than --guest-heartbeat-timeout ({})",
                humantime::format_duration(self.guest_heartbeat_interval),
                humantime::format_duration(self.guest_heartbeat_timeout)
            );
        }
        if !fabric_netplug::bindings::APIS.contains(&self.netplug_api) {
            anyhow::bail!(
                "--netplug-api {} is not one of {:?}",
                self.netplug_api,
                fabric_netplug::bindings::APIS
            );
        }
        if self.clean_vm_strikes < 1 {
            anyhow::bail!("--clean-vm-strikes must be at least 1");
        }
        if self.guest_boot_time >= self.guest_connect_timeout {
            anyhow::bail!(
                "--guest-boot-time ({}) must be shorter than --guest-connect-timeout ({}), or every VM times out while it boots",
                humantime::format_duration(self.guest_boot_time),
                humantime::format_duration(self.guest_connect_timeout)
            );
        }
        let now = match &self.guest_now {
            None => None,
            Some(text) => Some(OffsetDateTime::parse(text, &Rfc3339).map_err(|e| {
                anyhow::anyhow!(
                    "--guest-now {text:?} is not an RFC 3339 date-time (e.g. 2012-02-28T23:59:00Z): {e}"
                )
            })?),
        };
        let ports = match (self.role_port_min, self.role_port_max) {
            (Some(min), Some(max)) if min > max => {
                anyhow::bail!("--role-port-min {min} is above --role-port-max {max}")
            }
            (Some(min), Some(max)) => Some((min, max)),
            _ => None,
        };
        let role = RoleEndpoints {
            listen_ip: self.role_listen_ip,
            ports,
            advertise_ip: self.role_advertise_ip,
        };
        let agent_bin = match &self.guest_agent_bin {
            Some(path) => path.clone(),
            None => default_guest_agent_bin()?,
        };
        Ok(GuestConfig {
            listen: self.guest_listen,
            connect_timeout: self.guest_connect_timeout,
            heartbeat_timeout: self.guest_heartbeat_timeout,
            heartbeat_interval: self.guest_heartbeat_interval,
            clean_vm_strikes: self.clean_vm_strikes,
            agent_bin,
            waagent: match &self.waagent {
                Some(path) if path.is_file() => Some(path.clone()),
                Some(path) => anyhow::bail!("--waagent {}: no such file", path.display()),
                None => fabric_wireserver::agent_dir::find_waagent(),
            },
            vm_listen_ip: self.vm_listen_ip,
            role,
            now,
            leap_day_bug: self.leap_day_bug,
            silent_failures: self.silent_guest_failures,
            boot_time: self.guest_boot_time,
            vm_users: self.vm_users.then_some(self.vm_uid_base),
            extra_args: self.guest_agent_args.clone(),
            netplug: self.netplug_bin.clone().map(|bin| NetplugConfig {
                bin,
                api: self.netplug_api,
                args: self.netplug_args.clone(),
            }),
        })
    }
}

fn parse_probe_host(text: &str) -> Result<String, String> {
    fabric_core::node::probe_host(text)
}

/// `guest-agent` in the directory of the running executable, as a build or
/// an install puts the two binaries side by side. Its existence is checked at
/// each spawn (a missing binary is a VM failure, reported like any other).
fn default_guest_agent_bin() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()
        .map_err(|e| anyhow::anyhow!("cannot locate this executable to find guest-agent: {e}"))?;
    let dir = exe.parent().unwrap_or(Path::new("."));
    Ok(dir.join("guest-agent"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn parse(extra: &[&str]) -> anyhow::Result<HostConfig> {
        parse_with_controller("https://127.0.0.1:1", extra)
    }

    fn parse_with_controller(controller: &str, extra: &[&str]) -> anyhow::Result<HostConfig> {
        let mut argv = vec![
            "host-agent",
            "--controller",
            controller,
            "--ca",
            "ca.pem",
            "--cert",
            "h.pem",
            "--key",
            "h.key",
        ];
        argv.extend_from_slice(extra);
        Args::try_parse_from(argv)?.resolve()
    }

    #[test]
    fn guest_defaults() {
        let config = parse(&[]).unwrap();
        let g = &config.guests;
        assert_eq!(g.connect_timeout, Duration::from_secs(25 * 60));
        assert_eq!(g.heartbeat_timeout, Duration::from_secs(15));
        assert_eq!(g.heartbeat_interval, Duration::from_secs(3));
        assert_eq!(g.clean_vm_strikes, 3);
        assert!(g.agent_bin.ends_with("guest-agent"));
        assert_eq!(g.listen.to_string(), "127.0.0.1:0");
        assert!(g.now.is_none() && !g.leap_day_bug && !g.silent_failures);
        let d = GuestConfig::default();
        assert_eq!(
            (
                d.listen,
                d.connect_timeout,
                d.heartbeat_timeout,
                d.heartbeat_interval
            ),
            (
                g.listen,
                g.connect_timeout,
                g.heartbeat_timeout,
                g.heartbeat_interval
            )
        );
        assert_eq!(
            (d.clean_vm_strikes, d.vm_listen_ip),
            (g.clean_vm_strikes, g.vm_listen_ip)
        );
        assert!(
            config
                .state_dir_for("host-1")
                .ends_with("fabric-host-host-1")
        );
    }

    #[test]
    fn controller_urls_are_every_replicas_https_bounded() {
        let argv = |controller: &str| parse_with_controller(controller, &[]);
        let ok = argv("https://a:1, https://b:2,https://c:3").unwrap();
        assert_eq!(
            ok.controllers,
            ["https://a:1", "https://b:2", "https://c:3"]
        );
        let err = argv("https://a:1,http://b:2").unwrap_err().to_string();
        assert!(err.contains("\"http://b:2\" must be an https://"), "{err}");
        let err = argv(",").unwrap_err().to_string();
        assert!(err.contains("names no URL"), "{err}");
        let many = vec!["https://a:1"; MAX_CONTROLLERS + 1].join(",");
        let err = argv(&many).unwrap_err().to_string();
        assert!(err.contains("at most 16"), "{err}");
    }

    #[test]
    fn guest_validation() {
        let err = parse(&["--clean-vm-strikes", "0"]).unwrap_err();
        assert!(err.to_string().contains("--clean-vm-strikes"), "{err}");
        let err = parse(&["--guest-heartbeat-interval", "20s"]).unwrap_err();
        assert!(err.to_string().contains("shorter than"), "{err}");
        let err = parse(&["--guest-now", "yesterday"]).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
        let err = parse(&["--guest-boot-time", "30m"]).unwrap_err();
        assert!(
            err.to_string().contains(
                "--guest-boot-time (30m) must be shorter than --guest-connect-timeout (25m)"
            ),
            "{err}"
        );
        // An address file needs a listener to report.
        let err = parse(&["--http-addr-file", "/tmp/x.addr"]).unwrap_err();
        assert!(err.to_string().contains("--http-listen"), "{err}");
        let ok = parse(&["--guest-boot-time", "2s"]).unwrap();
        assert_eq!(ok.guests.boot_time, Duration::from_secs(2));
        let err = parse(&["--role-port-min", "9010", "--role-port-max", "9000"]).unwrap_err();
        assert!(err.to_string().contains("above --role-port-max"), "{err}");
        assert!(
            parse(&["--role-port-min", "9000"]).is_err(),
            "a range needs both ends"
        );
        let ok = parse(&[
            "--role-port-min",
            "9000",
            "--role-port-max",
            "9009",
            "--role-listen-ip",
            "0.0.0.0",
            "--role-advertise-ip",
            "127.0.0.1",
        ])
        .unwrap();
        assert_eq!(
            ok.guests.role,
            RoleEndpoints {
                listen_ip: Some(IpAddr::from([0, 0, 0, 0])),
                ports: Some((9000, 9009)),
                advertise_ip: Some(IpAddr::from([127, 0, 0, 1])),
            }
        );
        let ok = parse(&["--guest-now", "2012-02-28T23:59:00Z", "--leap-day-bug"]).unwrap();
        assert!(ok.guests.now.is_some() && ok.guests.leap_day_bug);
    }
}
