//! TLS of the GuestService as tonic configures it: the host certificate,
//! and no client certificate required, since VMs hold no cluster certificate
//! (they run customer code and are not trusted). Guest agents authenticate
//! with their tokens instead. The daemon itself serves the same TLS through
//! `fabric_daemon::tls_accept` (handshake timeout and limits) with
//! `LoadedTls::rustls_server_config_without_client_auth`; in-process tests
//! that serve GuestService on tonic's own TLS use this.

use fabric_pki::tls::LoadedTls;
use std::path::{Path, PathBuf};
use thiserror::Error;
use tonic::transport::{Identity, ServerTlsConfig};
use zeroize::Zeroizing;

#[derive(Debug, Error)]
#[error("cannot read the host key {path}: {source}")]
pub struct GuestTlsError {
    path: PathBuf,
    source: std::io::Error,
}

/// Server TLS with our certificate and the key at `key_path` (the mTLS
/// config of fabric-pki always demands client certificates).
pub fn server_config(tls: &LoadedTls, key_path: &Path) -> Result<ServerTlsConfig, GuestTlsError> {
    let key =
        Zeroizing::new(
            std::fs::read_to_string(key_path).map_err(|source| GuestTlsError {
                path: key_path.to_owned(),
                source,
            })?,
        );
    Ok(ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert, key.as_bytes())))
}
