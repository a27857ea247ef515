//! Azure's real Linux guest agent as a Fabric VM, as real processes:
//! `fabricctl up` with host agents that run Debian's `waagent` for a role
//! whose definition says `guest = "waagent"`, beside the example service
//! run by Fabric's own guest agent.
//!
//! The waagent role reaches Running (the agent reported Ready); the
//! certificate and key the agent itself wrote in its Lib.Dir are the
//! deployed ones (thumbprints match, the key is the certificate's); status
//! and the dashboard name the guest; a
//! killed agent trips the host's guest heartbeat timeout and the VM comes
//! back with the next incarnation, a new transfer certificate and its
//! certificate opened again; a rotation (the definition deployed again
//! with a new certificate) reaches the running agent in place. A waagent
//! role with an EC certificate is refused at deploy, naming why. Start-to-Running of both guests is
//! printed, measured in the same run.
//!
//! Needs the binaries (`cargo build --workspace --bins`), `waagent` and
//! `openssl` (scripts/test.sh installs Debian's waagent); without them the
//! test is skipped with a notice, and fails when CI=true.

use fabric_tests::cluster::LocalCluster;
use fabric_tests::openssl::{self, der_of, key_matches, rsa_certificate};
use fabric_tests::services;
use fabricctl::status::{InstanceJson, StatusJson};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The agent's own start takes about 25 s before its first status report
/// (docs/waagent.md); generous for a busy 2-core machine.
const LIMIT: Duration = Duration::from_secs(150);
const GUEST_HEARTBEAT_TIMEOUT: &str = "5s";

fn definition(dir: &Path, name: &str, cert: &Path, key: &Path) -> PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        "name = \"{name}\"\n[[roles]]\nname = \"agent\"\ninstances = 1\nguest = \"waagent\"\n\
         [[roles.certificates]]\nname = \"https\"\ncert = \"{}\"\nkey = \"{}\"\n",
        cert.display(),
        key.display()
    );
    std::fs::write(&path, text).expect("definition");
    path
}

fn instance<'a>(s: &'a StatusJson, id: &str) -> Option<&'a InstanceJson> {
    s.deployments
        .iter()
        .flat_map(|d| &d.instances)
        .find(|i| i.id == id)
}

