//! Thousands of seeded runs of the real core in a simulated cluster, with
//! random server failures, host-agent restarts, pauses, partitions and
//! operator actions, checking the healing invariants after every step.
//!
//! `FABRIC_SIM_SEEDS` sets the number of seeds (default 1000); a failing seed
//! is printed so it can be replayed alone with `FABRIC_SIM_SEED=<seed>`.

use fabric_core::{
    CertificateInfo, ClusterMode, CoreConfig, DeploymentSpec, EventKind, HiThreshold, InstanceId,
    InstanceState, Name, NodeState, RoleSpec,
};
use fabric_sim::host::{GuestModel, Power};
use fabric_sim::{SimConfig, World};
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

fn role(name: &str, instances: u32) -> RoleSpec {
    RoleSpec {
        guest: Default::default(),
        name: Name::parse("role", name).unwrap(),
        instances,
        certificates: vec![CertificateInfo {
            name: "https".into(),
            fingerprint: "00".repeat(32),
            not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
        }],
    }
}

fn service(name: &str, roles: &[(&str, u32)]) -> DeploymentSpec {
    DeploymentSpec {
        priority: 0,
        name: Name::parse("deployment", name).unwrap(),
        roles: roles.iter().map(|(r, n)| role(r, *n)).collect(),
    }
}

fn config(hosts: u32, threshold: u32) -> SimConfig {
    SimConfig {
        core: CoreConfig {
            heartbeat_interval: Duration::from_secs(1),
            node_timeout: Duration::from_secs(5),
            unresponsive_grace: Duration::from_secs(10),
            healing_concurrency: 3,
            hi_threshold: HiThreshold::Count(threshold),
            ..CoreConfig::default()
        },
        hosts,
        capacity: 4,
        step: Duration::from_millis(500),
        guest: GuestModel {
            boot_time: Duration::from_secs(2),
            ..GuestModel::default()
        },
        ..SimConfig::default()
    }
}

/// The invariants of the healing issue, checked after every step.
struct Checker {
    /// When each instance was last moved (incarnation bump or node change).
    moved_at: BTreeMap<InstanceId, (Duration, Option<String>, u64)>,
    max_incarnation: BTreeMap<InstanceId, u64>,
    resumed: bool,
}

impl Checker {
    fn new() -> Self {
        Self {
            moved_at: BTreeMap::new(),
            max_incarnation: BTreeMap::new(),
            resumed: false,
        }
    }

    fn check(
        &mut self,
        world: &World,
        expected: &BTreeMap<(String, String), u32>,
    ) -> Result<(), String> {
        let core = &world.core;
        let now = world.now.mono;
        // 1. No role instance lost: every index of every role exists.
        for ((d, r), n) in expected {
            for index in 0..*n {
                let id = InstanceId::parse(&format!("{d}.{r}.{index}")).unwrap();
                if core.instance(&id).is_none() {
                    return Err(format!("instance {id} lost"));
                }
            }
        }
        // 2. Incarnations never go down; track moves.
        for i in core.instances() {
            let node = i.node().map(|n| n.to_string());
            let prev = self.max_incarnation.insert(i.id.clone(), i.incarnation());
            if prev.is_some_and(|p| p > i.incarnation()) {
                return Err(format!("{} incarnation went down", i.id));
            }
            let entry =
                self.moved_at
                    .entry(i.id.clone())
                    .or_insert((now, node.clone(), i.incarnation()));
            // A move to another server is a new VM: a new incarnation.
            if node.is_some() && entry.1 != node && i.incarnation() <= entry.2 {
                return Err(format!(
                    "{} moved {:?} -> {node:?} keeping incarnation {}",
                    i.id,
                    entry.1,
                    i.incarnation()
                ));
            }
            if entry.1 != node || entry.2 != i.incarnation() {
                *entry = (now, node, i.incarnation());
            }
        }
        // 3. Never two live VMs for one instance: among hosts that have heard
        // the controller since the instance last moved, at most one runs it.
        let mut runners: BTreeMap<&InstanceId, Vec<&str>> = BTreeMap::new();
        for h in &world.hosts {
            if h.power == Power::Off {
                continue;
            }
            for id in h.vms.keys() {
                // Strictly after the step that saw the move: within one
                // step a host may hear the controller just before the
                // controller moves the instance.
                let synced = h
                    .last_sync
                    .is_some_and(|s| self.moved_at.get(id).is_some_and(|m| s > m.0));
                if synced {
                    runners.entry(id).or_default().push(h.id.as_str());
                }
            }
        }
        if let Some((id, hosts)) = runners.iter().find(|(_, h)| h.len() > 1) {
            return Err(format!("{id} runs on {hosts:?} at once"));
        }
        // 4. No healing while in HI mode or with healing off.
        if let Some(v) = world.healing_violations.first() {
            return Err(v.clone());
        }
        // 5. The threshold trips exactly at the configured count.
        if let Some((_, count, threshold)) = core.cluster().last_trip
            && (count < threshold || (!self.resumed && count != threshold))
        {
            return Err(format!(
                "tripped with {count} HI nodes, threshold {threshold}"
            ));
        }
        if core.cluster().mode == ClusterMode::Normal
            && !self.resumed
            && core.hi_count() >= core.hi_threshold_nodes()
        {
            return Err(format!(
                "{} HI nodes but the cluster is Normal",
                core.hi_count()
            ));
        }
        Ok(())
    }
}

