//! A service owner's certificate authority: the stand-in for the public CA
//! a real service buys its HTTPS certificates from.
//!
//! Not the cluster CA. The cluster CA identifies Fabric's own parts to each
//! other; a deployment's certificates are the customer's, uploaded with the
//! service definition, and their clients trust whoever issued them. The
//! 2013 scenario needs such certificates with lifetimes of seconds (200
//! scaled days), and clients that check dates, so it issues them here;
//! tests use it the same way.
//!
//! Validity is given as explicit instants: the caller decides the lifetime,
//! which is the point of the scenario.

use crate::PkiError;
use crate::authority::IssuedCert;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// A CA that issues server certificates for role endpoints.
pub struct ServiceCa {
    cert: rcgen::Certificate,
    issuer: Issuer<'static, KeyPair>,
}

impl ServiceCa {
    /// A new CA named `name`, valid from a day before `now` for ten years.
    pub fn generate(name: &str, now: OffsetDateTime) -> Result<Self, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished(name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::days(1);
        params.not_after = now + Duration::days(3650);
        let cert = params.self_signed(&key)?;
        Ok(Self {
            cert,
            issuer: Issuer::new(params, key),
        })
    }

    /// The CA certificate clients trust, PEM.
    pub fn cert_pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA certificate clients trust, DER.
    pub fn cert_der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    /// A server certificate for `ips` (the endpoints' addresses, as clients
    /// dial them) valid from `not_before` to `not_after`.
    pub fn issue_server(
        &self,
        common_name: &str,
        ips: &[IpAddr],
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = distinguished(common_name);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.subject_alt_names = ips.iter().map(|ip| SanType::IpAddress(*ip)).collect();
        params.not_before = not_before;
        params.not_after = not_after;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn distinguished(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Fabric example service owner");
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issues_with_the_asked_dates_and_addresses() {
        let now = OffsetDateTime::from_unix_timestamp(1_361_836_800).unwrap(); // 2013-02-26
        let ca = ServiceCa::generate("test owner", now).unwrap();
        let leaf = ca
            .issue_server(
                "web",
                &["127.0.0.1".parse().unwrap()],
                now,
                now + Duration::seconds(20),
            )
            .unwrap();
        let not_after = crate::tls::not_after(&leaf.cert_pem).unwrap();
        assert_eq!(
            not_after,
            std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_361_836_820)
        );
        let (_, pem) = x509_parser::pem::parse_x509_pem(leaf.cert_pem.as_bytes()).unwrap();
        let cert = pem.parse_x509().unwrap();
        assert!(!cert.is_ca());
        let san = cert.subject_alternative_name().unwrap().unwrap();
        assert_eq!(
            format!("{:?}", san.value.general_names),
            "[IPAddress([127, 0, 0, 1])]"
        );
        assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
    }
}
