//! The cross-check: the same measurements with real host agents and real
//! guest agents (one process each), at the size this machine holds, so the
//! hollow figures can be read per host against real ones. `scale --real
//! 50`: `fabricctl up --hosts 50 --capacity 5`, 4 VMs per host, the hollow
//! run's timings.
//!
//! Heartbeat round trips come from each host agent's own
//! `fabric_host_heartbeat_seconds` histogram (doubling buckets, so quantiles
//! are coarser than fabric-hollow's four to a doubling).

use super::{GRACE, LIMIT, NODE_TIMEOUT, WINDOW, addr_after_restart, usage, wait};
use fabric_tests::cluster::LocalCluster;
use fabric_tests::{scrape, services};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const VMS_PER_HOST: u32 = 4;
const CAPACITY: u32 = 5;

/// Every host's heartbeat histogram summed: bucket upper bound -> count
/// (cumulative, as Prometheus keeps them).
fn heartbeat_buckets(root: &Path, n: u32) -> BTreeMap<u64, f64> {
    let mut sum: BTreeMap<u64, f64> = BTreeMap::new();
    for i in 1..=n {
        let file = root.join("run").join(format!("host-{i}-http.addr"));
        let Ok(addr) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(m) = scrape::metrics(addr.trim()) else {
            continue;
        };
        for s in m
            .samples
            .iter()
            .filter(|s| s.metric == "fabric_host_heartbeat_seconds")
        {
            if let prometheus_parse::Value::Histogram(buckets) = &s.value {
                for b in buckets {
                    // Keyed in nanoseconds (+Inf as u64::MAX) to sort.
                    let key = if b.less_than.is_finite() {
                        (b.less_than * 1e9) as u64
                    } else {
                        u64::MAX
                    };
                    *sum.entry(key).or_default() += b.count;
                }
            }
        }
    }
    sum
}

/// Over `WINDOW`: controller cores, RSS (KiB), heartbeat p50/p99 (ms) and
/// heartbeats counted.
fn steady(fc: u32, root: &Path, n: u32) -> (f64, u64, f64, f64, f64) {
    let (_, cpu0) = usage(fc);
    let before = heartbeat_buckets(root, n);
    std::thread::sleep(WINDOW);
    let (rss, cpu1) = usage(fc);
    let after = heartbeat_buckets(root, n);
    let delta: Vec<(u64, f64)> = after
        .iter()
        .map(|(k, c)| (*k, c - before.get(k).copied().unwrap_or(0.0)))
        .collect();
    let total = delta.last().map_or(0.0, |(_, c)| *c);
    let q = |q: f64| {
        delta
            .iter()
            .find(|(_, c)| *c >= q * total)
            .map_or(f64::NAN, |(k, _)| *k as f64 / 1e6)
    };
    (
        (cpu1 - cpu0) / WINDOW.as_secs_f64(),
        rss,
        q(0.5),
        q(0.99),
        total,
    )
}

pub fn run(n: u32) {
    let total = n * VMS_PER_HOST;
    println!("\n== cross-check: {n} real host agents, {total} real guest agents ==");
    let started = Instant::now();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        &n.to_string(),
        "--capacity",
        &CAPACITY.to_string(),
        "--fault-domains",
        "5",
        "--update-domains",
        "5",
        "--heartbeat-interval",
        "1s",
        "--node-timeout",
        &format!("{}s", NODE_TIMEOUT.as_secs()),
        "--unresponsive-grace",
        &format!("{}s", GRACE.as_secs()),
        "--hi-threshold",
        "15%",
        "--healing-concurrency",
        &(total / 10).max(1).to_string(),
    ]);
    cluster.wait_ready(n as usize, LIMIT);
    let addr = addr_after_restart(&cluster);
    println!(
        "  registration: {n} hosts Ready {:.1}s after fabricctl up started",
        started.elapsed().as_secs_f64()
    );
    let fc = cluster.status().expect("status").controller_pid;
    let root = cluster.state_dir.clone();
    let _ = steady(fc, &root, n);
    let (cpu, rss, hb50, hb99, beats) = steady(fc, &root, n);
    let per_beat = |cpu: f64, beats: f64| cpu * WINDOW.as_secs_f64() / beats.max(1.0) * 1e6;
    println!(
        "  idle: controller {cpu:.3} cores, RSS {:.0} MiB; heartbeats p50 <= {hb50:.2} ms, p99 <= \
         {hb99:.2} ms ({beats:.0} in {}s); controller CPU per heartbeat {:.0} us",
        rss as f64 / 1024.0,
        WINDOW.as_secs(),
        per_beat(cpu, beats)
    );

    let defs = tempfile::tempdir().expect("tempdir");
    let file = services::write_definition(
        defs.path(),
        "cross",
        &[("web", total)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let deploy_started = Instant::now();
    cluster.run_ok(&["deploy", file.to_str().expect("UTF-8")]);
    let placed = deploy_started.elapsed();
    wait(&addr, "every instance Running", |v| {
        v.running >= f64::from(total)
    });
    println!(
        "  deploy: {total} placed in {:.2}s, all Running after {:.1}s (guest-agent processes, \
         {VMS_PER_HOST} per host)",
        placed.as_secs_f64(),
        deploy_started.elapsed().as_secs_f64(),
    );
    let (cpu, rss, hb50, hb99, beats) = steady(fc, &root, n);
    println!(
        "  {total} Running: controller {cpu:.3} cores, RSS {:.0} MiB; heartbeats p50 <= {hb50:.2} \
         ms, p99 <= {hb99:.2} ms; controller CPU per heartbeat {:.0} us",
        rss as f64 / 1024.0,
        per_beat(cpu, beats)
    );

    let lost = (n / 10).max(1);
    for i in 1..=lost {
        cluster.run_ok(&["chaos", "power-off", &format!("host-{i}")]);
    }
    let healed = wait(
        &addr,
        "the lost servers' instances Running elsewhere",
        |v| v.hi >= f64::from(lost) && v.running >= f64::from(total) && v.healing == 0.0,
    );
    let floor = NODE_TIMEOUT + GRACE;
    println!(
        "  {lost} servers lost at once: every instance Running again after {:.1}s ({:.1}s beyond \
         node timeout + grace)",
        healed.as_secs_f64(),
        healed.as_secs_f64() - floor.as_secs_f64()
    );
    cluster.terminate(Duration::from_secs(60));
}
