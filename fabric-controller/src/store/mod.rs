//! Durable controller state.
//!
//! The controller writes its state before it acts on a decision: a deploy is
//! on disk before the CLI hears "deployed", a placement before any host agent
//! is told to start the VM. [`Store`] is the seam for other backends (a
//! replicated one such as etcd). [`log::LogStore`], the controller's, appends
//! what each decision changed to a checksummed log and compacts it into a
//! snapshot ([`file::FileStore`], one checksummed file) now and then, so a
//! save costs the change, not the cluster.
//!
//! Secrets (deployed certificates' private keys) are encrypted at rest with a
//! key kept beside the state file (mode 0600), see [`sealed_keys`].
//!
//! [`etcd::EtcdStore`] keeps the same snapshot and log in etcd for a
//! controller with replicas, every write fenced by the leader's election.

pub mod etcd;
pub mod file;
pub mod log;
pub mod packages;
pub mod sealed_keys;

use fabric_core::snapshot::{CoreChanges, CoreSnapshot};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What is persisted: the core's snapshot and the encrypted secrets.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PersistedState {
    pub core: CoreSnapshot,
    pub secrets: Vec<sealed_keys::EncryptedCertificate>,
}

/// Why the state could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{path} is corrupt or truncated ({reason}); the controller will not start on \
         half-read state. Restore it from a backup, or move it aside to start with an \
         empty cluster (every deployment would have to be deployed again)"
    )]
    Corrupt { path: PathBuf, reason: String },
    #[error("{path}: cannot encode state: {reason}")]
    Encode { path: PathBuf, reason: String },
    #[error("secret key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("{place}: {reason}")]
    Remote { place: String, reason: String },
    #[error(
        "this controller no longer leads (another replica was elected): etcd refused its \
         write and nothing of it landed; it steps down"
    )]
    Deposed,
}

/// What one decision changed: the core's changed entries and new events,
/// and the secrets when they changed (all of them: a deploy's worth).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub core: CoreChanges,
    pub secrets: Option<Vec<sealed_keys::EncryptedCertificate>>,
}

/// SHA-256 in hex: the checksum every store writes beside what it saves.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(ring::digest::digest(&ring::digest::SHA256, bytes))
}

/// Why a log could not be replayed.
#[derive(Debug)]
pub enum ReplayError<W> {
    /// A record could not be read.
    Store(StoreError),
    /// A gap: the record `at` is of generation `next`, where `after + 1`
    /// was due.
    Gap { at: W, next: u64, after: u64 },
}

/// Applies a log's change records, in order, to the snapshot they follow
/// (one rule for every store): records at or below the snapshot's
/// generation were written before it and are skipped; the others must
/// follow each other by one. A gap names the record (`W`: where it is)
/// that breaks the chain.
pub fn replay<W>(
    state: &mut PersistedState,
    records: impl IntoIterator<Item = Result<(W, ChangeRecord), StoreError>>,
) -> Result<(), ReplayError<W>> {
    let snapshot_generation = state.core.identity.generation;
    let mut after = snapshot_generation;
    let mut changes = Vec::new();
    for record in records {
        let (at, record) = record.map_err(ReplayError::Store)?;
        let next = record.core.identity.generation;
        if next <= snapshot_generation {
            continue;
        }
        if next != after + 1 {
            return Err(ReplayError::Gap { at, next, after });
        }
        after = next;
        changes.push(record.core);
        if let Some(secrets) = record.secrets {
            state.secrets = secrets;
        }
    }
    state.core.apply_all(changes);
    Ok(())
}

/// One save.
#[derive(Clone, Copy, Debug)]
pub enum Save<'a> {
    /// The whole state.
    Full(&'a PersistedState),
    /// What changed since the previous save (only when the store
    /// [`Store::wants_full`] not).
    Changes(&'a ChangeRecord),
}

/// A place to keep the controller's state.
pub trait Store: Send {
    /// Where the state is, for logs and errors.
    fn describe(&self) -> String;
    /// The last saved state, or `None` for a new cluster.
    fn load(&self) -> Result<Option<PersistedState>, StoreError>;
    /// Whether the next save must be [`Save::Full`]: nothing to append to
    /// yet, or time to compact. The controller also saves in full after any
    /// failed save, whatever the store says.
    fn wants_full(&self) -> bool {
        true
    }
    /// Saves; durable when it returns.
    fn save(&mut self, save: Save<'_>) -> Result<(), StoreError>;
}
