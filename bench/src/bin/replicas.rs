//! What a redundant controller costs and how fast it fails over.
//!
//! 1. Write cost: a decision saved in etcd by the leader (a fenced
//!    transaction, the change record inline) against etcd's own cost, a
//!    bare put loop of the same size to the same 3-member local etcd, in
//!    the same run; and what a takeover costs: the whole state written as a
//!    snapshot in parts, and read back by the new leader.
//! 2. Failover, real processes (`fabricctl up --replicas 3`, hollow hosts):
//!    a server powered off and the leader SIGKILLed at the same moment;
//!    the time until a new leader serves, and until it decides the first
//!    heal, beside node_timeout + unresponsive grace (no heal can be decided
//!    sooner, failover or not).
//!
//! Run: `cargo build --release --workspace --bins && cargo run --release -p
//! fabric-bench --bin replicas` (Debian's etcd-server installed).

#[path = "../store_model.rs"]
mod store_model;

use clap::Parser;
use fabric_controller::store::etcd::EtcdStore;
use fabric_controller::store::{ChangeRecord, PersistedState, Save, Store};
use fabric_etcd::local::LocalEtcd;
use fabric_etcd::{BlockingEtcd, Leadership};
use fabric_tests::cluster::LocalCluster;
use std::time::{Duration, Instant};
use store_model::{cluster, one_event};

#[derive(Parser)]
struct Args {
    /// Sizes of the state for the write cost, in VMs.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000,100000")]
    vms: Vec<u32>,
    /// Leader leases to fail over with (whole seconds).
    #[arg(long, value_delimiter = ',', default_value = "2s,15s", value_parser = humantime::parse_duration)]
    leases: Vec<Duration>,
    /// Skip the failover runs (write cost only).
    #[arg(long)]
    no_failover: bool,
}

fn main() {
    let args = Args::parse();
    write_cost(&args.vms);
    if !args.no_failover {
        for lease in &args.leases {
            failover(*lease);
        }
    }
}

fn elect(etcd: &BlockingEtcd) -> Leadership {
    etcd.call(|etcd| async move {
        let lease = etcd.grant_lease(Duration::from_secs(600)).await?;
        etcd.campaign(
            b"/fabric/bench/leader",
            lease,
            b"bench",
            Duration::from_secs(30),
        )
        .await
    })
    .expect("elected")
}

