//! Query-then-fetch for a shard's top-N: `SELECT * ... WHERE ... ORDER BY x LIMIT 10` reads
//! only the columns the filters and the sort need for every candidate, and the other columns
//! only for the rows the top-N keeps.
//!
//! A fragment's per-shard `SortExec` with a fetch over (filters over) a [`TantivyScanExec`] is
//! rewritten: the scan reads the needed columns plus each row's document address, the filters
//! and the sort run on those, and [`FetchExec`] above the sort reads the remaining columns at the
//! addresses of the rows the sort emits, in the same searcher (the same segments and deletes)
//! the scan used. The rewrite never changes a result: the plan above sees the schema, order and
//! partitioning the original sort had.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::compute::interleave;
use datafusion::arrow::datatypes::{SchemaRef, UInt64Type};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::physical_expr::expressions::Column;
use datafusion::physical_expr::utils::collect_columns;
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use futures::StreamExt;
use tantivy::{DocId, Searcher};

use super::columns::{open_segment_column, read_column, ColumnSpec};
use super::TantivyScanExec;

/// Above this many rows per shard a top-N reads its columns in bulk: fetching row by row
/// would cost more than it saves.
const MAX_FETCHED_ROWS: usize = 10_000;

/// Bits of a document address: partition (shard of the scan), segment, document.
const SEGMENT_BITS: u32 = 16;
const DOC_BITS: u32 = 32;

/// The searcher each partition of a deferring scan read, for [`FetchExec`] to read the same
/// documents from.
#[derive(Debug, Default)]
pub struct ScanSearchers(Mutex<BTreeMap<usize, Searcher>>);

impl ScanSearchers {
    pub(super) fn keep(&self, partition: usize, searcher: &Searcher) {
        self.lock().insert(partition, searcher.clone());
    }

