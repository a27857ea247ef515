//! VMs as real processes: `fabricctl up` with host agents that run a
//! guest-agent process per role instance.
//!
//! - The example service comes up; every endpoint serves exactly the
//!   deployed certificate over TLS and says who it is; a redeploy with
//!   another certificate rotates it in place (same process, same port); a
//!   SIGKILLed guest agent is noticed by heartbeat timeout and its VM comes
//!   back as the next incarnation with a new transfer certificate. Secrets
//!   are on the VM's disk with mode 0600 and in no log.
//! - The leap day: guest agents that believe it is 2012-02-29 cannot make
//!   their transfer certificate; after the clean-VM strikes the host agent
//!   reports its server faulty, with the reason it could know (a timeout
//!   when guests fail silently, the guest's error when they fail fast). The
//!   leap-safe guest agent runs on the same day.
//!
//! Needs the binaries: `cargo build --workspace --bins` before `cargo test`.

use fabric_tests::cluster::LocalCluster;
use fabric_tests::https::{assert_identity, cert_der, fetch, runtime};
use fabric_tests::services::{self, all_running, instances};
use fabricctl::status::{InstanceJson, StatusJson};
use nix::sys::signal::Signal;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

const WEB: &str = "web";
/// examples/web/service.toml: frontend x2, api x1.
const WEB_INSTANCES: usize = 3;
const NODE_HEARTBEAT: Duration = Duration::from_millis(300);
const GUEST_HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(4);
/// What host agents ask of guest agents (host-agent's
/// `--guest-heartbeat-interval` default; `fabricctl up` does not change it).
const GUEST_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
/// For a whole deployment to come up (or a rotation to land) on a busy
/// 2-core machine running debug binaries.
const COME_UP: Duration = Duration::from_secs(60);

/// The clusters of this file run one at a time: several at once on 2 cores
/// would make their short guest timeouts fire for the wrong reason.
static CLUSTERS: Mutex<()> = Mutex::new(());

fn one_cluster_at_a_time() -> MutexGuard<'static, ()> {
    CLUSTERS.lock().unwrap_or_else(PoisonError::into_inner)
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

fn path_arg(p: &Path) -> String {
    p.to_str().expect("UTF-8 path").to_owned()
}

fn instance<'a>(status: &'a StatusJson, id: &str) -> &'a InstanceJson {
    instances(status, WEB)
        .iter()
        .find(|i| i.id == id)
        .unwrap_or_else(|| panic!("no instance {id} in {status:#?}"))
}

/// Every regular file under `dir`, recursively (none if it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.is_file() {
            out.push(path);
        }
    }
    out
}

/// The base64 lines of a PEM file's body (what must never reach a log).
fn pem_body_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("-----"))
        .map(str::to_owned)
        .collect()
}

/// Three hosts running the example service, every instance Running.
fn web_cluster() -> (LocalCluster, StatusJson) {
    let mut cluster = LocalCluster::start(&[
        "--hosts",
        "3",
        "--heartbeat-interval",
        &ms(NODE_HEARTBEAT),
        "--node-timeout",
        "3s",
        "--guest-timeout",
        "20s",
        "--guest-heartbeat-timeout",
        &ms(GUEST_HEARTBEAT_TIMEOUT),
        "--deploy",
        &path_arg(&services::example_file("service.toml")),
    ]);
    let up = cluster.wait_for(COME_UP, "every web instance Running", |s| {
        all_running(s, WEB, WEB_INSTANCES)
    });
    (cluster, up)
}

