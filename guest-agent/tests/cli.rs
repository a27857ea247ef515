//! The `guest-agent make-transfer-cert` command as an operator (or the host agent) runs it: files,
//! permissions and output on a normal day; a non-zero exit and no files on leap day with the bug.

use std::path::Path;
use std::process::{Command, Output};

fn guest_agent(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_guest-agent"))
        .args(args)
        .output()
        .expect("run guest-agent")
}

fn make_transfer_cert(out: &Path, now: &str, extra: &[&str]) -> Output {
    let out = out.to_str().unwrap();
    let mut args = vec!["make-transfer-cert", "--now", now, "--out", out];
    args.extend_from_slice(extra);
    guest_agent(&args)
}

#[test]
fn writes_certificate_and_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tc");
    let output = make_transfer_cert(
        &out,
        "2012-02-29T00:00:00Z",
        &["--vm-id", "vm-3", "--incarnation", "2"],
    );
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("not before: 2012-02-29T00:00:00Z"),
        "{stdout}"
    );
    assert!(
        stdout.contains("not after: 2013-02-28T00:00:00Z"),
        "{stdout}"
    );
    assert!(stdout.contains("fingerprint (sha256): "), "{stdout}");
    assert!(!stdout.contains("PRIVATE KEY"), "{stdout}");

    let cert = std::fs::read_to_string(out.join("transfer.pem")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    let key = std::fs::read_to_string(out.join("transfer.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(out.join("transfer.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn leap_day_bug_terminates_the_agent() {
    let dir = tempfile::tempdir().unwrap();
    let output = make_transfer_cert(dir.path(), "2012-02-29T00:00:00Z", &["--leap-day-bug"]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("invalid valid-to date 2013-02-29"),
        "{stderr}"
    );
    assert!(!dir.path().join("transfer.pem").exists());
    assert!(!dir.path().join("transfer.key").exists());
}

#[test]
fn leap_day_bug_is_harmless_on_other_days() {
    let dir = tempfile::tempdir().unwrap();
    let output = make_transfer_cert(dir.path(), "2012-02-28T23:59:59Z", &["--leap-day-bug"]);
    assert!(output.status.success(), "{output:?}");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        stdout.contains("not after: 2013-02-28T00:00:00Z"),
        "{stdout}"
    );
}

#[test]
fn rejects_a_time_that_is_not_rfc3339() {
    let dir = tempfile::tempdir().unwrap();
    let output = make_transfer_cert(dir.path(), "29/02/2012", &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("RFC 3339"), "{stderr}");
}

#[test]
fn defaults_to_the_current_time() {
    let dir = tempfile::tempdir().unwrap();
    let output = guest_agent(&["make-transfer-cert", "--out", dir.path().to_str().unwrap()]);
    assert!(output.status.success(), "{output:?}");
    assert!(dir.path().join("transfer.key").exists());
}
