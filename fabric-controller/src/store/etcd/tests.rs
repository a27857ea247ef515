//! The etcd store against a real etcd (Debian's etcd-server): a snapshot in
//! parts and its log read back as the state they stand for, and a deposed
//! leader's save refused, told, and without effect.

use super::*;
use crate::test_support::Cluster;
use fabric_etcd::local::{LocalEtcd, available_for_tests};

const PREFIX: &str = "/fabric/test/";

fn json(state: &PersistedState) -> String {
    serde_json::to_string(&state.core).unwrap()
}

/// A one-member etcd, and a leader elected in it.
fn elected(dir: &std::path::Path) -> (LocalEtcd, BlockingEtcd, Leadership) {
    let members = LocalEtcd::start(dir, 1).expect("start etcd");
    members
        .wait_ready(Duration::from_secs(30))
        .expect("etcd ready");
    let etcd = BlockingEtcd::new(&members.endpoints(), Duration::from_secs(2)).unwrap();
    let leader = etcd
        .call(|etcd| async move {
            let lease = etcd.grant_lease(Duration::from_secs(30)).await?;
            etcd.campaign(b"/fabric/test/leader", lease, b"a", Duration::from_secs(30))
                .await
        })
        .expect("elected");
    (members, etcd, leader)
}

#[test]
fn a_snapshot_in_parts_and_its_log_load_as_the_last_state() {
    if !available_for_tests("etcd store test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (members, _etcd, leader) = elected(dir.path());
    let endpoints = members.endpoints();
    let timeout = Duration::from_secs(2);
    let mut store = EtcdStore::new(&endpoints, timeout, PREFIX, Some(leader), None)
        .unwrap()
        .with_part_bytes(300);
    assert!(store.load().unwrap().is_none(), "a new cluster");
    assert!(store.wants_full());

    let mut c = Cluster::new();
    c.decide(1);
    let first = c.full();
    store.save(Save::Full(&first)).unwrap();
    assert!(!store.wants_full());
    for n in 2..6 {
        c.decide(n);
        let record = c.changes();
        store.save(Save::Changes(&record)).unwrap();
    }
    let reader = EtcdStore::new(&endpoints, timeout, PREFIX, None, None).unwrap();
    let loaded = reader.load().unwrap().expect("a state");
    assert_eq!(json(&loaded), json(&c.whole()));
    assert_eq!(loaded.core.identity.generation, 5);

    // A new snapshot replaces the old one's parts and the log.
    c.decide(6);
    let second = c.full();
    store.save(Save::Full(&second)).unwrap();
    let reader_etcd = BlockingEtcd::new(&endpoints, timeout).unwrap();
    let (kvs, _) = reader_etcd
        .call(|etcd| async move { etcd.get_prefix(b"/fabric/test/state/").await })
        .unwrap();
    let keys: Vec<String> = kvs
        .iter()
        .map(|kv| String::from_utf8_lossy(&kv.key).into_owned())
        .collect();
    assert!(
        keys.iter().all(|k| k.ends_with("/head")
            || k.ends_with("/writer")
            || k.contains(&format!("/snapshot/{}/", generation_key(6)))),
        "only the new snapshot is left: {keys:?}"
    );
    assert!(keys.len() > 3, "in parts: {keys:?}");
    assert_eq!(json(&reader.load().unwrap().unwrap()), json(&c.whole()));

    // A damaged part is found, named and refused.
    let part = format!("/fabric/test/state/snapshot/{}/000001", generation_key(6));
    let leader = store.leader.clone().unwrap();
    reader_etcd
        .call(move |etcd| async move {
            etcd.fenced_txn(&leader, vec![(part.into_bytes(), b"x".to_vec())], vec![])
                .await
        })
        .unwrap();
    let err = reader.load().unwrap_err().to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains("head"),
        "{err}"
    );

    // A missing part is named; so is a header that is not one.
    let part = format!("/fabric/test/state/snapshot/{}/000002", generation_key(6));
    let leader = store.leader.clone().unwrap();
    reader_etcd
        .call(move |etcd| async move {
            etcd.fenced_txn(&leader, vec![], vec![Delete::Key(part.into_bytes())])
                .await
        })
        .unwrap();
    let err = reader.load().unwrap_err().to_string();
    assert!(err.contains("000002") && err.contains("missing"), "{err}");
    let leader = store.leader.clone().unwrap();
    reader_etcd
        .call(move |etcd| async move {
            let head = b"/fabric/test/state/head".to_vec();
            etcd.fenced_txn(&leader, vec![(head, b"not a header".to_vec())], vec![])
                .await
        })
        .unwrap();
    let err = reader.load().unwrap_err().to_string();
    assert!(
        err.contains("head") && err.contains("unreadable header"),
        "{err}"
    );
}

#[test]
fn a_deposed_leaders_save_is_refused_and_it_is_told() {
    if !available_for_tests("etcd store test") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (members, etcd, leader) = elected(dir.path());
    let endpoints = members.endpoints();
    let (told, deposed) = tokio::sync::watch::channel(false);
    let mut store = EtcdStore::new(
        &endpoints,
        Duration::from_secs(2),
        PREFIX,
        Some(leader.clone()),
        Some(told),
    )
    .unwrap()
    .with_part_bytes(300);
    let mut c = Cluster::new();
    c.decide(1);
    let first = c.full();
    store.save(Save::Full(&first)).unwrap();
    let kept = json(&c.whole());

    // Its lease ends (expired while paused, in life): the election key is
    // gone, and so is the right to write.
    let lease = leader.lease;
    etcd.call(move |etcd| async move { etcd.revoke_lease(lease).await })
        .unwrap();
    let revision = || {
        etcd.call(|etcd| async move { etcd.get_prefix(b"/fabric/").await })
            .unwrap()
            .1
    };
    let revoked_at = revision();
    c.decide(2);
    let record = c.changes();
    let err = store.save(Save::Changes(&record)).unwrap_err();
    assert!(matches!(err, StoreError::Deposed), "{err}");
    assert!(*deposed.borrow(), "the replica is told to step down");
    // A whole snapshot in parts: not even a part lands.
    let second = c.full();
    assert!(matches!(
        store.save(Save::Full(&second)),
        Err(StoreError::Deposed)
    ));
    let loaded = EtcdStore::new(&endpoints, Duration::from_secs(2), PREFIX, None, None)
        .unwrap()
        .load()
        .unwrap()
        .unwrap();
    assert_eq!(
        json(&loaded),
        kept,
        "nothing of the deposed leader's landed"
    );
    assert_eq!(
        revision(),
        revoked_at,
        "etcd's revision has not moved since the lease ended: no write of any key"
    );
}
