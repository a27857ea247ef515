//! The rollout gate's eyes: probe each role endpoint of the current step
//! from outside its server, as a client would (TLS to the endpoint the host
//! reported, the role's own certificate expected, `GET /` answered), and
//! report each result to the core.
//!
//! The 2012 secondary outage passed a single-server test that "had not
//! included testing network connectivity to the VMs": the VMs ran, nobody
//! could reach them. A VM that runs but cannot be reached fails this probe,
//! so the gate holds the rollout.
//!
//! Probes run only while a rollout walks forward (the core names the
//! targets), every `interval`, all of a step's endpoints concurrently,
//! each bounded by `timeout`; the round's results go to the core at once.

use crate::controller::Controller;
use fabric_core::rollout::ProbeResult;
use fabric_daemon::https::{Trust, get_root};
use std::sync::Arc;
use std::time::Duration;

/// How the probes run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    pub interval: Duration,
    pub timeout: Duration,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(2),
        }
    }
}

/// Probes forever (until the task is dropped).
pub async fn probe_loop(controller: Arc<Controller>, config: ProbeConfig) {
    let mut ticker = tokio::time::interval(config.interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        let targets = controller.read().rollout_probe_targets();
        if targets.is_empty() {
            continue;
        }
        let mut probes = tokio::task::JoinSet::new();
        for t in targets {
            probes.spawn(async move {
                let trust = Trust::Fingerprints(t.fingerprints);
                let result = tokio::time::timeout(config.timeout, get_root(&t.endpoint, &trust))
                    .await
                    .unwrap_or_else(|_| Err(format!("no answer within {:?}", config.timeout)));
                ProbeResult {
                    id: t.id,
                    incarnation: t.incarnation,
                    ok: result.is_ok(),
                    detail: result.err().unwrap_or_default(),
                }
            });
        }
        let mut round = Vec::new();
        while let Some(done) = probes.join_next().await {
            if let Ok(result) = done {
                round.push(result);
            }
        }
        controller.endpoints_probed(round);
    }
}
