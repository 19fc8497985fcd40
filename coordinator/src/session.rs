//! A client session: its settings (`SET`/`SHOW`) and the one entry point every protocol calls,
//! [`Session::execute`], which runs each statement of a SQL text in order.

use std::sync::Arc;

use creek_common::error::{CodedError, ErrorCode};
use datafusion::arrow::array::StringArray;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::error::DataFusionError;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::memory::MemoryStream;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion::prelude::SessionContext;
use datafusion::sql::parser::Statement as DfStatement;
use futures::StreamExt;
use parking_lot::Mutex;
use sqlparser::ast::{self, ObjectType, Statement};
use tokio_util::sync::CancellationToken;

mod export;

mod plan_cache;
mod prepare;
mod settings;
mod stop;

pub use export::{Export, ScanExport};

pub use prepare::{PreparedPlan, PreparedQuery};
pub use settings::SessionSettings;

use crate::cluster::{Cluster, SessionWrites, Visibility};
use crate::error::{Error, Result};
use crate::jobs::JobGuard;
use crate::plan::context::session_context;
use crate::plan::output_names::{NamingRules, OutputNames};
use crate::plan::pk_lookup::PkLookup;
use crate::plan::{pg_compat, single_row};
use crate::session::plan_cache::{CachedPlan, PlanCache};
use crate::sql::ddl::{self, split_name};
use crate::sql::dml::{self, DmlContext};
use crate::sql::parse::{parse_sql, ParsedStatement};
use crate::sql::Output;
use creek_common::state::ClusterState;
use stop::{cancellable, job_killed, rows_until, statement_timeout};

/// A client session.
pub struct Session {
    cluster: Arc<Cluster>,
    /// Whose rules name result columns: the protocol's (PostgreSQL's or CrateDB's).
    naming: NamingRules,
    settings: Arc<Mutex<SessionSettings>>,
    /// Statements prepared with SQL `PREPARE`.
    sql_prepared: prepare::SqlPreparedStatements,
    /// Cancels the rows stream of the query running now (see [`Session::cancel_query`]).
    current_query: Mutex<CancellationToken>,
    /// What this session wrote, so its scans see it (read-your-writes).
    writes: Arc<SessionWrites>,
    /// The contexts this session plans in (without and with system columns exposed), each with
    /// the settings it was built for: building one registers every function, which costs more
    /// than planning a small statement, so a statement reuses them until a setting changes.
    contexts: Mutex<[Option<Planning>; 2]>,
    /// The write count at `BEGIN`, while a (non-transactional) transaction block is open.
    transaction_start: Mutex<Option<u64>>,
    /// Warnings for the client about the statement just run, taken by the front end.
    notices: Mutex<Vec<Notice>>,
    /// Where this session's queries reserve memory (`memory`).
    runtime: Arc<datafusion::execution::runtime_env::RuntimeEnv>,
}

/// A warning the front end sends the client (pgwire's NoticeResponse).
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub severity: &'static str,
    pub sqlstate: &'static str,
    pub message: String,
}

/// A session context, the settings it was built for, and the plans made in it.
struct Planning {
    settings: SessionSettings,
    context: SessionContext,
    /// What kept plans run with: made once, as making one copies every function registry.
    task: Arc<TaskContext>,
    plans: PlanCache,
}

/// What a query about to be planned needs for its plan to be kept (see `plan_cache`).
struct KeepPlan {
    /// The statement as parsed, before planning rewrites it.
    statement: Statement,
    hidden: bool,
    /// The cluster state when planning began: a plan reflects this state or a newer one,
    /// so a kept plan is never taken for newer than it is.
    state: Arc<ClusterState>,
}

/// How a query's start went.
enum Started {
    Rows(Output),
    /// It lost the copy it read before returning anything: plan it again.
    Lost(DataFusionError),
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
    /// Creates a session with default settings whose result columns are named by PostgreSQL's
    /// rules.
    pub fn new(cluster: Arc<Cluster>) -> Session {
        Session::with_naming(cluster, NamingRules::Postgres)
    }

