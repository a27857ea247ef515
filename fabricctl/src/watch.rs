//! Following cluster events across controller restarts.
//!
//! WatchEvents is a long server stream; it breaks whenever the controller
//! restarts (which `fabricctl up` does on purpose when one crashes). The
//! follower reconnects with backoff and resumes after the last sequence
//! number it delivered, so no event is shown twice or skipped. If the
//! controller's sequence numbers went backwards (a controller that keeps
//! its events in memory starts again from 1), it follows from the start.

use crate::error::CtlError;
use crate::target::Target;
use fabric_proto::v1::operator_service_client::OperatorServiceClient;
use fabric_proto::v1::{ClusterEvent, ListEventsRequest, WatchEventsRequest};
use std::time::Duration;
use tonic::transport::ClientTlsConfig;

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Streams events after `after` to `emit` until the future is dropped.
/// `note` receives one line each time the stream is lost or comes back
/// (a repeated failure is reported once).
pub async fn follow(
    target: &Target,
    mut after: u64,
    mut emit: impl FnMut(&ClusterEvent),
    mut note: impl FnMut(&str),
) -> anyhow::Result<()> {
    let tls = target.tls_config()?;
    let mut problem: Option<String> = None;
    let mut backoff = MIN_BACKOFF;
    let mut first = true;
    loop {
        let mut connected = false;
        let result = stream_once(
            target,
            &tls,
            &mut after,
            !first,
            &mut emit,
            &mut |event: Connected| {
                connected = true;
                if problem.take().is_some() {
                    note("event stream reconnected");
                }
                if let Connected::SequenceRestarted(old) = event {
                    note(&format!(
                        "controller event sequence went back (last seen {old}); following from the start"
                    ));
                }
            },
        )
        .await;
        first = false;
        if connected {
            backoff = MIN_BACKOFF;
        }
        let message = match result {
            Ok(()) => "controller closed the event stream".to_owned(),
            Err(e) => e.to_string(),
        };
        if problem.as_deref() != Some(message.as_str()) {
            note(&format!("event stream lost: {message}; reconnecting"));
            problem = Some(message);
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

enum Connected {
    Plain,
    SequenceRestarted(u64),
}

async fn stream_once(
    target: &Target,
    tls: &ClientTlsConfig,
    after: &mut u64,
    reconnect: bool,
    emit: &mut impl FnMut(&ClusterEvent),
    on_connected: &mut impl FnMut(Connected),
) -> Result<(), CtlError> {
    let channel = target.connect_with(tls.clone()).await?;
    let mut client = OperatorServiceClient::new(channel);
    let mut restarted = None;
    if reconnect && *after > 0 {
        let latest = client
            .list_events(ListEventsRequest {
                after_sequence: 0,
                limit: 0,
            })
            .await
            .map_err(|s| target.rpc_error("ListEvents", &s))?
            .into_inner()
            .events
            .iter()
            .map(|e| e.sequence)
            .max()
            .unwrap_or(0);
        if latest < *after {
            restarted = Some(*after);
            *after = 0;
        }
    }
    let mut stream = client
        .watch_events(WatchEventsRequest {
            after_sequence: *after,
        })
        .await
        .map_err(|s| target.rpc_error("WatchEvents", &s))?
        .into_inner();
    on_connected(restarted.map_or(Connected::Plain, Connected::SequenceRestarted));
    while let Some(event) = stream
        .message()
        .await
        .map_err(|s| target.rpc_error("WatchEvents", &s))?
    {
        if event.sequence > *after || event.sequence == 0 {
            *after = (*after).max(event.sequence);
            emit(&event);
        }
    }
    Ok(())
}
