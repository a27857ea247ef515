//! Tests of rollouts in virtual time: the domain walk, the gate, the brakes,
//! rollback, durability, and properties over random interleavings.
//!
//! [`Sim`] plays the host agents the way the real ones behave toward the
//! core: a server told a target registers again as a new boot running it;
//! VMs report Running at the incarnation they are given; the shell's probe
//! reaches an endpoint only if the server's plugin works with its host
//! agent (as a real incompatible plugin would leave it unbound).

use super::rollout::{Direction, RolloutStatus, StopReason, Target};
use super::software::{Artifact, Manifest, Plugin, Version};
use super::*;
use proptest::prelude::*;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

fn at(ms: u64) -> Moment {
    Moment {
        mono: Duration::from_millis(ms),
        wall: SystemTime::UNIX_EPOCH + Duration::from_millis(ms),
    }
}

fn v(s: &str) -> Version {
    Version::parse("v", s).unwrap()
}

fn artifact(version: &str, file: &str) -> Artifact {
    Artifact {
        version: v(version),
        file: file.into(),
        size: 10,
        sha256: "ab".repeat(32),
        flags: vec![],
    }
}

/// A package: host agent `ha`, plugin `plugin` declaring `compatible`.
fn package(version: &str, ha: &str, plugin: &str, compatible: &[&str]) -> Manifest {
    Manifest {
        version: v(version),
        host_agent: artifact(ha, "host-agent"),
        guest_agent: artifact(&format!("ga-{version}"), "guest-agent"),
        plugin: Plugin {
            artifact: artifact(plugin, "netplug"),
            compatible_host_agents: compatible.iter().map(|s| s.to_string()).collect(),
        },
        forced: false,
    }
}

const STABLE: Duration = Duration::from_secs(5);
const TIMEOUT: Duration = Duration::from_secs(60);

struct Sim {
    core: FabricCore,
    now: u64,
    seq: u64,
    boots: BTreeMap<NodeId, u64>,
    /// What each server runs, by the host agent's own account.
    running: BTreeMap<NodeId, Software>,
    /// The plugin compatibility of the package each server runs.
    plugin_ok: BTreeMap<NodeId, bool>,
    /// Servers whose VMs fail (their guest agent never comes up).
    sick: BTreeSet<NodeId>,
    /// Every set of servers released at once, as seen in replies.
    released_log: Vec<BTreeSet<u32>>,
}

