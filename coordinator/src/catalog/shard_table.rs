//! A sharded table as a DataFusion `TableProvider`. Its scan is a [`ShardScanExec`] with one
//! partition per data node holding shards of the scan; each partition sends its node one
//! encoded plan fragment for all of that node's shards (a `ShardScanNode` leaf with the
//! pushed-down projection, filters and limit) in an Arrow Flight ticket and streams back the
//! batches.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use creek_common::fulltext::{MatchSpec, MatchStats};
use creek_common::schema::{
    TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SCORE_COLUMN, SEQ_NO_COLUMN,
};
use creek_common::{NodeId, TableId};
use creek_proto::arrow_flight::decode::FlightRecordBatchStream;
use creek_proto::arrow_flight::error::FlightError;
use creek_proto::arrow_flight::Ticket;
use creek_proto::status::error_from_status;
use creek_proto::v1::{FragmentTicket, ShardScanNode};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::catalog::Session;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::ScalarValue;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    displayable, DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
    Serializeable,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use futures::{StreamExt, TryStreamExt};
use prost::Message;

use crate::cluster::{Cluster, SessionWrites};
use crate::plan::routing::{id_for_key_values, scalar_to_key_text};

mod pushdown;

use pushdown::pushed_filter;

/// A user table backed by shards on data nodes.
#[derive(Debug)]
pub struct ShardTable {
    table: Arc<TableSchema>,
    cluster: Arc<Cluster>,
    schema: SchemaRef,
}

impl ShardTable {
    /// Creates the provider showing the user columns.
    pub fn new(table: Arc<TableSchema>, cluster: Arc<Cluster>) -> ShardTable {
        ShardTable::build(table, cluster, false)
    }

    /// Creates the provider that also exposes `_id`, `_seq_no`, `_primary_term` (for UPDATE
    /// and DELETE) and `_score`.
    pub fn with_hidden_columns(table: Arc<TableSchema>, cluster: Arc<Cluster>) -> ShardTable {
        ShardTable::build(table, cluster, true)
    }

    fn build(table: Arc<TableSchema>, cluster: Arc<Cluster>, include_hidden: bool) -> ShardTable {
        let mut fields: Vec<Field> = table
            .arrow_schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone())
            .collect();
        if include_hidden {
            fields.push(Field::new(ID_COLUMN, DataType::Utf8, false));
            fields.push(Field::new(SEQ_NO_COLUMN, DataType::Int64, false));
            fields.push(Field::new(PRIMARY_TERM_COLUMN, DataType::Int64, false));
            fields.push(Field::new(SCORE_COLUMN, DataType::Float32, false));
        }
        ShardTable {
            schema: Arc::new(Schema::new(fields)),
            table,
            cluster,
        }
    }

    /// Returns the table definition.
    pub fn table(&self) -> &Arc<TableSchema> {
        &self.table
    }

    /// If `filters` pin every primary-key column to literals, returns the document ids and
    /// their shards: such a lookup reads one shard and is real-time.
    fn primary_key_lookup(&self, filters: &[Expr]) -> Option<Vec<(String, u32)>> {
        let table = &self.table;
        if table.primary_key.is_empty() {
            return None;
        }
        let mut candidates: Vec<Vec<ScalarValue>> = Vec::new();
        for key in &table.primary_key {
            let values = filters.iter().find_map(|f| pinned_values(f, key))?;
            candidates.push(values);
        }
        // Cartesian product over IN lists, bounded to keep plans small.
        let mut combos: Vec<Vec<ScalarValue>> = vec![Vec::new()];
        for values in candidates {
            let mut next = Vec::new();
            for combo in &combos {
                for value in &values {
                    let mut extended = combo.clone();
                    extended.push(value.clone());
                    next.push(extended);
                }
            }
            if next.len() > 1024 {
                return None;
            }
            combos = next;
        }
        let mut lookups = Vec::with_capacity(combos.len());
        for combo in combos {
            let mut texts = Vec::with_capacity(combo.len());
            for (value, key) in combo.iter().zip(&table.primary_key) {
                let column = table.column(key)?;
                texts.push(scalar_to_key_text(value, &column.column_type.arrow_type())?);
            }
            let id = id_for_key_values(&texts);
            let routing_value = match &table.clustered_by {
                Some(column) => {
                    let index = table.primary_key.iter().position(|k| k == column)?;
                    Some(texts[index].clone())
                }
                None => None,
            };
            // Partition columns are part of the key: the key names its partition, and a key
            // of a partition that does not exist names no row.
            let partition = if table.is_partitioned() {
                let mut values = Vec::with_capacity(table.partitioned_by.len());
                for column in &table.partitioned_by {
                    let index = table.primary_key.iter().position(|k| k == column)?;
                    values.push(Some(texts[index].clone()));
                }
                match table.partition_of_values(&values) {
                    Some(partition) => Some(partition),
                    None => continue,
                }
            } else {
                None
            };
            let shard =
                crate::plan::routing::shard_of(table, partition, &id, routing_value.as_deref());
            lookups.push((id, shard));
        }
        Some(lookups)
    }
}

