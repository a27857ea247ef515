//! Wiring: TLS, the gRPC services, health, reflection, and the expiry loop.
//!
//! [`run`] takes an already-bound listener and a shutdown future from its
//! caller, so `main` can bind a real port while tests bind 127.0.0.1:0 and
//! stop the server when they are done.

use crate::api::{node_service::NodeApi, operator_service::OperatorApi};
use crate::config::ControllerConfig;
use crate::controller::{Controller, Persistence};
use crate::secrets::SecretStore;
use crate::store::log::LogStore;
use crate::store::sealed_keys::AtRestKey;
use crate::store::{Store, StoreError};
use fabric_core::{Clock, FabricCore};
use fabric_daemon::task::AbortOnDrop;
use fabric_proto::v1::{
    node_service_server::NodeServiceServer, operator_service_server::OperatorServiceServer,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tonic::server::NamedService;

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
    #[error("{0}")]
    Packages(#[from] crate::store::packages::UploadError),
}

/// Where the state is kept and the key that encrypts its secrets.
pub type StateHome = (Box<dyn Store>, AtRestKey);

/// The controller's own store: a [`LogStore`] in the state directory with
/// its at-rest key beside it, or nothing (state kept in memory).
pub fn local_store(config: &ControllerConfig) -> Result<Option<StateHome>, ServeError> {
    let Some(dir) = &config.state_dir else {
        tracing::warn!("no --state-dir: state is kept in memory and lost on restart");
        return Ok(None);
    };
    Ok(Some((
        Box::new(LogStore::new(dir)?),
        AtRestKey::open_or_create(dir)?,
    )))
}

/// Loads the saved state from `store`, if any: the core with a fresh
/// heartbeat grace for every node (a restart, or a new leader, must not
/// declare servers lost for its own absence), and the decrypted secrets.
/// With no store the controller keeps everything in memory.
fn restore(
    config: &ControllerConfig,
    store: Option<StateHome>,
    now: fabric_core::Moment,
) -> Result<(FabricCore, SecretStore, Option<Persistence>), ServeError> {
    let Some((store, key)) = store else {
        return Ok((
            FabricCore::new(config.core.clone(), now).with_cluster_id(new_cluster_id()),
            SecretStore::default(),
            None,
        ));
    };
    let mut secrets = SecretStore::default();
    let core = match store.load()? {
        None => {
            let id = new_cluster_id();
            tracing::warn!(
                store = %store.describe(),
                cluster_id = %id,
                "no saved state: a new cluster. If host agents remember another cluster, this \
                 controller enters state-lost mode and stops nothing until an operator recovers"
            );
            FabricCore::new(config.core.clone(), now).with_cluster_id(id)
        }
        Some(saved) => {
            for e in &saved.secrets {
                let cert = key.decrypt(e)?;
                let (Ok(d), Ok(r)) = (
                    fabric_core::Name::parse("deployment", &e.deployment),
                    fabric_core::Name::parse("role", &e.role),
                ) else {
                    return Err(StoreError::Corrupt {
                        path: store.describe().into(),
                        reason: format!("invalid names {}/{}", e.deployment, e.role),
                    }
                    .into());
                };
                secrets.push(&d, &r, cert);
            }
            let restored = FabricCore::restore(config.core.clone(), saved.core, now);
            tracing::info!(
                store = %store.describe(),
                cluster_id = %restored.identity().id,
                generation = restored.identity().generation,
                "restored saved state"
            );
            if restored.identity().id.is_empty() {
                // Written before identities existed: no host remembers one.
                restored.with_cluster_id(new_cluster_id())
            } else {
                restored
            }
        }
    };
    Ok((core, secrets, Some(Persistence::new(store, key))))
}

/// A new cluster's identity: 128 random bits, in hex.
fn new_cluster_id() -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Serves the controller on `listener` until `shutdown` completes, with
/// its state in the state directory (see [`local_store`]).
pub async fn run(
    config: ControllerConfig,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let store = local_store(&config)?;
    serve(config, listener, clock, store, None, shutdown).await
}

/// Serves the controller on `listener` until `shutdown` completes, with
/// its state in `store` (`None`: in memory); `term` when it is one
/// replica's term as leader (see [`crate::replica`]).
pub async fn serve(
    config: ControllerConfig,
    listener: TcpListener,
    clock: Arc<dyn Clock>,
    store: Option<StateHome>,
    term: Option<crate::replica::Term>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    fabric_pki::install_crypto_provider();
    let tls = config.tls.load()?;
    if tls.identity.role != fabric_pki::Role::Controller || tls.identity.cluster != config.cluster {
        return Err(ServeError::WrongCertificate(tls.identity.to_string()));
    }
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Http(e.to_string()))?;
    let (mut core, secrets, persistence) = restore(&config, store, clock.now())?;
    core.watch_cluster_certificates(own_certificates(&tls)?);
    let controller = Controller::new(config.cluster.clone(), core, secrets, clock, persistence);
    if let Some(term) = term {
        controller.set_term(term);
    }
    if let Some(dir) = &config.state_dir {
        let store = crate::store::packages::PackageStore::open(dir)?;
        controller.set_package_store(store);
    }
    let _dashboard = match config.http_listen {
        Some(addr) => Some(start_dashboard(&config, addr, controller.clone()).await?),
        None => None,
    };

    let (health, health_service) = tonic_health::server::health_reporter();
    health.set_serving::<NodeServiceServer<NodeApi>>().await;
    health
        .set_serving::<OperatorServiceServer<OperatorApi>>()
        .await;
    let served = [
        <NodeServiceServer<NodeApi> as NamedService>::NAME,
        <OperatorServiceServer<OperatorApi> as NamedService>::NAME,
    ];
    let reflection_v1 = fabric_proto::reflection(&served).build_v1()?;
    let reflection_v1alpha = fabric_proto::reflection(&served).build_v1alpha()?;

    // Aborted when this function returns or its future is dropped, so no
    // tick of a stopped controller can change (or save) state.
    let _ticks = AbortOnDrop(tokio::spawn(tick_loop(
        controller.clone(),
        config.tick_coalesce,
    )));
    let _probes = AbortOnDrop(tokio::spawn(crate::probe::probe_loop(
        controller.clone(),
        config.probe,
    )));
    match fabric_daemon::tls_accept::raise_descriptor_limit() {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!("cannot raise the open-file limit: {e}"),
    }
    let incoming = fabric_daemon::tls_accept::incoming(
        listener,
        tls.rustls_server_config()?,
        config.accept,
        controller.metrics().accept_stats().clone(),
        "gRPC",
    );
    let router = tonic::transport::Server::builder()
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
        addr = %bound,
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
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await;
    Ok(result?)
}

