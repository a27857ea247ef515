//! Controller restart time with real processes: how long after `fabricctl
//! chaos kill-fc` until the cluster is whole again, printed, never asserted.
//!
//! `fabricctl up --hosts 5 --capacity 12 --heartbeat-interval 300ms
//! --node-timeout 2s --restart-delay 500ms --guest-heartbeat-interval
//! 500ms`, a one-role deployment of 50 instances serving
//! examples/web/certs/web.pem; once every instance is Running, the
//! controller is SIGKILLed 5 times. Timed from the return of `fabricctl
//! chaos kill-fc` (which SIGKILLs just before it returns), polling
//! `fabricctl status -o json` every 50 ms:
//!
//! - (a) `status` answers again, from a controller with a new pid;
//! - (b) every node heartbeated less than 1 s ago and its heartbeat sequence
//!   number is above the one `status` showed just before the kill (so a
//!   heartbeat reached the new controller: a restarted controller resets
//!   every node's last-heard time, so "less than 1 s" alone holds at once),
//!   and every instance is still Running with the guest agent pid it had
//!   before the first kill (no VM restarted).
//!
//! Both are printed raw and minus the supervisor's restart delay (the time
//! the controller is deliberately away).
//!
//! Run with `cargo build --release --workspace --bins && cargo run --release
//! -p fabric-bench --bin fc-restart` (it runs the release binaries next to
//! it, or those in FABRIC_BIN_DIR).

use fabric_tests::cluster::LocalCluster;
use fabric_tests::services;
use fabricctl::status::StatusJson;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const HOSTS: usize = 5;
const CAPACITY: u32 = 12;
const INSTANCES: usize = 50;
const KILLS: usize = 5;
const RESTART_DELAY: Duration = Duration::from_millis(500);
const NAME: &str = "bulk";
const POLL: Duration = Duration::from_millis(50);
const COME_UP: Duration = Duration::from_secs(180);
const BACK_LIMIT: Duration = Duration::from_secs(60);

