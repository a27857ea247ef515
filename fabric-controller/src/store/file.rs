//! [`FileStore`]: the controller's state in one file, replaced atomically.
//!
//! Layout: a header line `fabric-controller-state v1 len=<bytes> sha256=<hex>`
//! then the JSON body. A save writes a temporary file, fsyncs it, renames it
//! over the old one and fsyncs the directory, so a crash leaves either the
//! old state or the new, never a mix. A load checks the length and the
//! checksum, so a truncated or edited file is refused with a clear error
//! rather than half-read.

use super::{PersistedState, Save, Store, StoreError, sha256_hex};
use std::io::Write;
use std::path::{Path, PathBuf};

const MAGIC: &str = "fabric-controller-state v1";
pub const FILE_NAME: &str = "controller-state.json";

pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    pub fn new(state_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(state_dir).map_err(|source| StoreError::Io {
            path: state_dir.to_owned(),
            source,
        })?;
        Ok(Self {
            path: state_dir.join(FILE_NAME),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn corrupt(&self, reason: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: self.path.clone(),
            reason: reason.into(),
        }
    }
}

impl Store for FileStore {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.path.clone(),
                    source,
                });
            }
        };
        let newline = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| self.corrupt("no header line"))?;
        let header = std::str::from_utf8(&bytes[..newline])
            .map_err(|_| self.corrupt("header is not text"))?;
        let body = &bytes[newline + 1..];
        let rest = header
            .strip_prefix(MAGIC)
            .ok_or_else(|| self.corrupt(format!("unknown header {header:?}")))?;
        let mut len = None;
        let mut sum = None;
        for field in rest.split_whitespace() {
            if let Some(v) = field.strip_prefix("len=") {
                len = v.parse::<usize>().ok();
            } else if let Some(v) = field.strip_prefix("sha256=") {
                sum = Some(v.to_owned());
            }
        }
        let (Some(len), Some(sum)) = (len, sum) else {
            return Err(self.corrupt("header lacks len= or sha256="));
        };
        if body.len() != len {
            return Err(self.corrupt(format!(
                "body is {} bytes, header says {len} (truncated?)",
                body.len()
            )));
        }
        if sha256_hex(body) != sum {
            return Err(self.corrupt("checksum mismatch"));
        }
        let state = serde_json::from_slice(body)
            .map_err(|e| self.corrupt(format!("unreadable body: {e}")))?;
        Ok(Some(state))
    }

    fn save(&mut self, save: Save<'_>) -> Result<(), StoreError> {
        match save {
            Save::Full(state) => self.replace(state).map(|_| ()),
            Save::Changes(_) => Err(StoreError::Encode {
                path: self.path.clone(),
                reason: "a single-file store saves only whole states".into(),
            }),
        }
    }
}

impl FileStore {
    /// Replaces the file with `state`, atomically; returns its size.
    pub fn replace(&mut self, state: &PersistedState) -> Result<u64, StoreError> {
        let body = serde_json::to_vec(state).map_err(|e| StoreError::Encode {
            path: self.path.clone(),
            reason: e.to_string(),
        })?;
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Io { path, source }
        };
        let tmp = self.path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
        writeln!(
            file,
            "{MAGIC} len={} sha256={}",
            body.len(),
            sha256_hex(&body)
        )
        .map_err(io(&tmp))?;
        file.write_all(&body).map_err(io(&tmp))?;
        file.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io(dir))?;
        }
        Ok(body.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fabric_core::{CoreConfig, FabricCore, Moment};
    use std::time::{Duration, SystemTime};

    fn state() -> PersistedState {
        let now = Moment {
            mono: Duration::ZERO,
            wall: SystemTime::UNIX_EPOCH,
        };
        PersistedState {
            core: FabricCore::new(CoreConfig::default(), now).snapshot(),
            secrets: vec![],
        }
    }

    #[test]
    fn round_trip_and_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path()).unwrap();
        assert!(store.load().unwrap().is_none());
        store.save(Save::Full(&state())).unwrap();
        let loaded = store.load().unwrap().unwrap();
        assert_eq!(loaded.core.events.len(), 1);
    }

    #[test]
    fn truncated_or_edited_files_are_refused_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = FileStore::new(dir.path()).unwrap();
        store.save(Save::Full(&state())).unwrap();
        let good = std::fs::read(store.path()).unwrap();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("truncated", good[..good.len() - 10].to_vec()),
            ("edited", {
                let mut b = good.clone();
                let last = b.len() - 2;
                b[last] ^= 1;
                b
            }),
            ("garbage", b"hello".to_vec()),
            ("empty", vec![]),
        ];
        for (what, bytes) in cases {
            std::fs::write(store.path(), bytes).unwrap();
            let err = store.load().unwrap_err().to_string();
            assert!(err.contains(FILE_NAME), "{what}: {err}");
            assert!(err.contains("corrupt or truncated"), "{what}: {err}");
        }
    }
}
