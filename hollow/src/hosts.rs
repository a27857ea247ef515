//! Many hollow hosts in one process: each is `host_agent::server::run_with`
//! with its own certificate, state directory, listener and connection to the
//! controller, configured by the host agent's own flags, and a
//! [`HollowRuntime`] for its VMs.

use crate::guest::{Behaviour, HollowRuntime};
use clap::Parser;
use host_agent::vm::runtime::VmRuntime;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// What every hollow host shares, and how they are named and spread.
#[derive(Clone, Debug)]
pub struct Fleet {
    /// Hosts are `<prefix><i>` for i in first..first+count.
    pub prefix: String,
    pub first: u32,
    pub count: u32,
    pub fault_domains: u32,
    pub update_domains: u32,
    /// Each host's state lives in `<state_root>/<name>`, where it also
    /// writes `host.addr` (its HostService address).
    pub state_root: PathBuf,
    /// Hosts start at most this many per second (0: all at once).
    pub start_rate: u32,
    pub guest: Behaviour,
    /// The host agent flags every host gets (`--controller`, `--pki-dir`,
    /// intervals, capacity, ...); name, domains, state directory and listen
    /// address are added per host.
    pub host_args: Vec<String>,
}

impl Fleet {
    pub fn name(&self, i: u32) -> String {
        format!("{}{i}", self.prefix)
    }

    /// Where host `name` keeps its state.
    pub fn state_dir(&self, name: &str) -> PathBuf {
        self.state_root.join(name)
    }

    /// The host agent configuration of host `i`, through the host agent's
    /// own flag parsing and validation.
    pub fn config(&self, i: u32) -> anyhow::Result<host_agent::config::HostConfig> {
        let name = self.name(i);
        let (fd, ud) = spread(i, self.first, self.fault_domains, self.update_domains);
        let state = self.state_dir(&name);
        let mut argv = vec!["host-agent".to_owned()];
        argv.extend(self.host_args.iter().cloned());
        argv.extend([
            "--node".into(),
            name.clone(),
            "--state-dir".into(),
            state.display().to_string(),
            "--addr-file".into(),
            addr_file(&state).display().to_string(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "--fault-domain".into(),
            fd.to_string(),
            "--update-domain".into(),
            ud.to_string(),
        ]);
        let args = host_agent::config::Args::try_parse_from(&argv)
            .map_err(|e| anyhow::anyhow!("host agent flags: {e}"))?;
        args.resolve()
    }
}

/// Host `i` is the (i - first)th of the fleet: fault and update domains
/// round-robin, as `fabricctl up` spreads its hosts.
fn spread(i: u32, first: u32, fds: u32, uds: u32) -> (u32, u32) {
    let k = i - first;
    (k % fds.max(1), k % uds.max(1))
}

/// `<host state>/host.addr`: the host's HostService address.
pub fn addr_file(host_state: &Path) -> PathBuf {
    host_state.join("host.addr")
}

/// `<host state>/powered-off`: while it exists the host is off (its host
/// agent stopped and its VMs gone, as in a power failure); removing it powers
/// the host on again, as a new boot.
pub fn power_file(host_state: &Path) -> PathBuf {
    host_state.join("powered-off")
}

/// How often a host looks at its power file.
const POWER_POLL: Duration = Duration::from_millis(250);

/// Runs every host of `fleet` until `stop` turns true. Returns how many
/// were started.
pub async fn run(fleet: Fleet, mut stop: watch::Receiver<bool>) -> anyhow::Result<u32> {
    let fleet = Arc::new(fleet);
    let mut tasks = tokio::task::JoinSet::new();
    let gap = (fleet.start_rate > 0).then(|| Duration::from_secs(1) / fleet.start_rate);
    for i in fleet.first..fleet.first + fleet.count {
        if *stop.borrow() {
            break;
        }
        // Refuse bad flags before anything runs, with the host agent's words.
        fleet.config(i)?;
        let (fleet, stop) = (fleet.clone(), stop.clone());
        tasks.spawn(async move {
            if let Err(e) = host(&fleet, i, stop).await {
                tracing::error!(host = %fleet.name(i), "hollow host stopped: {e:#}");
            }
        });
        if let Some(gap) = gap {
            tokio::time::sleep(gap).await;
        }
    }
    let started = tasks.len() as u32;
    tracing::info!(hosts = started, "hollow hosts started");
    let _ = stop.wait_for(|s| *s).await;
    while tasks.join_next().await.is_some() {}
    Ok(started)
}

/// One host, through its power cycles, until `stop`.
async fn host(fleet: &Fleet, i: u32, mut stop: watch::Receiver<bool>) -> anyhow::Result<()> {
    let name = fleet.name(i);
    let state = fleet.state_dir(&name);
    std::fs::create_dir_all(&state)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", state.display()))?;
    let power = power_file(&state);
    loop {
        while power.exists() {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return Ok(()),
                _ = tokio::time::sleep(POWER_POLL) => {}
            }
        }
        if *stop.borrow() {
            return Ok(());
        }
        let config = fleet.config(i)?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
        host_agent::addr_file::write(&addr_file(&state), listener.local_addr()?)?;
        let runtime = Arc::new(HollowRuntime::new(&state, fleet.guest));
        let (mut host_stop, off) = (stop.clone(), power.clone());
        let shutdown = async move {
            tokio::select! {
                _ = host_stop.wait_for(|s| *s) => {}
                _ = async {
                    while !off.exists() {
                        tokio::time::sleep(POWER_POLL).await;
                    }
                } => {}
            }
        };
        let served = host_agent::server::run_with(
            config,
            listener,
            shutdown,
            Some(runtime.clone() as Arc<dyn VmRuntime>),
        )
        .await;
        runtime.stop_all();
        served?;
        if *stop.borrow() {
            return Ok(());
        }
        tracing::info!(host = %name, "powered off");
    }
}
