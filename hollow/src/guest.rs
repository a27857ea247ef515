//! The hollow runtime: each VM is a task of this process, a guest that does
//! what a guest agent does, in the order the 2012 postmortem gives (a
//! transfer certificate first, then Hello with its public half, then the
//! sealed secrets opened with the private half, then heartbeats), through the
//! host agent's own [`GuestApi`], called in-process instead of over TLS.
//!
//! The transfer certificate and the opening of secrets are the guest agent's
//! own code (`guest_agent::TransferCert`, `guest_agent::secrets::open_all`);
//! what is left out is only what makes a VM a process: its own listener, its
//! role's HTTPS server, the certificate rotation calls it would serve. The
//! role endpoint a hollow guest reports is an address nobody serves.
//!
//! Every guest of the process shares its few cores, where real VMs would
//! each have their own: the CPU-heavy steps (the transfer certificate's key,
//! opening secrets) run off the async workers, on at most half the cores at
//! a time (`fabric_daemon::cpu`, the queue the host agents' sealing shares),
//! so the host agents' heartbeats are not starved by a thousand VMs starting
//! at once. Measured: without it, 20,000 VMs starting on 1,000 hollow hosts
//! delayed heartbeats past a 5 s node timeout and the controller took 998
//! servers for lost.
//!
//! At most [`set_starting_limit`] guests of the process make their
//! transfer certificate at a time, and as many open their secrets; the
//! others wait their turn, in order. The CPU queue is first come, first
//! served: with 100,000 VMs starting at once every VM's first step went
//! ahead of any VM's second, so none reached Running until nearly all had
//! made a certificate (5,000 hosts: 1,400 Provisioned after four minutes,
//! none Running). With each step's share of the queue bounded, a VM waits
//! behind at most a few hundred jobs at each step, as a server with its own
//! cores would, for the same throughput. Nothing is held while a guest
//! waits on its host or the controller (a Hello retried on a busy
//! controller holds no turn).
//!
//! A guest can be told to misbehave, per host and at any time, by writing
//! `healthy`, `silent` (never says Hello: the VM times out) or `failing`
//! (reports an init failure: a clean-VM strike) to `<host state>/hollow-guest`;
//! each VM started after that behaves so.

use fabric_proto::v1 as pb;
use fabric_proto::v1::guest_service_server::GuestService;
use host_agent::guest_service::GuestApi;
use host_agent::vm::process::{GuestProcess, LaunchSpec, Launcher, ProcessError};
use host_agent::vm::runtime::VmRuntime;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tonic::{Code, Request};

/// How a hollow VM's guest behaves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Behaviour {
    /// Says Hello, opens its secrets, heartbeats with its role Running.
    Healthy,
    /// Never says Hello (a guest stuck in init, as in 2012 with silent
    /// failures): the host agent's connect timeout decides.
    Silent,
    /// Reports an init failure at once (2012 with reported failures).
    Failing,
}

impl Behaviour {
    fn parse(text: &str) -> Option<Self> {
        match text.trim() {
            "healthy" => Some(Self::Healthy),
            "silent" => Some(Self::Silent),
            "failing" => Some(Self::Failing),
            _ => None,
        }
    }
}

/// The file that tells one host's next guests how to behave.
pub fn behaviour_file(host_state: &Path) -> PathBuf {
    host_state.join("hollow-guest")
}

/// How many guests of this process may make their transfer certificate at
/// once, and how many open their secrets (default 64 each). Set before the
/// first VM starts; later calls are ignored.
pub fn set_starting_limit(limit: usize) {
    let _ = TURNS.set(Turns::new(limit));
}

/// Turns at the CPU-heavy steps of a guest's start (see the module docs).
struct Turns {
    making: tokio::sync::Semaphore,
    opening: tokio::sync::Semaphore,
}

impl Turns {
    fn new(limit: usize) -> Self {
        Self {
            making: tokio::sync::Semaphore::new(limit.max(1)),
            opening: tokio::sync::Semaphore::new(limit.max(1)),
        }
    }
}

static TURNS: OnceLock<Turns> = OnceLock::new();

fn turns() -> &'static Turns {
    TURNS.get_or_init(|| Turns::new(64))
}

/// One hollow host's runtime.
pub struct HollowRuntime {
    shared: Arc<Shared>,
}

