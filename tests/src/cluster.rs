//! A real local cluster: `fabricctl up` as a child process, in a temp dir,
//! inspected with `fabricctl status -o json`.
//!
//! [`LocalCluster`] is a guard: dropping it (also while a test panics)
//! SIGKILLs the launcher's process group and every process whose command
//! line mentions the temp dir, then reaps the launcher. On a panic it first
//! prints the launcher's output and the tail of every daemon log.

use crate::{bins, procs};
use fabricctl::events::EventJson;
use fabricctl::status::{NodeJson, StatusJson};
use nix::sys::signal::Signal;
use std::collections::BTreeSet;
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How often [`LocalCluster::wait_for`] polls the status.
pub const POLL: Duration = Duration::from_millis(20);

/// Polls `check` every `every` until it returns `Ok`, or panics after
/// `limit` naming `what` and the last error.
pub fn poll_ok<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let last = match check() {
            Ok(v) => return v,
            Err(e) => e,
        };
        if Instant::now() > deadline {
            match last.is_empty() {
                true => panic!("timed out after {limit:?} waiting for {what}"),
                false => panic!("timed out after {limit:?} waiting for {what}; last: {last}"),
            }
        }
        std::thread::sleep(every);
    }
}

/// Polls `check` every `every` until it returns `Some`, or panics after
/// `limit` naming `what`. Blocking counterpart of [`crate::eventually`].
pub fn poll_until<T>(
    limit: Duration,
    every: Duration,
    what: &str,
    mut check: impl FnMut() -> Option<T>,
) -> T {
    poll_ok(limit, every, what, || check().ok_or_else(String::new))
}

/// `fabricctl up` running in a temp dir until dropped.
pub struct LocalCluster {
    /// Holds the state dir and the launcher's output; removed on drop.
    dir: TempDir,
    /// `<dir>/state`, passed as `--state-dir`.
    pub state_dir: PathBuf,
    /// The launcher's stdout and stderr.
    pub launcher_log: PathBuf,
    pub launcher_pid: u32,
    launcher: Option<Child>,
    fabricctl: PathBuf,
    /// Every pid seen: the launcher, controllers and host agents.
    seen: Mutex<BTreeSet<u32>>,
}

