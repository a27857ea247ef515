//! A simulated server: the host agent's own VM rules over simulated guest
//! agents.
//!
//! Each VM is the real host agent's record of it
//! (`host_agent::vm::record::VmRecord`): its phases, the 25-minute connect
//! timeout, the heartbeat timeout, the clean-VM strike rule, the respawn
//! backoff and the fault it asks to report all run here as they run in
//! `host-agent`, driven by virtual time. What is simulated is the guest:
//! it says Hello and runs its role after `boot_time`, or fails creating its
//! transfer certificate, computed by the real guest agent's date code
//! (`guest_agent::transfer_cert`) at the VM's calendar time, and then either
//! reports the failure (fail fast) or exits silently (2012). The
//! registration, heartbeats, desired-state convergence and rollouts are the
//! sim's own lines around the real core (`fabric_core`).

use fabric_core::{
    ClusterEvent, FabricCore, FaultCause, FaultReport, HeartbeatOutcome, InstanceId, Moment,
    NodeId, NodeInfo, VmAssignment, VmObservation, VmState,
};
use fabric_proto::v1 as pb;
use host_agent::vm::record::{Action, HelloInfo, Phase, Policy, VmRecord};
use host_agent::vm::token;
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

/// The start and session tokens of simulated guest agents: the record
/// checks them as it checks a real Hello's.
const START_TOKEN: &str = "sim-start-token";
const SESSION_TOKEN: &str = "sim-session-token";
/// The host agent's silence limit for a guest after Hello; simulated guests
/// heartbeat every step, so any limit above the step is never hit.
const GUEST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(15);
/// How long a failing guest agent takes to report (fail fast).
const FAIL_FAST_AFTER: Duration = Duration::from_millis(100);

/// Virtual time as the `tokio::time::Instant` the host agent's record
/// takes: a fixed origin plus the virtual offset.
fn instant(mono: Duration) -> tokio::time::Instant {
    static ORIGIN: std::sync::OnceLock<tokio::time::Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(tokio::time::Instant::now) + mono
}

/// How guest agents behave in the simulation.
#[derive(Clone, Debug)]
pub struct GuestModel {
    /// Time from spawn to the role Running, for a healthy guest agent.
    pub boot_time: Duration,
    /// The host agent's wait for a guest agent to connect (25 min in 2012).
    pub connect_timeout: Duration,
    /// Clean-VM timeouts in a row before the server is reported faulty.
    pub clean_vm_strikes: u32,
    /// The 2012 bug: guest agents compute their transfer certificate's
    /// valid-to date the 2012 way, so those started on Feb 29 (UTC) fail.
    pub leap_day_bug: bool,
    /// The guest agent reports its failure before exiting (Fabric's fix), so
    /// the host agent acts at once instead of waiting out the timeout.
    pub fail_fast: bool,
    pub agent_version: String,
    /// Guest agent versions without the bug (the fix a rollout brings);
    /// every other version has it when `leap_day_bug` is set.
    pub fixed_guest_agents: Vec<String>,
}

impl Default for GuestModel {
    fn default() -> Self {
        Self {
            boot_time: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(60),
            clean_vm_strikes: 3,
            leap_day_bug: false,
            fail_fast: true,
            agent_version: "0.1.0".into(),
            fixed_guest_agents: Vec::new(),
        }
    }
}

impl GuestModel {
    /// Why a guest agent of `version` started at calendar time `wall`
    /// fails its first step, if it does: the real guest agent's valid-to
    /// computation, the 2012 way unless `version` is a fixed one.
    fn init_failure(&self, version: &str, wall: SystemTime) -> Option<String> {
        if !self.leap_day_bug || self.fixed_guest_agents.iter().any(|v| v == version) {
            return None;
        }
        let now = time::OffsetDateTime::from(wall);
        let from = guest_agent::transfer_cert::midnight_utc(now);
        guest_agent::transfer_cert::buggy_valid_to(from)
            .err()
            .map(|e| e.to_string())
    }

    /// The host agent's rules for its VMs, as its flags would set them.
    fn policy(&self) -> Policy {
        Policy {
            connect_timeout: self.connect_timeout,
            heartbeat_timeout: GUEST_HEARTBEAT_TIMEOUT,
            clean_vm_strikes: self.clean_vm_strikes,
        }
    }
}

