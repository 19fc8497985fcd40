//! How cluster state changes and spreads: Raft among the voting coordinators (openraft), the
//! leader's duties (forming the cluster, membership, liveness, publishing versions), and the
//! way any coordinator gets a change committed (locally on the leader, else forwarded).
//!
//! Only the leader changes cluster state, by committing a [`Command`] to the Raft log; every
//! voter's state machine applies it (`store.rs`). The leader then pushes the new version to
//! every other node and waits (bounded) for their acknowledgements, so a `CREATE TABLE`
//! answered to a client is on the data nodes that hold its shards. Nodes that missed versions
//! get the latest one in their next heartbeat answer. Non-voting coordinators (`--join`) run no
//! Raft; they learn state from those pushes and forward changes to the voters.
//!
//! This module must not plan queries or touch table data; it moves state documents only.

pub mod network;
pub mod service;
pub mod store;

use std::collections::{BTreeMap, HashMap};
use std::io::Cursor;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creek_common::error::{CodedError, ErrorCode};
use creek_common::state::{ClusterState, NodeInfo, NodeRole};
use creek_common::NodeId;
use creek_proto::cluster_auth::SignedChannel;
use creek_proto::status::error_from_status;
use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::node_service_client::NodeServiceClient;
use creek_proto::v1::{
    GracefulStopRequest, GracefulStopResponse, HeartbeatRequest, HeartbeatResponse, JoinRequest,
    JoinResponse, ProposeRequest, ProposeResponse, ShardCopyEventRequest, ShardCopyEventResponse,
    StateMessage,
};
use openraft::error::{ClientWriteError, InitializeError, RaftError};
use openraft::{Config, ServerState, SnapshotPolicy};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};

use crate::catalog::commands::{Command, CommandResponse};
use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// openraft's id of a voter: a stable hash of its `--node-id`.
pub type RaftNodeId = u64;

/// A voter as openraft's membership records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RaftPeer {
    /// `--node-id`.
    pub name: String,
    /// Transport address.
    pub address: String,
}

impl std::fmt::Display for RaftPeer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}", self.name, self.address)
    }
}

openraft::declare_raft_types!(
    /// Creek's Raft: commands in, command responses out, voters named by [`RaftPeer`].
    pub TypeConfig:
        D = Command,
        R = CommandResponse,
        Node = RaftPeer,
);

type CreekRaft = openraft::Raft<TypeConfig>;

