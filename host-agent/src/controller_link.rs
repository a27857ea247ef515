//! The host agent's link to the fabric controller: register, then heartbeat
//! every `heartbeat_interval`, riding out controller outages.
//!
//! Heartbeats keep a random phase within the interval, so servers that start
//! together do not beat together. While the controller is unreachable the
//! agent keeps trying with jittered
//! exponential backoff; nothing is queued, since each heartbeat supersedes the
//! last. Sequence numbers increase for the whole life of the process, so the
//! controller can drop a heartbeat that arrives late or out of order. If the
//! controller answers REGISTER_AGAIN (it restarted, or forgot us), we register
//! again and carry on.
//!
//! A heartbeat reports the VMs whose report changed since the controller
//! last accepted one (every VM when in doubt), and each answer (ACCEPTED or
//! STALE) carries the complete set of VMs the controller wants here, or says
//! it is the set this host named as the one it runs by; the VM manager
//! reconciles with it (see [`crate::heartbeat_delta`]).
//!
//! Heartbeats also go out between intervals, so that no decision waits for
//! one: when the controller says (on its WatchDesired stream) that what this
//! server should do changed, and when a VM's report changed (its role began
//! to serve, on hosts without a networking plugin: see
//! `VmManager::guest_heartbeat`). Such heartbeats are at most one per `report_coalesce`, so a
//! burst of changes makes one.

use crate::backoff::Backoff;
use crate::config::HostConfig;
use crate::heartbeat_delta::{KnownDesired, ReportDelta};
use crate::obeyed::{Disobey, ObeyedFile, ReplyState};
use crate::state::HostState;
use crate::vm::VmManager;
use fabric_pki::tls::LoadedTls;
use fabric_proto::v1::{
    self as pb, heartbeat_response::Disposition, node_service_client::NodeServiceClient,
};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};

/// Round trips of every heartbeat RPC this process made (one host agent, or
/// all of fabric-hollow's), as the hosts see them.
pub static HEARTBEAT_LATENCY: fabric_daemon::latency::Recorder =
    fabric_daemon::latency::Recorder::new();

/// The channel every call to the controller goes through: to whichever of
/// its replicas leads (see `fabric_daemon::failover`).
pub type ControllerChannel = fabric_daemon::failover::Failover;

/// Builds lazily connecting mTLS channels to the controller (each replica).
/// HTTP/2 keepalive lets a channel notice a dead connection (e.g. after a
/// network partition, or a paused controller) and give up on it instead of
/// waiting forever.
pub fn channel(config: &HostConfig, tls: &LoadedTls) -> anyhow::Result<ControllerChannel> {
    let channels = config
        .controllers
        .iter()
        .map(|url| {
            let channel = Endpoint::from_shared(url.clone())?
                .tls_config(tls.client_config(&config.controller_name))?
                .connect_timeout(config.controller_timeout.min(Duration::from_secs(3)))
                .timeout(config.controller_timeout)
                .http2_keep_alive_interval(Duration::from_secs(5))
                .keep_alive_timeout(Duration::from_secs(5))
                .keep_alive_while_idle(true)
                .connect_lazy();
            Ok((url.clone(), channel))
        })
        .collect::<anyhow::Result<Vec<(String, Channel)>>>()?;
    Ok(fabric_daemon::failover::Failover::new(
        channels,
        config.controller_timeout,
    ))
}

/// Everything the heartbeat loop needs.
pub struct Link {
    pub client: NodeServiceClient<ControllerChannel>,
    /// The same channel, to bound its wait by the controller's node timeout.
    pub channel: ControllerChannel,
    pub state: Arc<HostState>,
    pub vms: Arc<VmManager>,
    pub description: pb::NodeDescription,
    /// `None`: use the controller's interval.
    pub heartbeat_interval: Option<Duration>,
    pub max_backoff: Duration,
    /// How many controller addresses the client goes through (replicas).
    pub addresses: usize,
    /// The newest controller state this host obeyed.
    pub obeyed: ObeyedFile,
    /// Why the last desired set was not obeyed, to log each change once.
    pub disobeyed: Option<Disobey>,
    /// The shortest time between two heartbeats sent for a change.
    pub report_coalesce: Duration,
    /// Moves this server to the software a rollout names; `None` for hosts
    /// that share a process (hollow hosts), which stay on what they run.
    pub updater: Option<Arc<crate::software::Updater>>,
    /// The VM reports the controller has accepted.
    pub reports: ReportDelta,
    /// The desired set this host runs by.
    pub desired: KnownDesired,
}

