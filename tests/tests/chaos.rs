//! `fabricctl chaos` against real `fabricctl up` clusters: one test per
//! verb, each printing what the verb printed.
//!
//! - power-off: the node goes to Human Investigate and `up` does not restart
//!   it, for far longer than its restart delay; power-on starts it again and
//!   (once repaired, since HI needs an operator) it is Ready.
//! - pause / resume: the host agent and its VMs are stopped (state T), then
//!   run again.
//! - kill-guest: the instance comes back as the next incarnation.
//! - kill-fc: the controller comes back (new pid) and `status` works.
//! - kill-agent: the host agent comes back (new pid) and the node is Ready;
//!   the verbs' one-line errors.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::{LocalCluster, node, poll_until};
use fabric_tests::procs;
use fabric_tests::services::{self, all_running, instances};
use fabricctl::status::{InstanceJson, StatusJson};
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const WEB: &str = "web";
/// examples/web/service.toml: frontend x2, api x1.
const WEB_INSTANCES: usize = 3;
/// Restart delay of `up` in these clusters.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// For a deployment to come up, or a node to change state, on a busy
/// 2-core machine running debug binaries.
const COME_UP: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(20);

const READY: &str = "Ready";
const HI: &str = "HumanInvestigate";

/// One cluster at a time: several on 2 cores would make their short
/// timeouts fire for the wrong reason.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// `fabricctl up` with `hosts` servers, short timeouts, a 1 s restart
/// delay, the HI threshold out of reach, and the example service if `web`.
fn start(hosts: usize, web: bool) -> LocalCluster {
    let hosts_arg = hosts.to_string();
    let definition = services::example_file("service.toml")
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let restart = format!("{}ms", RESTART_DELAY.as_millis());
    let threshold = (hosts + 1).to_string();
    let mut args = vec![
        "--hosts",
        &hosts_arg,
        "--heartbeat-interval",
        "300ms",
        "--node-timeout",
        "2s",
        "--unresponsive-grace",
        "2s",
        "--guest-heartbeat-interval",
        "500ms",
        "--guest-heartbeat-timeout",
        "2s",
        "--guest-timeout",
        "20s",
        "--restart-delay",
        &restart,
        "--capacity",
        "4",
        "--hi-threshold",
        &threshold,
    ];
    if web {
        args.extend(["--deploy", definition.as_str()]);
    }
    let mut cluster = LocalCluster::start(&args);
    cluster.wait_for(COME_UP, "every node Ready (and web Running)", |s| {
        s.nodes.len() == hosts
            && s.nodes.iter().all(|n| n.state == READY)
            && (!web || all_running(s, WEB, WEB_INSTANCES))
    });
    cluster
}

/// Runs `fabricctl chaos <args>`, asserts it succeeded with one line of
/// output, prints and returns that line.
fn chaos(cluster: &LocalCluster, args: &[&str]) -> String {
    let mut argv = vec!["chaos"];
    argv.extend_from_slice(args);
    let out = cluster.run(&argv);
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(
        out.status.success(),
        "fabricctl chaos {args:?}: {}: {stderr}",
        out.status
    );
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    println!("$ fabricctl chaos {}\n{stdout}", args.join(" "));
    stdout
}

/// Runs `fabricctl chaos <args>`, asserts it failed with one line on
/// stderr, prints and returns that line.
fn chaos_error(cluster: &LocalCluster, args: &[&str]) -> String {
    let mut argv = vec!["chaos"];
    argv.extend_from_slice(args);
    let out = cluster.run(&argv);
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    assert!(!out.status.success(), "fabricctl chaos {args:?} succeeded");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    println!("$ fabricctl chaos {}\n{stderr}", args.join(" "));
    stderr
}

fn status(cluster: &LocalCluster) -> StatusJson {
    cluster.status().unwrap_or_else(|e| panic!("{e}"))
}

fn instance<'a>(status: &'a StatusJson, id: &str) -> &'a InstanceJson {
    instances(status, WEB)
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("no instance {id} in {status:#?}"))
}

/// The host agent pid of `node_id` and the guest agent pids of the
/// instances placed on it.
fn server(status: &StatusJson, node_id: &str) -> (u32, Vec<u32>) {
    let host = node(status, node_id).unwrap_or_else(|| panic!("no {node_id}"));
    let guests = instances(status, WEB)
        .iter()
        .filter(|i| i.node == node_id)
        .map(|i| i.pid)
        .collect();
    (host.pid, guests)
}

/// Live host agents whose `--state-dir` is `host_dir`
/// (`<state>/hosts/<node>`).
fn host_agents(host_dir: &Path) -> Vec<(u32, String)> {
    procs::mentioning(host_dir)
        .into_iter()
        .filter(|(_, cmd)| {
            let args: Vec<&str> = cmd.split_whitespace().collect();
            args.first().is_some_and(|a| a.ends_with("/host-agent"))
                && args
                    .windows(2)
                    .any(|w| w[0] == "--state-dir" && Path::new(w[1]) == host_dir)
        })
        .collect()
}

