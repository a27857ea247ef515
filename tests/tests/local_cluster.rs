//! A real cluster of processes: `fabricctl up` with a fabric controller and
//! three host agents. A host agent is SIGKILLed; the controller must notice
//! within the node timeout, the launcher must restart it, and stopping the
//! launcher must leave no process behind.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::{LocalCluster, node};
use fabricctl::events::EventJson;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const HEARTBEAT: Duration = Duration::from_millis(300);
const NODE_TIMEOUT: Duration = Duration::from_millis(1500);
/// Longer than NODE_TIMEOUT, so Unresponsive is seen before the restart.
const RESTART_DELAY: Duration = Duration::from_secs(4);
/// Granularity of our status polling (one `fabricctl status` process plus a
/// 20 ms pause) and process scheduling on a busy 2-core machine.
const POLL_SLACK: Duration = Duration::from_millis(500);

fn hosts_of(status: &fabricctl::status::StatusJson) -> Vec<&str> {
    status.nodes.iter().map(|n| n.id.as_str()).collect()
}

#[test]
fn killed_host_agent_is_detected_restarted_and_nothing_is_left_behind() {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "3",
        "--heartbeat-interval",
        &ms(HEARTBEAT),
        "--node-timeout",
        &ms(NODE_TIMEOUT),
        "--restart-delay",
        &ms(RESTART_DELAY),
    ]);

    let ready = cluster.wait_ready(3, Duration::from_secs(30));
    assert_eq!(hosts_of(&ready), ["host-1", "host-2", "host-3"]);
    assert_eq!(ready.heartbeat_interval_s, Some(HEARTBEAT.as_secs_f64()));
    assert_eq!(ready.node_timeout_s, Some(NODE_TIMEOUT.as_secs_f64()));
    let victim = node(&ready, "host-2").unwrap().clone();
    assert_ne!(victim.pid, 0, "host-2 reported no pid");
    assert_eq!(victim.restarts, 0);

    // Kill host-2's agent without a chance to say goodbye.
    assert!(
        fabric_tests::procs::signal(victim.pid, Signal::SIGKILL),
        "host-2 (pid {}) is not running",
        victim.pid
    );
    let killed = Instant::now();
    let unresponsive = cluster.wait_for(Duration::from_secs(10), "host-2 Unresponsive", |s| {
        node(s, "host-2").is_some_and(|n| n.state == "Unresponsive")
    });
    // Taken after the status call that showed it returned, so never early.
    let detected = killed.elapsed();
    // The last heartbeat came at most one interval before the kill, so the
    // controller's deadline falls in [kill + timeout - interval, kill +
    // timeout]; polling adds at most POLL_SLACK on top.
    let earliest = NODE_TIMEOUT - HEARTBEAT;
    let latest = NODE_TIMEOUT + HEARTBEAT + POLL_SLACK;
    eprintln!("host-2 Unresponsive {detected:?} after SIGKILL (allowed {earliest:?}..={latest:?})");
    assert!(
        detected >= earliest,
        "host-2 marked Unresponsive after {detected:?}, before node_timeout - heartbeat ({earliest:?})"
    );
    assert!(
        detected <= latest,
        "host-2 marked Unresponsive only after {detected:?}, later than {latest:?}"
    );
    let others: Vec<_> = unresponsive
        .nodes
        .iter()
        .filter(|n| n.id != "host-2")
        .map(|n| (n.id.as_str(), n.state.as_str()))
        .collect();
    assert_eq!(others, [("host-1", "Ready"), ("host-3", "Ready")]);

    // The supervisor restarts it after RESTART_DELAY: a new process that
    // registers with a new boot id.
    let back = cluster.wait_for(Duration::from_secs(20), "host-2 Ready again", |s| {
        node(s, "host-2").is_some_and(|n| n.state == "Ready" && n.pid != victim.pid)
    });
    let host2 = node(&back, "host-2").unwrap();
    assert!(host2.restarts >= 1, "restarts = {}", host2.restarts);
    assert_ne!(host2.boot_id, victim.boot_id);
    assert!(fabric_tests::procs::alive(host2.pid));
    assert!(!fabric_tests::procs::alive(victim.pid));

    // The human table.
    let table = cluster.run(&["status"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(table.status.success(), "fabricctl status: {table:?}");
    for host in ["host-1", "host-2", "host-3"] {
        assert!(
            text.lines().any(|l| l.starts_with(&format!("{host} "))),
            "{host} missing from:\n{text}"
        );
    }

    // The event log, one JSON object per line.
    let out = cluster.run(&["events", "-o", "json"]);
    assert!(out.status.success(), "fabricctl events: {out:?}");
    let events: Vec<EventJson> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad event line {l:?}: {e}")))
        .collect();
    let of_host2 = |kind: &str| {
        events
            .iter()
            .filter(|e| e.node == "host-2" && e.kind == kind)
            .map(|e| e.sequence)
            .collect::<Vec<_>>()
    };
    let lost = of_host2("node.unresponsive");
    let found = of_host2("node.ready");
    assert_eq!(lost.len(), 1, "events: {events:#?}");
    assert!(
        found.iter().any(|&seq| seq > lost[0]),
        "no node.ready for host-2 after its node.unresponsive: {events:#?}"
    );

    // Stop: SIGTERM to the launcher, which stops everything and exits 0.
    let pids = cluster.seen_pids();
    assert!(
        pids.len() >= 6,
        "launcher, controller, 4 host agents: {pids:?}"
    );
    assert!(pids.contains(&back.controller_pid));
    let exit = cluster.terminate(Duration::from_secs(10));
    let exit = exit.expect("fabricctl up still running 10s after SIGTERM");
    assert!(exit.success(), "fabricctl up exited with {exit}");
    assert_eq!(cluster.surviving_seen_pids(), [], "of pids {pids:?}");
    assert_eq!(cluster.leftovers(), []);
    let log = std::fs::read_to_string(&cluster.launcher_log).unwrap();
    assert!(log.contains("cluster stopped"), "{log}");
}

#[test]
fn status_without_a_cluster_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let ctl = fabric_tests::bins::binary(fabric_tests::bins::FABRICCTL);
    let out = std::process::Command::new(ctl)
        .arg("--state-dir")
        .arg(dir.path())
        .arg("status")
        .env_remove("FABRIC_STATE_DIR")
        .env_remove("FABRIC_ENDPOINT")
        .output()
        .unwrap();
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    assert!(lines[0].contains("no cluster found"), "{stderr}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

/// `cluster set --clusters`: every named cluster answers for itself, one
/// that cannot be reached is named and makes the command fail, and flags
/// that would point every cluster at one endpoint are refused.
#[test]
fn switching_several_clusters_names_each_one_that_did_not_answer() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let ctl = fabric_tests::bins::binary(fabric_tests::bins::FABRICCTL);
    let run = |extra: &[&str]| {
        std::process::Command::new(&ctl)
            .args(["cluster", "set", "management", "off", "--clusters"])
            .arg(format!("{},{}", a.display(), b.display()))
            .args(extra)
            .env_remove("FABRIC_STATE_DIR")
            .env_remove("FABRIC_ENDPOINT")
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(!out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for dir in [&a, &b] {
        assert!(
            stdout.contains(&format!(
                "{}: not switched: no cluster found",
                dir.display()
            )),
            "{stdout}"
        );
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2 of 2 clusters not switched"), "{stderr}");
    let out = run(&["--endpoint", "https://127.0.0.1:1"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("leave out --endpoint"), "{stderr}");
}
