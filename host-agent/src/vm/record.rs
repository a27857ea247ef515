//! One VM's life on this host as a state machine with no processes, network
//! or clock of its own: every transition takes `now` and returns the
//! [`Action`]s the caller must carry out. That keeps the rules (timeouts,
//! tokens, the clean-VM strike count) testable in microseconds.
//!
//! ```text
//! Pending --Spawn--> Starting --hello--> Provisioned --ROLE_RUNNING--> Running
//!    ^                  |                     |                          |
//!    |                  +------ timeout / reported failure --------------+
//!    |                                        v
//!    +-------------- Spawn (incarnation+1) -- Reinitializing
//! ```

use super::persist::StoredVm;
use super::refusal::Refusal;
use super::token::{self, TokenDigest};
use fabric_daemon::untrusted::shown;
use fabric_proto::v1::{self as pb, RoleState, VmState};
use std::time::Duration;
use tokio::time::Instant;

/// The rules a host applies to its VMs (from its flags).
#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// From spawn until Hello.
    pub connect_timeout: Duration,
    /// Longest silence after Hello.
    pub heartbeat_timeout: Duration,
    /// Consecutive clean-VM failures that make the host report a fault.
    pub clean_vm_strikes: u32,
}

/// A guest agent's version as it said it, if it is a plausible version
/// (it is reported to the controller, which compares versions across
/// servers); anything else is "unknown".
pub fn guest_version(said: &str) -> String {
    let plausible = !said.is_empty()
        && said.len() <= 64
        && said
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '+'));
    if plausible {
        said.to_owned()
    } else {
        "unknown".to_owned()
    }
}

/// Where a VM is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Assigned, its first guest agent not spawned yet.
    Pending,
    /// Guest agent spawned; waiting for its Hello.
    Starting,
    /// Hello accepted and secrets sealed; the role is starting.
    Provisioned,
    /// The role serves.
    Running,
    /// Killed and wiped; respawns at the deadline.
    Reinitializing,
}

impl Phase {
    /// The name in the VM's on-disk record.
    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Pending => "pending",
            Phase::Starting => "starting",
            Phase::Provisioned => "provisioned",
            Phase::Running => "running",
            Phase::Reinitializing => "reinitializing",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Some(match text {
            "pending" => Phase::Pending,
            "starting" => Phase::Starting,
            "provisioned" => Phase::Provisioned,
            "running" => Phase::Running,
            "reinitializing" => Phase::Reinitializing,
            _ => return None,
        })
    }

    pub fn to_proto(self) -> VmState {
        match self {
            Phase::Pending | Phase::Starting => VmState::VmStarting,
            Phase::Provisioned => VmState::VmProvisioned,
            Phase::Running => VmState::VmRunning,
            Phase::Reinitializing => VmState::VmReinitializing,
        }
    }
}

/// What the caller of a transition must do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Kill the guest agent's process group and wipe the VM directory now;
    /// the respawn follows at the record's deadline.
    Reinitialize { reason: String },
    /// Tell the controller this server looks faulty, and why: the cause is
    /// what the controller classifies by, the reason is for people.
    ReportFault {
        cause: pb::FaultCause,
        reason: String,
    },
    /// Start a guest agent for [`VmRecord::next_incarnation`].
    Spawn,
}

/// The start token's life: claimed while a Hello is being served (so two
/// concurrent Hellos cannot both spend it), spent once it succeeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenUse {
    Unspent,
    Claimed,
    Spent,
}

/// What an accepted Hello established.
#[derive(Clone, Debug)]
pub struct HelloInfo {
    pub session_token: String,
    pub transfer_cert_der: Vec<u8>,
    pub guest_agent_endpoint: String,
    pub agent_version: String,
    pub secrets_version: String,
}

