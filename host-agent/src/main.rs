//! `host-agent`: parses flags, binds, and runs until SIGINT/SIGTERM;
//! `host-agent probe` checks a running one's health instead.

use clap::Parser;
use host_agent::config::{Args, Command};
use host_agent::server;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fabric_daemon::logging::init();
    let mut args = Args::parse();
    let command = args.command.take();
    let config = args.resolve()?;
    if let Some(Command::Probe { timeout }) = command {
        let url = fabric_pki::probe::local_url(config.listen);
        fabric_pki::probe::check_serving(&url, "localhost", &config.tls, timeout).await?;
        println!("host agent at {url}: SERVING");
        return Ok(());
    }
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", config.listen))?;
    if let Some(path) = &config.addr_file {
        host_agent::addr_file::write(path, listener.local_addr()?)?;
    }
    server::run(config, listener, fabric_daemon::shutdown::signal()).await
}
