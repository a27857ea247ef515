//! Which fabric controller to call, and the mutual-TLS channel to it.
//!
//! Explicit flags win; otherwise the state directory's context names the
//! controller `fabricctl up` started. The TLS files default to the context's,
//! then to the admin files under `<state>/pki`.

use crate::cli::GlobalArgs;
use crate::context::Context;
use crate::error::{self, CtlError};
use fabric_pki::tls::TlsFiles;
use std::path::PathBuf;
use std::time::Duration;
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};

pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
pub const RPC_TIMEOUT: Duration = Duration::from_secs(10);

/// A server to call with mutual TLS.
#[derive(Debug, Clone)]
pub struct Target {
    /// What it is, for messages ("fabric controller", "host-2").
    pub what: &'static str,
    pub endpoint: String,
    pub server_name: String,
    pub tls: TlsFiles,
    /// Added to "unreachable" errors, e.g. that the launcher is gone.
    pub hint: Option<String>,
}

impl Target {
    /// The fabric controller named by the flags or the context.
    pub fn controller(global: &GlobalArgs) -> Result<Self, CtlError> {
        let context = Context::load(&global.state_dir)?;
        let pki = global.state_dir.join("pki");
        let pick = |flag: &Option<PathBuf>, ctx: Option<&PathBuf>, default: &str| {
            flag.clone()
                .or_else(|| ctx.cloned())
                .unwrap_or_else(|| pki.join(default))
        };
        let endpoint = match (&global.endpoint, &context) {
            (Some(e), _) => normalize_endpoint(e),
            (None, None) => {
                return Err(CtlError::NoCluster {
                    state_dir: global.state_dir.clone(),
                });
            }
            (None, Some(ctx)) if ctx.launcher_pid.is_none() && ctx.managed_by.is_none() => {
                return Err(CtlError::ClusterStopped {
                    cluster: ctx.cluster.clone(),
                    state_dir: global.state_dir.clone(),
                });
            }
            (None, Some(ctx)) => ctx.endpoint.clone(),
        };
        let c = context.as_ref();
        let hint = match c {
            Some(ctx) if global.endpoint.is_none() && ctx.live_launcher().is_none() => {
                ctx.launcher_pid.map(|pid| {
                    format!(" (the `fabricctl up` that started it, pid {pid}, is not running)")
                })
            }
            _ => None,
        };
        Ok(Self {
            hint,
            what: "fabric controller",
            endpoint,
            server_name: global
                .server_name
                .clone()
                .or_else(|| c.map(|c| c.server_name.clone()))
                .unwrap_or_else(|| "localhost".into()),
            tls: TlsFiles {
                ca: pick(&global.ca, c.map(|c| &c.ca), "ca.pem"),
                cert: pick(&global.cert, c.map(|c| &c.cert), "admin.pem"),
                key: pick(&global.key, c.map(|c| &c.key), "admin.key"),
            },
        })
    }

    /// The client TLS configuration (reads and checks the files).
    pub fn tls_config(&self) -> Result<ClientTlsConfig, CtlError> {
        let loaded = self
            .tls
            .load()
            .map_err(|e| CtlError::TlsFiles(e.to_string()))?;
        Ok(loaded.client_config(&self.server_name))
    }

    /// Connects (TCP + TLS handshake) with the standard timeouts.
    pub async fn connect(&self) -> Result<Channel, CtlError> {
        let tls = self.tls_config()?;
        self.connect_with(tls).await
    }

    /// Like [`Target::connect`] with an already loaded TLS configuration.
    /// A controller with replicas is named by every replica's address,
    /// comma-separated: only the leader listens, so the first that
    /// connects is it.
    pub async fn connect_with(&self, tls: ClientTlsConfig) -> Result<Channel, CtlError> {
        let mut last = None;
        for address in self.endpoint.split(',').map(str::trim) {
            let bad = |detail: String| CtlError::BadEndpoint {
                endpoint: address.to_owned(),
                detail,
            };
            let endpoint = Endpoint::from_shared(address.to_owned())
                .map_err(|e| bad(error::chain_text(&e)))?
                .tls_config(tls.clone())
                .map_err(|e| bad(error::chain_text(&e)))?
                .connect_timeout(CONNECT_TIMEOUT)
                .timeout(RPC_TIMEOUT);
            // Bounded as a whole: connect_timeout bounds the TCP connect
            // only, and a paused controller (SIGSTOP: the kernel still
            // accepts) would hold the TLS handshake forever.
            match tokio::time::timeout(CONNECT_TIMEOUT, endpoint.connect()).await {
                Ok(Ok(channel)) => return Ok(channel),
                Ok(Err(e)) => last = Some(error::from_transport(self.what, address, &e)),
                Err(_) => {
                    last = Some(CtlError::BadEndpoint {
                        endpoint: address.to_owned(),
                        detail: format!(
                            "no TLS handshake within {}s (the process is stopped or overloaded)",
                            CONNECT_TIMEOUT.as_secs()
                        ),
                    })
                }
            }
        }
        Err(
            self.with_hint(last.unwrap_or_else(|| CtlError::BadEndpoint {
                endpoint: self.endpoint.clone(),
                detail: "no address".into(),
            })),
        )
    }