fn write_cost(sizes: &[u32]) {
    println!(
        "Replicated controller: a decision's save to a local 3-member etcd (fenced transaction) \
         against a bare etcd put of the same size, same run"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let members =
        LocalEtcd::start(dir.path(), 3).expect("start etcd (apt-get install etcd-server)");
    members
        .wait_ready(Duration::from_secs(30))
        .expect("etcd ready");
    let endpoints = members.endpoints();
    let timeout = Duration::from_secs(10);
    let etcd = BlockingEtcd::new(&endpoints, timeout).expect("etcd");
    for &vms in sizes {
        let prefix = format!("/fabric/bench-{vms}/");
        let leader = elect(&etcd);
        let mut store =
            EtcdStore::new(&endpoints, timeout, &prefix, Some(leader), None).expect("store");
        let mut core = cluster(vms);
        let mut generation = 1;
        let mut snapshot = core.snapshot();
        snapshot.identity.generation = generation;
        let state = PersistedState {
            core: snapshot,
            secrets: vec![],
        };
        let bytes = serde_json::to_vec(&state).expect("encode").len();
        core.all_saved();
        let started = Instant::now();
        store.save(Save::Full(&state)).expect("snapshot");
        let snapshot_took = started.elapsed();

        // Only the save is timed (the core's decision is not the store's).
        let rounds = 300u64;
        let mut record_bytes = 0;
        let mut saving = Duration::ZERO;
        for round in 0..rounds {
            one_event(&mut core, round);
            generation += 1;
            let record = ChangeRecord {
                core: core.take_changes(generation),
                secrets: None,
            };
            record_bytes += serde_json::to_vec(&record).expect("encode").len();
            let started = Instant::now();
            store.save(Save::Changes(&record)).expect("append");
            saving += started.elapsed();
        }
        let append = saving / rounds as u32;
        let size = record_bytes / rounds as usize;

        let value = vec![b'x'; size];
        let key = format!("{prefix}baseline").into_bytes();
        let started = Instant::now();
        for _ in 0..rounds {
            let (key, value) = (key.clone(), value.clone());
            etcd.call(move |etcd| async move { etcd.put(&key, &value).await })
                .expect("put");
        }
        let put = started.elapsed() / rounds as u32;

        let reader = EtcdStore::new(&endpoints, timeout, &prefix, None, None).expect("reader");
        let started = Instant::now();
        let loaded = reader.load().expect("load").expect("a state");
        let load = started.elapsed();
        assert_eq!(loaded.core.instances.len(), vms as usize);
        println!(
            "  {vms:>7} VMs: save {:.2} ms per decision ({size} bytes) vs bare put {:.2} ms: \
             {:.2}x etcd's own; takeover: snapshot of {:.1} MiB written in {:.0} ms, \
             state read back (snapshot + {rounds} records) in {:.0} ms",
            append.as_secs_f64() * 1e3,
            put.as_secs_f64() * 1e3,
            append.as_secs_f64() / put.as_secs_f64(),
            bytes as f64 / (1 << 20) as f64,
            snapshot_took.as_secs_f64() * 1e3,
            load.as_secs_f64() * 1e3,
        );
    }
}

fn term(s: &fabricctl::status::StatusJson) -> i64 {
    s.replication.as_ref().map_or(0, |r| r.term)
}

fn failover(lease: Duration) {
    const HOSTS: usize = 20;
    let (node_timeout, grace) = (Duration::from_secs(5), Duration::from_secs(10));
    let definition = fabric_tests::services::example_file("service.toml");
    let lease_arg = humantime::format_duration(lease).to_string();
    let mut cluster = LocalCluster::start(&[
        "--replicas",
        "3",
        "--leader-lease",
        &lease_arg,
        "--hosts",
        "0",
        "--hollow",
        &HOSTS.to_string(),
        "--capacity",
        "10",
        "--hi-threshold",
        "5",
        "--restart-delay",
        "1h",
        "--deploy",
        definition.to_str().expect("UTF-8 path"),
    ]);
    let limit = Duration::from_secs(120);
    cluster.wait_ready(HOSTS, limit);
    cluster.wait_for(limit, "the example deployed", |s| !s.deployments.is_empty());
    cluster.run_ok(&["scale", "web", "frontend", "99"]);
    let s = cluster.wait_for(limit, "100 instances Running", |s| {
        let all: Vec<_> = s.deployments.iter().flat_map(|d| &d.instances).collect();
        all.len() == 100 && all.iter().all(|i| i.state == "Running")
    });
    let lost = "hollow-1";
    let moved: Vec<String> = s
        .deployments
        .iter()
        .flat_map(|d| &d.instances)
        .filter(|i| i.node == lost)
        .map(|i| i.id.clone())
        .collect();
    let (_, pid) = cluster.leader_process(&s);
    let old_term = term(&s);

    cluster.power_off_hollow(lost);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the leader");
    let killed = Instant::now();
    let elected = cluster.wait_for(limit, "a new leader", |s| term(s) > old_term);
    let serving = killed.elapsed();
    cluster.wait_for(limit, "the first heal", |s| {
        s.deployments
            .iter()
            .flat_map(|d| &d.instances)
            .any(|i| moved.contains(&i.id) && i.node != lost)
    });
    let healed = killed.elapsed();
    // The new leader gives every node a fresh grace (no server is declared
    // lost because the controller changed), so a server lost with the
    // leader is healed no sooner than failover + node timeout + grace.
    let floor = serving + node_timeout + grace;
    println!(
        "  failover, lease {lease_arg}: leader SIGKILLed with {lost} ({} instances) powered \
         off: new leader (term {} -> {}) serving after {:.2}s; its first heal decided after \
         {:.2}s = failover + node timeout {:.0}s + grace {:.0}s {:+.2}s",
        moved.len(),
        old_term,
        term(&elected),
        serving.as_secs_f64(),
        healed.as_secs_f64(),
        node_timeout.as_secs_f64(),
        grace.as_secs_f64(),
        healed.as_secs_f64() - floor.as_secs_f64(),
    );
    cluster.terminate(Duration::from_secs(30));
}
