//! Writing a transfer certificate to disk: the certificate for anyone, the key for the agent only.
//!
//! The key file is created with mode 0600 before any secret byte is written, and both files are
//! written to a temporary name and renamed, so a crash never leaves a half-written or
//! world-readable key behind.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::TransferCert;

/// File name of the certificate (PEM) inside the output directory.
pub const CERT_FILE_NAME: &str = "transfer.pem";
/// File name of the private key (PKCS#8 PEM) inside the output directory.
pub const KEY_FILE_NAME: &str = "transfer.key";

/// Where [`write_transfer_cert`] put the files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertFiles {
    /// The certificate, PEM.
    pub cert_path: PathBuf,
    /// The private key, PKCS#8 PEM, mode 0600.
    pub key_path: PathBuf,
}

/// Writes `cert` into `dir` (created if missing) as `transfer.pem` and `transfer.key`.
pub fn write_transfer_cert(dir: &Path, cert: &TransferCert) -> io::Result<CertFiles> {
    fs::create_dir_all(dir)?;
    let files = CertFiles {
        cert_path: dir.join(CERT_FILE_NAME),
        key_path: dir.join(KEY_FILE_NAME),
    };
    // Key first: a certificate on disk without its key would be useless to the agent.
    write_atomically(&files.key_path, cert.private_key_pem().as_bytes(), 0o600)?;
    write_atomically(&files.cert_path, cert.cert_pem().as_bytes(), 0o644)?;
    Ok(files)
}

/// Writes `contents` to `path` through a temporary file created with `mode`, then renames it.
pub(crate) fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> io::Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A stale temporary file may have looser permissions; start from nothing.
    match fs::remove_file(&tmp) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    #[cfg(not(unix))]
    let _ = mode;
    let mut file = options.open(&tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path)
}
