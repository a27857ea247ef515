//! The core's knobs, validated once.
//!
//! Defaults and how they compare with Kubernetes and Nomad are documented in
//! docs/configuration.md.

use std::time::Duration;

/// Timeouts and limits the core decides with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    /// How often host agents are asked to heartbeat.
    pub heartbeat_interval: Duration,
    /// Silence after which a Ready node becomes Unresponsive.
    pub node_timeout: Duration,
    /// How many cluster events are kept in memory for `events`.
    pub event_retention: usize,
    /// How long a node may stay Unresponsive before it is moved to Human
    /// Investigate and its role instances are healed elsewhere.
    pub unresponsive_grace: Duration,
    /// At most this many role instances are being healed (moved, not yet
    /// Running again) at once. The 2009 outage showed one-at-a-time is far
    /// too slow; unbounded would stampede the surviving servers.
    pub healing_concurrency: u32,
    /// When this many nodes are in HI, the cluster enters HI mode.
    pub hi_threshold: HiThreshold,
    /// Tell guest-software faults from hardware faults (what the 2012 FC
    /// lacked). Off replays 2012: every fault report moves its server to HI.
    pub fault_classification: bool,
    /// How long a server reporting a guest-software fault is held (not moved
    /// to HI) while the controller waits to see if other servers report the
    /// same cause.
    pub classification_hold: Duration,
    /// How many servers must report the same guest-software reason (same
    /// agent version) for it to be classified as a software fault.
    pub software_fault_min_nodes: u32,
    /// A certificate (deployed, or the cluster's own) this close to expiry
    /// raises a warning event (the 2013 lesson: alert 180 days ahead).
    pub certificate_warning: Duration,
    /// This close, an incident event (2013: under 90 days is an incident).
    pub certificate_incident: Duration,
    /// A deployed certificate expiring within this much of another
    /// deployment's raises `certificate.together` at deploy: one expiry
    /// nobody catches would take them all at once (2013: three certificates
    /// "expired within three minutes of each other"). Zero: no check.
    pub certificate_spread: Duration,
    /// A heartbeat sequence number may run ahead of the last accepted one by
    /// this many, plus one per 50 ms of silence (no honest host agent beats
    /// faster than 20 times a second): a larger jump is implausible and
    /// refused, so one poisoned heartbeat cannot make every later one stale.
    pub sequence_jump_limit: u64,
    /// After this many stale heartbeats in a row, the host agent is told to
    /// register again (its sequence then starts over) rather than being
    /// ignored until it is declared lost.
    pub stale_heartbeats_before_register: u32,
    /// The controller's own stall: a tick this much later than its deadline
    /// means the controller was stopped or starved (SIGSTOP, a VM pause, an
    /// overloaded machine), not that hosts were silent, so every node gets a
    /// fresh heartbeat grace instead of a flap to Unresponsive and back.
    pub stall_tolerance: Duration,
    /// A rollout step's health gate must hold this long before the next
    /// step starts (Service Fabric HealthCheckStableDuration 120 s, Nomad
    /// min_healthy_time 10 s).
    pub rollout_gate_stable: Duration,
    /// A step whose gate has not held by then fails: the rollout pauses or
    /// rolls back (Service Fabric HealthCheckRetryTimeout 600 s, Nomad
    /// healthy_deadline 5 min).
    pub rollout_gate_timeout: Duration,
}

/// The per-cluster HI threshold: a node count or a share of the nodes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HiThreshold {
    Count(u32),
    /// Percent of registered nodes, rounded up, at least one node.
    Percent(u32),
}

impl HiThreshold {
    /// The number of HI nodes that trips the threshold in a cluster of `nodes`.
    pub fn nodes(self, nodes: usize) -> usize {
        match self {
            HiThreshold::Count(n) => n.max(1) as usize,
            HiThreshold::Percent(p) => (nodes * p as usize).div_ceil(100).max(1),
        }
    }