struct Shared {
    guests: OnceLock<Arc<GuestApi>>,
    default: Behaviour,
    control: PathBuf,
    /// Role ports handed out, so no two VMs of the host report the same
    /// endpoint (the host agent refuses that).
    next_port: AtomicU32,
    /// Every guest task started, to end them all when the server goes.
    tasks: Mutex<Vec<tokio::task::AbortHandle>>,
}

impl HollowRuntime {
    pub fn new(host_state: &Path, default: Behaviour) -> Self {
        Self {
            shared: Arc::new(Shared {
                guests: OnceLock::new(),
                default,
                control: behaviour_file(host_state),
                next_port: AtomicU32::new(0),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Ends every guest of this host: its VMs die with the server (a power
    /// failure), whereas a host agent's exit alone would leave them running.
    pub fn stop_all(&self) {
        let tasks =
            std::mem::take(&mut *self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner()));
        for task in tasks {
            task.abort();
        }
    }
}

const FIRST_ROLE_PORT: u16 = 20_000;

impl VmRuntime for HollowRuntime {
    fn launcher(&self) -> Box<dyn Launcher> {
        Box::new(HollowLauncher {
            shared: self.shared.clone(),
        })
    }

    fn attach(&self, guests: Arc<GuestApi>) {
        let _ = self.shared.guests.set(guests);
    }

    /// Thousands of hosts share this machine's one disk, where each real
    /// server has its own: fsyncing every VM record (each VM's every step)
    /// on the host agents' async workers held 5,000 hosts' heartbeats for
    /// seconds. Records are still written whole (renamed into place).
    fn sync_records(&self) -> bool {
        false
    }
}

struct HollowLauncher {
    shared: Arc<Shared>,
}

impl Launcher for HollowLauncher {
    fn launch(&self, spec: &LaunchSpec, token: &str) -> Result<GuestProcess, ProcessError> {
        let Some(api) = self.shared.guests.get().cloned() else {
            // The host agent attaches before its link to the controller
            // starts, so no VM can be launched earlier.
            return Err(ProcessError::Spawn {
                bin: PathBuf::from("hollow guest"),
                source: std::io::Error::other("launched before the guest service was attached"),
            });
        };
        let behaviour = std::fs::read_to_string(&self.shared.control)
            .ok()
            .and_then(|t| Behaviour::parse(&t))
            .unwrap_or(self.shared.default);
        let port = self.next_port();
        let guest = Guest {
            api,
            vm_id: spec.vm_id.clone(),
            incarnation: spec.incarnation,
            token: token.to_owned(),
            role_endpoint: format!("127.0.0.1:{port}"),
        };
        let task = tokio::spawn(guest.run(behaviour)).abort_handle();
        let mut tasks = self.shared.tasks.lock().unwrap_or_else(|e| e.into_inner());
        // Forget ended guests now and then, so a long run does not pile up
        // handles.
        if tasks.len() >= 64 && tasks.len().is_power_of_two() {
            tasks.retain(|t| !t.is_finished());
        }
        tasks.push(task.clone());
        Ok(GuestProcess::task(task))
    }
}

impl HollowLauncher {
    /// Ports from FIRST_ROLE_PORT up, round and round.
    fn next_port(&self) -> u16 {
        let n = self.shared.next_port.fetch_add(1, Ordering::Relaxed);
        FIRST_ROLE_PORT + (n % u32::from(u16::MAX - FIRST_ROLE_PORT)) as u16
    }
}

/// One VM incarnation's guest.
struct Guest {
    api: Arc<GuestApi>,
    vm_id: String,
    incarnation: u64,
    token: String,
    role_endpoint: String,
}

const AGENT_VERSION: &str = "hollow";

impl Guest {
    async fn run(self, behaviour: Behaviour) {
        match behaviour {
            Behaviour::Silent => std::future::pending::<()>().await,
            Behaviour::Failing => self.fail().await,
            Behaviour::Healthy => self.serve().await,
        }
    }

    async fn fail(self) {
        let failure = pb::GuestFailure {
            vm_id: self.vm_id.clone(),
            incarnation: self.incarnation,
            token: self.token.clone(),
            stage: "transfer_certificate".into(),
            error: "hollow guest told to fail (hollow-guest: failing)".into(),
            agent_version: AGENT_VERSION.into(),
        };
        if let Err(status) = self.api.report_guest_failure(Request::new(failure)).await {
            tracing::debug!(vm = %self.vm_id, "failure report refused: {}", status.message());
        }
    }

    async fn serve(self) {
        // First step of guest initialization: the transfer certificate, in
        // turn (see the module docs).
        let Ok(turn) = turns().making.acquire().await else {
            return;
        };
        let (vm_id, incarnation) = (self.vm_id.clone(), self.incarnation);
        let made = fabric_daemon::cpu::on_a_core(move || {
            guest_agent::TransferCert::generate(
                time::OffsetDateTime::now_utc(),
                &vm_id,
                incarnation,
                false,
            )
        })
        .await;
        drop(turn);
        let cert = match made {
            Some(Ok(cert)) => Arc::new(cert),
            Some(Err(e)) => {
                tracing::warn!(vm = %self.vm_id, "transfer certificate: {e}");
                return;
            }
            None => return,
        };
        let hello = pb::GuestHello {
            vm_id: self.vm_id.clone(),
            incarnation: self.incarnation,
            token: self.token.clone(),
            transfer_certificate_der: cert.cert_der().to_vec(),
            // Any port of the VM's address passes; nothing calls it back
            // but certificate rotation, which hollow guests do not serve.
            guest_agent_endpoint: "127.0.0.1:1".into(),
            agent_version: AGENT_VERSION.into(),
        };
        let mut wait = Duration::from_millis(200);
        let welcome = loop {
            match self.api.hello(Request::new(hello.clone())).await {
                Ok(w) => break w.into_inner(),
                // The controller could not give the secrets: the token is
                // still good, try again as a guest agent does.
                Err(s) if s.code() == Code::Unavailable => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
                Err(s) => {
                    tracing::debug!(vm = %self.vm_id, "Hello refused: {}", s.message());
                    return;
                }
            }
        };
        let interval = welcome
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(3));
        // As a guest agent does: heartbeats start with the session (role
        // Starting), so a guest whose secrets take a while to open (queued
        // behind a thousand others here) is not taken for dead.
        let ctx = fabric_sealing::SealContext::new(&self.vm_id, self.incarnation);
        let (key_cert, sealed) = (cert.clone(), welcome.secrets.clone());
        let open = async move {
            let _turn = turns().opening.acquire().await.ok()?;
            fabric_daemon::cpu::on_a_core(move || {
                if sealed.is_empty() {
                    return Ok(());
                }
                guest_agent::secrets::open_all(key_cert.private_key_pkcs8_der(), &ctx, &sealed)
                    .map(|_| ())
            })
            .await
        };
        tokio::pin!(open);
        let mut role = pb::RoleState::RoleStarting;
        let mut sequence = 0u64;
        let mut next_beat = tokio::time::Instant::now();
        loop {
            tokio::select! {
                opened = &mut open, if role == pb::RoleState::RoleStarting => match opened {
                    Some(Ok(())) => {
                        role = pb::RoleState::RoleRunning;
                        // Reported at once: Running when the role serves.
                        next_beat = tokio::time::Instant::now();
                    }
                    Some(Err(e)) => {
                        tracing::warn!(vm = %self.vm_id, "cannot open the sealed secrets: {e}");
                        return;
                    }
                    None => return,
                },
                () = tokio::time::sleep_until(next_beat) => {
                    sequence += 1;
                    let beat = pb::GuestHeartbeatRequest {
                        vm_id: self.vm_id.clone(),
                        incarnation: self.incarnation,
                        session_token: welcome.session_token.clone(),
                        sequence,
                        role_state: role as i32,
                        role_endpoint: if role == pb::RoleState::RoleRunning {
                            self.role_endpoint.clone()
                        } else {
                            String::new()
                        },
                    };
                    if let Err(s) = self.api.guest_heartbeat(Request::new(beat)).await {
                        // Stopped or reinitialized: a newer incarnation (if
                        // any) is another task.
                        tracing::debug!(vm = %self.vm_id, "heartbeat refused: {}", s.message());
                        return;
                    }
                    next_beat = tokio::time::Instant::now() + interval;
                }
            }
        }
    }
}
