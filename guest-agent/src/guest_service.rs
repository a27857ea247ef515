//! The guest agent's own gRPC server: GuestAgentService (status and certificate rotation) and
//! grpc.health.v1, for the host agent.
//!
//! Plaintext h2c, because it listens where only the host can reach it (loopback in this
//! prototype, the host-only virtual network in the real system) and the guest agent has no
//! certificate the host agent could verify anyway; every call is authenticated by the session
//! token the host agent issued in its welcome.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use fabric_proto::v1::guest_agent_service_server::{GuestAgentService, GuestAgentServiceServer};
use fabric_proto::v1::{
    GetGuestStatusRequest, GuestStatus, PushSecretsRequest, PushSecretsResponse,
};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tonic::transport::server::TcpIncoming;
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;
use tracing::{error, info, warn};

use crate::agent_state::AgentState;
use crate::secret_files::write_secret_files;
use crate::secrets::open_all;

/// GuestAgentService over the agent's shared state.
#[derive(Clone, Debug)]
pub struct GuestAgentApi {
    state: Arc<AgentState>,
}

impl GuestAgentApi {
    /// A service answering from `state`.
    pub fn new(state: Arc<AgentState>) -> Self {
        Self { state }
    }

    fn authorize(&self, session_token: &str) -> Result<(), Status> {
        if !self.state.has_session() {
            // Retryable: the host agent may call between handing out the token and our Hello
            // returning.
            return Err(Status::unavailable(
                "guest agent has not completed Hello with its host agent yet",
            ));
        }
        if !self.state.session_matches(session_token) {
            warn!("refused a call with a wrong session token");
            return Err(Status::permission_denied("wrong session token"));
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl GuestAgentService for GuestAgentApi {
    async fn get_guest_status(
        &self,
        request: Request<GetGuestStatusRequest>,
    ) -> Result<Response<GuestStatus>, Status> {
        self.authorize(&request.get_ref().session_token)?;
        let state = &self.state;
        let role = state.role_status();
        let transfer = state.transfer();
        Ok(Response::new(GuestStatus {
            vm_id: state.vm_id().to_owned(),
            incarnation: state.incarnation(),
            transfer_cert_fingerprint: transfer.fingerprint_sha256(),
            transfer_cert_not_before: Some(timestamp(transfer.not_before())),
            transfer_cert_not_after: Some(timestamp(transfer.not_after())),
            role_state: role.state.into(),
            role_endpoint: role.endpoint.map(|a| a.to_string()).unwrap_or_default(),
            served_cert_fingerprint: state
                .served()
                .map(|served| served.fingerprint())
                .unwrap_or_default(),
            secrets_version: state.secrets_version(),
        }))
    }

    async fn push_secrets(
        &self,
        request: Request<PushSecretsRequest>,
    ) -> Result<Response<PushSecretsResponse>, Status> {
        let request = request.into_inner();
        self.authorize(&request.session_token)?;
        let state = &self.state;
        if request.vm_id != state.vm_id() || request.incarnation != state.incarnation() {
            return Err(Status::invalid_argument(format!(
                "secrets for {} incarnation {} pushed to {} incarnation {}",
                request.vm_id,
                request.incarnation,
                state.vm_id(),
                state.incarnation()
            )));
        }
        let Some(served) = state.served() else {
            return Err(Status::unavailable("the role has not started yet"));
        };

        let _rotation = state.rotation_lock().await;
        // Everything is opened and checked before anything changes: a bad batch leaves the
        // files and the served certificate as they were.
        let secrets = open_all(
            state.transfer().private_key_pkcs8_der(),
            &state.seal_context(),
            &request.secrets,
        )
        .map_err(|e| {
            warn!(error = %e, "refused pushed secrets; still serving the previous certificate");
            Status::invalid_argument(e.to_string())
        })?;
        // A few small files: written in place rather than on a blocking thread, which would need
        // the secrets moved there and back for no measurable gain.
        write_secret_files(state.vm_dir(), &secrets).map_err(|e| {
            error!(error = %e, "writing rotated secrets failed; still serving the previous certificate");
            Status::internal(format!("writing secrets: {e}"))
        })?;
        served.swap(secrets[0].certified_key().clone());
        state.set_secrets_version(request.secrets_version.clone());
        let fingerprint = served.fingerprint();
        let names: Vec<&str> = secrets.iter().map(|s| s.name()).collect();
        info!(
            ?names,
            secrets_version = %request.secrets_version,
            served_cert_fingerprint = %fingerprint,
            "secrets rotated; serving the new certificate"
        );
        Ok(Response::new(PushSecretsResponse {
            served_cert_fingerprint: fingerprint,
        }))
    }
}

fn timestamp(t: OffsetDateTime) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: t.unix_timestamp(),
        // Always in 0..1e9, so it fits.
        nanos: t.nanosecond() as i32,
    }
}

/// The running gRPC server. Dropping it stops serving.
#[derive(Debug)]
pub struct GuestServer {
    addr: SocketAddr,
    health: HealthReporter,
    task: JoinHandle<()>,
}

impl GuestServer {
    /// Binds `ip:0` and serves GuestAgentService and health. Health says NOT_SERVING for
    /// GuestAgentService until [`Self::set_ready`].
    pub async fn start(ip: IpAddr, state: Arc<AgentState>) -> io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(ip, 0)).await?;
        let addr = listener.local_addr()?;
        let (health, health_service) = tonic_health::server::health_reporter();
        health
            .set_not_serving::<GuestAgentServiceServer<GuestAgentApi>>()
            .await;
        let router = tonic::transport::Server::builder()
            .add_service(health_service)
            .add_service(GuestAgentServiceServer::new(GuestAgentApi::new(state)));
        let task = tokio::spawn(async move {
            if let Err(e) = router
                .serve_with_incoming(TcpIncoming::from(listener))
                .await
            {
                error!(error = %e, "guest agent gRPC server stopped");
            }
        });
        Ok(Self { addr, health, task })
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Marks GuestAgentService as SERVING in health (the role is up).
    pub async fn set_ready(&self) {
        self.health
            .set_serving::<GuestAgentServiceServer<GuestAgentApi>>()
            .await;
    }
}

impl Drop for GuestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
