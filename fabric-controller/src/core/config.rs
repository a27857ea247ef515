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
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            heartbeat_interval: Duration::from_secs(2),
            node_timeout: Duration::from_secs(10),
            event_retention: 10_000,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
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
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
