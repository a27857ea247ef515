//! The certificate the role's HTTPS endpoint presents, replaceable while it runs.
//!
//! rustls asks a [`ResolvesServerCert`] for the certificate on every handshake, so swapping the
//! value behind it rotates the certificate for all new connections without closing the listener
//! or restarting the role; connections already established keep the certificate they started
//! with, as they would on any server.

use std::sync::{Arc, PoisonError, RwLock};

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::fingerprint::sha256_hex;

/// A server certificate resolver whose certificate can be swapped at run time.
#[derive(Debug)]
pub struct SwappableCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl SwappableCert {
    /// Starts out serving `initial`.
    pub fn new(initial: Arc<CertifiedKey>) -> Self {
        Self {
            current: RwLock::new(initial),
        }
    }

    /// Serves `next` from the next handshake on.
    pub fn swap(&self, next: Arc<CertifiedKey>) {
        // A poisoned lock still holds a whole `Arc` (assignment cannot half-happen), so it is
        // safe to keep using it rather than take the endpoint down.
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = next;
    }

    /// The certificate and key served now.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// SHA-256 (lowercase hex) of the end-entity certificate served now.
    pub fn fingerprint(&self) -> String {
        let current = self.current();
        current
            .end_entity_cert()
            .map(|der| sha256_hex(der.as_ref()))
            .unwrap_or_default()
    }
}

impl ResolvesServerCert for SwappableCert {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        // One certificate for every name: the role has one identity.
        Some(self.current())
    }
}
