//! How big a cluster one controller holds: `fabricctl up --hosts 0 --hollow
//! N` (a real controller, N hollow hosts: real host agents with in-process
//! VMs, see hollow/), 20 VMs per host, 1 s heartbeats. For each N it prints,
//! each beside a floor measured in the same run:
//!
//! - controller RSS and CPU (cores), idle and with every VM Running;
//! - heartbeat round trips p50/p99 as the hosts see them (fabric-hollow's
//!   --stats), beside a gRPC health check's over mutual TLS to the same
//!   controller from this process (the cost of an RPC itself);
//! - deploy: time to place every instance and to see every one Running, and
//!   placements per second end to end, beside the pure core placing the same
//!   instances in this process;
//! - 10% of the servers powered off at once: time until all their instances
//!   Running elsewhere, beside node_timeout + unresponsive_grace;
//! - the controller's save per decision (its state_save_seconds, changes);
//! - the controller killed with every VM Running: time until it serves again
//!   and until every server is Ready and every instance Running under it.
//!
//! Nothing is asserted: the machine is shared. Figures come from the
//! controller's /metrics (cheap at any size), not `fabricctl status` (which
//! lists every instance).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p
//! fabric-bench --bin scale -- --hosts 1000,5000 --real 50` (`--heartbeat
//! 2s`: hollow hosts heartbeat every 2 s; `--real N`:
//! the cross-check with real host and guest agents, see `real.rs`;
//! `--hosts 0`: no hollow run).

use fabric_core::{
    CertificateInfo, CoreConfig, DeploymentSpec, FabricCore, HiThreshold, Moment, Name, NodeId,
    NodeInfo, RoleSpec,
};
use fabric_tests::cluster::LocalCluster;
use fabric_tests::scrape;
use fabric_tests::services;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

const VMS_PER_HOST: u32 = 20;
/// Slots per host: room for the instances of the 10% lost.
const CAPACITY: u32 = 24;
/// The controller refuses roles above this many instances.
const PER_DEPLOYMENT: u32 = 10_000;
const NODE_TIMEOUT: Duration = Duration::from_secs(5);
const GRACE: Duration = Duration::from_secs(5);
const RESTART_DELAY: Duration = Duration::from_millis(500);
const WINDOW: Duration = Duration::from_secs(10);
const LIMIT: Duration = Duration::from_secs(900);

mod real;

/// The value after `flag` on the command line.
fn arg(flag: &str) -> Option<String> {
    std::env::args().skip_while(|a| a != flag).nth(1)
}

fn main() {
    let hosts: Vec<u32> = arg("--hosts")
        .unwrap_or_else(|| "1000,5000".into())
        .split(',')
        .map(|n| n.trim().parse().expect("--hosts N[,N...] (0: none)"))
        .filter(|n| *n > 0)
        .collect();
    let real: Option<u32> = arg("--real").map(|n| n.parse().expect("--real N"));
    // Hollow hosts' heartbeat interval in whole seconds (1 by default; at
    // most 2, so the 5 s node timeout still spans two of them).
    let heartbeat: u64 = arg("--heartbeat")
        .map(|s| s.trim_end_matches('s').parse().expect("--heartbeat 1s|2s"))
        .unwrap_or(1);
    assert!((1..=2).contains(&heartbeat), "--heartbeat 1s or 2s");
    println!(
        "scale ({} build): fabricctl up --hosts 0 --hollow N --capacity {CAPACITY}, \
         {VMS_PER_HOST} VMs per host, heartbeat {heartbeat}s, node timeout {}s, unresponsive \
         grace {}s, healing concurrency 10% of the instances",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        NODE_TIMEOUT.as_secs(),
        GRACE.as_secs()
    );
    for n in hosts {
        run(n, heartbeat);
    }
    if let Some(n) = real {
        real::run(n);
    }
}

/// The controller's view, from /metrics.
struct View {
    ready: f64,
    hi: f64,
    running: f64,
    instances: f64,
    pending: f64,
    healing: f64,
}

