//! The VM table of this host and the effects of its transitions.
//!
//! Records change under one short-held lock; the slow or fallible effects
//! (killing, wiping, spawning, calling the controller) run outside it, and
//! whatever they learn is written back only if the VM is still at the same
//! incarnation, so a late result never lands on a newer guest agent.

use super::endpoint::EndpointRule;
use super::persist;
use super::process::{self, GuestProcess, LaunchSpec, Launcher, VmPaths};
use super::record::{Action, HelloInfo, Phase, Policy, VmRecord};
use super::refusal::Refusal;
use super::rotation::{self, RotationJob};
use super::token;
use crate::backoff::Backoff;
use crate::state::HostState;
use fabric_proto::v1::{self as pb, RoleState, node_service_client::NodeServiceClient};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;
use zeroize::Zeroizing;

/// What the VM manager needs from the host's configuration.
#[derive(Clone, Debug)]
pub struct VmSettings {
    pub state_dir: PathBuf,
    pub policy: Policy,
    /// Asked of guest agents in GuestWelcome.
    pub heartbeat_interval: Duration,
    /// The role endpoints this host's VMs may report.
    pub role_endpoint: EndpointRule,
    /// Where guest agents may say their GuestAgentService listens.
    pub guest_agent_endpoint: EndpointRule,
    /// With a networking plugin: where role endpoints are made public
    /// (see crate::netplug); `None`: each guest's own endpoint is reported.
    pub public: Option<crate::netplug::PublicEndpoints>,
    /// Whether VM records are fsynced (see [`super::runtime::VmRuntime::sync_records`]).
    pub sync_records: bool,
}

/// Who a VM is, for GuestWelcome.
#[derive(Clone, Debug)]
pub struct VmIdentity {
    pub deployment: String,
    pub role: String,
    pub instance: u32,
}

#[derive(Default)]
struct Table {
    records: BTreeMap<String, VmRecord>,
    processes: HashMap<String, GuestProcess>,
    /// The last incarnation run of every VM assigned here, so a VM that this
    /// host agent reinitialized (or found on disk at start) never goes back
    /// to a lower incarnation while it stays assigned.
    last_incarnation: HashMap<String, u64>,
}

/// This host's VMs.
pub struct VmManager {
    table: Mutex<Table>,
    /// Wakes the supervisor when a deadline may have moved.
    wake: Notify,
    /// Wakes the controller link when a VM's report changed (see
    /// [`VmManager::report_changed`]).
    report_changed: Notify,
    settings: VmSettings,
    launcher: Box<dyn Launcher>,
    controller: NodeServiceClient<crate::controller_link::ControllerChannel>,
    host: Arc<HostState>,
    metrics: crate::metrics::HostMetrics,
    /// Set while the controller has this server in Human Investigate: it
    /// starts no guest agent (not even to reinitialize a VM) until repaired.
    quarantined: std::sync::atomic::AtomicBool,
    /// What the networking plugin last said it forwards (see
    /// [`VmManager::set_plugin_view`]).
    plugin: Mutex<PluginView>,
}

/// The networking plugin as last seen: the public addresses it has bound,
/// and why it bound nothing or not everything.
#[derive(Clone, Debug, Default)]
pub struct PluginView {
    pub bound: std::collections::HashSet<String>,
    /// Public addresses the plugin could not bind (another process holds
    /// the port).
    pub failed: std::collections::HashSet<String>,
    pub error: Option<String>,
}

impl PluginView {
    /// Nothing forwarded, for `why`.
    pub fn nothing(why: &str) -> Self {
        Self {
            error: Some(why.to_owned()),
            ..Self::default()
        }
    }
}

impl VmManager {
    pub fn new(
        settings: VmSettings,
        launcher: Box<dyn Launcher>,
        controller: NodeServiceClient<crate::controller_link::ControllerChannel>,
        host: Arc<HostState>,
    ) -> Arc<Self> {
        let metrics = crate::metrics::HostMetrics::new(&host);
        Arc::new(Self {
            table: Mutex::new(Table::default()),
            wake: Notify::new(),
            report_changed: Notify::new(),
            settings,
            launcher,
            controller,
            host,
            metrics,
            quarantined: std::sync::atomic::AtomicBool::new(false),
            plugin: Mutex::new(PluginView::default()),
        })
    }