/// Whether the server has power, and whether its processes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    On,
    Off,
    /// SIGSTOP: the host agent and its VMs are frozen.
    Paused,
}

/// One VM: the host agent's record of it and its simulated guest agent.
#[derive(Debug)]
pub struct SimVm {
    /// The real host agent's record (host-agent/src/vm/record.rs).
    pub record: VmRecord,
    /// When (virtual and calendar time) its current guest agent started.
    spawned_at: Duration,
    spawned_wall: SystemTime,
    /// The guest's heartbeat sequence.
    sequence: u64,
    /// The role endpoint its guest reports (made once, not every step).
    endpoint: String,
}

impl SimVm {
    /// The role serves (its record is Running).
    pub fn running(&self) -> bool {
        self.record.phase == Phase::Running
    }
}

/// A modelled server: host agent and VMs.
#[derive(Debug)]
pub struct SimHost {
    pub id: NodeId,
    pub fault_domain: u32,
    pub update_domain: u32,
    pub capacity: u32,
    pub power: Power,
    /// Cut off from the controller (VMs keep running).
    pub partitioned: bool,
    boot: u64,
    sequence: u64,
    registered: bool,
    last_contact: Option<Duration>,
    /// When this host last heard the controller's desired state.
    pub last_sync: Option<Duration>,
    pub vms: BTreeMap<InstanceId, SimVm>,
    /// Highest incarnation run so far per VM, so a respawn goes higher.
    last_incarnation: BTreeMap<InstanceId, u64>,
    pending_fault: Option<FaultReport>,
    /// The software it runs; `None` package: the base.
    pub software: Option<fabric_core::Software>,
    /// Whether its networking plugin works with its host agent (a package
    /// whose plugin does not declare its host agent leaves every VM of the
    /// server unreachable, as the real plugin does on an interface
    /// mismatch).
    pub plugin_works: bool,
}

impl SimHost {
    pub fn new(id: NodeId, fault_domain: u32, update_domain: u32, capacity: u32) -> Self {
        Self {
            id,
            fault_domain,
            update_domain,
            capacity,
            power: Power::On,
            partitioned: false,
            boot: 1,
            sequence: 0,
            registered: false,
            last_contact: None,
            last_sync: None,
            vms: BTreeMap::new(),
            last_incarnation: BTreeMap::new(),
            pending_fault: None,
            software: None,
            plugin_works: true,
        }
    }

    /// Whether VM `id` runs here and clients can reach it.
    pub fn reachable(&self, id: &InstanceId) -> bool {
        self.alive() && self.plugin_works && self.vms.get(id).is_some_and(SimVm::running)
    }

    /// A rollout told this host agent to run other software: it execs into
    /// it (a new boot that registers again) and keeps its VMs. Replays also
    /// call it to set up servers an earlier rollout already moved.
    pub fn restart_into(&mut self, target: fabric_core::Target, guest: &GuestModel) {
        let (software, works) = match target {
            fabric_core::Target::Package(m) => (m.software(), m.check_own().is_ok()),
            fabric_core::Target::Base => (base_software(guest), true),
        };
        self.software = Some(software);
        self.plugin_works = works;
        self.boot += 1;
        self.sequence = 0;
        self.registered = false;
    }

    /// Pulls the plug: the host agent and every VM are gone.
    pub fn power_off(&mut self) {
        self.power = Power::Off;
        self.vms.clear();
        self.last_incarnation.clear();
        self.pending_fault = None;
        self.registered = false;
    }

    /// Power returns: a new host agent boot with no VMs.
    pub fn power_on(&mut self) {
        if self.power == Power::Off {
            self.power = Power::On;
            self.boot += 1;
            self.sequence = 0;
            self.last_contact = None;
        }
    }

    pub fn pause(&mut self) {
        if self.power == Power::On {
            self.power = Power::Paused;
        }
    }

    pub fn unpause(&mut self) {
        if self.power == Power::Paused {
            self.power = Power::On;
        }
    }

    /// The host agent process restarts. Like the real one today, it cleans
    /// up its VMs at start and runs what the controller asks again.
    pub fn restart_agent(&mut self) {
        if self.power == Power::On {
            self.boot += 1;
            self.sequence = 0;
            self.registered = false;
            self.last_contact = None;
            self.vms.clear();
            self.last_incarnation.clear();
            self.pending_fault = None;
        }
    }