impl Sim {
    /// `domains` update domains with `per` servers each, a role of one
    /// instance per server.
    fn new(domains: u32, per: u32) -> Self {
        let config = CoreConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            unresponsive_grace: Duration::from_secs(10),
            hi_threshold: HiThreshold::Count(2),
            rollout_gate_stable: STABLE,
            rollout_gate_timeout: TIMEOUT,
            classification_hold: Duration::from_secs(1),
            ..CoreConfig::default()
        };
        let mut sim = Sim {
            core: FabricCore::new(config, at(0)),
            now: 0,
            seq: 0,
            boots: BTreeMap::new(),
            running: BTreeMap::new(),
            plugin_ok: BTreeMap::new(),
            sick: BTreeSet::new(),
            released_log: Vec::new(),
        };
        for ud in 0..domains {
            for k in 0..per {
                let id = NodeId::new(format!("host-{ud}-{k}"));
                sim.running.insert(
                    id.clone(),
                    Software {
                        package: None,
                        host_agent: "1.0".into(),
                        guest_agent: "1.0".into(),
                        plugin: "net-1".into(),
                    },
                );
                sim.plugin_ok.insert(id.clone(), true);
                sim.register(&id, ud);
            }
        }
        let spec = DeploymentSpec {
            priority: 0,
            name: Name::parse("d", "web").unwrap(),
            roles: vec![RoleSpec {
                guest: Default::default(),
                name: Name::parse("r", "front").unwrap(),
                instances: domains * per,
                certificates: vec![],
            }],
        };
        sim.core.deploy(at(0), spec).unwrap();
        sim.run_for(3_000);
        sim
    }

    fn register(&mut self, id: &NodeId, ud: u32) {
        let boot = self.boots.entry(id.clone()).or_default();
        *boot += 1;
        let info = NodeInfo {
            fault_domain: ud,
            update_domain: ud,
            capacity_vm_slots: 4,
            software: self.running[id].clone(),
            ..NodeInfo::default()
        };
        let boot = format!("b{boot}");
        self.core.register(at(self.now), id.clone(), info, &boot);
    }

    fn ud(&self, id: &NodeId) -> u32 {
        self.core.node(id).unwrap().info.update_domain
    }

    /// One heartbeat round, one probe round and a tick, then `step_ms` on.
    fn round(&mut self, step_ms: u64) {
        self.seq += 1;
        let ids: Vec<NodeId> = self.running.keys().cloned().collect();
        let mut released = BTreeSet::new();
        for id in &ids {
            let reports: Vec<VmObservation> = self
                .core
                .instances()
                .filter(|i| i.node() == Some(id))
                .map(|i| VmObservation {
                    id: i.id.clone(),
                    incarnation: i.incarnation(),
                    state: if self.sick.contains(id) {
                        VmState::Starting
                    } else {
                        VmState::Running
                    },
                    pid: 1,
                    endpoint: format!("127.0.0.1:{}", 9000 + i.id.index),
                    detail: String::new(),
                    transfer_cert_fingerprint: String::new(),
                })
                .collect();
            let boot = format!("b{}", self.boots[id]);
            let (reply, _) = self
                .core
                .heartbeat(at(self.now), id, &boot, self.seq, reports);
            if let Some(target) = reply.target {
                assert_eq!(
                    reply.target_update,
                    self.core.rollout().map_or(0, |r| r.id),
                    "a target names the rollout that asks"
                );
                assert!(
                    self.core.cluster().mode == ClusterMode::Normal,
                    "a server was told to update in HI mode"
                );
                released.insert(self.ud(id));
                let (software, ok) = match target {
                    Target::Package(m) => (m.software(), m.check_own().is_ok()),
                    Target::Base => (
                        Software {
                            package: None,
                            host_agent: "1.0".into(),
                            guest_agent: "1.0".into(),
                            plugin: "net-1".into(),
                        },
                        true,
                    ),
                };
                self.running.insert(id.clone(), software);
                self.plugin_ok.insert(id.clone(), ok);
                let ud = self.ud(id);
                self.register(id, ud);
            }
        }
        if !released.is_empty() {
            self.released_log.push(released);
        }
        let round = self
            .core
            .rollout_probe_targets()
            .into_iter()
            .map(|t| {
                let node = self.core.instance(&t.id).unwrap().node().unwrap().clone();
                let ok = self.plugin_ok[&node];
                super::rollout::ProbeResult {
                    id: t.id,
                    incarnation: t.incarnation,
                    ok,
                    detail: if ok { "" } else { "connection refused" }.into(),
                }
            })
            .collect();
        self.core.endpoints_probed(at(self.now), round);
        self.core.tick(at(self.now));
        self.now += step_ms;
    }

    fn run_for(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.round(500);
        }
    }

    fn status(&self) -> RolloutStatus {
        self.core.rollout().unwrap().status.clone()
    }

    fn packages(&self) -> BTreeMap<NodeId, Option<Version>> {
        self.running
            .iter()
            .map(|(id, s)| (id.clone(), s.package.clone()))
            .collect()
    }

    fn add(&mut self, m: Manifest) {
        self.core
            .add_package(at(self.now), m, false, "test")
            .unwrap();
    }

    fn start(&mut self, plan: UpdatePlan) {
        self.core.start_update(at(self.now), plan, "test").unwrap();
    }

    fn running_instances(&self) -> usize {
        self.core
            .instances()
            .filter(|i| self.core.status_of(i) == InstanceState::Running)
            .count()
    }
}

