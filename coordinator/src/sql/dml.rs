//! INSERT, UPDATE and DELETE. DataFusion plans the rows to write (casts, defaults, `INSERT ...
//! SELECT`, the WHERE of an UPDATE); this module turns them into per-shard write requests and
//! reports per-row outcomes. INSERT lives here with what all three share; UPDATE and DELETE
//! (`dml/update.rs`, `dml/delete.rs`) first refresh the table so they act on every
//! acknowledged write, not only on refreshed ones. `dml/conform.rs` owns how values become a
//! column's type.

mod conform;
mod delete;
mod generated;
pub(crate) mod objects;
pub(crate) mod partitions;
mod update;
mod upsert;

pub(crate) use conform::{conform_batch, convert_value, is_fractional};
pub use delete::delete;
pub(crate) use delete::delete_parameter_types;
pub(crate) use generated::check_definitions as check_generated_columns;
pub use update::update;
pub(crate) use update::update_parameter_types;

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::{ColumnDef, TableSchema, ID_COLUMN};
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{ArrayRef, BooleanArray, StringArray, UInt32Array};
use datafusion::arrow::compute::{filter_record_batch, take_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::expr::{Alias, Cast};
use datafusion::logical_expr::{Expr, LogicalPlan, Projection};
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::{self, OnConflictAction, OnInsert, SetExpr, Statement};

use super::ddl::split_name;
use super::Output;
use crate::cluster::{Cluster, Visibility};
use crate::error::{Error, Result};
use crate::plan::params::{placeholder_index, set_parameter_type};
use crate::plan::routing::ids_and_shards;

/// What a statement needs from its session.
pub struct DmlContext<'a> {
    /// The cluster.
    pub cluster: &'a Arc<Cluster>,
    /// A context over the user-visible catalog.
    pub ctx: &'a SessionContext,
    /// A context whose tables also expose `_id`.
    pub hidden_ctx: &'a SessionContext,
    /// The session's default schema.
    pub default_schema: &'a str,
    /// Bound parameter values.
    pub params: &'a ParamValues,
    /// How the statement's writes become visible.
    pub visibility: Visibility<'a>,
}

fn lookup_table(
    cluster: &Cluster,
    name: &ast::ObjectName,
    default_schema: &str,
) -> Result<TableSchema> {
    let (schema, table) = split_name(name, default_schema)?;
    cluster.catalog().existing_table(&schema, &table)
}

async fn collect_plan(
    ctx: &SessionContext,
    plan: LogicalPlan,
    params: &ParamValues,
) -> Result<Vec<RecordBatch>> {
    let plan = if params_empty(params) {
        plan
    } else {
        plan.with_param_values(params.clone())?
    };
    Ok(DataFrame::new(ctx.state(), plan).collect().await?)
}

/// Plans a query a DML statement made to find its rows, with its MATCH calls anchored to
/// their table as a SELECT's are (`plan::fulltext`), so `DELETE .. WHERE MATCH(..)` works.
async fn plan_rows(ctx: &SessionContext, sql: &str) -> Result<LogicalPlan> {
    let state = ctx.state();
    let dialect = state.config().options().sql_parser.dialect;
    let mut statement = state.sql_to_statement(sql, &dialect)?;
    if let DfStatement::Statement(inner) = &mut statement {
        crate::plan::fulltext::resolve_matches(&state, inner).await?;
    }
    Ok(state.statement_to_plan(statement).await?)
}

/// Returns the parameter types a plan infers, by position.
pub(crate) fn plan_parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>> {
    let mut types = Vec::new();
    for (name, data_type) in plan.get_parameter_types()? {
        if let Ok(Some(index)) = crate::plan::params::parameter_number(&name) {
            set_parameter_type(&mut types, index, data_type);
        }
    }
    Ok(types)
}

fn params_empty(params: &ParamValues) -> bool {
    match params {
        ParamValues::List(list) => list.is_empty(),
        ParamValues::Map(map) => map.is_empty(),
    }
}

/// Executes an INSERT.
pub async fn insert(dml: &DmlContext<'_>, insert: &ast::Insert) -> Result<Output> {
    let (table, statuses, written) = write_insert(dml, insert).await?;
    let inserted = statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
    let duplicates = statuses
        .iter()
        .filter(|s| **s == RowStatus::Duplicate)
        .count();
    if duplicates > 0 {
        return Err(Error::new(
            ErrorCode::DuplicateKey,
            format!(
                "duplicate key value violates unique constraint \"{}_pkey\" ({duplicates} row(s) rejected, {inserted} written)",
                table.name
            ),
        ));
    }
    match &insert.returning {
        Some(items) => returning(&table, written, items).await,
        None => Ok(Output::Affected {
            tag: "INSERT".into(),
            count: inserted,
        }),
    }
}

