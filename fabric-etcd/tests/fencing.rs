//! Fencing against a real etcd (Debian's etcd-server): a leader that was
//! paused past its lease (SIGSTOP, a long pause, a partition) and wakes up
//! believing it still leads has its write refused by etcd, not landed;
//! the leader elected meanwhile writes.
//!
//! Without an etcd binary the test fails if CI=true and is skipped, loudly,
//! otherwise (scripts/test.sh installs etcd-server).

use fabric_etcd::local::{LocalEtcd, available_for_tests};
use fabric_etcd::{Delete, Etcd, Fenced};
use std::time::{Duration, Instant};

const STATE: &[u8] = b"/fabric/test/data/state";
const OTHER: &[u8] = b"/fabric/test/data/other";
const ELECTION: &[u8] = b"/fabric/test/leader";

fn put(value: &str) -> Vec<(Vec<u8>, Vec<u8>)> {
    vec![(STATE.to_vec(), value.as_bytes().to_vec())]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leaders_write_is_refused_by_etcd() {
    if !available_for_tests("etcd fencing test") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let members = LocalEtcd::start(dir.path(), 1).expect("start etcd");
    let etcd = Etcd::new(&members.endpoints(), Duration::from_secs(2)).expect("endpoints");

    tokio::task::block_in_place(|| members.wait_ready(Duration::from_secs(30)))
        .unwrap_or_else(|e| panic!("{e} (log in {:?})", dir.path()));
    let a_lease = etcd
        .grant_lease(Duration::from_secs(2))
        .await
        .expect("a lease");
    // Nobody has campaigned yet: etcd's "no leader" is an answer, not an
    // error.
    assert_eq!(etcd.leader(ELECTION).await.expect("leader"), None);
    let a = etcd
        .campaign(ELECTION, a_lease, b"controller-a", Duration::from_secs(60))
        .await
        .expect("a campaigns alone and leads");
    let mut first = put("by a");
    first.push((OTHER.to_vec(), b"also by a".to_vec()));
    assert!(matches!(
        etcd.fenced_txn(&a, first, Vec::new()).await.expect("txn"),
        Fenced::Written { .. }
    ));

    // b campaigns: it waits while a leads. a is then "paused": it stops
    // renewing its 2 s lease, etcd expires it, and b leads.
    let b_lease = etcd
        .grant_lease(Duration::from_secs(60))
        .await
        .expect("lease");
    let campaign = {
        let etcd = etcd.clone();
        tokio::spawn(async move {
            etcd.campaign(ELECTION, b_lease, b"controller-b", Duration::from_secs(60))
                .await
        })
    };
    let paused = Instant::now();
    let b = tokio::time::timeout(Duration::from_secs(20), campaign)
        .await
        .expect("b leads once a's lease expires")
        .expect("campaign task")
        .expect("campaign");
    eprintln!(
        "b elected {:.1}s after a stopped renewing its 2 s lease",
        paused.elapsed().as_secs_f64()
    );
    assert_ne!(a.key, b.key);
    assert!(b.revision > a.revision);
    assert_eq!(
        etcd.keep_alive_once(a.lease).await.expect("keep-alive"),
        None,
        "a's lease is gone"
    );

    // a wakes up and writes as if it still led: etcd refuses all of it.
    assert_eq!(
        etcd.fenced_txn(&a, put("by a, deposed"), vec![Delete::Key(OTHER.to_vec())])
            .await
            .expect("txn"),
        Fenced::Deposed
    );
    let (kvs, _) = etcd.get_prefix(b"/fabric/test/data/").await.expect("read");
    let values: Vec<(&[u8], &[u8])> = kvs
        .iter()
        .map(|kv| (kv.key.as_slice(), kv.value.as_slice()))
        .collect();
    assert_eq!(
        values,
        [
            (OTHER, b"also by a".as_slice()),
            (STATE, b"by a".as_slice())
        ],
        "neither the deposed leader's put nor its delete landed"
    );
    assert!(
        kvs.iter().all(|kv| kv.mod_revision < b.revision),
        "last written before b was elected: nothing of a's since"
    );

    // b writes, and is who observers see leading.
    let Fenced::Written { revision } = etcd
        .fenced_txn(&b, put("by b"), Vec::new())
        .await
        .expect("txn")
    else {
        panic!("the leader's write was refused");
    };
    assert!(revision > b.revision);
    let (kvs, _) = etcd.get_prefix(STATE).await.expect("read");
    assert_eq!(kvs[0].value, b"by b".as_slice());
    assert_eq!(
        etcd.leader(ELECTION).await.expect("leader"),
        Some(b"controller-b".to_vec())
    );
}
