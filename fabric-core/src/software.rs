//! The fabric's own software: packages, what each server runs, and whether
//! a networking plugin declares itself compatible with a host agent.
//!
//! The 2012 postmortem's secondary outage: seven clusters were repaired by a
//! package holding an older host agent and a newer networking plugin; "the
//! two were incompatible", and every VM of those clusters lost its network.
//! Here a package names the host agent versions its plugin works with, and
//! the core refuses a package (at `package add` and at `update start`) whose
//! plugin does not name the host agent it would run beside.
//!
//! Only public facts live here (versions, digests, sizes, flags): the
//! artifacts' bytes are the controller shell's to keep.

use std::fmt;

/// Longest version text accepted.
pub const MAX_VERSION_LEN: usize = 40;
/// Most flags a package may give one agent.
pub const MAX_FLAGS: usize = 16;
/// Longest flag accepted.
pub const MAX_FLAG_LEN: usize = 200;
/// Most host agent versions a plugin may declare.
pub const MAX_COMPATIBLE: usize = 32;

/// A validated version: 1-40 characters of letters, digits, '.', '-', '_'
/// and '+', starting with a letter or digit. Used for packages, agents and
/// plugins alike; it also names a package's directory on the controller, so
/// it can never be a path.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Version(String);

impl Version {
    pub fn parse(what: &str, value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= MAX_VERSION_LEN
            && value.starts_with(|c: char| c.is_ascii_alphanumeric())
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "{what} {value:?} must be 1-{MAX_VERSION_LEN} characters of letters, digits, \
                 '.', '-', '_' and '+', starting with a letter or digit"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What one server runs, as its host agent reports it at registration
/// (a host agent's software changes only with a new boot).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Software {
    /// The package it runs; `None`: the binaries the server was set up with
    /// (no package has been rolled out to it).
    pub package: Option<Version>,
    pub host_agent: String,
    /// The guest agent new VMs of this server start with.
    pub guest_agent: String,
    pub plugin: String,
}

impl Software {
    /// The package name shown to operators: the package, or "base".
    pub fn package_label(&self) -> &str {
        self.package.as_ref().map_or("base", |v| v.as_str())
    }
}

/// One artifact of a package: a file, its size and its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Artifact {
    pub version: Version,
    /// File name inside the package (no directories).
    pub file: String,
    pub size: u64,
    /// Lowercase hex.
    pub sha256: String,
    /// Flags the package ships this program with.
    pub flags: Vec<String>,
}

/// The networking plugin: the host agent's part that makes a VM's role
/// endpoint reachable from outside its server.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Plugin {
    pub artifact: Artifact,
    /// Host agent versions this plugin declares itself compatible with:
    /// exact versions, or a prefix ending in `*` ("2.*").
    pub compatible_host_agents: Vec<String>,
}

impl Plugin {
    /// Whether this plugin declares itself compatible with `host_agent`.
    pub fn works_with(&self, host_agent: &str) -> bool {
        self.compatible_host_agents
            .iter()
            .any(|pattern| match pattern.strip_suffix('*') {
                Some(prefix) => host_agent.starts_with(prefix),
                None => pattern == host_agent,
            })
    }
}

/// A package's manifest, validated.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub version: Version,
    pub host_agent: Artifact,
    pub guest_agent: Artifact,
    pub plugin: Plugin,
    /// Stored with `--force` although its plugin does not declare its host
    /// agent: kept so the refusal can be shown again at `update start`.
    pub forced: bool,
}

impl Manifest {
    /// The software a server runs once it has this package.
    pub fn software(&self) -> Software {
        Software {
            package: Some(self.version.clone()),
            host_agent: self.host_agent.version.to_string(),
            guest_agent: self.guest_agent.version.to_string(),
            plugin: self.plugin.artifact.version.to_string(),
        }
    }

    /// The package's own pairing: its plugin must declare its host agent.
    pub fn check_own(&self) -> Result<(), Incompatible> {
        self.check_beside(self.host_agent.version.as_str(), "its own host agent")
    }

    /// This package's plugin beside host agent `host_agent`.
    pub fn check_beside(&self, host_agent: &str, whose: &str) -> Result<(), Incompatible> {
        if self.plugin.works_with(host_agent) {
            Ok(())
        } else {
            Err(Incompatible {
                package: self.version.clone(),
                plugin: self.plugin.artifact.version.clone(),
                host_agent: host_agent.to_owned(),
                whose: whose.to_owned(),
                declared: self.plugin.compatible_host_agents.clone(),
            })
        }
    }