    /// Creates a session with default settings whose result columns are named by `naming`.
    pub fn with_naming(cluster: Arc<Cluster>, naming: NamingRules) -> Session {
        let cluster_runtime = cluster.memory().session_runtime();
        Session {
            cluster,
            naming,
            settings: Arc::new(Mutex::new(SessionSettings::default())),
            sql_prepared: Default::default(),
            current_query: Mutex::new(CancellationToken::new()),
            writes: Arc::default(),
            contexts: Mutex::default(),
            transaction_start: Mutex::default(),
            notices: Mutex::default(),
            runtime: cluster_runtime,
        }
    }

    /// The warnings the statements run so far raised, oldest first; taking them clears them.
    pub fn take_notices(&self) -> Vec<Notice> {
        std::mem::take(&mut *self.notices.lock())
    }

    /// `BEGIN`, `COMMIT` and `ROLLBACK` are accepted as CrateDB accepts them, but every
    /// statement is applied when it runs: a ROLLBACK after writes says so instead of
    /// pretending it undid them, and one outside a block warns as PostgreSQL does.
    fn end_transaction(&self, rollback: bool) {
        let start = self.transaction_start.lock().take();
        let message = match start {
            None => "there is no transaction in progress".to_string(),
            Some(start) if rollback && self.writes.count() > start => {
                "ROLLBACK did not undo this transaction's writes: Creek applies every statement \
                 when it runs, and transactions are not supported"
                    .to_string()
            }
            Some(_) => return,
        };
        let sqlstate = if start.is_none() { "25P01" } else { "0A000" };
        self.notices.lock().push(Notice {
            severity: "WARNING",
            sqlstate,
            message,
        });
    }

    /// What this session wrote: a COPY it runs records its writes here too.
    pub fn writes(&self) -> Arc<SessionWrites> {
        self.writes.clone()
    }

    fn visibility(&self) -> Visibility<'_> {
        Visibility {
            session: &self.writes,
            refresh: self.settings.lock().write_refresh,
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

    /// The context a statement plans in. Names resolve against the current cluster state at
    /// planning time, so only a change of the session's settings needs a new one.
    fn context(&self, expose_hidden: bool) -> SessionContext {
        let settings = self.settings.lock().clone();
        let mut contexts = self.contexts.lock();
        let slot = &mut contexts[usize::from(expose_hidden)];
        if let Some(planning) = slot.as_ref() {
            if planning.settings == settings {
                return planning.context.clone();
            }
        }
        let context = session_context(
            self.cluster.clone(),
            &self.settings,
            expose_hidden,
            Some(self.writes.clone()),
            Some(self.runtime.clone()),
        );
        *slot = Some(Planning {
            settings,
            task: context.task_ctx(),
            context: context.clone(),
            plans: PlanCache::default(),
        });
        context
    }

    /// The plan kept for `statement`, fresh for one run, with the task context to run it in;
    /// `None` unless the session's settings and the cluster state are those it was made with.
    fn cached_plan(
        &self,
        hidden: bool,
        statement: &Statement,
    ) -> Option<(CachedPlan, Arc<TaskContext>)> {
        let settings = self.settings.lock().clone();
        let state = self.cluster.catalog().state();
        let mut contexts = self.contexts.lock();
        let planning = contexts[usize::from(hidden)].as_mut()?;
        if planning.settings != settings {
            return None;
        }
        let cached = planning.plans.get(statement, &state)?;
        Some((cached, planning.task.clone()))
    }

    fn keep_plan(
        &self,
        keep: &KeepPlan,
        logical: &LogicalPlan,
        schema: SchemaRef,
        physical: &Arc<dyn ExecutionPlan>,
    ) {
        let settings = self.settings.lock().clone();
        let mut contexts = self.contexts.lock();
        if let Some(planning) = contexts[usize::from(keep.hidden)].as_mut() {
            if planning.settings == settings {
                planning.plans.insert(
                    &keep.statement,
                    keep.state.clone(),
                    logical,
                    schema,
                    physical,
                );
            }
        }
    }

    fn forget_plan(&self, hidden: bool, statement: &Statement) {
        if let Some(planning) = self.contexts.lock()[usize::from(hidden)].as_mut() {
            planning.plans.forget(statement);
        }
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
            visibility: self.visibility(),
        };
        let _job = self.cluster.jobs().start(sql);
        Ok(Some(dml::insert_statuses(&dml_context, insert).await?))
    }

