//! Service healing with real processes: `fabricctl up` clusters whose
//! servers are "powered off" (host agent and VMs SIGKILLed) or paused
//! (SIGSTOP), as in docs/healing.md.
//!
//! - A lost server goes to Human Investigate (HI) and its role instances are
//!   reincarnated on other servers, serving the deployed certificate again.
//! - The per-cluster HI threshold stops healing until `fabricctl cluster
//!   resume`.
//! - A paused server that comes back is fenced: its host agent stops the
//!   VMs that were healed elsewhere, so every instance runs exactly once.
//! - `fabricctl node repair` returns a server from HI to service.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_proto::v1::VmState;
use fabric_tests::cluster::{LocalCluster, node, poll_until};
use fabric_tests::ground_truth::{admin_files, host_vms};
use fabric_tests::https::{assert_identity, cert_der, fetch, runtime};
use fabric_tests::procs;
use fabric_tests::services::{self, all_running, instances};
use fabricctl::events::EventJson;
use fabricctl::status::{InstanceJson, StatusJson};
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const WEB: &str = "web";
/// examples/web/service.toml: frontend x2, api x1.
const WEB_INSTANCES: usize = 3;
const HEARTBEAT: Duration = Duration::from_millis(300);
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
const UNRESPONSIVE_GRACE: Duration = Duration::from_secs(2);
const GUEST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// Long enough that the launcher's supervisor never restarts what we kill.
const RESTART_DELAY: &str = "1h";
/// For a deployment to come up, or to be healed, on a busy 2-core machine
/// running debug binaries.
const COME_UP: Duration = Duration::from_secs(60);

const READY: &str = "Ready";
const HI: &str = "HumanInvestigate";

/// The clusters of this file run one at a time: several at once on 2 cores
/// would make their short timeouts fire for the wrong reason.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

/// `fabricctl up` with `hosts` servers, short timeouts and HI threshold
/// `threshold`, the example service deployed if `deploy`.
fn start(hosts: usize, threshold: &str, deploy: bool) -> LocalCluster {
    let hosts = hosts.to_string();
    let definition = services::example_file("service.toml")
        .to_str()
        .expect("UTF-8 path")
        .to_owned();
    let (heartbeat, timeout, grace, guest) = (
        ms(HEARTBEAT),
        ms(NODE_TIMEOUT),
        ms(UNRESPONSIVE_GRACE),
        ms(GUEST_HEARTBEAT_TIMEOUT),
    );
    let mut args = vec![
        "--hosts",
        &hosts,
        "--heartbeat-interval",
        &heartbeat,
        "--node-timeout",
        &timeout,
        "--unresponsive-grace",
        &grace,
        "--guest-heartbeat-timeout",
        &guest,
        "--guest-timeout",
        "20s",
        "--restart-delay",
        RESTART_DELAY,
        "--capacity",
        "4",
        "--hi-threshold",
        threshold,
    ];
    if deploy {
        args.extend(["--deploy", definition.as_str()]);
    }
    LocalCluster::start(&args)
}

/// Starts a cluster with the example service and waits for every instance
/// to be Running on `hosts` Ready nodes, in Normal mode.
fn start_with_web(hosts: usize, threshold: &str) -> (LocalCluster, StatusJson) {
    let mut cluster = start(hosts, threshold, true);
    let up = cluster.wait_for(COME_UP, "every web instance Running", |s| {
        s.nodes.len() == hosts
            && s.nodes.iter().all(|n| n.state == READY)
            && all_running(s, WEB, WEB_INSTANCES)
    });
    assert_eq!(up.mode, "Normal", "{up:#?}");
    assert_eq!(up.hi_count, 0);
    let threshold_nodes: u32 = threshold.parse().expect("a node count");
    assert_eq!(up.hi_threshold_nodes, threshold_nodes);
    (cluster, up)
}

fn instance<'a>(status: &'a StatusJson, id: &str) -> &'a InstanceJson {
    instances(status, WEB)
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("no instance {id} in {status:#?}"))
}

