//! Waiting for a daemon to be ready: its addr file, then health SERVING.
//!
//! Every wait polls with a deadline rather than sleeping a fixed time, and
//! gives up early if the process died meanwhile.

use crate::target::Target;
use anyhow::{anyhow, bail};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;
use tokio::time::Instant;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

pub const POLL: Duration = Duration::from_millis(100);
pub const STARTUP_DEADLINE: Duration = Duration::from_secs(20);

/// Reads an addr file ("ip:port"); `None` while absent or incomplete.
pub fn read_addr_file(path: &Path) -> Option<SocketAddr> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Polls `path` until it holds an address. `died` returns why the process
/// is gone, if it is.
pub async fn wait_addr_file(
    name: &str,
    path: &Path,
    deadline: Instant,
    died: &mut dyn FnMut() -> Option<String>,
) -> anyhow::Result<SocketAddr> {
    loop {
        if let Some(addr) = read_addr_file(path) {
            return Ok(addr);
        }
        if let Some(why) = died() {
            bail!("{name} exited during startup: {why}");
        }
        if Instant::now() >= deadline {
            bail!(
                "{name} did not write its address to {} within {}s",
                path.display(),
                STARTUP_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls grpc.health.v1 Check("") until SERVING.
pub async fn wait_serving(
    target: &Target,
    deadline: Instant,
    died: &mut dyn FnMut() -> Option<String>,
) -> anyhow::Result<()> {
    let tls = target.tls_config()?;
    let mut last;
    loop {
        match check(target, tls.clone()).await {
            Ok(ServingStatus::Serving) => return Ok(()),
            Ok(other) => last = format!("health is {}", other.as_str_name()),
            Err(e) => last = e.to_string(),
        }
        if let Some(why) = died() {
            bail!("{} exited during startup: {why}", target.what);
        }
        if Instant::now() >= deadline {
            bail!(
                "{} at {} not SERVING within {}s: {last}",
                target.what,
                target.endpoint,
                STARTUP_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

async fn check(
    target: &Target,
    tls: tonic::transport::ClientTlsConfig,
) -> anyhow::Result<ServingStatus> {
    let channel = target.connect_with(tls).await?;
    let response = HealthClient::new(channel)
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .map_err(|s| target.first_rpc_error("Health.Check", &s))?;
    ServingStatus::try_from(response.into_inner().status).map_err(|e| anyhow!("{e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addr_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fc.addr");
        assert_eq!(read_addr_file(&p), None);
        std::fs::write(&p, "127.0.0.1:").unwrap();
        assert_eq!(read_addr_file(&p), None);
        std::fs::write(&p, "127.0.0.1:7400\n").unwrap();
        assert_eq!(read_addr_file(&p), Some("127.0.0.1:7400".parse().unwrap()));
    }

    #[tokio::test]
    async fn addr_wait_stops_when_process_died() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("fc.addr");
        let deadline = Instant::now() + Duration::from_secs(5);
        let e = wait_addr_file("fabric-controller", &p, deadline, &mut || {
            Some("exit status 2".into())
        })
        .await
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "fabric-controller exited during startup: exit status 2"
        );
    }
}
