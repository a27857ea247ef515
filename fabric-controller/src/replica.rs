//! A controller replica: one of N controllers of a cluster sharing its state
//! in etcd, of which one, the leader, acts.
//!
//! Each replica holds an etcd lease, renewed every `retry_period`, and
//! campaigns under it in the cluster's election (etcd's Election service:
//! the oldest live key leads). A follower waits in its campaign and serves
//! nothing: host agents and `fabricctl` know every replica's address and
//! find the one that answers. The campaign's winner loads the state from
//! etcd (every node gets a fresh heartbeat grace, as after a restart: no
//! server is declared lost because the controller changed), binds the
//! controller's ports and serves; this is a **term**, numbered by the
//! revision etcd created the winner's election key at, which only grows.
//!
//! A term ends, and the replica campaigns again as a follower, when:
//! - the lease could not be renewed for `renew_deadline` (shorter than the
//!   lease, so the leader stops before another can be elected: Kubernetes'
//!   leader election does the same, with 10 s against 15 s);
//! - etcd says the lease is gone (the replica was paused, or cut off, past
//!   it: it wakes up deposed);
//! - a save finds it deposed: every write is fenced by the election key
//!   (see `fabric_etcd`), so a deposed leader's decision is refused by etcd,
//!   held (hosts hear HOLD, nothing is acted on) and the term ends.
//!
//! Stopped (SIGTERM), a leader revokes its lease so a follower takes over
//! at once instead of after the lease.

use crate::config::ControllerConfig;
use crate::server::{self, ServeError};
use crate::store::StoreError;
use crate::store::etcd::EtcdStore;
use crate::store::sealed_keys::AtRestKey;
use fabric_core::Clock;
use fabric_daemon::task::AbortOnDrop;
use fabric_etcd::Etcd;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};
use tokio::sync::watch;

/// Kubernetes' leader election: lease 15 s, renew deadline 10 s, retry 2 s.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(15);
pub const DEFAULT_RENEW_DEADLINE: Duration = Duration::from_secs(10);
pub const DEFAULT_RETRY_PERIOD: Duration = Duration::from_secs(2);

/// The most etcd members a replica is given.
pub const MAX_ETCD_MEMBERS: usize = 16;

/// How a replica reaches etcd and keeps its leadership.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// etcd members, `host:port`.
    pub etcd: Vec<String>,
    /// The cluster's keys: `<prefix>state/...` and the election `<prefix>leader`.
    pub prefix: String,
    /// The lease a leader holds (whole seconds).
    pub lease: Duration,
    /// A leader that could not renew for this long steps down.
    pub renew_deadline: Duration,
    /// How often the lease is renewed, and a failed call retried.
    pub retry_period: Duration,
    /// This replica's gRPC address as clients reach it (what followers and
    /// status show as the leader).
    pub advertise: String,
}

impl ReplicaConfig {
    /// Checks the timings hang together, in the flags' words.
    pub fn validate(&self) -> Result<(), String> {
        if self.etcd.is_empty() {
            return Err("--etcd names no member".into());
        }
        if self.etcd.len() > MAX_ETCD_MEMBERS {
            return Err(format!(
                "--etcd names {} members; at most {MAX_ETCD_MEMBERS} (etcd itself advises 3 or 5)",
                self.etcd.len()
            ));
        }
        if self.lease < Duration::from_secs(1) || self.lease.subsec_nanos() != 0 {
            return Err(format!(
                "--leader-lease {:?} must be whole seconds, at least 1s (etcd's leases are)",
                self.lease
            ));
        }
        if self.renew_deadline >= self.lease {
            return Err(format!(
                "--renew-deadline {:?} must be shorter than --leader-lease {:?}, so a leader \
                 that cannot renew stops before another can be elected",
                self.renew_deadline, self.lease
            ));
        }
        if self.retry_period.is_zero() || self.retry_period >= self.renew_deadline {
            return Err(format!(
                "--retry-period {:?} must be above zero and shorter than --renew-deadline {:?}",
                self.retry_period, self.renew_deadline
            ));
        }
        Ok(())
    }

    fn election(&self) -> Vec<u8> {
        format!("{}leader", self.prefix).into_bytes()
    }
}

/// A leader's term, as status and the dashboard show it.
#[derive(Clone, Debug)]
pub struct Term {
    /// The revision etcd created the leader's election key at: each new
    /// term's is higher.
    pub number: i64,
    /// The leader's advertised address (this replica's).
    pub leader: String,
    pub since: SystemTime,
    /// Every campaigning replica's address, the leader first; refreshed
    /// every retry period.
    pub replicas: Arc<Mutex<Vec<String>>>,
    /// Where the state is.
    pub store: String,
}

