//! The log store under crashes at every write point and damaged files.

use super::*;
use crate::test_support::Cluster;

fn json(state: &PersistedState) -> String {
    serde_json::to_string(&state.core).unwrap()
}

fn loaded(dir: &Path) -> PersistedState {
    LogStore::new(dir)
        .unwrap()
        .load()
        .unwrap()
        .expect("a state")
}

#[test]
fn a_snapshot_and_its_changes_load_as_the_last_state_and_compaction_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = LogStore::new(dir.path()).unwrap();
    assert!(store.load().unwrap().is_none(), "a new cluster");
    assert!(store.wants_full(), "nothing to append to yet");
    let mut c = Cluster::new();
    store.save(Save::Full(&c.full())).unwrap();
    assert!(!store.wants_full());
    for n in 1..=5 {
        c.decide(n);
        store.save(Save::Changes(&c.changes())).unwrap();
    }
    assert_eq!(json(&loaded(dir.path())), json(&c.whole()));
    let log = std::fs::metadata(store.log_path()).unwrap().len();
    assert!(log > 0);

    // A reopened store compacts first: the log is emptied, nothing lost.
    let mut store = LogStore::new(dir.path()).unwrap();
    assert!(store.wants_full());
    c.decide(6);
    store.save(Save::Full(&c.full())).unwrap();
    assert_eq!(std::fs::metadata(store.log_path()).unwrap().len(), 0);
    assert_eq!(json(&loaded(dir.path())), json(&c.whole()));

    // Past the threshold the store asks for a compaction.
    let mut store = LogStore::new(dir.path()).unwrap().with_compaction(0);
    store.save(Save::Full(&c.full())).unwrap();
    let mut n = 7;
    while store.log_bytes <= store.snapshot_bytes {
        assert!(
            !store.wants_full(),
            "the log is still smaller than the snapshot"
        );
        c.decide(n);
        store.save(Save::Changes(&c.changes())).unwrap();
        n += 1;
    }
    assert!(store.wants_full(), "the log outgrew the snapshot");
}

/// A crash after any number of bytes of a record: the record's save never
/// returned, so the state is the one before it; the whole record: the one
/// after it.
#[test]
fn a_crash_at_every_byte_of_a_record_loads_the_state_before_or_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new();
    let mut store = LogStore::new(dir.path()).unwrap();
    store.save(Save::Full(&c.full())).unwrap();
    c.decide(1);
    store.save(Save::Changes(&c.changes())).unwrap();
    let before = json(&c.whole());
    let log_before = std::fs::read(store.log_path()).unwrap();
    c.decide(2);
    let record = c.changes();
    let len = {
        let body = serde_json::to_vec(&record).unwrap();
        format!("{MAGIC} len={} sha256={}\n", body.len(), sha256_hex(&body)).len() + body.len() + 1
    };
    let after = json(&c.whole());
    for n in 0..=len {
        std::fs::write(store.log_path(), &log_before).unwrap();
        let mut crashing = LogStore::new(dir.path()).unwrap();
        crashing.log = Some(
            OpenOptions::new()
                .append(true)
                .open(crashing.log_path())
                .unwrap(),
        );
        crashing.crash_at = (n < len).then_some(CrashPoint::InRecord(n));
        let result = crashing.save(Save::Changes(&record));
        assert_eq!(result.is_ok(), n == len, "at byte {n}");
        let state = json(&loaded(dir.path()));
        if n == len {
            assert_eq!(state, after, "the whole record");
        } else {
            assert_eq!(state, before, "crash after {n} of {len} bytes");
        }
    }
}

/// A crash between a compaction's new snapshot and the emptied log: the old
/// records are older than the snapshot and skipped.
#[test]
fn a_crash_inside_a_compaction_loads_the_new_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new();
    let mut store = LogStore::new(dir.path()).unwrap();
    store.save(Save::Full(&c.full())).unwrap();
    for n in 1..=3 {
        c.decide(n);
        store.save(Save::Changes(&c.changes())).unwrap();
    }
    c.decide(4);
    store.crash_at = Some(CrashPoint::AfterSnapshot);
    assert!(store.save(Save::Full(&c.full())).is_err());
    assert!(
        std::fs::metadata(store.log_path()).unwrap().len() > 0,
        "old records left"
    );
    assert_eq!(json(&loaded(dir.path())), json(&c.whole()));
}

#[test]
fn damage_other_than_a_torn_tail_is_refused_naming_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Cluster::new();
    let mut store = LogStore::new(dir.path()).unwrap();
    store.save(Save::Full(&c.full())).unwrap();
    for n in 1..=2 {
        c.decide(n);
        store.save(Save::Changes(&c.changes())).unwrap();
    }
    let good = std::fs::read(store.log_path()).unwrap();
    let first_end = good.iter().position(|b| *b == b'\n').unwrap() + 40;

    // A flipped byte inside the first (complete) record.
    let mut flipped = good.clone();
    flipped[first_end] ^= 1;
    std::fs::write(store.log_path(), &flipped).unwrap();
    let err = LogStore::new(dir.path())
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains(LOG_FILE) && err.contains("byte 0"), "{err}");
    assert!(err.contains("corrupt or truncated"), "{err}");

    // A missing record: the second without the first.
    let second = good
        .windows(MAGIC.len())
        .rposition(|w| w == MAGIC.as_bytes())
        .unwrap();
    std::fs::write(store.log_path(), &good[second..]).unwrap();
    let err = LogStore::new(dir.path())
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("records are missing"), "{err}");

    // Zeros after the last record (a file extended, never written): torn.
    let mut zeros = good.clone();
    zeros.extend(std::iter::repeat_n(0u8, 300));
    std::fs::write(store.log_path(), &zeros).unwrap();
    assert_eq!(json(&loaded(dir.path())), json(&c.whole()));

    // A log without its snapshot.
    std::fs::write(store.log_path(), &good).unwrap();
    std::fs::remove_file(store.path()).unwrap();
    let err = LogStore::new(dir.path())
        .unwrap()
        .load()
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing, while"), "{err}");
}
