//! Finding the workspace's binaries from a test or bench executable.
//!
//! `FABRIC_BIN_DIR` wins if set; otherwise the binaries are next to the
//! running executable: a test runs from `target/<profile>/deps`, so its
//! parent `target/<profile>` holds them; a binary such as `fabric-bench`
//! already lives in `target/<profile>`.

use std::path::{Path, PathBuf};

pub const ENV: &str = "FABRIC_BIN_DIR";
pub const FABRICCTL: &str = "fabricctl";
pub const CONTROLLER: &str = "fabric-controller";
pub const HOST_AGENT: &str = "host-agent";
pub const GUEST_AGENT: &str = "guest-agent";
pub const NETPLUG: &str = "fabric-netplug";

/// The directory holding `fabricctl`, `fabric-controller`, `host-agent` and
/// `guest-agent`.
pub fn bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os(ENV).filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot locate the running executable");
    let dir = exe.parent().expect("executable has no parent directory");
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.parent().unwrap_or(dir).to_owned()
    } else {
        dir.to_owned()
    }
}

/// The path of binary `name` in [`bin_dir`]; panics, saying how to build
/// it, if it is missing.
pub fn binary(name: &str) -> PathBuf {
    let dir = bin_dir();
    let path = dir.join(name);
    if !path.is_file() {
        panic!("{}", missing_message(name, &dir));
    }
    path
}

/// Every daemon binary `fabricctl up` needs (host agents start guest agents
/// for their VMs), checked to exist; returns the path of `fabricctl`.
pub fn fabricctl() -> PathBuf {
    for name in [CONTROLLER, HOST_AGENT, GUEST_AGENT, NETPLUG] {
        binary(name);
    }
    binary(FABRICCTL)
}

fn missing_message(name: &str, dir: &Path) -> String {
    let release = dir.file_name().is_some_and(|n| n == "release");
    format!(
        "{name} not found in {}: run `cargo build{} --workspace --bins` first (or set {ENV})",
        dir.display(),
        if release { " --release" } else { "" }
    )
}
