//! A cluster of 200 hollow hosts (real host agents, in-process VMs; see
//! hollow/) under a real controller: deploy 1,000 instances, power off 20
//! servers at once, and check that everything is healed and that, by each
//! host agent's own account, every instance runs exactly once, on the server
//! the controller names.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::{LocalCluster, poll_ok};
use fabric_tests::ground_truth::{admin_files, running_once_where_placed};
use fabric_tests::https::runtime;
use fabric_tests::services;
use fabricctl::status::StatusJson;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const HOSTS: usize = 200;
const LOST: usize = 20;
const INSTANCES: usize = 1_000;
/// The example service's roles: frontend (scaled below) and api x1.
const API_INSTANCES: usize = 1;
/// For 200 hosts to register, and 1,000 VMs to start or heal, on a busy
/// 2-core machine running debug binaries.
const LIMIT: Duration = Duration::from_secs(180);

fn running_instances(s: &StatusJson) -> usize {
    s.deployments
        .iter()
        .flat_map(|d| &d.instances)
        .filter(|i| i.state == "Running")
        .count()
}

fn all_instances(s: &StatusJson) -> usize {
    s.deployments.iter().map(|d| d.instances.len()).sum()
}

#[test]
fn two_hundred_hollow_hosts_heal_twenty_lost_at_once_and_run_everything_once() {
    let definition = services::example_file("service.toml");
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "0",
        "--hollow",
        &HOSTS.to_string(),
        "--capacity",
        "20",
        "--fault-domains",
        "5",
        "--update-domains",
        "5",
        "--heartbeat-interval",
        "1s",
        "--node-timeout",
        "4s",
        "--unresponsive-grace",
        "2s",
        // Above the 20 servers lost: the brake is not what this tests.
        "--hi-threshold",
        "30",
        "--restart-delay",
        "1h",
        "--deploy",
        definition.to_str().expect("UTF-8 path"),
    ]);
    let started = Instant::now();
    cluster.wait_ready(HOSTS, LIMIT);
    eprintln!(
        "{HOSTS} hollow hosts Ready after {:.1}s",
        started.elapsed().as_secs_f64()
    );

    let frontends = (INSTANCES - API_INSTANCES).to_string();
    cluster.wait_for(LIMIT, "the example service deployed", |s| {
        !s.deployments.is_empty()
    });
    cluster.run_ok(&["scale", "web", "frontend", &frontends]);
    let deployed = Instant::now();
    cluster.wait_for(LIMIT, "every instance Running", |s| {
        all_instances(s) == INSTANCES && running_instances(s) == INSTANCES
    });
    eprintln!(
        "{INSTANCES} instances Running {:.1}s after the scale",
        deployed.elapsed().as_secs_f64()
    );
    heartbeats_repeat_nothing(&cluster);

    // Power off hollow-1..hollow-20: every fault and update domain loses some.
    let lost: BTreeSet<String> = (1..=LOST).map(|i| format!("hollow-{i}")).collect();
    let before = cluster.status().unwrap_or_else(|e| panic!("{e}"));
    let displaced = before
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .filter(|i| lost.contains(&i.node))
        .count();
    assert!(
        displaced > 0,
        "the lost servers ran nothing: the test proves nothing"
    );
    for name in &lost {
        cluster.power_off_hollow(name);
    }
    let lost_at = Instant::now();
    let healed = cluster.wait_for(LIMIT, "every instance Running off the lost servers", |s| {
        let off_lost = s
            .deployments
            .iter()
            .flat_map(|d| &d.instances)
            .all(|i| i.state == "Running" && !lost.contains(&i.node));
        off_lost && all_instances(s) == INSTANCES
    });
    eprintln!(
        "{displaced} instances of {LOST} lost servers Running elsewhere {:.1}s after the loss",
        lost_at.elapsed().as_secs_f64()
    );
    for n in healed.nodes.iter().filter(|n| lost.contains(&n.id)) {
        assert_ne!(n.state, "Ready", "{} was powered off", n.id);
    }
    assert_eq!(healed.mode, "Normal", "{}", healed.mode_reason);

    // Ground truth from every live host agent: each instance runs on exactly
    // one server, the one the controller says; a Running VM on no server or
    // on two would be a loss or a split brain.
    let rt = runtime();
    let files = admin_files(&cluster.state_dir);
    poll_ok(
        Duration::from_secs(30),
        Duration::from_millis(500),
        "every instance Running on exactly one hollow host, as placed",
        || running_once_where_placed(&rt, &healed, &lost, &files),
    );
    assert_eq!(all_instances(&healed), INSTANCES);
    eprintln!("ground truth: {INSTANCES} instances Running once each, where placed");

    operating_a_big_cluster(&cluster, &lost);
    cluster.terminate(Duration::from_secs(30));
}

