//! [`BlockingEtcd`]: etcd calls for code that must block until they end.
//!
//! The controller's `Store` is synchronous: a decision is saved before the
//! lock that made it is released, on whatever thread made it, often one of
//! tokio's workers. Blocking on a future there panics (a runtime inside a
//! runtime), so the calls run on a thread of their own with its own small
//! runtime, and the caller waits on a channel, as it would wait on fsync.

use crate::client::{Etcd, EtcdError};
use std::future::Future;
use std::sync::mpsc;
use std::time::Duration;

type Job = Box<dyn FnOnce(&Etcd, &tokio::runtime::Runtime) + Send>;

/// An [`Etcd`] on its own thread; dropped, the thread ends.
pub struct BlockingEtcd {
    jobs: mpsc::Sender<Job>,
}

fn gone() -> EtcdError {
    EtcdError::Endpoint {
        endpoint: String::new(),
        reason: "the etcd client thread has stopped".into(),
    }
}

impl BlockingEtcd {
    /// Starts the thread and connects (lazily) to `endpoints`.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Self, EtcdError> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let (ready_tx, ready) = mpsc::sync_channel(1);
        let endpoints = endpoints.to_vec();
        std::thread::Builder::new()
            .name("etcd-client".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = ready_tx.send(Err(EtcdError::Endpoint {
                            endpoint: String::new(),
                            reason: format!("cannot start the etcd client's runtime: {e}"),
                        }));
                        return;
                    }
                };
                // Channels are made inside the runtime that drives them.
                let etcd = match runtime.block_on(async { Etcd::new(&endpoints, timeout) }) {
                    Ok(etcd) => {
                        let _ = ready_tx.send(Ok(()));
                        etcd
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                while let Ok(job) = queue.recv() {
                    job(&etcd, &runtime);
                }
            })
            .map_err(|e| EtcdError::Endpoint {
                endpoint: String::new(),
                reason: format!("cannot start the etcd client thread: {e}"),
            })?;
        ready.recv().map_err(|_| gone())??;
        Ok(Self { jobs })
    }

    /// Runs `call` on the client's thread and waits for its answer.
    pub fn call<T, F, Fut>(&self, call: F) -> Result<T, EtcdError>
    where
        T: Send + 'static,
        F: FnOnce(Etcd) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, EtcdError>>,
    {
        let (answer_tx, answer) = mpsc::sync_channel(1);
        let job: Job = Box::new(move |etcd, runtime| {
            let _ = answer_tx.send(runtime.block_on(call(etcd.clone())));
        });
        self.jobs.send(job).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())?
    }
}