/// One VM as this host sees it.
#[derive(Debug)]
pub struct VmRecord {
    pub vm_id: String,
    pub deployment: String,
    pub role: String,
    pub instance: u32,
    /// Which guest agent runs it.
    pub guest: fabric_core::Guest,
    /// Of the guest agent running now (or last run).
    pub incarnation: u64,
    /// The lowest incarnation the controller allows.
    pub min_incarnation: u64,
    pub phase: Phase,
    /// No customer code has run in this incarnation (its role never reached
    /// RUNNING). A reinitialized VM is wiped, so it is clean again.
    pub clean: bool,
    /// Consecutive failures while clean.
    pub strikes: u32,
    /// Set once a streak's fault is reported, so it is reported only once.
    fault_reported: bool,
    /// Why the VM was last reinitialized.
    pub detail: String,
    pub pid: Option<u32>,
    /// The role's HTTPS endpoint as the guest agent serves it (private when
    /// a networking plugin forwards to it).
    pub endpoint: String,
    /// With a networking plugin: the public endpoint it forwards to
    /// `endpoint`, the one reported and reached. Kept across incarnations,
    /// so a reinitialized VM is found where it was. Empty without a plugin.
    pub public_endpoint: String,
    /// The address the plugin binds for `public_endpoint`.
    pub public_bind: String,
    /// Where the guest agent's GuestAgentService listens.
    pub guest_agent_endpoint: String,
    pub guest_agent_version: String,
    pub transfer_cert_fingerprint: String,
    /// Kept to seal rotated secrets to; public.
    pub transfer_cert_der: Vec<u8>,
    /// The certificate set the guest agent has.
    pub secrets_version: String,
    /// The certificate set the controller wants.
    pub desired_secrets_version: String,
    /// A PushSecrets is under way.
    pub rotating: bool,
    start_token: Option<TokenDigest>,
    token_use: TokenUse,
    /// Needed in clear to call the guest agent; never logged nor written.
    /// `None` in a re-adopted VM until its guest agent says Hello again.
    session_token: Option<String>,
    /// SHA-256 of the session token: what a restarted host agent knows of it.
    session_digest: Option<TokenDigest>,
    last_guest_sequence: u64,
    /// When the current phase times out (or, Pending/Reinitializing, when to
    /// spawn).
    pub deadline: Option<Instant>,
}

impl VmRecord {
    /// A newly assigned VM whose first guest agent will run `incarnation`.
    pub fn new(assignment: &pb::VmAssignment, incarnation: u64, now: Instant) -> Self {
        Self {
            vm_id: assignment.vm_id.clone(),
            deployment: assignment.deployment.clone(),
            role: assignment.role.clone(),
            instance: assignment.instance,
            guest: guest_of(&assignment.guest),
            // The spawn moves to `next_incarnation`, i.e. `incarnation`.
            incarnation: incarnation.saturating_sub(1),
            min_incarnation: incarnation,
            phase: Phase::Pending,
            clean: true,
            strikes: 0,
            fault_reported: false,
            detail: String::new(),
            pid: None,
            endpoint: String::new(),
            public_endpoint: String::new(),
            public_bind: String::new(),
            guest_agent_endpoint: String::new(),
            guest_agent_version: String::new(),
            transfer_cert_fingerprint: String::new(),
            transfer_cert_der: Vec::new(),
            secrets_version: String::new(),
            desired_secrets_version: assignment.secrets_version.clone(),
            rotating: false,
            start_token: None,
            token_use: TokenUse::Unspent,
            session_token: None,
            session_digest: None,
            last_guest_sequence: 0,
            deadline: Some(now),
        }
    }

    /// The incarnation the next spawn runs.
    pub fn next_incarnation(&self) -> u64 {
        (self.incarnation + 1).max(self.min_incarnation)
    }

    /// A guest agent is about to be spawned with the token whose digest is
    /// `token`: a new incarnation, clean, waiting for Hello.
    pub fn spawning(&mut self, now: Instant, token: TokenDigest, policy: &Policy) {
        self.incarnation = self.next_incarnation();
        self.phase = Phase::Starting;
        self.clean = true;
        self.pid = None;
        self.endpoint.clear();
        self.guest_agent_endpoint.clear();
        self.transfer_cert_fingerprint.clear();
        self.transfer_cert_der.clear();
        self.secrets_version.clear();
        self.rotating = false;
        self.start_token = Some(token);
        self.token_use = TokenUse::Unspent;
        self.session_token = None;
        self.session_digest = None;
        self.last_guest_sequence = 0;
        self.deadline = Some(now + policy.connect_timeout);
    }

    /// The process of the current incarnation started.
    pub fn spawned(&mut self, pid: Option<u32>) {
        self.pid = pid;
    }

