//! `fabric-hollow`: runs many hollow host agents in one process against a
//! controller. The flags after `--` are the host agent's own, given to every
//! host (see `host-agent --help`).

use clap::Parser;
use fabric_hollow::guest::Behaviour;
use fabric_hollow::hosts::{self, Fleet};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "fabric-hollow",
    version,
    about = "Many real host agents in one process, each with in-process VMs (hollow hosts)",
    after_help = "Example: fabric-hollow --count 200 --state-dir /tmp/hollow -- \
                  --controller https://127.0.0.1:7400 --pki-dir .fabric/pki --capacity 20"
)]
struct Cli {
    /// How many hosts.
    #[arg(long)]
    count: u32,
    /// The number of the first host (hosts are <prefix><first>, ...).
    #[arg(long, default_value_t = 1)]
    first: u32,
    /// Host names start with this; each needs hosts/<name>.pem|key under the
    /// host agent's --pki-dir.
    #[arg(long, default_value = "hollow-")]
    prefix: String,
    /// Each host's state goes in <state-dir>/<name>.
    #[arg(long)]
    state_dir: PathBuf,
    #[arg(long, default_value_t = 5)]
    fault_domains: u32,
    #[arg(long, default_value_t = 5)]
    update_domains: u32,
    /// Start at most this many hosts per second (0: all at once).
    #[arg(long, default_value_t = 0)]
    start_rate: u32,
    /// How the hosts' guests behave (per host, later, through
    /// <state-dir>/<name>/hollow-guest).
    #[arg(long, value_enum, default_value = "healthy")]
    guest: Behaviour,
    /// Write the hosts' heartbeat round trips here every second (JSON:
    /// counts per latency bucket, see fabric-daemon's latency.rs), for
    /// benchmarks.
    #[arg(long)]
    stats: Option<PathBuf>,
    /// How many VMs of the process may make their transfer certificate at
    /// once, and how many open their secrets; the others wait their turn.
    /// Real servers start theirs on their own cores; here thousands share
    /// two.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..))]
    starting_vms: u32,
    /// The host agent's flags, for every host.
    #[arg(last = true)]
    host_args: Vec<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fabric_daemon::logging::init();
    let cli = Cli::parse();
    if cli.count == 0 {
        anyhow::bail!("--count must be at least 1");
    }
    if cli.first == 0 || cli.first.checked_add(cli.count).is_none() {
        anyhow::bail!("--first must be at least 1, and --first + --count fit in 32 bits");
    }
    // Every host holds a listener and a connection to the controller.
    match fabric_daemon::tls_accept::raise_descriptor_limit() {
        Ok(limit) if limit < u64::from(cli.count) * 3 => tracing::warn!(
            limit,
            hosts = cli.count,
            "the open-file limit may be too low for this many hosts (about 3 per host)"
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        fabric_daemon::shutdown::signal().await;
        let _ = stop_tx.send(true);
    });
    fabric_hollow::guest::set_starting_limit(cli.starting_vms as usize);
    if let Some(path) = cli.stats.clone() {
        tokio::spawn(write_stats(path));
    }
    let fleet = Fleet {
        prefix: cli.prefix,
        first: cli.first,
        count: cli.count,
        fault_domains: cli.fault_domains,
        update_domains: cli.update_domains,
        state_root: cli.state_dir,
        start_rate: cli.start_rate,
        guest: cli.guest,
        host_args: cli.host_args,
    };
    hosts::run(fleet, stop).await?;
    Ok(())
}

/// Every second: `{"heartbeat_latency_counts": [...]}` to `path`, replaced
/// atomically.
async fn write_stats(path: PathBuf) {
    let mut every = tokio::time::interval(std::time::Duration::from_secs(1));
    loop {
        every.tick().await;
        let counts = host_agent::controller_link::HEARTBEAT_LATENCY.snapshot();
        let text = serde_json::json!({ "heartbeat_latency_counts": counts }).to_string();
        if let Err(e) = fabric_daemon::files::write_atomically(&path, text) {
            tracing::warn!(path = %path.display(), "cannot write stats: {e}");
        }
    }
}
