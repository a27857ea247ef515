//! What a heartbeat need not repeat: VM reports the controller already
//! accepted, and a desired set it already sent.
//!
//! A server with 20 VMs heartbeating every second repeats 20 unchanged
//! reports and hears 20 unchanged assignments back almost every time; at
//! 5,000 servers that repetition was most of the controller's work
//! (docs/performance.md). So a heartbeat carries the reports that changed
//! since the controller last accepted one, and names the desired set it
//! runs by, which the controller then does not send again.
//!
//! Correctness rests on one rule: a report counts as known to the
//! controller only when a heartbeat carrying it was ACCEPTED. Until then it
//! stays in every heartbeat (a failed call, a STALE or HOLD answer change
//! nothing: sending it again is harmless if the controller did get it). A
//! controller that may have lost what it accepted (it restarted, a replica
//! took over, it moved the server between states) asks for every VM, and
//! after registering the host sends every VM unasked. Every
//! `complete_every` heartbeats it does so anyway: a controller whose idea
//! of this server drifted for a reason nobody foresaw is put right within
//! that many heartbeats. A failed call does not make the next heartbeat
//! complete: on an overloaded controller, timeouts turning small heartbeats
//! into full ones would feed the overload.

use fabric_proto::v1 as pb;
use std::collections::HashMap;

/// The VM reports the controller has accepted, and when to send them all.
#[derive(Debug)]
pub struct ReportDelta {
    /// What the controller accepted last, per VM.
    accepted: HashMap<String, pb::VmReport>,
    /// The next heartbeat reports every VM.
    complete_next: bool,
    /// Heartbeats since the last complete one.
    since_complete: u32,
    complete_every: u32,
}

/// One heartbeat's reports, as [`ReportDelta::prepare`] chose them.
#[derive(Debug)]
pub struct Prepared {
    /// Every VM, or only those whose report changed.
    pub reports: Vec<pb::VmReport>,
    pub changed_only: bool,
}

impl ReportDelta {
    /// `complete_every`: report every VM at least once per that many
    /// heartbeats (1: always, as hosts without delta reports did).
    pub fn new(complete_every: u32) -> Self {
        Self {
            accepted: HashMap::new(),
            complete_next: true,
            since_complete: 0,
            complete_every: complete_every.max(1),
        }
    }

    /// Chooses what the next heartbeat reports of `all`, every VM this host
    /// runs now.
    pub fn prepare(&mut self, all: Vec<pb::VmReport>) -> Prepared {
        self.since_complete += 1;
        if self.complete_next || self.since_complete >= self.complete_every {
            return Prepared {
                reports: all,
                changed_only: false,
            };
        }
        let mut known = 0;
        let reports: Vec<pb::VmReport> = all
            .iter()
            .filter(|r| match self.accepted.get(&r.vm_id) {
                Some(last) => {
                    known += 1;
                    last != *r
                }
                None => true,
            })
            .cloned()
            .collect();
        // A VM gone from the host needs no word: the controller ignores
        // absence, and learns what runs from what is reported. Its entry
        // goes, so that a VM of that name that comes back is reported even
        // if its first report equals the last one of the old. (Counted
        // above, so a heartbeat where none went costs nothing more.)
        if known < self.accepted.len() {
            let present: std::collections::HashSet<&str> =
                all.iter().map(|r| r.vm_id.as_str()).collect();
            self.accepted.retain(|id, _| present.contains(id.as_str()));
        }
        Prepared {
            reports,
            changed_only: true,
        }
    }

    /// The heartbeat carrying `sent` was ACCEPTED; `complete_asked`: the
    /// controller asks for every VM next time.
    pub fn accepted(&mut self, sent: Prepared, complete_asked: bool) {
        if !sent.changed_only {
            self.accepted.clear();
            self.since_complete = 0;
        }
        for report in sent.reports {
            self.accepted.insert(report.vm_id.clone(), report);
        }
        self.complete_next = complete_asked;
    }

    /// The host registered (again): the controller's picture of its VMs
    /// starts over, so the next heartbeat reports them all.
    pub fn start_over(&mut self) {
        self.complete_next = true;
    }
}

/// The desired set this host runs by, as the controller identified it.
#[derive(Debug, Default)]
pub struct KnownDesired {
    digest: u64,
    set: Vec<pb::VmAssignment>,
}

impl KnownDesired {
    /// The digest to name in the next heartbeat (0: none).
    pub fn digest(&self) -> u64 {
        self.digest
    }

