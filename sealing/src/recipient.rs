//! The recipient's key pair: the public key read from a transfer certificate (host agent side)
//! and the private key loaded from PKCS#8 (guest agent side).
//!
//! The host agent receives the certificate from a guest agent it does not trust yet, so parsing is
//! strict: bounded size, no trailing bytes, and only EC P-256 keys.

use hpke::Deserializable;
use hpke::kem::{DhP256HkdfSha256, Kem};
use p256::pkcs8::DecodePrivateKey;
use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY};
use x509_parser::prelude::{FromDer, X509Certificate};
use zeroize::Zeroizing;

use crate::SealError;

/// Largest transfer certificate accepted, in bytes (16 KiB). A guest agent's self-signed P-256
/// certificate is well under 1 KiB; anything near this limit is not one of ours.
pub const MAX_TRANSFER_CERT_LEN: usize = 16 * 1024;

pub(crate) type PublicKey = <DhP256HkdfSha256 as Kem>::PublicKey;
pub(crate) type PrivateKey = <DhP256HkdfSha256 as Kem>::PrivateKey;

/// Reads the P-256 public key out of a DER transfer certificate.
pub(crate) fn public_key_from_cert(cert_der: &[u8]) -> Result<PublicKey, SealError> {
    if cert_der.len() > MAX_TRANSFER_CERT_LEN {
        return Err(SealError::CertificateTooLarge {
            len: cert_der.len(),
            max: MAX_TRANSFER_CERT_LEN,
        });
    }
    let (rest, cert) =
        X509Certificate::from_der(cert_der).map_err(|e| SealError::CertificateParse {
            reason: e.to_string(),
        })?;
    if !rest.is_empty() {
        // Trailing bytes mean the peer sent something other than exactly one certificate.
        return Err(SealError::CertificateParse {
            reason: format!("{} trailing bytes after the certificate", rest.len()),
        });
    }

    let spki = cert.public_key();
    let algorithm = &spki.algorithm.algorithm;
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok());
    if *algorithm != OID_KEY_TYPE_EC_PUBLIC_KEY || curve.as_ref() != Some(&OID_EC_P256) {
        let found = match curve {
            Some(curve) => format!("algorithm {algorithm} with curve {curve}"),
            None => format!("algorithm {algorithm}"),
        };
        return Err(SealError::UnsupportedKey { found });
    }
    // HPKE's P-256 DHKEM wants the uncompressed SEC1 point, which is what X.509 carries.
    PublicKey::from_bytes(&spki.subject_public_key.data).map_err(|_| SealError::InvalidPublicKey)
}

/// Checks that `cert_der` is a transfer certificate secrets can be sealed
/// to (bounded size, exactly one DER certificate, a P-256 public key on the
/// curve): every check [`crate::seal`] makes before its cryptography,
/// without the cryptography (a seal costs two P-256 scalar multiplications;
/// a host agent checks every guest's Hello).
pub fn check_recipient(cert_der: &[u8]) -> Result<(), SealError> {
    public_key_from_cert(cert_der).map(|_| ())
}

/// Loads the guest agent's P-256 private key from PKCS#8 DER (as rcgen serialises it).
pub(crate) fn private_key_from_pkcs8(pkcs8_der: &[u8]) -> Result<PrivateKey, SealError> {
    let secret =
        p256::SecretKey::from_pkcs8_der(pkcs8_der).map_err(|_| SealError::InvalidPrivateKey)?;
    // The raw scalar is secret: keep the temporary copy zeroised once HPKE has its own.
    let scalar = Zeroizing::new(secret.to_bytes());
    PrivateKey::from_bytes(scalar.as_slice()).map_err(|_| SealError::InvalidPrivateKey)
}
