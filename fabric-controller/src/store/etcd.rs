//! [`EtcdStore`]: the controller's state in etcd, shared by its replicas,
//! and written only by the leader, through fenced transactions.
//!
//! The layout follows [`super::log::LogStore`]'s (a snapshot and a log of
//! what each decision changed) so a save still costs the change. Under the
//! cluster's prefix (`/fabric/<cluster>/` by default):
//!
//! - `state/head`: the snapshot's blob header (below) and its generation;
//! - `state/snapshot/<generation>/<part>`: the snapshot, in parts;
//! - `state/log/<generation>`: one change record each (a blob header, with
//!   the record inline or in `state/log-parts/<generation>/<part>`);
//! - `state/writer`: the term of the leader that wrote last, rewritten by
//!   every transaction, so etcd's history shows which term made each
//!   revision (the chaos tests check that no deposed term ever did).
//!
//! A blob is JSON split in parts of at most [`PART_BYTES`], so that no
//! transaction passes etcd's default request limit (1.5 MiB) or its 128
//! operations, whatever the cluster's size: parts are written first, each in
//! its own fenced transaction, and the header that makes them count last.
//! A reader sees a blob whole or not at all; a snapshot replaces the old one
//! and empties the log in the one transaction that moves `state/head`.
//!
//! **Fenced.** Every transaction compares the leader's election key (see
//! `fabric_etcd`): a deposed leader's save fails with
//! [`StoreError::Deposed`], nothing of it lands, and the store tells its
//! replica to step down.
//!
//! Everything is read in one range at one revision, and checked as a file
//! is: SHA-256 per blob, generations that follow each other by one.

use super::{ChangeRecord, PersistedState, Save, Store, StoreError, sha256_hex};
use fabric_etcd::{BlockingEtcd, Delete, Fenced, Leadership};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

/// The largest part of a blob (etcd refuses requests above 1.5 MiB).
pub const PART_BYTES: usize = 1 << 20;
/// The log is folded into a new snapshot once it is larger than the
/// snapshot and than this.
pub const DEFAULT_COMPACT_BYTES: u64 = 4 << 20;
const MAGIC: &str = "fabric-blob v1";
/// See the module doc.
pub const WRITER: &str = "writer";

/// The controller's state in etcd, as the leader of one term writes it.
pub struct EtcdStore {
    etcd: BlockingEtcd,
    endpoints: String,
    prefix: String,
    /// `None` for a reader (a follower, a test): saves are refused.
    leader: Option<Leadership>,
    /// Told when a save finds this controller deposed.
    deposed: Option<tokio::sync::watch::Sender<bool>>,
    /// Whether a snapshot was written by this store (until then, saves are
    /// whole: the log may hold another term's records).
    snapshot_written: bool,
    log_bytes: u64,
    snapshot_bytes: u64,
    /// [`PART_BYTES`], smaller in tests.
    part_bytes: usize,
}

/// A blob's header, one JSON line (the blob itself follows it when
/// inline): what makes its parts count.
#[derive(Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Header {
    /// [`MAGIC`]: what wrote it.
    format: String,
    len: usize,
    sha256: String,
    parts: usize,
    /// Where the parts are, under `state/`.
    at: String,
}

impl Header {
    fn encode(&self, inline: &[u8]) -> Vec<u8> {
        let mut bytes = serde_json::to_vec(self).expect("a header encodes");
        bytes.push(b'\n');
        bytes.extend_from_slice(inline);
        bytes
    }

    /// The header and what follows it (the blob, when inline).
    fn decode(value: &[u8]) -> Option<(Self, &[u8])> {
        let newline = value.iter().position(|b| *b == b'\n')?;
        let header: Self = serde_json::from_slice(&value[..newline]).ok()?;
        (header.format == MAGIC).then_some((header, &value[newline + 1..]))
    }
}

/// Generations as fixed-width decimal, so key order is generation order.
fn generation_key(generation: u64) -> String {
    format!("{generation:020}")
}

