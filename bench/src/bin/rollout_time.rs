//! Rollout time with real processes, against its floor measured in the same
//! run; printed as a ratio, never asserted.
//!
//! For each N (update domains): `fabricctl up --hosts N --update-domains N
//! --restart-delay 0s --heartbeat-interval 200ms --node-timeout 2s`, a
//! one-role deployment of N instances (one per server), then:
//!
//! - **floor**, per domain: one host agent restart (`chaos kill-agent`,
//!   timed until the server is Ready again under a new boot) plus the
//!   gate's stable time. A step cannot be faster than its server's host
//!   agent coming back and the gate holding; this measures the first on
//!   this machine, now, so a busy machine raises both sides alike.
//! - **rollout**: a package of this build's binaries (host agent 2.0,
//!   plugin net-2), `update start --gate-stable S`, timed until the rollout
//!   reports Succeeded.
//!
//! The ratio rollout / (N x floor) is what the walk costs beyond its floor:
//! heartbeat rounds to hear of the target and of the new boot, each VM's
//! restart onto the new guest agent, the probes.
//!
//! Run with `cargo build --release --workspace --bins && cargo run --release
//! -p fabric-bench --bin rollout-time` (it runs the release binaries next to
//! it, or those in FABRIC_BIN_DIR). `--domains 2,4` and `--stable 2s`
//! change it.

use fabric_tests::cluster::{LocalCluster, node};
use fabric_tests::packages::write;
use fabric_tests::services;
use fabricctl::package::NEW_PAIR;
use std::time::{Duration, Instant};

const POLL: Duration = Duration::from_millis(50);
const LIMIT: Duration = Duration::from_secs(300);

fn main() {
    let (domains, stable) = parse_args();
    println!(
        "rollout-time ({} build): `fabricctl up --hosts N --update-domains N --restart-delay 0s \
         --heartbeat-interval 200ms --node-timeout 2s`, one instance per server; gate stable {}",
        if cfg!(debug_assertions) {
            "debug"
        } else {
            "release"
        },
        humantime::format_duration(stable)
    );
    println!(
        "{:>3} {:>18} {:>14} {:>14} {:>8}",
        "N", "host agent restart", "floor (N x)", "rollout", "ratio"
    );
    for n in domains {
        let (restart, rollout) = run_one(n, stable);
        let floor = (restart + stable) * n;
        println!(
            "{n:>3} {:>17.2}s {:>13.2}s {:>13.2}s {:>7.2}x",
            restart.as_secs_f64(),
            floor.as_secs_f64(),
            rollout.as_secs_f64(),
            rollout.as_secs_f64() / floor.as_secs_f64()
        );
    }
}

fn run_one(n: u32, stable: Duration) -> (Duration, Duration) {
    let dir = tempfile::tempdir().expect("tempdir");
    let definition = services::write_definition(
        dir.path(),
        "web",
        &[("front", n)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let hosts = n.to_string();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        &hosts,
        "--update-domains",
        &hosts,
        "--fault-domains",
        "2",
        "--restart-delay",
        "0s",
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
    ]);
    cluster.wait_for(LIMIT, "every instance Running", |s| {
        services::all_running(s, "web", n as usize)
    });

    // The floor's restart: one host agent killed and back under a new boot.
    let before = cluster.status().expect("status");
    let old = node(&before, "host-1").expect("host-1").clone();
    let start = Instant::now();
    cluster.run_ok(&["chaos", "kill-agent", "host-1"]);
    cluster.wait_for(LIMIT, "host-1 back", |s| {
        node(s, "host-1")
            .is_some_and(|h| h.restarts > old.restarts && h.state == "Ready" && h.pid != old.pid)
    });
    let restart = start.elapsed();
    cluster.wait_for(LIMIT, "every instance Running", |s| {
        services::all_running(s, "web", n as usize)
    });

    let package = write(&NEW_PAIR, dir.path());
    cluster.run_ok(&["package", "add", package.to_str().expect("UTF-8 path")]);
    let stable_text = format!("{}ms", stable.as_millis());
    let start = Instant::now();
    cluster.run_ok(&[
        "update",
        "start",
        NEW_PAIR.version,
        "--gate-stable",
        &stable_text,
        "--gate-timeout",
        "5m",
    ]);
    loop {
        let done = cluster
            .status()
            .ok()
            .and_then(|s| s.update)
            .is_some_and(|u| u.status == "Succeeded");
        if done {
            break;
        }
        assert!(start.elapsed() < LIMIT, "rollout of {n} domains not done");
        std::thread::sleep(POLL);
    }
    (restart, start.elapsed())
}

/// `rollout-time [--domains 2,4] [--stable 2s]`.
#[derive(Debug, clap::Parser)]
struct Args {
    /// Update domains (one server each) of each run.
    #[arg(long, value_delimiter = ',', default_value = "2,4")]
    domains: Vec<u32>,
    /// The gate's stable time.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s")]
    stable: Duration,
}

fn parse_args() -> (Vec<u32>, Duration) {
    let args = <Args as clap::Parser>::parse();
    (args.domains, args.stable)
}
