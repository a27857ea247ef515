//! Wiring of the host agent: its own gRPC server (host service, health,
//! reflection), the GuestService listener for its VMs, the VM supervisor and
//! the link to the controller, until shutdown.
//!
//! VMs are separate machines: shutting the host agent down (or killing it)
//! leaves its guest agents running. The next start on the same state
//! directory re-adopts those that said Hello (see [`VmManager::readopt`]),
//! and listens for guests on the same address as before
//! (`<state>/guest-listen.addr`), so their heartbeats find it again.

use crate::config::HostConfig;
use crate::controller_link::{self, Link};
use crate::guest_service::GuestApi;
use crate::host_service::HostApi;
use crate::state::HostState;
use crate::vm::endpoint::EndpointRule;
use crate::vm::process::{Launcher, ProcessLauncher};
use crate::vm::runtime::VmRuntime;
use crate::vm::waagent::Waagent;
use crate::vm::{Policy, VmManager, VmSettings, supervisor};
use fabric_daemon::task::AbortOnDrop;
use fabric_pki::Role;
use fabric_proto::v1::{
    self as pb, guest_service_server::GuestServiceServer, host_service_server::HostServiceServer,
};
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio::net::TcpListener;

/// Runs the host agent on `listener` until `shutdown` completes.
pub async fn run(
    config: HostConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    run_with(config, listener, shutdown, None).await
}

