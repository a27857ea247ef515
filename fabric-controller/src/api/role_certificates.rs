//! Checking a role's certificate and key before the controller accepts them.
//!
//! A deploy is refused with a message naming the certificate when its PEM is
//! bad, its key does not belong to it, or it has already expired: finding out
//! at deploy time beats finding out when every VM fails to serve HTTPS.

use fabric_core::CertificateInfo;
use std::time::SystemTime;

/// Validates one certificate/key pair at calendar time `now`.
pub fn inspect(
    name: &str,
    cert_pem: &str,
    key_pem: &str,
    now: SystemTime,
) -> Result<CertificateInfo, String> {
    let (_, pem) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .map_err(|e| format!("certificate {name:?}: not PEM: {e}"))?;
    if pem.label != "CERTIFICATE" {
        return Err(format!(
            "certificate {name:?}: expected a CERTIFICATE PEM block, found {:?}",
            pem.label
        ));
    }
    let cert = pem
        .parse_x509()
        .map_err(|e| format!("certificate {name:?}: not a valid X.509 certificate: {e}"))?;
    let key = rcgen::KeyPair::from_pem(key_pem)
        .map_err(|e| format!("certificate {name:?}: private key is not a valid PEM key: {e}"))?;
    // The raw public key derived from the private key must be the one the
    // certificate binds its subject to.
    if key.public_key_raw() != cert.public_key().subject_public_key.data.as_ref() {
        return Err(format!(
            "certificate {name:?}: the private key does not match the certificate"
        ));
    }
    let not_after = fabric_pki::tls::not_after_of(&cert);
    if not_after <= now {
        return Err(format!(
            "certificate {name:?} expired on {}",
            cert.validity().not_after
        ));
    }
    let fingerprint = ring::digest::digest(&ring::digest::SHA256, &pem.contents);
    Ok(CertificateInfo {
        name: name.to_owned(),
        fingerprint: hex::encode(fingerprint),
        not_after,
    })
}

/// Whether the certificate's key is RSA (an unreadable one is not).
pub fn is_rsa(cert_pem: &str) -> bool {
    x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
        .ok()
        .and_then(|(_, pem)| {
            pem.parse_x509().ok().map(|cert| {
                cert.public_key().algorithm.algorithm
                    == x509_parser::oid_registry::OID_PKCS1_RSAENCRYPTION
            })
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn pair(days: i64) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["localhost".into()]).unwrap();
        params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
        params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(days);
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn accepts_a_matching_pair() {
        let (cert, key) = pair(30);
        let info = inspect("https", &cert, &key, SystemTime::now()).unwrap();
        assert_eq!(info.fingerprint.len(), 64);
        assert!(info.not_after > SystemTime::now() + Duration::from_secs(29 * 86400));
    }

    #[test]
    fn refuses_bad_input_with_a_clear_reason() {
        let (cert, key) = pair(30);
        let (_, other_key) = pair(30);
        let cases = [
            (inspect("a", "junk", &key, SystemTime::now()), "not PEM"),
            (
                inspect("a", &key, &key, SystemTime::now()),
                "expected a CERTIFICATE",
            ),
            (
                inspect("a", &cert, "junk", SystemTime::now()),
                "not a valid PEM key",
            ),
            (
                inspect("a", &cert, &other_key, SystemTime::now()),
                "does not match",
            ),
            (
                inspect(
                    "a",
                    &cert,
                    &key,
                    SystemTime::now() + Duration::from_secs(31 * 86400),
                ),
                "expired",
            ),
        ];
        for (result, expected) in cases {
            let err = result.unwrap_err();
            assert!(err.contains(expected), "{err:?} lacks {expected:?}");
        }
    }
}
