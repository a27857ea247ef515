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

/// Runs every host of `fleet` until `stop` turns true. A host that fails to
/// start is reported and the others go on; returns how many ran.
pub async fn run(fleet: Fleet, mut stop: watch::Receiver<bool>) -> anyhow::Result<u32> {
    let mut tasks = tokio::task::JoinSet::new();
    let gap = (fleet.start_rate > 0).then(|| Duration::from_secs(1) / fleet.start_rate);
    for i in fleet.first..fleet.first + fleet.count {
        if *stop.borrow() {
            break;
        }
        let config = fleet.config(i)?;
        let name = fleet.name(i);
        let state = fleet.state_dir(&name);
        std::fs::create_dir_all(&state)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", state.display()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|e| anyhow::anyhow!("{name}: cannot listen on {}: {e}", config.listen))?;
        host_agent::addr_file::write(&addr_file(&state), listener.local_addr()?)?;
        let runtime: Arc<dyn VmRuntime> = Arc::new(HollowRuntime::new(&state, fleet.guest));
        let mut host_stop = stop.clone();
        tasks.spawn(async move {
            let shutdown = async move {
                let _ = host_stop.wait_for(|s| *s).await;
            };
            if let Err(e) =
                host_agent::server::run_with(config, listener, shutdown, Some(runtime)).await
            {
                tracing::error!(host = %name, "hollow host stopped: {e:#}");
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
