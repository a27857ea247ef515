//! Healing time with real processes: how long from a server's power failure
//! until every role instance runs again, printed, never asserted.
//!
//! For each N (instances) and C (healing concurrency): `fabricctl up --hosts
//! 6 --capacity 12 --heartbeat-interval 300ms --node-timeout 2s
//! --unresponsive-grace 2s --restart-delay 1h --guest-heartbeat-interval
//! 500ms --hi-threshold 6 --healing-concurrency C`, a one-role deployment of
//! N instances serving examples/web/certs/web.pem, then the host holding
//! the most instances is powered off (its host agent, then its guest agents,
//! SIGKILLed; the 1h restart delay keeps it down). Timed from that SIGKILL,
//! polling `fabricctl status -o json` every 50 ms: when the node is seen in
//! Human Investigate, and when every instance is Running again (none on the
//! lost node, none still healing).
//!
//! Run with `cargo build --release --workspace --bins && cargo run --release
//! -p fabric-bench --bin healing-time` (it runs the release binaries next to
//! it, or those in FABRIC_BIN_DIR). `--instances 10,50` and `--concurrency
//! 1,4,16` change the grid.

use fabric_tests::cluster::{LocalCluster, node};
use fabric_tests::{procs, services};
use fabricctl::status::StatusJson;
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const HOSTS: usize = 6;
const CAPACITY: u32 = 12;
const NAME: &str = "heal";
const POLL: Duration = Duration::from_millis(50);
const COME_UP: Duration = Duration::from_secs(180);
const HEAL_LIMIT: Duration = Duration::from_secs(180);

struct Row {
    instances: u32,
    concurrency: u32,
    victim: String,
    moved: usize,
    to_hi: Option<Duration>,
    to_running: Option<Duration>,
    max_in_flight: u32,
}

fn main() {
    let (sizes, concurrencies) = parse_args();
    println!(
        "healing-time ({} build): `fabricctl up --hosts {HOSTS} --capacity {CAPACITY} \
         --heartbeat-interval 300ms --node-timeout 2s --unresponsive-grace 2s --restart-delay 1h \
         --guest-heartbeat-interval 500ms --hi-threshold 6 --healing-concurrency C`; \
         the host with the most instances powered off (SIGKILL of its host agent and guest agents)",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        }
    );
    println!(
        "  detection floor: node timeout 2s + unresponsive grace 2s = 4s; status polled every {} ms",
        POLL.as_millis()
    );
    let defs = tempfile::tempdir().expect("tempdir");
    let mut rows = Vec::new();
    for &n in &sizes {
        for &c in &concurrencies {
            let row = run_one(defs.path(), n, c);
            println!(
                "  N={n:>3} C={c:>2}: {} moved off {}; HI {}; all Running {} (max {} in flight)",
                row.moved,
                row.victim,
                secs(row.to_hi),
                secs(row.to_running),
                row.max_in_flight
            );
            rows.push(row);
        }
    }
    println!();
    println!(
        "{:>4} {:>3} {:>6} {:>12} {:>16} {:>14}",
        "N", "C", "moved", "SIGKILL->HI", "SIGKILL->Running", "HI->Running"
    );
    for r in &rows {
        let healing = match (r.to_hi, r.to_running) {
            (Some(h), Some(a)) => Some(a.saturating_sub(h)),
            _ => None,
        };
        println!(
            "{:>4} {:>3} {:>6} {:>12} {:>16} {:>14}",
            r.instances,
            r.concurrency,
            r.moved,
            secs(r.to_hi),
            secs(r.to_running),
            secs(healing)
        );
    }
}

fn secs(d: Option<Duration>) -> String {
    d.map_or("-".to_owned(), |d| format!("{:.2}s", d.as_secs_f64()))
}