    /// Executes one parsed statement, listed in `sys.jobs` until it has ended (for a query:
    /// until its rows stream is dropped).
    pub async fn execute_parsed_statement(
        &self,
        parsed: ParsedStatement,
        params: &[ScalarValue],
    ) -> Result<Output> {
        // Only a query stops halfway (KILL, statement_timeout): a write or DDL stopped at an
        // await point would leave some shards written and report failure.
        let reads_only = matches!(&parsed, ParsedStatement::Sql(statement, _)
            if matches!(statement.as_ref(), Statement::Query(_) | Statement::Explain { .. }));
        let job = if reads_only {
            self.cluster.jobs().start_cancellable(&parsed.text())
        } else {
            self.cluster.jobs().start(&parsed.text())
        };
        let output = if reads_only {
            self.supervised(self.run_parsed_statement(parsed, params, &job), &job)
                .await
        } else {
            self.run_parsed_statement(parsed, params, &job).await
        };
        match output {
            Ok(output) => Ok(listed_while_running(output, job)),
            Err(error) => {
                job.failed(&error.client_message());
                Err(error)
            }
        }
    }

    /// Runs a query under the session's `statement_timeout` and until its job is killed
    /// (`KILL`), its rows included: either ends it with 57014. Only for statements that
    /// write nothing: dropping `run` stops it at any await point.
    async fn supervised(
        &self,
        run: impl std::future::Future<Output = Result<Output>>,
        job: &JobGuard,
    ) -> Result<Output> {
        let deadline = self
            .settings
            .lock()
            .statement_timeout
            .map(|limit| tokio::time::Instant::now() + limit);
        let killed = job.killed().clone();
        let expired = async move {
            match deadline {
                Some(deadline) => tokio::time::sleep_until(deadline).await,
                None => std::future::pending().await,
            }
        };
        let output = tokio::select! {
            output = run => output?,
            _ = killed.cancelled() => return Err(job_killed().into()),
            _ = expired => return Err(statement_timeout().into()),
        };
        Ok(rows_until(output, deadline, job.killed().clone()))
    }

