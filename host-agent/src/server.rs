//! Wiring of the host agent: its own gRPC server (host service, health,
//! reflection), the GuestService listener for its VMs, the VM supervisor and
//! the link to the controller, until shutdown.
//!
//! VMs are separate machines: shutting the host agent down leaves its guest
//! agents running. The next start kills and wipes them (no re-adoption yet).

use crate::config::HostConfig;
use crate::controller_link::{self, Link};
use crate::guest_service::GuestApi;
use crate::host_service::HostApi;
use crate::state::HostState;
use crate::vm::process::{self, ProcessLauncher};
use crate::vm::{Policy, VmManager, VmSettings, supervisor};
use fabric_pki::Role;
use fabric_proto::v1::{
    self as pb, guest_service_server::GuestServiceServer, host_service_server::HostServiceServer,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
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

    let state_dir = config.state_dir_for(&state.node_id);
    std::fs::create_dir_all(state_dir.join("vms"))
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", state_dir.display()))?;
    let leftovers = process::cleanup_leftovers(&state_dir);
    if !leftovers.is_empty() {
        tracing::info!(?leftovers, "cleaned up VMs of an earlier host agent");
    }

    let guests = &config.guests;
    let guest_listener = TcpListener::bind(guests.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for guests on {}: {e}", guests.listen))?;
    let guest_addr = guest_listener.local_addr()?;
    let guest_tls = crate::guest_tls::server_config(&tls, &config.tls.key)?;

    let controller =
        pb::node_service_client::NodeServiceClient::new(controller_link::channel(&config, &tls)?);
    let launcher = ProcessLauncher {
        bin: guests.agent_bin.clone(),
        host_agent_url: format!("https://{}", reachable(guest_addr)),
        // Host certificates carry localhost, 127.0.0.1 and the node id.
        host_agent_name: "localhost".into(),
        ca: config.tls.ca.clone(),
        node: state.node_id.clone(),
        listen_ip: guests.vm_listen_ip,
        guest_now: guests.now.map(|now| (now, tokio::time::Instant::now())),
        leap_day_bug: guests.leap_day_bug,
        silent_failures: guests.silent_failures,
    };
    let vms = VmManager::new(
        VmSettings {
            state_dir: state_dir.clone(),
            policy: Policy {
                connect_timeout: guests.connect_timeout,
                heartbeat_timeout: guests.heartbeat_timeout,
                clean_vm_strikes: guests.clean_vm_strikes,
            },
            heartbeat_interval: guests.heartbeat_interval,
        },
        Box::new(launcher),
        controller.clone(),
        state.clone(),
    );
    let supervisor = tokio::spawn(supervisor::run(vms.clone()));
    let guest_server = tokio::spawn(
        tonic::transport::Server::builder()
            .tls_config(guest_tls)?
            .add_service(GuestServiceServer::new(GuestApi { vms: vms.clone() }))
            .serve_with_incoming(TcpIncoming::from(guest_listener)),
    );

    let link = Link {
        client: controller,
        state: state.clone(),
        vms: vms.clone(),
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
    tracing::info!(
        node = %state.node_id,
        boot_id = %state.boot_id,
        %local,
        guest_listen = %guest_addr,
        state_dir = %state_dir.display(),
        guest_agent = %guests.agent_bin.display(),
        controller = %config.controller,
        "host agent serving"
    );
    let result = tonic::transport::Server::builder()
        .tls_config(tls.server_config())?
        .add_service(health_service)
        .add_service(fabric_proto::reflection().build_v1()?)
        .add_service(fabric_proto::reflection().build_v1alpha()?)
        .add_service(HostServiceServer::new(HostApi { state, vms }))
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), shutdown)
        .await;
    link.abort();
    supervisor.abort();
    guest_server.abort();
    Ok(result?)
}

/// An address guests can dial: a wildcard bind is reached over loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        let ip = match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        };
        SocketAddr::new(ip, addr.port())
    } else {
        addr
    }
}
