//! Packages of the fabric's own software built from this workspace's
//! binaries, for rollout tests: a directory with `package.toml` and the
//! files it names (links to the built host and guest agents).

use crate::bins;
use std::path::{Path, PathBuf};

/// What to put in a test package.
pub struct TestPackage<'a> {
    pub version: &'a str,
    pub host_agent: &'a str,
    pub guest_agent: &'a str,
    pub plugin: &'a str,
    /// Host agent versions the plugin declares.
    pub compatible: &'a [&'a str],
    pub host_agent_flags: &'a [&'a str],
    pub guest_agent_flags: &'a [&'a str],
    pub plugin_flags: &'a [&'a str],
}

fn list(items: &[&str]) -> String {
    serde_json::to_string(items).expect("strings serialize")
}

impl TestPackage<'_> {
    /// Writes the package under `parent/<version>` and returns its path.
    pub fn write(&self, parent: &Path) -> PathBuf {
        let dir = parent.join(self.version);
        std::fs::create_dir_all(&dir).expect("package dir");
        for (name, target) in [
            ("host-agent", bins::binary(bins::HOST_AGENT)),
            ("guest-agent", bins::binary(bins::GUEST_AGENT)),
            ("netplug", bins::binary(bins::NETPLUG)),
        ] {
            let link = dir.join(name);
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink(&target, &link).expect("link a binary");
        }
        let toml = format!(
            "version = {:?}\n\n[host_agent]\nversion = {:?}\nfile = \"host-agent\"\nflags = {}\n\n\
             [guest_agent]\nversion = {:?}\nfile = \"guest-agent\"\nflags = {}\n\n\
             [plugin]\nversion = {:?}\nfile = \"netplug\"\nflags = {}\ncompatible_host_agents = {}\n",
            self.version,
            self.host_agent,
            list(self.host_agent_flags),
            self.guest_agent,
            list(self.guest_agent_flags),
            self.plugin,
            list(self.plugin_flags),
            list(self.compatible),
        );
        std::fs::write(dir.join("package.toml"), toml).expect("package.toml");
        dir
    }
}
