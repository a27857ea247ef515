//! The role's secrets as only the VM can read them: its certificates and
//! keys as a PKCS#12 with an empty password (what WALinuxAgent opens with
//! `openssl pkcs12 -nodes -password pass:`), enveloped by CMS with RSA key
//! transport to the guest's transfer certificate (opened with `openssl cms
//! -decrypt` and the transfer key that never left the VM).
//!
//! Content encryption is AES-128-CBC whatever the agent names in
//! `x-ms-cipher-name`: WALinuxAgent 2.7.3 names DES_EDE3_CBC, newer agents
//! AES128_CBC, and `openssl cms -decrypt` reads the algorithm from the
//! message itself, so both open it; the CMS builder offers AES only, and
//! triple DES is not worth writing by hand. The PKCS#12 inside uses PBES2
//! with AES-256 and an HMAC-SHA-256 MAC: OpenSSL 3 refuses the legacy
//! algorithms.

use crate::RoleCertificate;
use base64::Engine;
use cms::builder::{
    ContentEncryptionAlgorithm, EnvelopedDataBuilder, KeyEncryptionInfo,
    KeyTransRecipientInfoBuilder,
};
use cms::cert::IssuerAndSerialNumber;
use cms::cert::x509::Certificate;
use cms::cert::x509::der::referenced::OwnedToRef;
use cms::cert::x509::der::{Decode, Encode};
use cms::content_info::ContentInfo;
use cms::enveloped_data::RecipientIdentifier;

/// Why a Certificates request cannot be answered.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnvelopeError {
    #[error("the transfer certificate is not base64: {0}")]
    NotBase64(String),
    #[error("the transfer certificate is not an X.509 certificate: {0}")]
    NotCertificate(String),
    #[error("the transfer certificate's key is not RSA ({0}); WALinuxAgent's is")]
    NotRsa(String),
    #[error("the role's certificate or key cannot be packed: {0}")]
    Pack(String),
    #[error("cannot envelope the certificates: {0}")]
    Envelope(String),
}

/// The transfer certificate a guest sent, parsed.
#[derive(Clone, Debug)]
pub struct TransferCertificate {
    cert: Certificate,
    key: rsa::RsaPublicKey,
    /// Its thumbprint (SHA-1 of the DER, upper-case hex).
    pub thumbprint: String,
}

impl TransferCertificate {
    /// Reads the `x-ms-guest-agent-public-x509-cert` header: the
    /// certificate's DER in base64 (the PEM body, line breaks removed).
    pub fn from_header(value: &str) -> Result<Self, EnvelopeError> {
        let compact: String = value.split_whitespace().collect();
        let der = base64::engine::general_purpose::STANDARD
            .decode(compact)
            .map_err(|e| EnvelopeError::NotBase64(e.to_string()))?;
        Self::from_der(&der)
    }

    pub fn from_der(der: &[u8]) -> Result<Self, EnvelopeError> {
        let cert =
            Certificate::from_der(der).map_err(|e| EnvelopeError::NotCertificate(e.to_string()))?;
        let spki = &cert.tbs_certificate.subject_public_key_info;
        let key = rsa::RsaPublicKey::try_from(spki.owned_to_ref())
            .map_err(|e| EnvelopeError::NotRsa(e.to_string()))?;
        Ok(Self {
            cert,
            key,
            thumbprint: crate::thumbprint(der),
        })
    }
}

/// A role certificate from a PEM bundle (its certificate first, then its
/// key, as Fabric delivers a role's secret): the leaf certificate's DER and
/// the key as PKCS#8 (an `RSA PRIVATE KEY` is converted).
pub fn from_pem_bundle(pem: &[u8]) -> Result<RoleCertificate, EnvelopeError> {
    use rsa::pkcs1::DecodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;
    let pack = |e: String| EnvelopeError::Pack(e);
    let mut cert_der = None;
    let mut key_pkcs8_der = None;
    for item in rustls_pemfile::read_all(&mut &pem[..]) {
        match item.map_err(|e| pack(format!("not PEM: {e}")))? {
            rustls_pemfile::Item::X509Certificate(c) if cert_der.is_none() => {
                cert_der = Some(c.to_vec());
            }
            rustls_pemfile::Item::Pkcs8Key(k) => {
                key_pkcs8_der = Some(k.secret_pkcs8_der().to_vec())
            }
            rustls_pemfile::Item::Pkcs1Key(k) => {
                let key = rsa::RsaPrivateKey::from_pkcs1_der(k.secret_pkcs1_der())
                    .map_err(|e| pack(format!("the RSA key does not parse: {e}")))?;
                let der = key
                    .to_pkcs8_der()
                    .map_err(|e| pack(format!("the RSA key cannot be re-encoded: {e}")))?;
                key_pkcs8_der = Some(der.as_bytes().to_vec());
            }
            rustls_pemfile::Item::Sec1Key(_) => {
                return Err(pack(
                    "the key is an EC key; WALinuxAgent opens RSA keys only".into(),
                ));
            }
            _ => {}
        }
    }
    match (cert_der, key_pkcs8_der) {
        (Some(cert_der), Some(key_pkcs8_der)) => Ok(RoleCertificate {
            cert_der,
            key_pkcs8_der,
        }),
        _ => Err(pack(
            "the bundle needs a certificate and its private key".into(),
        )),
    }
}

