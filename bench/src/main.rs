//! Figures for Fabric, printed, never asserted:
//!
//! 1. Heartbeat round trips over real mutual TLS to an in-process fabric
//!    controller on loopback, against grpc.health.v1 Check round trips on
//!    the same channel as a baseline.
//! 2. The secret path of one VM, in-process: transfer certificate (key pair
//!    and self-signed certificate), sealing the role's certificate and key
//!    to it, opening them; against a bare ECDSA P-256 key generation.
//! 3. Resident memory of a real `fabricctl up --hosts 3` cluster: the
//!    launcher, the controller and each host agent.
//! 4. VM start-up on a real `fabricctl up --hosts 3 --capacity 8`: a
//!    20-instance deployment, time from the deploy reply to each instance
//!    Running, over deploy/delete cycles, with the default node heartbeat
//!    (1s) and a short one (250ms); the guest agents' memory.
//!
//! Run with `cargo build --release --workspace --bins && cargo run --release
//! -p fabric-bench` (parts 3 and 4 run the release binaries next to this
//! one, or those in FABRIC_BIN_DIR). `--heartbeats N`, `--secret-iterations
//! N` and `--cycles N` change the sample sizes.

use fabric_core::CoreConfig;
use fabric_proto::v1::{self as pb, node_service_client::NodeServiceClient};
use fabric_sealing::SealContext;
use fabric_tests::cluster::LocalCluster;
use fabric_tests::{RunningController, TestPki, bins, connect, procs, services};
use guest_agent::TransferCert;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

const DEFAULT_HEARTBEATS: usize = 5000;
const DEFAULT_SECRET_ITERATIONS: usize = 1000;
const DEFAULT_CYCLES: usize = 3;
const WARMUP: usize = 200;

/// Sample sizes.
struct Args {
    heartbeats: usize,
    secret_iterations: usize,
    cycles: usize,
}

fn main() {
    let args = parse_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    println!("fabric-bench ({} build)", profile());
    println!();
    runtime.block_on(heartbeat_round_trips(args.heartbeats));
    drop(runtime);
    println!();
    secret_path(args.secret_iterations);
    println!();
    cluster_memory();
    println!();
    // The node heartbeat carries desired VMs to host agents and VM reports
    // back: once at the default, once shortened to see what it adds.
    vm_startup(args.cycles, "1s", true);
    println!();
    vm_startup(args.cycles, "250ms", false);
}

fn parse_args() -> Args {
    let mut args = Args {
        heartbeats: DEFAULT_HEARTBEATS,
        secret_iterations: DEFAULT_SECRET_ITERATIONS,
        cycles: DEFAULT_CYCLES,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: fabric-bench [--heartbeats N] [--secret-iterations N] [--cycles N]");
        std::process::exit(2);
    };
    for pair in argv.chunks(2) {
        let [flag, n] = pair else { usage() };
        let Ok(n) = n.parse() else { usage() };
        match flag.as_str() {
            "--heartbeats" => args.heartbeats = n,
            "--secret-iterations" => args.secret_iterations = n,
            "--cycles" => args.cycles = n,
            _ => usage(),
        }
    }
    args
}

fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    }
}

/// Mean, p50, p99 and max of `samples`, in microseconds.
struct Summary {
    mean: f64,
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
        let total: Duration = samples.iter().sum();
        Self {
            mean: micros(total) / samples.len() as f64,
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
            software: None,
            role_probe_host: String::new(),
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
                ..Default::default()
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

/// Part 2: what one VM costs on the secret path, in-process.
fn secret_path(iterations: usize) {
    use rcgen::{KeyPair, PKCS_ECDSA_P256_SHA256};
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair};

    let cert = std::fs::read(services::example_file("certs/web.pem")).expect("web.pem");
    let key = std::fs::read(services::example_file("certs/web.key")).expect("web.key");
    // What the host agent seals: the certificate chain, then the key.
    let bundle = [cert, key].concat();
    let now = time::OffsetDateTime::now_utc();
    let rng = SystemRandom::new();

    let mut ring_keygen = Vec::with_capacity(iterations);
    let mut rcgen_keygen = Vec::with_capacity(iterations);
    let mut generate = Vec::with_capacity(iterations);
    let mut seal = Vec::with_capacity(iterations);
    let mut open = Vec::with_capacity(iterations);
    let mut sum = Vec::with_capacity(iterations);
    for i in 0..iterations {
        let started = Instant::now();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_ASN1_SIGNING, &rng)
            .expect("ring keygen");
        ring_keygen.push(started.elapsed());
        std::hint::black_box(pkcs8);

        let started = Instant::now();
        let pair = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).expect("rcgen keygen");
        rcgen_keygen.push(started.elapsed());
        std::hint::black_box(pair);

