//! Deployments as the controller knows them: names, roles, and the public
//! facts about their certificates.
//!
//! The certificates' private keys are *not* here: the core decides with plain
//! facts (a fingerprint, an expiry date) and the shell keeps the secret
//! material in its secret store, so a core snapshot can be logged or shown
//! without leaking anything.

use std::fmt;
use std::time::SystemTime;

/// A validated name of a deployment or role: a DNS-like label, no dots (dots
/// separate the parts of an [`InstanceId`]).
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    pub fn parse(what: &str, value: &str) -> Result<Self, String> {
        let ok = !value.is_empty()
            && value.len() <= 40
            && value
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(format!(
                "{what} {value:?} must be 1-40 characters of lowercase letters, digits and '-', \
                 not starting or ending with '-'"
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One role instance: `<deployment>.<role>.<index>`. Also the VM id of
/// whichever VM currently runs it.
#[derive(
    Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
pub struct InstanceId {
    pub deployment: Name,
    pub role: Name,
    pub index: u32,
}

impl InstanceId {
    pub fn parse(value: &str) -> Result<Self, String> {
        let parts: Vec<&str> = value.split('.').collect();
        let [d, r, i] = parts[..] else {
            return Err(format!("{value:?} is not <deployment>.<role>.<index>"));
        };
        Ok(Self {
            deployment: Name::parse("deployment", d)?,
            role: Name::parse("role", r)?,
            index: i
                .parse()
                .map_err(|_| format!("{value:?}: index {i:?} is not a number"))?,
        })
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.deployment, self.role, self.index)
    }
}

/// Public facts about one deployed certificate.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CertificateInfo {
    pub name: String,
    /// SHA-256 of the certificate (DER), lowercase hex.
    pub fingerprint: String,
    pub not_after: SystemTime,
}

/// Which guest agent runs in a role's VMs.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Guest {
    /// Fabric's own guest agent (`guest-agent`).
    #[default]
    Fabric,
    /// Azure's WALinuxAgent over the wire protocol (`fabric-wireserver`).
    Waagent,
}

impl Guest {
    /// The name in service definitions and on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Guest::Fabric => "fabric",
            Guest::Waagent => "waagent",
        }
    }

    /// Reads a name; empty is the default, Fabric's guest.
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "" | "fabric" => Ok(Guest::Fabric),
            "waagent" => Ok(Guest::Waagent),
            other => Err(format!(
                "guest {other:?} is not one Fabric runs: \"fabric\" (the default) or \"waagent\""
            )),
        }
    }
}

/// One role of a service definition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RoleSpec {
    pub name: Name,
    pub instances: u32,
    /// The first one is served by the role's HTTPS endpoint.
    pub certificates: Vec<CertificateInfo>,
    /// The guest agent its VMs run (absent in state saved before guests
    /// could be chosen: Fabric's).
    #[serde(default, skip_serializing_if = "is_fabric")]
    pub guest: Guest,
}

fn is_fabric(g: &Guest) -> bool {
    *g == Guest::Fabric
}

impl RoleSpec {
    /// Changes whenever the role's certificates change; host agents compare it
    /// with what their VMs run to know when to rotate.
    pub fn secrets_version(&self) -> String {
        self.certificates
            .iter()
            .map(|c| &c.fingerprint[..c.fingerprint.len().min(16)])
            .collect::<Vec<_>>()
            .join("+")
    }
}

/// A validated service definition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeploymentSpec {
    pub name: Name,
    pub roles: Vec<RoleSpec>,
    /// Healing serves higher priorities first when servers or the healing
    /// budget are short: infrastructure that others depend on (a storage
    /// or name service) before what depends on it, the 2012 postmortem's
    /// "dependency priorities". 0, the default, is the lowest.
    #[serde(default)]
    pub priority: u32,
}

impl DeploymentSpec {
    pub fn role(&self, name: &Name) -> Option<&RoleSpec> {
        self.roles.iter().find(|r| &r.name == name)
    }

    pub fn total_instances(&self) -> u64 {
        self.roles.iter().map(|r| u64::from(r.instances)).sum()
    }

    /// Same roles with the same instance counts: a redeploy of this shape
    /// only rotates certificates.
    /// The order roles are listed in does not matter (a deployment rebuilt
    /// from hosts' reports lists them by name).
    pub fn same_shape(&self, other: &DeploymentSpec) -> bool {
        self.roles.len() == other.roles.len()
            && self.roles.iter().all(|a| {
                other
                    .role(&a.name)
                    .is_some_and(|b| a.instances == b.instances && a.guest == b.guest)
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guests_are_named_and_unknown_ones_refused_in_words() {
        assert_eq!(Guest::parse(""), Ok(Guest::Fabric));
        assert_eq!(Guest::parse("fabric"), Ok(Guest::Fabric));
        assert_eq!(Guest::parse("waagent"), Ok(Guest::Waagent));
        let err = Guest::parse("WALinuxAgent").unwrap_err();
        assert!(err.contains("\"waagent\""), "{err}");
        for g in [Guest::Fabric, Guest::Waagent] {
            assert_eq!(Guest::parse(g.as_str()), Ok(g));
        }
        // State saved before guests could be chosen reads as Fabric's, and
        // Fabric's is not written (the saved state stays as it was).
        let old = r#"{"name":"r","instances":1,"certificates":[]}"#;
        let role: RoleSpec = serde_json::from_str(old).unwrap();
        assert_eq!(role.guest, Guest::Fabric);
        assert_eq!(serde_json::to_string(&role).unwrap(), old);
    }

    #[test]
    fn instance_ids_round_trip_and_reject_junk() {
        let id = InstanceId::parse("web.frontend.3").unwrap();
        assert_eq!(id.index, 3);
        assert_eq!(id.to_string(), "web.frontend.3");
        for bad in [
            "web.frontend",
            "web.front.end.1",
            "Web.f.1",
            "web.f.x",
            "web..1",
        ] {
            assert!(InstanceId::parse(bad).is_err(), "{bad}");
        }
    }
}
