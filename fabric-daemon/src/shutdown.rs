//! The signal that stops a daemon.
//!
//! Every daemon stops on SIGTERM (how supervisors, `fabricctl up` and
//! Docker stop it) or SIGINT (an operator's Ctrl-C), then drains: its
//! `run(listener, shutdown)` takes this future from `main`.

/// Completes on SIGTERM or SIGINT.
pub async fn signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGTERM; stopping on SIGINT only");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    tracing::info!("shutting down");
}
