//! INSERT, UPDATE and DELETE. DataFusion plans the rows to write (casts, defaults, `INSERT ...
//! SELECT`, the WHERE of an UPDATE); this module turns them into per-shard write requests and
//! reports per-row outcomes. UPDATE and DELETE first refresh the table so they act on every
//! acknowledged write, not only on refreshed ones.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::routing::shard_for_key;
use creek_common::schema::{TableSchema, ID_COLUMN};
use creek_common::types::ColumnType;
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanArray, StringArray, UInt32Array};
use datafusion::arrow::compute::{
    cast_with_options, filter_record_batch, take_record_batch, CastOptions,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::record_batch::RecordBatchOptions;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::{self, OnConflictAction, OnInsert, SetExpr, Statement};

use super::ddl::split_name;
use super::Output;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::routing::{array_key_texts, ids_and_shards};

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
    /// Whether writes are refreshed before acknowledgement (`SET write_refresh = true`).
    pub write_refresh: bool,
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
        None => {
            let plan = dml
                .ctx
                .state()
                .statement_to_plan(DfStatement::Statement(Box::new(Statement::Insert(
                    stripped,
                ))))
                .await?;
            let LogicalPlan::Dml(statement) = plan else {
                return Err(Error::new(
                    ErrorCode::Internal,
                    "INSERT did not plan as a DML statement",
                ));
            };
            collect_plan(dml.ctx, statement.input.as_ref().clone(), dml.params).await?
        }
    };
    let mut written = Vec::new();
    let mut all_statuses = Vec::new();
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let batch = conform_batch(&table, &batch)?;
        let batch = match (&insert.on, mode) {
            (Some(OnInsert::OnConflict(on_conflict)), WriteMode::Upsert) => {
                merge_on_conflict(dml, &table, &batch, on_conflict).await?
            }
            _ => batch,
        };
        let (statuses, rows) =
            write_batch(dml.cluster, &table, &batch, mode, dml.write_refresh).await?;
        if insert.returning.is_some() {
            let ok = BooleanArray::from_iter(statuses.iter().map(|s| Some(*s == RowStatus::Ok)));
            written.push(filter_record_batch(&rows, &ok)?);
        }
        all_statuses.extend(statuses);
    }
    Ok((table, all_statuses, written))
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
    conform_batch(table, &batch).map(Some)
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
            if types.len() < index {
                types.resize(index, None);
            }
            types[index - 1] = Some(column_type.clone());
        }
    }
    Some(types)
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

/// `n` of a `$n` parameter (1-based).
pub(crate) fn placeholder_index(expr: &ast::Expr) -> Option<usize> {
    let ast::Expr::Value(value) = expr else {
        return None;
    };
    let ast::Value::Placeholder(name) = &value.value else {
        return None;
    };
    name.strip_prefix('$')?
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
}

fn number(text: &str) -> Option<ScalarValue> {
    if let Ok(int) = text.parse::<i64>() {
        return Some(ScalarValue::Int64(Some(int)));
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
        let expr = parse_expr(default)?;
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

fn parse_expr(sql: &str) -> Result<ast::Expr> {
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(sql)
        .and_then(|mut p| p.parse_expr())
        .map_err(|e| Error::new(ErrorCode::SyntaxError, e.to_string()))
}

/// Casts fail on unparsable values instead of turning them into NULL (no silent data loss).
const STRICT_CAST: CastOptions<'static> = CastOptions {
    safe: false,
    format_options: datafusion::arrow::util::display::FormatOptions::new(),
};

/// Casts a planned batch to the table's exact column types and checks column constraints.
pub(crate) fn conform_batch(table: &TableSchema, batch: &RecordBatch) -> Result<RecordBatch> {
    let mut fields = Vec::with_capacity(table.columns.len());
    let mut arrays: Vec<ArrayRef> = Vec::with_capacity(table.columns.len());
    for column in &table.columns {
        let target = column.column_type.arrow_type();
        let array = match batch.column_by_name(&column.name) {
            Some(array) if array.data_type() == &target => array.clone(),
            Some(array) => cast_with_options(array, &target, &STRICT_CAST).map_err(|e| {
                let code = if array.data_type() == &DataType::Utf8 {
                    ErrorCode::InvalidTextRepresentation
                } else if array.data_type().is_numeric() && target.is_numeric() {
                    // A number that does not fit the column, as PostgreSQL's 22003.
                    ErrorCode::NumericOutOfRange
                } else {
                    ErrorCode::DatatypeMismatch
                };
                Error::new(
                    code,
                    format!("invalid value for column \"{}\": {e}", column.name),
                )
            })?,
            None => datafusion::arrow::array::new_null_array(&target, batch.num_rows()),
        };
        if column.not_null && array.null_count() > 0 {
            return Err(Error::new(
                ErrorCode::NotNullViolation,
                format!(
                    "null value in column \"{}\" violates not-null constraint",
                    column.name
                ),
            ));
        }
        if let ColumnType::Text { max_len: Some(max) } = column.column_type {
            let strings = array.as_string::<i32>();
            if strings
                .iter()
                .flatten()
                .any(|s| s.chars().count() > max as usize)
            {
                return Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "value too long for type character varying({max}) in column \"{}\"",
                        column.name
                    ),
                ));
            }
        }
        fields.push(Field::new(&column.name, target, true));
        arrays.push(array);
    }
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?)
}