/// Returns the literal values `filter` pins `column` to (`col = lit` or `col IN (lits)`).
fn pinned_values(filter: &Expr, column: &str) -> Option<Vec<ScalarValue>> {
    match filter {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => match (left.as_ref(), right.as_ref()) {
            (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c))
                if c.name == column && !v.is_null() =>
            {
                Some(vec![v.clone()])
            }
            _ => None,
        },
        Expr::InList(in_list) if !in_list.negated => match in_list.expr.as_ref() {
            Expr::Column(c) if c.name == column => in_list
                .list
                .iter()
                .map(|item| match item {
                    Expr::Literal(v, _) if !v.is_null() => Some(v.clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        },
        _ => None,
    }
}

#[async_trait]
impl TableProvider for ShardTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> DfResult<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if crate::plan::fulltext::match_spec_of(f).is_some() {
                    // Only the data nodes can decide a MATCH: it must not stay above the scan.
                    TableProviderFilterPushDown::Exact
                } else if pushed_filter(&self.table, f).is_some()
                    || crate::plan::partitions::is_partition_predicate(&self.table, f)
                {
                    // Partition predicates prune partitions; the rows are filtered above.
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let mut match_spec: Option<MatchSpec> = None;
        for filter in filters {
            if let Some(spec) = crate::plan::fulltext::match_spec_of(filter) {
                let spec = spec.map_err(|e| e.into_datafusion())?;
                if match_spec.replace(spec).is_some() {
                    return Err(crate::error::Error::new(
                        creek_common::ErrorCode::FeatureNotSupported,
                        "one table can only be searched by one MATCH per query",
                    )
                    .into_datafusion());
                }
            }
        }
        let projected = match projection {
            Some(indices) => Arc::new(self.schema.project(indices)?),
            None => self.schema.clone(),
        };
        let columns: Vec<String> = projected
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        let live_shards: Vec<u32> = if self.table.is_partitioned() {
            let all: Vec<&Expr> = filters.iter().collect();
            crate::plan::partitions::prune(&self.table, &all)
                .into_iter()
                .flat_map(|p| p.shards())
                .collect()
        } else {
            (0..self.table.num_shards).collect()
        };
        let filters: Vec<Expr> = filters
            .iter()
            .filter(|f| crate::plan::fulltext::match_spec_of(f).is_none())
            .filter_map(|f| pushed_filter(&self.table, f))
            .collect();
        let (shards, realtime_ids) = match self.primary_key_lookup(&filters) {
            Some(lookups) => {
                let shards: BTreeSet<u32> = lookups.iter().map(|(_, shard)| *shard).collect();
                (
                    shards.into_iter().collect(),
                    lookups.into_iter().map(|(id, _)| id).collect(),
                )
            }
            None => (live_shards, Vec::new()),
        };
        let mut scan = ShardScanExec::new(
            self.table.clone(),
            self.cluster.clone(),
            projected,
            columns,
            shards,
            filters,
            limit,
            realtime_ids,
            Arc::default(),
        );
        if let Some(mut spec) = match_spec {
            if self.table.is_partitioned() {
                // Statistics of the whole table, not of the partitions this query reads: a
                // document scores the same whichever partitions a filter keeps.
                let whole = ShardScanExec::new(
                    self.table.clone(),
                    self.cluster.clone(),
                    scan.schema.clone(),
                    Vec::new(),
                    self.table.live_shards(),
                    Vec::new(),
                    None,
                    Vec::new(),
                    Arc::default(),
                );
                let writes = session_writes_of(state.config(), self.table.id, &whole.shards);
                spec.stats = Some(whole.match_stats(&spec, &writes).await?);
            } else if self.table.num_shards > 1 {
                let writes = session_writes_of(state.config(), self.table.id, &scan.shards);
                spec.stats = Some(scan.match_stats(&spec, &writes).await?);
            }
            scan.match_spec = Some(Arc::new(spec));
        }
        Ok(Arc::new(scan))
    }
}

/// What the executing session wrote to `shards` of `table`, for the copies to show before
/// they answer. Read when a scan executes, not when it is planned, so that a plan the session
/// runs again (`session::plan_cache`) sees the writes made since.
fn session_writes(context: &TaskContext, table: TableId, shards: &[u32]) -> BTreeMap<u32, u64> {
    session_writes_of(context.session_config(), table, shards)
}

fn session_writes_of(
    config: &datafusion::prelude::SessionConfig,
    table: TableId,
    shards: &[u32],
) -> BTreeMap<u32, u64> {
    match config.get_extension::<SessionWrites>() {
        Some(writes) => shards
            .iter()
            .copied()
            .zip(writes.required(table, shards))
            .filter(|(_, seq_no)| *seq_no > 0)
            .collect(),
        None => BTreeMap::new(),
    }
}

/// Each data node's fragment ticket (`FragmentTicket` bytes) of a scan.
pub type NodeFragments = Vec<(NodeId, Vec<u8>)>;

/// Scans shards on data nodes: partition `i` streams the shards `groups[i]` of one data node
/// over Flight. With a fragment (see `plan::fragments`), the data node runs the fragment's
/// operators over each of its shards and partition `i` streams their combined output instead.
#[derive(Clone)]
pub struct ShardScanExec {
    table: Arc<TableSchema>,
    cluster: Arc<Cluster>,
    schema: SchemaRef,
    columns: Vec<String>,
    shards: Vec<u32>,
    /// The scan's shards grouped by the node holding them, in node order.
    groups: Vec<(NodeId, Vec<u32>)>,
    filters: Vec<Expr>,
    limit: Option<usize>,
    realtime_ids: Vec<String>,
    /// The executing session's highest written sequence number per shard (absent: none); set
    /// only on the leaf sent to a data node (see [`session_writes`]).
    session_writes: Arc<BTreeMap<u32, u64>>,
    properties: Arc<PlanProperties>,
    /// Operators to run on the data node above this scan; their leaf is this scan without a
    /// fragment.
    fragment: Option<Arc<dyn ExecutionPlan>>,
    /// The query's `MATCH` on this table, with the table's term statistics.
    match_spec: Option<Arc<MatchSpec>>,
}

impl fmt::Debug for ShardScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ShardScanExec({})", self.table.name)
    }
}