/// The instances placed on `node_id`.
fn on_node(status: &StatusJson, node_id: &str) -> Vec<InstanceJson> {
    instances(status, WEB)
        .iter()
        .filter(|i| i.node == node_id)
        .cloned()
        .collect()
}

fn node_state<'a>(status: &'a StatusJson, id: &str) -> &'a str {
    node(status, id).map_or("missing", |n| n.state.as_str())
}

/// The processes of server `node_id`: its host agent and the guest agents
/// of the instances placed on it (the VMs), checked to be what they claim.
fn server_processes(status: &StatusJson, node_id: &str) -> (u32, Vec<u32>) {
    let host = node(status, node_id).unwrap_or_else(|| panic!("no {node_id}"));
    let cmd = procs::cmdline(host.pid).unwrap_or_default();
    assert!(
        cmd.contains("host-agent") && cmd.contains(node_id),
        "pid {} of {node_id} is {cmd:?}",
        host.pid
    );
    let guests: Vec<u32> = on_node(status, node_id)
        .iter()
        .map(|i| {
            let cmd = procs::cmdline(i.pid).unwrap_or_default();
            assert!(
                cmd.contains("guest-agent") && cmd.contains(&i.id),
                "pid {} of {} is {cmd:?}",
                i.pid,
                i.id
            );
            i.pid
        })
        .collect();
    (host.pid, guests)
}

/// Sends `signal` to the host agent of `node_id`, then to the guest agent
/// of every instance on it: SIGKILL is a power failure, SIGSTOP a hung
/// server. Returns (host agent pid, guest agent pids).
fn signal_server(status: &StatusJson, node_id: &str, signal: Signal) -> (u32, Vec<u32>) {
    let (host, guests) = server_processes(status, node_id);
    // The host agent first, so it cannot react to its guests' silence.
    for pid in std::iter::once(host).chain(guests.iter().copied()) {
        assert!(procs::signal(pid, signal), "{signal} to pid {pid} failed");
    }
    (host, guests)
}

fn events(cluster: &LocalCluster) -> Vec<EventJson> {
    cluster.events().unwrap_or_else(|e| panic!("{e}"))
}

/// Waits until the `lost` nodes are in HI and every instance is Running on
/// a node other than them, each moved one (`moved`, as before the loss) as
/// a newer incarnation at a new endpoint. Records every instance seen
/// healing (its `healing_from`) into `seen_healing`. Returns the status and
/// when a status first showed every lost node in HI.
fn wait_healed(
    cluster: &mut LocalCluster,
    lost: &[&str],
    moved: &[InstanceJson],
    seen_healing: &mut BTreeMap<String, String>,
) -> (StatusJson, Instant) {
    let mut all_hi = None;
    let healed = cluster.wait_for(COME_UP, &format!("instances healed off {lost:?}"), |s| {
        for i in instances(s, WEB) {
            if let Some(from) = &i.healing_from {
                seen_healing.insert(i.id.clone(), from.clone());
            }
        }
        let hi = lost.iter().all(|n| node_state(s, n) == HI);
        if hi && all_hi.is_none() {
            all_hi = Some(Instant::now());
        }
        hi && all_running(s, WEB, WEB_INSTANCES)
            && instances(s, WEB)
                .iter()
                .all(|i| !lost.contains(&i.node.as_str()) && i.healing_from.is_none())
            && moved.iter().all(|old| {
                let now = instance(s, &old.id);
                now.incarnation > old.incarnation
                    && now.incarnation >= 2
                    && now.endpoint != old.endpoint
                    && now.pid != old.pid
            })
    });
    (healed, all_hi.expect("seen in HI"))
}

/// Every healed instance went through `healing_from = from` and has an
/// `instance.healing` event naming it and its old server.
fn assert_healed_from(
    cluster: &LocalCluster,
    moved: &[InstanceJson],
    from: &str,
    seen_healing: &BTreeMap<String, String>,
) {
    let events = events(cluster);
    for old in moved {
        assert_eq!(
            seen_healing.get(&old.id).map(String::as_str),
            Some(from),
            "{} never seen with healing_from {from}; seen {seen_healing:?}",
            old.id
        );
        let needle = format!("{} incarnation", old.id);
        assert!(
            events.iter().any(|e| e.kind == "instance.healing"
                && e.reason.starts_with(&needle)
                && e.reason.contains(&format!("healed off {from}"))),
            "no instance.healing event for {} off {from}: {events:#?}",
            old.id
        );
    }
}

