//! [`Controller`]: the core behind a lock, plus the clock and event fan-out.
//!
//! Every RPC handler and background loop goes through these methods, one per
//! input, and each of them through one path ([`Controller::decide`]): read the
//! clock, call one core method under the lock (never across an `.await`), save
//! the new state (before anyone acts on the decision: the reply is sent after
//! the save), publish the events the core raised (to the tracing log and to
//! live `WatchEvents` subscribers), and wake the tick loop.
//!
//! Save before act, also when saving fails: an operator's decision that
//! cannot be saved is taken back (the core and secrets as they were) and
//! refused. A decision nobody waits on (a heartbeat's, a tick's: a node
//! declared lost, an instance moved) cannot be refused, so it is *held*:
//! until a save succeeds, heartbeats are answered HOLD (liveness recorded,
//! no desired set, so no host starts or stops anything on its word), the tick
//! loop retries the save every second, and status, dashboard and metrics
//! show the incident.

use crate::api::convert::ValidatedDeployment;
use crate::commit::Commits;
use crate::metrics::ControllerMetrics;
use crate::secrets::{RoleCertificate, SecretStore};
use crate::store::sealed_keys::AtRestKey;
use crate::store::{self, ChangeRecord, PersistedState, Store, StoreError};
use fabric_core::DesiredDirty;
use fabric_core::services::DeployOutcome;
use fabric_core::{
    Clock, ClusterEvent, ClusterIdentity, CoreError, FabricCore, FaultReport, HeartbeatOutcome,
    HeartbeatReply, HostMemory, InstanceId, InstanceState, Moment, NodeId, NodeInfo,
    RegisterOutcome, RoleInstance, VmObservation,
};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::sync::{Notify, broadcast, watch};

/// Shared controller state.
pub struct Controller {
    cluster: String,
    core: Mutex<FabricCore>,
    /// Lock order: `core` before `secrets`, always.
    secrets: Mutex<SecretStore>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<ClusterEvent>,
    /// Wakes the tick loop after any decision with events: a deadline may
    /// have moved, or healing may have work to do.
    wake: Notify,
    /// Each watching server's WatchDesired stream, woken when a decision may
    /// have changed what it should do.
    watchers: Mutex<std::collections::HashMap<NodeId, Arc<Notify>>>,
    /// Becomes true when the server starts shutting down, so long-lived
    /// streams (WatchEvents) end and graceful shutdown can complete.
    closing: watch::Sender<bool>,
    /// Where state is saved; `None` keeps it in memory only (tests).
    /// Lock order: `core`, then `secrets`, then `persistence`.
    persistence: Option<Mutex<Persistence>>,
    /// Counters fed here, gauges read from the core at scrape time.
    metrics: ControllerMetrics,
    /// Set while decisions are held because their save failed.
    unsaved: Mutex<Option<SaveTrouble>>,
    /// Decisions nobody waits on, written in batches (see [`crate::commit`]).
    commits: Commits,
    /// See [`Controller::durable_generation`].
    durable_generation: std::sync::atomic::AtomicU64,
    /// Where package artifacts are kept; unset: packages cannot be added
    /// (a controller without a state directory).
    packages: std::sync::OnceLock<crate::store::packages::PackageStore>,
    /// This replica's term as leader; unset for a controller without
    /// replicas (see [`crate::replica`]).
    term: std::sync::OnceLock<crate::replica::Term>,
}

/// A condition of the controller itself, for status and the dashboard.
#[derive(Clone, Debug)]
pub struct Alarm {
    pub kind: &'static str,
    pub summary: String,
    pub since: std::time::SystemTime,
}

/// Decisions held because the state could not be saved (see the module doc).
#[derive(Clone, Debug)]
pub struct SaveTrouble {
    /// When the first held save failed.
    pub since: std::time::SystemTime,
    /// The last failure, in words.
    pub error: String,
    /// Failed attempts so far.
    pub failures: u64,
}

/// A store and the key that encrypts secrets in it.
pub struct Persistence {
    pub store: Box<dyn Store>,
    pub key: AtRestKey,
    /// Set after a failed save: the next one is whole.
    pub must_save_full: bool,
    /// The secrets' version in the last save (see `SecretStore::version`).
    pub secrets_saved: Option<u64>,
}