    /// Maps a failed RPC on this target to a one-line error.
    pub fn rpc_error(&self, rpc: &'static str, status: &tonic::Status) -> CtlError {
        self.with_hint(error::from_status(self.what, &self.endpoint, rpc, status))
    }

    /// Like [`Target::rpc_error`] for the first call on a new connection,
    /// where a hang-up means our certificate was refused.
    pub fn first_rpc_error(&self, rpc: &'static str, status: &tonic::Status) -> CtlError {
        error::first_call(self.rpc_error(rpc, status))
    }

    /// The error for a failed Deploy, Scale or DeleteDeployment made as the
    /// first call on a new connection: the controller's reason if it
    /// refused the request, otherwise as [`Target::first_rpc_error`].
    pub fn management_error(
        &self,
        action: &'static str,
        rpc: &'static str,
        status: &tonic::Status,
    ) -> CtlError {
        error::first_call(self.with_hint(error::from_management(
            action,
            self.what,
            &self.endpoint,
            rpc,
            status,
        )))
    }

    /// The error for a failed RepairNode, ResumeCluster or SetSwitch made as
    /// the first call on a new connection (see [`error::from_operator`]).
    pub fn operator_error(
        &self,
        action: &'static str,
        node: Option<&str>,
        rpc: &'static str,
        status: &tonic::Status,
    ) -> CtlError {
        error::first_call(self.with_hint(error::from_operator(
            action,
            node,
            self.what,
            &self.endpoint,
            rpc,
            status,
        )))
    }

    fn with_hint(&self, err: CtlError) -> CtlError {
        match (err, &self.hint) {
            (
                CtlError::Unreachable {
                    what,
                    endpoint,
                    detail,
                },
                Some(hint),
            ) => CtlError::Unreachable {
                what,
                endpoint,
                detail: format!("{detail}{hint}"),
            },
            (err, _) => err,
        }
    }
}

/// Adds `https://` to a bare `host:port`.
pub fn normalize_endpoint(endpoint: &str) -> String {
    if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn global(args: &[&str]) -> GlobalArgs {
        let mut argv = vec!["fabricctl"];
        argv.extend_from_slice(args);
        argv.push("status");
        crate::cli::Cli::try_parse_from(argv).unwrap().global
    }

    #[test]
    fn no_context_no_endpoint() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let e = Target::controller(&global(&["--state-dir", d])).unwrap_err();
        assert!(matches!(e, CtlError::NoCluster { .. }));
    }

    #[test]
    fn explicit_endpoint_defaults_tls_to_state_pki() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap();
        let t = Target::controller(&global(&["--state-dir", d, "--endpoint", "10.0.0.1:7400"]))
            .unwrap();
        assert_eq!(t.endpoint, "https://10.0.0.1:7400");
        assert_eq!(t.server_name, "localhost");
        assert_eq!(t.tls.cert, dir.path().join("pki/admin.pem"));
    }

    /// A context with no launcher and nothing managing the cluster.
    fn stopped() -> Context {
        Context {
            cluster: "c".into(),
            endpoint: "https://127.0.0.1:1".into(),
            server_name: "localhost".into(),
            ca: "/ca".into(),
            cert: "/cert".into(),
            key: "/key".into(),
            launcher_pid: None,
            stopped_at: None,
            restart_delay_ms: None,
            managed_by: None,
            dashboard: None,
            processes: vec![],
        }
    }

    #[test]
    fn stopped_context() {
        let dir = tempfile::tempdir().unwrap();
        stopped().save(dir.path()).unwrap();
        let d = dir.path().to_str().unwrap();
        let e = Target::controller(&global(&["--state-dir", d])).unwrap_err();
        assert!(e.to_string().contains("is stopped"), "{e}");
    }

    #[test]
    fn compose_context_needs_no_launcher_and_resolves_relative_paths() {
        let dir = tempfile::tempdir().unwrap();
        let compose = Context {
            endpoint: "https://127.0.0.1:7401".into(),
            ca: "pki/ca.pem".into(),
            cert: "pki/admin.pem".into(),
            key: "/abs/admin.key".into(),
            managed_by: Some("docker-compose".into()),
            ..stopped()
        };
        compose.save(dir.path()).unwrap();
        let d = dir.path().to_str().unwrap();
        let t = Target::controller(&global(&["--state-dir", d])).unwrap();
        assert_eq!(t.endpoint, "https://127.0.0.1:7401");
        assert_eq!(t.tls.ca, dir.path().join("pki/ca.pem"));
        assert_eq!(t.tls.cert, dir.path().join("pki/admin.pem"));
        assert_eq!(t.tls.key, std::path::PathBuf::from("/abs/admin.key"));
    }
}
