//! UPDATE: a query over the table (`_id` and every column, the assigned ones replaced by their
//! expressions, under the statement's WHERE) computes the new rows, which are written back as
//! upserts to their shards. The table is refreshed first so the query sees every
//! acknowledged write.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::{TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN};
use creek_proto::v1::RowStatus;
use datafusion::arrow::array::{Array, ArrayRef, Int64Array, StringArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use sqlparser::ast;

use super::{collect_plan, conform_batch, lookup_table, DmlContext};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::identifiers::last_name;
use crate::plan::params::placeholder_index;
use crate::plan::routing::{partitions_of_rows, routing_values, shard_of};
use crate::sql::Output;

/// The query an UPDATE runs to compute its rows, and what its assignments say about
/// parameter types.
struct UpdateQuery {
    table: TableSchema,
    /// `SELECT _id, _seq_no, _primary_term, <new column values> FROM <table>`.
    select: String,
    /// The UPDATE's WHERE, as SQL text.
    selection: Option<String>,
    /// `SET column = $n`: parameter `n` takes the column's type, as in PostgreSQL (the query
    /// alone cannot say, a bare parameter in a select list has no type).
    assigned_parameters: Vec<(usize, DataType)>,
}

fn update_query(
    cluster: &Cluster,
    default_schema: &str,
    update: &ast::Update,
) -> Result<UpdateQuery> {
    let ast::TableFactor::Table { name, alias, .. } = &update.table.relation else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "UPDATE of this relation is not supported",
        ));
    };
    if update.from.is_some() || !update.table.joins.is_empty() {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "UPDATE ... FROM is not supported",
        ));
    }
    let table = lookup_table(cluster, name, default_schema)?;
    let mut assignments: BTreeMap<String, String> = BTreeMap::new();
    let mut assigned_parameters = Vec::new();
    for assignment in &update.assignments {
        let column = match &assignment.target {
            ast::AssignmentTarget::ColumnName(name) => last_name(name),
            other => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    format!("UPDATE of {other} is not supported"),
                ))
            }
        };
        let Some(definition) = table.column(&column) else {
            return Err(Error::new(
                ErrorCode::UndefinedColumn,
                format!("column \"{column}\" does not exist"),
            ));
        };
        if table.primary_key.contains(&column)
            || table.clustered_by.as_deref() == Some(column.as_str())
        {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!("updating primary key or routing column \"{column}\" is not supported"),
            ));
        }
        super::refuse_generated(definition)?;
        super::refuse_partition_source(&table, &column)?;
        if let Some(index) = placeholder_index(&assignment.value) {
            assigned_parameters.push((index, definition.column_type.arrow_type()));
        }
        assignments.insert(column, assignment.value.to_string());
    }
    let select: Vec<String> = [ID_COLUMN, SEQ_NO_COLUMN, PRIMARY_TERM_COLUMN]
        .iter()
        .map(|hidden| format!("\"{hidden}\""))
        .chain(
            table
                .columns
                .iter()
                .map(|c| match assignments.get(&c.name) {
                    Some(expr) => format!("{expr} AS \"{}\"", c.name),
                    // Computed again from the updated row when it is written.
                    None if c.generated.is_some() => format!("NULL AS \"{}\"", c.name),
                    None => format!("\"{}\"", c.name),
                }),
        )
        .collect();
    let relation = match alias {
        Some(alias) => format!("{name} AS {alias}"),
        None => name.to_string(),
    };
    Ok(UpdateQuery {
        table,
        select: format!("SELECT {} FROM {relation}", select.join(", ")),
        selection: update.selection.as_ref().map(ToString::to_string),
        assigned_parameters,
    })
}

impl UpdateQuery {
    /// The query, optionally only over the rows with `ids` (a retry after conflicts).
    fn sql(&self, ids: Option<&[String]>) -> String {
        rows_query(&self.select, self.selection.as_deref(), ids)
    }
}

/// Returns the parameter types of an UPDATE, for extended-protocol Describe: those its query
/// infers (`WHERE id = $2`), then the assigned columns' types (`SET v = $1`).
pub(crate) async fn update_parameter_types(
    hidden_ctx: &SessionContext,
    cluster: &Cluster,
    default_schema: &str,
    update: &ast::Update,
) -> Result<Vec<Option<DataType>>> {
    let query = update_query(cluster, default_schema, update)?;
    let plan = super::plan_rows(hidden_ctx, &query.sql(None)).await?;
    let mut types = super::plan_parameter_types(&plan)?;
    for (index, data_type) in query.assigned_parameters {
        crate::plan::params::set_parameter_type(&mut types, index, Some(data_type));
    }
    Ok(types)
}

