//! In-process gRPC over real mutual TLS on 127.0.0.1:0: who may call what.

use fabric_core::CoreConfig;
use fabric_pki::Role;
use fabric_proto::v1::{
    self as pb, node_service_client::NodeServiceClient,
    operator_service_client::OperatorServiceClient,
};
use fabric_tests::{RunningController, TestPki, connect};
use std::time::Duration;
use tonic::Code;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};

fn register(node_id: &str) -> pb::RegisterRequest {
    pb::RegisterRequest {
        node: Some(pb::NodeDescription {
            node_id: node_id.into(),
            fault_domain: 1,
            update_domain: 1,
            capacity_vm_slots: 4,
            agent_version: "test".into(),
            host_endpoint: "127.0.0.1:1".into(),
            pid: 1,
            software: None,
            role_probe_host: String::new(),
        }),
        boot_id: "boot-1".into(),
    }
}

fn heartbeat(node_id: &str, sequence: u64) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        node_id: node_id.into(),
        boot_id: "boot-1".into(),
        sequence,
        vms: vec![],
        ..Default::default()
    }
}

async fn controller(pki: &TestPki) -> RunningController {
    RunningController::start(pki, CoreConfig::default()).await
}

/// Any failure of a call made without an acceptable certificate. The TLS
/// handshake fails before any RPC runs, so tonic reports a transport error as
/// UNAVAILABLE (or UNKNOWN when the server aborts mid-stream).
fn assert_refused_by_tls<T: std::fmt::Debug>(result: Result<T, tonic::Status>) {
    let status = result.expect_err("call without a valid certificate succeeded");
    assert!(
        matches!(status.code(), Code::Unavailable | Code::Unknown),
        "unexpected status {status:?}"
    );
}

#[tokio::test]
async fn a_host_certificate_registers_and_heartbeats() {
    let pki = TestPki::new("alpha", &["host-2"]);
    let fc = controller(&pki).await;
    let channel = connect(&fc.url(), &pki.host("host-2")).await.unwrap();
    let mut client = NodeServiceClient::new(channel);
    let response = client
        .register(register("host-2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.node_id, "host-2");
    assert_eq!(response.cluster_name, "alpha");
    // An empty node_id is fine: the certificate says who we are.
    let beat = client
        .heartbeat(heartbeat("", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        beat.disposition,
        pb::heartbeat_response::Disposition::Accepted as i32
    );
    let stale = client
        .heartbeat(heartbeat("host-2", 1))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        stale.disposition,
        pb::heartbeat_response::Disposition::Stale as i32
    );
    fc.stop().await;
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let pki = TestPki::new("alpha", &[]);
    let fc = controller(&pki).await;
    let ca = std::fs::read_to_string(pki.layout.ca_cert()).unwrap();
    let result = async {
        let channel = Endpoint::from_shared(fc.url())
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        OperatorServiceClient::new(channel)
            .get_status(pb::GetStatusRequest::default())
            .await
    }
    .await;
    assert_refused_by_tls(result);
    fc.stop().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused() {
    let pki = TestPki::new("alpha", &[]);
    // Same cluster name, same file layout, different CA.
    let impostor = TestPki::new("alpha", &["host-1"]);
    let fc = controller(&pki).await;
    // The impostor trusts the real CA (so it can reach the server) but presents
    // a certificate signed by its own CA.
    let mut files = impostor.host("host-1");
    files.ca = pki.layout.ca_cert();
    let result = async {
        let channel = connect(&fc.url(), &files)
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        NodeServiceClient::new(channel)
            .register(register("host-1"))
            .await
    }
    .await;
    assert_refused_by_tls(result);
    fc.stop().await;
}

#[tokio::test]
async fn host_2_cannot_speak_as_host_3() {
    let pki = TestPki::new("alpha", &["host-2", "host-3"]);
    let fc = controller(&pki).await;
    let mut host2 = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-2")).await.unwrap());
    let err = host2.register(register("host-3")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    assert!(err.message().contains("host-2"), "{}", err.message());

    // Register legitimately as host-3, then try to heartbeat for it as host-2.
    let mut host3 = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-3")).await.unwrap());
    host3.register(register("host-3")).await.unwrap();
    let err = host2.heartbeat(heartbeat("host-3", 1)).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");
    let err = host2
        .report_fault(pb::FaultReport {
            node_id: "host-3".into(),
            boot_id: "boot-1".into(),
            reason: "forged".into(),
            agent_version: "x".into(),
            vm_ids: vec![],
            cause: pb::FaultCause::HostHardware as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied, "{err:?}");

    // The FC's view of host-3 did not move: sequence still 0.
    let mut admin = OperatorServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let status = admin
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap()
        .into_inner();
    let host3 = status.nodes.iter().find(|n| n.node_id == "host-3").unwrap();
    assert_eq!(host3.last_sequence, 0);
    assert!(status.nodes.iter().all(|n| n.node_id != "host-2"));
    fc.stop().await;
}

#[tokio::test]
async fn roles_are_enforced_per_service() {
    let pki = TestPki::new("alpha", &["host-1"]);
    let fc = controller(&pki).await;
    // A host may not use the operator API...
    let mut as_host =
        OperatorServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());
    let err = as_host
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // ...and an admin may not pose as a host.
    let mut as_admin = NodeServiceClient::new(connect(&fc.url(), &pki.admin()).await.unwrap());
    let err = as_admin.register(register("admin")).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    // A second admin certificate from the same CA is fine.
    let ops = pki.issue(Role::Admin, "oncall");
    let mut oncall = OperatorServiceClient::new(connect(&fc.url(), &ops).await.unwrap());
    oncall
        .get_status(pb::GetStatusRequest::default())
        .await
        .unwrap();
    fc.stop().await;
}

#[tokio::test]
async fn malformed_requests_get_invalid_argument() {
    let pki = TestPki::new("alpha", &["host-1"]);
    let fc = controller(&pki).await;
    let mut client = NodeServiceClient::new(connect(&fc.url(), &pki.host("host-1")).await.unwrap());
    let mut no_boot = register("host-1");
    no_boot.boot_id.clear();
    let err = client.register(no_boot).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("boot_id"));
    let err = client
        .register(pb::RegisterRequest {
            node: None,
            boot_id: "b".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    // A fault report for a node that never registered.
    let err = client
        .report_fault(pb::FaultReport {
            node_id: String::new(),
            boot_id: "b".into(),
            reason: "disk on fire".into(),
            agent_version: String::new(),
            vm_ids: vec![],
            cause: pb::FaultCause::HostHardware as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound);
    fc.stop().await;
}
