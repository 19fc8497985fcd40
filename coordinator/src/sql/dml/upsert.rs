//! `INSERT ... ON CONFLICT (key) DO UPDATE SET ... [WHERE ...]`: a read-modify-write per row.
//!
//! Each incoming row is looked up by key in real time with its version; an absent one is
//! inserted (a duplicate then means another client inserted it meanwhile), a present one is
//! merged with the assignments (`excluded` names the incoming row) and written only if it
//! still has the version it was read at. Rows another writer changed in between are read and
//! merged again, so concurrent upserts never lose one another's changes. A row whose existing
//! version fails the `DO UPDATE ... WHERE` is left as it is and not counted, as in PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::{TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN};
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray, UInt32Array};
use datafusion::arrow::compute::{concat_batches, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;
use sqlparser::ast::{self, OnConflictAction};

use super::update::{conflict_pause, row_versions, CONFLICT_RETRIES};
use super::{assignment_column, collect_plan, conform_batch, write_batch, DmlContext};
use crate::error::{Error, Result};
use crate::plan::routing::ids_and_shards;

/// Name of the internal column telling whether a merged row's key existed.
const EXISTED: &str = "__creek_existed";
/// Name of the internal column holding the `DO UPDATE ... WHERE` of a merged row.
const QUALIFIES: &str = "__creek_qualifies";

/// Runs the upsert of `batch` (conformed rows); returns each row's status in batch order and
/// the rows written (merged ones for updated keys), in input order.
pub(super) async fn upsert(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    batch: &RecordBatch,
    on_conflict: &ast::OnConflict,
) -> Result<(Vec<RowStatus>, RecordBatch)> {
    let OnConflictAction::DoUpdate(update) = &on_conflict.action else {
        return Err(Error::new(ErrorCode::Internal, "upsert without DO UPDATE"));
    };
    if table.primary_key.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "ON CONFLICT DO UPDATE needs a table with a primary key",
        ));
    }
    // Keys of new partitions are looked up there like any other: the partitions must exist.
    let created = super::partitions::ensure_partitions(dml.cluster, table, batch).await?;
    let mut table = created.unwrap_or_else(|| table.clone());
    let (ids, _) = ids_and_shards(&table, batch)?;
    let mut seen = HashSet::with_capacity(ids.len());
    if let Some(twice) = ids.iter().find(|id| !seen.insert(id.as_str())) {
        return Err(Error::new(
            ErrorCode::CardinalityViolation,
            format!(
                "ON CONFLICT DO UPDATE command cannot affect row {twice} a second time: \
                 the INSERT proposes that key twice"
            ),
        ));
    }
    let mut statuses = vec![RowStatus::Ok; batch.num_rows()];
    let mut written: Vec<Option<RecordBatch>> = vec![None; batch.num_rows()];
    let mut pending: Vec<u32> = (0..batch.num_rows() as u32).collect();
    for attempt in 0..=CONFLICT_RETRIES {
        conflict_pause(attempt).await;
        let rows = take_record_batch(batch, &UInt32Array::from(pending.clone()))?;
        let merged = merge(dml, &table, &rows, update).await?;
        let mut retry = Vec::new();
        let existed = bool_column(&merged, EXISTED)?;
        let qualifies = bool_column(&merged, QUALIFIES)?;
        let versions = row_versions(&merged)?;
        // `DO UPDATE SET o = ...` may bring new keys of dynamic objects.
        if let Some(widened) =
            super::objects::ensure_object_keys(dml.cluster, &table, &merged).await?
        {
            table = widened;
        }
        let table = &table;
        let values = conform_batch(table, &merged)?;
        let mut inserts = Vec::new();
        let mut updates = Vec::new();
        for (position, input_row) in pending.iter().enumerate() {
            if !existed.value(position) {
                inserts.push((position as u32, *input_row));
            } else if qualifies.is_valid(position) && qualifies.value(position) {
                updates.push((position as u32, *input_row));
            } else {
                statuses[*input_row as usize] = RowStatus::Skipped;
            }
        }
        if !inserts.is_empty() {
            let positions: Vec<u32> = inserts.iter().map(|(p, _)| *p).collect();
            let part = take_record_batch(&values, &UInt32Array::from(positions))?;
            let (part_statuses, part_rows) =
                write_batch(dml.cluster, table, &part, WriteMode::Insert, dml.visibility).await?;
            for (index, ((_, input_row), status)) in inserts.iter().zip(part_statuses).enumerate() {
                match status {
                    // Inserted by someone else since it was read: merge with theirs.
                    RowStatus::Duplicate => retry.push(*input_row),
                    status => {
                        statuses[*input_row as usize] = status;
                        written[*input_row as usize] = Some(part_rows.slice(index, 1));
                    }
                }
            }
        }
        if !updates.is_empty() {
            let positions: Vec<u32> = updates.iter().map(|(p, _)| *p).collect();
            let part = take_record_batch(&values, &UInt32Array::from(positions.clone()))?;
            let part_versions: Vec<(u64, u64)> =
                positions.iter().map(|p| versions[*p as usize]).collect();
            let part_statuses = update_if_version(dml, table, &part, &part_versions).await?;
            for (index, ((_, input_row), status)) in updates.iter().zip(part_statuses).enumerate() {
                match status {
                    // Changed or deleted since it was read: read and merge again.
                    RowStatus::VersionConflict | RowStatus::NotFound => retry.push(*input_row),
                    status => {
                        statuses[*input_row as usize] = status;
                        written[*input_row as usize] = Some(part.slice(index, 1));
                    }
                }
            }
        }
        if retry.is_empty() {
            let schema = table.arrow_schema();
            let rows: Vec<RecordBatch> = written
                .into_iter()
                .flatten()
                .map(|row| conform_batch(table, &row))
                .collect::<Result<_>>()?;
            return Ok((statuses, concat_batches(&schema, &rows)?));
        }
        retry.sort_unstable();
        pending = retry;
    }
    Err(Error::new(
        ErrorCode::SerializationFailure,
        format!(
            "could not upsert {} row(s) of {}: they kept changing concurrently; retry the statement",
            pending.len(),
            table.name
        ),
    ))
}

