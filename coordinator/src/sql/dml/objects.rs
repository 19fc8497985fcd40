//! The writes' side of object columns: values become their column's struct by
//! `creek_common::object`'s rules, and keys a DYNAMIC object lacks are added to the table
//! through the cluster state before any row carrying them is written (so every coordinator
//! can query them as soon as the write is acknowledged).

use creek_common::object::{
    json_to_array, sub_column_count, values_from_array, widen, MAX_OBJECT_COLUMNS,
};
use creek_common::schema::TableSchema;
use creek_common::types::ColumnType;
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::record_batch::RecordBatch;

use super::partitions::current;
use crate::cluster::Cluster;
use crate::error::Result;

/// Whether values of `column_type` are objects, or arrays of objects, points or shapes:
/// documents, converted from JSON (`creek_common::object::is_document_type`).
pub(crate) fn is_object(column_type: &ColumnType) -> bool {
    creek_common::object::is_document_type(column_type)
}

/// `array`, written to object column `name` of `column_type`, as that column's values.
pub(super) fn conform_objects(
    array: &ArrayRef,
    column_type: &ColumnType,
    name: &str,
) -> Result<ArrayRef> {
    let values = values_from_array(array, name)?;
    let refs: Vec<Option<&serde_json::Value>> = values.iter().map(Some).collect();
    let converted = json_to_array(&refs, column_type, name)?;
    // A shard keeps the value's JSON as one string, which its index would cut beyond the
    // term length: refuse it whole instead.
    for row in 0..converted.len() {
        let bytes = creek_common::object::value_to_json(converted.as_ref(), row)
            .to_string()
            .len();
        if bytes > creek_common::geo::MAX_SHAPE_BYTES {
            return Err(crate::error::Error::new(
                creek_common::ErrorCode::ProgramLimitExceeded,
                format!(
                    "value of column {name} too large: {bytes} bytes of JSON, at most {}",
                    creek_common::geo::MAX_SHAPE_BYTES
                ),
            ));
        }
    }
    Ok(converted)
}

/// The object columns of `table` whose types `batch`'s values widen, with the widened types.
fn widened(table: &TableSchema, batch: &RecordBatch) -> Result<Vec<(String, ColumnType)>> {
    let mut changes = Vec::new();
    for column in &table.columns {
        if !is_object(&column.column_type) {
            continue;
        }
        let Some(array) = batch.column_by_name(&column.name) else {
            continue;
        };
        let mut column_type = column.column_type.clone();
        let mut added = false;
        for value in values_from_array(array, &column.name)? {
            added |= widen(&mut column_type, &value, &column.name)?;
        }
        if added {
            changes.push((column.name.clone(), column_type));
        }
    }
    Ok(changes)
}

/// Adds the sub-columns `batch` (before conversion) brings to `table`'s DYNAMIC objects, or
/// refuses a STRICT object's unknown key. Returns the table's new definition if it changed.
pub(crate) async fn ensure_object_keys(
    cluster: &Cluster,
    table: &TableSchema,
    batch: &RecordBatch,
) -> Result<Option<TableSchema>> {
    if !table.columns.iter().any(|c| is_object(&c.column_type)) {
        return Ok(None);
    }
    let changes = widened(table, batch)?;
    if changes.is_empty() {
        return Ok(None);
    }
    // Another writer may have added them meanwhile.
    let latest = current(cluster, table);
    let changes = widened(&latest, batch)?;
    if changes.is_empty() {
        return Ok(Some(latest));
    }
    check_before_proposing(&latest, &changes, batch)?;
    Ok(Some(cluster.extend_objects(&latest, changes).await?))
}

/// What the cluster would refuse or the rows would fail on is refused before anything is
/// proposed: a definition stays in the Raft log for good, and keys of rows that are then
/// not written would stay in the table.
fn check_before_proposing(
    table: &TableSchema,
    changes: &[(String, ColumnType)],
    batch: &RecordBatch,
) -> Result<()> {
    let mut widened = table.clone();
    for (name, column_type) in changes {
        if let Some(column) = widened.columns.iter_mut().find(|c| &c.name == name) {
            creek_common::object::check_declared(column_type, name)?;
            column.column_type = column_type.clone();
        }
    }
    let total: usize = widened
        .columns
        .iter()
        .map(|c| sub_column_count(&c.column_type))
        .sum();
    if total > MAX_OBJECT_COLUMNS {
        return Err(crate::error::Error::new(
            creek_common::ErrorCode::ProgramLimitExceeded,
            format!(
                "table {} would have {total} object sub-columns, more than the \
                 {MAX_OBJECT_COLUMNS} allowed: use an IGNORED object for keys that come and go",
                table.name
            ),
        ));
    }
    super::conform_batch(&widened, batch).map(|_| ())
}
