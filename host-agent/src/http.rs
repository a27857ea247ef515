//! The host agent's plain-HTTP `/metrics` endpoint for Prometheus.
//!
//! Read-only and free of secrets (counts and states only), so it needs no
//! client certificate; bound to loopback unless `--http-listen` says
//! otherwise.

use crate::vm::manager::VmManager;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Serves `/metrics` on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, vms: Arc<VmManager>) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .with_state(vms);
    axum::serve(listener, app).await
}

/// OpenMetrics for Prometheus, the classic text format for anyone who did
/// not ask for it (see `fabric_daemon::metrics_text`).
async fn metrics(
    State(vms): State<Arc<VmManager>>,
    headers: axum::http::HeaderMap,
) -> impl IntoResponse {
    let text = vms.metrics().render(&vms.vm_states());
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let (content_type, body) = fabric_daemon::metrics_text::negotiate(accept, text);
    ([(header::CONTENT_TYPE, content_type)], body)
}
