//! Reaping children and finding orphans.
//!
//! The launcher is a child subreaper (PR_SET_CHILD_SUBREAPER): when a host
//! agent dies, the processes it started (future VMs) are reparented to the
//! launcher instead of init. So the launcher reaps with waitpid(-1) — every
//! child, known or not — and at shutdown signals everything whose parent it
//! is, found in /proc.

use nix::errno::Errno;
use nix::sys::signal::Signal;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

/// Collects every child that has exited, without blocking.
pub fn reap_exited() -> Vec<(Pid, WaitStatus)> {
    let mut out = Vec::new();
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(Errno::ECHILD) => break,
            Ok(status) => {
                if let Some(pid) = status.pid() {
                    out.push((pid, status));
                }
            }
            Err(Errno::EINTR) => continue,
            Err(e) => {
                tracing::warn!("waitpid: {e}");
                break;
            }
        }
    }
    out
}

/// How a process ended: "exit status 1", "signal 9 (SIGKILL)".
pub fn describe(status: &WaitStatus) -> String {
    match *status {
        WaitStatus::Exited(_, code) => format!("exit status {code}"),
        WaitStatus::Signaled(_, sig, core) => format!(
            "signal {} ({}){}",
            sig as i32,
            sig.as_str(),
            if core { ", core dumped" } else { "" }
        ),
        other => format!("{other:?}"),
    }
}

/// Pids of live processes whose parent is this process (zombies excluded).
pub fn children_of_self() -> Vec<Pid> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| parse_stat(&stat))
                .is_some_and(|(state, ppid)| ppid == me && state != 'Z' && state != 'X')
        })
        .filter_map(|pid| i32::try_from(pid).ok().map(Pid::from_raw))
        .collect()
}

/// State and parent pid from a /proc/<pid>/stat line. The command name is in
/// parentheses and may itself contain spaces and parentheses.
pub fn parse_stat(stat: &str) -> Option<(char, u32)> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Sends `signal`, ignoring processes that are already gone.
pub fn signal(pid: Pid, signal: Signal) {
    match nix::sys::signal::kill(pid, signal) {
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(e) => tracing::warn!("cannot send {signal} to {pid}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_parsing() {
        assert_eq!(
            parse_stat("1234 (host agent) (x)) S 42 1234 1234 0 -1"),
            Some(('S', 42))
        );
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn descriptions() {
        let pid = Pid::from_raw(1);
        assert_eq!(describe(&WaitStatus::Exited(pid, 3)), "exit status 3");
        assert_eq!(
            describe(&WaitStatus::Signaled(pid, Signal::SIGKILL, false)),
            "signal 9 (SIGKILL)"
        );
    }
}
