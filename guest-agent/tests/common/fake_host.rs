//! A fake host agent: GuestService over TLS with a host certificate of a real cluster PKI. It
//! checks the start token, seals the role certificate to the transfer certificate presented in
//! Hello, and records every call so tests can assert on them.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fabric_pki::PkiLayout;
use fabric_proto::v1::guest_service_server::{GuestService, GuestServiceServer};
use fabric_proto::v1::{
    GuestFailure, GuestFailureAck, GuestHeartbeatRequest, GuestHeartbeatResponse, GuestHello,
    GuestWelcome, SealedSecret,
};
use fabric_sealing::SealContext;
use tempfile::TempDir;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Identity, Server, ServerTlsConfig};
use tonic::{Request, Response, Status};

pub const NODE: &str = "node-1";
pub const START_TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
pub const SESSION_TOKEN: &str = "session-token-for-tests";
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);

/// A cluster PKI in a temp dir with the host certificate of [`NODE`].
pub struct Pki {
    pub dir: TempDir,
    pub layout: PkiLayout,
}

impl Pki {
    pub fn new() -> Self {
        fabric_pki::install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path().join("pki"));
        let now = time::OffsetDateTime::now_utc();
        let ca = layout.init("test", &[], now).unwrap();
        layout.ensure_host(&ca, NODE, &[], now).unwrap();
        Self { dir, layout }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.layout.ca_cert()
    }
}

/// What the fake host agent has been told.
#[derive(Default)]
pub struct Calls {
    pub hellos: Vec<GuestHello>,
    pub heartbeats: Vec<GuestHeartbeatRequest>,
    pub failures: Vec<GuestFailure>,
}

struct Fake {
    calls: Arc<Mutex<Calls>>,
    role_bundle: String,
}

#[tonic::async_trait]
impl GuestService for Fake {
    async fn hello(&self, request: Request<GuestHello>) -> Result<Response<GuestWelcome>, Status> {
        let hello = request.into_inner();
        self.calls.lock().unwrap().hellos.push(hello.clone());
        if hello.token != START_TOKEN {
            return Err(Status::permission_denied("unknown start token"));
        }
        let ctx = SealContext::new(&hello.vm_id, hello.incarnation);
        let sealed = seal_proto(
            &hello.transfer_certificate_der,
            &ctx,
            "web",
            self.role_bundle.as_bytes(),
        );
        let mut parts = hello.vm_id.splitn(3, '.');
        Ok(Response::new(GuestWelcome {
            session_token: SESSION_TOKEN.to_owned(),
            deployment: parts.next().unwrap_or_default().to_owned(),
            role: parts.next().unwrap_or_default().to_owned(),
            instance: parts.next().and_then(|i| i.parse().ok()).unwrap_or(0),
            node_id: NODE.to_owned(),
            secrets: vec![sealed],
            heartbeat_interval: Some(HEARTBEAT_INTERVAL.try_into().unwrap()),
            secrets_version: "v1".to_owned(),
        }))
    }

    async fn guest_heartbeat(
        &self,
        request: Request<GuestHeartbeatRequest>,
    ) -> Result<Response<GuestHeartbeatResponse>, Status> {
        let beat = request.into_inner();
        if beat.session_token != SESSION_TOKEN {
            return Err(Status::permission_denied("wrong session token"));
        }
        self.calls.lock().unwrap().heartbeats.push(beat);
        Ok(Response::new(GuestHeartbeatResponse {}))
    }

    async fn report_guest_failure(
        &self,
        request: Request<GuestFailure>,
    ) -> Result<Response<GuestFailureAck>, Status> {
        self.calls
            .lock()
            .unwrap()
            .failures
            .push(request.into_inner());
        Ok(Response::new(GuestFailureAck {}))
    }
}

/// Seals `plaintext` to `transfer_der` and converts it to the wire form.
pub fn seal_proto(
    transfer_der: &[u8],
    ctx: &SealContext,
    name: &str,
    plaintext: &[u8],
) -> SealedSecret {
    let sealed = fabric_sealing::seal(transfer_der, ctx, name, plaintext).unwrap();
    SealedSecret {
        name: sealed.name,
        encapsulated_key: sealed.encapsulated_key,
        ciphertext: sealed.ciphertext,
    }
}

/// The fake host agent, serving until dropped.
pub struct FakeHost {
    pub addr: SocketAddr,
    pub calls: Arc<Mutex<Calls>>,
    task: JoinHandle<()>,
}

impl FakeHost {
    /// Serves on 127.0.0.1:0.
    pub async fn start(pki: &Pki, role_bundle: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(pki, role_bundle, listener)
    }

    /// Serves on `listener`.
    pub fn start_on(pki: &Pki, role_bundle: &str, listener: TcpListener) -> Self {
        let addr = listener.local_addr().unwrap();
        let host = pki.layout.host(NODE);
        let identity = Identity::from_pem(
            std::fs::read(&host.cert).unwrap(),
            std::fs::read(&host.key).unwrap(),
        );
        let calls = Arc::new(Mutex::new(Calls::default()));
        let fake = Fake {
            calls: calls.clone(),
            role_bundle: role_bundle.to_owned(),
        };
        // No client certificate: VMs hold none.
        let router = Server::builder()
            .tls_config(ServerTlsConfig::new().identity(identity))
            .unwrap()
            .add_service(GuestServiceServer::new(fake));
        let task = tokio::spawn(async move {
            router
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
                .unwrap();
        });
        Self { addr, calls, task }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// The first Hello, once there is one.
    pub fn hello(&self) -> Option<GuestHello> {
        self.calls.lock().unwrap().hellos.first().cloned()
    }

    /// The role endpoint from the first heartbeat that reports ROLE_RUNNING.
    pub fn running_endpoint(&self) -> Option<SocketAddr> {
        let calls = self.calls.lock().unwrap();
        calls
            .heartbeats
            .iter()
            .find(|b| b.role_state() == fabric_proto::v1::RoleState::RoleRunning)
            .map(|b| b.role_endpoint.parse().unwrap())
    }
}

impl Drop for FakeHost {
    fn drop(&mut self) {
        self.task.abort();
    }
}
