//! Cluster a's redundant controller under chaos: three replicas fc-a1..3
//! on three etcd members etcd-a1..3, in containers.
//!
//! The faults of a leader: killed; paused (SIGSTOP of the whole container)
//! past its lease, then resumed; cut off from etcd while the hosts still
//! reach it. The faults of its store: one etcd member killed while a server
//! is lost and healed; the etcd majority killed, then started. After each,
//! the suite's usual ground truth (every instance Running exactly once,
//! where placed, serving its certificate) and, for controller faults, that
//! nothing moved or restarted and no node was marked: a new leader gives
//! every server a fresh grace. The failover time of each is printed in the
//! DETECT column. At the end etcd's own revision history must show no write
//! by a deposed leader ([`fabric_tests::etcd_history`]).

use super::*;
use fabric_tests::etcd_history;

/// Cluster a's etcd members: (compose service, client port published here).
const ETCD: [(&str, &str); 3] = [
    ("etcd-a1", "127.0.0.1:7431"),
    ("etcd-a2", "127.0.0.1:7432"),
    ("etcd-a3", "127.0.0.1:7433"),
];
/// The network joining cluster a's controllers to etcd (not to the hosts).
const STORE_NETWORK: &str = "store-a";
/// Cluster a's keys in etcd (docker-compose.yml: FABRIC_CLUSTER a).
const PREFIX: &str = "/fabric/a/";
/// How long the etcd majority stays away: the fault is the absence itself.
const MAJORITY_AWAY: Duration = Duration::from_secs(10);

impl Suite {
    /// Waits for cluster a to answer under a term newer than `old`; the time
    /// since `since`, the new term and its leader.
    fn new_leader(
        &self,
        old: i64,
        since: Instant,
    ) -> Result<(Duration, i64, &'static str), String> {
        let cluster = self.a();
        wait(
            HEAL_LIMIT,
            &format!("a leader newer than term {old}"),
            || {
                let (leader, term) = cluster.leader().ok()?;
                (term > old).then(|| (since.elapsed(), term, leader.service))
            },
        )
    }

    /// Whether `replica` of cluster a answers fabricctl itself.
    fn answers(&self, replica: &'static str) -> bool {
        let Some(r) = self.a().controllers.iter().find(|r| r.service == replica) else {
            return false;
        };
        let endpoint = format!("https://{}", r.grpc);
        self.a()
            .fabricctl(&["--endpoint", &endpoint, "status", "-o", "json"])
            .is_ok()
    }

    /// Waits until `replica` no longer answers (a deposed leader stepped
    /// down); the time since `since`.
    fn stepped_down(&self, replica: &'static str, since: Instant) -> Result<Duration, String> {
        wait(HEAL_LIMIT, &format!("{replica} to stop serving"), || {
            (!self.answers(replica)).then(|| since.elapsed())
        })
    }

    /// The state before a controller fault: placements and the last event.
    fn before_controller_fault(&self) -> Result<(Placement, u64), String> {
        let cluster = self.a();
        let before = placement(&cluster.status()?);
        let last_seq = cluster.events()?.last().map_or(0, |e| e.sequence);
        Ok((before, last_seq))
    }

    /// The leader SIGKILLed: another replica leads within the lease, then
    /// the killed one is started again and follows.
    pub(super) fn kill_leader(&mut self) -> Result<(), String> {
        let (leader, term) = self.a().leader()?;
        let leader = leader.service;
        let (before, last_seq) = self.before_controller_fault()?;
        let t0 = Instant::now();
        self.stack.kill(leader)?;
        let (failover, new_term, now) = self.new_leader(term, t0)?;
        self.stack.start(leader)?;
        let violations = self.unchanged_since(0, &before, last_seq, "the leader's death")?;
        self.record(
            format!("SIGKILL leader {leader}: term {term} -> {new_term} ({now})"),
            0,
            Some(failover),
            None,
            0,
            violations,
        );
        Ok(())
    }

