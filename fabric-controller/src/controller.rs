//! [`Controller`]: the core behind a lock, plus the clock and event fan-out.
//!
//! Every RPC handler and background loop goes through these few methods. Each
//! one reads the clock, calls one core method under the lock (never across an
//! `.await`), saves the new state if the call changed it (before anyone acts
//! on the decision: the reply is sent after the save), then publishes
//! whatever events the core raised: to the tracing log and to live
//! `WatchEvents` subscribers.

use crate::api::convert::ValidatedDeployment;
use crate::core::services::DeployOutcome;
use crate::core::{
    Clock, ClusterEvent, CoreError, FabricCore, HeartbeatOutcome, InstanceId, NodeId, NodeInfo,
    RegisterOutcome, RoleInstance, VmAssignment, VmObservation,
};
use crate::metrics::ControllerMetrics;
use crate::secrets::{RoleCertificate, SecretStore};
use crate::store::sealed_keys::AtRestKey;
use crate::store::{PersistedState, Store, StoreError};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, watch};

/// Shared controller state.
pub struct Controller {
    cluster: String,
    core: Mutex<FabricCore>,
    /// Lock order: `core` before `secrets`, always.
    secrets: Mutex<SecretStore>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<ClusterEvent>,
    /// Wakes the expiry loop when a deadline may have moved earlier.
    pub(crate) expiry_changed: Notify,
    /// Becomes true when the server starts shutting down, so long-lived
    /// streams (WatchEvents) end and graceful shutdown can complete.
    closing: watch::Sender<bool>,
    /// Where state is saved; `None` keeps it in memory only (tests).
    /// Lock order: `core`, then `secrets`, then `persistence`.
    persistence: Option<Mutex<Persistence>>,
    /// Counters fed here, gauges read from the core at scrape time.
    metrics: ControllerMetrics,
}

/// A store and the key that encrypts secrets in it.
pub struct Persistence {
    pub store: Box<dyn Store>,
    pub key: AtRestKey,
}