    /// Checks a Hello's incarnation and start token and reserves the token.
    pub fn claim_start_token(&mut self, incarnation: u64, presented: &str) -> Result<(), Refusal> {
        self.check_incarnation(incarnation)?;
        let Some(expected) = &self.start_token else {
            return Err(Refusal::BadToken);
        };
        if !token::matches(expected, presented) {
            return Err(Refusal::BadToken);
        }
        if self.token_use != TokenUse::Unspent || self.phase != Phase::Starting {
            return Err(Refusal::TokenUsed);
        }
        self.token_use = TokenUse::Claimed;
        Ok(())
    }

    /// The Hello could not be completed for reasons not the guest's (e.g.
    /// the controller was unreachable): it may try again with its token.
    pub fn release_start_token(&mut self, incarnation: u64) {
        if self.incarnation == incarnation && self.token_use == TokenUse::Claimed {
            self.token_use = TokenUse::Unspent;
        }
    }

    /// A Hello succeeded: the token (claimed by this Hello) is spent and
    /// secrets were sealed. Refused if the VM moved on meanwhile.
    pub fn hello_accepted(
        &mut self,
        now: Instant,
        incarnation: u64,
        hello: HelloInfo,
        policy: &Policy,
    ) -> Result<(), Refusal> {
        self.check_incarnation(incarnation)?;
        if self.token_use != TokenUse::Claimed || self.phase != Phase::Starting {
            return Err(Refusal::TokenUsed);
        }
        self.token_use = TokenUse::Spent;
        self.phase = Phase::Provisioned;
        self.transfer_cert_fingerprint = token::fingerprint(&hello.transfer_cert_der);
        self.transfer_cert_der = hello.transfer_cert_der;
        self.guest_agent_endpoint = hello.guest_agent_endpoint;
        self.guest_agent_version = guest_version(&hello.agent_version);
        self.secrets_version = hello.secrets_version;
        self.session_digest = Some(token::digest(&hello.session_token));
        self.session_token = Some(hello.session_token);
        self.deadline = Some(now + policy.heartbeat_timeout);
        Ok(())
    }

    /// Whether `presented` is this incarnation's session token (a Hello
    /// carrying it resumes the session instead of starting one).
    pub fn is_session_token(&self, incarnation: u64, presented: &str) -> bool {
        self.check_incarnation(incarnation).is_ok()
            && self
                .session_digest
                .as_ref()
                .is_some_and(|d| token::matches(d, presented))
    }

    /// A guest agent re-adopted by a restarted host agent says Hello again
    /// with its session token and the same transfer certificate: the session
    /// resumes, nothing is re-sealed, the incarnation stays.
    pub fn resume_session(
        &mut self,
        now: Instant,
        hello: &pb::GuestHello,
        policy: &Policy,
    ) -> Result<(), Refusal> {
        if !self.is_session_token(hello.incarnation, &hello.token) {
            self.check_incarnation(hello.incarnation)?;
            return Err(Refusal::BadToken);
        }
        if token::fingerprint(&hello.transfer_certificate_der) != self.transfer_cert_fingerprint {
            return Err(Refusal::TransferCertChanged);
        }
        self.session_token = Some(hello.token.clone());
        self.guest_agent_endpoint
            .clone_from(&hello.guest_agent_endpoint);
        if !hello.agent_version.is_empty() {
            self.guest_agent_version = guest_version(&hello.agent_version);
        }
        self.deadline = Some(now + policy.heartbeat_timeout);
        Ok(())
    }

    /// Checks the session token of a guest agent that said Hello.
    pub fn check_session(&self, incarnation: u64, presented: &str) -> Result<(), Refusal> {
        self.check_incarnation(incarnation)?;
        match (&self.session_digest, &self.session_token) {
            (Some(digest), Some(_)) if token::matches(digest, presented) => Ok(()),
            // Re-adopted: the token is right but this host agent must hear
            // Hello again (it needs the token in clear to call the guest).
            (Some(digest), None) if token::matches(digest, presented) => {
                Err(Refusal::SessionNotResumed)
            }
            (Some(_), _) => Err(Refusal::BadToken),
            (None, _) => Err(Refusal::NoSession),
        }
    }

    /// Checks the start token or, after Hello, the session token (a failure
    /// can be reported by a guest agent that never said Hello).
    pub fn check_any_token(&self, incarnation: u64, presented: &str) -> Result<(), Refusal> {
        self.check_incarnation(incarnation)?;
        let start_ok = self
            .start_token
            .as_ref()
            .is_some_and(|t| token::matches(t, presented));
        if start_ok || self.check_session(incarnation, presented).is_ok() {
            Ok(())
        } else {
            Err(Refusal::BadToken)
        }
    }

