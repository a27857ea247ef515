//! The cluster certificate authority: generate it once, then issue the
//! controller's, host agents' and operators' certificates from it.
//!
//! Validity periods are *durations* added to "now" (as `openssl -days` does),
//! never "the same date next year": that calendar arithmetic is exactly the
//! 2012 leap-day bug. "Now" is a parameter so tests and scenarios can issue
//! certificates on 2012-02-29.

use crate::PkiError;
use crate::identity::{Identity, Role};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use std::net::IpAddr;
use time::{Duration, OffsetDateTime};

/// How long the cluster CA is valid.
pub const CA_VALIDITY: Duration = Duration::days(3650);
/// How long issued leaf certificates are valid.
pub const LEAF_VALIDITY: Duration = Duration::days(365);

/// A certificate and its private key, both PEM.
#[derive(Clone)]
pub struct IssuedCert {
    pub cert_pem: String,
    /// Private key, PKCS#8 PEM. Never log it.
    pub key_pem: String,
}

impl std::fmt::Debug for IssuedCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCert")
            .field("cert_pem", &self.cert_pem)
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

/// The cluster CA: its certificate and signing key.
pub struct ClusterCa {
    cluster: String,
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl ClusterCa {
    /// Creates a new CA for `cluster`, valid from `now` for [`CA_VALIDITY`].
    pub fn generate(cluster: &str, now: OffsetDateTime) -> Result<(Self, IssuedCert), PkiError> {
        crate::identity::validate_label("cluster name", cluster)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(&format!("Fabric cluster CA {cluster}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + CA_VALIDITY;
        let cert = params.self_signed(&key)?;
        let issued = IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let ca = Self::load(cluster, &issued.cert_pem, &issued.key_pem)?;
        Ok((ca, issued))
    }

    /// Loads an existing CA from its PEM certificate and key.
    pub fn load(cluster: &str, cert_pem: &str, key_pem: &str) -> Result<Self, PkiError> {
        let key = KeyPair::from_pem(key_pem)?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)?;
        Ok(Self {
            cluster: cluster.to_owned(),
            cert_pem: cert_pem.to_owned(),
            issuer,
        })
    }

    pub fn cluster(&self) -> &str {
        &self.cluster
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Issues a certificate for `role`/`name` in this cluster.
    ///
    /// Controller and host certificates are also server certificates (host
    /// agents serve gRPC too), so they carry `dns_names`/`ips` for hostname
    /// verification. Every certificate is a client certificate.
    pub fn issue(
        &self,
        role: Role,
        name_: &str,
        dns_names: &[String],
        ips: &[IpAddr],
        now: OffsetDateTime,
    ) -> Result<IssuedCert, PkiError> {
        let identity = Identity::new(&self.cluster, role, name_)?;
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(name_);
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params
            .subject_alt_names
            .push(SanType::URI(identity.to_uri().try_into()?));
        if role != Role::Admin {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
            for dns in dns_names {
                params
                    .subject_alt_names
                    .push(SanType::DnsName(dns.clone().try_into()?));
            }
            for ip in ips {
                params.subject_alt_names.push(SanType::IpAddress(*ip));
            }
        }
        params.not_before = now - Duration::minutes(5);
        params.not_after = now + LEAF_VALIDITY;
        params.use_authority_key_identifier_extension = true;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Fabric");
    dn.push(DnType::CommonName, common_name);
    dn
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::identity_from_der;

    fn der(pem: &str) -> Vec<u8> {
        let (_, p) = x509_parser::pem::parse_x509_pem(pem.as_bytes()).unwrap();
        p.contents
    }

    #[test]
    fn issued_certificates_carry_their_identity() {
        let now = OffsetDateTime::now_utc();
        let (ca, _) = ClusterCa::generate("alpha", now).unwrap();
        let host = ca
            .issue(Role::Host, "host-2", &["localhost".into()], &[], now)
            .unwrap();
        let id = identity_from_der(&der(&host.cert_pem)).unwrap();
        assert_eq!(id, Identity::new("alpha", Role::Host, "host-2").unwrap());
        let admin = ca.issue(Role::Admin, "admin", &[], &[], now).unwrap();
        assert_eq!(
            identity_from_der(&der(&admin.cert_pem)).unwrap().role,
            Role::Admin
        );
    }

    #[test]
    fn issuing_on_leap_day_works() {
        let leap = time::macros::datetime!(2012-02-29 00:00 UTC);
        let (ca, _) = ClusterCa::generate("alpha", leap).unwrap();
        let cert = ca.issue(Role::Host, "host-1", &[], &[], leap).unwrap();
        let der = der(&cert.cert_pem);
        let (_, x) = x509_parser::parse_x509_certificate(&der).unwrap();
        assert_eq!(
            x.validity().not_after.timestamp(),
            (leap + LEAF_VALIDITY).unix_timestamp()
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let (_, issued) = ClusterCa::generate("alpha", OffsetDateTime::now_utc()).unwrap();
        assert!(!format!("{issued:?}").contains("PRIVATE KEY"));
    }
}
