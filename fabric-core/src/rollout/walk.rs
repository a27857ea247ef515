//! The walk itself: release a step's servers, reincarnate their instances
//! once they run the target, hold the gate, go on or stop. Driven by
//! [`FabricCore::tick`] and by each endpoint probe the shell reports.

use super::gate;
use super::{Direction, Probe, Rollout, RolloutStatus, StopReason, Target};
use crate::clock::Moment;
use crate::cluster::ClusterMode;
use crate::deployment::InstanceId;
use crate::events::{ClusterEvent, EventKind};
use crate::fabric::{FabricCore, secs};
use crate::node::NodeId;
use crate::software::Version;
use std::time::Duration;

impl FabricCore {
    /// The rollout, running, paused or finished (the last one is kept to be
    /// shown).
    pub fn rollout(&self) -> Option<&Rollout> {
        self.software.rollout.as_ref()
    }

    /// The package `node` should end up on in this walk: the plan's going
    /// forward, its previous one going back (`None`: base).
    pub fn wanted_package(&self, rollout: &Rollout, node: &NodeId) -> Option<Version> {
        match rollout.direction {
            Direction::Forward => Some(rollout.plan.package.clone()),
            Direction::Back => rollout.previous.get(node).cloned().flatten(),
        }
    }

    /// Whether the brakes let any server be told to change now.
    fn updates_may_run(&self) -> bool {
        self.cluster.mode == ClusterMode::Normal
            && self.cluster.switches.updates
            && self.state_lost.is_none()
    }

    /// What `node` is told to run in its heartbeat reply: only a released
    /// server of a running rollout, only while the brakes are off, and only
    /// if it does not run it already. Otherwise `None`: keep what you run.
    pub fn target_software(&self, node: &NodeId) -> Option<Target> {
        let r = self.software.rollout.as_ref()?;
        if r.status != RolloutStatus::Running
            || !r.released.contains(node)
            || !self.updates_may_run()
        {
            return None;
        }
        let wanted = self.wanted_package(r, node);
        if self.nodes.get(node)?.info.software.package == wanted {
            return None;
        }
        match wanted {
            Some(v) => self
                .software
                .packages
                .get(&v)
                .map(|m| Target::Package(Box::new(m.clone()))),
            None => Some(Target::Base),
        }
    }