    fn get(&self, partition: usize) -> Option<Searcher> {
        self.lock().get(&partition).cloned()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<usize, Searcher>> {
        // A panic elsewhere cannot leave the map half-changed: every change is one insert.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The address of segment `segment`'s documents in partition `partition`, to be or-ed with the
/// document id; `None` if they do not fit the address.
pub(super) fn address_base(partition: usize, segment: usize) -> Option<u64> {
    let partition = u64::try_from(partition).ok()?;
    let segment = u64::try_from(segment).ok()?;
    if segment >= 1 << SEGMENT_BITS || partition >= 1 << (64 - SEGMENT_BITS - DOC_BITS) {
        return None;
    }
    Some(partition << (SEGMENT_BITS + DOC_BITS) | segment << DOC_BITS)
}

fn split_address(address: u64) -> (usize, usize, DocId) {
    let partition = address >> (SEGMENT_BITS + DOC_BITS);
    let segment = (address >> DOC_BITS) & ((1 << SEGMENT_BITS) - 1);
    (partition as usize, segment as usize, address as DocId)
}

/// Rewrites every top-N over a shard scan in `plan` that would read columns it neither filters
/// nor sorts on.
pub fn defer_columns(plan: Arc<dyn ExecutionPlan>) -> DfResult<Arc<dyn ExecutionPlan>> {
    plan.transform_down(|node| {
        Ok(match rewrite_top_n(&node)? {
            Some(rewritten) => Transformed::new(rewritten, true, TreeNodeRecursion::Jump),
            None => Transformed::no(node),
        })
    })
    .map(|transformed| transformed.data)
}

/// An operator between the sort and the scan that the rewrite can carry over.
enum Between {
    Filter(Arc<dyn PhysicalExpr>),
    Cooperative,
}

fn rewrite_top_n(node: &Arc<dyn ExecutionPlan>) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(sort) = node.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    if sort.fetch().is_none_or(|fetch| fetch > MAX_FETCHED_ROWS) {
        return Ok(None);
    }
    // Down to the scan through operators that keep the scan's schema.
    let mut between = Vec::new();
    let mut current = Arc::clone(sort.input());
    let leaf = loop {
        if current.is::<TantivyScanExec>() {
            break current;
        }
        let next = if let Some(filter) = current.downcast_ref::<FilterExec>() {
            if filter.projection().is_some() || filter.fetch().is_some() {
                return Ok(None);
            }
            between.push(Between::Filter(Arc::clone(filter.predicate())));
            Arc::clone(filter.input())
        } else if let Some(coop) = current.downcast_ref::<CooperativeExec>() {
            between.push(Between::Cooperative);
            Arc::clone(coop.input())
        } else {
            return Ok(None);
        };
        current = next;
    };
    let Some(scan) = leaf.downcast_ref::<TantivyScanExec>() else {
        return Ok(None);
    };
    if scan.searchers.is_some()
        || scan
            .columns
            .iter()
            .any(|c| matches!(c, ColumnSpec::DocAddress))
    {
        return Ok(None);
    }
    let mut needed: HashSet<usize> = HashSet::new();
    for sort_expr in sort.expr().iter() {
        needed.extend(collect_columns(&sort_expr.expr).iter().map(Column::index));
    }
    for step in &between {
        if let Between::Filter(predicate) = step {
            needed.extend(collect_columns(predicate).iter().map(Column::index));
        }
    }
    // Scores exist only in the scan that matched: `_score` is read there, never fetched.
    needed.extend(
        scan.columns
            .iter()
            .enumerate()
            .filter(|(_, c)| matches!(c, ColumnSpec::Score))
            .map(|(index, _)| index),
    );
    if needed.len() >= scan.columns.len() {
        return Ok(None);
    }
    // Full-schema position → position in the narrow scan.
    let mut kept: Vec<Option<usize>> = vec![None; scan.columns.len()];
    let mut narrow_columns = Vec::with_capacity(needed.len() + 1);
    for (index, spec) in scan.columns.iter().enumerate() {
        if needed.contains(&index) {
            kept[index] = Some(narrow_columns.len());
            narrow_columns.push(spec.clone());
        }
    }
    let address_index = narrow_columns.len();
    narrow_columns.push(ColumnSpec::DocAddress);
    let searchers = Arc::new(ScanSearchers::default());
    let mut narrow = TantivyScanExec::new(
        scan.table.clone(),
        scan.shards.clone(),
        narrow_columns,
        scan.filters.clone(),
        scan.limit,
        scan.realtime_ids.clone(),
        scan.visible_seq_nos.clone(),
    );
    narrow.searchers = Some(Arc::clone(&searchers));
    narrow.match_spec = scan.match_spec.clone();
    narrow.top_k = scan.top_k;
    let narrow_schema = narrow.schema.clone();
    let remap = |expr: &Arc<dyn PhysicalExpr>| -> DfResult<Arc<dyn PhysicalExpr>> {
        Arc::clone(expr)
            .transform(|e| {
                Ok(match e.downcast_ref::<Column>() {
                    Some(column) => {
                        let index = kept.get(column.index()).copied().flatten().ok_or_else(|| {
                            DataFusionError::Internal(format!(
                                "late fetch: column {} is not read",
                                column.name()
                            ))
                        })?;
                        let name = narrow_schema.field(index).name();
                        Transformed::yes(Arc::new(Column::new(name, index)) as Arc<dyn PhysicalExpr>)
                    }
                    None => Transformed::no(e),
                })
            })
            .map(|t| t.data)
    };
    let mut input: Arc<dyn ExecutionPlan> = Arc::new(narrow);
    for step in between.iter().rev() {
        input = match step {
            Between::Filter(predicate) => Arc::new(FilterExec::try_new(remap(predicate)?, input)?),
            Between::Cooperative => Arc::new(CooperativeExec::new(input)),
        };
    }
    let ordering = sort
        .expr()
        .iter()
        .map(|e| Ok(PhysicalSortExpr::new(remap(&e.expr)?, e.options)))
        .collect::<DfResult<Vec<_>>>()?;
    let Some(ordering) = LexOrdering::new(ordering) else {
        return Ok(None);
    };
    let narrow_sort = SortExec::new(ordering, input)
        .with_preserve_partitioning(sort.preserve_partitioning())
        .with_fetch(sort.fetch());
    Ok(Some(Arc::new(FetchExec {
        input: Arc::new(narrow_sort),
        columns: scan.columns.clone(),
        kept,
        address_index,
        searchers,
        schema: sort.schema(),
        properties: Arc::clone(sort.properties()),
    })))
}

/// Reads the columns a top-N did not need at the addresses of the rows it emits.
pub struct FetchExec {
    input: Arc<dyn ExecutionPlan>,
    /// The scan's full output, in order.
    columns: Vec<ColumnSpec>,
    /// Per full column: its position in the input, if the input has it.
    kept: Vec<Option<usize>>,
    address_index: usize,
    searchers: Arc<ScanSearchers>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl fmt::Debug for FetchExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchExec")
            .field("columns", &self.columns)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for FetchExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let fetched: Vec<&str> = self
            .columns
            .iter()
            .zip(&self.kept)
            .filter(|(_, kept)| kept.is_none())
            .map(|(spec, _)| spec.name())
            .collect();
        write!(f, "FetchExec: fetched=[{}]", fetched.join(", "))
    }
}

impl ExecutionPlan for FetchExec {
    fn name(&self) -> &str {
        "FetchExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> DfResult<TreeNodeRecursion>,
    ) -> DfResult<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let [input] = <[_; 1]>::try_from(children)
            .map_err(|_| DataFusionError::Internal("FetchExec has one child".into()))?;
        Ok(Arc::new(FetchExec {
            input,
            columns: self.columns.clone(),
            kept: self.kept.clone(),
            address_index: self.address_index,
            searchers: Arc::clone(&self.searchers),
            schema: self.schema.clone(),
            properties: Arc::clone(&self.properties),
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context)?;
        let fetch = Arc::new(Fetch {
            columns: self.columns.clone(),
            kept: self.kept.clone(),
            address_index: self.address_index,
            searchers: Arc::clone(&self.searchers),
            schema: self.schema.clone(),
        });
        let stream = input.then(move |batch| {
            let fetch = Arc::clone(&fetch);
            async move {
                let batch = batch?;
                tokio::task::spawn_blocking(move || fetch.complete(&batch))
                    .await
                    .map_err(|e| DataFusionError::External(Box::new(e)))?
            }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            self.schema.clone(),
            stream,
        )))
    }
}

/// What one execution of a [`FetchExec`] needs, shared with its blocking reads.
struct Fetch {
    columns: Vec<ColumnSpec>,
    kept: Vec<Option<usize>>,
    address_index: usize,
    searchers: Arc<ScanSearchers>,
    schema: SchemaRef,
}

impl Fetch {
    /// `batch` (the needed columns and addresses) with every column of the full output.
    fn complete(&self, batch: &RecordBatch) -> DfResult<RecordBatch> {
        let addresses = batch
            .column(self.address_index)
            .as_primitive_opt::<UInt64Type>()
            .ok_or_else(|| DataFusionError::Internal("late fetch: no addresses".into()))?;
        // Rows by (partition, segment), each group's documents ascending as reads want them.
        let mut groups: BTreeMap<(usize, usize), Vec<(DocId, usize)>> = BTreeMap::new();
        for (row, address) in addresses.iter().enumerate() {
            let address = address
                .ok_or_else(|| DataFusionError::Internal("late fetch: a NULL address".into()))?;
            let (partition, segment, doc) = split_address(address);
            groups
                .entry((partition, segment))
                .or_default()
                .push((doc, row));
        }
        let mut indices = vec![(0, 0); batch.num_rows()];
        let mut group_docs = Vec::with_capacity(groups.len());
        let mut segments = Vec::with_capacity(groups.len());
        for (group, ((partition, segment), mut rows)) in groups.into_iter().enumerate() {
            rows.sort_unstable();
            let searcher = self.searchers.get(partition).ok_or_else(|| {
                DataFusionError::Internal(format!("late fetch: partition {partition} not scanned"))
            })?;
            if segment >= searcher.segment_readers().len() {
                return Err(DataFusionError::Internal(format!(
                    "late fetch: segment {segment} not in the scan's searcher"
                )));
            }
            for (position, (_, row)) in rows.iter().enumerate() {
                indices[*row] = (group, position);
            }
            group_docs.push(rows.into_iter().map(|(doc, _)| doc).collect::<Vec<_>>());
            segments.push((searcher, segment));
        }
        let tantivy_err = |e: tantivy::TantivyError| DataFusionError::External(Box::new(e));
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.columns.len());
        for (spec, kept) in self.columns.iter().zip(&self.kept) {
            if let Some(index) = kept {
                arrays.push(Arc::clone(batch.column(*index)));
                continue;
            }
            let mut parts: Vec<ArrayRef> = Vec::with_capacity(segments.len());
            for ((searcher, segment), docs) in segments.iter().zip(&group_docs) {
                let reader = searcher.segment_reader(*segment as u32);
                let opened = open_segment_column(reader, spec, docs.len()).map_err(tantivy_err)?;
                parts.push(
                    read_column(&opened, spec, docs)
                        .map_err(|e| DataFusionError::External(Box::new(e)))?,
                );
            }
            arrays.push(if parts.is_empty() {
                datafusion::arrow::array::new_empty_array(&spec.arrow_type())
            } else {
                let parts: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                interleave(&parts, &indices)?
            });
        }
        Ok(RecordBatch::try_new(self.schema.clone(), arrays)?)
    }
}