#[test]
fn web_serves_its_certificate_rotates_in_place_and_a_killed_guest_comes_back() {
    let _one = one_cluster_at_a_time();
    let web_pem = services::example_file("certs/web.pem");
    let rotated_pem = services::example_file("certs/web-rotated.pem");
    let web_der = cert_der(&web_pem);
    let rotated_der = cert_der(&rotated_pem);
    assert_ne!(web_der, rotated_der);
    let rt = runtime();

    let (mut cluster, up) = web_cluster();
    let before: Vec<InstanceJson> = instances(&up, WEB).to_vec();
    let roles: Vec<(&str, u32)> = before.iter().map(|i| (i.role.as_str(), i.index)).collect();
    assert_eq!(roles, [("api", 0), ("frontend", 0), ("frontend", 1)]);
    // Placed across servers: three hosts, three fault domains.
    let mut nodes: Vec<&str> = before.iter().map(|i| i.node.as_str()).collect();
    nodes.sort_unstable();
    nodes.dedup();
    assert_eq!(nodes.len(), 3, "{before:#?}");

    // 1. Each endpoint serves exactly web.pem and says who it is.
    for i in &before {
        let served = fetch(&rt, &i.endpoint, &web_der)
            .unwrap_or_else(|e| panic!("{} at {}: {e}", i.id, i.endpoint));
        assert!(
            served.leaf_der == web_der,
            "{} serves another certificate",
            i.id
        );
        assert_identity(&served, WEB, i);
        assert!(
            fabric_tests::procs::alive(i.pid),
            "{} pid {} not alive",
            i.id,
            i.pid
        );
        let cmd = fabric_tests::procs::cmdline(i.pid).unwrap_or_default();
        assert!(
            cmd.contains("guest-agent") && cmd.contains(&i.id),
            "pid {} of {} is {cmd:?}",
            i.pid,
            i.id
        );
    }

    // 2. Rotation: same roles and counts, another certificate.
    let out = cluster.run(&[
        "deploy",
        &path_arg(&services::example_file("service-rotated.toml")),
    ]);
    assert!(out.status.success(), "fabricctl deploy: {out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.starts_with("rotated certificates of web"), "{said}");
    for i in &before {
        // A fetch trusting only the rotated certificate fails until the
        // endpoint serves it.
        let mut last = String::new();
        let served = fabric_tests::cluster::poll_until(
            COME_UP,
            Duration::from_millis(100),
            &format!("{} at {} to serve web-rotated.pem", i.id, i.endpoint),
            || match fetch(&rt, &i.endpoint, &rotated_der) {
                Ok(s) => Some(s),
                Err(e) => {
                    last = e;
                    None
                }
            },
        );
        assert!(served.leaf_der == rotated_der, "{}: {last}", i.id);
        // Same process, same incarnation: no restart.
        assert_identity(&served, WEB, i);
        assert!(
            fabric_tests::procs::alive(i.pid),
            "{} pid {} gone",
            i.id,
            i.pid
        );
        // The old certificate is no longer served.
        assert!(
            fetch(&rt, &i.endpoint, &web_der).is_err(),
            "{} still serves web.pem",
            i.id
        );
    }
    let rotated = cluster.status().expect("status after rotation");
    for i in &before {
        let now = instance(&rotated, &i.id);
        assert_eq!(
            (
                &now.endpoint,
                now.pid,
                now.incarnation,
                &now.transfer_cert_fingerprint,
                &now.state
            ),
            (
                &i.endpoint,
                i.pid,
                i.incarnation,
                &i.transfer_cert_fingerprint,
                &"Running".to_owned()
            ),
            "{} changed across the rotation",
            i.id
        );
    }

    // The secret on the VM's disk: 0600, and it is the rotated certificate.
    let victim = before
        .iter()
        .find(|i| i.role == "api")
        .expect("an api instance")
        .clone();
    let secrets_dir = cluster
        .state_dir
        .join("hosts")
        .join(&victim.node)
        .join("vms")
        .join(&victim.id)
        .join("secrets");
    let secrets: Vec<PathBuf> = files_under(&secrets_dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "pem"))
        .collect();
    assert!(
        !secrets.is_empty(),
        "no secrets/*.pem in {}",
        secrets_dir.display()
    );
    for secret in &secrets {
        let mode = std::fs::metadata(secret).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{} has mode {mode:o}", secret.display());
    }
    let first = CertificateDer::pem_file_iter(&secrets[0])
        .unwrap()
        .next()
        .expect("a certificate in the secret file")
        .unwrap();
    assert!(
        first.as_ref() == rotated_der,
        "{} holds another certificate",
        secrets[0].display()
    );

    // 3. SIGKILL one guest agent. The HA only learns from the silence.
    assert!(
        fabric_tests::procs::signal(victim.pid, Signal::SIGKILL),
        "{} (pid {}) is not running",
        victim.id,
        victim.pid
    );
    let killed = Instant::now();
    let back = cluster.wait_for(COME_UP, &format!("{} Running again", victim.id), |s| {
        instances(s, WEB).iter().any(|i| {
            i.id == victim.id
                && i.state == "Running"
                && i.incarnation == victim.incarnation + 1
                && i.pid != victim.pid
                && i.pid != 0
                && !i.endpoint.is_empty()
        })
    });
    let took = killed.elapsed();
    // The HA's deadline is the last guest heartbeat (before the kill) plus
    // the heartbeat timeout. After it: respawn, transfer certificate and
    // Hello (about a second on a busy machine), then the role is reported
    // Running by the guest's next heartbeat, one guest heartbeat interval
    // later, then by the host's next heartbeat to the controller, then seen
    // by our polling. Slack: one guest heartbeat interval + 3 s for the
    // rest.
    let slack = GUEST_HEARTBEAT_INTERVAL + Duration::from_secs(3);
    // Not by the process's exit: that is no signal for the HA, so nothing
    // can happen before a timeout minus one heartbeat interval has passed.
    let earliest = GUEST_HEARTBEAT_TIMEOUT.saturating_sub(GUEST_HEARTBEAT_INTERVAL);
    eprintln!(
        "{} back as incarnation {} {took:?} after SIGKILL (allowed {earliest:?}..={:?})",
        victim.id,
        victim.incarnation + 1,
        GUEST_HEARTBEAT_TIMEOUT + slack
    );
    assert!(
        took <= GUEST_HEARTBEAT_TIMEOUT + slack,
        "came back only after {took:?}"
    );
    assert!(
        took >= earliest,
        "came back after {took:?}, before any timeout"
    );
    let new = instance(&back, &victim.id);
    assert_ne!(
        new.transfer_cert_fingerprint,
        victim.transfer_cert_fingerprint
    );
    assert!(!new.transfer_cert_fingerprint.is_empty());
    assert_eq!(
        new.node, victim.node,
        "a reinitialized VM stays on its server"
    );
    let served = fetch(&rt, &new.endpoint, &rotated_der).unwrap_or_else(|e| panic!("{e}"));
    assert!(served.leaf_der == rotated_der);
    assert_identity(&served, WEB, new);
    // The others were not touched.
    for i in before.iter().filter(|i| i.id != victim.id) {
        let now = instance(&back, &i.id);
        assert_eq!(
            (now.pid, now.incarnation),
            (i.pid, i.incarnation),
            "{}",
            i.id
        );
    }

    // 4. No private key in any log: the daemons', the guests', the launcher's.
    let mut logs = files_under(&cluster.state_dir.join("logs"));
    for host in files_under(&cluster.state_dir.join("hosts")) {
        if host.components().any(|c| c.as_os_str() == "vm-logs") {
            logs.push(host);
        }
    }
    logs.push(cluster.launcher_log.clone());
    assert!(
        logs.iter().any(|l| l.to_string_lossy().contains("vm-logs")),
        "no guest-agent logs found: {logs:?}"
    );
    let mut key_lines = pem_body_lines(&services::example_file("certs/web.key"));
    key_lines.extend(pem_body_lines(&services::example_file(
        "certs/web-rotated.key",
    )));
    for log in &logs {
        let text = String::from_utf8_lossy(&std::fs::read(log).unwrap()).into_owned();
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} mentions a PRIVATE KEY",
            log.display()
        );
        for line in &key_lines {
            assert!(
                !text.contains(line.as_str()),
                "{} holds private key material",
                log.display()
            );
        }
    }
}

