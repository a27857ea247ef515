//! Wiring: TLS, the gRPC services, health, reflection, and the expiry loop.
//!
//! [`run`] takes an already-bound listener and a shutdown future from its
//! caller, so `main` can bind a real port while tests bind 127.0.0.1:0 and
//! stop the server when they are done.

use crate::api::{node_service::NodeApi, operator_service::OperatorApi};
use crate::config::ControllerConfig;
use crate::controller::{Controller, Persistence};
use crate::core::{Clock, FabricCore};
use crate::secrets::SecretStore;
use crate::store::file::FileStore;
use crate::store::sealed_keys::AtRestKey;
use crate::store::{Store, StoreError};
use fabric_proto::v1::{
    node_service_server::NodeServiceServer, operator_service_server::OperatorServiceServer,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Why the controller could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("TLS setup: {0}")]
    Tls(#[from] fabric_pki::PkiError),
    #[error("the controller certificate is for {0}, not this cluster's controller")]
    WrongCertificate(String),
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("reflection service: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("dashboard: {0}")]
    Http(String),
}

/// Loads the saved state from the state directory, if any: the core with a
/// fresh heartbeat grace for every node, and the decrypted secrets. With no
/// state directory the controller keeps everything in memory.
fn restore(
    config: &ControllerConfig,
    now: crate::core::Moment,
) -> Result<(FabricCore, SecretStore, Option<Persistence>), ServeError> {
    let Some(dir) = &config.state_dir else {
        tracing::warn!("no --state-dir: state is kept in memory and lost on restart");
        return Ok((
            FabricCore::new(config.core.clone(), now),
            SecretStore::default(),
            None,
        ));
    };
    let store = FileStore::new(dir)?;
    let key = AtRestKey::open_or_create(dir)?;
    let mut secrets = SecretStore::default();
    let core = match store.load()? {
        None => {
            tracing::info!(path = %store.path().display(), "no saved state: a new cluster");
            FabricCore::new(config.core.clone(), now)
        }
        Some(saved) => {
            for e in &saved.secrets {
                let cert = key.decrypt(e)?;
                let (Ok(d), Ok(r)) = (
                    crate::core::Name::parse("deployment", &e.deployment),
                    crate::core::Name::parse("role", &e.role),
                ) else {
                    return Err(StoreError::Corrupt {
                        path: store.path().to_owned(),
                        reason: format!("invalid names {}/{}", e.deployment, e.role),
                    }
                    .into());
                };
                secrets.push(&d, &r, cert);
            }
            tracing::info!(path = %store.path().display(), "restored saved state");
            FabricCore::restore(config.core.clone(), saved.core, now)
        }
    };
    Ok((
        core,
        secrets,
        Some(Persistence {
            store: Box::new(store),
            key,
        }),
    ))
}

/// Serves the controller on `listener` until `shutdown` completes.
pub async fn run(
    config: ControllerConfig,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    fabric_pki::install_crypto_provider();
    let tls = config.tls.load()?;
    if tls.identity.role != fabric_pki::Role::Controller || tls.identity.cluster != config.cluster {
        return Err(ServeError::WrongCertificate(tls.identity.to_string()));
    }
    let (mut core, secrets, persistence) = restore(&config, clock.now())?;
    core.watch_cluster_certificates(own_certificates(&tls)?);
    let controller = Controller::new(config.cluster.clone(), core, secrets, clock, persistence);
    let _dashboard = match config.http_listen {
        Some(addr) => Some(start_dashboard(&config, addr, controller.clone()).await?),
        None => None,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NodeServiceServer<NodeApi>>().await;
    health
        .set_serving::<OperatorServiceServer<OperatorApi>>()
        .await;
    let reflection_v1 = fabric_proto::reflection().build_v1()?;
    let reflection_v1alpha = fabric_proto::reflection().build_v1alpha()?;

    // Aborted when this function returns or its future is dropped, so no
    // tick of a stopped controller can change (or save) state.
    let _ticks = AbortOnDrop(tokio::spawn(tick_loop(controller.clone())));
    let router = tonic::transport::Server::builder()
        .tls_config(tls.server_config())?
        // Detect dead host-agent connections even when no RPC is in flight.
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(5)))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(NodeServiceServer::new(NodeApi {
            controller: controller.clone(),
        }))
        .add_service(OperatorServiceServer::new(OperatorApi {
            controller: controller.clone(),
        }));
    tracing::info!(
        cluster = %config.cluster,
        addr = ?listener.local_addr().ok(),
        heartbeat_interval = ?config.core.heartbeat_interval,
        node_timeout = ?config.core.node_timeout,
        "fabric controller serving"
    );
    let closing = controller.clone();
    let shutdown = async move {
        shutdown.await;
        closing.close();
    };
    let result = router
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await;
    Ok(result?)
}

/// The cluster CA's and the controller's own certificate, for the expiry
/// watch and the metrics.
fn own_certificates(
    tls: &fabric_pki::tls::LoadedTls,
) -> Result<Vec<crate::core::expiry::ClusterCertificate>, ServeError> {
    let cert = |name: &str, pem: &str| -> Result<_, ServeError> {
        Ok(crate::core::expiry::ClusterCertificate {
            name: name.into(),
            not_after: fabric_pki::tls::not_after(pem)?,
        })
    };
    Ok(vec![
        cert("cluster CA", &tls.ca)?,
        cert("controller certificate", &tls.cert)?,
    ])
}

/// Binds the dashboard and metrics server and serves it until the
/// controller closes (or the returned guard is dropped).
async fn start_dashboard(
    config: &ControllerConfig,
    addr: std::net::SocketAddr,
    controller: Arc<Controller>,
) -> Result<AbortOnDrop, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Http(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Http(e.to_string()))?;
    if let Some(path) = &config.http_addr_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, bound.to_string())
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|e| ServeError::Http(format!("cannot write {}: {e}", path.display())))?;
    }
    tracing::info!(dashboard = %format!("http://{bound}/"), metrics = %format!("http://{bound}/metrics"), "dashboard serving");
    let closed = controller.closed();
    Ok(AbortOnDrop(tokio::spawn(async move {
        if let Err(e) = crate::dashboard::serve(listener, controller, closed).await {
            tracing::error!("dashboard server: {e}");
        }
    })))
}

/// Aborts a background task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Sleeps until the core's next deadline (a heartbeat expiring, a grace or a
/// fault hold running out), then lets the core act. Woken early by any
/// transition that may change deadlines or give healing work to do.
async fn tick_loop(controller: Arc<Controller>) {
    // Healing also waits on capacity and reports, which have no deadline:
    // look again at least this often.
    const IDLE: Duration = Duration::from_secs(1);
    let origin = tokio::time::Instant::now() - controller.clock().now().mono;
    loop {
        let next = controller.tick();
        let idle = tokio::time::Instant::now() + IDLE;
        let wake = match next {
            Some(deadline) => (origin + deadline).min(idle),
            None => idle,
        };
        tokio::select! {
            _ = tokio::time::sleep_until(wake) => {}
            _ = controller.expiry_changed.notified() => {}
        }
    }
}