/// Executes an UPDATE: every row is written only if it still has the version it was read
/// at, so concurrent read-modify-writes (`SET n = n + 1`) never lose one another's changes
/// and an UPDATE never brings back a row deleted meanwhile. Rows changed between the read
/// and the write are read again (their WHERE re-evaluated) and retried.
pub async fn update(dml: &DmlContext<'_>, update: &ast::Update) -> Result<Output> {
    let query = update_query(dml.cluster, dml.default_schema, update)?;
    let table = &query.table;
    let mut count = 0u64;
    let mut retry_ids: Option<Vec<String>> = None;
    for attempt in 0..=CONFLICT_RETRIES {
        conflict_pause(attempt).await;
        dml.cluster.refresh_table(table).await?;
        let plan = super::plan_rows(dml.hidden_ctx, &query.sql(retry_ids.as_deref())).await?;
        let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
        let mut conflicts = Vec::new();
        for batch in batches {
            if batch.num_rows() == 0 {
                continue;
            }
            let outcome = write_updated_rows(dml, table, &batch).await?;
            count += outcome.written;
            conflicts.extend(outcome.conflicts);
        }
        if conflicts.is_empty() {
            return Ok(Output::Affected {
                tag: "UPDATE".into(),
                count,
            });
        }
        retry_ids = Some(conflicts);
    }
    Err(Error::new(
        ErrorCode::SerializationFailure,
        format!(
            "could not update {} row(s) of {}: they kept changing concurrently; retry the statement",
            retry_ids.map_or(0, |ids| ids.len()),
            table.name
        ),
    ))
}

/// How many times a read-modify-write re-reads rows that changed between its read and write.
pub(super) const CONFLICT_RETRIES: usize = 16;

/// Before retry `attempt` (0: the first try, no pause) of a read-modify-write that lost a
/// race: a random pause of up to 2^attempt ms (at most 64 ms), so that writers contending for
/// one row stop re-reading in lockstep and each gets through.
pub(super) async fn conflict_pause(attempt: usize) {
    if attempt == 0 {
        return;
    }
    let cap_ms = 1u128 << attempt.min(6);
    let ms = uuid::Uuid::new_v4().as_u128() % cap_ms;
    tokio::time::sleep(std::time::Duration::from_millis(ms as u64)).await;
}

/// The query over `select`'s rows under `selection`, optionally only those with `ids`.
pub(super) fn rows_query(select: &str, selection: Option<&str>, ids: Option<&[String]>) -> String {
    let mut sql = select.to_string();
    let only_ids = ids.map(|ids| {
        let quoted: Vec<String> = ids
            .iter()
            .map(|id| format!("'{}'", id.replace('\'', "''")))
            .collect();
        format!("\"{ID_COLUMN}\" IN ({})", quoted.join(", "))
    });
    match (selection, only_ids) {
        (Some(selection), Some(ids)) => sql.push_str(&format!(" WHERE ({selection}) AND {ids}")),
        (Some(selection), None) => sql.push_str(&format!(" WHERE {selection}")),
        (None, Some(ids)) => sql.push_str(&format!(" WHERE {ids}")),
        (None, None) => {}
    }
    sql
}

/// The version (`_seq_no`, `_primary_term`) of every row of a batch read with them.
pub(super) fn row_versions(batch: &RecordBatch) -> Result<Vec<(u64, u64)>> {
    let column = |name: &str| {
        batch
            .column_by_name(name)
            .and_then(|a| a.as_any().downcast_ref::<Int64Array>())
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("rows were read without {name}"),
                )
            })
    };
    let seq_nos = column(SEQ_NO_COLUMN)?;
    let terms = column(PRIMARY_TERM_COLUMN)?;
    Ok((0..batch.num_rows())
        .map(|row| {
            (
                seq_nos.value(row).max(0) as u64,
                terms.value(row).max(1) as u64,
            )
        })
        .collect())
}

struct UpdateOutcome {
    written: u64,
    conflicts: Vec<String>,
}

/// Writes one batch of updated rows (read with `_id`, `_seq_no`, `_primary_term`), each on
/// condition of the version it was read at.
async fn write_updated_rows(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    batch: &RecordBatch,
) -> Result<UpdateOutcome> {
    let widened = super::objects::ensure_object_keys(dml.cluster, table, batch).await?;
    let table = widened.as_ref().unwrap_or(table);
    let conformed = conform_batch(table, batch)?;
    let ids = batch
        .column_by_name(ID_COLUMN)
        .and_then(|a| a.as_any().downcast_ref::<StringArray>())
        .ok_or_else(|| Error::new(ErrorCode::Internal, "update lost the _id column"))?
        .clone();
    let versions = row_versions(batch)?;
    let routing = routing_values(table, &conformed)?;
    let located = super::partitions::current(dml.cluster, table);
    let partitions = partitions_of_rows(&located, &conformed)?;
    let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, (value, partition)) in routing.iter().zip(partitions).enumerate() {
        by_shard
            .entry(shard_of(table, partition, ids.value(row), value.as_deref()))
            .or_default()
            .push(row as u32);
    }
    let mut fields = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
    fields.extend(
        conformed
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone()),
    );
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.clone())];
    arrays.extend(conformed.columns().iter().cloned());
    let with_ids = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    let mut outcome = UpdateOutcome {
        written: 0,
        conflicts: Vec::new(),
    };
    for (shard, rows) in by_shard {
        let part = take_record_batch(&with_ids, &UInt32Array::from(rows.clone()))?;
        let part_versions: Vec<(u64, u64)> =
            rows.iter().map(|row| versions[*row as usize]).collect();
        let statuses = dml
            .cluster
            .update_rows_if_version(table, shard, &part, &part_versions, dml.visibility)
            .await?;
        for (row, status) in rows.iter().zip(statuses) {
            match status {
                RowStatus::Ok => outcome.written += 1,
                RowStatus::VersionConflict => {
                    outcome.conflicts.push(ids.value(*row as usize).to_string())
                }
                // Deleted since it was read: nothing to update.
                _ => {}
            }
        }
    }
    Ok(outcome)
}
