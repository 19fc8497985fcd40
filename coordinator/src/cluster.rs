//! The coordinator's view of the data nodes: gRPC and Flight clients per node (addresses come
//! from cluster state), the DDL entry points that commit cluster-state changes, and the
//! write/refresh/get calls DML makes.
//!
//! This is the only module that opens connections to data nodes for table data. Errors coming
//! back keep the data node's [`ErrorCode`](creek_common::ErrorCode) (see `creek_proto::status`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use creek_common::error::ErrorCode;
use creek_common::schema::{ColumnDef, TableSchema, ViewDef};
use creek_common::state::NodeRole;
use creek_common::{NodeId, TableId};
use creek_proto::arrow_flight::flight_service_client::FlightServiceClient;
use creek_proto::cluster_auth::SignedChannel;
use creek_proto::ipc::{batch_from_ipc, batch_to_ipc};
use creek_proto::status::error_from_status;
use creek_proto::v1::cluster_service_client::ClusterServiceClient;
use creek_proto::v1::node_service_client::NodeServiceClient;
use creek_proto::v1::shard_service_client::ShardServiceClient;
use creek_proto::v1::{
    ExportShardRequest, GetRequest, JobsRequest, KillJobsRequest, NodeStatsRequest,
    NodeStatsResponse, RefreshRequest, RowStatus, ShardStats, ShardStatsRequest, WriteMode,
    WriteRequest,
};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::RwLock;

use crate::catalog::commands::Command;
use crate::catalog::{Catalog, CopyState};
use crate::consensus::{peer_channel, Consensus};
use crate::error::{Error, Result};
use crate::jobs::{JobInfo, Jobs};
use crate::memory::QueryMemory;

mod session_writes;

pub use session_writes::{SessionWrites, Visibility};

/// How long a write whose primary is unavailable is retried before the client gets the
/// error: long enough for a dead node to be noticed (the node timeout) and a replica
/// promoted.
pub const WRITE_RETRY_DEADLINE: Duration = Duration::from_secs(30);

/// How long `CREATE TABLE` waits for the new table's primaries to start.
const PRIMARY_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The table setting naming how many active copies a write needs.
pub const WAIT_FOR_ACTIVE_SHARDS: &str = "write.wait_for_active_shards";

/// Largest gRPC message exchanged with a data node.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Clients of one node.
#[derive(Clone)]
pub struct NodeClient {
    /// The node's transport address (`host:port`).
    pub address: String,
    /// Shard lifecycle and writes.
    pub shards: ShardServiceClient<SignedChannel>,
    /// Plan fragments.
    pub flight: FlightServiceClient<SignedChannel>,
    /// Node figures.
    pub node: NodeServiceClient<SignedChannel>,
    /// A coordinator's cluster service (its running statements).
    pub cluster: ClusterServiceClient<SignedChannel>,
}

impl NodeClient {
    fn connect(address: &str) -> Result<NodeClient> {
        let channel = peer_channel(address).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidParameterValue,
                format!("bad node address {address}"),
            )
        })?;
        Ok(NodeClient {
            address: address.to_string(),
            shards: ShardServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            flight: FlightServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            node: NodeServiceClient::new(channel.clone()),
            cluster: ClusterServiceClient::new(channel),
        })
    }
}

/// Like [`status_error`], but a write whose connection broke without an answer from Creek
/// (the primary's process died mid-request) is `Unavailable`: its outcome is unknown, and the
/// retry with the same operation id settles it.
fn write_status_error(status: tonic::Status) -> Error {
    let from_creek = status
        .metadata()
        .contains_key(creek_proto::status::ERROR_CODE_HEADER);
    let broken = matches!(
        status.code(),
        tonic::Code::Unknown | tonic::Code::Cancelled | tonic::Code::Aborted
    );
    if !from_creek && broken {
        return Error::new(
            ErrorCode::Unavailable,
            format!("the primary did not answer: {}", status.message()),
        );
    }
    status_error(status)
}

/// Cluster membership and data-node access, shared by every session of a coordinator.
pub struct Cluster {
    consensus: Arc<Consensus>,
    clients: RwLock<HashMap<NodeId, NodeClient>>,
    jobs: Arc<Jobs>,
    memory: QueryMemory,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.node_id())
    }
}

fn status_error(status: tonic::Status) -> Error {
    Error::Coded(error_from_status(&status))
}

