//! `fabric.v1.GuestService`: what guest agents call, on a listener of its own.
//!
//! Callers are VMs, which are not trusted: each call must carry the VM's
//! one-time start token (Hello) or the session token Hello returned. A
//! refusal is logged without the token and affects no other VM.
//!
//! Re-adoption: a restarted host agent knows its running VMs from their
//! on-disk records, which hold only the SHA-256 of each session token. Their
//! guest agents' heartbeats (right token, session not yet resumed) are
//! answered UNAUTHENTICATED; the guest agent then says Hello again with its
//! session token in `token` and the same transfer certificate. The host
//! agent checks the token against the digest and the certificate against
//! the recorded fingerprint, keeps the incarnation, and answers a
//! GuestWelcome with the same session token and no secrets (the guest has
//! them already): nothing is fetched from the controller or sealed again.

use crate::secrets::{self, SecretsError};
use crate::vm::VmManager;
use crate::vm::record::HelloInfo;
use crate::vm::refusal::Refusal;
use crate::vm::token;
use fabric_daemon::untrusted::{Throttle, shown};
use fabric_proto::v1::{self as pb, guest_service_server::GuestService};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The largest message a guest may send: its transfer certificate (about
/// 1 KiB of DER) and a few short fields fit many times over.
pub const MAX_GUEST_MESSAGE: usize = 64 * 1024;

pub struct GuestApi {
    pub vms: Arc<VmManager>,
}

/// Refusals come at a guest's (or a stranger's) pace: logged at most once a
/// second, with the count held back.
static REFUSALS: Throttle = Throttle::new(std::time::Duration::from_secs(1));

fn refuse(call: &str, vm_id: &str, incarnation: u64, refusal: Refusal) -> Status {
    let vm_id = shown(vm_id);
    if refusal == Refusal::SessionNotResumed {
        tracing::info!(vm = %vm_id, incarnation, "asking the guest agent to resume its session: {refusal}");
        return Status::unauthenticated(refusal.to_string());
    }
    if let Some(held_back) = REFUSALS.allow() {
        tracing::warn!(vm = %vm_id, incarnation, held_back, "refusing {call}: {refusal}");
    }
    match refusal {
        Refusal::BadEndpoint(_) => Status::invalid_argument(refusal.to_string()),
        _ => Status::permission_denied(refusal.to_string()),
    }
}

impl GuestApi {
    /// Where the host agent will call the guest agent back (rotations): on
    /// the VM's own IP, never an address a guest picks, so no guest can
    /// point the host agent at another machine.
    fn check_guest_agent_endpoint(&self, hello: &pb::GuestHello) -> Result<(), String> {
        self.vms
            .settings()
            .guest_agent_endpoint
            .check(&hello.guest_agent_endpoint, |_| false)
            .map(|_| ())
            .map_err(|e| format!("guest agent endpoint: {e}"))
    }

    /// Hello with the session token of a re-adopted VM (see the module doc).
    fn resume(&self, hello: &pb::GuestHello) -> Result<Response<pb::GuestWelcome>, Status> {
        let (vm_id, incarnation) = (hello.vm_id.as_str(), hello.incarnation);
        if let Err(e) = self.check_guest_agent_endpoint(hello) {
            return Err(Status::invalid_argument(e));
        }
        let (identity, secrets_version) = self
            .vms
            .resume_session(hello)
            .map_err(|r| refuse("Hello (resume)", vm_id, incarnation, r))?;
        tracing::info!(
            vm = %vm_id,
            incarnation,
            transfer_cert = %token::fingerprint(&hello.transfer_certificate_der),
            guest_agent = %hello.guest_agent_endpoint,
            "guest agent resumed its session; VM re-adopted"
        );
        let interval = self.vms.settings().heartbeat_interval;
        Ok(Response::new(pb::GuestWelcome {
            session_token: hello.token.clone(),
            deployment: identity.deployment,
            role: identity.role,
            instance: identity.instance,
            node_id: self.vms.node_id().to_owned(),
            secrets: Vec::new(),
            heartbeat_interval: prost_types::Duration::try_from(interval).ok(),
            secrets_version,
        }))
    }
}

#[tonic::async_trait]
impl GuestService for GuestApi {
    async fn hello(
        &self,
        request: Request<pb::GuestHello>,
    ) -> Result<Response<pb::GuestWelcome>, Status> {
        let hello = request.into_inner();
        let (vm_id, incarnation) = (hello.vm_id.as_str(), hello.incarnation);
        if self.vms.is_session_token(vm_id, incarnation, &hello.token) {
            return self.resume(&hello);
        }
        self.vms
            .claim_start_token(vm_id, incarnation, &hello.token)
            .map_err(|r| {
                self.vms.metrics().secrets(false);
                refuse("Hello", vm_id, incarnation, r)
            })?;

        // The token is good, so from here a bad request is this VM's own
        // failure: it is reinitialized (a new token), not left to time out.
        let invalid = |what: String| {
            self.vms.metrics().secrets(false);
            tracing::warn!(vm = %vm_id, incarnation, "refusing Hello: {what}; reinitializing the VM");
            self.vms.reject_hello(
                vm_id,
                incarnation,
                format!("guest agent sent an invalid Hello: {what}"),
            );
            Status::invalid_argument(what)
        };
        let der = &hello.transfer_certificate_der;
        if let Err(e) = secrets::check_transfer_cert(der) {
            return Err(invalid(e.to_string()));
        }
        if let Err(e) = self.check_guest_agent_endpoint(&hello) {
            return Err(invalid(e));
        }

        let sealed = match secrets::fetch_sealed(self.vms.controller(), vm_id, incarnation, der)
            .await
        {
            Ok(sealed) => sealed,
            Err(SecretsError::Fetch(status)) => {
                // Not the guest's fault: it may retry with the same token.
                self.vms.release_start_token(vm_id, incarnation);
                tracing::warn!(vm = %vm_id, incarnation, code = ?status.code(), "Hello: cannot fetch secrets: {}", status.message());
                return Err(Status::unavailable(format!(
                    "cannot fetch this VM's secrets from the controller: {}",
                    status.message()
                )));
            }
            Err(e @ SecretsError::Seal(_)) => return Err(invalid(e.to_string())),
            Err(e @ SecretsError::Interrupted) => {
                self.vms.release_start_token(vm_id, incarnation);
                return Err(Status::unavailable(e.to_string()));
            }
        };

        let session_token = token::generate();
        let identity = self
            .vms
            .accept_hello(
                vm_id,
                incarnation,
                HelloInfo {
                    session_token: session_token.clone(),
                    transfer_cert_der: der.clone(),
                    guest_agent_endpoint: hello.guest_agent_endpoint.clone(),
                    agent_version: hello.agent_version.clone(),
                    secrets_version: sealed.version.clone(),
                },
            )
            .map_err(|r| refuse("Hello", vm_id, incarnation, r))?;
        self.vms.metrics().secrets(true);
        tracing::info!(
            vm = %vm_id,
            incarnation,
            transfer_cert = %token::fingerprint(der),
            secrets = sealed.secrets.len(),
            version = %sealed.version,
            "guest agent said Hello; secrets sealed to its transfer certificate"
        );
        let interval = self.vms.settings().heartbeat_interval;
        Ok(Response::new(pb::GuestWelcome {
            session_token,
            deployment: identity.deployment,
            role: identity.role,
            instance: identity.instance,
            node_id: self.vms.node_id().to_owned(),
            secrets: sealed.secrets,
            heartbeat_interval: prost_types::Duration::try_from(interval).ok(),
            secrets_version: sealed.version,
        }))
    }

    async fn guest_heartbeat(
        &self,
        request: Request<pb::GuestHeartbeatRequest>,
    ) -> Result<Response<pb::GuestHeartbeatResponse>, Status> {
        let beat = request.into_inner();
        self.vms
            .guest_heartbeat(&beat)
            .map_err(|r| refuse("GuestHeartbeat", &beat.vm_id, beat.incarnation, r))?;
        Ok(Response::new(pb::GuestHeartbeatResponse {}))
    }

    async fn report_guest_failure(
        &self,
        request: Request<pb::GuestFailure>,
    ) -> Result<Response<pb::GuestFailureAck>, Status> {
        let failure = request.into_inner();
        self.vms
            .guest_failure(&failure)
            .map_err(|r| refuse("ReportGuestFailure", &failure.vm_id, failure.incarnation, r))?;
        tracing::warn!(
            vm = %shown(&failure.vm_id),
            incarnation = failure.incarnation,
            stage = %shown(&failure.stage),
            version = %shown(&failure.agent_version),
            "guest agent reported a failure: {}",
            shown(&failure.error)
        );
        Ok(Response::new(pb::GuestFailureAck {}))
    }
}
