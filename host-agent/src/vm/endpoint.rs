//! The role endpoint a guest may claim: an address and port this host gave it.
//!
//! A guest agent reports where its role serves, and the host agent passes
//! that on to the controller, which shows it to operators and clients. A
//! guest is not trusted: unchecked, one VM could report a 4 MiB endpoint
//! (every heartbeat of its server then exceeds the controller's message
//! limit, and the server is taken for lost: a guest's fault blamed on its
//! server, the 2012 lesson inverted), a foreign address ("6.6.6.6:443"), or
//! a neighbour's endpoint. So the host agent accepts only an `IP:PORT` on the
//! IP it told the VM to advertise, within the port range it gave the VM, and
//! not claimed by another VM of this host. Anything else is the VM's own
//! failure (see `VmRecord::fail`), never its server's.

use std::net::{IpAddr, SocketAddr};

/// The longest endpoint text looked at: "[ffff:...]:65535" fits with room.
pub const MAX_ENDPOINT_LEN: usize = 64;

/// What a VM of this host may report as its role endpoint.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndpointRule {
    /// The IP every role endpoint of this host advertises.
    pub ip: IpAddr,
    /// The inclusive port range roles bind; `None`: any port.
    pub ports: Option<(u16, u16)>,
}

/// Why a reported endpoint was refused, in the operator's words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum EndpointError {
    #[error("role endpoint of {0} bytes is longer than {MAX_ENDPOINT_LEN}")]
    TooLong(usize),
    #[error("role endpoint {0:?} is not IP:PORT")]
    NotAnAddress(String),
    #[error("role endpoint {got} is not on {expected}, the address this host gave the VM")]
    ForeignAddress { got: SocketAddr, expected: IpAddr },
    #[error("role endpoint {got} is outside the ports {first}-{last} this host gave the VM")]
    PortOutOfRange {
        got: SocketAddr,
        first: u16,
        last: u16,
    },
    #[error("role endpoint {0} is already another VM's on this host")]
    Taken(SocketAddr),
}

impl EndpointRule {
    /// Parses `text` and checks it against the rule; `taken` says whether
    /// another VM of this host already reports the address.
    pub fn check(
        &self,
        text: &str,
        taken: impl Fn(SocketAddr) -> bool,
    ) -> Result<SocketAddr, EndpointError> {
        if text.len() > MAX_ENDPOINT_LEN {
            return Err(EndpointError::TooLong(text.len()));
        }
        let got: SocketAddr = text
            .parse()
            .map_err(|_| EndpointError::NotAnAddress(text.to_owned()))?;
        if got.ip() != self.ip {
            return Err(EndpointError::ForeignAddress {
                got,
                expected: self.ip,
            });
        }
        if let Some((first, last)) = self.ports
            && !(first..=last).contains(&got.port())
        {
            return Err(EndpointError::PortOutOfRange { got, first, last });
        }
        if got.port() == 0 {
            return Err(EndpointError::NotAnAddress(text.to_owned()));
        }
        if taken(got) {
            return Err(EndpointError::Taken(got));
        }
        Ok(got)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Fuzzing the guest's endpoint (issue 13): whatever a guest sends,
        /// what is accepted is on the given IP and within the given ports.
        #[test]
        fn whatever_is_accepted_is_within_the_rule(text in ".{0,100}|(127\\.0\\.0\\.1|0\\.0\\.0\\.0|6\\.6\\.6\\.6):[0-9]{1,6}") {
            let r = rule(Some((9000, 9009)));
            if let Ok(addr) = r.check(&text, |_| false) {
                prop_assert_eq!(addr.ip(), r.ip);
                prop_assert!((9000..=9009).contains(&addr.port()));
            }
        }
    }

    fn rule(ports: Option<(u16, u16)>) -> EndpointRule {
        EndpointRule {
            ip: "127.0.0.1".parse().unwrap(),
            ports,
        }
    }

    #[test]
    fn an_endpoint_on_the_given_ip_and_ports_is_accepted() {
        let r = rule(Some((9000, 9009)));
        assert_eq!(
            r.check("127.0.0.1:9003", |_| false),
            Ok("127.0.0.1:9003".parse().unwrap())
        );
        assert!(rule(None).check("127.0.0.1:40000", |_| false).is_ok());
    }

    #[test]
    fn hostile_endpoints_are_refused_with_a_reason() {
        let r = rule(Some((9000, 9009)));
        let huge = "1".repeat(4 << 20);
        assert_eq!(
            r.check(&huge, |_| false),
            Err(EndpointError::TooLong(4 << 20))
        );
        assert!(matches!(
            r.check("6.6.6.6:9000", |_| false),
            Err(EndpointError::ForeignAddress { .. })
        ));
        assert!(matches!(
            r.check("127.0.0.1:22", |_| false),
            Err(EndpointError::PortOutOfRange { .. })
        ));
        assert!(matches!(
            r.check("localhost:9000", |_| false),
            Err(EndpointError::NotAnAddress(_))
        ));
        assert!(matches!(
            rule(None).check("127.0.0.1:0", |_| false),
            Err(EndpointError::NotAnAddress(_))
        ));
        assert!(matches!(
            r.check("127.0.0.1:9001", |_| true),
            Err(EndpointError::Taken(_))
        ));
        // The message names the problem in the operator's words.
        let text = r.check("6.6.6.6:9000", |_| false).unwrap_err().to_string();
        assert!(text.contains("not on 127.0.0.1"), "{text}");
    }
}
