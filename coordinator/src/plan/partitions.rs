//! Which partition a row belongs to, and which partitions a predicate can match.
//!
//! A partition's values are canonical key texts ([`array_key_texts`]), the same for a row
//! being written and a partition being pruned, so both go through here. Pruning evaluates the
//! predicates that name only partition columns on one row per partition: the same expression
//! the query evaluates on its rows, so it cannot disagree with it. This module must not
//! create or drop partitions (`sql::partitions` does, through the cluster).

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::partition::PartitionDef;
use creek_common::schema::TableSchema;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, DFSchema};
use datafusion::logical_expr::Expr;
use datafusion::prelude::SessionContext;

use super::routing::array_key_texts;
use crate::error::{Error, Result};

/// Plans the predicates evaluated on partition values (their functions are already resolved).
fn context() -> &'static SessionContext {
    static CONTEXT: std::sync::OnceLock<SessionContext> = std::sync::OnceLock::new();
    CONTEXT.get_or_init(SessionContext::new)
}

/// The partition values of every row of `batch`, which holds the partition columns by name.
pub fn row_partition_values(
    table: &TableSchema,
    batch: &RecordBatch,
) -> Result<Vec<Vec<Option<String>>>> {
    let mut columns = Vec::with_capacity(table.partitioned_by.len());
    for name in &table.partitioned_by {
        let array = batch.column_by_name(name).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("partition column {name} missing from row batch"),
            )
        })?;
        columns.push(array_key_texts(array)?);
    }
    Ok((0..batch.num_rows())
        .map(|row| columns.iter().map(|column| column[row].clone()).collect())
        .collect())
}

/// The partition of every row of `batch`; an error names a row whose partition does not
/// exist (writes create partitions first, `sql::partitions::ensure_partitions`).
pub fn row_partitions<'a>(
    table: &'a TableSchema,
    batch: &RecordBatch,
) -> Result<Vec<&'a PartitionDef>> {
    row_partition_values(table, batch)?
        .iter()
        .map(|values| {
            table.partition_of_values(values).ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("no partition of {} for values {values:?}", table.name),
                )
            })
        })
        .collect()
}

/// Whether `expr` names columns, all of them partition columns of `table`.
pub fn is_partition_predicate(table: &TableSchema, expr: &Expr) -> bool {
    let columns = expr.column_refs();
    !columns.is_empty()
        && columns
            .iter()
            .all(|column| table.partitioned_by.contains(&column.name))
}

/// The value of each partition predicate among `filters` for every partition of `table`
/// (ANDed): `Some(true)` where every such predicate holds, `Some(false)` where one is false
/// or NULL. `None` when no filter is a partition predicate or one could not be evaluated
/// (then nothing can be pruned).
fn evaluate(table: &TableSchema, filters: &[&Expr]) -> Option<Vec<bool>> {
    let predicates: Vec<&Expr> = filters
        .iter()
        .copied()
        .filter(|f| is_partition_predicate(table, f))
        .collect();
    if predicates.is_empty() {
        return None;
    }
    let batch = values_batch(table).ok()?;
    let schema = DFSchema::try_from(batch.schema().as_ref().clone()).ok()?;
    let mut keep = vec![true; table.partitions.len()];
    for predicate in predicates {
        let unqualified = (*predicate)
            .clone()
            .transform(|e| {
                Ok(match e {
                    Expr::Column(column) => {
                        Transformed::yes(Expr::Column(Column::new_unqualified(column.name)))
                    }
                    other => Transformed::no(other),
                })
            })
            .ok()?
            .data;
        let physical = context().create_physical_expr(unqualified, &schema).ok()?;
        let result = physical
            .evaluate(&batch)
            .ok()?
            .into_array(batch.num_rows())
            .ok()?;
        let result = result.as_any().downcast_ref::<BooleanArray>()?;
        for (row, keep) in keep.iter_mut().enumerate() {
            *keep &= result.is_valid(row) && result.value(row);
        }
    }
    Some(keep)
}

/// The partitions a scan under `filters` must read: those for which no partition predicate
/// is false. Every partition when nothing can be decided.
pub fn prune<'a>(table: &'a TableSchema, filters: &[&Expr]) -> Vec<&'a PartitionDef> {
    match evaluate(table, filters) {
        Some(keep) => table
            .partitions
            .iter()
            .zip(keep)
            .filter_map(|(partition, keep)| keep.then_some(partition))
            .collect(),
        None => table.partitions.iter().collect(),
    }
}

/// If `predicate` names only partition columns, the partitions all of whose rows it matches
/// (and so no row of any other): a DELETE under it drops exactly those partitions.
pub fn whole_partitions<'a>(
    table: &'a TableSchema,
    predicate: &Expr,
) -> Option<Vec<&'a PartitionDef>> {
    if !is_partition_predicate(table, predicate) {
        return None;
    }
    let keep = evaluate(table, &[predicate])?;
    Some(
        table
            .partitions
            .iter()
            .zip(keep)
            .filter_map(|(partition, keep)| keep.then_some(partition))
            .collect(),
    )
}

