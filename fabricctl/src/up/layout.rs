//! Where `fabricctl up` keeps things inside the state directory.
//!
//! ```text
//! <state>/context.json        how other commands find the cluster
//! <state>/pki/                cluster CA, controller, admin and host certs
//! <state>/run/                addr files written by the daemons, launcher lock
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
    }
}