    async fn run_parsed_statement(
        &self,
        parsed: ParsedStatement,
        params: &[ScalarValue],
        job: &JobGuard,
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
            ParsedStatement::AlterTableSettings {
                table,
                partition,
                settings,
            } => {
                let schema = self.settings.lock().schema.clone();
                let (schema_name, table_name) = split_name(&table, &schema)?;
                let definition = self
                    .cluster
                    .catalog()
                    .existing_table(&schema_name, &table_name)?;
                if let Some(spec) = partition {
                    let ident = crate::plan::partitions::partition_of_spec(&definition, &spec)?
                        .ident
                        .clone();
                    self.cluster
                        .set_partition_settings(&definition, ident, settings)
                        .await?;
                    return Ok(affected("ALTER TABLE", 0));
                }
                for (key, value) in &settings {
                    match value {
                        Some(value) => crate::sql::ddl::check_table_setting(key, value)?,
                        None if crate::sql::ddl::is_table_setting(key) => {}
                        None => {
                            return Err(Error::new(
                                ErrorCode::InvalidParameterValue,
                                format!("invalid table setting {key}"),
                            ))
                        }
                    }
                }
                self.cluster
                    .set_table_settings(&schema_name, &table_name, settings)
                    .await?;
                return Ok(affected("ALTER TABLE", 0));
            }
            ParsedStatement::SetGlobal(settings) => {
                for (key, value) in &settings {
                    check_cluster_setting(key, value.as_deref())?;
                }
                self.cluster.set_cluster_settings(settings).await?;
                return Ok(affected("SET", 0));
            }
            ParsedStatement::Kill(id) => {
                let killed = self.cluster.kill_jobs(id.as_deref(), &job.id()).await;
                return Ok(affected("KILL", killed));
            }
            ParsedStatement::Decommission(node) => {
                self.cluster.decommission(&node).await?;
                return Ok(affected("ALTER CLUSTER", 0));
            }
            ParsedStatement::CreateAnalyzer { name, definition } => {
                self.cluster.create_analyzer(name, definition).await?;
                return Ok(affected("CREATE ANALYZER", 0));
            }
            ParsedStatement::DropAnalyzer(name) => {
                self.cluster.drop_analyzer(name).await?;
                return Ok(affected("DROP ANALYZER", 0));
            }
            ParsedStatement::CopyToDirectory(clause) => {
                let schema = self.settings.lock().schema.clone();
                let copy = crate::sql::copy::export::copy_to(&self.cluster, &clause, &schema)?;
                let token = self.begin_query();
                let rows = crate::sql::copy::export::copy_to_directory(
                    self.cluster.clone(),
                    copy,
                    token,
                    job.progress(),
                )
                .await?;
                return Ok(affected("COPY", rows));
            }
            ParsedStatement::CopyFromFiles(clause) => {
                let schema = self.settings.lock().schema.clone();
                return self.copy_from_files(&clause, &schema, job).await;
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
                    &self.cluster.catalog().state().analyzers,
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
                        ObjectType::Index => {
                            ddl::drop_index(&self.cluster, name, if_exists, &default_schema).await?
                        }
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
            Statement::CreateIndex(create) => {
                ddl::create_index(&self.cluster, &create, &default_schema).await?;
                Ok(affected("CREATE INDEX", 0))
            }
            Statement::AlterTable(alter) => {
                let (schema, name) = split_name(&alter.name, &default_schema)?;
                self.cluster.catalog().existing_table(&schema, &name)?;
                if let Some(stray) = clauses.column_index.keys().find(|column| {
                    !alter.operations.iter().any(|operation| {
                        matches!(operation, ast::AlterTableOperation::AddColumn { column_def, .. }
                            if &ddl::ident_name(&column_def.name) == *column)
                    })
                }) {
                    return Err(Error::new(
                        ErrorCode::SyntaxError,
                        format!("INDEX OFF given for {stray}, which is not a column being added"),
                    ));
                }
                for operation in &alter.operations {
                    match operation {
                        ast::AlterTableOperation::AddColumn {
                            column_def,
                            if_not_exists,
                            ..
                        } => {
                            // Each operation sees the previous one's result.
                            let current = self.cluster.catalog().existing_table(&schema, &name)?;
                            let index = clauses
                                .column_index
                                .get(&ddl::ident_name(&column_def.name))
                                .copied()
                                .unwrap_or_default();
                            ddl::add_column(
                                &self.cluster,
                                &current,
                                column_def,
                                index,
                                *if_not_exists,
                            )
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
            Statement::Prepare {
                name,
                data_types,
                statement: prepared,
            } => self.prepare_sql(&name, &data_types, &prepared).await,
            Statement::Execute {
                name: Some(name),
                parameters,
                immediate: false,
                ..
            } => self.execute_sql(&name, &parameters, params).await,
            Statement::Deallocate { name, .. } => self.deallocate_sql(&name),
            Statement::StartTransaction { .. } => {
                let mut start = self.transaction_start.lock();
                if start.is_some() {
                    self.notices.lock().push(Notice {
                        severity: "WARNING",
                        sqlstate: "25001",
                        message: "there is already a transaction in progress".into(),
                    });
                } else {
                    *start = Some(self.writes.count());
                }
                Ok(affected("BEGIN", 0))
            }
            Statement::Commit { .. } => {
                self.end_transaction(false);
                Ok(affected("COMMIT", 0))
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.end_transaction(true);
                Ok(affected("ROLLBACK", 0))
            }
            Statement::Rollback { .. } => Ok(affected("ROLLBACK", 0)),
            // Transactions are no-ops, so are their savepoints.
            Statement::Savepoint { .. } => Ok(affected("SAVEPOINT", 0)),
            Statement::ReleaseSavepoint { .. } => Ok(affected("RELEASE", 0)),
            Statement::Discard { .. } => Ok(affected("DISCARD ALL", 0)),
            Statement::Copy { .. } => Ok(Output::CopyIn(Box::new(
                crate::sql::copy::copy_from_stdin(&self.cluster, &statement, &default_schema)?,
            ))),
            Statement::Insert(_) | Statement::Update(_) | Statement::Delete(_) => {
                // The same PostgreSQL syntax (`'{a,b}'::text[]`, catalog casts) as in queries.
                let mut statement = statement;
                pg_compat::rewrite(&mut statement);
                crate::sql::parse::check_query_nesting(&statement)?;
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
                    visibility: self.visibility(),
                };
                match *statement {
                    Statement::Insert(insert) => dml::insert(&dml_context, &insert).await,
                    Statement::Update(update) => dml::update(&dml_context, &update).await,
                    Statement::Delete(delete) => dml::delete(&dml_context, &delete).await,
                    _ => unreachable!("matched as DML above"),
                }
            }
            Statement::Query(_) | Statement::Explain { .. } => {
                let names = OutputNames::of(&statement, self.naming);
                let output = self
                    .run_select(statement, &default_schema, params, param_values)
                    .await?;
                Ok(match (output, names) {
                    (Output::Rows { schema, stream }, Some(names)) => {
                        renamed_rows(&names, schema, stream)
                    }
                    (output, _) => output,
                })
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

    /// Runs a query or EXPLAIN: by primary key if it is a key lookup, else planned.
    async fn run_select(
        &self,
        statement: Box<Statement>,
        default_schema: &str,
        params: &[ScalarValue],
        param_values: ParamValues,
    ) -> Result<Output> {
        if let Statement::Explain {
            statement: explained,
            analyze: false,
            ..
        } = statement.as_ref()
        {
            if let Some(lookup) = PkLookup::recognise(&self.cluster, explained, default_schema) {
                let schema = Arc::new(Schema::new(vec![
                    Field::new("plan_type", DataType::Utf8, false),
                    Field::new("plan", DataType::Utf8, false),
                ]));
                let batch = RecordBatch::try_new(
                    schema.clone(),
                    vec![
                        Arc::new(StringArray::from(vec!["physical_plan"])),
                        Arc::new(StringArray::from(vec![lookup.describe()])),
                    ],
                )?;
                return Ok(Output::Rows {
                    schema: schema.clone(),
                    stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
                });
            }
        }
        if let Some(lookup) = PkLookup::recognise(&self.cluster, &statement, default_schema) {
            if let Some(batch) = lookup.run(&self.cluster, params).await? {
                let schema = batch.schema();
                return Ok(Output::Rows {
                    schema: schema.clone(),
                    stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
                });
            }
        }
        // System columns are readable when named (as in CrateDB); `SELECT *` shows them only
        // in a query that names one.
        let mut statement = statement;
        let hidden = names_system_column(&statement);
        let keep = if params.is_empty() {
            if let Some((cached, task)) = self.cached_plan(hidden, &statement) {
                let token = self.begin_query();
                match self
                    .start(cached.schema, cached.plan, task, &token, true)
                    .await?
                {
                    Started::Rows(output) => return Ok(output),
                    Started::Lost(error) => {
                        tracing::debug!(%error, "a kept plan lost its copy; planning it again");
                        self.forget_plan(hidden, &statement);
                    }
                }
            }
            Some(KeepPlan {
                statement: statement.as_ref().clone(),
                hidden,
                state: self.cluster.catalog().state(),
            })
        } else {
            None
        };
        if hidden {
            exclude_system_columns_from_wildcards(&mut statement);
        }
        // One state per statement: it fixes `now()` for the statement, and cloning it copies
        // every function registry.
        let state = self.context(hidden).state();
        match plan_query(&state, statement).await? {
            QueryPlan::Plan(plan) => self.run_query(&state, plan, param_values, keep).await,
            QueryPlan::Empty(schema) => Ok(Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(MemoryStream::try_new(vec![], schema, None)?),
            }),
        }
    }

    /// `COPY t FROM 'uri'`: the row count, or with `RETURN SUMMARY` a row per file. Without
    /// a summary, rows that could not be imported fail the statement (the others stay written).
    async fn copy_from_files(
        &self,
        clause: &crate::sql::parse::CopyFromClause,
        default_schema: &str,
        job: &JobGuard,
    ) -> Result<Output> {
        use crate::sql::copy::files;
        let copy = files::file_copy(&self.cluster, clause, default_schema)?;
        let summary = copy.summary;
        let token = self.begin_query();
        let files = files::copy_from_files(
            self.cluster.clone(),
            self.writes(),
            copy,
            token,
            job.progress(),
        )
        .await?;
        if summary {
            let schema = files::summary_schema();
            let node = self.cluster.node_id().0.clone();
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![node; files.len()])),
                    Arc::new(StringArray::from_iter_values(
                        files.iter().map(|f| f.uri.as_str()),
                    )),
                    Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                        files.iter().map(|f| f.success_count as i64),
                    )),
                    Arc::new(datafusion::arrow::array::Int64Array::from_iter_values(
                        files.iter().map(|f| f.error_count as i64),
                    )),
                    Arc::new(StringArray::from_iter_values(
                        files.iter().map(|f| f.errors_json()),
                    )),
                ],
            )?;
            return Ok(Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(MemoryStream::try_new(vec![batch], schema, None)?),
            });
        }
        let written: u64 = files.iter().map(|f| f.success_count).sum();
        let failed: u64 = files.iter().map(|f| f.error_count).sum();
        if failed > 0 {
            let first = files
                .iter()
                .find_map(|f| {
                    let (line, message) = f.first.as_ref()?;
                    Some(format!("{} line {line}: {message}", f.uri))
                })
                .unwrap_or_default();
            return Err(Error::new(
                ErrorCode::BadCopyFileFormat,
                format!(
                    "{failed} row(s) could not be imported ({written} were; first: {first}); \
                     RETURN SUMMARY lists every file's errors"
                ),
            ));
        }
        Ok(affected("COPY", written))
    }

    /// Plans and runs `plan`; with `keep`, the physical plan is kept for the statement to run
    /// again if it may (see `plan_cache`).
    async fn run_query(
        &self,
        state: &SessionState,
        plan: LogicalPlan,
        params: ParamValues,
        keep: Option<KeepPlan>,
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
        // A copy can move or its node die between planning and reading: a query that fails
        // as unavailable before it returned anything is planned again on the copies the
        // newer cluster state names, a few times.
        let mut attempt = 0;
        let schema = Arc::new(plan.schema().as_arrow().clone());
        let task_context = state.task_ctx();
        loop {
            attempt += 1;
            let physical = state.create_physical_plan(&plan).await?;
            if let (1, Some(keep)) = (attempt, &keep) {
                self.keep_plan(keep, &plan, schema.clone(), &physical);
            }
            let may_retry = attempt < READ_ATTEMPTS;
            match self
                .start(
                    schema.clone(),
                    physical,
                    task_context.clone(),
                    &token,
                    may_retry,
                )
                .await?
            {
                Started::Rows(output) => return Ok(output),
                Started::Lost(error) => {
                    if let Some(keep) = &keep {
                        self.forget_plan(keep.hidden, &keep.statement);
                    }
                    tracing::debug!(%error, attempt, "a read lost its copy; planning it again");
                    tokio::time::sleep(READ_RETRY_PAUSE).await;
                }
            }
        }
    }

    /// Starts running `physical` and waits for its first batch. A query that lost the copy it
    /// reads before returning anything is `Lost` if `may_retry`; any other error reaches the
    /// client in the rows.
    async fn start(
        &self,
        schema: SchemaRef,
        physical: Arc<dyn ExecutionPlan>,
        task_context: Arc<TaskContext>,
        token: &CancellationToken,
        may_retry: bool,
    ) -> Result<Started> {
        let stream = creek_proto::exec::execute_stream(physical, None, task_context)?;
        // Cancellable while it waits for the first batch too.
        let mut stream = cancellable(schema.clone(), stream, token.clone());
        let first = stream.next().await;
        if let Some(Err(error)) = first {
            if may_retry && !token.is_cancelled() && error_code_of(&error) == ErrorCode::Unavailable
            {
                return Ok(Started::Lost(error));
            }
            return Ok(Started::Rows(Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(RecordBatchStreamAdapter::new(
                    schema,
                    futures::stream::once(async move { Err(error) }).chain(stream),
                )),
            }));
        }
        let stream = futures::stream::iter(first).chain(stream);
        Ok(Started::Rows(Output::Rows {
            schema: schema.clone(),
            stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
        }))
    }
}

