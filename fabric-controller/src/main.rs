//! `fabric-controller`: parses flags, binds, and runs until SIGINT/SIGTERM;
//! `fabric-controller probe` checks a running one's health instead.

use clap::Parser;
use fabric_controller::config::{Args, Command, ControllerConfig};
use fabric_controller::{clock::SystemClock, server};
use std::sync::Arc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fabric_daemon::logging::init();
    let mut args = Args::parse();
    let command = args.command.take();
    let config = args.resolve()?;
    if let Some(Command::Probe { timeout }) = command {
        return probe(&config, timeout).await;
    }
    if let Some(replica) = config.replica.clone() {
        // A replica binds its ports only while it leads.
        fabric_controller::replica::run(
            config,
            replica,
            Arc::new(SystemClock::new()),
            fabric_daemon::shutdown::signal(),
        )
        .await?;
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if let Some(path) = &config.addr_file {
        fabric_daemon::files::write_atomically(path, listener.local_addr()?.to_string())?;
    }
    server::run(
        config,
        listener,
        Arc::new(SystemClock::new()),
        fabric_daemon::shutdown::signal(),
    )
    .await?;
    Ok(())
}

/// Health-checks the controller these flags describe, with its own
/// certificate (every port requires one from the cluster CA).
async fn probe(config: &ControllerConfig, timeout: std::time::Duration) -> anyhow::Result<()> {
    let url = fabric_pki::probe::local_url(config.listen);
    fabric_pki::probe::check_serving(&url, "localhost", &config.tls, timeout).await?;
    println!("fabric controller at {url}: SERVING");
    Ok(())
}
