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
use creek_common::types::ColumnType;
use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, StringArray};
use datafusion::arrow::compute::{cast, cast_with_options, CastOptions};
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

/// Whether `expr` names columns, all of them partition columns of `table`, and is not volatile.
pub fn is_partition_predicate(table: &TableSchema, expr: &Expr) -> bool {
    let columns = expr.column_refs();
    // A volatile predicate (`random()`) has a value per row, not per partition.
    !columns.is_empty()
        && !expr.is_volatile()
        && columns
            .iter()
            .all(|column| table.partitioned_by.contains(&column.name))
}

/// The value of `predicate`, which names only partition columns, for every partition of
/// `table`: `true` where it holds, `false` where it is false or NULL. `None` if it could not
/// be evaluated.
fn evaluate(table: &TableSchema, batch: &RecordBatch, predicate: &Expr) -> Option<Vec<bool>> {
    let schema = DFSchema::try_from(batch.schema().as_ref().clone()).ok()?;
    let unqualified = predicate
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
        .evaluate(batch)
        .ok()?
        .into_array(batch.num_rows())
        .ok()?;
    let result = result.as_any().downcast_ref::<BooleanArray>()?;
    debug_assert_eq!(result.len(), table.partitions.len());
    Some(
        (0..result.len())
            .map(|row| result.is_valid(row) && result.value(row))
            .collect(),
    )
}

/// The partitions a scan under `filters` must read: those for which no partition predicate
/// is false, counting the bounds a predicate on the source of a generated partition column
/// implies for that column ([`implied_predicates`]). A predicate that cannot be evaluated
/// prunes nothing.
pub fn prune<'a>(table: &'a TableSchema, filters: &[&Expr]) -> Vec<&'a PartitionDef> {
    let mut predicates: Vec<Expr> = filters
        .iter()
        .filter(|f| is_partition_predicate(table, f))
        .map(|f| (*f).clone())
        .collect();
    predicates.extend(implied_predicates(table, filters));
    let mut keep = vec![true; table.partitions.len()];
    if !predicates.is_empty() {
        if let Ok(batch) = values_batch(table) {
            for predicate in &predicates {
                if let Some(values) = evaluate(table, &batch, predicate) {
                    for (keep, value) in keep.iter_mut().zip(values) {
                        *keep &= value;
                    }
                }
            }
        }
    }
    table
        .partitions
        .iter()
        .zip(keep)
        .filter_map(|(partition, keep)| keep.then_some(partition))
        .collect()
}

/// Predicates on generated partition columns implied by `filters` on their source column:
/// for `p GENERATED ALWAYS AS date_trunc(unit, c)` (or `c` itself, or a cast of it) — which
/// never decreases as `c` grows — `c >= v` implies `p >= date_trunc(unit, v)`, `c < v`
/// implies `p <= date_trunc(unit, v)`, and so on. Only for pruning: the rows are still
/// filtered by the original predicates.
fn implied_predicates(table: &TableSchema, filters: &[&Expr]) -> Vec<Expr> {
    use datafusion::logical_expr::{BinaryExpr, Operator};
    let Ok(schema) = DFSchema::try_from(table.arrow_schema().as_ref().clone()) else {
        return Vec::new();
    };
    let mut implied = Vec::new();
    for partition_column in &table.partitioned_by {
        let Some(text) = table
            .column(partition_column)
            .and_then(|c| c.generated.as_deref())
        else {
            continue;
        };
        let Ok(generated) = context().parse_sql_expr(text, &schema) else {
            continue;
        };
        let Some(source) = monotonic_source(table, &generated) else {
            continue;
        };
        let at = |value: &Expr| -> Option<Expr> {
            generated
                .clone()
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(column) if column.name == source => {
                            Transformed::yes(value.clone())
                        }
                        other => Transformed::no(other),
                    })
                })
                .ok()
                .map(|t| t.data)
        };
        let column = Expr::Column(Column::new_unqualified(partition_column));
        let mut bound = |op: Operator, value: &Expr| {
            if let Some(image) = at(value) {
                implied.push(Expr::BinaryExpr(BinaryExpr::new(
                    Box::new(column.clone()),
                    op,
                    Box::new(image),
                )));
            }
        };
        for filter in filters {
            match filter {
                Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                    let (op, value) = match (left.as_ref(), right.as_ref()) {
                        (Expr::Column(c), v @ Expr::Literal(..)) if c.name == source => (*op, v),
                        (v @ Expr::Literal(..), Expr::Column(c)) if c.name == source => {
                            match op.swap() {
                                Some(swapped) => (swapped, v),
                                None => continue,
                            }
                        }
                        _ => continue,
                    };
                    match op {
                        Operator::Eq => bound(Operator::Eq, value),
                        Operator::Gt | Operator::GtEq => bound(Operator::GtEq, value),
                        Operator::Lt | Operator::LtEq => bound(Operator::LtEq, value),
                        _ => {}
                    }
                }
                Expr::Between(between)
                    if !between.negated
                        && matches!(between.expr.as_ref(), Expr::Column(c) if c.name == source)
                        && matches!(between.low.as_ref(), Expr::Literal(..))
                        && matches!(between.high.as_ref(), Expr::Literal(..)) =>
                {
                    bound(Operator::GtEq, &between.low);
                    bound(Operator::LtEq, &between.high);
                }
                _ => {}
            }
        }
    }
    implied
}

