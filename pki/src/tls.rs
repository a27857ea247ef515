//! Mutual TLS for tonic, and reading a caller's [`Identity`] from its
//! certificate.
//!
//! Servers require a client certificate signed by the cluster CA: a client with
//! no certificate, or one from another CA, fails the TLS handshake before any
//! RPC runs. Handlers then authorise by the identity in the certificate.

use crate::PkiError;
use crate::identity::Identity;
use crate::layout::{CertPaths, read};
use std::path::{Path, PathBuf};
use tonic::transport::{Certificate, ClientTlsConfig, Identity as TlsIdentity, ServerTlsConfig};
use x509_parser::extensions::GeneralName;

/// The three files a party needs for mutual TLS.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    /// The cluster CA certificate that peers must chain to.
    pub ca: PathBuf,
    /// Our own certificate.
    pub cert: PathBuf,
    /// Our own private key.
    pub key: PathBuf,
}

impl TlsFiles {
    pub fn new(ca: impl Into<PathBuf>, own: &CertPaths) -> Self {
        Self {
            ca: ca.into(),
            cert: own.cert.clone(),
            key: own.key.clone(),
        }
    }

    /// Reads and checks the files once, so a daemon fails at start with a
    /// message naming the bad file rather than at the first handshake.
    pub fn load(&self) -> Result<LoadedTls, PkiError> {
        let ca = read_pem_cert(&self.ca)?;
        let cert = read_pem_cert(&self.cert)?;
        let key = read(&self.key)?;
        if !key.contains("PRIVATE KEY-----") {
            return Err(PkiError::BadPem {
                path: self.key.clone(),
                reason: "no PRIVATE KEY block".into(),
            });
        }
        let identity = identity_from_pem(&cert).map_err(|e| PkiError::BadPem {
            path: self.cert.clone(),
            reason: e.to_string(),
        })?;
        Ok(LoadedTls {
            ca,
            cert,
            key,
            identity,
        })
    }
}

/// PEM contents of [`TlsFiles`], checked.
#[derive(Clone)]
pub struct LoadedTls {
    pub ca: String,
    pub cert: String,
    key: String,
    /// The identity in our own certificate.
    pub identity: Identity,
}

impl LoadedTls {
    /// Server side: present our certificate, require a client certificate from
    /// the cluster CA.
    pub fn server_config(&self) -> ServerTlsConfig {
        ServerTlsConfig::new()
            .identity(TlsIdentity::from_pem(&self.cert, &self.key))
            .client_ca_root(Certificate::from_pem(&self.ca))
    }

    /// The same server side as a rustls config, for listeners that run the
    /// TLS handshake themselves (under a timeout, with connection limits:
    /// `fabric_daemon::tls_accept`). ALPN offers h2 only, as gRPC needs.
    pub fn rustls_server_config(&self) -> Result<std::sync::Arc<rustls::ServerConfig>, PkiError> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let bad = bad_pem;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca.as_bytes()) {
            let cert = cert.map_err(|e| bad("cluster CA", e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| bad("cluster CA", e.to_string()))?;
        }
        let verifier = rustls::server::WebPkiClientVerifier::builder(std::sync::Arc::new(roots))
            .build()
            .map_err(|e| bad("cluster CA", e.to_string()))?;
        let (chain, key) = self.own_pair()?;
        let mut config = rustls::ServerConfig::builder()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .map_err(|e| bad("certificate and key", e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(std::sync::Arc::new(config))
    }

    /// Our certificate chain and private key, parsed.
    fn own_pair(&self) -> Result<OwnPair, PkiError> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let chain = CertificateDer::pem_slice_iter(self.cert.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad_pem("certificate", e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(self.key.as_bytes())
            .map_err(|e| bad_pem("private key", e.to_string()))?;
        Ok((chain, key))
    }

    /// Server side for callers without a cluster certificate (VMs calling
    /// their host agent's GuestService): our certificate, no client
    /// certificate asked for; callers authenticate otherwise (tokens).
    pub fn rustls_server_config_without_client_auth(
        &self,
    ) -> Result<std::sync::Arc<rustls::ServerConfig>, PkiError> {
        let (chain, key) = self.own_pair()?;
        let mut config = rustls::ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .map_err(|e| bad_pem("certificate and key", e.to_string()))?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(std::sync::Arc::new(config))
    }

    /// Client side: trust only the cluster CA, present our certificate, and
    /// verify the server's name against `domain`.
    pub fn client_config(&self, domain: &str) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&self.ca))
            .identity(TlsIdentity::from_pem(&self.cert, &self.key))
            .domain_name(domain)
    }
}

