//! What the running agent knows about itself, shared by the heartbeat loop, the gRPC service and
//! the start-up sequence.
//!
//! Small, synchronous and lock-per-field: every reader takes a snapshot and lets go, so no lock is
//! ever held across an await.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use fabric_proto::v1::RoleState;
use fabric_sealing::SealContext;
use subtle::ConstantTimeEq;

use crate::TransferCert;
use crate::cert_resolver::SwappableCert;

/// The role's state as heartbeats and GetGuestStatus report it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleStatus {
    /// Starting until the HTTPS endpoint listens, then running.
    pub state: RoleState,
    /// Where the HTTPS endpoint listens, once it does.
    pub endpoint: Option<SocketAddr>,
}

/// The state of one guest agent (one VM incarnation).
#[derive(Debug)]
pub struct AgentState {
    vm_dir: PathBuf,
    transfer: Arc<TransferCert>,
    session_token: OnceLock<String>,
    role: Mutex<RoleStatus>,
    /// Notified when the role's state changes, so the host agent hears of it
    /// at once rather than at the next heartbeat.
    role_changed: tokio::sync::Notify,
    served: OnceLock<Arc<SwappableCert>>,
    secrets_version: Mutex<String>,
    /// Serialises rotations: opening, writing and swapping of two pushes must not interleave.
    rotation: tokio::sync::Mutex<()>,
}

impl AgentState {
    /// The state of an agent that has its transfer certificate and nothing else yet.
    pub fn new(vm_dir: impl Into<PathBuf>, transfer: Arc<TransferCert>) -> Self {
        Self {
            vm_dir: vm_dir.into(),
            transfer,
            session_token: OnceLock::new(),
            role_changed: tokio::sync::Notify::new(),
            role: Mutex::new(RoleStatus {
                state: RoleState::RoleStarting,
                endpoint: None,
            }),
            served: OnceLock::new(),
            secrets_version: Mutex::new(String::new()),
            rotation: tokio::sync::Mutex::new(()),
        }
    }

    /// The VM id.
    pub fn vm_id(&self) -> &str {
        self.transfer.vm_id()
    }

    /// The VM incarnation.
    pub fn incarnation(&self) -> u64 {
        self.transfer.incarnation()
    }

    /// The VM directory (secrets go under `secrets/`).
    pub fn vm_dir(&self) -> &Path {
        &self.vm_dir
    }

    /// The transfer certificate (and its private key, for opening secrets).
    pub fn transfer(&self) -> &TransferCert {
        &self.transfer
    }

    /// The context every secret for this VM incarnation is sealed to.
    pub fn seal_context(&self) -> SealContext {
        SealContext::new(self.vm_id(), self.incarnation())
    }

    /// Records the session token the host agent gave us in its welcome. Only the first call has
    /// any effect: one agent has one session.
    pub fn set_session_token(&self, token: String) {
        let _ = self.session_token.set(token);
    }

    /// Whether Hello has succeeded.
    pub fn has_session(&self) -> bool {
        self.session_token.get().is_some()
    }

    /// The session token, for our own calls to the host agent. Secret: never log it.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.get().map(String::as_str)
    }

    /// Whether `presented` is our session token, compared in constant time so a caller cannot
    /// learn it byte by byte from response times. False before Hello.
    pub fn session_matches(&self, presented: &str) -> bool {
        self.session_token
            .get()
            .is_some_and(|ours| bool::from(ours.as_bytes().ct_eq(presented.as_bytes())))
    }

    /// A snapshot of the role's state.
    pub fn role_status(&self) -> RoleStatus {
        *self.role.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Marks the role as running at `endpoint`.
    pub fn set_role_running(&self, endpoint: SocketAddr) {
        *self.role.lock().unwrap_or_else(PoisonError::into_inner) = RoleStatus {
            state: RoleState::RoleRunning,
            endpoint: Some(endpoint),
        };
        self.role_changed.notify_one();
    }

    /// Resolves when the role's state next changes.
    pub async fn role_changed(&self) {
        self.role_changed.notified().await
    }

    /// Records the resolver of the role's served certificate (once, when the role starts).
    pub fn set_served(&self, served: Arc<SwappableCert>) {
        let _ = self.served.set(served);
    }

    /// The resolver of the role's served certificate, once the role has one.
    pub fn served(&self) -> Option<&Arc<SwappableCert>> {
        self.served.get()
    }

    /// The version of the secrets served now.
    pub fn secrets_version(&self) -> String {
        self.secrets_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records the version of the secrets served now.
    pub fn set_secrets_version(&self, version: String) {
        *self
            .secrets_version
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = version;
    }

    /// Held for the whole of one rotation.
    pub async fn rotation_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.rotation.lock().await
    }
}
