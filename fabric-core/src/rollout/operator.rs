//! What operators do with packages and rollouts: add a package, start,
//! pause, resume and roll back an update. Each is refused with a reason in
//! the operator's words when it cannot be done, and recorded as an event
//! naming who did it.

use super::{Direction, Rollout, RolloutStatus, Step, StopReason, UpdatePlan};
use crate::CoreError;
use crate::clock::Moment;
use crate::cluster::ClusterMode;
use crate::events::{ClusterEvent, EventKind};
use crate::fabric::FabricCore;
use crate::node::{NodeId, NodeState};
use crate::software::{Manifest, check_artifact};
use std::collections::{BTreeMap, BTreeSet};

impl FabricCore {
    /// The packages this controller holds.
    pub fn packages(&self) -> impl Iterator<Item = &Manifest> {
        self.software.packages.values()
    }

    /// `fabricctl package add`: keeps `manifest` (the shell has already
    /// stored and digest-checked its artifacts). Adding the same manifest
    /// again is a no-op; another one under a known version is refused.
    pub fn add_package(
        &mut self,
        now: Moment,
        manifest: Manifest,
        force: bool,
        who: &str,
    ) -> Result<Option<ClusterEvent>, CoreError> {
        let Some(manifest) = self.admit_package(manifest, force)? else {
            return Ok(None);
        };
        let text = format!(
            "package {} added by {who}: host agent {}, guest agent {}, networking plugin {} \
             (declares host agents {:?}){}",
            manifest.version,
            manifest.host_agent.version,
            manifest.guest_agent.version,
            manifest.plugin.artifact.version,
            manifest.plugin.compatible_host_agents,
            if manifest.forced {
                " - FORCED although its plugin does not declare its host agent"
            } else {
                ""
            }
        );
        self.software
            .packages
            .insert(manifest.version.clone(), manifest);
        Ok(Some(self.events.record(
            now,
            EventKind::PackageAdded,
            None,
            text,
        )))
    }

    /// The checks of [`FabricCore::add_package`], without adding: the shell
    /// asks before it receives a package's bytes. Returns the manifest to
    /// keep (marked forced if it was), or `None` if it is already here.
    pub fn admit_package(
        &self,
        mut manifest: Manifest,
        force: bool,
    ) -> Result<Option<Manifest>, CoreError> {
        for (what, a) in [
            ("host agent", &manifest.host_agent),
            ("guest agent", &manifest.guest_agent),
            ("networking plugin", &manifest.plugin.artifact),
        ] {
            check_artifact(what, a).map_err(CoreError::BadPackage)?;
        }
        if manifest.plugin.compatible_host_agents.is_empty()
            || manifest.plugin.compatible_host_agents.len() > crate::software::MAX_COMPATIBLE
        {
            return Err(CoreError::BadPackage(format!(
                "the networking plugin must declare 1-{} compatible host agent versions",
                crate::software::MAX_COMPATIBLE
            )));
        }
        manifest.forced = false;
        let pairing = manifest.check_own();
        if let Err(e) = &pairing {
            if !force {
                return Err(CoreError::Incompatible(Box::new(e.clone())));
            }
            manifest.forced = true;
        }
        match self.software.packages.get(&manifest.version) {
            Some(known) if *known == manifest => Ok(None),
            Some(_) => Err(CoreError::PackageExists(manifest.version.to_string())),
            None => Ok(Some(manifest)),
        }
    }

