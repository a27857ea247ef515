//! `fabricctl chaos`: faults by name on a local cluster.
//!
//! | verb | what it does | who brings it back |
//! |---|---|---|
//! | `power-off NODE` | SIGKILL the host agent, then every VM (guest agent) of NODE | `power-on NODE` |
//! | `power-on NODE` | removes the power-off mark; `up` starts the host agent | - |
//! | `kill-agent NODE` | SIGKILL the host agent only; its VMs keep running | `up`, after its restart delay |
//! | `kill-guest INSTANCE` | SIGKILL one role instance's guest agent | the host agent (guest heartbeat timeout) |
//! | `pause NODE` / `resume NODE` | SIGSTOP / SIGCONT the host agent and its VMs | - |
//! | `kill-fc` | SIGKILL the fabric controller | `up`, after its restart delay |
//!
//! Every verb prints one line saying what it did, with pids.
//!
//! **The control channel** between this command and the launcher is a
//! directory of marker files, `<state>/run/powered-off/<node>`. `power-off`
//! creates the mark *before* it kills, so the supervisor (see
//! [`crate::up::supervisor`]) always finds it when it reaps the host agent,
//! or when a pending restart falls due, and keeps the node down.
//! `power-on` removes the mark; the supervisor notices within its tick
//! (250 ms) and starts the host agent, and `power-on` waits until
//! context.json names the new pid. A file needs no listener in the launcher,
//! cannot be lost while the launcher is busy, and is easy to inspect (`ls`).
//! `fabricctl up` clears the marks when it starts and when it stops.
//!
//! **Finding processes.** The host agents and the controller come from
//! context.json (the launcher keeps their pids current). A node's VMs are
//! found in /proc: processes whose command line is `guest-agent run ...
//! --node NODE --vm-dir <state>/hosts/NODE/vms/<vm>` (the flags
//! `host-agent/src/vm/process.rs` passes), so they are found even after
//! their host agent died (they are then the launcher's children) or while
//! the controller is down. `kill-guest` takes the instance's pid from
//! `fabricctl status` and checks the process's command line names it. Every
//! pid is checked against its command line before it is signalled, so a
//! recycled pid is never hit.

use crate::cli::{ChaosCommand, GlobalArgs};
use crate::context::{self, Context};
use crate::error::CtlError;
use crate::output;
use crate::status::StatusJson;
use crate::target::Target;
use crate::up::layout::StateLayout;
use crate::up::{CONTROLLER_NAME, supervisor};
use anyhow::Context as _;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::path::Path;
use std::time::{Duration, Instant};

/// How long `power-on` waits for the launcher to start the host agent.
pub const POWER_ON_WAIT: Duration = Duration::from_secs(10);
/// How often `power-on` looks at context.json meanwhile.
const POLL: Duration = Duration::from_millis(50);
/// Rounds of "find the node's VMs and signal them" (a VM forked just before
/// its host agent died may exec a moment later).
const SWEEPS: usize = 3;

pub async fn run(global: &GlobalArgs, command: &ChaosCommand) -> anyhow::Result<()> {
    output::line(&inject(global, command).await?);
    Ok(())
}

/// Injects one fault into the local cluster of `global`'s state directory
/// and says what it did (the scenarios use this too).
pub async fn inject(global: &GlobalArgs, command: &ChaosCommand) -> anyhow::Result<String> {
    let local = Local::open(global)?;
    Ok(match command {
        ChaosCommand::PowerOff(a) => local.power_off(&a.node)?,
        ChaosCommand::PowerOn(a) => local.power_on(&a.node).await?,
        ChaosCommand::KillAgent(a) => local.kill_agent(&a.node)?,
        ChaosCommand::Pause(a) => local.pause(&a.node)?,
        ChaosCommand::Resume(a) => local.resume(&a.node)?,
        ChaosCommand::KillFc => local.kill_fc()?,
        ChaosCommand::KillGuest(a) => local.kill_guest(global, &a.instance).await?,
    })
}

/// One guest agent (VM) process found in /proc.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestProc {
    pub pid: u32,
    pub vm_id: String,
    pub incarnation: Option<u64>,
}

/// A local cluster whose launcher is running.
struct Local {
    layout: StateLayout,
    ctx: Context,
}

