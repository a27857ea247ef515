//! `fabric.v1.OperatorService`: what operators and fabricctl call.

use super::{ApiError, authorize, convert};
use crate::controller::Controller;
use fabric_core::services::DeployOutcome;
use fabric_pki::Role;
use fabric_proto::v1::{self as pb, operator_service_server::OperatorService};
use std::pin::Pin;
use std::sync::Arc;
use tokio_stream::Stream;
use tonic::{Request, Response, Status};

pub struct OperatorApi {
    pub controller: Arc<Controller>,
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::ClusterEvent, Status>> + Send>>;

#[tonic::async_trait]
impl OperatorService for OperatorApi {
    async fn get_status(
        &self,
        request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::ClusterStatus>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        let filter = super::status_filter::StatusFilter::parse(request.get_ref())?;
        let now = self.controller.clock().now();
        let core = self.controller.read();
        let config = core.config();
        // One pass over the instances for every node's used slots, not one
        // pass per node: status is polled, and clusters are large.
        let used = core.slots_in_use();
        let nodes = core
            .nodes()
            .filter(|n| filter.node(n))
            .map(|n| {
                let slots = used.get(&n.id).copied().unwrap_or(0);
                convert::node_status(n, now.since(n.last_heard), slots)
            })
            .collect();
        let (page, instances_matched, next) = filter.instances(&core);
        let deployments = core
            .deployments()
            .map(|d| convert::deployment_status(d, &core, &page))
            .collect();
        let cluster = core.cluster();
        Ok(Response::new(pb::ClusterStatus {
            cluster_name: self.controller.cluster().to_owned(),
            mode: cluster.mode.as_str().to_owned(),
            mode_reason: cluster.mode_reason.clone(),
            hi_count: core.hi_count() as u32,
            hi_threshold: config.hi_threshold.to_string(),
            hi_threshold_nodes: core.hi_threshold_nodes() as u32,
            switches: Some(convert::switches(&cluster.switches)),
            incidents: cluster.incidents.values().map(convert::incident).collect(),
            alarms: self
                .controller
                .alarms_with(&core)
                .into_iter()
                .map(|a| pb::ControllerAlarm {
                    kind: a.kind.to_owned(),
                    summary: a.summary,
                    since: Some(convert::timestamp(a.since)),
                })
                .collect(),
            healing_in_flight: core.healing_in_flight() as u32,
            pending_instances: core.pending_instances() as u32,
            expiring_certificates: core
                .expiring_certificates(now.wall)
                .iter()
                .map(convert::expiring_certificate)
                .collect(),
            nodes,
            heartbeat_interval: Some(convert::duration(config.heartbeat_interval)),
            node_timeout: Some(convert::duration(config.node_timeout)),
            controller_version: env!("CARGO_PKG_VERSION").to_owned(),
            controller_pid: std::process::id(),
            update: Some(super::software::update_status(core.rollout())),
            deployments,
            instances_matched: instances_matched as u32,
            next_instances_after: next.map(ToString::to_string).unwrap_or_default(),
            replication: self.controller.term().map(|t| pb::Replication {
                term: t.number,
                leader: t.leader.clone(),
                replicas: t.replicas.lock().unwrap_or_else(|p| p.into_inner()).clone(),
                leader_since: Some(convert::timestamp(t.since)),
                store: t.store.clone(),
            }),
        }))
    }

    async fn deploy(
        &self,
        request: Request<pb::DeployRequest>,
    ) -> Result<Response<pb::DeployResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let now = self.controller.clock().now().wall;
        let deployment = convert::service_definition(request.into_inner().service, now)?;
        let name = deployment.spec.name.to_string();
        tracing::info!(deployment = %name, by = %who, "deploy requested");
        let (outcome, instances) = self.controller.deploy(deployment).map_err(ApiError::from)?;
        Ok(Response::new(pb::DeployResponse {
            deployment: name,
            rotated: outcome == DeployOutcome::Rotated,
            instances: instances
                .iter()
                .map(|(i, shown)| convert::instance_status(i, *shown))
                .collect(),
        }))
    }