        let vm_id = format!("bench.vm.{i}");
        let ctx = SealContext::new(vm_id.clone(), 1);
        let started = Instant::now();
        let transfer = TransferCert::generate(now, &vm_id, 1, false).expect("transfer cert");
        let t_generate = started.elapsed();

        let started = Instant::now();
        let sealed =
            fabric_sealing::seal(transfer.cert_der(), &ctx, "https", &bundle).expect("seal");
        let t_seal = started.elapsed();

        let started = Instant::now();
        let opened =
            fabric_sealing::open(transfer.private_key_pkcs8_der(), &ctx, &sealed).expect("open");
        let t_open = started.elapsed();
        assert!(opened.as_slice() == bundle, "opened something else");

        generate.push(t_generate);
        seal.push(t_seal);
        open.push(t_open);
        sum.push(t_generate + t_seal + t_open);
    }

    println!(
        "Secret path per VM, in-process ({iterations} iterations; bundle = example cert + key, {} bytes)",
        bundle.len()
    );
    println!(
        "  {:<44} {:>9} {:>9} {:>9} {:>9}",
        "step", "mean µs", "p50 µs", "p99 µs", "x ring"
    );
    let baseline = Summary::of(&mut ring_keygen).mean;
    let row = |name: &str, samples: &mut Vec<Duration>| {
        let s = Summary::of(samples);
        println!(
            "  {name:<44} {:>9.1} {:>9.1} {:>9.1} {:>9.2}",
            s.mean,
            s.p50,
            s.p99,
            s.mean / baseline
        );
    };
    row(
        "baseline: ring ECDSA P-256 keygen (PKCS#8)",
        &mut ring_keygen,
    );
    row("baseline: rcgen KeyPair::generate P-256", &mut rcgen_keygen);
    row("TransferCert::generate (keygen + self-sign)", &mut generate);
    row("fabric_sealing::seal (HA, HPKE P-256)", &mut seal);
    row("fabric_sealing::open (GA)", &mut open);
    row("sum: generate + seal + open", &mut sum);
    println!("  (x ring: mean over the mean of the ring keygen baseline)");
}