    fn check_incarnation(&self, incarnation: u64) -> Result<(), Refusal> {
        let live = matches!(
            self.phase,
            Phase::Starting | Phase::Provisioned | Phase::Running
        );
        if !live || incarnation != self.incarnation {
            return Err(Refusal::WrongIncarnation {
                presented: incarnation,
                current: self.incarnation,
            });
        }
        Ok(())
    }

    /// A GuestHeartbeat (its tokens already checked). Late or repeated
    /// sequence numbers are ignored.
    pub fn heartbeat(
        &mut self,
        now: Instant,
        sequence: u64,
        role_state: RoleState,
        role_endpoint: &str,
        policy: &Policy,
    ) {
        if sequence <= self.last_guest_sequence {
            return;
        }
        self.last_guest_sequence = sequence;
        self.deadline = Some(now + policy.heartbeat_timeout);
        if !role_endpoint.is_empty() {
            self.endpoint = role_endpoint.to_owned();
        }
        if role_state == RoleState::RoleRunning {
            // Customer code now runs in this VM: from here on a failure may
            // be the customer's, so it no longer counts against the server.
            self.phase = Phase::Running;
            self.clean = false;
            self.strikes = 0;
            self.fault_reported = false;
        }
    }

    /// What is due at `now`: a timeout, or a pending spawn.
    pub fn on_deadline(&mut self, now: Instant, policy: &Policy) -> Vec<Action> {
        match self.deadline {
            Some(deadline) if deadline <= now => {}
            _ => return Vec::new(),
        }
        match self.phase {
            Phase::Pending | Phase::Reinitializing => {
                self.deadline = None;
                vec![Action::Spawn]
            }
            Phase::Starting => {
                let reason = format!(
                    "guest agent never connected within {}",
                    humantime::format_duration(policy.connect_timeout)
                );
                self.fail(now, pb::FaultCause::GuestTimeouts, reason, policy)
            }
            Phase::Provisioned | Phase::Running => {
                let reason = format!(
                    "guest agent silent for {}",
                    humantime::format_duration(policy.heartbeat_timeout)
                );
                self.fail(now, pb::FaultCause::GuestTimeouts, reason, policy)
            }
        }
    }

    /// The guest agent reported that its init failed at `stage`.
    pub fn failure_reported(
        &mut self,
        now: Instant,
        stage: &str,
        error: &str,
        policy: &Policy,
    ) -> Vec<Action> {
        // The guest's words, cut short: they travel on in the fault report,
        // which the controller refuses beyond 256 bytes.
        let error = shown(error);
        let reason = if stage == "transfer_certificate" {
            format!("guest agent failed creating transfer certificate: {error}")
        } else {
            format!("guest agent failed at {}: {error}", shown(stage))
        };
        self.fail(now, pb::FaultCause::GuestInitError, reason, policy)
    }

    /// The VM failed for `reason` (a timeout, a reported failure, a bad
    /// transfer certificate, a spawn error): reinitialize it, and count a
    /// strike if it was clean. A clean VM cannot have been broken by its
    /// customer, so repeated clean failures point at this server (or at the
    /// platform's own software, as on Feb 29 2012). `cause` says which, as
    /// far as this host agent can tell, for the fault report.
    pub fn fail(
        &mut self,
        now: Instant,
        cause: pb::FaultCause,
        reason: String,
        policy: &Policy,
    ) -> Vec<Action> {
        let mut actions = vec![Action::Reinitialize {
            reason: reason.clone(),
        }];
        if self.clean {
            self.strikes += 1;
            if self.strikes >= policy.clean_vm_strikes && !self.fault_reported {
                self.fault_reported = true;
                actions.push(Action::ReportFault {
                    cause,
                    reason: reason.clone(),
                });
            }
        }
        self.reinitializing(now, reason);
        actions
    }

    /// The controller wants at least `min`: a running older incarnation is
    /// replaced (not the VM's fault, so no strike).
    pub fn require_incarnation(&mut self, now: Instant, min: u64) -> Vec<Action> {
        self.min_incarnation = self.min_incarnation.max(min);
        let live = matches!(
            self.phase,
            Phase::Starting | Phase::Provisioned | Phase::Running
        );
        if !live || self.incarnation >= self.min_incarnation {
            return Vec::new();
        }
        let reason = format!("controller asked for incarnation {min}");
        self.reinitializing(now, reason.clone());
        vec![Action::Reinitialize { reason }]
    }

