//! A data node's membership: joining the cluster through the coordinators named by `--join`,
//! heartbeating to the leader, and applying the cluster-state versions it is sent (opening the
//! shards assigned to it, updating table definitions, deleting dropped tables).
//!
//! The node remembers the cluster it joined (`<data-dir>/cluster.json`) and never joins another:
//! a refused join stops the node with the coordinator's reason. This module must not decide
//! placement; it follows the routing table it is given.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use creek_common::state::{ClusterState, NodeInfo, NodeRole};
use creek_common::NodeId;
use creek_proto::cluster_auth::SignedChannel;
use creek_proto::status::error_from_status;
use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::node_service_server::NodeService;
use creek_proto::v1::{
    HeartbeatRequest, JoinRequest, NodeStatsRequest, NodeStatsResponse, PublishStateResponse,
    StateMessage,
};
use serde::{Deserialize, Serialize};
use tonic::{Request, Response, Status};

use crate::node::{DataNode, MAX_MESSAGE_BYTES};

/// How often the node tells the leader it is alive.
const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);

/// Every how many heartbeats the node follows its last state again (see
/// [`DataNode::reconcile`]).
const RECONCILE_EVERY: u64 = 4;

/// How a data node joins its cluster.
#[derive(Debug, Clone)]
pub struct MembershipConfig {
    /// `--cluster-name`.
    pub cluster_name: String,
    /// `--join`: coordinator transport addresses; host names are resolved on every attempt.
    pub join: Vec<String>,
    /// The address other nodes reach this node's transport port at.
    pub address: String,
    /// `--attr key=value`.
    pub attributes: BTreeMap<String, String>,
    /// The address clients reach this node's Flight port at (`None`: it serves no clients).
    pub flight_address: Option<String>,
}

/// The cluster this node belongs to, kept in its data dir once it has joined.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ClusterIdentity {
    cluster_name: String,
    cluster_uuid: String,
}

fn identity_path(data_dir: &Path) -> PathBuf {
    data_dir.join("cluster.json")
}

fn read_identity(data_dir: &Path) -> Option<ClusterIdentity> {
    serde_json::from_slice(&std::fs::read(identity_path(data_dir)).ok()?).ok()
}

fn write_identity(data_dir: &Path, identity: &ClusterIdentity) -> std::io::Result<()> {
    crate::durable_file::write(
        &identity_path(data_dir),
        &serde_json::to_vec_pretty(identity).expect("identity serialises"),
    )
}

fn connect(address: &str) -> Option<ClusterServiceClient<SignedChannel>> {
    let channel = creek_proto::transport::peer_channel(address, Duration::from_secs(2)).ok()?;
    Some(
        ClusterServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES),
    )
}

/// Applies a state document on the blocking pool; returns the version the node now has.
async fn apply(node: &Arc<DataNode>, state: ClusterState) -> Result<u64, Status> {
    let node = node.clone();
    tokio::task::spawn_blocking(move || node.apply_state(&state))
        .await
        .map_err(|e| Status::internal(format!("applying cluster state failed: {e}")))?
        .map_err(Status::from)
}

