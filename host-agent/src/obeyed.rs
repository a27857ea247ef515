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
    current: Mutex<Obeyed>,
}

impl ObeyedFile {
    /// Reads `<state_dir>/obeyed.json`; a missing file is a host that has
    /// obeyed no one yet. An unreadable one is refused: forgetting it would
    /// be exactly the silent wipe this file prevents.
    pub fn open(state_dir: &Path) -> anyhow::Result<Self> {
        let path = state_dir.join("obeyed.json");
        let current = match std::fs::read(&path) {
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
            current: Mutex::new(current),
        })
    }

    pub fn get(&self) -> Obeyed {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Checks `reply` (unless this host runs no VM: see the module doc);
    /// when it may be obeyed, remembers it (on disk first).
    pub fn obey(&self, reply: &ReplyState<'_>, runs_vms: bool) -> Result<(), Disobey> {
        let mut current = self.current.lock().unwrap_or_else(|e| e.into_inner());
        if runs_vms {
            current.check(reply)?;
        }
        if reply.cluster_id.is_empty() {
            return Ok(());
        }
        let next = Obeyed {
            cluster_id: reply.cluster_id.to_owned(),
            generation: reply.generation,
        };
        if next != *current {
            let text = serde_json::to_vec(&next).expect("plain data serializes");
            if let Err(e) = fabric_daemon::files::write_atomically(&self.path, text) {
                // Obeying without remembering would let an older state be
                // obeyed after a restart; keep the old memory and say so.
                tracing::error!(path = %self.path.display(), "cannot remember the controller state obeyed: {e}");
                return Ok(());
            }
            *current = next;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ObeyedFile {
        fn obey_vms(&self, reply: &ReplyState<'_>) -> Result<(), Disobey> {
            self.obey(reply, true)
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
        let file = ObeyedFile::open(dir.path()).unwrap();
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
        let again = ObeyedFile::open(dir.path()).unwrap();
        assert_eq!(
            again.get(),
            Obeyed {
                cluster_id: "b".into(),
                generation: 8
            }
        );
        assert!(again.obey_vms(&reply("a", 9, "")).is_err());
        // A host with no VM has nothing to guard: it follows a new cluster.
        again.obey(&reply("c", 1, ""), false).unwrap();
        assert_eq!(again.get().cluster_id, "c");
    }

    #[test]
    fn an_unreadable_memory_is_refused_not_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("obeyed.json"), "{not json").unwrap();
        let err = ObeyedFile::open(dir.path()).err().unwrap().to_string();
        assert!(err.contains("obeyed.json is unreadable"), "{err}");
    }
}
