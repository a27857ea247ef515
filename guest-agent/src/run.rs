//! `guest-agent run`: the agent's life, in the order of the VM contract.
//!
//! 0. boot (a modelled delay, `--boot-time`, zero by default); 1. create the transfer
//!    certificate; 2. listen for the host agent's calls; 3. Hello (retried while the host agent
//!    is unreachable); 4. open and write the role's secrets; 5. start the role's HTTPS endpoint;
//!    6. heartbeat until told to stop; 7. serve status and rotations.
//!
//! After init, nothing the host agent does stops the role: while it is unreachable heartbeats
//! back off, and a restarted host agent that re-adopted us gets a Hello with our session token
//! (see [`heartbeat::run`]); the role serves throughout.
//!
//! Any init failure ends the agent with an error (exit code 1). Unless `silent_failures` is set,
//! it is first reported to the host agent (fail fast), so the host agent can act at once instead
//! of waiting out its 25-minute connect timeout as it had to in 2012.

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use fabric_daemon::task::AbortOnDrop;
use fabric_proto::v1::{GuestFailure, GuestHello};
use thiserror::Error;
use time::format_description::well_known::Rfc3339;
use tracing::{error, info, warn};

use crate::TransferCert;
use crate::agent_state::AgentState;
use crate::calendar::CalendarClock;
use crate::cert_resolver::SwappableCert;
use crate::guest_service::GuestServer;
use crate::heartbeat;
use crate::host_link::{HostLink, HostLinkConfig, HostLinkError};
use crate::role::{RoleEndpoint, RoleInfo};
use crate::role_binding::RoleBinding;
use crate::secret_files::write_secret_files;
use crate::secrets::open_all;

/// The version this agent reports to its host agent.
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// Everything `run` needs; built from the command line by the binary.
#[derive(Clone)]
pub struct RunConfig {
    /// The VM id, `<deployment>.<role>.<index>`.
    pub vm_id: String,
    /// The VM incarnation.
    pub incarnation: u64,
    /// The host agent's GuestService URL.
    pub host_agent_url: String,
    /// The TLS name the host agent's certificate must carry.
    pub host_agent_name: String,
    /// The cluster CA certificate (PEM file) that verifies the host agent.
    pub ca_path: PathBuf,
    /// The VM directory; secrets go to `secrets/` inside it.
    pub vm_dir: PathBuf,
    /// The node id, for the role's JSON.
    pub node: String,
    /// The IP our gRPC server binds (port 0), for the host agent's calls.
    pub listen_ip: IpAddr,
    /// Where the role's HTTPS endpoint binds and the address it reports.
    pub role: RoleBinding,
    /// The calendar clock (injectable to replay a date).
    pub clock: CalendarClock,
    /// Compute the transfer certificate's valid-to the 2012 way.
    pub leap_day_bug: bool,
    /// Do not report init failures to the host agent (the 2012 behaviour).
    pub silent_failures: bool,
    /// The VM's boot, before anything else: the host agent's connect timeout runs through it.
    pub boot_time: Duration,
    /// The one-time start token. Secret: never log it.
    pub start_token: String,
}

impl fmt::Debug for RunConfig {
    // Hand-written so the start token cannot reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RunConfig")
            .field("vm_id", &self.vm_id)
            .field("incarnation", &self.incarnation)
            .field("host_agent_url", &self.host_agent_url)
            .field("host_agent_name", &self.host_agent_name)
            .field("ca_path", &self.ca_path)
            .field("vm_dir", &self.vm_dir)
            .field("node", &self.node)
            .field("listen_ip", &self.listen_ip)
            .field("role", &self.role)
            .field("clock", &self.clock)
            .field("leap_day_bug", &self.leap_day_bug)
            .field("silent_failures", &self.silent_failures)
            .field("boot_time", &self.boot_time)
            .field("start_token", &"<redacted>")
            .finish()
    }
}

/// The init step that failed; its name is the `stage` reported to the host agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Step 1.
    TransferCertificate,
    /// Step 2.
    Listen,
    /// Step 3.
    Hello,
    /// Step 4.
    Secrets,
    /// Step 5.
    Role,
}