/// The column a generated expression is a non-decreasing function of, if it is one Creek
/// knows to be: `c` itself, or `date_trunc('unit', c)` of a timestamp or date column `c`.
/// (Not casts: text that casts to numbers or times does not sort like them.)
fn monotonic_source(table: &TableSchema, expr: &Expr) -> Option<String> {
    match expr {
        Expr::Column(column) => Some(column.name.clone()),
        Expr::ScalarFunction(function) if function.name() == "date_trunc" => {
            match function.args.as_slice() {
                [Expr::Literal(..), Expr::Column(column)]
                    if table.column(&column.name).is_some_and(|c| {
                        matches!(
                            c.column_type,
                            ColumnType::Timestamp | ColumnType::TimestampTz | ColumnType::Date
                        )
                    }) =>
                {
                    Some(column.name.clone())
                }
                _ => None,
            }
        }
        _ => None,
    }
}

/// If `predicate` names only partition columns, the partitions all of whose rows it matches
/// (and so no row of any other): a DELETE under it drops exactly those partitions. `None`
/// when that cannot be decided.
pub fn whole_partitions<'a>(
    table: &'a TableSchema,
    predicate: &Expr,
) -> Option<Vec<&'a PartitionDef>> {
    if !is_partition_predicate(table, predicate) {
        return None;
    }
    let batch = values_batch(table).ok()?;
    let keep = evaluate(table, &batch, predicate)?;
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

/// The partitions a scan of `shards` reads, for EXPLAIN: `read/total [(col=value), ...]`.
pub fn describe_read(table: &TableSchema, shards: &[u32]) -> String {
    let read: Vec<String> = table
        .partitions
        .iter()
        .filter(|p| p.shards().any(|shard| shards.contains(&shard)))
        .map(|p| {
            let values: Vec<String> = table
                .partitioned_by
                .iter()
                .zip(&p.values)
                .map(|(column, value)| format!("{column}={}", value.as_deref().unwrap_or("NULL")))
                .collect();
            format!("({})", values.join(", "))
        })
        .collect();
    format!(
        "{}/{} [{}]",
        read.len(),
        table.partitions.len(),
        read.join(", ")
    )
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
        // Strictly, and only if each value reads back as the very text it was stored as: a
        // value the cast cannot read (a year past 9999) must not become NULL, which would
        // prune its partition from queries and let `IS NULL` drop it.
        let options = CastOptions {
            safe: false,
            ..Default::default()
        };
        let typed = cast_with_options(&texts, &data_type, &options)?;
        let back = array_key_texts(&typed)?;
        if (0..texts.len())
            .any(|row| back[row].as_deref() != texts.is_valid(row).then(|| texts.value(row)))
        {
            return Err(Error::new(
                ErrorCode::Internal,
                format!("a value of partition column {name} does not read back as itself"),
            ));
        }
        arrays.push(typed);
        fields.push(Field::new(name, data_type, true));
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::partition::partition_ident;
    use creek_common::schema::ColumnDef;
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

    #[test]
    fn a_generated_partition_column_is_pruned_by_its_source() {
        let column = |name: &str, column_type, generated: Option<&str>| ColumnDef {
            name: name.into(),
            column_type,
            not_null: false,
            default_expr: None,
            index: Default::default(),
            generated: generated.map(String::from),
        };
        let mut table = table();
        table.columns = vec![
            column("ts", ColumnType::TimestampTz, None),
            column(
                "day",
                ColumnType::TimestampTz,
                Some("date_trunc('day', ts)"),
            ),
            column("text_ts", ColumnType::Text { max_len: None }, None),
        ];
        table.partitioned_by = vec!["day".into()];
        for (partition, day) in table.partitions.iter_mut().zip(["01", "02", "03", "04"]) {
            partition.values = vec![Some(format!("2024-05-{day}T00:00:00+00:00"))];
        }
        let at = |text: &str| {
            let micros = chrono::DateTime::parse_from_rfc3339(text)
                .unwrap()
                .timestamp_micros();
            lit(datafusion::common::ScalarValue::TimestampMicrosecond(
                Some(micros),
                Some("+00:00".into()),
            ))
        };
        let days = |filters: &[&Expr]| -> Vec<String> {
            prune(&table, filters)
                .iter()
                .map(|p| p.values[0].clone().unwrap()[8..10].to_string())
                .collect()
        };
        let from = col("ts").gt_eq(at("2024-05-02T10:00:00Z"));
        let until = col("ts").lt(at("2024-05-03T00:00:00Z"));
        assert_eq!(days(&[&from]), ["02", "03", "04"]);
        // `ts < 05-03T00:00` still keeps 05-03 (`day <= 05-03`): pruning only narrows safely.
        assert_eq!(days(&[&from, &until]), ["02", "03"]);
        let exact = at("2024-05-04T23:59:59Z").eq(col("ts"));
        assert_eq!(days(&[&exact]), ["04"]);
        let between = col("ts").between(at("2024-05-01T12:00:00Z"), at("2024-05-02T00:00:00Z"));
        assert_eq!(days(&[&between]), ["01", "02"]);
        // Not a bound on `ts` itself: nothing implied.
        let other = col("text_ts").gt_eq(lit("2024-05-04"));
        assert_eq!(days(&[&other]).len(), 4);
    }
}