impl EtcdStore {
    /// A store under `prefix` (which should end with `/`), written as
    /// `leader`; `deposed` hears when etcd says this controller no longer
    /// leads.
    pub fn new(
        endpoints: &[String],
        timeout: Duration,
        prefix: &str,
        leader: Option<Leadership>,
        deposed: Option<tokio::sync::watch::Sender<bool>>,
    ) -> Result<Self, StoreError> {
        let etcd = BlockingEtcd::new(endpoints, timeout).map_err(|e| StoreError::Remote {
            place: endpoints.join(","),
            reason: e.to_string(),
        })?;
        Ok(Self {
            etcd,
            endpoints: endpoints.join(","),
            prefix: prefix.to_owned(),
            leader,
            deposed,
            snapshot_written: false,
            log_bytes: 0,
            snapshot_bytes: 0,
            part_bytes: PART_BYTES,
        })
    }

    /// Splits blobs in parts of `bytes` (tests: many parts from a small state).
    pub fn with_part_bytes(mut self, bytes: usize) -> Self {
        self.part_bytes = bytes.max(1);
        self
    }

    fn key(&self, rest: &str) -> Vec<u8> {
        format!("{}state/{rest}", self.prefix).into_bytes()
    }

    fn remote(&self, e: impl std::fmt::Display) -> StoreError {
        StoreError::Remote {
            place: format!("etcd {} under {}", self.endpoints, self.prefix),
            reason: e.to_string(),
        }
    }

    fn corrupt(&self, key: &[u8], reason: impl std::fmt::Display) -> StoreError {
        StoreError::Corrupt {
            path: PathBuf::from(format!(
                "etcd key {}",
                String::from_utf8_lossy(key).into_owned()
            )),
            reason: reason.to_string(),
        }
    }

    /// One fenced transaction; `Deposed` is an error, and is told.
    fn fenced(
        &self,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Delete>,
    ) -> Result<(), StoreError> {
        let Some(leader) = self.leader.clone() else {
            return Err(self.remote("a reader's store cannot write"));
        };
        let mut puts = puts;
        puts.push((self.key(WRITER), leader.revision.to_string().into_bytes()));
        let done = self
            .etcd
            .call(move |etcd| async move { etcd.fenced_txn(&leader, puts, deletes).await })
            .map_err(|e| self.remote(e))?;
        match done {
            Fenced::Written { .. } => Ok(()),
            Fenced::Deposed => {
                if let Some(deposed) = &self.deposed {
                    deposed.send_replace(true);
                }
                Err(StoreError::Deposed)
            }
        }
    }

    /// Writes `bytes` as a blob whose header goes to `header_key` in a last
    /// transaction with `then`; parts go under `parts_prefix` first.
    fn put_blob(
        &self,
        header_key: Vec<u8>,
        parts_prefix: &str,
        bytes: &[u8],
        then: Vec<Delete>,
    ) -> Result<(), StoreError> {
        let sha256 = sha256_hex(bytes);
        let (parts, inline): (Vec<&[u8]>, &[u8]) = if bytes.len() <= self.part_bytes {
            (Vec::new(), bytes)
        } else {
            (bytes.chunks(self.part_bytes).collect(), &[])
        };
        for (i, part) in parts.iter().enumerate() {
            let key = self.key(&format!("{parts_prefix}/{i:06}"));
            self.fenced(vec![(key, part.to_vec())], Vec::new())?;
        }
        let header = Header {
            format: MAGIC.into(),
            len: bytes.len(),
            sha256,
            parts: parts.len(),
            at: parts_prefix.to_owned(),
        };
        self.fenced(vec![(header_key, header.encode(inline))], then)
    }

    /// Reads a blob back from its header's value and the keys read.
    fn get_blob(
        &self,
        header_key: &[u8],
        value: &[u8],
        all: &BTreeMap<Vec<u8>, Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let (header, inline) =
            Header::decode(value).ok_or_else(|| self.corrupt(header_key, "unreadable header"))?;
        let bytes = if header.parts == 0 {
            inline.to_vec()
        } else {
            let mut bytes = Vec::with_capacity(header.len);
            for i in 0..header.parts {
                let key = self.key(&format!("{}/{i:06}", header.at));
                let part = all
                    .get(&key)
                    .ok_or_else(|| self.corrupt(&key, "a part of a written blob is missing"))?;
                bytes.extend_from_slice(part);
            }
            bytes
        };
        if bytes.len() != header.len || sha256_hex(&bytes) != header.sha256 {
            return Err(self.corrupt(header_key, "checksum mismatch"));
        }
        Ok(bytes)
    }