/// How many times a query whose copy went away before it returned anything is planned.
const READ_ATTEMPTS: usize = 15;

/// The pause before such a query is planned again (the newer cluster state arriving).
const READ_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// The Creek error code a failed query carries.
fn error_code_of(error: &DataFusionError) -> ErrorCode {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(coded) = current.downcast_ref::<CodedError>() {
            return coded.code;
        }
        source = current.source();
    }
    ErrorCode::Internal
}

/// `schema` named by `names`, where they map onto it.
fn named(names: Option<&OutputNames>, schema: SchemaRef) -> SchemaRef {
    names
        .and_then(|names| names.apply(&schema))
        .unwrap_or(schema)
}

/// A query's rows with its result columns named for the client (see `plan::output_names`).
fn renamed_rows(
    names: &OutputNames,
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
) -> Output {
    let Some(renamed) = names.apply(&schema) else {
        return Output::Rows { schema, stream };
    };
    let names: Vec<String> = renamed.fields().iter().map(|f| f.name().clone()).collect();
    let batches = stream.map(move |batch| {
        let batch = batch?;
        // Named by position over the batch's own fields: operators may produce another
        // physical type than planned (Utf8View for Utf8), which the encoders accept.
        let fields: Vec<Field> = batch
            .schema()
            .fields()
            .iter()
            .zip(&names)
            .map(|(field, name)| field.as_ref().clone().with_name(name))
            .collect();
        Ok(RecordBatch::try_new_with_options(
            Arc::new(Schema::new(fields)),
            batch.columns().to_vec(),
            &RecordBatchOptions::new().with_row_count(Some(batch.num_rows())),
        )?)
    });
    Output::Rows {
        schema: renamed.clone(),
        stream: Box::pin(RecordBatchStreamAdapter::new(renamed, batches)),
    }
}

