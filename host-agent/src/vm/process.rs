//! Guest agent processes: spawning `guest-agent run`, killing, reaping, and
//! the files a VM leaves on disk (its directory, log and pid file).
//!
//! Each guest agent runs in a process group of its own, so a SIGKILL to the
//! group takes down anything it started, and a Ctrl-C aimed at the host
//! agent's group does not reach it: VMs are separate machines and outlive
//! their host agent. Every child is waited on by a reaper task, so none
//! lingers as a zombie.
//!
//! A guest agent re-adopted by a restarted host agent is no longer its child
//! (it was reparented to the launcher's subreaper or to init, which reap it):
//! it is watched through /proc by pid, and killed by process group only
//! while /proc still shows it as that VM's guest agent (pids are reused).

use crate::config::RoleEndpoints;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use std::io;
use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use thiserror::Error;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

/// The files of one VM under the host's state directory.
#[derive(Clone, Debug)]
pub struct VmPaths {
    /// `<state>/vms/<vm_id>/`: the VM's disk, wiped on stop and reinitialize.
    pub vm_dir: PathBuf,
    /// `<state>/vms/<vm_id>.json`: the VM's record (see [`super::persist`]),
    /// which lets a later host agent re-adopt or clean up.
    pub record_file: PathBuf,
    /// `<state>/vm-logs/<vm_id>.<incarnation>.log`: survives wipes.
    pub log_file: PathBuf,
}

impl VmPaths {
    pub fn new(state_dir: &Path, vm_id: &str, incarnation: u64) -> Self {
        let vms = state_dir.join("vms");
        Self {
            vm_dir: vms.join(vm_id),
            record_file: vms.join(format!("{vm_id}.json")),
            log_file: state_dir
                .join("vm-logs")
                .join(format!("{vm_id}.{incarnation}.log")),
        }
    }
}

/// A VM id becomes a directory name, so it must be one plain path component.
pub fn valid_vm_id(vm_id: &str) -> bool {
    !vm_id.is_empty()
        && vm_id.len() <= 200
        && !vm_id.starts_with('.')
        && vm_id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
}

#[derive(Debug, Error)]
pub enum ProcessError {
    #[error("cannot prepare {path}: {source}")]
    Files { path: PathBuf, source: io::Error },
    #[error("cannot start {bin}: {source}")]
    Spawn { bin: PathBuf, source: io::Error },
}

/// What to start: one guest agent for one VM incarnation.
#[derive(Clone, Debug)]
pub struct LaunchSpec {
    pub vm_id: String,
    pub incarnation: u64,
    pub paths: VmPaths,
    /// Which guest agent: Fabric's, or Azure's WALinuxAgent.
    pub guest: fabric_core::Guest,
}

/// A started guest agent.
#[derive(Clone, Debug)]
pub struct GuestProcess {
    /// Also its process group id. `None` for launchers without processes.
    pub pid: Option<u32>,
    /// Set by the reaper once the process has exited and been waited for;
    /// from then on its pid may belong to someone else and must not be
    /// signalled.
    exited: Arc<AtomicBool>,
    /// Set for a re-adopted guest agent (not our child): the VM id and
    /// incarnation /proc must still show before it may be signalled.
    adopted: Option<(String, u64)>,
    /// An in-process guest (a hollow host's, see [`super::runtime`]): killing
    /// the VM aborts its task.
    task: Option<tokio::task::AbortHandle>,
}

impl GuestProcess {
    /// A process-less guest (for launchers that only pretend).
    pub fn detached() -> Self {
        Self {
            pid: None,
            exited: Arc::new(AtomicBool::new(true)),
            adopted: None,
            task: None,
        }
    }

    /// A guest that is a task of this process: killing the VM aborts it.
    pub fn task(handle: tokio::task::AbortHandle) -> Self {
        Self {
            task: Some(handle),
            ..Self::detached()
        }
    }

    /// Also ends `task` when the VM is killed (a waagent VM's bridge, see
    /// [`super::waagent`]).
    pub fn with_task(mut self, task: tokio::task::AbortHandle) -> Self {
        self.task = Some(task);
        self
    }

    /// Set once the process has exited and been reaped.
    pub fn exited_flag(&self) -> Arc<AtomicBool> {
        self.exited.clone()
    }