    fn snapshot(&mut self, state: &PersistedState) -> Result<(), StoreError> {
        let generation = generation_key(state.core.identity.generation);
        let bytes = serde_json::to_vec(state).map_err(|e| StoreError::Encode {
            path: PathBuf::from(format!("etcd {}", self.prefix)),
            reason: e.to_string(),
        })?;
        let this = self.key(&format!("snapshot/{generation}/"));
        let all = self.key("snapshot/");
        // Everything under snapshot/ but this one's parts (older
        // snapshots, parts of one a deposed term left half written), and
        // the whole log: the new head holds it all.
        let clear = vec![
            Delete::Range(all.clone(), this.clone()),
            Delete::Range(
                fabric_etcd::client::prefix_end(&this),
                fabric_etcd::client::prefix_end(&all),
            ),
            Delete::Prefix(self.key("log/")),
            Delete::Prefix(self.key("log-parts/")),
        ];
        self.put_blob(
            self.key("head"),
            &format!("snapshot/{generation}"),
            &bytes,
            clear,
        )?;
        self.snapshot_written = true;
        self.snapshot_bytes = bytes.len() as u64;
        self.log_bytes = 0;
        Ok(())
    }

    fn append(&mut self, record: &ChangeRecord) -> Result<(), StoreError> {
        let generation = generation_key(record.core.identity.generation);
        let bytes = serde_json::to_vec(record).map_err(|e| StoreError::Encode {
            path: PathBuf::from(format!("etcd {}", self.prefix)),
            reason: e.to_string(),
        })?;
        self.put_blob(
            self.key(&format!("log/{generation}")),
            &format!("log-parts/{generation}"),
            &bytes,
            Vec::new(),
        )?;
        self.log_bytes += bytes.len() as u64;
        Ok(())
    }
}

impl Store for EtcdStore {
    fn describe(&self) -> String {
        format!("etcd {} under {}state/", self.endpoints, self.prefix)
    }

    fn load(&self) -> Result<Option<PersistedState>, StoreError> {
        let prefix = self.key("");
        let (kvs, _) = self
            .etcd
            .call(move |etcd| async move { etcd.get_prefix(&prefix).await })
            .map_err(|e| self.remote(e))?;
        let all: BTreeMap<Vec<u8>, Vec<u8>> =
            kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
        let log_prefix = self.key("log/");
        let records: Vec<(&Vec<u8>, &Vec<u8>)> = all
            .iter()
            .filter(|(k, _)| k.starts_with(&log_prefix))
            .collect();
        let head_key = self.key("head");
        let Some(head) = all.get(&head_key) else {
            if records.is_empty() {
                return Ok(None);
            }
            return Err(self.corrupt(&head_key, "missing, while the log holds changes"));
        };
        let bytes = self.get_blob(&head_key, head, &all)?;
        let mut state: PersistedState = serde_json::from_slice(&bytes)
            .map_err(|e| self.corrupt(&head_key, format!("unreadable: {e}")))?;
        let records = records.into_iter().map(|(key, value)| {
            let bytes = self.get_blob(key, value, &all)?;
            let record: ChangeRecord = serde_json::from_slice(&bytes)
                .map_err(|e| self.corrupt(key, format!("unreadable: {e}")))?;
            Ok((key, record))
        });
        match super::replay(&mut state, records) {
            Ok(()) => Ok(Some(state)),
            Err(super::ReplayError::Store(e)) => Err(e),
            Err(super::ReplayError::Gap { at, next, after }) => Err(self.corrupt(
                at,
                format!("generation {next} follows {after}: records are missing"),
            )),
        }
    }

    fn wants_full(&self) -> bool {
        !self.snapshot_written || self.log_bytes > DEFAULT_COMPACT_BYTES.max(self.snapshot_bytes)
    }

    fn save(&mut self, save: Save<'_>) -> Result<(), StoreError> {
        match save {
            Save::Full(state) => self.snapshot(state),
            Save::Changes(record) => self.append(record),
        }
    }
}

#[cfg(test)]
mod tests;