    fn reinitializing(&mut self, now: Instant, reason: String) {
        self.phase = Phase::Reinitializing;
        self.detail = reason;
        self.start_token = None;
        self.session_token = None;
        self.session_digest = None;
        self.endpoint.clear();
        self.rotating = false;
        self.deadline = Some(now + respawn_delay(self.strikes));
    }

    /// The session token, to authenticate our calls to the guest agent.
    pub fn session_token(&self) -> Option<&str> {
        self.session_token.as_deref()
    }

    /// Whether the guest agent should be sent the controller's secrets.
    pub fn needs_rotation(&self) -> bool {
        matches!(self.phase, Phase::Provisioned | Phase::Running)
            && !self.rotating
            && !self.desired_secrets_version.is_empty()
            && self.desired_secrets_version != self.secrets_version
            && self.session_token.is_some()
            && !self.guest_agent_endpoint.is_empty()
    }

    /// What is written to disk: public facts and digests only.
    pub fn stored(&self) -> StoredVm {
        StoredVm {
            vm_id: self.vm_id.clone(),
            deployment: self.deployment.clone(),
            role: self.role.clone(),
            instance: self.instance,
            guest: self.guest.as_str().to_owned(),
            incarnation: self.incarnation,
            phase: self.phase.as_str().to_owned(),
            clean: self.clean,
            strikes: self.strikes,
            pid: self.pid,
            endpoint: self.endpoint.clone(),
            public_endpoint: self.public_endpoint.clone(),
            public_bind: self.public_bind.clone(),
            guest_agent_endpoint: self.guest_agent_endpoint.clone(),
            guest_agent_version: self.guest_agent_version.clone(),
            transfer_cert_fingerprint: self.transfer_cert_fingerprint.clone(),
            transfer_cert_der_hex: token::hex(&self.transfer_cert_der),
            secrets_version: self.secrets_version.clone(),
            session_token_sha256: self
                .session_digest
                .as_ref()
                .map(token::digest_hex)
                .unwrap_or_default(),
            detail: self.detail.clone(),
        }
    }

    /// A VM whose guest agent outlived the previous host agent: it keeps its
    /// incarnation and phase; its guest must heartbeat within the heartbeat
    /// timeout (and say Hello again with its session token). `None` if the
    /// record is not of a VM that said Hello (only those can be re-adopted:
    /// start tokens are never written down).
    pub fn readopt(stored: &StoredVm, now: Instant, policy: &Policy) -> Option<Self> {
        let phase = Phase::parse(&stored.phase)?;
        if !matches!(phase, Phase::Provisioned | Phase::Running) {
            return None;
        }
        let session_digest = Some(token::parse_digest(&stored.session_token_sha256)?);
        let transfer_cert_der = token::unhex(&stored.transfer_cert_der_hex)?;
        if transfer_cert_der.is_empty()
            || token::fingerprint(&transfer_cert_der) != stored.transfer_cert_fingerprint
        {
            return None;
        }
        Some(Self {
            vm_id: stored.vm_id.clone(),
            deployment: stored.deployment.clone(),
            role: stored.role.clone(),
            instance: stored.instance,
            guest: guest_of(&stored.guest),
            incarnation: stored.incarnation,
            min_incarnation: stored.incarnation,
            phase,
            clean: stored.clean,
            strikes: stored.strikes,
            fault_reported: false,
            detail: stored.detail.clone(),
            pid: stored.pid,
            endpoint: stored.endpoint.clone(),
            public_endpoint: stored.public_endpoint.clone(),
            public_bind: stored.public_bind.clone(),
            guest_agent_endpoint: stored.guest_agent_endpoint.clone(),
            guest_agent_version: stored.guest_agent_version.clone(),
            transfer_cert_fingerprint: stored.transfer_cert_fingerprint.clone(),
            transfer_cert_der,
            secrets_version: stored.secrets_version.clone(),
            // Learnt from the controller's next heartbeat answer.
            desired_secrets_version: String::new(),
            rotating: false,
            start_token: None,
            token_use: TokenUse::Spent,
            session_token: None,
            session_digest,
            last_guest_sequence: 0,
            deadline: Some(now + policy.heartbeat_timeout),
        })
    }

