//! Whose orders this host obeys: the newest controller state it acted on.
//!
//! Every heartbeat reply names the cluster its desired set comes from and the
//! generation of that cluster's last save (see `fabric_core::identity`). The
//! host agent remembers the newest it obeyed, in `<state>/obeyed.json` so a
//! restart does not forget, sends it back with every heartbeat, and obeys a
//! desired set only from that cluster (or one that replaced it by an
//! operator's confirmed wipe) at the same or a newer generation. A controller
//! that lost its state, or was restored from an old backup, is thus never
//! obeyed when it says "run nothing": its VMs keep running, and the
//! controller learns from the heartbeat that its state is behind.
//!
//! The memory in the process is always the newest; the file may lag it by
//! up to `sync_every` while the host only keeps running what it runs. It is
//! written before the host acts on a desired set (starts, stops, rotates,
//! moves to other software) or follows another cluster: save before acting.
//! Every controller save raises the generation, and during a deploy the
//! controller saves many times a second: writing the file at every
//! heartbeat was a quarter of the work of 5,000 hollow hosts, and on a real
//! server a file replaced every second for nothing it acted on.
//!
//! The memory guards VMs, so it counts only while the host runs some: a host
//! with no VM has nothing to lose, sends no memory and obeys any controller
//! of its cluster (its certificate binds it to the cluster's name), which
//! then becomes the one it remembers.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The newest controller state obeyed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Obeyed {
    pub cluster_id: String,
    pub generation: u64,
}

/// Whose state a heartbeat reply's desired set comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplyState<'a> {
    pub cluster_id: &'a str,
    pub generation: u64,
    pub replaces: &'a str,
}

/// Why a desired set is not obeyed, in the operator's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Disobey {
    #[error(
        "the controller's state is cluster {theirs}, but this host obeys cluster {ours}: \
         the controller lost its state or belongs elsewhere; keeping every VM running"
    )]
    UnknownCluster { theirs: String, ours: String },
    #[error(
        "the controller's state is generation {theirs}, older than generation {ours} this host \
         already obeyed: it was restored from an old copy; keeping every VM running"
    )]
    OlderGeneration { theirs: u64, ours: u64 },
}

impl Obeyed {
    /// Whether a desired set from `reply` may be obeyed. A controller that
    /// names no cluster (an older one) is obeyed as before identities.
    pub fn check(&self, reply: &ReplyState<'_>) -> Result<(), Disobey> {
        if self.cluster_id.is_empty() || reply.cluster_id.is_empty() {
            return Ok(());
        }
        if reply.cluster_id != self.cluster_id {
            if reply.replaces == self.cluster_id {
                return Ok(());
            }
            return Err(Disobey::UnknownCluster {
                theirs: reply.cluster_id.to_owned(),
                ours: self.cluster_id.clone(),
            });
        }
        if reply.generation < self.generation {
            return Err(Disobey::OlderGeneration {
                theirs: reply.generation,
                ours: self.generation,
            });
        }
        Ok(())
    }
}

/// [`Obeyed`] kept on disk.
pub struct ObeyedFile {
    path: PathBuf,
    sync_every: std::time::Duration,
    memory: Mutex<Memory>,
}

struct Memory {
    /// The newest obeyed, checked against and sent back.
    current: Obeyed,
    /// What the file says.
    on_disk: Obeyed,
    /// When the file was last written by this process.
    written: Option<tokio::time::Instant>,
}

impl ObeyedFile {
    /// Reads `<state_dir>/obeyed.json` (nothing remembered if absent);
    /// `sync_every`: the longest the file may lag the memory while nothing
    /// is acted on.
    pub fn open(state_dir: &Path, sync_every: std::time::Duration) -> anyhow::Result<Self> {
        let path = state_dir.join("obeyed.json");
        let current: Obeyed = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                anyhow::anyhow!(
                    "{} is unreadable ({e}); it says which controller state this host obeys. \
                     Move it aside only if this host should obey any controller of its cluster",
                    path.display()
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Obeyed::default(),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        };
        Ok(Self {
            path,
            sync_every,
            memory: Mutex::new(Memory {
                on_disk: current.clone(),
                current,
                written: None,
            }),
        })
    }