    /// Every artifact, for digest checks.
    pub fn artifacts(&self) -> [&Artifact; 3] {
        [&self.host_agent, &self.guest_agent, &self.plugin.artifact]
    }
}

/// A plugin that does not declare a host agent it would run beside.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "package {package}: networking plugin {plugin} does not declare compatibility with host \
     agent {host_agent} ({whose}); it declares {declared:?}. In 2012 exactly this pairing took \
     every VM's network down; pass --force only to replay that"
)]
pub struct Incompatible {
    pub package: Version,
    pub plugin: Version,
    pub host_agent: String,
    pub whose: String,
    pub declared: Vec<String>,
}

/// Checks the bounded parts of an artifact that the core decides with.
pub fn check_artifact(what: &str, a: &Artifact) -> Result<(), String> {
    let name_ok = !a.file.is_empty()
        && a.file.len() <= 100
        && a.file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !a.file.starts_with('.');
    if !name_ok {
        return Err(format!(
            "{what} file {:?} must be a plain file name (letters, digits, '.', '-', '_')",
            a.file
        ));
    }
    if a.sha256.len() != 64 || !a.sha256.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f')) {
        return Err(format!(
            "{what} sha256 {:?} must be 64 lowercase hex digits",
            a.sha256
        ));
    }
    if a.flags.len() > MAX_FLAGS {
        return Err(format!(
            "{what} has {} flags; at most {MAX_FLAGS}",
            a.flags.len()
        ));
    }
    if let Some(f) = a
        .flags
        .iter()
        .find(|f| f.len() > MAX_FLAG_LEN || f.chars().any(char::is_control) || f.is_empty())
    {
        return Err(format!(
            "{what} flag {f:?} is empty, longer than {MAX_FLAG_LEN} or has control characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn artifact(version: &str) -> Artifact {
        Artifact {
            version: Version::parse("v", version).unwrap(),
            file: "host-agent".into(),
            size: 1,
            sha256: "a".repeat(64),
            flags: vec![],
        }
    }

    fn manifest(ha: &str, plugin: &str, compatible: &[&str]) -> Manifest {
        Manifest {
            version: Version::parse("p", "p1").unwrap(),
            host_agent: artifact(ha),
            guest_agent: artifact("1.0"),
            plugin: Plugin {
                artifact: artifact(plugin),
                compatible_host_agents: compatible.iter().map(|s| s.to_string()).collect(),
            },
            forced: false,
        }
    }

    #[test]
    fn versions_are_bounded_and_never_paths() {
        for ok in ["1.0", "2012.2.28", "v2-rc1", "1.0+build_7"] {
            Version::parse("v", ok).unwrap();
        }
        for bad in ["", "../x", "a/b", ".hidden", "x y", &"1".repeat(41), "é"] {
            assert!(Version::parse("v", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_plugin_names_its_host_agents_exactly_or_by_prefix() {
        let m = manifest("2.0", "net-2", &["2.*", "1.9"]);
        m.check_own().unwrap();
        m.check_beside("1.9", "x").unwrap();
        let err = m.check_beside("1.8", "host-1").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("net-2") && text.contains("1.8"), "{text}");
    }

    #[test]
    fn the_2012_repair_package_is_incompatible_with_itself() {
        // An older host agent shipped with the newer plugin.
        let m = manifest("1.0", "net-2", &["2.*"]);
        let err = m.check_own().unwrap_err();
        assert_eq!(err.host_agent, "1.0");
        assert_eq!(err.plugin.as_str(), "net-2");
    }

    #[test]
    fn artifacts_are_checked() {
        let mut a = artifact("1");
        check_artifact("x", &a).unwrap();
        a.file = "../etc/passwd".into();
        assert!(check_artifact("x", &a).is_err());
        a.file = "ok".into();
        a.sha256 = "XYZ".into();
        assert!(check_artifact("x", &a).is_err());
        a.sha256 = "0".repeat(64);
        a.flags = vec!["--a\n".into()];
        assert!(check_artifact("x", &a).is_err());
    }
}