impl Link {
    /// Runs forever (until the task is dropped).
    pub async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(200), self.max_backoff);
        let mut sequence = 0u64;
        let nudge = Arc::new(tokio::sync::Notify::new());
        let _watch = fabric_daemon::task::AbortOnDrop(tokio::spawn(watch_desired(
            self.client.clone(),
            self.state.node_id.clone(),
            nudge.clone(),
            self.max_backoff,
        )));
        let mut last_beat = tokio::time::Instant::now();
        // Failures since the last answer: a failed call moves the client to
        // the next controller address, which is tried at once; the backoff
        // is for when every address has failed.
        let mut failed = 0usize;
        loop {
            let registered = self.register().await;
            // A registration starts the controller's picture of this
            // server over (and a failed one may have done so).
            self.reports.start_over();
            self.desired.forget();
            let interval = match registered {
                Ok(interval) => {
                    backoff.reset();
                    failed = 0;
                    interval
                }
                Err(status) => {
                    self.state.record_failure();
                    let wait = wait_after_failure(&mut failed, self.addresses, &mut backoff);
                    tracing::warn!(code = ?status.code(), "register failed: {}; retrying in {wait:?}", status.message());
                    tokio::time::sleep(wait).await;
                    continue;
                }
            };
            // Beats at a random phase of the interval (registration just
            // told the controller we are here; a change is pushed at once
            // anyway): servers that
            // start together (a cluster boot, a controller restart, a
            // thousand hollow hosts) would otherwise beat in one burst every
            // interval, and the last of each burst waits for all the others
            // (measured: 1,000 hosts at 1 s, heartbeat p99 185 ms against a
            // p50 of 0.5 ms).
            let phase = interval.mul_f64(fastrand::f64());
            let mut ticker =
                tokio::time::interval_at(tokio::time::Instant::now() + phase, interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                let nudged = tokio::select! {
                    _ = ticker.tick() => false,
                    () = nudge.notified() => true,
                    () = self.vms.report_changed().notified() => true,
                };
                if nudged {
                    tokio::time::sleep_until(last_beat + self.report_coalesce).await;
                    ticker.reset();
                }
                last_beat = tokio::time::Instant::now();
                sequence += 1;
                match self.heartbeat(sequence).await {
                    Ok(Disposition::RegisterAgain) => {
                        tracing::info!("controller asked us to register again");
                        break;
                    }
                    Ok(disposition) => {
                        if disposition == Disposition::Hold {
                            tracing::warn!(
                                "the controller holds its decisions (not saved yet, or its state was lost): running VMs as they are"
                            );
                        }
                        self.state.record_success();
                        backoff.reset();
                        failed = 0;
                    }
                    Err(status) => {
                        self.state.record_failure();
                        let wait = wait_after_failure(&mut failed, self.addresses, &mut backoff);
                        tracing::warn!(code = ?status.code(), "heartbeat failed: {}; next try in {wait:?}", status.message());
                        tokio::time::sleep(wait).await;
                        ticker.reset();
                    }
                }
            }
        }
    }

    async fn register(&mut self) -> Result<Duration, tonic::Status> {
        let response = self
            .client
            .register(pb::RegisterRequest {
                node: Some(self.description.clone()),
                boot_id: self.state.boot_id.clone(),
            })
            .await?
            .into_inner();
        let offered = response
            .heartbeat_interval
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(Duration::from_secs(2));
        let interval = self.heartbeat_interval.unwrap_or(offered);
        if let Some(node_timeout) = response
            .node_timeout
            .and_then(|d| Duration::try_from(d).ok())
            .filter(|d| !d.is_zero())
        {
            // A host that waits on a silent replica (a paused leader still
            // accepts connections) must move on to the next well before
            // the new leader's fresh grace (node_timeout) runs out.
            let before = self.channel.timeout();
            let wait = self
                .channel
                .bound_by((node_timeout / 3).max(Duration::from_millis(100)));
            if wait < before {
                tracing::info!(
                    ?wait,
                    ?node_timeout,
                    "controller answer timeout lowered to a third of the controller's node timeout"
                );
            }
        }
        self.state.record_success();
        tracing::info!(
            cluster = %response.cluster_name,
            node = %response.node_id,
            ?interval,
            "registered with the fabric controller"
        );
        Ok(interval)
    }

    async fn heartbeat(&mut self, sequence: u64) -> Result<Disposition, tonic::Status> {
        let all = self.vms.reports();
        // What this host obeyed matters only while it runs VMs from it.
        let runs_vms = !all.is_empty();
        let known = if !runs_vms {
            crate::obeyed::Obeyed::default()
        } else {
            self.obeyed.get()
        };
        let sent = self.reports.prepare(all);
        let started = std::time::Instant::now();
        let response = self
            .client
            .heartbeat(pb::HeartbeatRequest {
                node_id: self.state.node_id.clone(),
                boot_id: self.state.boot_id.clone(),
                sequence,
                vms: sent.reports.clone(),
                known_cluster_id: known.cluster_id,
                known_generation: known.generation,
                changed_vms_only: sent.changed_only,
                known_desired_digest: self.desired.digest(),
            })
            .await;
        // Not accepted, the reports stay pending (see heartbeat_delta).
        let response = response?.into_inner();
        // One reading, two homes: this host's /metrics, and the
        // process-wide recorder fabric-hollow reports over all its hosts.
        let took = started.elapsed();
        HEARTBEAT_LATENCY.record(took);
        self.state.record_round_trip(took);
        let disposition =
            Disposition::try_from(response.disposition).unwrap_or(Disposition::Unspecified);
        if disposition == Disposition::Accepted {
            self.reports.accepted(sent, response.send_complete_reports);
        }
        // Only these carry whose state the reply speaks for, and only the
        // first two a desired set: an empty list then means "run nothing", so
        // anything else (HOLD above all: "change nothing") must not be read as
        // one.
        if !matches!(
            disposition,
            Disposition::Accepted | Disposition::Stale | Disposition::Hold
        ) {
            self.desired.forget();
            return Ok(disposition);
        }
        let whose = ReplyState {
            cluster_id: &response.cluster_id,
            generation: response.generation,
            replaces: &response.replaces_cluster_id,
        };
        // Acting: a set listed (it may differ from what runs) or software
        // named; "unchanged" with nothing named changes nothing here.
        let acting = disposition != Disposition::Hold
            && (!response.desired_unchanged || response.target.is_some());
        match self.obeyed.obey(&whose, runs_vms, acting) {
            Ok(()) => {
                if self.disobeyed.take().is_some() {
                    tracing::info!(cluster = %response.cluster_id, generation = response.generation, "obeying the controller again");
                }
                self.vms.set_quarantined(response.human_investigate);
                if disposition != Disposition::Hold {
                    // Reconciled every time, changed or not: a start or a
                    // rotation that failed is retried at each heartbeat.
                    if let Some(desired) = self.desired.resolve(&response) {
                        self.vms.apply_desired(desired);
                    }
                    if let Some(updater) = &self.updater {
                        updater.consider(response.target.as_ref());
                    }
                }
            }
            Err(why) => {
                self.desired.forget();
                if self.disobeyed.as_ref() != Some(&why) {
                    tracing::error!("not obeying the controller's desired set: {why}");
                }
                self.disobeyed = Some(why);
            }
        }
        Ok(disposition)
    }
}

