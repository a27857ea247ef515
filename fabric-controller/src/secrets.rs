//! The controller's secret store: each role's certificates with their
//! private keys, kept apart from the core.
//!
//! The core only ever sees public facts (fingerprints, expiry). Private keys
//! leave this store only in answer to `FetchSecrets` from the host agent whose
//! VM they are for, over mutual TLS. They are zeroed when dropped and never
//! printed: `Debug` is redacted.

use fabric_core::Name;
use std::collections::HashMap;
use zeroize::Zeroizing;

/// A certificate and its private key, as deployed.
#[derive(Clone)]
pub struct RoleCertificate {
    pub name: String,
    pub cert_pem: String,
    pub key_pem: Zeroizing<String>,
}

impl std::fmt::Debug for RoleCertificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RoleCertificate")
            .field("name", &self.name)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// Certificates by deployment and role.
#[derive(Clone, Default, Debug)]
pub struct SecretStore {
    roles: HashMap<(Name, Name), Vec<RoleCertificate>>,
    /// Counts changes, so a save writes the secrets only when they changed.
    version: u64,
}

impl SecretStore {
    pub fn put(&mut self, deployment: &Name, role: &Name, certs: Vec<RoleCertificate>) {
        self.version += 1;
        self.roles.insert((deployment.clone(), role.clone()), certs);
    }

    /// Changes with every put, push and removal.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Adds one certificate to a role's list (when restoring saved state).
    pub fn push(&mut self, deployment: &Name, role: &Name, cert: RoleCertificate) {
        self.version += 1;
        self.roles
            .entry((deployment.clone(), role.clone()))
            .or_default()
            .push(cert);
    }

    pub fn get(&self, deployment: &Name, role: &Name) -> Option<&[RoleCertificate]> {
        self.roles
            .get(&(deployment.clone(), role.clone()))
            .map(Vec::as_slice)
    }

    /// Every role's certificates, for persisting.
    pub fn entries(&self) -> impl Iterator<Item = (&Name, &Name, &RoleCertificate)> {
        self.roles
            .iter()
            .flat_map(|((d, r), certs)| certs.iter().map(move |c| (d, r, c)))
    }

    pub fn remove_deployment(&mut self, deployment: &Name) {
        self.version += 1;
        self.roles.retain(|(d, _), _| d != deployment);
    }
}
