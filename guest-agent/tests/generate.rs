//! Generating real transfer certificates around leap day and checking them with an independent
//! X.509 parser: dates, subject, key type, fingerprint, and that the key never shows in Debug.

use guest_agent::{TransferCert, TransferCertError};
use time::OffsetDateTime;
use time::macros::datetime;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};

const LEAP_DAY: OffsetDateTime = datetime!(2012-02-29 0:00 UTC);

#[test]
fn leap_day_without_the_bug_makes_a_valid_p256_certificate() {
    let tc = TransferCert::generate(LEAP_DAY, "vm-7", 3, false).unwrap();
    assert_eq!(tc.not_before(), datetime!(2012-02-29 0:00 UTC));
    assert_eq!(tc.not_after(), datetime!(2013-02-28 0:00 UTC));

    let (rest, cert) = X509Certificate::from_der(tc.cert_der()).unwrap();
    assert!(rest.is_empty());
    let validity = cert.validity();
    assert_eq!(validity.not_before.to_datetime(), tc.not_before());
    assert_eq!(validity.not_after.to_datetime(), tc.not_after());

    let spki = cert.public_key();
    assert_eq!(spki.algorithm.algorithm, OID_KEY_TYPE_EC_PUBLIC_KEY);
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .unwrap()
        .as_oid()
        .unwrap();
    assert_eq!(curve, OID_EC_P256);

    let cn = cert.subject().iter_common_name().next().unwrap();
    assert_eq!(cn.as_str().unwrap(), "Fabric transfer certificate vm-7/3");
    assert_eq!(cert.subject(), cert.issuer(), "self-signed");
    assert_eq!(tc.vm_id(), "vm-7");
    assert_eq!(tc.incarnation(), 3);
}

#[test]
fn leap_day_with_the_bug_fails_like_2012() {
    let err = TransferCert::generate(LEAP_DAY, "vm-7", 3, true).unwrap_err();
    assert!(
        matches!(err, TransferCertError::InvalidValidTo { ref date, .. } if date == "2013-02-29"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "invalid valid-to date 2013-02-29");
}

#[test]
fn the_bug_follows_the_utc_day_not_the_local_one() {
    // 2012-02-28 16:00 PST is Feb 29 in UTC: that is when the outage began.
    let pst_afternoon = datetime!(2012-02-28 16:00 -8);
    assert!(TransferCert::generate(pst_afternoon, "vm", 1, true).is_err());
    let just_before = datetime!(2012-02-28 15:59:59 -8);
    let tc = TransferCert::generate(just_before, "vm", 1, true).unwrap();
    assert_eq!(tc.not_after(), datetime!(2013-02-28 0:00 UTC));
    // And the day after leap day is fine again even with the bug.
    assert!(TransferCert::generate(datetime!(2012-03-01 0:00 UTC), "vm", 1, true).is_ok());
}

#[test]
fn dates_past_9999_are_an_error_not_a_panic() {
    let err = TransferCert::generate(datetime!(9999-06-01 12:00 UTC), "vm", 1, false).unwrap_err();
    assert!(
        matches!(err, TransferCertError::DateOutOfRange { .. }),
        "{err:?}"
    );
}

#[test]
fn fingerprint_is_sha256_of_the_der() {
    let tc = TransferCert::generate(LEAP_DAY, "vm", 1, false).unwrap();
    let fp = tc.fingerprint_sha256();
    assert_eq!(fp.len(), 64);
    assert!(
        fp.chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    );
    let expected: String = ring::digest::digest(&ring::digest::SHA256, tc.cert_der())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(fp, expected);
    assert!(tc.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn each_certificate_has_its_own_key() {
    let a = TransferCert::generate(LEAP_DAY, "vm", 1, false).unwrap();
    let b = TransferCert::generate(LEAP_DAY, "vm", 1, false).unwrap();
    assert_ne!(a.private_key_pkcs8_der(), b.private_key_pkcs8_der());
    assert_ne!(a.fingerprint_sha256(), b.fingerprint_sha256());
}

#[test]
fn debug_redacts_the_private_key() {
    let tc = TransferCert::generate(LEAP_DAY, "vm", 1, false).unwrap();
    assert!(
        tc.private_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let dbg = format!("{tc:?}");
    assert!(dbg.contains("<redacted>"), "{dbg}");
    assert!(!dbg.contains("PRIVATE KEY"), "{dbg}");
    let key_body = tc.private_key_pem().lines().nth(1).unwrap();
    assert!(!dbg.contains(key_body), "{dbg}");
    assert!(
        !dbg.contains(&format!("{:?}", tc.private_key_pkcs8_der())),
        "{dbg}"
    );
}