fn good() -> Manifest {
    package("p2", "2.0", "net-2", &["2.*"])
}

#[test]
fn walks_update_domains_one_at_a_time_and_gates_each() {
    let mut sim = Sim::new(4, 2);
    sim.add(good());
    sim.start(UpdatePlan::new(v("p2")));
    let mut min_running = usize::MAX;
    for _ in 0..400 {
        sim.round(500);
        min_running = min_running.min(sim.running_instances());
        if sim.status().finished() {
            break;
        }
    }
    assert_eq!(sim.status(), RolloutStatus::Succeeded);
    assert!(
        sim.packages()
            .values()
            .all(|p| p.as_ref() == Some(&v("p2")))
    );
    // One domain at a time, in order.
    let order: Vec<u32> = sim
        .released_log
        .iter()
        .map(|s| {
            assert_eq!(s.len(), 1, "two domains released at once: {s:?}");
            *s.iter().next().unwrap()
        })
        .collect();
    let mut dedup = order.clone();
    dedup.dedup();
    assert_eq!(dedup, vec![0, 1, 2, 3]);
    // Each instance was reincarnated once, onto the new guest agent.
    assert!(sim.core.instances().all(|i| i.incarnation() == 2));
    // At most one domain's instances (2 of 8) were ever down at once.
    assert!(min_running >= 6, "{min_running}");
    // Each step held its gate for the stable time: 4 steps take at least 4 x STABLE.
    let r = sim.core.rollout().unwrap();
    let took = r.finished.unwrap().mono - r.started.mono;
    assert!(took >= STABLE * 4, "{took:?}");
}

#[test]
fn cluster_hi_mode_stops_the_rollout_and_only_an_operator_restarts_it() {
    let mut sim = Sim::new(4, 2);
    sim.add(good());
    sim.start(UpdatePlan::new(v("p2")));
    sim.run_for(2_000);
    // Two servers in HI trip the threshold (2).
    for id in ["host-3-0", "host-3-1"] {
        let report = FaultReport::new(FaultCause::HostHardware, "disk", "1.0", vec![]);
        sim.core
            .report_fault(at(sim.now), &NodeId::new(id), &report)
            .unwrap();
    }
    sim.run_for(1_000);
    assert_eq!(sim.core.cluster().mode, ClusterMode::HumanInvestigate);
    assert_eq!(
        sim.status(),
        RolloutStatus::Paused(StopReason::ClusterHumanInvestigate)
    );
    let before = sim.packages();
    let released = sim.released_log.len();
    sim.run_for(120_000);
    assert_eq!(sim.packages(), before, "no server changes in HI mode");
    assert_eq!(sim.released_log.len(), released);
    let err = sim.core.resume_update(at(sim.now), "op").unwrap_err();
    assert!(matches!(err, CoreError::UpdatesStopped(_)), "{err}");
    // Leaving HI mode is not enough: the rollout waits for its own word.
    sim.core.resume(at(sim.now), "op");
    sim.run_for(10_000);
    assert!(matches!(sim.status(), RolloutStatus::Paused(_)));
    sim.core.resume_update(at(sim.now), "op").unwrap();
    assert_eq!(sim.status(), RolloutStatus::Running);
}

#[test]
fn the_updates_switch_stops_it_too() {
    let mut sim = Sim::new(2, 1);
    sim.add(good());
    sim.start(UpdatePlan::new(v("p2")));
    sim.core
        .set_switch(at(sim.now), Switch::Updates, false, "op");
    sim.run_for(30_000);
    assert_eq!(sim.status(), RolloutStatus::Paused(StopReason::UpdatesOff));
    let err = sim
        .core
        .start_update(at(sim.now), UpdatePlan::new(v("p2")), "op")
        .unwrap_err();
    assert!(matches!(err, CoreError::UpdateInProgress { .. }), "{err}");
}

