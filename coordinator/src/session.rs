//! A client session: its settings (`SET`/`SHOW`) and the one entry point every protocol calls,
//! [`Session::execute`], which runs each statement of a SQL text in order.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::{CodedError, ErrorCode};
use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::prelude::{DataFrame, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;
use parking_lot::Mutex;
use sqlparser::ast::{self, ObjectType, Statement};
use tokio_util::sync::CancellationToken;

use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::context::session_context;
use crate::plan::pk_lookup::PkLookup;
use crate::plan::{pg_compat, single_row};
use crate::sql::ddl::{self, split_name};
use crate::sql::dml::{self, DmlContext};
use crate::sql::parse::{parse_sql, ParsedStatement};
use crate::sql::Output;

/// Per-session settings changed with `SET` and read with `SHOW`.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Schema of unqualified names (`search_path`).
    pub schema: String,
    /// Refresh written shards before acknowledging, so the next query sees the writes.
    pub write_refresh: bool,
    /// Other settings, kept and shown as given.
    pub other: BTreeMap<String, String>,
}

impl Default for SessionSettings {
    fn default() -> SessionSettings {
        let mut other = BTreeMap::new();
        for (key, value) in [
            ("server_version", crate::frontend::SERVER_VERSION),
            ("client_encoding", "UTF8"),
            ("datestyle", "ISO, MDY"),
            ("timezone", "UTC"),
            ("standard_conforming_strings", "on"),
            ("application_name", ""),
            ("transaction_isolation", "read committed"),
            (
                "default_table_access_method",
                crate::catalog::pg_catalog::ACCESS_METHOD,
            ),
            ("integer_datetimes", "on"),
            ("is_superuser", "on"),
            (
                "session_authorization",
                crate::catalog::pg_catalog::SUPERUSER,
            ),
        ] {
            other.insert(key.to_string(), value.to_string());
        }
        SessionSettings {
            schema: "doc".to_string(),
            write_refresh: false,
            other,
        }
    }
}

impl SessionSettings {
    /// Returns a setting's value, if it exists.
    pub fn get(&self, name: &str) -> Option<String> {
        match name {
            "search_path" | "schema" => Some(self.schema.clone()),
            "write_refresh" => Some(self.write_refresh.to_string()),
            other => self.other.get(other).cloned(),
        }
    }

    /// Sets a setting as a client startup parameter would.
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_lowercase();
        let value = value.trim().trim_matches('\'').to_string();
        let settings = self;
        match name.as_str() {
            "search_path" | "schema" => {
                settings.schema = value
                    .split(',')
                    .next()
                    .unwrap_or("doc")
                    .trim()
                    .trim_matches('"')
                    .to_string();
                if settings.schema.is_empty()
                    || settings.schema == "public"
                    || settings.schema == "\"$user\""
                {
                    settings.schema = "doc".to_string();
                }
            }
            "write_refresh" => {
                settings.write_refresh = match value.to_lowercase().as_str() {
                    "true" | "on" | "1" | "yes" => true,
                    "false" | "off" | "0" | "no" => false,
                    _ => {
                        return Err(Error::new(
                            ErrorCode::InvalidParameterValue,
                            format!("invalid value for write_refresh: {value}"),
                        ))
                    }
                }
            }
            _ => {
                settings.other.insert(name, value);
            }
        }
        Ok(())
    }
}

/// A client session.
pub struct Session {
    cluster: Arc<Cluster>,
    settings: Arc<Mutex<SessionSettings>>,
    /// Cancels the rows stream of the query running now (see [`Session::cancel_query`]).
    current_query: Mutex<CancellationToken>,
}

/// A planned query: its logical plan and parameter types, for extended-protocol Describe.
pub struct PreparedQuery {
    /// The statement's SQL text.
    pub sql: String,
    /// The statements `sql` parses to, kept so Execute does not parse the text again (a
    /// multi-row INSERT with 50,000 parameters is worth parsing once).
    pub statements: Arc<Vec<ParsedStatement>>,
    /// The result schema, if the statement returns rows.
    pub schema: Option<SchemaRef>,
    /// Inferred parameter types, by position.
    pub param_types: Vec<Option<DataType>>,
}

