//! Wiring: TLS, the gRPC services, health, reflection, and the expiry loop.
//!
//! [`run`] takes an already-bound listener and a shutdown future from its
//! caller, so `main` can bind a real port while tests bind 127.0.0.1:0 and
//! stop the server when they are done.

use crate::api::{node_service::NodeApi, operator_service::OperatorApi};
use crate::config::ControllerConfig;
use crate::controller::Controller;
use crate::core::{Clock, FabricCore};
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
    let core = FabricCore::new(config.core.clone(), clock.now());
    let controller = Controller::new(config.cluster.clone(), core, clock);

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NodeServiceServer<NodeApi>>().await;
    health
        .set_serving::<OperatorServiceServer<OperatorApi>>()
        .await;
    let reflection_v1 = fabric_proto::reflection().build_v1()?;
    let reflection_v1alpha = fabric_proto::reflection().build_v1alpha()?;

    let expiry = tokio::spawn(tick_loop(controller.clone()));
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
    expiry.abort();
    Ok(result?)
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
