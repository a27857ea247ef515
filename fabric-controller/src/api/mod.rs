//! The gRPC edge of the controller.
//!
//! Handlers here do three things only: find out who is calling (from the TLS
//! certificate), turn protobuf messages into validated domain values
//! ([`convert`]), and call the core through [`crate::server::Controller`].
//! [`ApiError`] is the one place where failures become gRPC status codes.

pub mod convert;
#[cfg(test)]
mod fuzz_tests;
pub mod node_service;
pub mod operator_service;
pub mod packages;
pub mod role_certificates;
pub mod software;
pub mod status_filter;

use fabric_pki::{Identity, Role};
use tonic::Status;

/// Every way an RPC can fail, and nothing else.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed; the message names the field.
    #[error("{0}")]
    InvalidArgument(String),
    /// The caller has no usable Fabric identity.
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller's identity does not allow this call.
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    /// Not enough capacity for the request.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The cluster is not in a state that allows this (e.g. management off).
    #[error("{0}")]
    FailedPrecondition(String),
    /// The controller could not do its part (e.g. save its state).
    #[error("{0}")]
    Internal(String),
}

impl From<ApiError> for Status {
    fn from(e: ApiError) -> Status {
        match e {
            ApiError::InvalidArgument(m) => Status::invalid_argument(m),
            ApiError::Unauthenticated(m) => Status::unauthenticated(m),
            ApiError::PermissionDenied(m) => Status::permission_denied(m),
            ApiError::NotFound(m) => Status::not_found(m),
            ApiError::AlreadyExists(m) => Status::already_exists(m),
            ApiError::ResourceExhausted(m) => Status::resource_exhausted(m),
            ApiError::FailedPrecondition(m) => Status::failed_precondition(m),
            ApiError::Internal(m) => Status::internal(m),
        }
    }
}

impl From<fabric_core::CoreError> for ApiError {
    fn from(e: fabric_core::CoreError) -> Self {
        use fabric_core::CoreError as E;
        let message = e.to_string();
        match e {
            E::UnknownNode(_) | E::NoSuchDeployment(_) | E::NoSuchRole(..) => {
                ApiError::NotFound(message)
            }
            E::DeploymentExists(_) => ApiError::AlreadyExists(message),
            E::ZeroInstances(_) => ApiError::InvalidArgument(message),
            E::NotEnoughSlots { .. } => ApiError::ResourceExhausted(message),
            E::NotAssigned { .. } => ApiError::PermissionDenied(message),
            E::ManagementOff
            | E::NotInHumanInvestigate(..)
            | E::OtherBoot { .. }
            | E::StateLost
            | E::StateNotLost
            | E::Incompatible(_)
            | E::UpdateInProgress { .. }
            | E::UpdatesStopped(_)
            | E::NoUpdate(_) => ApiError::FailedPrecondition(message),
            E::BadPackage(_) | E::BadPlan(_) => ApiError::InvalidArgument(message),
            E::PackageExists(_) => ApiError::AlreadyExists(message),
            E::NoSuchPackage(_) => ApiError::NotFound(message),
        }
    }
}

impl From<crate::controller::ControllerError> for ApiError {
    fn from(e: crate::controller::ControllerError) -> Self {
        match e {
            crate::controller::ControllerError::Core(e) => e.into(),
            crate::controller::ControllerError::Store(e) => {
                tracing::error!("{e}");
                ApiError::Internal(format!(
                    "the decision was not saved, so it was not carried out: {e}"
                ))
            }
        }
    }
}

/// Reads the caller's identity from its certificate and checks that it
/// belongs to this cluster and plays `role`.
pub fn authorize<T>(
    request: &tonic::Request<T>,
    cluster: &str,
    role: Role,
) -> Result<Identity, ApiError> {
    let refused = |e: ApiError| {
        REFUSED_IDENTITIES.inc();
        if let Some(held_back) = REFUSAL_LOG.allow() {
            tracing::warn!(held_back, "refused a caller: {e}");
        }
        e
    };
    let identity = fabric_pki::tls::peer_identity(request)
        .map_err(|e| refused(ApiError::Unauthenticated(e.to_string())))?;
    if identity.cluster != cluster {
        return Err(refused(ApiError::PermissionDenied(format!(
            "certificate {identity} belongs to cluster {:?}, not {cluster:?}",
            identity.cluster
        ))));
    }
    if identity.role != role {
        return Err(refused(ApiError::PermissionDenied(format!(
            "certificate {identity} may not call this service (needs a {role:?} certificate)"
        ))));
    }
    Ok(identity)
}

/// Callers refused for their identity (a wrong cluster or role), exported
/// as `fabric_refused_identities_total`.
pub static REFUSED_IDENTITIES: std::sync::LazyLock<prometheus_client::metrics::counter::Counter> =
    std::sync::LazyLock::new(Default::default);

/// Refusals come at a caller's pace: logged at most once a second.
static REFUSAL_LOG: fabric_daemon::untrusted::Throttle =
    fabric_daemon::untrusted::Throttle::new(std::time::Duration::from_secs(1));