impl Local {
    fn open(global: &GlobalArgs) -> anyhow::Result<Self> {
        let root = std::path::absolute(&global.state_dir)
            .with_context(|| format!("invalid state directory {}", global.state_dir.display()))?;
        let Some(ctx) = Context::load(&root)? else {
            return Err(CtlError::NotLocal { state_dir: root }.into());
        };
        // The state directory as `up` spelled it in the daemons' flags
        // (<root>/logs/<name>.log), so paths compare equal whichever way
        // this command was given it.
        let root = ctx
            .processes
            .first()
            .and_then(|p| p.log.parent()?.parent())
            .map_or(root, Path::to_owned);
        let layout = StateLayout { root };
        if let Some(managed_by) = ctx.managed_by.clone() {
            return Err(CtlError::ManagedElsewhere {
                cluster: ctx.cluster,
                state_dir: layout.root,
                managed_by,
            }
            .into());
        }
        if ctx
            .live_launcher()
            .filter(|&pid| crate::up::is_fabricctl(pid))
            .is_none()
        {
            return Err(CtlError::LauncherNotRunning {
                cluster: ctx.cluster,
                state_dir: layout.root,
            }
            .into());
        }
        Ok(Self { layout, ctx })
    }

    fn restart_delay(&self) -> String {
        self.ctx.restart_delay_ms.map_or_else(
            || "its restart delay".to_owned(),
            |ms| {
                format!(
                    "its restart delay ({})",
                    humantime::format_duration(Duration::from_millis(ms))
                )
            },
        )
    }

    /// Checks `node` is one of the cluster's host agents.
    fn node(&self, node: &str) -> anyhow::Result<()> {
        if node != CONTROLLER_NAME && self.ctx.processes.iter().any(|p| p.name == node) {
            Ok(())
        } else {
            Err(CtlError::NoSuchNode { node: node.into() }.into())
        }
    }

    fn powered_off(&self, node: &str) -> bool {
        self.layout.powered_off_mark(node).exists()
    }

    fn refuse_powered_off(&self, node: &str) -> anyhow::Result<()> {
        if self.powered_off(node) {
            return Err(chaos(format!(
                "{node} is powered off (`fabricctl chaos power-on {node}` first)"
            )));
        }
        Ok(())
    }

    /// The live host agent of `node`, as context.json names it.
    fn host_agent(&self, node: &str) -> Option<u32> {
        let pid = self.ctx.processes.iter().find(|p| p.name == node)?.pid?;
        let state_dir = self.layout.host_state(node);
        let args = cmdline(pid)?;
        let is_it = names_program(&args, "host-agent")
            && flag(&args, "--state-dir").is_some_and(|d| Path::new(d) == state_dir);
        is_it.then_some(pid)
    }

    fn require_host_agent(&self, node: &str) -> anyhow::Result<u32> {
        self.host_agent(node).ok_or_else(|| {
            chaos(format!(
                "the host agent of {node} is not running (`fabricctl up` restarts it after {})",
                self.restart_delay()
            ))
        })
    }

    /// The VMs (guest agent processes) of `node`.
    fn guests(&self, node: &str) -> Vec<GuestProc> {
        guests_of(&self.layout.host_state(node), node)
    }