/// The role's certificates and keys as a PKCS#12 with an empty password.
pub fn pkcs12(certificates: &[RoleCertificate]) -> Result<Vec<u8>, EnvelopeError> {
    let pack = |e: p12_keystore::error::Error| EnvelopeError::Pack(e.to_string());
    let mut store = p12_keystore::KeyStore::new();
    for (i, c) in certificates.iter().enumerate() {
        let key = p12_keystore::PrivateKey::from_der(&c.key_pkcs8_der).map_err(pack)?;
        let cert = p12_keystore::Certificate::from_der(&c.cert_der).map_err(pack)?;
        let thumbprint = c.thumbprint();
        let chain = p12_keystore::PrivateKeyChain::new(thumbprint.as_str(), key, [cert]);
        store.add_entry(
            &format!("{i}-{thumbprint}"),
            p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
        );
    }
    store.writer("").write().map_err(pack)
}

/// The Certificates document's `Data`: `certificates` as a PKCS#12,
/// enveloped to `recipient`, DER in base64 lines.
pub fn envelope(
    certificates: &[RoleCertificate],
    recipient: &TransferCertificate,
) -> Result<String, EnvelopeError> {
    let content = pkcs12(certificates)?;
    let fail = |e: cms::builder::Error| EnvelopeError::Envelope(e.to_string());
    let mut rng = rand_core::OsRng;
    let rid = RecipientIdentifier::IssuerAndSerialNumber(IssuerAndSerialNumber {
        issuer: recipient.cert.tbs_certificate.issuer.clone(),
        serial_number: recipient.cert.tbs_certificate.serial_number.clone(),
    });
    let mut key_rng = rand_core::OsRng;
    let recipient_info = KeyTransRecipientInfoBuilder::new(
        rid,
        KeyEncryptionInfo::Rsa(recipient.key.clone()),
        &mut key_rng,
    )
    .map_err(fail)?;
    let enveloped =
        EnvelopedDataBuilder::new(None, &content, ContentEncryptionAlgorithm::Aes128Cbc, None)
            .map_err(fail)?
            .add_recipient_info(recipient_info)
            .map_err(fail)?
            .build_with_rng(&mut rng)
            .map_err(fail)?;
    let info = ContentInfo {
        content_type: const_oid::db::rfc5911::ID_ENVELOPED_DATA,
        content: cms::cert::x509::der::Any::encode_from(&enveloped)
            .map_err(|e| EnvelopeError::Envelope(e.to_string()))?,
    };
    let der = info
        .to_der()
        .map_err(|e| EnvelopeError::Envelope(e.to_string()))?;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    // In lines of 64, as in a PEM body: the agent pastes `Data` under a
    // MIME header for `openssl cms`, whose base64 reader fails on one
    // long line (found by the waagent test).
    let lines: Vec<&str> = text
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).expect("base64 is ASCII"))
        .collect();
    Ok(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::DecodePrivateKey;

    /// Fabric's example role certificate: P-256, as Fabric's own are.
    const EC_CERT: &str = include_str!("../../examples/web/certs/web.pem");

    fn der_of(pem: &str) -> Vec<u8> {
        rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("a certificate")
            .expect("PEM")
            .to_vec()
    }

    #[test]
    fn an_rsa_private_key_is_converted_and_a_bundle_without_key_refused() {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 1024).expect("key");
        let pkcs1 = key.to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).expect("PEM");
        let bundle = format!("{EC_CERT}{}", pkcs1.as_str());
        let cert = from_pem_bundle(bundle.as_bytes()).expect("a role certificate");
        assert_eq!(cert.cert_der, der_of(EC_CERT));
        let back = rsa::RsaPrivateKey::from_pkcs8_der(&cert.key_pkcs8_der).expect("PKCS#8");
        assert_eq!(back, key);
        for bundle in [EC_CERT, "not PEM at all"] {
            let err = from_pem_bundle(bundle.as_bytes()).unwrap_err().to_string();
            assert!(err.contains("a certificate and its private key"), "{err}");
        }
    }

    #[test]
    fn a_transfer_certificate_must_be_base64_der_of_an_rsa_key() {
        let err = TransferCertificate::from_header("!!!").unwrap_err();
        assert!(matches!(err, EnvelopeError::NotBase64(_)), "{err}");
        let err = TransferCertificate::from_header("AAAA").unwrap_err();
        assert!(matches!(err, EnvelopeError::NotCertificate(_)), "{err}");
        // A header folded over lines reads the same; an EC key is refused.
        let b64 = base64::engine::general_purpose::STANDARD.encode(der_of(EC_CERT));
        let folded = format!("{}\n {}", &b64[..40], &b64[40..]);
        let err = TransferCertificate::from_header(&folded).unwrap_err();
        assert!(matches!(err, EnvelopeError::NotRsa(_)), "{err}");
    }
}
