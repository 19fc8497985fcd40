//! Generated columns (`col TYPE GENERATED ALWAYS AS expr`): the coordinator computes them on
//! every write, from the row's other columns once the row has the table's types
//! ([`super::conform_batch`] calls [`fill`]), so INSERT, UPDATE, upserts and COPY all store
//! the same value. A value the writer gives for a generated column must equal the computed
//! one (CrateDB's rule), else the write fails; nothing is replaced silently.
//!
//! Definitions are checked when a table is created ([`check_definitions`]): an expression
//! may use the table's ordinary columns and deterministic functions, never another generated
//! column or a subquery. This module computes values; it must not plan or write statements.

use std::sync::{Arc, OnceLock};

use creek_common::error::ErrorCode;
use creek_common::schema::{ColumnDef, TableSchema};
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::compute::kernels::cmp::distinct;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::DFSchema;
use datafusion::logical_expr::Volatility;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::prelude::SessionContext;

use crate::error::{Error, Result};

/// The functions generated expressions may call: DataFusion's and the geo ones.
fn context() -> &'static SessionContext {
    static CONTEXT: OnceLock<SessionContext> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        let ctx = SessionContext::new();
        creek_common::functions::register_shared(&ctx);
        ctx
    })
}

fn invalid(column: &ColumnDef, message: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorCode::InvalidParameterValue,
        format!("generated column \"{}\": {message}", column.name),
    )
}

/// Plans `column`'s expression over the rows of `table`.
fn compile(table: &TableSchema, column: &ColumnDef, text: &str) -> Result<Arc<dyn PhysicalExpr>> {
    let schema = DFSchema::try_from(table.arrow_schema().as_ref().clone())?;
    let ctx = context();
    let expr = ctx.parse_sql_expr(text, &schema).map_err(|e| {
        if let datafusion::error::DataFusionError::SchemaError(schema_error, _) = e.find_root() {
            let datafusion::common::SchemaError::FieldNotFound { field, .. } =
                schema_error.as_ref()
            else {
                return invalid(column, creek_common::error::strip_prefix(&e.to_string()));
            };
            return Error::new(
                ErrorCode::UndefinedColumn,
                format!(
                    "generated column \"{}\": column \"{}\" does not exist",
                    column.name, field.name
                ),
            );
        }
        invalid(column, creek_common::error::strip_prefix(&e.to_string()))
    })?;
    for referenced in expr.column_refs() {
        match table.column(&referenced.name) {
            Some(other) if other.generated.is_some() => {
                return Err(invalid(
                    column,
                    format!("it refers to generated column \"{}\"", other.name),
                ))
            }
            Some(_) => {}
            None => {
                return Err(Error::new(
                    ErrorCode::UndefinedColumn,
                    format!(
                        "generated column \"{}\": column \"{}\" does not exist",
                        column.name, referenced.name
                    ),
                ))
            }
        }
    }
    let mut volatile = false;
    let _ = expr.apply(|e| {
        if let datafusion::logical_expr::Expr::ScalarFunction(function) = e {
            volatile |= function.func.signature().volatility == Volatility::Volatile;
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    if volatile {
        return Err(invalid(column, "its expression must be deterministic"));
    }
    let expr = crate::plan::integer_casts::round_casts(expr, &schema)?;
    Ok(ctx.create_physical_expr(expr, &schema)?)
}

/// Whether the generated expression `text` of a column of `table` reads `column` (when it
/// cannot be planned, it is taken to).
pub(super) fn mentions_column(table: &TableSchema, text: &str, column: &str) -> bool {
    let Ok(schema) = DFSchema::try_from(table.arrow_schema().as_ref().clone()) else {
        return true;
    };
    match context().parse_sql_expr(text, &schema) {
        Ok(expr) => expr.column_refs().iter().any(|c| c.name == column),
        Err(_) => true,
    }
}

/// Checks every generated column of a new table: its expression plans over the table's
/// ordinary columns and its result converts to the column's type.
pub(crate) fn check_definitions(table: &TableSchema) -> Result<()> {
    for column in &table.columns {
        let Some(text) = &column.generated else {
            continue;
        };
        if column.default_expr.is_some() {
            return Err(invalid(column, "it cannot have a DEFAULT as well"));
        }
        if column.column_type == creek_common::types::ColumnType::GeoShape {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!(
                    "generated column \"{}\": geo_shape columns cannot be generated",
                    column.name
                ),
            ));
        }
        let expr = compile(table, column, text)?;
        let produced = expr.data_type(table.arrow_schema().as_ref())?;
        let target = column.column_type.arrow_type();
        if produced != target && !datafusion::arrow::compute::can_cast_types(&produced, &target) {
            return Err(Error::new(
                ErrorCode::DatatypeMismatch,
                format!(
                    "generated column \"{}\": its expression gives {produced}, which does not \
                     convert to {}",
                    column.name, column.column_type
                ),
            ));
        }
    }
    Ok(())
}

/// Computes the generated columns of `batch` (the table's columns in order, with its types).
/// `given` says, per generated column, which values the writer gave (conformed, or `None`
/// when it gave none): each must equal the computed value.
pub(super) fn fill(
    table: &TableSchema,
    batch: RecordBatch,
    given: &[Option<ArrayRef>],
    convert: impl Fn(&ArrayRef, &datafusion::arrow::datatypes::DataType) -> Result<ArrayRef>,
) -> Result<RecordBatch> {
    let mut columns = batch.columns().to_vec();
    for (index, column) in table.columns.iter().enumerate() {
        let Some(text) = &column.generated else {
            continue;
        };
        let expr = compile(table, column, text)?;
        let computed = expr.evaluate(&batch)?.into_array(batch.num_rows())?;
        let computed = convert(&computed, &column.column_type.arrow_type())
            .map_err(|e| invalid(column, e.client_message()))?;
        if let Some(Some(given)) = given.get(index) {
            let differs = distinct(given, &computed)?;
            let mismatch = (0..given.len()).find(|row| given.is_valid(*row) && differs.value(*row));
            if let Some(row) = mismatch {
                let shown = |array: &ArrayRef| {
                    datafusion::common::ScalarValue::try_from_array(array, row)
                        .map(|v| v.to_string())
                        .unwrap_or_default()
                };
                return Err(invalid(
                    column,
                    format!(
                        "the given value {} does not match its expression {text} ({})",
                        shown(given),
                        shown(&computed)
                    ),
                ));
            }
        }
        if column.not_null && computed.null_count() > 0 {
            return Err(Error::new(
                ErrorCode::NotNullViolation,
                format!(
                    "null value in column \"{}\" violates not-null constraint",
                    column.name
                ),
            ));
        }
        columns[index] = computed;
    }
    Ok(RecordBatch::try_new(batch.schema(), columns)?)
}