/// After a failed call: at once while some controller address has not
/// failed since the last answer (the client moved on to it), else the
/// backoff's next delay.
fn wait_after_failure(failed: &mut usize, addresses: usize, backoff: &mut Backoff) -> Duration {
    *failed += 1;
    match *failed % addresses.max(1) {
        0 => backoff.next_delay(),
        _ => Duration::ZERO,
    }
}

/// Keeps a WatchDesired stream open to the controller and nudges the
/// heartbeat loop at each note, and once at each (re)connection for what
/// may have changed while no stream was open. A controller without the call
/// (an older one) is heard at the heartbeat interval, as before.
async fn watch_desired(
    mut client: NodeServiceClient<ControllerChannel>,
    node_id: String,
    nudge: Arc<tokio::sync::Notify>,
    max_backoff: Duration,
) {
    let mut backoff = Backoff::new(Duration::from_millis(200), max_backoff);
    loop {
        match client
            .watch_desired(pb::WatchDesiredRequest {
                node_id: node_id.clone(),
            })
            .await
        {
            Ok(response) => {
                backoff.reset();
                nudge.notify_one();
                let mut notes = response.into_inner();
                while let Ok(Some(_)) = notes.message().await {
                    nudge.notify_one();
                }
            }
            Err(status) if status.code() == tonic::Code::Unimplemented => {
                tracing::info!(
                    "the controller does not push changes (WatchDesired): learning them at \
                     each heartbeat"
                );
                return;
            }
            Err(status) => {
                tracing::debug!(code = ?status.code(), "WatchDesired: {}", status.message());
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}