/// Runs one replica until `shutdown`: follower, leader, follower again...
pub async fn run(
    config: ControllerConfig,
    replica: ReplicaConfig,
    clock: Arc<dyn Clock>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let Some(state_dir) = config.state_dir.clone() else {
        return Err(StoreError::Remote {
            place: "--etcd".into(),
            reason: "a replica needs --state-dir (the secrets key replicas share)".into(),
        }
        .into());
    };
    std::fs::create_dir_all(&state_dir).map_err(|source| StoreError::Io {
        path: state_dir.clone(),
        source,
    })?;
    // Read once, before campaigning: a replica that cannot open the key
    // the replicas share must not win an election it cannot serve.
    let key = AtRestKey::open_or_create(&state_dir)?;
    let (stop_tx, stop) = watch::channel(false);
    tokio::spawn(async move {
        shutdown.await;
        stop_tx.send_replace(true);
    });
    let etcd = Etcd::new(&replica.etcd, replica.retry_period).map_err(remote(&replica))?;
    let election = replica.election();
    // Said once per spell as a follower, not at every new campaign.
    let mut following = false;
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        let lease = match etcd.grant_lease(replica.lease).await {
            Ok(lease) => lease,
            Err(e) => {
                tracing::warn!("cannot reach etcd for a lease: {e}; retrying");
                if stopped_within(&stop, replica.retry_period).await {
                    return Ok(());
                }
                continue;
            }
        };
        let (deposed_tx, deposed) = watch::channel(false);
        let _keeper = AbortOnDrop(tokio::spawn(keep_lease(
            etcd.clone(),
            lease,
            replica.clone(),
            deposed_tx.clone(),
        )));
        if !following {
            tracing::info!(
                advertise = %replica.advertise,
                "follower: campaigning for leadership of cluster {}",
                config.cluster
            );
            following = true;
        }
        // Each member is waited on for a lease at most (see
        // Etcd::campaign); then a new lease and another member.
        let campaign = etcd.campaign(
            &election,
            lease,
            replica.advertise.as_bytes(),
            replica.lease,
        );
        let won = tokio::select! {
            won = campaign => won,
            () = changed(&deposed) => {
                tracing::warn!("lost the lease while campaigning; campaigning again");
                continue;
            }
            () = changed(&stop) => {
                let _ = etcd.revoke_lease(lease).await;
                return Ok(());
            }
        };
        let leadership = match won {
            Ok(l) => l,
            Err(fabric_etcd::EtcdError::Unreachable { tried, last }) => {
                // A follower's wait outlasting `wait` ends here too:
                // nothing wrong, campaign again.
                tracing::debug!("campaign via {tried} given up ({last}); a new lease");
                let _ = etcd.revoke_lease(lease).await;
                continue;
            }
            Err(e) => {
                tracing::warn!("campaign failed: {e}; retrying");
                let _ = etcd.revoke_lease(lease).await;
                if stopped_within(&stop, replica.retry_period).await {
                    return Ok(());
                }
                continue;
            }
        };
        following = false;
        let started = std::time::Instant::now();
        // A save may wait out an etcd leader election (about a second);
        // no longer than the renew deadline: past it this replica no
        // longer leads anyway.
        let store = EtcdStore::new(
            &replica.etcd,
            replica.renew_deadline,
            &replica.prefix,
            Some(leadership.clone()),
            Some(deposed_tx.clone()),
        )?;
        let term = Term {
            number: leadership.revision,
            leader: replica.advertise.clone(),
            since: clock.now().wall,
            replicas: Arc::new(Mutex::new(vec![replica.advertise.clone()])),
            store: crate::store::Store::describe(&store),
        };
        tracing::info!(term = term.number, "elected leader; loading the state");
        let _roster = AbortOnDrop(tokio::spawn(refresh_replicas(
            etcd.clone(),
            replica.clone(),
            term.replicas.clone(),
        )));
        let listener = bind(&config, &stop, &deposed, &replica).await?;
        let Some(listener) = listener else {
            // Leadership that cannot serve is handed on.
            let _ = etcd.revoke_lease(lease).await;
            if stopped_within(&stop, replica.retry_period).await {
                return Ok(());
            }
            continue;
        };
        tracing::info!(
            term = term.number,
            took = ?started.elapsed(),
            "leader: serving"
        );
        let end = {
            let (deposed, stop) = (deposed.clone(), stop.clone());
            async move {
                tokio::select! {
                    () = changed(&deposed) => {}
                    () = changed(&stop) => {}
                }
            }
        };
        let served = server::serve(
            config.clone(),
            listener,
            clock.clone(),
            Some((Box::new(store), key.clone())),
            Some(term.clone()),
            end,
        )
        .await;
        // Ends the term at etcd too: a follower is elected at once.
        let _ = etcd.revoke_lease(lease).await;
        if *stop.borrow() {
            tracing::info!(term = term.number, "stopped; leadership handed over");
            return served;
        }
        match served {
            Ok(()) => tracing::warn!(
                term = term.number,
                "deposed: stepped down, acting on nothing more; campaigning again"
            ),
            Err(e) => {
                tracing::error!(term = term.number, "term ended: {e}; campaigning again");
                // Not at once: a fault that ends every term (unreadable
                // state, bad TLS files) would otherwise spin.
                if stopped_within(&stop, replica.retry_period).await {
                    return Ok(());
                }
            }
        }
    }
}