/// [`run`], with the VMs run by `runtime` instead of as guest-agent
/// processes when one is given (see [`crate::vm::runtime`]): then no
/// GuestService listener is bound, since the runtime's guests call it
/// in-process.
pub async fn run_with(
    config: HostConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    runtime: Option<Arc<dyn VmRuntime>>,
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

    // A server moved to another package by a rollout runs that package's
    // host agent, however this process was started (see software.rs).
    // Not for a runtime's hosts: many share one process, which no package
    // could replace for one of them.
    let packages = crate::software::Packages::new(&state_dir);
    if runtime.is_none() {
        if config.running.package.is_none() {
            packages.remember_base()?;
        }
        packages.resume(&config.running)?;
    }

    let guests = &config.guests;
    let guest_listener = match &runtime {
        Some(_) => None,
        None => Some(bind_guest_listener(&state_dir, guests.listen).await?),
    };
    let guest_addr = match &guest_listener {
        Some(l) => Some(l.local_addr()?),
        None => None,
    };

    let controller_channel = controller_link::channel(&config, &tls)?;
    let controller = pb::node_service_client::NodeServiceClient::new(controller_channel.clone());
    // Azure's guest agent, for roles that ask for it (real servers only).
    let waagent = match (&runtime, &guests.waagent) {
        (None, Some(bin)) => Some(Arc::new(Waagent::new(bin.clone()))),
        _ => None,
    };
    let launcher: Box<dyn Launcher> = match (&runtime, guest_addr) {
        (Some(runtime), _) => runtime.launcher(),
        (None, guest_addr) => Box::new(process_launcher(
            &config,
            &state,
            &state_dir,
            guest_addr.expect("bound without a runtime"),
            &waagent,
        )),
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
            // With a plugin the guest's own endpoint is private: any port of
            // the VM's address; the public one is the host's to give.
            role_endpoint: if guests.netplug.is_some() {
                EndpointRule {
                    ip: guests.vm_listen_ip,
                    ports: None,
                }
            } else {
                guests.role.rule(guests.vm_listen_ip)
            },
            public: guests.netplug.as_ref().map(|_| {
                let rule = guests.role.rule(guests.vm_listen_ip);
                crate::netplug::PublicEndpoints {
                    bind_ip: guests.role.listen_ip.unwrap_or(guests.vm_listen_ip),
                    advertise_ip: rule.ip,
                    ports: guests.role.ports,
                }
            }),
            guest_agent_endpoint: EndpointRule {
                ip: guests.vm_listen_ip,
                ports: None,
            },
            sync_records: runtime.as_ref().is_none_or(|r| r.sync_records()),
        },
        launcher,
        controller.clone(),
        state.clone(),
    );
    vms.metrics()
        .vm_isolation(crate::vm::users::isolation(guests.vm_users.is_some()).as_str());
    let (adopted, cleaned) = vms.readopt();
    if !adopted.is_empty() || !cleaned.is_empty() {
        tracing::info!(
            ?adopted,
            ?cleaned,
            "VMs of an earlier host agent: re-adopted the running ones, wiped the rest"
        );
    }
    if let Some(runtime) = &runtime {
        runtime.attach(Arc::new(GuestApi { vms: vms.clone() }));
    }
    if let Some(waagent) = &waagent {
        waagent.attach(Arc::new(GuestApi { vms: vms.clone() }));
    }
    let supervisor = tokio::spawn(supervisor::run(vms.clone()));
    // Aborted with this function: the plugin process itself outlives us.
    let _netplug = guests.netplug.as_ref().map(|n| {
        AbortOnDrop(
            crate::netplug::NetPlug::new(
                &state_dir,
                n.bin.clone(),
                n.api,
                n.args.clone(),
                config.running.plugin.clone(),
            )
            .spawn(vms.clone()),
        )
    });
    let _metrics = match config.http_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| anyhow::anyhow!("cannot listen on {addr} for /metrics: {e}"))?;
            if let Some(path) = &config.http_addr_file {
                crate::addr_file::write(path, listener.local_addr()?)?;
            }
            tracing::info!(metrics = %format!("http://{}/metrics", listener.local_addr()?), "metrics serving");
            Some(AbortOnDrop(tokio::spawn(crate::http::serve(
                listener,
                vms.clone(),
            ))))
        }
        None => None,
    };
    // VMs are not trusted: their handshakes run under the same timeout and
    // limits as every Fabric listener's.
    let guest_server = match guest_listener {
        Some(guest_listener) => {
            let guest_incoming = fabric_daemon::tls_accept::incoming(
                guest_listener,
                tls.rustls_server_config_without_client_auth()?,
                fabric_daemon::tls_accept::Limits::default(),
                vms.metrics().accept_stats().clone(),
                "GuestService",
            );
            Some(AbortOnDrop(tokio::spawn(
                tonic::transport::Server::builder()
                    // A guest's messages are small (a transfer certificate is
                    // the largest field); the 4 MiB default would let one VM
                    // make this host agent buffer and log megabytes per call.
                    .add_service(
                        GuestServiceServer::new(GuestApi { vms: vms.clone() })
                            .max_decoding_message_size(crate::guest_service::MAX_GUEST_MESSAGE),
                    )
                    .serve_with_incoming(guest_incoming),
            )))
        }
        None => None,
    };

    let link = Link {
        client: controller.clone(),
        channel: controller_channel,
        state: state.clone(),
        vms: vms.clone(),
        description: pb::NodeDescription {
            node_id: state.node_id.clone(),
            fault_domain: config.fault_domain,
            update_domain: config.update_domain,
            capacity_vm_slots: config.capacity,
            agent_version: config.running.host_agent.clone(),
            host_endpoint: endpoint,
            pid: std::process::id(),
            software: Some(config.running.to_pb()),
            role_probe_host: config.role_probe_host.clone().unwrap_or_default(),
        },
        updater: runtime.is_none().then(|| {
            Arc::new(crate::software::Updater::new(
                packages,
                controller.clone(),
                config.running.clone(),
            ))
        }),
        heartbeat_interval: config.heartbeat_interval,
        max_backoff: config.max_backoff,
        addresses: config.controllers.len(),
        report_coalesce: config.report_coalesce,
        obeyed: crate::obeyed::ObeyedFile::open(&state_dir, config.obeyed_sync_interval)?,
        disobeyed: None,
        reports: crate::heartbeat_delta::ReportDelta::new(config.complete_report_every),
        desired: Default::default(),
    };
    let link = tokio::spawn(link.run());

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<HostServiceServer<HostApi>>().await;
    tracing::info!(
        node = %state.node_id,
        boot_id = %state.boot_id,
        %local,
        guest_listen = %guest_addr.map_or("in-process".to_owned(), |a| a.to_string()),
        state_dir = %state_dir.display(),
        guest_agent = %guests.agent_bin.display(),
        controller = %config.controllers.join(","),
        "host agent serving"
    );
    let served = [<HostServiceServer<HostApi> as tonic::server::NamedService>::NAME];
    // Handshakes under a timeout and connection limits, as the controller's.
    let incoming = fabric_daemon::tls_accept::incoming(
        listener,
        tls.rustls_server_config()?,
        fabric_daemon::tls_accept::Limits::default(),
        vms.metrics().accept_stats().clone(),
        "HostService",
    );
    let result = tonic::transport::Server::builder()
        .add_service(health_service)
        .add_service(fabric_proto::reflection(&served).build_v1()?)
        .add_service(fabric_proto::reflection(&served).build_v1alpha()?)
        .add_service(HostServiceServer::new(HostApi {
            state,
            vms,
            software: config.running.to_pb(),
        }))
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    link.abort();
    supervisor.abort();
    drop(guest_server);
    Ok(result?)
}

