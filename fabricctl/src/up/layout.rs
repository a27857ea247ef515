//! Where `fabricctl up` keeps things inside the state directory.
//!
//! ```text
//! <state>/context.json        how other commands find the cluster
//! <state>/pki/                cluster CA, controller, admin and host certs
//! <state>/run/                addr files written by the daemons, launcher lock
//! <state>/run/powered-off/<node>   `fabricctl chaos power-off` marks: the
//!                             supervisor does not restart that host agent
//! <state>/logs/<name>.log     stdout+stderr of each process, appended
//! <state>/controller/         the controller's --state-dir
//! <state>/hosts/host-N/       each host agent's --state-dir
//! ```

use anyhow::Context as _;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone)]
pub struct StateLayout {
    /// Absolute path of the state directory.
    pub root: PathBuf,
}

impl StateLayout {
    /// Makes `dir` absolute and creates the directories `up` writes to.
    pub fn create(dir: &Path) -> anyhow::Result<Self> {
        let root = std::path::absolute(dir)
            .with_context(|| format!("invalid state directory {}", dir.display()))?;
        let layout = Self { root };
        for d in [layout.pki(), layout.run(), layout.logs()] {
            std::fs::create_dir_all(&d)
                .with_context(|| format!("cannot create {}", d.display()))?;
        }
        Ok(layout)
    }

    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }
    pub fn run(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.run().join("launcher.lock")
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.logs().join(format!("{name}.log"))
    }
    /// Where `fabricctl chaos power-off` leaves its marks.
    pub fn powered_off_dir(&self) -> PathBuf {
        self.run().join("powered-off")
    }
    /// The mark of a powered-off process (`host-2`): while it exists the
    /// supervisor does not restart that process.
    pub fn powered_off_mark(&self, name: &str) -> PathBuf {
        self.powered_off_dir().join(name)
    }
    /// Removes every power-off mark (a new `up`, or one stopping, starts
    /// with every server powered on); returns the names that were marked.
    pub fn clear_powered_off(&self) -> Vec<String> {
        let dir = self.powered_off_dir();
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        let _ = std::fs::remove_dir_all(&dir);
        names
    }
    pub fn addr_file(&self, name: &str) -> PathBuf {
        self.run().join(format!("{name}.addr"))
    }
    pub fn controller_state(&self) -> PathBuf {
        self.root.join("controller")
    }
    pub fn host_state(&self, node: &str) -> PathBuf {
        self.root.join("hosts").join(node)
    }
}

/// The node id of host agent number `i` (1-based).
pub fn host_name(i: u32) -> String {
    format!("host-{i}")
}

/// Hollow hosts are named with this prefix and a number from 1.
pub const HOLLOW_PREFIX: &str = "hollow-";

/// The node id of hollow host number `i` (1-based).
pub fn hollow_name(i: u32) -> String {
    format!("{HOLLOW_PREFIX}{i}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_absolute() {
        let dir = tempfile::tempdir().unwrap();
        let l = StateLayout::create(&dir.path().join("s")).unwrap();
        assert!(l.root.is_absolute());
        assert!(l.logs().is_dir() && l.run().is_dir() && l.pki().is_dir());
        assert_eq!(l.log("host-1"), l.root.join("logs/host-1.log"));
        assert_eq!(l.addr_file("fc"), l.root.join("run/fc.addr"));
        assert_eq!(host_name(3), "host-3");
        assert_eq!(
            l.powered_off_mark("host-2"),
            l.root.join("run/powered-off/host-2")
        );
    }
}
