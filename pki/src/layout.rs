//! Where the PKI files of one cluster live in a state directory.
//!
//! ```text
//! <pki dir>/ca.pem  ca.key
//!           controller.pem  controller.key
//!           admin.pem  admin.key
//!           hosts/<node>.pem  hosts/<node>.key
//! ```
//! Keys are written with mode 0600.

use crate::PkiError;
use crate::authority::{ClusterCa, IssuedCert};
use crate::identity::Role;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

/// Paths of one cluster's PKI files.
#[derive(Clone, Debug)]
pub struct PkiLayout {
    pub dir: PathBuf,
}

/// Paths to one certificate and its key.
#[derive(Clone, Debug)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl PkiLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }
    pub fn ca(&self) -> CertPaths {
        self.pair("ca")
    }
    pub fn controller(&self) -> CertPaths {
        self.pair("controller")
    }
    pub fn admin(&self) -> CertPaths {
        self.pair("admin")
    }
    pub fn host(&self, node: &str) -> CertPaths {
        self.pair(&format!("hosts/{node}"))
    }

    fn pair(&self, stem: &str) -> CertPaths {
        CertPaths {
            cert: self.dir.join(format!("{stem}.pem")),
            key: self.dir.join(format!("{stem}.key")),
        }
    }

    /// Loads the CA, or creates it (and the controller and admin certificates)
    /// if this directory has none yet.
    pub fn init(
        &self,
        cluster: &str,
        controller_names: &[String],
        now: OffsetDateTime,
    ) -> Result<ClusterCa, PkiError> {
        let ca_paths = self.ca();
        if ca_paths.cert.exists() {
            return self.load_ca(cluster);
        }
        let (ca, issued) = ClusterCa::generate(cluster, now)?;
        write_pair(&ca_paths, &issued)?;
        let mut names = vec!["localhost".to_owned()];
        names.extend(controller_names.iter().cloned());
        let controller = ca.issue(Role::Controller, "controller", &names, &loopback(), now)?;
        write_pair(&self.controller(), &controller)?;
        let admin = ca.issue(Role::Admin, "admin", &[], &[], now)?;
        write_pair(&self.admin(), &admin)?;
        Ok(ca)
    }

    pub fn load_ca(&self, cluster: &str) -> Result<ClusterCa, PkiError> {
        let paths = self.ca();
        ClusterCa::load(cluster, &read(&paths.cert)?, &read(&paths.key)?)
    }

    /// Issues the certificate of host agent `node` unless it already exists.
    pub fn ensure_host(
        &self,
        ca: &ClusterCa,
        node: &str,
        extra_names: &[String],
        now: OffsetDateTime,
    ) -> Result<CertPaths, PkiError> {
        let paths = self.host(node);
        if !paths.cert.exists() {
            let mut names = vec!["localhost".to_owned(), node.to_owned()];
            names.extend(extra_names.iter().cloned());
            let issued = ca.issue(Role::Host, node, &names, &loopback(), now)?;
            write_pair(&paths, &issued)?;
        }
        Ok(paths)
    }
}

fn loopback() -> Vec<IpAddr> {
    vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ]
}

pub(crate) fn read(path: &Path) -> Result<String, PkiError> {
    std::fs::read_to_string(path).map_err(|source| PkiError::Io {
        path: path.to_owned(),
        source,
    })
}

/// Reads a certificate and its key, as written by [`write_pair`].
pub fn read_pair(paths: &CertPaths) -> Result<IssuedCert, PkiError> {
    Ok(IssuedCert {
        cert_pem: read(&paths.cert)?,
        key_pem: read(&paths.key)?,
    })
}

/// Writes a certificate (0644) and its key (0600, created with that mode so
/// the key is never readable by others, not even briefly).
pub fn write_pair(paths: &CertPaths, issued: &IssuedCert) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| PkiError::Io { path, source }
    };
    if let Some(parent) = paths.cert.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    std::fs::write(&paths.cert, &issued.cert_pem).map_err(io(&paths.cert))?;
    let mut key = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&paths.key)
        .map_err(io(&paths.key))?;
    key.write_all(issued.key_pem.as_bytes())
        .map_err(io(&paths.key))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn init_is_idempotent_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        let now = OffsetDateTime::now_utc();
        layout.init("alpha", &[], now).unwrap();
        let ca_before = std::fs::read(layout.ca_cert()).unwrap();
        let ca = layout.init("alpha", &[], now).unwrap();
        assert_eq!(ca_before, std::fs::read(layout.ca_cert()).unwrap());
        let host = layout.ensure_host(&ca, "host-1", &[], now).unwrap();
        for key in [host.key, layout.ca().key, layout.admin().key] {
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600, "{}", key.display());
        }
    }
}
