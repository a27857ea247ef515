//! Opening the role's secrets: sealed by the host agent to our transfer certificate, each one a
//! PEM bundle of a certificate chain followed by its private key.
//!
//! Every secret of a batch is opened and checked (name, PEM, key type, key matching the
//! certificate) before anything is written or served, so a bad batch changes nothing: the role
//! keeps serving what it served before. Plaintext never reaches a log; errors name the secret
//! only.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use fabric_sealing::{SealContext, SealError, SealedSecret};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use zeroize::Zeroizing;

use crate::fingerprint::sha256_hex;

/// Longest secret name accepted; names become file names.
pub const MAX_NAME_LEN: usize = 128;

/// Why a batch of secrets could not be opened.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum SecretError {
    /// The batch is empty, but the role needs a certificate to serve.
    #[error("no secrets received; the role needs at least one certificate")]
    Empty,
    /// The name cannot safely be used as a file name.
    #[error(
        "secret name {name:?} is not allowed (1-{MAX_NAME_LEN} of A-Z a-z 0-9 . _ -, not starting with '.')"
    )]
    BadName {
        /// The name received.
        name: String,
    },
    /// Two secrets of one batch have the same name, so one file would overwrite the other.
    #[error("secret name {name:?} appears more than once")]
    DuplicateName {
        /// The repeated name.
        name: String,
    },
    /// HPKE refused the secret: tampered, or sealed to another VM, incarnation or key.
    #[error(transparent)]
    Open(#[from] SealError),
    /// The plaintext is not a usable PEM bundle. `reason` never quotes the plaintext.
    #[error("secret {name:?} is not a certificate chain and private key in PEM: {reason}")]
    BadBundle {
        /// Name of the secret.
        name: String,
        /// What is wrong, without any of the secret's content.
        reason: &'static str,
    },
}

/// One opened secret: the role certificate chain and its key, ready to serve and to write.
pub struct RoleSecret {
    name: String,
    pem: Zeroizing<Vec<u8>>,
    certified_key: Arc<CertifiedKey>,
}

impl RoleSecret {
    /// The secret's name (also its file name, without `.pem`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The PEM bundle as received. Secret: never log it.
    pub fn pem(&self) -> &[u8] {
        &self.pem
    }

    /// The chain and signing key, as rustls serves them.
    pub fn certified_key(&self) -> &Arc<CertifiedKey> {
        &self.certified_key
    }

    /// The end-entity certificate, DER.
    pub fn leaf_der(&self) -> &[u8] {
        // `parse_bundle` refuses bundles without a certificate, so the chain is never empty.
        self.certified_key.cert[0].as_ref()
    }

    /// SHA-256 of the end-entity certificate, lowercase hex.
    pub fn fingerprint(&self) -> String {
        sha256_hex(self.leaf_der())
    }
}

impl fmt::Debug for RoleSecret {
    // Hand-written so the key and PEM can never reach a log through `{:?}`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RoleSecret")
            .field("name", &self.name)
            .field("fingerprint", &self.fingerprint())
            .field("chain_len", &self.certified_key.cert.len())
            .field("key", &"<redacted>")
            .finish()
    }
}

/// Converts the wire form of a sealed secret into fabric-sealing's.
pub fn sealed_from_proto(secret: &fabric_proto::v1::SealedSecret) -> SealedSecret {
    SealedSecret {
        name: secret.name.clone(),
        encapsulated_key: secret.encapsulated_key.clone(),
        ciphertext: secret.ciphertext.clone(),
    }
}

