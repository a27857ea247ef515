//! Errors from sealing and opening secrets.
//!
//! Messages never include key material or plaintext. Opening failures are deliberately not
//! subdivided: telling a caller *why* a ciphertext failed to authenticate only helps an attacker.

use thiserror::Error;

/// Why a secret could not be sealed or opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SealError {
    /// The transfer certificate is larger than any certificate the guest agent makes; refusing it
    /// early bounds the work a misbehaving peer can cause.
    #[error("transfer certificate is {len} bytes, more than the {max} byte limit")]
    CertificateTooLarge {
        /// Size of the certificate offered.
        len: usize,
        /// The limit, [`crate::MAX_TRANSFER_CERT_LEN`].
        max: usize,
    },
    /// The bytes are not a DER X.509 certificate.
    #[error("transfer certificate is not a valid DER X.509 certificate: {reason}")]
    CertificateParse {
        /// The parser's description of the problem.
        reason: String,
    },
    /// The certificate's key is not an EC P-256 key, so HPKE with DHKEM(P-256) cannot use it.
    #[error("transfer certificate key must be EC P-256, found {found}")]
    UnsupportedKey {
        /// The key algorithm (and curve, if any) found, as OIDs.
        found: String,
    },
    /// The certificate claims P-256 but the public point is not a valid uncompressed P-256 point.
    #[error("transfer certificate has an invalid P-256 public key")]
    InvalidPublicKey,
    /// The private key is not a PKCS#8 DER P-256 key.
    #[error("transfer certificate private key is not a valid PKCS#8 P-256 key")]
    InvalidPrivateKey,
    /// The encapsulated key in a sealed secret is malformed.
    #[error("sealed secret {name:?} has a malformed encapsulated key")]
    InvalidEncapsulatedKey {
        /// Name of the sealed secret.
        name: String,
    },
    /// HPKE failed while sealing (should not happen with a valid key).
    #[error("sealing secret {name:?} failed: {reason}")]
    Seal {
        /// Name of the secret.
        name: String,
        /// HPKE's description.
        reason: String,
    },
    /// The secret did not authenticate: wrong VM, wrong incarnation, wrong name, wrong key, or a
    /// tampered ciphertext.
    #[error(
        "sealed secret {name:?} could not be opened (wrong VM, incarnation, key, or tampered data)"
    )]
    Open {
        /// Name of the sealed secret.
        name: String,
    },
}
