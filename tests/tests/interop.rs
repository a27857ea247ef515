//! Interoperability with an independent gRPC implementation: Python's
//! grpcio (C core) calls the controller's health and reflection services
//! over mutual TLS (tests/interop/health_check.py).
//!
//! Needs `pip install -r tests/interop/requirements.txt`. Without those
//! packages the test is skipped with a notice, except under CI=true, where
//! it fails.

use fabric_core::CoreConfig;
use fabric_pki::tls::TlsFiles;
use fabric_tests::{RunningController, TestPki};
use std::path::PathBuf;
use std::time::Duration;
use tokio::process::Command;

const PIP_HINT: &str = "pip install grpcio grpcio-health-checking grpcio-reflection \
                        (or pip install -r tests/interop/requirements.txt)";

fn script() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/health_check.py")
}

/// Whether python3 with grpcio, health checking and reflection is here.
/// Under CI=true their absence is a failure; otherwise a loud skip.
async fn python_ready() -> bool {
    let probe = Command::new("python3")
        .args(["-c", "import grpc, grpc_health.v1, grpc_reflection.v1alpha"])
        .output()
        .await;
    let why = match probe {
        Ok(out) if out.status.success() => return true,
        Ok(out) => String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        Err(e) => format!("cannot run python3: {e}"),
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the Python interop test needs grpcio: {PIP_HINT}\n{why}");
    }
    eprintln!(
        "\n************************************************************\n\
         SKIPPED interop test: Python grpcio is not available.\n\
         {PIP_HINT}\n{why}\n\
         ************************************************************\n"
    );
    false
}

/// Runs health_check.py against `fc`; returns (exit code, output).
async fn run_script(fc: &RunningController, tls: &TlsFiles, expect: &str) -> (Option<i32>, String) {
    let mut cmd = Command::new("python3");
    cmd.arg(script())
        .arg("--endpoint")
        .arg(fc.addr.to_string())
        .arg("--ca")
        .arg(&tls.ca)
        .arg("--cert")
        .arg(&tls.cert)
        .arg("--key")
        .arg(&tls.key)
        .args(["--server-name", "localhost", "--expect", expect])
        .kill_on_drop(true);
    // Async, so the in-process server keeps running while Python waits.
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("health_check.py did not finish within 60s")
        .expect("run health_check.py");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_grpcio_health_and_reflection_over_mtls() {
    if !python_ready().await {
        return;
    }
    let pki = TestPki::new("local", &[]);
    let fc = RunningController::start(&pki, CoreConfig::default()).await;
    let admin = pki.admin();

    let (code, out) = run_script(&fc, &admin, "serving").await;
    eprintln!("--- health_check.py --expect serving\n{out}");
    assert_eq!(
        code,
        Some(0),
        "expected SERVING and OperatorService listed:\n{out}"
    );
    assert!(out.contains("-> SERVING"), "{out}");
    assert!(out.contains("fabric.v1.OperatorService"), "{out}");
    // Only what the controller serves: the host agent's and guest agents'
    // services are answered elsewhere.
    for elsewhere in [
        "fabric.v1.HostService",
        "fabric.v1.GuestService",
        "fabric.v1.GuestAgentService",
    ] {
        assert!(!out.contains(elsewhere), "{elsewhere} listed:\n{out}");
    }

    // The script presents a self-signed certificate it makes itself (it
    // still verifies the server with the cluster CA).
    let (code, out) = run_script(&fc, &admin, "refused").await;
    eprintln!("--- health_check.py --expect refused\n{out}");
    assert_eq!(
        code,
        Some(0),
        "expected the self-signed certificate to be refused:\n{out}"
    );
    assert!(out.contains("UNAVAILABLE"), "{out}");

    fc.stop().await;
}
