//! A health probe over mutual TLS: `grpc.health.v1.Health/Check("")` must
//! answer SERVING.
//!
//! Container images of Fabric hold no shell and no curl, so a compose
//! healthcheck runs the daemon's own binary (`fabric-controller probe`,
//! `host-agent probe`), which calls this with the daemon's own certificate:
//! every Fabric port requires a client certificate from the cluster CA.

use crate::tls::TlsFiles;
use std::time::Duration;
use tonic::transport::Endpoint;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

/// Why a probe failed, in words an operator reads in `docker ps`.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Tls(#[from] crate::PkiError),
    #[error("{endpoint}: {detail}")]
    Unreachable { endpoint: String, detail: String },
    #[error("{endpoint}: health is {status}, not SERVING")]
    NotServing { endpoint: String, status: String },
}

/// Calls Health/Check on `endpoint` (an https:// URL), verifying the server
/// certificate against `server_name`, within `timeout`.
pub async fn check_serving(
    endpoint: &str,
    server_name: &str,
    files: &TlsFiles,
    timeout: Duration,
) -> Result<(), ProbeError> {
    crate::install_crypto_provider();
    let tls = files.load()?;
    let unreachable = |detail: String| ProbeError::Unreachable {
        endpoint: endpoint.to_owned(),
        detail,
    };
    let channel = Endpoint::from_shared(endpoint.to_owned())
        .map_err(|e| unreachable(e.to_string()))?
        .tls_config(tls.client_config(server_name))
        .map_err(|e| unreachable(e.to_string()))?
        .connect_timeout(timeout)
        .timeout(timeout)
        .connect()
        .await
        .map_err(|e| unreachable(source_chain(&e)))?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| unreachable(format!("Health/Check: {}", s.message())))?;
    match ServingStatus::try_from(response.into_inner().status) {
        Ok(ServingStatus::Serving) => Ok(()),
        Ok(other) => Err(ProbeError::NotServing {
            endpoint: endpoint.to_owned(),
            status: other.as_str_name().to_owned(),
        }),
        Err(e) => Err(ProbeError::NotServing {
            endpoint: endpoint.to_owned(),
            status: e.to_string(),
        }),
    }
}

/// The URL a probe inside the daemon's own container or host should call for
/// a listen address: a wildcard address (0.0.0.0, ::) is reached on loopback.
pub fn local_url(listen: std::net::SocketAddr) -> String {
    let ip = if listen.ip().is_unspecified() {
        match listen {
            std::net::SocketAddr::V4(_) => std::net::IpAddr::from([127, 0, 0, 1]),
            std::net::SocketAddr::V6(_) => std::net::IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        }
    } else {
        listen.ip()
    };
    format!("https://{}", std::net::SocketAddr::new(ip, listen.port()))
}

/// A transport error with its causes ("transport error: ... : connection refused").
fn source_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_listen_addresses_are_probed_on_loopback() {
        assert_eq!(
            local_url("0.0.0.0:7400".parse().unwrap()),
            "https://127.0.0.1:7400"
        );
        assert_eq!(
            local_url("[::]:7400".parse().unwrap()),
            "https://[::1]:7400"
        );
        assert_eq!(
            local_url("10.1.2.3:7500".parse().unwrap()),
            "https://10.1.2.3:7500"
        );
    }
}