    /// A guest agent left running by an earlier host agent: watched through
    /// /proc every second (its exit is only logged, as for a child). Needs
    /// a tokio runtime.
    pub fn adopted(pid: u32, vm_id: &str, incarnation: u64) -> Self {
        let exited = Arc::new(AtomicBool::new(false));
        let watched = exited.clone();
        let vm = vm_id.to_owned();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                if watched.load(Ordering::Acquire) {
                    return;
                }
                if !is_guest_agent_of(pid, &vm, Some(incarnation)) {
                    watched.store(true, Ordering::Release);
                    tracing::info!(vm = %vm, incarnation, pid, "re-adopted guest agent exited");
                    return;
                }
            }
        });
        Self {
            pid: Some(pid),
            exited,
            adopted: Some((vm_id.to_owned(), incarnation)),
            task: None,
        }
    }

    /// SIGKILL to the guest agent's process group (or the end of an
    /// in-process guest's task).
    pub fn kill(&self) {
        if let Some(task) = &self.task {
            task.abort();
        }
        let Some(pid) = self.pid else { return };
        if self.exited.load(Ordering::Acquire) {
            return;
        }
        if let Some((vm_id, incarnation)) = &self.adopted {
            if !is_guest_agent_of(pid, vm_id, Some(*incarnation)) {
                self.exited.store(true, Ordering::Release);
                return;
            }
            // Not our child: nobody here reaps it; stop watching.
            self.exited.store(true, Ordering::Release);
        }
        match killpg(Pid::from_raw(pid as i32), Signal::SIGKILL) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(e) => tracing::warn!(pid, "cannot kill guest agent process group: {e}"),
        }
    }
}

/// Starts guest agents. A trait so the VM manager can be tested without
/// processes.
pub trait Launcher: Send + Sync {
    /// Starts the guest agent of `spec` with the one-time `token`. The VM
    /// directory exists already.
    fn launch(&self, spec: &LaunchSpec, token: &str) -> Result<GuestProcess, ProcessError>;

    /// The runner of waagent VMs, if this launcher has one (rotations of
    /// their certificates go through it).
    fn waagent(&self) -> Option<Arc<super::waagent::Waagent>> {
        None
    }
}

/// Starts real `guest-agent run` processes.
#[derive(Clone, Debug)]
pub struct ProcessLauncher {
    pub bin: PathBuf,
    /// The GuestService URL, https://IP:PORT.
    pub host_agent_url: String,
    pub host_agent_name: String,
    /// The cluster CA certificate (public).
    pub ca: PathBuf,
    pub node: String,
    pub listen_ip: IpAddr,
    /// Where role endpoints bind and what they report.
    pub role: RoleEndpoints,
    /// The guests' clock: this instant at `Instant`, advancing with it.
    pub guest_now: Option<(OffsetDateTime, Instant)>,
    pub leap_day_bug: bool,
    pub silent_failures: bool,
    pub boot_time: Duration,
    /// One user per VM (see [`super::users`]); `None`: the host agent's.
    pub vm_users: Option<Arc<super::users::VmUsers>>,
    /// Appended to every guest agent's arguments (a package's flags).
    pub extra_args: Vec<String>,
    /// Runs the VMs of roles with `guest = "waagent"`; `None`: this server
    /// has no waagent, and such VMs fail to start, saying so.
    pub waagent: Option<Arc<super::waagent::Waagent>>,
}

