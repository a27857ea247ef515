//! A fabric controller that loses nothing, with real processes: `fabricctl
//! up` clusters whose controller is SIGKILLed (`fabricctl chaos kill-fc`)
//! and restarted by the launcher's supervisor (docs/durability.md).
//!
//! - A controller away for three node timeouts changes nothing when it comes
//!   back: no node leaves Ready, no instance moves or restarts, and no
//!   unresponsive / HI / healing / reinitialize event follows its restart.
//! - Random sequences of deploys, scales and a power-off, each acknowledged
//!   operation possibly followed at once by a controller kill: everything
//!   acknowledged is there at the end, every instance runs exactly once as
//!   the host agents themselves report it, and no instance on a node that
//!   never failed was restarted.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.
//! `FABRIC_FC_KILL_RUNS` sets the number of random runs (default 3).

use fabric_pki::tls::TlsFiles;
use fabric_proto::v1::VmState;
use fabric_tests::cluster::LocalCluster;
use fabric_tests::ground_truth::{admin_files, host_vms};
use fabric_tests::services::{self, all_running, instances};
use fabricctl::status::StatusJson;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const WEB: &str = "web";
/// examples/web/service.toml: frontend x2, api x1.
const WEB_INSTANCES: usize = 3;
const NODE_TIMEOUT: Duration = Duration::from_secs(2);
const UNRESPONSIVE_GRACE: Duration = Duration::from_secs(2);
/// For a cluster or deployment to come up on a busy 2-core machine running
/// debug binaries.
const COME_UP: Duration = Duration::from_secs(60);
/// For the controller to answer again after a kill (on top of the delay).
const FC_BACK: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(50);

const READY: &str = "Ready";
const RUNNING: &str = "Running";
/// Events that must not follow a restart that changed nothing.
const DISRUPTIVE: [&str; 4] = [
    "node.unresponsive",
    "node.human_investigate",
    "instance.healing",
    "instance.reinitialized",
];

/// One cluster at a time: several on 2 cores would make their short
/// timeouts fire for the wrong reason.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn web_definition() -> String {
    services::example_file("service.toml")
        .to_str()
        .expect("UTF-8 path")
        .to_owned()
}

