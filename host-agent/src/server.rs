//! Wiring of the host agent: its own gRPC server (host service, health,
//! reflection) and the link to the controller, until shutdown.

use crate::config::HostConfig;
use crate::controller_link::{self, Link};
use crate::host_service::HostApi;
use crate::state::HostState;
use fabric_pki::Role;
use fabric_proto::v1::{self as pb, host_service_server::HostServiceServer};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;

/// Runs the host agent on `listener` until `shutdown` completes.
pub async fn run(
    config: HostConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    fabric_pki::install_crypto_provider();
    let tls = config.tls.load()?;
    if tls.identity.role != Role::Host {
        anyhow::bail!(
            "{} is a {:?} certificate, not a host certificate",
            config.tls.cert.display(),
            tls.identity.role
        );
    }
    let state = Arc::new(HostState::new(
        tls.identity.name.clone(),
        tls.identity.cluster.clone(),
    ));
    let local = listener.local_addr()?;
    let endpoint = config
        .advertise
        .clone()
        .unwrap_or_else(|| local.to_string());

    let link = Link {
        client: pb::node_service_client::NodeServiceClient::new(controller_link::channel(
            &config, &tls,
        )?),
        state: state.clone(),
        description: pb::NodeDescription {
            node_id: state.node_id.clone(),
            fault_domain: config.fault_domain,
            update_domain: config.update_domain,
            capacity_vm_slots: config.capacity,
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
            host_endpoint: endpoint,
            pid: std::process::id(),
        },
        heartbeat_interval: config.heartbeat_interval,
        max_backoff: config.max_backoff,
    };
    let link = tokio::spawn(link.run());

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<HostServiceServer<HostApi>>().await;
    tracing::info!(node = %state.node_id, boot_id = %state.boot_id, %local, controller = %config.controller, "host agent serving");
    let result = tonic::transport::Server::builder()
        .tls_config(tls.server_config())?
        .add_service(health_service)
        .add_service(fabric_proto::reflection().build_v1()?)
        .add_service(fabric_proto::reflection().build_v1alpha()?)
        .add_service(HostServiceServer::new(HostApi { state }))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await;
    link.abort();
    Ok(result?)
}
