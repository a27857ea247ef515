//! The 2012 leap day, replayed with `guest-agent run --now 2012-02-29T00:00:00Z`: with the bug the
//! agent cannot create its transfer certificate and exits 1, telling the host agent why (fail
//! fast) unless it is as silent as the 2012 agent; without the bug it starts normally.

mod common;

use common::eventually;
use common::fake_host::{FakeHost, Pki, SESSION_TOKEN, START_TOKEN};
use common::ga_process::{GaProcess, INCARNATION, VM_ID};
use common::role_certs::RoleCa;
use fabric_proto::v1::GetGuestStatusRequest;
use fabric_proto::v1::guest_agent_service_client::GuestAgentServiceClient;
use time::OffsetDateTime;
use time::macros::datetime;
use tonic::transport::Channel;

const LEAP_DAY: &str = "2012-02-29T00:00:00Z";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leap_day_bug_exits_1_and_reports_the_invalid_date() {
    let pki = Pki::new();
    let host = FakeHost::start(&pki, &RoleCa::new().issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let mut ga = GaProcess::spawn_ok(
        &pki,
        &host.url(),
        work.path(),
        &["--leap-day-bug", "--now", LEAP_DAY],
    );

    let exit = ga.exit_status().await;
    assert_eq!(exit.code(), Some(1), "{}", ga.log_text());
    let calls = host.calls.lock().unwrap();
    assert!(
        calls.hellos.is_empty(),
        "no Hello without a transfer certificate"
    );
    assert_eq!(calls.failures.len(), 1, "{}", ga.log_text());
    let failure = &calls.failures[0];
    assert_eq!(failure.vm_id, VM_ID);
    assert_eq!(failure.incarnation, INCARNATION);
    assert_eq!(failure.token, START_TOKEN);
    assert_eq!(failure.stage, "transfer_certificate");
    assert_eq!(failure.error, "invalid valid-to date 2013-02-29");
    assert!(!failure.agent_version.is_empty());
    let log = ga.log_text();
    assert!(
        log.contains("failed to create transfer certificate: invalid valid-to date 2013-02-29"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_failures_exit_1_without_telling_the_host_agent() {
    let pki = Pki::new();
    let host = FakeHost::start(&pki, &RoleCa::new().issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let mut ga = GaProcess::spawn_ok(
        &pki,
        &host.url(),
        work.path(),
        &["--leap-day-bug", "--now", LEAP_DAY, "--silent-failures"],
    );

    let exit = ga.exit_status().await;
    assert_eq!(exit.code(), Some(1), "{}", ga.log_text());
    // The process has exited, so nothing more can arrive: the host agent heard nothing at all.
    let calls = host.calls.lock().unwrap();
    assert!(calls.hellos.is_empty());
    assert!(calls.heartbeats.is_empty());
    assert!(calls.failures.is_empty());
    assert!(ga.log_text().contains("invalid valid-to date 2013-02-29"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_bug_leap_day_starts_normally() {
    let pki = Pki::new();
    let host = FakeHost::start(&pki, &RoleCa::new().issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let ga = GaProcess::spawn_ok(&pki, &host.url(), work.path(), &["--now", LEAP_DAY]);

    eventually("a ROLE_RUNNING heartbeat", || async {
        host.running_endpoint()
    })
    .await;
    assert!(host.calls.lock().unwrap().failures.is_empty());

    // The transfer certificate was made "on" leap day, valid until Feb 28 2013.
    let hello = host.hello().unwrap();
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
    let at = |t: Option<prost_types::Timestamp>| {
        OffsetDateTime::from_unix_timestamp(t.unwrap().seconds).unwrap()
    };
    assert_eq!(
        at(status.transfer_cert_not_before),
        datetime!(2012-02-29 0:00 UTC)
    );
    assert_eq!(
        at(status.transfer_cert_not_after),
        datetime!(2013-02-28 0:00 UTC)
    );
    drop(ga);
}
