//! VMs whose guest agent is Azure's own, WALinuxAgent (`guest =
//! "waagent"` in the service definition), speaking Azure's wire protocol
//! to a wire server of this host agent's (`fabric-wireserver`).
//!
//! Each incarnation gets a wire server on a loopback port of its own, an
//! agent directory under the VM's directory pointing the agent at it, and
//! the agent process (its protocol detection, then its goal-state loop).
//! Between the agent and this host agent stands a **bridge**, a Fabric
//! guest on the agent's behalf, so that everything the host agent does
//! for a guest (the start token, the guest connect timeout, heartbeats,
//! clean-VM strikes, fencing, reinitializing) holds unchanged:
//!
//! - the agent's first Certificates request, carrying its transfer
//!   certificate (the first step of guest initialization), is the guest's
//!   Hello: the bridge says Hello with the start token and a transfer
//!   certificate of its own, opens the role's secrets, envelopes them
//!   (CMS, PKCS#12) to the agent's RSA transfer certificate and wipes the
//!   plaintext; later requests with the same transfer certificate get the
//!   same envelope, which only the agent can open;
//! - the bridge heartbeats for the agent while its process lives and it
//!   polls: a killed or hung agent stops them, and the guest timeout takes
//!   its course;
//! - the role is Running once the agent reports Ready.
//!
//! - a rotation (new certificates for a running VM) reaches the bridge
//!   instead of Fabric's guest service: sealed to the bridge's transfer
//!   key, opened, enveloped to the agent's, offered as the next goal-state
//!   incarnation, which the agent fetches at its next poll.
//!
//! Not yet: re-adoption across a host-agent restart (the wire server lives
//! in the host agent: the VM is restarted with its next incarnation).

use super::process::{GuestProcess, LaunchSpec, ProcessError};
use crate::guest_service::GuestApi;
use fabric_proto::v1::{self as pb, guest_service_server::GuestService};
use fabric_wireserver::agent_dir::AgentDir;
use fabric_wireserver::certificates::{self, TransferCertificate};
use fabric_wireserver::server::{CertificateSource, Enveloped, WireServer};
use fabric_wireserver::{GoalState, RoleCertificate};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;
use tonic::Request;
use zeroize::Zeroizing;

/// How long a Ready agent may go without a request before the bridge stops
/// heartbeating for it: WALinuxAgent 2.7.3 polls its goal state every 6 s.
pub const POLL_SILENCE: Duration = Duration::from_secs(30);

/// What the guest's agent version is reported as.
const AGENT_VERSION: &str = "WALinuxAgent";

/// Runs waagent VMs for the process launcher.
pub struct Waagent {
    /// The `waagent` script.
    pub bin: PathBuf,
    /// The guest service the bridges call, attached once the VM manager
    /// exists (it is created after its launcher).
    guests: OnceLock<Arc<GuestApi>>,
    /// Each VM's current bridge, for rotations.
    bridges: Mutex<HashMap<String, Weak<Bridge>>>,
}

impl std::fmt::Debug for Waagent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Waagent").field("bin", &self.bin).finish()
    }
}

impl Waagent {
    pub fn new(bin: PathBuf) -> Self {
        Self {
            bin,
            guests: OnceLock::new(),
            bridges: Mutex::new(HashMap::new()),
        }
    }

    /// New certificates for `vm_id`'s running `incarnation`, sealed to its
    /// bridge's transfer certificate: offered to the agent as the next
    /// goal-state incarnation.
    pub async fn rotate(
        &self,
        vm_id: &str,
        incarnation: u64,
        sealed: Vec<pb::SealedSecret>,
    ) -> Result<(), String> {
        let bridge = self
            .bridges
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(vm_id)
            .and_then(Weak::upgrade)
            .filter(|b| b.incarnation == incarnation)
            .ok_or_else(|| format!("{vm_id} incarnation {incarnation} runs no more"))?;
        bridge.rotate(sealed).await
    }

    pub fn attach(&self, guests: Arc<GuestApi>) {
        let _ = self.guests.set(guests);
    }

