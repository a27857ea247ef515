//! Looking at processes through /proc: liveness, command lines, memory.

use std::path::Path;

/// State letter and parent pid of `pid`, from /proc/<pid>/stat.
pub fn stat(pid: u32) -> Option<(char, u32)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain anything.
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    Some((state, ppid))
}

/// Whether `pid` is a running process (a zombie or a missing pid is not).
pub fn alive(pid: u32) -> bool {
    stat(pid).is_some_and(|(state, _)| state != 'Z' && state != 'X')
}

/// The command line of `pid`, arguments joined by spaces; `None` if the
/// process is gone (or a zombie, whose command line is empty).
pub fn cmdline(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    if raw.is_empty() {
        return None;
    }
    let args: Vec<String> = raw
        .split(|&b| b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(args.join(" "))
}

/// Live processes (other than this one) whose command line mentions `path`.
pub fn mentioning(path: &Path) -> Vec<(u32, String)> {
    let needle = path.display().to_string();
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found: Vec<(u32, String)> = dir
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me && alive(pid))
        .filter_map(|pid| Some((pid, cmdline(pid)?)))
        .filter(|(_, cmd)| cmd.contains(&needle))
        .collect();
    found.sort();
    found
}

/// Resident set size of `pid` in KiB (VmRSS in /proc/<pid>/status).
pub fn vm_rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// Sends `signal` to `pid`; false if the process does not exist.
pub fn signal(pid: u32, signal: nix::sys::signal::Signal) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process() {
        let me = std::process::id();
        assert!(alive(me));
        assert!(cmdline(me).is_some());
        assert!(vm_rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(!alive(u32::MAX));
    }
}