/// A certificate chain and its private key, as rustls takes them.
type OwnPair = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// A PEM that rustls could not use; `what` names which one.
fn bad_pem(what: &str, reason: String) -> PkiError {
    PkiError::BadPem {
        path: what.into(),
        reason,
    }
}

/// The not-after date of the first certificate in `pem`.
pub fn not_after(pem: &str) -> Result<std::time::SystemTime, PkiError> {
    let bad = |reason: String| PkiError::NoIdentity(format!("unreadable certificate: {reason}"));
    let (_, p) =
        x509_parser::pem::parse_x509_pem(pem.as_bytes()).map_err(|e| bad(e.to_string()))?;
    let cert = p.parse_x509().map_err(|e| bad(e.to_string()))?;
    Ok(not_after_of(&cert))
}

/// The not-after date of a parsed certificate, as a `SystemTime`.
pub fn not_after_of(cert: &x509_parser::certificate::X509Certificate<'_>) -> std::time::SystemTime {
    let secs = cert.validity().not_after.timestamp();
    if secs >= 0 {
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs.unsigned_abs())
    } else {
        std::time::UNIX_EPOCH - std::time::Duration::from_secs(secs.unsigned_abs())
    }
}

fn read_pem_cert(path: &Path) -> Result<String, PkiError> {
    let pem = read(path)?;
    match x509_parser::pem::parse_x509_pem(pem.as_bytes()) {
        Ok((_, p)) if p.label == "CERTIFICATE" && p.parse_x509().is_ok() => Ok(pem),
        Ok((_, p)) => Err(PkiError::BadPem {
            path: path.to_owned(),
            reason: format!("expected a CERTIFICATE block, found {:?}", p.label),
        }),
        Err(e) => Err(PkiError::BadPem {
            path: path.to_owned(),
            reason: e.to_string(),
        }),
    }
}

fn identity_from_pem(pem: &str) -> Result<Identity, PkiError> {
    let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| PkiError::NoIdentity(e.to_string()))?;
    identity_from_der(&p.contents)
}

/// Reads the Fabric identity (URI SAN) from a DER certificate.
pub fn identity_from_der(der: &[u8]) -> Result<Identity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| PkiError::NoIdentity(format!("unparsable certificate: {e}")))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| PkiError::NoIdentity(e.to_string()))?
        .ok_or_else(|| PkiError::NoIdentity("no subject alternative names".into()))?;
    san.value
        .general_names
        .iter()
        .find_map(|n| match n {
            GeneralName::URI(uri) if uri.starts_with("fabric://") => Some(*uri),
            _ => None,
        })
        .ok_or_else(|| PkiError::NoIdentity("no fabric:// URI name".into()))
        .and_then(Identity::from_uri)
}

/// The identity of the caller of an RPC, from the certificate it presented
/// during the TLS handshake (the first certificate of its chain).
pub fn peer_identity<T>(request: &tonic::Request<T>) -> Result<Identity, PkiError> {
    let certs = request
        .peer_certs()
        .ok_or_else(|| PkiError::NoIdentity("caller presented no certificate".into()))?;
    let leaf = certs
        .first()
        .ok_or_else(|| PkiError::NoIdentity("caller presented no certificate".into()))?;
    identity_from_der(leaf.as_ref())
}
