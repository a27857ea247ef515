//! Figures for Fabric, printed, never asserted:
//!
//! 1. Heartbeat round trips over real mutual TLS to an in-process fabric
//!    controller on loopback, against grpc.health.v1 Check round trips on
//!    the same channel as a baseline.
//! 2. Resident memory of a real `fabricctl up --hosts 3` cluster: the
//!    launcher, the controller and each host agent.
//!
//! Run with `cargo build --release --workspace --bins && cargo run --release
//! -p fabric-bench` (part 2 runs the release binaries next to this one, or
//! those in FABRIC_BIN_DIR). `--heartbeats N` changes the sample size.

use fabric_controller::core::CoreConfig;
use fabric_proto::v1::{self as pb, node_service_client::NodeServiceClient};
use fabric_tests::cluster::LocalCluster;
use fabric_tests::{RunningController, TestPki, bins, connect, procs};
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DEFAULT_HEARTBEATS: usize = 5000;
const WARMUP: usize = 200;

fn main() {
    let n = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("fabric-bench ({} build)", profile());
    println!();
    runtime.block_on(heartbeat_round_trips(n));
    drop(runtime);
    println!();
    cluster_memory();
}

fn parse_args() -> usize {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => DEFAULT_HEARTBEATS,
        [flag, n] if flag == "--heartbeats" => n.parse().expect("--heartbeats takes a number"),
        _ => {
            eprintln!("usage: fabric-bench [--heartbeats N]");
            std::process::exit(2);
        }
    }
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// p50, p99 and max of `samples`, in microseconds.
struct Summary {
    p50: f64,
    p99: f64,
    max: f64,
}

impl Summary {
    fn of(samples: &mut [Duration]) -> Self {
        samples.sort_unstable();
        let at = |q: usize| {
            let i = (samples.len() * q / 100).min(samples.len() - 1);
            micros(samples[i])
        };
        Self {
            p50: at(50),
            p99: at(99),
            max: micros(*samples.last().expect("no samples")),
        }
    }
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

async fn heartbeat_round_trips(n: usize) {
    let pki = TestPki::new("bench", &["host-1"]);
    let fc = RunningController::start(&pki, CoreConfig::default()).await;
    let channel = connect(&fc.url(), &pki.host("host-1"))
        .await
        .expect("mTLS connect");
    let mut node = NodeServiceClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let boot_id = "bench-boot-1".to_owned();
    node.register(pb::RegisterRequest {
        node: Some(pb::NodeDescription {
            node_id: "host-1".into(),
            fault_domain: 0,
            update_domain: 0,
            capacity_vm_slots: 4,
            agent_version: "bench".into(),
            host_endpoint: "127.0.0.1:1".into(),
            pid: std::process::id(),
        }),
        boot_id: boot_id.clone(),
    })
    .await
    .expect("Register");

    let mut sequence = 0u64;
    let mut heartbeat = async || {
        sequence += 1;
        let started = Instant::now();
        let response = node
            .heartbeat(pb::HeartbeatRequest {
                node_id: String::new(),
                boot_id: boot_id.clone(),
                sequence,
                vms: vec![],
            })
            .await
            .expect("Heartbeat")
            .into_inner();
        let took = started.elapsed();
        assert_eq!(
            response.disposition(),
            pb::heartbeat_response::Disposition::Accepted,
            "heartbeat {sequence} not accepted"
        );
        took
    };
    let mut check = async || {
        let started = Instant::now();
        health
            .check(HealthCheckRequest {
                service: String::new(),
            })
            .await
            .expect("Health.Check");
        started.elapsed()
    };

    for _ in 0..WARMUP {
        heartbeat().await;
        check().await;
    }
    // Interleaved, so both see the same machine conditions.
    let mut heartbeats = Vec::with_capacity(n);
    let mut checks = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        heartbeats.push(heartbeat().await);
        checks.push(check().await);
    }
    let wall = started.elapsed();
    let hb = Summary::of(&mut heartbeats);
    let hc = Summary::of(&mut checks);

    println!(
        "RPC round trips over mTLS on loopback, in-process controller, one channel \
         ({n} sequential calls each, interleaved, after {WARMUP} warm-up; {:.2}s wall)",
        wall.as_secs_f64()
    );
    println!(
        "  {:<30} {:>9} {:>9} {:>9}",
        "call", "p50 µs", "p99 µs", "max µs"
    );
    println!(
        "  {:<30} {:>9.1} {:>9.1} {:>9.1}",
        "NodeService/Heartbeat", hb.p50, hb.p99, hb.max
    );
    println!(
        "  {:<30} {:>9.1} {:>9.1} {:>9.1}",
        "grpc.health.v1 Check", hc.p50, hc.p99, hc.max
    );
    println!(
        "  heartbeat / health ratio: p50 {:.2}x, p99 {:.2}x",
        hb.p50 / hc.p50,
        hb.p99 / hc.p99
    );
    fc.stop().await;
}

fn cluster_memory() {
    const HOSTS: usize = 3;
    println!(
        "Memory of `fabricctl up --hosts {HOSTS}` once every host is Ready (binaries in {})",
        bins::bin_dir().display()
    );
    let mut cluster = LocalCluster::start(&["--hosts", "3"]);
    let started = Instant::now();
    let status = cluster.wait_ready(HOSTS, Duration::from_secs(30));
    println!(
        "  cluster Ready {:.1}s after start",
        started.elapsed().as_secs_f64()
    );
    let mut rows = vec![("fabricctl up".to_owned(), cluster.launcher_pid)];
    rows.push(("fabric-controller".to_owned(), status.controller_pid));
    rows.extend(
        status
            .nodes
            .iter()
            .map(|n| (format!("host-agent {}", n.id), n.pid)),
    );
    println!("  {:<22} {:>8} {:>12}", "process", "pid", "VmRSS KiB");
    let mut total = 0;
    for (name, pid) in &rows {
        match procs::vm_rss_kib(*pid) {
            Some(kib) => {
                total += kib;
                println!("  {name:<22} {pid:>8} {kib:>12}");
            }
            None => println!("  {name:<22} {pid:>8} {:>12}", "gone?"),
        }
    }
    println!("  {:<22} {:>8} {total:>12}", "total", "");

    let stopping = Instant::now();
    match cluster.terminate(Duration::from_secs(10)) {
        Some(exit) => println!(
            "  SIGTERM: launcher exited ({exit}) after {:.2}s; processes left: {}",
            stopping.elapsed().as_secs_f64(),
            cluster.leftovers().len()
        ),
        None => println!("  SIGTERM: launcher still running after 10s (killing it)"),
    }
}
