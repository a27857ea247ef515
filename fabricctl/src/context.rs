//! `<state>/context.json`: what `fabricctl up` tells later commands.
//!
//! `status` and `events` run in other shells, possibly while `up` is
//! restarting processes; the context names the controller endpoint, the
//! admin TLS files and every process `up` runs, so they need no flags. It is
//! always replaced atomically (write a temporary file, then rename), so a
//! reader never sees half a file.

use crate::error::CtlError;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const FILE_NAME: &str = "context.json";

/// The contents of `context.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    pub cluster: String,
    /// Fabric controller URL, `https://ip:port`.
    pub endpoint: String,
    /// Name the controller certificate is verified against.
    pub server_name: String,
    /// Absolute path of the cluster CA certificate.
    pub ca: PathBuf,
    /// Absolute path of the admin certificate.
    pub cert: PathBuf,
    /// Absolute path of the admin key.
    pub key: PathBuf,
    /// Pid of the `fabricctl up` supervising the cluster; `None` once stopped.
    pub launcher_pid: Option<u32>,
    /// When `up` stopped the cluster (RFC 3339), if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopped_at: Option<String>,
    /// The launcher's `--restart-delay` in milliseconds (absent in contexts
    /// written by older launchers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_delay_ms: Option<u64>,
    /// What runs the cluster when no `fabricctl up` does, e.g.
    /// "docker-compose": commands then need no launcher to be alive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub managed_by: Option<String>,
    /// The controller's dashboard URL (http://ip:port/), if it serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dashboard: Option<String>,
    /// Every supervised process, controller first.
    pub processes: Vec<ProcessEntry>,
}

/// One supervised process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessEntry {
    pub name: String,
    /// Current pid; `None` while it waits to be restarted or after stop.
    pub pid: Option<u32>,
    pub log: PathBuf,
}

impl Context {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE_NAME)
    }

    /// Reads the context of `state_dir`; `Ok(None)` if there is none.
    /// Relative TLS paths are taken relative to `state_dir`, so a context
    /// written inside a container (see `fabricctl pki init`) works from
    /// wherever its directory is mounted.
    pub fn load(state_dir: &Path) -> Result<Option<Self>, CtlError> {
        let path = Self::path(state_dir);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(CtlError::BadContext {
                    path,
                    detail: e.to_string(),
                });
            }
        };
        let mut context: Self = serde_json::from_str(&text).map_err(|e| CtlError::BadContext {
            path,
            detail: e.to_string(),
        })?;
        for file in [&mut context.ca, &mut context.cert, &mut context.key] {
            if file.is_relative() {
                *file = state_dir.join(&*file);
            }
        }
        Ok(Some(context))
    }

    /// Writes the context atomically.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let path = Self::path(state_dir);
        let tmp = state_dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)
    }

    /// The launcher pid, if that process still exists.
    pub fn live_launcher(&self) -> Option<u32> {
        self.launcher_pid.filter(|&pid| pid_alive(pid))
    }

    /// Sets the pid of process `name`.
    pub fn set_pid(&mut self, name: &str, pid: Option<u32>) {
        if let Some(p) = self.processes.iter_mut().find(|p| p.name == name) {
            p.pid = pid;
        }
    }
}

/// Whether a process with this pid is running (a zombie is not).
pub fn pid_alive(pid: u32) -> bool {
    let Ok(raw) = i32::try_from(pid) else {
        return false;
    };
    if let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        return crate::up::reaper::parse_stat(&stat)
            .is_some_and(|(state, _)| state != 'Z' && state != 'X');
    }
    match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), None) {
        Ok(()) => true,
        // Exists but belongs to someone else.
        Err(nix::errno::Errno::EPERM) => true,
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Context {
        Context {
            cluster: "local".into(),
            endpoint: "https://127.0.0.1:40123".into(),
            server_name: "localhost".into(),
            ca: "/s/pki/ca.pem".into(),
            cert: "/s/pki/admin.pem".into(),
            key: "/s/pki/admin.key".into(),
            launcher_pid: Some(42),
            stopped_at: None,
            restart_delay_ms: Some(2000),
            managed_by: None,
            dashboard: None,
            processes: vec![
                ProcessEntry {
                    name: "fabric-controller".into(),
                    pid: Some(43),
                    log: "/s/logs/fabric-controller.log".into(),
                },
                ProcessEntry {
                    name: "host-1".into(),
                    pid: None,
                    log: "/s/logs/host-1.log".into(),
                },
            ],
        }
    }

    #[test]
    fn round_trip() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Context::load(dir.path()).unwrap(), None);
        let mut ctx = sample();
        ctx.save(dir.path()).unwrap();
        assert_eq!(Context::load(dir.path()).unwrap(), Some(ctx.clone()));
        ctx.set_pid("host-1", Some(44));
        ctx.save(dir.path()).unwrap();
        let back = Context::load(dir.path()).unwrap().unwrap();
        assert_eq!(back.processes[1].pid, Some(44));
        // Only context.json is left behind: the temporary file was renamed.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(FILE_NAME)]);
    }

    #[test]
    fn json_field_names() {
        let v = serde_json::to_value(sample()).unwrap();
        for key in [
            "cluster",
            "endpoint",
            "server_name",
            "ca",
            "cert",
            "key",
            "launcher_pid",
            "processes",
        ] {
            assert!(v.get(key).is_some(), "missing {key}");
        }
        assert_eq!(v["processes"][0]["name"], "fabric-controller");
        assert_eq!(v["processes"][0]["pid"], 43);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(FILE_NAME), "{").unwrap();
        let e = Context::load(dir.path()).unwrap_err().to_string();
        assert!(e.contains("context.json is unreadable"), "{e}");
    }

    #[test]
    fn liveness() {
        assert!(pid_alive(std::process::id()));
        assert!(!pid_alive(u32::MAX));
    }
}