impl Persistence {
    pub fn new(store: Box<dyn Store>, key: AtRestKey) -> Self {
        Self {
            store,
            key,
            must_save_full: true,
            secrets_saved: None,
        }
    }
}

/// One save, taken from the core and not yet written.
struct Prepared<'a> {
    persistence: MutexGuard<'a, Persistence>,
    what: Payload,
    generation: u64,
    secrets_version: u64,
    started: std::time::Instant,
}

/// What a [`Prepared`] save writes.
enum Payload {
    /// The whole state.
    Full(PersistedState),
    /// What changed since the previous save.
    Changes(ChangeRecord),
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
        let durable_generation = std::sync::atomic::AtomicU64::new(core.identity().generation);
        let writes = persistence.is_some();
        let controller = Arc::new(Self {
            cluster,
            core: Mutex::new(core),
            secrets: Mutex::new(secrets),
            clock,
            events,
            wake: Notify::new(),
            closing: watch::channel(false).0,
            watchers: Mutex::new(std::collections::HashMap::new()),
            persistence: persistence.map(Mutex::new),
            metrics: ControllerMetrics::new(),
            unsaved: Mutex::new(None),
            commits: Commits::default(),
            durable_generation,
            packages: std::sync::OnceLock::new(),
            term: std::sync::OnceLock::new(),
        });
        if writes {
            Self::spawn_writer(&controller);
        }
        controller
    }

    /// Gives the controller a place to keep packages (once, at start).
    pub fn set_package_store(&self, store: crate::store::packages::PackageStore) {
        let _ = self.packages.set(store);
    }

    pub fn package_store(&self) -> Option<&crate::store::packages::PackageStore> {
        self.packages.get()
    }

    /// Marks this controller as one replica's term as leader (once, at start).
    pub fn set_term(&self, term: crate::replica::Term) {
        let _ = self.term.set(term);
    }

    /// This replica's term, if the controller has replicas.
    pub fn term(&self) -> Option<&crate::replica::Term> {
        self.term.get()
    }

    /// Saves the core and the secrets with the core locked: an operator's
    /// decision, or a held save retried. Waits for a batch being written
    /// (the persistence lock) so saves stay in decision order.
    fn persist(&self, core: &mut FabricCore) -> Result<(), StoreError> {
        match self.prepare(core)? {
            Some(prepared) => self.write(prepared),
            None => Ok(()),
        }
    }

    /// With the core locked: what the next save writes (every change since
    /// the last), taken from the core. `None` without persistence.
    ///
    /// Each save is the state's next generation (see
    /// [`fabric_core::identity`]). The core takes the number now, so the
    /// next save's is higher whatever happens to this one; hosts hear only
    /// [`Controller::durable_generation`], a generation on disk.
    fn prepare(&self, core: &mut FabricCore) -> Result<Option<Prepared<'_>>, StoreError> {
        let Some(persistence) = &self.persistence else {
            return Ok(None);
        };
        let secrets = self.secrets();
        let p = persistence.lock().unwrap_or_else(|e| e.into_inner());
        let encrypt = |key: &AtRestKey| {
            secrets
                .entries()
                .map(|(d, r, c)| key.encrypt(d.as_str(), r.as_str(), c))
                .collect::<Result<Vec<_>, _>>()
        };
        let generation = core.identity().generation + 1;
        let started = std::time::Instant::now();
        let full = p.must_save_full || p.store.wants_full();
        let what = if full {
            let mut snapshot = core.snapshot();
            snapshot.identity.generation = generation;
            let state = PersistedState {
                core: snapshot,
                secrets: encrypt(&p.key)?,
            };
            // Marks spent now; if the write fails the next save is whole.
            core.all_saved();
            Payload::Full(state)
        } else {
            // Secrets first: if they cannot be encrypted, the core's change
            // marks must not have been spent.
            let secrets = match p.secrets_saved == Some(secrets.version()) {
                true => None,
                false => Some(encrypt(&p.key)?),
            };
            let record = ChangeRecord {
                core: core.take_changes(generation),
                secrets,
            };
            Payload::Changes(record)
        };
        core.saved_as(generation);
        Ok(Some(Prepared {
            secrets_version: secrets.version(),
            persistence: p,
            what,
            generation,
            started,
        }))
    }

    /// Writes what [`Controller::prepare`] took; the core need not be
    /// locked (the persistence lock keeps writes in order).
    fn write(&self, prepared: Prepared<'_>) -> Result<(), StoreError> {
        let Prepared {
            mut persistence,
            what,
            generation,
            secrets_version,
            started,
        } = prepared;
        let (full, saved) = match &what {
            Payload::Full(state) => (true, persistence.store.save(store::Save::Full(state))),
            Payload::Changes(record) => {
                (false, persistence.store.save(store::Save::Changes(record)))
            }
        };
        if let Err(e) = saved {
            // The change marks are spent: only a whole state is sure to
            // hold everything.
            persistence.must_save_full = true;
            return Err(e);
        }
        persistence.must_save_full = false;
        persistence.secrets_saved = Some(secrets_version);
        self.metrics.saved(full, started.elapsed());
        self.durable_generation
            .fetch_max(generation, std::sync::atomic::Ordering::SeqCst);
        Ok(())
    }

    /// The newest state generation on disk: what heartbeat replies name
    /// (a host remembers it, and a controller restarted on an older state
    /// would take that for state lost).
    pub fn durable_generation(&self) -> u64 {
        self.durable_generation
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The writer thread of [`crate::commit`]: writes batches while the
    /// controller exists (it holds only a weak reference, and looks every
    /// second whether the controller is gone).
    fn spawn_writer(controller: &Arc<Self>) {
        let weak = Arc::downgrade(controller);
        let spawned = std::thread::Builder::new()
            .name("state-writer".into())
            .spawn(move || {
                while let Some(controller) = weak.upgrade() {
                    if controller.commits.next(Duration::from_secs(1)) {
                        controller.write_batch();
                    }
                }
            });
        if let Err(e) = spawned {
            // Without a writer no unattended decision would ever be
            // released: better to stop now, loudly.
            panic!("cannot start the state writer thread: {e}");
        }
    }

    /// Takes, writes and settles one batch of the decisions nobody waits on
    /// (see [`crate::commit`]): the writer thread's work, with no lock held.
    fn write_batch(&self) {
        let mut core = self.read();
        let batch = self.commits.take();
        let prepared = self.prepare(&mut core);
        drop(core);
        let written = prepared.and_then(|p| p.map_or(Ok(()), |p| self.write(p)));
        // Held before the waiters are released: a heartbeat released by a
        // failed write must see the hold and answer HOLD.
        match written {
            Ok(()) => self.saved(),
            Err(e) => self.hold(e),
        }
        self.commits.settle(batch.upto);
        // Published written or held, as a decision's events always were;
        // in decision order (taken under the core lock).
        self.publish(batch.events);
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

    /// The one path every input takes: read the clock, lock the core, let
    /// it decide, save, publish its events, and wake the tick loop. Saves
    /// follow the order of the decisions and come before anyone hears of a
    /// decision (the reply is sent after this returns): an operator's
    /// decision is saved with the core still locked; the decisions nobody
    /// waits on are written in batches after the lock is released
    /// ([`crate::commit`]), and this waits until its own batch is written.
    /// Every change to what the controller would decide next is recorded as
    /// an event, so a decision with events wakes the tick loop: it needs no
    /// polling.
    fn decide<R>(
        &self,
        save: Save,
        nudge: Nudge,
        decide: impl FnOnce(&mut FabricCore, Moment) -> Result<(R, Vec<ClusterEvent>), CoreError>,
    ) -> Result<R, ControllerError> {
        let (reply, after) = self.decide_deferred(save, nudge, decide)?;
        if let Some(need) = after.wait_for {
            self.commits.wait_blocking(need);
        }
        self.finish(after);
        Ok(reply)
    }

    /// [`Controller::decide`] for a caller in a task: waits for its batch
    /// without blocking a worker thread (heartbeats, see [`crate::commit`]).
    async fn decide_async<R>(
        &self,
        save: Save,
        nudge: Nudge,
        decide: impl FnOnce(&mut FabricCore, Moment) -> Result<(R, Vec<ClusterEvent>), CoreError>,
    ) -> Result<R, ControllerError> {
        let (reply, after) = self.decide_deferred(save, nudge, decide)?;
        if let Some(need) = after.wait_for {
            self.commits.wait(need).await;
        }
        self.finish(after);
        Ok(reply)
    }

    /// The decision itself, saved if it must be saved with the core locked;
    /// what is left to do once it is written.
    fn decide_deferred<R>(
        &self,
        save: Save,
        nudge: Nudge,
        decide: impl FnOnce(&mut FabricCore, Moment) -> Result<(R, Vec<ClusterEvent>), CoreError>,
    ) -> Result<(R, After), ControllerError> {
        let now = self.clock.now();
        let mut core = self.read();
        // What to go back to if an operator's decision cannot be saved: it
        // is then refused as if never made (operator calls are rare, so the
        // copy costs little).
        let before = match save {
            Save::Always if self.persistence.is_some() => {
                Some((core.clone(), self.secrets().clone()))
            }
            _ => None,
        };
        let (reply, events) = decide(&mut core, now)?;
        let changed = !events.is_empty();
        let dirty = (nudge == Nudge::Hosts && (matches!(save, Save::Always) || changed))
            .then(|| core.take_desired_dirty());
        let mut wait_for = None;
        match save {
            Save::Always => {
                if let Err(e) = self.persist(&mut core) {
                    if let Some((core_before, secrets_before)) = before {
                        *core = core_before;
                        *self.secrets() = secrets_before;
                    }
                    self.metrics.save_failed();
                    return Err(e.into());
                }
                // Written with every decision made before it.
                self.commits.decided(events);
                let batch = self.commits.take();
                self.commits.settle(batch.upto);
                drop(core);
                self.saved();
                self.publish(batch.events);
            }
            Save::IfChanged if self.persistence.is_none() => {
                drop(core);
                self.publish(events);
            }
            Save::IfChanged => {
                wait_for = Some(self.commits.decided(events));
            }
        }
        Ok((
            reply,
            After {
                wait_for,
                changed,
                dirty,
            },
        ))
    }

    /// Once a decision is written: wake the tick loop, nudge its servers.
    fn finish(&self, after: After) {
        if after.changed {
            self.wake.notify_one();
        }
        if let Some(dirty) = after.dirty {
            self.nudge_hosts(&dirty);
        }
    }

    /// Wakes the WatchDesired streams of the servers `dirty` names, which
    /// then look whether what their server should do changed (see
    /// [`FabricCore::desired_digest`]).
    fn nudge_hosts(&self, dirty: &DesiredDirty) {
        let watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        match dirty {
            DesiredDirty::All => watchers.values().for_each(|w| w.notify_one()),
            DesiredDirty::Nodes(nodes) => {
                for node in nodes {
                    if let Some(w) = watchers.get(node) {
                        w.notify_one();
                    }
                }
            }
        }
    }

    /// Registers `node`'s WatchDesired stream (replacing an older one of
    /// the same server): notified when what it should do may have changed.
    pub fn watch_desired(&self, node: &NodeId) -> Arc<Notify> {
        let notify = Arc::new(Notify::new());
        self.watchers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(node.clone(), notify.clone());
        notify
    }

    /// Forgets `node`'s stream if `notify` is still the registered one.
    pub fn unwatch_desired(&self, node: &NodeId, notify: &Arc<Notify>) {
        let mut watchers = self.watchers.lock().unwrap_or_else(|p| p.into_inner());
        if watchers.get(node).is_some_and(|w| Arc::ptr_eq(w, notify)) {
            watchers.remove(node);
        }
    }

    /// See [`FabricCore::desired_digest`].
    pub fn desired_digest(&self, node: &NodeId) -> u64 {
        self.read().desired_digest(node)
    }

    /// A decision nobody waits on could not be saved: hold every decision
    /// (see the module doc) until a save succeeds.
    fn hold(&self, e: StoreError) {
        self.metrics.save_failed();
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        let trouble = unsaved.get_or_insert_with(|| SaveTrouble {
            since: self.clock.now().wall,
            error: String::new(),
            failures: 0,
        });
        trouble.failures += 1;
        trouble.error = e.to_string();
        tracing::error!(
            failures = trouble.failures,
            "could not save controller state: {e}; decisions are held (hosts hear HOLD) until a save succeeds"
        );
    }

    /// A save succeeded: held decisions may be acted on.
    fn saved(&self) {
        let mut unsaved = self.unsaved.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(trouble) = unsaved.take() {
            tracing::warn!(
                failures = trouble.failures,
                "controller state saved again; held decisions are acted on from now"
            );
            // Hosts were answered HOLD meanwhile.
            drop(unsaved);
            self.nudge_hosts(&DesiredDirty::All);
        }
    }

    /// Decisions held because their save failed, if any.
    pub fn held(&self) -> Option<SaveTrouble> {
        self.unsaved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The controller's own troubles, for status and the dashboard.
    pub fn alarms(&self) -> Vec<Alarm> {
        self.alarms_with(&self.read())
    }

    /// [`Controller::alarms`] for a caller that holds the core already (the
    /// lock is not reentrant).
    pub fn alarms_with(&self, core: &FabricCore) -> Vec<Alarm> {
        let mut alarms = Vec::new();
        if let Some(lost) = core.state_lost() {
            let hosts: Vec<_> = lost.evidence.keys().map(NodeId::as_str).collect();
            alarms.push(Alarm {
                kind: "state lost",
                summary: format!(
                    "host(s) {} obeyed a newer controller state than this one has: its state was \
                     lost or is old. Nothing is stopped, healed or deployed. Recover with \
                     `fabricctl cluster recover --adopt` (rebuild from what the hosts run) or \
                     `fabricctl cluster recover --wipe --yes` (hosts stop every VM)",
                    hosts.join(", ")
                ),
                since: lost.since.wall,
            });
        }
        if let Some(t) = self.held() {
            alarms.push(Alarm {
                kind: "state not saved",
                summary: format!(
                    "{} save(s) failed, the last: {}. Decisions since are held: hosts are \
                     answered HOLD and start or stop nothing until a save succeeds (retried \
                     every second)",
                    t.failures, t.error
                ),
                since: t.since,
            });
        }
        alarms
    }

    /// The tick loop's retry of a held save.
    pub fn retry_save(&self) {
        if self.held().is_none() {
            return;
        }
        let mut core = self.read();
        match self.persist(&mut core) {
            Ok(()) => {
                // The hold is lifted before the waiters are released.
                self.saved();
                let batch = self.commits.take();
                self.commits.settle(batch.upto);
                drop(core);
                self.publish(batch.events);
            }
            Err(e) => {
                drop(core);
                self.hold(e);
            }
        }
        self.wake.notify_one();
    }

    /// [`Controller::decide`] for the inputs the core never refuses and
    /// nobody waits on (registrations, heartbeats, ticks): saved when they
    /// raised events, and a failed save is logged, not returned.
    fn observe<R>(
        &self,
        nudge: Nudge,
        decide: impl FnOnce(&mut FabricCore, Moment) -> (R, Vec<ClusterEvent>),
    ) -> R {
        match self.decide(Save::IfChanged, nudge, |core, now| Ok(decide(core, now))) {
            Ok(reply) => reply,
            Err(e) => unreachable!("Save::IfChanged and an infallible core call: {e}"),
        }
    }

    /// Input: a host agent registers.
    pub fn register(&self, id: NodeId, info: NodeInfo, boot_id: &str) -> RegisterOutcome {
        self.observe(Nudge::None, |core, now| {
            core.register(now, id, info, boot_id)
        })
    }

    /// Input: a heartbeat and its VM reports; returns what the node is told.
    /// Blocks its thread until the decision is written (tests; the gRPC
    /// service awaits [`Controller::heartbeat_from`] instead).
    pub fn heartbeat(
        &self,
        id: &NodeId,
        boot_id: &str,
        sequence: u64,
        vms: Vec<VmObservation>,
    ) -> HeartbeatReply {
        self.metrics.heartbeat(vms.len());
        let beat = fabric_core::Beat::complete(sequence, vms);
        let decision = heartbeat_decision(id, boot_id, beat, None);
        let made = self.decide(Save::IfChanged, Nudge::None, decision);
        let (reply, identity) = made.unwrap_or_else(|e| unreachable!("a heartbeat: {e}"));
        self.heartbeat_reply(reply, identity).0
    }

    /// Input: a heartbeat with what its host remembers of the controller it
    /// last obeyed; returns, once the decision is written, what the node is
    /// told and whose state (the identity the desired set comes from).
    pub async fn heartbeat_from(
        &self,
        id: &NodeId,
        boot_id: &str,
        beat: fabric_core::Beat,
        memory: Option<HostMemory>,
    ) -> (HeartbeatReply, ClusterIdentity) {
        self.metrics.heartbeat(beat.vms.len());
        let decision = heartbeat_decision(id, boot_id, beat, memory);
        let made = self
            .decide_async(Save::IfChanged, Nudge::None, decision)
            .await;
        let (reply, identity) = made.unwrap_or_else(|e| unreachable!("a heartbeat: {e}"));
        self.heartbeat_reply(reply, identity)
    }

    /// A written heartbeat decision's reply: HOLD while decisions are held,
    /// and only a generation on disk.
    fn heartbeat_reply(
        &self,
        mut reply: HeartbeatReply,
        mut identity: ClusterIdentity,
    ) -> (HeartbeatReply, ClusterIdentity) {
        // The core's generation may be a batch still being written, or one
        // whose write failed (the reply is then HOLD).
        identity.generation = identity.generation.min(self.durable_generation());
        if self.held().is_some() && reply.outcome == HeartbeatOutcome::Accepted {
            // The desired set may rest on decisions not yet saved.
            reply = HeartbeatReply {
                outcome: HeartbeatOutcome::Hold,
                desired: Vec::new(),
                desired_digest: 0,
                desired_unchanged: false,
                target: None,
                ..reply
            };
        }
        // Only these carry a desired set (listed, or "unchanged").
        if matches!(
            reply.outcome,
            HeartbeatOutcome::Accepted | HeartbeatOutcome::Stale
        ) {
            self.metrics.desired_set(reply.desired_unchanged);
        }
        (reply, identity)
    }

    fn secrets(&self) -> MutexGuard<'_, SecretStore> {
        self.secrets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Input: create or rotate a deployment; returns its instances, each with
    /// the state status shows for it.
    pub fn deploy(
        &self,
        deployment: ValidatedDeployment,
    ) -> Result<(DeployOutcome, Vec<(RoleInstance, InstanceState)>), ControllerError> {
        let name = deployment.spec.name.clone();
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let (outcome, events) = core.deploy(now, deployment.spec)?;
            let mut secrets = self.secrets();
            for (role, certs) in deployment.secrets {
                secrets.put(&name, &role, certs);
            }
            let instances = core
                .instances()
                .filter(|i| i.id.deployment == name)
                .map(|i| (i.clone(), core.status_of(i)))
                .collect();
            Ok(((outcome, instances), events))
        })
    }

    /// Input: set a role's instance count; returns the role's instances.
    pub fn scale(
        &self,
        deployment: &str,
        role: &str,
        count: u32,
    ) -> Result<Vec<(RoleInstance, InstanceState)>, ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let events = core.scale(now, deployment, role, count)?;
            let instances = core
                .instances()
                .filter(|i| i.id.deployment.as_str() == deployment && i.id.role.as_str() == role)
                .map(|i| (i.clone(), core.status_of(i)))
                .collect();
            Ok((instances, events))
        })
    }

    /// Input: delete a deployment (and forget its certificates).
    pub fn delete(&self, deployment: &str) -> Result<(), ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let event = core.delete(now, deployment)?;
            if let Ok(name) = fabric_core::Name::parse("deployment", deployment) {
                self.secrets().remove_deployment(&name);
            }
            Ok(((), vec![event]))
        })
    }

    /// The certificates of VM `vm`, for the node it is assigned to only.
    /// A read: it decides nothing and changes nothing.
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

    /// Input: a host agent reports its server faulty.
    pub fn report_fault(&self, id: &NodeId, report: &FaultReport) -> Result<(), ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            Ok(((), core.report_fault(now, id, report)?))
        })
    }

    /// Input: an operator returns a server from Human Investigate.
    pub fn repair(&self, id: &NodeId, who: &str, why: &str) -> Result<(), ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            Ok(((), core.repair(now, id, who, why)?))
        })
    }

    /// Input: an operator takes the cluster out of HI mode.
    pub fn resume(&self, who: &str) -> Result<(), ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            Ok(((), core.resume(now, who)))
        })
    }

    /// Input: an operator's recovery from state-lost mode; returns what was
    /// done, in words.
    pub fn recover(
        &self,
        how: fabric_core::Recovery,
        who: &str,
    ) -> Result<String, ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let events = core.recover(now, how, who)?;
            let summary = events.first().map(|e| e.reason.clone()).unwrap_or_default();
            Ok((summary, events))
        })
    }

    /// Input: an operator flips a graceful-degradation switch.
    pub fn set_switch(
        &self,
        switch: fabric_core::Switch,
        on: bool,
        who: &str,
    ) -> Result<(), ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            Ok(((), core.set_switch(now, switch, on, who)))
        })
    }

    /// Input: an operator adds a package whose artifacts the shell has
    /// stored and verified. Returns the event, or `None` if it was there.
    pub fn add_package(
        &self,
        manifest: fabric_core::Manifest,
        force: bool,
        who: &str,
    ) -> Result<Option<ClusterEvent>, ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let event = core.add_package(now, manifest, force, who)?;
            Ok((event.clone(), event.into_iter().collect()))
        })
    }

    /// Input: an operator starts a rollout.
    pub fn start_update(
        &self,
        plan: fabric_core::UpdatePlan,
        who: &str,
    ) -> Result<Option<fabric_core::Rollout>, ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let events = core.start_update(now, plan, who)?;
            Ok((core.rollout().cloned(), events))
        })
    }

    /// Input: an operator pauses, resumes or rolls back the rollout.
    pub fn update_action(
        &self,
        action: UpdateAction,
        who: &str,
    ) -> Result<Option<fabric_core::Rollout>, ControllerError> {
        self.decide(Save::Always, Nudge::Hosts, |core, now| {
            let events = match action {
                UpdateAction::Pause => core.pause_update(now, who)?,
                UpdateAction::Resume => core.resume_update(now, who)?,
                UpdateAction::Rollback => core.rollback_update(now, who)?,
                UpdateAction::Abandon => core.abandon_update(now, who)?,
            };
            Ok((core.rollout().cloned(), events))
        })
    }

    /// Input: one round of the prober's results.
    pub fn endpoints_probed(&self, round: Vec<fabric_core::rollout::ProbeResult>) {
        self.observe(Nudge::Hosts, |core, now| {
            ((), core.endpoints_probed(now, round))
        });
    }

    /// Input: time passes. Runs the core's time-driven work (expiry, HI,
    /// healing); returns the monotonic time of the next deadline.
    pub fn tick(&self, late: Duration) -> Option<Duration> {
        self.observe(Nudge::Hosts, |core, now| {
            let events = core.tick_late(now, late);
            (core.next_deadline(now), events)
        })
    }

    /// Resolves when a decision may have changed what the tick loop should
    /// do next (a new deadline, or healing with work to do).
    pub(crate) async fn woken(&self) {
        self.wake.notified().await
    }
}

