//! A TLS listener that strangers cannot exhaust.
//!
//! Left to tonic, every accepted socket waits for its TLS handshake for as
//! long as the peer likes, with no cap: 19,990 idle sockets used up a
//! controller's 20,000 descriptors, a restarted host agent could not
//! reconnect and was declared lost, and saves failed with "Too many open
//! files". Here the handshake runs under a timeout, at most
//! `max_handshaking` run at once (a new one evicts the *oldest*, so a flood
//! of idle sockets is pushed out by a real peer, whose handshake takes
//! milliseconds, rather than locking it out: on loopback every peer has the
//! same address, so a per-address cap could not tell them apart), and at
//! most `max_connections` established connections are served. Accept errors
//! (out of descriptors) back off instead of spinning. Refused handshakes are
//! counted and logged at most once a second.
//!
//! Established connections are gRPC over HTTP/2, whose keepalive pings (set
//! on the tonic server) reap the dead ones.

use crate::untrusted::Throttle;
use futures_core::Stream;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

/// How many connections, and how long a handshake may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub handshake_timeout: Duration,
    /// Handshakes in progress at once; a new one evicts the oldest.
    pub max_handshaking: usize,
    /// Established connections served at once; more are closed at once.
    pub max_connections: usize,
}

impl Default for Limits {
    /// A real peer's handshake takes milliseconds; ten seconds covers a
    /// loaded machine. 256 concurrent handshakes and 4,096 connections leave
    /// a 1,000-server cluster room to reconnect all at once.
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            max_handshaking: 256,
            max_connections: 4096,
        }
    }
}

/// What the listener did, for /metrics (each value shared with a registry).
#[derive(Clone, Debug, Default)]
pub struct AcceptStats {
    /// Handshakes completed and connections served.
    pub accepted: Counter,
    /// Handshakes that failed (no client certificate, a stranger's CA,
    /// garbage).
    pub failed: Counter,
    /// Handshakes not finished within the timeout.
    pub timed_out: Counter,
    /// Handshakes cut off to make room for a newer one.
    pub evicted: Counter,
    /// Connections closed because `max_connections` were open.
    pub over_limit: Counter,
    /// Accept errors (usually out of descriptors).
    pub accept_errors: Counter,
    /// Established connections open now.
    pub open: Gauge,
}

/// One established TLS connection; holds its place under `max_connections`
/// until dropped.
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for TlsConn {
    fn drop(&mut self) {
        self.open.dec();
    }
}

impl Connected for TlsConn {
    type ConnectInfo = <TlsStream<TcpStream> as Connected>::ConnectInfo;

    /// The peer's address and certificates, as tonic's own TLS gives them
    /// (so `Request::peer_certs` works unchanged).
    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// The established connections, for `serve_with_incoming`. The accept task
/// ends when this is dropped.
pub struct Incoming {
    rx: mpsc::Receiver<TlsConn>,
    _accept: crate::task::AbortOnDrop<()>,
}

impl Stream for Incoming {
    type Item = io::Result<TlsConn>;
    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|c| c.map(Ok))
    }
}

/// Accepts on `listener` and runs each TLS handshake as the module doc says.
/// `what` names the listener in logs. Needs a tokio runtime.
pub fn incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: Limits,
    stats: AcceptStats,
    what: &'static str,
) -> Incoming {
    let (tx, rx) = mpsc::channel(64);
    let accept = tokio::spawn(accept_loop(listener, config, limits, stats, what, tx));
    Incoming {
        rx,
        _accept: crate::task::AbortOnDrop(accept),
    }
}

static REFUSED_LOG: Throttle = Throttle::new(Duration::from_secs(1));
static ACCEPT_ERROR_LOG: Throttle = Throttle::new(Duration::from_secs(1));

async fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    limits: Limits,
    stats: AcceptStats,
    what: &'static str,
    tx: mpsc::Sender<TlsConn>,
) {
    let acceptor = TlsAcceptor::from(config);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut handshaking: VecDeque<tokio::task::AbortHandle> = VecDeque::new();
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                stats.accept_errors.inc();
                if let Some(held) = ACCEPT_ERROR_LOG.allow() {
                    tracing::warn!(listener = what, held_back = held, "accept failed: {e}");
                }
                // Out of descriptors, most likely: spinning would not free
                // any; handshakes timing out will.
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        handshaking.retain(|h| !h.is_finished());
        while handshaking.len() >= limits.max_handshaking.max(1) {
            if let Some(oldest) = handshaking.pop_front()
                && !oldest.is_finished()
            {
                oldest.abort();
                stats.evicted.inc();
            }
        }
        let (acceptor, stats, slots, tx) =
            (acceptor.clone(), stats.clone(), slots.clone(), tx.clone());
        let task = tokio::spawn(async move {
            let tls = match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp))
                .await
            {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    stats.failed.inc();
                    if let Some(held) = REFUSED_LOG.allow() {
                        tracing::warn!(listener = what, %peer, held_back = held, "TLS handshake refused: {e}");
                    }
                    return;
                }
                Err(_) => {
                    stats.timed_out.inc();
                    return;
                }
            };
            let Ok(permit) = slots.try_acquire_owned() else {
                stats.over_limit.inc();
                if let Some(held) = REFUSED_LOG.allow() {
                    tracing::warn!(listener = what, %peer, held_back = held, "connection closed: {} connections are open", limits.max_connections);
                }
                return;
            };
            stats.accepted.inc();
            stats.open.inc();
            let conn = TlsConn {
                inner: tls,
                _permit: permit,
                open: stats.open.clone(),
            };
            let _ = tx.send(conn).await;
        });
        handshaking.push_back(task.abort_handle());
    }
}

/// Raises this process's open-file limit to its hard limit, so that the
/// limits above, not the descriptor table, decide who is refused. Returns
/// the soft limit now in force.
pub fn raise_descriptor_limit() -> io::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).map_err(io::Error::from)?;
    // Linux refuses more than fs.nr_open (1,048,576 by default), and an
    // "unlimited" hard limit would ask for that.
    let wanted = hard.min(1 << 20);
    if soft < wanted {
        setrlimit(Resource::RLIMIT_NOFILE, wanted, hard).map_err(io::Error::from)?;
        return Ok(wanted);
    }
    Ok(soft)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server_config() -> Arc<rustls::ServerConfig> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = rcgen::CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        Arc::new(
            rustls::ServerConfig::builder()
                .with_no_client_auth()
                .with_single_cert(vec![cert.der().clone()], key)
                .unwrap(),
        )
    }

    /// Polls `done` until it holds, or panics after ten seconds.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sockets that never start a handshake are evicted beyond the cap,
    /// and the rest time out: none is held.
    #[tokio::test]
    async fn idle_sockets_are_evicted_then_timed_out() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = AcceptStats::default();
        let limits = Limits {
            // Long enough that all five connect before any times out.
            handshake_timeout: Duration::from_secs(2),
            max_handshaking: 2,
            max_connections: 1,
        };
        let _incoming = incoming(listener, server_config(), limits, stats.clone(), "test");
        let mut idle = Vec::new();
        for _ in 0..5 {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        until("3 evicted", || stats.evicted.get() == 3).await;
        until("2 timed out", || stats.timed_out.get() == 2).await;
        assert_eq!(stats.accepted.get(), 0);
        assert_eq!(stats.open.get(), 0);
    }

    /// Garbage instead of a ClientHello is a failed handshake, counted.
    #[tokio::test]
    async fn garbage_is_a_failed_handshake() {
        use tokio::io::AsyncWriteExt;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stats = AcceptStats::default();
        let _incoming = incoming(
            listener,
            server_config(),
            Limits::default(),
            stats.clone(),
            "test",
        );
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        until("1 failed", || stats.failed.get() == 1).await;
    }
}