#[cfg(test)]
mod tests {
    use creek_common::schema::{ColumnDef, ColumnIndex, TableSchema, ID_COLUMN};
    use creek_common::types::ColumnType;
    use creek_common::{ShardId, TableId};
    use creek_proto::v1::WriteMode;
    use datafusion::arrow::array::{Float64Array, Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::util::pretty::pretty_format_batches;
    use datafusion::logical_expr::Operator;
    use datafusion::physical_expr::expressions::{binary, col, lit};
    use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
    use datafusion::physical_plan::{collect, displayable};
    use datafusion::prelude::SessionContext;

    use super::*;
    use crate::codec::column_spec;
    use crate::shard::copy::CopyRole;
    use crate::shard::Shard;

    fn table() -> Arc<TableSchema> {
        let column = |name: &str, column_type: ColumnType| ColumnDef {
            name: name.into(),
            column_type,
            not_null: false,
            default_expr: None,
            generated: None,
            index: ColumnIndex::Plain,
        };
        Arc::new(TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![
                column("n", ColumnType::Integer),
                column("url", ColumnType::Text { max_len: None }),
                column("score", ColumnType::Double),
                column("tag", ColumnType::Text { max_len: None }),
            ],
            primary_key: vec!["n".into()],
            clustered_by: None,
            num_shards: 1,
            settings: Default::default(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 1,
        })
    }

    fn write(shard: &Shard, n: Vec<i32>, op: &str) {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new("n", DataType::Int32, false),
            Field::new("url", DataType::Utf8, true),
            Field::new("score", DataType::Float64, true),
            Field::new("tag", DataType::Utf8, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    n.iter().map(|n| n.to_string()),
                )),
                Arc::new(Int32Array::from(n.clone())),
                Arc::new(StringArray::from_iter(
                    n.iter()
                        .map(|n| (n % 5 != 0).then(|| format!("http://site{}/", n % 7))),
                )),
                Arc::new(Float64Array::from_iter_values(
                    n.iter().map(|n| f64::from(n % 13)),
                )),
                Arc::new(StringArray::from_iter_values(
                    n.iter().map(|n| format!("tag{n}")),
                )),
            ],
        )
        .unwrap();
        let rows = creek_proto::ipc::batch_to_ipc(&batch).unwrap();
        shard.write(WriteMode::Insert, &rows, &[], &[], op).unwrap();
        shard.refresh().unwrap();
    }

    /// The rewritten top-N gives the rows, values and order of the original plan.
    #[test]
    fn a_top_n_fetches_the_other_columns_of_the_rows_it_keeps() {
        let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
        let shards: Vec<Arc<Shard>> = dirs
            .iter()
            .enumerate()
            .map(|(i, dir)| {
                let id = ShardId {
                    table: TableId(1),
                    shard: i as u32,
                };
                let shard = Shard::open(id, dir.path(), table()).unwrap();
                shard.set_role(CopyRole {
                    allocation_id: format!("p{i}"),
                    primary: true,
                    primary_term: 1,
                    peers: Vec::new(),
                });
                // Two segments per shard; the shards' keys interleave, so the global top-N
                // holds rows of both and each is fetched from its own shard's searcher.
                let keys = |range: std::ops::Range<i32>| range.map(|k| 2 * k + i as i32).collect();
                write(&shard, keys(0..300), "op-1");
                write(&shard, keys(300..700), "op-2");
                Arc::new(shard)
            })
            .collect();
        let columns: Vec<ColumnSpec> = ["n", "url", "score", "tag"]
            .iter()
            .map(|name| column_spec(&table(), name).unwrap())
            .collect();
        let scan = Arc::new(TantivyScanExec::new(
            table(),
            shards,
            columns,
            Vec::new(),
            None,
            Vec::new(),
            Vec::new(),
        ));
        let schema = scan.schema();
        let predicate = binary(
            col("score", &schema).unwrap(),
            Operator::Gt,
            lit(7.0),
            &schema,
        )
        .unwrap();
        let filter = Arc::new(FilterExec::try_new(predicate, scan).unwrap());
        let ordering = LexOrdering::new(vec![PhysicalSortExpr::new(
            col("n", &schema).unwrap(),
            datafusion::arrow::compute::SortOptions {
                descending: true,
                nulls_first: false,
            },
        )])
        .unwrap();
        let sort: Arc<dyn ExecutionPlan> = Arc::new(
            SortExec::new(ordering, filter)
                .with_preserve_partitioning(true)
                .with_fetch(Some(7)),
        );
        let rewritten = defer_columns(Arc::clone(&sort)).unwrap();
        let shown = displayable(rewritten.as_ref()).indent(true).to_string();
        assert!(shown.contains("FetchExec: fetched=[url, tag]"), "{shown}");
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let task_ctx = SessionContext::new().task_ctx();
        let merged_order = sort.properties().output_ordering().unwrap().clone();
        let run = |plan: Arc<dyn ExecutionPlan>| {
            // The global top 7 over both shards, as the data node's merge gives it: what
            // each shard's partition emits beyond that is not defined (a top-N may skip rows
            // another partition's top-N already beats).
            let plan = Arc::new(
                SortPreservingMergeExec::new(merged_order.clone(), plan).with_fetch(Some(7)),
            );
            let batches = runtime
                .block_on(collect(plan, Arc::clone(&task_ctx)))
                .unwrap();
            pretty_format_batches(&batches).unwrap().to_string()
        };
        let expected = run(sort);
        assert_eq!(run(rewritten), expected);
        assert!(expected.contains("http://site"), "{expected}");
        assert_eq!(expected.matches("tag").count(), 7 + 1, "{expected}");
        // 1399 (n % 13 = 8) is the odd shard's largest key, 1390 (n % 13 = 12) the even one's.
        assert!(expected.contains("tag1399"), "{expected}");
        assert!(expected.contains("tag1390"), "{expected}");
    }
}