#[test]
fn the_real_azure_guest_agent_runs_as_a_fabric_vm() {
    if fabric_wireserver::agent_dir::find_waagent().is_none() || !openssl::installed() {
        let msg = "waagent or openssl is not installed (Debian's waagent package)";
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{msg}; CI=true needs it");
        }
        eprintln!("\n!!! SKIPPED: {msg}; scripts/test.sh installs it.\n");
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = rsa_certificate(dir.path(), "agent");
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "2",
        "--guest-heartbeat-timeout",
        GUEST_HEARTBEAT_TIMEOUT,
    ]);
    cluster.wait_ready(2, LIMIT);

    // A waagent role with the example's EC certificate: refused, in words.
    let ec = definition(
        dir.path(),
        "ec",
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let out = cluster.run(&["deploy", &ec.display().to_string()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && said.contains("not RSA"), "{said}");

    // Fabric's guest and Azure's, deployed one after the other.
    let example = services::example_file("service.toml");
    let t0 = Instant::now();
    cluster.run_ok(&["deploy", &example.display().to_string()]);
    cluster.wait_for(LIMIT, "the example Running", |s| {
        services::all_running(s, "web", 3)
    });
    let fabric_guest = t0.elapsed();
    let agent_def = definition(dir.path(), "azure", &cert, &key);
    let t1 = Instant::now();
    cluster.run_ok(&["deploy", &agent_def.display().to_string()]);
    let s = cluster.wait_for(LIMIT, "the waagent VM Running", |s| {
        instance(s, "azure.agent.0").is_some_and(|i| i.state == "Running")
    });
    let waagent = t1.elapsed();
    eprintln!(
        "deploy to Running: Fabric's guest agent {:.2}s (3 VMs), WALinuxAgent {:.2}s (1 VM)",
        fabric_guest.as_secs_f64(),
        waagent.as_secs_f64()
    );

    // Status and the dashboard say which guest runs it.
    let first = instance(&s, "azure.agent.0").expect("instance").clone();
    assert_eq!(first.guest.as_deref(), Some("waagent"));
    assert!(instance(&s, "web.api.0").is_some_and(|i| i.guest.is_none()));
    let summary =
        fabric_tests::scrape::get(&cluster.dashboard_url(), "/api/summary").expect("the dashboard");
    assert!(
        summary.body.contains("\"guest\":\"waagent\""),
        "the dashboard names the guest"
    );

    // The agent opened the deployed certificate itself.
    let hosts = cluster.state_dir.join("hosts");
    let lib = |node: &str| hosts.join(node).join("vms/azure.agent.0/waagent/lib");
    let thumbprint = fabric_wireserver::thumbprint(&der_of(&cert));
    let opened = lib(&first.node).join(format!("{thumbprint}.crt"));
    let opened_key = lib(&first.node).join(format!("{thumbprint}.prv"));
    assert_eq!(fabric_wireserver::thumbprint(&der_of(&opened)), thumbprint);
    assert!(
        key_matches(&opened, &opened_key),
        "the .prv the agent wrote is the role's key"
    );
    let transfer = der_of(&lib(&first.node).join("TransportCert.pem"));

    // A rotation: the definition deployed again with a new certificate
    // reaches the running agent (same incarnation) as a new goal state.
    let rotated_dir = dir.path().join("rotated");
    std::fs::create_dir_all(&rotated_dir).expect("dir");
    let (new_cert, new_key) = rsa_certificate(&rotated_dir, "agent");
    let rotated_def = definition(&rotated_dir, "azure", &new_cert, &new_key);
    let rotated_at = Instant::now();
    cluster.run_ok(&["deploy", &rotated_def.display().to_string()]);
    let new_thumbprint = fabric_wireserver::thumbprint(&der_of(&new_cert));
    let new_opened = lib(&first.node).join(format!("{new_thumbprint}.crt"));
    fabric_tests::cluster::poll_until(
        LIMIT,
        Duration::from_millis(200),
        "the rotated certificate opened by the agent",
        || new_opened.is_file().then_some(()),
    );
    assert_eq!(
        fabric_wireserver::thumbprint(&der_of(&new_opened)),
        new_thumbprint
    );
    let s = cluster.status().expect("status");
    let after = instance(&s, "azure.agent.0").expect("instance");
    assert_eq!(
        (after.incarnation, after.pid),
        (first.incarnation, first.pid),
        "rotated in place"
    );
    eprintln!(
        "rotation reached waagent in {:.2}s",
        rotated_at.elapsed().as_secs_f64()
    );

    // The agent killed: no more heartbeats, the guest timeout, the next
    // incarnation with a new transfer certificate.
    assert!(first.pid > 0, "the agent's pid is reported");
    nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(first.pid as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the agent");
    let killed = Instant::now();
    let s = cluster.wait_for(LIMIT, "the waagent VM back, next incarnation", |s| {
        instance(s, "azure.agent.0")
            .is_some_and(|i| i.state == "Running" && i.incarnation > first.incarnation)
    });
    let back = instance(&s, "azure.agent.0").expect("instance");
    eprintln!(
        "waagent killed: Running again as incarnation {} after {:.2}s",
        back.incarnation,
        killed.elapsed().as_secs_f64()
    );
    let lib_now = lib(&back.node);
    assert!(lib_now.join(format!("{new_thumbprint}.crt")).is_file());
    assert_ne!(
        der_of(&lib_now.join("TransportCert.pem")),
        transfer,
        "a new incarnation makes a new transfer certificate"
    );
    cluster.terminate(Duration::from_secs(30));
}