/// The partition that `ALTER TABLE t PARTITION (col = literal, ...)` names: every partition
/// column given once, each literal read as its column's type.
pub fn partition_of_spec<'a>(
    table: &'a TableSchema,
    spec: &[(String, Option<String>)],
) -> Result<&'a PartitionDef> {
    if !table.is_partitioned() {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("table {} is not partitioned", table.name),
        ));
    }
    let mut values = Vec::with_capacity(table.partitioned_by.len());
    for name in &table.partitioned_by {
        let given: Vec<&Option<String>> = spec
            .iter()
            .filter(|(column, _)| column == name)
            .map(|(_, value)| value)
            .collect();
        let [value] = given.as_slice() else {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "PARTITION (...) must give every partition column of {} once ({})",
                    table.name,
                    table.partitioned_by.join(", ")
                ),
            ));
        };
        let column = table.column(name).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("partition column {name} is not a column"),
            )
        })?;
        let text: StringArray = std::iter::once(value.as_deref()).collect();
        let typed = cast(&text, &column.column_type.arrow_type()).map_err(|e| {
            Error::new(
                ErrorCode::InvalidTextRepresentation,
                format!("invalid value for partition column {name}: {e}"),
            )
        })?;
        if value.is_some() && typed.is_null(0) {
            return Err(Error::new(
                ErrorCode::InvalidTextRepresentation,
                format!("invalid value for partition column {name}"),
            ));
        }
        values.push(array_key_texts(&typed)?.remove(0));
    }
    if spec.len() != table.partitioned_by.len() {
        return Err(Error::new(
            ErrorCode::UndefinedColumn,
            format!(
                "PARTITION (...) names a column that is not a partition column of {} ({})",
                table.name,
                table.partitioned_by.join(", ")
            ),
        ));
    }
    table.partition_of_values(&values).ok_or_else(|| {
        Error::new(
            ErrorCode::UndefinedObject,
            format!("no partition of {} with these values", table.name),
        )
    })
}

/// One row per partition, one typed column per partition column.
pub fn values_batch(table: &TableSchema) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(table.partitioned_by.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.partitioned_by.len());
    for (index, name) in table.partitioned_by.iter().enumerate() {
        let column = table.column(name).ok_or_else(|| {
            Error::new(
                ErrorCode::Internal,
                format!("partition column {name} is not a column"),
            )
        })?;
        let data_type = column.column_type.arrow_type();
        let texts: StringArray = table
            .partitions
            .iter()
            .map(|p| p.values.get(index).cloned().flatten())
            .collect();
        arrays.push(cast(&texts, &data_type)?);
        fields.push(Field::new(name, data_type, true));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::partition::partition_ident;
    use creek_common::schema::ColumnDef;
    use creek_common::types::ColumnType;
    use creek_common::TableId;
    use datafusion::logical_expr::{col, lit};

    fn table() -> TableSchema {
        let column = |name: &str, column_type| ColumnDef {
            name: name.into(),
            column_type,
            not_null: false,
            default_expr: None,
            index: Default::default(),
            generated: None,
        };
        let partitions = [Some("1"), Some("2"), None, Some("3")]
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let values = vec![v.map(String::from)];
                PartitionDef {
                    ident: partition_ident(&values),
                    values,
                    first_shard: i as u32 * 2,
                    num_shards: 2,
                    settings: Default::default(),
                }
            })
            .collect();
        TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![
                column("p", ColumnType::Integer),
                column("x", ColumnType::Integer),
            ],
            primary_key: vec![],
            clustered_by: None,
            num_shards: 2,
            settings: Default::default(),
            indexes: vec![],
            fulltext: vec![],
            version: 1,
            partitioned_by: vec!["p".into()],
            partitions,
        }
    }

    fn values(partitions: &[&PartitionDef]) -> Vec<Option<String>> {
        partitions.iter().map(|p| p.values[0].clone()).collect()
    }

    #[test]
    fn prunes_on_partition_predicates_only() {
        let table = table();
        let filter = col("p").gt_eq(lit(2));
        let other = col("x").eq(lit(1));
        assert_eq!(
            values(&prune(&table, &[&filter, &other])),
            vec![Some("2".into()), Some("3".into())]
        );
        // Nothing to decide: every partition, NULL's included.
        assert_eq!(prune(&table, &[&other]).len(), 4);
        let null = col("p").is_null();
        assert_eq!(values(&prune(&table, &[&null])), vec![None]);
        // A row's predicate on a non-partition column never drops a whole partition.
        assert!(whole_partitions(&table, &other).is_none());
        let whole = whole_partitions(&table, &col("p").lt(lit(3))).unwrap();
        assert_eq!(values(&whole), vec![Some("1".into()), Some("2".into())]);
    }
}
