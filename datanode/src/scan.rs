//! `TantivyScanExec`: the leaf of every plan fragment on a data node. Each output partition
//! scans one shard: it runs the pushed-down filters as a tantivy query, narrows the matches by
//! the filters on one text column that can be decided per dictionary term (`term_filter`), then
//! reads the remaining documents' fast fields into Arrow batches on a blocking thread.

pub mod columns;
pub mod fulltext;
pub mod late_fetch;
pub mod query;
mod term_filter;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use creek_common::fulltext::MatchSpec;
use creek_common::schema::TableSchema;
use datafusion::arrow::array::{ArrayRef, Float32Array};
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
    SendableRecordBatchStream,
};
use std::collections::BTreeMap;

use tantivy::collector::TopDocs;
use tantivy::query::{AllQuery, BooleanQuery, ConstScoreQuery, EnableScoring, Occur, Query};
use tantivy::DocId;

use crate::shard::Shard;
use columns::{open_segment_column, read_column, ColumnSpec, SegmentColumn};

/// How long a scan waits for a copy to apply the reading session's writes: a replica gets
/// a write before its primary answers it, so this is only ever a brief wait; a copy that
/// takes longer is behind (dropped from the in-sync set, still in the reader's routing) and
/// fails the read as unavailable (the coordinator plans a query that returned nothing yet
/// again, on newer routing).
pub const CATCH_UP_WAIT: Duration = Duration::from_secs(2);

/// Rows per Arrow batch produced by a shard scan.
pub const BATCH_ROWS: usize = 8192;

/// Scans shards of one table on this node; partition `i` reads `shards[i]`.
#[derive(Debug)]
pub struct TantivyScanExec {
    table: Arc<TableSchema>,
    shards: Vec<Arc<Shard>>,
    columns: Vec<ColumnSpec>,
    filters: Vec<Expr>,
    limit: Option<usize>,
    realtime_ids: Vec<String>,
    /// Aligned with `shards`: the sequence number each must show before it is scanned.
    visible_seq_nos: Vec<u64>,
    /// Where each partition leaves the searcher it read, when a late fetch reads from it too.
    searchers: Option<Arc<late_fetch::ScanSearchers>>,
    /// The query's `MATCH` on this table: only documents it matches are read, and `_score`
    /// is their relevance.
    match_spec: Option<Arc<MatchSpec>>,
    /// Set when a top-k by `_score` is all the plan above wants of each shard.
    top_k: Option<usize>,
    schema: SchemaRef,
    properties: Arc<PlanProperties>,
}

impl TantivyScanExec {
    /// Creates a scan of `shards` producing `columns`; shard `i` first makes the operations
    /// up to `visible_seq_nos[i]` visible (missing entries: none).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: Arc<TableSchema>,
        shards: Vec<Arc<Shard>>,
        columns: Vec<ColumnSpec>,
        filters: Vec<Expr>,
        limit: Option<usize>,
        realtime_ids: Vec<String>,
        visible_seq_nos: Vec<u64>,
    ) -> TantivyScanExec {
        let fields: Vec<Field> = columns
            .iter()
            .map(|spec| Field::new(spec.name(), spec.arrow_type(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(schema.clone()),
            Partitioning::UnknownPartitioning(shards.len().max(1)),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        TantivyScanExec {
            table,
            shards,
            columns,
            filters,
            limit,
            realtime_ids,
            visible_seq_nos,
            searchers: None,
            match_spec: None,
            top_k: None,
            schema,
            properties,
        }
    }

    /// The scan restricted to (and scored by) `spec`.
    pub fn with_match(mut self, spec: MatchSpec) -> TantivyScanExec {
        self.match_spec = Some(Arc::new(spec));
        self
    }

    /// The scanned table.
    pub fn table(&self) -> &TableSchema {
        &self.table
    }

    /// The columns the scan produces.
    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// Whether the scan runs a `MATCH`.
    pub fn has_match(&self) -> bool {
        self.match_spec.is_some()
    }

    /// The scan producing only each shard's `k` best-scoring matches.
    pub fn with_top_k(&self, k: usize) -> TantivyScanExec {
        TantivyScanExec {
            table: self.table.clone(),
            shards: self.shards.clone(),
            columns: self.columns.clone(),
            filters: self.filters.clone(),
            limit: self.limit,
            realtime_ids: self.realtime_ids.clone(),
            visible_seq_nos: self.visible_seq_nos.clone(),
            searchers: self.searchers.clone(),
            match_spec: self.match_spec.clone(),
            top_k: Some(k),
            schema: self.schema.clone(),
            properties: self.properties.clone(),
        }
    }
}

impl DisplayAs for TantivyScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TantivyScanExec: table={}.{}, shards={:?}, filters=[{}], limit={:?}{}",
            self.table.schema_name,
            self.table.name,
            self.shards.iter().map(|s| s.id().shard).collect::<Vec<_>>(),
            self.filters
                .iter()
                .map(|f| f.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            self.limit,
            match &self.match_spec {
                Some(spec) => format!(
                    ", match={:?} on {:?}, top_k={:?}",
                    spec.query, spec.fields, self.top_k
                ),
                None => String::new(),
            }
        )
    }
}

