//! etcd, as Fabric's controller uses it: the store a redundant controller's
//! replicas share, and the election that picks the one that acts.
//!
//! Consensus is etcd's (Raft); this crate does not add any. It holds:
//!
//! - [`pb`]: etcd's v3 gRPC API, generated from the protos in `proto/`
//!   (compiled without `protoc`, see `build.rs`);
//! - [`Etcd`]: a connection to a cluster's members, with the few calls the
//!   controller makes: leases, the Election service's campaign, reads of a
//!   key prefix, and [`Etcd::fenced_txn`], the one way a leader writes;
//! - [`BlockingEtcd`]: the same calls for synchronous code (the
//!   controller's store);
//! - [`local`]: a local cluster of real `etcd` processes (tests, laptops).
//!
//! **Fencing.** Jepsen found etcd 3.4's key-value operations and
//! transactions strict serializable, and its locks unsafe on their own: a
//! leader paused past its lease (SIGSTOP, a long GC, a partition) wakes up
//! believing it still leads while another has been elected. So no write is
//! made on belief: every write is a transaction whose guard compares the
//! leader's election key, still existing at the revision it was created
//! with. Once the lease has expired the key is gone (or another's), the
//! guard fails, and etcd refuses the write: a deposed leader's write fails
//! rather than lands.

pub mod blocking;
pub mod client;
pub mod local;

pub use blocking::BlockingEtcd;
pub use client::{Delete, Etcd, EtcdError, Fenced, KeyValue, Leadership};

/// etcd's v3 API, generated.
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod pb {
    /// Key-values as stored (`mvccpb`).
    pub mod mvccpb {
        tonic::include_proto!("mvccpb");
    }
    /// Users and roles (`authpb`), imported by the KV API.
    pub mod authpb {
        tonic::include_proto!("authpb");
    }
    /// KV, Lease, Watch and the rest (`etcdserverpb`).
    pub mod etcdserverpb {
        tonic::include_proto!("etcdserverpb");
    }
    /// The Election service (`v3electionpb`).
    pub mod v3electionpb {
        tonic::include_proto!("v3electionpb");
    }
}
