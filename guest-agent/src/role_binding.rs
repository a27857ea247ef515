//! Where the role's HTTPS endpoint listens, and the address it is known by.
//!
//! On a bare machine the role binds an ephemeral port on the VM's IP and
//! reports that address. In a container the host's port mapping decides what
//! clients can reach: the role must bind a port from the range the container
//! publishes, on every interface, and report the address clients use (for
//! docker-compose, 127.0.0.1 on the machine running Docker, where the same
//! port numbers are published). The host agent passes all three.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use tokio::net::TcpListener;

/// How the role's endpoint binds and what it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RoleBinding {
    /// The IP to bind.
    pub ip: IpAddr,
    /// Ports to try in order; `None`: any free port.
    pub ports: Option<(u16, u16)>,
    /// The IP reported as the endpoint's; `None`: the bound one.
    pub advertise_ip: Option<IpAddr>,
}

impl Default for RoleBinding {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: None,
            advertise_ip: None,
        }
    }
}

impl RoleBinding {
    /// Binds the first free port of the range (or any port without one).
    /// Other VMs of the same host take ports of the same range, so a port in
    /// use is skipped, not an error; only a range with no free port is.
    pub async fn bind(&self) -> io::Result<TcpListener> {
        let Some((first, last)) = self.ports else {
            return TcpListener::bind(SocketAddr::new(self.ip, 0)).await;
        };
        for port in first..=last {
            match TcpListener::bind(SocketAddr::new(self.ip, port)).await {
                Ok(listener) => return Ok(listener),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("no free port for the role in {}:{first}-{last}", self.ip),
        ))
    }

    /// The address to report for a listener bound at `bound`.
    pub fn advertised(&self, bound: SocketAddr) -> SocketAddr {
        match self.advertise_ip {
            Some(ip) => SocketAddr::new(ip, bound.port()),
            None => bound,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two adjacent loopback ports, the first held by the returned listener
    /// (taken, as another VM's role would hold it), the second free.
    async fn taken_then_free() -> (TcpListener, u16, u16) {
        for _ in 0..50 {
            let held = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let first = held.local_addr().unwrap().port();
            let Some(next) = first.checked_add(1) else {
                continue;
            };
            if TcpListener::bind(("127.0.0.1", next)).await.is_ok() {
                return (held, first, next);
            }
        }
        panic!("no two adjacent loopback ports with the second free");
    }

    #[tokio::test]
    async fn takes_the_next_free_port_of_the_range_and_reports_the_advertised_ip() {
        let (_held, first, last) = taken_then_free().await;
        let binding = RoleBinding {
            ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Some((first, last)),
            advertise_ip: Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9))),
        };
        let role = binding.bind().await.unwrap();
        let bound = role.local_addr().unwrap();
        assert_eq!(bound.port(), last, "the taken port is skipped");
        assert_eq!(
            binding.advertised(bound),
            SocketAddr::new(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)), last)
        );
        // Both ports taken: the range is exhausted, with a message naming it.
        let err = binding.bind().await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
        assert!(
            err.to_string().contains(&format!("{first}-{last}")),
            "{err}"
        );
    }

    #[test]
    fn without_advertise_ip_the_bound_address_is_reported() {
        let bound: SocketAddr = "127.0.0.1:4321".parse().unwrap();
        assert_eq!(RoleBinding::default().advertised(bound), bound);
    }
}
