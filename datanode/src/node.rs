//! The data node's registry of tables and open shards, how it follows cluster state (which
//! shards it holds), its periodic refresh, and the gRPC server that exposes `ShardService`,
//! `NodeService` and Arrow Flight on one transport port. Which copies it holds, and in what
//! role, is `copies`; recovering a copy is `recovery`; the primary's side of replication is
//! `service`.

mod copies;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creek_common::state::ClusterState;
use creek_common::NodeId;
use creek_proto::v1::node_service_server::NodeServiceServer;

use creek_common::schema::TableSchema;
use creek_common::{ShardId, TableId};
use creek_proto::arrow_flight::flight_service_server::FlightServiceServer;
use creek_proto::v1::shard_service_server::ShardServiceServer;
use parking_lot::RwLock;

use crate::cluster_client::ClusterClient;
use crate::error::{Error, Result};
use crate::flight::FlightFragmentService;
use crate::membership::NodeServiceImpl;
use crate::recovery::RecoveryProgress;
use crate::service::ShardServiceImpl;
use crate::shard::copy::Peer;
use crate::shard::{RecoverySnapshot, Shard};

/// Largest gRPC message a data node accepts or sends (a write batch or a Get answer).
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Settings of one data node.
#[derive(Debug, Clone)]
pub struct DatanodeConfig {
    /// The node's id in the cluster.
    pub node_id: String,
    /// Where shards live: `<data_dir>/tables/<table id>/<shard>/`.
    pub data_dir: PathBuf,
}

/// A running data node's state.
pub struct DataNode {
    config: DatanodeConfig,
    tables: RwLock<HashMap<TableId, Arc<TableSchema>>>,
    shards: RwLock<HashMap<ShardId, Arc<Shard>>>,
    /// The cluster state last applied; versions only move forward.
    state: RwLock<Arc<ClusterState>>,
    state_version: AtomicU64,
    /// Serialises state application (a push and a heartbeat answer may race).
    applying: parking_lot::Mutex<()>,
    /// Shards that could not be opened, with the reason; they serve nothing until the node
    /// opens them again (each state version retries), and never keep the others from serving.
    failed: RwLock<HashMap<ShardId, String>>,
    /// Reports copy events to the leader.
    cluster_client: Arc<ClusterClient>,
    /// Channels to the other data nodes (replication and recovery).
    pub(crate) peers: crate::replication::PeerChannels,
    /// Until when this node may acknowledge writes as a primary: renewed by every heartbeat
    /// the leader answers (see `HeartbeatResponse.lease_ms`).
    lease_until: parking_lot::Mutex<Option<Instant>>,
    /// Copies this node is recovering, by shard.
    pub(crate) recoveries: parking_lot::Mutex<HashMap<ShardId, RecoveryTask>>,
    /// Recoveries of a shard that failed here in a row: the next failure is reported only
    /// after a back-off that grows with it, so an unreachable primary is not hammered.
    pub(crate) recovery_failures: parking_lot::Mutex<HashMap<ShardId, u32>>,
    /// Recoveries this node serves as primary, by recovery id.
    pub(crate) sessions: parking_lot::Mutex<HashMap<String, SourceSession>>,
}

/// A recovery this node runs for one of its copies.
pub struct RecoveryTask {
    /// The copy being recovered.
    pub allocation_id: String,
    /// What it has done, for `sys.shards`.
    pub progress: Arc<RecoveryProgress>,
    /// Stops it when the task is dropped (the state no longer wants the copy).
    pub handle: tokio::task::AbortHandle,
}