impl Cluster {
    /// Creates the cluster view of a coordinator taking part in `consensus`.
    pub fn new(consensus: Arc<Consensus>, jobs: Arc<Jobs>, memory: QueryMemory) -> Cluster {
        Cluster {
            consensus,
            clients: RwLock::new(HashMap::new()),
            jobs,
            memory,
        }
    }

    /// The memory limits this coordinator's queries run under.
    pub fn memory(&self) -> &QueryMemory {
        &self.memory
    }

    /// The statements running on this coordinator.
    pub fn jobs(&self) -> &Arc<Jobs> {
        &self.jobs
    }

    /// The statements running on every live coordinator; one that does not answer in time
    /// is left out (as in `sys.nodes`).
    pub async fn cluster_jobs(&self) -> Vec<JobInfo> {
        self.gather_jobs(false).await
    }

    /// The ended statements every live coordinator keeps (`sys.jobs_log`), by end time.
    pub async fn cluster_jobs_log(&self) -> Vec<JobInfo> {
        let mut log = self.gather_jobs(true).await;
        log.sort_by(|a, b| (a.ended_micros, &a.id).cmp(&(b.ended_micros, &b.id)));
        log
    }

    async fn gather_jobs(&self, log: bool) -> Vec<JobInfo> {
        let calls = self
            .other_coordinators()
            .into_iter()
            .map(|mut client| async move {
                let call = client.cluster.jobs(JobsRequest { log });
                let response = tokio::time::timeout(Duration::from_secs(2), call)
                    .await
                    .ok()?
                    .ok()?;
                serde_json::from_slice::<Vec<JobInfo>>(&response.into_inner().jobs_json).ok()
            });
        let mut jobs = if log {
            self.jobs.log()
        } else {
            self.jobs.list()
        };
        for remote in futures::future::join_all(calls).await.into_iter().flatten() {
            jobs.extend(remote);
        }
        jobs
    }

    /// Clients of the live coordinators other than this one.
    fn other_coordinators(&self) -> Vec<NodeClient> {
        let state = self.catalog().state();
        let own = self.node_id();
        state
            .nodes
            .values()
            .filter(|n| n.alive && n.role == NodeRole::Coordinator && &n.id != own)
            .filter_map(|n| self.client(&n.id).ok())
            .collect()
    }

    /// Cancels job `id` (`None`: every job but `except`, KILL ALL) on every live coordinator;
    /// how many were cancelled. A coordinator that does not answer within 2 s is skipped.
    pub async fn kill_jobs(&self, id: Option<&str>, except: &str) -> u64 {
        let request = KillJobsRequest {
            id: id.unwrap_or_default().to_string(),
            all: id.is_none(),
            except_id: except.to_string(),
        };
        let calls = self.other_coordinators().into_iter().map(|mut client| {
            let request = request.clone();
            async move {
                let call = client.cluster.kill_jobs(request);
                let response = tokio::time::timeout(Duration::from_secs(2), call)
                    .await
                    .ok()?
                    .ok()?;
                Some(response.into_inner().killed)
            }
        });
        let local = match id {
            Some(id) => u64::from(self.jobs.kill(id)),
            None => self.jobs.kill_all(except),
        };
        let remote: u64 = futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .sum();
        local + remote
    }

    /// Returns the coordinator's own id.
    pub fn node_id(&self) -> &NodeId {
        self.consensus.node_id()
    }

    /// Returns the cluster state this coordinator knows.
    pub fn catalog(&self) -> &Catalog {
        self.consensus.catalog()
    }

    /// Returns this coordinator's consensus handle (leader, voters).
    pub fn consensus(&self) -> &Arc<Consensus> {
        &self.consensus
    }

    /// Returns clients of any node (coordinator or data node) in cluster state, alive or not.
    pub fn client(&self, node: &NodeId) -> Result<NodeClient> {
        let state = self.catalog().state();
        let info = state.nodes.get(node).ok_or_else(|| {
            Error::new(ErrorCode::Unavailable, format!("node {node} is not known"))
        })?;
        if let Some(client) = self.clients.read().get(node) {
            if client.address == info.address {
                return Ok(client.clone());
            }
        }
        let client = NodeClient::connect(&info.address)?;
        self.clients.write().insert(node.clone(), client.clone());
        Ok(client)
    }

