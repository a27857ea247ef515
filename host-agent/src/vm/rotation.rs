//! Certificate rotation: when the controller's secrets version for a VM
//! differs from the one its guest agent has, fetch the new certificates, seal
//! them to the VM's transfer certificate and push them to the guest agent,
//! which swaps them in without a restart. A waagent VM's go to its bridge,
//! which offers them to Azure's agent as a new goal-state incarnation (see
//! [`super::waagent`]).

use super::manager::VmManager;
use super::record::VmRecord;
use crate::secrets::{self, SecretsError};
use fabric_proto::v1::{self as pb, guest_agent_service_client::GuestAgentServiceClient};
use std::sync::Arc;
use std::time::Duration;
use thiserror::Error;
use tonic::transport::Endpoint;

/// One push to one guest agent incarnation.
pub struct RotationJob {
    pub vm_id: String,
    pub incarnation: u64,
    pub transfer_cert_der: Vec<u8>,
    /// The guest agent's GuestAgentService, host:port.
    pub endpoint: String,
    /// Authenticates us to the guest agent. Not Debug, never logged.
    session_token: String,
    pub guest: fabric_core::Guest,
}

impl RotationJob {
    pub fn for_record(record: &VmRecord) -> Option<Self> {
        Some(Self {
            vm_id: record.vm_id.clone(),
            incarnation: record.incarnation,
            transfer_cert_der: record.transfer_cert_der.clone(),
            endpoint: record.guest_agent_endpoint.clone(),
            session_token: record.session_token()?.to_owned(),
            guest: record.guest,
        })
    }
}

#[derive(Debug, Error)]
pub enum RotationError {
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    #[error("cannot reach the guest agent at {endpoint}: {source}")]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("the guest agent refused the secrets: {}", .0.message())]
    Push(tonic::Status),
    #[error("waagent VM: {0}")]
    Waagent(String),
}

/// Runs `job` and records the outcome; a failure is retried on the next
/// reconcile (the next controller heartbeat).
pub async fn rotate(vms: Arc<VmManager>, job: RotationJob) {
    let result = push(&vms, &job).await;
    match &result {
        Ok(version) => {
            tracing::info!(vm = %job.vm_id, incarnation = job.incarnation, %version, "secrets rotated")
        }
        Err(e) => {
            tracing::warn!(vm = %job.vm_id, incarnation = job.incarnation, "rotation failed: {e}")
        }
    }
    vms.rotation_done(&job.vm_id, job.incarnation, result.ok());
}

async fn push(vms: &VmManager, job: &RotationJob) -> Result<String, RotationError> {
    let sealed = secrets::fetch_sealed(
        vms.controller(),
        &job.vm_id,
        job.incarnation,
        &job.transfer_cert_der,
    )
    .await?;
    if job.guest == fabric_core::Guest::Waagent {
        let waagent = vms
            .waagent()
            .ok_or_else(|| RotationError::Waagent("this host runs no waagent".into()))?;
        waagent
            .rotate(&job.vm_id, job.incarnation, sealed.secrets)
            .await
            .map_err(RotationError::Waagent)?;
        return Ok(sealed.version);
    }
    let connect = |source| RotationError::Connect {
        endpoint: job.endpoint.clone(),
        source,
    };
    // Plaintext h2c: the guest agent listens on this host only and what
    // crosses is sealed to the VM anyway; the session token authenticates.
    let channel = Endpoint::from_shared(format!("http://{}", job.endpoint))
        .map_err(connect)?
        .connect_timeout(Duration::from_secs(3))
        .timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(connect)?;
    GuestAgentServiceClient::new(channel)
        .push_secrets(pb::PushSecretsRequest {
            vm_id: job.vm_id.clone(),
            incarnation: job.incarnation,
            session_token: job.session_token.clone(),
            secrets: sealed.secrets,
            secrets_version: sealed.version.clone(),
        })
        .await
        .map_err(RotationError::Push)?;
    Ok(sealed.version)
}
