//! `guest-agent run` end to end against a fake host agent: the role's HTTPS endpoint serves the
//! deployed certificate, the secret is on disk with mode 0600, and PushSecrets rotates the served
//! certificate in the same process on the same port, refusing wrong tokens and bad ciphertext.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::fake_host::{FakeHost, NODE, Pki, SESSION_TOKEN, seal_proto};
use common::ga_process::{GaProcess, INCARNATION, VM_ID};
use common::role_certs::RoleCa;
use common::role_client::get_root;
use common::{eventually, sha256_hex};
use fabric_proto::v1::guest_agent_service_client::GuestAgentServiceClient;
use fabric_proto::v1::{GetGuestStatusRequest, PushSecretsRequest, RoleState, SealedSecret};
use fabric_sealing::SealContext;
use tonic::Code;
use tonic::transport::Channel;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_serves_the_deployed_certificate_and_rotates_without_restart() {
    let pki = Pki::new();
    let customer_ca = RoleCa::new();
    let first = customer_ca.issue("web v1");
    let host = FakeHost::start(&pki, &first.bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let mut ga = GaProcess::spawn_ok(&pki, &host.url(), work.path(), &[]);

    let endpoint = eventually("a ROLE_RUNNING heartbeat", || async {
        host.running_endpoint()
    })
    .await;
    let hello = host.hello().expect("Hello before heartbeats");
    assert_eq!(hello.vm_id, VM_ID);
    assert_eq!(hello.incarnation, INCARNATION);

    // The endpoint serves exactly the deployed certificate, and says who it is.
    let fetched = get_root(endpoint, &customer_ca.der()).await;
    assert_eq!(fetched.peer_der, first.der);
    assert_eq!(fetched.status, 200);
    assert_eq!(
        fetched.body,
        serde_json::json!({
            "deployment": "web", "role": "frontend", "instance": 0, "node": NODE,
            "incarnation": INCARNATION, "vm_id": VM_ID,
        })
    );

    // The secret is on disk for the role, readable by the agent only.
    let secret = ga.vm_dir.join("secrets/web.pem");
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), first.bundle_pem);

    // Heartbeats carry increasing sequence numbers.
    eventually("three heartbeats", || async {
        (host.calls.lock().unwrap().heartbeats.len() >= 3).then_some(())
    })
    .await;
    {
        let calls = host.calls.lock().unwrap();
        let sequences: Vec<u64> = calls.heartbeats.iter().map(|b| b.sequence).collect();
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        assert!(calls.heartbeats.iter().all(|b| b.vm_id == VM_ID));
    }

    // GetGuestStatus: the served certificate and the transfer certificate.
    let mut agent = GuestAgentServiceClient::new(
        Channel::from_shared(format!("http://{}", hello.guest_agent_endpoint))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let status = agent
        .get_guest_status(GetGuestStatusRequest {
            session_token: SESSION_TOKEN.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.served_cert_fingerprint, sha256_hex(&first.der));
    assert_eq!(
        status.transfer_cert_fingerprint,
        sha256_hex(&hello.transfer_certificate_der)
    );
    assert_eq!(status.role_state(), RoleState::RoleRunning);
    assert_eq!(status.role_endpoint, endpoint.to_string());
    assert_eq!(status.secrets_version, "v1");
    let wrong = agent
        .get_guest_status(GetGuestStatusRequest {
            session_token: "nope".to_owned(),
        })
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::PermissionDenied);

    let ctx = SealContext::new(VM_ID, INCARNATION);
    let second = customer_ca.issue("web v2");
    let sealed_second = seal_proto(
        &hello.transfer_certificate_der,
        &ctx,
        "web",
        second.bundle_pem.as_bytes(),
    );
    let push = |token: &str, secrets: Vec<SealedSecret>, version: &str| PushSecretsRequest {
        vm_id: VM_ID.to_owned(),
        incarnation: INCARNATION,
        session_token: token.to_owned(),
        secrets,
        secrets_version: version.to_owned(),
    };

    // A wrong session token is refused before anything is opened.
    let denied = agent
        .push_secrets(push("not-the-session", vec![sealed_second.clone()], "v2"))
        .await
        .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);

    // Garbage ciphertext is refused and the old certificate stays.
    let mut garbage = sealed_second.clone();
    garbage.ciphertext = vec![0x42; garbage.ciphertext.len()];
    let invalid = agent
        .push_secrets(push(SESSION_TOKEN, vec![garbage], "v2"))
        .await
        .unwrap_err();
    assert_eq!(invalid.code(), Code::InvalidArgument);
    assert_eq!(
        get_root(endpoint, &customer_ca.der()).await.peer_der,
        first.der
    );
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), first.bundle_pem);

    // A real rotation: same process, same port, new certificate.
    let pid = ga.child.id();
    let rotated = agent
        .push_secrets(push(SESSION_TOKEN, vec![sealed_second], "v2"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(rotated.served_cert_fingerprint, sha256_hex(&second.der));
    let fetched = get_root(endpoint, &customer_ca.der()).await;
    assert_eq!(fetched.peer_der, second.der);
    assert_eq!(fetched.status, 200);
    assert_eq!(ga.child.id(), pid, "the agent was not restarted");
    assert!(ga.child.try_wait().unwrap().is_none());
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), second.bundle_pem);
    let mode = std::fs::metadata(&secret).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let status = agent
        .get_guest_status(GetGuestStatusRequest {
            session_token: SESSION_TOKEN.to_owned(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(status.served_cert_fingerprint, sha256_hex(&second.der));
    assert_eq!(status.secrets_version, "v2");

    // The log tells the story without secrets.
    let log = ga.log_text();
    for line in [
        "transfer certificate created",
        "connected to host agent",
        "1 secrets received",
        "role listening on https://",
        "secrets rotated",
    ] {
        assert!(log.contains(line), "{line:?} missing from:\n{log}");
    }
    assert!(!log.contains("PRIVATE KEY"), "{log}");
    assert!(!log.contains(SESSION_TOKEN), "{log}");
    assert!(!log.contains(common::fake_host::START_TOKEN), "{log}");

    // SIGTERM stops it cleanly.
    ga.terminate();
    let exit = ga.exit_status().await;
    assert!(exit.success(), "{exit:?}\n{}", ga.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_reports_the_guest_agent_service_serving() {
    use tonic_health::pb::health_check_response::ServingStatus;
    use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

    let pki = Pki::new();
    let customer_ca = RoleCa::new();
    let host = FakeHost::start(&pki, &customer_ca.issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let _ga = GaProcess::spawn_ok(&pki, &host.url(), work.path(), &[]);
    eventually("a ROLE_RUNNING heartbeat", || async {
        host.running_endpoint()
    })
    .await;
    let hello = host.hello().unwrap();
    let mut health = HealthClient::new(
        Channel::from_shared(format!("http://{}", hello.guest_agent_endpoint))
            .unwrap()
            .connect()
            .await
            .unwrap(),
    );
    let service = "fabric.v1.GuestAgentService";
    let serving = eventually("GuestAgentService SERVING", || {
        let mut health = health.clone();
        async move {
            let response = health
                .check(HealthCheckRequest {
                    service: service.to_owned(),
                })
                .await
                .ok()?
                .into_inner();
            (response.status() == ServingStatus::Serving).then_some(response.status())
        }
    })
    .await;
    assert_eq!(serving, ServingStatus::Serving);
    drop(health.check(HealthCheckRequest::default()).await.unwrap());
}
