//! Heartbeats to the host agent: proof of life, and how it learns the role's state and endpoint.
//!
//! The host agent reinitializes a VM whose agent falls silent (guest_heartbeat_timeout), so the
//! loop never stops on an error: a failed beat is logged and the next one is sent on schedule.

use std::sync::Arc;
use std::time::Duration;

use fabric_proto::v1::{GuestHeartbeatRequest, RoleState};
use tokio::time::MissedTickBehavior;
use tracing::{debug, info, warn};

use crate::agent_state::AgentState;
use crate::host_link::HostLink;

/// Used when the welcome carries no (or a zero) heartbeat interval.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Lower bound, so a misconfigured host agent cannot make us spin.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);

/// The heartbeat interval from the welcome's `heartbeat_interval`.
pub fn interval_from_welcome(interval: Option<prost_types::Duration>) -> Duration {
    interval
        .and_then(|d| Duration::try_from(d).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(DEFAULT_INTERVAL)
        .max(MIN_INTERVAL)
}

/// The heartbeat with sequence number `sequence` from the current state.
pub fn heartbeat_request(state: &AgentState, sequence: u64) -> GuestHeartbeatRequest {
    let role = state.role_status();
    GuestHeartbeatRequest {
        vm_id: state.vm_id().to_owned(),
        incarnation: state.incarnation(),
        session_token: state.session_token().unwrap_or_default().to_owned(),
        sequence,
        role_state: role.state.into(),
        role_endpoint: role.endpoint.map(|a| a.to_string()).unwrap_or_default(),
    }
}

/// Sends a heartbeat every `interval`, starting now, for ever.
pub async fn run(link: HostLink, state: Arc<AgentState>, interval: Duration) {
    let mut ticker = tokio::time::interval(interval);
    // After a stall, beat once and carry on at the normal pace rather than in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_reported = RoleState::Unspecified;
    let mut failing = false;
    for sequence in 1u64.. {
        ticker.tick().await;
        let beat = heartbeat_request(&state, sequence);
        let role_state = beat.role_state();
        match link.heartbeat(beat, interval).await {
            Ok(()) => {
                if failing || role_state != last_reported {
                    info!(
                        sequence,
                        role_state = role_state.as_str_name(),
                        "heartbeat accepted"
                    );
                } else {
                    debug!(sequence, "heartbeat accepted");
                }
                failing = false;
                last_reported = role_state;
            }
            Err(status) => {
                warn!(
                    sequence,
                    code = ?status.code(),
                    error = status.message(),
                    "heartbeat failed"
                );
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interval_defaults_and_floors() {
        assert_eq!(interval_from_welcome(None), DEFAULT_INTERVAL);
        let zero = prost_types::Duration {
            seconds: 0,
            nanos: 0,
        };
        assert_eq!(interval_from_welcome(Some(zero)), DEFAULT_INTERVAL);
        let tiny = prost_types::Duration {
            seconds: 0,
            nanos: 1,
        };
        assert_eq!(interval_from_welcome(Some(tiny)), MIN_INTERVAL);
        let two = prost_types::Duration {
            seconds: 2,
            nanos: 0,
        };
        assert_eq!(interval_from_welcome(Some(two)), Duration::from_secs(2));
    }
}
