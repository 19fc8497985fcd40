//! The coordinator's view of the data nodes: gRPC and Flight clients per node, shard
//! allocation for new tables, and the write/refresh/get calls DDL and DML make.
//!
//! This is the only module that opens connections to data nodes. Errors coming back keep the
//! data node's [`ErrorCode`](creek_common::ErrorCode) (see `creek_proto::status`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::TableSchema;
use creek_common::{NodeId, TableId};
use creek_proto::arrow_flight::flight_service_client::FlightServiceClient;
use creek_proto::ipc::{batch_from_ipc, batch_to_ipc};
use creek_proto::status::error_from_status;
use creek_proto::v1::shard_service_client::ShardServiceClient;
use creek_proto::v1::{
    CreateShardsRequest, DropTableRequest, GetRequest, RefreshRequest, RowStatus, ShardStats,
    ShardStatsRequest, UpdateTableRequest, WriteMode, WriteRequest,
};
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::RwLock;
use tonic::transport::{Channel, Endpoint};

use crate::catalog::Catalog;
use crate::error::{Error, Result};

/// Largest gRPC message exchanged with a data node.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

/// Clients of one data node.
#[derive(Clone)]
pub struct NodeClient {
    /// The node's transport address (`host:port`).
    pub address: String,
    /// Shard lifecycle and writes.
    pub shards: ShardServiceClient<Channel>,
    /// Plan fragments.
    pub flight: FlightServiceClient<Channel>,
}

/// Cluster membership and data-node access, shared by every session of a coordinator.
pub struct Cluster {
    node_id: NodeId,
    catalog: Catalog,
    nodes: RwLock<BTreeMap<NodeId, NodeClient>>,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cluster({})", self.node_id)
    }
}

fn status_error(status: tonic::Status) -> Error {
    Error::Coded(error_from_status(&status))
}

impl Cluster {
    /// Creates the cluster view of coordinator `node_id` over `catalog`.
    pub fn new(node_id: NodeId, catalog: Catalog) -> Cluster {
        Cluster {
            node_id,
            catalog,
            nodes: RwLock::new(BTreeMap::new()),
        }
    }