#[test]
fn an_incompatible_package_is_refused_and_forced_one_is_caught_by_the_gate() {
    let mut sim = Sim::new(4, 2);
    // The 2012 repair: an older host agent with the newer plugin.
    let repair = package("repair", "1.0", "net-2", &["2.*"]);
    let err = sim
        .core
        .add_package(at(0), repair.clone(), false, "op")
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("net-2") && text.contains("1.0"), "{text}");
    sim.core.add_package(at(0), repair, true, "op").unwrap();
    let err = sim
        .core
        .start_update(at(0), UpdatePlan::new(v("repair")), "op")
        .unwrap_err();
    assert!(matches!(err, CoreError::Incompatible(_)), "{err}");
    let mut plan = UpdatePlan::new(v("repair"));
    plan.force = true;
    plan.on_failure = OnFailure::Rollback;
    sim.start(plan);
    for _ in 0..600 {
        sim.round(500);
        if sim.status().finished() {
            break;
        }
    }
    assert_eq!(sim.status(), RolloutStatus::RolledBack);
    // Only the first domain was ever touched, and it is back on base.
    let touched: BTreeSet<u32> = sim.released_log.iter().flatten().copied().collect();
    assert_eq!(touched, BTreeSet::from([0]));
    assert!(sim.packages().values().all(Option::is_none));
    let gate_failed = sim
        .core
        .events()
        .after(0, None)
        .into_iter()
        .any(|e| e.kind == EventKind::UpdateRollback && e.reason.contains("unreachable"));
    assert!(gate_failed, "the rollback names the unreachable endpoints");
}

#[test]
fn a_failed_gate_pauses_by_default() {
    let mut sim = Sim::new(3, 1);
    sim.add(good());
    sim.sick.insert(NodeId::new("host-0-0"));
    sim.start(UpdatePlan::new(v("p2")));
    sim.run_for(TIMEOUT.as_millis() as u64 + 5_000);
    let RolloutStatus::Paused(StopReason::GateFailed(why)) = sim.status() else {
        panic!("{:?}", sim.status());
    };
    assert!(why.contains("web.front"), "{why}");
    assert_eq!(
        sim.core.rollout().unwrap().step,
        0,
        "never past a failed gate"
    );
}

#[test]
fn a_restarted_controller_resumes_where_it_was() {
    let mut sim = Sim::new(4, 1);
    sim.add(good());
    sim.start(UpdatePlan::new(v("p2")));
    sim.run_for(12_000);
    let before = sim.core.rollout().unwrap().clone();
    assert!(before.step >= 1 && !before.status.finished(), "{before:?}");
    let snapshot = sim.core.snapshot();
    let text = serde_json::to_string(&snapshot).unwrap();
    let restored: snapshot::CoreSnapshot = serde_json::from_str(&text).unwrap();
    sim.core = FabricCore::restore(sim.core.config().clone(), restored, at(sim.now));
    let after = sim.core.rollout().unwrap();
    assert_eq!(after.step, before.step);
    assert_eq!(after.steps, before.steps);
    assert_eq!(after.direction, Direction::Forward);
    for _ in 0..400 {
        sim.round(500);
        if sim.status().finished() {
            break;
        }
    }
    assert_eq!(sim.status(), RolloutStatus::Succeeded);
}

#[test]
fn canary_goes_first_and_blast_takes_everything() {
    let mut sim = Sim::new(3, 2);
    sim.add(good());
    let mut plan = UpdatePlan::new(v("p2"));
    plan.canary = 1;
    sim.start(plan);
    let r = sim.core.rollout().unwrap();
    assert_eq!(r.steps[0].nodes.len(), 1);
    assert!(r.steps[0].label.contains("canary"));
    assert_eq!(r.steps.len(), 4);

    let mut sim = Sim::new(3, 2);
    sim.add(good());
    let mut plan = UpdatePlan::new(v("p2"));
    plan.blast = true;
    sim.start(plan);
    sim.round(500);
    assert_eq!(sim.released_log[0].len(), 3, "every domain at once");
}

