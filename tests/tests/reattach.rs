//! Host agent restart: a host agent SIGKILLed alone re-adopts its running
//! VMs when its supervisor restarts it. Its VMs keep serving HTTPS
//! throughout (while it is down and after it is back), keep their guest
//! agent process, incarnation and endpoint, resume their session with the
//! new host agent (Hello with the session token, no secrets re-sent), and no
//! instance is reinitialized.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::{self, LocalCluster};
use fabric_tests::https::{cert_der, fetch, runtime};
use fabric_tests::procs;
use fabric_tests::services::{self, all_running, instances};
use fabricctl::status::{InstanceJson, StatusJson};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};

const WEB: &str = "web";
/// examples/web/service.toml: frontend x2, api x1.
const WEB_INSTANCES: usize = 3;
/// Guests heartbeat fast and are presumed dead soon, so a VM that the
/// restarted host agent failed to re-adopt would be reinitialized within
/// the test's watch.
const GUEST_HEARTBEAT_INTERVAL: &str = "500ms";
const GUEST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// For the deployment to come up on a busy 2-core machine (debug binaries).
const COME_UP: Duration = Duration::from_secs(60);
/// For the supervisor to restart the host agent and the VMs to resume.
const COME_BACK: Duration = Duration::from_secs(45);

/// What identifies a VM run: same process, incarnation and endpoint.
fn identity(i: &InstanceJson) -> (String, u32, u64, String) {
    (i.id.clone(), i.pid, i.incarnation, i.endpoint.clone())
}

fn on_node(status: &StatusJson, node: &str) -> Vec<InstanceJson> {
    instances(status, WEB)
        .iter()
        .filter(|i| i.node == node)
        .cloned()
        .collect()
}

/// Fetches every endpoint of `vms`; each must answer with the deployed
/// certificate and name its VM at the same incarnation.
fn fetch_all(rt: &tokio::runtime::Runtime, vms: &[InstanceJson], web_der: &[u8], when: &str) {
    for i in vms {
        let served = fetch(rt, &i.endpoint, web_der)
            .unwrap_or_else(|e| panic!("{} at {} {when}: {e}", i.id, i.endpoint));
        assert_eq!(served.leaf_der, web_der);
        assert_eq!(
            served.body["vm_id"],
            i.id.as_str(),
            "{when}: {}",
            served.body
        );
        assert_eq!(
            served.body["incarnation"], i.incarnation,
            "{} {when}: {}",
            i.id, served.body
        );
    }
}

#[test]
fn a_killed_host_agent_readopts_its_vms_which_keep_serving() {
    let web_der = cert_der(&services::example_file("certs/web.pem"));
    let rt = runtime();
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "2",
        "--restart-delay",
        "1s",
        "--node-timeout",
        "5s",
        "--heartbeat-interval",
        "300ms",
        "--guest-heartbeat-interval",
        GUEST_HEARTBEAT_INTERVAL,
        "--guest-heartbeat-timeout",
        &format!("{}ms", GUEST_HEARTBEAT_TIMEOUT.as_millis()),
        "--deploy",
        services::example_file("service.toml")
            .to_str()
            .expect("UTF-8 path"),
    ]);
    let up = cluster.wait_for(
        COME_UP,
        "every web instance Running on 2 Ready nodes",
        |s| {
            all_running(s, WEB, WEB_INSTANCES)
                && s.nodes.len() == 2
                && s.nodes.iter().all(|n| n.state == "Ready")
        },
    );
    // The host with the most VMs (2 of the 3, by fault domain spreading).
    let victim = ["host-1", "host-2"]
        .into_iter()
        .max_by_key(|n| on_node(&up, n).len())
        .unwrap()
        .to_owned();
    let vms = on_node(&up, &victim);
    assert!(!vms.is_empty(), "{up:#?}");
    let before: Vec<_> = vms.iter().map(identity).collect();
    let old = cluster::node(&up, &victim).unwrap().clone();
    fetch_all(&rt, &vms, &web_der, "before the kill");

    // SIGKILL the host agent alone (not its process group: its VMs are
    // separate machines).
    assert!(
        procs::signal(old.pid, Signal::SIGKILL),
        "kill host agent {}",
        old.pid
    );
    let killed_at = Instant::now();
    let mut fetched_while_down = 0;
    let mut back: Option<StatusJson> = None;
    while back.is_none() {
        assert!(
            killed_at.elapsed() < COME_BACK,
            "{victim} did not come back with its VMs re-adopted within {COME_BACK:?}"
        );
        let down = !procs::alive(old.pid);
        fetch_all(&rt, &vms, &web_der, "after the host agent was killed");
        let status = cluster.status().ok();
        let node_back = status
            .as_ref()
            .and_then(|s| cluster::node(s, &victim))
            .is_some_and(|n| {
                n.pid != 0 && n.pid != old.pid && n.state == "Ready" && n.restarts > old.restarts
            });
        if !node_back && down {
            fetched_while_down += 1;
        }
        let resumed = vms.iter().all(|i| {
            let log = cluster.state_dir.join(format!(
                "hosts/{victim}/vm-logs/{}.{}.log",
                i.id, i.incarnation
            ));
            std::fs::read_to_string(&log).is_ok_and(|t| t.contains("session resumed"))
        });
        if node_back && resumed {
            back = status;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fetched_while_down > 0,
        "no fetch happened while the host agent was down"
    );

    // Keep watching past the guest heartbeat timeout: a VM the new host
    // agent had not re-adopted would be reinitialized by now.
    let watch = Instant::now();
    while watch.elapsed() < GUEST_HEARTBEAT_TIMEOUT + Duration::from_secs(2) {
        fetch_all(&rt, &vms, &web_der, "after the host agent came back");
        std::thread::sleep(Duration::from_millis(200));
    }
    let after = cluster.wait_for(COME_BACK, "the re-adopted VMs Running", |s| {
        on_node(s, &victim).iter().all(|i| i.state == "Running")
    });
    let node = cluster::node(&after, &victim).unwrap();
    assert_eq!(node.state, "Ready", "{node:#?}");
    assert!(node.restarts >= 1 && node.pid != old.pid, "{node:#?}");
    let now: Vec<_> = on_node(&after, &victim).iter().map(identity).collect();
    assert_eq!(
        now, before,
        "same guest agent processes, incarnations and endpoints"
    );
    for i in &vms {
        assert!(
            procs::alive(i.pid),
            "guest agent {} of {} is gone",
            i.pid,
            i.id
        );
    }
    let events = cluster.events().expect("events");
    let reinitialized: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "instance.reinitialized")
        .filter(|e| vms.iter().any(|i| e.reason.contains(&i.id)))
        .collect();
    assert!(reinitialized.is_empty(), "{reinitialized:#?}");
    // The restarted host agent said so, and sealed nothing again.
    let log = std::fs::read_to_string(cluster.state_dir.join(format!("logs/{victim}.log")))
        .unwrap_or_default();
    assert!(log.contains("re-adopting VM"), "{log}");
    fetch_all(&rt, &vms, &web_der, "at the end");
}
