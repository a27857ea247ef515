//! A connection to an etcd cluster and the calls the controller makes.
//!
//! Members are tried in order: a call that cannot reach one member goes to
//! the next, so one member down (or being restarted) costs a retry, not an
//! error. etcd itself forwards writes to its Raft leader.

use crate::pb::etcdserverpb as rpc;
use crate::pb::etcdserverpb::compare::{CompareResult, CompareTarget, TargetUnion};
use crate::pb::etcdserverpb::request_op::Request as Op;
use crate::pb::v3electionpb as election;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Why a call to etcd failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    #[error("etcd endpoint {endpoint:?}: {reason}")]
    Endpoint { endpoint: String, reason: String },
    #[error("no etcd member answered ({tried}): {last}")]
    Unreachable { tried: String, last: String },
    #[error("etcd refused {call}: {status}")]
    Refused { call: &'static str, status: String },
}

/// A key and its value as read, with the revision that last changed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub mod_revision: i64,
    pub create_revision: i64,
}

impl From<crate::pb::mvccpb::KeyValue> for KeyValue {
    fn from(kv: crate::pb::mvccpb::KeyValue) -> Self {
        Self {
            key: kv.key,
            value: kv.value,
            mod_revision: kv.mod_revision,
            create_revision: kv.create_revision,
        }
    }
}

/// A won election: the key etcd created for this candidate (under the
/// election's name, bound to its lease) and the revision it was created at.
/// Its existence at that revision is what every fenced write checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Leadership {
    pub name: Vec<u8>,
    pub key: Vec<u8>,
    pub revision: i64,
    pub lease: i64,
}

/// A deletion in a fenced transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Delete {
    /// One key.
    Key(Vec<u8>),
    /// Every key starting with these bytes.
    Prefix(Vec<u8>),
    /// Every key from the first (inclusive) to the second (exclusive).
    Range(Vec<u8>, Vec<u8>),
}

impl Delete {
    fn range(self) -> (Vec<u8>, Vec<u8>) {
        match self {
            Delete::Key(key) => (key, Vec::new()),
            Delete::Prefix(prefix) => {
                let end = prefix_end(&prefix);
                (prefix, end)
            }
            Delete::Range(from, to) => (from, to),
        }
    }
}

/// The largest answer read from etcd (a snapshot's parts are read in one
/// range): tonic's default of 4 MiB is below a large cluster's state.
const MAX_ANSWER_BYTES: usize = 1 << 30;

/// What a fenced transaction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fenced {
    /// Still the leader: every write landed, at this revision.
    Written { revision: i64 },
    /// No longer the leader (the election key is gone or another's):
    /// nothing was written.
    Deposed,
}

