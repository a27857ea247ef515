//! A replay's own local cluster: `fabricctl up` in a temporary state
//! directory, with heartbeats fast enough that a lost server is noticed in
//! about a second, stopped (SIGTERM, then SIGKILL) and removed on drop.
//!
//! Also the few things every real replay does with it: deploy a definition
//! file, wait until instances run, read events since a sequence, and say
//! when an event happened relative to a start.

use crate::cli::GlobalArgs;
use crate::target::Target;
use anyhow::{Context as _, bail};
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterEvent, ClusterStatus, GetStatusRequest, ListEventsRequest};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;
use tonic::transport::Channel;

/// How long a replay's cluster may take to serve.
const STARTUP: Duration = Duration::from_secs(30);
/// How often the replays look at status and events.
pub const POLL: Duration = Duration::from_millis(200);

/// The flags every replay shares: heartbeats every 250 ms, a server
/// Unresponsive after 1 s of silence and in Human Investigate 2 s later;
/// guest agents heartbeating every 300 ms.
const FAST: &[&str] = &[
    "--heartbeat-interval",
    "250ms",
    "--node-timeout",
    "1s",
    "--unresponsive-grace",
    "2s",
    "--restart-delay",
    "1s",
    "--guest-heartbeat-interval",
    "300ms",
    "--guest-heartbeat-timeout",
    "2s",
];

/// The `fabricctl up` process: stopped (SIGTERM, then SIGKILL) and its
/// state directory removed on drop.
struct Launcher {
    child: Child,
    state_dir: PathBuf,
}

impl Drop for Launcher {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let stopped = (0..100).any(|_| {
            let done = matches!(self.child.try_wait(), Ok(Some(_)));
            if !done {
                std::thread::sleep(Duration::from_millis(100));
            }
            done
        });
        if !stopped {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.state_dir);
    }
}

impl Launcher {
    fn log(&self) -> PathBuf {
        self.state_dir.join("launcher.log")
    }

