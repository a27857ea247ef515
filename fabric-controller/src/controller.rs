//! [`Controller`]: the core behind a lock, plus the clock and event fan-out.
//!
//! Every RPC handler and background loop goes through these few methods. Each
//! one reads the clock, calls one core method under the lock (never across an
//! `.await`), then publishes whatever events the core raised: to the tracing
//! log and to live `WatchEvents` subscribers.

use crate::core::{
    Clock, ClusterEvent, CoreError, FabricCore, HeartbeatOutcome, NodeId, NodeInfo, RegisterOutcome,
};
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::{Notify, broadcast, watch};

/// Shared controller state.
pub struct Controller {
    cluster: String,
    core: Mutex<FabricCore>,
    clock: Arc<dyn Clock>,
    events: broadcast::Sender<ClusterEvent>,
    /// Wakes the expiry loop when a deadline may have moved earlier.
    pub(crate) expiry_changed: Notify,
    /// Becomes true when the server starts shutting down, so long-lived
    /// streams (WatchEvents) end and graceful shutdown can complete.
    closing: watch::Sender<bool>,
}

impl Controller {
    pub fn new(cluster: String, core: FabricCore, clock: Arc<dyn Clock>) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self {
            cluster,
            core: Mutex::new(core),
            clock,
            events,
            expiry_changed: Notify::new(),
            closing: watch::channel(false).0,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
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
        let (outcome, events) = self.read().register(now, id, info, boot_id);
        self.publish(events);
        self.expiry_changed.notify_one();
        outcome
    }

    pub fn heartbeat(&self, id: &NodeId, boot_id: &str, sequence: u64) -> HeartbeatOutcome {
        let now = self.clock.now();
        let (outcome, events) = self.read().heartbeat(now, id, boot_id, sequence);
        if !events.is_empty() {
            self.expiry_changed.notify_one();
        }
        self.publish(events);
        outcome
    }

    pub fn report_fault(&self, id: &NodeId, reason: &str, version: &str) -> Result<(), CoreError> {
        let now = self.clock.now();
        let event = self.read().report_fault(now, id, reason, version)?;
        self.publish(vec![event]);
        Ok(())
    }

    /// Runs expiry now; returns the monotonic time of the next deadline.
    pub fn expire(&self) -> Option<std::time::Duration> {
        let now = self.clock.now();
        let mut core = self.read();
        let events = core.expire(now);
        let next = core.next_expiry();
        drop(core);
        self.publish(events);
        next
    }
}