impl ExecutionPlan for TantivyScanExec {
    fn name(&self) -> &str {
        "TantivyScanExec"
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
        _context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStream::builder(self.schema.clone(), 2);
        let Some(shard) = self.shards.get(partition).cloned() else {
            return Ok(builder.build());
        };
        let sender = builder.tx();
        let table = self.table.clone();
        let columns = self.columns.clone();
        let filters = self.filters.clone();
        let limit = self.limit;
        let realtime_ids = self.realtime_ids.clone();
        let visible_seq_no = self.visible_seq_nos.get(partition).copied().unwrap_or(0);
        let schema = self.schema.clone();
        let searchers = self.searchers.clone();
        let match_spec = self.match_spec.clone();
        let top_k = self.top_k;
        builder.spawn_blocking(move || {
            shard.ensure_visible(visible_seq_no, CATCH_UP_WAIT)?;
            scan_shard(
                &shard,
                &table,
                ScanRequest {
                    columns: &columns,
                    filters: &filters,
                    match_spec: match_spec.as_deref(),
                    top_k,
                    limit,
                    realtime_ids: &realtime_ids,
                },
                searchers.as_deref().map(|searchers| (searchers, partition)),
                schema,
                |batch| sender.blocking_send(Ok(batch)).is_ok(),
            )
        });
        Ok(builder.build())
    }
}

/// The live rows with `ids` of one shard, real-time (refreshing first if one of them was
/// written since the last refresh): a term lookup per id and a read of `columns` at the
/// documents found — no query, no plan. Rows come grouped by segment; ids not found are
/// left out.
pub fn lookup_ids(
    shard: &Shard,
    columns: &[ColumnSpec],
    ids: &[String],
    schema: SchemaRef,
) -> DfResult<RecordBatch> {
    shard.refresh_if_any_live(ids)?;
    let searcher = shard.searcher();
    let mut by_segment: std::collections::BTreeMap<u32, Vec<DocId>> = Default::default();
    for id in ids {
        if let Some(address) = shard.find_document(&searcher, id)? {
            by_segment
                .entry(address.segment_ord)
                .or_default()
                .push(address.doc_id);
        }
    }
    let tantivy_err = |e: tantivy::TantivyError| DataFusionError::External(Box::new(e));
    let mut batches = Vec::with_capacity(by_segment.len());
    for (ordinal, mut docs) in by_segment {
        docs.sort_unstable();
        docs.dedup();
        let segment = searcher.segment_reader(ordinal);
        let arrays = columns
            .iter()
            .map(|spec| {
                let column = open_segment_column(segment, spec, docs.len()).map_err(tantivy_err)?;
                read_column(&column, spec, &docs)
                    .map_err(|e| DataFusionError::External(Box::new(e)))
            })
            .collect::<DfResult<Vec<_>>>()?;
        batches.push(RecordBatch::try_new_with_options(
            schema.clone(),
            arrays,
            &datafusion::arrow::record_batch::RecordBatchOptions::new()
                .with_row_count(Some(docs.len())),
        )?);
    }
    Ok(datafusion::arrow::compute::concat_batches(
        &schema, &batches,
    )?)
}

