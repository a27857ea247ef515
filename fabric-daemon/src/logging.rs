//! One log set-up for every daemon: `RUST_LOG` filters (default `info`),
//! and colour only on a terminal (the launchers send daemons' output to log
//! files, where escape codes are noise).

use std::io::IsTerminal;

/// Installs the daemon's log subscriber (stdout).
pub fn init() {
    tracing_subscriber::fmt()
        .with_ansi(std::io::stdout().is_terminal())
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
}