fn one_column(name: &str, values: Vec<String>) -> Result<Output> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])?;
    Ok(Output::Rows {
        schema: schema.clone(),
        stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
    })
}

fn affected(tag: &str, count: u64) -> Output {
    Output::Affected {
        tag: tag.to_string(),
        count,
    }
}

impl Session {
    /// Creates a session with default settings.
    pub fn new(cluster: Arc<Cluster>) -> Session {
        Session {
            cluster,
            settings: Arc::new(Mutex::new(SessionSettings::default())),
            current_query: Mutex::new(CancellationToken::new()),
        }
    }

    /// Cancels the statement running in this session: its row stream ends with 57014 and is
    /// dropped, which stops DataFusion's operators and the shard scans on the data nodes.
    pub fn cancel_query(&self) {
        self.current_query.lock().cancel();
    }

    fn begin_query(&self) -> CancellationToken {
        let token = CancellationToken::new();
        *self.current_query.lock() = token.clone();
        token
    }

    /// Returns a copy of the settings.
    pub fn settings(&self) -> SessionSettings {
        self.settings.lock().clone()
    }

    /// Sets a setting as a client startup parameter would.
    pub fn set(&self, name: &str, value: &str) -> Result<()> {
        self.settings.lock().set(name, value)
    }

    fn show(&self, name: &str) -> Option<String> {
        self.settings.lock().get(name)
    }

    fn context(&self, expose_hidden: bool) -> SessionContext {
        session_context(self.cluster.clone(), &self.settings, expose_hidden)
    }