/// Writes a conformed batch, grouped by shard. Returns per-row statuses in batch order and the
/// batch itself.
pub(crate) async fn write_batch(
    cluster: &Arc<Cluster>,
    table: &TableSchema,
    batch: &RecordBatch,
    mode: WriteMode,
    refresh: bool,
) -> Result<(Vec<RowStatus>, RecordBatch)> {
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
                .write_rows(table, shard, mode, &part, refresh)
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

/// For `ON CONFLICT (...) DO UPDATE SET ...`: replaces each incoming row whose key exists with
/// the existing row updated by the assignments (`excluded` names the incoming row).
async fn merge_on_conflict(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    batch: &RecordBatch,
    on_conflict: &ast::OnConflict,
) -> Result<RecordBatch> {
    let OnConflictAction::DoUpdate(update) = &on_conflict.action else {
        return Ok(batch.clone());
    };
    if table.primary_key.is_empty() {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "ON CONFLICT DO UPDATE needs a table with a primary key",
        ));
    }
    let (ids, shards) = ids_and_shards(table, batch)?;
    let column_names: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
    let mut existing_batches = Vec::new();
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for (id, shard) in ids.iter().zip(&shards) {
        by_shard.entry(*shard).or_default().push(id.clone());
    }
    for (shard, shard_ids) in by_shard {
        existing_batches.push(
            dml.cluster
                .get_rows(table, shard, shard_ids, column_names.clone())
                .await?,
        );
    }
    // Evaluate: SELECT <merged columns> FROM excluded LEFT JOIN <table> ON _id.
    let ctx = SessionContext::new();
    let mut excluded_fields = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
    excluded_fields.extend(batch.schema().fields().iter().map(|f| f.as_ref().clone()));
    let mut excluded_arrays: Vec<ArrayRef> = vec![Arc::new(StringArray::from(ids.clone()))];
    excluded_arrays.extend(batch.columns().iter().cloned());
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
        .map(|a| {
            (
                a.target.to_string().trim_matches('"').to_lowercase(),
                a.value.to_string(),
            )
        })
        .collect();
    let t = format!("\"{}\"", table.name);
    let select: Vec<String> = table
        .columns
        .iter()
        .map(|c| match assignments.get(&c.name) {
            Some(expr) => format!("CASE WHEN {t}.\"_id\" IS NULL THEN excluded.\"{0}\" ELSE {expr} END AS \"{0}\"", c.name),
            None => format!("CASE WHEN {t}.\"_id\" IS NULL THEN excluded.\"{0}\" ELSE {t}.\"{0}\" END AS \"{0}\"", c.name),
        })
        .collect();
    let sql = format!(
        "SELECT {} FROM excluded LEFT JOIN {t} ON excluded.\"_id\" = {t}.\"_id\"",
        select.join(", ")
    );
    let merged = ctx.sql(&sql).await?.collect().await?;
    let schema = merged
        .first()
        .map(|b| b.schema())
        .unwrap_or_else(|| table.arrow_schema());
    let merged = datafusion::arrow::compute::concat_batches(&schema, &merged)?;
    conform_batch(table, &merged)
}

