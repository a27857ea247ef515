//! HTTPS to the roles' endpoints, trusting exactly one certificate.
//!
//! A role serves the certificate its deployment names. To prove *which*
//! certificate an endpoint serves (the deployed one, the rotated one after a
//! redeploy, never a stale one), the client pins exactly the expected
//! certificate DER: any other certificate fails the handshake, and the
//! handshake must be signed by the pinned certificate's key (checked with
//! ring, like guest-agent). A CA store would not do: it would accept any
//! certificate the CA signed, and webpki refuses the example certificates as
//! end entities anyway (`CaUsedAsEndEntity`, they carry CA:TRUE).
//!
//! - [`cert_der`]: the DER of a PEM certificate file.
//! - [`runtime`]: a current-thread tokio runtime for [`fetch`].
//! - [`fetch`] / [`get_root`]: one `GET /` over a fresh pinned TLS
//!   connection, returning what was [`Served`].
//! - [`assert_identity`] / [`check_identity`]: the body of `GET /` names
//!   exactly an instance.

use fabricctl::status::InstanceJson;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on one TLS connection + `GET /` ([`fetch`]).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// The DER of the (first) certificate in the PEM file at `path`.
pub fn cert_der(path: &Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_vec()
}

/// A current-thread tokio runtime to run [`fetch`] on.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// What one `GET /` over a fresh TLS connection saw.
pub struct Served {
    /// The end-entity certificate the endpoint presented, DER.
    pub leaf_der: Vec<u8>,
    pub body: serde_json::Value,
}

/// Trusts exactly one certificate: the server's end-entity certificate must
/// be `pinned` byte for byte (no chain), and the handshake must be signed by
/// its key.
///
/// Not a `RootCertStore` with the self-signed certificate: webpki refuses
/// the example certificates as end entities (`CaUsedAsEndEntity`, they carry
/// CA:TRUE), so a pin is the way to trust that one certificate and nothing
/// else.
#[derive(Debug)]
struct PinnedCert {
    pinned: Vec<u8>,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for PinnedCert {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.pinned.as_slice() && intermediates.is_empty() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::UnknownIssuer,
            ))
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Connects to `endpoint` ("ip:port") trusting only the certificate
/// `trusted_der` ([`PinnedCert`]), and GETs `/` over HTTP/1.1. Any failure
/// is an `Err`: a certificate other than `trusted_der` fails the handshake.
pub async fn get_root(endpoint: &str, trusted_der: &[u8]) -> Result<Served, String> {
    let addr: SocketAddr = endpoint
        .parse()
        .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(PinnedCert {
        pinned: trusted_der.to_vec(),
        provider: provider.clone(),
    });
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::from(addr.ip()), tcp)
        .await
        .map_err(|e| format!("TLS handshake with {addr}: {e}"))?;
    let leaf_der = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .ok_or("no server certificate")?
        .to_vec();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| format!("HTTP handshake: {e}"))?;
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/")
        .header(hyper::header::HOST, "localhost")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET /: {e}"))?;
        let status = response.status();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("body: {e}"))?
            .to_bytes();
        if !status.is_success() {
            return Err(format!("GET / answered {status}"));
        }
        serde_json::from_slice(&body).map_err(|e| format!("body is not JSON ({e}): {body:?}"))
    }
    .await;
    driver.abort();
    Ok(Served {
        leaf_der,
        body: result?,
    })
}

/// [`get_root`] on `rt`, bounded by [`FETCH_TIMEOUT`].
pub fn fetch(
    rt: &tokio::runtime::Runtime,
    endpoint: &str,
    trusted_der: &[u8],
) -> Result<Served, String> {
    rt.block_on(async {
        tokio::time::timeout(FETCH_TIMEOUT, get_root(endpoint, trusted_der))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "no answer from {endpoint} within {FETCH_TIMEOUT:?}"
                ))
            })
    })
}

/// The body of `GET /` names exactly instance `i` of `deployment`: its role,
/// index, node, incarnation and VM id.
pub fn assert_identity(served: &Served, deployment: &str, i: &InstanceJson) {
    if let Err(e) = check_identity(served, deployment, i) {
        panic!("{e}");
    }
}

/// Like [`assert_identity`], returning what differs instead of panicking.
pub fn check_identity(served: &Served, deployment: &str, i: &InstanceJson) -> Result<(), String> {
    let expected = serde_json::json!({
        "deployment": deployment,
        "role": i.role,
        "instance": i.index,
        "node": i.node,
        "incarnation": i.incarnation,
        "vm_id": i.id,
    });
    for (key, value) in expected.as_object().expect("an object") {
        if &served.body[key] != value {
            return Err(format!(
                "{key} of {} at {}: {} instead of {value} in {}",
                i.id, i.endpoint, served.body[key], served.body
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::services;

    #[test]
    fn pinned_fetch_refuses_other_certificates() {
        // The pin must be able to fail, or the HTTPS checks of the tests
        // prove nothing.
        let web = cert_der(&services::example_file("certs/web.pem"));
        let rotated = cert_der(&services::example_file("certs/web-rotated.pem"));
        assert_ne!(web, rotated);
        let verifier = PinnedCert {
            pinned: web.clone(),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        };
        let name = ServerName::try_from("localhost").unwrap();
        let check = |der: &[u8]| {
            verifier
                .verify_server_cert(
                    &CertificateDer::from(der.to_vec()),
                    &[],
                    &name,
                    &[],
                    UnixTime::now(),
                )
                .is_ok()
        };
        assert!(check(&web));
        assert!(!check(&rotated));
    }
}