    /// The role endpoints the shell should probe now: instances of the
    /// current step of a rollout walking forward that reported an endpoint.
    pub fn rollout_probe_targets(&self) -> Vec<ProbeTarget> {
        let Some(r) = self.software.rollout.as_ref() else {
            return Vec::new();
        };
        let Some(step) = r.current_step() else {
            return Vec::new();
        };
        if r.status != RolloutStatus::Running || r.direction != Direction::Forward {
            return Vec::new();
        }
        self.instances
            .values()
            .filter(|i| i.node().is_some_and(|n| step.nodes.contains(n)))
            .filter(|i| !i.endpoint().is_empty())
            .map(|i| ProbeTarget {
                id: i.id.clone(),
                incarnation: i.incarnation(),
                // Where a client of the server's network would dial it.
                endpoint: crate::node::probe_endpoint(
                    i.endpoint(),
                    i.node()
                        .and_then(|n| self.nodes.get(n))
                        .and_then(|n| n.info.role_probe_host.as_deref()),
                ),
                fingerprints: self
                    .deployments
                    .get(&i.id.deployment)
                    .and_then(|d| d.role(&i.id.role))
                    .map(|r| {
                        r.certificates
                            .iter()
                            .map(|c| c.fingerprint.clone())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect()
    }

    /// Input: one round of the shell's probes of the targets it was given,
    /// each from outside its server. The gate is looked at once per round,
    /// not once per endpoint.
    pub fn endpoints_probed(&mut self, now: Moment, round: Vec<ProbeResult>) -> Vec<ClusterEvent> {
        if let Some(r) = self.software.rollout.as_mut() {
            for p in round {
                r.probes.insert(
                    p.id,
                    Probe {
                        incarnation: p.incarnation,
                        ok: p.ok,
                        detail: crate::events::bounded(&p.detail, 200),
                        at: now.mono,
                    },
                );
            }
        }
        self.advance_rollout(now)
    }

    /// One look at the rollout: brakes, release, reincarnation, gate.
    pub(crate) fn advance_rollout(&mut self, now: Moment) -> Vec<ClusterEvent> {
        let Some(mut r) = self.software.rollout.take() else {
            return Vec::new();
        };
        let mut events = Vec::new();
        if r.status == RolloutStatus::Running {
            if self.cluster.mode == ClusterMode::HumanInvestigate {
                events.push(self.stop(now, &mut r, StopReason::ClusterHumanInvestigate));
            } else if !self.cluster.switches.updates {
                events.push(self.stop(now, &mut r, StopReason::UpdatesOff));
            } else if self.state_lost.is_none() {
                events.extend(self.walk(now, &mut r));
            }
        }
        self.software.rollout = Some(r);
        events
    }

    fn walk(&mut self, now: Moment, r: &mut Rollout) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        while r.status == RolloutStatus::Running {
            let Some(step) = r.current_step().cloned() else {
                events.push(self.finish(now, r));
                break;
            };
            if r.released.is_empty() {
                r.released = step.nodes.clone();
                r.step_started = now;
                events.push(self.events.record(
                    now,
                    EventKind::UpdateProgress,
                    None,
                    format!(
                        "update {} to {}: {} started, releasing {}",
                        r.id,
                        self.walk_target(r),
                        r.position(),
                        list(&step.nodes)
                    ),
                ));
            }
            if r.plan.reincarnate {
                events.extend(self.reincarnate_updated(now, r));
            }
            let verdict = gate::evaluate(self, r);
            r.gate = match &verdict.problem {
                Some(p) => format!("{}; waiting: {p}", verdict.summary),
                None => verdict.summary.clone(),
            };
            let stable = match r.direction {
                Direction::Forward => r
                    .plan
                    .gate_stable
                    .unwrap_or(self.config.rollout_gate_stable),
                Direction::Back => Duration::ZERO,
            };
            if verdict.healthy {
                let since = *r.healthy_since.get_or_insert(now.mono);
                if now.since(since) < stable {
                    break;
                }
                events.push(self.events.record_timed(
                    now,
                    EventKind::UpdateProgress,
                    None,
                    format!(
                        "update {} to {}: {} passed its gate ({}, held {})",
                        r.id,
                        self.walk_target(r),
                        r.position(),
                        verdict.summary,
                        secs(stable)
                    ),
                    Some(now.since(r.step_started.mono)),
                ));
                r.done.extend(step.nodes.iter().cloned());
                r.step += 1;
                r.released.clear();
                r.healthy_since = None;
                r.probes.clear();
                continue;
            }
            r.healthy_since = None;
            let timeout = r
                .plan
                .gate_timeout
                .unwrap_or(self.config.rollout_gate_timeout);
            if r.direction == Direction::Forward && now.since(r.step_started.mono) >= timeout {
                let why = format!(
                    "{} not healthy within {} ({}): {}",
                    r.position(),
                    secs(timeout),
                    verdict.summary,
                    verdict.problem.unwrap_or_default()
                );
                match r.plan.on_failure {
                    super::OnFailure::Pause => {
                        events.push(self.stop(now, r, StopReason::GateFailed(why)))
                    }
                    super::OnFailure::Rollback => {
                        events.push(self.begin_rollback(
                            now,
                            r,
                            &format!("health gate failed: {why}"),
                        ));
                        continue;
                    }
                }
            }
            break;
        }
        events
    }

    /// Reincarnates, in place, the instances of each released server that
    /// now runs the walk's target: their new VMs start on its guest agent.
    fn reincarnate_updated(&mut self, now: Moment, r: &mut Rollout) -> Vec<ClusterEvent> {
        let updated: Vec<NodeId> = r
            .released
            .iter()
            .filter(|n| {
                self.nodes
                    .get(*n)
                    .is_some_and(|rec| rec.info.software.package == self.wanted_package(r, n))
            })
            .cloned()
            .collect();
        let mut events = Vec::new();
        for node in updated {
            let label = self
                .nodes
                .get(&node)
                .map(|n| n.info.software.guest_agent.clone())
                .unwrap_or_default();
            let ids: Vec<InstanceId> = self
                .instances
                .values()
                .filter(|i| i.node() == Some(&node) && !r.reincarnated.contains_key(&i.id))
                .map(|i| i.id.clone())
                .collect();
            for id in ids {
                let Some(i) = self.instances.get_mut(&id) else {
                    continue;
                };
                let from = i.incarnation();
                i.restart_in_place(format!("update {}: restarted on guest agent {label}", r.id));
                r.reincarnated.insert(id.clone(), i.incarnation());
                events.push(self.events.record(
                    now,
                    EventKind::InstanceReinitialized,
                    Some(&node),
                    format!(
                        "{id} incarnation {from} -> {}: update {} restarts it on guest agent {label}",
                        from + 1,
                        r.id
                    ),
                ));
            }
        }
        events
    }

    /// Stops the walk where it is.
    pub(super) fn stop(&mut self, now: Moment, r: &mut Rollout, why: StopReason) -> ClusterEvent {
        let text = format!(
            "update {} to {} stopped at {}: {why}; `fabricctl update resume` goes on, \
             `fabricctl update rollback` goes back",
            r.id,
            self.walk_target(r),
            r.position()
        );
        r.status = RolloutStatus::Paused(why);
        r.healthy_since = None;
        self.events
            .record(now, EventKind::UpdateStopped, None, text)
    }

    /// Turns the walk around: the touched steps in reverse, each server back
    /// to the package it had before.
    pub(super) fn begin_rollback(
        &mut self,
        now: Moment,
        r: &mut Rollout,
        why: &str,
    ) -> ClusterEvent {
        let touched: std::collections::BTreeSet<NodeId> =
            r.done.union(&r.released).cloned().collect();
        let upto = (r.step + 1).min(r.steps.len());
        let steps: Vec<super::Step> = r.steps[..upto]
            .iter()
            .rev()
            .map(|s| super::Step {
                label: s.label.clone(),
                nodes: s.nodes.intersection(&touched).cloned().collect(),
            })
            .filter(|s| !s.nodes.is_empty())
            .collect();
        r.direction = Direction::Back;
        r.steps = steps;
        r.step = 0;
        r.released.clear();
        r.reincarnated.clear();
        r.done.clear();
        r.probes.clear();
        r.healthy_since = None;
        r.step_started = now;
        r.status = RolloutStatus::Running;
        self.events.record(
            now,
            EventKind::UpdateRollback,
            None,
            format!(
                "update {} of {} rolls back ({} step(s), {} server(s)): {why}",
                r.id,
                r.plan.package,
                r.steps.len(),
                touched.len()
            ),
        )
    }

    fn finish(&mut self, now: Moment, r: &mut Rollout) -> ClusterEvent {
        r.status = match r.direction {
            Direction::Forward => RolloutStatus::Succeeded,
            Direction::Back => RolloutStatus::RolledBack,
        };
        r.finished = Some(now);
        r.released.clear();
        let took = now.since(r.started.mono);
        self.events.record_timed(
            now,
            EventKind::UpdateFinished,
            None,
            format!(
                "update {} of {} {} after {}",
                r.id,
                r.plan.package,
                match r.direction {
                    Direction::Forward => "succeeded",
                    Direction::Back => "rolled back",
                },
                secs(took)
            ),
            Some(took),
        )
    }

    fn walk_target(&self, r: &Rollout) -> String {
        match r.direction {
            Direction::Forward => r.plan.package.to_string(),
            Direction::Back => "previous packages".into(),
        }
    }

    /// When the walk next has time-driven work: the end of the stable
    /// window, or the gate timeout.
    pub(crate) fn next_rollout_deadline(&self) -> Option<Duration> {
        let r = self.software.rollout.as_ref()?;
        if r.status != RolloutStatus::Running {
            return None;
        }
        match r.healthy_since {
            Some(since) => Some(
                since
                    + match r.direction {
                        Direction::Forward => r
                            .plan
                            .gate_stable
                            .unwrap_or(self.config.rollout_gate_stable),
                        Direction::Back => Duration::ZERO,
                    },
            ),
            None if r.direction == Direction::Forward => Some(
                r.step_started.mono
                    + r.plan
                        .gate_timeout
                        .unwrap_or(self.config.rollout_gate_timeout),
            ),
            None => None,
        }
    }
}

/// One role endpoint to probe, and the certificates it may present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeTarget {
    pub id: InstanceId,
    pub incarnation: u64,
    pub endpoint: String,
    /// SHA-256 fingerprints of the role's deployed certificates.
    pub fingerprints: Vec<String>,
}

/// What one probe of a [`ProbeTarget`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    pub id: InstanceId,
    pub incarnation: u64,
    pub ok: bool,
    /// Why not, when not.
    pub detail: String,
}

/// "host-1, host-2".
fn list(nodes: &std::collections::BTreeSet<NodeId>) -> String {
    nodes
        .iter()
        .map(NodeId::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}