/// What one shard scan reads.
pub(crate) struct ScanRequest<'a> {
    pub columns: &'a [ColumnSpec],
    pub filters: &'a [Expr],
    pub match_spec: Option<&'a MatchSpec>,
    /// Only the this many best-scoring documents are wanted (a top-k by `_score` above).
    pub top_k: Option<usize>,
    pub limit: Option<usize>,
    pub realtime_ids: &'a [String],
}

/// Scans one shard, handing each batch to `emit`; stops early when `emit` returns false (the
/// consumer went away) or the limit is reached.
fn scan_shard(
    shard: &Shard,
    table: &TableSchema,
    request: ScanRequest<'_>,
    keep_searcher: Option<(&late_fetch::ScanSearchers, usize)>,
    schema: SchemaRef,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> DfResult<()> {
    let ScanRequest {
        columns,
        filters,
        match_spec,
        top_k,
        limit,
        realtime_ids,
    } = request;
    if !realtime_ids.is_empty() {
        shard.refresh_if_any_live(realtime_ids)?;
    }
    let searcher = shard.searcher();
    if let Some((searchers, partition)) = keep_searcher {
        searchers.keep(partition, &searcher);
    }
    if columns.is_empty() && filters.is_empty() && match_spec.is_none() {
        // Rows without columns (`count(*)`): each segment's live-document count says how
        // many, no document needs to be enumerated.
        let live = searcher
            .segment_readers()
            .iter()
            .map(|segment| segment.num_docs() as usize)
            .sum::<usize>();
        return emit_row_counts(live.min(limit.unwrap_or(usize::MAX)), &schema, emit);
    }
    let layout = query::Layout {
        table,
        schema: shard.schema(),
        fields: shard.fields(),
    };
    let tantivy_err = |e: tantivy::TantivyError| DataFusionError::External(Box::new(e));
    let filter_query = query::query_for_filters(layout, filters);
    let scored = match_spec.is_some() && columns.iter().any(|c| matches!(c, ColumnSpec::Score));
    let query: Box<dyn Query> = match (match_spec, filter_query) {
        (None, filter) => filter.unwrap_or_else(|| Box::new(AllQuery)),
        (Some(spec), None) => fulltext::match_query(spec, searcher.index()).map_err(tantivy_err)?,
        // The other filters narrow the matches without adding to their scores.
        (Some(spec), Some(filter)) => Box::new(BooleanQuery::new(vec![
            (
                Occur::Must,
                fulltext::match_query(spec, searcher.index()).map_err(tantivy_err)?,
            ),
            (Occur::Must, Box::new(ConstScoreQuery::new(filter, 0.0))),
        ])),
    };
    let term_filters = term_filter::term_filters(table, filters);
    let table_statistics = match match_spec {
        Some(spec) if scored => spec
            .stats
            .as_ref()
            .map(|stats| fulltext::TableStatistics::new(spec, stats, &searcher)),
        _ => None,
    };
    let scoring = match (&table_statistics, scored) {
        (Some(statistics), _) => {
            EnableScoring::enabled_from_statistics_provider(statistics, &searcher)
        }
        (None, true) => EnableScoring::enabled_from_searcher(&searcher),
        (None, false) => EnableScoring::disabled_from_searcher(&searcher),
    };
    let mut remaining = limit.unwrap_or(usize::MAX);
    let mut out = SegmentOutput {
        columns,
        keep_searcher,
        schema: &schema,
        remaining: &mut remaining,
        emit: &mut emit,
    };
    if let Some(k) = top_k.filter(|_| scored && term_filters.is_empty()) {
        // The k best-scoring documents of the shard, found with tantivy's top-k collector,
        // which skips blocks of postings that cannot make the cut (block-max WAND).
        let collector = TopDocs::with_limit(k).order_by_score();
        let top = match &table_statistics {
            Some(statistics) => {
                searcher.search_with_statistics_provider(query.as_ref(), &collector, statistics)
            }
            None => searcher.search(query.as_ref(), &collector),
        }
        .map_err(tantivy_err)?;
        let mut by_segment: BTreeMap<u32, Vec<(DocId, f32)>> = BTreeMap::new();
        for (score, address) in top {
            by_segment
                .entry(address.segment_ord)
                .or_default()
                .push((address.doc_id, score));
        }
        for (segment_ord, mut hits) in by_segment {
            hits.sort_unstable_by_key(|(doc, _)| *doc);
            let docs: Vec<DocId> = hits.iter().map(|(doc, _)| *doc).collect();
            let scores: Vec<f32> = hits.iter().map(|(_, score)| *score).collect();
            let segment = searcher.segment_reader(segment_ord);
            let decoded = term_filter::Decoded::default();
            if !out.emit_segment(segment_ord as usize, segment, &docs, &scores, &decoded)? {
                break;
            }
        }
        return Ok(());
    }
    let weight = query.weight(scoring).map_err(tantivy_err)?;
    for (segment_ord, segment) in searcher.segment_readers().iter().enumerate() {
        if *out.remaining == 0 {
            break;
        }
        let mut docs: Vec<DocId> = Vec::new();
        // Aligned with `docs` when the scan reads `_score`.
        let mut scores: Vec<f32> = Vec::new();
        if scored {
            weight
                .for_each(segment, &mut |doc, score| {
                    docs.push(doc);
                    scores.push(score);
                })
                .map_err(tantivy_err)?;
        } else {
            weight
                .for_each_no_score(segment, &mut |matched| docs.extend_from_slice(matched))
                .map_err(tantivy_err)?;
        }
        if let Some(alive) = segment.alive_bitset() {
            retain_aligned(&mut docs, &mut scores, |doc| alive.is_alive(doc));
        }
        let mut decoded = term_filter::Decoded::default();
        let before_term_filters =
            (!scores.is_empty() && !term_filters.is_empty()).then(|| docs.clone());
        for filter in &term_filters {
            if docs.is_empty() {
                break;
            }
            filter
                .retain(segment, &mut docs, &mut decoded)
                .map_err(tantivy_err)?;
        }
        if let Some(before) = before_term_filters {
            scores = kept_scores(&before, &scores, &docs);
        }
        if docs.is_empty() {
            continue;
        }
        if !out.emit_segment(segment_ord, segment, &docs, &scores, &decoded)? {
            break;
        }
    }
    Ok(())
}

/// Where a shard scan's rows go: the columns it reads, its limit, its consumer.
struct SegmentOutput<'a, E: FnMut(RecordBatch) -> bool> {
    columns: &'a [ColumnSpec],
    keep_searcher: Option<(&'a late_fetch::ScanSearchers, usize)>,
    schema: &'a SchemaRef,
    /// Rows the limit still allows.
    remaining: &'a mut usize,
    emit: &'a mut E,
}

impl<E: FnMut(RecordBatch) -> bool> SegmentOutput<'_, E> {
    /// Reads the columns of `docs` (ascending; `scores` aligned with them, or empty) of one
    /// segment and emits them in batches. False once the consumer is gone or the limit met.
    fn emit_segment(
        &mut self,
        segment_ord: usize,
        segment: &tantivy::SegmentReader,
        docs: &[DocId],
        scores: &[f32],
        decoded: &term_filter::Decoded,
    ) -> DfResult<bool> {
        let tantivy_err = |e: tantivy::TantivyError| DataFusionError::External(Box::new(e));
        let remaining = *self.remaining;
        let opened = self
            .columns
            .iter()
            .map(|spec| match spec {
                // Filled from the scores per batch below.
                ColumnSpec::Score => Ok(SegmentColumn::DocAddress(0)),
                ColumnSpec::DocAddress => {
                    let partition = self.keep_searcher.map_or(0, |(_, partition)| partition);
                    late_fetch::address_base(partition, segment_ord)
                        .map(SegmentColumn::DocAddress)
                        .ok_or_else(|| {
                            tantivy::TantivyError::InvalidArgument(format!(
                                "segment {segment_ord} of partition {partition} has no address"
                            ))
                        })
                }
                _ => match decoded.get(spec.name()) {
                    // A dictionary a term filter decoded: read from it, not decode it again.
                    Some(terms) => open_segment_column(segment, spec, 0).map(|mut column| {
                        if let SegmentColumn::Str(columns) = &mut column {
                            columns.adopt(terms);
                        }
                        column
                    }),
                    None => open_segment_column(segment, spec, docs.len().min(remaining)),
                },
            })
            .collect::<tantivy::Result<Vec<_>>>()
            .map_err(tantivy_err)?;
        for (number, chunk) in docs.chunks(BATCH_ROWS).enumerate() {
            let take = chunk.len().min(*self.remaining);
            let chunk = &chunk[..take];
            let offset = number * BATCH_ROWS;
            let arrays = opened
                .iter()
                .zip(self.columns)
                .map(|(column, spec)| match spec {
                    ColumnSpec::Score => Ok(score_array(scores, offset, take)),
                    _ => read_column(column, spec, chunk),
                })
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| DataFusionError::External(Box::new(e)))?;
            let batch = if arrays.is_empty() {
                RecordBatch::try_new_with_options(
                    self.schema.clone(),
                    arrays,
                    &datafusion::arrow::record_batch::RecordBatchOptions::new()
                        .with_row_count(Some(take)),
                )?
            } else {
                RecordBatch::try_new(self.schema.clone(), arrays)?
            };
            if !(self.emit)(batch) {
                return Ok(false);
            }
            *self.remaining -= take;
            if *self.remaining == 0 {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// Keeps the documents (and their scores, when there are any) that `keep` accepts.
fn retain_aligned(docs: &mut Vec<DocId>, scores: &mut Vec<f32>, keep: impl Fn(DocId) -> bool) {
    if scores.is_empty() {
        docs.retain(|doc| keep(*doc));
        return;
    }
    let mut kept = 0;
    for i in 0..docs.len() {
        if keep(docs[i]) {
            docs[kept] = docs[i];
            scores[kept] = scores[i];
            kept += 1;
        }
    }
    docs.truncate(kept);
    scores.truncate(kept);
}

/// The scores of `kept`, a subsequence of `docs` (both ascending), aligned with `kept`.
fn kept_scores(docs: &[DocId], scores: &[f32], kept: &[DocId]) -> Vec<f32> {
    let mut out = Vec::with_capacity(kept.len());
    let mut i = 0;
    for doc in kept {
        while docs[i] != *doc {
            i += 1;
        }
        out.push(scores[i]);
    }
    out
}

/// The `_score` column of a batch of `take` rows from `offset`: the rows' scores, or 1 for
/// each row of a scan without `MATCH` (CrateDB's score of an unscored row).
fn score_array(scores: &[f32], offset: usize, take: usize) -> ArrayRef {
    if scores.is_empty() {
        return Arc::new(Float32Array::from(vec![1.0f32; take]));
    }
    Arc::new(Float32Array::from(scores[offset..offset + take].to_vec()))
}

/// Emits `rows` rows of no columns, in batches of [`BATCH_ROWS`].
fn emit_row_counts(
    mut rows: usize,
    schema: &SchemaRef,
    mut emit: impl FnMut(RecordBatch) -> bool,
) -> DfResult<()> {
    while rows > 0 {
        let take = rows.min(BATCH_ROWS);
        let batch = RecordBatch::try_new_with_options(
            schema.clone(),
            Vec::new(),
            &datafusion::arrow::record_batch::RecordBatchOptions::new().with_row_count(Some(take)),
        )?;
        if !emit(batch) {
            break;
        }
        rows -= take;
    }
    Ok(())
}
