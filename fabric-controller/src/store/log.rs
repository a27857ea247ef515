//! [`LogStore`]: the controller's state as a snapshot plus a log of what each
//! decision changed, so that a save costs the change (a few instances and
//! events) and not the cluster (every server and instance rewritten, as a
//! single state file must be).
//!
//! Files, in the state directory:
//! - `controller-state.json`: the snapshot ([`FileStore`]'s format: length
//!   and SHA-256 in a header line, replaced atomically);
//! - `controller-state.log`: change records appended after it, each
//!   `fabric-controller-change v1 len=<bytes> sha256=<hex>`, a newline, the
//!   JSON of a [`ChangeRecord`], a newline; fsynced before the save returns.
//!
//! Every record carries the state generation it makes (see
//! `fabric_core::identity`); records at or below the snapshot's generation
//! are left from before a compaction and skipped, and the others must follow
//! each other by one.
//!
//! Compaction writes a new snapshot and then empties the log. It happens at
//! the first save after the store is opened (so a restart also cleans up a
//! torn tail), after a failed save, and when the log has grown past the
//! snapshot's size (at least [`DEFAULT_COMPACT_BYTES`]): its O(state) cost
//! then comes at most once per O(state) bytes of changes.
//!
//! A crash can leave, at worst, a torn last record (the save never returned,
//! so nothing was acted on it): a record cut short, or one whose bytes are
//! zeros (a file extended but not written), is dropped with a warning. Any
//! other damage (a complete record whose checksum fails, a gap in the
//! generations) is refused with the file, the offset and what to do.

use super::file::FileStore;
use super::{ChangeRecord, PersistedState, Save, Store, StoreError, sha256_hex};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub const LOG_FILE: &str = "controller-state.log";
const MAGIC: &str = "fabric-controller-change v1";
/// The log is compacted once it is larger than the snapshot and than this.
pub const DEFAULT_COMPACT_BYTES: u64 = 4 << 20;

/// Where a save stops, for fault-injection tests: as if the process died
/// there.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashPoint {
    /// After this many bytes of a change record were written.
    InRecord(usize),
    /// After the new snapshot is in place, before the log is emptied.
    AfterSnapshot,
}

pub struct LogStore {
    snapshot: FileStore,
    log_path: PathBuf,
    /// Open for appending once a snapshot was written by this store.
    log: Option<File>,
    log_bytes: u64,
    snapshot_bytes: u64,
    compact_bytes: u64,
    #[cfg(test)]
    pub crash_at: Option<CrashPoint>,
}