/// Part 4: VM start-up and guest-agent memory on a real cluster.
fn vm_startup(cycles: usize, heartbeat: &str, measure_memory: bool) {
    const HOSTS: usize = 3;
    const INSTANCES: u32 = 20;
    const POLL: Duration = Duration::from_millis(50);
    const LIMIT: Duration = Duration::from_secs(120);
    println!(
        "VM start-up: `fabricctl up --hosts {HOSTS} --capacity 8` (node heartbeat {heartbeat}, \
         guest heartbeat 3s: the default of `fabricctl up --guest-heartbeat-interval`), \
         a deployment of {INSTANCES} instances, {cycles} deploy/delete cycles"
    );
    let defs = tempfile::tempdir().expect("tempdir");
    let definition = services::write_definition(
        defs.path(),
        "bench",
        &[("app", INSTANCES)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let definition = definition.to_str().expect("UTF-8 path").to_owned();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "3",
        "--capacity",
        "8",
        "--heartbeat-interval",
        heartbeat,
    ]);
    cluster.wait_ready(HOSTS, Duration::from_secs(30));

    let mut running_all = Vec::new();
    let mut provisioned_all = Vec::new();
    let mut poll_costs = Vec::new();
    let mut memory_done = !measure_memory;
    for cycle in 1..=cycles {
        let started = Instant::now();
        let out = cluster.run(&["deploy", &definition]);
        let replied = Instant::now();
        if !out.status.success() {
            println!("  cycle {cycle}: deploy failed: {out:?}");
            break;
        }
        // First time each instance was seen past Starting (the guest agent
        // said Hello: Provisioned or later) and Running.
        let mut provisioned: BTreeMap<String, Duration> = BTreeMap::new();
        let mut running: BTreeMap<String, Duration> = BTreeMap::new();
        let mut last_status = None;
        while running.len() < INSTANCES as usize && replied.elapsed() < LIMIT {
            let polled = Instant::now();
            let status = cluster.status();
            poll_costs.push(polled.elapsed());
            let at = replied.elapsed();
            if let Ok(status) = status {
                for i in services::instances(&status, "bench") {
                    if matches!(i.state.as_str(), "Provisioned" | "Running") {
                        provisioned.entry(i.id.clone()).or_insert(at);
                    }
                    if i.state == "Running" {
                        running.entry(i.id.clone()).or_insert(at);
                    }
                }
                last_status = Some(status);
            }
            std::thread::sleep(POLL.saturating_sub(polled.elapsed()));
        }
        let mut r: Vec<Duration> = running.values().copied().collect();
        let mut p: Vec<Duration> = provisioned.values().copied().collect();
        if r.is_empty() {
            println!("  cycle {cycle}: no instance Running within {LIMIT:?}");
            break;
        }
        let rs = Summary::of(&mut r);
        let ps = Summary::of(&mut p);
        println!(
            "  cycle {cycle}: deploy reply {:.0} ms; {} of {INSTANCES} Running: p50 {:.2}s p99 {:.2}s \
             max {:.2}s (Hello seen: p50 {:.2}s max {:.2}s)",
            (replied - started).as_secs_f64() * 1e3,
            r.len(),
            rs.p50 / 1e6,
            rs.p99 / 1e6,
            rs.max / 1e6,
            ps.p50 / 1e6,
            ps.max / 1e6,
        );
        running_all.extend(r);
        provisioned_all.extend(p);

        if let (false, Some(status)) = (memory_done, &last_status) {
            memory_done = true;
            guest_memory(status);
        }

        let out = cluster.run(&["delete", "bench"]);
        if !out.status.success() {
            println!("  cycle {cycle}: delete failed: {out:?}");
            break;
        }
        let deleted = Instant::now();
        let root = cluster.root().to_owned();
        loop {
            let gone = cluster
                .status()
                .is_ok_and(|s| services::instances(&s, "bench").is_empty());
            let guests = procs::mentioning(&root)
                .into_iter()
                .filter(|(_, cmd)| cmd.contains("guest-agent"))
                .count();
            if gone && guests == 0 {
                println!(
                    "  cycle {cycle}: deleted, every guest agent gone {:.2}s after the delete reply",
                    deleted.elapsed().as_secs_f64()
                );
                break;
            }
            if deleted.elapsed() > LIMIT {
                println!("  cycle {cycle}: {guests} guest agents still running after {LIMIT:?}");
                break;
            }
            std::thread::sleep(POLL);
        }
    }
    if !running_all.is_empty() {
        let n = running_all.len();
        let rs = Summary::of(&mut running_all);
        let ps = Summary::of(&mut provisioned_all);
        println!(
            "  all cycles ({n} instances), deploy reply -> Running: p50 {:.2}s p99 {:.2}s max {:.2}s",
            rs.p50 / 1e6,
            rs.p99 / 1e6,
            rs.max / 1e6
        );
        println!(
            "  all cycles, deploy reply -> Provisioned (Hello done): p50 {:.2}s p99 {:.2}s max {:.2}s",
            ps.p50 / 1e6,
            ps.p99 / 1e6,
            ps.max / 1e6
        );
    }
    if !poll_costs.is_empty() {
        let pc = Summary::of(&mut poll_costs);
        println!(
            "  resolution: one `fabricctl status -o json` took p50 {:.0} ms, p99 {:.0} ms \
             (+ {} ms pause between polls)",
            pc.p50 / 1e3,
            pc.p99 / 1e3,
            POLL.as_millis()
        );
    }
    match cluster.terminate(Duration::from_secs(10)) {
        Some(exit) => println!(
            "  SIGTERM: launcher exited ({exit}); processes left: {}",
            cluster.leftovers().len()
        ),
        None => println!("  SIGTERM: launcher still running after 10s (killing it)"),
    }
}

/// VmRSS of each guest agent of the `bench` deployment in `status`, and of
/// the host agents and the controller for comparison.
fn guest_memory(status: &fabricctl::status::StatusJson) {
    let mut guests: Vec<u64> = services::instances(status, "bench")
        .iter()
        .filter_map(|i| procs::vm_rss_kib(i.pid))
        .collect();
    guests.sort_unstable();
    if guests.is_empty() {
        println!("  memory: no guest agent found");
        return;
    }
    println!(
        "  memory, {} guest agents (VmRSS KiB): min {} median {} max {}; total {}",
        guests.len(),
        guests[0],
        guests[guests.len() / 2],
        guests[guests.len() - 1],
        guests.iter().sum::<u64>()
    );
    let hosts: Vec<String> = status
        .nodes
        .iter()
        .map(|n| {
            let kib = procs::vm_rss_kib(n.pid).map_or("gone?".to_owned(), |k| k.to_string());
            format!("{} {kib}", n.id)
        })
        .collect();
    println!(
        "  memory, host agents with these VMs (VmRSS KiB): {}; controller {}",
        hosts.join(", "),
        procs::vm_rss_kib(status.controller_pid).map_or("gone?".to_owned(), |k| k.to_string())
    );
}