    /// Executes every statement of `sql` with the given parameters.
    pub async fn execute(&self, sql: &str, params: &[ScalarValue]) -> Result<Vec<Output>> {
        let statements = parse_sql(sql)?;
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(self.execute_parsed_statement(statement, params).await?);
        }
        Ok(outputs)
    }

    /// Executes statements parsed earlier (by [`Session::prepare`]) with the given parameters.
    pub async fn execute_statements(
        &self,
        statements: &[ParsedStatement],
        params: &[ScalarValue],
    ) -> Result<Vec<Output>> {
        let mut outputs = Vec::with_capacity(statements.len());
        for statement in statements {
            outputs.push(
                self.execute_parsed_statement(statement.clone(), params)
                    .await?,
            );
        }
        Ok(outputs)
    }

    /// Parameter types of an `INSERT ... VALUES` of literals and parameters, from the target
    /// columns alone: planning a 50,000-parameter INSERT just to type its parameters would
    /// cost more than running it.
    fn values_parameter_types(&self, insert: &ast::Insert) -> Option<Vec<Option<DataType>>> {
        let ast::TableObject::TableName(name) = &insert.table else {
            return None;
        };
        let default_schema = self.settings.lock().schema.clone();
        let (schema, table) = split_name(name, &default_schema).ok()?;
        let table = self
            .cluster
            .catalog()
            .existing_table(&schema, &table)
            .ok()?;
        dml::values_parameter_types(&table, insert)
    }

    /// Plans a single statement without running it, for extended-protocol Parse/Describe.
    pub async fn prepare(&self, sql: &str) -> Result<PreparedQuery> {
        let statements = Arc::new(parse_sql(sql)?);
        let mut prepared = PreparedQuery {
            sql: sql.to_string(),
            statements: statements.clone(),
            schema: None,
            param_types: Vec::new(),
        };
        if let [ParsedStatement::Sql(statement, _)] = statements.as_slice() {
            let default_schema = self.settings.lock().schema.clone();
            if let Some(lookup) = PkLookup::recognise(&self.cluster, statement, &default_schema) {
                prepared.schema = Some(lookup.schema());
                prepared.param_types = lookup.param_types();
                return Ok(prepared);
            }
            let ctx = self.context(false);
            let planned = match statement.as_ref() {
                Statement::Query(_) | Statement::Explain { .. } => {
                    match plan_query(&ctx, statement.clone()).await? {
                        QueryPlan::Plan(plan) => Some(plan),
                        QueryPlan::Empty(schema) => {
                            prepared.schema = Some(schema);
                            None
                        }
                    }
                }
                Statement::Insert(insert) => match self.values_parameter_types(insert) {
                    Some(types) => {
                        prepared.param_types = types;
                        None
                    }
                    None => {
                        let mut stripped = insert.clone();
                        stripped.on = None;
                        stripped.returning = None;
                        ctx.state()
                            .statement_to_plan(DfStatement::Statement(Box::new(Statement::Insert(
                                stripped,
                            ))))
                            .await
                            .ok()
                    }
                },
                _ => None,
            };
            if let Some(plan) = planned {
                let types = plan.get_parameter_types()?;
                let mut ordered: Vec<(usize, Option<DataType>)> = types
                    .into_iter()
                    .filter_map(|(name, t)| {
                        name.trim_start_matches('$')
                            .parse::<usize>()
                            .ok()
                            .map(|i| (i, t))
                    })
                    .collect();
                ordered.sort_by_key(|(i, _)| *i);
                let count = ordered.last().map(|(i, _)| *i).unwrap_or(0);
                prepared.param_types = vec![None; count];
                for (i, t) in ordered {
                    prepared.param_types[i - 1] = t;
                }
                // As in PostgreSQL, `$n::type` declares the parameter's type where nothing
                // else in the statement decides it.
                let mut rewritten = statement.clone();
                pg_compat::rewrite(&mut rewritten);
                for (index, data_type) in pg_compat::placeholder_casts(&rewritten) {
                    let Some(slot) = prepared.param_types.get_mut(index - 1) else {
                        continue;
                    };
                    if slot.is_none() {
                        let probe = format!("SELECT CAST(NULL AS {data_type})");
                        if let Ok(plan) = ctx.state().create_logical_plan(&probe).await {
                            *slot = Some(plan.schema().field(0).data_type().clone());
                        }
                    }
                }
                if matches!(
                    statement.as_ref(),
                    Statement::Query(_) | Statement::Explain { .. }
                ) {
                    prepared.schema = Some(Arc::new(plan.schema().as_arrow().clone()));
                }
            }
        }
        Ok(prepared)
    }

    /// Runs `sql`, a one-row `INSERT ... VALUES (...)` with parameters, once for every
    /// parameter row in `rows`, as one multi-row INSERT: one plan, one write per shard. Returns
    /// each row's outcome in order, or `None` if `sql` is not such an INSERT (the caller then
    /// runs the rows one by one). An error fails the whole batch, so that the caller can
    /// retry row by row to tell which rows failed.
    pub async fn bulk_insert(
        &self,
        sql: &str,
        rows: &[Vec<ScalarValue>],
    ) -> Result<Option<Vec<creek_proto::v1::RowStatus>>> {
        let mut statements = parse_sql(sql)?;
        let [ParsedStatement::Sql(statement, _)] = statements.as_mut_slice() else {
            return Ok(None);
        };
        let Statement::Insert(insert) = statement.as_mut() else {
            return Ok(None);
        };
        let Some(values) = insert.source.as_mut().and_then(|q| match q.body.as_mut() {
            ast::SetExpr::Values(values) => Some(values),
            _ => None,
        }) else {
            return Ok(None);
        };
        if insert.returning.is_some() || values.rows.len() != 1 || rows.is_empty() {
            return Ok(None);
        }
        let template = values.rows[0].clone();
        let width = rows[0].len();
        if rows.iter().any(|row| row.len() != width) {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                "bulk_args rows differ in length",
            ));
        }
        values.rows = (0..rows.len())
            .map(|index| {
                let mut row = template.clone();
                let _ = ast::visit_expressions_mut(&mut row, |expr| {
                    if let ast::Expr::Value(value) = expr {
                        if let ast::Value::Placeholder(name) = &mut value.value {
                            if let Ok(n) = name.trim_start_matches('$').parse::<usize>() {
                                *name = format!("${}", index * width + n);
                            }
                        }
                    }
                    std::ops::ControlFlow::<()>::Continue(())
                });
                row
            })
            .collect();
        let params = ParamValues::List(rows.iter().flatten().cloned().map(Into::into).collect());
        let ctx = self.context(false);
        let default_schema = self.settings.lock().schema.clone();
        let dml_context = DmlContext {
            cluster: &self.cluster,
            ctx: &ctx,
            hidden_ctx: &ctx,
            default_schema: &default_schema,
            params: &params,
            write_refresh: self.settings.lock().write_refresh,
        };
        Ok(Some(dml::insert_statuses(&dml_context, insert).await?))
    }

    /// Executes one parsed statement.
    pub async fn execute_parsed_statement(
        &self,
        parsed: ParsedStatement,
        params: &[ScalarValue],
    ) -> Result<Output> {
        let (statement, clauses) = match parsed {
            ParsedStatement::Empty => return Ok(affected("", 0)),
            ParsedStatement::Refresh(names) => {
                let schema = self.settings.lock().schema.clone();
                for name in names {
                    let (schema_name, table_name) = split_name(&name, &schema)?;
                    let table = self
                        .cluster
                        .catalog()
                        .existing_table(&schema_name, &table_name)?;
                    self.cluster.refresh_table(&table).await?;
                }
                return Ok(affected("REFRESH", 0));
            }
            ParsedStatement::Sql(statement, clauses) => (statement, clauses),
        };
        let default_schema = self.settings.lock().schema.clone();
        let param_values = ParamValues::List(params.iter().cloned().map(Into::into).collect());
        match *statement {
            Statement::CreateTable(create) => {
                let table = ddl::table_from_create(
                    &create,
                    &clauses,
                    &default_schema,
                    self.cluster.data_nodes().len(),
                )?;
                self.cluster
                    .create_table(table, create.if_not_exists)
                    .await?;
                Ok(affected("CREATE TABLE", 0))
            }
            Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                for name in &names {
                    let (schema, table_name) = split_name(name, &default_schema)?;
                    match object_type {
                        ObjectType::Table => {
                            self.cluster
                                .drop_table(&schema, &table_name, if_exists)
                                .await?
                        }
                        ObjectType::View => {
                            self.cluster
                                .drop_view(&schema, &table_name, if_exists)
                                .await?
                        }
                        ObjectType::Index => {}
                        other => {
                            return Err(Error::new(
                                ErrorCode::FeatureNotSupported,
                                format!("DROP {other} is not supported"),
                            ))
                        }
                    }
                }
                let tag = match object_type {
                    ObjectType::View => "DROP VIEW",
                    ObjectType::Index => "DROP INDEX",
                    _ => "DROP TABLE",
                };
                Ok(affected(tag, 0))
            }
            Statement::CreateView(view) => {
                let (schema, name) = split_name(&view.name, &default_schema)?;
                // Plan once so a broken view is rejected at creation.
                self.context(false)
                    .state()
                    .create_logical_plan(&view.query.to_string())
                    .await?;
                ddl::create_view(
                    &self.cluster,
                    creek_common::schema::ViewDef {
                        schema_name: schema,
                        name,
                        query: view.query.to_string(),
                    },
                    view.or_replace,
                )
                .await?;
                Ok(affected("CREATE VIEW", 0))
            }
            Statement::CreateIndex(_) => Ok(affected("CREATE INDEX", 0)),
            Statement::AlterTable(alter) => {
                let (schema, name) = split_name(&alter.name, &default_schema)?;
                self.cluster.catalog().existing_table(&schema, &name)?;
                for operation in &alter.operations {
                    match operation {
                        ast::AlterTableOperation::AddColumn {
                            column_def,
                            if_not_exists,
                            ..
                        } => {
                            // Each operation sees the previous one's result.
                            let current = self.cluster.catalog().existing_table(&schema, &name)?;
                            ddl::add_column(&self.cluster, &current, column_def, *if_not_exists)
                                .await?;
                        }
                        other => {
                            return Err(Error::new(
                                ErrorCode::FeatureNotSupported,
                                format!("ALTER TABLE {other} is not supported"),
                            ))
                        }
                    }
                }
                Ok(affected("ALTER TABLE", 0))
            }
            Statement::ShowTables { .. } => {
                let state = self.cluster.catalog().state();
                let names: Vec<String> = state
                    .tables
                    .values()
                    .filter(|t| t.schema_name == default_schema)
                    .map(|t| t.name.clone())
                    .collect();
                one_column("table_name", names)
            }
            Statement::ShowCreate {
                obj_type: ast::ShowCreateObject::Table,
                obj_name,
            } => {
                let (schema, name) = split_name(&obj_name, &default_schema)?;
                let table = self.cluster.catalog().existing_table(&schema, &name)?;
                one_column(
                    &format!("SHOW CREATE TABLE {schema}.{name}"),
                    vec![ddl::show_create_table(&table)],
                )
            }
            Statement::ShowVariable { variable } => {
                let mut name = variable
                    .iter()
                    .map(|i| i.value.to_lowercase())
                    .collect::<Vec<_>>()
                    .join(" ");
                if name == "transaction isolation level" {
                    name = "transaction_isolation".to_string();
                }
                if name == "all" {
                    let settings = self.settings();
                    let mut rows: Vec<String> = settings
                        .other
                        .iter()
                        .map(|(k, v)| format!("{k}={v}"))
                        .collect();
                    rows.push(format!("search_path={}", settings.schema));
                    return one_column("setting", rows);
                }
                let value = self.show(&name).ok_or_else(|| {
                    Error::new(
                        ErrorCode::UndefinedObject,
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
                one_column(&name, vec![value])
            }
            Statement::Set(set) => {
                match set {
                    ast::Set::SingleAssignment {
                        variable, values, ..
                    } => {
                        let name = variable.to_string().to_lowercase();
                        let value = values
                            .iter()
                            .map(|v| v.to_string())
                            .collect::<Vec<_>>()
                            .join(",");
                        self.set(&name, &value)?;
                    }
                    ast::Set::SetTimeZone { value, .. } => {
                        self.set("timezone", &value.to_string())?
                    }
                    ast::Set::SetNames { charset_name, .. } => {
                        self.set("client_encoding", &charset_name.to_string())?
                    }
                    _ => {}
                }
                Ok(affected("SET", 0))
            }
            Statement::StartTransaction { .. } => Ok(affected("BEGIN", 0)),
            Statement::Commit { .. } => Ok(affected("COMMIT", 0)),
            Statement::Rollback { .. } => Ok(affected("ROLLBACK", 0)),
            // Transactions are no-ops, so are their savepoints.
            Statement::Savepoint { .. } => Ok(affected("SAVEPOINT", 0)),
            Statement::ReleaseSavepoint { .. } => Ok(affected("RELEASE", 0)),
            Statement::Discard { .. } => Ok(affected("DISCARD ALL", 0)),
            Statement::Copy { .. } => Ok(Output::CopyIn(crate::sql::copy::copy_from_stdin(
                &self.cluster,
                &statement,
                &default_schema,
            )?)),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                let ctx = self.context(false);
                // Only UPDATE and DELETE read `_id`; an INSERT (the hot path) builds one context.
                let hidden_ctx = if matches!(*statement, Statement::Insert(_)) {
                    ctx.clone()
                } else {
                    self.context(true)
                };
                let dml_context = DmlContext {
                    cluster: &self.cluster,
                    ctx: &ctx,
                    hidden_ctx: &hidden_ctx,
                    default_schema: &default_schema,
                    params: &param_values,
                    write_refresh: self.settings.lock().write_refresh,
                };
                match *statement {
                    Statement::Insert(insert) => dml::insert(&dml_context, &insert).await,
                    Statement::Update(update) => dml::update(&dml_context, &update).await,
                    Statement::Delete(delete) => dml::delete(&dml_context, &delete).await,
                    _ => unreachable!("matched as DML above"),
                }
            }
            Statement::Query(_) | Statement::Explain { .. } => {
                if let Some(lookup) =
                    PkLookup::recognise(&self.cluster, &statement, &default_schema)
                {
                    if let Some(batch) = lookup.run(&self.cluster, params).await? {
                        let schema = batch.schema();
                        return Ok(Output::Rows {
                            schema: schema.clone(),
                            stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
                        });
                    }
                }
                let ctx = self.context(false);
                match plan_query(&ctx, statement).await? {
                    QueryPlan::Plan(plan) => self.run_query(&ctx, plan, param_values).await,
                    QueryPlan::Empty(schema) => Ok(Output::Rows {
                        schema: schema.clone(),
                        stream: Box::pin(MemoryStream::try_new(vec![], schema, None)?),
                    }),
                }
            }
            other => Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!(
                    "statement is not supported: {}",
                    first_words(&other.to_string())
                ),
            )),
        }
    }

    async fn run_query(
        &self,
        ctx: &SessionContext,
        plan: LogicalPlan,
        params: ParamValues,
    ) -> Result<Output> {
        let plan = match &params {
            ParamValues::List(list) if list.is_empty() => plan,
            _ => plan.with_param_values(params)?,
        };
        if let LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) = plan {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                "statement is not supported here",
            ));
        }
        let token = self.begin_query();
        let df = DataFrame::new(ctx.state(), plan);
        let schema = Arc::new(df.schema().as_arrow().clone());
        let task_context = Arc::new(df.task_ctx());
        let physical = df.create_physical_plan().await?;
        let stream = creek_proto::exec::execute_stream(physical, None, task_context)?;
        Ok(Output::Rows {
            schema: schema.clone(),
            stream: cancellable(schema, stream, token),
        })
    }
}