    /// Starts one incarnation: wire server, agent directory, agent process
    /// (`spawn` gets the agent's program and arguments and starts it with
    /// the host's usual process handling), bridge.
    pub fn launch(
        &self,
        spec: &LaunchSpec,
        token: &str,
        spawn: impl FnOnce(PathBuf, Vec<String>) -> Result<GuestProcess, ProcessError>,
    ) -> Result<GuestProcess, ProcessError> {
        let api = self
            .guests
            .get()
            .cloned()
            .ok_or_else(|| ProcessError::Spawn {
                bin: self.bin.clone(),
                source: std::io::Error::other("launched before the guest service was attached"),
            })?;
        let files = |path: PathBuf| move |source| ProcessError::Files { path, source };
        let id = fabric_core::InstanceId::parse(&spec.vm_id).map_err(|e| ProcessError::Files {
            path: spec.paths.vm_dir.clone(),
            source: std::io::Error::other(format!("VM id {}: {e}", spec.vm_id)),
        })?;
        // The wire server first: its port goes into the agent's directory.
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(files(spec.paths.vm_dir.clone()))?;
        let endpoint = listener
            .local_addr()
            .map_err(files(spec.paths.vm_dir.clone()))?
            .to_string();
        let agent_dir = spec.paths.vm_dir.join("waagent");
        let agent = AgentDir::prepare(&agent_dir, &endpoint).map_err(files(agent_dir.clone()))?;
        let goal = GoalState {
            incarnation: spec.incarnation,
            container_id: uuid::Uuid::new_v4().to_string(),
            deployment: id.deployment.to_string(),
            role: id.role.to_string(),
            instance_id: spec.vm_id.clone(),
            has_certificates: true,
        };
        let bridge = Arc::new(Bridge {
            api,
            vm_id: spec.vm_id.clone(),
            incarnation: spec.incarnation,
            token: Zeroizing::new(token.to_owned()),
            endpoint: endpoint.clone(),
            hello: tokio::sync::Mutex::new(None),
            session: tokio::sync::watch::channel(None).0,
            server: Mutex::new(Weak::new()),
        });
        let server = Arc::new(
            WireServer::from_std(listener, goal, Arc::new(Source(bridge.clone())))
                .map_err(files(spec.paths.vm_dir.clone()))?,
        );
        // Weak: the server holds the bridge (its certificate source).
        *bridge.server.lock().unwrap_or_else(|p| p.into_inner()) = Arc::downgrade(&server);
        {
            let mut bridges = self.bridges.lock().unwrap_or_else(|p| p.into_inner());
            // Forget the bridges of VMs that ended, so the map stays the
            // size of this host's VMs.
            bridges.retain(|_, b| b.strong_count() > 0);
            bridges.insert(spec.vm_id.clone(), Arc::downgrade(&bridge));
        }
        let (program, args) = agent.command(&self.bin).map_err(files(self.bin.clone()))?;
        let process = spawn(program, args)?;
        tracing::info!(vm = %spec.vm_id, incarnation = spec.incarnation, wire_server = %endpoint, pid = ?process.pid, "waagent started against its wire server");
        let exited = process.exited_flag();
        let task = tokio::spawn(bridge.run(server, exited)).abort_handle();
        Ok(process.with_task(task))
    }
}

/// After Hello: what heartbeats need.
#[derive(Clone)]
struct Session {
    token: Zeroizing<String>,
    interval: Duration,
}

/// What the bridge keeps after Hello.
struct Hello {
    /// Its own transfer certificate: rotations are sealed to it.
    ours: Arc<guest_agent::TransferCert>,
    /// The agent's.
    agent: TransferCertificate,
    /// The role's certificates enveloped to the agent's (ciphertext only).
    data: String,
}

/// A Fabric guest on the agent's behalf (see the module doc).
struct Bridge {
    api: Arc<GuestApi>,
    vm_id: String,
    incarnation: u64,
    /// The one-time start token, spent by the Hello.
    token: Zeroizing<String>,
    /// The wire server's `host:port`, given as the guest's endpoint.
    endpoint: String,
    /// Once said Hello.
    hello: tokio::sync::Mutex<Option<Hello>>,
    session: tokio::sync::watch::Sender<Option<Session>>,
    /// Its wire server (whose goal state a rotation moves on).
    server: Mutex<Weak<WireServer>>,
}

struct Source(Arc<Bridge>);

impl CertificateSource for Source {
    fn envelope(&self, transfer: TransferCertificate, _incarnation: u64) -> Enveloped {
        let bridge = self.0.clone();
        Box::pin(async move { bridge.envelope(transfer).await })
    }
}

