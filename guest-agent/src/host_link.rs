//! The guest agent's link to its host agent: a GuestService client over TLS.
//!
//! The guest agent holds no cluster certificate (VMs run customer code and are not trusted), so
//! the TLS is one-way: we verify that the host agent presents a certificate from the cluster CA
//! for the expected name, and authenticate ourselves with tokens instead (the start token in
//! Hello, the session token after). Token values are never logged.

use std::time::Duration;

use fabric_proto::v1::guest_service_client::GuestServiceClient;
use fabric_proto::v1::{GuestFailure, GuestHeartbeatRequest, GuestHello, GuestWelcome};
use thiserror::Error;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tracing::warn;

/// How long one TCP + TLS connection attempt to the host agent may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First pause between Hello attempts while the host agent is unreachable.
const FIRST_RETRY: Duration = Duration::from_millis(100);
/// Longest pause between Hello attempts. The host agent gives up on us only after its guest
/// connect timeout (25 minutes by default), so there is no point in a retry limit of our own.
const MAX_RETRY: Duration = Duration::from_secs(5);
/// How long we try to deliver a failure report before exiting anyway: the report saves the
/// host agent a long timeout, but an unreachable host agent must not keep a broken agent alive.
const REPORT_DEADLINE: Duration = Duration::from_secs(10);

/// Where the host agent is and how to recognise it.
#[derive(Clone, Debug)]
pub struct HostLinkConfig {
    /// The GuestService URL, e.g. `https://127.0.0.1:7001`.
    pub url: String,
    /// The cluster CA certificate (PEM) the host agent's certificate must chain to.
    pub ca_pem: String,
    /// The name the host agent's certificate must carry.
    pub server_name: String,
}

/// The host agent link could not be set up (nothing is sent until the first call).
#[derive(Debug, Error)]
pub enum HostLinkError {
    /// The URL is not a valid endpoint URI.
    #[error("host agent URL {url:?} is invalid: {source}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// tonic's description.
        #[source]
        source: tonic::transport::Error,
    },
    /// The TLS settings were refused (e.g. an `http://` URL with TLS).
    #[error("TLS settings for the host agent were refused: {0}")]
    Tls(#[source] tonic::transport::Error),
}

/// A client of the host agent's GuestService. Cheap to clone; clones share one connection.
#[derive(Clone, Debug)]
pub struct HostLink {
    client: GuestServiceClient<Channel>,
}

impl HostLink {
    /// Prepares the link. Connecting is lazy: each call (re)connects as needed, so a host agent
    /// that is not up yet shows up as `Unavailable` on the first call, which Hello retries.
    pub fn new(config: &HostLinkConfig) -> Result<Self, HostLinkError> {
        fabric_pki::install_crypto_provider();
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(&config.ca_pem))
            .domain_name(config.server_name.clone());
        let channel = Endpoint::from_shared(config.url.clone())
            .map_err(|source| HostLinkError::BadUrl {
                url: config.url.clone(),
                source,
            })?
            .tls_config(tls)
            .map_err(HostLinkError::Tls)?
            .connect_timeout(CONNECT_TIMEOUT)
            .connect_lazy();
        Ok(Self {
            client: GuestServiceClient::new(channel),
        })
    }

    /// Says Hello, retrying with capped exponential backoff while the host agent is unreachable
    /// (`Unavailable`). Any other error is the host agent's answer and is returned at once.
    pub async fn hello(&self, hello: GuestHello) -> Result<GuestWelcome, Status> {
        let mut pause = FIRST_RETRY;
        for attempt in 1u64.. {
            match self.client.clone().hello(hello.clone()).await {
                Ok(welcome) => return Ok(welcome.into_inner()),
                Err(status) if status.code() == Code::Unavailable => {
                    // Jitter so the VMs of a restarting host agent do not all retry at once.
                    let wait = pause.mul_f64(0.5 + fastrand::f64() / 2.0);
                    warn!(
                        attempt,
                        error = status.message(),
                        retry_in = ?wait,
                        "host agent unreachable; retrying Hello"
                    );
                    tokio::time::sleep(wait).await;
                    pause = (pause * 2).min(MAX_RETRY);
                }
                Err(status) => return Err(status),
            }
        }
        unreachable!("the attempt counter does not run out")
    }

    /// One Hello attempt, giving up after `timeout` (used to resume a session with a host agent
    /// that restarted: the heartbeat loop retries it, so no retry here).
    pub async fn hello_once(
        &self,
        hello: GuestHello,
        timeout: Duration,
    ) -> Result<GuestWelcome, Status> {
        match tokio::time::timeout(timeout, self.client.clone().hello(hello)).await {
            Ok(result) => result.map(tonic::Response::into_inner),
            Err(_) => Err(Status::deadline_exceeded("Hello timed out")),
        }
    }

    /// Sends one heartbeat, giving up after `timeout` so a hung host agent cannot stall the loop.
    pub async fn heartbeat(
        &self,
        beat: GuestHeartbeatRequest,
        timeout: Duration,
    ) -> Result<(), Status> {
        match tokio::time::timeout(timeout, self.client.clone().guest_heartbeat(beat)).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(Status::deadline_exceeded("heartbeat timed out")),
        }
    }

    /// Reports an init failure (fail fast), retrying while the host agent is unreachable, for at
    /// most [`REPORT_DEADLINE`].
    pub async fn report_failure(&self, failure: GuestFailure) -> Result<(), Status> {
        let attempt = async {
            let mut pause = FIRST_RETRY;
            loop {
                match self
                    .client
                    .clone()
                    .report_guest_failure(failure.clone())
                    .await
                {
                    Ok(_) => return Ok(()),
                    Err(status) if status.code() == Code::Unavailable => {
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(MAX_RETRY);
                    }
                    Err(status) => return Err(status),
                }
            }
        };
        tokio::time::timeout(REPORT_DEADLINE, attempt)
            .await
            .unwrap_or_else(|_| Err(Status::deadline_exceeded("host agent unreachable")))
    }
}