impl ProcessLauncher {
    fn args(&self, spec: &LaunchSpec, ca: &Path) -> Vec<String> {
        let mut args: Vec<String> = vec![
            "run".into(),
            "--vm-id".into(),
            spec.vm_id.clone(),
            "--incarnation".into(),
            spec.incarnation.to_string(),
            "--host-agent".into(),
            self.host_agent_url.clone(),
            "--host-agent-name".into(),
            self.host_agent_name.clone(),
            "--ca".into(),
            ca.display().to_string(),
            "--vm-dir".into(),
            spec.paths.vm_dir.display().to_string(),
            "--node".into(),
            self.node.clone(),
            "--listen-ip".into(),
            self.listen_ip.to_string(),
        ];
        if let Some(ip) = self.role.listen_ip {
            args.extend(["--role-listen-ip".into(), ip.to_string()]);
        }
        if let Some((min, max)) = self.role.ports {
            args.extend([
                "--role-port-min".into(),
                min.to_string(),
                "--role-port-max".into(),
                max.to_string(),
            ]);
        }
        if let Some(ip) = self.role.advertise_ip {
            args.extend(["--role-advertise-ip".into(), ip.to_string()]);
        }
        if let Some((start, at)) = self.guest_now {
            // The clock advances in real time, so a guest spawned a minute
            // after the host agent starts a minute later (e.g. crossing into
            // Feb 29).
            let now = start + at.elapsed();
            if let Ok(text) = now.format(&Rfc3339) {
                args.extend(["--now".into(), text]);
            }
        }
        if self.leap_day_bug {
            args.push("--leap-day-bug".into());
        }
        if self.silent_failures {
            args.push("--silent-failures".into());
        }
        if !self.boot_time.is_zero() {
            args.extend([
                "--boot-time".into(),
                humantime::format_duration(self.boot_time).to_string(),
            ]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

impl Launcher for ProcessLauncher {
    fn launch(&self, spec: &LaunchSpec, token: &str) -> Result<GuestProcess, ProcessError> {
        if spec.guest == fabric_core::Guest::Waagent {
            let Some(waagent) = &self.waagent else {
                return Err(ProcessError::Spawn {
                    bin: PathBuf::from("waagent"),
                    source: io::Error::other(
                        "the role's guest is waagent, and this server has none (install \
                         Debian's waagent package, or name it with --waagent)",
                    ),
                });
            };
            // Azure's agent runs as the host agent's user: it expects root
            // (its log is /var/log/waagent.log), so VM users apply to
            // Fabric's guests only.
            return waagent.launch(spec, token, |program, args| {
                let mut command = tokio::process::Command::new(&program);
                command.args(args);
                spawn_vm_process(spec, command, &program)
            });
        }
        let mut command = tokio::process::Command::new(&self.bin);
        let mut ca = self.ca.clone();
        if let Some(users) = &self.vm_users {
            let uid = users.user_of(&spec.vm_id);
            ca = users
                .prepare(&spec.paths.vm_dir, uid, &self.ca)
                .map_err(|source| ProcessError::Files {
                    path: spec.paths.vm_dir.clone(),
                    source,
                })?;
            // As root, std also drops every supplementary group.
            command.uid(uid).gid(uid);
        }
        command
            .args(self.args(spec, &ca))
            // In the environment, not argv: argv is visible to every user in ps.
            .env("FABRIC_GUEST_TOKEN", token);
        spawn_vm_process(spec, command, &self.bin)
    }

    fn waagent(&self) -> Option<Arc<super::waagent::Waagent>> {
        self.waagent.clone()
    }
}

/// Spawns a VM's process from `command`: output appended to the VM's log,
/// stdin closed, a process group of its own (see the module doc), and a
/// reaper that only logs the exit.
fn spawn_vm_process(
    spec: &LaunchSpec,
    mut command: tokio::process::Command,
    bin: &Path,
) -> Result<GuestProcess, ProcessError> {
    let log_path = &spec.paths.log_file;
    let files = |source| ProcessError::Files {
        path: log_path.clone(),
        source,
    };
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).map_err(files)?;
    }
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log_path)
        .map_err(files)?;
    let log_err = log.try_clone().map_err(files)?;
    command
        .stdin(std::process::Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| ProcessError::Spawn {
        bin: bin.to_owned(),
        source,
    })?;
    let pid = child.id();
    let exited = Arc::new(AtomicBool::new(false));
    let reaped = exited.clone();
    let (vm_id, incarnation) = (spec.vm_id.clone(), spec.incarnation);
    // The reaper: the exit is only logged. The host agent does not treat
    // it as a verdict (a VM's OS keeps running when its agent dies); the
    // timeouts decide.
    tokio::spawn(async move {
        let status = child.wait().await;
        reaped.store(true, Ordering::Release);
        match status {
            Ok(status) => {
                tracing::info!(vm = %vm_id, incarnation, %status, "guest agent exited")
            }
            Err(e) => tracing::warn!(vm = %vm_id, incarnation, "waiting for guest agent: {e}"),
        }
    });
    Ok(GuestProcess {
        pid,
        exited,
        adopted: None,
        task: None,
    })
}

/// Creates the VM directory (empty).
pub fn create_vm_dir(paths: &VmPaths) -> Result<(), ProcessError> {
    wipe(paths);
    std::fs::create_dir_all(&paths.vm_dir).map_err(|source| ProcessError::Files {
        path: paths.vm_dir.clone(),
        source,
    })
}

/// Removes the VM directory and its record. A just-killed process may still
/// be creating files for an instant, so one failed attempt is retried.
pub fn wipe(paths: &VmPaths) {
    for attempt in 0..2 {
        match std::fs::remove_dir_all(&paths.vm_dir) {
            Ok(()) => break,
            Err(e) if e.kind() == io::ErrorKind::NotFound => break,
            Err(e) if attempt == 1 => {
                tracing::warn!(dir = %paths.vm_dir.display(), "cannot wipe VM directory: {e}")
            }
            Err(_) => {}
        }
    }
    let _ = std::fs::remove_file(&paths.record_file);
}

/// At start, after re-adoption: kills guest agents named by pid files of
/// host agents from before VM records (`<vm_id>.pid`), and wipes every VM
/// directory and record not in `keep` (the re-adopted VMs). Returns the VM
/// ids cleaned up.
pub fn cleanup_leftovers(state_dir: &Path, keep: &[String]) -> Vec<String> {
    let vms = state_dir.join("vms");
    let Ok(entries) = std::fs::read_dir(&vms) else {
        return Vec::new();
    };
    let mut cleaned = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()).map(str::to_owned) else {
            continue;
        };
        if let Some(vm_id) = name.strip_suffix(".pid") {
            if let Some(pid) = std::fs::read_to_string(&path)
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                && is_guest_agent_of(pid, vm_id, None)
            {
                tracing::info!(vm = %vm_id, pid, "killing guest agent left by an earlier host agent");
                kill_group(pid);
            }
            let _ = std::fs::remove_file(&path);
            cleaned.push(vm_id.to_owned());
        } else if let Some(vm_id) = name.strip_suffix(".json") {
            if !keep.iter().any(|k| k == vm_id) {
                let _ = std::fs::remove_file(&path);
                cleaned.push(vm_id.to_owned());
            }
        } else if path.is_dir()
            && !keep.contains(&name)
            && let Err(e) = std::fs::remove_dir_all(&path)
        {
            tracing::warn!(dir = %path.display(), "cannot wipe leftover VM directory: {e}");
        }
    }
    cleaned.sort();
    cleaned.dedup();
    cleaned
}

