//! The controller's read-only HTTP server: the dashboard page (`/`), the
//! JSON it polls (`/api/summary`) and Prometheus metrics (`/metrics`).
//!
//! Plain HTTP on purpose: it changes nothing, shows no secret (only public
//! facts the status RPC also shows), and binds loopback unless configured
//! otherwise, so a browser and a Prometheus server can reach it without the
//! cluster's client certificates. The page is one server-side file of HTML
//! with a little plain JavaScript (no build step) that polls every second,
//! so a change shows within two seconds.
//!
//! - [`summary`]: the dashboard's view of the core.

pub mod summary;

use crate::controller::Controller;
use axum::Router;
use axum::extract::State;
use axum::http::header;
use axum::response::{Html, IntoResponse, Json};
use axum::routing::get;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;

const PAGE: &str = include_str!("page.html");

/// The routes, over a running controller.
pub fn router(controller: Arc<Controller>) -> Router {
    Router::new()
        .route("/", get(page))
        .route("/api/summary", get(summary_json))
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

async fn summary_json(State(controller): State<Arc<Controller>>) -> Json<summary::Summary> {
    let now = controller.clock().now();
    let core = controller.read();
    Json(summary::Summary::of(controller.cluster(), &core, now))
}

async fn metrics(State(controller): State<Arc<Controller>>) -> impl IntoResponse {
    let text = {
        let core = controller.read();
        controller.metrics().render(&core)
    };
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