/// `fabricctl up` for the leap-day replays: `hosts` servers, guests whose
/// calendar starts on 2012-02-29, one instance of `leap` deployed.
fn leap_day_cluster(extra: &[&str]) -> (LocalCluster, tempfile::TempDir) {
    let defs = tempfile::tempdir().expect("tempdir");
    let definition = services::write_definition(
        defs.path(),
        "leap",
        &[("worker", 1)],
        &services::example_file("certs/web.pem"),
        &services::example_file("certs/web.key"),
    );
    let mut args = vec![
        "--hosts",
        "2",
        "--heartbeat-interval",
        "300ms",
        "--guest-now",
        "2012-02-29T00:00:00Z",
        "--clean-vm-strikes",
        "3",
    ];
    args.extend_from_slice(extra);
    let definition = path_arg(&definition);
    args.extend(["--deploy", definition.as_str()]);
    (LocalCluster::start(&args), defs)
}

/// Waits for a server to report a fault and returns it with its report,
/// after checking that `leap.worker.0` was placed on it and that the
/// controller logged the report as an event.
fn wait_for_fault_report(cluster: &mut LocalCluster) -> (String, String) {
    // Where the worker was seen placed (the controller may move it once
    // its server is reported faulty).
    let mut placed_on = BTreeSet::new();
    let status = cluster.wait_for(COME_UP, "a fault report", |s| {
        placed_on.extend(
            instances(s, "leap")
                .iter()
                .filter(|i| !i.node.is_empty())
                .map(|i| i.node.clone()),
        );
        s.nodes.iter().any(|n| n.last_fault_report.is_some())
    });
    let (node_id, report) = status
        .nodes
        .iter()
        .find_map(|n| Some((n.id.clone(), n.last_fault_report.clone()?)))
        .unwrap();
    assert!(
        placed_on.contains(&node_id),
        "{node_id} reported a fault but the worker was placed on {placed_on:?}"
    );
    assert!(
        !instances(&status, "leap")
            .iter()
            .any(|i| i.node == node_id && i.state == "Running"),
        "{status:#?}"
    );
    let events = cluster.events().expect("events");
    let reported: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "node.fault_reported" && e.node == node_id)
        .collect();
    assert!(
        !reported.is_empty(),
        "no node.fault_reported for {node_id}: {events:#?}"
    );
    (node_id, report)
}