    /// The networking plugin of `node`, if one runs: the pid its host agent
    /// recorded, if that process still names the node's bindings file.
    fn plugin(&self, node: &str) -> Option<u32> {
        let dir = self.layout.host_state(node).join("netplug");
        let pid: u32 = std::fs::read_to_string(dir.join("pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let bindings = dir.join("bindings.json").display().to_string();
        cmdline(pid)
            .is_some_and(|args| args.contains(&bindings))
            .then_some(pid)
    }

    fn power_off(&self, node: &str) -> anyhow::Result<String> {
        self.node(node)?;
        if self.powered_off(node) {
            return Err(chaos(format!(
                "{node} is already powered off (`fabricctl chaos power-on {node}` powers it on)"
            )));
        }
        // The mark first: the supervisor must find it when it reaps.
        let mark = self.layout.powered_off_mark(node);
        std::fs::create_dir_all(self.layout.powered_off_dir())
            .and_then(|()| {
                std::fs::write(
                    &mark,
                    format!(
                        "powered off by fabricctl chaos (pid {}) at {}\n",
                        std::process::id(),
                        humantime::format_rfc3339_millis(std::time::SystemTime::now())
                    ),
                )
            })
            .with_context(|| format!("cannot write {}", mark.display()))?;
        // The host agent first, so it cannot react to its VMs dying.
        let host = self.host_agent(node);
        if let Some(pid) = host {
            signal(pid, Signal::SIGKILL, false);
        }
        let vms = self.sweep(node, Signal::SIGKILL, |_| true);
        // The server's network goes with it.
        let plugin = self.plugin(node);
        if let Some(pid) = plugin {
            signal(pid, Signal::SIGKILL, false);
        }
        Ok(format!(
            "power-off {node}: SIGKILLed {} and {}{}; `fabricctl up` keeps {node} off until `fabricctl chaos power-on {node}`",
            host.map_or("no host agent (it was not running)".to_owned(), |pid| {
                format!("host agent (pid {pid})")
            }),
            describe_vms(&vms),
            plugin.map_or(String::new(), |pid| format!(
                " and its networking plugin (pid {pid})"
            ))
        ))
    }

    /// Signals every VM of `node` that `pick` selects, looking again until a
    /// look finds none new; returns what it signalled.
    fn sweep(&self, node: &str, sig: Signal, pick: impl Fn(&GuestProc) -> bool) -> Vec<GuestProc> {
        let mut done: Vec<GuestProc> = Vec::new();
        for round in 0..SWEEPS {
            let fresh: Vec<GuestProc> = self
                .guests(node)
                .into_iter()
                .filter(|g| pick(g) && !done.iter().any(|d| d.pid == g.pid))
                .collect();
            if fresh.is_empty() && round > 0 {
                break;
            }
            for g in &fresh {
                signal(g.pid, sig, true);
            }
            done.extend(fresh);
            std::thread::sleep(Duration::from_millis(20));
        }
        done.sort_by(|a, b| a.vm_id.cmp(&b.vm_id));
        done
    }

    async fn power_on(&self, node: &str) -> anyhow::Result<String> {
        self.node(node)?;
        let mark = self.layout.powered_off_mark(node);
        if !mark.exists() {
            return Err(chaos(format!(
                "{node} is not powered off (`fabricctl chaos power-off {node}` powers it off)"
            )));
        }
        std::fs::remove_file(&mark).with_context(|| format!("cannot remove {}", mark.display()))?;
        let deadline = Instant::now() + POWER_ON_WAIT + supervisor::TICK;
        loop {
            let ctx = Context::load(&self.layout.root)?;
            let pid = ctx
                .as_ref()
                .and_then(|c| c.processes.iter().find(|p| p.name == node))
                .and_then(|p| p.pid)
                .filter(|&pid| context::pid_alive(pid));
            if let Some(pid) = pid {
                return Ok(format!(
                    "power-on {node}: `fabricctl up` started its host agent (pid {pid}); it registers with a new boot id \
                     (if {node} went to Human Investigate meanwhile, `fabricctl node repair {node}` returns it to service)"
                ));
            }
            if Instant::now() >= deadline {
                return Ok(format!(
                    "power-on {node}: mark cleared, but `fabricctl up` has not started its host agent within {}s \
                     (it may be waiting out {}); see {}",
                    POWER_ON_WAIT.as_secs(),
                    self.restart_delay(),
                    self.layout.log(node).display()
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn kill_agent(&self, node: &str) -> anyhow::Result<String> {
        self.node(node)?;
        self.refuse_powered_off(node)?;
        let pid = self.require_host_agent(node)?;
        signal(pid, Signal::SIGKILL, false);
        let vms = self.guests(node).len();
        Ok(format!(
            "kill-agent {node}: SIGKILLed host agent (pid {pid}); its {vms} VM{} keep{} running; \
             `fabricctl up` restarts it after {}",
            if vms == 1 { "" } else { "s" },
            if vms == 1 { "s" } else { "" },
            self.restart_delay()
        ))
    }

    fn pause(&self, node: &str) -> anyhow::Result<String> {
        self.node(node)?;
        self.refuse_powered_off(node)?;
        let pid = self.require_host_agent(node)?;
        signal(pid, Signal::SIGSTOP, false);
        let vms = self.sweep(node, Signal::SIGSTOP, |_| true);
        // A hung server's network hangs too.
        if let Some(plugin) = self.plugin(node) {
            signal(plugin, Signal::SIGSTOP, false);
        }
        Ok(format!(
            "pause {node}: SIGSTOPped host agent (pid {pid}) and {}; `fabricctl chaos resume {node}` continues them",
            describe_vms(&vms)
        ))
    }

    fn resume(&self, node: &str) -> anyhow::Result<String> {
        self.node(node)?;
        self.refuse_powered_off(node)?;
        let pid = self.require_host_agent(node)?;
        let host_stopped = stopped(pid);
        let vms_stopped = self.guests(node).iter().any(|g| stopped(g.pid));
        if !host_stopped && !vms_stopped {
            return Err(chaos(format!(
                "{node} is not paused (`fabricctl chaos pause {node}` pauses it)"
            )));
        }
        // The VMs first, so the host agent never runs while they cannot
        // answer it.
        let vms = self.sweep(node, Signal::SIGCONT, |_| true);
        if let Some(plugin) = self.plugin(node) {
            signal(plugin, Signal::SIGCONT, false);
        }
        signal(pid, Signal::SIGCONT, false);
        Ok(format!(
            "resume {node}: SIGCONTed {} and host agent (pid {pid})",
            describe_vms(&vms)
        ))
    }

    fn kill_fc(&self) -> anyhow::Result<String> {
        let pid = self
            .ctx
            .processes
            .iter()
            .find(|p| p.name == CONTROLLER_NAME)
            .and_then(|p| p.pid)
            .filter(|&pid| cmdline(pid).is_some_and(|a| names_program(&a, CONTROLLER_NAME)))
            .ok_or_else(|| {
                chaos(format!(
                    "the fabric controller is not running (`fabricctl up` restarts it after {})",
                    self.restart_delay()
                ))
            })?;
        signal(pid, Signal::SIGKILL, false);
        Ok(format!(
            "kill-fc: SIGKILLed the fabric controller (pid {pid}); `fabricctl up` restarts it at {} after {}",
            self.ctx.endpoint,
            self.restart_delay()
        ))
    }

    async fn kill_guest(&self, global: &GlobalArgs, instance: &str) -> anyhow::Result<String> {
        let target = Target::controller(global)?;
        let status = StatusJson::from_proto(&crate::status::fetch(&target).await?);
        let Some(i) = status
            .deployments
            .iter()
            .flat_map(|d| &d.instances)
            .find(|i| i.id == instance)
        else {
            return Err(chaos(format!(
                "no role instance {instance} in this cluster (see `fabricctl status` for instance ids)"
            )));
        };
        if i.pid == 0 {
            return Err(chaos(format!(
                "role instance {instance} has no guest agent process (it is {})",
                i.state
            )));
        }
        let is_it = cmdline(i.pid).is_some_and(|a| {
            names_program(&a, "guest-agent") && flag(&a, "--vm-id") == Some(instance)
        });
        if !is_it {
            return Err(chaos(format!(
                "pid {} of role instance {instance} is not its guest agent on this machine (gone already?)",
                i.pid
            )));
        }
        signal(i.pid, Signal::SIGKILL, true);
        Ok(format!(
            "kill-guest {instance}: SIGKILLed its guest agent (pid {}, incarnation {}) on {}; \
             its host agent reinitializes the VM once the guest heartbeat timeout passes",
            i.pid, i.incarnation, i.node
        ))
    }
}

fn chaos(message: String) -> anyhow::Error {
    CtlError::Chaos(message).into()
}

/// "2 VMs: web.api.0 (pid 10), web.frontend.1 (pid 11)" or "no VMs".
fn describe_vms(vms: &[GuestProc]) -> String {
    if vms.is_empty() {
        return "no VMs".to_owned();
    }
    let list: Vec<String> = vms
        .iter()
        .map(|g| format!("{} (pid {})", g.vm_id, g.pid))
        .collect();
    format!(
        "{} VM{}: {}",
        vms.len(),
        if vms.len() == 1 { "" } else { "s" },
        list.join(", ")
    )
}

/// The arguments of `pid` (argv); `None` if it is gone or a zombie.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    Some(
        raw.split(|&b| b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// Whether argv[0] is the program `name` (by file name).
fn names_program(args: &[String], name: &str) -> bool {
    args.first()
        .and_then(|a| Path::new(a).file_name())
        .is_some_and(|f| f == name)
}

/// The value after `--flag` in `args`.
fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    let i = args.iter().position(|a| a == name)?;
    args.get(i + 1).map(String::as_str)
}

/// Whether `args` is `guest-agent run ... --node NODE --vm-dir <under host_state>`.
pub fn is_guest_of(args: &[String], host_state: &Path, node: &str) -> bool {
    names_program(args, "guest-agent")
        && args.get(1).is_some_and(|a| a == "run")
        && flag(args, "--node") == Some(node)
        && flag(args, "--vm-dir").is_some_and(|d| Path::new(d).starts_with(host_state))
}

/// Live guest agents of `node` whose VM directories are under `host_state`.
pub fn guests_of(host_state: &Path, node: &str) -> Vec<GuestProc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<GuestProc> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| context::pid_alive(pid))
        .filter_map(|pid| {
            let args = cmdline(pid)?;
            is_guest_of(&args, host_state, node).then(|| GuestProc {
                pid,
                vm_id: flag(&args, "--vm-id").unwrap_or("?").to_owned(),
                incarnation: flag(&args, "--incarnation").and_then(|i| i.parse().ok()),
            })
        })
        .collect();
    found.sort_by_key(|g| g.pid);
    found
}

/// Whether `pid` is stopped (state T or t in /proc/<pid>/stat).
pub fn stopped(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| crate::up::reaper::parse_stat(&s))
        .is_some_and(|(state, _)| matches!(state, 'T' | 't'))
}

/// Sends `sig` to `pid`, or to its process group if `group` and it leads
/// one (each guest agent does); a process already gone is fine.
fn signal(pid: u32, sig: Signal, group: bool) {
    let Ok(raw) = i32::try_from(pid) else { return };
    let target = Pid::from_raw(raw);
    let leads_group = group && nix::unistd::getpgid(Some(target)).is_ok_and(|g| g == target);
    let result = if leads_group {
        nix::sys::signal::killpg(target, sig)
    } else {
        nix::sys::signal::kill(target, sig)
    };
    match result {
        Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {sig} to pid {pid}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn guest_command_lines() {
        let host = Path::new("/s/hosts/host-2");
        let g = args(
            "/t/guest-agent run --vm-id web.api.0 --incarnation 2 --host-agent https://x --node host-2 \
             --vm-dir /s/hosts/host-2/vms/web.api.0 --listen-ip 127.0.0.1",
        );
        assert!(is_guest_of(&g, host, "host-2"));
        assert_eq!(flag(&g, "--vm-id"), Some("web.api.0"));
        // Another node, another cluster, another program, another command.
        assert!(!is_guest_of(&g, host, "host-20"));
        assert!(!is_guest_of(&g, Path::new("/other/hosts/host-2"), "host-2"));
        assert!(!is_guest_of(
            &args("/t/host-agent run --node host-2 --vm-dir /s/hosts/host-2/vms/a"),
            host,
            "host-2"
        ));
        assert!(!is_guest_of(
            &args("/t/guest-agent make-transfer-cert --node host-2 --vm-dir /s/hosts/host-2/vms/a"),
            host,
            "host-2"
        ));
        // host-2 is not a prefix of host-20's directory (path components).
        assert!(!is_guest_of(
            &args("/t/guest-agent run --node host-2 --vm-dir /s/hosts/host-20/vms/a"),
            host,
            "host-2"
        ));
    }

    #[test]
    fn vm_lists() {
        assert_eq!(describe_vms(&[]), "no VMs");
        let g = |pid, id: &str| GuestProc {
            pid,
            vm_id: id.into(),
            incarnation: Some(1),
        };
        assert_eq!(describe_vms(&[g(7, "a.b.0")]), "1 VM: a.b.0 (pid 7)");
        assert_eq!(
            describe_vms(&[g(7, "a.b.0"), g(8, "a.b.1")]),
            "2 VMs: a.b.0 (pid 7), a.b.1 (pid 8)"
        );
    }

    #[test]
    fn this_process_is_running_and_named() {
        let me = std::process::id();
        assert!(!stopped(me));
        assert!(cmdline(me).is_some());
        assert!(cmdline(u32::MAX).is_none());
    }

    #[tokio::test]
    async fn errors_without_a_running_cluster() {
        let dir = tempfile::tempdir().unwrap();
        let global = |d: &Path| GlobalArgs {
            state_dir: d.to_owned(),
            endpoint: None,
            ca: None,
            cert: None,
            key: None,
            server_name: None,
        };
        let cmd = ChaosCommand::KillFc;
        let e = run(&global(dir.path()), &cmd)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("not a local cluster: no context.json in "),
            "{e}"
        );
        let ctx = Context {
            cluster: "c".into(),
            endpoint: "https://127.0.0.1:1".into(),
            server_name: "localhost".into(),
            ca: "/ca".into(),
            cert: "/cert".into(),
            key: "/key".into(),
            launcher_pid: None,
            stopped_at: Some("2024-01-01T00:00:00Z".into()),
            restart_delay_ms: None,
            managed_by: None,
            dashboard: None,
            processes: vec![],
        };
        ctx.save(dir.path()).unwrap();
        let e = run(&global(dir.path()), &cmd)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("the launcher of cluster \"c\" in ")
                && e.ends_with(" is not running (start it with `fabricctl up`)"),
            "{e}"
        );
        assert!(!e.contains('\n'));
        let compose = Context {
            managed_by: Some("docker-compose".into()),
            dashboard: None,
            stopped_at: None,
            ..ctx
        };
        compose.save(dir.path()).unwrap();
        let e = run(&global(dir.path()), &cmd)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("is run by docker-compose, not `fabricctl up`"),
            "{e}"
        );
    }
}