    async fn repair_node(
        &self,
        request: Request<pb::RepairNodeRequest>,
    ) -> Result<Response<pb::RepairNodeResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let req = request.into_inner();
        let reason = if req.reason.trim().is_empty() {
            "no reason given".to_owned()
        } else {
            convert::reason(&req.reason)?
        };
        self.controller
            .repair(&fabric_core::NodeId::new(req.node_id), &who.name, &reason)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RepairNodeResponse {}))
    }

    async fn resume_cluster(
        &self,
        request: Request<pb::ResumeClusterRequest>,
    ) -> Result<Response<pb::ResumeClusterResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        self.controller.resume(&who.name).map_err(ApiError::from)?;
        Ok(Response::new(pb::ResumeClusterResponse {}))
    }

    async fn set_switch(
        &self,
        request: Request<pb::SetSwitchRequest>,
    ) -> Result<Response<pb::SetSwitchResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let req = request.into_inner();
        let switch = fabric_core::Switch::parse(&req.switch).map_err(ApiError::InvalidArgument)?;
        self.controller
            .set_switch(switch, req.on, &who.name)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::SetSwitchResponse {}))
    }

    async fn recover_state(
        &self,
        request: Request<pb::RecoverStateRequest>,
    ) -> Result<Response<pb::RecoverStateResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let how = match request.into_inner().action() {
            pb::recover_state_request::Action::Adopt => fabric_core::Recovery::Adopt,
            pb::recover_state_request::Action::Wipe => fabric_core::Recovery::Wipe,
            pb::recover_state_request::Action::Unspecified => {
                return Err(ApiError::InvalidArgument(
                    "say how to recover: adopt (rebuild from what the hosts run) or wipe".into(),
                )
                .into());
            }
        };
        let summary = self
            .controller
            .recover(how, &who.name)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::RecoverStateResponse { summary }))
    }

    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> Result<Response<pb::DeleteDeploymentResponse>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        let req = request.into_inner();
        self.controller
            .delete(&req.deployment)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::DeleteDeploymentResponse {}))
    }

    async fn scale(
        &self,
        request: Request<pb::ScaleRequest>,
    ) -> Result<Response<pb::ScaleResponse>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        let req = request.into_inner();
        if req.instances > convert::MAX_INSTANCES {
            return Err(ApiError::InvalidArgument(format!(
                "{} instances is above the maximum of {}",
                req.instances,
                convert::MAX_INSTANCES
            ))
            .into());
        }
        let instances = self
            .controller
            .scale(&req.deployment, &req.role, req.instances)
            .map_err(ApiError::from)?;
        Ok(Response::new(pb::ScaleResponse {
            instances: instances
                .iter()
                .map(|(i, shown)| convert::instance_status(i, *shown))
                .collect(),
        }))
    }

    async fn list_events(
        &self,
        request: Request<pb::ListEventsRequest>,
    ) -> Result<Response<pb::ListEventsResponse>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        let req = request.into_inner();
        let limit = (req.limit > 0).then_some(req.limit as usize);
        let events = self
            .controller
            .read()
            .events()
            .after(req.after_sequence, limit)
            .iter()
            .map(convert::event)
            .collect();
        Ok(Response::new(pb::ListEventsResponse { events }))
    }

    async fn add_package(
        &self,
        request: Request<tonic::Streaming<pb::PackageUpload>>,
    ) -> Result<Response<pb::AddPackageResponse>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let reply = super::packages::add(&self.controller, &who.name, request.into_inner()).await?;
        Ok(Response::new(reply))
    }

    async fn list_packages(
        &self,
        request: Request<pb::ListPackagesRequest>,
    ) -> Result<Response<pb::ListPackagesResponse>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        Ok(Response::new(super::packages::list(&self.controller)))
    }

    async fn start_update(
        &self,
        request: Request<pb::StartUpdateRequest>,
    ) -> Result<Response<pb::UpdateStatus>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let reply = super::packages::start(&self.controller, &who.name, request.into_inner())?;
        Ok(Response::new(reply))
    }

    async fn get_update(
        &self,
        request: Request<pb::GetUpdateRequest>,
    ) -> Result<Response<pb::UpdateStatus>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        Ok(Response::new(super::packages::status(&self.controller)))
    }

    async fn update_action(
        &self,
        request: Request<pb::UpdateActionRequest>,
    ) -> Result<Response<pb::UpdateStatus>, Status> {
        let who = authorize(&request, self.controller.cluster(), Role::Admin)?;
        let reply = super::packages::act(&self.controller, &who.name, request.into_inner())?;
        Ok(Response::new(reply))
    }

    type WatchEventsStream = EventStream;

    async fn watch_events(
        &self,
        request: Request<pb::WatchEventsRequest>,
    ) -> Result<Response<EventStream>, Status> {
        authorize(&request, self.controller.cluster(), Role::Admin)?;
        let mut last = request.into_inner().after_sequence;
        // Subscribe before reading the backlog so no event falls in between;
        // the sequence check below drops the overlap.
        let mut live = self.controller.subscribe();
        let backlog = self.controller.read().events().after(last, None);
        let closed = self.controller.closed();
        let stream = async_stream(move |tx| async move {
            tokio::pin!(closed);
            for e in backlog {
                last = e.sequence;
                if tx.send(Ok(convert::event(&e))).await.is_err() {
                    return;
                }
            }
            loop {
                let received = tokio::select! {
                    received = live.recv() => received,
                    _ = &mut closed => return,
                };
                match received {
                    Ok(e) if e.sequence <= last => continue,
                    Ok(e) => {
                        last = e.sequence;
                        if tx.send(Ok(convert::event(&e))).await.is_err() {
                            return;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        let _ = tx
                            .send(Err(Status::data_loss(format!(
                                "watcher fell {n} events behind; resume with after_sequence {last}"
                            ))))
                            .await;
                        return;
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        Ok(Response::new(stream))
    }
}

/// Runs `body` in a task that feeds a channel, and returns the channel as a
/// stream. The task ends when the client goes away (the send fails).
fn async_stream<F, Fut>(body: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Result<pb::ClusterEvent, Status>>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(body(tx));
    Box::pin(tokio_stream::wrappers::ReceiverStream::new(rx))
}
