//! Listeners on public addresses, each forwarding its connections to the
//! private address it is bound to now.

use crate::bindings::Binding;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

struct Listener {
    target: Arc<RwLock<SocketAddr>>,
    vm: String,
    task: JoinHandle<()>,
}

/// The plugin's listeners, by public address.
#[derive(Default)]
pub struct Forwarder {
    listeners: BTreeMap<SocketAddr, Listener>,
}

/// What applying a set of bindings did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub bound: Vec<SocketAddr>,
    /// Public addresses that could not be bound, with why.
    pub failed: Vec<(SocketAddr, String)>,
}

impl Forwarder {
    /// Makes the listeners match `bindings`: new ones bound, gone ones
    /// closed, moved targets followed (a VM reincarnated on a new private
    /// port keeps its public one).
    pub async fn apply(&mut self, bindings: &[Binding]) -> Applied {
        let wanted: BTreeMap<SocketAddr, &Binding> =
            bindings.iter().map(|b| (b.public, b)).collect();
        self.listeners.retain(|public, l| {
            let keep = wanted.contains_key(public);
            if !keep {
                l.task.abort();
                tracing::info!(%public, vm = %l.vm, "unbound");
            }
            keep
        });
        let mut applied = Applied::default();
        for (public, b) in wanted {
            if let Some(l) = self.listeners.get_mut(&public) {
                *l.target.write().unwrap_or_else(|e| e.into_inner()) = b.private;
                l.vm.clone_from(&b.vm);
                applied.bound.push(public);
                continue;
            }
            match TcpListener::bind(public).await {
                Ok(listener) => {
                    let target = Arc::new(RwLock::new(b.private));
                    let task = tokio::spawn(serve(listener, target.clone()));
                    tracing::info!(%public, private = %b.private, vm = %b.vm, "bound");
                    self.listeners.insert(
                        public,
                        Listener {
                            target,
                            vm: b.vm.clone(),
                            task,
                        },
                    );
                    applied.bound.push(public);
                }
                Err(e) => {
                    tracing::warn!(%public, vm = %b.vm, "cannot bind: {e}");
                    applied.failed.push((public, e.to_string()));
                }
            }
        }
        applied
    }
}

async fn serve(listener: TcpListener, target: Arc<RwLock<SocketAddr>>) {
    loop {
        let (mut inbound, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let to = *target.read().unwrap_or_else(|e| e.into_inner());
        tokio::spawn(async move {
            match TcpStream::connect(to).await {
                Ok(mut outbound) => {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
                Err(e) => tracing::debug!(%peer, %to, "VM endpoint refused: {e}"),
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        addr
    }

    async fn roundtrip(addr: SocketAddr) -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    fn free_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[tokio::test]
    async fn forwards_follows_a_moved_target_and_unbinds() {
        let (a, b) = (echo_server().await, echo_server().await);
        let public = free_port();
        let mut f = Forwarder::default();
        let applied = f
            .apply(&[Binding {
                vm: "vm".into(),
                public,
                private: a,
            }])
            .await;
        assert_eq!(applied.bound, vec![public]);
        assert_eq!(roundtrip(public).await.unwrap(), b"ping");
        f.apply(&[Binding {
            vm: "vm".into(),
            public,
            private: b,
        }])
        .await;
        assert_eq!(roundtrip(public).await.unwrap(), b"ping");
        f.apply(&[]).await;
        tokio::task::yield_now().await;
        assert!(
            roundtrip(public).await.is_err(),
            "still forwarding after unbind"
        );
    }
}
