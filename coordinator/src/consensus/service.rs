//! The coordinator's transport port: `ClusterService` (Raft between voters, proposals, joins,
//! heartbeats) and `NodeService` (state pushes from the leader, node figures) on one tonic
//! server, and `Jobs` (this coordinator's running statements, for another coordinator's
//! `sys.jobs`). Handlers decode, call [`Consensus`], and encode; errors keep Creek's error code.

use std::path::PathBuf;
use std::sync::Arc;

use creek_proto::status::status_from_error;
use creek_proto::v1::cluster_service_server::{ClusterService, ClusterServiceServer};
use creek_proto::v1::node_service_server::{NodeService, NodeServiceServer};
use creek_proto::v1::{
    GracefulStopRequest, GracefulStopResponse, HeartbeatRequest, HeartbeatResponse, JobsRequest,
    JobsResponse, JoinRequest, JoinResponse, KillJobsRequest, KillJobsResponse, NodeStatsRequest,
    NodeStatsResponse, ProposeRequest, ProposeResponse, PublishStateResponse, RaftMessage,
    ShardCopyEventRequest, ShardCopyEventResponse, StateMessage,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tonic::{Request, Response, Status};

use super::{parse_state, to_coded, Consensus, MAX_MESSAGE_BYTES};
use crate::catalog::commands::Command;
use crate::error::Error;
use crate::jobs::Jobs;

fn status(error: Error) -> Status {
    status_from_error(&to_coded(error))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Status> {
    serde_json::from_slice(bytes).map_err(|e| Status::invalid_argument(format!("bad message: {e}")))
}

fn encode<T: Serialize>(value: &T) -> Response<RaftMessage> {
    Response::new(RaftMessage {
        json: serde_json::to_vec(value).expect("raft message serialises"),
    })
}

struct ClusterServiceImpl {
    consensus: Arc<Consensus>,
    jobs: Arc<Jobs>,
}

impl ClusterServiceImpl {
    fn raft(&self) -> Result<&super::CreekRaft, Status> {
        self.consensus
            .raft()
            .ok_or_else(|| Status::failed_precondition("this coordinator is not a voter"))
    }
}

#[tonic::async_trait]
impl ClusterService for ClusterServiceImpl {
    async fn raft_vote(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().json)?;
        Ok(encode(&self.raft()?.vote(rpc).await))
    }

    async fn raft_append(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().json)?;
        Ok(encode(&self.raft()?.append_entries(rpc).await))
    }

    async fn raft_snapshot(
        &self,
        request: Request<RaftMessage>,
    ) -> Result<Response<RaftMessage>, Status> {
        let rpc = decode(&request.into_inner().json)?;
        Ok(encode(&self.raft()?.install_snapshot(rpc).await))
    }

    async fn propose(
        &self,
        request: Request<ProposeRequest>,
    ) -> Result<Response<ProposeResponse>, Status> {
        let request = request.into_inner();
        let command: Command = decode(&request.command_json)?;
        let (response, state) = self
            .consensus
            .propose_routed(command, request.forwarded)
            .await
            .map_err(status)?;
        Ok(Response::new(ProposeResponse {
            response_json: serde_json::to_vec(&response).expect("response serialises"),
            state_json: self.consensus.stamped(&state),
        }))
    }

    async fn join(&self, request: Request<JoinRequest>) -> Result<Response<JoinResponse>, Status> {
        self.consensus
            .handle_join(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn heartbeat(
        &self,
        request: Request<HeartbeatRequest>,
    ) -> Result<Response<HeartbeatResponse>, Status> {
        self.consensus
            .handle_heartbeat(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn shard_copy_event(
        &self,
        request: Request<ShardCopyEventRequest>,
    ) -> Result<Response<ShardCopyEventResponse>, Status> {
        self.consensus
            .handle_shard_copy_event(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn graceful_stop(
        &self,
        request: Request<GracefulStopRequest>,
    ) -> Result<Response<GracefulStopResponse>, Status> {
        self.consensus
            .handle_graceful_stop(request.into_inner())
            .await
            .map(Response::new)
            .map_err(status)
    }

    async fn jobs(&self, request: Request<JobsRequest>) -> Result<Response<JobsResponse>, Status> {
        let jobs = if request.into_inner().log {
            self.jobs.log()
        } else {
            self.jobs.list()
        };
        Ok(Response::new(JobsResponse {
            jobs_json: serde_json::to_vec(&jobs).expect("jobs serialise"),
        }))
    }

    async fn kill_jobs(
        &self,
        request: Request<KillJobsRequest>,
    ) -> Result<Response<KillJobsResponse>, Status> {
        let request = request.into_inner();
        let killed = if request.all {
            self.jobs.kill_all(&request.except_id)
        } else {
            u64::from(self.jobs.kill(&request.id))
        };
        Ok(Response::new(KillJobsResponse { killed }))
    }
}

struct NodeServiceImpl {
    consensus: Arc<Consensus>,
    data_dir: PathBuf,
}

#[tonic::async_trait]
impl NodeService for NodeServiceImpl {
    async fn publish_state(
        &self,
        request: Request<StateMessage>,
    ) -> Result<Response<PublishStateResponse>, Status> {
        let state = parse_state(&request.into_inner().state_json).map_err(status)?;
        let catalog = self.consensus.catalog();
        catalog.install(Arc::new(state));
        Ok(Response::new(PublishStateResponse {
            applied_version: catalog.state().version,
        }))
    }

    async fn node_stats(
        &self,
        _request: Request<NodeStatsRequest>,
    ) -> Result<Response<NodeStatsResponse>, Status> {
        creek_proto::node_stats::collect_blocking(self.data_dir.clone())
            .await
            .map(Response::new)
    }
}

/// Serves the coordinator's transport services on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: tokio::net::TcpListener,
    consensus: Arc<Consensus>,
    jobs: Arc<Jobs>,
    data_dir: PathBuf,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), tonic::transport::Error> {
    let cluster = ClusterServiceServer::new(ClusterServiceImpl {
        consensus: consensus.clone(),
        jobs,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let node = NodeServiceServer::new(NodeServiceImpl {
        consensus,
        data_dir,
    })
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Only nodes that know the cluster secret may vote, join, propose or publish.
    tonic::transport::Server::builder()
        .layer(creek_proto::cluster_auth::server_layer())
        .add_service(cluster)
        .add_service(node)
        .serve_with_incoming_shutdown(creek_proto::transport::nodelay_incoming(listener), shutdown)
        .await
}