#[test]
fn a_lost_server_is_healed() {
    let _one = one_cluster_at_a_time();
    let web_der = cert_der(&services::example_file("certs/web.pem"));
    let rt = runtime();
    let (mut cluster, up) = start_with_web(4, "3");
    let before = instances(&up, WEB).to_vec();
    let victim = instance(&up, "web.api.0").node.clone();
    let moved = on_node(&up, &victim);
    let stayed: Vec<InstanceJson> = before
        .iter()
        .filter(|i| i.node != victim)
        .cloned()
        .collect();

    let (host_pid, guest_pids) = signal_server(&up, &victim, Signal::SIGKILL);
    let killed = Instant::now();
    let mut seen_healing = BTreeMap::new();
    let (healed, hi_at) = wait_healed(&mut cluster, &[&victim], &moved, &mut seen_healing);
    let took = killed.elapsed();
    // Silence: node_timeout to Unresponsive, unresponsive_grace to HI; then
    // a new VM per moved instance (transfer certificate, secrets, role).
    eprintln!(
        "a_lost_server_is_healed: {victim} (host agent {host_pid}, VMs {guest_pids:?}) powered off; \
         HI seen {:?} after SIGKILL (node_timeout {NODE_TIMEOUT:?} + unresponsive_grace \
         {UNRESPONSIVE_GRACE:?}); {} instance(s) Running elsewhere {took:?} after SIGKILL",
        hi_at - killed,
        moved.len()
    );
    // Functional bound: nothing can move before the node is silent for
    // node_timeout and then unresponsive for unresponsive_grace, less one
    // heartbeat interval (the last heartbeat preceded the kill).
    assert!(
        took >= NODE_TIMEOUT + UNRESPONSIVE_GRACE - HEARTBEAT,
        "healed after {took:?}, before the node could be in HI"
    );
    assert!(!procs::alive(host_pid));

    assert_eq!(healed.mode, "Normal", "one HI node of threshold 3");
    assert_eq!(healed.hi_count, 1);
    assert_eq!(healed.healing_in_flight, 0);
    assert_eq!(healed.pending_instances, 0);
    let lost = node(&healed, &victim).unwrap();
    assert!(!lost.state_reason.is_empty(), "{lost:?}");
    assert_healed_from(&cluster, &moved, &victim, &seen_healing);
    // The instances on other servers were not touched.
    for old in &stayed {
        let now = instance(&healed, &old.id);
        assert_eq!(
            (&now.node, now.pid, now.incarnation, &now.endpoint),
            (&old.node, old.pid, old.incarnation, &old.endpoint),
            "{}",
            old.id
        );
    }
    // Each moved instance serves the deployed certificate again, from its
    // new VM, and says who it is now.
    for old in &moved {
        let now = instance(&healed, &old.id);
        assert_ne!(now.transfer_cert_fingerprint, old.transfer_cert_fingerprint);
        let served = fetch(&rt, &now.endpoint, &web_der)
            .unwrap_or_else(|e| panic!("{} at {}: {e}", now.id, now.endpoint));
        assert!(served.leaf_der == web_der, "{} serves another cert", now.id);
        assert_identity(&served, WEB, now);
        assert!(procs::alive(now.pid), "{} pid {}", now.id, now.pid);
    }
    let events = events(&cluster);
    assert!(
        events
            .iter()
            .any(|e| e.kind == "node.human_investigate" && e.node == victim),
        "no node.human_investigate for {victim}: {events:#?}"
    );
    assert!(
        !events.iter().any(|e| e.kind == "cluster.human_investigate"),
        "{events:#?}"
    );
}

