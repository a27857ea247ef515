//! End-to-end checks of sealing to a transfer certificate: what the host agent seals, only the
//! right guest agent (VM, incarnation, key) can open, and bad certificates are refused up front.
//!
//! Certificates are made with rcgen directly, as the guest agent does, rather than through the
//! guest-agent crate, to keep this crate free of a dependency on it.

use fabric_sealing::{MAX_TRANSFER_CERT_LEN, SealContext, SealError, SealedSecret, open, seal};
use rcgen::{CertificateParams, KeyPair, PKCS_ECDSA_P256_SHA256, PKCS_ED25519, SignatureAlgorithm};

/// A self-signed transfer certificate (DER) and its PKCS#8 private key (DER).
fn transfer_cert(alg: &'static SignatureAlgorithm) -> (Vec<u8>, Vec<u8>) {
    let key = KeyPair::generate_for(alg).expect("key generation");
    let params = CertificateParams::new(Vec::<String>::new()).expect("params");
    let cert = params.self_signed(&key).expect("self-signed certificate");
    (cert.der().to_vec(), key.serialize_der())
}

fn ctx() -> SealContext {
    SealContext::new("vm-0042", 3)
}

const SECRET: &[u8] = b"-----BEGIN PRIVATE KEY----- customer https certificate";

#[test]
fn round_trip() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "https-cert", SECRET).unwrap();
    assert_eq!(sealed.name, "https-cert");
    assert_eq!(
        sealed.encapsulated_key.len(),
        65,
        "uncompressed P-256 point"
    );
    assert_eq!(sealed.ciphertext.len(), SECRET.len() + 16, "AES-GCM tag");
    let opened = open(&key, &ctx(), &sealed).unwrap();
    assert_eq!(opened.as_slice(), SECRET);
}

#[test]
fn each_seal_uses_a_fresh_ephemeral_key() {
    let (cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let a = seal(&cert, &ctx(), "s", SECRET).unwrap();
    let b = seal(&cert, &ctx(), "s", SECRET).unwrap();
    assert_ne!(a.encapsulated_key, b.encapsulated_key);
    assert_ne!(a.ciphertext, b.ciphertext);
}

#[test]
fn empty_secret_round_trips() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "empty", b"").unwrap();
    assert!(open(&key, &ctx(), &sealed).unwrap().is_empty());
}

fn assert_open_fails(key: &[u8], ctx: &SealContext, sealed: &SealedSecret) {
    match open(key, ctx, sealed) {
        Err(SealError::Open { name }) => assert_eq!(name, sealed.name),
        other => panic!("expected SealError::Open, got {other:?}"),
    }
}

#[test]
fn tampered_ciphertext_is_rejected() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    for i in [0, sealed.ciphertext.len() / 2, sealed.ciphertext.len() - 1] {
        let mut bad = sealed.clone();
        bad.ciphertext[i] ^= 0x01;
        assert_open_fails(&key, &ctx(), &bad);
    }
    let mut truncated = sealed.clone();
    truncated.ciphertext.pop();
    assert_open_fails(&key, &ctx(), &truncated);
}

#[test]
fn tampered_encapsulated_key_is_rejected() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    let mut bad = sealed.clone();
    bad.encapsulated_key[40] ^= 0x01;
    // Either the point is no longer on the curve or it decapsulates to the wrong secret.
    assert!(open(&key, &ctx(), &bad).is_err());
    let mut short = sealed;
    short.encapsulated_key.truncate(33);
    assert!(matches!(
        open(&key, &ctx(), &short),
        Err(SealError::InvalidEncapsulatedKey { .. })
    ));
}

#[test]
fn renamed_secret_is_rejected() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let mut sealed = seal(&cert, &ctx(), "https-cert", SECRET).unwrap();
    sealed.name = "other-cert".into();
    assert_open_fails(&key, &ctx(), &sealed);
}

#[test]
fn wrong_vm_is_rejected() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    assert_open_fails(&key, &SealContext::new("vm-0043", 3), &sealed);
}

#[test]
fn wrong_incarnation_is_rejected() {
    let (cert, key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    assert_open_fails(&key, &SealContext::new("vm-0042", 4), &sealed);
}

#[test]
fn another_transfer_certificate_key_cannot_open() {
    let (cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let (_, other_key) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    assert_open_fails(&other_key, &ctx(), &sealed);
}

#[test]
fn ed25519_certificate_is_refused() {
    let (cert, _) = transfer_cert(&PKCS_ED25519);
    let err = seal(&cert, &ctx(), "s", SECRET).unwrap_err();
    assert!(matches!(err, SealError::UnsupportedKey { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("must be EC P-256"), "{msg}");
    assert!(msg.contains("1.3.101.112"), "names the Ed25519 OID: {msg}");
}

#[test]
fn p384_certificate_is_refused() {
    let (cert, _) = transfer_cert(&rcgen::PKCS_ECDSA_P384_SHA384);
    let err = seal(&cert, &ctx(), "s", SECRET).unwrap_err();
    assert!(matches!(err, SealError::UnsupportedKey { .. }), "{err:?}");
    assert!(
        err.to_string().contains("1.3.132.0.34"),
        "names the P-384 curve: {err}"
    );
}

#[test]
fn garbage_certificate_is_refused() {
    for garbage in [
        &b""[..],
        b"not a certificate",
        &[0x30, 0x82, 0xff, 0xff, 0x00],
    ] {
        let err = seal(garbage, &ctx(), "s", SECRET).unwrap_err();
        assert!(matches!(err, SealError::CertificateParse { .. }), "{err:?}");
    }
}

#[test]
fn trailing_bytes_after_certificate_are_refused() {
    let (mut cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    cert.push(0);
    let err = seal(&cert, &ctx(), "s", SECRET).unwrap_err();
    assert!(matches!(err, SealError::CertificateParse { .. }), "{err:?}");
}

#[test]
fn oversized_certificate_is_refused() {
    let (mut cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    cert.resize(MAX_TRANSFER_CERT_LEN + 1, 0);
    let err = seal(&cert, &ctx(), "s", SECRET).unwrap_err();
    assert!(
        matches!(err, SealError::CertificateTooLarge { len, max } if len == MAX_TRANSFER_CERT_LEN + 1 && max == MAX_TRANSFER_CERT_LEN),
        "{err:?}"
    );
}

#[test]
fn non_p256_private_key_is_refused() {
    let (cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let (_, ed_key) = transfer_cert(&PKCS_ED25519);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    assert!(matches!(
        open(&ed_key, &ctx(), &sealed),
        Err(SealError::InvalidPrivateKey)
    ));
    assert!(matches!(
        open(b"garbage", &ctx(), &sealed),
        Err(SealError::InvalidPrivateKey)
    ));
}

#[test]
fn debug_shows_no_ciphertext_bytes() {
    let (cert, _) = transfer_cert(&PKCS_ECDSA_P256_SHA256);
    let sealed = seal(&cert, &ctx(), "s", SECRET).unwrap();
    let dbg = format!("{sealed:?}");
    assert!(dbg.contains("ciphertext_len"), "{dbg}");
    assert!(!dbg.contains(&format!("{:?}", sealed.ciphertext)), "{dbg}");
}
