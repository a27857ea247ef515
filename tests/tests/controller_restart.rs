//! The controller loses nothing it acknowledged: a deploy acknowledged before
//! a restart is there after it, with its secrets, placements, incarnations
//! and events; nodes get a fresh grace instead of going Unresponsive; a
//! corrupt state file stops the controller with an error naming the file.

use fabric_core::CoreConfig;
use fabric_proto::v1::{
    self as pb, node_service_client::NodeServiceClient,
    operator_service_client::OperatorServiceClient,
};
use fabric_tests::{RunningController, TestPki, connect};
use std::time::Duration;

fn config() -> CoreConfig {
    CoreConfig {
        heartbeat_interval: Duration::from_millis(200),
        node_timeout: Duration::from_millis(1000),
        ..CoreConfig::default()
    }
}

fn definition() -> pb::ServiceDefinition {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/web/certs");
    pb::ServiceDefinition {
        priority: 0,
        name: "web".into(),
        roles: vec![pb::RoleDefinition {
            name: "front".into(),
            instances: 1,
            certificates: vec![pb::RoleCertificate {
                name: "https".into(),
                cert_pem: std::fs::read_to_string(dir.join("web.pem")).unwrap(),
                key_pem: std::fs::read_to_string(dir.join("web.key")).unwrap(),
            }],
            guest: String::new(),
        }],
    }
}

fn register() -> pb::RegisterRequest {
    pb::RegisterRequest {
        node: Some(pb::NodeDescription {
            capacity_vm_slots: 2,
            ..Default::default()
        }),
        boot_id: "boot-1".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_state_survives_a_restart() {
    let pki = TestPki::new("alpha", &["host-1"]);
    let state = tempfile::tempdir().unwrap();
    let fc = RunningController::start_with_state(&pki, config(), Some(state.path().into())).await;
    let mut host = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());
    host.register(register()).await.unwrap();
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let deployed = admin
        .deploy(pb::DeployRequest {
            service: Some(definition()),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(deployed.instances.len(), 1);
    let before = admin
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    // Abrupt stop: the task is dropped, as a SIGKILL would leave things.
    drop(fc);

    // The private key is not on disk in plain text.
    let saved = std::fs::read_to_string(state.path().join("controller-state.json")).unwrap();
    assert!(!saved.contains("PRIVATE KEY"));

    // Stay away for longer than node_timeout: no node may go Unresponsive
    // because of the controller's own absence.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let fc = RunningController::start_with_state(&pki, config(), Some(state.path().into())).await;
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let after = admin
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    assert_eq!(after.deployments.len(), 1);
    let (b, a) = (
        &before.deployments[0].instances[0],
        &after.deployments[0].instances[0],
    );
    assert_eq!(
        (&b.instance_id, &b.node_id, b.incarnation),
        (&a.instance_id, &a.node_id, a.incarnation)
    );
    assert_eq!(after.nodes[0].state, pb::NodeState::Ready as i32);

    // The host agent (same boot) carries on heartbeating; its secrets are
    // still there for it.
    let mut host = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());
    let beat = host
        .heartbeat(pb::HeartbeatRequest {
            boot_id: "boot-1".into(),
            sequence: 1,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        beat.disposition,
        pb::heartbeat_response::Disposition::Accepted as i32
    );
    assert_eq!(beat.desired_vms.len(), 1);
    let secrets = host
        .fetch_secrets(pb::FetchSecretsRequest {
            vm_id: a.instance_id.clone(),
            incarnation: a.incarnation,
        })
        .await
        .unwrap()
        .into_inner();
    assert!(secrets.certificates[0].key_pem.contains("PRIVATE KEY"));

    // Events continue after the saved ones.
    let events = admin
        .list_events(pb::ListEventsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .events;
    assert!(events.iter().any(|e| e.kind == "deployment.created"));
    assert!(
        events
            .iter()
            .any(|e| e.kind == "controller.started"
                && e.reason.contains("restarted with saved state"))
    );
    let seqs: Vec<u64> = events.iter().map(|e| e.sequence).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    fc.stop().await;
}

#[tokio::test]
async fn a_corrupt_state_file_stops_the_controller_with_a_clear_error() {
    let pki = TestPki::new("alpha", &[]);
    let state = tempfile::tempdir().unwrap();
    std::fs::write(
        state.path().join("controller-state.json"),
        b"fabric-controller-state v1 len=5 sha256=00\nhello",
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = fabric_controller::config::ControllerConfig {
        state_dir: Some(state.path().into()),
        ..fabric_tests::controller_config(&pki, listener.local_addr().unwrap())
    };
    let err = fabric_tests::controller_start_error(config, listener).await;
    assert!(err.contains("controller-state.json"), "{err}");
    assert!(err.contains("corrupt or truncated"), "{err}");
    assert!(err.contains("checksum"), "{err}");
}
