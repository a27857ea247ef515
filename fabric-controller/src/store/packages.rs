//! Where the controller keeps the packages of the fabric's own software:
//! `<state>/packages/<version>/<file>`, beside its state file.
//!
//! An upload is written into a fresh `.incoming-*` directory while each
//! artifact's size and SHA-256 are checked against the manifest as the
//! bytes arrive (a byte more than declared is refused at once, not after a
//! full disk); only a complete, verified upload is renamed to its version's
//! directory, synced, and then, saved before acted on, made known to the
//! core. A crash mid-upload leaves an `.incoming-*` directory that the next
//! start removes. One upload at a time (they are rare and large).

use fabric_core::software::{Artifact, Manifest, Version};
use ring::digest;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an upload was refused, in the operator's words.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("{what} ({file}): {got} bytes sent, the manifest declares {declared}")]
    TooShort {
        what: &'static str,
        file: String,
        got: u64,
        declared: u64,
    },
    #[error("{what} ({file}): SHA-256 is {got}, the manifest says {declared}; refused")]
    Digest {
        what: &'static str,
        file: String,
        got: String,
        declared: String,
    },
    #[error("more bytes sent than the manifest's artifacts declare")]
    Trailing,
    #[error("package store {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

const WHAT: [&str; 3] = ["host agent", "guest agent", "networking plugin"];

/// The packages directory.
pub struct PackageStore {
    dir: PathBuf,
    /// One upload at a time.
    busy: tokio::sync::Mutex<()>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> UploadError + '_ {
    move |source| UploadError::Io {
        path: path.to_owned(),
        source,
    }
}

impl PackageStore {
    /// Opens `<state_dir>/packages`, removing what interrupted uploads left.
    pub fn open(state_dir: &Path) -> Result<Self, UploadError> {
        let dir = state_dir.join("packages");
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        for entry in std::fs::read_dir(&dir).map_err(io(&dir))?.flatten() {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with(".incoming-")
            {
                let path = entry.path();
                tracing::warn!(path = %path.display(), "removing an interrupted package upload");
                let _ = std::fs::remove_dir_all(&path);
            }
        }
        Ok(Self {
            dir,
            busy: tokio::sync::Mutex::new(()),
        })
    }

    /// Where one artifact of a stored package is.
    pub fn artifact_path(&self, version: &Version, file: &str) -> PathBuf {
        self.dir.join(version.as_str()).join(file)
    }

    /// Starts an upload of `manifest`'s artifacts.
    pub async fn begin(&self, manifest: &Manifest) -> Result<Incoming<'_>, UploadError> {
        let guard = self.busy.lock().await;
        let tmp = self.dir.join(format!(".incoming-{}", manifest.version));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp).map_err(io(&tmp))?;
        let mut incoming = Incoming {
            store: self,
            _guard: guard,
            tmp,
            manifest: manifest.clone(),
            index: 0,
            current: None,
        };
        incoming.open_next()?;
        Ok(incoming)
    }
}

/// One upload in progress.
pub struct Incoming<'a> {
    store: &'a PackageStore,
    _guard: tokio::sync::MutexGuard<'a, ()>,
    tmp: PathBuf,
    manifest: Manifest,
    /// Which artifact is being written (0..3).
    index: usize,
    current: Option<(std::fs::File, digest::Context, u64)>,
}

