//! A modelled host agent and its guest agents, following the real daemons'
//! rules (see host-agent/src/vm/ and the VM contract in docs/architecture.md).

use fabric_core::{
    ClusterEvent, FabricCore, FaultCause, FaultReport, HeartbeatOutcome, InstanceId, Moment,
    NodeId, NodeInfo, VmAssignment, VmObservation, VmState,
};
use std::collections::BTreeMap;
use std::time::Duration;

/// How guest agents behave in the simulation.
#[derive(Clone, Debug)]
pub struct GuestModel {
    /// Time from spawn to the role Running, for a healthy guest agent.
    pub boot_time: Duration,
    /// The host agent's wait for a guest agent to connect (25 min in 2012).
    pub connect_timeout: Duration,
    /// Clean-VM timeouts in a row before the server is reported faulty.
    pub clean_vm_strikes: u32,
    /// The 2012 bug: every guest agent fails creating its transfer
    /// certificate, so no VM ever starts.
    pub leap_day_bug: bool,
    /// The guest agent reports its failure before exiting (Fabric's fix), so
    /// the host agent acts at once instead of waiting out the timeout.
    pub fail_fast: bool,
    pub agent_version: String,
    /// The bug strikes only VMs spawned from this (monotonic) time on: the
    /// moment the guests' calendar reaches Feb 29.
    pub bug_after: Duration,
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
            bug_after: Duration::ZERO,
            fixed_guest_agents: Vec::new(),
        }
    }
}

impl GuestModel {
    /// How long until a new VM of guest agent `version` fails, if it does,
    /// and why.
    fn failure(&self, version: &str) -> Option<(Duration, FaultCause, String)> {
        if !self.leap_day_bug || self.fixed_guest_agents.iter().any(|v| v == version) {
            return None;
        }
        Some(if self.fail_fast {
            (
                Duration::from_millis(100),
                FaultCause::GuestInitError,
                "guest agent failed creating transfer certificate: invalid valid-to date 2013-02-29"
                    .into(),
            )
        } else {
            (
                self.connect_timeout,
                FaultCause::GuestTimeouts,
                format!(
                    "guest agent never connected within {}",
                    humantime::format_duration(self.connect_timeout)
                ),
            )
        })
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

/// One VM as the modelled host agent tracks it.
#[derive(Clone, Debug)]
pub struct SimVm {
    pub incarnation: u64,
    pub running: bool,
    pub spawned_at: Duration,
    pub clean: bool,
    pub strikes: u32,
    pub reported: bool,
    pub detail: String,
}

/// A modelled server: host agent and VMs.
#[derive(Clone, Debug)]
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
        self.alive() && self.plugin_works && self.vms.get(id).is_some_and(|vm| vm.running)
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

    /// Guest agents come up or fail; the host agent strikes clean VMs.
    pub fn run_guests(&mut self, now: Moment, guest: &GuestModel) {
        if !self.alive() {
            return;
        }
        // The guest agent new VMs of this server start with.
        let version = self
            .software
            .as_ref()
            .map_or(guest.agent_version.clone(), |s| s.guest_agent.clone());
        for (id, vm) in self.vms.iter_mut() {
            if vm.running {
                continue;
            }
            let age = now.mono.saturating_sub(vm.spawned_at);
            let failure = guest
                .failure(&version)
                .filter(|_| vm.spawned_at >= guest.bug_after);
            match failure {
                None if age >= guest.boot_time => {
                    vm.running = true;
                    vm.clean = false;
                    vm.strikes = 0;
                    vm.reported = false;
                }
                None => {}
                Some((after, cause, reason)) if age >= after => {
                    // Reinitialize: a new incarnation of a clean VM.
                    vm.strikes += 1;
                    vm.incarnation += 1;
                    vm.spawned_at = now.mono;
                    vm.detail = reason.clone();
                    self.last_incarnation.insert(id.clone(), vm.incarnation);
                    if vm.clean && vm.strikes >= guest.clean_vm_strikes && !vm.reported {
                        vm.reported = true;
                        self.pending_fault
                            .get_or_insert_with(|| {
                                FaultReport::new(cause, reason.clone(), version.clone(), Vec::new())
                            })
                            .vms
                            .push(id.clone());
                    }
                }
                Some(_) => {}
            }
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

    /// As the real host agent reports: a VM whose role serves is Running
    /// only if its plugin forwards its endpoint, else Provisioned with why.
    fn reports(&self) -> Vec<VmObservation> {
        self.vms
            .iter()
            .map(|(id, vm)| {
                let (state, detail) = match (vm.running, self.plugin_works) {
                    (true, true) => (VmState::Running, vm.detail.clone()),
                    (true, false) => (
                        VmState::Provisioned,
                        "the networking plugin does not forward its endpoint: the plugin and \
                         the host agent speak different bindings interfaces (incompatible)"
                            .to_owned(),
                    ),
                    (false, _) => (VmState::Starting, vm.detail.clone()),
                };
                VmObservation {
                    id: id.clone(),
                    incarnation: vm.incarnation,
                    state,
                    pid: 0,
                    endpoint: if vm.running {
                        format!("10.0.{}.{}:443", self.update_domain, id.index)
                    } else {
                        String::new()
                    },
                    detail,
                    transfer_cert_fingerprint: String::new(),
                }
            })
            .collect()
    }

    /// Start what is desired and missing, stop what is not desired.
    fn converge(&mut self, desired: &[VmAssignment], now: Moment) {
        self.vms.retain(|id, _| desired.iter().any(|d| &d.id == id));
        for d in desired {
            let replace = self
                .vms
                .get(&d.id)
                .is_some_and(|vm| vm.incarnation < d.incarnation);
            if replace || !self.vms.contains_key(&d.id) {
                let incarnation = self
                    .last_incarnation
                    .get(&d.id)
                    .map_or(d.incarnation, |last| d.incarnation.max(last + 1));
                self.last_incarnation.insert(d.id.clone(), incarnation);
                self.vms.insert(
                    d.id.clone(),
                    SimVm {
                        incarnation,
                        running: false,
                        spawned_at: now.mono,
                        clean: true,
                        strikes: 0,
                        reported: false,
                        detail: String::new(),
                    },
                );
            }
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
