//! A background task that ends with whatever owns it.
//!
//! A spawned tokio task outlives the function that spawned it unless someone
//! aborts it. Holding its handle in an [`AbortOnDrop`] ties its life to a
//! scope: when a server's `run` returns (or its future is dropped), its tick
//! loop, metrics server and links stop too, so nothing of a stopped daemon
//! acts on its own.

/// Aborts the task when dropped.
pub struct AbortOnDrop<T>(pub tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}