/// Runs an INSERT (without RETURNING) and reports each row's outcome in input order: what
/// HTTP `bulk_args` answers per row.
pub async fn insert_statuses(dml: &DmlContext<'_>, insert: &ast::Insert) -> Result<Vec<RowStatus>> {
    Ok(write_insert(dml, insert).await?.1)
}

/// Plans and writes an INSERT; returns the table, every input row's status in order, and the
/// rows written.
async fn write_insert(
    dml: &DmlContext<'_>,
    insert: &ast::Insert,
) -> Result<(TableSchema, Vec<RowStatus>, Vec<RecordBatch>)> {
    let ast::TableObject::TableName(table_name) = &insert.table else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "INSERT INTO a table function is not supported",
        ));
    };
    let table = lookup_table(dml.cluster, table_name, dml.default_schema)?;
    let mode = match &insert.on {
        None => WriteMode::Insert,
        Some(OnInsert::OnConflict(on_conflict)) => match &on_conflict.action {
            OnConflictAction::DoNothing => WriteMode::InsertIgnore,
            OnConflictAction::DoUpdate(_) => WriteMode::Upsert,
        },
        Some(_) => {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                "ON DUPLICATE KEY UPDATE is not supported; use ON CONFLICT",
            ))
        }
    };
    let mut stripped = insert.clone();
    stripped.on = None;
    stripped.returning = None;
    add_default_columns(&table, &mut stripped)?;
    let batches = match literal_values_batch(&table, &stripped, dml.params)? {
        Some(batch) => vec![batch],
        None if values_target(&table, &stripped).is_some() => {
            planned_values(dml, &table, &stripped).await?
        }
        None => {
            let state = dml.ctx.state();
            let mut statement = Statement::Insert(stripped);
            crate::plan::fulltext::resolve_matches(&state, &mut statement).await?;
            let plan = state
                .statement_to_plan(DfStatement::Statement(Box::new(statement)))
                .await?;
            let LogicalPlan::Dml(statement) = plan else {
                return Err(Error::new(
                    ErrorCode::Internal,
                    "INSERT did not plan as a DML statement",
                ));
            };
            let rows = without_target_casts(statement.input.as_ref().clone())?;
            collect_plan(dml.ctx, rows, dml.params).await?
        }
    };
    // Every batch is converted before any is written: a value one batch refuses fails the
    // statement with nothing written (a bulk request then retries row by row and must not find
    // rows of the failed attempt already there).
    let batches: Vec<RecordBatch> = batches
        .into_iter()
        .filter(|batch| batch.num_rows() > 0)
        .collect();
    let mut table = table;
    for batch in &batches {
        if let Some(widened) = objects::ensure_object_keys(dml.cluster, &table, batch).await? {
            table = widened;
        }
    }
    let batches = batches
        .iter()
        .map(|batch| conform_batch(&table, batch))
        .collect::<Result<Vec<_>>>()?;
    let mut written = Vec::new();
    let mut all_statuses = Vec::new();
    for batch in batches {
        if let (Some(OnInsert::OnConflict(on_conflict)), WriteMode::Upsert) = (&insert.on, mode) {
            let (statuses, rows) = upsert::upsert(dml, &table, &batch, on_conflict).await?;
            if insert.returning.is_some() {
                written.push(rows);
            }
            all_statuses.extend(statuses);
            continue;
        }
        let (statuses, rows) =
            write_batch(dml.cluster, &table, &batch, mode, dml.visibility).await?;
        if insert.returning.is_some() {
            let ok = BooleanArray::from_iter(statuses.iter().map(|s| Some(*s == RowStatus::Ok)));
            written.push(filter_record_batch(&rows, &ok)?);
        }
        all_statuses.extend(statuses);
    }
    Ok((table, all_statuses, written))
}