/// A planned query, or the columns of a query known to return no rows without planning it.
enum QueryPlan {
    Plan(LogicalPlan),
    Empty(SchemaRef),
}

/// Plans a query (or EXPLAIN) the same way for execution and for extended-protocol Describe.
async fn plan_query(ctx: &SessionContext, mut statement: Box<Statement>) -> Result<QueryPlan> {
    crate::plan::naming::alias_subquery_columns(&mut statement);
    pg_compat::rewrite(&mut statement);
    single_row::wrap_scalar_subqueries(&mut statement);
    if let Some(columns) = pg_compat::empty_result_columns(&statement) {
        let fields: Vec<Field> = columns
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect();
        return Ok(QueryPlan::Empty(Arc::new(Schema::new(fields))));
    }
    Ok(QueryPlan::Plan(
        ctx.state()
            .statement_to_plan(DfStatement::Statement(statement))
            .await?,
    ))
}

/// Ends `stream` with a 57014 error as soon as `token` is cancelled, dropping it so the work
/// behind it stops.
fn cancellable(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    token: CancellationToken,
) -> SendableRecordBatchStream {
    let rows = stream.take_until(token.clone().cancelled_owned());
    let canceled = futures::stream::once(async move {
        token.is_cancelled().then(|| {
            Err(DataFusionError::External(Box::new(CodedError::new(
                ErrorCode::QueryCanceled,
                "canceling statement due to user request",
            ))))
        })
    })
    .filter_map(futures::future::ready);
    Box::pin(RecordBatchStreamAdapter::new(schema, rows.chain(canceled)))
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}
