//! The `sys` schema: `sys.cluster`, `sys.nodes`, `sys.shards`, `sys.allocations`,
//! `sys.health`, `sys.jobs` and `sys.jobs_log`, computed from cluster state, node statistics and the
//! coordinators' running statements when scanned.

mod columns;
mod shards;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, StringArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use crate::catalog::CopyState;
use crate::cluster::Cluster;
use crate::jobs::JobInfo;

/// Returns the `sys` schema provider.
pub fn sys_schema(cluster: Arc<Cluster>) -> Arc<dyn SchemaProvider> {
    Arc::new(SysSchema { cluster })
}

#[derive(Debug)]
struct SysSchema {
    cluster: Arc<Cluster>,
}

/// A `timestamp with time zone` column that is never NULL.
fn timestamp_field(name: &str) -> Field {
    Field::new(
        name,
        DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into())),
        false,
    )
}

/// `table_partitions` is also `information_schema.table_partitions` (CrateDB's name) and
/// `columns` is `information_schema.columns`, to which `plan::pg_compat` redirects.
const SYS_TABLES: [&str; 9] = [
    "allocations",
    "cluster",
    "columns",
    "health",
    "jobs",
    "jobs_log",
    "nodes",
    "shards",
    "table_partitions",
];

#[async_trait]
impl SchemaProvider for SysSchema {
    fn table_names(&self) -> Vec<String> {
        SYS_TABLES.iter().map(|s| s.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        if !SYS_TABLES.contains(&name) {
            return Ok(None);
        }
        Ok(Some(Arc::new(SysTable {
            cluster: self.cluster.clone(),
            name: name.to_string(),
            schema: sys_table_schema(name),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYS_TABLES.contains(&name)
    }
}

fn sys_table_schema(name: &str) -> SchemaRef {
    let fields = match name {
        "cluster" => vec![
            Field::new("name", DataType::Utf8, false),
            Field::new("id", DataType::Utf8, false),
            Field::new("master_node", DataType::Utf8, true),
            Field::new("state_version", DataType::Int64, false),
        ],
        "nodes" => vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("role", DataType::Utf8, false),
            Field::new("attributes", DataType::Utf8, false),
            Field::new("address", DataType::Utf8, false),
            Field::new("voter", DataType::Boolean, false),
            Field::new("leader", DataType::Boolean, false),
            Field::new("alive", DataType::Boolean, false),
            Field::new("heap_used", DataType::Int64, true),
            Field::new("heap_max", DataType::Int64, true),
            Field::new("disk_used", DataType::Int64, true),
            Field::new("disk_total", DataType::Int64, true),
            Field::new("disk_available", DataType::Int64, true),
        ],
        "health" => vec![
            Field::new("table_schema", DataType::Utf8, false),
            Field::new("table_name", DataType::Utf8, false),
            Field::new("health", DataType::Utf8, false),
            Field::new("severity", DataType::Int64, false),
            Field::new("missing_shards", DataType::Int64, false),
            Field::new("underreplicated_shards", DataType::Int64, false),
        ],
        "jobs" => vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("node", DataType::Utf8, false),
            timestamp_field("started"),
            Field::new("stmt", DataType::Utf8, false),
            Field::new("rows_done", DataType::Int64, true),
            Field::new("bytes_done", DataType::Int64, true),
        ],
        "jobs_log" => vec![
            Field::new("id", DataType::Utf8, false),
            Field::new("node", DataType::Utf8, false),
            timestamp_field("started"),
            timestamp_field("ended"),
            Field::new("stmt", DataType::Utf8, false),
            Field::new("error", DataType::Utf8, true),
        ],
        "allocations" => shards::allocations_fields(),
        "table_partitions" => shards::partitions_fields(),
        "columns" => columns::columns_fields(),
        _ => shards::shards_fields(),
    };
    Arc::new(Schema::new(fields))
}

#[derive(Debug)]
struct SysTable {
    cluster: Arc<Cluster>,
    name: String,
    schema: SchemaRef,
}

impl SysTable {
    async fn rows(&self) -> DfResult<RecordBatch> {
        let strings = |values: Vec<String>| Arc::new(StringArray::from(values)) as ArrayRef;
        let state = self.cluster.catalog().state();
        let leader = self.cluster.consensus().leader().map(|(name, _)| name);
        let columns: Vec<ArrayRef> = match self.name.as_str() {
            "cluster" => vec![
                strings(vec![state.cluster_name.clone()]),
                strings(vec![state.cluster_uuid.clone()]),
                Arc::new(StringArray::from(vec![leader.clone()])),
                Arc::new(Int64Array::from(vec![state.version as i64])),
            ],
            "nodes" => {
                let stats = self.cluster.node_stats().await;
                let nodes: Vec<_> = state.nodes.values().collect();
                let figure = |f: fn(&creek_proto::v1::NodeStatsResponse) -> u64| {
                    let values: Vec<Option<i64>> = nodes
                        .iter()
                        .map(|n| stats.get(&n.id).map(|s| f(s) as i64))
                        .collect();
                    Arc::new(Int64Array::from(values)) as ArrayRef
                };
                let ids: Vec<String> = nodes.iter().map(|n| n.id.to_string()).collect();
                vec![
                    strings(ids.clone()),
                    strings(ids),
                    strings(nodes.iter().map(|n| n.role.as_str().to_string()).collect()),
                    strings(
                        nodes
                            .iter()
                            .map(|n| {
                                serde_json::to_string(&n.attributes).expect("attributes serialise")
                            })
                            .collect(),
                    ),
                    strings(nodes.iter().map(|n| n.address.clone()).collect()),
                    Arc::new(BooleanArray::from(
                        nodes.iter().map(|n| n.voter).collect::<Vec<_>>(),
                    )),
                    Arc::new(BooleanArray::from(
                        nodes
                            .iter()
                            .map(|n| leader.as_deref() == Some(n.id.0.as_str()))
                            .collect::<Vec<_>>(),
                    )),
                    Arc::new(BooleanArray::from(
                        nodes.iter().map(|n| n.alive).collect::<Vec<_>>(),
                    )),
                    figure(|s| s.heap_used_bytes),
                    figure(|s| s.heap_max_bytes),
                    figure(|s| s.disk_used_bytes),
                    figure(|s| s.disk_total_bytes),
                    figure(|s| s.disk_available_bytes),
                ]
            }
            "health" => {
                let mut schemas = Vec::new();
                let mut names = Vec::new();
                let mut health = Vec::new();
                let mut severity = Vec::new();
                let mut missing = Vec::new();
                let mut underreplicated = Vec::new();
                for table in state.tables.values() {
                    let shards = state.routing.get(&table.id.0);
                    let mut missing_shards = 0i64;
                    let mut short_shards = 0i64;
                    for shard in table.live_shards() {
                        let wanted =
                            crate::catalog::commands::wanted_copies_of_shard(&state, table, shard);
                        let routing = shards.and_then(|r| r.get(shard as usize));
                        let started = |primary: bool| {
                            routing.map_or(0, |r| {
                                r.copies
                                    .iter()
                                    .filter(|c| {
                                        c.primary == primary
                                            && c.state == CopyState::Started
                                            && state.is_alive(&c.node)
                                    })
                                    .count()
                            })
                        };
                        if started(true) == 0 {
                            missing_shards += 1;
                        } else if 1 + started(false) < wanted {
                            short_shards += 1;
                        }
                    }
                    // GREEN: every copy there; YELLOW: every primary, not every replica;
                    // RED: some shard has no primary that can serve.
                    let (label, level) = if missing_shards > 0 {
                        ("RED", 3)
                    } else if short_shards > 0 {
                        ("YELLOW", 2)
                    } else {
                        ("GREEN", 1)
                    };
                    schemas.push(table.schema_name.clone());
                    names.push(table.name.clone());
                    health.push(label.to_string());
                    severity.push(level);
                    missing.push(missing_shards);
                    underreplicated.push(short_shards);
                }
                vec![
                    strings(schemas),
                    strings(names),
                    strings(health),
                    Arc::new(Int64Array::from(severity)),
                    Arc::new(Int64Array::from(missing)),
                    Arc::new(Int64Array::from(underreplicated)),
                ]
            }
            "jobs" => {
                let jobs = self.cluster.cluster_jobs().await;
                let figure = |f: fn(&JobInfo) -> Option<u64>| {
                    Arc::new(Int64Array::from_iter(
                        jobs.iter().map(|j| f(j).map(|v| v as i64)),
                    )) as ArrayRef
                };
                vec![
                    strings(jobs.iter().map(|j| j.id.clone()).collect()),
                    strings(jobs.iter().map(|j| j.node.clone()).collect()),
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(
                            jobs.iter().map(|j| j.started_micros),
                        )
                        .with_timezone("+00:00"),
                    ),
                    strings(jobs.iter().map(|j| j.stmt.clone()).collect()),
                    figure(|j| j.rows_done),
                    figure(|j| j.bytes_done),
                ]
            }
            "jobs_log" => {
                let log = self.cluster.cluster_jobs_log().await;
                let times = |f: fn(&JobInfo) -> i64| {
                    Arc::new(
                        TimestampMicrosecondArray::from_iter_values(log.iter().map(f))
                            .with_timezone("+00:00"),
                    ) as ArrayRef
                };
                vec![
                    strings(log.iter().map(|j| j.id.clone()).collect()),
                    strings(log.iter().map(|j| j.node.clone()).collect()),
                    times(|j| j.started_micros),
                    times(|j| j.ended_micros.unwrap_or(j.started_micros)),
                    strings(log.iter().map(|j| j.stmt.clone()).collect()),
                    Arc::new(datafusion::arrow::array::StringArray::from_iter(
                        log.iter().map(|j| j.error.clone()),
                    )),
                ]
            }
            "allocations" => shards::allocations_rows(&state),
            "table_partitions" => shards::partitions_rows(&state),
            "columns" => {
                return Err(datafusion::error::DataFusionError::Internal(
                    "sys.columns is built with the session".into(),
                ))
            }
            _ => shards::shards_rows(&state, &self.cluster.shard_stats().await),
        };
        Ok(RecordBatch::try_new(self.schema.clone(), columns)?)
    }
}

#[async_trait]
impl TableProvider for SysTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = if self.name == "columns" {
            // What the session can name: it needs the session's catalogs.
            columns::columns_batch(&self.cluster, state, self.schema.clone()).await?
        } else {
            self.rows().await?
        };
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