impl Drop for RecoveryTask {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A recovery this node serves as primary: the files of one commit, held until the target
/// has them, and the copy they are for.
pub struct SourceSession {
    /// The commit's files (dropping it releases them and the translog).
    pub snapshot: RecoverySnapshot,
    /// The primary shard.
    pub shard: Arc<Shard>,
    /// The recovering copy.
    pub target: Peer,
    /// When the recovery started; sessions idle for long are dropped.
    pub created: Instant,
}

impl DataNode {
    /// Opens every shard found under the data dir.
    pub fn open(config: DatanodeConfig) -> Result<Arc<DataNode>> {
        let node = Arc::new(DataNode {
            config,
            tables: RwLock::new(HashMap::new()),
            shards: RwLock::new(HashMap::new()),
            state: RwLock::new(Arc::new(ClusterState::default())),
            state_version: AtomicU64::new(0),
            applying: parking_lot::Mutex::new(()),
            failed: RwLock::new(HashMap::new()),
            cluster_client: Arc::new(ClusterClient::default()),
            peers: Default::default(),
            lease_until: parking_lot::Mutex::new(None),
            recoveries: parking_lot::Mutex::new(HashMap::new()),
            recovery_failures: parking_lot::Mutex::new(HashMap::new()),
            sessions: parking_lot::Mutex::new(HashMap::new()),
        });
        // Copies deleted before a crash: nothing refers to them any more.
        let _ = std::fs::remove_dir_all(node.trash_dir());
        let tables_dir = node.tables_dir();
        std::fs::create_dir_all(&tables_dir).map_err(|source| Error::Io {
            shard_id: ShardId {
                table: TableId(0),
                shard: 0,
            },
            source,
        })?;
        for entry in std::fs::read_dir(&tables_dir)
            .into_iter()
            .flatten()
            .flatten()
        {
            let table_file = entry.path().join("table.json");
            let Ok(bytes) = std::fs::read(&table_file) else {
                continue;
            };
            let table: TableSchema = match serde_json::from_slice(&bytes) {
                Ok(table) => table,
                Err(error) => {
                    // Its shards stay on disk; the cluster state names the table again.
                    tracing::error!(path = %table_file.display(), %error, "unreadable table definition");
                    continue;
                }
            };
            let shard_numbers: Vec<u32> = std::fs::read_dir(entry.path())
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| e.file_name().to_string_lossy().parse().ok())
                .collect();
            node.open_shards(table, &shard_numbers);
        }
        Ok(node)
    }

    /// Binds the node to the cluster it belongs to: states of another cluster are refused.
    pub fn bind_cluster(&self, cluster_uuid: &str) {
        let mut state = self.state.write();
        if state.cluster_uuid.is_empty() {
            let mut bound = state.as_ref().clone();
            bound.cluster_uuid = cluster_uuid.to_string();
            *state = Arc::new(bound);
        }
    }

    /// Returns the shards that failed to open, with the reason.
    pub fn failed_shards(&self) -> Vec<(ShardId, String)> {
        self.failed
            .read()
            .iter()
            .map(|(id, reason)| (*id, reason.clone()))
            .collect()
    }

    /// Returns the client this node reports copy events to the leader with.
    pub fn cluster_client(&self) -> Arc<ClusterClient> {
        self.cluster_client.clone()
    }

    /// Extends the primary lease to `lease` after `sent`, when the leader answered a
    /// heartbeat sent then.
    pub fn renew_lease(&self, sent: Instant, lease: Duration) {
        // Bounded: a lease is never longer than a minute, whatever an answer says.
        let Some(until) = sent.checked_add(lease.min(Duration::from_secs(60))) else {
            return;
        };
        let mut current = self.lease_until.lock();
        if current.is_none_or(|c| c < until) {
            *current = Some(until);
        }
    }

    /// Fails unless the primary lease holds: a node that has not heard from the leader for
    /// its lease may already have been replaced, so it acknowledges nothing as primary.
    pub fn check_lease(&self) -> Result<()> {
        let until = *self.lease_until.lock();
        match until {
            Some(until) if Instant::now() < until => Ok(()),
            Some(until) => Err(Error::LeaseExpired {
                elapsed_ms: Instant::now().duration_since(until).as_millis() as u64,
                lease_ms: 0,
            }),
            None => Err(Error::LeaseExpired {
                elapsed_ms: 0,
                lease_ms: 0,
            }),
        }
    }

    /// The last applied cluster state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// The bytes per second a recovery may fetch (`None`: no bound), from the cluster
    /// setting in the last applied state.
    pub fn recovery_rate(&self) -> Option<u64> {
        self.state
            .read()
            .settings
            .get(creek_common::state::RECOVERY_MAX_BYTES_PER_SEC)
            .and_then(|v| creek_common::state::parse_byte_size(v))
            .filter(|rate| *rate > 0)
    }

    /// The primary term of `shard_id` in the last applied state.
    pub fn primary_term_of(&self, shard_id: ShardId) -> Option<u64> {
        self.state
            .read()
            .shard_routing(shard_id.table, shard_id.shard)
            .map(|routing| routing.primary_term)
    }

