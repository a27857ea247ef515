//! A redundant controller under chaos, as real processes: `fabricctl up
//! --replicas 3` (a local 3-member etcd and three controller replicas) with
//! nine hollow hosts. The leader is killed, killed in the middle of a
//! deploy and of a heal, paused past its lease and resumed; an etcd member
//! is killed, the one every client asks first is stopped (it accepts and
//! never answers) while the leader is killed, and the etcd majority is
//! stopped and resumed; last the controllers are rolled (each follower
//! restarted, then the leader stopped, which hands leadership on at once).
//! After each: every
//! node still Ready (no server declared lost because the controller
//! changed), every acknowledged deploy present, and by each host agent's
//! own account every instance Running exactly once where the controller
//! placed it. At the end, etcd's revision history shows that no write was
//! made by a term older than one already elected (no deposed leader wrote).
//!
//! Needs the binaries (`cargo build --workspace --bins`) and Debian's
//! etcd-server; without etcd it is skipped, loudly, unless CI=true.

use fabric_tests::cluster::{LocalCluster, poll_ok, poll_until};
use fabric_tests::etcd_history;
use fabric_tests::ground_truth::{admin_files, running_once_where_placed};
use fabric_tests::https::runtime;
use fabric_tests::services;
use fabricctl::status::StatusJson;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const HOSTS: usize = 9;
/// Generous for debug binaries on a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(90);
const LEASE: &str = "2s";

fn instances(s: &StatusJson) -> Vec<&fabricctl::status::InstanceJson> {
    s.deployments.iter().flat_map(|d| &d.instances).collect()
}

fn term(s: &StatusJson) -> i64 {
    s.replication.as_ref().map_or(0, |r| r.term)
}

fn signal(pid: u32, signal: nix::sys::signal::Signal) {
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), signal)
        .unwrap_or_else(|e| panic!("signal {signal} to {pid}: {e}"));
}

/// Waits for a term newer than `old`; returns the status and how long it took.
fn new_term(cluster: &mut LocalCluster, old: i64, since: Instant, what: &str) -> StatusJson {
    let s = cluster.wait_for(LIMIT, &format!("a new leader after {what}"), |s| {
        term(s) > old
    });
    eprintln!(
        "{what}: term {old} -> {} after {:.2}s",
        term(&s),
        since.elapsed().as_secs_f64()
    );
    s
}

/// Every node Ready, `count` instances, all Running, and by every host
/// agent's own account each Running exactly once where placed.
fn settled(cluster: &mut LocalCluster, count: usize, lost: &BTreeSet<String>, what: &str) {
    let s = cluster.wait_for(LIMIT, &format!("{count} instances Running ({what})"), |s| {
        let all = instances(s);
        all.len() == count
            && all
                .iter()
                .all(|i| i.state == "Running" && !lost.contains(&i.node))
    });
    for n in s.nodes.iter().filter(|n| !lost.contains(&n.id)) {
        assert_eq!(n.state, "Ready", "{what}: {} is {}", n.id, n.state);
    }
    let rt = runtime();
    let files = admin_files(&cluster.state_dir);
    poll_ok(
        LIMIT,
        Duration::from_millis(300),
        &format!("ground truth: each instance Running once where placed ({what})"),
        || running_once_where_placed(&rt, &s, lost, &files),
    );
    eprintln!("{what}: {count} instances Running once each, where placed");
}

