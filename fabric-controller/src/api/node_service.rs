//! `fabric.v1.NodeService`: what host agents call.
//!
//! The node id always comes from the caller's certificate; a node id in the
//! request is only checked against it.

use super::{ApiError, authorize, convert};
use crate::controller::Controller;
use fabric_core::{HeartbeatOutcome, NodeId};
use fabric_pki::Role;
use fabric_proto::v1::{self as pb, node_service_server::NodeService};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Artifact bytes per message: well under gRPC's 4 MiB default limit.
const CHUNK: usize = 1024 * 1024;

type ArtifactStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::ArtifactChunk, Status>> + Send>>;

type DesiredStream =
    std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::DesiredChanged, Status>> + Send>>;

pub struct NodeApi {
    pub controller: Arc<Controller>,
}

impl NodeApi {
    fn caller<T>(&self, request: &Request<T>) -> Result<NodeId, ApiError> {
        let identity = authorize(request, self.controller.cluster(), Role::Host)?;
        Ok(NodeId::new(identity.name))
    }
}

#[tonic::async_trait]
impl NodeService for NodeApi {
    #[tracing::instrument(skip_all, fields(node))]
    async fn register(
        &self,
        request: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let node = self.caller(&request)?;
        tracing::Span::current().record("node", node.as_str());
        let reg = convert::registration(request.into_inner(), &node)?;
        let outcome = self
            .controller
            .register(node.clone(), reg.info, &reg.boot_id);
        tracing::debug!(?outcome, "registered");
        let config = self.controller.read().config().clone();
        Ok(Response::new(pb::RegisterResponse {
            cluster_name: self.controller.cluster().to_owned(),
            node_id: node.to_string(),
            heartbeat_interval: Some(convert::duration(config.heartbeat_interval)),
            node_timeout: Some(convert::duration(config.node_timeout)),
        }))
    }

    async fn heartbeat(
        &self,
        request: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let node = self.caller(&request)?;
        let req = request.into_inner();
        convert::check_claimed_node(&req.node_id, &node)?;
        let boot_id = convert::boot_id(&req.boot_id)?;
        let req_sequence = req.sequence;
        let vms = convert::vm_observations(req.vms);
        let memory = convert::host_memory(&req.known_cluster_id, req.known_generation)?;
        let beat = fabric_core::Beat {
            sequence: req.sequence,
            vms,
            complete: !req.changed_vms_only,
            known_desired: Some(req.known_desired_digest).filter(|d| *d != 0),
        };
        let (reply, identity) = self
            .controller
            .heartbeat_from(&node, &boot_id, beat, memory)
            .await;
        let disposition = match reply.outcome {
            HeartbeatOutcome::Accepted => pb::heartbeat_response::Disposition::Accepted,
            HeartbeatOutcome::Hold => pb::heartbeat_response::Disposition::Hold,
            HeartbeatOutcome::Stale => pb::heartbeat_response::Disposition::Stale,
            HeartbeatOutcome::RegisterAgain => pb::heartbeat_response::Disposition::RegisterAgain,
            HeartbeatOutcome::ImplausibleSequence { last, limit } => {
                tracing::warn!(%node, sequence = req_sequence, last, limit, "refusing a heartbeat whose sequence number jumps implausibly far");
                return Err(Status::invalid_argument(format!(
                    "heartbeat sequence {req_sequence} jumps implausibly far past the last accepted \
                     {last} (at most {limit} now); a host agent counts up by one per heartbeat"
                )));
            }
        };
        Ok(Response::new(pb::HeartbeatResponse {
            disposition: disposition as i32,
            desired_vms: reply.desired.iter().map(convert::assignment).collect(),
            cluster_id: identity.id,
            generation: identity.generation,
            replaces_cluster_id: identity.replaces.unwrap_or_default(),
            human_investigate: reply.human_investigate,
            target: reply
                .target
                .as_ref()
                .map(|t| super::software::target_pb(t, reply.target_update)),
            desired_digest: reply.desired_digest,
            desired_unchanged: reply.desired_unchanged,
            send_complete_reports: reply.send_complete_reports,
        }))
    }

    type WatchDesiredStream = DesiredStream;