/// A planned query, or the columns of a query known to return no rows without planning it.
enum QueryPlan {
    Plan(LogicalPlan),
    Empty(SchemaRef),
}

/// Plans a query (or EXPLAIN) the same way for execution and for extended-protocol Describe.
async fn plan_query(state: &SessionState, mut statement: Box<Statement>) -> Result<QueryPlan> {
    crate::plan::naming::alias_subquery_columns(&mut statement);
    crate::plan::naming::alias_duplicate_outputs(&mut statement);
    pg_compat::rewrite(&mut statement);
    crate::plan::fulltext::resolve_matches(state, &mut statement).await?;
    // The rewrites nest queries of their own (`IN (subquery)` in a select list).
    crate::sql::parse::check_query_nesting(&statement)?;
    single_row::wrap_scalar_subqueries(&mut statement);
    if let Some(columns) = pg_compat::empty_result_columns(&statement) {
        let fields: Vec<Field> = columns
            .iter()
            .map(|name| Field::new(name, DataType::Utf8, true))
            .collect();
        return Ok(QueryPlan::Empty(Arc::new(Schema::new(fields))));
    }
    Ok(QueryPlan::Plan(
        state
            .statement_to_plan(DfStatement::Statement(statement))
            .await?,
    ))
}

fn first_words(sql: &str) -> String {
    sql.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
}