fn mentions_pid(line: &str, pid: u32) -> bool {
    line.contains(&format!("pid {pid})"))
}

/// The pid `power-on` says it started: "... host agent (pid N); ...".
fn started_pid(line: &str) -> u32 {
    line.split("host agent (pid ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no started pid in {line}"))
}

fn wait_gone(pid: u32) {
    poll_until(
        Duration::from_secs(5),
        POLL,
        &format!("pid {pid} gone"),
        || (!procs::alive(pid)).then_some(()),
    );
}

fn process_state(pid: u32) -> char {
    procs::stat(pid).map_or('?', |(state, _)| state)
}

#[test]
fn power_off_keeps_a_node_down_until_power_on() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start(3, true);
    let up = status(&cluster);
    let victim = instance(&up, "web.api.0").node.clone();
    let (host_pid, guest_pids) = server(&up, &victim);
    let host_dir = cluster.state_dir.join("hosts").join(&victim);
    assert_eq!(
        host_agents(&host_dir).len(),
        1,
        "{:?}",
        host_agents(&host_dir)
    );

    let off = chaos(&cluster, &["power-off", &victim]);
    let powered_off = Instant::now();
    assert!(off.starts_with(&format!("power-off {victim}: ")), "{off}");
    assert!(mentions_pid(&off, host_pid), "{off}");
    for pid in &guest_pids {
        assert!(mentions_pid(&off, *pid), "guest pid {pid} not in {off}");
    }
    for &pid in std::iter::once(&host_pid).chain(&guest_pids) {
        wait_gone(pid);
    }
    // Until HI (node timeout 2s + grace 2s, well past the 1s restart
    // delay) no host agent of the victim may run: checked at every poll.
    let mut restarted = Vec::new();
    cluster.wait_for(COME_UP, &format!("{victim} in HI"), |s| {
        restarted.extend(host_agents(&host_dir));
        node(s, &victim).is_some_and(|n| n.state == HI)
    });
    let to_hi = powered_off.elapsed();
    assert!(
        restarted.is_empty(),
        "restarted while powered off: {restarted:?}"
    );
    assert!(to_hi > 2 * RESTART_DELAY, "HI after {to_hi:?}");
    assert!(host_agents(&host_dir).is_empty());
    let ctx = fabricctl::context::Context::load(&cluster.state_dir)
        .expect("context")
        .expect("a context");
    let entry = ctx
        .processes
        .iter()
        .find(|p| p.name == victim)
        .expect("entry");
    assert_eq!(entry.pid, None, "context.json names a pid for {victim}");
    assert!(
        chaos_error(&cluster, &["power-off", &victim]).contains("already powered off"),
        "second power-off"
    );
    assert!(
        chaos_error(&cluster, &["kill-agent", &victim]).contains("is powered off"),
        "kill-agent of a powered-off node"
    );

    let on = chaos(&cluster, &["power-on", &victim]);
    let new_pid = started_pid(&on);
    assert!(procs::alive(new_pid) && new_pid != host_pid, "{on}");
    // Polled, not read once: a child the new host agent is starting (its
    // networking plugin) shows the host agent's command line between fork
    // and exec.
    poll_until(
        Duration::from_secs(10),
        POLL,
        &format!("{victim}'s only host agent being pid {new_pid}"),
        || {
            let pids: Vec<u32> = host_agents(&host_dir).into_iter().map(|(p, _)| p).collect();
            (pids == vec![new_pid]).then_some(())
        },
    );
    // HI needs an operator: the new host agent heartbeats, `node repair`
    // returns the node to service.
    cluster.wait_for(
        COME_UP,
        &format!("{victim} heard from pid {new_pid}"),
        |s| node(s, &victim).is_some_and(|n| n.pid == new_pid),
    );
    let out = cluster.run(&["node", "repair", &victim, "--reason", "powered on"]);
    assert!(out.status.success(), "{out:?}");
    cluster.wait_for(COME_UP, &format!("{victim} Ready"), |s| {
        node(s, &victim).is_some_and(|n| n.state == READY && n.pid == new_pid)
    });
    println!(
        "power-off -> HI after {to_hi:?} with no restart (restart delay {RESTART_DELAY:?}); \
         power-on started pid {new_pid}; Ready after repair"
    );
}

