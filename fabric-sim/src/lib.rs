//! A seeded, virtual-time simulation of a whole cluster around the real core.
//!
//! The controller's decisions are the real [`FabricCore`]; each server
//! ([`host::SimHost`]) keeps the real host agent's record of every VM
//! (timeouts, clean-VM strikes, respawn backoff, fault reports) around
//! simulated guest agents, and follows the daemons' protocol: register with
//! a boot id, heartbeat with increasing sequence numbers and VM reports,
//! converge on the desired VMs in each answer.
//!
//! Faults are injected by name (power off, pause, partition, host-agent
//! restart) and time only moves when [`World::step`] says so, so an hour of
//! cluster life runs in milliseconds and every run replays exactly. Property
//! tests drive thousands of seeded runs and check the invariants after every
//! step; scenarios (the 2012 cascade) run here in seconds.

pub mod host;
pub mod scenarios;

use fabric_core::{ClusterEvent, CoreConfig, DeploymentSpec, FabricCore, Moment, NodeId, Switch};
use host::{GuestModel, SimHost};
use std::time::{Duration, SystemTime};

/// Shape and timing of a simulated cluster.
#[derive(Clone, Debug)]
pub struct SimConfig {
    pub core: CoreConfig,
    pub hosts: u32,
    pub fault_domains: u32,
    pub update_domains: u32,
    pub capacity: u32,
    /// The simulation's time step.
    pub step: Duration,
    pub guest: GuestModel,
    /// Calendar time at the start (only used for event timestamps).
    pub start: SystemTime,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            core: CoreConfig::default(),
            hosts: 8,
            fault_domains: 3,
            update_domains: 5,
            capacity: 4,
            step: Duration::from_millis(500),
            guest: GuestModel::default(),
            start: SystemTime::UNIX_EPOCH,
        }
    }
}

/// A simulated cluster: the real core and modelled hosts.
pub struct World {
    pub config: SimConfig,
    pub core: FabricCore,
    pub hosts: Vec<SimHost>,
    pub now: Moment,
    /// Every event the core raised, in order.
    pub events: Vec<ClusterEvent>,
    /// Set when a call raised a healing event while healing was not allowed.
    pub healing_violations: Vec<String>,
    /// (when, role instances a client can reach then), each time the count
    /// changes: what customers saw.
    pub serving: Vec<(Duration, usize)>,
}

impl World {
    pub fn new(config: SimConfig) -> Self {
        let now = Moment {
            mono: Duration::ZERO,
            wall: config.start,
        };
        let core = FabricCore::new(config.core.clone(), now);
        let hosts = (1..=config.hosts)
            .map(|i| {
                SimHost::new(
                    NodeId::new(format!("host-{i}")),
                    (i - 1) % config.fault_domains,
                    (i - 1) % config.update_domains,
                    config.capacity,
                )
            })
            .collect();
        let mut world = Self {
            config,
            core,
            hosts,
            now,
            events: Vec::new(),
            healing_violations: Vec::new(),
            serving: Vec::new(),
        };
        // Every host registers at once.
        for i in 0..world.hosts.len() {
            world.contact(i);
        }
        world
    }

    fn record(&mut self, events: Vec<ClusterEvent>) {
        let healed = events
            .iter()
            .any(|e| e.kind == fabric_core::EventKind::InstanceHealing);
        if healed && !self.core.cluster().healing_allowed() {
            self.healing_violations.push(format!(
                "healing at {:?} while mode {} and healing switch {}",
                self.now.mono,
                self.core.cluster().mode,
                self.core.cluster().switches.healing
            ));
        }
        self.events.extend(events);
    }

    /// Host `i` talks to the controller now (if it can).
    fn contact(&mut self, i: usize) {
        let now = self.now;
        let guest = self.config.guest.clone();
        let events = self.hosts[i].contact(&mut self.core, now, &guest);
        self.record(events);
    }

    /// Advances time by one step: guests, host agents, then the core's tick.
    pub fn step(&mut self) {
        self.now.mono += self.config.step;
        self.now.wall += self.config.step;
        let guest = self.config.guest.clone();
        for i in 0..self.hosts.len() {
            let now = self.now;
            self.hosts[i].run_guests(now, &guest);
            if self.hosts[i].heartbeat_due(now, self.core.config().heartbeat_interval) {
                self.contact(i);
            }
        }
        // The controller's prober: one round over a rollout's endpoints.
        let round: Vec<fabric_core::rollout::ProbeResult> = self
            .core
            .rollout_probe_targets()
            .into_iter()
            .map(|t| {
                let home = self.core.instance(&t.id).and_then(|i| i.node());
                let ok = self
                    .hosts
                    .iter()
                    .any(|h| Some(&h.id) == home && h.reachable(&t.id));
                fabric_core::rollout::ProbeResult {
                    id: t.id,
                    incarnation: t.incarnation,
                    ok,
                    detail: if ok { "" } else { "connection refused" }.into(),
                }
            })
            .collect();
        if !round.is_empty() {
            let events = self.core.endpoints_probed(self.now, round);
            self.record(events);
        }
        let events = self.core.tick(self.now);
        self.record(events);
        let serving = self.core.instances().count() - self.unreachable();
        if self.serving.last().is_none_or(|(_, n)| *n != serving) {
            self.serving.push((self.now.mono, serving));
        }
    }

    /// Role instances a client could reach at `at` (from [`World::serving`]).
    pub fn serving_at(&self, at: Duration) -> usize {
        let i = self.serving.partition_point(|(t, _)| *t <= at);
        i.checked_sub(1).map_or(0, |i| self.serving[i].1)
    }

    /// Instances whose endpoint a client cannot reach now.
    pub fn unreachable(&self) -> usize {
        // Counted at every step: look each instance's server up by id
        // rather than scanning every server per instance.
        let by_id: std::collections::HashMap<&NodeId, &SimHost> =
            self.hosts.iter().map(|h| (&h.id, h)).collect();
        self.core
            .instances()
            .filter(|i| {
                !i.node()
                    .and_then(|n| by_id.get(n))
                    .is_some_and(|h| h.reachable(&i.id))
            })
            .count()
    }

    /// Runs for `duration` of virtual time.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now.mono + duration;
        while self.now.mono < end {
            self.step();
        }
    }

    pub fn deploy(&mut self, spec: DeploymentSpec) -> Result<(), fabric_core::CoreError> {
        let (_, events) = self.core.deploy(self.now, spec)?;
        self.record(events);
        Ok(())
    }

    pub fn repair(&mut self, node: &NodeId) -> Result<(), fabric_core::CoreError> {
        let events = self
            .core
            .repair(self.now, node, "sim", "simulated repair")?;
        self.record(events);
        Ok(())
    }

    pub fn resume(&mut self) {
        let events = self.core.resume(self.now, "sim");
        self.record(events);
    }

    pub fn set_healing(&mut self, on: bool) {
        let events = self.core.set_switch(self.now, Switch::Healing, on, "sim");
        self.record(events);
    }

    pub fn host(&mut self, node: &str) -> &mut SimHost {
        self.hosts
            .iter_mut()
            .find(|h| h.id.as_str() == node)
            .expect("no such simulated host")
    }
}