    /// Follows the last applied state again: restarts recoveries that ended without the
    /// state moving on, reports again copies whose report was lost.
    pub fn reconcile(self: &Arc<Self>) {
        let _guard = self.applying.lock();
        let state = self.state.read().clone();
        if state.version > 0 {
            self.follow_routing(&state);
        }
    }

    /// Whether the cluster decommissioned this node and it holds nothing any more.
    pub fn drained(&self) -> bool {
        let me = NodeId(self.node_id().to_string());
        let state = self.state.read().clone();
        state.nodes.get(&me).is_some_and(|n| n.decommissioned)
            && state.shards_of_node(&me).is_empty()
            && self.recoveries.lock().is_empty()
    }

    /// Returns the node's id.
    pub fn node_id(&self) -> &str {
        &self.config.node_id
    }

    /// Returns the node's data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Returns the version of the cluster state last applied (0 before the first).
    pub fn state_version(&self) -> u64 {
        self.state_version.load(Ordering::Acquire)
    }

    /// Returns the transport address of node `name` in the last applied state.
    pub fn coordinator_address(&self, name: &str) -> Option<String> {
        self.state
            .read()
            .nodes
            .get(&NodeId(name.to_string()))
            .map(|n| n.address.clone())
    }

    /// Makes the node hold what `state` assigns to it, if `state` is newer than the last one
    /// applied: opens (creating if needed) its shards, takes changed table definitions, and
    /// deletes tables the cluster dropped. Returns the version the node now has.
    ///
    /// Only tables whose id the cluster has handed out (below `next_table_id`) are deleted for
    /// being absent, so a state that knows nothing of this node's tables cannot wipe them.
    ///
    /// A copy of another cluster or from a leader older than one heard from is refused. A
    /// table or shard that fails here is logged and skipped (retried with the next version);
    /// the version is installed regardless, so one bad shard never blocks later versions.
    pub fn apply_state(self: &Arc<Self>, state: &ClusterState) -> Result<u64> {
        let _guard = self.applying.lock();
        let current = self.state.read().clone();
        match current.accepts(state) {
            Err(reason) => return Err(Error::InvalidRequest(reason)),
            Ok(false) => {
                if state.leader_term > current.leader_term {
                    let mut newer_term = current.as_ref().clone();
                    newer_term.leader_term = state.leader_term;
                    *self.state.write() = Arc::new(newer_term);
                }
                return Ok(self.state_version());
            }
            Ok(true) => {}
        }
        let me = NodeId(self.node_id().to_string());
        for (table, _) in state.shards_of_node(&me) {
            let changed = self
                .table(table.id)
                .is_none_or(|held| held.as_ref() != table);
            if changed {
                if let Err(error) = self.update_table(table.clone()) {
                    tracing::error!(table_id = table.id.0, %error, "updating a table definition failed");
                }
            }
        }
        self.follow_routing(state);
        let held: Vec<TableId> = self.tables.read().keys().copied().collect();
        for table in held {
            if state.table_by_id(table).is_none() && table.0 < state.next_table_id {
                tracing::info!(table_id = table.0, "deleting the shards of a dropped table");
                if let Err(error) = self.drop_table(table) {
                    tracing::error!(table_id = table.0, %error, "deleting a dropped table failed");
                }
            }
        }
        *self.state.write() = Arc::new(state.clone());
        self.state_version.store(state.version, Ordering::Release);
        Ok(state.version)
    }

    fn tables_dir(&self) -> PathBuf {
        self.config.data_dir.join("tables")
    }

    fn table_dir(&self, table: TableId) -> PathBuf {
        self.tables_dir().join(table.0.to_string())
    }

    /// Where deleted copies wait for their files to be removed (emptied at start).
    fn trash_dir(&self) -> PathBuf {
        self.data_dir().join("trash")
    }

    /// The directory of one shard's copy on this node.
    pub fn shard_dir(&self, shard_id: ShardId) -> PathBuf {
        self.table_dir(shard_id.table)
            .join(shard_id.shard.to_string())
    }

    /// Stops serving a copy (its files stay); returns it if it was open. Queries that already
    /// hold it finish reading; it writes, refreshes and flushes nothing more (its directory
    /// may go to a new copy).
    pub fn close_shard(&self, shard_id: ShardId) -> Option<Arc<Shard>> {
        self.failed.write().remove(&shard_id);
        let closed = self.shards.write().remove(&shard_id);
        if let Some(shard) = &closed {
            shard.close();
        }
        closed
    }