fn main() {
    println!(
        "fc-restart ({} build): `fabricctl up --hosts {HOSTS} --capacity {CAPACITY} \
         --heartbeat-interval 300ms --node-timeout 2s --restart-delay {}ms \
         --guest-heartbeat-interval 500ms`, {INSTANCES} instances of one role; \
         `fabricctl chaos kill-fc` {KILLS} times; status polled every {} ms",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        RESTART_DELAY.as_millis(),
        POLL.as_millis()
    );
    let defs = tempfile::tempdir().expect("tempdir");
    let definition = services::write_definition(
        defs.path(),
        NAME,
        &[("app", INSTANCES as u32)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let definition = definition.to_str().expect("UTF-8 path").to_owned();
    let (hosts, capacity) = (HOSTS.to_string(), CAPACITY.to_string());
    let restart = format!("{}ms", RESTART_DELAY.as_millis());
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        &hosts,
        "--capacity",
        &capacity,
        "--heartbeat-interval",
        "300ms",
        "--node-timeout",
        "2s",
        "--restart-delay",
        &restart,
        "--guest-heartbeat-interval",
        "500ms",
        "--deploy",
        &definition,
    ]);
    let started = Instant::now();
    let up = cluster.wait_for(COME_UP, "every instance Running on Ready nodes", |s| {
        s.nodes.len() == HOSTS
            && s.nodes.iter().all(|n| n.state == "Ready")
            && services::all_running(s, NAME, INSTANCES)
    });
    println!(
        "  {INSTANCES} instances Running after {:.1}s",
        started.elapsed().as_secs_f64()
    );
    let pids: BTreeMap<String, u32> = services::instances(&up, NAME)
        .iter()
        .map(|i| (i.id.clone(), i.pid))
        .collect();
    let mut fc_pid = up.controller_pid;

    let mut answered = Vec::new();
    let mut whole = Vec::new();
    for k in 1..=KILLS {
        let before = cluster.status().unwrap_or_else(|e| panic!("{e}"));
        let sequences: BTreeMap<String, u64> = before
            .nodes
            .iter()
            .map(|n| (n.id.clone(), n.last_sequence))
            .collect();
        let out = cluster.run(&["chaos", "kill-fc"]);
        let killed = Instant::now();
        assert!(
            out.status.success(),
            "kill-fc: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut to_answer = None;
        let mut to_whole = None;
        let mut last = String::new();
        while to_whole.is_none() && killed.elapsed() < BACK_LIMIT {
            match cluster.status() {
                Ok(s) if s.controller_pid != fc_pid => {
                    let at = killed.elapsed();
                    to_answer.get_or_insert(at);
                    match unwhole(&s, &pids, &sequences) {
                        None => {
                            to_whole = Some(at);
                            fc_pid = s.controller_pid;
                        }
                        Some(why) => last = why,
                    }
                }
                Ok(_) => last = "the old controller still answers".to_owned(),
                Err(e) => last = e,
            }
            if to_whole.is_none() {
                std::thread::sleep(POLL);
            }
        }
        println!(
            "  kill {k}: status answers {}; heartbeats and instances whole {}{}",
            secs(to_answer),
            secs(to_whole),
            if to_whole.is_none() {
                format!(" (not within {BACK_LIMIT:?}: {last})")
            } else {
                String::new()
            }
        );
        if to_whole.is_none() {
            break;
        }
        answered.extend(to_answer);
        whole.extend(to_whole);
    }

    println!();
    println!(
        "{:<34} {:>8} {:>8} {:>8}",
        "from kill-fc", "min", "median", "max"
    );
    row("(a) status answers", &answered, Duration::ZERO);
    row("(a) minus restart delay", &answered, RESTART_DELAY);
    row("(b) nodes heartbeat, VMs unchanged", &whole, Duration::ZERO);
    row("(b) minus restart delay", &whole, RESTART_DELAY);
    if let Some(exit) = cluster.terminate(Duration::from_secs(20)) {
        println!("\n  fabricctl up stopped ({exit})");
    }
}

/// Why `status` is not whole yet: a node that has not heartbeated within
/// 1 s or not since `sequences` (before the kill), or an instance not
/// Running with its original pid.
fn unwhole(
    status: &StatusJson,
    pids: &BTreeMap<String, u32>,
    sequences: &BTreeMap<String, u64>,
) -> Option<String> {
    if status.nodes.len() != HOSTS {
        return Some(format!("{} nodes", status.nodes.len()));
    }
    if let Some(n) = status
        .nodes
        .iter()
        .find(|n| n.seconds_since_heartbeat.is_none_or(|s| s >= 1.0))
    {
        return Some(format!(
            "{} last heartbeat {:?}s ago",
            n.id, n.seconds_since_heartbeat
        ));
    }
    if let Some(n) = status
        .nodes
        .iter()
        .find(|n| n.last_sequence <= sequences.get(&n.id).copied().unwrap_or(0))
    {
        return Some(format!(
            "{} has sent no heartbeat since the kill (sequence {})",
            n.id, n.last_sequence
        ));
    }
    let list = services::instances(status, NAME);
    if list.len() != pids.len() {
        return Some(format!("{} instances", list.len()));
    }
    list.iter()
        .find(|i| i.state != "Running" || pids.get(&i.id) != Some(&i.pid))
        .map(|i| format!("{} is {} with pid {}", i.id, i.state, i.pid))
}

fn row(what: &str, samples: &[Duration], minus: Duration) {
    let mut v: Vec<Duration> = samples.iter().map(|d| d.saturating_sub(minus)).collect();
    v.sort();
    if v.is_empty() {
        println!("{what:<34} {:>8} {:>8} {:>8}", "-", "-", "-");
        return;
    }
    let pick = |d: Duration| format!("{:.3}s", d.as_secs_f64());
    println!(
        "{what:<34} {:>8} {:>8} {:>8}",
        pick(v[0]),
        pick(v[v.len() / 2]),
        pick(v[v.len() - 1])
    );
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.3}s", d.as_secs_f64()))
}