/// Advances once per scan, so successive scans read different copies of a shard.
static NEXT_SPREAD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

impl ShardScanExec {
    #[allow(clippy::too_many_arguments)]
    fn new(
        table: Arc<TableSchema>,
        cluster: Arc<Cluster>,
        schema: SchemaRef,
        columns: Vec<String>,
        shards: Vec<u32>,
        filters: Vec<Expr>,
        limit: Option<usize>,
        realtime_ids: Vec<String>,
        session_writes: Arc<BTreeMap<u32, u64>>,
    ) -> ShardScanExec {
        // Real-time lookups read primaries; scans spread over the started copies, differently
        // for each scan, so that replicas add read capacity.
        let spread = NEXT_SPREAD.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let routing = cluster.catalog().routing(table.id);
        let mut by_node: BTreeMap<NodeId, Vec<u32>> = BTreeMap::new();
        for shard in &shards {
            let node = if realtime_ids.is_empty() {
                cluster.read_node_for_shard(table.id, *shard, spread).ok()
            } else {
                routing
                    .get(*shard as usize)
                    .and_then(|r| r.primary())
                    .map(|p| p.node.clone())
            };
            // A shard nothing can serve is grouped under no node and fails when executed,
            // with the reason.
            by_node
                .entry(node.unwrap_or_else(|| NodeId(String::new())))
                .or_default()
                .push(*shard);
        }
        let groups: Vec<(NodeId, Vec<u32>)> = by_node.into_iter().collect();
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(groups.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        ShardScanExec {
            table,
            cluster,
            schema,
            columns,
            shards,
            groups,
            filters,
            limit,
            realtime_ids,
            session_writes,
            properties,
            fragment: None,
            match_spec: None,
        }
    }

    /// Whether the scan runs a `MATCH`: its term statistics were gathered when it was planned,
    /// so the plan must not be run again later.
    pub fn has_match(&self) -> bool {
        self.match_spec.is_some()
    }

    /// The term statistics of the whole table for `spec`: each node holding a copy of some of
    /// the scan's shards sums its shards', and these sums are added up.
    async fn match_stats(
        &self,
        spec: &MatchSpec,
        writes: &BTreeMap<u32, u64>,
    ) -> DfResult<MatchStats> {
        let spec_json = serde_json::to_string(spec)
            .map_err(|e| DataFusionError::Internal(format!("MATCH does not encode: {e}")))?;
        let calls = self.groups.iter().map(|(node, shards)| {
            let client = if node.0.is_empty() {
                self.cluster
                    .read_node_for_shard(self.table.id, shards[0], 0)
                    .and_then(|node| self.cluster.node(&node))
            } else {
                self.cluster.node(node)
            };
            let request = creek_proto::v1::MatchStatsRequest {
                table_id: self.table.id.0,
                shards: shards.clone(),
                match_spec: spec_json.clone(),
                visible_seq_nos: shards
                    .iter()
                    .map(|shard| writes.get(shard).copied().unwrap_or(0))
                    .collect(),
            };
            async move {
                let mut client =
                    client.map_err(|e| DataFusionError::External(Box::new(to_coded(e))))?;
                let response = client.shards.match_stats(request).await.map_err(|status| {
                    DataFusionError::External(Box::new(error_from_status(&status)))
                })?;
                serde_json::from_str::<MatchStats>(&response.into_inner().stats)
                    .map_err(|e| DataFusionError::Internal(format!("bad MATCH statistics: {e}")))
            }
        });
        let mut total = MatchStats::default();
        for stats in futures::future::try_join_all(calls).await? {
            total.merge(stats);
        }
        Ok(total)
    }

    /// The operators this scan runs on the data nodes, if any.
    pub fn fragment(&self) -> Option<&Arc<dyn ExecutionPlan>> {
        self.fragment.as_ref()
    }

    /// Whether the scan or an operator of its fragment stops after some rows: per shard, so
    /// the rows of several shards together are only right once the coordinator limits them.
    pub fn limits_rows(&self) -> bool {
        let mut limited = self.limit.is_some();
        if let Some(fragment) = &self.fragment {
            let _ = fragment.apply(|node| {
                limited |= node.fetch().is_some();
                Ok(if limited {
                    TreeNodeRecursion::Stop
                } else {
                    TreeNodeRecursion::Continue
                })
            });
        }
        limited
    }

    /// One fragment ticket per data node this scan reads, for a client to take to each node
    /// itself (Flight SQL's parallel endpoints); `None` if some shard has no copy to read
    /// (the query then runs on the coordinator, which reports why). The tickets carry no
    /// session's writes to wait for: a caller with writes of its own runs the query instead.
    pub fn node_fragments(&self) -> DfResult<Option<NodeFragments>> {
        if self.groups.iter().any(|(node, _)| node.0.is_empty()) {
            return Ok(None);
        }
        self.groups
            .iter()
            .map(|(node, shards)| Ok((node.clone(), self.encode_fragment(shards, Arc::default())?)))
            .collect::<DfResult<Vec<_>>>()
            .map(Some)
    }

    /// Whether each shard this scan reads has one copy only, so that the copy it reads is no
    /// choice made when it was planned (scans spread over copies, see [`ShardScanExec::new`]).
    pub fn reads_sole_copies(&self) -> bool {
        let routing = self.cluster.catalog().routing(self.table.id);
        self.shards.iter().all(|shard| {
            routing
                .get(*shard as usize)
                .is_some_and(|r| r.copies.len() == 1)
        })
    }

    /// This scan running `fragment` (operators over this scan) on the data nodes; its output is
    /// the fragment's, one partition per data node. Fails unless the fragment survives the trip a
    /// data node makes: encoded, then decoded with only DataFusion's built-in functions (so
    /// Creek's coordinator-side functions and subquery expressions stay on the coordinator).
    pub fn with_fragment(&self, fragment: Arc<dyn ExecutionPlan>) -> DfResult<ShardScanExec> {
        let mut scan = self.clone();
        scan.schema = fragment.schema();
        scan.properties = Arc::new(
            fragment
                .properties()
                .as_ref()
                .clone()
                .with_partitioning(Partitioning::UnknownPartitioning(self.groups.len().max(1))),
        );
        scan.fragment = Some(fragment);
        if let Some((_, shards)) = self.groups.first() {
            let ticket =
                FragmentTicket::decode(scan.encode_fragment(shards, Arc::default())?.as_slice())
                    .map_err(|e| DataFusionError::Internal(format!("bad fragment ticket: {e}")))?;
            // Built once: a task context copies every function registry it is made from.
            static DATA_NODE_FUNCTIONS: OnceLock<Arc<TaskContext>> = OnceLock::new();
            let task_ctx =
                DATA_NODE_FUNCTIONS.get_or_init(creek_common::functions::fragment_task_context);
            let codec = ShardLeafCodec {
                leaf_schema: Some(self.leaf_schema()),
            };
            physical_plan_from_bytes_with_extension_codec(&ticket.plan, task_ctx, &codec)?;
        }
        Ok(scan)
    }

    /// This scan (without fragment) restricted to some shards: the leaf sent to their node,
    /// showing `session_writes` there.
    fn leaf_for_shards(
        &self,
        shards: &[u32],
        session_writes: Arc<BTreeMap<u32, u64>>,
    ) -> ShardScanExec {
        let mut leaf = ShardScanExec::new(
            self.table.clone(),
            self.cluster.clone(),
            self.leaf_schema(),
            self.columns.clone(),
            shards.to_vec(),
            self.filters.clone(),
            self.limit,
            self.realtime_ids.clone(),
            session_writes,
        );
        leaf.match_spec = self.match_spec.clone();
        leaf
    }

    fn leaf_schema(&self) -> SchemaRef {
        let leaf = self.fragment.as_ref().and_then(|fragment| {
            let mut found = None;
            let _ = fragment.apply(|node| {
                if let Some(scan) = node.downcast_ref::<ShardScanExec>() {
                    found = Some(scan.schema.clone());
                    return Ok(TreeNodeRecursion::Stop);
                }
                Ok(TreeNodeRecursion::Continue)
            });
            found
        });
        leaf.unwrap_or_else(|| self.schema.clone())
    }

    /// The `ShardScanNode` this (leaf) scan is sent as.
    fn scan_node(&self) -> DfResult<ShardScanNode> {
        let filters = self
            .filters
            .iter()
            .map(|f| f.to_bytes().map(|b| b.to_vec()))
            .collect::<DfResult<Vec<_>>>()?;
        Ok(ShardScanNode {
            table_id: self.table.id.0,
            shards: self.shards.clone(),
            columns: self.columns.clone(),
            filters,
            limit: self.limit.map(|l| l as u64),
            realtime_ids: self.realtime_ids.clone(),
            match_spec: match &self.match_spec {
                Some(spec) => serde_json::to_string(spec.as_ref()).map_err(|e| {
                    DataFusionError::Internal(format!("MATCH does not encode: {e}"))
                })?,
                None => String::new(),
            },
            visible_seq_nos: if self.session_writes.is_empty() {
                Vec::new()
            } else {
                self.shards
                    .iter()
                    .map(|shard| self.session_writes.get(shard).copied().unwrap_or(0))
                    .collect()
            },
        })
    }

    /// Encodes the fragment for one node: the fragment's operators (if any) over a
    /// `ShardScanNode` leaf for the node's shards, all partitions sent as one stream.
    fn encode_fragment(
        &self,
        shards: &[u32],
        session_writes: Arc<BTreeMap<u32, u64>>,
    ) -> DfResult<Vec<u8>> {
        let leaf: Arc<dyn ExecutionPlan> = Arc::new(self.leaf_for_shards(shards, session_writes));
        let plan = match &self.fragment {
            Some(fragment) => {
                Arc::clone(fragment)
                    .transform_up(|node| {
                        Ok(if node.is::<ShardScanExec>() {
                            Transformed::yes(leaf.clone())
                        } else {
                            Transformed::no(node)
                        })
                    })?
                    .data
            }
            None => leaf,
        };
        let plan = physical_plan_to_bytes_with_extension_codec(
            plan,
            &ShardLeafCodec { leaf_schema: None },
        )?;
        Ok(FragmentTicket {
            plan: plan.to_vec(),
            partition: 0,
            all_partitions: true,
        }
        .encode_to_vec())
    }
}

/// Encodes a fragment's leaf [`ShardScanExec`] as the `ShardScanNode` extension data nodes
/// decode. The coordinator only decodes fragments to check them, with an empty leaf of
/// `leaf_schema` in place of the shard scan.
#[derive(Debug)]
struct ShardLeafCodec {
    leaf_schema: Option<SchemaRef>,
}

impl PhysicalExtensionCodec for ShardLeafCodec {
    fn try_decode(
        &self,
        _buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        _ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        match &self.leaf_schema {
            Some(schema) => Ok(Arc::new(EmptyExec::new(schema.clone()))),
            None => Err(DataFusionError::Internal(
                "the coordinator does not run plan fragments".to_string(),
            )),
        }
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        let Some(scan) = node.downcast_ref::<ShardScanExec>() else {
            return Err(DataFusionError::NotImplemented(format!(
                "{} cannot run on a data node",
                node.name()
            )));
        };
        scan.scan_node()?
            .encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding a shard scan failed: {e}")))
    }
}

impl DisplayAs for ShardScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "ShardScanExec: table={}.{}, shards={:?}",
            self.table.schema_name, self.table.name, self.shards
        )?;
        if self.table.is_partitioned() {
            // Which partitions the scan reads: pruning made visible.
            let read = crate::plan::partitions::describe_read(&self.table, &self.shards);
            write!(f, ", partitions={read}")?;
        }
        if !self.filters.is_empty() {
            let filters: Vec<String> = self.filters.iter().map(|e| e.to_string()).collect();
            write!(f, ", pushed_filters=[{}]", filters.join(", "))?;
        }
        if let Some(limit) = self.limit {
            write!(f, ", limit={limit}")?;
        }
        if !self.realtime_ids.is_empty() {
            write!(f, ", primary_key_lookup")?;
        }
        if let Some(spec) = &self.match_spec {
            let fields: Vec<String> = spec
                .fields
                .iter()
                .map(|field| format!("{} {}", field.index, field.boost))
                .collect();
            write!(
                f,
                ", match=({}, {:?}) using {:?}, table_statistics={}",
                fields.join(", "),
                spec.query,
                spec.match_type,
                spec.stats.is_some()
            )?;
        }
        if let Some(fragment) = &self.fragment {
            let mut steps = Vec::new();
            let _ = fragment.apply(|node| {
                if !node.is::<ShardScanExec>() {
                    steps.push(displayable(node.as_ref()).one_line().to_string());
                }
                Ok(TreeNodeRecursion::Continue)
            });
            let steps: Vec<&str> = steps.iter().map(|s| s.trim()).collect();
            write!(f, ", on_data_nodes=[{}]", steps.join(" <- "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ShardScanExec {
    fn name(&self) -> &str {
        "ShardScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let schema = self.schema.clone();
        let Some((node, shards)) = self.groups.get(partition) else {
            return Ok(Box::pin(RecordBatchStreamAdapter::new(
                schema,
                futures::stream::empty(),
            )));
        };
        let writes = session_writes(&context, self.table.id, shards);
        let ticket = self.encode_fragment(shards, Arc::new(writes))?;
        let client = if node.0.is_empty() {
            // No copy could serve this group's shards when the scan was planned: the read
            // fails with the reason.
            self.cluster
                .read_node_for_shard(self.table.id, shards[0], 0)
                .and_then(|node| self.cluster.node(&node))
        } else {
            self.cluster.node(node)
        }
        .map_err(|e| DataFusionError::External(Box::new(to_coded(e))))?;
        let expected = schema.clone();
        let stream = futures::stream::once(async move {
            let mut flight = client.flight;
            let response = flight
                .do_get(Ticket {
                    ticket: ticket.into(),
                })
                .await
                .map_err(|status| {
                    DataFusionError::External(Box::new(error_from_status(&status)))
                })?;
            let data = response
                .into_inner()
                .map_err(|status| FlightError::Tonic(Box::new(status)));
            let batches = FlightRecordBatchStream::new_from_flight_data(data).map_err(flight_error);
            Ok::<_, DataFusionError>(batches)
        })
        .try_flatten()
        .map(move |batch| {
            let batch = batch?;
            // Field nullability may differ; rebuild with the planned schema. The row count is
            // explicit because `count(*)` scans project no columns at all.
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                expected.clone(),
                batch.columns().to_vec(),
                &options,
            )?)
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }
}

fn flight_error(error: FlightError) -> DataFusionError {
    match error {
        FlightError::Tonic(status) => {
            DataFusionError::External(Box::new(error_from_status(&status)))
        }
        other => DataFusionError::External(Box::new(other)),
    }
}

fn to_coded(error: crate::error::Error) -> creek_common::error::CodedError {
    creek_common::error::CodedError::new(error.code(), error.client_message())
}
