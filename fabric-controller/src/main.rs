//! `fabric-controller`: parses flags, binds, and runs until SIGINT/SIGTERM.

use clap::Parser;
use fabric_controller::{config::Args, core::SystemClock, server};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let config = Args::parse().resolve()?;
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if let Some(path) = &config.addr_file {
        write_atomically(path, &listener.local_addr()?.to_string())?;
    }
    server::run(
        config,
        listener,
        Arc::new(SystemClock::new()),
        shutdown_signal(),
    )
    .await?;
    Ok(())
}

/// Writes via a temporary file and rename so readers never see half a file.
fn write_atomically(path: &std::path::Path, contents: &str) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down");
}