#[test]
fn three_replicas_fail_over_without_losing_or_doubling_anything() {
    if !fabric_etcd::local::available_for_tests("controller replicas chaos test") {
        return;
    }
    let definition = services::example_file("service.toml");
    let mut cluster = LocalCluster::start(&[
        "--replicas",
        "3",
        "--leader-lease",
        LEASE,
        "--hosts",
        "0",
        "--hollow",
        &HOSTS.to_string(),
        "--capacity",
        "10",
        "--heartbeat-interval",
        "500ms",
        "--node-timeout",
        "3s",
        "--unresponsive-grace",
        "2s",
        "--hi-threshold",
        "5",
        "--restart-delay",
        "1s",
        "--deploy",
        definition.to_str().expect("UTF-8 path"),
    ]);
    cluster.wait_ready(HOSTS, LIMIT);
    // The leader lists the followers once they campaign (refreshed every
    // retry period).
    let first = cluster.wait_for(LIMIT, "the leader listing three replicas", |s| {
        s.replication
            .as_ref()
            .is_some_and(|r| r.replicas.len() == 3)
    });
    let ports: fabricctl::up::replicas::Ports = serde_json::from_slice(
        &std::fs::read(cluster.state_dir.join("replicas.json")).expect("replicas.json"),
    )
    .expect("ports");
    let etcd: Vec<String> = ports
        .etcd
        .iter()
        .map(|(client, _)| format!("127.0.0.1:{client}"))
        .collect();
    let mut terms = vec![term(&first)];
    assert!(terms[0] > 0, "status names the leader's term");
    let replication = first.replication.as_ref().expect("replication");
    assert_eq!(replication.replicas[0], replication.leader);
    // The leader's dashboard says the same.
    let summary = fabric_tests::scrape::get(&cluster.dashboard_url(), "/api/summary")
        .expect("the leader's dashboard");
    let summary: serde_json::Value = serde_json::from_str(&summary.body).expect("JSON");
    assert_eq!(summary["replication"]["term"], terms[0]);
    assert_eq!(
        summary["replication"]["leader"],
        replication.leader.as_str()
    );
    cluster.wait_for(LIMIT, "the example deployed", |s| !s.deployments.is_empty());
    cluster.run_ok(&["scale", "web", "frontend", "20"]);
    let none = BTreeSet::new();
    settled(&mut cluster, 21, &none, "deployed");

    // 1. The leader killed.
    let s = cluster.status().expect("status");
    let (name, pid) = cluster.leader_process(&s);
    let killed = Instant::now();
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let s = new_term(&mut cluster, term(&s), killed, &format!("{name} killed"));
    terms.push(term(&s));
    settled(&mut cluster, 21, &none, "leader killed");

    // 2. The leader killed in the middle of a deploy: the scale is either
    //    acknowledged (then it must survive) or refused (then the operator
    //    asks the new leader).
    let (_, pid) = cluster.leader_process(&s);
    let scale = cluster
        .command()
        .args(["scale", "web", "frontend", "30"])
        .output();
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let acknowledged = scale.as_ref().is_ok_and(|o| o.status.success());
    let s = new_term(
        &mut cluster,
        term(&s),
        killed,
        "leader killed after a deploy",
    );
    terms.push(term(&s));
    if !acknowledged {
        cluster.run_ok(&["scale", "web", "frontend", "30"]);
    }
    settled(&mut cluster, 31, &none, "leader killed after a deploy");

    // 3. The leader paused past its lease, a deploy acknowledged by the
    //    new leader, then the old one resumed: it must step down, write
    //    nothing, and undo nothing.
    let (paused_name, paused) = cluster.leader_process(&s);
    signal(paused, nix::sys::signal::Signal::SIGSTOP);
    let stopped = Instant::now();
    let s = new_term(
        &mut cluster,
        term(&s),
        stopped,
        &format!("{paused_name} paused"),
    );
    terms.push(term(&s));
    cluster.run_ok(&["scale", "web", "frontend", "35"]);
    signal(paused, nix::sys::signal::Signal::SIGCONT);
    let log = cluster
        .state_dir
        .join("logs")
        .join(format!("{paused_name}.log"));
    poll_until(
        LIMIT,
        Duration::from_millis(200),
        "the resumed leader steps down",
        || {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            text.contains("stepped down").then_some(())
        },
    );
    settled(&mut cluster, 36, &none, "old leader resumed");

    // 4. The leader killed in the middle of a heal: two servers powered
    //    off; once the controller declares one lost, the leader dies.
    let lost: BTreeSet<String> = ["hollow-1", "hollow-2"].map(String::from).into();
    let before = cluster.status().expect("status");
    assert!(
        instances(&before).iter().any(|i| lost.contains(&i.node)),
        "the servers to lose run instances"
    );
    for name in &lost {
        cluster.power_off_hollow(name);
    }
    let s = cluster.wait_for(LIMIT, "a lost server being healed", |s| {
        s.nodes
            .iter()
            .any(|n| lost.contains(&n.id) && n.state == "HumanInvestigate")
    });
    let (_, pid) = cluster.leader_process(&s);
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let s = new_term(&mut cluster, term(&s), killed, "leader killed mid-heal");
    terms.push(term(&s));
    settled(&mut cluster, 36, &lost, "healed across a failover");

    // 5. One etcd member killed: the cluster goes on (a deploy lands).
    let member = cluster.pid_of("etcd-1");
    signal(member, nix::sys::signal::Signal::SIGKILL);
    // Refused (and not carried out) while etcd elects a new Raft leader,
    // if the member killed led it: the operator asks again.
    poll_ok(
        LIMIT,
        Duration::from_millis(500),
        "a deploy landing",
        || {
            let out = cluster.run(&["scale", "web", "frontend", "38"]);
            match out.status.success() {
                true => Ok(()),
                false => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
            }
        },
    );
    settled(&mut cluster, 39, &lost, "one etcd member killed");

    // 6. The etcd member every client asks first stopped (SIGSTOP: it
    //    accepts connections and never answers, as when cut off), then the
    //    leader killed: the followers' campaigns and the new leader's
    //    writes must go round it.
    let s = cluster.status().expect("status");
    let first_member = cluster.pid_of("etcd-0");
    signal(first_member, nix::sys::signal::Signal::SIGSTOP);
    let (_, pid) = cluster.leader_process(&s);
    signal(pid, nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let s = new_term(
        &mut cluster,
        term(&s),
        killed,
        "leader killed, etcd-0 stopped",
    );
    terms.push(term(&s));
    cluster.run_ok(&["scale", "web", "frontend", "40"]);
    settled(&mut cluster, 41, &lost, "leader killed, etcd-0 stopped");
    signal(first_member, nix::sys::signal::Signal::SIGCONT);

    // 7. The etcd majority stopped: the leader cannot renew, steps down,
    //    and nobody acts; the hosts keep their VMs. Resumed, a leader is
    //    elected and nothing was lost.
    let s = cluster.status().expect("status");
    let majority = [cluster.pid_of("etcd-0"), cluster.pid_of("etcd-2")];
    for &pid in &majority {
        signal(pid, nix::sys::signal::Signal::SIGSTOP);
    }
    let stopped = Instant::now();
    poll_until(
        LIMIT,
        Duration::from_millis(200),
        "no controller answering without an etcd majority",
        || cluster.status().is_err().then_some(()),
    );
    eprintln!(
        "etcd majority stopped: no controller acting after {:.2}s",
        stopped.elapsed().as_secs_f64()
    );
    for &pid in &majority {
        signal(pid, nix::sys::signal::Signal::SIGCONT);
    }
    let resumed = Instant::now();
    let s = new_term(&mut cluster, term(&s), resumed, "etcd majority resumed");
    terms.push(term(&s));
    settled(&mut cluster, 41, &lost, "etcd majority resumed");

    // 8. Rolling the controllers (as an update of their binary would):
    //    each follower stopped with SIGTERM and restarted by the launcher,
    //    then the leader, whose SIGTERM revokes its lease and so hands
    //    leadership on at once instead of after a lease.
    let s = cluster.status().expect("status");
    let (leader, leader_pid) = cluster.leader_process(&s);
    for follower in (1..=3).map(|i| format!("fabric-controller-{i}")) {
        if follower == leader {
            continue;
        }
        let old = cluster.pid_of(&follower);
        signal(old, nix::sys::signal::Signal::SIGTERM);
        poll_until(
            LIMIT,
            Duration::from_millis(200),
            &format!("{follower} restarted and campaigning"),
            || {
                let back = cluster.current_pid(&follower).is_some_and(|pid| pid != old);
                let campaigning = cluster
                    .status()
                    .ok()?
                    .replication
                    .is_some_and(|r| r.replicas.len() == 3);
                (back && campaigning).then_some(())
            },
        );
    }
    signal(leader_pid, nix::sys::signal::Signal::SIGTERM);
    let handed = Instant::now();
    let s = new_term(
        &mut cluster,
        term(&s),
        handed,
        &format!("rolling: {leader} stopped with SIGTERM (hand-over)"),
    );
    terms.push(term(&s));
    settled(&mut cluster, 41, &lost, "controllers rolled");

    // No deposed leader wrote: etcd's history shows every write made by
    // the term leading at its revision.
    let writes = runtime()
        .block_on(etcd_history::writes_since(
            &etcd,
            "/fabric/local/",
            terms[0],
        ))
        .expect("etcd history");
    let by: BTreeSet<i64> = writes.iter().map(|w| w.writer).collect();
    assert!(by.len() >= 3, "several terms wrote: {by:?}");
    let stale: Vec<_> = writes.iter().filter(|w| w.is_stale()).collect();
    assert!(
        stale.is_empty(),
        "writes not by the term leading then: {stale:?}"
    );
    eprintln!(
        "etcd history: {} writes by terms {terms:?}, none by a deposed leader",
        writes.len()
    );
    cluster.terminate(Duration::from_secs(30));
}