/// Joins the cluster and heartbeats until the process ends. Returns `Err` if the cluster
/// refuses this node, with the reason, and `Ok` once the node was decommissioned and holds
/// no copies any more (the process should then stop).
pub async fn run(node: Arc<DataNode>, config: MembershipConfig) -> Result<(), String> {
    let me = NodeInfo {
        id: NodeId(node.node_id().to_string()),
        role: NodeRole::Data,
        address: config.address.clone(),
        flight_address: config.flight_address.clone(),
        attributes: config.attributes.clone(),
        voter: false,
        alive: true,
        decommissioned: false,
        stopping: None,
    };
    let data_dir = node.data_dir().to_path_buf();
    node.cluster_client().set_join(config.join.clone());
    let mut joined = false;
    let mut leader: Option<String> = None;
    let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut logged_waiting = false;
    let mut reconcile_tick = 0u64;
    // One lazily connected channel per coordinator address; it reconnects, resolving the name
    // again, whenever its connection breaks.
    let mut clients: HashMap<String, ClusterServiceClient<SignedChannel>> = HashMap::new();
    let mut client = |address: &str| -> Option<ClusterServiceClient<SignedChannel>> {
        if !clients.contains_key(address) {
            clients.insert(address.to_string(), connect(address)?);
        }
        clients.get(address).cloned()
    };
    loop {
        ticker.tick().await;
        // The leader first, then every --join address in turn.
        let mut targets: Vec<String> = leader.iter().cloned().collect();
        targets.extend(
            config
                .join
                .iter()
                .filter(|a| Some(*a) != leader.as_ref())
                .cloned(),
        );
        if !joined {
            let identity = read_identity(&data_dir);
            if let Some(identity) = &identity {
                node.bind_cluster(&identity.cluster_uuid);
                if identity.cluster_name != config.cluster_name {
                    return Err(format!(
                        "this data directory belongs to cluster '{}', not '{}'",
                        identity.cluster_name, config.cluster_name
                    ));
                }
            }
            let request = JoinRequest {
                node_json: serde_json::to_vec(&me).expect("node serialises"),
                cluster_name: config.cluster_name.clone(),
                cluster_uuid: identity.map(|i| i.cluster_uuid).unwrap_or_default(),
                forwarded: false,
            };
            for address in &targets {
                let Some(mut client) = client(address) else {
                    continue;
                };
                match client.join(request.clone()).await {
                    Ok(response) => {
                        let state: ClusterState =
                            match serde_json::from_slice(&response.into_inner().state_json) {
                                Ok(state) => state,
                                Err(e) => {
                                    tracing::warn!(%address, error = %e, "bad join answer");
                                    continue;
                                }
                            };
                        let identity = ClusterIdentity {
                            cluster_name: state.cluster_name.clone(),
                            cluster_uuid: state.cluster_uuid.clone(),
                        };
                        if let Err(e) = write_identity(&data_dir, &identity) {
                            return Err(format!("cannot record the cluster joined: {e}"));
                        }
                        node.bind_cluster(&identity.cluster_uuid);
                        if let Err(status) = apply(&node, state).await {
                            tracing::warn!(%status, "applying cluster state failed");
                        }
                        tracing::info!(node = %me.id, via = %address, "joined the cluster");
                        joined = true;
                        break;
                    }
                    Err(status) if status.code() == tonic::Code::InvalidArgument => {
                        return Err(error_from_status(&status).message);
                    }
                    Err(status) => {
                        if !logged_waiting {
                            tracing::info!(%address, status = %status.message(), "waiting to join");
                            logged_waiting = true;
                        }
                    }
                }
            }
            continue;
        }
        let request = HeartbeatRequest {
            node_id: me.id.0.clone(),
            state_version: node.state_version(),
            forwarded: false,
        };
        let mut answered = false;
        for address in &targets {
            let Some(mut client) = client(address) else {
                continue;
            };
            let sent = std::time::Instant::now();
            let Ok(response) = client.heartbeat(request.clone()).await else {
                continue;
            };
            let response = response.into_inner();
            answered = true;
            if response.lease_ms > 0 {
                node.renew_lease(sent, Duration::from_millis(response.lease_ms));
            }
            if response.rejoin {
                joined = false;
            }
            if !response.state_json.is_empty() {
                if let Ok(state) = serde_json::from_slice::<ClusterState>(&response.state_json) {
                    if let Err(status) = apply(&node, state).await {
                        tracing::warn!(%status, "applying cluster state failed");
                    }
                }
            }
            leader = node.coordinator_address(&response.leader);
            node.cluster_client().set_leader(leader.clone());
            break;
        }
        if !answered {
            leader = None;
            node.cluster_client().set_leader(None);
        }
        reconcile_tick += 1;
        if reconcile_tick.is_multiple_of(RECONCILE_EVERY) {
            let node = node.clone();
            let _ = tokio::task::spawn_blocking(move || node.reconcile()).await;
        }
        if node.drained() {
            tracing::info!(node = %me.id, "decommissioned and drained: stopping");
            return Ok(());
        }
    }
}

/// `NodeService` of a data node.
pub struct NodeServiceImpl {
    node: Arc<DataNode>,
}

impl NodeServiceImpl {
    /// Creates the service for `node`.
    pub fn new(node: Arc<DataNode>) -> NodeServiceImpl {
        NodeServiceImpl { node }
    }
}

#[tonic::async_trait]
impl NodeService for NodeServiceImpl {
    async fn publish_state(
        &self,
        request: Request<StateMessage>,
    ) -> Result<Response<PublishStateResponse>, Status> {
        let state: ClusterState = serde_json::from_slice(&request.into_inner().state_json)
            .map_err(|e| Status::invalid_argument(format!("bad cluster state: {e}")))?;
        let applied_version = apply(&self.node, state).await?;
        Ok(Response::new(PublishStateResponse { applied_version }))
    }

    async fn node_stats(
        &self,
        _request: Request<NodeStatsRequest>,
    ) -> Result<Response<NodeStatsResponse>, Status> {
        creek_proto::node_stats::collect_blocking(self.node.data_dir().to_path_buf())
            .await
            .map(Response::new)
    }
}