/// The rows of an `INSERT ... VALUES` with expressions, planned as a plain `VALUES` query and
/// named by target column: planned as an INSERT, DataFusion would cast each value to its
/// column's type inside the VALUES, by its own rules rather than [`conform_batch`]'s.
async fn planned_values(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    insert: &ast::Insert,
) -> Result<Vec<RecordBatch>> {
    let (names, values) = values_target(table, insert).expect("checked by the caller");
    let source = insert.source.clone().expect("VALUES has a source query");
    let batches = match plan_values_query(dml, source.clone()).await {
        Ok(batches) => batches,
        // Rows whose values differ in type (an epoch number in one row, `now()` in the
        // next) have no common type as one VALUES; each row is planned alone then, and
        // conformed to the column types like any other.
        Err(error) if values.rows.len() > 1 && rows_differ_in_type(&error) => {
            let mut batches = Vec::with_capacity(values.rows.len());
            for row in &values.rows {
                let mut single = source.clone();
                single.body = Box::new(SetExpr::Values(ast::Values {
                    explicit_row: values.explicit_row,
                    value_keyword: values.value_keyword,
                    rows: vec![row.clone()],
                }));
                batches.extend(plan_values_query(dml, single).await?);
            }
            batches
        }
        Err(error) => return Err(error),
    };
    batches
        .into_iter()
        .map(|batch| {
            let fields: Vec<Field> = batch
                .schema()
                .fields()
                .iter()
                .zip(&names)
                .map(|(field, name)| field.as_ref().clone().with_name(name))
                .collect();
            let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
            Ok(RecordBatch::try_new_with_options(
                Arc::new(Schema::new(fields)),
                batch.columns().to_vec(),
                &options,
            )?)
        })
        .collect()
}

/// Whether planning a VALUES failed because its rows have no common type per column. The
/// kind is only told by DataFusion's message; should that change, the statement fails with
/// DataFusion's error instead of being planned row by row.
fn rows_differ_in_type(error: &Error) -> bool {
    matches!(error, Error::DataFusion(inner)
        if inner.to_string().contains("Inconsistent data type across values list"))
}

async fn plan_values_query(
    dml: &DmlContext<'_>,
    query: Box<ast::Query>,
) -> Result<Vec<RecordBatch>> {
    let plan = dml
        .ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(Statement::Query(query))))
        .await?;
    collect_plan(dml.ctx, plan, dml.params).await
}

/// Removes the casts to the target columns' types that DataFusion puts on top of a planned
/// INSERT's rows, leaving them to [`conform_batch`]: every INSERT then converts values by
/// Creek's rules (a number for a timestamp is epoch milliseconds, text for an array an array
/// literal), however its rows were produced.
fn without_target_casts(plan: LogicalPlan) -> Result<LogicalPlan> {
    let LogicalPlan::Projection(projection) = plan else {
        return Ok(plan);
    };
    let exprs = projection
        .expr
        .into_iter()
        .map(|expr| match expr {
            Expr::Alias(Alias {
                expr: inner,
                relation,
                name,
                metadata,
            }) => match *inner {
                Expr::Cast(Cast { expr: source, .. }) => Expr::Alias(Alias {
                    expr: source,
                    relation,
                    name,
                    metadata,
                }),
                other => Expr::Alias(Alias {
                    expr: Box::new(other),
                    relation,
                    name,
                    metadata,
                }),
            },
            other => other,
        })
        .collect();
    Ok(LogicalPlan::Projection(Projection::try_new(
        exprs,
        projection.input,
    )?))
}

/// The rows of an `INSERT ... VALUES` whose every value is a literal or a `$n` parameter,
/// built straight into a batch named by target column; `None` for anything else, which
/// DataFusion plans. Planning is the cost that matters here: a 10,000-row bulk request of
/// 105 columns is a million expressions for DataFusion to type-check and simplify, many times
/// the cost of writing the rows. Casting to the column types and the constraint checks are
/// `conform_batch`'s, as for planned rows, so both paths accept and refuse the same values.
fn literal_values_batch(
    table: &TableSchema,
    insert: &ast::Insert,
    params: &ParamValues,
) -> Result<Option<RecordBatch>> {
    let Some((names, values)) = values_target(table, insert) else {
        return Ok(None);
    };
    let ParamValues::List(params) = params else {
        return Ok(None);
    };
    let mut columns: Vec<Vec<ScalarValue>> =
        vec![Vec::with_capacity(values.rows.len()); names.len()];
    for row in &values.rows {
        for (expr, column) in row.iter().zip(columns.iter_mut()) {
            let Some(value) = literal_value(expr, |n| params.get(n - 1).map(|p| p.value.clone()))
            else {
                return Ok(None);
            };
            column.push(value);
        }
    }
    let mut fields = Vec::with_capacity(names.len());
    let mut arrays = Vec::with_capacity(names.len());
    for (name, values) in names.iter().zip(columns) {
        let Some(array) = uniform_array(values)? else {
            return Ok(None);
        };
        fields.push(Field::new(name, array.data_type().clone(), true));
        arrays.push(array);
    }
    let options = RecordBatchOptions::new().with_row_count(Some(values.rows.len()));
    let batch = RecordBatch::try_new_with_options(Arc::new(Schema::new(fields)), arrays, &options)?;
    // Converted with the planned rows' batches, once new object keys are added.
    Ok(Some(batch))
}