    /// The plugin's own account of what it forwards (its status file). A
    /// VM whose public port the plugin cannot bind (another process took
    /// it between our probe for a free port and the plugin's bind, or holds
    /// it since) gets another one: its next role heartbeat allocates it, and
    /// the controller learns the new endpoint from the next report. Without
    /// this, a VM would stay unreachable for as long as the port is held.
    pub fn set_plugin_view(&self, view: PluginView) {
        if !view.failed.is_empty() {
            let mut table = self.table();
            for r in table.records.values_mut() {
                if !r.public_bind.is_empty() && view.failed.contains(&r.public_bind) {
                    tracing::warn!(
                        vm = %r.vm_id,
                        public = %r.public_bind,
                        "the networking plugin cannot bind this VM's public port (in use): \
                         choosing another"
                    );
                    r.public_bind.clear();
                    r.public_endpoint.clear();
                    self.persist(r);
                }
            }
        }
        *self.plugin.lock().unwrap_or_else(|e| e.into_inner()) = view;
    }

    pub fn metrics(&self) -> &crate::metrics::HostMetrics {
        &self.metrics
    }

    /// Notified when a VM's report to the controller changed (its role
    /// started serving, or moved): the link heartbeats at once.
    pub fn report_changed(&self) -> &Notify {
        &self.report_changed
    }

    /// The state of every VM, for the metrics.
    pub fn vm_states(&self) -> Vec<&'static str> {
        self.reports()
            .iter()
            .map(|r| match r.state() {
                pb::VmState::VmStarting => "Starting",
                pb::VmState::VmProvisioned => "Provisioned",
                pb::VmState::VmRunning => "Running",
                pb::VmState::VmReinitializing => "Reinitializing",
                pb::VmState::VmStopped => "Stopped",
                pb::VmState::Unspecified => "Unspecified",
            })
            .collect()
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        // A panic while holding the lock leaves records consistent enough
        // (every transition is a few assignments); keep serving.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Writes `record` to `<state>/vms/<vm_id>.json` (public facts only).
    fn persist(&self, record: &VmRecord) {
        persist::save(
            &self.settings.state_dir,
            &record.stored(),
            self.settings.sync_records,
        );
    }

    /// At start: re-adopts the VMs whose guest agents outlived the previous
    /// host agent (their record says they said Hello, and /proc shows the
    /// recorded pid still running `guest-agent run --vm-id <vm_id>
    /// --incarnation <n>`), and wipes the rest: a guest agent still waiting
    /// for its Hello is killed (its start token was never written down), a
    /// dead one's VM directory removed. Every recorded incarnation is
    /// remembered, so a VM started again never reuses one. Returns the ids
    /// re-adopted and those cleaned up.
    pub fn readopt(&self) -> (Vec<String>, Vec<String>) {
        let state_dir = &self.settings.state_dir;
        let now = Instant::now();
        let mut adopted = Vec::new();
        {
            let mut table = self.table();
            for stored in persist::load_all(state_dir) {
                let vm_id = stored.vm_id.clone();
                let last = table.last_incarnation.entry(vm_id.clone()).or_insert(0);
                *last = (*last).max(stored.incarnation);
                if stored.guest == fabric_core::Guest::Waagent.as_str() {
                    // Its wire server was the earlier host agent's: not
                    // re-adoptable; its next incarnation starts afresh.
                    let vm_dir = self.paths(&vm_id, stored.incarnation).vm_dir;
                    if let Some(pid) = stored
                        .pid
                        .filter(|&pid| super::waagent::is_waagent_of(pid, &vm_dir))
                    {
                        tracing::info!(vm = %vm_id, incarnation = stored.incarnation, pid,
                            "killing the waagent of an earlier host agent: its wire server is gone");
                        process::kill_group(pid);
                    }
                    continue;
                }
                let alive = stored.pid.filter(|&pid| {
                    process::is_guest_agent_of(pid, &vm_id, Some(stored.incarnation))
                });
                let record = alive.and_then(|_| VmRecord::readopt(&stored, now, self.policy()));
                match (alive, record) {
                    (Some(pid), Some(record)) => {
                        tracing::info!(
                            vm = %vm_id,
                            incarnation = record.incarnation,
                            pid,
                            state = record.phase.as_str(),
                            endpoint = %record.endpoint,
                            "re-adopting VM left running by an earlier host agent"
                        );
                        table.processes.insert(
                            vm_id.clone(),
                            GuestProcess::adopted(pid, &vm_id, record.incarnation),
                        );
                        table.records.insert(vm_id.clone(), record);
                        adopted.push(vm_id);
                    }
                    (Some(pid), None) => {
                        tracing::info!(vm = %vm_id, incarnation = stored.incarnation, pid, phase = %stored.phase,
                            "killing guest agent left by an earlier host agent: it cannot be re-adopted before its Hello");
                        process::kill_group(pid);
                    }
                    (None, _) => {
                        tracing::info!(vm = %vm_id, incarnation = stored.incarnation, "guest agent of an earlier host agent is gone; wiping its VM");
                    }
                }
            }
        }
        let cleaned = process::cleanup_leftovers(state_dir, &adopted);
        self.wake.notify_one();
        (adopted, cleaned)
    }