/// `fabricctl up` flags of a small, fast cluster running the example
/// service: 3 hosts, 200 ms heartbeats, 1 s node timeout, 300 ms guest
/// heartbeats; `grace` is the unresponsive grace.
pub fn fast_web_flags(grace: &str) -> Vec<String> {
    let definition = crate::services::example_file("service.toml");
    [
        "--hosts",
        "3",
        "--heartbeat-interval",
        "200ms",
        "--node-timeout",
        "1s",
        "--unresponsive-grace",
        grace,
        "--guest-heartbeat-interval",
        "300ms",
        "--guest-heartbeat-timeout",
        "2s",
        "--hi-threshold",
        "2",
        "--deploy",
        definition.to_str().expect("UTF-8 path"),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect()
}

impl LocalCluster {
    /// The dashboard URL `fabricctl up` recorded in the context.
    pub fn dashboard_url(&self) -> String {
        fabricctl::context::Context::load(&self.state_dir)
            .expect("context.json is readable")
            .and_then(|c| c.dashboard)
            .expect("fabricctl up records the dashboard URL")
    }

    /// Starts `fabricctl --state-dir <tmp>/state up <up_args>`.
    pub fn start(up_args: &[&str]) -> Self {
        let fabricctl = bins::fabricctl();
        let dir = tempfile::Builder::new()
            .prefix("fabric-cluster-")
            .tempdir()
            .expect("tempdir");
        let state_dir = dir.path().join("state");
        let launcher_log = dir.path().join("launcher.log");
        let out = File::create(&launcher_log).expect("create launcher log");
        let err = out.try_clone().expect("dup launcher log");
        let mut cmd = base_command(&fabricctl, &state_dir);
        cmd.arg("up")
            .args(up_args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            // Its own process group, so the guard can kill the group and a
            // Ctrl-C of `cargo test` does not reach it first.
            .process_group(0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", fabricctl.display()));
        let launcher_pid = child.id();
        Self {
            dir,
            state_dir,
            launcher_log,
            launcher_pid,
            launcher: Some(child),
            fabricctl,
            seen: Mutex::new(BTreeSet::from([launcher_pid])),
        }
    }

    /// Powers hollow host `name` off (`fabric-hollow`'s power file, under
    /// the `hosts/` directory `fabricctl up` gives it): its host agent
    /// stops and its VMs end, as in a power failure.
    pub fn power_off_hollow(&self, name: &str) {
        let mark = fabric_hollow::hosts::power_file(&self.state_dir.join("hosts").join(name));
        std::fs::write(&mark, b"").unwrap_or_else(|e| panic!("{}: {e}", mark.display()));
    }

    /// The pid `fabricctl up` recorded for process `name` (a controller
    /// replica, an etcd member, a host agent).
    pub fn pid_of(&self, name: &str) -> u32 {
        self.current_pid(name)
            .unwrap_or_else(|| panic!("no pid recorded for {name}"))
    }

    /// The pid of process `name` now; `None` while the launcher waits to
    /// restart it.
    pub fn current_pid(&self, name: &str) -> Option<u32> {
        fabricctl::context::Context::load(&self.state_dir)
            .expect("context.json is readable")
            .expect("fabricctl up wrote a context")
            .processes
            .iter()
            .find(|p| p.name == name)
            .and_then(|p| p.pid)
    }

    /// The controller replica that leads in `status` (`fabricctl up
    /// --replicas`): its process name and pid. Replica i (from 1) is the
    /// i-th address of the context's endpoint.
    pub fn leader_process(&self, status: &StatusJson) -> (String, u32) {
        let context = fabricctl::context::Context::load(&self.state_dir)
            .expect("context.json is readable")
            .expect("fabricctl up wrote a context");
        let leader = &status
            .replication
            .as_ref()
            .expect("a controller with replicas")
            .leader;
        let index = context
            .endpoint
            .split(',')
            .position(|e| e == leader)
            .unwrap_or_else(|| panic!("leader {leader} is not in {}", context.endpoint));
        let name = format!("fabric-controller-{}", index + 1);
        let pid = self.pid_of(&name);
        (name, pid)
    }

    /// The temp dir holding everything of this cluster.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A `fabricctl --state-dir <state>` command, ready for a subcommand.
    pub fn command(&self) -> Command {
        base_command(&self.fabricctl, &self.state_dir)
    }

    /// Runs `fabricctl --state-dir <state> <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run fabricctl")
    }

    /// [`LocalCluster::run`], which must succeed (its stderr otherwise).
    pub fn run_ok(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "fabricctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// `fabricctl status -o json`, parsed; records every pid it names.
    pub fn status(&self) -> Result<StatusJson, String> {
        let out = self.run(&["status", "-o", "json"]);
        if !out.status.success() {
            return Err(format!(
                "fabricctl status: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let status: StatusJson = serde_json::from_slice(&out.stdout).map_err(|e| {
            format!(
                "unparsable status JSON ({e}): {}",
                String::from_utf8_lossy(&out.stdout)
            )
        })?;
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.insert(status.controller_pid);
        seen.extend(status.nodes.iter().map(|n| n.pid).filter(|&p| p != 0));
        Ok(status)
    }

    /// `fabricctl events -o json`, one parsed object per line.
    pub fn events(&self) -> Result<Vec<EventJson>, String> {
        let out = self.run(&["events", "-o", "json"]);
        if !out.status.success() {
            return Err(format!(
                "fabricctl events: {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).map_err(|e| format!("bad event line {l:?}: {e}")))
            .collect()
    }

    /// Polls [`Self::status`] until `done` holds; panics after `limit`
    /// with the last status or error, or at once if the launcher exited.
    pub fn wait_for(
        &mut self,
        limit: Duration,
        what: &str,
        mut done: impl FnMut(&StatusJson) -> bool,
    ) -> StatusJson {
        let deadline = Instant::now() + limit;
        let mut last;
        loop {
            match self.status() {
                Ok(s) if done(&s) => return s,
                Ok(s) => last = format!("{s:#?}"),
                Err(e) => last = e,
            }
            if let Some(exit) = self.try_wait() {
                panic!("fabricctl up exited ({exit}) while waiting for {what}; last: {last}");
            }
            if Instant::now() > deadline {
                panic!("timed out after {limit:?} waiting for {what}; last: {last}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until `hosts` nodes are all Ready.
    pub fn wait_ready(&mut self, hosts: usize, limit: Duration) -> StatusJson {
        self.wait_for(limit, &format!("{hosts} Ready nodes"), |s| {
            s.nodes.len() == hosts && s.nodes.iter().all(|n| n.state == "Ready")
        })
    }

    /// The launcher's exit status, if it has exited (reaps it).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.launcher.as_mut()?.try_wait().ok().flatten()
    }

    /// Sends SIGTERM to the launcher and waits up to `limit` for it to exit;
    /// `None` if it is still running then.
    pub fn terminate(&mut self, limit: Duration) -> Option<ExitStatus> {
        procs::signal(self.launcher_pid, Signal::SIGTERM);
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Every pid seen so far (launcher, controllers, host agents).
    pub fn seen_pids(&self) -> Vec<u32> {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.iter().copied().collect()
    }

    /// Pids seen earlier that still belong to a live process of this
    /// cluster (alive, with the temp dir on its command line, so a recycled
    /// pid is not blamed).
    pub fn surviving_seen_pids(&self) -> Vec<(u32, String)> {
        let root = self.root().display().to_string();
        self.seen_pids()
            .into_iter()
            .filter(|&pid| procs::alive(pid))
            .filter_map(|pid| Some((pid, procs::cmdline(pid)?)))
            .filter(|(_, cmd)| cmd.contains(&root))
            .collect()
    }

    /// Live processes whose command line mentions the temp dir.
    pub fn leftovers(&self) -> Vec<(u32, String)> {
        procs::mentioning(self.root())
    }

    /// The launcher's output and the last lines of every daemon log.
    pub fn diagnostics(&self) -> String {
        let mut out = format!(
            "=== fabricctl up output ({}) ===\n{}\n",
            self.launcher_log.display(),
            std::fs::read_to_string(&self.launcher_log).unwrap_or_default()
        );
        let logs = self.state_dir.join("logs");
        let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
            .map(|d| d.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            out.push_str(&format!(
                "=== {} (last {} lines) ===\n{}\n",
                f.display(),
                tail.len(),
                tail.join("\n")
            ));
        }
        out
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.diagnostics());
        }
        // The launcher's group, then anything still mentioning our dir (the
        // daemons are in process groups of their own).
        if let Ok(raw) = i32::try_from(self.launcher_pid) {
            let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(raw), Signal::SIGKILL);
        }
        for (pid, _) in self.leftovers() {
            procs::signal(pid, Signal::SIGKILL);
        }
        if let Some(mut child) = self.launcher.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn base_command(fabricctl: &Path, state_dir: &Path) -> Command {
    let mut cmd = Command::new(fabricctl);
    cmd.arg("--state-dir")
        .arg(state_dir)
        .env(bins::ENV, bins::bin_dir())
        .env_remove("FABRIC_STATE_DIR")
        .env_remove("FABRIC_ENDPOINT");
    cmd
}

/// The node called `id` in `status`.
pub fn node<'a>(status: &'a StatusJson, id: &str) -> Option<&'a NodeJson> {
    status.nodes.iter().find(|n| n.id == id)
}