impl Bridge {
    /// The role's certificates enveloped to the agent's transfer
    /// certificate; the first call says Hello (see the module doc).
    async fn envelope(&self, transfer: TransferCertificate) -> Result<String, String> {
        let mut hello = self.hello.lock().await;
        if let Some(h) = &*hello {
            if h.agent.thumbprint == transfer.thumbprint {
                return Ok(h.data.clone());
            }
            return Err(format!(
                "this VM's guest sent transfer certificate {} first; a new one needs a new \
                 incarnation",
                h.agent.thumbprint
            ));
        }
        let (vm_id, incarnation) = (self.vm_id.clone(), self.incarnation);
        let ours = fabric_daemon::cpu::on_a_core(move || {
            guest_agent::TransferCert::generate(
                time::OffsetDateTime::now_utc(),
                &vm_id,
                incarnation,
                false,
            )
        })
        .await
        .ok_or("the host agent is stopping")?
        .map_err(|e| format!("the bridge's transfer certificate: {e}"))?;
        let welcome = self
            .api
            .hello(Request::new(pb::GuestHello {
                vm_id: self.vm_id.clone(),
                incarnation: self.incarnation,
                token: self.token.to_string(),
                transfer_certificate_der: ours.cert_der().to_vec(),
                guest_agent_endpoint: self.endpoint.clone(),
                agent_version: AGENT_VERSION.into(),
            }))
            .await
            .map_err(|s| format!("the host agent refused the guest's Hello: {}", s.message()))?
            .into_inner();
        let ours = Arc::new(ours);
        let thumbprint = transfer.thumbprint.clone();
        let data = self
            .reseal(ours.clone(), welcome.secrets.clone(), transfer.clone())
            .await?;
        let interval = welcome
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(3));
        tracing::info!(vm = %self.vm_id, incarnation = self.incarnation, transfer_certificate = %thumbprint, "waagent said Hello through its Certificates request; the role's certificates enveloped to its transfer certificate");
        *hello = Some(Hello {
            ours,
            agent: transfer,
            data: data.clone(),
        });
        self.session.send_replace(Some(Session {
            token: Zeroizing::new(welcome.session_token),
            interval,
        }));
        Ok(data)
    }

    /// Opens `sealed` with the bridge's key and envelopes the certificates
    /// to the agent's transfer certificate; the plaintext is wiped as it
    /// drops, inside.
    async fn reseal(
        &self,
        ours: Arc<guest_agent::TransferCert>,
        sealed: Vec<pb::SealedSecret>,
        agent: TransferCertificate,
    ) -> Result<String, String> {
        let ctx = fabric_sealing::SealContext::new(&self.vm_id, self.incarnation);
        fabric_daemon::cpu::on_a_core(move || {
            let opened =
                guest_agent::secrets::open_all(ours.private_key_pkcs8_der(), &ctx, &sealed)
                    .map_err(|e| format!("cannot open the role's secrets: {e}"))?;
            let certs = opened
                .iter()
                .map(|s| certificates::from_pem_bundle(s.pem()))
                .collect::<Result<Vec<RoleCertificate>, _>>()
                .map_err(|e| e.to_string())?;
            certificates::envelope(&certs, &agent).map_err(|e| e.to_string())
        })
        .await
        .ok_or("the host agent is stopping")?
    }

    /// A rotation: the new certificates enveloped to the agent and offered
    /// as the next goal-state incarnation.
    async fn rotate(&self, sealed: Vec<pb::SealedSecret>) -> Result<(), String> {
        let mut hello = self.hello.lock().await;
        let Some(h) = hello.as_mut() else {
            return Err("the agent has not asked for its certificates yet".into());
        };
        h.data = self.reseal(h.ours.clone(), sealed, h.agent.clone()).await?;
        let server = self
            .server
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .upgrade();
        let server = server.ok_or("its wire server has stopped")?;
        let goal_state_incarnation = server.next_incarnation();
        tracing::info!(vm = %self.vm_id, incarnation = self.incarnation, goal_state_incarnation, "rotated certificates offered to waagent as a new goal-state incarnation");
        Ok(())
    }

    /// Heartbeats for the agent while its process lives and, once Ready,
    /// it polls; ends (closing the wire server) when they stop.
    async fn run(self: Arc<Self>, server: Arc<WireServer>, exited: Arc<AtomicBool>) {
        let mut sessions = self.session.subscribe();
        let session = loop {
            if let Some(s) = sessions.borrow_and_update().clone() {
                break s;
            }
            if sessions.changed().await.is_err() {
                return;
            }
        };
        let observed = server.observe();
        let mut sequence = 0u64;
        let mut was_ready = false;
        loop {
            if exited.load(Ordering::Acquire) {
                tracing::info!(vm = %self.vm_id, incarnation = self.incarnation, "waagent exited: no more heartbeats");
                return;
            }
            let seen = observed.borrow().clone();
            let ready = seen.ready();
            let silent = seen.last_request.is_none_or(|t| t.elapsed() > POLL_SILENCE);
            if ready && silent {
                tracing::warn!(vm = %self.vm_id, incarnation = self.incarnation, "waagent silent for {POLL_SILENCE:?}: no more heartbeats");
                return;
            }
            if ready && !was_ready {
                let version = seen.agent_status.as_ref().map(|s| s.version.clone());
                tracing::info!(vm = %self.vm_id, incarnation = self.incarnation, ?version, "waagent reports Ready");
            }
            was_ready |= ready;
            sequence += 1;
            let role = if ready {
                pb::RoleState::RoleRunning
            } else {
                pb::RoleState::RoleStarting
            };
            let beat = pb::GuestHeartbeatRequest {
                vm_id: self.vm_id.clone(),
                incarnation: self.incarnation,
                session_token: session.token.to_string(),
                sequence,
                role_state: role as i32,
                // The agent serves no role endpoint of its own.
                role_endpoint: String::new(),
            };
            if let Err(s) = self.api.guest_heartbeat(Request::new(beat)).await {
                // Stopped or reinitialized: a newer incarnation is another bridge.
                tracing::debug!(vm = %self.vm_id, "heartbeat refused: {}", s.message());
                return;
            }
            tokio::time::sleep(session.interval).await;
        }
    }
}

/// Whether `pid` is the waagent of the VM whose directory is `vm_dir`
/// (its command line names that VM's agent configuration), so that a
/// reused pid is never signalled.
pub fn is_waagent_of(pid: u32, vm_dir: &std::path::Path) -> bool {
    let config = vm_dir.join("waagent").join("waagent.conf");
    let wanted = format!("-configuration-path:{}", config.display());
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|cmdline| {
        cmdline
            .split(|b| *b == 0)
            .any(|arg| arg == wanted.as_bytes())
    })
}