    /// The endpoint clients use: the public one where a plugin forwards,
    /// else the guest's own; empty until the role serves.
    pub fn reported_endpoint(&self) -> &str {
        if self.endpoint.is_empty() || self.public_endpoint.is_empty() {
            &self.endpoint
        } else {
            &self.public_endpoint
        }
    }

    pub fn to_report(&self) -> pb::VmReport {
        pb::VmReport {
            vm_id: self.vm_id.clone(),
            deployment: self.deployment.clone(),
            role: self.role.clone(),
            instance: self.instance,
            incarnation: self.incarnation,
            state: self.phase.to_proto() as i32,
            pid: self.pid.unwrap_or(0),
            endpoint: self.reported_endpoint().to_owned(),
            clean: self.clean,
            strikes: self.strikes,
            detail: self.detail.clone(),
            transfer_cert_fingerprint: self.transfer_cert_fingerprint.clone(),
            secrets_version: self.secrets_version.clone(),
        }
    }
}

/// The guest a controller or a record names; one this host agent does not
/// know runs Fabric's (the controller validates what it sends).
fn guest_of(name: &str) -> fabric_core::Guest {
    fabric_core::Guest::parse(name).unwrap_or_else(|e| {
        tracing::warn!("{e}; running Fabric's guest agent");
        fabric_core::Guest::Fabric
    })
}

