//! Helpers shared by Fabric's cross-crate tests: a throwaway cluster PKI, an
//! in-process controller on 127.0.0.1:0, and mTLS clients.
//!
//! - [`bins`]: finding the workspace's binaries (FABRIC_BIN_DIR or next to
//!   the running executable).
//! - [`cluster`]: a real `fabricctl up` cluster in a temp dir, killed on drop.
//! - [`compose`]: the docker-compose stack and the faults Docker injects.
//! - [`etcd_history`]: who wrote each revision of a replicated
//!   controller's state (no deposed leader may have).
//! - [`https`]: `GET /` at a role's endpoint trusting exactly one
//!   certificate, to prove which certificate the endpoint serves.
//! - [`scrape`]: plain-HTTP GETs of the dashboard and `/metrics`, parsed.
//! - [`openssl`]: OpenSSL's command line for the waagent tests.
//! - [`procs`]: liveness, command lines and memory of processes via /proc.
//! - [`services`]: service definitions and the instances of a deployment.

pub mod bins;
pub mod cluster;
pub mod compose;
pub mod etcd_history;
pub mod ground_truth;
pub mod https;
pub mod openssl;
pub mod packages;
pub mod procs;
pub mod scrape;
pub mod services;

use fabric_controller::clock::SystemClock;
use fabric_controller::config::ControllerConfig;
use fabric_core::CoreConfig;
use fabric_pki::layout::CertPaths;
use fabric_pki::tls::TlsFiles;
use fabric_pki::{PkiLayout, Role};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tempfile::TempDir;
use tokio::sync::oneshot;
use tonic::transport::{Channel, Endpoint};

/// A cluster CA with controller, admin and host certificates in a temp dir.
pub struct TestPki {
    pub dir: TempDir,
    pub layout: PkiLayout,
    pub cluster: String,
}

impl TestPki {
    pub fn new(cluster: &str, hosts: &[&str]) -> Self {
        fabric_pki::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = PkiLayout::new(dir.path().join("pki"));
        let now = time::OffsetDateTime::now_utc();
        let ca = layout.init(cluster, &[], now).expect("pki init");
        for host in hosts {
            layout.ensure_host(&ca, host, &[], now).expect("host cert");
        }
        Self {
            dir,
            layout,
            cluster: cluster.to_owned(),
        }
    }

    pub fn files(&self, own: &CertPaths) -> TlsFiles {
        TlsFiles::new(self.layout.ca_cert(), own)
    }

    pub fn host(&self, node: &str) -> TlsFiles {
        self.files(&self.layout.host(node))
    }

    pub fn admin(&self) -> TlsFiles {
        self.files(&self.layout.admin())
    }

    /// Issues an extra certificate with any role, e.g. to forge identities.
    pub fn issue(&self, role: Role, name: &str) -> TlsFiles {
        let ca = self.layout.load_ca(&self.cluster).expect("load ca");
        let issued = ca
            .issue(role, name, &[], &[], time::OffsetDateTime::now_utc())
            .expect("issue");
        let paths = CertPaths {
            cert: self.dir.path().join(format!("extra-{name}.pem")),
            key: self.dir.path().join(format!("extra-{name}.key")),
        };
        fabric_pki::layout::write_pair(&paths, &issued).expect("write");
        self.files(&paths)
    }
}

/// A test controller's configuration: `pki`'s cluster and controller
/// certificate on `listen`, default core settings, no state directory, no
/// address files, no dashboard.
pub fn controller_config(pki: &TestPki, listen: SocketAddr) -> ControllerConfig {
    ControllerConfig {
        cluster: pki.cluster.clone(),
        listen,
        addr_file: None,
        tls: pki.files(&pki.layout.controller()),
        core: CoreConfig::default(),
        state_dir: None,
        http_listen: None,
        http_addr_file: None,
        accept: Default::default(),
        tick_coalesce: fabric_controller::config::DEFAULT_TICK_COALESCE,
        replica: None,
        probe: Default::default(),
    }
}

/// Runs a controller that must not start, and returns why it did not.
pub async fn controller_start_error(
    config: ControllerConfig,
    listener: tokio::net::TcpListener,
) -> String {
    fabric_controller::server::run(
        config,
        listener,
        Arc::new(SystemClock::new()),
        std::future::pending(),
    )
    .await
    .expect_err("the controller must refuse to start")
    .to_string()
}

/// A controller running in this process until dropped.
pub struct RunningController {
    pub addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl RunningController {
    pub async fn start(pki: &TestPki, core: CoreConfig) -> Self {
        Self::start_with_state(pki, core, None).await
    }

    /// Starts a controller that saves its state under `state_dir`.
    pub async fn start_with_state(
        pki: &TestPki,
        core: CoreConfig,
        state_dir: Option<std::path::PathBuf>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let config = ControllerConfig {
            core,
            state_dir,
            ..controller_config(pki, addr)
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            fabric_controller::server::run(config, listener, Arc::new(SystemClock::new()), async {
                let _ = stopped.await;
            })
            .await
            .expect("controller run");
        });
        Self {
            addr,
            stop: Some(stop),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }
}

impl Drop for RunningController {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An eager mTLS channel with `files` to `url`; errors if the handshake fails.
pub async fn connect(url: &str, files: &TlsFiles) -> Result<Channel, tonic::transport::Error> {
    let tls = files.load().expect("load tls files");
    Endpoint::from_shared(url.to_owned())?
        .tls_config(tls.client_config("localhost"))?
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `limit`.
pub async fn eventually<T, F, Fut>(limit: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
