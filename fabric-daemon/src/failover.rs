//! [`Failover`]: one gRPC channel over the addresses of a redundant
//! controller, of which one (the leader) serves at a time.
//!
//! Requests go to the address that answered last. A request that fails in
//! transport (connection refused: a follower, which does not listen; reset:
//! a leader that stepped down; timed out: a paused one) moves the channel on
//! to the next address, and the caller's usual retry (the next heartbeat,
//! after its backoff) goes there. Answers from a server, refusals included,
//! never move it: only the leader serves, so whoever answers is it.
//!
//! tonic's `Channel::balance_list` does not do this: it spreads requests
//! over every address and keeps choosing dead ones (hyperium/tonic#643).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;
use tonic::body::Body;
use tonic::transport::Channel;
use tower_service::Service;

/// Lazily connected channels to each address, and which one is in use.
#[derive(Clone)]
pub struct Failover {
    inner: Arc<Inner>,
}

struct Inner {
    channels: Vec<(String, Channel)>,
    current: AtomicUsize,
    /// The configured longest wait for an answer's headers, connection
    /// included.
    configured: Duration,
    /// The wait in force, in nanoseconds: `configured`, or less once
    /// [`Failover::bound_by`] lowered it.
    timeout_ns: AtomicU64,
}

impl Inner {
    fn timeout(&self) -> Duration {
        Duration::from_nanos(self.timeout_ns.load(Ordering::Relaxed))
    }
}

impl Failover {
    /// `channels`: each address (for logs) with its channel; at least one.
    /// `timeout` bounds each request until its answer's headers, the
    /// connection included: tonic's connect timeout bounds the TCP connect
    /// only, and a paused server (the kernel still accepts) would hold a
    /// handshake forever. A stream's body is not bounded.
    pub fn new(channels: Vec<(String, Channel)>, timeout: Duration) -> Self {
        assert!(!channels.is_empty(), "a failover channel needs an address");
        Self {
            inner: Arc::new(Inner {
                channels,
                current: AtomicUsize::new(0),
                configured: timeout,
                timeout_ns: AtomicU64::new(nanos(timeout)),
            }),
        }
    }

    /// Lowers the wait to `limit` if the configured one is longer (never
    /// raises it); the wait now in force. A host learns the controller's
    /// node timeout at registration: waiting on a silent replica longer
    /// than a fraction of it would outlast the next leader's grace.
    pub fn bound_by(&self, limit: Duration) -> Duration {
        let wait = self.inner.configured.min(limit);
        self.inner.timeout_ns.store(nanos(wait), Ordering::Relaxed);
        wait
    }

    /// The wait in force.
    pub fn timeout(&self) -> Duration {
        self.inner.timeout()
    }

    /// The address requests go to now.
    pub fn current(&self) -> &str {
        let i = self.inner.current.load(Ordering::Relaxed);
        &self.inner.channels[i].0
    }
}

impl Service<http::Request<Body>> for Failover {
    type Response = http::Response<Body>;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future =
        Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send + 'static>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Readiness is the chosen channel's, polled in `call`.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let inner = self.inner.clone();
        let used = inner.current.load(Ordering::Relaxed);
        let mut channel = inner.channels[used].1.clone();
        Box::pin(async move {
            let wait = inner.timeout();
            let answered = tokio::time::timeout(wait, async {
                std::future::poll_fn(|cx| channel.poll_ready(cx)).await?;
                channel.call(request).await
            })
            .await;
            let answer: Result<_, Self::Error> = match answered {
                Ok(answer) => answer.map_err(Into::into),
                Err(_) => {
                    Err(format!("{}: no answer within {wait:?}", inner.channels[used].0).into())
                }
            };
            if answer.is_err() && inner.channels.len() > 1 {
                let next = (used + 1) % inner.channels.len();
                // Moved once per failure of the address in use: requests
                // failing together do not skip an address.
                if inner
                    .current
                    .compare_exchange(used, next, Ordering::Relaxed, Ordering::Relaxed)
                    .is_ok()
                {
                    tracing::info!(
                        failed = %inner.channels[used].0,
                        next = %inner.channels[next].0,
                        "no answer from this controller address; trying the next"
                    );
                }
            }
            answer
        })
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::transport::{Endpoint, Server};
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    fn lazy(addr: std::net::SocketAddr) -> (String, Channel) {
        let url = format!("http://{addr}");
        let channel = Endpoint::from_shared(url.clone()).unwrap().connect_lazy();
        (url, channel)
    }

    #[tokio::test]
    async fn the_wait_is_lowered_by_a_bound_and_never_raised() {
        let addr = "127.0.0.1:1".parse().unwrap();
        let f = Failover::new(vec![lazy(addr)], Duration::from_secs(5));
        assert_eq!(f.timeout(), Duration::from_secs(5));
        assert_eq!(f.bound_by(Duration::from_secs(1)), Duration::from_secs(1));
        assert_eq!(f.timeout(), Duration::from_secs(1));
        // A longer bound (a controller with a longer node timeout) goes
        // back up to the configured wait, never past it.
        assert_eq!(f.bound_by(Duration::from_secs(60)), Duration::from_secs(5));
        assert_eq!(f.clone().timeout(), Duration::from_secs(5));
    }

    /// A server that answers health checks, until dropped.
    async fn serving() -> (
        std::net::SocketAddr,
        crate::task::AbortOnDrop<Result<(), tonic::transport::Error>>,
    ) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (_reporter, health) = tonic_health::server::health_reporter();
        let server = crate::task::AbortOnDrop(tokio::spawn(
            Server::builder()
                .add_service(health)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        ));
        (addr, server)
    }

    #[tokio::test]
    async fn a_refused_address_moves_the_channel_to_the_next_that_answers() {
        // A port nobody listens on: a follower.
        let refused = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let (serving, _server) = serving().await;
        let failover = Failover::new(
            vec![lazy(refused), lazy(serving)],
            std::time::Duration::from_secs(3),
        );
        let mut client = HealthClient::new(failover.clone());
        let check = HealthCheckRequest {
            service: String::new(),
        };
        let first = client.check(check.clone()).await;
        assert!(first.is_err(), "the refused address fails the call");
        assert_eq!(failover.current(), format!("http://{serving}"));
        client
            .check(check.clone())
            .await
            .expect("the next one answers");
        // An answer, even a refusal, does not move it.
        let unknown = client
            .check(HealthCheckRequest {
                service: "no.such.Service".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(unknown.code(), tonic::Code::NotFound);
        assert_eq!(failover.current(), format!("http://{serving}"));
    }

    #[tokio::test]
    async fn a_silent_address_a_stopped_process_is_given_up_after_the_timeout() {
        // Bound but never accepting: the kernel completes TCP handshakes
        // into the backlog, as for a process under SIGSTOP, and nothing
        // more ever comes.
        let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let silent_addr = silent.local_addr().unwrap();
        let (serving, _server) = serving().await;
        let failover = Failover::new(
            vec![lazy(silent_addr), lazy(serving)],
            std::time::Duration::from_millis(300),
        );
        let mut client = HealthClient::new(failover.clone());
        let check = HealthCheckRequest {
            service: String::new(),
        };
        let first = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            client.check(check.clone()),
        )
        .await
        .expect("given up on, not waited on forever");
        assert!(first.is_err());
        client.check(check).await.expect("the next one answers");
        drop(silent);
    }
}