fn parse_args() -> (Vec<u32>, Vec<u32>) {
    let mut sizes = vec![10, 50];
    let mut concurrencies = vec![1, 4, 16];
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let usage = || -> ! {
        eprintln!("usage: healing-time [--instances 10,50] [--concurrency 1,4,16]");
        std::process::exit(2);
    };
    let list = |s: &str| -> Vec<u32> {
        s.split(',')
            .map(|x| x.trim().parse().unwrap_or_else(|_| usage()))
            .collect()
    };
    for pair in argv.chunks(2) {
        let [flag, value] = pair else { usage() };
        match flag.as_str() {
            "--instances" => sizes = list(value),
            "--concurrency" => concurrencies = list(value),
            _ => usage(),
        }
    }
    if sizes
        .iter()
        .any(|&n| n == 0 || n as usize > HOSTS * CAPACITY as usize)
    {
        eprintln!(
            "healing-time: instances must be 1..={}",
            HOSTS * CAPACITY as usize
        );
        std::process::exit(2);
    }
    (sizes, concurrencies)
}

fn run_one(defs: &std::path::Path, n: u32, c: u32) -> Row {
    let definition = services::write_definition(
        defs,
        NAME,
        &[("app", n)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let definition = definition.to_str().expect("UTF-8 path").to_owned();
    let (hosts, capacity, concurrency) = (HOSTS.to_string(), CAPACITY.to_string(), c.to_string());
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
        "--restart-delay",
        "1h",
        "--guest-heartbeat-interval",
        "500ms",
        "--hi-threshold",
        "6",
        "--healing-concurrency",
        &concurrency,
        "--deploy",
        &definition,
    ]);
    let up = cluster.wait_for(COME_UP, "every instance Running on Ready nodes", |s| {
        s.nodes.len() == HOSTS
            && s.nodes.iter().all(|n| n.state == "Ready")
            && services::all_running(s, NAME, n as usize)
    });
    // The host holding the most instances (the lowest id on a tie).
    let mut per_node: Vec<(String, usize)> = up
        .nodes
        .iter()
        .map(|nd| {
            let count = services::instances(&up, NAME)
                .iter()
                .filter(|i| i.node == nd.id)
                .count();
            (nd.id.clone(), count)
        })
        .collect();
    per_node.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let (victim, moved) = per_node[0].clone();
    let host_pid = node(&up, &victim).expect("victim").pid;
    let guests: Vec<u32> = services::instances(&up, NAME)
        .iter()
        .filter(|i| i.node == victim)
        .map(|i| i.pid)
        .collect();

    // Power off: the host agent first, so it cannot react to its guests.
    let killed = Instant::now();
    procs::signal(host_pid, Signal::SIGKILL);
    for &pid in &guests {
        procs::signal(pid, Signal::SIGKILL);
    }

    let mut to_hi = None;
    let mut to_running = None;
    let mut max_in_flight = 0;
    while killed.elapsed() < HEAL_LIMIT {
        let polled = Instant::now();
        if let Ok(s) = cluster.status() {
            let at = killed.elapsed();
            max_in_flight = max_in_flight.max(s.healing_in_flight);
            if to_hi.is_none() && node(&s, &victim).is_some_and(|nd| nd.state == "HumanInvestigate")
            {
                to_hi = Some(at);
            }
            if to_hi.is_some() && healed(&s, n as usize, &victim) {
                to_running = Some(at);
                break;
            }
        }
        std::thread::sleep(POLL.saturating_sub(polled.elapsed()));
    }
    let _ = cluster.terminate(Duration::from_secs(15));
    Row {
        instances: n,
        concurrency: c,
        victim,
        moved,
        to_hi,
        to_running,
        max_in_flight,
    }
}

/// Every instance Running, none on the lost node, none still healing.
fn healed(s: &StatusJson, n: usize, lost: &str) -> bool {
    services::all_running(s, NAME, n)
        && services::instances(s, NAME)
            .iter()
            .all(|i| i.node != lost && i.healing_from.is_none())
}