/// Opens every secret of a batch with the transfer certificate's private key (PKCS#8 DER) and
/// checks each is a usable certificate chain and key. All or nothing.
pub fn open_all(
    transfer_key_pkcs8_der: &[u8],
    ctx: &SealContext,
    sealed: &[fabric_proto::v1::SealedSecret],
) -> Result<Vec<RoleSecret>, SecretError> {
    if sealed.is_empty() {
        return Err(SecretError::Empty);
    }
    let mut names = HashSet::new();
    let mut opened = Vec::with_capacity(sealed.len());
    for secret in sealed {
        // The name is checked before opening: it is about to become a file name.
        check_name(&secret.name)?;
        if !names.insert(secret.name.as_str()) {
            return Err(SecretError::DuplicateName {
                name: secret.name.clone(),
            });
        }
        let pem = fabric_sealing::open(transfer_key_pkcs8_der, ctx, &sealed_from_proto(secret))?;
        let certified_key = parse_bundle(&secret.name, &pem)?;
        opened.push(RoleSecret {
            name: secret.name.clone(),
            pem,
            certified_key,
        });
    }
    Ok(opened)
}

/// Splits a PEM bundle into its certificate chain (in order) and private key, and checks the key
/// is one rustls can sign with and belongs to the first certificate.
pub fn parse_bundle(name: &str, pem: &[u8]) -> Result<Arc<CertifiedKey>, SecretError> {
    let bad = |reason| SecretError::BadBundle {
        name: name.to_owned(),
        reason,
    };
    let chain = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        // pki-types' PEM errors can quote lines of the input; say only that it is malformed.
        .map_err(|_| bad("malformed PEM"))?;
    if chain.is_empty() {
        return Err(bad("no CERTIFICATE block"));
    }
    let key = PrivateKeyDer::from_pem_slice(pem).map_err(|_| bad("no usable PRIVATE KEY block"))?;
    let signing_key = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|_| bad("private key type not supported (want ECDSA, Ed25519 or RSA)"))?;
    let certified_key = CertifiedKey::new(chain, signing_key);
    match certified_key.keys_match() {
        Ok(()) => {}
        // `Unknown`: the key cannot tell its public half, so there is nothing to compare.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(_) => return Err(bad("private key does not match the first certificate")),
    }
    Ok(Arc::new(certified_key))
}

/// Accepts names that are safe as a file name on their own: no path separators, no `.`/`..`,
/// no hidden files, nothing a shell or log would mangle.
fn check_name(name: &str) -> Result<(), SecretError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(SecretError::BadName {
            name: name.to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateParams, KeyPair};

    use super::*;

    fn bundle() -> (String, Vec<u8>) {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["role.example".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        (
            format!("{}{}", cert.pem(), key.serialize_pem()),
            cert.der().to_vec(),
        )
    }

    #[test]
    fn bundle_splits_into_chain_and_key() {
        let (pem, der) = bundle();
        let ck = parse_bundle("web", pem.as_bytes()).unwrap();
        assert_eq!(ck.cert.len(), 1);
        assert_eq!(ck.cert[0].as_ref(), der.as_slice());
    }

    #[test]
    fn key_of_another_certificate_is_refused() {
        let (pem_a, _) = bundle();
        let (pem_b, _) = bundle();
        let cert_a = &pem_a[..pem_a.find("-----BEGIN PRIVATE KEY").unwrap()];
        let key_b = &pem_b[pem_b.find("-----BEGIN PRIVATE KEY").unwrap()..];
        let err = parse_bundle("web", format!("{cert_a}{key_b}").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("does not match"), "{err}");
    }

    #[test]
    fn bundle_without_key_or_certificate_is_refused() {
        let (pem, _) = bundle();
        let cert_only = &pem[..pem.find("-----BEGIN PRIVATE KEY").unwrap()];
        let key_only = &pem[pem.find("-----BEGIN PRIVATE KEY").unwrap()..];
        assert!(parse_bundle("web", cert_only.as_bytes()).is_err());
        assert!(parse_bundle("web", key_only.as_bytes()).is_err());
        assert!(parse_bundle("web", b"garbage").is_err());
    }

    #[test]
    fn names_that_are_not_plain_file_names_are_refused() {
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "a b",
            "ü",
            &"x".repeat(129),
        ] {
            assert!(check_name(bad).is_err(), "{bad:?}");
        }
        for good in ["web", "web-cert.2024", "A_b-9"] {
            assert!(check_name(good).is_ok(), "{good:?}");
        }
    }
}
