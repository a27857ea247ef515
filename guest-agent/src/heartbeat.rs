//! Heartbeats to the host agent: proof of life, and how it learns the role's state and endpoint.
//!
//! The host agent reinitializes a VM whose agent falls silent (guest_heartbeat_timeout), so the
//! loop never stops on an error: a failed beat is logged and the next one is sent on schedule.

use std::sync::Arc;
use std::time::Duration;

use fabric_proto::v1::{GuestHeartbeatRequest, GuestHello, RoleState};
use tokio::time::MissedTickBehavior;
use tonic::{Code, Status};
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

/// The Hello that resumes our session with a host agent that restarted: the session token in
/// `token`, the same transfer certificate, where our GuestAgentService listens. `None` before
/// the first Hello succeeded. Holds the session token: never log it.
pub fn resume_hello(state: &AgentState, guest_agent_endpoint: &str) -> Option<GuestHello> {
    Some(GuestHello {
        vm_id: state.vm_id().to_owned(),
        incarnation: state.incarnation(),
        token: state.session_token()?.to_owned(),
        transfer_certificate_der: state.transfer().cert_der().to_vec(),
        guest_agent_endpoint: guest_agent_endpoint.to_owned(),
        agent_version: crate::run::AGENT_VERSION.to_owned(),
    })
}

/// First pause after a heartbeat the host agent did not receive (unreachable or hung); it
/// doubles on each further failure, up to the heartbeat interval.
pub const FIRST_RETRY: Duration = Duration::from_millis(100);

/// What to do after one heartbeat's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Wait for the next tick of the interval.
    Tick,
    /// Retry after this pause (backoff while the host agent is away).
    Retry(Duration),
    /// Say Hello again with the session token, then beat at once.
    Resume,
}

/// The backoff and resume rule, as a pure function of a heartbeat's result. `pause` is the
/// current backoff (reset by the caller on success).
pub fn next_step(result: &Result<(), Status>, pause: &mut Duration, interval: Duration) -> Next {
    match result {
        Ok(()) => {
            *pause = FIRST_RETRY.min(interval);
            Next::Tick
        }
        // The host agent answers but does not hold our session: it restarted and re-adopted us.
        Err(status) if status.code() == Code::Unauthenticated => Next::Resume,
        // Unreachable, or hung: back off, but never beat less often than the interval, so a host
        // agent coming back within its heartbeat timeout hears from us in time.
        Err(status) if matches!(status.code(), Code::Unavailable | Code::DeadlineExceeded) => {
            let wait = *pause;
            *pause = (*pause * 2).min(interval);
            Next::Retry(wait)
        }
        Err(_) => Next::Tick,
    }
}

/// Sends a heartbeat every `interval`, starting now, for ever. The role keeps serving whatever
/// happens here. While the host agent is unreachable, beats are retried with backoff (bounded by
/// the interval; nothing is queued, each beat supersedes the last); when it answers
/// UNAUTHENTICATED (it restarted and holds only a digest of our session), we say Hello again with
/// our session token and transfer certificate and carry on with the same session.
pub async fn run(
    link: HostLink,
    state: Arc<AgentState>,
    interval: Duration,
    guest_agent_endpoint: String,
) {
    let mut ticker = tokio::time::interval(interval);
    // After a stall, beat once and carry on at the normal pace rather than in a burst.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_reported = RoleState::Unspecified;
    let mut failing = false;
    let mut pause = FIRST_RETRY.min(interval);
    let mut next = Next::Tick;
    for sequence in 1u64.. {
        match next {
            Next::Tick => {
                // The role's start is reported at once: the instance is
                // Running when its role serves, not a heartbeat later.
                tokio::select! {
                    _ = ticker.tick() => {}
                    () = state.role_changed() => ticker.reset(),
                }
            }
            Next::Retry(wait) => {
                tokio::time::sleep(wait).await;
                ticker.reset();
            }
            Next::Resume => ticker.reset(),
        }
        let beat = heartbeat_request(&state, sequence);
        let role_state = beat.role_state();
        let result = link.heartbeat(beat, interval).await;
        match &result {
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
                if !failing {
                    warn!(
                        sequence,
                        code = ?status.code(),
                        error = status.message(),
                        "heartbeat failed"
                    );
                } else {
                    debug!(sequence, code = ?status.code(), "heartbeat failed again");
                }
                failing = true;
            }
        }
        next = next_step(&result, &mut pause, interval);
        if next == Next::Resume {
            next = resume(&link, &state, &guest_agent_endpoint, interval).await;
        }
    }
}

/// Says Hello again with the session token; on success the next beat goes at once.
async fn resume(
    link: &HostLink,
    state: &AgentState,
    guest_agent_endpoint: &str,
    interval: Duration,
) -> Next {
    let Some(hello) = resume_hello(state, guest_agent_endpoint) else {
        return Next::Tick;
    };
    info!("host agent does not hold our session (it restarted); saying Hello again");
    match link
        .hello_once(hello, interval.max(Duration::from_secs(1)))
        .await
    {
        Ok(welcome) => {
            if !welcome.secrets.is_empty() {
                warn!(
                    count = welcome.secrets.len(),
                    "ignoring secrets in a resumed session's welcome"
                );
            }
            info!(
                secrets_version = %welcome.secrets_version,
                "session resumed; the role kept serving"
            );
            Next::Resume
        }
        Err(status) => {
            warn!(
                code = ?status.code(),
                error = status.message(),
                "could not resume the session; retrying at the next heartbeat"
            );
            Next::Tick
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

    #[test]
    fn backs_off_while_unreachable_and_resumes_when_unknown() {
        let interval = Duration::from_millis(500);
        let mut pause = FIRST_RETRY;
        let down = Err(Status::unavailable("connection refused"));
        let waits: Vec<Next> = (0..5)
            .map(|_| next_step(&down, &mut pause, interval))
            .collect();
        let ms = Duration::from_millis;
        assert_eq!(
            waits,
            vec![
                Next::Retry(ms(100)),
                Next::Retry(ms(200)),
                Next::Retry(ms(400)),
                Next::Retry(ms(500)),
                Next::Retry(ms(500)),
            ]
        );
        let hung = Err(Status::deadline_exceeded("heartbeat timed out"));
        assert_eq!(next_step(&hung, &mut pause, interval), Next::Retry(ms(500)));
        let restarted = Err(Status::unauthenticated("say Hello again"));
        assert_eq!(next_step(&restarted, &mut pause, interval), Next::Resume);
        assert_eq!(next_step(&Ok(()), &mut pause, interval), Next::Tick);
        assert_eq!(pause, FIRST_RETRY);
        let refused = Err(Status::permission_denied("bad token"));
        assert_eq!(next_step(&refused, &mut pause, interval), Next::Tick);
    }
}