async fn returning(
    table: &TableSchema,
    rows: Vec<RecordBatch>,
    items: &[ast::SelectItem],
) -> Result<Output> {
    let ctx = SessionContext::new();
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

/// Executes an UPDATE.
pub async fn update(dml: &DmlContext<'_>, update: &ast::Update) -> Result<Output> {
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
    let table = lookup_table(dml.cluster, name, dml.default_schema)?;
    let assignments: BTreeMap<String, String> = update
        .assignments
        .iter()
        .map(|a| {
            let target = match &a.target {
                ast::AssignmentTarget::ColumnName(n) => {
                    n.0.last().map(|p| p.to_string()).unwrap_or_default()
                }
                other => other.to_string(),
            };
            (target.trim_matches('"').to_lowercase(), a.value.to_string())
        })
        .collect();
    for column in assignments.keys() {
        if table.column(column).is_none() {
            return Err(Error::new(
                ErrorCode::UndefinedColumn,
                format!("column \"{column}\" does not exist"),
            ));
        }
        if table.primary_key.contains(column)
            || table.clustered_by.as_deref() == Some(column.as_str())
        {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!("updating primary key or routing column \"{column}\" is not supported"),
            ));
        }
    }
    dml.cluster.refresh_table(&table).await?;
    let select: Vec<String> = std::iter::once(format!("\"{ID_COLUMN}\""))
        .chain(
            table
                .columns
                .iter()
                .map(|c| match assignments.get(&c.name) {
                    Some(expr) => format!("{expr} AS \"{}\"", c.name),
                    None => format!("\"{}\"", c.name),
                }),
        )
        .collect();
    let relation = match alias {
        Some(alias) => format!("{name} AS {alias}"),
        None => name.to_string(),
    };
    let mut sql = format!("SELECT {} FROM {relation}", select.join(", "));
    if let Some(selection) = &update.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let plan = dml.hidden_ctx.state().create_logical_plan(&sql).await?;
    let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
    let mut count = 0u64;
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let conformed = conform_batch(&table, &batch)?;
        let ids = batch
            .column_by_name(ID_COLUMN)
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::new(ErrorCode::Internal, "update lost the _id column"))?
            .clone();
        let routing_texts = routing_texts(&table, &conformed, &ids)?;
        let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (row, text) in routing_texts.iter().enumerate() {
            by_shard
                .entry(shard_for_key(text, table.num_shards))
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
        for (shard, rows) in by_shard {
            let part = take_record_batch(&with_ids, &UInt32Array::from(rows))?;
            let statuses = dml
                .cluster
                .write_rows(&table, shard, WriteMode::Upsert, &part, dml.write_refresh)
                .await?;
            count += statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
        }
    }
    Ok(Output::Affected {
        tag: "UPDATE".into(),
        count,
    })
}

fn routing_texts(
    table: &TableSchema,
    batch: &RecordBatch,
    ids: &StringArray,
) -> Result<Vec<String>> {
    match &table.clustered_by {
        Some(column) => {
            let array = batch
                .column_by_name(column)
                .ok_or_else(|| Error::new(ErrorCode::Internal, "routing column missing"))?;
            Ok(array_key_texts(array)?
                .into_iter()
                .enumerate()
                .map(|(row, text)| text.unwrap_or_else(|| ids.value(row).to_string()))
                .collect())
        }
        None => Ok((0..ids.len())
            .map(|row| ids.value(row).to_string())
            .collect()),
    }
}

/// Executes a DELETE.
pub async fn delete(dml: &DmlContext<'_>, delete: &ast::Delete) -> Result<Output> {
    let tables = match &delete.from {
        ast::FromTable::WithFromKeyword(tables) | ast::FromTable::WithoutKeyword(tables) => tables,
    };
    let [relation] = tables.as_slice() else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE from several tables is not supported",
        ));
    };
    let ast::TableFactor::Table { name, alias, .. } = &relation.relation else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE of this relation is not supported",
        ));
    };
    let table = lookup_table(dml.cluster, name, dml.default_schema)?;
    dml.cluster.refresh_table(&table).await?;
    let routing_column = table.clustered_by.clone();
    let mut sql = format!(
        "SELECT \"{ID_COLUMN}\"{} FROM {name}{}",
        routing_column
            .as_ref()
            .map(|c| format!(", \"{c}\""))
            .unwrap_or_default(),
        alias
            .as_ref()
            .map(|a| format!(" AS {a}"))
            .unwrap_or_default()
    );
    if let Some(selection) = &delete.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    let plan = dml.hidden_ctx.state().create_logical_plan(&sql).await?;
    let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "delete lost the _id column"))?
            .clone();
        let texts = match &routing_column {
            Some(_) => array_key_texts(batch.column(1))?,
            None => vec![None; ids.len()],
        };
        for (row, text) in texts.into_iter().enumerate() {
            let id = ids.value(row).to_string();
            let shard = shard_for_key(text.as_deref().unwrap_or(&id), table.num_shards);
            by_shard.entry(shard).or_default().push(id);
        }
    }
    let mut count = 0u64;
    for (shard, ids) in by_shard {
        let statuses = dml
            .cluster
            .delete_ids(&table, shard, ids, dml.write_refresh)
            .await?;
        count += statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
    }
    Ok(Output::Affected {
        tag: "DELETE".into(),
        count,
    })
}