    fn alive(&self) -> bool {
        self.power == Power::On
    }

    /// Guest agents come up, heartbeat or fail; the host agent's record of
    /// each VM acts on it and on its own deadlines (timeouts, respawns,
    /// strikes, the fault report), as `host-agent` does.
    pub fn run_guests(&mut self, now: Moment, guest: &GuestModel) {
        if !self.alive() {
            return;
        }
        let policy = guest.policy();
        let t = instant(now.mono);
        // The guest agent new VMs of this server start with.
        let version = self
            .software
            .as_ref()
            .map_or(guest.agent_version.clone(), |s| s.guest_agent.clone());
        let mut faults = Vec::new();
        for (id, vm) in self.vms.iter_mut() {
            let mut actions = Vec::new();
            // The guest's part.
            match vm.record.phase {
                Phase::Starting => {
                    let age = now.mono.saturating_sub(vm.spawned_at);
                    match guest.init_failure(&version, vm.spawned_wall) {
                        None if age >= guest.boot_time => {
                            let incarnation = vm.record.incarnation;
                            let hello = HelloInfo {
                                session_token: SESSION_TOKEN.into(),
                                transfer_cert_der: Vec::new(),
                                guest_agent_endpoint: String::new(),
                                agent_version: version.clone(),
                                secrets_version: vm.record.desired_secrets_version.clone(),
                            };
                            let accepted = vm
                                .record
                                .claim_start_token(incarnation, START_TOKEN)
                                .and_then(|()| {
                                    vm.record.hello_accepted(t, incarnation, hello, &policy)
                                });
                            if accepted.is_ok() {
                                vm.sequence = 1;
                                vm.record.heartbeat(
                                    t,
                                    vm.sequence,
                                    pb::RoleState::RoleRunning,
                                    &vm.endpoint,
                                    &policy,
                                );
                            }
                        }
                        Some(error) if guest.fail_fast && age >= FAIL_FAST_AFTER => {
                            let stage = guest_agent::run::Stage::TransferCertificate.as_str();
                            actions.extend(vm.record.failure_reported(t, stage, &error, &policy));
                        }
                        // Booting, or exited without a word (2012): the
                        // record's connect timeout will tell.
                        _ => {}
                    }
                }
                Phase::Provisioned | Phase::Running => {
                    vm.sequence += 1;
                    vm.record.heartbeat(
                        t,
                        vm.sequence,
                        pb::RoleState::RoleRunning,
                        &vm.endpoint,
                        &policy,
                    );
                }
                Phase::Pending | Phase::Reinitializing => {}
            }
            // The host agent's part: timeouts and respawns.
            actions.extend(vm.record.on_deadline(t, &policy));
            for action in actions {
                match action {
                    Action::Spawn => {
                        vm.record.spawning(t, token::digest(START_TOKEN), &policy);
                        vm.record.spawned(None);
                        vm.spawned_at = now.mono;
                        vm.spawned_wall = now.wall;
                        vm.sequence = 0;
                        self.last_incarnation
                            .insert(id.clone(), vm.record.incarnation);
                    }
                    // The process is gone with the Reinitialize; the record
                    // holds the respawn's deadline.
                    Action::Reinitialize { .. } => {}
                    Action::ReportFault { cause, reason } => {
                        faults.push((id.clone(), cause, reason));
                    }
                }
            }
        }
        for (id, cause, reason) in faults {
            let cause = match cause {
                pb::FaultCause::GuestInitError => FaultCause::GuestInitError,
                pb::FaultCause::GuestTimeouts => FaultCause::GuestTimeouts,
                _ => FaultCause::HostHardware,
            };
            self.pending_fault
                .get_or_insert_with(|| FaultReport::new(cause, reason, version.clone(), Vec::new()))
                .vms
                .push(id);
        }
    }

    pub fn heartbeat_due(&self, now: Moment, interval: Duration) -> bool {
        self.alive()
            && !self.partitioned
            && self
                .last_contact
                .is_none_or(|t| now.mono.saturating_sub(t) >= interval)
    }

    fn boot_id(&self) -> String {
        format!("{}-boot-{}", self.id, self.boot)
    }

