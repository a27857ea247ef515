//! The transfer certificate: the key pair a guest agent creates when it starts, whose public half
//! it hands to the host agent so application secrets can be encrypted to this VM only.
//!
//! It is a self-signed ECDSA P-256 certificate valid from midnight UTC of the current day for one
//! year. P-256 because rcgen (ring) cannot make RSA keys and because HPKE's DHKEM(P-256) can use
//! the same key to decrypt secrets (see the fabric-sealing crate).

mod error;
mod validity;

use std::fmt;

use rcgen::{
    CertificateParams, DistinguishedName, DnType, KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;
use zeroize::Zeroizing;

pub use error::TransferCertError;
pub use validity::{buggy_valid_to, midnight_utc, valid_to};

/// A VM's transfer certificate and its private key.
///
/// The private key never leaves the VM; `Debug` redacts it, and its buffers are zeroised on drop.
pub struct TransferCert {
    vm_id: String,
    incarnation: u64,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    cert_der: Vec<u8>,
    cert_pem: String,
    key_pkcs8_der: Zeroizing<Vec<u8>>,
    key_pkcs8_pem: Zeroizing<String>,
}

impl TransferCert {
    /// Creates the transfer certificate for incarnation `incarnation` of VM `vm_id` at time `now`.
    ///
    /// With `leap_day_bug` set, the valid-to date is computed the 2012 way
    /// ([`buggy_valid_to`]) and generation fails on Feb 29 (UTC), as it did in 2012; this exists
    /// so the outage can be replayed end to end. Otherwise it uses the leap-safe [`valid_to`].
    pub fn generate(
        now: OffsetDateTime,
        vm_id: &str,
        incarnation: u64,
        leap_day_bug: bool,
    ) -> Result<Self, TransferCertError> {
        let not_before = midnight_utc(now);
        let not_after = if leap_day_bug {
            buggy_valid_to(not_before)?
        } else {
            if not_before.year() >= 9999 {
                return Err(TransferCertError::DateOutOfRange {
                    valid_from: not_before.date().to_string(),
                });
            }
            valid_to(not_before)
        };

        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name(vm_id, incarnation));
        params.not_before = not_before;
        params.not_after = not_after;
        // The key signs (the self-signature) and is used for ECDH when secrets are sealed to it.
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyAgreement,
        ];

        let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
        let cert = params.self_signed(&key)?;
        Ok(Self {
            vm_id: vm_id.to_owned(),
            incarnation,
            not_before,
            not_after,
            cert_der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pkcs8_der: Zeroizing::new(key.serialize_der()),
            key_pkcs8_pem: Zeroizing::new(key.serialize_pem()),
        })
    }

    /// The VM this certificate belongs to.
    pub fn vm_id(&self) -> &str {
        &self.vm_id
    }

    /// The VM incarnation this certificate was made for.
    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Start of validity: midnight UTC of the day it was made.
    pub fn not_before(&self) -> OffsetDateTime {
        self.not_before
    }

    /// End of validity: one (clamped) calendar year after [`Self::not_before`].
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// The certificate, DER encoded: what the guest agent sends to the host agent.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The certificate, PEM encoded.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The private key as PKCS#8 DER. Secret: never log it or send it off the VM.
    pub fn private_key_pkcs8_der(&self) -> &[u8] {
        &self.key_pkcs8_der
    }

    /// The private key as PKCS#8 PEM. Secret: never log it or send it off the VM.
    pub fn private_key_pem(&self) -> &str {
        &self.key_pkcs8_pem
    }

    /// SHA-256 of the certificate DER, lowercase hex: how operators and the host agent name it.
    pub fn fingerprint_sha256(&self) -> String {
        crate::fingerprint::sha256_hex(&self.cert_der)
    }
}

impl fmt::Debug for TransferCert {
    // Hand-written so the private key can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TransferCert")
            .field("vm_id", &self.vm_id)
            .field("incarnation", &self.incarnation)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .field("fingerprint_sha256", &self.fingerprint_sha256())
            .field("private_key", &"<redacted>")
            .finish()
    }
}

/// The certificate's subject common name; names the VM and incarnation for operators.
fn common_name(vm_id: &str, incarnation: u64) -> String {
    format!("Fabric transfer certificate {vm_id}/{incarnation}")
}
