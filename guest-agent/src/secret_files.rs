//! The role's secrets on disk: `<vm dir>/secrets/<name>.pem`, one PEM bundle per secret.
//!
//! Files are written as the role would read them (chain, then key) with mode 0600, created with
//! that mode and renamed into place, so no reader ever sees a half-written or world-readable key.
//! A rotation replaces the whole set: files of secrets that are no longer delivered are removed,
//! so a retired private key does not linger in the VM.

use std::collections::HashSet;
use std::fs::{self, DirBuilder};
use std::io;
use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::cert_files::write_atomically;
use crate::secrets::RoleSecret;

/// Name of the directory, inside the VM directory, that holds the secrets.
pub const SECRETS_DIR: &str = "secrets";

/// A secret file could not be written or an old one removed.
#[derive(Debug, Error)]
#[error("{}: {source}", path.display())]
pub struct SecretFileError {
    /// The file or directory concerned.
    pub path: PathBuf,
    /// The I/O error.
    #[source]
    pub source: io::Error,
}

/// The path of secret `name` inside `vm_dir`.
pub fn secret_path(vm_dir: &Path, name: &str) -> PathBuf {
    vm_dir.join(SECRETS_DIR).join(format!("{name}.pem"))
}

/// Writes every secret to `<vm_dir>/secrets/<name>.pem` (0600) and removes `.pem` files of
/// secrets not in `secrets`. Returns the paths written.
pub fn write_secret_files(
    vm_dir: &Path,
    secrets: &[RoleSecret],
) -> Result<Vec<PathBuf>, SecretFileError> {
    let dir = vm_dir.join(SECRETS_DIR);
    let err = |path: &Path| {
        let path = path.to_owned();
        move |source| SecretFileError { path, source }
    };
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    // Only the agent (and the role it runs as) may list the secrets.
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(&dir).map_err(err(&dir))?;

    let mut written = Vec::with_capacity(secrets.len());
    for secret in secrets {
        let path = secret_path(vm_dir, secret.name());
        write_atomically(&path, secret.pem(), 0o600).map_err(err(&path))?;
        written.push(path);
    }

    let keep: HashSet<&Path> = written.iter().map(PathBuf::as_path).collect();
    for entry in fs::read_dir(&dir).map_err(err(&dir))? {
        let path = entry.map_err(err(&dir))?.path();
        let is_pem = path.extension().is_some_and(|ext| ext == "pem");
        if is_pem && !keep.contains(path.as_path()) {
            fs::remove_file(&path).map_err(err(&path))?;
        }
    }
    Ok(written)
}
