//! What the waagent tests ask of OpenSSL's own command line, the tool
//! WALinuxAgent itself uses: RSA certificates as Azure's are, the DER of a
//! PEM certificate, and whether a key file is a certificate's. One home
//! for the wire-server test and the waagent VM test.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs `cmd`; its stdout, or a panic with its stderr.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Whether `openssl` is installed.
pub fn installed() -> bool {
    Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// An RSA certificate and key (PKCS#8 PEM) `<dir>/<name>.pem` and
/// `.key`, self-signed for two days: WALinuxAgent pairs keys with
/// certificates through `openssl rsa`, so its roles' are RSA.
pub fn rsa_certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (cert, key) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    run(Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        ])
        .arg("-subj")
        .arg(format!("/CN={name}.fabric.test"))
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert));
    (cert, key)
}

/// The DER of the PEM certificate file `pem`.
pub fn der_of(pem: &Path) -> Vec<u8> {
    run(Command::new("openssl")
        .args(["x509", "-outform", "DER", "-in"])
        .arg(pem))
}

/// The key file `key` as PKCS#8 DER.
pub fn pkcs8_der_of(key: &Path) -> Vec<u8> {
    run(Command::new("openssl")
        .args(["pkcs8", "-topk8", "-nocrypt", "-outform", "DER", "-in"])
        .arg(key))
}

/// Whether the private key in `key` belongs to the certificate in `cert`
/// (their public keys, as openssl prints them, are the same).
pub fn key_matches(cert: &Path, key: &Path) -> bool {
    let of_cert = run(Command::new("openssl")
        .args(["x509", "-pubkey", "-noout", "-in"])
        .arg(cert));
    let of_key = run(Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(key));
    of_cert == of_key
}