/// Guest agents as processes: each started with the address of this host
/// agent's GuestService listener.
fn process_launcher(
    config: &HostConfig,
    state: &HostState,
    state_dir: &Path,
    guest_addr: SocketAddr,
    waagent: &Option<Arc<Waagent>>,
) -> ProcessLauncher {
    let guests = &config.guests;
    ProcessLauncher {
        bin: guests.agent_bin.clone(),
        host_agent_url: format!("https://{}", reachable(guest_addr)),
        // Host certificates carry localhost, 127.0.0.1 and the node id.
        host_agent_name: "localhost".into(),
        ca: config.tls.ca.clone(),
        node: state.node_id.clone(),
        listen_ip: guests.vm_listen_ip,
        role: if guests.netplug.is_some() {
            crate::config::RoleEndpoints::default()
        } else {
            guests.role
        },
        guest_now: guests.now.map(|now| (now, tokio::time::Instant::now())),
        leap_day_bug: guests.leap_day_bug,
        silent_failures: guests.silent_failures,
        boot_time: guests.boot_time,
        vm_users: vm_users(guests.vm_users, state_dir),
        extra_args: guests.extra_args.clone(),
        waagent: waagent.clone(),
    }
}

/// `<state>/guest-listen.addr`: where the guest listener was bound.
pub fn guest_listen_file(state_dir: &Path) -> PathBuf {
    state_dir.join("guest-listen.addr")
}

/// The GuestService listener. Guest agents know its address from their
/// command line, so after a restart the host agent binds the address it had
/// before if the configuration leaves the port open (port 0); if that fails
/// (another process took the port), a new port is used and logged: VMs
/// started before then cannot reach us and are reinitialized at their
/// heartbeat timeout.
async fn bind_guest_listener(
    state_dir: &Path,
    configured: SocketAddr,
) -> anyhow::Result<TcpListener> {
    let file = guest_listen_file(state_dir);
    let previous = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| t.trim().parse::<SocketAddr>().ok())
        .filter(|prev| configured.port() == 0 && prev.ip() == configured.ip() && prev.port() != 0);
    let listener = match previous {
        Some(prev) => match TcpListener::bind(prev).await {
            Ok(listener) => {
                tracing::info!(%prev, "listening for guests on the address of the previous host agent");
                listener
            }
            Err(e) => {
                tracing::warn!(%prev, "cannot listen for guests on the previous address ({e}); using a new port: guests of the earlier host agent will not reach us");
                TcpListener::bind(configured)
                    .await
                    .map_err(|e| anyhow::anyhow!("cannot listen for guests on {configured}: {e}"))?
            }
        },
        None => TcpListener::bind(configured)
            .await
            .map_err(|e| anyhow::anyhow!("cannot listen for guests on {configured}: {e}"))?,
    };
    let bound = listener.local_addr()?;
    if let Err(e) = fabric_daemon::files::write_atomically(&file, bound.to_string()) {
        tracing::warn!(path = %file.display(), "cannot record the guest listen address: {e}");
    }
    Ok(listener)
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

/// The per-VM users, when asked for and possible (see [`crate::vm::users`]).
fn vm_users(
    base: Option<u32>,
    state_dir: &std::path::Path,
) -> Option<std::sync::Arc<crate::vm::users::VmUsers>> {
    use crate::vm::users::{Isolation, VmUsers, isolation};
    match isolation(base.is_some()) {
        Isolation::PerVmUsers => {
            let base = base.expect("asked for");
            tracing::info!(first_uid = base, "each VM runs as a user of its own");
            Some(std::sync::Arc::new(VmUsers::new(
                base,
                &state_dir.join("vms"),
            )))
        }
        Isolation::SharedNotRoot => {
            tracing::warn!(
                "--vm-users needs root: every VM runs as this host agent's user and can read the \
                 others' secrets"
            );
            None
        }
        Isolation::SharedOff => None,
    }
}