/// The target column names and the rows of a plain `INSERT ... VALUES` into existing,
/// distinct columns; `None` for any other INSERT.
fn values_target<'a>(
    table: &TableSchema,
    insert: &'a ast::Insert,
) -> Option<(Vec<String>, &'a ast::Values)> {
    let query = insert.source.as_ref()?;
    let SetExpr::Values(values) = query.body.as_ref() else {
        return None;
    };
    if query.with.is_some() || query.order_by.is_some() || query.limit_clause.is_some() {
        return None;
    }
    let names: Vec<String> = if insert.columns.is_empty() {
        table.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        let mut names = Vec::with_capacity(insert.columns.len());
        for column in &insert.columns {
            let [part] = column.0.as_slice() else {
                return None;
            };
            let ident = part.as_ident()?;
            names.push(match ident.quote_style {
                Some(_) => ident.value.clone(),
                None => ident.value.to_lowercase(),
            });
        }
        names
    };
    let distinct: std::collections::HashSet<&String> = names.iter().collect();
    if values.rows.iter().any(|row| row.len() != names.len())
        || names.iter().any(|n| table.column(n).is_none())
        || distinct.len() != names.len()
    {
        return None;
    }
    Some((names, values))
}

/// For Parse of an `INSERT ... VALUES` of literals and `$n` parameters: each parameter takes
/// its target column's type, as PostgreSQL infers it, without planning the statement.
pub(crate) fn values_parameter_types(
    table: &TableSchema,
    insert: &ast::Insert,
) -> Option<Vec<Option<DataType>>> {
    let (names, values) = values_target(table, insert)?;
    let column_types = names
        .iter()
        .map(|name| table.column(name).map(|c| c.column_type.arrow_type()))
        .collect::<Option<Vec<_>>>()?;
    let mut types: Vec<Option<DataType>> = Vec::new();
    for row in &values.rows {
        for (expr, column_type) in row.iter().zip(&column_types) {
            let Some(index) = placeholder_index(expr) else {
                constant_value(expr, &[])?;
                continue;
            };
            set_parameter_type(&mut types, index, Some(column_type.clone()));
        }
    }
    Some(types)
}

/// The column an `ON CONFLICT DO UPDATE SET` assignment writes, normalised.
/// An UPDATE or `ON CONFLICT DO UPDATE` may not assign a generated column: it is computed.
pub(super) fn refuse_generated(column: &ColumnDef) -> Result<()> {
    if column.generated.is_some() {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!(
                "column \"{}\" is a generated column and cannot be assigned",
                column.name
            ),
        ));
    }
    Ok(())
}

