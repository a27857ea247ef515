//! `fabric.v1.HostService`: the host agent's own view, asked for directly.
//!
//! Chaos tests compare this ground truth with the controller's view. Only the
//! controller and operators of the same cluster may call it. Its VM reports
//! are the host's ground truth.

use crate::state::HostState;
use crate::vm::VmManager;
use fabric_pki::Role;
use fabric_proto::v1::{self as pb, host_service_server::HostService};
use std::sync::Arc;
use tonic::{Request, Response, Status};

pub struct HostApi {
    pub state: Arc<HostState>,
    pub vms: Arc<VmManager>,
    /// What this process runs (fixed for its life: an update execs anew).
    pub software: pb::RunningSoftware,
}

#[tonic::async_trait]
impl HostService for HostApi {
    async fn get_host_status(
        &self,
        request: Request<pb::GetHostStatusRequest>,
    ) -> Result<Response<pb::HostStatus>, Status> {
        let caller = fabric_pki::tls::peer_identity(&request)
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        if caller.cluster != self.state.cluster
            || !matches!(caller.role, Role::Admin | Role::Controller)
        {
            return Err(Status::permission_denied(format!(
                "{caller} may not query host {}",
                self.state.node_id
            )));
        }
        Ok(Response::new(pb::HostStatus {
            node_id: self.state.node_id.clone(),
            boot_id: self.state.boot_id.clone(),
            connected_to_controller: self.state.connected(),
            heartbeats_sent: self.state.heartbeats_sent(),
            heartbeats_failed: self.state.heartbeats_failed(),
            vms: self.vms.reports(),
            software: Some(self.software.clone()),
        }))
    }
}
