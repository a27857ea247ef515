//! Rolling the fabric's own software out, on real processes: `fabricctl up`
//! with 4 servers in 4 update domains, a package built from this
//! workspace's binaries, `fabricctl update start`.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::{self, LocalCluster, poll_until};
use fabric_tests::https::{cert_der, fetch, runtime};
use fabric_tests::procs;
use fabric_tests::services::{self, all_running, instances};
use fabricctl::package::{NEW_PAIR, REPAIR_2012};
use fabricctl::status::StatusJson;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const WEB: &str = "web";
const P2: &str = NEW_PAIR.version;
const REPAIR: &str = REPAIR_2012.version;
const FRONT: u32 = 4;
/// For the cluster and deployment to come up on a busy 2-core machine.
const COME_UP: Duration = Duration::from_secs(90);
/// For a whole rollout: 4 domains, each a host agent restart, 1 VM
/// restart and the gate's stable time.
const ROLLOUT: Duration = Duration::from_secs(240);

/// 4 servers, one per update domain, fast heartbeats; `extra` appended.
fn start(extra: &[&str]) -> (LocalCluster, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let definition = services::write_definition(
        dir.path(),
        WEB,
        &[("front", FRONT)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let mut args = vec![
        "--hosts",
        "4",
        "--update-domains",
        "4",
        "--fault-domains",
        "2",
        "--restart-delay",
        "1s",
        "--heartbeat-interval",
        "200ms",
        "--node-timeout",
        "2s",
        "--guest-heartbeat-interval",
        "300ms",
        "--guest-heartbeat-timeout",
        "3s",
        "--deploy",
        definition.to_str().expect("UTF-8 path"),
    ];
    args.extend_from_slice(extra);
    let mut cluster = LocalCluster::start(&args);
    cluster.wait_for(COME_UP, "4 Ready servers running web", |s| {
        s.nodes.len() == 4
            && s.nodes.iter().all(|n| n.state == "Ready")
            && all_running(s, WEB, FRONT as usize)
    });
    (cluster, dir)
}

/// Host agent 2.0 and networking plugin net-2, speaking bindings
/// interface 2 to each other.
fn package(dir: &std::path::Path) -> std::path::PathBuf {
    fabric_tests::packages::write(&NEW_PAIR, dir)
}

/// The 2012 repair: an older host agent (bindings interface 1) shipped
/// with the newer plugin (interface 2).
fn repair(dir: &std::path::Path) -> std::path::PathBuf {
    fabric_tests::packages::write(&REPAIR_2012, dir)
}

fn update_status(s: &StatusJson) -> &str {
    s.update.as_ref().map_or("", |u| u.status.as_str())
}

fn packages(s: &StatusJson) -> BTreeMap<String, String> {
    s.nodes
        .iter()
        .map(|n| (n.id.clone(), n.package.clone()))
        .collect()
}

#[test]
fn a_rollout_walks_update_domains_while_the_role_keeps_serving() {
    let (mut cluster, dir) = start(&[]);
    let web_der = cert_der(&services::example_file("certs/web.pem"));
    let rt = runtime();
    let before = cluster.status().expect("status");
    let pids: BTreeMap<String, u32> = before.nodes.iter().map(|n| (n.id.clone(), n.pid)).collect();
    assert!(
        before.nodes.iter().all(|n| n.package == "base"),
        "{before:#?}"
    );

    let pkg = package(dir.path());
    let added = cluster.run_ok(&["package", "add", pkg.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&added.stdout);
    assert!(text.contains(&format!("package {P2} added")), "{text}");
    let listed = cluster.run_ok(&["package", "list"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains(P2));
    cluster.run_ok(&[
        "update",
        "start",
        P2,
        "--gate-stable",
        "2s",
        "--gate-timeout",
        "120s",
    ]);

    // Probe every instance of the role from outside, all through the
    // rollout; kill the controller once the first domain has passed.
    let started = Instant::now();
    let mut rounds = 0;
    let mut killed_controller = false;
    let mut last = before;
    loop {
        assert!(
            started.elapsed() < ROLLOUT,
            "rollout not done within {ROLLOUT:?}: {:#?}",
            last.update
        );
        if let Ok(s) = cluster.status() {
            last = s;
        }
        if update_status(&last) == "Succeeded" {
            break;
        }
        assert!(
            matches!(update_status(&last), "Running" | ""),
            "the rollout stopped: {:#?}",
            last.update
        );
        let front = instances(&last, WEB);
        let serving = front
            .iter()
            .filter(|i| !i.endpoint.is_empty())
            .filter(|i| fetch(&rt, &i.endpoint, &web_der).is_ok())
            .count();
        assert!(
            serving >= 1,
            "no instance of web.front served at probe round {rounds}: {front:#?}"
        );
        rounds += 1;
        if !killed_controller && last.update.as_ref().is_some_and(|u| u.step >= 1) {
            cluster.run_ok(&["chaos", "kill-fc"]);
            killed_controller = true;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        killed_controller,
        "the controller was never killed mid-rollout"
    );
    assert!(rounds >= 10, "only {rounds} probe rounds");

    let after = cluster.wait_for(COME_UP, "web Running after the rollout", |s| {
        all_running(s, WEB, FRONT as usize)
    });
    for n in &after.nodes {
        assert_eq!(n.package, P2, "{n:#?}");
        assert_eq!(n.agent_version, NEW_PAIR.host_agent, "{n:#?}");
        // exec: the same process, a new boot.
        assert_eq!(n.pid, pids[&n.id], "{} changed pid: {n:#?}", n.id);
        assert!(n.restarts >= 1, "{n:#?}");
    }
    for i in instances(&after, WEB) {
        assert!(
            i.incarnation >= 2,
            "{i:#?} was not restarted by the rollout"
        );
        let cmd = procs::cmdline(i.pid).unwrap_or_default();
        assert!(
            cmd.contains(&format!("/packages/{P2}/guest-agent")),
            "{} runs {cmd:?}, not the package's guest agent",
            i.id
        );
    }
    // One domain at a time, in order; each passed before the next started.
    let events = cluster.events().expect("events");
    let walk: Vec<String> = events
        .iter()
        .filter(|e| e.kind == "update.progress")
        .map(|e| {
            let domain = e
                .reason
                .split("(update domain ")
                .nth(1)
                .and_then(|r| r.chars().next())
                .unwrap_or('?');
            let what = if e.reason.contains("started") {
                "start"
            } else {
                "pass"
            };
            format!("{what} {domain}")
        })
        .collect();
    let mut expected: Vec<String> = Vec::new();
    for d in 0..4 {
        expected.push(format!("start {d}"));
        expected.push(format!("pass {d}"));
    }
    // A controller restart re-announces the step it was in.
    let mut deduped = walk.clone();
    deduped.dedup();
    assert_eq!(deduped, expected, "{walk:?}");
    assert!(
        events.iter().any(|e| e.kind == "update.finished"),
        "{events:#?}"
    );
    // The version mix in metrics, per update domain, and the dashboard's
    // rollout summary.
    let dashboard = cluster.dashboard_url();
    let scrape = fabric_tests::scrape::metrics(&dashboard).expect("metrics");
    for ud in ["0", "1", "2", "3"] {
        let servers = fabric_tests::scrape::value(
            &scrape,
            "fabric_servers_by_software",
            &[
                ("package", P2),
                ("update_domain", ud),
                ("host_agent", NEW_PAIR.host_agent),
            ],
        );
        assert_eq!(servers, Some(1.0), "update domain {ud}");
    }
    let summary = fabric_tests::scrape::get(&dashboard, "/api/summary").expect("summary");
    let summary: serde_json::Value = serde_json::from_str(&summary.body).expect("JSON");
    assert_eq!(
        summary["rollout"]["status"], "Succeeded",
        "{}",
        summary["rollout"]
    );
    assert_eq!(
        summary["rollout"]["servers_done"], 4,
        "{}",
        summary["rollout"]
    );
    assert_eq!(
        summary["versions"][3]["packages"][P2], 1,
        "{}",
        summary["versions"]
    );
}

#[test]
fn hi_mode_stops_a_rollout_and_a_killed_host_agent_comes_back_on_its_package() {
    let (mut cluster, dir) = start(&["--hi-threshold", "2", "--unresponsive-grace", "3s"]);
    let pkg = package(dir.path());
    cluster.run_ok(&["package", "add", pkg.to_str().unwrap()]);
    cluster.run_ok(&[
        "update",
        "start",
        P2,
        "--gate-stable",
        "15s",
        "--gate-timeout",
        "120s",
    ]);
    // host-1 is update domain 0: the first to move.
    let moved = cluster.wait_for(COME_UP, "host-1 on the new package", |s| {
        cluster::node(s, "host-1").is_some_and(|n| n.package == P2 && n.state == "Ready")
    });
    let host1 = cluster::node(&moved, "host-1").unwrap().clone();

    // Killed after its update, it comes back on its package, not the base.
    cluster.run_ok(&["chaos", "kill-agent", "host-1"]);
    cluster.wait_for(
        COME_UP,
        "host-1 back on the new package after a kill",
        |s| {
            cluster::node(s, "host-1").is_some_and(|n| {
                n.package == P2
                    && n.state == "Ready"
                    && n.pid != host1.pid
                    && n.restarts > host1.restarts
            })
        },
    );

    // Two servers lost: the HI threshold (2) trips, and the rollout stops.
    cluster.run_ok(&["chaos", "power-off", "host-3"]);
    cluster.run_ok(&["chaos", "power-off", "host-4"]);
    let stopped = cluster.wait_for(COME_UP, "the rollout stopped by HI mode", |s| {
        s.mode == "HumanInvestigate"
            && s.update
                .as_ref()
                .is_some_and(|u| u.status == "Paused" && u.stopped_because.contains("HI mode"))
    });
    let frozen = packages(&stopped);
    // Well past when domain 0's gate would have passed and domain 1 started.
    let watch = Instant::now();
    while watch.elapsed() < Duration::from_secs(20) {
        let s = cluster.status().expect("status");
        for (node, package) in packages(&s) {
            if node != "host-3" && node != "host-4" {
                assert_eq!(&package, &frozen[&node], "{node} changed in HI mode");
            }
        }
        assert_eq!(update_status(&s), "Paused");
        std::thread::sleep(Duration::from_millis(500));
    }
    assert_eq!(frozen["host-2"], "base", "{frozen:?}");
    let refused = cluster.run(&["update", "resume"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("HI mode"), "{err}");
    let events = cluster.events().expect("events");
    assert!(
        events
            .iter()
            .any(|e| e.kind == "update.stopped" && e.reason.contains("HI mode")),
        "{events:#?}"
    );
}

#[test]
fn an_incompatible_package_is_refused_with_both_versions_named() {
    let (cluster, dir) = start(&[]);
    let repair = repair(dir.path());
    let out = cluster.run(&["package", "add", repair.to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("net-2") && err.contains("1.0"), "{err}");
    let listed = cluster.run_ok(&["package", "list"]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout).contains(REPAIR),
        "a refused package was kept"
    );
    // Forced, it is kept, and still refused at update start without --force.
    cluster.run_ok(&["package", "add", "--force", repair.to_str().unwrap()]);
    let out = cluster.run(&["update", "start", REPAIR]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("net-2") && err.contains("1.0"), "{err}");
}

#[test]
fn a_forced_incompatible_plugin_is_caught_by_the_gate_and_rolled_back() {
    let (mut cluster, dir) = start(&[]);
    let web_der = cert_der(&services::example_file("certs/web.pem"));
    let rt = runtime();
    let repair = repair(dir.path());
    cluster.run_ok(&["package", "add", "--force", repair.to_str().unwrap()]);
    let out = cluster.run_ok(&[
        "update",
        "start",
        REPAIR,
        "--force",
        "--on-failure",
        "rollback",
        "--gate-stable",
        "2s",
        "--gate-timeout",
        "15s",
    ]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("Running"));
    // Probe every instance until the rollout has rolled back; count the
    // instance-seconds an endpoint did not answer.
    let started = Instant::now();
    let mut unreachable = Duration::ZERO;
    let mut seen_down_on = std::collections::BTreeSet::new();
    let mut last = cluster.status().expect("status");
    while update_status(&last) != "RolledBack" {
        assert!(
            started.elapsed() < ROLLOUT,
            "not rolled back within {ROLLOUT:?}: {:#?}",
            last.update
        );
        let round = Instant::now();
        for i in instances(&last, WEB) {
            if !i.endpoint.is_empty() && fetch(&rt, &i.endpoint, &web_der).is_err() {
                seen_down_on.insert(i.node.clone());
                unreachable += Duration::from_millis(250);
            }
        }
        std::thread::sleep(Duration::from_millis(250).saturating_sub(round.elapsed()));
        if let Ok(s) = cluster.status() {
            last = s;
        }
    }
    // Only update domain 0 (host-1) ever ran the pair, and only its VMs
    // were unreachable; everyone is on the base again.
    assert_eq!(
        seen_down_on.into_iter().collect::<Vec<_>>(),
        vec!["host-1".to_owned()],
        "endpoints down elsewhere than the first domain"
    );
    assert!(
        unreachable > Duration::ZERO,
        "the incompatible pair never broke an endpoint"
    );
    let events = cluster.events().expect("events");
    let rollback = events
        .iter()
        .find(|e| e.kind == "update.rollback")
        .expect("a rollback event");
    assert!(
        rollback.reason.contains("networking plugin") && rollback.reason.contains("incompatible"),
        "{}",
        rollback.reason
    );
    let after = cluster.wait_for(COME_UP, "web Running on base everywhere", |s| {
        all_running(s, WEB, FRONT as usize) && s.nodes.iter().all(|n| n.package == "base")
    });
    // Running is reported when the role serves and the plugin says it
    // forwards the port; a plugin restarted by the rollback may still be
    // taking its ports back (a gap this test measures, see the print).
    let settled = Instant::now();
    for i in instances(&after, WEB) {
        poll_until(
            Duration::from_secs(10),
            Duration::from_millis(100),
            &format!("{} serving at {} after the rollback", i.id, i.endpoint),
            || fetch(&rt, &i.endpoint, &web_der).ok(),
        );
    }
    eprintln!(
        "after the rollback every endpoint served {:.1}s after status said Running",
        settled.elapsed().as_secs_f64()
    );
    eprintln!(
        "forced incompatible plugin: endpoint downtime {:.1} instance-seconds, caught and rolled back in {:.1}s",
        unreachable.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}
