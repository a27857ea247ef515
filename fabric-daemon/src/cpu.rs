//! CPU-heavy work (key generation, sealing, opening secrets) run off the
//! async workers, on at most half the machine's cores at a time across the
//! process.
//!
//! A daemon's async workers answer heartbeats and RPCs; a burst of
//! cryptography on them delays everything else. `spawn_blocking` alone
//! moves the work but not its bound: tokio's blocking pool grows to 512
//! threads, which then share the cores with the workers as equals. Measured
//! with hollow hosts (thousands of host agents and their VMs in one
//! process): 20,000 VMs starting at once delayed heartbeats past a 5 s node
//! timeout until this queue held the crypto to half the cores; a real host
//! agent starting 20 VMs never waits on it.

use std::sync::OnceLock;

/// Runs `job` on the blocking pool once one of the process's CPU permits
/// (half the cores, at least one) is free. `None` if the job panicked or
/// the runtime is shutting down.
pub async fn on_a_core<T: Send + 'static>(job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    static CORES: OnceLock<tokio::sync::Semaphore> = OnceLock::new();
    let cores = CORES.get_or_init(|| {
        // Half the cores: the async workers (and, on a laptop, the
        // controller beside them) keep the rest.
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        tokio::sync::Semaphore::new((cores / 2).max(1))
    });
    let _permit = cores.acquire().await.ok()?;
    tokio::task::spawn_blocking(job).await.ok()
}
