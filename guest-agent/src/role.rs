//! The role: what the VM exists to run, here an HTTPS endpoint serving the role's certificate.
//!
//! TLS is terminated by tokio-rustls (ring only) with a [`SwappableCert`] resolver, so a rotation
//! pushed by the host agent changes the served certificate without a restart. HTTP is axum's
//! router served by hyper-util's auto builder (HTTP/1.1 and HTTP/2, chosen by ALPN or preface).
//! `GET /` answers who this instance is, which is how operators and tests see that a VM runs.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::get;
use axum::{Json, Router};
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, warn};

use crate::cert_resolver::SwappableCert;
use crate::role_binding::RoleBinding;

/// A client that connects but never finishes its handshake must not hold a task forever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Pause after a failed accept (e.g. out of file descriptors) so the loop does not spin.
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(100);

/// Who this role instance is: the body of `GET /`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleInfo {
    /// The deployment the role belongs to.
    pub deployment: String,
    /// The role's name within the deployment.
    pub role: String,
    /// The instance index within the role.
    pub instance: u32,
    /// The node (server) the VM runs on.
    pub node: String,
    /// The VM's incarnation.
    pub incarnation: u64,
    /// The VM id, `<deployment>.<role>.<index>`.
    pub vm_id: String,
}

/// The role's running HTTPS endpoint. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct RoleEndpoint {
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl RoleEndpoint {
    /// Binds as `binding` says and serves `info` over TLS with the certificate `certs` resolves
    /// to.
    pub async fn start(
        binding: RoleBinding,
        info: RoleInfo,
        certs: Arc<SwappableCert>,
    ) -> io::Result<Self> {
        let listener = binding.bind().await?;
        let addr = binding.advertised(listener.local_addr()?);
        let acceptor = TlsAcceptor::from(Arc::new(tls_config(certs)?));
        let accept_loop = tokio::spawn(accept_loop(listener, acceptor, router(info)));
        Ok(Self { addr, accept_loop })
    }

    /// The address clients reach the endpoint at (the bound one unless the binding advertises
    /// another IP).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for RoleEndpoint {
    fn drop(&mut self) {
        self.accept_loop.abort();
    }
}

/// The role's HTTP routes.
pub fn router(info: RoleInfo) -> Router {
    Router::new().route("/", get(move || async move { Json(info) }))
}

fn tls_config(certs: Arc<SwappableCert>) -> io::Result<rustls::ServerConfig> {
    // The provider is named here rather than taken from the process default, so the role's TLS
    // is ring whatever else the process installs.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(io::Error::other)?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

async fn accept_loop(listener: TcpListener, acceptor: TlsAcceptor, router: Router) {
    loop {
        match listener.accept().await {
            Ok((tcp, peer)) => {
                tokio::spawn(serve_connection(
                    tcp,
                    peer,
                    acceptor.clone(),
                    router.clone(),
                ));
            }
            Err(e) => {
                warn!(error = %e, "role endpoint: accept failed");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
            }
        }
    }
}

async fn serve_connection(tcp: TcpStream, peer: SocketAddr, acceptor: TlsAcceptor, router: Router) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        // Handshake failures are the client's business (wrong trust, port scans): debug only.
        Ok(Err(e)) => {
            debug!(%peer, error = %e, "role endpoint: TLS handshake failed");
            return;
        }
        Err(_) => {
            debug!(%peer, "role endpoint: TLS handshake timed out");
            return;
        }
    };
    let service = TowerToHyperService::new(router);
    if let Err(e) = auto::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(tls), service)
        .await
    {
        debug!(%peer, error = %e, "role endpoint: connection ended with an error");
    }
}
