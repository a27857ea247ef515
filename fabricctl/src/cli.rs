//! The command line, declared with clap so `--help` documents every flag.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, Parser)]
#[command(
    name = "fabricctl",
    version,
    about = "Run and inspect a Fabric cluster"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the cluster is: a state directory with a context, or explicit flags.
#[derive(Debug, Clone, Args)]
pub struct GlobalArgs {
    /// State directory of the local cluster (PKI, logs, context.json).
    #[arg(
        long,
        global = true,
        env = "FABRIC_STATE_DIR",
        default_value = ".fabric"
    )]
    pub state_dir: PathBuf,
    /// Fabric controller URL (https://host:port); overrides the context.
    #[arg(long, global = true, env = "FABRIC_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Cluster CA certificate (default: from the context or <state>/pki/ca.pem).
    #[arg(long, global = true)]
    pub ca: Option<PathBuf>,
    /// Admin client certificate (default: context or <state>/pki/admin.pem).
    #[arg(long, global = true)]
    pub cert: Option<PathBuf>,
    /// Admin client key (default: context or <state>/pki/admin.key).
    #[arg(long, global = true)]
    pub key: Option<PathBuf>,
    /// TLS server name to verify the controller certificate against.
    #[arg(long, global = true)]
    pub server_name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a local cluster (controller + host agents) and supervise it until Ctrl-C.
    Up(UpArgs),
    /// Show the cluster's nodes and their state.
    Status(StatusArgs),
    /// List cluster events, optionally following new ones.
    Events(EventsArgs),
}

#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Number of host agents (host-1..host-N).
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub hosts: u32,
    /// Cluster name (written into every certificate).
    #[arg(long, default_value = "local")]
    pub cluster: String,
    /// How often host agents heartbeat.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Silence after which the controller marks a node Unresponsive.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    pub node_timeout: Duration,
    /// Number of fault domains; host i is in fault domain (i-1) % N.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    pub fault_domains: u32,
    /// Number of update domains; host i is in update domain (i-1) % N.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    pub update_domains: u32,
    /// VM slots per host.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Delay before restarting a process that exited.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    pub restart_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// Output format (json: one object per line).
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Keep streaming new events until interrupted.
    #[arg(short = 'f', long)]
    pub follow: bool,
    /// Only events with a sequence number above this one.
    #[arg(long, default_value_t = 0)]
    pub after: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn up_defaults() {
        let cli = Cli::try_parse_from(["fabricctl", "up"]).unwrap();
        let Command::Up(up) = cli.command else {
            panic!("not up")
        };
        assert_eq!(up.hosts, 3);
        assert_eq!(up.cluster, "local");
        assert_eq!(up.heartbeat_interval, Duration::from_secs(1));
        assert_eq!(up.node_timeout, Duration::from_secs(5));
        assert_eq!(
            (up.fault_domains, up.update_domains, up.capacity),
            (3, 5, 4)
        );
        assert_eq!(up.restart_delay, Duration::from_secs(2));
    }

    #[test]
    fn global_flags_after_subcommand() {
        let cli = Cli::try_parse_from([
            "fabricctl",
            "status",
            "-o",
            "json",
            "--endpoint",
            "https://h:1",
        ])
        .unwrap();
        assert_eq!(cli.global.endpoint.as_deref(), Some("https://h:1"));
        assert!(matches!(
            cli.command,
            Command::Status(StatusArgs {
                output: Output::Json
            })
        ));
    }
}