/// An UPDATE or `ON CONFLICT DO UPDATE` may not change a row's partition: neither assign a
/// partition column nor a column a generated partition column is computed from (the row
/// would have to move to another partition's shards).
pub(super) fn refuse_partition_source(table: &TableSchema, column: &str) -> Result<()> {
    for partition_column in &table.partitioned_by {
        let derived = table
            .column(partition_column)
            .and_then(|c| c.generated.as_deref())
            .is_some_and(|expr| generated::mentions_column(table, expr, column));
        if partition_column == column || derived {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!(
                    "updating column \"{column}\" is not supported: it decides the row's \
                     partition (PARTITIONED BY {partition_column})"
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn assignment_column(target: &ast::AssignmentTarget) -> Option<String> {
    match target {
        ast::AssignmentTarget::ColumnName(name) => Some(crate::plan::identifiers::last_name(name)),
        ast::AssignmentTarget::Tuple(_) => None,
    }
}

/// For Parse of an `INSERT ... ON CONFLICT DO UPDATE SET column = $n`: parameter `n` takes the
/// column's type (the assignments are not part of the planned INSERT).
pub(crate) fn on_conflict_parameter_types(
    cluster: &Cluster,
    default_schema: &str,
    insert: &ast::Insert,
) -> Vec<(usize, DataType)> {
    let Some(OnInsert::OnConflict(ast::OnConflict {
        action: OnConflictAction::DoUpdate(update),
        ..
    })) = &insert.on
    else {
        return Vec::new();
    };
    let ast::TableObject::TableName(name) = &insert.table else {
        return Vec::new();
    };
    let Ok(table) = lookup_table(cluster, name, default_schema) else {
        return Vec::new();
    };
    update
        .assignments
        .iter()
        .filter_map(|assignment| {
            let index = placeholder_index(&assignment.value)?;
            let column = table.column(&assignment_column(&assignment.target)?)?;
            Some((index, column.column_type.arrow_type()))
        })
        .collect()
}

/// A constant, a negated number or a bound `$n` parameter, as a value without planning.
pub(crate) fn constant_value(expr: &ast::Expr, params: &[ScalarValue]) -> Option<ScalarValue> {
    literal_value(expr, |n| params.get(n - 1).cloned())
}

/// A VALUES item that needs no planning: a constant, a negated number or a `$n` parameter
/// (`param(n)` gives its value).
fn literal_value(
    expr: &ast::Expr,
    param: impl Fn(usize) -> Option<ScalarValue>,
) -> Option<ScalarValue> {
    match expr {
        ast::Expr::Value(value) => match &value.value {
            ast::Value::Number(text, _) => number(text),
            ast::Value::SingleQuotedString(text) => Some(ScalarValue::Utf8(Some(text.clone()))),
            ast::Value::Boolean(b) => Some(ScalarValue::Boolean(Some(*b))),
            ast::Value::Null => Some(ScalarValue::Null),
            ast::Value::Placeholder(_) => param(placeholder_index(expr)?),
            _ => None,
        },
        ast::Expr::UnaryOp {
            op: ast::UnaryOperator::Minus,
            expr,
        } => match expr.as_ref() {
            ast::Expr::Value(value) => match &value.value {
                ast::Value::Number(text, _) => number(&format!("-{text}")),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

fn number(text: &str) -> Option<ScalarValue> {
    if let Ok(int) = text.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(int)));
    }
    if let Some(whole) = crate::plan::numeric_literals::whole_number(text) {
        return whole;
    }
    // As DataFusion reads a literal with a point or exponent: a double.
    text.parse::<f64>()
        .ok()
        .map(|f| ScalarValue::Float64(Some(f)))
}

/// One column's values as an array, if they share a type: NULLs take any; integers of any
/// width widen to bigint and meet doubles as double (clients pick a parameter's integer type
/// per value, so one column gets int2, int4 and int8 parameters). Other mixes are left to
/// DataFusion's coercion rules.
fn uniform_array(values: Vec<ScalarValue>) -> Result<Option<ArrayRef>> {
    fn widened(data_type: DataType) -> DataType {
        match data_type {
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => DataType::Int64,
            DataType::UInt8 | DataType::UInt16 | DataType::UInt32 => DataType::Int64,
            DataType::Float16 | DataType::Float32 | DataType::Float64 => DataType::Float64,
            other => other,
        }
    }
    let mut data_type = DataType::Null;
    for value in &values {
        let this = widened(value.data_type());
        data_type = match (&data_type, &this) {
            (_, DataType::Null) => data_type,
            (DataType::Null, _) => this,
            (a, b) if a == b => data_type,
            (DataType::Int64, DataType::Float64) | (DataType::Float64, DataType::Int64) => {
                DataType::Float64
            }
            _ => return Ok(None),
        };
    }
    if data_type == DataType::Null {
        return Ok(Some(datafusion::arrow::array::new_null_array(
            &DataType::Null,
            values.len(),
        )));
    }
    let typed_null = ScalarValue::try_from(&data_type)?;
    let values = values
        .into_iter()
        .map(|value| {
            if value.is_null() {
                Ok(typed_null.clone())
            } else if value.data_type() == data_type {
                Ok(value)
            } else {
                value.cast_to(&data_type)
            }
        })
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok(Some(ScalarValue::iter_to_array(values)?))
}

/// Adds columns with a DEFAULT that an `INSERT (cols) VALUES` leaves out, with their default.
fn add_default_columns(table: &TableSchema, insert: &mut ast::Insert) -> Result<()> {
    if insert.columns.is_empty() {
        return Ok(());
    }
    let named: Vec<String> = insert
        .columns
        .iter()
        .map(|c| c.to_string().trim_matches('"').to_lowercase())
        .collect();
    let missing: Vec<_> = table
        .columns
        .iter()
        .filter(|c| c.default_expr.is_some() && !named.contains(&c.name))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let Some(source) = insert.source.as_mut() else {
        return Ok(());
    };
    let SetExpr::Values(values) = source.body.as_mut() else {
        return Ok(());
    };
    for column in missing {
        let default = column.default_expr.as_deref().unwrap_or("NULL");
        let expr = parse_default(default)?;
        insert
            .columns
            .push(ast::ObjectName::from(vec![ast::Ident::with_quote(
                '"',
                column.name.clone(),
            )]));
        for row in &mut values.rows {
            row.push(expr.clone());
        }
    }
    Ok(())
}

/// A column's DEFAULT as an expression, with the same PostgreSQL rewrites as the statement
/// it is added to (`'{}'::text[]` reads as an array literal).
fn parse_default(sql: &str) -> Result<ast::Expr> {
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut statement = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(&format!("SELECT {sql}"))
        .and_then(|mut parser| parser.parse_statement())
        .map_err(|e| Error::new(ErrorCode::SyntaxError, e.to_string()))?;
    crate::plan::pg_compat::rewrite(&mut statement);
    if let Statement::Query(query) = statement {
        if let SetExpr::Select(select) = *query.body {
            if let Some(ast::SelectItem::UnnamedExpr(expr)) = select.projection.into_iter().next() {
                return Ok(expr);
            }
        }
    }
    Err(Error::new(
        ErrorCode::SyntaxError,
        format!("invalid DEFAULT expression {sql}"),
    ))
}

/// Writes a conformed batch, grouped by shard. Returns per-row statuses in batch order and the
/// batch itself.
pub(crate) async fn write_batch(
    cluster: &Arc<Cluster>,
    table: &TableSchema,
    batch: &RecordBatch,
    mode: WriteMode,
    visibility: Visibility<'_>,
) -> Result<(Vec<RowStatus>, RecordBatch)> {
    let created = partitions::ensure_partitions(cluster, table, batch).await?;
    let table = created.as_ref().unwrap_or(table);
    let (ids, shards) = ids_and_shards(table, batch)?;
    let mut with_id_fields: Vec<Field> = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
    with_id_fields.extend(batch.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids))];
    arrays.extend(batch.columns().iter().cloned());
    let with_ids = RecordBatch::try_new(Arc::new(Schema::new(with_id_fields)), arrays)?;
    let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for (row, shard) in shards.iter().enumerate() {
        by_shard.entry(*shard).or_default().push(row as u32);
    }
    // The shards are written concurrently: each is its own translog and index writer, on its
    // own core when the data node has one to spare.
    let writes = by_shard.into_iter().map(|(shard, rows)| {
        let with_ids = &with_ids;
        async move {
            let part = take_record_batch(with_ids, &UInt32Array::from(rows.clone()))?;
            let shard_statuses = cluster
                .write_rows(table, shard, mode, &part, visibility)
                .await?;
            Ok::<_, Error>((rows, shard_statuses))
        }
    });
    let mut statuses = vec![RowStatus::Ok; batch.num_rows()];
    for (rows, shard_statuses) in futures::future::try_join_all(writes).await? {
        for (row, status) in rows.iter().zip(shard_statuses) {
            statuses[*row as usize] = status;
        }
    }
    Ok((statuses, batch.clone()))
}

async fn returning(
    table: &TableSchema,
    rows: Vec<RecordBatch>,
    items: &[ast::SelectItem],
) -> Result<Output> {
    let ctx = SessionContext::new();
    creek_common::functions::register_shared(&ctx);
    let schema = rows
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| table.arrow_schema());
    ctx.register_table(
        table.name.as_str(),
        Arc::new(MemTable::try_new(schema, vec![rows])?),
    )?;
    let list: Vec<String> = items.iter().map(|i| i.to_string()).collect();
    let df = ctx
        .sql(&format!(
            "SELECT {} FROM \"{}\"",
            list.join(", "),
            table.name
        ))
        .await?;
    let schema = Arc::new(df.schema().as_arrow().clone());
    let stream = df.execute_stream().await?;
    Ok(Output::Rows { schema, stream })
}