/// A connection to one etcd cluster.
#[derive(Clone)]
pub struct Etcd {
    members: Vec<(String, Channel)>,
    timeout: Duration,
    /// The member that answered last: calls start there, so a member that
    /// is down, paused or cut off costs one timeout, not one per call.
    preferred: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Etcd {
    /// Members as `host:port` or `http://host:port`; `timeout` bounds each
    /// call to one member (a campaign waits as long as it takes). Connects
    /// lazily: an unreachable member is an error at its first call.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Endpoint {
                endpoint: String::new(),
                reason: "no etcd endpoint given".into(),
            });
        }
        let members = endpoints
            .iter()
            .map(|e| {
                let url = if e.contains("://") {
                    e.clone()
                } else {
                    format!("http://{e}")
                };
                let endpoint = Endpoint::from_shared(url).map_err(|err| EtcdError::Endpoint {
                    endpoint: e.clone(),
                    reason: err.to_string(),
                })?;
                let channel = endpoint
                    .connect_timeout(timeout)
                    .tcp_nodelay(true)
                    .connect_lazy();
                Ok((e.clone(), channel))
            })
            .collect::<Result<_, EtcdError>>()?;
        Ok(Self {
            members,
            timeout,
            preferred: Default::default(),
        })
    }

    /// `call` on each member in turn until one answers; a member that is
    /// down or unreachable is skipped, any other refusal is final.
    async fn each_member<T, F, Fut>(&self, name: &'static str, call: F) -> Result<T, EtcdError>
    where
        F: Fn(Channel) -> Fut,
        Fut: std::future::Future<Output = Result<T, tonic::Status>>,
    {
        let mut last = String::new();
        let first = self.preferred.load(std::sync::atomic::Ordering::Relaxed);
        let count = self.members.len();
        for i in (first..first + count).map(|i| i % count) {
            let (endpoint, channel) = &self.members[i];
            match call(channel.clone()).await {
                Ok(answer) => {
                    self.preferred
                        .store(i, std::sync::atomic::Ordering::Relaxed);
                    return Ok(answer);
                }
                Err(s) if member_could_not_answer(&s) => {
                    last = format!("{endpoint}: {}", s.message());
                }
                Err(s) => {
                    return Err(EtcdError::Refused {
                        call: name,
                        status: format!("{:?}: {}", s.code(), s.message()),
                    });
                }
            }
        }
        Err(EtcdError::Unreachable {
            tried: self
                .members
                .iter()
                .map(|(e, _)| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            last,
        })
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.timeout);
        request
    }

    /// A lease of `ttl` (whole seconds, at least 1): its keys vanish when it
    /// is neither kept alive nor revoked for that long.
    pub async fn grant_lease(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let ttl = ttl.as_secs().max(1) as i64;
        let granted = self
            .each_member("LeaseGrant", |c| async move {
                rpc::lease_client::LeaseClient::new(c)
                    .lease_grant(self.request(rpc::LeaseGrantRequest { ttl, id: 0 }))
                    .await
            })
            .await?
            .into_inner();
        if !granted.error.is_empty() {
            return Err(EtcdError::Refused {
                call: "LeaseGrant",
                status: granted.error,
            });
        }
        Ok(granted.id)
    }

    /// Renews `lease` once; `Ok(None)` if etcd no longer knows it (expired
    /// or revoked), else the seconds it has left.
    pub async fn keep_alive_once(&self, lease: i64) -> Result<Option<i64>, EtcdError> {
        let answer = self
            .each_member("LeaseKeepAlive", |c| async move {
                // A stream: bounded as a whole (a member without a majority
                // never answers).
                let once = async move {
                    let mut client = rpc::lease_client::LeaseClient::new(c);
                    let request = tokio_stream::once(rpc::LeaseKeepAliveRequest { id: lease });
                    let mut replies = client.lease_keep_alive(request).await?.into_inner();
                    replies.message().await
                };
                tokio::time::timeout(self.timeout, once)
                    .await
                    .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no answer")))
            })
            .await?;
        Ok(answer.filter(|r| r.ttl > 0).map(|r| r.ttl))
    }

    /// Ends `lease` at once: its keys (an election key) are deleted.
    pub async fn revoke_lease(&self, lease: i64) -> Result<(), EtcdError> {
        self.each_member("LeaseRevoke", |c| async move {
            rpc::lease_client::LeaseClient::new(c)
                .lease_revoke(self.request(rpc::LeaseRevokeRequest { id: lease }))
                .await
        })
        .await
        .map(|_| ())
    }

    /// Campaigns in election `name` under `lease` and returns once this
    /// candidate leads (etcd's Election service: the oldest live key under
    /// the name leads). `value` is what observers read as the leader's
    /// (the controller puts its endpoint there).
    ///
    /// One member is asked (the one that answered last), for at most
    /// `wait`: a member that is paused or cut off would otherwise hold the
    /// campaign forever. If it cannot answer in time, the next member is
    /// the one asked next time, and the error is `Unreachable`: the caller
    /// must then campaign under a **new lease**. The given-up campaign's
    /// key is named after its lease, and etcd deletes it when it notices
    /// the call was abandoned, maybe later: under the same lease, that
    /// deletion could remove the key of the campaign that replaced it, and
    /// with it the leadership it won.
    pub async fn campaign(
        &self,
        name: &[u8],
        lease: i64,
        value: &[u8],
        wait: Duration,
    ) -> Result<Leadership, EtcdError> {
        let i = self.preferred.load(std::sync::atomic::Ordering::Relaxed) % self.members.len();
        let (endpoint, channel) = &self.members[i];
        let mut request = tonic::Request::new(election::CampaignRequest {
            name: name.to_vec(),
            lease,
            value: value.to_vec(),
        });
        request.set_timeout(wait);
        let answered = election::election_client::ElectionClient::new(channel.clone())
            .campaign(request)
            .await;
        let won = match answered {
            Ok(won) => won.into_inner(),
            Err(s) if member_could_not_answer(&s) => {
                self.preferred.store(
                    (i + 1) % self.members.len(),
                    std::sync::atomic::Ordering::Relaxed,
                );
                return Err(EtcdError::Unreachable {
                    tried: endpoint.clone(),
                    last: s.message().to_owned(),
                });
            }
            Err(s) => {
                return Err(EtcdError::Refused {
                    call: "Campaign",
                    status: format!("{:?}: {}", s.code(), s.message()),
                });
            }
        };
        let leader = won.leader.ok_or(EtcdError::Refused {
            call: "Campaign",
            status: "no leader key in the reply".into(),
        })?;
        Ok(Leadership {
            name: leader.name,
            key: leader.key,
            revision: leader.rev,
            lease: leader.lease,
        })
    }

    /// The current leader's value in election `name`, if any.
    pub async fn leader(&self, name: &[u8]) -> Result<Option<Vec<u8>>, EtcdError> {
        let answer = self
            .each_member("Leader", |c| async move {
                election::election_client::ElectionClient::new(c)
                    .leader(self.request(election::LeaderRequest {
                        name: name.to_vec(),
                    }))
                    .await
            })
            .await;
        match answer {
            Ok(r) => Ok(r.into_inner().kv.map(|kv| kv.value)),
            // etcd answers "election: no leader" as an error.
            Err(EtcdError::Refused { status, .. }) if status.contains("no leader") => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every key under `prefix`, in key order, and the store's revision at
    /// the read.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        self.range(prefix, 0).await
    }

    /// Every key under `prefix` at `revision` (0: the latest), and the
    /// store's revision at the read.
    async fn range(&self, prefix: &[u8], revision: i64) -> Result<(Vec<KeyValue>, i64), EtcdError> {
        let answer = self
            .each_member("Range", |c| async move {
                rpc::kv_client::KvClient::new(c)
                    .max_decoding_message_size(MAX_ANSWER_BYTES)
                    .range(self.request(rpc::RangeRequest {
                        key: prefix.to_vec(),
                        range_end: prefix_end(prefix),
                        revision,
                        ..Default::default()
                    }))
                    .await
            })
            .await?
            .into_inner();
        let at = answer.header.map_or(0, |h| h.revision);
        Ok((answer.kvs.into_iter().map(KeyValue::from).collect(), at))
    }

    /// A plain, unfenced put: etcd's own write cost, the baseline the
    /// benchmarks set the controller's fenced writes beside. The controller
    /// itself never writes this way.
    pub async fn put(&self, key: &[u8], value: &[u8]) -> Result<i64, EtcdError> {
        let answer = self
            .each_member("Put", |c| async move {
                rpc::kv_client::KvClient::new(c)
                    .put(self.request(rpc::PutRequest {
                        key: key.to_vec(),
                        value: value.to_vec(),
                        ..Default::default()
                    }))
                    .await
            })
            .await?
            .into_inner();
        Ok(answer.header.map_or(0, |h| h.revision))
    }

    /// Every key under `prefix` as it was at `revision` (etcd keeps
    /// history until compacted): how a test reads back who led and who
    /// wrote, revision by revision.
    pub async fn get_prefix_at(
        &self,
        prefix: &[u8],
        revision: i64,
    ) -> Result<Vec<KeyValue>, EtcdError> {
        Ok(self.range(prefix, revision).await?.0)
    }

    /// Writes `puts` and makes `deletes` in one transaction, if and only
    /// if `leader`'s election key still exists as created: the only way the
    /// controller writes (see the crate doc). Puts come first, so a delete
    /// range may clear what is left around them.
    pub async fn fenced_txn(
        &self,
        leader: &Leadership,
        puts: Vec<(Vec<u8>, Vec<u8>)>,
        deletes: Vec<Delete>,
    ) -> Result<Fenced, EtcdError> {
        let guard = rpc::Compare {
            result: CompareResult::Equal as i32,
            target: CompareTarget::Create as i32,
            key: leader.key.clone(),
            range_end: Vec::new(),
            target_union: Some(TargetUnion::CreateRevision(leader.revision)),
        };
        let success: Vec<rpc::RequestOp> = puts
            .into_iter()
            .map(|(key, value)| rpc::RequestOp {
                request: Some(Op::RequestPut(rpc::PutRequest {
                    key,
                    value,
                    ..Default::default()
                })),
            })
            .chain(deletes.into_iter().map(|delete| {
                let (key, range_end) = delete.range();
                rpc::RequestOp {
                    request: Some(Op::RequestDeleteRange(rpc::DeleteRangeRequest {
                        key,
                        range_end,
                        ..Default::default()
                    })),
                }
            }))
            .collect();
        let txn = rpc::TxnRequest {
            compare: vec![guard],
            success,
            failure: Vec::new(),
        };
        let answer = self
            .each_member("Txn", |c| {
                let txn = txn.clone();
                async move {
                    rpc::kv_client::KvClient::new(c)
                        .txn(self.request(txn))
                        .await
                }
            })
            .await?
            .into_inner();
        Ok(if answer.succeeded {
            Fenced::Written {
                revision: answer.header.map_or(0, |h| h.revision),
            }
        } else {
            Fenced::Deposed
        })
    }
}

/// Whether a failed call means the member could not answer (down, or too
/// slow: tonic's own timeout comes as Cancelled), so another may. etcd's
/// refusals often come as Unknown ("election: no leader"): they are
/// answers, the same from every member.
fn member_could_not_answer(status: &tonic::Status) -> bool {
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::DeadlineExceeded | tonic::Code::Cancelled
    )
}

/// The end of the range holding every key that starts with `prefix`: the
/// prefix with its last byte below 0xff incremented (etcd's convention).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (or empty): every key from the prefix on.
    vec![0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_covers_exactly_the_prefix() {
        assert_eq!(prefix_end(b"/fabric/a/"), b"/fabric/a0".to_vec());
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[test]
    fn no_endpoint_is_refused_in_words() {
        let err = Etcd::new(&[], Duration::from_secs(1))
            .err()
            .expect("refused");
        assert!(err.to_string().contains("no etcd endpoint"), "{err}");
    }
}
