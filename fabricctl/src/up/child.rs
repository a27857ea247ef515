//! Starting one supervised process.
//!
//! Every child gets: its own process group (a Ctrl-C in the terminal reaches
//! only the launcher, which then stops children in order), stdin from
//! /dev/null, stdout and stderr appended to its log file, and
//! PR_SET_PDEATHSIG=SIGTERM so it dies with the launcher even if the launcher
//! is SIGKILLed and cannot clean up.

use anyhow::Context as _;
use nix::sys::signal::Signal;
use nix::unistd::Pid;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Everything needed to (re)start a process the same way.
#[derive(Debug, Clone)]
pub struct ChildSpec {
    /// "fabric-controller", "host-1", ...
    pub name: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    pub log: PathBuf,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Address file the process writes once listening; removed before each
    /// start so a stale address is never mistaken for the new one.
    pub addr_file: Option<PathBuf>,
    /// Listen flags kept across restarts: (flag, the file the process
    /// writes that listener's bound address to). Started with port 0, the
    /// process is restarted on the address it bound before, so host agents
    /// find the controller again and the dashboard and /metrics URLs stay
    /// the same.
    pub keep_bound: Vec<(&'static str, PathBuf)>,
}

impl ChildSpec {
    /// Replaces the value of `--flag` (or appends `--flag value`).
    pub fn set_flag(&mut self, flag: &str, value: &str) {
        match self.args.iter().position(|a| a == flag) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_owned(),
            _ => self.args.extend([flag.to_owned(), value.to_owned()]),
        }
    }

    /// Before a start: the first time, removes the `keep_bound` address
    /// files an earlier run left (their ports may be anyone's now); later,
    /// sets each `keep_bound` flag to the address the process wrote.
    pub fn keep_bound_addresses(&mut self, first_start: bool) {
        for (flag, file) in self.keep_bound.clone() {
            if first_start {
                let _ = std::fs::remove_file(&file);
            } else if let Some(addr) = super::ready::read_addr_file(&file) {
                self.set_flag(flag, &addr.to_string());
            }
        }
    }

    /// The command line as one readable string (for the log header).
    pub fn command_line(&self) -> String {
        std::iter::once(self.program.display().to_string())
            .chain(self.args.iter().cloned())
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Starts `spec` and returns its pid. The child is never waited for here:
/// the supervisor reaps every child (and orphan) with waitpid(-1).
pub fn spawn(spec: &ChildSpec, attempt: u32) -> anyhow::Result<Pid> {
    if let Some(addr) = &spec.addr_file {
        match std::fs::remove_file(addr) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", addr.display())),
        }
    }
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("cannot open log {}", spec.log.display()))?;
    let _ = writeln!(
        log,
        "--- fabricctl: starting {} (start #{attempt}) at {}: {}",
        spec.name,
        humantime::format_rfc3339_millis(std::time::SystemTime::now()),
        spec.command_line()
    );
    let stderr = log.try_clone().context("cannot duplicate log file")?;
    let launcher = nix::unistd::getpid();
    let mut cmd = Command::new(&spec.program);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(stderr)
        .process_group(0);
    // SAFETY: the closure runs between fork and exec and only makes
    // async-signal-safe system calls (prctl, getppid); it allocates only on
    // the error path, after which the child exits without exec.
    unsafe {
        cmd.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // The launcher may have died between fork and prctl: then the
            // death signal was never armed, so give up now.
            if nix::unistd::getppid() != launcher {
                return Err(std::io::Error::other("launcher exited during spawn"));
            }
            Ok(())
        });
    }
    let child = cmd
        .spawn()
        .with_context(|| format!("cannot start {} ({})", spec.name, spec.program.display()))?;
    let pid = Pid::from_raw(i32::try_from(child.id()).context("pid out of range")?);
    // Dropping a std Child neither kills nor waits for it.
    drop(child);
    Ok(pid)
}

/// The last non-empty line of a log file, to quote in startup errors.
pub fn last_log_line(path: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("--- fabricctl:"))
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_keeps_the_bound_address() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("x-http.addr");
        let mut spec = ChildSpec {
            name: "x".into(),
            program: "/bin/x".into(),
            args: vec!["--http-listen".into(), "127.0.0.1:0".into()],
            log: "/tmp/x.log".into(),
            env: vec![],
            addr_file: None,
            keep_bound: vec![("--http-listen", file.clone())],
        };
        // An earlier run's address is not this run's.
        std::fs::write(&file, "127.0.0.1:4000").unwrap();
        spec.keep_bound_addresses(true);
        assert!(!file.exists());
        assert_eq!(spec.args[1], "127.0.0.1:0");
        // Not written yet (it died before binding): port 0 again.
        spec.keep_bound_addresses(false);
        assert_eq!(spec.args[1], "127.0.0.1:0");
        // Bound and written: restarted there.
        std::fs::write(&file, "127.0.0.1:4321").unwrap();
        spec.keep_bound_addresses(false);
        assert_eq!(spec.args[1], "127.0.0.1:4321");
    }

    #[test]
    fn set_flag_replaces_or_appends() {
        let mut spec = ChildSpec {
            name: "x".into(),
            program: "/bin/x".into(),
            args: vec!["--listen".into(), "127.0.0.1:0".into(), "--a".into()],
            log: "/tmp/x.log".into(),
            env: vec![],
            addr_file: None,
            keep_bound: vec![],
        };
        spec.set_flag("--listen", "127.0.0.1:7400");
        assert_eq!(spec.args[1], "127.0.0.1:7400");
        spec.set_flag("--b", "1");
        assert_eq!(spec.args[3..], ["--b".to_owned(), "1".to_owned()]);
        assert_eq!(
            spec.command_line(),
            "/bin/x --listen 127.0.0.1:7400 --a --b 1"
        );
    }
}