#[test]
fn threshold_stops_healing_until_resume() {
    let _one = one_cluster_at_a_time();
    let (mut cluster, up) = start_with_web(4, "2");

    // Server A: below the threshold, healed at once.
    let a = instance(&up, "web.api.0").node.clone();
    let moved_a = on_node(&up, &a);
    signal_server(&up, &a, Signal::SIGKILL);
    let killed_a = Instant::now();
    let mut seen_healing = BTreeMap::new();
    let (after_a, a_hi) = wait_healed(&mut cluster, &[&a], &moved_a, &mut seen_healing);
    eprintln!(
        "threshold_stops_healing_until_resume: {a} HI seen {:?}, healed {:?} after SIGKILL",
        a_hi - killed_a,
        killed_a.elapsed()
    );
    assert_eq!((after_a.mode.as_str(), after_a.hi_count), ("Normal", 1));
    assert_healed_from(&cluster, &moved_a, &a, &seen_healing);

    // Server B, one with instances: its HI makes the count reach 2.
    let b = instances(&after_a, WEB)
        .iter()
        .map(|i| i.node.clone())
        .find(|n| *n != a)
        .expect("instances on a Ready node");
    let on_b = on_node(&after_a, &b);
    signal_server(&after_a, &b, Signal::SIGKILL);
    let killed_b = Instant::now();
    let tripped = cluster.wait_for(COME_UP, &format!("{b} HI and the cluster in HI"), |s| {
        node_state(s, &b) == HI && s.mode == HI
    });
    eprintln!(
        "threshold_stops_healing_until_resume: {b} in HI and cluster in HI mode {:?} after SIGKILL",
        killed_b.elapsed()
    );
    assert_eq!(tripped.hi_count, 2, "{tripped:#?}");
    assert_eq!(tripped.hi_threshold_nodes, 2);
    assert!(!tripped.mode_reason.is_empty(), "{tripped:#?}");
    let events_at_trip = events(&cluster);
    let trip = events_at_trip
        .iter()
        .find(|e| e.kind == "cluster.human_investigate")
        .unwrap_or_else(|| panic!("no cluster.human_investigate: {events_at_trip:#?}"))
        .clone();
    assert!(trip.reason.contains('2'), "{trip:?}");

    // Healing has stopped: B's instances stay placed on B, and no
    // instance.healing event follows the trip, for three graces.
    let window = 3 * UNRESPONSIVE_GRACE;
    let watched = Instant::now();
    let mut polls = 0;
    while watched.elapsed() < window {
        let s = cluster.status().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.mode, HI, "left HI mode by itself: {s:#?}");
        for old in &on_b {
            let now = instance(&s, &old.id);
            assert_eq!(now.node, b, "{} moved off {b} in HI mode: {s:#?}", old.id);
            assert_eq!(now.healing_from, None, "{s:#?}");
        }
        assert_eq!(s.healing_in_flight, 0, "{s:#?}");
        polls += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let healing_after_trip: Vec<EventJson> = events(&cluster)
        .into_iter()
        .filter(|e| e.kind == "instance.healing" && e.sequence > trip.sequence)
        .collect();
    assert_eq!(healing_after_trip, [], "healing in HI mode");
    eprintln!(
        "threshold_stops_healing_until_resume: nothing moved in {polls} polls over {window:?}"
    );

    // The operator resumes: B's instances are healed now.
    let out = cluster.run(&["cluster", "resume"]);
    assert!(out.status.success(), "fabricctl cluster resume: {out:?}");
    let resumed = Instant::now();
    let mut seen_healing = BTreeMap::new();
    let (healed, _) = wait_healed(&mut cluster, &[&a, &b], &on_b, &mut seen_healing);
    eprintln!(
        "threshold_stops_healing_until_resume: {b}'s {} instance(s) Running elsewhere {:?} after resume",
        on_b.len(),
        resumed.elapsed()
    );
    assert_eq!(healed.mode, "Normal", "{healed:#?}");
    // Nodes in HI stay there until repaired.
    assert_eq!(healed.hi_count, 2);
    assert_healed_from(&cluster, &on_b, &b, &seen_healing);
    let events = events(&cluster);
    assert!(
        events
            .iter()
            .any(|e| e.kind == "cluster.resumed" && e.sequence > trip.sequence),
        "{events:#?}"
    );
}