fn view(addr: &str) -> Option<View> {
    let m = scrape::metrics(addr).ok()?;
    let sum = |name: &str| -> f64 {
        m.samples
            .iter()
            .filter(|s| s.metric == name)
            .map(|s| match s.value {
                prometheus_parse::Value::Gauge(v) | prometheus_parse::Value::Counter(v) => v,
                _ => 0.0,
            })
            .sum()
    };
    let v = |name: &str, labels: &[(&str, &str)]| scrape::value(&m, name, labels).unwrap_or(0.0);
    Some(View {
        ready: v("fabric_nodes", &[("state", "Ready")]),
        hi: v("fabric_nodes", &[("state", "HumanInvestigate")]),
        running: v("fabric_role_instances", &[("state", "Running")]),
        instances: sum("fabric_role_instances"),
        pending: sum("fabric_pending_instances"),
        healing: sum("fabric_healing_in_flight"),
    })
}

fn wait(addr: &str, what: &str, done: impl Fn(&View) -> bool) -> Duration {
    let started = Instant::now();
    loop {
        if view(addr).is_some_and(|v| done(&v)) {
            return started.elapsed();
        }
        if started.elapsed() > LIMIT {
            panic!("timed out waiting for {what}");
        }
        // Rendering /metrics counts every instance: cheap at Prometheus's
        // 15 s, a tax on the controller measured at 20 scrapes a second
        // against 100,000 instances.
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// What heartbeats carried, from the controller's counters.
#[derive(Clone, Copy, Default)]
struct Traffic {
    beats: f64,
    reports: f64,
    unchanged: f64,
    full: f64,
}

impl Traffic {
    fn since(self, before: &Traffic) -> Traffic {
        Traffic {
            beats: self.beats - before.beats,
            reports: self.reports - before.reports,
            unchanged: self.unchanged - before.unchanged,
            full: self.full - before.full,
        }
    }
    fn reports_per_beat(self) -> f64 {
        self.reports / self.beats.max(1.0)
    }
    fn unchanged_share(self) -> f64 {
        self.unchanged / (self.unchanged + self.full).max(1.0)
    }
}

fn traffic(addr: &str) -> Traffic {
    let Ok(m) = scrape::metrics(addr) else {
        return Traffic::default();
    };
    let v = |name: &str, labels: &[(&str, &str)]| scrape::value(&m, name, labels).unwrap_or(0.0);
    Traffic {
        beats: v("fabric_heartbeats_received_total", &[]),
        reports: v("fabric_heartbeat_vm_reports_total", &[]),
        unchanged: v("fabric_desired_sets_total", &[("kind", "unchanged")]),
        full: v("fabric_desired_sets_total", &[("kind", "full")]),
    }
}

/// (RSS KiB, CPU seconds) of `pid`.
fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat, 12 and 13 after ')'.
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as f64;
    (rss, (ticks(11) + ticks(12)) / hz)
}

fn heartbeat_counts(root: &Path) -> Vec<u64> {
    std::fs::read_to_string(root.join("hollow-stats.json"))
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| {
            v["heartbeat_latency_counts"]
                .as_array()
                .map(|a| a.iter().map(|c| c.as_u64().unwrap_or(0)).collect())
        })
        .unwrap_or_default()
}