/// SIGKILL to process group `pid` (a guest agent leads its own group).
pub fn kill_group(pid: u32) {
    let Ok(raw) = i32::try_from(pid) else { return };
    match killpg(Pid::from_raw(raw), Signal::SIGKILL) {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!(pid, "cannot kill guest agent process group: {e}"),
    }
}

/// Whether process `pid` is a live guest agent running `vm_id` (and, if
/// given, `incarnation`), judged by its command line, `guest-agent run ...
/// --vm-id <vm_id> --incarnation <n>` (pids are reused, so a stale record
/// may name anyone; a zombie's command line is empty).
pub fn is_guest_agent_of(pid: u32, vm_id: &str, incarnation: Option<u64>) -> bool {
    if pid == 0 || i32::try_from(pid).is_err() {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let names_agent = args.first().is_some_and(|a| {
        Path::new(std::ffi::OsStr::from_bytes(a))
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("guest-agent"))
    });
    let flag = |name: &str| {
        args.windows(2)
            .find(|w| w[0] == name.as_bytes())
            .map(|w| w[1])
    };
    let names_vm = flag("--vm-id") == Some(vm_id.as_bytes());
    let names_incarnation =
        incarnation.is_none_or(|n| flag("--incarnation") == Some(n.to_string().as_bytes()));
    names_agent && names_vm && names_incarnation
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_ids_are_single_path_components() {
        assert!(valid_vm_id("web.frontend.0"));
        assert!(valid_vm_id("a-b_c.1"));
        for bad in ["", ".", "..", "../x", "a/b", ".hidden", "a b"] {
            assert!(!valid_vm_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn paths_follow_the_contract() {
        let p = VmPaths::new(Path::new("/s"), "web.frontend.0", 3);
        assert_eq!(p.vm_dir, Path::new("/s/vms/web.frontend.0"));
        assert_eq!(p.record_file, Path::new("/s/vms/web.frontend.0.json"));
        assert_eq!(p.log_file, Path::new("/s/vm-logs/web.frontend.0.3.log"));
    }

    #[test]
    fn cleanup_wipes_dirs_and_spares_unrelated_pids() {
        let dir = tempfile::tempdir().unwrap();
        let paths = VmPaths::new(dir.path(), "web.frontend.0", 1);
        create_vm_dir(&paths).unwrap();
        std::fs::write(paths.vm_dir.join("secret.pem"), "x").unwrap();
        // Our own pid: alive, but not a guest agent, so it must survive.
        let pid_file = dir.path().join("vms/web.frontend.0.pid");
        std::fs::write(&pid_file, format!("{}\n", std::process::id())).unwrap();
        std::fs::write(&paths.record_file, "{}").unwrap();
        std::fs::create_dir_all(dir.path().join("vms/orphan")).unwrap();
        let kept = VmPaths::new(dir.path(), "web.api.0", 1);
        create_vm_dir(&kept).unwrap();
        std::fs::write(&kept.record_file, "{}").unwrap();
        let cleaned = cleanup_leftovers(dir.path(), &["web.api.0".to_owned()]);
        assert_eq!(cleaned, vec!["web.frontend.0".to_owned()]);
        assert!(!paths.vm_dir.exists() && !pid_file.exists() && !paths.record_file.exists());
        assert!(!dir.path().join("vms/orphan").exists());
        assert!(kept.vm_dir.exists() && kept.record_file.exists());
    }

    #[tokio::test]
    async fn spawns_in_its_own_group_kills_and_reaps() {
        let dir = tempfile::tempdir().unwrap();
        // A stand-in guest agent: a shell script that records its argv and
        // token, then sleeps.
        let bin = dir.path().join("guest-agent");
        std::fs::write(
            &bin,
            "#!/bin/sh\necho \"args: $*\"\necho \"token-len: ${#FABRIC_GUEST_TOKEN}\"\nexec sleep 30\n",
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let launcher = ProcessLauncher {
            bin,
            host_agent_url: "https://127.0.0.1:1".into(),
            host_agent_name: "localhost".into(),
            ca: dir.path().join("ca.pem"),
            node: "host-1".into(),
            listen_ip: "127.0.0.1".parse().unwrap(),
            role: RoleEndpoints::default(),
            vm_users: None,
            extra_args: Vec::new(),
            guest_now: Some((
                OffsetDateTime::parse("2012-02-28T23:59:00Z", &Rfc3339).unwrap(),
                Instant::now(),
            )),
            leap_day_bug: true,
            silent_failures: false,
            boot_time: Duration::from_millis(1500),
            waagent: None,
        };
        let spec = LaunchSpec {
            guest: Default::default(),
            vm_id: "web.frontend.0".into(),
            incarnation: 2,
            paths: VmPaths::new(dir.path(), "web.frontend.0", 2),
        };
        create_vm_dir(&spec.paths).unwrap();
        let process = launcher.launch(&spec, &"ab".repeat(32)).unwrap();
        let pid = process.pid.unwrap();
        let log = &spec.paths.log_file;
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        let text = loop {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            if text.contains("token-len") || Instant::now() > deadline {
                break text;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        };
        assert!(
            text.contains("run --vm-id web.frontend.0 --incarnation 2"),
            "{text}"
        );
        assert!(text.contains("--now 2012-02-28T23:59:"), "{text}");
        assert!(text.contains("--leap-day-bug"), "{text}");
        assert!(text.contains("--boot-time 1s 500ms"), "{text}");
        assert!(text.contains("token-len: 64"), "{text}");
        assert!(!text.contains(&"ab".repeat(32)), "the token is not in argv");
        // Its own process group.
        assert_eq!(
            nix::unistd::getpgid(Some(Pid::from_raw(pid as i32))).unwrap(),
            Pid::from_raw(pid as i32)
        );
        process.kill();
        let deadline = Instant::now() + std::time::Duration::from_secs(5);
        while !process.exited.load(Ordering::Acquire) {
            assert!(Instant::now() < deadline, "not reaped");
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        // Reaped: no zombie left in /proc.
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
        // Killing again is harmless.
        process.kill();
    }
}