    /// Returns the coordinator's own id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// Returns the cluster state store.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Registers a data node reachable at `address`; connections are made lazily.
    pub fn add_data_node(&self, node_id: NodeId, address: &str) -> Result<()> {
        let endpoint = Endpoint::from_shared(format!("http://{address}"))
            .map_err(|e| {
                Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("bad data node address {address}: {e}"),
                )
            })?
            .tcp_nodelay(true);
        let channel = endpoint.connect_lazy();
        let client = NodeClient {
            address: address.to_string(),
            shards: ShardServiceClient::new(channel.clone())
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
            flight: FlightServiceClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES)
                .max_encoding_message_size(MAX_MESSAGE_BYTES),
        };
        self.nodes.write().insert(node_id, client);
        Ok(())
    }

    /// Returns the registered data nodes.
    pub fn data_nodes(&self) -> Vec<(NodeId, NodeClient)> {
        self.nodes
            .read()
            .iter()
            .map(|(id, c)| (id.clone(), c.clone()))
            .collect()
    }

    /// Returns the client of `node`.
    pub fn node(&self, node: &NodeId) -> Result<NodeClient> {
        self.nodes.read().get(node).cloned().ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                format!("data node {node} is not known"),
            )
        })
    }

    /// Returns the client of the node holding `shard` of `table`.
    pub fn node_for_shard(&self, table: TableId, shard: u32) -> Result<NodeClient> {
        let routing = self.catalog.routing(table);
        let node = routing.get(shard as usize).ok_or_else(|| {
            Error::new(
                ErrorCode::Unavailable,
                format!("shard {table}/{shard} has no node"),
            )
        })?;
        self.node(node)
    }

    /// Places the shards of a new table over the data nodes (balanced by shard count), creates
    /// them and records the table and its routing in cluster state.
    pub async fn create_table(&self, mut table: TableSchema, if_not_exists: bool) -> Result<bool> {
        let key = crate::catalog::qualified(&table.schema_name, &table.name);
        let state = self.catalog.state();
        if state.tables.contains_key(&key) || state.views.contains_key(&key) {
            if if_not_exists {
                return Ok(false);
            }
            return Err(Error::new(
                ErrorCode::DuplicateObject,
                format!("relation {key} already exists"),
            ));
        }
        let nodes: Vec<NodeId> = self.nodes.read().keys().cloned().collect();
        if nodes.is_empty() {
            return Err(Error::new(
                ErrorCode::Unavailable,
                "no data nodes are available",
            ));
        }
        let mut load: HashMap<NodeId, usize> = nodes.iter().map(|n| (n.clone(), 0)).collect();
        for routing in state.routing.values() {
            for node in routing {
                if let Some(count) = load.get_mut(node) {
                    *count += 1;
                }
            }
        }
        table.id = TableId(state.next_table_id);
        let mut routing = Vec::with_capacity(table.num_shards as usize);
        for _ in 0..table.num_shards {
            let node = nodes
                .iter()
                .min_by_key(|n| (load[*n], (*n).clone()))
                .expect("at least one node")
                .clone();
            *load.get_mut(&node).expect("node is loaded") += 1;
            routing.push(node);
        }
        table.validate()?;
        let table_json = serde_json::to_vec(&table).expect("table serialises");
        let mut by_node: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for (shard, node) in routing.iter().enumerate() {
            by_node.entry(node.clone()).or_default().push(shard as u32);
        }
        for (node, shards) in by_node {
            let mut client = self.node(&node)?;
            client
                .shards
                .create_shards(CreateShardsRequest {
                    table_json: table_json.clone(),
                    shards,
                })
                .await
                .map_err(status_error)?;
        }
        self.catalog.update(|state| {
            if state.tables.contains_key(&key) {
                return Err(Error::new(
                    ErrorCode::DuplicateObject,
                    format!("relation {key} already exists"),
                ));
            }
            state.next_table_id = state.next_table_id.max(table.id.0 + 1);
            state.routing.insert(table.id.0, routing);
            state.tables.insert(key.clone(), table);
            Ok(())
        })?;
        Ok(true)
    }

    /// Makes sure every data node has the shards cluster state assigns to it (after a restart).
    pub async fn ensure_shards(&self) -> Result<()> {
        let state = self.catalog.state();
        for table in state.tables.values() {
            let routing = state.routing.get(&table.id.0).cloned().unwrap_or_default();
            let mut by_node: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
            for (shard, node) in routing.iter().enumerate() {
                by_node.entry(node.clone()).or_default().push(shard as u32);
            }
            let table_json = serde_json::to_vec(table).expect("table serialises");
            for (node, shards) in by_node {
                let mut client = self.node(&node)?;
                client
                    .shards
                    .create_shards(CreateShardsRequest {
                        table_json: table_json.clone(),
                        shards,
                    })
                    .await
                    .map_err(status_error)?;
            }
        }
        Ok(())
    }

    /// Sends a changed table definition to every node and records it.
    pub async fn update_table(&self, table: TableSchema) -> Result<()> {
        table.validate()?;
        let table_json = serde_json::to_vec(&table).expect("table serialises");
        for (_, mut client) in self.data_nodes() {
            client
                .shards
                .update_table(UpdateTableRequest {
                    table_json: table_json.clone(),
                })
                .await
                .map_err(status_error)?;
        }
        let key = crate::catalog::qualified(&table.schema_name, &table.name);
        self.catalog.update(|state| {
            state.tables.insert(key, table);
            Ok(())
        })
    }

    /// Removes a table from cluster state, then deletes its shards everywhere.
    pub async fn drop_table(&self, table: &TableSchema) -> Result<()> {
        let key = crate::catalog::qualified(&table.schema_name, &table.name);
        self.catalog.update(|state| {
            let target = (table.schema_name.clone(), table.name.clone());
            if let Some(view) = state
                .views
                .values()
                .find(|view| crate::plan::views::view_dependencies(view).contains(&target))
            {
                return Err(Error::new(
                    ErrorCode::DependentObjectsStillExist,
                    format!(
                        "cannot drop table {key} because view {}.{} depends on it",
                        view.schema_name, view.name
                    ),
                ));
            }
            state.tables.remove(&key);
            state.routing.remove(&table.id.0);
            Ok(())
        })?;
        for (node, mut client) in self.data_nodes() {
            if let Err(status) = client
                .shards
                .drop_table(DropTableRequest {
                    table_id: table.id.0,
                })
                .await
            {
                tracing::warn!(%node, table_id = table.id.0, %status, "dropping shards failed");
            }
        }
        Ok(())
    }

    /// Writes rows (with an `_id` column) to one shard and returns per-row statuses.
    pub async fn write_rows(
        &self,
        table: &TableSchema,
        shard: u32,
        mode: WriteMode,
        rows: &RecordBatch,
        refresh: bool,
    ) -> Result<Vec<RowStatus>> {
        let rows_ipc =
            batch_to_ipc(rows).map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
        self.write(table, shard, mode, rows_ipc, Vec::new(), refresh)
            .await
    }

    /// Deletes rows by id from one shard and returns per-id statuses.
    pub async fn delete_ids(
        &self,
        table: &TableSchema,
        shard: u32,
        ids: Vec<String>,
        refresh: bool,
    ) -> Result<Vec<RowStatus>> {
        self.write(table, shard, WriteMode::Delete, Vec::new(), ids, refresh)
            .await
    }

    async fn write(
        &self,
        table: &TableSchema,
        shard: u32,
        mode: WriteMode,
        rows_ipc: Vec<u8>,
        delete_ids: Vec<String>,
        refresh: bool,
    ) -> Result<Vec<RowStatus>> {
        let mut client = self.node_for_shard(table.id, shard)?;
        let response = client
            .shards
            .write(WriteRequest {
                table_id: table.id.0,
                shard,
                mode: mode as i32,
                rows_ipc,
                delete_ids,
                refresh,
            })
            .await
            .map_err(status_error)?
            .into_inner();
        Ok(response
            .statuses
            .into_iter()
            .map(|s| RowStatus::try_from(s).unwrap_or(RowStatus::Ok))
            .collect())
    }

    /// Refreshes every shard of `table`.
    pub async fn refresh_table(&self, table: &TableSchema) -> Result<()> {
        let routing = self.catalog.routing(table.id);
        let mut by_node: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for (shard, node) in routing.iter().enumerate() {
            by_node.entry(node.clone()).or_default().push(shard as u32);
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
        let mut all = Vec::new();
        for (node, mut client) in self.data_nodes() {
            match client.shards.shard_stats(ShardStatsRequest {}).await {
                Ok(response) => {
                    all.extend(
                        response
                            .into_inner()
                            .shards
                            .into_iter()
                            .map(|s| (node.clone(), s)),
                    );
                }
                Err(status) => tracing::warn!(%node, %status, "shard stats unavailable"),
            }
        }
        all
    }
}

/// Shared handle.
pub type ClusterRef = Arc<Cluster>;