    /// Returns the live data nodes.
    pub fn data_nodes(&self) -> Vec<(NodeId, NodeClient)> {
        let state = self.catalog().state();
        state
            .nodes
            .values()
            .filter(|n| n.role == NodeRole::Data && n.alive)
            .filter_map(|n| Some((n.id.clone(), self.client(&n.id).ok()?)))
            .collect()
    }

    /// Returns the client of data node `node`, failing if it is gone.
    pub fn node(&self, node: &NodeId) -> Result<NodeClient> {
        if !self.catalog().is_alive(node) {
            return Err(Error::new(
                ErrorCode::Unavailable,
                format!("data node {node} is not available"),
            ));
        }
        self.client(node)
    }

    /// Returns the client of the node holding the primary of `shard` of `table`: writes,
    /// real-time gets and key lookups go there.
    pub fn node_for_shard(&self, table: TableId, shard: u32) -> Result<NodeClient> {
        let routing = self.catalog().routing(table);
        let unavailable = |reason: String| {
            Error::new(
                ErrorCode::Unavailable,
                format!("shard {shard} of table {table} is unavailable: {reason}"),
            )
        };
        let primary = routing
            .get(shard as usize)
            .and_then(|r| r.primary())
            .ok_or_else(|| unavailable("it has no primary".to_string()))?;
        self.node(&primary.node)
            .map_err(|e| unavailable(e.client_message()))
    }