/// One seeded run; returns an error naming the first violated invariant.
fn run(seed: u64) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let hosts = rng.u32(5..=9);
    let threshold = rng.u32(2..=4);
    let mut world = World::new(config(hosts, threshold));
    let mut expected = BTreeMap::new();
    let spec = service("web", &[("front", rng.u32(1..=4)), ("api", rng.u32(1..=3))]);
    for r in &spec.roles {
        expected.insert(("web".to_owned(), r.name.to_string()), r.instances);
    }
    world.deploy(spec).map_err(|e| e.to_string())?;
    world.set_healing(true);
    let mut checker = Checker::new();
    let healing_switch = |w: &World| w.core.cluster().switches.healing;

    for _ in 0..rng.usize(100..300) {
        let h = rng.usize(0..world.hosts.len());
        match rng.u32(0..100) {
            0..3 => world.hosts[h].power_off(),
            3..8 => world.hosts[h].power_on(),
            8..10 => world.hosts[h].pause(),
            10..15 => world.hosts[h].unpause(),
            15..17 => world.hosts[h].partitioned = true,
            17..22 => world.hosts[h].partitioned = false,
            22..24 => world.hosts[h].restart_agent(),
            24..26 => {
                let id = world.hosts[h].id.clone();
                let _ = world.repair(&id);
            }
            26 => {
                world.resume();
                checker.resumed = true;
            }
            27 => {
                let on = !healing_switch(&world);
                world.set_healing(on);
            }
            _ => {}
        }
        world.step();
        checker
            .check(&world, &expected)
            .map_err(|e| format!("at {:?}: {e}", world.now.mono))?;
    }

    // Recovery: every server back, repaired, the cluster resumed, healing on.
    for h in &mut world.hosts {
        h.power_on();
        h.unpause();
        h.partitioned = false;
    }
    world.run_for(Duration::from_secs(3));
    let hi: Vec<_> = world
        .core
        .nodes()
        .filter(|n| n.state == NodeState::HumanInvestigate)
        .map(|n| n.id.clone())
        .collect();
    for id in hi {
        world.repair(&id).map_err(|e| e.to_string())?;
    }
    world.resume();
    checker.resumed = true;
    world.set_healing(true);
    for _ in 0..120 {
        world.step();
        checker.check(&world, &expected)?;
    }
    // 6. Pending instances are placed once capacity returns, and every
    // instance runs exactly once.
    let not_running: Vec<String> = world
        .core
        .instances()
        .filter(|i| i.state() != InstanceState::Running)
        .map(|i| format!("{} {}", i.id, i.state()))
        .collect();
    if !not_running.is_empty() {
        return Err(format!("after recovery, not running: {not_running:?}"));
    }
    for i in world.core.instances() {
        let on: Vec<_> = world
            .hosts
            .iter()
            .filter(|h| h.vms.get(&i.id).is_some_and(|vm| vm.running()))
            .map(|h| h.id.to_string())
            .collect();
        if on.len() != 1 {
            return Err(format!("after recovery {} runs on {on:?}", i.id));
        }
    }
    Ok(())
}

#[test]
fn healing_invariants_hold_over_many_seeds() {
    if let Ok(seed) = std::env::var("FABRIC_SIM_SEED") {
        let seed: u64 = seed.parse().expect("FABRIC_SIM_SEED is a number");
        run(seed).unwrap_or_else(|e| panic!("seed {seed}: {e}"));
        return;
    }
    let seeds: u64 = std::env::var("FABRIC_SIM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for seed in 0..seeds {
        run(seed)
            .unwrap_or_else(|e| panic!("seed {seed} (replay with FABRIC_SIM_SEED={seed}): {e}"));
    }
}

/// The healing actually happens in these runs (the invariants are not met
/// by a simulation where nothing ever moves).
#[test]
fn a_lost_server_is_healed_within_detection_plus_grace() {
    let mut world = World::new(config(6, 3));
    world.deploy(service("web", &[("front", 4)])).unwrap();
    world.run_for(Duration::from_secs(5));
    assert!(
        world
            .core
            .instances()
            .all(|i| i.state() == InstanceState::Running)
    );
    let victim = world
        .core
        .instances()
        .next()
        .unwrap()
        .node()
        .cloned()
        .unwrap();
    world.host(victim.as_str()).power_off();
    world.run_for(Duration::from_secs(25));
    assert_eq!(
        world.core.node(&victim).unwrap().state,
        NodeState::HumanInvestigate
    );
    for i in world.core.instances() {
        assert_ne!(i.node(), Some(&victim));
        assert_eq!(i.state(), InstanceState::Running, "{}", i.id);
    }
    assert!(
        world
            .events
            .iter()
            .any(|e| e.kind == EventKind::InstanceHealed)
    );
    let on_victim: BTreeSet<_> = world.host(victim.as_str()).vms.keys().cloned().collect();
    assert!(on_victim.is_empty());
}