/// Operator and world actions, for the property test.
#[derive(Clone, Debug)]
enum Act {
    Wait(u64),
    TripHi,
    Resume,
    UpdatesOff,
    UpdatesOn,
    Pause,
    ResumeUpdate,
    Rollback,
    Sicken(u8),
    Heal(u8),
}

fn act() -> impl Strategy<Value = Act> {
    prop_oneof![
        6 => (1u64..20_000).prop_map(Act::Wait),
        1 => Just(Act::TripHi),
        1 => Just(Act::Resume),
        1 => Just(Act::UpdatesOff),
        1 => Just(Act::UpdatesOn),
        1 => Just(Act::Pause),
        2 => Just(Act::ResumeUpdate),
        1 => Just(Act::Rollback),
        1 => (0u8..4).prop_map(Act::Sicken),
        1 => (0u8..4).prop_map(Act::Heal),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Whatever happens: never two update domains released in one round,
    /// never a server told to update in HI mode (asserted in `round`),
    /// never a step passed with its gate unhealthy.
    #[test]
    fn brakes_and_gates_hold_under_any_interleaving(acts in proptest::collection::vec(act(), 1..40)) {
        let mut sim = Sim::new(4, 1);
        sim.add(good());
        let mut plan = UpdatePlan::new(v("p2"));
        plan.on_failure = OnFailure::Rollback;
        sim.start(plan);
        let mut hi = 0;
        for a in acts {
            let now = at(sim.now);
            match a {
                Act::Wait(ms) => {
                    let end = sim.now + ms;
                    while sim.now < end {
                        let before = sim.core.rollout().unwrap().clone();
                        sim.round(500);
                        let after = sim.core.rollout().unwrap();
                        if after.direction == before.direction && after.step > before.step {
                            // The step that passed was running, and its
                            // servers are on the walk's package (the gate's
                            // first check; its others need the same round).
                            prop_assert!(before.status == RolloutStatus::Running);
                            for n in &before.steps[before.step].nodes {
                                prop_assert_eq!(
                                    &sim.running[n].package,
                                    &sim.core.wanted_package(after, n)
                                );
                                let hosts_vms = sim.core.instances().any(|i| i.node() == Some(n));
                                prop_assert!(
                                    !(sim.sick.contains(n) && hosts_vms),
                                    "a step passed with VMs failing on {}", n
                                );
                            }
                        }
                        if before.status != RolloutStatus::Running {
                            prop_assert_eq!(after.step, before.step, "a stopped rollout moved");
                        }
                    }
                }
                Act::TripHi => {
                    for k in 0..2 {
                        let id = NodeId::new(format!("host-{}-0", (hi + k) % 4));
                        let r = FaultReport::new(FaultCause::HostHardware, "disk", "1.0", vec![]);
                        let _ = sim.core.report_fault(now, &id, &r);
                    }
                    hi += 2;
                }
                Act::Resume => {
                    sim.core.resume(now, "op");
                    let ids: Vec<NodeId> = sim.core.nodes().map(|n| n.id.clone()).collect();
                    for id in ids {
                        let _ = sim.core.repair(now, &id, "op", "fixed");
                    }
                }
                Act::UpdatesOff => { sim.core.set_switch(now, Switch::Updates, false, "op"); }
                Act::UpdatesOn => { sim.core.set_switch(now, Switch::Updates, true, "op"); }
                Act::Pause => { let _ = sim.core.pause_update(now, "op"); }
                Act::ResumeUpdate => { let _ = sim.core.resume_update(now, "op"); }
                Act::Rollback => { let _ = sim.core.rollback_update(now, "op"); }
                Act::Sicken(ud) => { sim.sick.insert(NodeId::new(format!("host-{ud}-0"))); }
                Act::Heal(ud) => { sim.sick.remove(&NodeId::new(format!("host-{ud}-0"))); }
            }
        }
        for s in &sim.released_log {
            prop_assert_eq!(s.len(), 1, "two domains released at once: {:?}", s);
        }
    }
}
