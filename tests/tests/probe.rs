//! `fabric-controller probe`, the container healthcheck, against a real
//! controller: SERVING exits 0; no controller there, or a certificate from
//! another cluster, exits 1 with a line naming the problem. And the
//! controller refuses to start when its dashboard address is taken.

use fabric_core::CoreConfig;
use fabric_tests::{RunningController, TestPki, bins};

async fn probe(pki_dir: &std::path::Path, listen: &str) -> (bool, String) {
    let out = tokio::process::Command::new(bins::binary(bins::CONTROLLER))
        .arg("--pki-dir")
        .arg(pki_dir)
        .args(["--listen", listen, "probe", "--timeout", "2s"])
        .output()
        .await
        .expect("run fabric-controller probe");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn probe_reports_serving_and_names_what_is_wrong() {
    let pki = TestPki::new("alpha", &[]);
    let fc = RunningController::start(&pki, CoreConfig::default()).await;
    // Probing through the wildcard address goes to loopback, as in a container.
    let wildcard = format!("0.0.0.0:{}", fc.addr.port());
    let (ok, text) = probe(&pki.layout.dir, &wildcard).await;
    assert!(ok, "{text}");
    assert!(text.contains("SERVING"), "{text}");

    // Another cluster's certificate is refused by the handshake.
    let stranger = TestPki::new("beta", &[]);
    let (ok, text) = probe(&stranger.layout.dir, &fc.addr.to_string()).await;
    assert!(!ok, "a foreign certificate passed the probe: {text}");
    assert!(text.contains(&fc.addr.port().to_string()), "{text}");

    let port = fc.addr.port();
    fc.stop().await;
    let (ok, text) = probe(&pki.layout.dir, &format!("127.0.0.1:{port}")).await;
    assert!(!ok, "a stopped controller passed the probe: {text}");
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
}

#[tokio::test]
async fn a_taken_dashboard_address_stops_the_controller_with_its_reason() {
    let pki = TestPki::new("alpha", &[]);
    let taken = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let config = fabric_controller::config::ControllerConfig {
        http_listen: Some(taken.local_addr().unwrap()),
        ..fabric_tests::controller_config(&pki, listener.local_addr().unwrap())
    };
    let text = fabric_tests::controller_start_error(config, listener).await;
    assert!(text.starts_with("dashboard: cannot listen on"), "{text}");
    assert!(
        text.contains(&taken.local_addr().unwrap().to_string()),
        "{text}"
    );
}