    /// Deletes the files of a copy the cluster moved elsewhere, once nothing uses `closed`
    /// (its last holder, a query reading it, drops it): deleting them under a running query
    /// would fail it with a missing file instead of letting it finish. A copy of the same
    /// shard assigned to this node again meanwhile owns the directory, which then stays.
    pub(crate) fn delete_copy_when_unused(
        self: &Arc<Self>,
        shard_id: ShardId,
        closed: Option<Arc<Shard>>,
    ) {
        let node = self.clone();
        let delete = move || {
            let trash = node.trash_dir().join(format!(
                "{}-{}-{}",
                shard_id.table.0,
                shard_id.shard,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos())
            ));
            {
                // Holding the recoveries lock keeps a new recovery of the shard from starting
                // between the check and the move; the slow delete happens outside it.
                let recoveries = node.recoveries.lock();
                if recoveries.contains_key(&shard_id) || node.shards.read().contains_key(&shard_id)
                {
                    return;
                }
                if std::fs::create_dir_all(node.trash_dir()).is_err()
                    || std::fs::rename(node.shard_dir(shard_id), &trash).is_err()
                {
                    return;
                }
            }
            let _ = std::fs::remove_dir_all(&trash);
        };
        let Some(shard) = closed else {
            delete();
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            drop(shard);
            delete();
            return;
        };
        runtime.spawn(async move {
            // Long-running scans are bounded by their statement; a copy held longer than
            // this is deleted anyway (its holder then fails with a missing file).
            let deadline = Instant::now() + Duration::from_secs(600);
            while Arc::strong_count(&shard) > 1 && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            drop(shard);
            let _ = tokio::task::spawn_blocking(delete).await;
        });
    }

    /// Serves an opened copy (a recovered one).
    pub fn install_shard(&self, shard: Arc<Shard>) {
        // The table may have changed while the copy recovered.
        if let Some(table) = self.table(shard.id().table) {
            if table.version > shard.table().version {
                shard.set_table(table);
            }
        }
        self.failed.write().remove(&shard.id());
        self.shards.write().insert(shard.id(), shard);
    }

    /// Recovery progress of the copies this node is recovering.
    pub fn recovery_progress(&self) -> Vec<(ShardId, String, Arc<RecoveryProgress>)> {
        self.recoveries
            .lock()
            .iter()
            .map(|(id, task)| (*id, task.allocation_id.clone(), task.progress.clone()))
            .collect()
    }

    /// Creates or opens shards of `table`; already open shards are left as they are. A shard
    /// that cannot be opened is recorded as failed (see [`DataNode::failed_shards`]) and the
    /// others are opened regardless.
    pub fn open_shards(&self, table: TableSchema, shard_numbers: &[u32]) {
        let table_dir = self.table_dir(table.id);
        let table = Arc::new(table);
        if let Err(error) = write_table_file(&table_dir, &table) {
            tracing::error!(table_id = table.id.0, %error, "writing the table definition failed");
            for number in shard_numbers {
                let shard_id = ShardId {
                    table: table.id,
                    shard: *number,
                };
                self.failed.write().insert(shard_id, error.to_string());
            }
            return;
        }
        self.tables.write().insert(table.id, table.clone());
        for number in shard_numbers {
            let shard_id = ShardId {
                table: table.id,
                shard: *number,
            };
            let open = self.shards.read().get(&shard_id).cloned();
            if let Some(shard) = open {
                if shard.failure().is_none() {
                    continue;
                }
                // A failed shard is opened afresh, replaying its translog.
                self.shards.write().remove(&shard_id);
                drop(shard);
            }
            match Shard::open(shard_id, &table_dir.join(number.to_string()), table.clone()) {
                Ok(shard) => {
                    self.failed.write().remove(&shard_id);
                    self.shards.write().insert(shard_id, Arc::new(shard));
                }
                Err(error) => {
                    tracing::error!(%shard_id, %error, "opening a shard failed; it serves nothing");
                    self.failed.write().insert(shard_id, error.to_string());
                }
            }
        }
    }

    /// Replaces a table's definition on this node and in its shards.
    pub fn update_table(&self, table: TableSchema) -> Result<()> {
        let table = Arc::new(table);
        write_table_file(&self.table_dir(table.id), &table)?;
        self.tables.write().insert(table.id, table.clone());
        for shard in self.shards.read().values() {
            if shard.id().table == table.id {
                shard.set_table(table.clone());
            }
        }
        Ok(())
    }

    /// Closes and deletes every shard of a table.
    pub fn drop_table(&self, table: TableId) -> Result<()> {
        self.tables.write().remove(&table);
        self.shards.write().retain(|id, _| id.table != table);
        let dir = self.table_dir(table);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|source| Error::Io {
                shard_id: ShardId { table, shard: 0 },
                source,
            })?;
        }
        Ok(())
    }

    /// Returns the node's definition of a table.
    pub fn table(&self, table: TableId) -> Option<Arc<TableSchema>> {
        self.tables.read().get(&table).cloned()
    }

    /// Returns an open shard.
    pub fn shard(&self, shard_id: ShardId) -> Result<Arc<Shard>> {
        self.shards
            .read()
            .get(&shard_id)
            .cloned()
            .ok_or(Error::ShardNotFound { shard_id })
    }

    /// Returns every open shard.
    pub fn shards(&self) -> Vec<Arc<Shard>> {
        self.shards.read().values().cloned().collect()
    }

    /// Refreshes shards whose refresh interval has passed, flushes those due a flush and
    /// syncs async translogs.
    pub fn refresh_due_shards(&self) {
        for shard in self.shards() {
            let interval = shard.table().refresh_interval_ms();
            if let Err(error) = shard
                .refresh_if_due(interval)
                .and_then(|_| shard.flush_if_due())
                .and_then(|_| shard.sync_translog())
            {
                tracing::warn!(shard_id = %shard.id(), %error, "periodic refresh failed");
            }
        }
    }

    /// Serves Flight to clients on `listener` until `shutdown` resolves: `DoGet` of the tickets
    /// coordinators sign for this node (see `flight`), nothing else.
    pub async fn serve_client_flight(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<(), tonic::transport::Error> {
        let flight_service = FlightServiceServer::new(FlightFragmentService::for_clients(self))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        tonic::transport::Server::builder()
            .add_service(flight_service)
            .serve_with_incoming_shutdown(
                creek_proto::transport::nodelay_incoming(listener),
                shutdown,
            )
            .await
    }

    /// Serves `ShardService` and Flight on `listener` until `shutdown` resolves, and runs the
    /// periodic refresh meanwhile.
    pub async fn serve(
        self: Arc<Self>,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::result::Result<(), tonic::transport::Error> {
        let refresher = {
            let node = self.clone();
            tokio::task::spawn(async move {
                let mut ticker = tokio::time::interval(Duration::from_millis(100));
                loop {
                    ticker.tick().await;
                    let node = node.clone();
                    let _ = tokio::task::spawn_blocking(move || node.refresh_due_shards()).await;
                }
            })
        };
        let shard_service = ShardServiceServer::new(ShardServiceImpl::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let flight_service = FlightServiceServer::new(FlightFragmentService::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let node_service = NodeServiceServer::new(NodeServiceImpl::new(self.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        // Only nodes that know the cluster secret may write, recover, publish or run plans;
        // clients read through `serve_client_flight` with signed tickets instead.
        let result = tonic::transport::Server::builder()
            .layer(creek_proto::cluster_auth::server_layer())
            .add_service(shard_service)
            .add_service(node_service)
            .add_service(flight_service)
            .serve_with_incoming_shutdown(
                creek_proto::transport::nodelay_incoming(listener),
                shutdown,
            )
            .await;
        refresher.abort();
        // Make everything acknowledged durable in the index before the process exits, so
        // the next start replays no translog.
        for shard in self.shards() {
            if let Err(error) = shard.flush() {
                tracing::warn!(shard_id = %shard.id(), %error, "final flush failed");
            }
        }
        result
    }

    /// Returns the address a listener is bound to, for logs.
    pub fn describe_listener(listener: &tokio::net::TcpListener) -> Option<SocketAddr> {
        listener.local_addr().ok()
    }
}

fn write_table_file(table_dir: &Path, table: &TableSchema) -> Result<()> {
    let io_err = |source| Error::Io {
        shard_id: ShardId {
            table: table.id,
            shard: 0,
        },
        source,
    };
    std::fs::create_dir_all(table_dir).map_err(io_err)?;
    crate::durable_file::write(
        &table_dir.join("table.json"),
        &serde_json::to_vec_pretty(table).expect("table serialises"),
    )
    .map_err(io_err)
}
