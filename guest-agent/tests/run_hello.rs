//! Hello's two outcomes besides success: an unreachable host agent is retried until it answers;
//! a refusal (wrong start token) ends the agent with exit 1 after reporting it.

mod common;

use common::eventually;
use common::fake_host::{FakeHost, Pki};
use common::ga_process::GaProcess;
use common::role_certs::RoleCa;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_is_retried_until_the_host_agent_listens() {
    let pki = Pki::new();
    // Reserve a port, then free it: the host agent is "not up yet" there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let work = tempfile::tempdir().unwrap();
    let ga = GaProcess::spawn_ok(&pki, &format!("https://{addr}"), work.path(), &[]);
    ga.wait_for_log("retrying Hello").await;

    let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
    let host = FakeHost::start_on(&pki, &RoleCa::new().issue("web").bundle_pem, listener);
    eventually("a ROLE_RUNNING heartbeat", || async {
        host.running_endpoint()
    })
    .await;
    assert_eq!(host.calls.lock().unwrap().hellos.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_hello_is_reported_and_ends_the_agent() {
    let pki = Pki::new();
    let host = FakeHost::start(&pki, &RoleCa::new().issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    let mut ga = GaProcess::spawn(&pki, &host.url(), work.path(), "a-stolen-token", &[]);

    let exit = ga.exit_status().await;
    assert_eq!(exit.code(), Some(1), "{}", ga.log_text());
    let calls = host.calls.lock().unwrap();
    assert_eq!(calls.hellos.len(), 1, "a refusal is not retried");
    assert_eq!(calls.failures.len(), 1);
    assert_eq!(calls.failures[0].stage, "hello");
    assert!(
        calls.failures[0].error.contains("PermissionDenied"),
        "{}",
        calls.failures[0].error
    );
    assert!(!ga.log_text().contains("a-stolen-token"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_agent_with_the_wrong_name_is_not_trusted() {
    let pki = Pki::new();
    let host = FakeHost::start(&pki, &RoleCa::new().issue("web").bundle_pem).await;
    let work = tempfile::tempdir().unwrap();
    // Without the flag the name is "localhost", which the host certificate carries.
    let ga = GaProcess::spawn_ok(
        &pki,
        &host.url(),
        work.path(),
        &["--host-agent-name", "not-the-host.example"],
    );
    // A TLS failure looks like an unreachable host agent: retried, never a Hello that lands.
    ga.wait_for_log("retrying Hello").await;
    assert!(host.calls.lock().unwrap().hellos.is_empty());
}
