//! Keeping the cluster's processes running, like a small init system.
//!
//! The supervisor knows each process by its [`ChildSpec`]. When one exits it
//! says so in one line and, unless the cluster is stopping, starts it again
//! after the restart delay with the same arguments, keeping context.json's
//! pids current.
//!
//! A process powered off by `fabricctl chaos power-off` is not restarted:
//! the chaos command first creates `<state>/run/powered-off/<name>` (see
//! [`crate::chaos`]), then kills. The supervisor checks for that mark when
//! the process exits and again when its restart falls due; while the mark
//! exists the process stays down. Once `chaos power-on` removes the mark,
//! the supervisor starts the process at its next look (every
//! [`TICK`]). Marks are files rather than messages so they survive the
//! chaos command and need no channel to a launcher that may be busy.
//!
//! Shutdown sends SIGTERM to every child and reparented orphan,
//! waits for them, and SIGKILLs whatever is left after the grace period.

use crate::context::Context;
use crate::timefmt::now_clock;
use crate::up::child::{self, ChildSpec};
use crate::up::reaper;
use nix::sys::signal::Signal;
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;
use tokio::signal::unix::Signal as SignalStream;
use tokio::time::Instant;

/// Time children get to exit after SIGTERM before SIGKILL.
pub const GRACE: Duration = Duration::from_secs(5);
/// Time to wait for SIGKILLed processes to be reaped.
const KILL_WAIT: Duration = Duration::from_secs(3);
/// How often the supervisor looks for exits it missed and for power-off
/// marks that were removed.
pub const TICK: Duration = Duration::from_millis(250);

/// Prints one launcher line, timestamped like the event lines.
pub fn say(message: &str) {
    crate::output::line_lossy(&format!("{}  {message}", now_clock()));
}

struct Proc {
    spec: ChildSpec,
    pid: Option<Pid>,
    starts: u32,
    restart_at: Option<Instant>,
    last_exit: Option<String>,
    /// Down because of a power-off mark; started again once it is gone.
    powered_off: bool,
}

pub struct Supervisor {
    procs: Vec<Proc>,
    restart_delay: Duration,
    /// Restart processes that exit (off during startup, where an exit is fatal).
    restarting: bool,
    stopping: bool,
    context: Option<Context>,
    state_dir: PathBuf,
}

impl Supervisor {
    pub fn new(state_dir: PathBuf, restart_delay: Duration) -> Self {
        Self {
            procs: Vec::new(),
            restart_delay,
            restarting: false,
            stopping: false,
            context: None,
            state_dir,
        }
    }

    /// Registers a process without starting it; returns its index.
    pub fn add(&mut self, spec: ChildSpec) -> usize {
        self.procs.push(Proc {
            spec,
            pid: None,
            starts: 0,
            restart_at: None,
            last_exit: None,
            powered_off: false,
        });
        self.procs.len() - 1
    }

    pub fn pid(&self, idx: usize) -> Option<Pid> {
        self.procs[idx].pid
    }

    /// Starts process `idx` now: the first time as specified (address
    /// files of an earlier run removed), later on the addresses it bound
    /// (`ChildSpec::keep_bound`).
    pub fn start(&mut self, idx: usize) -> anyhow::Result<Pid> {
        let proc = &mut self.procs[idx];
        proc.restart_at = None;
        proc.spec.keep_bound_addresses(proc.starts == 0);
        let pid = child::spawn(&proc.spec, proc.starts + 1)?;
        proc.starts += 1;
        proc.pid = Some(pid);
        proc.last_exit = None;
        let name = proc.spec.name.clone();
        self.update_context(|ctx| ctx.set_pid(&name, Some(pid.as_raw() as u32)));
        Ok(pid)
    }

    /// Installs the context this supervisor keeps current, and saves it.
    pub fn set_context(&mut self, mut context: Context) {
        for p in &self.procs {
            context.set_pid(&p.spec.name, p.pid.map(|pid| pid.as_raw() as u32));
        }
        self.context = Some(context);
        self.update_context(|_| {});
    }