    /// The leader's container paused (every process SIGSTOPped) until
    /// another replica leads, then resumed: the woken leader must step down
    /// without writing (its saves are fenced; the history check at the end
    /// shows none landed).
    pub(super) fn pause_leader(&mut self) -> Result<(), String> {
        let (leader, term) = self.a().leader()?;
        let leader = leader.service;
        let (before, last_seq) = self.before_controller_fault()?;
        let t0 = Instant::now();
        self.stack.pause(leader)?;
        let failover = self.new_leader(term, t0);
        // Resumed even if no one took over, so later faults start clean.
        self.stack.unpause(leader)?;
        let (failover, new_term, now) = failover?;
        let woke = Instant::now();
        let down = self.stepped_down(leader, woke)?;
        println!(
            "{leader} resumed after {:.1}s paused; not answering {:.1}s after it resumed",
            woke.duration_since(t0).as_secs_f64(),
            down.as_secs_f64()
        );
        let violations = self.unchanged_since(0, &before, last_seq, "the leader's pause")?;
        self.record(
            format!("pause leader {leader} past its lease: term {term} -> {new_term} ({now})"),
            0,
            Some(failover),
            Some(down),
            0,
            violations,
        );
        Ok(())
    }

    /// The leader cut off from etcd (its store network) while the hosts
    /// still reach it: it cannot renew its lease, so it must stop serving,
    /// and the hosts must find the new leader.
    pub(super) fn partition_leader_from_etcd(&mut self) -> Result<(), String> {
        let (leader, term) = self.a().leader()?;
        let leader = leader.service;
        let (before, last_seq) = self.before_controller_fault()?;
        let t0 = Instant::now();
        self.stack.disconnect(leader, STORE_NETWORK)?;
        let failover = self.new_leader(term, t0);
        let down = self.stepped_down(leader, t0);
        // Reconnected even if the waits failed, so later faults start clean.
        self.stack.connect(leader, STORE_NETWORK)?;
        let ((failover, new_term, now), down) = (failover?, down?);
        println!(
            "{leader} cut off from etcd: stopped serving after {:.1}s",
            down.as_secs_f64()
        );
        let mut violations =
            self.unchanged_since(0, &before, last_seq, "the leader's partition")?;
        violations.extend(self.every_node_ready(0, t0).err());
        self.record(
            format!("partition leader {leader} from etcd: term {term} -> {new_term} ({now})"),
            0,
            Some(failover),
            None,
            0,
            violations,
        );
        Ok(())
    }

    /// One etcd member SIGKILLed, then a server lost: the controller must
    /// still detect and heal (its writes need only a majority), and the
    /// member rejoins when started.
    pub(super) fn heal_with_etcd_member_down(&mut self) -> Result<(), String> {
        let (member, _) = ETCD[0];
        let victim = self.busiest(0, &[])?;
        let before = placement(&self.a().status()?);
        self.stack.kill(member)?;
        let t0 = Instant::now();
        self.stack.kill(victim)?;
        let detect = self.wait_node(0, victim, "Unresponsive", t0);
        let healed = self.wait_healed(0, &[victim], t0);
        // Started even if the waits failed, so later faults start clean.
        self.stack.start(member)?;
        let (detect, (heal, healed)) = (detect?, healed?);
        let mut violations = self.settle(0, &[victim]);
        self.stack.start(victim)?;
        self.repair(0, victim)?;
        violations.extend(self.settle(0, &[]));
        self.record(
            format!("SIGKILL etcd member {member}, then host {victim}"),
            0,
            Some(detect),
            Some(heal),
            moved(&before, &placement(&healed)),
            violations,
        );
        Ok(())
    }