    /// The set to reconcile with, from an obeyed ACCEPTED or STALE reply:
    /// the reply's own, or the known one when the controller says it is
    /// unchanged. `None` when the controller says "unchanged" of a set this
    /// host does not hold (a reply to another heartbeat's digest): nothing
    /// is reconciled, and the next heartbeat names none.
    pub fn resolve<'a>(
        &'a mut self,
        reply: &'a pb::HeartbeatResponse,
    ) -> Option<&'a [pb::VmAssignment]> {
        if reply.desired_unchanged {
            if self.digest == 0 || reply.desired_digest != self.digest {
                self.forget();
                return None;
            }
            return Some(&self.set);
        }
        self.digest = reply.desired_digest;
        self.set.clone_from(&reply.desired_vms);
        Some(&reply.desired_vms)
    }

    /// The host did not obey the last reply (or cannot tell what it runs
    /// by): the next heartbeat asks for the whole set.
    pub fn forget(&mut self) {
        self.digest = 0;
        self.set.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(vm: &str, state: pb::VmState) -> pb::VmReport {
        pb::VmReport {
            vm_id: vm.into(),
            state: state as i32,
            incarnation: 1,
            ..Default::default()
        }
    }

    fn ids(p: &Prepared) -> Vec<&str> {
        p.reports.iter().map(|r| r.vm_id.as_str()).collect()
    }

    #[test]
    fn only_changed_reports_follow_an_accepted_complete_one() {
        let mut delta = ReportDelta::new(60);
        let all = vec![
            report("a", pb::VmState::VmRunning),
            report("b", pb::VmState::VmStarting),
        ];
        let first = delta.prepare(all.clone());
        assert!(!first.changed_only, "the first heartbeat reports every VM");
        delta.accepted(first, false);
        let same = delta.prepare(all.clone());
        assert!(same.changed_only && same.reports.is_empty());
        delta.accepted(same, false);
        let moved = vec![
            report("a", pb::VmState::VmRunning),
            report("b", pb::VmState::VmRunning),
            report("c", pb::VmState::VmStarting),
        ];
        let next = delta.prepare(moved.clone());
        assert_eq!(ids(&next), ["b", "c"]);
        delta.accepted(next, false);
        assert!(delta.prepare(moved).reports.is_empty());
    }

    #[test]
    fn a_vm_that_comes_back_is_reported_even_as_it_was() {
        let mut delta = ReportDelta::new(60);
        let a = report("a", pb::VmState::VmStarting);
        let first = delta.prepare(vec![a.clone()]);
        delta.accepted(first, false);
        // Stopped (no longer assigned), then assigned again: its first
        // report equals the old VM's last, and still goes out.
        let gone = delta.prepare(vec![]);
        delta.accepted(gone, false);
        let back = delta.prepare(vec![a]);
        assert!(back.changed_only);
        assert_eq!(ids(&back), ["a"]);
    }

    #[test]
    fn a_change_stays_until_accepted_and_every_vm_goes_when_asked() {
        let mut delta = ReportDelta::new(60);
        let all = vec![
            report("a", pb::VmState::VmRunning),
            report("b", pb::VmState::VmRunning),
        ];
        let first = delta.prepare(all.clone());
        delta.accepted(first, false);
        // A changed report whose heartbeat failed (or was answered STALE)
        // is not known: it goes again, and only it.
        let changed = vec![
            report("a", pb::VmState::VmReinitializing),
            report("b", pb::VmState::VmRunning),
        ];
        let lost = delta.prepare(changed.clone());
        assert_eq!(ids(&lost), ["a"]);
        let again = delta.prepare(changed.clone());
        assert!(again.changed_only);
        assert_eq!(ids(&again), ["a"]);
        delta.accepted(again, false);
        assert!(delta.prepare(changed.clone()).reports.is_empty());
        // After registering: every VM.
        delta.start_over();
        assert!(!delta.prepare(changed).changed_only);
        // The controller restarted: it asks, and gets every VM.
        let mut delta = ReportDelta::new(60);
        let first = delta.prepare(all.clone());
        delta.accepted(first, true);
        let asked = delta.prepare(all);
        assert!(!asked.changed_only);
        assert_eq!(ids(&asked), ["a", "b"]);
    }

    #[test]
    fn every_vm_is_reported_at_least_once_per_complete_every() {
        let mut delta = ReportDelta::new(3);
        let all = vec![report("a", pb::VmState::VmRunning)];
        let kinds: Vec<bool> = (0..7)
            .map(|_| {
                let p = delta.prepare(all.clone());
                let changed_only = p.changed_only;
                delta.accepted(p, false);
                changed_only
            })
            .collect();
        assert_eq!(kinds, [false, true, true, false, true, true, false]);
    }

    #[test]
    fn an_unchanged_desired_set_is_the_one_held() {
        let assignment = |vm: &str| pb::VmAssignment {
            vm_id: vm.into(),
            incarnation: 1,
            ..Default::default()
        };
        let mut known = KnownDesired::default();
        assert_eq!(known.digest(), 0);
        let full = pb::HeartbeatResponse {
            desired_vms: vec![assignment("a")],
            desired_digest: 7,
            ..Default::default()
        };
        assert_eq!(known.resolve(&full).unwrap().len(), 1);
        assert_eq!(known.digest(), 7);
        let unchanged = pb::HeartbeatResponse {
            desired_unchanged: true,
            desired_digest: 7,
            ..Default::default()
        };
        assert_eq!(known.resolve(&unchanged).unwrap()[0].vm_id, "a");
        // "Unchanged" of another digest is no set at all: nothing is
        // stopped on it, and the next heartbeat asks for the set.
        let other = pb::HeartbeatResponse {
            desired_unchanged: true,
            desired_digest: 8,
            ..Default::default()
        };
        assert!(known.resolve(&other).is_none());
        assert_eq!(known.digest(), 0);
        // An empty set sent in full is "run nothing".
        let empty = pb::HeartbeatResponse {
            desired_digest: 9,
            ..Default::default()
        };
        assert_eq!(known.resolve(&empty).unwrap().len(), 0);
    }
}