    fn update_context(&mut self, change: impl FnOnce(&mut Context)) {
        if let Some(ctx) = &mut self.context {
            change(ctx);
            if let Err(e) = ctx.save(&self.state_dir) {
                tracing::warn!("cannot write context.json: {e}");
                eprintln!("fabricctl: cannot write context.json: {e}");
            }
        }
    }

    /// Why process `idx` exited, if it has (reaps first).
    pub fn exit_of(&mut self, idx: usize) -> Option<String> {
        self.reap();
        let p = &self.procs[idx];
        match (&p.pid, &p.last_exit) {
            (None, Some(why)) => Some(format!(
                "{why}{}",
                child::last_log_line(&p.spec.log)
                    .map(|l| format!("; last log line: {l}"))
                    .unwrap_or_default()
            )),
            _ => None,
        }
    }

    /// Reaps every exited child and handles the ones we started.
    pub fn reap(&mut self) {
        for (pid, status) in reaper::reap_exited() {
            self.on_exit(pid, &status);
        }
    }

    fn on_exit(&mut self, pid: Pid, status: &WaitStatus) {
        let why = reaper::describe(status);
        let Some(idx) = self.procs.iter().position(|p| p.pid == Some(pid)) else {
            tracing::info!("reaped orphan pid {pid}: {why}");
            return;
        };
        let restart = self.restarting && !self.stopping;
        let delay = self.restart_delay;
        let marked = self.is_powered_off(&self.procs[idx].spec.name);
        let proc = &mut self.procs[idx];
        proc.pid = None;
        proc.last_exit = Some(why.clone());
        let name = proc.spec.name.clone();
        if restart && marked {
            proc.powered_off = true;
            say(&format!(
                "{name} (pid {pid}) exited: {why}; powered off, not restarting until `fabricctl chaos power-on {name}`"
            ));
        } else if restart {
            proc.restart_at = Some(Instant::now() + delay);
            say(&format!(
                "{name} (pid {pid}) exited: {why}; restarting in {}",
                humantime::format_duration(delay)
            ));
        } else {
            say(&format!("{name} (pid {pid}) exited: {why}"));
        }
        self.update_context(|ctx| ctx.set_pid(&name, None));
    }

    /// Whether `fabricctl chaos power-off` marked process `name`.
    fn is_powered_off(&self, name: &str) -> bool {
        self.state_dir
            .join("run")
            .join("powered-off")
            .join(name)
            .exists()
    }

    /// Starts the powered-off processes whose mark is gone.
    fn power_on_due(&mut self) {
        for idx in 0..self.procs.len() {
            let p = &self.procs[idx];
            if !p.powered_off || p.pid.is_some() || self.is_powered_off(&p.spec.name) {
                continue;
            }
            self.procs[idx].powered_off = false;
            let name = self.procs[idx].spec.name.clone();
            match self.start(idx) {
                Ok(pid) => say(&format!("{name} powered on: started (pid {pid})")),
                Err(e) => {
                    say(&format!(
                        "cannot start powered-on {name}: {}; retrying in {}",
                        crate::error::one_line(&e),
                        humantime::format_duration(self.restart_delay)
                    ));
                    self.procs[idx].restart_at = Some(Instant::now() + self.restart_delay);
                }
            }
        }
    }

    fn next_restart(&self) -> Option<Instant> {
        self.procs.iter().filter_map(|p| p.restart_at).min()
    }

