//! Finding the daemon binaries `fabricctl up` runs.
//!
//! Cargo puts every binary of the workspace in one directory (target/debug or
//! target/release), so the daemons live next to fabricctl. `FABRIC_BIN_DIR`
//! overrides that, e.g. for an installed layout or tests.

use anyhow::{Context as _, bail};
use std::path::{Path, PathBuf};

pub const ENV: &str = "FABRIC_BIN_DIR";
pub const CONTROLLER: &str = "fabric-controller";
pub const HOST_AGENT: &str = "host-agent";
pub const NETPLUG: &str = "fabric-netplug";
pub const HOLLOW: &str = "fabric-hollow";

/// The directory holding the daemon binaries.
pub fn bin_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os(ENV).filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    let exe = std::env::current_exe().context("cannot locate the fabricctl executable")?;
    exe.parent()
        .map(Path::to_owned)
        .context("fabricctl executable has no parent directory")
}

/// The path of binary `name` in `dir`, checked to exist.
pub fn find(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    if !path.is_file() {
        bail!(
            "{name} not found in {} (build it with `cargo build`, or set {ENV})",
            dir.display()
        );
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let e = find(dir.path(), CONTROLLER).unwrap_err().to_string();
        assert!(e.starts_with("fabric-controller not found in "), "{e}");
        std::fs::write(dir.path().join(CONTROLLER), "").unwrap();
        assert!(find(dir.path(), CONTROLLER).is_ok());
    }
}
