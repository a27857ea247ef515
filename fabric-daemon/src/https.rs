//! A client's view of a role endpoint: one HTTPS `GET /`, trusting either
//! exactly one certificate or a CA.
//!
//! The scenarios probe endpoints throughout a replay (is the service up?
//! what do clients see when its certificate expires?), and the tests prove
//! which certificate an endpoint serves. Two ways to trust the server:
//!
//! - [`Trust::Pinned`]: the end-entity certificate must be this DER byte for
//!   byte, and the handshake must be signed by its key. This proves *which*
//!   certificate is served (the deployed one, the rotated one, never a stale
//!   one). It checks no dates: the example certificates are self-signed with
//!   CA:TRUE, which webpki refuses as end entities (`CaUsedAsEndEntity`).
//! - [`Trust::Ca`]: the usual web PKI check against one root: chain, name
//!   (the endpoint's IP) and validity dates. This is what an ordinary client
//!   does, so an expired certificate fails the handshake as it did for the
//!   clients of 2013.
//!
//! - [`Trust::Fingerprints`]: as pinned, by SHA-256 fingerprint; what the
//!   controller's rollout gate knows of a role's certificates.
//!
//! TLS is rustls with ring only, like the guest agent; HTTP is hyper.

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Bound on one TLS connection + `GET /` ([`get_root`]).
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Which server certificates a probe accepts.
#[derive(Clone, Debug)]
pub enum Trust {
    /// Exactly this end-entity certificate (DER), no chain, no dates.
    Pinned(Vec<u8>),
    /// Any certificate for the endpoint's IP that this CA (DER) issued and
    /// that is valid now.
    Ca(Vec<u8>),
    /// Any end-entity certificate whose SHA-256 (lowercase hex) is one of
    /// these, no chain, no dates: the controller's probe knows a role's
    /// certificates by fingerprint only.
    Fingerprints(Vec<String>),
}

/// What one `GET /` over a fresh TLS connection saw.
#[derive(Debug)]
pub struct Served {
    /// The end-entity certificate the endpoint presented, DER.
    pub leaf_der: Vec<u8>,
    /// The role's JSON answer.
    pub body: serde_json::Value,
}

