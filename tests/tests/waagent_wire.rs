//! Azure's real Linux guest agent (Debian's `waagent`, WALinuxAgent)
//! against Fabric's wire server, as real processes: it makes its transfer
//! certificate, fetches its goal state, opens the role's certificate sealed
//! to it, and reports Ready; a new incarnation with a new certificate (a
//! rotation) reaches it; the wire server refuses another VM's documents, a
//! stale incarnation, a request without the transfer certificate and an
//! oversized body, each in words.
//!
//! Needs `waagent` and `openssl` (Debian's waagent package depends on
//! openssl; scripts/test.sh installs it). Without them the test is skipped
//! with a notice, and fails when CI=true.
//!
//! `waagent_vm.rs` runs the same agent as a VM of a whole cluster.

use fabric_tests::openssl::{self, der_of, key_matches};
use fabric_wireserver::agent_dir::{self, AgentDir};
use fabric_wireserver::server::{Observed, StaticCertificates, WireServer};
use fabric_wireserver::{GoalState, RoleCertificate, thumbprint};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agent's goal-state loop polls every few seconds; generous for a
/// busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(120);

/// A role certificate for the wire server, made by openssl (RSA, as
/// Azure's).
fn rsa_role_certificate(dir: &Path, name: &str) -> RoleCertificate {
    let (cert, key) = openssl::rsa_certificate(dir, name);
    RoleCertificate {
        cert_der: der_of(&cert),
        key_pkcs8_der: openssl::pkcs8_der_of(&key),
    }
}

fn goal(incarnation: u64, container: &str) -> GoalState {
    GoalState {
        incarnation,
        container_id: container.into(),
        deployment: "web".into(),
        role: "frontend".into(),
        instance_id: "web.frontend.0".into(),
        has_certificates: true,
    }
}

async fn wait_for<T>(
    rx: &mut tokio::sync::watch::Receiver<Observed>,
    what: &str,
    mut check: impl FnMut(&Observed) -> Option<T>,
    log: &Path,
) -> T {
    let deadline = tokio::time::Instant::now() + LIMIT;
    loop {
        if let Some(v) = check(&rx.borrow_and_update()) {
            return v;
        }
        if tokio::time::timeout_at(deadline, rx.changed())
            .await
            .is_err()
        {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let problems: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("WARNING") || l.contains("ERROR"))
                .take(20)
                .collect();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            panic!(
                "timed out waiting for {what}; observed {:?}\nwaagent warnings and errors:\n{}\nlast lines, newest first:\n{}",
                *rx.borrow(),
                problems.join("\n"),
                tail.join("\n")
            );
        }
    }
}