/// How long a state change may take to commit before the client is told it failed.
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the leader waits for nodes to acknowledge a new version.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);
/// How often a node tells the leader it is alive.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(500);
/// A leader that has not heard from a majority of voters for this long refuses changes.
const QUORUM_SILENCE_MS: u64 = 1600;
/// A pause of the leader's own duties longer than this resets every node's liveness clock.
const STALL: Duration = Duration::from_secs(1);
/// Largest gRPC message on the transport port (cluster state and Raft snapshots).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Returns the Raft id of a voter named `name` (64-bit FNV-1a: stable across releases).
pub fn raft_id(name: &str) -> RaftNodeId {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in name.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// A lazily connected channel to a node's transport address; names are resolved again on every
/// connection attempt, so a DNS name that moves (a Kubernetes service) keeps working.
pub fn peer_channel(address: &str) -> Option<SignedChannel> {
    creek_proto::transport::peer_channel(address, Duration::from_secs(2)).ok()
}

fn coded(error: Error) -> CodedError {
    CodedError::new(error.code(), error.client_message())
}

/// How this coordinator takes part in the cluster.
#[derive(Debug, Clone)]
pub struct ConsensusConfig {
    /// This coordinator as a cluster member.
    pub node: NodeInfo,
    /// `--cluster-name`.
    pub cluster_name: String,
    /// Where a voter keeps its Raft log and snapshots.
    pub raft_dir: PathBuf,
    /// `--voters`: every voter's name and transport address; empty for a non-voter.
    pub voters: Vec<(String, String)>,
    /// `--join`: coordinators a non-voter asks (host names are resolved on every attempt).
    pub join: Vec<String>,
    /// A node not heard from for this long is marked gone.
    pub node_timeout: Duration,
    /// State written by an older single-node `creek dev`, taken over when the cluster forms.
    pub imported_state: Option<ClusterState>,
}

/// This coordinator's part in cluster-state consensus.
pub struct Consensus {
    config: ConsensusConfig,
    catalog: Arc<Catalog>,
    raft: Option<CreekRaft>,
    /// The leader's name and address as last heard (non-voters learn it from heartbeats).
    learned_leader: RwLock<Option<(String, String)>>,
    /// Serialises the changes this coordinator commits as leader.
    propose_lock: tokio::sync::Mutex<()>,
    /// Leader only: when each node was last heard from.
    last_seen: Mutex<HashMap<NodeId, Instant>>,
    /// Leader only: the latest version each node acknowledged.
    acked: Mutex<HashMap<NodeId, u64>>,
    publishing: Mutex<std::collections::HashSet<NodeId>>,
    registered: AtomicBool,
    /// Channels to other nodes by address, shared by Raft-free calls (forwarding, publishing);
    /// a channel reconnects (and re-resolves the name) by itself when its connection breaks.
    channels: Mutex<HashMap<String, SignedChannel>>,
    /// Set when the cluster refuses this coordinator (another cluster's name or id).
    refused: tokio::sync::watch::Sender<Option<String>>,
}

impl std::fmt::Debug for Consensus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Consensus({})", self.config.node.id)
    }
}

impl Consensus {
    /// Opens the Raft storage of a voter (or nothing, for a non-voter), joins Raft and starts
    /// the background duties. The catalog shows the last applied state once this returns.
    pub async fn start(config: ConsensusConfig, catalog: Arc<Catalog>) -> Result<Arc<Consensus>> {
        let internal = |what: &str, e: &dyn std::fmt::Display| {
            Error::new(ErrorCode::Internal, format!("{what}: {e}"))
        };
        let raft = if config.voters.is_empty() {
            None
        } else {
            let raft_config = Config {
                cluster_name: config.cluster_name.clone(),
                heartbeat_interval: 150,
                election_timeout_min: 800,
                election_timeout_max: 1600,
                snapshot_policy: SnapshotPolicy::LogsSinceLast(500),
                max_in_snapshot_log_to_keep: 100,
                ..Config::default()
            }
            .validate()
            .map_err(|e| internal("bad raft configuration", &e))?;
            let log = store::LogStore::open(&config.raft_dir)
                .map_err(|e| internal("opening the raft log", &e))?;
            let machine = store::StateMachine::open(&config.raft_dir, catalog.clone())
                .map_err(|e| internal("opening the raft snapshot", &e))?;
            let me = raft_id(&config.node.id.0);
            let raft = CreekRaft::new(me, Arc::new(raft_config), network::Network, log, machine)
                .await
                .map_err(|e| internal("starting raft", &e))?;
            let members: BTreeMap<RaftNodeId, RaftPeer> = config
                .voters
                .iter()
                .map(|(name, address)| {
                    (
                        raft_id(name),
                        RaftPeer {
                            name: name.clone(),
                            address: address.clone(),
                        },
                    )
                })
                .collect();
            // Every voter initialises with the same membership; only an empty log takes it.
            match raft.initialize(members).await {
                Ok(()) | Err(RaftError::APIError(InitializeError::NotAllowed(_))) => {}
                Err(e) => return Err(internal("initialising raft", &e)),
            }
            Some(raft)
        };
        let consensus = Arc::new(Consensus {
            config,
            catalog,
            raft,
            learned_leader: RwLock::new(None),
            propose_lock: tokio::sync::Mutex::new(()),
            last_seen: Mutex::new(HashMap::new()),
            acked: Mutex::new(HashMap::new()),
            publishing: Mutex::new(Default::default()),
            registered: AtomicBool::new(false),
            channels: Mutex::new(HashMap::new()),
            refused: tokio::sync::watch::channel(None).0,
        });
        tokio::spawn(consensus.clone().member_loop());
        if consensus.raft.is_some() {
            tokio::spawn(consensus.clone().leader_loop());
        }
        Ok(consensus)
    }