    /// Returns the node a scan reads `shard` of `table` from: one of its started copies on
    /// live nodes, picked by `spread` so that shards (and successive queries) spread over the
    /// copies and replicas add read capacity.
    pub fn read_node_for_shard(&self, table: TableId, shard: u32, spread: usize) -> Result<NodeId> {
        let state = self.catalog().state();
        let routing = state.shard_routing(table, shard).ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                format!("shard {shard} of table {table} does not exist"),
            )
        })?;
        let mut readable: Vec<&NodeId> = routing
            .copies
            .iter()
            .filter(|c| c.state == CopyState::Started && state.is_alive(&c.node))
            .map(|c| &c.node)
            .collect();
        readable.sort();
        if readable.is_empty() {
            let reason = match routing.primary() {
                Some(primary) => format!("data node {} is not available", primary.node),
                None => "it has no primary".to_string(),
            };
            return Err(Error::new(
                ErrorCode::Unavailable,
                format!("shard {shard} of table {table} is unavailable: {reason}"),
            ));
        }
        Ok(readable[(shard as usize + spread) % readable.len()].clone())
    }

    /// Commits `command`; returns whether it changed anything.
    async fn change(&self, command: Command) -> Result<bool> {
        self.consensus
            .propose(command)
            .await?
            .outcome
            .map_err(Error::Coded)
    }

    /// Creates a table: the leader assigns its id and places its shards over the data nodes;
    /// answered once committed and acknowledged by the nodes. `false` if it existed already.
    pub async fn create_table(&self, table: TableSchema, if_not_exists: bool) -> Result<bool> {
        table.validate()?;
        let (schema, name) = (table.schema_name.clone(), table.name.clone());
        let created = self
            .change(Command::CreateTable {
                table,
                if_not_exists,
            })
            .await?;
        if created {
            self.wait_for_primaries(&schema, &name).await?;
        }
        Ok(created)
    }

    /// Waits until every primary of a new table has started (its node created it and said
    /// so), so that the statements after `CREATE TABLE` can read it.
    async fn wait_for_primaries(&self, schema: &str, name: &str) -> Result<()> {
        self.wait_for_started(schema, name, None, "table").await
    }

    /// Waits until the primaries of `shards` (all of the table's with `None`) have started.
    async fn wait_for_started(
        &self,
        schema: &str,
        name: &str,
        shards: Option<&[u32]>,
        what: &str,
    ) -> Result<()> {
        let deadline = tokio::time::Instant::now() + PRIMARY_START_TIMEOUT;
        loop {
            let state = self.catalog().state();
            let Some(table) = state.tables.get(&crate::catalog::qualified(schema, name)) else {
                return Ok(());
            };
            let routing = state.routing.get(&table.id.0).cloned().unwrap_or_default();
            let pending = routing
                .iter()
                .enumerate()
                .filter(|(shard, _)| shards.is_none_or(|s| s.contains(&(*shard as u32))))
                .filter(|(_, r)| {
                    !r.dropped && r.primary().is_none_or(|p| p.state != CopyState::Started)
                })
                .count();
            if pending == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                return Err(Error::new(
                    ErrorCode::Unavailable,
                    format!(
                        "{what} of {name} was created, but {pending} of its primaries did not \
                         start within {}s",
                        PRIMARY_START_TIMEOUT.as_secs()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Creates the partitions of `table` for `values` that do not exist yet and waits for
    /// their primaries; returns the table's definition with them.
    pub async fn create_partitions(
        &self,
        table: &TableSchema,
        values: Vec<Vec<Option<String>>>,
    ) -> Result<TableSchema> {
        self.change(Command::CreatePartitions {
            schema: table.schema_name.clone(),
            name: table.name.clone(),
            values: values.clone(),
        })
        .await?;
        let created = self
            .catalog()
            .existing_table(&table.schema_name, &table.name)?;
        // Only the new partitions' primaries: a RED shard elsewhere must not hold up writes.
        let shards: Vec<u32> = created
            .partitions
            .iter()
            .filter(|p| values.contains(&p.values))
            .flat_map(|p| p.shards())
            .collect();
        self.wait_for_started(
            &table.schema_name,
            &table.name,
            Some(&shards),
            "a partition",
        )
        .await?;
        self.catalog()
            .existing_table(&table.schema_name, &table.name)
    }

    /// Drops partitions of a table by ident (their shards and rows).
    pub async fn drop_partitions(&self, table: &TableSchema, idents: Vec<String>) -> Result<()> {
        self.change(Command::DropPartitions {
            schema: table.schema_name.clone(),
            name: table.name.clone(),
            idents,
        })
        .await
        .map(|_| ())
    }

    /// Sets (`Some`) or resets (`None`) allocation settings of one partition.
    pub async fn set_partition_settings(
        &self,
        table: &TableSchema,
        ident: String,
        settings: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.change(Command::SetPartitionSettings {
            schema: table.schema_name.clone(),
            name: table.name.clone(),
            ident,
            settings,
        })
        .await
        .map(|_| ())
    }

    /// Sets (`Some`) or resets (`None`) settings of a table; copies move, appear or go as
    /// the new settings ask, in the background.
    pub async fn set_table_settings(
        &self,
        schema: &str,
        name: &str,
        settings: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.change(Command::SetTableSettings {
            schema: schema.to_string(),
            name: name.to_string(),
            settings,
        })
        .await
        .map(|_| ())
    }

    /// Sets (`Some`) or resets (`None`) cluster settings.
    pub async fn set_cluster_settings(
        &self,
        settings: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.change(Command::SetClusterSettings { settings })
            .await
            .map(|_| ())
    }

    /// Drains data node `node`: its copies move elsewhere, then it stops.
    pub async fn decommission(&self, node: &str) -> Result<()> {
        self.change(Command::Decommission {
            node: NodeId(node.to_string()),
        })
        .await
        .map(|_| ())
    }

    /// Merges widened object column types (new dynamic keys) into `table`'s definition;
    /// returns the definition with them.
    pub async fn extend_objects(
        &self,
        table: &TableSchema,
        columns: Vec<(String, creek_common::types::ColumnType)>,
    ) -> Result<TableSchema> {
        self.change(Command::ExtendObjects {
            schema: table.schema_name.clone(),
            name: table.name.clone(),
            columns,
        })
        .await?;
        self.catalog()
            .existing_table(&table.schema_name, &table.name)
    }

    /// Adds a column to a table.
    pub async fn add_column(
        &self,
        table: &TableSchema,
        column: ColumnDef,
        if_not_exists: bool,
    ) -> Result<()> {
        self.change(Command::AddColumn {
            schema: table.schema_name.clone(),
            name: table.name.clone(),
            column,
            if_not_exists,
        })
        .await
        .map(|_| ())
    }

    /// Drops a table; data nodes delete its shards when they apply the new state.
    pub async fn drop_table(&self, schema: &str, name: &str, if_exists: bool) -> Result<()> {
        self.change(Command::DropTable {
            schema: schema.to_string(),
            name: name.to_string(),
            if_exists,
        })
        .await
        .map(|_| ())
    }

    /// Declares an index on a table.
    pub async fn create_index(
        &self,
        schema: &str,
        table: &str,
        index: creek_common::schema::IndexDef,
        if_not_exists: bool,
    ) -> Result<()> {
        self.change(Command::CreateIndex {
            schema: schema.to_string(),
            table: table.to_string(),
            index,
            if_not_exists,
        })
        .await
        .map(|_| ())
    }

    /// Drops a declared index.
    pub async fn drop_index(&self, schema: &str, name: &str, if_exists: bool) -> Result<()> {
        self.change(Command::DropIndex {
            schema: schema.to_string(),
            name: name.to_string(),
            if_exists,
        })
        .await
        .map(|_| ())
    }

    /// Creates or replaces a view.
    pub async fn create_view(&self, view: ViewDef, or_replace: bool) -> Result<()> {
        self.change(Command::CreateView { view, or_replace })
            .await
            .map(|_| ())
    }

    /// Defines an analyzer.
    pub async fn create_analyzer(
        &self,
        name: String,
        definition: creek_common::fulltext::AnalyzerDef,
    ) -> Result<()> {
        self.change(Command::CreateAnalyzer {
            name,
            definition: Box::new(definition),
        })
        .await
        .map(|_| ())
    }

    /// Drops an analyzer.
    pub async fn drop_analyzer(&self, name: String) -> Result<()> {
        self.change(Command::DropAnalyzer { name })
            .await
            .map(|_| ())
    }

    /// Drops a view.
    pub async fn drop_view(&self, schema: &str, name: &str, if_exists: bool) -> Result<()> {
        self.change(Command::DropView {
            schema: schema.to_string(),
            name: name.to_string(),
            if_exists,
        })
        .await
        .map(|_| ())
    }

    /// Asks every node in cluster state for its memory and disk figures; a node that does not
    /// answer is left out.
    pub async fn node_stats(&self) -> HashMap<NodeId, NodeStatsResponse> {
        let state = self.catalog().state();
        let calls = state.nodes.values().filter(|n| n.alive).filter_map(|n| {
            let mut client = self.client(&n.id).ok()?;
            let id = n.id.clone();
            Some(async move {
                let call = client.node.node_stats(NodeStatsRequest {});
                match tokio::time::timeout(std::time::Duration::from_secs(2), call).await {
                    Ok(Ok(response)) => Some((id, response.into_inner())),
                    _ => None,
                }
            })
        });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Has the node of shard `shard`'s primary write its visible rows (`columns` of them) as
    /// JSON lines to `uri`; returns the rows and bytes written.
    pub async fn export_shard(
        &self,
        table: &TableSchema,
        shard: u32,
        columns: &[String],
        uri: &str,
        s3: &BTreeMap<String, String>,
    ) -> Result<(u64, u64)> {
        let routing = self.catalog().routing(table.id);
        let state = self.catalog().state();
        let primary = routing
            .get(shard as usize)
            .and_then(|copies| copies.primary())
            .filter(|copy| copy.state == CopyState::Started && state.is_alive(&copy.node))
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Unavailable,
                    format!("shard {shard} of {} has no started primary", table.name),
                )
            })?;
        let mut client = self.client(&primary.node)?;
        let response = client
            .shards
            .export_shard(ExportShardRequest {
                table_id: table.id.0,
                shard,
                columns: columns.to_vec(),
                uri: uri.to_string(),
                s3: s3.clone().into_iter().collect(),
            })
            .await
            .map_err(status_error)?
            .into_inner();
        Ok((response.rows, response.bytes))
    }

    /// Writes rows (with an `_id` column) to one shard and returns per-row statuses.
    pub async fn write_rows(
        &self,
        table: &TableSchema,
        shard: u32,
        mode: WriteMode,
        rows: &RecordBatch,
        visibility: Visibility<'_>,
    ) -> Result<Vec<RowStatus>> {
        let rows_ipc =
            batch_to_ipc(rows).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        self.write(table, shard, mode, rows_ipc, Vec::new(), visibility)
            .await
    }

    /// Replaces rows (with an `_id` column) of one shard, each only if its document still has
    /// the version it was read at (`versions`, by row); returns per-row statuses
    /// (`VersionConflict` for a row changed since, `NotFound` for one deleted since).
    pub async fn update_rows_if_version(
        &self,
        table: &TableSchema,
        shard: u32,
        rows: &RecordBatch,
        versions: &[(u64, u64)],
        visibility: Visibility<'_>,
    ) -> Result<Vec<RowStatus>> {
        let rows_ipc =
            batch_to_ipc(rows).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        self.write_request(
            table,
            shard,
            visibility.session,
            WriteRequest {
                mode: WriteMode::UpdateIfVersion as i32,
                rows_ipc,
                refresh: visibility.refresh,
                expected_seq_nos: versions.iter().map(|v| v.0).collect(),
                expected_primary_terms: versions.iter().map(|v| v.1).collect(),
                ..WriteRequest::default()
            },
        )
        .await
    }

    /// Deletes rows by id from one shard, each only if its document still has the version it
    /// was read at; returns per-id statuses.
    pub async fn delete_ids_if_version(
        &self,
        table: &TableSchema,
        shard: u32,
        ids: Vec<String>,
        versions: &[(u64, u64)],
        visibility: Visibility<'_>,
    ) -> Result<Vec<RowStatus>> {
        self.write_request(
            table,
            shard,
            visibility.session,
            WriteRequest {
                mode: WriteMode::DeleteIfVersion as i32,
                delete_ids: ids,
                refresh: visibility.refresh,
                expected_seq_nos: versions.iter().map(|v| v.0).collect(),
                expected_primary_terms: versions.iter().map(|v| v.1).collect(),
                ..WriteRequest::default()
            },
        )
        .await
    }

    async fn write(
        &self,
        table: &TableSchema,
        shard: u32,
        mode: WriteMode,
        rows_ipc: Vec<u8>,
        delete_ids: Vec<String>,
        visibility: Visibility<'_>,
    ) -> Result<Vec<RowStatus>> {
        self.write_request(
            table,
            shard,
            visibility.session,
            WriteRequest {
                mode: mode as i32,
                rows_ipc,
                delete_ids,
                refresh: visibility.refresh,
                ..WriteRequest::default()
            },
        )
        .await
    }

    /// Sends one write to the shard's primary; the table, shard, schema version and an
    /// operation id are filled in.
    ///
    /// A write that fails because its primary is unavailable (its node died, it is being
    /// replaced, it lost its lease) is retried with the same operation id against whatever
    /// the latest state says is the primary, until [`WRITE_RETRY_DEADLINE`]: the client sees
    /// a pause, and a copy that already applied the operation answers with its first answer
    /// instead of applying it twice.
    async fn write_request(
        &self,
        table: &TableSchema,
        shard: u32,
        session: &SessionWrites,
        request: WriteRequest,
    ) -> Result<Vec<RowStatus>> {
        let request = WriteRequest {
            table_id: table.id.0,
            shard,
            schema_version: table.version,
            operation_id: uuid::Uuid::new_v4().to_string(),
            ..request
        };
        let deadline = tokio::time::Instant::now() + WRITE_RETRY_DEADLINE;
        let mut backoff = Duration::from_millis(50);
        let response = loop {
            let attempt = async {
                self.check_active_copies(table, shard)?;
                let mut client = self.node_for_shard(table.id, shard)?;
                client
                    .shards
                    .write(request.clone())
                    .await
                    .map_err(write_status_error)
            };
            match attempt.await {
                Ok(response) => break response.into_inner(),
                Err(error)
                    if error.code() == ErrorCode::Unavailable
                        && tokio::time::Instant::now() + backoff < deadline =>
                {
                    tracing::debug!(table = %table.name, shard, %error, "write failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_millis(1000));
                }
                Err(error) => return Err(error),
            }
        };
        // Recorded even if some rows were refused: the session's next scans wait for what
        // the primary had applied when it answered, never less.
        session.record(table.id, shard, response.max_seq_no);
        response
            .statuses
            .into_iter()
            .map(|s| {
                RowStatus::try_from(s).map_err(|_| {
                    Error::new(
                        ErrorCode::Internal,
                        format!("unknown row status {s} from a data node"),
                    )
                })
            })
            .collect()
    }

    /// Fails (retryably) unless `shard` of `table` has the started copies on live nodes that
    /// its `write.wait_for_active_shards` asks for (default 1: the primary).
    fn check_active_copies(&self, table: &TableSchema, shard: u32) -> Result<()> {
        let Some(setting) = table.settings.get(WAIT_FOR_ACTIVE_SHARDS) else {
            return Ok(());
        };
        let state = self.catalog().state();
        let wanted = if setting.eq_ignore_ascii_case("all") {
            crate::catalog::commands::wanted_copies_of_shard(&state, table, shard)
        } else {
            setting.parse::<usize>().unwrap_or(1)
        };
        let active = state
            .shard_routing(table.id, shard)
            .map(|routing| {
                routing
                    .copies
                    .iter()
                    .filter(|c| c.state == CopyState::Started && state.is_alive(&c.node))
                    .count()
            })
            .unwrap_or(0);
        if active >= wanted {
            return Ok(());
        }
        Err(Error::new(
            ErrorCode::Unavailable,
            format!(
                "shard {shard} of {} has {active} active copies, fewer than the {wanted} that                  write.wait_for_active_shards = '{setting}' asks for",
                table.name
            ),
        ))
    }

    /// Refreshes every started copy of every shard of `table`, so scans of any copy see what
    /// was acknowledged before.
    pub async fn refresh_table(&self, table: &TableSchema) -> Result<()> {
        // A copy that moved meanwhile is not on its old node any more: refreshed again with
        // the newer state (its replacement refreshed when it finished recovering).
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.refresh_copies(table).await {
                Err(error) if error.code() == ErrorCode::Unavailable && attempt < 15 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn refresh_copies(&self, table: &TableSchema) -> Result<()> {
        let routing = self.catalog().routing(table.id);
        let mut by_node: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        let mut recovering: Vec<(NodeId, u32)> = Vec::new();
        let state = self.catalog().state();
        for (shard, copies) in routing.iter().enumerate() {
            for copy in &copies.copies {
                // A copy on a gone node serves no reads until it has been recovered again.
                if !state.is_alive(&copy.node) {
                    continue;
                }
                match copy.state {
                    CopyState::Started => by_node
                        .entry(copy.node.clone())
                        .or_default()
                        .push(shard as u32),
                    CopyState::Initializing => recovering.push((copy.node.clone(), shard as u32)),
                }
            }
        }
        for (node, shards) in by_node {
            let mut client = self.node(&node)?;
            client
                .shards
                .refresh(RefreshRequest {
                    table_id: table.id.0,
                    shards,
                })
                .await
                .map_err(status_error)?;
        }
        // A recovering copy may start serving any moment; refreshed too if it already holds
        // operations (one still copying files refreshes when it has them all).
        for (node, shard) in recovering {
            if let Ok(mut client) = self.node(&node) {
                let request = RefreshRequest {
                    table_id: table.id.0,
                    shards: vec![shard],
                };
                if let Err(status) = client.shards.refresh(request).await {
                    tracing::debug!(%node, shard, %status, "refreshing a recovering copy failed");
                }
            }
        }
        Ok(())
    }

    /// Looks rows up by id in real time; returns a batch with `_id` plus `columns`.
    pub async fn get_rows(
        &self,
        table: &TableSchema,
        shard: u32,
        ids: Vec<String>,
        columns: Vec<String>,
    ) -> Result<RecordBatch> {
        let mut client = self.node_for_shard(table.id, shard)?;
        let response = client
            .shards
            .get(GetRequest {
                table_id: table.id.0,
                shard,
                ids,
                columns,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        batch_from_ipc(&response.rows_ipc)
            .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))
    }

    /// Collects shard statistics from every data node.
    pub async fn shard_stats(&self) -> Vec<(NodeId, ShardStats)> {
        // Asked in parallel and bounded: a stalled node leaves its copies without figures
        // rather than hanging the query.
        let calls = self
            .data_nodes()
            .into_iter()
            .map(|(node, mut client)| async move {
                let call = client.shards.shard_stats(ShardStatsRequest {});
                match tokio::time::timeout(Duration::from_secs(2), call).await {
                    Ok(Ok(response)) => response
                        .into_inner()
                        .shards
                        .into_iter()
                        .map(|s| (node.clone(), s))
                        .collect(),
                    Ok(Err(status)) => {
                        tracing::warn!(%node, %status, "shard stats unavailable");
                        Vec::new()
                    }
                    Err(_) => {
                        tracing::warn!(%node, "shard stats timed out");
                        Vec::new()
                    }
                }
            });
        futures::future::join_all(calls)
            .await
            .into_iter()
            .flatten()
            .collect()
    }
}

/// Shared handle.
pub type ClusterRef = Arc<Cluster>;
