//! The controller's `/metrics` scraped from a real local cluster and read
//! with a Prometheus text parser (not string matching): the counters and
//! gauges must move as a server fails and its instances are healed; the
//! surviving host agents' `/metrics` must count the VMs they now run.

use fabric_tests::cluster::{LocalCluster, fast_web_flags};
use fabric_tests::scrape;
use fabric_tests::services::{self, all_running};
use prometheus_parse::Scrape;
use std::time::Duration;

const COME_UP: Duration = Duration::from_secs(60);

fn scrape(url: &str) -> Scrape {
    scrape::metrics(url).unwrap_or_else(|e| panic!("{e}"))
}

/// The value of sample `name` whose labels include `labels`.
fn value(s: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    scrape::value(s, name, labels).unwrap_or_else(|| panic!("no sample {name}{labels:?}"))
}

/// Observations of histogram `name` (its `_count` sample).
fn count(s: &Scrape, name: &str) -> f64 {
    value(s, &format!("{name}_count"), &[])
}

#[test]
fn metrics_follow_a_failure_and_its_healing() {
    let flags = fast_web_flags("1s");
    let mut cluster = LocalCluster::start(&flags.iter().map(String::as_str).collect::<Vec<_>>());
    let up = cluster.wait_for(COME_UP, "web Running", |s| all_running(s, "web", 3));
    let url = cluster.dashboard_url();

    let before = scrape(&url);
    assert_eq!(value(&before, "fabric_nodes", &[("state", "Ready")]), 3.0);
    assert_eq!(
        value(&before, "fabric_nodes", &[("state", "HumanInvestigate")]),
        0.0
    );
    assert_eq!(
        value(&before, "fabric_role_instances", &[("state", "Running")]),
        3.0
    );
    assert_eq!(
        value(&before, "fabric_cluster_mode", &[("mode", "Normal")]),
        1.0
    );
    assert_eq!(value(&before, "fabric_hi_threshold_nodes", &[]), 2.0);
    assert_eq!(
        value(
            &before,
            "fabric_secret_deliveries_total",
            &[("result", "delivered")]
        ),
        3.0
    );
    assert!(value(&before, "fabric_heartbeats_received_total", &[]) > 0.0);
    let expiry = value(
        &before,
        "fabric_certificate_expiry_timestamp_seconds",
        &[
            ("deployment", "web"),
            ("role", "frontend"),
            ("certificate", "https"),
        ],
    );
    assert!(expiry > 1.0e9, "deployed certificate expiry {expiry}");
    assert!(
        value(
            &before,
            "fabric_certificate_expiry_timestamp_seconds",
            &[("certificate", "cluster CA")]
        ) > 1.0e9
    );
    assert_eq!(count(&before, "fabric_detection_latency_seconds"), 0.0);

    // Lose the busiest server for good.
    let victim = up
        .nodes
        .iter()
        .max_by_key(|n| {
            services::instances(&up, "web")
                .iter()
                .filter(|i| i.node == n.id)
                .count()
        })
        .expect("a node")
        .id
        .clone();
    cluster.run_ok(&["chaos", "power-off", &victim]);
    cluster.wait_for(COME_UP, "healed", |s| {
        s.nodes
            .iter()
            .any(|n| n.id == victim && n.state == "HumanInvestigate")
            && services::instances(s, "web")
                .iter()
                .all(|i| i.state == "Running" && i.node != victim)
    });

    let after = scrape(&url);
    assert_eq!(value(&after, "fabric_nodes", &[("state", "Ready")]), 2.0);
    assert_eq!(
        value(&after, "fabric_nodes", &[("state", "HumanInvestigate")]),
        1.0
    );
    assert_eq!(value(&after, "fabric_hi_nodes", &[]), 1.0);
    assert_eq!(
        value(&after, "fabric_role_instances", &[("state", "Running")]),
        3.0
    );
    assert!(
        value(&after, "fabric_heartbeats_received_total", &[])
            > value(&before, "fabric_heartbeats_received_total", &[])
    );
    let started = value(&after, "fabric_healing_operations_started_total", &[]);
    assert!(started >= 1.0, "healing started {started}");
    assert_eq!(
        value(&after, "fabric_healing_operations_completed_total", &[]),
        started
    );
    assert_eq!(count(&after, "fabric_time_to_heal_seconds"), started);
    assert_eq!(count(&after, "fabric_detection_latency_seconds"), 1.0);

    // `fabricctl up` gives every host agent a /metrics and says where. The
    // survivors now run all three VMs, each timed from spawn to Running
    // where it runs.
    let (mut running, mut inits) = (0.0, 0.0);
    lint(&url);
    for n in after_nodes(&cluster, &victim) {
        let file = cluster.state_dir.join(format!("run/{n}-http.addr"));
        let addr =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        lint(&format!("http://{}/", addr.trim()));
        let host = scrape(&format!("http://{}/", addr.trim()));
        running += value(&host, "fabric_host_vms", &[("state", "Running")]);
        inits += count(&host, "fabric_host_guest_init_seconds");
    }
    assert_eq!(running, 3.0);
    assert!(inits >= 3.0, "{inits} guest inits on the survivors");
    // The controller marks a node only after node_timeout (1s) of silence,
    // and measures that silence itself; how much longer is a timing, for
    // benchmarks, not this test.
    let detection = value(&after, "fabric_detection_latency_seconds_sum", &[]);
    assert!(
        detection >= 1.0,
        "detection latency {detection}s below node_timeout"
    );
}

/// `promtool check metrics` reports nothing on `url`'s /metrics. Without
/// promtool the check is skipped with a notice, and fails under CI (where
/// scripts/test.sh installs it).
fn lint(url: &str) {
    match scrape::promtool_check(url) {
        Ok((ok, said)) => assert!(ok && said.is_empty(), "promtool on {url}: {said}"),
        Err(e) if std::env::var("CI").is_ok_and(|v| v == "true") => panic!("{e}"),
        Err(e) => eprintln!("skipping promtool on {url}: {e}"),
    }
}

/// The nodes other than `victim`.
fn after_nodes(cluster: &LocalCluster, victim: &str) -> Vec<String> {
    cluster
        .status()
        .expect("status")
        .nodes
        .into_iter()
        .map(|n| n.id)
        .filter(|n| n != victim)
        .collect()
}