#[test]
fn pause_stops_a_node_and_resume_continues_it() {
    let _one = one_cluster_at_a_time();
    let cluster = start(2, true);
    let up = status(&cluster);
    let victim = instance(&up, "web.api.0").node.clone();
    let (host_pid, guest_pids) = server(&up, &victim);
    let all: Vec<u32> = std::iter::once(host_pid).chain(guest_pids).collect();

    let paused = chaos(&cluster, &["pause", &victim]);
    for &pid in &all {
        assert!(mentions_pid(&paused, pid), "pid {pid} not in {paused}");
    }
    poll_until(
        Duration::from_secs(5),
        POLL,
        "every process in state T",
        || all.iter().all(|&p| process_state(p) == 'T').then_some(()),
    );
    let resumed = chaos(&cluster, &["resume", &victim]);
    for &pid in &all {
        assert!(mentions_pid(&resumed, pid), "pid {pid} not in {resumed}");
    }
    poll_until(
        Duration::from_secs(5),
        POLL,
        "every process running again",
        || {
            all.iter()
                .all(|&p| matches!(process_state(p), 'R' | 'S' | 'D'))
                .then_some(())
        },
    );
    assert!(chaos_error(&cluster, &["resume", &victim]).contains("is not paused"));
}

#[test]
fn kill_guest_brings_the_next_incarnation() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start(2, true);
    let up = status(&cluster);
    let old = instance(&up, "web.frontend.0").clone();

    let killed = chaos(&cluster, &["kill-guest", &old.id]);
    let at = Instant::now();
    assert!(
        killed.contains(&format!(
            "(pid {}, incarnation {})",
            old.pid, old.incarnation
        )),
        "{killed}"
    );
    wait_gone(old.pid);
    let back = cluster.wait_for(COME_UP, "the next incarnation Running", |s| {
        instances(s, WEB).iter().any(|i| {
            i.id == old.id
                && i.state == "Running"
                && i.incarnation == old.incarnation + 1
                && i.pid != old.pid
                && i.pid != 0
        })
    });
    let new = instance(&back, &old.id);
    println!(
        "{} incarnation {} (pid {}) Running {:?} after kill-guest of incarnation {} (pid {})",
        new.id,
        new.incarnation,
        new.pid,
        at.elapsed(),
        old.incarnation,
        old.pid
    );
    assert!(
        chaos_error(&cluster, &["kill-guest", "web.nothing.7"]).contains("no role instance"),
        "unknown instance"
    );
}

#[test]
fn kill_fc_restarts_the_controller() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start(1, false);
    let old = status(&cluster).controller_pid;

    let killed = chaos(&cluster, &["kill-fc"]);
    let at = Instant::now();
    assert!(mentions_pid(&killed, old), "{killed}");
    wait_gone(old);
    let back = cluster.wait_for(COME_UP, "a new controller answering status", |s| {
        s.controller_pid != old && s.controller_pid != 0
    });
    let out = cluster.run(&["status"]);
    assert!(out.status.success(), "{out:?}");
    println!(
        "controller pid {old} -> {} answering `fabricctl status` {:?} after kill-fc",
        back.controller_pid,
        at.elapsed()
    );
}

#[test]
fn kill_agent_restarts_the_host_agent_and_errors_are_one_line() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start(2, false);
    let old = node(&status(&cluster), "host-1").expect("host-1").pid;

    let killed = chaos(&cluster, &["kill-agent", "host-1"]);
    let at = Instant::now();
    assert!(mentions_pid(&killed, old), "{killed}");
    wait_gone(old);
    let back = cluster.wait_for(COME_UP, "host-1 back with a new host agent", |s| {
        node(s, "host-1").is_some_and(|n| n.pid != old && n.state == READY)
    });
    println!(
        "host-1 host agent pid {old} -> {} Ready {:?} after kill-agent (restart delay {RESTART_DELAY:?})",
        node(&back, "host-1").expect("host-1").pid,
        at.elapsed()
    );

    for (args, expected) in [
        (&["pause", "host-9"][..], "no node host-9 in this cluster"),
        (
            &["power-off", "fabric-controller"],
            "no node fabric-controller",
        ),
        (&["power-on", "host-2"], "host-2 is not powered off"),
        (&["resume", "host-2"], "host-2 is not paused"),
    ] {
        let e = chaos_error(&cluster, args);
        assert!(e.starts_with(&format!("fabricctl: {expected}")), "{e}");
    }
    // Not a local cluster: an empty state directory.
    let empty = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(fabric_tests::bins::binary("fabricctl"))
        .arg("--state-dir")
        .arg(empty.path())
        .args(["chaos", "kill-fc"])
        .output()
        .expect("run fabricctl");
    let e = String::from_utf8_lossy(&out.stderr).trim().to_owned();
    println!("$ fabricctl --state-dir <empty> chaos kill-fc\n{e}");
    assert!(!out.status.success());
    assert!(e.starts_with("fabricctl: not a local cluster: "), "{e}");
    // Launcher not running: the cluster stopped.
    assert!(cluster.terminate(Duration::from_secs(15)).is_some());
    let e = chaos_error(&cluster, &["kill-fc"]);
    assert!(
        e.contains("is not running (start it with `fabricctl up`)"),
        "{e}"
    );
}