    fn policy(&self) -> &Policy {
        &self.settings.policy
    }

    pub fn settings(&self) -> &VmSettings {
        &self.settings
    }

    pub fn node_id(&self) -> &str {
        &self.host.node_id
    }

    /// The shared client of the controller (cheap to clone: one channel).
    pub fn controller(&self) -> NodeServiceClient<crate::controller_link::ControllerChannel> {
        self.controller.clone()
    }

    /// Every VM, as heartbeats and GetHostStatus report them.
    /// Every VM as the controller hears of it. With a networking plugin a
    /// role with an endpoint counts as Running (its endpoint serving) only
    /// once the plugin says it forwards the role's public endpoint: until
    /// then the VM is reported Provisioned, with why it cannot be reached.
    pub fn reports(&self) -> Vec<pb::VmReport> {
        let plugin = self
            .plugin
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        self.table()
            .records
            .values()
            .map(|r| {
                let mut report = r.to_report();
                // A role without an endpoint (Azure's agent serves none)
                // has nothing to forward.
                if self.settings.public.is_some()
                    && report.state() == pb::VmState::VmRunning
                    && !r.endpoint.is_empty()
                    && !plugin.bound.contains(&r.public_bind)
                {
                    report.set_state(pb::VmState::VmProvisioned);
                    report.detail = format!(
                        "role serves at {} inside the server, but the networking plugin does not \
                         forward {} to it{}",
                        r.endpoint,
                        report.endpoint,
                        plugin
                            .error
                            .as_ref()
                            .map(|e| format!(": {e}"))
                            .unwrap_or_default()
                    );
                }
                report
            })
            .collect()
    }

    /// What the networking plugin should forward now: each VM whose role
    /// serves, from its public endpoint to its own.
    pub fn bindings(&self) -> Vec<fabric_netplug::bindings::Binding> {
        self.table()
            .records
            .values()
            .filter_map(|r| {
                Some(fabric_netplug::bindings::Binding {
                    vm: r.vm_id.clone(),
                    public: r.public_bind.parse().ok()?,
                    private: r.endpoint.parse().ok()?,
                })
            })
            .collect()
    }