    /// Two of three etcd members SIGKILLed for [`MAJORITY_AWAY`]: the leader
    /// cannot renew and steps down, no replica can be elected, so nothing
    /// answers; the hosts keep every VM running (they never stop one on a
    /// silent controller's account). Started again, a leader is elected and
    /// nothing has moved.
    pub(super) fn etcd_majority_lost(&mut self) -> Result<(), String> {
        let (_, term) = self.a().leader()?;
        let (before, last_seq) = self.before_controller_fault()?;
        let majority = [ETCD[1].0, ETCD[2].0];
        let t0 = Instant::now();
        for member in majority {
            self.stack.kill(member)?;
        }
        let cluster = self.a();
        let silent = wait(HEAL_LIMIT, "no replica of cluster a answering", || {
            cluster.status().is_err().then(|| t0.elapsed())
        });
        std::thread::sleep(MAJORITY_AWAY.saturating_sub(t0.elapsed()));
        let mut violations = Vec::new();
        if cluster.status().is_ok() {
            violations.push("a replica answered while etcd had no majority".into());
        }
        // From below: every VM still runs where it was.
        violations.extend(self.still_running(0, &before));
        for member in majority {
            self.stack.start(member)?;
        }
        let started = Instant::now();
        let silent = silent?;
        let (resumed, new_term, now) = self.new_leader(term, started)?;
        println!(
            "etcd majority away {:.1}s: controllers silent after {:.1}s, a leader again {:.1}s after it returned",
            started.duration_since(t0).as_secs_f64(),
            silent.as_secs_f64(),
            resumed.as_secs_f64()
        );
        violations.extend(self.unchanged_since(0, &before, last_seq, "the etcd outage")?);
        self.record(
            format!("SIGKILL etcd majority: silent, then term {term} -> {new_term} ({now})"),
            0,
            Some(silent),
            Some(resumed),
            0,
            violations,
        );
        Ok(())
    }

    /// Every instance of `before` still runs on its node, by the host
    /// agents' own account (no controller needed).
    fn still_running(&self, c: usize, before: &Placement) -> Vec<String> {
        let cluster = &self.clusters[c];
        let files = admin_files(&cluster.state_dir);
        let mut problems = Vec::new();
        for (node, endpoint) in &cluster.hosts {
            let vms = match self.rt.block_on(host_vms(endpoint, &files)) {
                Ok(vms) => vms,
                Err(e) => {
                    problems.push(format!("{node}: ground truth unreadable: {e}"));
                    continue;
                }
            };
            for (id, (placed, incarnation, _)) in before.iter().filter(|(_, p)| p.0 == *node) {
                let running = vms.iter().any(|(vm, state, inc)| {
                    vm == id && *state == VmState::VmRunning && inc == incarnation
                });
                if !running {
                    problems.push(format!(
                        "{id} no longer runs on {placed} while the controllers were silent"
                    ));
                }
            }
        }
        problems
    }

    /// Over the whole run: every leader transaction in etcd's history was
    /// made by the term leading at its revision.
    pub(super) fn no_write_by_a_deposed_leader(&mut self) -> Result<(), String> {
        let endpoints: Vec<String> = ETCD.iter().map(|(_, e)| e.to_string()).collect();
        let writes = self
            .rt
            .block_on(etcd_history::writes_since(&endpoints, PREFIX, 1))?;
        let terms: std::collections::BTreeSet<i64> = writes.iter().map(|w| w.writer).collect();
        let mut violations: Vec<String> = writes
            .iter()
            .filter(|w| w.is_stale())
            .map(|w| {
                format!(
                    "etcd revision {} written by term {} while {:?} led",
                    w.revision, w.writer, w.leading
                )
            })
            .collect();
        // Four leader faults above each ended a term; a term that decided
        // nothing writes nothing, so at least the first and a later one.
        if terms.len() < 3 {
            violations.push(format!(
                "only terms {terms:?} wrote: the faults above made no failover"
            ));
        }
        self.record(
            format!(
                "etcd history: {} writes by {} terms, none deposed",
                writes.len(),
                terms.len()
            ),
            0,
            None,
            None,
            0,
            violations,
        );
        Ok(())
    }
}
