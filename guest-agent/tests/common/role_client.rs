//! A client of the role's HTTPS endpoint that trusts only the test customer CA and verifies the
//! role's name, then reports the certificate it was shown and the body of `GET /`.

use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::role_certs::ROLE_HOST;

/// What one `GET /` over a fresh TLS connection saw.
pub struct Fetched {
    /// The end-entity certificate the server presented, DER.
    pub peer_der: Vec<u8>,
    pub status: u16,
    pub body: serde_json::Value,
}

/// Connects to `addr`, verifies the server against `ca_der` for [`ROLE_HOST`], and GETs `/`.
pub async fn get_root(addr: SocketAddr, ca_der: &[u8]) -> Fetched {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(ca_der.to_vec())).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from(ROLE_HOST).unwrap(), tcp)
        .await
        .unwrap();
    let peer_der = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();

    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .unwrap();
    let driver = tokio::spawn(connection);
    let request = hyper::Request::get("/")
        .header("host", ROLE_HOST)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let status = response.status().as_u16();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    driver.abort();
    Fetched {
        peer_der,
        status,
        body: serde_json::from_slice(&body).unwrap(),
    }
}