    fn memory(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The newest controller state obeyed.
    pub fn get(&self) -> Obeyed {
        self.memory().current.clone()
    }

    /// Checks a reply's state against the memory (only while the host runs
    /// VMs) and remembers it. `acting`: the host is about to act on the
    /// reply (a desired set listed, or software named), so the file is
    /// written first. A failed write keeps the old memory and is logged: the
    /// reply is still obeyed, as a host that cannot write its state
    /// directory still runs its VMs.
    pub fn obey(
        &self,
        reply: &ReplyState<'_>,
        runs_vms: bool,
        acting: bool,
    ) -> Result<(), Disobey> {
        let mut memory = self.memory();
        if runs_vms {
            memory.current.check(reply)?;
        }
        if reply.cluster_id.is_empty() {
            return Ok(());
        }
        let next = Obeyed {
            cluster_id: reply.cluster_id.to_owned(),
            generation: reply.generation,
        };
        let due = acting
            || next.cluster_id != memory.on_disk.cluster_id
            || memory
                .written
                .is_none_or(|t| t.elapsed() >= self.sync_every);
        if next != memory.on_disk && due {
            let text = serde_json::to_vec(&next).expect("plain data serializes");
            if let Err(e) = fabric_daemon::files::write_atomically(&self.path, text) {
                // Obeying without remembering would let an older state be
                // obeyed after a restart; keep the old memory and say so.
                tracing::error!(path = %self.path.display(), "cannot remember the controller state obeyed: {e}");
                return Ok(());
            }
            memory.on_disk = next.clone();
            memory.written = Some(tokio::time::Instant::now());
        }
        memory.current = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    impl ObeyedFile {
        fn obey_vms(&self, reply: &ReplyState<'_>) -> Result<(), Disobey> {
            self.obey(reply, true, true)
        }

        /// What `<state>/obeyed.json` says now.
        fn on_disk(&self) -> Obeyed {
            self.memory().on_disk.clone()
        }
    }

    fn reply<'a>(id: &'a str, generation: u64, replaces: &'a str) -> ReplyState<'a> {
        ReplyState {
            cluster_id: id,
            generation,
            replaces,
        }
    }

    #[test]
    fn only_the_remembered_cluster_at_a_newer_generation_is_obeyed() {
        let dir = tempfile::tempdir().unwrap();
        let file = ObeyedFile::open(dir.path(), Duration::from_secs(10)).unwrap();
        file.obey_vms(&reply("a", 5, "")).unwrap();
        file.obey_vms(&reply("a", 7, "")).unwrap();
        assert!(matches!(
            file.obey_vms(&reply("a", 6, "")),
            Err(Disobey::OlderGeneration { theirs: 6, ours: 7 })
        ));
        assert!(matches!(
            file.obey_vms(&reply("b", 100, "")),
            Err(Disobey::UnknownCluster { .. })
        ));
        // An operator's confirmed wipe: b replaces a.
        file.obey_vms(&reply("b", 8, "a")).unwrap();
        // Remembered across a restart.
        let again = ObeyedFile::open(dir.path(), Duration::from_secs(10)).unwrap();
        assert_eq!(
            again.get(),
            Obeyed {
                cluster_id: "b".into(),
                generation: 8
            }
        );
        assert!(again.obey_vms(&reply("a", 9, "")).is_err());
        // A host with no VM has nothing to guard: it follows a new cluster.
        again.obey(&reply("c", 1, ""), false, true).unwrap();
        assert_eq!(again.get().cluster_id, "c");
    }

    #[test]
    fn the_file_lags_only_while_nothing_is_acted_on() {
        let dir = tempfile::tempdir().unwrap();
        let file = ObeyedFile::open(dir.path(), Duration::from_secs(3600)).unwrap();
        let at = |g| Obeyed {
            cluster_id: "a".into(),
            generation: g,
        };
        file.obey(&reply("a", 5, ""), true, false).unwrap();
        assert_eq!(file.on_disk(), at(5), "the first is written at once");
        // Newer generations, nothing acted on: remembered in memory (and
        // checked against), not written yet.
        file.obey(&reply("a", 9, ""), true, false).unwrap();
        assert_eq!((file.get(), file.on_disk()), (at(9), at(5)));
        assert!(file.obey(&reply("a", 8, ""), true, false).is_err());
        // Acting: written first.
        file.obey(&reply("a", 10, ""), true, true).unwrap();
        assert_eq!(file.on_disk(), at(10));
        let again = ObeyedFile::open(dir.path(), Duration::from_secs(3600)).unwrap();
        assert_eq!(again.get(), at(10));
        // And at most sync_every behind while nothing is acted on.
        let file = ObeyedFile::open(dir.path(), Duration::ZERO).unwrap();
        file.obey(&reply("a", 11, ""), true, false).unwrap();
        assert_eq!(file.on_disk(), at(11));
    }

    #[test]
    fn a_memory_that_cannot_be_written_is_not_advanced() {
        let dir = tempfile::tempdir().unwrap();
        let file = ObeyedFile::open(dir.path(), Duration::from_secs(3600)).unwrap();
        file.obey_vms(&reply("a", 5, "")).unwrap();
        // The file's place taken by a directory: the write fails.
        std::fs::remove_file(dir.path().join("obeyed.json")).unwrap();
        std::fs::create_dir(dir.path().join("obeyed.json")).unwrap();
        // Obeyed all the same (the host keeps running its VMs), but the
        // memory stays at what is known to be on disk.
        file.obey_vms(&reply("a", 7, "")).unwrap();
        assert_eq!(file.get().generation, 5);
        assert_eq!(file.on_disk().generation, 5);
    }

    #[test]
    fn an_unreadable_memory_is_refused_not_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("obeyed.json"), "{not json").unwrap();
        let err = ObeyedFile::open(dir.path(), Duration::from_secs(10))
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("obeyed.json is unreadable"), "{err}");
    }
}