    /// `fabricctl update start`: plans the steps and starts the walk.
    pub fn start_update(
        &mut self,
        now: Moment,
        plan: UpdatePlan,
        who: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        if self.state_lost.is_some() {
            return Err(CoreError::StateLost);
        }
        if let Some(r) = &self.software.rollout
            && !r.status.finished()
        {
            return Err(CoreError::UpdateInProgress {
                id: r.id,
                package: r.plan.package.to_string(),
            });
        }
        let manifest = self
            .software
            .packages
            .get(&plan.package)
            .ok_or_else(|| CoreError::NoSuchPackage(plan.package.to_string()))?
            .clone();
        if plan.blast && plan.canary > 0 {
            return Err(CoreError::BadPlan(
                "--blast and --canary exclude each other: a blast updates every server at once"
                    .into(),
            ));
        }
        self.check_brakes()?;
        if !plan.force {
            manifest
                .check_own()
                .map_err(|e| CoreError::Incompatible(Box::new(e)))?;
            // A rollback puts each server back on its previous package:
            // that pairing must hold too, or rolling back repeats 2012.
            for n in self.nodes.values() {
                if let Some(prev) = n
                    .info
                    .software
                    .package
                    .as_ref()
                    .and_then(|v| self.software.packages.get(v))
                {
                    prev.check_own()
                        .map_err(|e| CoreError::Incompatible(Box::new(e)))?;
                }
            }
        }
        let steps = self.plan_steps(&plan);
        let previous: BTreeMap<NodeId, Option<crate::software::Version>> = self
            .nodes
            .values()
            .map(|n| (n.id.clone(), n.info.software.package.clone()))
            .collect();
        let skipped: Vec<String> = self
            .nodes
            .values()
            .filter(|n| n.state == NodeState::HumanInvestigate)
            .map(|n| n.id.to_string())
            .collect();
        self.software.rollouts_started += 1;
        let id = self.software.rollouts_started;
        let servers: usize = steps.iter().map(|s| s.nodes.len()).sum();
        let text = format!(
            "update {id} to {} started by {who}: {servers} server(s) in {} step(s) ({}), gate \
             stable {} / timeout {}, on failure {}{}{}",
            plan.package,
            steps.len(),
            steps
                .iter()
                .map(|s| s.label.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            crate::fabric::secs(plan.gate_stable.unwrap_or(self.config.rollout_gate_stable)),
            crate::fabric::secs(
                plan.gate_timeout
                    .unwrap_or(self.config.rollout_gate_timeout)
            ),
            plan.on_failure.as_str(),
            if plan.force && manifest.check_own().is_err() {
                " - FORCED: its networking plugin does not declare its host agent"
            } else {
                ""
            },
            if skipped.is_empty() {
                String::new()
            } else {
                format!(
                    "; not updated while in Human Investigate: {}",
                    skipped.join(", ")
                )
            }
        );
        self.software.rollout = Some(Rollout {
            id,
            plan,
            started: now,
            direction: Direction::Forward,
            steps,
            step: 0,
            step_started: now,
            healthy_since: None,
            gate: String::new(),
            status: RolloutStatus::Running,
            previous,
            released: BTreeSet::new(),
            reincarnated: BTreeMap::new(),
            probes: BTreeMap::new(),
            done: BTreeSet::new(),
            finished: None,
        });
        let mut events = vec![
            self.events
                .record(now, EventKind::UpdateStarted, None, text),
        ];
        events.extend(self.advance_rollout(now));
        Ok(events)
    }

    /// The steps: a canary group, then each update domain in order; or one
    /// step with every server for a blast. Servers in Human Investigate and
    /// servers already on the package are left out.
    fn plan_steps(&self, plan: &UpdatePlan) -> Vec<Step> {
        let mut eligible: Vec<(u32, NodeId)> = self
            .nodes
            .values()
            .filter(|n| n.state != NodeState::HumanInvestigate)
            .filter(|n| n.info.software.package.as_ref() != Some(&plan.package))
            .map(|n| (n.info.update_domain, n.id.clone()))
            .collect();
        eligible.sort();
        if plan.blast {
            return vec![Step {
                label: "every server at once (blast)".into(),
                nodes: eligible.into_iter().map(|(_, n)| n).collect(),
            }]
            .into_iter()
            .filter(|s| !s.nodes.is_empty())
            .collect();
        }
        let mut steps = Vec::new();
        let canary = (plan.canary as usize).min(eligible.len());
        if canary > 0 {
            steps.push(Step {
                label: format!("canary of {canary} server(s)"),
                nodes: eligible.drain(..canary).map(|(_, n)| n).collect(),
            });
        }
        let mut by_domain: BTreeMap<u32, BTreeSet<NodeId>> = BTreeMap::new();
        for (ud, n) in eligible {
            by_domain.entry(ud).or_default().insert(n);
        }
        steps.extend(by_domain.into_iter().map(|(ud, nodes)| Step {
            label: format!("update domain {ud}"),
            nodes,
        }));
        steps
    }

    /// Refuses while a brake is on.
    fn check_brakes(&self) -> Result<(), CoreError> {
        if self.cluster.mode == ClusterMode::HumanInvestigate {
            return Err(CoreError::UpdatesStopped(
                "the cluster is in HI mode, which stops internally initiated updates; \
                 `fabricctl cluster resume` first"
                    .into(),
            ));
        }
        if !self.cluster.switches.updates {
            return Err(CoreError::UpdatesStopped(
                "the updates switch is off (`fabricctl cluster set updates on`)".into(),
            ));
        }
        Ok(())
    }

    fn active_rollout(&mut self) -> Result<&mut Rollout, CoreError> {
        match self.software.rollout.as_mut() {
            Some(r) if !r.status.finished() => Ok(r),
            Some(r) => Err(CoreError::NoUpdate(format!(
                "update {} already {}",
                r.id,
                r.status.label()
            ))),
            None => Err(CoreError::NoUpdate("no update was ever started".into())),
        }
    }

    /// `fabricctl update pause`.
    pub fn pause_update(&mut self, now: Moment, who: &str) -> Result<Vec<ClusterEvent>, CoreError> {
        let mut r = self.active_rollout()?.clone();
        if let RolloutStatus::Paused(why) = &r.status {
            return Err(CoreError::NoUpdate(format!(
                "update {} is already stopped: {why}",
                r.id
            )));
        }
        let event = self.stop(now, &mut r, StopReason::Operator(who.to_owned()));
        self.software.rollout = Some(r);
        Ok(vec![event])
    }

    /// `fabricctl update resume`: the operator's word that the walk may go
    /// on. Refused while a brake is still on.
    pub fn resume_update(
        &mut self,
        now: Moment,
        who: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        self.check_brakes()?;
        let r = self.active_rollout()?;
        let RolloutStatus::Paused(why) = r.status.clone() else {
            return Err(CoreError::NoUpdate(format!("update {} is running", r.id)));
        };
        r.status = RolloutStatus::Running;
        // A failed gate gets a fresh timeout: the operator looked and says go.
        r.step_started = now;
        r.healthy_since = None;
        let text = format!(
            "update {} resumed by {who} at {} (it had stopped: {why})",
            r.id,
            r.position()
        );
        let mut events = vec![
            self.events
                .record(now, EventKind::UpdateResumed, None, text),
        ];
        events.extend(self.advance_rollout(now));
        Ok(events)
    }

    /// `fabricctl update abandon`: ends a stopped rollout where it stands;
    /// servers keep what they run, and another rollout may start.
    pub fn abandon_update(
        &mut self,
        now: Moment,
        who: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let r = self.active_rollout()?;
        let RolloutStatus::Paused(_) = &r.status else {
            return Err(CoreError::NoUpdate(format!(
                "update {} is running: pause it before abandoning it",
                r.id
            )));
        };
        r.status = RolloutStatus::Abandoned;
        r.finished = Some(now);
        r.released.clear();
        let text = format!(
            "update {} to {} abandoned by {who} at {}: {} server(s) done, the others keep what \
             they run",
            r.id,
            r.plan.package,
            r.position(),
            r.done.len()
        );
        Ok(vec![self.events.record(
            now,
            EventKind::UpdateFinished,
            None,
            text,
        )])
    }

    /// `fabricctl update rollback`: every touched server back to its
    /// previous package, steps in reverse. Brakes hold a rollback too (it
    /// is the fabric changing servers): asked for while one is on, it stops
    /// at once and goes on with `update resume` once the brake is off.
    pub fn rollback_update(
        &mut self,
        now: Moment,
        who: &str,
    ) -> Result<Vec<ClusterEvent>, CoreError> {
        let mut r = self.active_rollout()?.clone();
        if r.direction == Direction::Back {
            return Err(CoreError::NoUpdate(format!(
                "update {} is already rolling back",
                r.id
            )));
        }
        let event = self.begin_rollback(now, &mut r, &format!("asked by {who}"));
        self.software.rollout = Some(r);
        let mut events = vec![event];
        events.extend(self.advance_rollout(now));
        Ok(events)
    }
}
