//! Encrypting deployed certificates' private keys at rest.
//!
//! AES-256-GCM (ring) with a key generated once into `<state>/secrets.key`
//! (mode 0600). Each key gets a fresh random nonce, and its deployment, role
//! and certificate name are bound in as associated data, so a ciphertext
//! moved to another role's entry does not decrypt.

use super::StoreError;
use crate::secrets::RoleCertificate;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const KEY_FILE: &str = "secrets.key";

/// One certificate with its private key encrypted.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct EncryptedCertificate {
    pub deployment: String,
    pub role: String,
    pub name: String,
    pub cert_pem: String,
    /// Hex: 12-byte nonce followed by the ciphertext and tag.
    pub key_sealed: String,
}

/// The at-rest key.
#[derive(Clone)]
pub struct AtRestKey {
    key: LessSafeKey,
    path: PathBuf,
}

impl AtRestKey {
    /// Reads `<state_dir>/secrets.key`, creating it (0600) if missing.
    /// Replicas sharing a state directory may start together: the key is
    /// written whole under a temporary name and linked into place, which
    /// fails if another got there first, and then that one's is read.
    pub fn open_or_create(state_dir: &Path) -> Result<Self, StoreError> {
        let path = state_dir.join(KEY_FILE);
        let err = |reason: String| StoreError::Key {
            path: path.clone(),
            reason,
        };
        let bytes = match std::fs::read_to_string(&path) {
            Ok(text) => hex::decode(text.trim()).map_err(|_| err("not hex".into()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                SystemRandom::new()
                    .fill(&mut key)
                    .map_err(|_| err("no randomness".into()))?;
                match create_whole(&path, hex::encode(key).as_bytes()) {
                    Ok(()) => key.to_vec(),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                        let text =
                            std::fs::read_to_string(&path).map_err(|e| err(e.to_string()))?;
                        hex::decode(text.trim()).map_err(|_| err("not hex".into()))?
                    }
                    Err(e) => return Err(err(e.to_string())),
                }
            }
            Err(e) => return Err(err(e.to_string())),
        };
        let unbound = UnboundKey::new(&AES_256_GCM, &bytes)
            .map_err(|_| err("must be 32 bytes of hex".into()))?;
        Ok(Self {
            key: LessSafeKey::new(unbound),
            path,
        })
    }

    fn aad(deployment: &str, role: &str, name: &str) -> String {
        format!("fabric-secret-v1/{deployment}/{role}/{name}")
    }

    pub fn encrypt(
        &self,
        deployment: &str,
        role: &str,
        cert: &RoleCertificate,
    ) -> Result<EncryptedCertificate, StoreError> {
        let mut nonce = [0u8; 12];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| StoreError::Key {
                path: self.path.clone(),
                reason: "no randomness".into(),
            })?;
        let mut data = cert.key_pem.as_bytes().to_vec();
        self.key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(Self::aad(deployment, role, &cert.name)),
                &mut data,
            )
            .map_err(|_| StoreError::Key {
                path: self.path.clone(),
                reason: "encryption failed".into(),
            })?;
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&data);
        Ok(EncryptedCertificate {
            deployment: deployment.to_owned(),
            role: role.to_owned(),
            name: cert.name.clone(),
            cert_pem: cert.cert_pem.clone(),
            key_sealed: hex::encode(&sealed),
        })
    }

    pub fn decrypt(&self, e: &EncryptedCertificate) -> Result<RoleCertificate, StoreError> {
        let err = |reason: &str| StoreError::Key {
            path: self.path.clone(),
            reason: format!(
                "cannot decrypt the key of {}/{}/{}: {reason} (wrong or replaced {KEY_FILE}?)",
                e.deployment, e.role, e.name
            ),
        };
        let sealed = hex::decode(&e.key_sealed).map_err(|_| err("not hex"))?;
        if sealed.len() < 12 + 16 {
            return Err(err("too short"));
        }
        let (nonce, rest) = sealed.split_at(12);
        let mut data = rest.to_vec();
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| err("bad nonce"))?;
        let plain = self
            .key
            .open_in_place(
                nonce,
                Aad::from(Self::aad(&e.deployment, &e.role, &e.name)),
                &mut data,
            )
            .map_err(|_| err("authentication failed"))?;
        let key_pem = String::from_utf8(plain.to_vec()).map_err(|_| err("not text"))?;
        Ok(RoleCertificate {
            name: e.name.clone(),
            cert_pem: e.cert_pem.clone(),
            key_pem: key_pem.into(),
        })
    }
}

/// Creates `path` (0600) holding `bytes`, whole or not at all; fails with
/// `AlreadyExists` if it exists.
fn create_whole(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    let linked = file
        .write_all(bytes)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    linked
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn round_trip_binding_and_key_file_mode() {
        let dir = tempfile::tempdir().unwrap();
        let key = AtRestKey::open_or_create(dir.path()).unwrap();
        let mode = std::fs::metadata(dir.path().join(KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let cert = RoleCertificate {
            name: "https".into(),
            cert_pem: "CERT".into(),
            key_pem: "-----BEGIN PRIVATE KEY-----x".to_owned().into(),
        };
        let sealed = key.encrypt("web", "front", &cert).unwrap();
        assert!(!sealed.key_sealed.contains("PRIVATE"));
        assert_eq!(*key.decrypt(&sealed).unwrap().key_pem, *cert.key_pem);
        let mut moved = sealed.clone();
        moved.role = "api".into();
        assert!(key.decrypt(&moved).is_err(), "bound to its role");
        // The same key file is read back on the next start.
        let again = AtRestKey::open_or_create(dir.path()).unwrap();
        assert!(again.decrypt(&sealed).is_ok());
    }
}
