//! The service owner's side of a replay: a CA of their own, server
//! certificates with the lifetimes the scenario needs, and service
//! definition files naming them, in a directory removed on drop.
//!
//! The certificates are for 127.0.0.1, where a local cluster's role
//! endpoints listen, so clients that check names and dates
//! ([`crate::https::Trust::Ca`]) accept them while they are valid, exactly
//! like the clients of a real service.

use crate::definition::{CertificateFile, RoleFile, ServiceFile};
use crate::https::Trust;
use anyhow::Context as _;
use fabric_pki::layout::{CertPaths, write_pair};
use fabric_pki::service_ca::ServiceCa;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::path::PathBuf;
use time::OffsetDateTime;

pub struct ServiceOwner {
    ca: ServiceCa,
    dir: PathBuf,
}

impl Drop for ServiceOwner {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One service definition written to disk.
pub struct Written {
    pub path: PathBuf,
    /// The certificate its roles serve, DER (to tell it from another).
    pub cert_der: Vec<u8>,
}

impl ServiceOwner {
    pub fn new(label: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!(
            "fabric-scenario-{}-{label}-owner",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        let ca = ServiceCa::generate(&format!("{label} service owner"), OffsetDateTime::now_utc())?;
        Ok(Self { ca, dir })
    }

    /// The owner's scratch directory (removed with it).
    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    /// What the service's clients trust: the owner's CA, with dates checked.
    pub fn trust(&self) -> Trust {
        Trust::Ca(self.ca.cert_der())
    }

    /// Writes `file`.toml defining service `name` with `roles` (name,
    /// instances), every role serving one new certificate valid from a
    /// minute ago until `not_after`.
    pub fn write(
        &self,
        file: &str,
        name: &str,
        roles: &[(&str, u32)],
        not_after: OffsetDateTime,
    ) -> anyhow::Result<Written> {
        let now = OffsetDateTime::now_utc();
        let issued = self.ca.issue_server(
            name,
            &[std::net::Ipv4Addr::LOCALHOST.into()],
            now - time::Duration::minutes(1),
            not_after,
        )?;
        let paths = CertPaths {
            cert: self.dir.join(format!("{file}.pem")),
            key: self.dir.join(format!("{file}.key")),
        };
        write_pair(&paths, &issued)?;
        let definition = ServiceFile {
            name: name.to_owned(),
            priority: 0,
            roles: roles
                .iter()
                .map(|(role, instances)| RoleFile {
                    name: (*role).to_owned(),
                    instances: *instances,
                    certificates: vec![CertificateFile {
                        name: "https".into(),
                        cert: format!("{file}.pem").into(),
                        key: format!("{file}.key").into(),
                    }],
                    guest: None,
                })
                .collect(),
        };
        let toml = toml::to_string(&definition).context("the service definition")?;
        let path = self.dir.join(format!("{file}.toml"));
        std::fs::write(&path, toml).with_context(|| format!("cannot write {}", path.display()))?;
        let cert_der = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes())
            .context("the issued certificate")?
            .to_vec();
        Ok(Written { path, cert_der })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn a_written_definition_loads_as_fabricctl_deploy_reads_it() {
        let owner = ServiceOwner::new("unit-test").unwrap();
        let not_after = OffsetDateTime::now_utc() + time::Duration::seconds(20);
        let written = owner
            .write("store", "store", &[("web", 2), ("api", 1)], not_after)
            .unwrap();
        let definition = crate::definition::load(&written.path).unwrap();
        assert_eq!(definition.name, "store");
        let roles: Vec<_> = definition
            .roles
            .iter()
            .map(|r| (r.name.as_str(), r.instances, r.certificates.len()))
            .collect();
        assert_eq!(roles, [("web", 2, 1), ("api", 1, 1)]);
        let pem = &definition.roles[0].certificates[0].cert_pem;
        let expires = fabric_pki::tls::not_after(pem).unwrap();
        assert_eq!(
            expires,
            SystemTime::from(not_after.replace_nanosecond(0).unwrap())
        );
        // The key is the owner's secret: not readable by others.
        use std::os::unix::fs::PermissionsExt;
        let key = written.path.with_file_name("store.key");
        let mode = std::fs::metadata(key).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0);
        let dir = written.path.parent().unwrap().to_owned();
        drop(owner);
        assert!(!dir.exists(), "removed on drop");
    }
}