    /// Notes each change of what the caller's server should do (see
    /// `FabricCore::desired_digest`), until the caller goes or the
    /// controller closes. What changed is not sent: the host agent's next
    /// heartbeat learns it, with the fencing facts that go with it.
    async fn watch_desired(
        &self,
        request: Request<pb::WatchDesiredRequest>,
    ) -> Result<Response<Self::WatchDesiredStream>, Status> {
        let node = self.caller(&request)?;
        convert::check_claimed_node(&request.get_ref().node_id, &node)?;
        let controller = self.controller.clone();
        let notify = controller.watch_desired(&node);
        let closed = controller.closed();
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            tokio::pin!(closed);
            let mut last = controller.desired_digest(&node);
            let mut sequence = 0;
            loop {
                tokio::select! {
                    () = notify.notified() => {}
                    () = &mut closed => break,
                    () = tx.closed() => break,
                }
                let now = controller.desired_digest(&node);
                if now == last {
                    continue;
                }
                last = now;
                sequence += 1;
                if tx.send(Ok(pb::DesiredChanged { sequence })).await.is_err() {
                    break;
                }
            }
            controller.unwatch_desired(&node, &notify);
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    type FetchArtifactStream = ArtifactStream;

    /// Streams one artifact of a package the controller holds. Any host may
    /// read any package (binaries are not secret); only files a manifest
    /// names are served, from the package store, never a path from the wire.
    async fn fetch_artifact(
        &self,
        request: Request<pb::FetchArtifactRequest>,
    ) -> Result<Response<Self::FetchArtifactStream>, Status> {
        let node = self.caller(&request)?;
        let req = request.into_inner();
        let version = fabric_core::Version::parse("package", &req.package)
            .map_err(ApiError::InvalidArgument)?;
        let known = self
            .controller
            .read()
            .packages()
            .find(|m| m.version == version)
            .and_then(|m| {
                m.artifacts()
                    .iter()
                    .find(|a| a.file == req.file)
                    .map(|a| a.file.clone())
            });
        let Some(file) = known else {
            return Err(ApiError::NotFound(format!(
                "package {version} has no artifact {} here",
                fabric_daemon::untrusted::shown(&req.file)
            ))
            .into());
        };
        let store = self.controller.package_store().ok_or_else(|| {
            ApiError::FailedPrecondition("this controller keeps no packages".into())
        })?;
        let path = store.artifact_path(&version, &file);
        let mut f = tokio::fs::File::open(&path)
            .await
            .map_err(|e| ApiError::Internal(format!("package {version} artifact {file}: {e}")))?;
        tracing::info!(%node, package = %version, %file, "serving a package artifact");
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tokio::spawn(async move {
            use tokio::io::AsyncReadExt;
            loop {
                let mut buf = vec![0u8; CHUNK];
                match f.read(&mut buf).await {
                    Ok(0) => break,
                    Ok(n) => {
                        buf.truncate(n);
                        if tx.send(Ok(pb::ArtifactChunk { data: buf })).await.is_err() {
                            break;
                        }
                    }
                    Err(e) => {
                        let _ = tx
                            .send(Err(Status::internal(format!("reading {file}: {e}"))))
                            .await;
                        break;
                    }
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(rx),
        )))
    }

    async fn fetch_secrets(
        &self,
        request: Request<pb::FetchSecretsRequest>,
    ) -> Result<Response<pb::FetchSecretsResponse>, Status> {
        let node = self.caller(&request)?;
        let req = request.into_inner();
        let vm = convert::instance_id(&req.vm_id)?;
        let (certs, version) = self
            .controller
            .fetch_secrets(&node, &vm, req.incarnation)
            .map_err(ApiError::from)?;
        tracing::info!(%vm, incarnation = req.incarnation, count = certs.len(), "secrets handed to the host agent");
        Ok(Response::new(pb::FetchSecretsResponse {
            certificates: certs
                .into_iter()
                .map(|c| pb::RoleCertificate {
                    name: c.name,
                    cert_pem: c.cert_pem,
                    key_pem: c.key_pem.to_string(),
                })
                .collect(),
            secrets_version: version,
        }))
    }

    async fn report_fault(
        &self,
        request: Request<pb::FaultReport>,
    ) -> Result<Response<pb::FaultReportAck>, Status> {
        let node = self.caller(&request)?;
        let req = request.into_inner();
        convert::check_claimed_node(&req.node_id, &node)?;
        let report = convert::fault_report(req)?;
        self.controller
            .report_fault(&node, &report)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::FaultReportAck {}))
    }
}