/// A refused request, or a decision that could not be saved.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error(transparent)]
    Core(#[from] CoreError),
    #[error("the decision was not saved, so it was not carried out: {0}")]
    Store(#[from] StoreError),
}

impl Controller {
    pub fn new(
        cluster: String,
        core: FabricCore,
        secrets: SecretStore,
        clock: Arc<dyn Clock>,
        persistence: Option<Persistence>,
    ) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            cluster,
            core: Mutex::new(core),
            secrets: Mutex::new(secrets),
            clock,
            events,
            expiry_changed: Notify::new(),
            closing: watch::channel(false).0,
            persistence: persistence.map(Mutex::new),
            metrics: ControllerMetrics::new(),
        })
    }

    /// Saves the core and the secrets. Called with the core locked, so saves
    /// happen in the order of the decisions.
    fn persist(&self, core: &FabricCore) -> Result<(), StoreError> {
        let Some(persistence) = &self.persistence else {
            return Ok(());
        };
        let mut p = persistence.lock().unwrap_or_else(|e| e.into_inner());
        let secrets = self
            .secrets()
            .entries()
            .map(|(d, r, c)| p.key.encrypt(d.as_str(), r.as_str(), c))
            .collect::<Result<Vec<_>, _>>()?;
        let state = PersistedState {
            core: core.snapshot(),
            secrets,
        };
        p.store.save(&state)
    }

    /// For decisions nobody waits on (heartbeats, ticks): a failed save is
    /// logged loudly; the next change saves everything again.
    fn persist_or_log(&self, core: &FabricCore) {
        if let Err(e) = self.persist(core) {
            tracing::error!("could not save controller state: {e}");
        }
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn metrics(&self) -> &ControllerMetrics {
        &self.metrics
    }

    pub fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    /// Read access to the core, for status queries.
    pub fn read(&self) -> MutexGuard<'_, FabricCore> {
        // A panic while holding the lock would be a bug in the core; keep
        // serving with the state as it is rather than poisoning every call.
        self.core.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Live events; subscribe *before* reading the backlog to miss none.
    pub fn subscribe(&self) -> broadcast::Receiver<ClusterEvent> {
        self.events.subscribe()
    }

    /// Ends every long-lived stream; called when shutdown begins.
    pub fn close(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once [`Controller::close`] has been called.
    pub fn closed(&self) -> impl std::future::Future<Output = ()> + Send + 'static {
        let mut rx = self.closing.subscribe();
        async move {
            let _ = rx.wait_for(|closing| *closing).await;
        }
    }

    fn publish(&self, events: Vec<ClusterEvent>) {
        for e in events {
            self.metrics.observe(&e);
            let node = e.node.as_ref().map(NodeId::as_str).unwrap_or("-");
            tracing::info!(
                seq = e.sequence,
                kind = e.kind.as_str(),
                node,
                "{}",
                e.reason
            );
            // No subscribers is fine: the event is in the core's log.
            let _ = self.events.send(e);
        }
    }

    pub fn register(&self, id: NodeId, info: NodeInfo, boot_id: &str) -> RegisterOutcome {
        let now = self.clock.now();
        let mut core = self.read();
        let (outcome, events) = core.register(now, id, info, boot_id);
        if !events.is_empty() {
            self.persist_or_log(&core);
        }
        drop(core);
        self.publish(events);
        self.expiry_changed.notify_one();
        outcome
    }

    /// Records a heartbeat and its VM reports; returns what the node should
    /// run (only meaningful when the heartbeat was not REGISTER_AGAIN).
    pub fn heartbeat(
        &self,
        id: &NodeId,
        boot_id: &str,
        sequence: u64,
        vms: Vec<VmObservation>,
    ) -> (HeartbeatOutcome, Vec<VmAssignment>) {
        let now = self.clock.now();
        self.metrics.heartbeat();
        let mut core = self.read();
        let (outcome, mut events) = core.heartbeat(now, id, boot_id, sequence);
        // Reports ride on accepted heartbeats only: a stale one may describe
        // a VM state older than what we already know.
        if outcome == HeartbeatOutcome::Accepted {
            events.extend(core.observe_vms(now, id, vms));
        }
        let desired = match outcome {
            HeartbeatOutcome::RegisterAgain => Vec::new(),
            _ => core.desired_vms(id),
        };
        if !events.is_empty() {
            self.persist_or_log(&core);
        }
        drop(core);
        // Any transition may free capacity or finish a heal: let the tick
        // loop run healing now rather than at its next deadline.
        if !events.is_empty() {
            self.expiry_changed.notify_one();
        }
        self.publish(events);
        (outcome, desired)
    }

    fn secrets(&self) -> MutexGuard<'_, SecretStore> {
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Creates or rotates a deployment; returns its instances.
    pub fn deploy(
        &self,
        deployment: ValidatedDeployment,
    ) -> Result<(DeployOutcome, Vec<RoleInstance>), ControllerError> {
        let now = self.clock.now();
        let name = deployment.spec.name.clone();
        let mut core = self.read();
        let (outcome, events) = core.deploy(now, deployment.spec)?;
        let mut secrets = self.secrets();
        for (role, certs) in deployment.secrets {
            secrets.put(&name, &role, certs);
        }
        drop(secrets);
        self.persist(&core)?;
        let instances = core
            .instances()
            .filter(|i| i.id.deployment == name)
            .cloned()
            .collect();
        drop(core);
        self.publish(events);
        Ok((outcome, instances))
    }

    pub fn scale(
        &self,
        deployment: &str,
        role: &str,
        count: u32,
    ) -> Result<Vec<RoleInstance>, ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.scale(now, deployment, role, count)?;
        self.persist(&core)?;
        let instances = core
            .instances()
            .filter(|i| i.id.deployment.as_str() == deployment && i.id.role.as_str() == role)
            .cloned()
            .collect();
        drop(core);
        self.publish(events);
        Ok(instances)
    }

    pub fn delete(&self, deployment: &str) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let event = core.delete(now, deployment)?;
        if let Ok(name) = crate::core::Name::parse("deployment", deployment) {
            self.secrets().remove_deployment(&name);
        }
        self.persist(&core)?;
        drop(core);
        self.publish(vec![event]);
        Ok(())
    }

    /// The certificates of VM `vm`, for the node it is assigned to only.
    pub fn fetch_secrets(
        &self,
        node: &NodeId,
        vm: &InstanceId,
        incarnation: u64,
    ) -> Result<(Vec<RoleCertificate>, String), CoreError> {
        let core = self.read();
        let authorized = core.authorize_secrets(node, vm, incarnation);
        self.metrics.secrets(authorized.is_ok());
        let (deployment, role) = authorized?;
        let version = core
            .deployments()
            .find(|d| d.name == deployment)
            .and_then(|d| d.role(&role))
            .map(|r| r.secrets_version())
            .unwrap_or_default();
        let certs = self
            .secrets()
            .get(&deployment, &role)
            .map(<[RoleCertificate]>::to_vec)
            .unwrap_or_default();
        Ok((certs, version))
    }

    pub fn report_fault(
        &self,
        id: &NodeId,
        reason: &str,
        version: &str,
        vms: &[InstanceId],
    ) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.report_fault(now, id, reason, version, vms)?;
        self.persist(&core)?;
        drop(core);
        self.publish(events);
        self.expiry_changed.notify_one();
        Ok(())
    }

    pub fn repair(&self, id: &NodeId, who: &str, why: &str) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.repair(now, id, who, why)?;
        self.persist(&core)?;
        drop(core);
        self.publish(events);
        self.expiry_changed.notify_one();
        Ok(())
    }

    pub fn resume(&self, who: &str) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.resume(now, who);
        self.persist(&core)?;
        drop(core);
        self.publish(events);
        self.expiry_changed.notify_one();
        Ok(())
    }

    pub fn set_switch(
        &self,
        switch: crate::core::Switch,
        on: bool,
        who: &str,
    ) -> Result<(), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.set_switch(now, switch, on, who);
        self.persist(&core)?;
        drop(core);
        self.publish(events);
        Ok(())
    }

    /// Runs the core's time-driven work now (expiry, HI, healing); returns
    /// the monotonic time of the next deadline.
    pub fn tick(&self) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.tick(now);
        let next = core.next_deadline(now);
        if !events.is_empty() {
            self.persist_or_log(&core);
        }
        drop(core);
        self.publish(events);
        next
    }
}