/// A cluster where nothing changes: heartbeats carry no VM report the
/// controller already has (a host reports every VM once a minute, or when
/// asked), and replies do not repeat the desired set. Every heartbeat
/// repeating its five reports would carry five per heartbeat.
fn heartbeats_repeat_nothing(cluster: &LocalCluster) {
    use fabric_tests::scrape;
    let dashboard = cluster.dashboard_url();
    let read = || {
        let s = scrape::metrics(&dashboard).unwrap_or_else(|e| panic!("{e}"));
        let v =
            |name: &str, labels: &[(&str, &str)]| scrape::value(&s, name, labels).unwrap_or(0.0);
        (
            v("fabric_heartbeats_received_total", &[]),
            v("fabric_heartbeat_vm_reports_total", &[]),
            v("fabric_desired_sets_total", &[("kind", "unchanged")]),
            v("fabric_desired_sets_total", &[("kind", "full")]),
        )
    };
    let before = read();
    // A window of two heartbeats per host, counted in heartbeats, not
    // seconds (the poll fails if they do not come).
    let after = fabric_tests::cluster::poll_until(
        LIMIT,
        Duration::from_millis(200),
        "two heartbeats from every host",
        || {
            let now = read();
            (now.0 - before.0 >= 2.0 * HOSTS as f64).then_some(now)
        },
    );
    let (beats, reports, unchanged, full) = (
        after.0 - before.0,
        after.1 - before.1,
        after.2 - before.2,
        after.3 - before.3,
    );
    eprintln!(
        "steady: {beats} heartbeats carried {reports} VM reports; desired sets {unchanged} \
         unchanged, {full} sent whole"
    );
    let per_host = (INSTANCES / HOSTS) as f64;
    assert!(
        reports < beats * per_host / 4.0,
        "{reports} VM reports in {beats} heartbeats: repeated, not changes"
    );
    assert!(
        unchanged > 4.0 * full,
        "{unchanged} unchanged, {full} sent whole"
    );
}

/// What an operator reads of 200 servers and 1,000 instances, 20 servers
/// in Human Investigate: `fabricctl status` a page at a time (as JSON and
/// as JSON Lines, several pages each) and the dashboard's condensed view.
fn operating_a_big_cluster(cluster: &LocalCluster, lost: &BTreeSet<String>) {
    // Pages of 300: four calls, every instance once, as one call would give.
    let json = cluster.run_ok(&["status", "-o", "json", "--page-size", "300"]);
    let paged: StatusJson = serde_json::from_slice(&json.stdout).expect("status -o json");
    let ids = |s: &StatusJson| -> Vec<String> {
        s.deployments
            .iter()
            .flat_map(|d| &d.instances)
            .map(|i| i.id.clone())
            .collect()
    };
    let paged_ids = ids(&paged);
    assert_eq!(paged_ids.len(), INSTANCES);
    assert_eq!(
        paged_ids.iter().collect::<BTreeSet<_>>().len(),
        INSTANCES,
        "no instance twice across pages"
    );
    let lines = cluster.run_ok(&["status", "-o", "jsonl", "--page-size", "300"]);
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&lines.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let kinds = |k: &str| lines.iter().filter(|l| l["kind"] == k).count();
    assert_eq!(lines[0]["kind"], "cluster");
    assert_eq!(lines[0]["instances_matched"], INSTANCES);
    assert_eq!(
        (kinds("cluster"), kinds("node"), kinds("deployment")),
        (1, HOSTS, 1)
    );
    let streamed: BTreeSet<&str> = lines
        .iter()
        .filter(|l| l["kind"] == "instance")
        .filter_map(|l| l["id"].as_str())
        .collect();
    assert_eq!(kinds("instance"), INSTANCES);
    assert_eq!(streamed.len(), INSTANCES, "no instance twice in the stream");

    // The dashboard lists at most 60 servers, the 20 in Human Investigate
    // first, and its grid counts all 200.
    let summary = fabric_tests::scrape::get(&cluster.dashboard_url(), "/api/summary")
        .expect("dashboard summary");
    let summary: serde_json::Value = serde_json::from_str(&summary.body).expect("JSON");
    let nodes = summary["nodes"].as_array().expect("nodes");
    assert_eq!(summary["nodes_total"], HOSTS);
    assert!(nodes.len() <= 60, "{} servers listed", nodes.len());
    let first: BTreeSet<String> = nodes[..LOST]
        .iter()
        .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(&first, lost, "the lost servers are listed first");
    let counted: u64 = summary["domains"]
        .as_array()
        .expect("domains")
        .iter()
        .flat_map(|c| c["servers"].as_object().expect("servers").values())
        .map(|v| v.as_u64().unwrap_or(0))
        .sum();
    assert_eq!(counted, HOSTS as u64, "the grid counts every server");
    let web = &summary["deployments"][0];
    assert_eq!(web["instances_total"], INSTANCES);
    assert!(web["instances"].as_array().expect("instances").len() <= 100);
}
