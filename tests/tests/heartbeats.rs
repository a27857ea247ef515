//! A real host agent (the library, in-process) against a real controller over
//! mTLS: it registers, stays Ready, goes Unresponsive when stopped, and comes
//! back as a restart (new boot id) when started again. Events stream live.

use fabric_core::CoreConfig;
use fabric_proto::v1::{self as pb, operator_service_client::OperatorServiceClient};
use fabric_tests::{RunningController, TestPki, connect, eventually};
use host_agent::config::HostConfig;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio_stream::StreamExt;

const HB: Duration = Duration::from_millis(100);
const TIMEOUT: Duration = Duration::from_millis(600);

fn host_config(pki: &TestPki, url: &str, node: &str) -> HostConfig {
    HostConfig {
        controllers: vec![url.to_owned()],
        controller_name: "localhost".into(),
        tls: pki.host(node),
        listen: "127.0.0.1:0".parse().unwrap(),
        advertise: None,
        addr_file: None,
        http_listen: None,
        http_addr_file: None,
        role_probe_host: None,
        fault_domain: 2,
        update_domain: 3,
        capacity: 8,
        heartbeat_interval: None,
        controller_timeout: Duration::from_secs(5),
        max_backoff: Duration::from_millis(500),
        report_coalesce: Duration::from_millis(25),
        complete_report_every: 60,
        obeyed_sync_interval: Duration::from_secs(10),
        state_dir: None,
        guests: host_agent::config::GuestConfig::default(),
        running: Default::default(),
    }
}

fn start_host(config: HostConfig) -> (oneshot::Sender<()>, tokio::task::JoinHandle<()>) {
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listener = tokio::net::TcpListener::bind(config.listen).await.unwrap();
        host_agent::server::run(config, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap();
    });
    (stop, task)
}

async fn node(
    admin: &mut OperatorServiceClient<tonic::transport::Channel>,
) -> Option<pb::NodeStatus> {
    let status = admin
        .get_status(pb::GetStatusRequest::default())
        .await
        .ok()?
        .into_inner();
    status.nodes.into_iter().find(|n| n.node_id == "host-1")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_agent_lifecycle_seen_by_the_controller() {
    let pki = TestPki::new("alpha", &["host-1"]);
    let fc = RunningController::start(
        &pki,
        CoreConfig {
            heartbeat_interval: HB,
            node_timeout: TIMEOUT,
            ..CoreConfig::default()
        },
    )
    .await;
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let mut events = admin
        .watch_events(pb::WatchEventsRequest { after_sequence: 0 })
        .await
        .unwrap()
        .into_inner();

    let (stop, task) = start_host(host_config(&pki, &fc.url(), "host-1"));
    let first = eventually(Duration::from_secs(10), "host-1 heartbeating", || {
        let mut admin = admin.clone();
        async move { node(&mut admin).await.filter(|n| n.last_sequence >= 3) }
    })
    .await;
    assert_eq!(first.state, pb::NodeState::Ready as i32);
    assert_eq!(
        (
            first.fault_domain,
            first.update_domain,
            first.capacity_vm_slots
        ),
        (2, 3, 8)
    );
    assert_eq!(first.pid, std::process::id());

    // Stop the host agent: Unresponsive after node_timeout.
    stop.send(()).unwrap();
    task.await.unwrap();
    let stopped_at = tokio::time::Instant::now();
    eventually(Duration::from_secs(10), "host-1 unresponsive", || {
        let mut admin = admin.clone();
        async move {
            node(&mut admin)
                .await
                .filter(|n| n.state == pb::NodeState::Unresponsive as i32)
        }
    })
    .await;
    assert!(
        stopped_at.elapsed() >= TIMEOUT - HB,
        "expired too early: {:?}",
        stopped_at.elapsed()
    );

    // Start it again: a new boot id, so a restart, and Ready again.
    let (stop, task) = start_host(host_config(&pki, &fc.url(), "host-1"));
    let again = eventually(Duration::from_secs(10), "host-1 ready again", || {
        let mut admin = admin.clone();
        async move {
            node(&mut admin)
                .await
                .filter(|n| n.state == pb::NodeState::Ready as i32)
        }
    })
    .await;
    assert_eq!(again.restarts, 1);
    assert_ne!(again.boot_id, first.boot_id);

    // The event stream told the whole story in order.
    let mut kinds = Vec::new();
    while !kinds.contains(&"node.ready".to_owned()) {
        let e = tokio::time::timeout(Duration::from_secs(5), events.next())
            .await
            .expect("event in time")
            .expect("stream open")
            .unwrap();
        kinds.push(e.kind);
    }
    assert_eq!(
        kinds,
        [
            "controller.started",
            "node.registered",
            "node.unresponsive",
            "node.restarted",
            "node.ready"
        ]
    );
    stop.send(()).unwrap();
    task.await.unwrap();
    fc.stop().await;
}
