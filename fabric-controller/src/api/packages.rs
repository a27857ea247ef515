//! The operator calls about the fabric's own software: add and list
//! packages, start a rollout, look at it, pause, resume or roll it back.
//! [`super::operator_service`] delegates here, to keep that file about one
//! thing each.

use super::{ApiError, software};
use crate::controller::{Controller, UpdateAction};
use fabric_proto::v1::{self as pb, package_upload::Part};
use tokio_stream::StreamExt;
use tonic::Streaming;

/// Receives a package: the header (manifest) first, refused at once if the
/// core would refuse it (incompatible plugin, a version taken), so no bytes
/// are sent in vain; then the artifacts' bytes, checked as they arrive;
/// then the core keeps the manifest, saved before anyone hears "added".
pub async fn add(
    controller: &Controller,
    who: &str,
    mut upload: Streaming<pb::PackageUpload>,
) -> Result<pb::AddPackageResponse, ApiError> {
    let first = upload
        .next()
        .await
        .ok_or_else(|| ApiError::InvalidArgument("empty upload: the manifest comes first".into()))?
        .map_err(|s| ApiError::InvalidArgument(format!("upload interrupted: {}", s.message())))?;
    let Some(Part::Header(header)) = first.part else {
        return Err(ApiError::InvalidArgument(
            "the first message of an upload must be its manifest".into(),
        ));
    };
    let manifest =
        software::manifest(header.manifest.ok_or_else(|| {
            ApiError::InvalidArgument("the upload's header has no manifest".into())
        })?)?;
    let Some(admitted) = controller
        .read()
        .admit_package(manifest.clone(), header.force)
        .map_err(ApiError::from)?
    else {
        return Ok(pb::AddPackageResponse {
            added: false,
            summary: format!("package {} is already here, identical", manifest.version),
        });
    };
    let store = controller.package_store().ok_or_else(|| {
        ApiError::FailedPrecondition(
            "this controller has no state directory, so it keeps no packages (--state-dir)".into(),
        )
    })?;
    let mut incoming = store.begin(&admitted).await.map_err(upload_error)?;
    while let Some(part) = upload.next().await {
        let part = part.map_err(|s| {
            ApiError::InvalidArgument(format!("upload interrupted: {}", s.message()))
        })?;
        match part.part {
            Some(Part::Chunk(c)) => incoming.write(&c.data).map_err(upload_error)?,
            _ => {
                return Err(ApiError::InvalidArgument(
                    "after the manifest an upload carries only artifact bytes".into(),
                ));
            }
        }
    }
    incoming.finish().map_err(upload_error)?;
    let event = controller
        .add_package(manifest, header.force, who)
        .map_err(ApiError::from)?;
    Ok(pb::AddPackageResponse {
        added: event.is_some(),
        summary: event.map(|e| e.reason).unwrap_or_default(),
    })
}

fn upload_error(e: crate::store::packages::UploadError) -> ApiError {
    use crate::store::packages::UploadError as U;
    match e {
        U::Io { .. } => {
            tracing::error!("{e}");
            ApiError::Internal(e.to_string())
        }
        other => ApiError::InvalidArgument(other.to_string()),
    }
}

pub fn list(controller: &Controller) -> pb::ListPackagesResponse {
    pb::ListPackagesResponse {
        packages: controller
            .read()
            .packages()
            .map(software::manifest_pb)
            .collect(),
    }
}

pub fn start(
    controller: &Controller,
    who: &str,
    req: pb::StartUpdateRequest,
) -> Result<pb::UpdateStatus, ApiError> {
    let plan = software::update_plan(req)?;
    let rollout = controller.start_update(plan, who)?;
    Ok(software::update_status(rollout.as_ref()))
}

pub fn status(controller: &Controller) -> pb::UpdateStatus {
    software::update_status(controller.read().rollout())
}

pub fn act(
    controller: &Controller,
    who: &str,
    req: pb::UpdateActionRequest,
) -> Result<pb::UpdateStatus, ApiError> {
    let action = match pb::update_action_request::Action::try_from(req.action) {
        Ok(pb::update_action_request::Action::Pause) => UpdateAction::Pause,
        Ok(pb::update_action_request::Action::Resume) => UpdateAction::Resume,
        Ok(pb::update_action_request::Action::Rollback) => UpdateAction::Rollback,
        Ok(pb::update_action_request::Action::Abandon) => UpdateAction::Abandon,
        _ => {
            return Err(ApiError::InvalidArgument(
                "action must be PAUSE, RESUME, ROLLBACK or ABANDON".into(),
            ));
        }
    };
    let rollout = controller.update_action(action, who)?;
    Ok(software::update_status(rollout.as_ref()))
}
