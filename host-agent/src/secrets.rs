//! A VM's secrets: fetched in plaintext from the controller only when a
//! guest agent has a transfer certificate to receive them, sealed to it at
//! once, and the plaintext wiped from memory. The host agent never stores
//! them.

use fabric_proto::v1::{self as pb, node_service_client::NodeServiceClient};
use fabric_sealing::{SealContext, SealError};
use thiserror::Error;
use zeroize::{Zeroize, Zeroizing};

#[derive(Debug, Error)]
pub enum SecretsError {
    #[error("fetching secrets from the controller failed: {}", .0.message())]
    Fetch(tonic::Status),
    #[error(transparent)]
    Seal(#[from] SealError),
    /// The sealing job did not finish (it panicked, or the host agent is
    /// stopping); nothing is wrong with the guest.
    #[error("sealing the secrets did not finish")]
    Interrupted,
}

/// Certificates sealed to one VM incarnation.
#[derive(Debug)]
pub struct SealedSet {
    pub secrets: Vec<pb::SealedSecret>,
    pub version: String,
}

/// Checks that `der` is a transfer certificate secrets can be sealed to
/// (size, DER, P-256 key): the checks sealing makes, without sealing (a
/// probe seal cost two scalar multiplications per Hello).
pub fn check_transfer_cert(der: &[u8]) -> Result<(), SealError> {
    fabric_sealing::check_recipient(der)
}

/// FetchSecrets for `vm_id` at `incarnation`, sealed to `transfer_cert_der`.
pub async fn fetch_sealed(
    mut controller: NodeServiceClient<crate::controller_link::ControllerChannel>,
    vm_id: &str,
    incarnation: u64,
    transfer_cert_der: &[u8],
) -> Result<SealedSet, SecretsError> {
    let mut response = controller
        .fetch_secrets(pb::FetchSecretsRequest {
            vm_id: vm_id.to_owned(),
            incarnation,
        })
        .await
        .map_err(SecretsError::Fetch)?
        .into_inner();
    // Sealing is CPU work (two P-256 scalar multiplications per
    // certificate): off the async workers (fabric_daemon::cpu), so
    // heartbeats and other guests' calls do not wait behind a burst of VM
    // starts.
    let (certificates, der, ctx) = (
        std::mem::take(&mut response.certificates),
        transfer_cert_der.to_vec(),
        SealContext::new(vm_id, incarnation),
    );
    let sealed = fabric_daemon::cpu::on_a_core(move || {
        let mut certificates = certificates;
        let result = seal_all(&certificates, &der, &ctx);
        for cert in &mut certificates {
            cert.key_pem.zeroize();
            cert.cert_pem.zeroize();
        }
        result
    })
    .await;
    let secrets = sealed.ok_or(SecretsError::Interrupted)??;
    Ok(SealedSet {
        secrets,
        version: response.secrets_version,
    })
}

/// Seals each certificate as the PEM bundle the guest agent expects: the
/// certificate chain, then the private key.
pub fn seal_all(
    certificates: &[pb::RoleCertificate],
    transfer_cert_der: &[u8],
    ctx: &SealContext,
) -> Result<Vec<pb::SealedSecret>, SealError> {
    certificates
        .iter()
        .map(|cert| {
            let mut bundle = Zeroizing::new(Vec::with_capacity(
                cert.cert_pem.len() + cert.key_pem.len() + 1,
            ));
            bundle.extend_from_slice(cert.cert_pem.as_bytes());
            if !cert.cert_pem.ends_with('\n') {
                bundle.push(b'\n');
            }
            bundle.extend_from_slice(cert.key_pem.as_bytes());
            let sealed = fabric_sealing::seal(transfer_cert_der, ctx, &cert.name, &bundle)?;
            Ok(pb::SealedSecret {
                name: sealed.name,
                encapsulated_key: sealed.encapsulated_key,
                ciphertext: sealed.ciphertext,
            })
        })
        .collect()
}