impl Incoming<'_> {
    fn artifact(&self) -> Option<&Artifact> {
        self.manifest.artifacts().get(self.index).copied()
    }

    fn open_next(&mut self) -> Result<(), UploadError> {
        // Artifacts are never empty (checked when the manifest was read),
        // so each one is opened and then filled.
        self.current = match self.artifact() {
            Some(a) => {
                let path = self.tmp.join(&a.file);
                let file = std::fs::File::create(&path).map_err(io(&path))?;
                Some((file, digest::Context::new(&digest::SHA256), 0))
            }
            None => None,
        };
        Ok(())
    }

    /// Takes the next bytes of the artifacts, in manifest order.
    pub fn write(&mut self, mut data: &[u8]) -> Result<(), UploadError> {
        while !data.is_empty() {
            let Some(a) = self.artifact().cloned() else {
                return Err(UploadError::Trailing);
            };
            let (file, ctx, written) = self.current.as_mut().ok_or(UploadError::Trailing)?;
            let room = a.size - *written;
            let take = (data.len() as u64).min(room) as usize;
            let path = self.tmp.join(&a.file);
            file.write_all(&data[..take]).map_err(io(&path))?;
            ctx.update(&data[..take]);
            *written += take as u64;
            data = &data[take..];
            // Either this artifact is complete or `data` is used up.
            if *written == a.size {
                self.close_current(&a)?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self, a: &Artifact) -> Result<(), UploadError> {
        let (file, ctx, _) = self.current.take().expect("an artifact is open");
        let got = hex::encode(ctx.finish().as_ref());
        if got != a.sha256 {
            return Err(UploadError::Digest {
                what: WHAT[self.index],
                file: a.file.clone(),
                got,
                declared: a.sha256.clone(),
            });
        }
        let path = self.tmp.join(&a.file);
        file.sync_all().map_err(io(&path))?;
        self.index += 1;
        self.open_next()
    }

    /// Every artifact arrived whole and verified: the package becomes
    /// `<packages>/<version>`, synced.
    pub fn finish(self) -> Result<(), UploadError> {
        if let Some(a) = self.artifact().cloned() {
            let got = self.current.as_ref().map_or(0, |c| c.2);
            return Err(UploadError::TooShort {
                what: WHAT[self.index],
                file: a.file,
                got,
                declared: a.size,
            });
        }
        let to = self.store.dir.join(self.manifest.version.as_str());
        // A directory left by an upload whose save failed (the core does not
        // know it): the verified new one replaces it.
        let _ = std::fs::remove_dir_all(&to);
        std::fs::rename(&self.tmp, &to).map_err(io(&to))?;
        std::fs::File::open(&self.store.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.store.dir))?;
        Ok(())
    }
}

impl Drop for Incoming<'_> {
    fn drop(&mut self) {
        // Finished uploads were renamed away; anything else is discarded.
        let _ = std::fs::remove_dir_all(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::software::Plugin;

    fn artifact(file: &str, bytes: &[u8]) -> Artifact {
        Artifact {
            version: Version::parse("v", "1").unwrap(),
            file: file.into(),
            size: bytes.len() as u64,
            sha256: hex::encode(digest::digest(&digest::SHA256, bytes).as_ref()),
            flags: vec![],
        }
    }

    fn manifest() -> Manifest {
        Manifest {
            version: Version::parse("v", "p1").unwrap(),
            host_agent: artifact("ha", b"host agent bytes"),
            guest_agent: artifact("ga", b"guest"),
            plugin: Plugin {
                artifact: artifact("np", b"plugin!"),
                compatible_host_agents: vec!["1".into()],
            },
            forced: false,
        }
    }

    #[tokio::test]
    async fn a_verified_upload_lands_under_its_version_in_any_chunking() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let m = manifest();
        let mut up = store.begin(&m).await.unwrap();
        // Chunks that straddle artifacts.
        let all = b"host agent bytesguestplugin!";
        for chunk in all.chunks(3) {
            up.write(chunk).unwrap();
        }
        up.finish().unwrap();
        let path = store.artifact_path(&m.version, "ga");
        assert_eq!(std::fs::read(path).unwrap(), b"guest");
    }

    #[tokio::test]
    async fn wrong_bytes_are_refused_and_leave_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = PackageStore::open(dir.path()).unwrap();
        let m = manifest();
        let mut up = store.begin(&m).await.unwrap();
        let err = up.write(b"HOST agent bytes").unwrap_err();
        assert!(matches!(err, UploadError::Digest { .. }), "{err}");
        drop(up);
        let mut up = store.begin(&m).await.unwrap();
        up.write(b"host agent bytesguest").unwrap();
        let err = up.finish().unwrap_err();
        assert!(err.to_string().contains("0 bytes sent"), "{err}");
        let mut up = store.begin(&m).await.unwrap();
        let err = up.write(b"host agent bytesguestplugin!!").unwrap_err();
        assert!(matches!(err, UploadError::Trailing), "{err}");
        drop(up);
        let left: Vec<_> = std::fs::read_dir(dir.path().join("packages"))
            .unwrap()
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }
}