#[test]
fn leap_day_silent_guests_are_reported_as_never_connected() {
    let _one = one_cluster_at_a_time();
    let (mut cluster, _defs) = leap_day_cluster(&[
        "--leap-day-bug",
        "--guest-timeout",
        "2s",
        "--silent-guest-failures",
    ]);
    let (node_id, report) = wait_for_fault_report(&mut cluster);
    eprintln!("{node_id}: {report}");
    // Silent failures: the host agent only ever saw its timeouts.
    assert!(report.contains("never connected"), "{report}");
    assert!(!report.contains("2013-02-29"), "{report}");
}

#[test]
fn leap_day_failing_fast_reports_the_guests_error() {
    let _one = one_cluster_at_a_time();
    let (mut cluster, _defs) = leap_day_cluster(&["--leap-day-bug", "--guest-timeout", "2s"]);
    let (node_id, report) = wait_for_fault_report(&mut cluster);
    eprintln!("{node_id}: {report}");
    assert!(report.contains("transfer certificate"), "{report}");
    assert!(report.contains("2013-02-29"), "{report}");
}

#[test]
fn leap_safe_guests_run_on_the_leap_day() {
    let _one = one_cluster_at_a_time();
    let (mut cluster, _defs) = leap_day_cluster(&["--guest-timeout", "20s"]);
    let status = cluster.wait_for(COME_UP, "leap.worker.0 Running", |s| {
        all_running(s, "leap", 1)
    });
    let worker = &instances(&status, "leap")[0];
    assert_eq!(worker.incarnation, 1, "{worker:?}");
    for n in &status.nodes {
        assert_eq!(n.last_fault_report, None, "{}", n.id);
    }
    let rt = runtime();
    let web_der = cert_der(&services::example_file("certs/web.pem"));
    let served = fetch(&rt, &worker.endpoint, &web_der).unwrap_or_else(|e| panic!("{e}"));
    assert!(served.leaf_der == web_der);
    assert_eq!(served.body["vm_id"], "leap.worker.0");
}