fn bool_column<'a>(batch: &'a RecordBatch, name: &str) -> Result<&'a BooleanArray> {
    batch
        .column_by_name(name)
        .and_then(|a| a.as_any().downcast_ref::<BooleanArray>())
        .ok_or_else(|| Error::new(ErrorCode::Internal, format!("merge lost {name}")))
}

/// Writes merged rows, each on condition of the version its existing row was read at.
async fn update_if_version(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    rows: &RecordBatch,
    versions: &[(u64, u64)],
) -> Result<Vec<RowStatus>> {
    let (ids, shards) = ids_and_shards(table, rows)?;
    let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, shard) in shards.iter().enumerate() {
        by_shard.entry(*shard).or_default().push(row as u32);
    }
    let mut fields = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
    fields.extend(rows.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids))];
    arrays.extend(rows.columns().iter().cloned());
    let with_ids = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let mut statuses = vec![RowStatus::Ok; rows.num_rows()];
    for (shard, shard_rows) in by_shard {
        let part = take_record_batch(&with_ids, &UInt32Array::from(shard_rows.clone()))?;
        let part_versions: Vec<(u64, u64)> = shard_rows
            .iter()
            .map(|row| versions[*row as usize])
            .collect();
        let part_statuses = dml
            .cluster
            .update_rows_if_version(table, shard, &part, &part_versions, dml.visibility)
            .await?;
        for (row, status) in shard_rows.iter().zip(part_statuses) {
            statuses[*row as usize] = status;
        }
    }
    Ok(statuses)
}