#[test]
fn paused_host_is_fenced_on_return() {
    let _one = one_cluster_at_a_time();
    let rt = runtime();
    let (mut cluster, up) = start_with_web(3, "3");
    let paused = instance(&up, "web.api.0").node.clone();
    let moved = on_node(&up, &paused);

    let (host_pid, guest_pids) = signal_server(&up, &paused, Signal::SIGSTOP);
    let stopped = Instant::now();
    // If anything below panics, the guard SIGKILLs the stopped processes.
    let mut seen_healing = BTreeMap::new();
    let (healed, hi_at) = wait_healed(&mut cluster, &[&paused], &moved, &mut seen_healing);
    eprintln!(
        "paused_host_is_fenced_on_return: {paused} HI seen {:?}, its {} instance(s) Running elsewhere {:?} after SIGSTOP",
        hi_at - stopped,
        moved.len(),
        stopped.elapsed()
    );
    assert_healed_from(&cluster, &moved, &paused, &seen_healing);
    // While paused, its old VMs still exist: two guest agents per moved
    // instance, the point of fencing.
    for &pid in &guest_pids {
        assert!(procs::alive(pid), "paused guest agent {pid} gone early");
    }

    // The server comes back: its guest agents first, because the host
    // agent, once running, may fence (SIGKILL) a guest before a later
    // SIGCONT reaches it, which made this test flaky.
    for pid in guest_pids.iter().copied().chain(std::iter::once(host_pid)) {
        assert!(procs::signal(pid, Signal::SIGCONT), "SIGCONT to {pid}");
    }
    let resumed = Instant::now();
    let back = cluster.wait_for(COME_UP, &format!("{paused} heartbeating again"), |s| {
        node(s, &paused).is_some_and(|n| {
            n.pid == host_pid
                && n.seconds_since_heartbeat
                    .is_some_and(|secs| secs < NODE_TIMEOUT.as_secs_f64() / 2.0)
        })
    });
    assert_eq!(
        node_state(&back, &paused),
        HI,
        "heartbeats do not take a node out of HI"
    );
    // Fencing: the host agent stops the VMs healed elsewhere when it hears
    // the controller's desired set.
    poll_until(
        COME_UP,
        Duration::from_millis(50),
        &format!("old guest agents {guest_pids:?} on {paused} to be stopped"),
        || {
            guest_pids
                .iter()
                .all(|&pid| !procs::alive(pid))
                .then_some(())
        },
    );
    eprintln!(
        "paused_host_is_fenced_on_return: old VMs on {paused} stopped {:?} after SIGCONT",
        resumed.elapsed()
    );
    assert!(
        procs::alive(host_pid),
        "the host agent itself keeps running"
    );
    // Stopped because they are no longer in its desired set, as its log
    // says, not merely lost.
    let log = cluster.state_dir.join("logs").join(format!("{paused}.log"));
    poll_until(
        COME_UP,
        Duration::from_millis(50),
        &format!("{} to log stopping {moved:?}", log.display()),
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            moved
                .iter()
                .all(|old| {
                    text.lines().any(|l| {
                        l.contains("no longer assigned to this host") && l.contains(&old.id)
                    })
                })
                .then_some(())
        },
    );

    // Ground truth from every host agent: each instance runs on exactly one
    // server, the one the controller says.
    let status = cluster.status().unwrap_or_else(|e| panic!("{e}"));
    let files = admin_files(&cluster.state_dir);
    let mut last = String::new();
    let running = poll_until(
        COME_UP,
        Duration::from_millis(200),
        "every instance Running on exactly one host agent",
        || {
            let mut running: BTreeMap<String, Vec<String>> = BTreeMap::new();
            let mut any_on_paused = Vec::new();
            for n in &status.nodes {
                let vms = match rt.block_on(host_vms(&n.host_endpoint, &files)) {
                    Ok(vms) => vms,
                    Err(e) => {
                        last = format!("{}: {e}", n.id);
                        return None;
                    }
                };
                for (vm_id, state, _) in vms {
                    if n.id == paused {
                        any_on_paused.push((vm_id.clone(), state));
                    }
                    if state == VmState::VmRunning {
                        running.entry(vm_id).or_default().push(n.id.clone());
                    }
                }
            }
            last = format!("running {running:?}; on {paused}: {any_on_paused:?}");
            let once = running.len() == WEB_INSTANCES && running.values().all(|on| on.len() == 1);
            (once && any_on_paused.is_empty()).then_some(running)
        },
    );
    eprintln!("paused_host_is_fenced_on_return: host agents report {running:?} ({last})");
    let now = cluster.status().unwrap_or_else(|e| panic!("{e}"));
    assert!(all_running(&now, WEB, WEB_INSTANCES), "{now:#?}");
    for i in instances(&now, WEB) {
        assert_eq!(
            running[&i.id].as_slice(),
            std::slice::from_ref(&i.node),
            "{} placed on {}",
            i.id,
            i.node
        );
        assert_ne!(i.node, paused);
    }
    assert!(on_node(&now, &paused).is_empty());
    for old in &moved {
        let now = instance(&now, &old.id);
        let healed_now = instance(&healed, &old.id);
        assert_eq!(
            (now.incarnation, now.pid),
            (healed_now.incarnation, healed_now.pid),
            "{} changed after its old server returned",
            old.id
        );
    }
    assert_eq!(node_state(&now, &paused), HI);
}