/// Over `WINDOW`: controller CPU cores, its RSS at the end, and the hosts'
/// heartbeat p50/p99 in ms.
fn steady(fc: u32, root: &Path) -> (f64, u64, f64, f64, u64) {
    let (_, cpu0) = usage(fc);
    let before = heartbeat_counts(root);
    std::thread::sleep(WINDOW);
    let (rss, cpu1) = usage(fc);
    let after = heartbeat_counts(root);
    let window: Vec<u64> = after
        .iter()
        .enumerate()
        .map(|(i, c)| c.saturating_sub(before.get(i).copied().unwrap_or(0)))
        .collect();
    let q = |q| {
        fabric_daemon::latency::quantile(&window, q).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (
        (cpu1 - cpu0) / WINDOW.as_secs_f64(),
        rss,
        q(0.5),
        q(0.99),
        window.iter().sum(),
    )
}

/// Health checks over mutual TLS to the controller: p50/p99 in ms.
fn rpc_floor(cluster: &LocalCluster) -> (f64, f64) {
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;
    let ctx = fabricctl::context::Context::load(&cluster.state_dir)
        .expect("context")
        .expect("context.json");
    let files = fabric_tests::ground_truth::admin_files(&cluster.state_dir);
    let rt = fabric_tests::https::runtime();
    rt.block_on(async {
        let channel = fabric_tests::connect(&ctx.endpoint, &files)
            .await
            .expect("connect");
        let mut health = HealthClient::new(channel);
        let mut took = Vec::new();
        for i in 0..300 {
            let started = Instant::now();
            health
                .check(HealthCheckRequest {
                    service: String::new(),
                })
                .await
                .expect("health check");
            if i >= 50 {
                took.push(started.elapsed().as_secs_f64() * 1e3);
            }
        }
        took.sort_by(f64::total_cmp);
        (took[took.len() / 2], took[took.len() * 99 / 100])
    })
}

/// The pure core placing `total` instances on `n` hosts (in this process):
/// placements per second.
fn placement_floor(n: u32, total: u32) -> f64 {
    let at = |s| Moment {
        mono: Duration::from_secs(s),
        wall: SystemTime::UNIX_EPOCH + Duration::from_secs(s),
    };
    let mut core = FabricCore::new(
        CoreConfig {
            hi_threshold: HiThreshold::Percent(15),
            ..CoreConfig::default()
        },
        at(0),
    );
    for i in 1..=n {
        core.register(
            at(0),
            NodeId::new(format!("hollow-{i}")),
            NodeInfo {
                fault_domain: i % 5,
                update_domain: i % 5,
                capacity_vm_slots: CAPACITY,
                ..NodeInfo::default()
            },
            "boot",
        );
    }
    let started = Instant::now();
    for (d, instances) in deployments(total).into_iter().enumerate() {
        core.deploy(
            at(1),
            DeploymentSpec {
                priority: 0,
                name: Name::parse("d", &format!("scale-{d}")).unwrap(),
                roles: vec![RoleSpec {
                    guest: Default::default(),
                    name: Name::parse("r", "web").unwrap(),
                    instances,
                    certificates: vec![CertificateInfo {
                        name: "https".into(),
                        fingerprint: "ab".repeat(32),
                        not_after: SystemTime::UNIX_EPOCH + Duration::from_secs(1 << 33),
                    }],
                }],
            },
        )
        .expect("the core places them");
    }
    f64::from(total) / started.elapsed().as_secs_f64()
}

/// Instances per deployment for `total`.
fn deployments(total: u32) -> Vec<u32> {
    let count = total.div_ceil(PER_DEPLOYMENT);
    (0..count)
        .map(|i| total / count + u32::from(i < total % count))
        .collect()
}

fn run(n: u32, heartbeat: u64) {
    let total = n * VMS_PER_HOST;
    let interval = format!("{heartbeat}s");
    println!("\n== {n} hollow hosts, {total} instances ==");
    let (n_s, cap, timeout, grace, delay) = (
        n.to_string(),
        CAPACITY.to_string(),
        format!("{}s", NODE_TIMEOUT.as_secs()),
        format!("{}s", GRACE.as_secs()),
        format!("{}ms", RESTART_DELAY.as_millis()),
    );
    let heal_in_flight = (total / 10).to_string();
    let started = Instant::now();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "0",
        "--hollow",
        &n_s,
        "--capacity",
        &cap,
        "--fault-domains",
        "5",
        "--update-domains",
        "5",
        "--heartbeat-interval",
        &interval,
        "--node-timeout",
        &timeout,
        "--unresponsive-grace",
        &grace,
        "--hi-threshold",
        "15%",
        // Healing's brake on heals in flight (16 by default) is what a
        // mass loss meets first; this measures the machinery behind it.
        "--healing-concurrency",
        &heal_in_flight,
        "--restart-delay",
        &delay,
    ]);
    // Every host registered and settled: Ready, or taken for lost (a
    // hollow host starved of CPU in its shared process misses the node
    // timeout like a real one would; counted, not hidden).
    cluster.wait_for(LIMIT, "every host registered", |s| {
        s.nodes.len() >= n as usize
    });
    let addr = addr_after_restart(&cluster);
    wait(&addr, "every host Ready or in HI", |v| {
        v.ready + v.hi >= f64::from(n)
    });
    let settled = view(&addr).expect("metrics");
    println!(
        "  registration: {n} hosts registered {:.1}s after fabricctl up started; {} Ready, {} \
         taken for lost while starting (HI)",
        started.elapsed().as_secs_f64(),
        settled.ready,
        settled.hi
    );
    let status = cluster.status().expect("status before any deployment");
    let fc = status.controller_pid;
    let hollow_pid = cluster
        .surviving_seen_pids()
        .into_iter()
        .find(|(_, cmd)| cmd.contains("fabric-hollow"))
        .map(|(p, _)| p);

    let (rpc_p50, rpc_p99) = rpc_floor(&cluster);
    // The first window after registration still holds the start-up's tail
    // (5,000 hosts: heartbeat p99 1.8 s, then 7 ms): idle is the next one.
    let _ = steady(fc, &cluster.state_dir);
    let (cpu, rss, hb50, hb99, beats) = steady(fc, &cluster.state_dir);
    println!(
        "  idle: controller {:.2} cores, RSS {:.0} MiB; heartbeats seen by hosts p50 {hb50:.2} ms, \
         p99 {hb99:.2} ms ({beats} in {}s) vs health check floor p50 {rpc_p50:.2} ms, p99 \
         {rpc_p99:.2} ms ({:.1}x, {:.1}x); controller CPU per heartbeat {:.0} us",
        cpu,
        rss as f64 / 1024.0,
        WINDOW.as_secs(),
        hb50 / rpc_p50,
        hb99 / rpc_p99,
        cpu * WINDOW.as_secs_f64() / (beats.max(1) as f64) * 1e6
    );

    // Deploy every instance.
    let defs = tempfile::tempdir().expect("tempdir");
    let cert = services::example_file("certs/web.pem");
    let key = services::example_file("certs/web.key");
    let files: Vec<_> = deployments(total)
        .into_iter()
        .enumerate()
        .map(|(d, k)| {
            services::write_definition(
                defs.path(),
                &format!("scale-{d}"),
                &[("web", k)],
                &cert,
                &key,
            )
        })
        .collect();
    let deploy_started = Instant::now();
    for f in &files {
        cluster.run_ok(&["deploy", f.to_str().expect("UTF-8")]);
    }
    let acknowledged = deploy_started.elapsed();
    let placed = wait(&addr, "every instance placed", |v| {
        v.instances >= f64::from(total) && v.pending == 0.0
    })
    .max(acknowledged);
    let running = deploy_started.elapsed()
        + wait(&addr, "every instance Running", |v| {
            v.running >= f64::from(total)
        });
    let floor = placement_floor(n, total);
    let end_to_end = f64::from(total) / placed.as_secs_f64();
    println!(
        "  deploy: {} deployments acknowledged in {:.2}s, {total} placed in {:.2}s \
         ({:.0} placements/s end to end vs the pure core's {:.0}/s: {:.1}x), all Running after \
         {:.1}s",
        files.len(),
        acknowledged.as_secs_f64(),
        placed.as_secs_f64(),
        end_to_end,
        floor,
        floor / end_to_end,
        running.as_secs_f64()
    );
    let deploy_traffic = traffic(&addr);
    let (cpu, rss, hb50, hb99, beats) = steady(fc, &cluster.state_dir);
    let still = traffic(&addr).since(&deploy_traffic);
    println!(
        "  heartbeat traffic: from start to all Running {:.2} VM reports per heartbeat, {:.0}% of \
         desired sets answered 'unchanged'; all Running, {:.3} reports per heartbeat, {:.1}% \
         unchanged (without deltas: {VMS_PER_HOST} and 0%)",
        deploy_traffic.reports_per_beat(),
        deploy_traffic.unchanged_share() * 100.0,
        still.reports_per_beat(),
        still.unchanged_share() * 100.0
    );
    let hollow = hollow_pid.map_or(0, |p| usage(p).0);
    println!(
        "  {total} Running: controller {:.2} cores, RSS {:.0} MiB; heartbeats p50 {hb50:.2} ms, \
         p99 {hb99:.2} ms ({beats} in {}s), controller CPU per heartbeat {:.0} us; fabric-hollow \
         RSS {:.0} MiB ({:.1} MiB per host)",
        cpu,
        rss as f64 / 1024.0,
        WINDOW.as_secs(),
        cpu * WINDOW.as_secs_f64() / (beats.max(1) as f64) * 1e6,
        hollow as f64 / 1024.0,
        hollow as f64 / 1024.0 / f64::from(n)
    );

    // Persist cost per decision so far.
    if let Ok(m) = scrape::metrics(&addr) {
        let v = |name: &str| scrape::value(&m, name, &[("kind", "changes")]).unwrap_or(0.0);
        let (sum, count) = (
            v("fabric_state_save_seconds_sum"),
            v("fabric_state_save_seconds_count"),
        );
        println!(
            "  saves: {count:.0} decisions saved as changes, {:.3} ms each on average",
            sum / count.max(1.0) * 1e3
        );
    }

    // Hollow hosts the deploy burst starved past node timeout + grace (one
    // process's cores applying every assignment) are healthy: an operator
    // repairs them, so that the loss below meets the HI threshold with its
    // own servers only.
    let starved: Vec<String> = cluster
        .status()
        .map(|s| {
            s.nodes
                .iter()
                .filter(|n| n.state == "HumanInvestigate")
                .map(|n| n.id.clone())
                .collect()
        })
        .unwrap_or_default();
    if !starved.is_empty() {
        for id in &starved {
            cluster.run_ok(&["node", "repair", id, "--reason", "a starved hollow host"]);
        }
        wait(&addr, "the starved servers repaired", |v| v.hi == 0.0);
        println!(
            "  {} hollow hosts taken for lost while the VMs started, repaired before the loss \
             below",
            starved.len()
        );
    }

    // Lose 10% of the servers at once.
    let lost = n / 10;
    for i in 1..=lost {
        cluster.power_off_hollow(&format!("hollow-{i}"));
    }
    let healed = wait(
        &addr,
        "the lost servers' instances Running elsewhere",
        |v| v.hi >= f64::from(lost) && v.running >= f64::from(total) && v.healing == 0.0,
    );
    let floor = NODE_TIMEOUT + GRACE;
    println!(
        "  {lost} servers lost at once: every instance Running again after {:.1}s \
         (node timeout + grace {:.0}s; {:.1}s beyond them, target <= 10s)",
        healed.as_secs_f64(),
        floor.as_secs_f64(),
        healed.as_secs_f64() - floor.as_secs_f64()
    );

    // Kill the controller with every VM Running.
    let killed = Instant::now();
    cluster.run_ok(&["chaos", "kill-fc"]);
    // The restored controller counts every instance from its saved state.
    wait(
        &addr_after_restart(&cluster),
        "the controller serving",
        |v| v.instances >= f64::from(total),
    );
    let back = killed.elapsed();
    println!(
        "  controller killed at {total} instances: serving again with its state loaded after \
         {:.2}s (including the {}ms restart delay)",
        back.as_secs_f64(),
        RESTART_DELAY.as_millis()
    );
    cluster.terminate(Duration::from_secs(60));
}

/// The dashboard address (the restarted controller keeps it).
fn addr_after_restart(cluster: &LocalCluster) -> String {
    cluster
        .dashboard_url()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned()
}