/// What an operator may do to a rollout in progress.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpdateAction {
    Pause,
    Resume,
    Rollback,
    Abandon,
}

/// Whether a decision may change what servers should do, so that their
/// WatchDesired streams look again.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Nudge {
    Hosts,
    /// Registrations and heartbeats: what they change is the caller's own
    /// reply.
    None,
}

/// A heartbeat, as the core decides it: what the host remembers first
/// (state-lost evidence), then the heartbeat and its VM reports. A
/// heartbeat changes what its own server hears in the reply, and
/// observations that change nobody's desired set: no nudge.
#[allow(clippy::type_complexity)]
fn heartbeat_decision<'a>(
    id: &'a NodeId,
    boot_id: &'a str,
    beat: fabric_core::Beat,
    memory: Option<HostMemory>,
) -> impl FnOnce(
    &mut FabricCore,
    Moment,
) -> Result<((HeartbeatReply, ClusterIdentity), Vec<ClusterEvent>), CoreError>
+ 'a {
    move |core, now| {
        let mut events = core.host_memory(now, id, memory, &beat.vms, beat.complete);
        let (reply, more) = core.heartbeat_with(now, id, boot_id, beat);
        events.extend(more);
        Ok(((reply, core.identity().clone()), events))
    }
}

/// What is left of a decision once it is made: wait for its batch, then
/// wake the tick loop and nudge its servers.
struct After {
    wait_for: Option<u64>,
    changed: bool,
    dirty: Option<DesiredDirty>,
}

/// Whether a decision must be saved before it is acted on.
#[derive(Clone, Copy)]
enum Save {
    /// Someone waits on this decision: it is saved or refused.
    Always,
    /// Nobody waits (heartbeats, ticks): saved when it raised events.
    IfChanged,
}

#[cfg(test)]
#[path = "save_failure_tests.rs"]
mod save_failure_tests;