    fn restart_due(&mut self) {
        let now = Instant::now();
        for idx in 0..self.procs.len() {
            if self.procs[idx].restart_at.is_some_and(|t| t <= now) {
                let name = self.procs[idx].spec.name.clone();
                if self.is_powered_off(&name) {
                    self.procs[idx].restart_at = None;
                    self.procs[idx].powered_off = true;
                    say(&format!(
                        "{name} is powered off; not restarting until `fabricctl chaos power-on {name}`"
                    ));
                    continue;
                }
                match self.start(idx) {
                    Ok(pid) => say(&format!("{name} restarted (pid {pid})")),
                    Err(e) => {
                        say(&format!(
                            "cannot restart {name}: {}; retrying in {}",
                            crate::error::one_line(&e),
                            humantime::format_duration(self.restart_delay)
                        ));
                        self.procs[idx].restart_at = Some(now + self.restart_delay);
                    }
                }
            }
        }
    }

    /// Supervises until a stop signal arrives; returns its name.
    pub async fn supervise(
        &mut self,
        stop: &mut crate::up::signals::StopSignals,
        sigchld: &mut SignalStream,
    ) -> &'static str {
        self.restarting = true;
        // SIGCHLD is the trigger; the tick guards against a lost one and
        // notices removed power-off marks.
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.reap();
            self.restart_due();
            self.power_on_due();
            let next = self.next_restart();
            tokio::select! {
                sig = stop.recv() => return sig,
                _ = sigchld.recv() => {}
                _ = tick.tick() => {}
                _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
            }
        }
    }

    /// Stops everything: SIGTERM to every child and orphan, SIGKILL after
    /// [`GRACE`], reaping all of them.
    pub async fn shutdown(&mut self, sigchld: &mut SignalStream) {
        self.stopping = true;
        for p in &mut self.procs {
            p.restart_at = None;
            p.powered_off = false;
        }
        let mut signalled: HashSet<Pid> = HashSet::new();
        let grace_end = Instant::now() + GRACE;
        let mut kill_end: Option<Instant> = None;
        loop {
            self.reap();
            let mut live = reaper::children_of_self();
            for p in &self.procs {
                if let Some(pid) = p.pid.filter(|pid| !live.contains(pid)) {
                    live.push(pid);
                }
            }
            if live.is_empty() {
                break;
            }
            let fresh: Vec<Pid> = live
                .iter()
                .copied()
                .filter(|pid| signalled.insert(*pid))
                .collect();
            if !fresh.is_empty() && kill_end.is_none() {
                for pid in &fresh {
                    reaper::signal(*pid, Signal::SIGTERM);
                }
            }
            let now = Instant::now();
            match kill_end {
                None if now >= grace_end => {
                    for pid in &live {
                        say(&format!(
                            "{} did not stop within {}s; sending SIGKILL",
                            self.describe_pid(*pid),
                            GRACE.as_secs()
                        ));
                        reaper::signal(*pid, Signal::SIGKILL);
                    }
                    kill_end = Some(now + KILL_WAIT);
                }
                Some(end) if now >= end => {
                    let names: Vec<String> = live.iter().map(|p| self.describe_pid(*p)).collect();
                    say(&format!("could not reap: {}", names.join(", ")));
                    break;
                }
                Some(_) => {
                    // Orphans reparented after the SIGKILL round get one too.
                    for pid in &fresh {
                        reaper::signal(*pid, Signal::SIGKILL);
                    }
                }
                None => {}
            }
            tokio::select! {
                _ = sigchld.recv() => {}
                _ = tokio::time::sleep(Duration::from_millis(50)) => {}
            }
        }
    }

    fn describe_pid(&self, pid: Pid) -> String {
        match self.procs.iter().find(|p| p.pid == Some(pid)) {
            Some(p) => format!("{} (pid {pid})", p.spec.name),
            None => format!("pid {pid}"),
        }
    }

    /// Marks the cluster stopped in context.json.
    pub fn finish(&mut self) {
        let stopped_at =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        self.update_context(|ctx| {
            ctx.launcher_pid = None;
            ctx.stopped_at = Some(stopped_at);
            for p in &mut ctx.processes {
                p.pid = None;
            }
        });
    }
}