/// Reads the existing rows of `rows`' keys (real time, with versions) and computes, per input
/// row: the row to write (the incoming one for an absent key, the merged one otherwise),
/// whether the key existed, whether the existing row passes `DO UPDATE ... WHERE`, and the
/// existing row's version.
async fn merge(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    rows: &RecordBatch,
    update: &ast::DoUpdate,
) -> Result<RecordBatch> {
    let (ids, shards) = ids_and_shards(table, rows)?;
    let mut columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    columns.push(SEQ_NO_COLUMN.to_string());
    columns.push(PRIMARY_TERM_COLUMN.to_string());
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (id, shard) in ids.iter().zip(&shards) {
        by_shard.entry(*shard).or_default().push(id.clone());
    }
    let mut existing_batches = Vec::new();
    for (shard, shard_ids) in by_shard {
        existing_batches.push(
            dml.cluster
                .get_rows(table, shard, shard_ids, columns.clone())
                .await?,
        );
    }
    let ctx = SessionContext::new();
    ctx.register_udf(crate::plan::array_literal::text_to_array_function());
    creek_common::functions::register_shared(&ctx);
    let mut excluded_fields = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
    excluded_fields.extend(rows.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut excluded_arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids.clone()))];
    excluded_arrays.extend(rows.columns().iter().cloned());
    let excluded = RecordBatch::try_new(Arc::new(Schema::new(excluded_fields)), excluded_arrays)?;
    ctx.register_table(
        "excluded",
        Arc::new(MemTable::try_new(excluded.schema(), vec![vec![excluded]])?),
    )?;
    let existing_schema = existing_batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::new(ErrorCode::Internal, "no existing rows batch"))?;
    ctx.register_table(
        table.name.as_str(),
        Arc::new(MemTable::try_new(existing_schema, vec![existing_batches])?),
    )?;
    let assignments: BTreeMap<String, String> = update
        .assignments
        .iter()
        .filter_map(|a| Some((assignment_column(&a.target)?, a.value.to_string())))
        .collect();
    let t = format!("\"{}\"", table.name);
    let mut select: Vec<String> = vec![format!("excluded.\"{ID_COLUMN}\" AS \"{ID_COLUMN}\"")];
    if let Some(column) = table
        .columns
        .iter()
        .find(|c| c.generated.is_some() && assignments.contains_key(&c.name))
    {
        super::refuse_generated(column)?;
    }
    for column in assignments.keys() {
        super::refuse_partition_source(table, column)?;
    }
    select.extend(table.columns.iter().map(|c| match assignments.get(&c.name) {
        // An updated row's generated column is computed again when it is written.
        None if c.generated.is_some() => format!(
            "CASE WHEN {t}.\"{ID_COLUMN}\" IS NULL THEN excluded.\"{0}\" ELSE NULL END AS \"{0}\"",
            c.name
        ),
        // Old and new objects as JSON text: two objects' structs need not have one type.
        Some(expr) if super::objects::is_object(&c.column_type) => format!(
            "CASE WHEN {t}.\"{ID_COLUMN}\" IS NULL THEN {json}(excluded.\"{0}\") ELSE {json}({expr}) END AS \"{0}\"",
            c.name,
            json = creek_common::object::OBJECT_JSON_FUNCTION,
        ),
        Some(expr) => format!(
            "CASE WHEN {t}.\"{ID_COLUMN}\" IS NULL THEN excluded.\"{0}\" ELSE {expr} END AS \"{0}\"",
            c.name
        ),
        None => format!(
            "CASE WHEN {t}.\"{ID_COLUMN}\" IS NULL THEN excluded.\"{0}\" ELSE {t}.\"{0}\" END AS \"{0}\"",
            c.name
        ),
    }));
    select.push(format!("{t}.\"{ID_COLUMN}\" IS NOT NULL AS {EXISTED}"));
    let condition = update
        .selection
        .as_ref()
        .map_or_else(|| "true".to_string(), ToString::to_string);
    select.push(format!("({condition}) AS {QUALIFIES}"));
    select.push(format!(
        "coalesce({t}.\"{SEQ_NO_COLUMN}\", 0) AS \"{SEQ_NO_COLUMN}\""
    ));
    select.push(format!(
        "coalesce({t}.\"{PRIMARY_TERM_COLUMN}\", 0) AS \"{PRIMARY_TERM_COLUMN}\""
    ));
    // The input order is kept: `excluded` is scanned in order and each key matches at most
    // one existing row.
    let sql = format!(
        "SELECT {} FROM excluded LEFT JOIN {t} ON excluded.\"{ID_COLUMN}\" = {t}.\"{ID_COLUMN}\"",
        select.join(", ")
    );
    let plan = ctx.state().create_logical_plan(&sql).await?;
    let merged = collect_plan(&ctx, plan, dml.params).await?;
    let schema = merged
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| Error::new(ErrorCode::Internal, "the merge returned nothing"))?;
    let merged = concat_batches(&schema, &merged)?;
    // Joins may reorder; put the rows back in input order by key.
    reorder_by_ids(&merged, &ids)
}

/// `batch` (with an `_id` column) reordered so that its rows follow `ids`.
fn reorder_by_ids(batch: &RecordBatch, ids: &[String]) -> Result<RecordBatch> {
    let merged_ids = batch
        .column_by_name(ID_COLUMN)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::new(ErrorCode::Internal, "merge lost the _id column"))?;
    let position: std::collections::HashMap<&str, u32> = (0..merged_ids.len())
        .map(|row| (merged_ids.value(row), row as u32))
        .collect();
    let order = ids
        .iter()
        .map(|id| {
            position.get(id.as_str()).copied().ok_or_else(|| {
                Error::new(ErrorCode::Internal, format!("merge lost the row of {id}"))
            })
        })
        .collect::<Result<Vec<u32>>>()?;
    Ok(take_record_batch(batch, &UInt32Array::from(order))?)
}