    /// The earliest deadline of any VM.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.table()
            .records
            .values()
            .filter_map(|r| r.deadline)
            .min()
    }

    /// Completes when something may have changed the deadlines.
    pub async fn woken(&self) {
        self.wake.notified().await
    }

    /// Carries out whatever is due now: timeouts and spawns.
    pub fn run_due(self: &Arc<Self>) {
        let now = Instant::now();
        let mut work = Vec::new();
        {
            let mut table = self.table();
            for (vm_id, record) in table.records.iter_mut() {
                for action in record.on_deadline(now, &self.settings.policy) {
                    work.push((vm_id.clone(), action));
                }
            }
        }
        self.execute(work);
    }

    /// Reconciles with the controller's complete set of desired VMs: start
    /// what is missing, stop what is not listed, rotate stale secrets.
    pub fn apply_desired(self: &Arc<Self>, desired: &[pb::VmAssignment]) {
        let now = Instant::now();
        let mut work = Vec::new();
        let mut stops = Vec::new();
        let mut rotations = Vec::new();
        {
            let mut guard = self.table();
            let table = &mut *guard;
            // Borrowed, not cloned: a heartbeat reconciles every VM of the
            // server, a second each.
            let mut wanted: HashSet<&str> = HashSet::with_capacity(desired.len());
            for assignment in desired {
                let vm_id = &assignment.vm_id;
                if !process::valid_vm_id(vm_id) {
                    tracing::warn!(vm = %vm_id, "ignoring an assignment whose VM id is not a plain name");
                    continue;
                }
                wanted.insert(vm_id.as_str());
                match table.records.get_mut(vm_id) {
                    Some(record) => {
                        record
                            .desired_secrets_version
                            .clone_from(&assignment.secrets_version);
                        for action in record.require_incarnation(now, assignment.incarnation) {
                            work.push((vm_id.clone(), action));
                        }
                        if record.needs_rotation()
                            && let Some(job) = RotationJob::for_record(record)
                        {
                            record.rotating = true;
                            rotations.push(job);
                        }
                    }
                    None => {
                        let after_last = table.last_incarnation.get(vm_id).map_or(0, |l| l + 1);
                        let incarnation = assignment.incarnation.max(after_last);
                        tracing::info!(vm = %vm_id, incarnation, "VM assigned to this host");
                        table
                            .records
                            .insert(vm_id.clone(), VmRecord::new(assignment, incarnation, now));
                    }
                }
            }
            let unlisted: Vec<String> = table
                .records
                .keys()
                .filter(|id| !wanted.contains(id.as_str()))
                .cloned()
                .collect();
            for vm_id in unlisted {
                // No longer ours (deleted, scaled in or moved): the
                // controller's incarnation is the authority if it comes back,
                // so a redeployed service starts at incarnation 1 again. Its
                // old guest is killed and wiped below, and every new
                // incarnation gets a new start token and transfer
                // certificate, so nothing of the old one can be reused.
                table.last_incarnation.remove(&vm_id);
                if let Some(record) = table.records.remove(&vm_id) {
                    let process = table.processes.remove(&vm_id);
                    stops.push((vm_id, record.incarnation, process));
                }
            }
        }
        for (vm_id, incarnation, process) in stops {
            tracing::info!(vm = %vm_id, incarnation, "stopping VM: no longer assigned to this host");
            if let Some(process) = process {
                process.kill();
            }
            process::wipe(&self.paths(&vm_id, incarnation));
            persist::remove(&self.settings.state_dir, &vm_id);
        }
        for job in rotations {
            tokio::spawn(rotation::rotate(self.clone(), job));
        }
        self.execute(work);
        self.wake.notify_one();
    }

    fn paths(&self, vm_id: &str, incarnation: u64) -> VmPaths {
        VmPaths::new(&self.settings.state_dir, vm_id, incarnation)
    }

    /// Carries out transitions' actions, and those that their effects cause
    /// (a failed spawn is a failure of the VM). Does not wake the supervisor:
    /// it runs this itself, and a wake-up per run would make it spin; callers
    /// outside the supervisor wake it.
    fn execute(self: &Arc<Self>, work: Vec<(String, Action)>) {
        let mut queue = VecDeque::from(work);
        while let Some((vm_id, action)) = queue.pop_front() {
            match action {
                Action::Reinitialize { reason } => self.reinitialize(&vm_id, &reason),
                Action::ReportFault { cause, reason } => self.report_fault(&vm_id, cause, reason),
                Action::Spawn => queue.extend(self.spawn(&vm_id)),
            }
        }
    }

    /// Whether this server is in Human Investigate (see `quarantined`).
    pub fn is_quarantined(&self) -> bool {
        self.quarantined.load(std::sync::atomic::Ordering::Acquire)
    }

    /// The controller says whether this server is in Human Investigate. On
    /// leaving it (repaired), the VMs held back start.
    pub fn set_quarantined(&self, on: bool) {
        let was = self
            .quarantined
            .swap(on, std::sync::atomic::Ordering::AcqRel);
        if was == on {
            return;
        }
        if on {
            tracing::warn!(
                "the controller has this server in Human Investigate: starting nothing until it is repaired"
            );
            return;
        }
        tracing::info!("this server was repaired: starting the VMs held back");
        let now = Instant::now();
        for record in self.table().records.values_mut() {
            if matches!(record.phase, Phase::Pending | Phase::Reinitializing)
                && record.deadline.is_none()
            {
                record.deadline = Some(now);
            }
        }
        self.wake.notify_one();
    }

    /// Kills the guest agent and wipes the VM directory; the record is
    /// already Reinitializing and respawns at its deadline.
    fn reinitialize(&self, vm_id: &str, reason: &str) {
        let (process, incarnation, strikes) = {
            let mut table = self.table();
            let process = table.processes.remove(vm_id);
            let Some(record) = table.records.get_mut(vm_id) else {
                return;
            };
            record.pid = None;
            (process, record.incarnation, record.strikes)
        };
        tracing::warn!(vm = %vm_id, incarnation, strikes, "reinitializing VM: {reason}");
        if let Some(process) = process {
            process.kill();
        }
        process::wipe(&self.paths(vm_id, incarnation));
        // The wipe removed the record file; the record says Reinitializing.
        if let Some(record) = self.table().records.get(vm_id) {
            self.persist(record);
        }
    }

    /// Starts the next incarnation's guest agent with a new token.
    fn spawn(&self, vm_id: &str) -> Vec<(String, Action)> {
        let token = Zeroizing::new(token::generate());
        let spec = {
            let mut table = self.table();
            let Some(record) = table.records.get_mut(vm_id) else {
                return Vec::new();
            };
            if self.is_quarantined() {
                // Released by `set_quarantined(false)`.
                record.deadline = None;
                record.detail = "server in Human Investigate: starts nothing until repaired".into();
                tracing::warn!(vm = %vm_id, "not starting the VM: this server is in Human Investigate");
                return Vec::new();
            }
            record.spawning(Instant::now(), token::digest(&token), self.policy());
            let (incarnation, guest) = (record.incarnation, record.guest);
            table.last_incarnation.insert(vm_id.to_owned(), incarnation);
            LaunchSpec {
                vm_id: vm_id.to_owned(),
                incarnation,
                paths: self.paths(vm_id, incarnation),
                guest,
            }
        };
        let result =
            process::create_vm_dir(&spec.paths).and_then(|()| self.launcher.launch(&spec, &token));
        let mut table = self.table();
        let table = &mut *table;
        let current = table
            .records
            .get_mut(vm_id)
            .filter(|r| r.incarnation == spec.incarnation && r.phase == Phase::Starting);
        match (result, current) {
            (Ok(guest), Some(record)) => {
                tracing::info!(vm = %vm_id, incarnation = spec.incarnation, pid = ?guest.pid, "guest agent started");
                record.spawned(guest.pid);
                self.metrics.guest_spawned(vm_id, spec.incarnation);
                persist::save(
                    &self.settings.state_dir,
                    &record.stored(),
                    self.settings.sync_records,
                );
                table.processes.insert(vm_id.to_owned(), guest);
                Vec::new()
            }
            // The VM was stopped or moved on while we spawned.
            (Ok(guest), None) => {
                guest.kill();
                process::wipe(&spec.paths);
                Vec::new()
            }
            (Err(e), Some(record)) => {
                let reason = format!("cannot start guest agent: {e}");
                record
                    .fail(
                        Instant::now(),
                        pb::FaultCause::HostHardware,
                        reason,
                        &self.settings.policy,
                    )
                    .into_iter()
                    .map(|a| (vm_id.to_owned(), a))
                    .collect()
            }
            (Err(_), None) => Vec::new(),
        }
    }

    /// NodeService.ReportFault, retried in the background until the
    /// controller hears it: it is sent once per streak, so it must not be lost.
    /// It names the VM whose clean-VM strikes led to it, so the controller
    /// can tell which roles fail and on how many servers.
    fn report_fault(&self, vm_id: &str, cause: pb::FaultCause, reason: String) {
        let agent_version = self
            .table()
            .records
            .get(vm_id)
            .map(|r| r.guest_agent_version.clone())
            .filter(|v| !v.is_empty())
            // The guest never said which version it is: ours is the best guess,
            // both agents ship together.
            .unwrap_or_else(|| env!("CARGO_PKG_VERSION").to_owned());
        tracing::error!(vm = %vm_id, "reporting this server as faulty: {reason}");
        let mut controller = self.controller();
        let request = pb::FaultReport {
            node_id: self.host.node_id.clone(),
            boot_id: self.host.boot_id.clone(),
            reason,
            agent_version,
            vm_ids: vec![vm_id.to_owned()],
            cause: cause as i32,
        };
        tokio::spawn(async move {
            let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
            for _ in 0..30 {
                match controller.report_fault(request.clone()).await {
                    Ok(_) => return,
                    Err(status) => {
                        let wait = backoff.next_delay();
                        tracing::warn!(code = ?status.code(), "fault report failed: {}; retrying in {wait:?}", status.message());
                        tokio::time::sleep(wait).await;
                    }
                }
            }
            tracing::error!("gave up reporting a fault to the controller");
        });
    }

    fn with_record<T>(
        &self,
        vm_id: &str,
        f: impl FnOnce(&mut VmRecord) -> Result<T, Refusal>,
    ) -> Result<T, Refusal> {
        let mut table = self.table();
        let record = table
            .records
            .get_mut(vm_id)
            .ok_or_else(|| Refusal::UnknownVm(vm_id.to_owned()))?;
        f(record)
    }

    /// Hello, step 1: the start token is right and now reserved.
    pub fn claim_start_token(
        &self,
        vm_id: &str,
        incarnation: u64,
        presented: &str,
    ) -> Result<(), Refusal> {
        self.with_record(vm_id, |r| r.claim_start_token(incarnation, presented))
    }

    /// Hello could not complete through no fault of the guest.
    pub fn release_start_token(&self, vm_id: &str, incarnation: u64) {
        let _ = self.with_record(vm_id, |r| {
            r.release_start_token(incarnation);
            Ok(())
        });
    }

    /// Hello, with a valid token but an unusable request: the VM fails.
    pub fn reject_hello(self: &Arc<Self>, vm_id: &str, incarnation: u64, reason: String) {
        let actions = self
            .with_record(vm_id, |r| {
                if r.incarnation != incarnation {
                    return Ok(Vec::new());
                }
                Ok(r.fail(
                    Instant::now(),
                    pb::FaultCause::GuestInitError,
                    reason,
                    &self.settings.policy,
                ))
            })
            .unwrap_or_default();
        self.execute(actions.into_iter().map(|a| (vm_id.to_owned(), a)).collect());
        self.wake.notify_one();
    }

    /// Hello, last step: secrets were sealed; the VM is provisioned.
    pub fn accept_hello(
        &self,
        vm_id: &str,
        incarnation: u64,
        hello: HelloInfo,
    ) -> Result<VmIdentity, Refusal> {
        let identity = self.with_record(vm_id, |r| {
            r.hello_accepted(Instant::now(), incarnation, hello, &self.settings.policy)?;
            self.persist(r);
            Ok(VmIdentity {
                deployment: r.deployment.clone(),
                role: r.role.clone(),
                instance: r.instance,
            })
        })?;
        self.wake.notify_one();
        Ok(identity)
    }

    /// Whether a Hello's token is the session token of `vm_id` at
    /// `incarnation` (a guest agent resuming its session), not a start token.
    pub fn is_session_token(&self, vm_id: &str, incarnation: u64, presented: &str) -> bool {
        self.table()
            .records
            .get(vm_id)
            .is_some_and(|r| r.is_session_token(incarnation, presented))
    }

    /// Hello with the session token: the session resumes (nothing sealed,
    /// same incarnation). Returns who the VM is and its secrets version.
    pub fn resume_session(&self, hello: &pb::GuestHello) -> Result<(VmIdentity, String), Refusal> {
        let vm_id = hello.vm_id.as_str();
        let result = self.with_record(vm_id, |r| {
            r.resume_session(Instant::now(), hello, &self.settings.policy)?;
            self.persist(r);
            Ok((
                VmIdentity {
                    deployment: r.deployment.clone(),
                    role: r.role.clone(),
                    instance: r.instance,
                },
                r.secrets_version.clone(),
            ))
        })?;
        self.wake.notify_one();
        Ok(result)
    }

    /// A GuestHeartbeat. A role endpoint the host did not give this VM
    /// (see [`super::endpoint`]) fails the VM, its own fault: the heartbeat
    /// is refused and the VM reinitialized, and nothing of it reaches the
    /// controller.
    pub fn guest_heartbeat(
        self: &Arc<Self>,
        beat: &pb::GuestHeartbeatRequest,
    ) -> Result<(), Refusal> {
        let role_state = RoleState::try_from(beat.role_state).unwrap_or(RoleState::Unspecified);
        let rule = self.settings.role_endpoint;
        let mut table = self.table();
        let record = table
            .records
            .get(&beat.vm_id)
            .ok_or_else(|| Refusal::UnknownVm(beat.vm_id.clone()))?;
        record.check_session(beat.incarnation, &beat.session_token)?;
        let checked = if beat.role_endpoint.is_empty() {
            Ok(())
        } else {
            let taken = |addr: std::net::SocketAddr| {
                let text = addr.to_string();
                table
                    .records
                    .values()
                    .any(|other| other.vm_id != beat.vm_id && other.endpoint == text)
            };
            rule.check(&beat.role_endpoint, taken).map(|_| ())
        };
        let public_taken: std::collections::HashSet<u16> = table
            .records
            .values()
            .filter(|other| other.vm_id != beat.vm_id)
            .filter_map(|other| other.public_bind.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port())
            .collect();
        let r = table
            .records
            .get_mut(&beat.vm_id)
            .expect("looked up above under the same lock");
        if let Err(e) = checked {
            let reason = format!("guest agent reported an unusable role endpoint: {e}");
            tracing::warn!(vm = %r.vm_id, incarnation = r.incarnation, "{reason}; reinitializing the VM");
            let actions = r.fail(
                Instant::now(),
                pb::FaultCause::GuestInitError,
                reason,
                &self.settings.policy,
            );
            self.persist(r);
            let vm_id = r.vm_id.clone();
            drop(table);
            self.execute(actions.into_iter().map(|a| (vm_id.clone(), a)).collect());
            self.wake.notify_one();
            return Err(Refusal::BadEndpoint(e));
        }
        let was = (r.phase, r.endpoint.clone(), r.public_endpoint.clone());
        r.heartbeat(
            Instant::now(),
            beat.sequence,
            role_state,
            &beat.role_endpoint,
            &self.settings.policy,
        );
        if let Some(public) = self.settings.public
            && !r.endpoint.is_empty()
            && r.public_bind.is_empty()
        {
            match public.allocate(&public_taken) {
                Some((bind, advertised)) => {
                    r.public_bind = bind.to_string();
                    r.public_endpoint = advertised.to_string();
                }
                None => tracing::warn!(vm = %r.vm_id, "no public port left for the role endpoint"),
            }
        }
        if was.0 != Phase::Running && r.phase == Phase::Running {
            self.metrics.role_running(&r.vm_id, r.incarnation);
            tracing::info!(vm = %r.vm_id, incarnation = r.incarnation, endpoint = %r.reported_endpoint(), private = %r.endpoint, "role running");
        }
        if was != (r.phase, r.endpoint.clone(), r.public_endpoint.clone()) {
            self.persist(r);
            // The controller hears of it with the next heartbeat, sent now
            // rather than at the interval: an instance is Running as soon as
            // its role serves. Not yet behind a networking plugin: its status
            // says which public ports it has bound, not where each forwards,
            // so right after a VM's new incarnation (or a plugin restart) a
            // port can be listed while its listener is being replaced; the
            // next regular heartbeat reports it instead.
            if self.settings.public.is_none() {
                self.report_changed.notify_one();
            }
        }
        drop(table);
        self.wake.notify_one();
        Ok(())
    }

    /// ReportGuestFailure: the VM fails at once (fail fast).
    pub fn guest_failure(self: &Arc<Self>, failure: &pb::GuestFailure) -> Result<(), Refusal> {
        let actions = self.with_record(&failure.vm_id, |r| {
            r.check_any_token(failure.incarnation, &failure.token)?;
            if !failure.agent_version.is_empty() {
                r.guest_agent_version = super::record::guest_version(&failure.agent_version);
            }
            Ok(r.failure_reported(
                Instant::now(),
                &failure.stage,
                &failure.error,
                &self.settings.policy,
            ))
        })?;
        let vm_id = &failure.vm_id;
        self.execute(actions.into_iter().map(|a| (vm_id.clone(), a)).collect());
        self.wake.notify_one();
        Ok(())
    }

    /// The runner of waagent VMs, if this host has one.
    pub fn waagent(&self) -> Option<Arc<super::waagent::Waagent>> {
        self.launcher.waagent()
    }

    /// A rotation ended; `version` is the secrets version the guest now has.
    pub fn rotation_done(&self, vm_id: &str, incarnation: u64, version: Option<String>) {
        let _ = self.with_record(vm_id, |r| {
            if r.incarnation == incarnation && r.rotating {
                r.rotating = false;
                if let Some(version) = version {
                    r.secrets_version = version;
                    self.persist(r);
                }
            }
            Ok(())
        });
    }
}
