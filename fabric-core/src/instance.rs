//! Role instances and what host agents report about the VMs running them.

use super::clock::Moment;
use super::deployment::InstanceId;
use super::node::NodeId;
use std::fmt;

/// Where a role instance is in its life, as far as the controller knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum InstanceState {
    /// Not placed on any server (no capacity); the detail says why.
    Pending,
    /// Placed; the host agent has not reported its VM yet, or the guest agent
    /// has not connected.
    Starting,
    /// The guest agent presented its transfer certificate and got its secrets.
    Provisioned,
    /// The role's HTTPS endpoint is serving.
    Running,
    /// The host agent is reinitializing its VM (new incarnation).
    Reinitializing,
    /// Its server is Unresponsive: whatever was last reported may no longer
    /// be true. Shown, never saved: see [`crate::FabricCore::status_of`].
    Unknown,
    /// Its server is in Human Investigate and healing has not moved it yet
    /// (healing is stopped, or waits for room). Shown, never saved.
    Lost,
}

impl InstanceState {
    /// Every state, in lifecycle order (metrics, filters).
    pub const ALL: [InstanceState; 7] = [
        InstanceState::Pending,
        InstanceState::Starting,
        InstanceState::Provisioned,
        InstanceState::Running,
        InstanceState::Reinitializing,
        InstanceState::Unknown,
        InstanceState::Lost,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            InstanceState::Pending => "Pending",
            InstanceState::Starting => "Starting",
            InstanceState::Provisioned => "Provisioned",
            InstanceState::Running => "Running",
            InstanceState::Reinitializing => "Reinitializing",
            InstanceState::Unknown => "Unknown",
            InstanceState::Lost => "Lost",
        }
    }
}

impl fmt::Display for InstanceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One role instance: what the controller decided for it (its [`Intent`])
/// and what the host agent last reported about the VM running its current
/// incarnation (its [`Observation`]). The two are kept apart, with private
/// fields, so that a new incarnation cannot carry an old VM's pid, endpoint
/// or transfer certificate: [`RoleInstance::reincarnate`] drops the
/// observation by construction.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "saved::SavedInstance", into = "saved::SavedInstance")]
pub struct RoleInstance {
    pub id: InstanceId,
    intent: Intent,
    observed: Option<Observation>,
}

/// What the controller decided: where the instance runs and which
/// incarnation. Changed only by the controller's own decisions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Intent {
    node: Option<NodeId>,
    /// Highest incarnation assigned or reported. The controller never asks
    /// for a lower one.
    incarnation: u64,
    /// Set while service healing has moved this instance and it is not yet
    /// Running at its new home: when the heal started and where from.
    healing: Option<Healing>,
    /// Why the controller placed it so, shown until the host reports.
    note: String,
}

/// What the host agent reported about the VM of the current incarnation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Observation {
    state: InstanceState,
    pid: u32,
    endpoint: String,
    detail: String,
    transfer_cert_fingerprint: String,
}

impl RoleInstance {
    /// A new instance placed on `node`, at incarnation 1.
    pub(crate) fn placed(id: InstanceId, node: NodeId) -> Self {
        Self {
            id,
            intent: Intent {
                node: Some(node),
                incarnation: 1,
                healing: None,
                note: String::new(),
            },
            observed: None,
        }
    }

    /// The server the controller placed it on; `None` while Pending.
    pub fn node(&self) -> Option<&NodeId> {
        self.intent.node.as_ref()
    }

    pub fn incarnation(&self) -> u64 {
        self.intent.incarnation
    }

    /// The heal in progress, if service healing moved it.
    pub fn healing(&self) -> Option<&Healing> {
        self.intent.healing.as_ref()
    }

    /// The server service healing is moving this instance from, if it is.
    pub fn healing_from(&self) -> Option<&NodeId> {
        self.healing().and_then(|h| h.from.as_ref())
    }

    /// Pending without a server; else what its host last reported, or
    /// Starting before any report about this incarnation.
    pub fn state(&self) -> InstanceState {
        match (&self.intent.node, &self.observed) {
            (None, _) => InstanceState::Pending,
            (Some(_), None) => InstanceState::Starting,
            (Some(_), Some(o)) => o.state,
        }
    }

    /// The role's endpoint as its host reported it; empty until then.
    pub fn endpoint(&self) -> &str {
        self.observed.as_ref().map_or("", |o| o.endpoint.as_str())
    }

    /// The guest agent's pid as its host reported it; 0 until then.
    pub fn pid(&self) -> u32 {
        self.observed.as_ref().map_or(0, |o| o.pid)
    }

    /// What its host said last; before any report, why the controller put
    /// it where it is. Cleared when the host reports nothing to say.
    pub fn detail(&self) -> &str {
        match &self.observed {
            Some(o) => &o.detail,
            None => &self.intent.note,
        }
    }

    pub fn transfer_cert_fingerprint(&self) -> &str {
        self.observed
            .as_ref()
            .map_or("", |o| o.transfer_cert_fingerprint.as_str())
    }

    /// Whether it has been moved by healing and is not Running yet.
    pub fn healing_in_flight(&self) -> bool {
        self.intent.healing.is_some() && self.intent.node.is_some()
    }

