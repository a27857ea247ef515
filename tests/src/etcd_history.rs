//! Who wrote each revision of a replicated controller's state, read from
//! etcd's own history: the check that no deposed leader wrote.
//!
//! Every leader transaction rewrites `<prefix>state/writer` with its term,
//! and a term is named by the revision its election key (under
//! `<prefix>leader/`) was created at; the leader at a revision is the
//! oldest key in the election then. So for each revision that changed
//! `state/writer`, the writer's term must be the term leading then. The
//! real-process replicas test and the compose chaos suite both ask this.

use std::time::Duration;

/// One leader transaction in etcd's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Write {
    pub revision: i64,
    /// The term the transaction says wrote it.
    pub writer: i64,
    /// The term leading at that revision (`None`: no one was elected).
    pub leading: Option<i64>,
}

impl Write {
    /// A write by a term that was not leading when it landed.
    pub fn is_stale(&self) -> bool {
        self.leading != Some(self.writer)
    }
}

/// Every leader transaction under `prefix` (e.g. `/fabric/a/`) from
/// revision `from` to now, read from `endpoints`.
pub async fn writes_since(
    endpoints: &[String],
    prefix: &str,
    from: i64,
) -> Result<Vec<Write>, String> {
    let etcd = fabric_etcd::Etcd::new(endpoints, Duration::from_secs(2))
        .map_err(|e| format!("etcd {endpoints:?}: {e}"))?;
    let writer_key = format!("{prefix}state/writer");
    let election = format!("{prefix}leader/");
    let (_, now) = etcd
        .get_prefix(prefix.as_bytes())
        .await
        .map_err(|e| format!("etcd read: {e}"))?;
    let mut writes = Vec::new();
    for revision in from.max(1)..=now {
        let history = |e| format!("etcd history at revision {revision}: {e}");
        let writer = etcd
            .get_prefix_at(writer_key.as_bytes(), revision)
            .await
            .map_err(history)?;
        let Some(kv) = writer.into_iter().find(|kv| kv.mod_revision == revision) else {
            continue;
        };
        let text = String::from_utf8_lossy(&kv.value);
        let writer = text
            .parse()
            .map_err(|_| format!("{writer_key} at revision {revision} is {text:?}, not a term"))?;
        let leading = etcd
            .get_prefix_at(election.as_bytes(), revision)
            .await
            .map_err(history)?
            .iter()
            .map(|kv| kv.create_revision)
            .min();
        writes.push(Write {
            revision,
            writer,
            leading,
        });
    }
    Ok(writes)
}