fn remote(replica: &ReplicaConfig) -> impl Fn(fabric_etcd::EtcdError) -> ServeError + '_ {
    move |e| {
        StoreError::Remote {
            place: format!("etcd {}", replica.etcd.join(",")),
            reason: e.to_string(),
        }
        .into()
    }
}

/// Completes once the flag is true.
async fn changed(flag: &watch::Receiver<bool>) {
    let mut flag = flag.clone();
    let _ = flag.wait_for(|set| *set).await;
}

/// Waits `wait`; true if stopped meanwhile.
async fn stopped_within(stop: &watch::Receiver<bool>, wait: Duration) -> bool {
    tokio::select! {
        () = changed(stop) => true,
        () = tokio::time::sleep(wait) => false,
    }
}

/// Binds the controller's port for a term; the previous holder (this
/// process's last term) may need a moment to let it go. `None` if the term
/// ended first, or the port stayed taken for the renew deadline: a leader
/// that cannot serve must not keep the others from leading.
async fn bind(
    config: &ControllerConfig,
    stop: &watch::Receiver<bool>,
    deposed: &watch::Receiver<bool>,
    replica: &ReplicaConfig,
) -> Result<Option<tokio::net::TcpListener>, ServeError> {
    let started = tokio::time::Instant::now();
    loop {
        match tokio::net::TcpListener::bind(config.listen).await {
            Ok(listener) => {
                if let Some(path) = &config.addr_file {
                    let addr = listener
                        .local_addr()
                        .map_err(|e| ServeError::Http(e.to_string()))?;
                    fabric_daemon::files::write_atomically(path, addr.to_string())
                        .map_err(|e| ServeError::Http(e.to_string()))?;
                }
                return Ok(Some(listener));
            }
            Err(e) if started.elapsed() >= replica.renew_deadline => {
                tracing::error!(
                    "cannot listen on {}: {e}; handing leadership on",
                    config.listen
                );
                return Ok(None);
            }
            Err(e) => tracing::warn!("cannot listen on {} yet: {e}", config.listen),
        }
        if *deposed.borrow() || stopped_within(stop, replica.retry_period / 4).await {
            return Ok(None);
        }
    }
}

/// Renews the lease every retry period; tells `deposed` when it is gone,
/// or has not been renewed for the renew deadline. A renewal counts from
/// when it was asked (etcd extends the lease from when it hears it, later),
/// and no call may outlast the deadline: an etcd without a majority does
/// not answer at all.
async fn keep_lease(etcd: Etcd, lease: i64, replica: ReplicaConfig, deposed: watch::Sender<bool>) {
    let mut renewed = tokio::time::Instant::now();
    let step_down = |why: &str| {
        tracing::warn!("{why}: stepping down");
        deposed.send_replace(true);
    };
    loop {
        tokio::time::sleep(replica.retry_period).await;
        let deadline = renewed + replica.renew_deadline;
        // Checked before asking: a replica paused past its deadline steps
        // down the moment it runs again.
        let asked = tokio::time::Instant::now();
        if asked >= deadline {
            return step_down(&format!(
                "lease not renewed within the renew deadline ({:?})",
                replica.renew_deadline
            ));
        }
        match tokio::time::timeout_at(deadline, etcd.keep_alive_once(lease)).await {
            Ok(Ok(Some(_))) => renewed = asked,
            Ok(Ok(None)) => {
                return step_down("etcd says the lease has expired: another replica may lead");
            }
            Ok(Err(e)) => tracing::warn!("cannot renew the lease: {e}"),
            Err(_) => {
                return step_down(&format!(
                    "etcd did not renew the lease within the renew deadline ({:?})",
                    replica.renew_deadline
                ));
            }
        }
    }
}

/// Keeps `roster` to every campaigning replica's address, this one first.
async fn refresh_replicas(etcd: Etcd, replica: ReplicaConfig, roster: Arc<Mutex<Vec<String>>>) {
    let mut prefix = replica.election();
    prefix.push(b'/');
    loop {
        if let Ok((kvs, _)) = etcd.get_prefix(&prefix).await {
            let mut others: Vec<String> = kvs
                .into_iter()
                .map(|kv| String::from_utf8_lossy(&kv.value).into_owned())
                .filter(|a| *a != replica.advertise)
                .collect();
            others.sort();
            let mut all = vec![replica.advertise.clone()];
            all.extend(others);
            *roster.lock().unwrap_or_else(|p| p.into_inner()) = all;
        }
        tokio::time::sleep(replica.retry_period).await;
    }
}