/// Pause before respawning, growing with the strikes: a guest agent that
/// fails fast must not turn into a fork loop. 250 ms, doubling, at most 10 s.
pub fn respawn_delay(strikes: u32) -> Duration {
    Duration::from_millis(250u64 << strikes.min(6)).min(Duration::from_secs(10))
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Policy = Policy {
        connect_timeout: Duration::from_secs(25 * 60),
        heartbeat_timeout: Duration::from_secs(15),
        clean_vm_strikes: 3,
    };

    fn assignment() -> pb::VmAssignment {
        pb::VmAssignment {
            vm_id: "web.frontend.0".into(),
            deployment: "web".into(),
            role: "frontend".into(),
            instance: 0,
            incarnation: 1,
            secrets_version: "v1".into(),
            guest: String::new(),
        }
    }

    /// Runs the record's pending spawn; returns the start token.
    fn spawn(vm: &mut VmRecord, now: Instant) -> String {
        assert_eq!(
            vm.on_deadline(now + Duration::from_secs(11), &POLICY),
            vec![Action::Spawn]
        );
        let token = token::generate();
        vm.spawning(now, token::digest(&token), &POLICY);
        vm.spawned(Some(42));
        token
    }

    fn hello(vm: &mut VmRecord, now: Instant, token: &str) {
        vm.claim_start_token(vm.incarnation, token).unwrap();
        vm.hello_accepted(
            now,
            vm.incarnation,
            HelloInfo {
                session_token: "session".into(),
                transfer_cert_der: vec![1, 2, 3],
                guest_agent_endpoint: "127.0.0.1:1".into(),
                agent_version: "0.1.0".into(),
                secrets_version: "v1".into(),
            },
            &POLICY,
        )
        .unwrap();
    }

    fn faults(actions: &[Action]) -> Vec<String> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ReportFault { reason, .. } => Some(reason.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn three_clean_timeouts_report_one_fault() {
        let mut now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let mut reported = Vec::new();
        for round in 1..=5u64 {
            spawn(&mut vm, now);
            assert_eq!(vm.incarnation, round);
            assert_eq!(vm.phase, Phase::Starting);
            // Not yet due.
            assert!(
                vm.on_deadline(now + Duration::from_secs(60), &POLICY)
                    .is_empty()
            );
            now += POLICY.connect_timeout;
            let actions = vm.on_deadline(now, &POLICY);
            assert!(
                matches!(&actions[0], Action::Reinitialize { .. }),
                "{actions:?}"
            );
            assert_eq!(vm.phase, Phase::Reinitializing);
            assert_eq!(vm.strikes as u64, round);
            reported.extend(faults(&actions));
            if round == 3 {
                assert_eq!(reported.len(), 1, "the third strike reports");
            }
        }
        assert_eq!(
            reported,
            vec!["guest agent never connected within 25m".to_owned()]
        );
        assert_eq!(vm.detail, "guest agent never connected within 25m");
    }

    #[test]
    fn reported_failures_strike_with_the_guests_error() {
        let now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let mut reported = Vec::new();
        for _ in 0..3 {
            let token = spawn(&mut vm, now);
            vm.check_any_token(vm.incarnation, &token).unwrap();
            reported.extend(faults(&vm.failure_reported(
                now,
                "transfer_certificate",
                "invalid date",
                &POLICY,
            )));
        }
        assert_eq!(
            reported,
            vec!["guest agent failed creating transfer certificate: invalid date".to_owned()]
        );
    }

    /// The cause each fault report carries, for the controller to classify.
    fn causes(actions: &[Action]) -> Vec<pb::FaultCause> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::ReportFault { cause, .. } => Some(*cause),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn fault_reports_name_the_cause_the_host_agent_saw() {
        // Timeouts: the guest never connected.
        let mut now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let mut seen = Vec::new();
        for _ in 0..3 {
            spawn(&mut vm, now);
            now += POLICY.connect_timeout;
            seen.extend(causes(&vm.on_deadline(now, &POLICY)));
        }
        assert_eq!(seen, vec![pb::FaultCause::GuestTimeouts]);
        // The guest said why it failed.
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let mut seen = Vec::new();
        for _ in 0..3 {
            spawn(&mut vm, now);
            seen.extend(causes(&vm.failure_reported(now, "secrets", "bad", &POLICY)));
        }
        assert_eq!(seen, vec![pb::FaultCause::GuestInitError]);
        // The caller names its own (the manager: a VM it cannot start).
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let mut seen = Vec::new();
        for _ in 0..3 {
            spawn(&mut vm, now);
            let reason = "cannot start guest agent".to_owned();
            seen.extend(causes(&vm.fail(
                now,
                pb::FaultCause::HostHardware,
                reason,
                &POLICY,
            )));
        }
        assert_eq!(seen, vec![pb::FaultCause::HostHardware]);
    }

    #[test]
    fn running_resets_strikes_and_a_dirty_timeout_is_no_strike() {
        let mut now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        for _ in 0..2 {
            spawn(&mut vm, now);
            now += POLICY.connect_timeout;
            vm.on_deadline(now, &POLICY);
        }
        assert_eq!(vm.strikes, 2);
        let token = spawn(&mut vm, now);
        hello(&mut vm, now, &token);
        assert_eq!(vm.phase, Phase::Provisioned);
        vm.heartbeat(now, 1, RoleState::RoleStarting, "", &POLICY);
        assert!(vm.clean && vm.strikes == 2);
        vm.heartbeat(now, 2, RoleState::RoleRunning, "127.0.0.1:443", &POLICY);
        assert_eq!(vm.phase, Phase::Running);
        assert!(!vm.clean);
        assert_eq!(vm.strikes, 0);
        assert_eq!(vm.endpoint, "127.0.0.1:443");

        // Heartbeats push the deadline; silence past it reinitializes
        // without a strike because customer code ran.
        now += Duration::from_secs(10);
        assert!(vm.on_deadline(now, &POLICY).is_empty());
        vm.heartbeat(now, 3, RoleState::RoleRunning, "", &POLICY);
        now += Duration::from_secs(10);
        assert!(vm.on_deadline(now, &POLICY).is_empty());
        now += Duration::from_secs(5);
        let actions = vm.on_deadline(now, &POLICY);
        assert_eq!(
            actions,
            vec![Action::Reinitialize {
                reason: "guest agent silent for 15s".into()
            }]
        );
        assert_eq!(vm.strikes, 0);
        // The respawned VM is wiped, hence clean again.
        spawn(&mut vm, now);
        assert!(vm.clean);
        assert_eq!(vm.incarnation, 4);
    }

    #[test]
    fn tokens_are_single_use_and_bound_to_the_incarnation() {
        let now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 7, now);
        let token = spawn(&mut vm, now);
        assert_eq!(vm.incarnation, 7);
        assert_eq!(
            vm.claim_start_token(6, &token),
            Err(Refusal::WrongIncarnation {
                presented: 6,
                current: 7
            })
        );
        assert_eq!(
            vm.claim_start_token(7, "not the token"),
            Err(Refusal::BadToken)
        );
        vm.claim_start_token(7, &token).unwrap();
        assert_eq!(vm.claim_start_token(7, &token), Err(Refusal::TokenUsed));
        vm.release_start_token(7);
        hello(&mut vm, now, &token);
        assert_eq!(vm.claim_start_token(7, &token), Err(Refusal::TokenUsed));
        assert_eq!(vm.check_session(7, "session"), Ok(()));
        assert_eq!(vm.check_session(7, &token), Err(Refusal::BadToken));
    }

    #[test]
    fn controller_can_raise_the_incarnation() {
        let now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        spawn(&mut vm, now);
        assert!(vm.require_incarnation(now, 1).is_empty());
        let actions = vm.require_incarnation(now, 5);
        assert_eq!(actions.len(), 1);
        assert_eq!(vm.strikes, 0);
        spawn(&mut vm, now);
        assert_eq!(vm.incarnation, 5);
    }

    fn resume(token: &str, der: &[u8], version: &str) -> pb::GuestHello {
        pb::GuestHello {
            vm_id: "web.frontend.0".into(),
            incarnation: 1,
            token: token.into(),
            transfer_certificate_der: der.to_vec(),
            guest_agent_endpoint: "127.0.0.1:2".into(),
            agent_version: version.into(),
        }
    }

    #[test]
    fn a_readopted_vm_resumes_its_session_without_new_secrets() {
        let now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        let token = spawn(&mut vm, now);
        vm.spawned(Some(4242));
        hello(&mut vm, now, &token);
        vm.heartbeat(now, 1, RoleState::RoleRunning, "127.0.0.1:443", &POLICY);
        let stored = vm.stored();
        let text = serde_json::to_string(&stored).unwrap();
        assert!(
            !text.contains("\"session\""),
            "no session token on disk: {text}"
        );
        assert!(!text.contains(&token), "no start token on disk");
        assert_eq!(
            stored.session_token_sha256,
            token::digest_hex(&token::digest("session"))
        );

        let later = now + Duration::from_secs(60);
        let mut back = VmRecord::readopt(&stored, later, &POLICY).unwrap();
        assert_eq!(
            (back.incarnation, back.phase, back.pid),
            (1, Phase::Running, Some(4242))
        );
        assert_eq!(back.endpoint, "127.0.0.1:443");
        assert_eq!(back.deadline, Some(later + POLICY.heartbeat_timeout));
        assert!(back.session_token().is_none() && !back.needs_rotation());
        // Heartbeats with the right token are asked to resume; others refused.
        assert_eq!(
            back.check_session(1, "session"),
            Err(Refusal::SessionNotResumed)
        );
        assert_eq!(back.check_session(1, "other"), Err(Refusal::BadToken));
        assert!(back.is_session_token(1, "session"));
        assert!(!back.is_session_token(2, "session"));
        assert_eq!(
            back.resume_session(later, &resume("session", &[9, 9], ""), &POLICY),
            Err(Refusal::TransferCertChanged)
        );
        assert_eq!(
            back.resume_session(later, &resume("other", &[1, 2, 3], ""), &POLICY),
            Err(Refusal::BadToken)
        );
        back.resume_session(later, &resume("session", &[1, 2, 3], "0.2.0"), &POLICY)
            .unwrap();
        assert_eq!(back.guest_agent_version, "0.2.0");
        assert_eq!(back.check_session(1, "session"), Ok(()));
        assert_eq!(back.session_token(), Some("session"));
        assert_eq!(back.guest_agent_endpoint, "127.0.0.1:2");
        assert_eq!(back.incarnation, 1);
        // A dead guest is still noticed: silence past the timeout reinitializes.
        let actions = back.on_deadline(later + POLICY.heartbeat_timeout, &POLICY);
        assert!(
            matches!(&actions[..], [Action::Reinitialize { .. }]),
            "{actions:?}"
        );
        assert_eq!(back.incarnation + 1, back.next_incarnation());
    }

    #[test]
    fn only_vms_that_said_hello_are_readopted() {
        let now = Instant::now();
        let mut vm = VmRecord::new(&assignment(), 1, now);
        spawn(&mut vm, now);
        vm.spawned(Some(4242));
        assert!(VmRecord::readopt(&vm.stored(), now, &POLICY).is_none());
        let mut tampered = vm.stored();
        tampered.phase = "running".into();
        tampered.session_token_sha256 = token::digest_hex(&token::digest("x"));
        assert!(
            VmRecord::readopt(&tampered, now, &POLICY).is_none(),
            "no transfer cert"
        );
    }

    #[test]
    fn respawn_delay_grows_and_is_capped() {
        assert_eq!(respawn_delay(0), Duration::from_millis(250));
        assert_eq!(respawn_delay(2), Duration::from_secs(1));
        assert_eq!(respawn_delay(40), Duration::from_secs(10));
    }
}