impl LogStore {
    pub fn new(state_dir: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            snapshot: FileStore::new(state_dir)?,
            log_path: state_dir.join(LOG_FILE),
            log: None,
            log_bytes: 0,
            snapshot_bytes: 0,
            compact_bytes: DEFAULT_COMPACT_BYTES,
            #[cfg(test)]
            crash_at: None,
        })
    }

    /// Compacts once the log passes `bytes` (and the snapshot's size).
    pub fn with_compaction(mut self, bytes: u64) -> Self {
        self.compact_bytes = bytes;
        self
    }

    /// The snapshot file (what a backup copies, with the log).
    pub fn path(&self) -> &Path {
        self.snapshot.path()
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    fn corrupt(&self, offset: usize, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: self.log_path.clone(),
            reason: format!("record at byte {offset}: {reason}"),
        }
    }

    fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
        move |source| StoreError::Io {
            path: path.to_owned(),
            source,
        }
    }

    /// Writes a new snapshot, then an empty log in place of the old one.
    fn compact(&mut self, state: &PersistedState) -> Result<(), StoreError> {
        self.log = None;
        self.snapshot_bytes = self.snapshot.replace(state)?;
        #[cfg(test)]
        if self.crash_at == Some(CrashPoint::AfterSnapshot) {
            return Err(crashed());
        }
        let tmp = self.log_path.with_extension("log.tmp");
        File::create(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(Self::io(&tmp))?;
        std::fs::rename(&tmp, &self.log_path).map_err(Self::io(&self.log_path))?;
        if let Some(dir) = self.log_path.parent() {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(Self::io(dir))?;
        }
        let log = OpenOptions::new()
            .append(true)
            .open(&self.log_path)
            .map_err(Self::io(&self.log_path))?;
        self.log = Some(log);
        self.log_bytes = 0;
        Ok(())
    }

    fn append(&mut self, record: &ChangeRecord) -> Result<(), StoreError> {
        let body = serde_json::to_vec(record).map_err(|e| StoreError::Encode {
            path: self.log_path.clone(),
            reason: e.to_string(),
        })?;
        let mut bytes =
            format!("{MAGIC} len={} sha256={}\n", body.len(), sha256_hex(&body)).into_bytes();
        bytes.extend_from_slice(&body);
        bytes.push(b'\n');
        #[cfg(test)]
        if let Some(CrashPoint::InRecord(n)) = self.crash_at {
            bytes.truncate(n);
        }
        let Some(log) = self.log.as_mut() else {
            return Err(StoreError::Encode {
                path: self.log_path.clone(),
                reason: "no snapshot written yet to append to".into(),
            });
        };
        let written = log.write_all(&bytes).and_then(|()| log.sync_data());
        if let Err(e) = written {
            // Whatever part of the record reached the file is a torn tail:
            // the next save compacts over it.
            self.log = None;
            return Err(Self::io(&self.log_path)(e));
        }
        #[cfg(test)]
        if matches!(self.crash_at, Some(CrashPoint::InRecord(_))) {
            self.log = None;
            return Err(crashed());
        }
        self.log_bytes += bytes.len() as u64;
        Ok(())
    }

    /// Reads the log's records (see the module doc for what is dropped and
    /// what refused).
    fn records(&self, bytes: &[u8]) -> Result<Vec<ChangeRecord>, StoreError> {
        let mut records = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let rest = &bytes[at..];
            let torn = |what: &str| {
                tracing::warn!(
                    path = %self.log_path.display(),
                    offset = at,
                    "dropping a torn last record ({what}): the save it belonged to never \
                     returned, so nothing was acted on it"
                );
            };
            if rest.iter().all(|b| *b == 0) {
                torn("zeros");
                break;
            }
            let Some(newline) = rest.iter().position(|b| *b == b'\n') else {
                torn("header cut short");
                break;
            };
            let header = std::str::from_utf8(&rest[..newline])
                .map_err(|_| self.corrupt(at, "header is not text"))?;
            let fields = header
                .strip_prefix(MAGIC)
                .ok_or_else(|| self.corrupt(at, format!("unknown header {header:?}")))?;
            let (len, sum) = parse_header(fields).ok_or_else(|| {
                self.corrupt(at, format!("header lacks len= or sha256=: {header:?}"))
            })?;
            let body_at = newline + 1;
            if rest.len() < body_at + len + 1 {
                torn("body cut short");
                break;
            }
            let body = &rest[body_at..body_at + len];
            if sha256_hex(body) != sum || rest[body_at + len] != b'\n' {
                if rest[body_at..].iter().all(|b| *b == 0) {
                    torn("zeros");
                    break;
                }
                return Err(self.corrupt(at, "checksum mismatch"));
            }
            let record: ChangeRecord = serde_json::from_slice(body)
                .map_err(|e| self.corrupt(at, format!("unreadable: {e}")))?;
            records.push(record);
            at += body_at + len + 1;
        }
        Ok(records)
    }
}

#[cfg(test)]
fn crashed() -> StoreError {
    StoreError::Io {
        path: "crash".into(),
        source: std::io::Error::other("crash injected by a test"),
    }
}

fn parse_header(fields: &str) -> Option<(usize, String)> {
    let mut len = None;
    let mut sum = None;
    for field in fields.split_whitespace() {
        if let Some(v) = field.strip_prefix("len=") {
            len = v.parse::<usize>().ok();
        } else if let Some(v) = field.strip_prefix("sha256=") {
            sum = Some(v.to_owned());
        }
    }
    Some((len?, sum?))
}

impl Store for LogStore {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let log = match std::fs::read(&self.log_path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    path: self.log_path.clone(),
                    source,
                });
            }
        };
        let Some(mut state) = self.snapshot.load()? else {
            if self.records(&log)?.is_empty() {
                return Ok(None);
            }
            return Err(StoreError::Corrupt {
                path: self.snapshot.path().to_owned(),
                reason: format!(
                    "missing, while {} holds changes to it",
                    self.log_path.display()
                ),
            });
        };
        let records = self.records(&log)?.into_iter().map(|r| Ok(((), r)));
        match super::replay(&mut state, records) {
            Ok(()) => Ok(Some(state)),
            Err(super::ReplayError::Store(e)) => Err(e),
            Err(super::ReplayError::Gap { next, after, .. }) => Err(StoreError::Corrupt {
                path: self.log_path.clone(),
                reason: format!(
                    "a record of generation {next} follows generation {after}: records are \
                     missing"
                ),
            }),
        }
    }

    fn wants_full(&self) -> bool {
        self.log.is_none() || self.log_bytes > self.compact_bytes.max(self.snapshot_bytes)
    }

    fn save(&mut self, save: Save<'_>) -> Result<(), StoreError> {
        match save {
            Save::Full(state) => self.compact(state),
            Save::Changes(record) => self.append(record),
        }
    }
}

#[cfg(test)]
mod tests;