/// Trusts exactly the certificates named (see [`Trust::Pinned`] and
/// [`Trust::Fingerprints`]).
#[derive(Debug)]
struct PinnedCert {
    pinned: Pin,
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
enum Pin {
    Der(Vec<u8>),
    Fingerprints(Vec<String>),
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
        let pinned = match &self.pinned {
            Pin::Der(der) => end_entity.as_ref() == der.as_slice(),
            Pin::Fingerprints(fps) => {
                let got = hex::encode(
                    ring::digest::digest(&ring::digest::SHA256, end_entity.as_ref()).as_ref(),
                );
                fps.contains(&got)
            }
        };
        if pinned && intermediates.is_empty() {
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

fn verifier(trust: &Trust) -> Result<Arc<dyn ServerCertVerifier>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(match trust {
        Trust::Pinned(der) => Arc::new(PinnedCert {
            pinned: Pin::Der(der.clone()),
            provider,
        }),
        Trust::Fingerprints(fps) => Arc::new(PinnedCert {
            pinned: Pin::Fingerprints(fps.clone()),
            provider,
        }),
        Trust::Ca(der) => {
            let mut roots = RootCertStore::empty();
            roots
                .add(CertificateDer::from(der.clone()))
                .map_err(|e| format!("the trusted CA certificate: {e}"))?;
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("the trusted CA certificate: {e}"))?
        }
    })
}

/// Connects to `endpoint` ("ip:port", or "host:port" resolved by the
/// system's resolver) trusting what `trust` says, and GETs `/` over
/// HTTP/1.1. The TLS server name is the IP connected to, whichever way the
/// endpoint was written. Any failure is an `Err` naming the step, e.g. a
/// TLS handshake refused because the certificate expired.
pub async fn get_root(endpoint: &str, trust: &Trust) -> Result<Served, String> {
    let addr: SocketAddr = match endpoint.parse() {
        Ok(addr) => addr,
        Err(_) => tokio::net::lookup_host(endpoint)
            .await
            .map_err(|e| format!("endpoint {endpoint:?}: {e}"))?
            .next()
            .ok_or_else(|| format!("endpoint {endpoint:?}: the name has no address"))?,
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier(trust)?)
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

/// [`get_root`] bounded by [`FETCH_TIMEOUT`].
pub async fn fetch(endpoint: &str, trust: &Trust) -> Result<Served, String> {
    tokio::time::timeout(FETCH_TIMEOUT, get_root(endpoint, trust))
        .await
        .unwrap_or_else(|_| {
            Err(format!(
                "no answer from {endpoint} within {FETCH_TIMEOUT:?}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use std::path::Path;

    fn example_der(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../examples/web/certs")
            .join(name);
        CertificateDer::from_pem_file(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .to_vec()
    }

    fn accepts(trust: &Trust, der: &[u8], name: &str, now: UnixTime) -> Result<(), String> {
        verifier(trust)
            .unwrap()
            .verify_server_cert(
                &CertificateDer::from(der.to_vec()),
                &[],
                &ServerName::try_from(name.to_owned()).unwrap(),
                &[],
                now,
            )
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    #[tokio::test]
    async fn an_endpoint_may_name_a_host_and_is_resolved() {
        // Nothing listens on port 1: the probe gets past the address (a
        // name is resolved) and fails at the connection, saying so.
        let trust = Trust::Fingerprints(vec![]);
        let err = get_root("localhost:1", &trust).await.unwrap_err();
        assert!(err.starts_with("connect "), "{err}");
        let err = get_root("no-such-host.invalid:1", &trust)
            .await
            .unwrap_err();
        assert!(err.contains("no-such-host.invalid"), "{err}");
    }

    #[test]
    fn a_pin_refuses_other_certificates() {
        // The pin must be able to fail, or the HTTPS checks of the tests
        // prove nothing.
        let web = example_der("web.pem");
        let rotated = example_der("web-rotated.pem");
        assert_ne!(web, rotated);
        let pin = Trust::Pinned(web.clone());
        assert!(accepts(&pin, &web, "localhost", UnixTime::now()).is_ok());
        assert!(accepts(&pin, &rotated, "localhost", UnixTime::now()).is_err());
    }

    #[test]
    fn fingerprints_pin_like_der() {
        let web = example_der("web.pem");
        let rotated = example_der("web-rotated.pem");
        let fp = hex::encode(ring::digest::digest(&ring::digest::SHA256, &web).as_ref());
        let trust = Trust::Fingerprints(vec![fp]);
        assert!(accepts(&trust, &web, "localhost", UnixTime::now()).is_ok());
        assert!(accepts(&trust, &rotated, "localhost", UnixTime::now()).is_err());
    }

    #[test]
    fn a_ca_checks_dates_and_the_address() {
        let now = time::OffsetDateTime::now_utc();
        let ca = fabric_pki::service_ca::ServiceCa::generate("test owner", now).unwrap();
        let leaf = ca
            .issue_server(
                "web",
                &["127.0.0.1".parse().unwrap()],
                now - time::Duration::minutes(1),
                now + time::Duration::seconds(60),
            )
            .unwrap();
        let der = CertificateDer::from_pem_slice(leaf.cert_pem.as_bytes())
            .unwrap()
            .to_vec();
        let trust = Trust::Ca(ca.cert_der());
        let at = |offset: u64| {
            UnixTime::since_unix_epoch(Duration::from_secs(now.unix_timestamp() as u64 + offset))
        };
        accepts(&trust, &der, "127.0.0.1", at(0)).unwrap();
        let expired = accepts(&trust, &der, "127.0.0.1", at(120)).unwrap_err();
        assert!(expired.contains("expired"), "{expired}");
        let other = accepts(&trust, &der, "127.0.0.2", at(0)).unwrap_err();
        assert!(other.contains("not valid for name"), "{other}");
        // Another CA's certificate is not trusted.
        let stranger = fabric_pki::service_ca::ServiceCa::generate("stranger", now).unwrap();
        let unknown =
            accepts(&Trust::Ca(stranger.cert_der()), &der, "127.0.0.1", at(0)).unwrap_err();
        assert!(unknown.contains("UnknownIssuer"), "{unknown}");
    }
}
