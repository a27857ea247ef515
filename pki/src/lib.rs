//! Fabric's cluster PKI.
//!
//! Every cluster has its own certificate authority (the *cluster CA*). It
//! issues one certificate to the fabric controller, one to each host agent and
//! one to each operator (admin). All traffic between them is mutual TLS, and a
//! caller's role and node id are read from its certificate ([`Identity`]), so
//! host-2 can never speak as host-3 whatever it puts in a request.
//!
//! - [`identity`]: who a certificate speaks for, encoded as a URI SAN.
//! - [`authority`]: generating the CA and issuing certificates (rcgen).
//! - [`layout`]: where the PEM files live in a state directory.
//! - [`tls`]: tonic client/server TLS configs and reading a caller's identity.
//! - [`probe`]: a health check over mutual TLS, for container healthchecks.
//! - [`service_ca`]: a service owner's CA for role endpoint certificates
//!   (scenarios and tests), apart from the cluster CA.

pub mod authority;
pub mod identity;
pub mod layout;
pub mod probe;
pub mod service_ca;
pub mod tls;

pub use authority::{ClusterCa, IssuedCert};
pub use identity::{Identity, Role};
pub use layout::PkiLayout;

/// Errors from PKI operations.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("certificate generation failed: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a valid PEM certificate or key: {reason}")]
    BadPem {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error("certificate carries no Fabric identity: {0}")]
    NoIdentity(String),
    #[error("invalid identity: {0}")]
    BadIdentity(String),
}

/// Installs ring as the process-wide rustls crypto provider.
///
/// Fabric builds rustls with ring only; installing it explicitly keeps TLS
/// working even if another dependency ever compiles in a second provider.
/// Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
