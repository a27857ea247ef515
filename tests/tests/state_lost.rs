//! No silent wipe (issue 13, finding 2), with real processes: the
//! controller's state file is deleted under a running cluster and the
//! controller restarts on the empty directory. It must stop nothing: every
//! guest agent keeps running (same pids), status names the state-lost
//! alarm, deployments are refused, and `fabricctl cluster recover --adopt`
//! brings the instances back as they run, without restarting any.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::LocalCluster;
use fabric_tests::services::{self, all_running, instances};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WEB: &str = "web";
const WEB_INSTANCES: usize = 3;
const COME_UP: Duration = Duration::from_secs(60);

fn pids(status: &fabricctl::status::StatusJson) -> BTreeMap<String, (String, u32)> {
    instances(status, WEB)
        .iter()
        .map(|i| (i.id.clone(), (i.node.clone(), i.pid)))
        .collect()
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
}

#[test]
fn a_lost_state_file_stops_nothing_and_adopt_recovers() {
    let definition = services::example_file("service.toml");
    let definition = definition.to_str().unwrap();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "2",
        "--heartbeat-interval",
        "300ms",
        "--node-timeout",
        "2s",
        "--unresponsive-grace",
        "2s",
        "--restart-delay",
        "3s",
        "--deploy",
        definition,
    ]);
    let before = cluster.wait_for(COME_UP, "web Running", |s| {
        all_running(s, WEB, WEB_INSTANCES)
    });
    let running = pids(&before);
    println!("before: {running:?}");

    // Kill the controller and delete its state while it is down: the
    // launcher restarts it on an empty state directory.
    let out = cluster.run_ok(&["chaos", "kill-fc"]);
    println!("  {}", String::from_utf8_lossy(&out.stdout).trim());
    // The state is the snapshot and the log of changes after it.
    let dir = cluster.root().join("state/controller");
    for file in ["controller-state.json", "controller-state.log"] {
        let state = dir.join(file);
        std::fs::remove_file(&state)
            .unwrap_or_else(|e| panic!("cannot delete {}: {e}", state.display()));
    }
    let lost = cluster.wait_for(COME_UP, "the state-lost alarm", |s| {
        s.controller_pid != before.controller_pid && s.alarms.iter().any(|a| a.kind == "state lost")
    });
    println!("alarm: {:?}", lost.alarms);
    assert!(lost.deployments.is_empty(), "the new state knows nothing");

    // For several node timeouts, every VM keeps running.
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_secs(6) {
        for (id, (_, pid)) in &running {
            assert!(alive(*pid), "{id}'s guest agent (pid {pid}) was stopped");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // Nothing may be deployed on a state that is not the newest.
    let refused = cluster.run(&["deploy", definition]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("lost its state"), "{stderr}");

    // A wipe needs confirming.
    let unconfirmed = cluster.run(&["cluster", "recover", "--wipe"]);
    assert!(!unconfirmed.status.success());

    let out = cluster.run_ok(&["cluster", "recover", "--adopt"]);
    let said = String::from_utf8_lossy(&out.stdout);
    println!("recover: {said}");
    assert!(said.contains("adopted"), "{said}");
    let after = cluster.wait_for(COME_UP, "web rebuilt and Running", |s| {
        s.alarms.is_empty() && all_running(s, WEB, WEB_INSTANCES)
    });
    assert_eq!(pids(&after), running, "no VM was restarted or moved");

    // The definition deployed again restores its certificates (a rotation
    // of the same shape), still without restarting anything.
    cluster.run_ok(&["deploy", definition]);
    let events = cluster.events().unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert!(kinds.contains(&"controller.state_lost"), "{kinds:?}");
    assert!(kinds.contains(&"controller.state_recovered"), "{kinds:?}");
    let after = cluster.status().unwrap();
    assert_eq!(pids(&after), running, "the redeploy restarted nothing");
    cluster.terminate(Duration::from_secs(20));
}
