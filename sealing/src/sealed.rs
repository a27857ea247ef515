//! Sealing a named secret to a transfer certificate, and opening it with the private key.
//!
//! One HPKE single-shot operation per secret: each sealed secret carries its own encapsulated
//! key, so secrets can be stored, reordered or delivered independently.

use std::fmt;

use hpke::aead::AesGcm128;
use hpke::kdf::HkdfSha256;
use hpke::kem::{DhP256HkdfSha256, Kem};
use hpke::{Deserializable, OpModeR, OpModeS, Serializable};
use zeroize::Zeroizing;

use crate::SealError;
use crate::context::{SealContext, secret_aad};
use crate::recipient::{private_key_from_pkcs8, public_key_from_cert};

type Aead = AesGcm128;
type Kdf = HkdfSha256;
type KemP256 = DhP256HkdfSha256;

/// A secret encrypted to one VM incarnation's transfer certificate.
///
/// Safe to log or store: it holds only the name, the ephemeral public key and the ciphertext.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedSecret {
    /// The secret's name (e.g. the certificate's thumbprint or the setting's name); authenticated.
    pub name: String,
    /// HPKE encapsulated key: the sender's ephemeral P-256 public key, uncompressed SEC1.
    pub encapsulated_key: Vec<u8>,
    /// AES-128-GCM ciphertext followed by its 16-byte tag.
    pub ciphertext: Vec<u8>,
}

impl fmt::Debug for SealedSecret {
    // Lengths rather than bytes: enough to debug with, without flooding logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SealedSecret")
            .field("name", &self.name)
            .field("encapsulated_key_len", &self.encapsulated_key.len())
            .field("ciphertext_len", &self.ciphertext.len())
            .finish()
    }
}

/// Seals `plaintext` under the name `name` to the key in `transfer_cert_der`, bound to `ctx`.
///
/// Called by the host agent. Fails if the certificate is oversized, not DER X.509, or does not
/// hold an EC P-256 key.
pub fn seal(
    transfer_cert_der: &[u8],
    ctx: &SealContext,
    name: &str,
    plaintext: &[u8],
) -> Result<SealedSecret, SealError> {
    let recipient = public_key_from_cert(transfer_cert_der)?;
    let (encapped, ciphertext) = hpke::single_shot_seal::<Aead, Kdf, KemP256>(
        &OpModeS::Base,
        &recipient,
        &ctx.hpke_info(),
        plaintext,
        &secret_aad(name),
    )
    .map_err(|e| SealError::Seal {
        name: name.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(SealedSecret {
        name: name.to_owned(),
        encapsulated_key: encapped.to_bytes().to_vec(),
        ciphertext,
    })
}

/// Opens `sealed` with the transfer certificate's private key (PKCS#8 DER), checking it was
/// sealed for `ctx` under its name.
///
/// Called by the guest agent. The plaintext is zeroised when dropped.
pub fn open(
    private_key_pkcs8_der: &[u8],
    ctx: &SealContext,
    sealed: &SealedSecret,
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    let private_key = private_key_from_pkcs8(private_key_pkcs8_der)?;
    let encapped =
        <KemP256 as Kem>::EncappedKey::from_bytes(&sealed.encapsulated_key).map_err(|_| {
            SealError::InvalidEncapsulatedKey {
                name: sealed.name.clone(),
            }
        })?;
    hpke::single_shot_open::<Aead, Kdf, KemP256>(
        &OpModeR::Base,
        &private_key,
        &encapped,
        &ctx.hpke_info(),
        &sealed.ciphertext,
        &secret_aad(&sealed.name),
    )
    .map(Zeroizing::new)
    .map_err(|_| SealError::Open {
        name: sealed.name.clone(),
    })
}