/// The cluster CA's and the controller's own certificate, for the expiry
/// watch and the metrics.
fn own_certificates(
    tls: &fabric_pki::tls::LoadedTls,
) -> Result<Vec<fabric_core::expiry::ClusterCertificate>, ServeError> {
    let cert = |name: &str, pem: &str| -> Result<_, ServeError> {
        Ok(fabric_core::expiry::ClusterCertificate {
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
) -> Result<AbortOnDrop<()>, ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| ServeError::Http(format!("cannot listen on {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .map_err(|e| ServeError::Http(e.to_string()))?;
    if let Some(path) = &config.http_addr_file {
        fabric_daemon::files::write_atomically(path, bound.to_string())
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

/// Sleeps until the core's next deadline (a heartbeat expiring, a grace or a
/// fault hold running out, a certificate crossing a warning window), then
/// lets the core act. Woken early by any decision that raised events, which
/// is every change that could give it work sooner (healing waiting for
/// capacity or for in-flight heals is woken this way): no blind polling.
/// How often a failed save of held decisions is tried again.
const SAVE_RETRY: Duration = Duration::from_secs(1);

async fn tick_loop(controller: Arc<Controller>, coalesce: Duration) {
    let origin = tokio::time::Instant::now() - controller.clock().now().mono;
    // How late the timer fired past the deadline it slept until (zero when
    // woken early): a large lateness is the controller's own stall.
    let mut late = Duration::ZERO;
    loop {
        controller.retry_save();
        let next = controller.tick(late);
        // Held decisions (a failed save) are retried every second.
        let retry = controller
            .held()
            .map(|_| controller.clock().now().mono + SAVE_RETRY);
        let next = match (next, retry) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let deadline = async {
            match next {
                Some(deadline) => {
                    tokio::time::sleep_until(origin + deadline).await;
                    (origin + deadline).elapsed()
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            overdue = deadline => late = overdue,
            () = controller.woken() => {
                // Every decision with events wakes this loop, and a tick is
                // a pass over the cluster: a burst (a thousand VMs reported
                // Running in a second) makes one tick per `coalesce`, not
                // one per event. Measured: ticking per event kept the
                // controller's two cores busy while 20,000 VMs started.
                tokio::time::sleep(coalesce).await;
                late = Duration::ZERO;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::test_support::deployment;
    use fabric_core::{
        ClusterEvent, CoreConfig, EventKind, FaultCause, FaultReport, HiThreshold, NodeId, NodeInfo,
    };

    fn node(fault_domain: u32) -> NodeInfo {
        crate::test_support::node(fault_domain, 1)
    }

    async fn next_of(
        events: &mut tokio::sync::broadcast::Receiver<ClusterEvent>,
        kind: EventKind,
    ) -> ClusterEvent {
        loop {
            let e = events.recv().await.expect("event stream open");
            if e.kind == kind {
                return e;
            }
        }
    }

    // Paused time: the clock moves only when every task waits on a timer,
    // so "no time passed" below means no timer (no poll) was needed.
    #[tokio::test(start_paused = true)]
    async fn capacity_freed_by_an_operator_is_used_at_once_without_polling() {
        let clock = Arc::new(SystemClock::new());
        let config = CoreConfig {
            node_timeout: Duration::from_secs(3600),
            // One server in HI must not stop healing here.
            hi_threshold: HiThreshold::Count(2),
            ..CoreConfig::default()
        };
        let core = FabricCore::new(config, clock.now());
        let controller = Controller::new("c".into(), core, SecretStore::default(), clock, None);
        // No coalescing: "no time passed" is what is checked.
        let _ticks = AbortOnDrop(tokio::spawn(tick_loop(controller.clone(), Duration::ZERO)));
        // Two one-slot servers, each running one deployment.
        controller.register(NodeId::new("host-1"), node(0), "b1");
        controller.register(NodeId::new("host-2"), node(1), "b2");
        controller.deploy(deployment("web")).unwrap();
        controller.deploy(deployment("batch")).unwrap();
        let web_home = controller
            .read()
            .instances()
            .find(|i| i.id.deployment.as_str() == "web")
            .and_then(|i| i.node().cloned())
            .unwrap();
        let mut events = controller.subscribe();
        // web's server fails: no room elsewhere, so web's instance waits.
        controller
            .report_fault(
                &web_home,
                &FaultReport::new(FaultCause::HostHardware, "disk", "test", vec![]),
            )
            .unwrap();
        next_of(&mut events, EventKind::InstancePending).await;

        let start = tokio::time::Instant::now();
        controller.delete("batch").unwrap();
        let healed = next_of(&mut events, EventKind::InstanceHealing).await;
        assert!(healed.reason.starts_with("web.r.0"), "{}", healed.reason);
        assert_eq!(start.elapsed(), Duration::ZERO, "healed without a poll");
    }
}
