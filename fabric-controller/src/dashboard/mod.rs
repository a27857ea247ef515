//! The controller's read-only HTTP server: the dashboard page (`/`), the
//! summary it shows (`/api/summary`, and pushed as server-sent events on
//! `/api/stream`) and Prometheus metrics (`/metrics`).
//!
//! Plain HTTP on purpose: it changes nothing, shows no secret (only public
//! facts the status RPC also shows), and binds loopback unless configured
//! otherwise, so a browser and a Prometheus server can reach it without the
//! cluster's client certificates. The page is one server-side file of HTML
//! with a little plain JavaScript (no build step). It listens to
//! `/api/stream`, which sends a fresh summary as soon as the core records an
//! event (a server going Unresponsive shows at once) and at least every
//! second (for heartbeat ages); without EventSource, or while the stream is
//! down, the page polls `/api/summary` every second instead.
//!
//! - [`summary`]: the dashboard's view of the core;
//! - [`servers`]: servers condensed by fault and update domain, problems
//!   first;
//! - [`deployments`]: instances counted per state, problems first.

pub mod deployments;
pub mod servers;
pub mod summary;

use crate::controller::Controller;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::sse::{Event, Sse};
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::broadcast::error::RecvError;
use tokio_stream::{Stream, StreamExt as _};

/// The longest a stream goes without a summary (ages advance without events).
const REFRESH: Duration = Duration::from_secs(1);

const PAGE: &str = include_str!("page.html");

/// The routes, over a running controller.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/summary", get(summary_json))
        .route("/api/stream", get(summary_stream))
        .route("/metrics", get(metrics))
        .with_state(controller)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    controller: Arc<Controller>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(controller))
        .with_graceful_shutdown(shutdown)
        .await
}

async fn page() -> Html<&'static str> {
    Html(PAGE)
}

fn summary_of(controller: &Controller) -> summary::Summary {
    let now = controller.clock().now();
    let core = controller.read();
    let alarms = controller.alarms_with(&core);
    let mut summary = summary::Summary::of(controller.cluster(), &core, now);
    summary.replication = controller.term().map(summary::ReplicationView::of);
    // The controller's own troubles come first: they qualify everything else.
    for (i, a) in alarms.into_iter().enumerate() {
        summary.incidents.insert(
            i,
            summary::IncidentView {
                kind: a.kind,
                summary: a.summary,
            },
        );
    }
    summary
}

async fn summary_json(State(controller): State<Arc<Controller>>) -> Json<summary::Summary> {
    Json(summary_of(&controller))
}

/// Server-sent events: one `summary` event at once, then one after every
/// burst of cluster events (coalesced: a healing round records many), and
/// at least every [`REFRESH`]. Ends when the controller shuts down.
async fn summary_stream(
    State(controller): State<Arc<Controller>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let (tx, rx) = tokio::sync::mpsc::channel::<Event>(4);
    tokio::spawn(async move {
        // Subscribed before the first summary, so no change falls between.
        let mut changes = controller.subscribe();
        let closed = controller.closed();
        tokio::pin!(closed);
        loop {
            let event = match Event::default()
                .event("summary")
                .json_data(summary_of(&controller))
            {
                Ok(event) => event,
                Err(e) => {
                    tracing::warn!("dashboard stream: {e}");
                    return;
                }
            };
            if tx.send(event).await.is_err() {
                return; // The browser went away.
            }
            tokio::select! {
                () = &mut closed => return,
                () = tokio::time::sleep(REFRESH) => {}
                change = changes.recv() => {
                    if matches!(change, Err(RecvError::Closed)) {
                        return;
                    }
                    // The rest of the burst goes into the same summary.
                    while changes.try_recv().is_ok() {}
                }
            }
        }
    });
    Sse::new(tokio_stream::wrappers::ReceiverStream::new(rx).map(Ok::<_, Infallible>))
}

/// OpenMetrics for Prometheus, the classic text format for anyone who did
/// not ask for it (see `fabric_daemon::metrics_text`).
async fn metrics(
    State(controller): State<Arc<Controller>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let text = {
        let core = controller.read();
        controller.metrics().render(&core)
    };
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = fabric_daemon::metrics_text::negotiate(accept, text);
    ([(header::CONTENT_TYPE, content_type)], body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secrets::SecretStore;
    use fabric_core::{Clock, CoreConfig, FabricCore, ManualClock, NodeId, NodeInfo};
    use http_body_util::BodyExt as _;
    use std::time::SystemTime;

    /// The next SSE frame of `body`, as text.
    async fn frame(body: &mut axum::body::Body) -> String {
        let frame = body.frame().await.expect("open").expect("a frame");
        String::from_utf8(frame.into_data().expect("data").to_vec()).unwrap()
    }

    // Paused tokio time: time moves only when every task waits, so "before
    // REFRESH" below is exact, not a race with the machine's load.
    #[tokio::test(start_paused = true)]
    async fn a_change_is_pushed_at_once_and_quiet_is_refreshed() {
        let clock = Arc::new(ManualClock::starting_at(SystemTime::UNIX_EPOCH));
        let core = FabricCore::new(CoreConfig::default(), clock.now());
        let controller = Controller::new("alpha".into(), core, SecretStore::default(), clock, None);
        let mut body = summary_stream(State(controller.clone()))
            .await
            .into_response()
            .into_body();
        let first = frame(&mut body).await;
        assert!(
            first.starts_with("event: summary\ndata: {\"cluster\":\"alpha\""),
            "{first}"
        );
        assert!(first.contains("\"nodes\":[]"), "{first}");

        let start = tokio::time::Instant::now();
        let info = NodeInfo {
            fault_domain: 0,
            update_domain: 0,
            capacity_vm_slots: 4,
            agent_version: "test".into(),
            host_endpoint: "127.0.0.1:1".into(),
            role_probe_host: None,
            pid: 1,
            software: Default::default(),
        };
        controller.register(NodeId::new("host-1"), info, "boot-1");
        let pushed = frame(&mut body).await;
        assert!(pushed.contains("\"id\":\"host-1\""), "{pushed}");
        assert!(start.elapsed() < REFRESH, "pushed, not refreshed");

        // Nothing happens: a summary still comes, one REFRESH later.
        let refreshed = frame(&mut body).await;
        assert!(refreshed.contains("\"id\":\"host-1\""), "{refreshed}");
        assert!(start.elapsed() >= REFRESH);

        // Shutdown ends the stream.
        controller.close();
        loop {
            match body.frame().await {
                None => break,
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("{e}"),
            }
        }
    }
}