    /// One exchange with the controller: register or heartbeat (with VM
    /// reports), converge on the answer, deliver a pending fault report.
    pub fn contact(
        &mut self,
        core: &mut FabricCore,
        now: Moment,
        guest: &GuestModel,
    ) -> Vec<ClusterEvent> {
        if !self.alive() || self.partitioned {
            return Vec::new();
        }
        self.last_contact = Some(now.mono);
        let mut events = Vec::new();
        if !self.registered {
            let info = NodeInfo {
                fault_domain: self.fault_domain,
                update_domain: self.update_domain,
                capacity_vm_slots: self.capacity,
                agent_version: guest.agent_version.clone(),
                host_endpoint: String::new(),
                role_probe_host: None,
                pid: 0,
                software: self
                    .software
                    .clone()
                    .unwrap_or_else(|| base_software(guest)),
            };
            let (_, raised) = core.register(now, self.id.clone(), info, &self.boot_id());
            events.extend(raised);
            self.registered = true;
        }
        self.sequence += 1;
        let reports = self.reports();
        let (reply, raised) =
            core.heartbeat(now, &self.id, &self.boot_id(), self.sequence, reports);
        events.extend(raised);
        if reply.outcome == HeartbeatOutcome::RegisterAgain {
            self.registered = false;
            return events;
        }
        self.converge(&reply.desired, now);
        if let Some(target) = reply.target {
            self.restart_into(target, guest);
        }
        if let Some(report) = self.pending_fault.take()
            && let Ok(raised) = core.report_fault(now, &self.id, &report)
        {
            events.extend(raised);
        }
        events
    }

    /// What the record reports (`VmRecord::to_report`), as the controller
    /// reads it; as the real host agent does, a VM whose role serves is
    /// Running only if the plugin forwards its endpoint, else Provisioned
    /// with why.
    fn reports(&self) -> Vec<VmObservation> {
        self.vms
            .iter()
            .map(|(id, vm)| {
                let report = vm.record.to_report();
                let (state, detail) = match (report.state(), self.plugin_works) {
                    (pb::VmState::VmRunning, true) => (VmState::Running, report.detail),
                    (pb::VmState::VmRunning, false) => (
                        VmState::Provisioned,
                        "the networking plugin does not forward its endpoint: the plugin and \
                         the host agent speak different bindings interfaces (incompatible)"
                            .to_owned(),
                    ),
                    (pb::VmState::VmProvisioned, _) => (VmState::Provisioned, report.detail),
                    (pb::VmState::VmReinitializing, _) => (VmState::Reinitializing, report.detail),
                    _ => (VmState::Starting, report.detail),
                };
                VmObservation {
                    id: id.clone(),
                    incarnation: report.incarnation,
                    state,
                    pid: 0,
                    endpoint: report.endpoint,
                    detail,
                    transfer_cert_fingerprint: String::new(),
                }
            })
            .collect()
    }

    /// Start what is desired and missing, stop what is not desired, and
    /// replace an older incarnation than the controller wants.
    fn converge(&mut self, desired: &[VmAssignment], now: Moment) {
        self.vms.retain(|id, _| desired.iter().any(|d| &d.id == id));
        let t = instant(now.mono);
        for d in desired {
            if let Some(vm) = self.vms.get_mut(&d.id) {
                // Not the VM's fault: no strike (the record's rule).
                vm.record.require_incarnation(t, d.incarnation);
                continue;
            }
            let incarnation = self
                .last_incarnation
                .get(&d.id)
                .map_or(d.incarnation, |last| d.incarnation.max(last + 1));
            let assignment = pb::VmAssignment {
                vm_id: d.id.to_string(),
                deployment: d.id.deployment.to_string(),
                role: d.id.role.to_string(),
                instance: d.id.index,
                incarnation,
                secrets_version: String::new(),
                guest: d.guest.as_str().into(),
            };
            self.vms.insert(
                d.id.clone(),
                SimVm {
                    record: VmRecord::new(&assignment, incarnation, t),
                    spawned_at: now.mono,
                    spawned_wall: now.wall,
                    sequence: 0,
                    endpoint: format!("10.0.{}.{}:443", self.update_domain, d.id.index),
                },
            );
        }
        self.last_sync = Some(now.mono);
    }
}

/// What a host set up without any package runs.
fn base_software(guest: &GuestModel) -> fabric_core::Software {
    fabric_core::Software {
        package: None,
        host_agent: guest.agent_version.clone(),
        guest_agent: guest.agent_version.clone(),
        plugin: "builtin".into(),
    }
}
