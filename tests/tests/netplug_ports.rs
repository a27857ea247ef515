//! A VM's public port taken by another process: the networking plugin
//! cannot bind it, says so in its status, and the host agent gives the VM
//! another public port, which the controller learns and clients reach.
//!
//! Seen in CI before the fix: a public port the host agent had probed free
//! was taken by another process before the plugin bound it, and the VM
//! stayed unreachable ("cannot bind ...: Address already in use") for as
//! long as the port was held. Here the port is taken deterministically:
//! the plugin is killed, the test binds the VM's public port, and the
//! restarted plugin finds it held.

use fabric_tests::cluster::{LocalCluster, fast_web_flags};
use fabric_tests::services;
use std::time::Duration;

#[test]
fn a_public_port_taken_while_the_plugin_was_down_is_replaced() {
    let flags = fast_web_flags("5s");
    let mut args: Vec<&str> = flags.iter().map(String::as_str).collect();
    // One server: the test kills its plugin.
    let hosts = args.iter().position(|a| *a == "--hosts").unwrap();
    args[hosts + 1] = "1";
    args.retain(|a| *a != "--hi-threshold" && *a != "2");
    let mut cluster = LocalCluster::start(&args);
    let running = |s: &fabricctl::status::StatusJson| {
        let all = services::instances(s, "web");
        !all.is_empty() && all.iter().all(|i| i.state == "Running")
    };
    let status = cluster.wait_for(Duration::from_secs(60), "web Running", running);
    let victim = services::instances(&status, "web")[0].clone();
    let port: u16 = victim
        .endpoint
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("an ip:port endpoint");

    // The plugin dies; another process takes the VM's public port before
    // the host agent restarts the plugin (within a second).
    let pid_file = cluster.root().join("state/hosts/host-1/netplug/pid");
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("the plugin's pid file")
        .trim()
        .parse()
        .expect("a pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the plugin");
    let held = (0..100)
        .find_map(|_| {
            std::net::TcpListener::bind(("127.0.0.1", port))
                .ok()
                .or_else(|| {
                    std::thread::sleep(Duration::from_millis(10));
                    None
                })
        })
        .expect("the VM's public port is free once the plugin is gone");

    // The instance comes back at another public port, and serves there.
    let status = cluster.wait_for(
        Duration::from_secs(30),
        "the instance Running at another public port",
        |s| {
            services::instances(s, "web").iter().any(|i| {
                i.id == victim.id
                    && i.state == "Running"
                    && !i.endpoint.is_empty()
                    && i.endpoint != victim.endpoint
            })
        },
    );
    let moved = services::instances(&status, "web")
        .iter()
        .find(|i| i.id == victim.id)
        .cloned()
        .expect("the instance");
    assert_eq!(
        moved.incarnation, victim.incarnation,
        "the VM was not restarted, only given another public port"
    );
    let rt = fabric_tests::https::runtime();
    let cert = fabric_tests::https::cert_der(&services::example_file("certs/web.pem"));
    let served = fabric_tests::https::fetch(&rt, &moved.endpoint, &cert)
        .unwrap_or_else(|e| panic!("{} does not serve at {}: {e}", moved.id, moved.endpoint));
    fabric_tests::https::check_identity(&served, "web", &moved).expect("it names itself");
    drop(held);
    cluster.terminate(Duration::from_secs(10));
}