    /// Service healing gives it a new incarnation on `to`. Nothing the old
    /// VM reported survives. The heal's start and origin are kept across
    /// repeated moves, so "healed after" counts from when it was first lost.
    pub(crate) fn reincarnate(&mut self, now: Moment, to: NodeId, note: String) -> Option<NodeId> {
        let from = self.intent.node.take();
        let healing = self.intent.healing.take();
        self.intent = Intent {
            node: Some(to),
            incarnation: self.intent.incarnation + 1,
            healing: Some(Healing {
                since: healing.as_ref().map_or(now, |h| h.since),
                from: from.clone().or_else(|| healing.and_then(|h| h.from)),
            }),
            note,
        };
        self.observed = None;
        from
    }

    /// No server can take it: it waits, Pending, with no VM anywhere.
    /// Returns the server it was taken off.
    pub(crate) fn unplace(&mut self, now: Moment, note: String) -> Option<NodeId> {
        let from = self.intent.node.take();
        self.intent.healing = Some(Healing {
            since: self.intent.healing.as_ref().map_or(now, |h| h.since),
            from: from.clone(),
        });
        self.intent.note = note;
        self.observed = None;
        from
    }

    /// A rollout restarts it where it is, at the next incarnation, so its new
    /// VM starts on the server's new guest agent. Nothing the old VM
    /// reported survives; a heal in progress stays in progress.
    pub(crate) fn restart_in_place(&mut self, note: String) {
        self.intent.incarnation += 1;
        self.intent.note = note;
        self.observed = None;
    }

    /// The host agent started a higher incarnation by itself (it
    /// reinitialized the VM): the controller follows, never goes back.
    pub(crate) fn follow_incarnation(&mut self, incarnation: u64) {
        if incarnation > self.intent.incarnation {
            self.intent.incarnation = incarnation;
            self.observed = None;
        }
    }

    /// Records what the host reported about the current incarnation.
    /// Returns whether the observation differs from the one before (most
    /// heartbeats repeat what is known, and need no save).
    pub(crate) fn observe(&mut self, report: VmObservation, state: InstanceState) -> bool {
        debug_assert_eq!(report.incarnation, self.intent.incarnation);
        let observed = Some(Observation {
            state,
            pid: report.pid,
            endpoint: report.endpoint,
            detail: report.detail,
            transfer_cert_fingerprint: report.transfer_cert_fingerprint,
        });
        let changed = observed != self.observed;
        self.observed = observed;
        changed
    }

    /// The heal, if any, is over: the instance runs at its new home.
    pub(crate) fn finish_healing(&mut self) -> Option<Healing> {
        self.intent.healing.take()
    }

    /// After a controller restart monotonic readings mean nothing: a heal in
    /// progress counts from `now`.
    pub(crate) fn rebase(&mut self, now: Moment) {
        if let Some(h) = self.intent.healing.as_mut() {
            h.since.mono = now.mono;
        }
    }
}

/// An instance being healed.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Healing {
    pub since: super::clock::Moment,
    pub from: Option<NodeId>,
}

/// The saved form of a role instance: one flat record, as state files have
/// always held it, so a controller restored from an older file reads it.
mod saved {
    use super::*;

    #[derive(serde::Serialize, serde::Deserialize)]
    pub(super) struct SavedInstance {
        id: InstanceId,
        node: Option<NodeId>,
        incarnation: u64,
        state: InstanceState,
        endpoint: String,
        pid: u32,
        detail: String,
        transfer_cert_fingerprint: String,
        healing: Option<Healing>,
    }

    impl From<RoleInstance> for SavedInstance {
        fn from(i: RoleInstance) -> Self {
            let state = i.state();
            let (endpoint, pid, detail, transfer_cert_fingerprint) = match i.observed {
                Some(o) => (o.endpoint, o.pid, o.detail, o.transfer_cert_fingerprint),
                None => (String::new(), 0, i.intent.note, String::new()),
            };
            Self {
                id: i.id,
                node: i.intent.node,
                incarnation: i.intent.incarnation,
                state,
                endpoint,
                pid,
                detail,
                transfer_cert_fingerprint,
                healing: i.intent.healing,
            }
        }
    }

    impl From<SavedInstance> for RoleInstance {
        fn from(s: SavedInstance) -> Self {
            // A Starting instance with no pid was never reported on.
            let reported = match s.state {
                InstanceState::Pending => false,
                InstanceState::Starting => s.pid != 0,
                _ => s.node.is_some(),
            };
            let (observed, note) = if reported {
                (
                    Some(Observation {
                        state: s.state,
                        pid: s.pid,
                        endpoint: s.endpoint,
                        detail: s.detail,
                        transfer_cert_fingerprint: s.transfer_cert_fingerprint,
                    }),
                    String::new(),
                )
            } else {
                (None, s.detail)
            };
            Self {
                id: s.id,
                intent: Intent {
                    node: s.node,
                    incarnation: s.incarnation,
                    healing: s.healing,
                    note,
                },
                observed,
            }
        }
    }
}

/// A VM state as a host agent reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VmState {
    Starting,
    Provisioned,
    Running,
    Reinitializing,
    Stopped,
}

/// One VM report from a host agent's heartbeat, validated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VmObservation {
    pub id: InstanceId,
    pub incarnation: u64,
    pub state: VmState,
    pub pid: u32,
    pub endpoint: String,
    pub detail: String,
    pub transfer_cert_fingerprint: String,
}

/// A VM the controller wants a server to run.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct VmAssignment {
    pub id: InstanceId,
    pub incarnation: u64,
    pub secrets_version: String,
    /// The guest agent the VM runs.
    pub guest: crate::deployment::Guest,
}