/// The hidden columns of every table, readable when a statement names them.
const SYSTEM_COLUMNS: [&str; 4] = [
    creek_common::schema::ID_COLUMN,
    creek_common::schema::SEQ_NO_COLUMN,
    creek_common::schema::PRIMARY_TERM_COLUMN,
    creek_common::schema::SCORE_COLUMN,
];

/// Whether `statement` names `_id`, `_seq_no`, `_primary_term` or `_score` anywhere.
pub(crate) fn names_system_column(statement: &Statement) -> bool {
    let system = |ident: &ast::Ident| SYSTEM_COLUMNS.contains(&ident.value.as_str());
    ast::visit_expressions(statement, |expr| match expr {
        ast::Expr::Identifier(ident) if system(ident) => std::ops::ControlFlow::Break(()),
        ast::Expr::CompoundIdentifier(parts) if parts.last().is_some_and(system) => {
            std::ops::ControlFlow::Break(())
        }
        _ => std::ops::ControlFlow::Continue(()),
    })
    .is_break()
}

/// Makes every `*` of `statement` leave out the system columns, which a query that names one
/// can see: `SELECT _seq_no, * FROM t` shows `_seq_no` once, as in CrateDB.
pub(crate) fn exclude_system_columns_from_wildcards(statement: &mut Statement) {
    struct Exclude;
    impl ast::VisitorMut for Exclude {
        type Break = ();
        fn pre_visit_query(&mut self, query: &mut ast::Query) -> std::ops::ControlFlow<()> {
            if let ast::SetExpr::Select(select) = query.body.as_mut() {
                for item in &mut select.projection {
                    let options = match item {
                        ast::SelectItem::Wildcard(options)
                        | ast::SelectItem::QualifiedWildcard(_, options) => options,
                        _ => continue,
                    };
                    if options.opt_exclude.is_none() {
                        options.opt_exclude = Some(ast::ExcludeSelectItem::Multiple(
                            SYSTEM_COLUMNS
                                .iter()
                                .map(|name| ast::ObjectName::from(vec![ast::Ident::new(*name)]))
                                .collect(),
                        ));
                    }
                }
            }
            std::ops::ControlFlow::Continue(())
        }
    }
    let _ = ast::VisitMut::visit(statement, &mut Exclude);
}

