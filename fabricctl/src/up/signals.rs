//! The signals the launcher reacts to, registered before any child exists so
//! none is missed: SIGINT, SIGTERM and SIGHUP mean "stop the cluster",
//! SIGCHLD means "reap".

use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGINT, SIGTERM, SIGHUP.
pub struct StopSignals {
    interrupt: Signal,
    terminate: Signal,
    hangup: Signal,
}

impl StopSignals {
    pub fn register() -> std::io::Result<Self> {
        Ok(Self {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
            hangup: signal(SignalKind::hangup())?,
        })
    }

    /// Resolves with the name of the first stop signal received.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.interrupt.recv() => "SIGINT",
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.hangup.recv() => "SIGHUP",
        }
    }
}

/// SIGCHLD: some child changed state.
pub fn child_signal() -> std::io::Result<Signal> {
    signal(SignalKind::child())
}