    /// Parses "3" (a count) or "20%" (a share).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("HI threshold {text:?} must be a node count like 3 or a percentage like 20%")
        };
        if let Some(p) = text.strip_suffix('%') {
            let p: u32 = p.trim().parse().map_err(|_| bad())?;
            if p == 0 || p > 100 {
                return Err(format!("HI threshold {text:?} must be between 1% and 100%"));
            }
            Ok(HiThreshold::Percent(p))
        } else {
            let n: u32 = text.trim().parse().map_err(|_| bad())?;
            if n == 0 {
                return Err(format!("HI threshold {text:?} must be at least 1 node"));
            }
            Ok(HiThreshold::Count(n))
        }
    }
}

impl std::fmt::Display for HiThreshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HiThreshold::Count(n) => write!(f, "{n}"),
            HiThreshold::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(10),
            event_retention: 10_000,
            unresponsive_grace: Duration::from_secs(30),
            healing_concurrency: 16,
            hi_threshold: HiThreshold::Percent(20),
            fault_classification: true,
            classification_hold: Duration::from_secs(60),
            software_fault_min_nodes: 2,
            certificate_warning: Duration::from_secs(180 * 86_400),
            certificate_incident: Duration::from_secs(90 * 86_400),
            certificate_spread: Duration::from_secs(86_400),
            sequence_jump_limit: 1024,
            stale_heartbeats_before_register: 3,
            stall_tolerance: Duration::from_secs(5),
            rollout_gate_stable: Duration::from_secs(30),
            rollout_gate_timeout: Duration::from_secs(600),
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("certificate_incident must not be longer than certificate_warning")]
    ExpiryWindows,
    #[error("heartbeat_interval must be greater than zero")]
    ZeroHeartbeat,
    #[error(
        "node_timeout ({timeout:?}) must be at least twice heartbeat_interval ({interval:?}); \
         otherwise one late heartbeat marks a healthy node Unresponsive"
    )]
    TimeoutTooShort {
        timeout: Duration,
        interval: Duration,
    },
    #[error("event_retention must be at least 1")]
    NoEventRetention,
    #[error("healing_concurrency must be at least 1")]
    NoHealingConcurrency,
    #[error("software_fault_min_nodes must be at least 2 (one server is not a pattern)")]
    SoftwareFaultMinNodes,
    #[error("stale_heartbeats_before_register must be at least 1")]
    NoStaleHeartbeats,
    #[error("rollout_gate_timeout must be longer than rollout_gate_stable")]
    GateWindows,
}

impl CoreConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.heartbeat_interval.is_zero() {
            return Err(ConfigError::ZeroHeartbeat);
        }
        if self.node_timeout < self.heartbeat_interval * 2 {
            return Err(ConfigError::TimeoutTooShort {
                timeout: self.node_timeout,
                interval: self.heartbeat_interval,
            });
        }
        if self.event_retention == 0 {
            return Err(ConfigError::NoEventRetention);
        }
        if self.healing_concurrency == 0 {
            return Err(ConfigError::NoHealingConcurrency);
        }
        if self.software_fault_min_nodes < 2 {
            return Err(ConfigError::SoftwareFaultMinNodes);
        }
        if self.stale_heartbeats_before_register == 0 {
            return Err(ConfigError::NoStaleHeartbeats);
        }
        if self.rollout_gate_timeout <= self.rollout_gate_stable {
            return Err(ConfigError::GateWindows);
        }
        if self.certificate_incident > self.certificate_warning {
            return Err(ConfigError::ExpiryWindows);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hi_threshold_counts_and_shares() {
        assert_eq!(HiThreshold::parse("3").unwrap().nodes(100), 3);
        assert_eq!(HiThreshold::parse("20%").unwrap().nodes(10), 2);
        assert_eq!(HiThreshold::parse("20%").unwrap().nodes(11), 3, "rounds up");
        assert_eq!(
            HiThreshold::parse("1%").unwrap().nodes(3),
            1,
            "at least one"
        );
        for bad in ["0", "0%", "101%", "x", "-1", ""] {
            assert!(HiThreshold::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn default_is_valid() {
        CoreConfig::default().validate().unwrap();
    }

    #[test]
    fn refuses_a_timeout_that_would_flap() {
        let c = CoreConfig {
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(3),
            ..CoreConfig::default()
        };
        assert!(matches!(
            c.validate(),
            Err(ConfigError::TimeoutTooShort { .. })
        ));
    }
}