/// Checks a `SET GLOBAL` / `RESET GLOBAL` setting: only settings Creek acts on are taken.
fn check_cluster_setting(key: &str, value: Option<&str>) -> Result<()> {
    match key {
        crate::catalog::commands::AWARENESS_SETTING => {
            let valid = value.is_none_or(|v| {
                v.split(',').all(|a| {
                    let a = a.trim();
                    !a.is_empty()
                        && a.chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                })
            });
            if valid {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("{key} takes a comma-separated list of node attribute names"),
                ))
            }
        }
        creek_common::state::RECOVERY_MAX_BYTES_PER_SEC => {
            if value.is_none_or(|v| creek_common::state::parse_byte_size(v).is_some()) {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("{key} takes a byte size such as '40mb' or '0' (no bound)"),
                ))
            }
        }
        creek_common::state::GRACEFUL_STOP_MIN_AVAILABILITY => {
            one_of(key, value, &["none", "primaries", "full"])
        }
        creek_common::state::GRACEFUL_STOP_FORCE => one_of(key, value, &["true", "false"]),
        crate::catalog::commands::MAX_SHARDS_PER_NODE_SETTING => {
            if value
                .is_none_or(|v| crate::catalog::commands::parse_max_shards_per_node(v).is_some())
            {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("{key} takes a positive number of shard copies"),
                ))
            }
        }
        creek_common::state::GRACEFUL_STOP_TIMEOUT => {
            if value.is_none_or(|v| {
                creek_common::schema::parse_duration_ms(v).is_some_and(|ms| ms >= 0)
            }) {
                Ok(())
            } else {
                Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!("{key} takes a duration such as '2h', '10m' or '30s'"),
                ))
            }
        }
        _ => Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("unknown cluster setting {key}"),
        )),
    }
}

/// Checks that a setting's value (if set) is one of `allowed`, ignoring case.
fn one_of(key: &str, value: Option<&str>, allowed: &[&str]) -> Result<()> {
    let valid = value.is_none_or(|v| {
        let v = v.trim().trim_matches('\'').to_ascii_lowercase();
        allowed.contains(&v.as_str())
    });
    if valid {
        Ok(())
    } else {
        Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("{key} takes one of {}", allowed.join(", ")),
        ))
    }
}

/// Keeps `job` listed in `sys.jobs` while `output` still runs: a query's rows stream or a
/// COPY FROM STDIN's data holds it; anything else has ended.
fn listed_while_running(output: Output, job: JobGuard) -> Output {
    match output {
        Output::Rows { schema, stream } => {
            let stream = stream.map(move |batch| {
                if let Err(error) = &batch {
                    job.failed(&creek_common::error::strip_prefix(&error.to_string()));
                }
                batch
            });
            Output::Rows {
                schema: schema.clone(),
                stream: Box::pin(RecordBatchStreamAdapter::new(schema, stream)),
            }
        }
        Output::CopyIn(mut copy) => {
            copy.job = Some(Arc::new(job));
            Output::CopyIn(copy)
        }
        other => other,
    }
}
