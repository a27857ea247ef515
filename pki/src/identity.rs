//! Who a certificate speaks for.
//!
//! An identity is written into each certificate as a URI subject alternative
//! name, `fabric://<cluster>/<role>/<name>`, e.g. `fabric://alpha/host/host-2`.
//! The URI form is unambiguous to parse (a common name is free text) and names
//! the cluster, so a certificate from one cluster's CA cannot be mistaken for
//! another cluster's even if an operator mixes up files.

use crate::PkiError;
use std::fmt;

/// The part a certificate holder plays in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// The fabric controller (a server certificate).
    Controller,
    /// A host agent; the name is its node id.
    Host,
    /// An operator using fabricctl.
    Admin,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Host => "host",
            Role::Admin => "admin",
        }
    }
}

/// A parsed Fabric identity: cluster, role and name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    pub cluster: String,
    pub role: Role,
    pub name: String,
}

const SCHEME: &str = "fabric://";

impl Identity {
    pub fn new(cluster: &str, role: Role, name: &str) -> Result<Self, PkiError> {
        validate_label("cluster name", cluster)?;
        validate_label("name", name)?;
        Ok(Self {
            cluster: cluster.to_owned(),
            role,
            name: name.to_owned(),
        })
    }

    /// The URI written into the certificate's subject alternative names.
    pub fn to_uri(&self) -> String {
        format!(
            "{SCHEME}{}/{}/{}",
            self.cluster,
            self.role.as_str(),
            self.name
        )
    }

    /// Parses a `fabric://cluster/role/name` URI.
    pub fn from_uri(uri: &str) -> Result<Self, PkiError> {
        let rest = uri
            .strip_prefix(SCHEME)
            .ok_or_else(|| PkiError::BadIdentity(format!("{uri:?} is not a fabric:// URI")))?;
        let parts: Vec<&str> = rest.split('/').collect();
        let [cluster, role, name] = parts[..] else {
            return Err(PkiError::BadIdentity(format!(
                "{uri:?} is not fabric://cluster/role/name"
            )));
        };
        let role = match role {
            "controller" => Role::Controller,
            "host" => Role::Host,
            "admin" => Role::Admin,
            other => {
                return Err(PkiError::BadIdentity(format!("unknown role {other:?}")));
            }
        };
        Identity::new(cluster, role, name)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_uri())
    }
}

/// Names are used in URIs, file names and DNS names: keep them to a safe set.
pub fn validate_label(what: &str, value: &str) -> Result<(), PkiError> {
    let ok = !value.is_empty()
        && value.len() <= 63
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && !value.starts_with(['-', '.']);
    if ok {
        Ok(())
    } else {
        Err(PkiError::BadIdentity(format!(
            "{what} {value:?} must be 1-63 characters of letters, digits, '-', '_' or '.'"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_round_trip() {
        let id = Identity::new("alpha", Role::Host, "host-2").unwrap();
        assert_eq!(id.to_uri(), "fabric://alpha/host/host-2");
        assert_eq!(Identity::from_uri(&id.to_uri()).unwrap(), id);
    }

    #[test]
    fn rejects_malformed_uris() {
        for bad in [
            "https://alpha/host/h",
            "fabric://alpha/host",
            "fabric://alpha/host/h/extra",
            "fabric://alpha/root/h",
            "fabric://alpha/host/",
            "fabric://al pha/host/h",
        ] {
            assert!(Identity::from_uri(bad).is_err(), "{bad} accepted");
        }
    }
}
