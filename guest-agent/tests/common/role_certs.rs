//! Role certificates as a customer would upload them: issued by the customer's own CA, delivered
//! as a PEM bundle (leaf, CA, key). Clients trust the CA, so rotation to a new leaf needs no
//! client change, as in real life.

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};

/// The DNS name role certificates are issued for; clients verify it.
pub const ROLE_HOST: &str = "role.fabric.test";

/// A test customer CA.
pub struct RoleCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// One role certificate with its key, as the bundle the host agent seals.
pub struct RoleCert {
    /// The leaf certificate, DER.
    pub der: Vec<u8>,
    /// Leaf PEM, then CA PEM, then the leaf's private key PEM.
    pub bundle_pem: String,
}

impl RoleCa {
    pub fn new() -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "Fabric test customer CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Self { issuer }
    }

    /// The CA certificate, DER (what clients trust).
    pub fn der(&self) -> Vec<u8> {
        self.issuer.der().to_vec()
    }

    /// Issues a leaf for [`ROLE_HOST`] with common name `cn`.
    pub fn issue(&self, cn: &str) -> RoleCert {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec![ROLE_HOST.to_owned()]).unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        RoleCert {
            der: cert.der().to_vec(),
            bundle_pem: format!("{}{}{}", cert.pem(), self.issuer.pem(), key.serialize_pem()),
        }
    }
}