#[test]
fn repair_returns_a_server_to_service() {
    let _one = one_cluster_at_a_time();
    let mut cluster = start(3, "3", false);
    let up = cluster.wait_ready(3, COME_UP);
    let victim = "host-2";
    // A hung server: HI after node_timeout + unresponsive_grace, then back,
    // heartbeating (a dead host agent would drop out again after a repair).
    let (host_pid, _) = signal_server(&up, victim, Signal::SIGSTOP);
    let stopped = Instant::now();
    cluster.wait_for(COME_UP, &format!("{victim} HI"), |s| {
        node_state(s, victim) == HI
    });
    let to_hi = stopped.elapsed();
    assert!(procs::signal(host_pid, Signal::SIGCONT));
    let heartbeating = cluster.wait_for(COME_UP, &format!("{victim} heartbeating"), |s| {
        node(s, victim).is_some_and(|n| {
            n.seconds_since_heartbeat
                .is_some_and(|secs| secs < NODE_TIMEOUT.as_secs_f64() / 2.0)
        })
    });
    assert_eq!(node_state(&heartbeating, victim), HI);
    assert_eq!(heartbeating.hi_count, 1);

    let out = cluster.run(&["node", "repair", victim, "--reason", "test"]);
    assert!(out.status.success(), "fabricctl node repair: {out:?}");
    let repaired_at = Instant::now();
    let repaired = cluster.wait_for(COME_UP, &format!("{victim} Ready"), |s| {
        node_state(s, victim) == READY
    });
    eprintln!(
        "repair_returns_a_server_to_service: {victim} HI {to_hi:?} after SIGSTOP; Ready {:?} after repair",
        repaired_at.elapsed()
    );
    assert_eq!(repaired.hi_count, 0, "{repaired:#?}");
    assert_eq!(repaired.mode, "Normal");
    let events = events(&cluster);
    let repairs: Vec<&EventJson> = events
        .iter()
        .filter(|e| e.kind == "node.repaired")
        .collect();
    assert_eq!(repairs.len(), 1, "{events:#?}");
    assert_eq!(repairs[0].node, victim);
    assert!(repairs[0].reason.contains("test"), "{:?}", repairs[0]);
    let hi = events
        .iter()
        .find(|e| e.kind == "node.human_investigate" && e.node == victim)
        .unwrap_or_else(|| panic!("no node.human_investigate: {events:#?}"));
    assert!(hi.sequence < repairs[0].sequence);
    // It stays in service: it heartbeats, so it does not drop back.
    let window = NODE_TIMEOUT + UNRESPONSIVE_GRACE;
    let watched = Instant::now();
    while watched.elapsed() < window {
        let s = cluster.status().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(node_state(&s, victim), READY, "{s:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

// --- Host agents asked directly -------------------------------------------