    /// This node's id.
    pub fn node_id(&self) -> &NodeId {
        &self.config.node.id
    }

    /// The catalog this consensus installs state into.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    pub(crate) fn raft(&self) -> Option<&CreekRaft> {
        self.raft.as_ref()
    }

    /// Whether this coordinator is a voter.
    pub fn is_voter(&self) -> bool {
        self.raft.is_some()
    }

    /// Whether this coordinator is the Raft leader.
    pub fn is_leader(&self) -> bool {
        self.raft
            .as_ref()
            .is_some_and(|raft| raft.metrics().borrow().state == ServerState::Leader)
    }

    /// The leader's name and transport address, if one is known.
    pub fn leader(&self) -> Option<(String, String)> {
        match &self.raft {
            Some(raft) => {
                let metrics = raft.metrics().borrow().clone();
                let id = metrics.current_leader?;
                metrics
                    .membership_config
                    .membership()
                    .get_node(&id)
                    .map(|peer| (peer.name.clone(), peer.address.clone()))
            }
            None => self.learned_leader.read().clone(),
        }
    }

    /// Where to send a request the leader must answer: the leader if known, else the voters or
    /// join addresses in order.
    fn leader_candidates(&self) -> Vec<String> {
        let mut addresses = Vec::new();
        if let Some((_, address)) = self.leader() {
            addresses.push(address);
        }
        if self.raft.is_none() {
            for address in self
                .config
                .join
                .iter()
                .chain(self.config.voters.iter().map(|(_, a)| a))
            {
                if !addresses.contains(address) {
                    addresses.push(address.clone());
                }
            }
        }
        addresses
    }

    /// How many voting coordinators the cluster has (a non-voter counts them in the state).
    fn voter_count(&self) -> usize {
        if !self.config.voters.is_empty() {
            return self.config.voters.len();
        }
        self.catalog
            .state()
            .nodes
            .values()
            .filter(|n| n.voter)
            .count()
            .max(1)
    }

    fn no_leader(&self) -> Error {
        Error::new(
            ErrorCode::Unavailable,
            format!(
                "no coordinator is elected leader, so cluster state cannot change; a majority \
                 of the {} voting coordinators must be up",
                self.voter_count()
            ),
        )
    }

    /// Commits `command` (here if this coordinator leads, else through the leader) and installs
    /// the resulting state locally, so this coordinator's next statement sees the change.
    pub async fn propose(&self, command: Command) -> Result<CommandResponse> {
        let (response, state) = self.propose_routed(command, false).await?;
        self.catalog.install(state);
        Ok(response)
    }

    /// Answers a proposal: commits it as leader, or passes it on one hop.
    pub(crate) async fn propose_routed(
        &self,
        command: Command,
        forwarded: bool,
    ) -> Result<(CommandResponse, Arc<ClusterState>)> {
        if self.is_leader() {
            return self.commit(command).await;
        }
        if forwarded && self.raft.is_some() {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "the leader changed while the statement was forwarded; retry it",
            ));
        }
        let request = ProposeRequest {
            command_json: serde_json::to_vec(&command).expect("command serialises"),
            forwarded: self.raft.is_some(),
        };
        let response: ProposeResponse = self
            .call_leader(|mut client| {
                let request = request.clone();
                async move { client.propose(request).await }
            })
            .await?;
        let decoded: CommandResponse = serde_json::from_slice(&response.response_json)
            .map_err(|e| Error::new(ErrorCode::Internal, format!("bad propose answer: {e}")))?;
        Ok((decoded, Arc::new(parse_state(&response.state_json)?)))
    }

    /// Sends a request to the leader (or, for a non-voter, to the first voter that answers).
    async fn call_leader<T, F, Fut>(&self, call: F) -> Result<T>
    where
        F: Fn(ClusterServiceClient<SignedChannel>) -> Fut,
        Fut: std::future::Future<Output = std::result::Result<tonic::Response<T>, tonic::Status>>,
    {
        let candidates = self.leader_candidates();
        if candidates.is_empty() {
            return Err(self.no_leader());
        }
        let mut last_error = None;
        for address in candidates {
            match call(self.cluster_client(&address)?).await {
                Ok(response) => return Ok(response.into_inner()),
                Err(status) if status.code() == tonic::Code::Unavailable => {
                    last_error = Some(Error::new(
                        ErrorCode::Unavailable,
                        format!(
                            "cannot reach the leader (tried coordinator {address}: {}); cluster \
                             state cannot change until a majority of the {} voting coordinators \
                             is up and has elected a leader",
                            status.message(),
                            self.voter_count()
                        ),
                    ));
                }
                Err(status) => return Err(Error::Coded(error_from_status(&status))),
            }
        }
        Err(last_error.unwrap_or_else(|| self.no_leader()))
    }

    fn channel(&self, address: &str) -> Result<SignedChannel> {
        if let Some(channel) = self.channels.lock().get(address) {
            return Ok(channel.clone());
        }
        let channel = peer_channel(address).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameterValue,
                format!("bad node address {address}"),
            )
        })?;
        self.channels
            .lock()
            .insert(address.to_string(), channel.clone());
        Ok(channel)
    }

    fn cluster_client(&self, address: &str) -> Result<ClusterServiceClient<SignedChannel>> {
        Ok(ClusterServiceClient::new(self.channel(address)?)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }

    /// Resolves with the reason once the cluster refuses this coordinator (configured for
    /// another cluster); the process should then stop.
    pub async fn refused(&self) -> String {
        let mut receiver = self.refused.subscribe();
        let reason = match receiver.wait_for(|reason| reason.is_some()).await {
            Ok(reason) => reason.clone().unwrap_or_default(),
            Err(_) => std::future::pending().await,
        };
        reason
    }

    /// Commits `command` as leader, then publishes the new version and waits for the nodes.
    async fn commit(&self, command: Command) -> Result<(CommandResponse, Arc<ClusterState>)> {
        let raft = self.raft.as_ref().ok_or_else(|| self.no_leader())?;
        let _guard = self.propose_lock.lock().await;
        // A leader cut off from the other voters would append the change and then time out,
        // leaving it to be committed whenever the majority returns. Refuse it up front instead.
        let quorum_silence = raft.metrics().borrow().millis_since_quorum_ack;
        if let Some(millis) = quorum_silence.filter(|ms| *ms > QUORUM_SILENCE_MS) {
            return Err(Error::new(
                ErrorCode::Unavailable,
                format!(
                    "cluster state cannot change: the leader has not heard from a majority of the \
                     {} voting coordinators for {:.1}s",
                    self.voter_count(),
                    millis as f64 / 1000.0
                ),
            ));
        }
        let written = tokio::time::timeout(COMMIT_TIMEOUT, raft.client_write(command)).await;
        let response = match written {
            Ok(Ok(written)) => written.data,
            Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(_)))) => {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    "this coordinator lost leadership while committing; retry the statement",
                ))
            }
            Ok(Err(e)) => {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    format!("cluster state change failed: {e}"),
                ))
            }
            Err(_) => {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    format!(
                        "cluster state change was not committed within {}s: a majority of the \
                         {} voting coordinators must be reachable (the change may still be \
                         applied once they are)",
                        COMMIT_TIMEOUT.as_secs(),
                        self.voter_count()
                    ),
                ))
            }
        };
        let state = self.catalog.state();
        if matches!(response.outcome, Ok(true)) {
            self.publish_and_wait(&state).await;
        }
        Ok((response, state))
    }

    /// `state` as JSON for another node, stamped with this leader's Raft term so receivers can
    /// refuse copies from a leader older than one they have heard from.
    pub(crate) fn stamped(&self, state: &ClusterState) -> Vec<u8> {
        let mut copy = state.clone();
        copy.leader_term = self
            .raft
            .as_ref()
            .map(|raft| raft.metrics().borrow().current_term)
            .unwrap_or(state.leader_term);
        serde_json::to_vec(&copy).expect("state serialises")
    }

    /// Pushes `state` to every other live node and waits (bounded) until they acknowledge it.
    async fn publish_and_wait(&self, state: &Arc<ClusterState>) {
        let targets: Vec<NodeInfo> = state
            .nodes
            .values()
            .filter(|n| n.alive && n.id != self.config.node.id)
            .cloned()
            .collect();
        let pushes = targets.iter().map(|node| self.publish_to(node, state));
        if tokio::time::timeout(PUBLISH_TIMEOUT, futures::future::join_all(pushes))
            .await
            .is_err()
        {
            tracing::warn!(
                version = state.version,
                "not every node acknowledged the new cluster state in time"
            );
        }
    }

    /// Pushes `state` to one node; records the version it acknowledges.
    async fn publish_to(&self, node: &NodeInfo, state: &ClusterState) {
        let Ok(channel) = self.channel(&node.address) else {
            return;
        };
        let mut client = NodeServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let message = StateMessage {
            state_json: self.stamped(state),
        };
        match client.publish_state(message).await {
            Ok(response) => {
                let version = response.into_inner().applied_version;
                self.acked.lock().insert(node.id.clone(), version);
            }
            Err(status) => {
                tracing::debug!(node = %node.id, %status, "publishing cluster state failed");
            }
        }
    }

    /// Leader side of `Join`: checks the node belongs here, records it, returns the state.
    pub(crate) async fn handle_join(&self, request: JoinRequest) -> Result<JoinResponse> {
        if !self.is_leader() {
            if request.forwarded && self.raft.is_some() {
                return Err(self.no_leader());
            }
            let forwarded = JoinRequest {
                forwarded: self.raft.is_some(),
                ..request
            };
            return self
                .call_leader(|mut client| {
                    let request = forwarded.clone();
                    async move { client.join(request).await }
                })
                .await;
        }
        let mut node: NodeInfo = serde_json::from_slice(&request.node_json).map_err(|e| {
            Error::new(
                ErrorCode::InvalidParameterValue,
                format!("bad node description: {e}"),
            )
        })?;
        let state = self.catalog.state();
        if state.cluster_uuid.is_empty() {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "the cluster is still forming; retry",
            ));
        }
        if request.cluster_name != state.cluster_name {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "node {} is configured for cluster '{}' but this is cluster '{}'",
                    node.id, request.cluster_name, state.cluster_name
                ),
            ));
        }
        if !request.cluster_uuid.is_empty() && request.cluster_uuid != state.cluster_uuid {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "node {} belongs to another cluster (uuid {}); this is cluster '{}' (uuid {}). \
                     Start it with an empty data directory to join this cluster",
                    node.id, request.cluster_uuid, state.cluster_name, state.cluster_uuid
                ),
            ));
        }
        node.alive = true;
        self.last_seen
            .lock()
            .insert(node.id.clone(), Instant::now());
        let (response, state) = self.commit(Command::NodeJoined { node }).await?;
        response.outcome.map_err(Error::Coded)?;
        Ok(JoinResponse {
            state_json: self.stamped(&state),
        })
    }

    /// Leader side of `Heartbeat`.
    pub(crate) async fn handle_heartbeat(
        self: &Arc<Self>,
        request: HeartbeatRequest,
    ) -> Result<HeartbeatResponse> {
        if !self.is_leader() {
            if request.forwarded && self.raft.is_some() {
                return Err(self.no_leader());
            }
            let forwarded = HeartbeatRequest {
                forwarded: self.raft.is_some(),
                ..request
            };
            return self
                .call_leader(|mut client| {
                    let request = forwarded.clone();
                    async move { client.heartbeat(request).await }
                })
                .await;
        }
        let node = NodeId(request.node_id);
        self.last_seen.lock().insert(node.clone(), Instant::now());
        let state = self.catalog.state();
        let (leader, _) = self.leader().unwrap_or_default();
        let Some(info) = state.nodes.get(&node) else {
            return Ok(HeartbeatResponse {
                leader,
                state_version: state.version,
                state_json: Vec::new(),
                rejoin: true,
                lease_ms: 0,
            });
        };
        if !info.alive {
            let consensus = self.clone();
            tokio::spawn(async move {
                let command = Command::NodeLiveness {
                    node: node.clone(),
                    alive: true,
                };
                if let Err(error) = consensus.commit(command).await {
                    tracing::warn!(%node, %error, "marking node alive failed");
                }
            });
        }
        let behind = request.state_version < state.version;
        Ok(HeartbeatResponse {
            leader,
            state_version: state.version,
            state_json: if behind {
                self.stamped(&state)
            } else {
                Vec::new()
            },
            rejoin: false,
            lease_ms: self.lease_ms(),
        })
    }

    /// How long a data node may act as primary after sending a heartbeat this leader
    /// answered: half the node timeout, so its lease always ends before this leader could
    /// mark it gone and promote another copy.
    fn lease_ms(&self) -> u64 {
        (self.config.node_timeout.as_millis() / 2) as u64
    }

    /// Leader side of `ShardCopyEvent`: commits a copy's start or failure. A refusal (a stale
    /// primary term) is the answer's `refused`, not an error, so the reporter can tell a
    /// demotion from an unreachable leader.
    pub(crate) async fn handle_shard_copy_event(
        self: &Arc<Self>,
        request: ShardCopyEventRequest,
    ) -> Result<ShardCopyEventResponse> {
        if !self.is_leader() {
            if request.forwarded && self.raft.is_some() {
                return Err(self.no_leader());
            }
            let forwarded = ShardCopyEventRequest {
                forwarded: self.raft.is_some(),
                ..request
            };
            return self
                .call_leader(|mut client| {
                    let request = forwarded.clone();
                    async move { client.shard_copy_event(request).await }
                })
                .await;
        }
        let command = if request.started {
            Command::ShardCopyStarted {
                table: request.table_id,
                shard: request.shard,
                allocation_id: request.allocation_id,
                primary_term: request.primary_term,
            }
        } else {
            tracing::warn!(
                table = request.table_id,
                shard = request.shard,
                copy = %request.allocation_id,
                reason = %request.reason,
                "a shard copy failed"
            );
            Command::ShardCopyFailed {
                table: request.table_id,
                shard: request.shard,
                allocation_id: request.allocation_id,
                primary_term: request.primary_term,
                reason: request.reason,
            }
        };
        let (response, state) = self.commit(command).await?;
        Ok(ShardCopyEventResponse {
            state_version: state.version,
            refused: response
                .outcome
                .err()
                .map(|e| e.message)
                .unwrap_or_default(),
        })
    }

    /// Commits a data node's graceful stop (or its cancellation), forwarding to the leader.
    pub(crate) async fn handle_graceful_stop(
        self: &Arc<Self>,
        request: GracefulStopRequest,
    ) -> Result<GracefulStopResponse> {
        if !self.is_leader() {
            if request.forwarded && self.raft.is_some() {
                return Err(self.no_leader());
            }
            let forwarded = GracefulStopRequest {
                forwarded: self.raft.is_some(),
                ..request
            };
            return self
                .call_leader(|mut client| {
                    let request = forwarded.clone();
                    async move { client.graceful_stop(request).await }
                })
                .await;
        }
        let node = NodeId(request.node_id);
        let command = if request.cancel {
            tracing::warn!(%node, "a graceful stop timed out and is called off");
            Command::CancelGracefulStop { node }
        } else {
            tracing::info!(%node, full = request.full, "a data node stops gracefully");
            Command::GracefulStop {
                node,
                full: request.full,
            }
        };
        let (response, state) = self.commit(command).await?;
        response.outcome.map_err(Error::Coded)?;
        Ok(GracefulStopResponse {
            state_version: state.version,
        })
    }

    /// Every coordinator: join the cluster once, then heartbeat to the leader.
    async fn member_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(HEARTBEAT_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if !self.registered.load(Ordering::Acquire) {
                match self.join_self().await {
                    Ok(()) => {
                        self.registered.store(true, Ordering::Release);
                        tracing::info!(node = %self.config.node.id, "joined the cluster");
                    }
                    Err(error) if error.code() == ErrorCode::InvalidParameterValue => {
                        tracing::error!(%error, "the cluster refused this coordinator");
                        self.refused.send_replace(Some(error.client_message()));
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%error, "joining the cluster failed; retrying");
                    }
                }
                continue;
            }
            let request = HeartbeatRequest {
                node_id: self.config.node.id.0.clone(),
                state_version: self.catalog.state().version,
                forwarded: false,
            };
            match self.handle_heartbeat(request).await {
                Ok(response) => {
                    if response.rejoin {
                        self.registered.store(false, Ordering::Release);
                    }
                    if !response.state_json.is_empty() {
                        if let Ok(state) = parse_state(&response.state_json) {
                            self.catalog.install(Arc::new(state));
                        }
                    }
                    if self.raft.is_none() && !response.leader.is_empty() {
                        self.learn_leader(&response.leader);
                    }
                }
                Err(error) => {
                    if self.raft.is_none() {
                        *self.learned_leader.write() = None;
                    }
                    tracing::debug!(%error, "heartbeat failed");
                }
            }
        }
    }

    fn learn_leader(&self, leader: &str) {
        let address = self
            .catalog
            .state()
            .nodes
            .get(&NodeId(leader.to_string()))
            .map(|n| n.address.clone());
        if let Some(address) = address {
            *self.learned_leader.write() = Some((leader.to_string(), address));
        }
    }

    async fn join_self(&self) -> Result<()> {
        let request = JoinRequest {
            node_json: serde_json::to_vec(&self.config.node).expect("node serialises"),
            cluster_name: self.config.cluster_name.clone(),
            cluster_uuid: self.catalog.state().cluster_uuid.clone(),
            forwarded: false,
        };
        let response = self.handle_join(request).await?;
        self.catalog
            .install(Arc::new(parse_state(&response.state_json)?));
        Ok(())
    }

    /// Voters: while leading, form the cluster, watch liveness and re-publish to lagging nodes.
    async fn leader_loop(self: Arc<Self>) {
        let mut ticker = tokio::time::interval(Duration::from_millis(250));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut leading_since: Option<Instant> = None;
        let mut last_tick = Instant::now();
        loop {
            ticker.tick().await;
            let now = Instant::now();
            // If this process could not run for a while (CPU starved by a heavy query, paused),
            // heartbeats could not be handled either: silence in that gap says nothing about
            // the other nodes, so everyone gets a fresh timeout.
            if now.duration_since(last_tick) > STALL {
                tracing::info!(stalled = ?now.duration_since(last_tick), "leader duties stalled");
                let mut seen = self.last_seen.lock();
                for time in seen.values_mut() {
                    *time = now;
                }
            }
            last_tick = now;
            if !self.is_leader() {
                leading_since = None;
                continue;
            }
            let since = *leading_since.get_or_insert_with(|| {
                // A new leader has heard from nobody yet: give every node a full timeout.
                let mut seen = self.last_seen.lock();
                for id in self.catalog.state().nodes.keys() {
                    seen.insert(id.clone(), now);
                }
                self.acked.lock().clear();
                now
            });
            if let Err(error) = self.leader_duties(since).await {
                tracing::warn!(%error, "leader duties failed");
            }
        }
    }

    async fn leader_duties(self: &Arc<Self>, since: Instant) -> Result<()> {
        let state = self.catalog.state();
        if state.cluster_uuid.is_empty() {
            let command = Command::Bootstrap {
                cluster_name: self.config.cluster_name.clone(),
                cluster_uuid: uuid::Uuid::new_v4().to_string(),
                imported: self.config.imported_state.clone().map(Box::new),
            };
            self.commit(command).await?;
            tracing::info!(cluster = %self.config.cluster_name, "cluster formed");
            return Ok(());
        }
        if state.ticket_key.is_empty() {
            let key = creek_common::state::Secret::new(creek_proto::ticket::new_key());
            self.commit(Command::SetTicketKey { key }).await?;
            return Ok(());
        }
        let timeout = self.config.node_timeout;
        let gone: Vec<NodeId> = {
            let seen = self.last_seen.lock();
            state
                .nodes
                .values()
                .filter(|n| n.alive && n.id != self.config.node.id)
                .filter(|n| {
                    let last = seen.get(&n.id).copied().unwrap_or(since);
                    last.elapsed() > timeout
                })
                .map(|n| n.id.clone())
                .collect()
        };
        for node in gone {
            tracing::warn!(%node, ?timeout, "node is gone: not heard from within the timeout");
            self.commit(Command::NodeLiveness { node, alive: false })
                .await?
                .0
                .outcome
                .map_err(Error::Coded)?;
        }
        // Nodes that missed versions get the latest in the background.
        let state = self.catalog.state();
        let lagging: Vec<NodeInfo> = {
            let acked = self.acked.lock();
            state
                .nodes
                .values()
                .filter(|n| n.alive && n.id != self.config.node.id)
                .filter(|n| acked.get(&n.id).copied().unwrap_or(0) < state.version)
                .cloned()
                .collect()
        };
        for node in lagging {
            if !self.publishing.lock().insert(node.id.clone()) {
                continue;
            }
            let consensus = self.clone();
            let state = state.clone();
            tokio::spawn(async move {
                consensus.publish_to(&node, &state).await;
                consensus.publishing.lock().remove(&node.id);
            });
        }
        Ok(())
    }

    /// Waits until this coordinator has joined the cluster, which also brings its state up to
    /// the leader's; returns whether it did within `timeout`. A coordinator serves clients
    /// only after this, so a restarted one never answers from the state it had before.
    pub async fn wait_joined(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.registered.load(Ordering::Acquire) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        false
    }

    /// Waits until data node `node` has joined at `address` and is alive in this
    /// coordinator's state, or fails after `timeout` (start-up of `creek dev`).
    pub async fn wait_for_data_node(
        &self,
        node: &NodeId,
        address: &str,
        timeout: Duration,
    ) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            // The state restored from disk after a restart still holds the node as it was
            // (alive, at the address it had then); only its join at this address says the
            // running process is the one the state points clients at.
            let joined = self
                .catalog
                .state()
                .nodes
                .get(node)
                .is_some_and(|n| n.role == NodeRole::Data && n.alive && n.address == address);
            if joined {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    format!("data node {node} did not join at {address} in time"),
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Parses cluster-state JSON received from another node.
pub fn parse_state(bytes: &[u8]) -> Result<ClusterState> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::new(ErrorCode::Internal, format!("bad cluster state: {e}")))
}

/// Makes the coded error of a failed consensus step (kept for gRPC answers).
pub(crate) fn to_coded(error: Error) -> CodedError {
    coded(error)
}