fn make_transfer_cert(out: &Path, extra: &[&str]) -> std::process::Output {
    Command::new(fabric_tests::bins::binary(fabric_tests::bins::GUEST_AGENT))
        .args([
            "make-transfer-cert",
            "--now",
            "2012-02-29T10:00:00Z",
            "--out",
        ])
        .arg(out)
        .args(extra)
        .output()
        .expect("run guest-agent make-transfer-cert")
}

#[test]
fn make_transfer_cert_on_the_leap_day() {
    let dir = tempfile::tempdir().unwrap();
    let out = make_transfer_cert(dir.path(), &[]);
    assert!(out.status.success(), "{out:?}");
    let pem = std::fs::read(dir.path().join("transfer.pem")).unwrap();
    let (_, pem) = x509_parser::pem::parse_x509_pem(&pem).expect("PEM");
    let cert = pem.parse_x509().expect("X.509");
    let validity = cert.validity();
    let from = validity.not_before.to_datetime();
    let to = validity.not_after.to_datetime();
    let midnight = |year, month, day| {
        time::Date::from_calendar_date(year, month, day)
            .unwrap()
            .midnight()
            .assume_utc()
    };
    assert_eq!(from, midnight(2012, time::Month::February, 29));
    // Clamped to the month's length: one calendar year, never 2013-02-29.
    assert_eq!(to, midnight(2013, time::Month::February, 28));
    let key = dir.path().join("transfer.key");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let buggy = tempfile::tempdir().unwrap();
    let out = make_transfer_cert(buggy.path(), &["--leap-day-bug"]);
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("2013-02-29"), "{stderr}");
    assert!(!buggy.path().join("transfer.key").exists());
}

/// A service deleted and deployed again is a new service: its instances
/// start at incarnation 1, and no host agent claims to have reinitialized
/// them (the host agents forget a VM that is no longer theirs).
#[test]
fn a_deleted_service_deployed_again_starts_at_incarnation_one() {
    let _one = one_cluster_at_a_time();
    let definition = services::example_file("service.toml");
    let (mut cluster, up) = web_cluster();
    let old_pids: Vec<u32> = instances(&up, WEB).iter().map(|i| i.pid).collect();
    cluster.run_ok(&["delete", WEB]);
    fabric_tests::cluster::poll_until(
        COME_UP,
        fabric_tests::cluster::POLL,
        "the deleted service's guest agents gone",
        || {
            old_pids
                .iter()
                .all(|&pid| !fabric_tests::procs::alive(pid))
                .then_some(())
        },
    );
    cluster.run_ok(&["deploy", &path_arg(&definition)]);
    let again = cluster.wait_for(COME_UP, "every web instance Running again", |s| {
        all_running(s, WEB, WEB_INSTANCES)
    });
    for i in instances(&again, WEB) {
        assert_eq!(i.incarnation, 1, "{i:#?}");
    }
    let events = cluster.events().expect("events");
    let reinitialized: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "instance.reinitialized")
        .collect();
    assert!(reinitialized.is_empty(), "{reinitialized:#?}");
}