    /// Waits until the cluster's controller answers status.
    async fn wait_serving(&mut self, global: &GlobalArgs) -> anyhow::Result<Target> {
        let deadline = Instant::now() + STARTUP;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                bail!(
                    "the scenario's cluster stopped ({status}); see {}",
                    self.log().display()
                );
            }
            if let Ok(t) = Target::controller(global)
                && crate::status::fetch(&t).await.is_ok()
            {
                return Ok(t);
            }
            if Instant::now() > deadline {
                bail!(
                    "the scenario's cluster did not come up; see {}",
                    self.log().display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// A running replay cluster.
pub struct ScenarioCluster {
    /// Its state directory (for `chaos`, and the logs).
    pub global: GlobalArgs,
    pub target: Target,
    pub client: OperatorServiceClient<Channel>,
    _launcher: Launcher,
}

impl ScenarioCluster {
    /// Starts `fabricctl up --hosts HOSTS --cluster LABEL` with the [`FAST`]
    /// flags and `extra` (a flag in `extra` replaces the same one of
    /// [`FAST`]), and waits until its controller serves.
    pub async fn start(
        global: &GlobalArgs,
        label: &str,
        hosts: u32,
        extra: &[String],
    ) -> anyhow::Result<Self> {
        let state_dir =
            std::env::temp_dir().join(format!("fabric-scenario-{}-{label}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state_dir);
        std::fs::create_dir_all(&state_dir)
            .with_context(|| format!("cannot create {}", state_dir.display()))?;
        let exe = std::env::current_exe().context("cannot find the fabricctl executable")?;
        let mut args: Vec<String> = vec![
            "--state-dir".into(),
            state_dir.display().to_string(),
            "up".into(),
            "--hosts".into(),
            hosts.to_string(),
            "--cluster".into(),
            label.into(),
        ];
        for pair in FAST.chunks(2) {
            if !extra.iter().any(|e| e == pair[0]) {
                args.extend(pair.iter().map(|s| s.to_string()));
            }
        }
        args.extend(extra.iter().cloned());
        let log = std::fs::File::create(state_dir.join("launcher.log"))?;
        let child = Command::new(exe)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot start fabricctl up")?;
        let mut launcher = Launcher {
            child,
            state_dir: state_dir.clone(),
        };
        let global = GlobalArgs {
            state_dir,
            endpoint: None,
            ca: None,
            cert: None,
            key: None,
            server_name: global.server_name.clone(),
        };
        let target = launcher.wait_serving(&global).await?;
        // Watching the replay live is half the lesson.
        if let Some(url) = crate::context::Context::load(&global.state_dir)
            .ok()
            .flatten()
            .and_then(|c| c.dashboard)
        {
            crate::output::line(&format!("  (this phase's dashboard: {url})"));
        }
        Ok(Self {
            client: OperatorServiceClient::new(target.connect().await?),
            target,
            global,
            _launcher: launcher,
        })
    }

    pub async fn status(&mut self) -> anyhow::Result<ClusterStatus> {
        Ok(self
            .client
            .get_status(GetStatusRequest::default())
            .await
            .map_err(|s| self.target.rpc_error("GetStatus", &s))?
            .into_inner())
    }

    /// The events after sequence `after`, advancing it.
    pub async fn events_after(&mut self, after: &mut u64) -> anyhow::Result<Vec<ClusterEvent>> {
        let events = self
            .client
            .list_events(ListEventsRequest {
                after_sequence: *after,
                limit: 0,
            })
            .await
            .map_err(|s| self.target.rpc_error("ListEvents", &s))?
            .into_inner()
            .events;
        *after = events.iter().map(|e| e.sequence).max().unwrap_or(*after);
        Ok(events)
    }

    /// Deploys the definition file at `path`, as `fabricctl deploy` does.
    pub async fn deploy(&self, path: &Path) -> anyhow::Result<()> {
        let definition = crate::definition::load(path)?;
        crate::deploy::deploy(&self.target, definition).await?;
        Ok(())
    }

    /// Waits until all `hosts` servers are Ready, so a deployment is placed
    /// on all of them.
    pub async fn wait_ready(&mut self, hosts: usize) -> anyhow::Result<()> {
        self.wait_for(STARTUP, |status| {
            let ready = status
                .nodes
                .iter()
                .filter(|n| n.state == fabric_proto::v1::NodeState::Ready as i32)
                .count();
            (ready >= hosts)
                .then_some(())
                .ok_or_else(|| format!("only {ready} of {hosts} servers were Ready"))
        })
        .await?;
        Ok(())
    }

    /// Waits until `count` instances are Running with an endpoint.
    pub async fn wait_running(
        &mut self,
        count: usize,
        limit: Duration,
    ) -> anyhow::Result<ClusterStatus> {
        self.wait_for(limit, |status| {
            let running = running_instances(status).count();
            (running >= count)
                .then_some(())
                .ok_or_else(|| format!("only {running} of {count} instances were Running"))
        })
        .await
    }

    /// Polls status until `done` accepts it; after `limit`, fails with what
    /// `done` said was missing.
    async fn wait_for(
        &mut self,
        limit: Duration,
        done: impl Fn(&ClusterStatus) -> Result<(), String>,
    ) -> anyhow::Result<ClusterStatus> {
        let deadline = Instant::now() + limit;
        loop {
            let status = self.status().await?;
            let missing = match done(&status) {
                Ok(()) => return Ok(status),
                Err(missing) => missing,
            };
            if Instant::now() > deadline {
                bail!(
                    "{missing} after {}; see {}/logs",
                    humantime::format_duration(limit),
                    self.global.state_dir.display()
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The instances of `status` that are Running and have an endpoint.
pub fn running_instances(
    status: &ClusterStatus,
) -> impl Iterator<Item = &fabric_proto::v1::RoleInstanceStatus> {
    status
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .filter(|i| i.state == "Running" && !i.endpoint.is_empty())
}

/// When `e` happened.
pub fn event_time(e: &ClusterEvent) -> Option<SystemTime> {
    e.time.and_then(|t| SystemTime::try_from(t).ok())
}

/// How long after `start` the event `e` happened (zero if before, or if it
/// carries no time).
pub fn since(e: &ClusterEvent, start: SystemTime) -> Duration {
    event_time(e)
        .and_then(|at| at.duration_since(start).ok())
        .unwrap_or_default()
}

/// examples/web/service.toml, next to the executable's workspace or the
/// current directory.
pub fn example_definition() -> anyhow::Result<PathBuf> {
    let relative = Path::new(crate::up::EXAMPLE_DEFINITION);
    let mut candidates = vec![relative.to_owned()];
    if let Ok(exe) = std::env::current_exe() {
        for dir in exe.ancestors().skip(1) {
            candidates.push(dir.join(relative));
        }
    }
    candidates.into_iter().find(|p| p.is_file()).ok_or_else(|| {
        anyhow::anyhow!(
            "cannot find {} (run from the repository)",
            relative.display()
        )
    })
}
