//! `fabric-netplug`: the networking plugin process a host agent runs (see
//! the library's docs). Reads the bindings file every 200 ms, applies what
//! changed, writes its status; SIGTERM stops it.

use clap::Parser;
use fabric_netplug::{POLL, bindings, forward::Forwarder};
use std::path::PathBuf;
use std::time::Duration;

/// How long before a bind that failed is tried again.
const RETRY_BINDS: Duration = Duration::from_secs(2);

#[derive(Debug, Parser)]
#[command(name = "fabric-netplug", version, about = "Fabric's networking plugin")]
struct Args {
    /// The bindings file the host agent writes.
    #[arg(long)]
    bindings: PathBuf,
    /// Where this plugin says what it bound, and why not.
    #[arg(long)]
    status: PathBuf,
    /// The bindings interface version this plugin speaks.
    #[arg(long, default_value_t = 1)]
    api: u32,
    /// This plugin's version, as its package names it (shown in status).
    #[arg(long = "plugin-version", default_value = "builtin")]
    plugin_version: String,
}

#[derive(serde::Serialize)]
struct Status<'a> {
    plugin_version: &'a str,
    api: u32,
    bound: Vec<String>,
    /// Public addresses it could not bind (held by another process): the
    /// host agent gives those VMs another public port.
    failed: Vec<String>,
    error: Option<String>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    fabric_daemon::logging::init();
    let args = Args::parse();
    anyhow::ensure!(
        bindings::APIS.contains(&args.api),
        "--api {} is not one of {:?}",
        args.api,
        bindings::APIS
    );
    tracing::info!(version = %args.plugin_version, api = args.api, bindings = %args.bindings.display(), "networking plugin started");
    let mut forwarder = Forwarder::default();
    // The bindings last applied, and when a bind that failed (a port still
    // held) may be tried again.
    let mut seen: Option<String> = None;
    let mut retry_at: Option<tokio::time::Instant> = None;
    let mut last_status = String::new();
    let mut ticker = tokio::time::interval(POLL);
    let stop = fabric_daemon::shutdown::signal();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticker.tick() => {}
            _ = &mut stop => return Ok(()),
        }
        let text = std::fs::read_to_string(&args.bindings).unwrap_or_default();
        let retry_due = retry_at.is_some_and(|at| tokio::time::Instant::now() >= at);
        if seen.as_ref() == Some(&text) && !retry_due {
            continue;
        }
        let mut failed = Vec::new();
        let (bound, error) = match bindings::decode(args.api, &text) {
            Ok(b) => {
                let applied = forwarder.apply(&b).await;
                failed = applied.failed.iter().map(|(a, _)| a.to_string()).collect();
                retry_at =
                    (!applied.failed.is_empty()).then(|| tokio::time::Instant::now() + RETRY_BINDS);
                let error = (!applied.failed.is_empty()).then(|| {
                    applied
                        .failed
                        .iter()
                        .map(|(a, e)| format!("cannot bind {a}: {e}"))
                        .collect::<Vec<_>>()
                        .join("; ")
                });
                (applied.bound, error)
            }
            Err(e) => {
                retry_at = None;
                let error = if text.is_empty() {
                    format!("no bindings yet ({e})")
                } else {
                    tracing::error!("{e}");
                    e.to_string()
                };
                (forwarder.apply(&[]).await.bound, Some(error))
            }
        };
        seen = Some(text);
        let status = serde_json::to_string_pretty(&Status {
            plugin_version: &args.plugin_version,
            api: args.api,
            bound: bound.iter().map(ToString::to_string).collect(),
            failed,
            error,
        })?;
        if status != last_status {
            let tmp = args.status.with_extension("tmp");
            if std::fs::write(&tmp, &status).is_ok() && std::fs::rename(&tmp, &args.status).is_ok()
            {
                last_status = status;
            }
        }
    }
}