/// Runs `fabricctl <args>`; `Ok(stdout)` if it succeeded, else `Err` with
/// its status and stderr.
fn ctl(cluster: &LocalCluster, args: &[&str]) -> Result<String, String> {
    let out = cluster.run(args);
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
    } else {
        Err(format!(
            "fabricctl {}: {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `fabricctl chaos kill-fc`, then waits until a controller with another
/// pid answers `status`; returns its pid.
fn kill_fc_and_wait(cluster: &mut LocalCluster, old_pid: u32, limit: Duration) -> u32 {
    let line = ctl(cluster, &["chaos", "kill-fc"]).unwrap_or_else(|e| panic!("{e}"));
    println!("  {line}");
    cluster
        .wait_for(limit, "the restarted controller to answer", |s| {
            s.controller_pid != 0 && s.controller_pid != old_pid
        })
        .controller_pid
}

/// (node, incarnation, pid, endpoint) of every instance of `status`.
fn placements(status: &StatusJson) -> BTreeMap<String, (String, u64, u32, String)> {
    status
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .map(|i| {
            (
                i.id.clone(),
                (i.node.clone(), i.incarnation, i.pid, i.endpoint.clone()),
            )
        })
        .collect()
}

#[test]
fn controller_away_longer_than_node_timeout_changes_nothing() {
    let _one = one_cluster_at_a_time();
    let definition = web_definition();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "3",
        "--heartbeat-interval",
        "300ms",
        "--node-timeout",
        "2s",
        "--unresponsive-grace",
        "2s",
        "--restart-delay",
        "6s",
        "--deploy",
        &definition,
    ]);
    let before = cluster.wait_for(COME_UP, "3 Ready nodes and web Running", |s| {
        s.nodes.len() == 3
            && s.nodes.iter().all(|n| n.state == READY)
            && all_running(s, WEB, WEB_INSTANCES)
    });
    let recorded = placements(&before);
    println!("before: {recorded:#?}");

    let away = Instant::now();
    let new_pid = kill_fc_and_wait(
        &mut cluster,
        before.controller_pid,
        Duration::from_secs(6) + FC_BACK,
    );
    println!(
        "controller back as pid {new_pid} after {:.1}s",
        away.elapsed().as_secs_f64()
    );

    // Watch for node_timeout + grace + 2 s after the restart.
    let window = NODE_TIMEOUT + UNRESPONSIVE_GRACE + Duration::from_secs(2);
    let watched = Instant::now();
    let mut polls = 0;
    while watched.elapsed() < window {
        let s = cluster.status().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(s.controller_pid, new_pid, "the controller restarted again");
        for n in &s.nodes {
            assert_eq!(n.state, READY, "node {} left Ready: {s:#?}", n.id);
        }
        let now = placements(&s);
        assert_eq!(
            now.keys().collect::<Vec<_>>(),
            recorded.keys().collect::<Vec<_>>()
        );
        for (id, (node, inc, pid, endpoint)) in &now {
            let (b_node, b_inc, b_pid, b_endpoint) = &recorded[id];
            assert_eq!((node, inc), (b_node, b_inc), "{id} moved or restarted");
            // The controller learns pids and endpoints again from the host
            // agents' reports: unknown (0, "") until the first heartbeat.
            if *pid != 0 {
                assert_eq!(pid, b_pid, "{id} has another guest agent");
            }
            if !endpoint.is_empty() {
                assert_eq!(endpoint, b_endpoint, "{id} has another endpoint");
            }
        }
        polls += 1;
        std::thread::sleep(POLL);
    }
    // By now every instance is reported again, unchanged.
    let after = cluster.status().unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(placements(&after), recorded, "{after:#?}");
    assert!(all_running(&after, WEB, WEB_INSTANCES), "{after:#?}");
    println!("{polls} status polls over {window:?}: nothing changed");

    let events = cluster.events().unwrap_or_else(|e| panic!("{e}"));
    let restart = events
        .iter()
        .rposition(|e| {
            e.kind == "controller.started" && e.reason.contains("restarted with saved state")
        })
        .unwrap_or_else(|| panic!("no restart event: {events:#?}"));
    println!("restart event: {:?}", events[restart]);
    let bad: Vec<_> = events[restart + 1..]
        .iter()
        .filter(|e| DISRUPTIVE.contains(&e.kind.as_str()))
        .collect();
    assert!(
        bad.is_empty(),
        "disruptive events after the restart: {bad:#?}"
    );
}

// --- Random operations with controller kills ------------------------------

/// A small seeded PRNG (SplitMix64), so a failing run can be replayed from
/// its index alone.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed ^ 0x5eed_f00d_cafe_0001)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next() % u64::from(hi - lo + 1)) as u32
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

const HOSTS: usize = 3;
const CAPACITY: u32 = 6;
/// Instances at most, so that everything fits on the two hosts left after a
/// power-off (2 x 6 slots) with room to spare.
const BUDGET: u32 = 10;

/// The acknowledged instance counts: deployment -> role -> instances.
type Expected = BTreeMap<String, BTreeMap<String, u32>>;

/// Compares `status` with what was acknowledged and with the host agents'
/// own view; `Err` says the first difference.
fn check_settled(
    status: &StatusJson,
    expected: &Expected,
    victim: Option<&str>,
    rt: &tokio::runtime::Runtime,
    files: &TlsFiles,
) -> Result<(), String> {
    let names: Vec<&str> = status.deployments.iter().map(|d| d.name.as_str()).collect();
    let want: Vec<&str> = expected.keys().map(String::as_str).collect();
    if names.iter().collect::<std::collections::BTreeSet<_>>()
        != want.iter().collect::<std::collections::BTreeSet<_>>()
    {
        return Err(format!("deployments {names:?}, acknowledged {want:?}"));
    }
    for (name, roles) in expected {
        let list = instances(status, name);
        for (role, &count) in roles {
            let n = list.iter().filter(|i| &i.role == role).count();
            if n != count as usize {
                return Err(format!(
                    "{name}.{role}: {n} instances, acknowledged {count}"
                ));
            }
        }
        if let Some(i) = list.iter().find(|i| !roles.contains_key(&i.role)) {
            return Err(format!("unexpected role instance {}", i.id));
        }
    }
    let all: Vec<_> = status
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .collect();
    if let Some(i) = all
        .iter()
        .find(|i| i.state != RUNNING || i.pid == 0 || i.node.is_empty())
    {
        return Err(format!("{} is {} on {:?}", i.id, i.state, i.node));
    }
    if let Some(v) = victim
        && let Some(i) = all.iter().find(|i| i.node == v)
    {
        return Err(format!("{} is still on the powered-off {v}", i.id));
    }
    // Ground truth: every live host agent's own list of VMs.
    let mut running: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for n in &status.nodes {
        if Some(n.id.as_str()) == victim {
            continue;
        }
        let vms = rt.block_on(host_vms(&n.host_endpoint, files))?;
        for (vm, state, inc) in vms {
            if state != VmState::VmStopped {
                if state != VmState::VmRunning {
                    return Err(format!("{vm} is {state:?} on {}", n.id));
                }
                running.entry(vm).or_default().push((n.id.clone(), inc));
            }
        }
    }
    for i in &all {
        match running.remove(&i.id) {
            Some(on) if on == [(i.node.clone(), i.incarnation)] => {}
            on => {
                return Err(format!(
                    "{} (incarnation {} on {}): host agents run it as {on:?}",
                    i.id, i.incarnation, i.node
                ));
            }
        }
    }
    if !running.is_empty() {
        return Err(format!("VMs no deployment wants: {running:?}"));
    }
    Ok(())
}

/// Records the first (node, incarnation) each Running instance is seen with;
/// forgets instances that are gone (scaled down).
fn observe(status: &StatusJson, seen: &mut BTreeMap<String, (String, u64)>) {
    let ids: Vec<&str> = status
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .map(|i| i.id.as_str())
        .collect();
    seen.retain(|id, _| ids.contains(&id.as_str()));
    for i in status.deployments.iter().flat_map(|d| &d.instances) {
        if i.state == RUNNING && !i.node.is_empty() {
            seen.entry(i.id.clone())
                .or_insert_with(|| (i.node.clone(), i.incarnation));
        }
    }
}

fn one_random_run(run: u64, defs: &Path) {
    let mut rng = Rng::new(run);
    let definition = web_definition();
    let hosts = HOSTS.to_string();
    let capacity = CAPACITY.to_string();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        &hosts,
        "--capacity",
        &capacity,
        "--heartbeat-interval",
        "300ms",
        "--node-timeout",
        "2s",
        "--unresponsive-grace",
        "2s",
        "--guest-heartbeat-interval",
        "500ms",
        "--guest-heartbeat-timeout",
        "3s",
        "--guest-timeout",
        "20s",
        "--restart-delay",
        "1s",
        "--hi-threshold",
        "3",
        "--deploy",
        &definition,
    ]);
    let first = cluster.wait_for(COME_UP, "3 Ready nodes and web Running", |s| {
        s.nodes.len() == HOSTS
            && s.nodes.iter().all(|n| n.state == READY)
            && all_running(s, WEB, WEB_INSTANCES)
    });
    let mut fc_pid = first.controller_pid;
    let nodes: Vec<String> = first.nodes.iter().map(|n| n.id.clone()).collect();
    let mut expected: Expected = BTreeMap::from([(
        WEB.to_owned(),
        BTreeMap::from([("frontend".to_owned(), 2), ("api".to_owned(), 1)]),
    )]);
    let mut seen = BTreeMap::new();
    observe(&first, &mut seen);
    let mut victim: Option<String> = None;
    let mut log: Vec<String> = Vec::new();
    let cert = services::example_file("certs/web.pem");
    let key = services::example_file("certs/web.key");

    let ops = rng.range(4, 6);
    for step in 0..ops {
        let total: u32 = expected.values().flat_map(|r| r.values()).sum();
        let choice = rng.range(0, 2);
        let (what, result) = if choice == 0 && victim.is_none() {
            let node = nodes[rng.range(0, HOSTS as u32 - 1) as usize].clone();
            let r = ctl(&cluster, &["chaos", "power-off", &node]);
            if r.is_ok() {
                victim = Some(node.clone());
            }
            (format!("power-off {node}"), r)
        } else if choice == 1 && total < BUDGET {
            let name = format!("svc{run}x{step}");
            let count = rng.range(1, 2.min(BUDGET - total));
            let path = services::write_definition(defs, &name, &[("work", count)], &cert, &key);
            let r = ctl(&cluster, &["deploy", path.to_str().expect("UTF-8 path")]);
            if r.is_ok() {
                expected.insert(name.clone(), BTreeMap::from([("work".to_owned(), count)]));
            }
            (format!("deploy {name} work={count}"), r)
        } else {
            let dep = expected
                .keys()
                .nth(rng.range(0, expected.len() as u32 - 1) as usize);
            let dep = dep.expect("a deployment").clone();
            let roles = &expected[&dep];
            let role = roles
                .keys()
                .nth(rng.range(0, roles.len() as u32 - 1) as usize);
            let role = role.expect("a role").clone();
            let now = roles[&role];
            let room = BUDGET - total;
            let to = rng.range(1, (now + room).min(3));
            let r = ctl(&cluster, &["scale", &dep, &role, &to.to_string()]);
            if r.is_ok() {
                expected
                    .get_mut(&dep)
                    .expect("known")
                    .insert(role.clone(), to);
            }
            (format!("scale {dep} {role} {now}->{to}"), r)
        };
        let acked = result.is_ok();
        let kill = acked && rng.coin();
        log.push(format!(
            "{step}: {what}: {}{}",
            match &result {
                Ok(_) => "acknowledged".to_owned(),
                Err(e) => format!("FAILED ({e})"),
            },
            if kill { "; kill-fc" } else { "" }
        ));
        println!("run {run} {}", log.last().expect("pushed"));
        if kill {
            fc_pid = kill_fc_and_wait(&mut cluster, fc_pid, Duration::from_secs(1) + FC_BACK);
        }
        if let Ok(s) = cluster.status() {
            observe(&s, &mut seen);
        }
    }

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let files = admin_files(&cluster.state_dir);
    let deadline = Instant::now() + COME_UP;
    let settled = loop {
        let verdict = cluster.status().and_then(|s| {
            observe(&s, &mut seen);
            check_settled(&s, &expected, victim.as_deref(), &rt, &files).map(|()| s)
        });
        match verdict {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                panic!(
                    "run {run}: not settled after {COME_UP:?}: {e}\noperations:\n{}",
                    log.join("\n")
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    // No needless restarts: an instance first seen Running on a node that
    // never failed still has that node and incarnation.
    let mut unchanged = 0;
    for i in settled.deployments.iter().flat_map(|d| &d.instances) {
        let Some((node, inc)) = seen.get(&i.id) else {
            continue;
        };
        if Some(node.as_str()) == victim.as_deref() {
            continue;
        }
        unchanged += 1;
        assert_eq!(
            (&i.node, i.incarnation),
            (node, *inc),
            "run {run}: {} was restarted although {node} never failed\noperations:\n{}",
            i.id,
            log.join("\n")
        );
    }
    println!(
        "run {run}: settled, {} instances checked against the host agents, \
         {unchanged} kept their first node and incarnation\noperations:\n{}",
        settled
            .deployments
            .iter()
            .map(|d| d.instances.len())
            .sum::<usize>(),
        log.join("\n")
    );
}

#[test]
fn acknowledged_operations_survive_controller_kills() {
    let _one = one_cluster_at_a_time();
    let runs: u64 = std::env::var("FABRIC_FC_KILL_RUNS")
        .ok()
        .map(|v| v.parse().expect("FABRIC_FC_KILL_RUNS is a number"))
        .unwrap_or(3);
    let defs = tempfile::tempdir().expect("tempdir");
    for run in 0..runs {
        one_random_run(run, defs.path());
    }
}