/// A plain HTTP request to the wire server; (status, body).
async fn request(
    endpoint: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Vec<u8>,
) -> (u16, String) {
    let stream = tokio::net::TcpStream::connect(endpoint)
        .await
        .expect("connect");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .expect("handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", endpoint);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).expect("request"))
        .await
        .expect("response");
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_real_azure_guest_agent_opens_its_certificates_and_reports_ready() {
    let (Some(waagent), true) = (agent_dir::find_waagent(), openssl::installed()) else {
        let msg = "waagent or openssl is not installed (Debian's waagent package)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; CI=true needs it");
        }
        eprintln!("\n!!! SKIPPED: {msg}; scripts/test.sh installs it.\n");
        return;
    };
    if std::env::var("FABRIC_WIRE_TRACE").is_ok_and(|v| v == "1") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("fabric_wireserver=debug")
            .with_writer(std::io::stderr)
            .try_init();
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let first = rsa_role_certificate(dir.path(), "web");
    let source = Arc::new(StaticCertificates::new(vec![first.clone()]));
    let server = WireServer::start(
        "127.0.0.1:0".parse().unwrap(),
        goal(1, "c-0"),
        source.clone(),
    )
    .await
    .expect("wire server");
    let endpoint = server.endpoint();
    let agent = AgentDir::prepare(&dir.path().join("vm"), &endpoint).expect("agent dir");
    let log = dir.path().join("waagent.log");
    let output = std::fs::File::create(&log).expect("log");
    let started = Instant::now();
    let (program, args) = agent.command(&waagent).expect("the agent's interpreter");
    let mut child = tokio::process::Command::new(program)
        .args(args)
        .stdout(output.try_clone().expect("log"))
        .stderr(output)
        .kill_on_drop(true)
        .spawn()
        .expect("spawn waagent");
    let mut rx = server.observe();

    // 1. The transfer certificate first, then the role's certificate,
    //    opened where only the agent can read it; then Ready.
    let (crt, prv) = agent.opened(&first.thumbprint());
    let ready = wait_for(
        &mut rx,
        "the agent Ready with the role's certificate opened",
        |o| (o.ready() && crt.exists() && prv.exists()).then(|| started.elapsed()),
        &log,
    )
    .await;
    let o = rx.borrow().clone();
    let transfer = thumbprint(&der_of(&agent.lib_dir.join("TransportCert.pem")));
    assert_eq!(
        o.transfer_certificate.as_deref(),
        Some(transfer.as_str()),
        "the certificates were sealed to the transfer certificate the agent made"
    );
    assert_eq!(o.certificates_incarnation, Some(1));
    assert_eq!(thumbprint(&der_of(&crt)), first.thumbprint());
    assert!(
        key_matches(&crt, &prv),
        "the .prv the agent wrote is the role's key"
    );
    let status = o.agent_status.clone().expect("a status blob");
    eprintln!(
        "waagent {} Ready {:.2}s after start ({} goal-state polls), transfer certificate {transfer}",
        status.version,
        ready.as_secs_f64(),
        o.goal_state_polls
    );

    // 2. Rotation: a new incarnation carrying a new certificate.
    let second = rsa_role_certificate(dir.path(), "web2");
    source.set(vec![second.clone()]);
    server.set_goal_state(goal(2, "c-0"));
    let rotated = Instant::now();
    let (crt2, prv2) = agent.opened(&second.thumbprint());
    wait_for(
        &mut rx,
        "the rotated certificate opened",
        |o| (o.certificates_incarnation == Some(2) && crt2.exists() && prv2.exists()).then_some(()),
        &log,
    )
    .await;
    eprintln!(
        "rotation reached the agent in {:.2}s",
        rotated.elapsed().as_secs_f64()
    );

    // 3. Refusals, each with a reason.
    let version = ("x-ms-version", "2012-11-30");
    let other = WireServer::start(
        "127.0.0.1:0".parse().unwrap(),
        goal(1, "c-1"),
        Arc::new(StaticCertificates::new(vec![first])),
    )
    .await
    .expect("a second VM's wire server");
    let (code, why) = request(
        &other.endpoint(),
        "GET",
        "/machine/c-0/web.frontend.0?comp=certificates&incarnation=2",
        &[version, ("x-ms-guest-agent-public-x509-cert", "AAAA")],
        vec![],
    )
    .await;
    assert_eq!(code, 403, "another VM's certificates: {why}");
    assert!(why.contains("not this VM's"), "{why}");
    let (code, why) = request(
        &endpoint,
        "GET",
        "/machine/c-0/web.frontend.0?comp=config&type=sharedConfig&incarnation=1",
        &[version],
        vec![],
    )
    .await;
    assert_eq!(code, 410, "a stale incarnation: {why}");
    let (code, why) = request(
        &endpoint,
        "GET",
        "/machine/c-0/web.frontend.0?comp=certificates&incarnation=2",
        &[version],
        vec![],
    )
    .await;
    assert_eq!(code, 400, "no transfer certificate: {why}");
    assert!(why.contains("transfer certificate"), "{why}");
    let (code, why) = request(&endpoint, "GET", "/machine/?comp=goalstate", &[], vec![]).await;
    assert_eq!(code, 400, "no protocol version: {why}");
    let (code, _) = request(
        &endpoint,
        "PUT",
        "/machine/c-0/status",
        &[],
        vec![b'x'; fabric_wireserver::server::BODY_LIMIT + 1],
    )
    .await;
    assert_eq!(code, 413, "an oversized status blob");
    // The agent's own server still answers after all that.
    let (code, _) = request(
        &endpoint,
        "GET",
        "/machine/?comp=goalstate",
        &[version],
        vec![],
    )
    .await;
    assert_eq!(code, 200);

    // 4. The agent killed: its polls stop (what the host's guest timeout
    //    will see).
    child.kill().await.expect("kill waagent");
    let polls = rx.borrow().goal_state_polls;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        rx.borrow().goal_state_polls,
        polls,
        "a killed agent polls no more"
    );
}