impl Stage {
    /// The name reported to the host agent.
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::TransferCertificate => "transfer_certificate",
            Stage::Listen => "listen",
            Stage::Hello => "hello",
            Stage::Secrets => "secrets",
            Stage::Role => "role",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Stage::TransferCertificate => "create transfer certificate",
            Stage::Listen => "listen for the host agent",
            Stage::Hello => "connect to the host agent",
            Stage::Secrets => "install the role's secrets",
            Stage::Role => "start the role",
        }
    }
}

/// Why the agent stopped.
#[derive(Debug, Error)]
pub enum RunError {
    /// The cluster CA certificate could not be read, so the host agent cannot be verified.
    #[error("reading the cluster CA certificate {}: {source}", path.display())]
    ReadCa {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The host agent link could not be set up.
    #[error(transparent)]
    HostLink(#[from] HostLinkError),
    /// An init step failed (and was reported unless failures are silent).
    #[error("failed to {}: {message}", stage.doing())]
    Init {
        /// The step.
        stage: Stage,
        /// What went wrong, as reported to the host agent.
        message: String,
    },
}

impl RunError {
    /// The init step that failed, if it was one.
    pub fn stage(&self) -> Option<Stage> {
        match self {
            RunError::Init { stage, .. } => Some(*stage),
            _ => None,
        }
    }
}

/// Runs the agent until `shutdown` completes (Ok) or init fails (Err).
pub async fn run(config: RunConfig, shutdown: impl Future<Output = ()>) -> Result<(), RunError> {
    tokio::select! {
        result = run_agent(config) => result.map(|never| match never {}),
        () = shutdown => {
            info!("shutting down");
            Ok(())
        }
    }
}

/// Init failures go through here: logged, reported (unless silent), turned into [`RunError`].
struct Failures {
    link: HostLink,
    vm_id: String,
    incarnation: u64,
    silent: bool,
}

impl Failures {
    /// `token` is the start token before Hello succeeded, the session token after.
    async fn fail(&self, stage: Stage, token: &str, message: String) -> RunError {
        error!(stage = stage.as_str(), error = %message, "failed to {}", stage.doing());
        if self.silent {
            warn!("not reporting the failure to the host agent (--silent-failures)");
        } else {
            let report = GuestFailure {
                vm_id: self.vm_id.clone(),
                incarnation: self.incarnation,
                token: token.to_owned(),
                stage: stage.as_str().to_owned(),
                error: message.clone(),
                agent_version: AGENT_VERSION.to_owned(),
            };
            match self.link.report_failure(report).await {
                Ok(()) => info!("failure reported to the host agent"),
                Err(status) => warn!(
                    code = ?status.code(),
                    error = status.message(),
                    "could not report the failure to the host agent"
                ),
            }
        }
        RunError::Init { stage, message }
    }
}

async fn run_agent(config: RunConfig) -> Result<Infallible, RunError> {
    let ca_pem = std::fs::read_to_string(&config.ca_path).map_err(|source| RunError::ReadCa {
        path: config.ca_path.clone(),
        source,
    })?;
    let link = HostLink::new(&HostLinkConfig {
        url: config.host_agent_url.clone(),
        ca_pem,
        server_name: config.host_agent_name.clone(),
    })?;
    let failures = Failures {
        link: link.clone(),
        vm_id: config.vm_id.clone(),
        incarnation: config.incarnation,
        silent: config.silent_failures,
    };
    let start_token = config.start_token.as_str();

    // 0. The VM boots. Modelled as a wait so that healing many instances takes as long as it
    //    does on real VMs (the 2009 lesson needs it); zero by default.
    if !config.boot_time.is_zero() {
        info!(boot_time = ?config.boot_time, "booting");
        tokio::time::sleep(config.boot_time).await;
    }

    // 1. The transfer certificate: without it no secret can reach this VM.
    let now = config.clock.now();
    let transfer =
        match TransferCert::generate(now, &config.vm_id, config.incarnation, config.leap_day_bug) {
            Ok(cert) => Arc::new(cert),
            Err(e) => {
                return Err(failures
                    .fail(Stage::TransferCertificate, start_token, e.to_string())
                    .await);
            }
        };
    info!(
        fingerprint = %transfer.fingerprint_sha256(),
        not_before = %rfc3339(transfer.not_before()),
        not_after = %rfc3339(transfer.not_after()),
        "transfer certificate created"
    );

    // 2. Our own gRPC listener, bound before Hello because Hello tells the host agent where it is.
    let state = Arc::new(AgentState::new(&config.vm_dir, transfer.clone()));
    let server = match GuestServer::start(config.listen_ip, state.clone()).await {
        Ok(server) => server,
        Err(e) => {
            return Err(failures
                .fail(Stage::Listen, start_token, e.to_string())
                .await);
        }
    };
    info!(endpoint = %server.local_addr(), "guest agent service listening");

    // 3. Hello: spends the start token, yields the session and the sealed secrets.
    let hello = GuestHello {
        vm_id: config.vm_id.clone(),
        incarnation: config.incarnation,
        token: start_token.to_owned(),
        transfer_certificate_der: transfer.cert_der().to_vec(),
        guest_agent_endpoint: server.local_addr().to_string(),
        agent_version: AGENT_VERSION.to_owned(),
    };
    let welcome = match link.hello(hello).await {
        Ok(welcome) => welcome,
        Err(status) => {
            let message = format!(
                "host agent refused Hello ({:?}): {}",
                status.code(),
                status.message()
            );
            return Err(failures.fail(Stage::Hello, start_token, message).await);
        }
    };
    state.set_session_token(welcome.session_token.clone());
    let session_token = welcome.session_token.as_str();
    let interval = heartbeat::interval_from_welcome(welcome.heartbeat_interval);
    info!(
        deployment = %welcome.deployment,
        role = %welcome.role,
        instance = welcome.instance,
        node_id = %welcome.node_id,
        heartbeat_interval = ?interval,
        "connected to host agent"
    );
    if !welcome.node_id.is_empty() && welcome.node_id != config.node {
        warn!(node = %config.node, host_agent_node = %welcome.node_id, "host agent names another node than --node");
    }

    // 6 starts here, so the host agent hears from us (ROLE_STARTING) while the role starts.
    let _heartbeats = AbortOnDrop(tokio::spawn(heartbeat::run(
        link.clone(),
        state.clone(),
        interval,
        server.local_addr().to_string(),
    )));

    // 4. Open every secret (all or nothing) and write it for the role.
    let secrets = match open_all(
        transfer.private_key_pkcs8_der(),
        &state.seal_context(),
        &welcome.secrets,
    ) {
        Ok(secrets) => secrets,
        Err(e) => {
            return Err(failures
                .fail(Stage::Secrets, session_token, e.to_string())
                .await);
        }
    };
    if let Err(e) = write_secret_files(&config.vm_dir, &secrets) {
        return Err(failures
            .fail(Stage::Secrets, session_token, e.to_string())
            .await);
    }
    state.set_secrets_version(welcome.secrets_version.clone());
    let names: Vec<&str> = secrets.iter().map(|s| s.name()).collect();
    info!(
        count = secrets.len(),
        ?names,
        secrets_version = %welcome.secrets_version,
        "{} secrets received",
        secrets.len()
    );

    // 5. The role serves the first secret's certificate, swappable for rotation.
    let served = Arc::new(SwappableCert::new(secrets[0].certified_key().clone()));
    state.set_served(served.clone());
    let info = RoleInfo {
        deployment: welcome.deployment.clone(),
        role: welcome.role.clone(),
        instance: welcome.instance,
        node: config.node.clone(),
        incarnation: config.incarnation,
        vm_id: config.vm_id.clone(),
    };
    let role = match RoleEndpoint::start(config.role, info, served.clone()).await {
        Ok(role) => role,
        Err(e) => {
            return Err(failures
                .fail(Stage::Role, session_token, e.to_string())
                .await);
        }
    };
    state.set_role_running(role.local_addr());
    server.set_ready().await;
    info!(
        endpoint = %format!("https://{}", role.local_addr()),
        served_cert_fingerprint = %served.fingerprint(),
        "role listening on https://{}",
        role.local_addr()
    );

    // 6 and 7 run in their tasks; `role` and `server` live as long as this future.
    std::future::pending().await
}

fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}
