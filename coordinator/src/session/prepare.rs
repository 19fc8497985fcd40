//! Preparing statements: planning without running, for the extended protocol's Parse and
//! Describe (result columns, parameter types), and SQL-level `PREPARE name [(types)] AS ...`,
//! `EXECUTE name [(args)]` and `DEALLOCATE [PREPARE] name | ALL`, kept per session as in
//! PostgreSQL.

use std::collections::HashMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::state::ClusterState;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::common::ScalarValue;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::DataFrame;
use datafusion::sql::parser::Statement as DfStatement;
use sqlparser::ast::{self, Statement};

use super::{named, plan_query, renamed_rows, QueryPlan, Session, SessionSettings};
use crate::error::{Error, Result};
use crate::plan::identifiers::ident_name;
use crate::plan::output_names::OutputNames;
use crate::plan::params::set_parameter_type;
use crate::plan::pg_compat;
use crate::plan::pk_lookup::PkLookup;
use crate::sql::ddl::{self, split_name};
use crate::sql::dml;
use crate::sql::parse::{parse_sql, ParsedStatement, TableClauses};
use crate::sql::Output;

/// A planned query: its logical plan and parameter types, for extended-protocol Describe.
pub struct PreparedQuery {
    /// The statement's SQL text.
    pub sql: String,
    /// The statements `sql` parses to, kept so Execute does not parse the text again (a
    /// multi-row INSERT with 50,000 parameters is worth parsing once).
    pub statements: Arc<Vec<ParsedStatement>>,
    /// The result schema, if the statement returns rows.
    pub schema: Option<datafusion::arrow::datatypes::SchemaRef>,
    /// Inferred parameter types, by position.
    pub param_types: Vec<Option<DataType>>,
    /// The query's plan, for Execute to reuse while it is still what planning would give.
    pub plan: Option<Arc<PreparedPlan>>,
}

/// The logical plan of a prepared query and what it was planned against: a plan names tables
/// as the cluster state had them and resolves names with the session's settings, so it is
/// reused only while both are unchanged (the shards a scan reads are chosen later, from the
/// state at execution).
pub struct PreparedPlan {
    plan: LogicalPlan,
    /// The very state planned against, not its version: a Raft snapshot may install another
    /// state under a version number already seen.
    state: Arc<ClusterState>,
    settings: SessionSettings,
}

/// Statements prepared with SQL `PREPARE`, by name.
#[derive(Default)]
pub(super) struct SqlPreparedStatements(parking_lot::Mutex<HashMap<String, Arc<SqlPrepared>>>);

/// One statement prepared with SQL `PREPARE`.
struct SqlPrepared {
    statements: Arc<Vec<ParsedStatement>>,
    /// The result columns, if the statement returns rows.
    schema: Option<datafusion::arrow::datatypes::SchemaRef>,
    /// Each parameter's type: declared in `PREPARE name (types)`, else inferred.
    param_types: Vec<Option<DataType>>,
}

/// The statement name of `EXECUTE name`.
fn execute_name(name: &ast::ObjectName) -> String {
    match name.0.as_slice() {
        [ast::ObjectNamePart::Identifier(ident)] => ident_name(ident),
        _ => name.to_string(),
    }
}

fn no_such_statement(name: &str) -> Error {
    Error::new(
        ErrorCode::UndefinedPreparedStatement,
        format!("prepared statement \"{name}\" does not exist"),
    )
}

impl Session {
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
        self.prepare_parsed(sql, Arc::new(parse_sql(sql)?)).await
    }

    /// Executes prepared statements: with the plan made when they were prepared if it is
    /// still valid (the cluster state and the session's settings are those it was planned
    /// with), else as [`Session::execute_statements`] does, planning them again.
    pub async fn execute_prepared(
        &self,
        statements: &[ParsedStatement],
        plan: Option<&PreparedPlan>,
        params: &[ScalarValue],
    ) -> Result<Vec<Output>> {
        let (Some(prepared), [ParsedStatement::Sql(statement, _)]) = (plan, statements) else {
            return self.execute_statements(statements, params).await;
        };
        if params.is_empty() {
            // Without parameters the session's kept physical plan, if any, saves more than
            // this logical one would (see `plan_cache`).
            return self.execute_statements(statements, params).await;
        }
        let current = Arc::ptr_eq(&prepared.state, &self.cluster.catalog().state())
            && prepared.settings == *self.settings.lock();
        if !current {
            return self.execute_statements(statements, params).await;
        }
        let params = ParamValues::List(params.iter().cloned().map(Into::into).collect());
        let state = self.context(false).state();
        let job = self
            .cluster
            .jobs()
            .start_cancellable(&statement.to_string());
        let output = self
            .supervised(
                self.run_query(&state, prepared.plan.clone(), params, None),
                &job,
            )
            .await
            .inspect_err(|error| job.failed(&error.client_message()))?;
        let output = match (output, OutputNames::of(statement, self.naming)) {
            (Output::Rows { schema, stream }, Some(names)) => renamed_rows(&names, schema, stream),
            (output, _) => output,
        };
        Ok(vec![super::listed_while_running(output, job)])
    }

    /// Plans parsed statements without running them: the result schema and parameter types of
    /// a single statement.
    async fn prepare_parsed(
        &self,
        sql: &str,
        statements: Arc<Vec<ParsedStatement>>,
    ) -> Result<PreparedQuery> {
        let mut prepared = PreparedQuery {
            sql: sql.to_string(),
            statements: statements.clone(),
            schema: None,
            param_types: Vec::new(),
            plan: None,
        };
        if let [ParsedStatement::CopyFromFiles(copy)] = statements.as_slice() {
            if copy.summary {
                prepared.schema = Some(crate::sql::copy::files::summary_schema());
            }
        }
        if let [ParsedStatement::Sql(statement, _)] = statements.as_slice() {
            let default_schema = self.settings.lock().schema.clone();
            let names = OutputNames::of(statement, self.naming);
            if let Some(lookup) = PkLookup::recognise(&self.cluster, statement, &default_schema) {
                prepared.schema = Some(named(names.as_ref(), lookup.schema()));
                prepared.param_types = lookup.param_types();
                return Ok(prepared);
            }
            if let Statement::Execute {
                name: Some(name), ..
            } = statement.as_ref()
            {
                // Describes as the statement it runs, as in PostgreSQL.
                if let Some(sql_prepared) = self.sql_prepared_named(name) {
                    prepared.schema.clone_from(&sql_prepared.schema);
                }
                // `EXECUTE q($1)`: its own parameters feed the arguments.
                prepared
                    .param_types
                    .resize(crate::plan::params::highest_parameter(statement), None);
                return Ok(prepared);
            }
            let hidden = super::names_system_column(statement);
            let ctx = self.context(hidden);
            // Read before planning: a change while it plans makes Execute plan again.
            let cluster_state = self.cluster.catalog().state();
            let settings = self.settings.lock().clone();
            let planned = match statement.as_ref() {
                Statement::Query(_) | Statement::Explain { .. } => {
                    match plan_query(&ctx.state(), statement.clone()).await? {
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
                Statement::Update(update) => {
                    prepared.param_types = dml::update_parameter_types(
                        &self.context(true),
                        &self.cluster,
                        &default_schema,
                        update,
                    )
                    .await?;
                    None
                }
                Statement::Delete(delete) => {
                    prepared.param_types = dml::delete_parameter_types(
                        &self.context(true),
                        &self.cluster,
                        &default_schema,
                        delete,
                    )
                    .await?;
                    None
                }
                _ => None,
            };
            if let Some(plan) = planned {
                prepared.param_types = dml::plan_parameter_types(&plan)?;
                if matches!(
                    statement.as_ref(),
                    Statement::Query(_) | Statement::Explain { .. }
                ) {
                    let schema = Arc::new(plan.schema().as_arrow().clone());
                    prepared.schema = Some(named(names.as_ref(), schema));
                }
                // Only a plain query runs its plan as planned here: EXPLAIN describes key
                // lookups without planning, and system columns change what `*` means.
                if matches!(statement.as_ref(), Statement::Query(_)) && !hidden {
                    prepared.plan = Some(Arc::new(PreparedPlan {
                        plan,
                        state: cluster_state,
                        settings,
                    }));
                }
            }
            if let Statement::Insert(insert) = statement.as_ref() {
                for (index, data_type) in
                    dml::on_conflict_parameter_types(&self.cluster, &default_schema, insert)
                {
                    if prepared
                        .param_types
                        .get(index - 1)
                        .is_none_or(Option::is_none)
                    {
                        set_parameter_type(&mut prepared.param_types, index, Some(data_type));
                    }
                }
            }
            let highest = crate::plan::params::highest_parameter(statement);
            if prepared.param_types.len() < highest {
                prepared.param_types.resize(highest, None);
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
        }
        Ok(prepared)
    }

    /// `PREPARE name [(types)] AS statement`.
    pub(super) async fn prepare_sql(
        &self,
        name: &ast::Ident,
        data_types: &[ast::DataType],
        statement: &Statement,
    ) -> Result<Output> {
        let name = ident_name(name);
        if !matches!(
            statement,
            Statement::Query(_)
                | Statement::Insert(_)
                | Statement::Update(_)
                | Statement::Delete(_)
        ) {
            return Err(Error::new(
                ErrorCode::SyntaxError,
                "PREPARE takes a SELECT, VALUES, INSERT, UPDATE or DELETE statement",
            ));
        }
        if self.sql_prepared.0.lock().contains_key(&name) {
            return Err(Error::new(
                ErrorCode::DuplicatePreparedStatement,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        let declared = data_types
            .iter()
            .map(|data_type| ddl::column_type(data_type).map(|t| t.arrow_type()))
            .collect::<Result<Vec<_>>>()?;
        let statements = Arc::new(vec![ParsedStatement::Sql(
            Box::new(statement.clone()),
            TableClauses::default(),
        )]);
        // Planned now, as PostgreSQL analyses a statement at PREPARE: errors surface here.
        let planned = self
            .prepare_parsed(&statement.to_string(), statements.clone())
            .await?;
        let mut param_types = planned.param_types.clone();
        for (index, data_type) in declared.into_iter().enumerate() {
            set_parameter_type(&mut param_types, index + 1, Some(data_type));
        }
        let mut prepared = self.sql_prepared.0.lock();
        if prepared.contains_key(&name) {
            return Err(Error::new(
                ErrorCode::DuplicatePreparedStatement,
                format!("prepared statement \"{name}\" already exists"),
            ));
        }
        prepared.insert(
            name,
            Arc::new(SqlPrepared {
                statements,
                schema: planned.schema,
                param_types,
            }),
        );
        Ok(Output::Affected {
            tag: "PREPARE".into(),
            count: 0,
        })
    }

    fn sql_prepared_named(&self, name: &ast::ObjectName) -> Option<Arc<SqlPrepared>> {
        self.sql_prepared.0.lock().get(&execute_name(name)).cloned()
    }

    /// `EXECUTE name [(args)]`: the arguments are evaluated (they may use this statement's own
    /// parameters), cast to the parameter types, and the prepared statement runs with them.
    pub(super) async fn execute_sql(
        &self,
        name: &ast::ObjectName,
        args: &[ast::Expr],
        params: &[ScalarValue],
    ) -> Result<Output> {
        let prepared = self
            .sql_prepared_named(name)
            .ok_or_else(|| no_such_statement(&execute_name(name)))?;
        let name = execute_name(name);
        if args.len() != prepared.param_types.len() {
            return Err(Error::new(
                ErrorCode::SyntaxError,
                format!(
                    "wrong number of parameters for prepared statement \"{name}\": expected {}, got {}",
                    prepared.param_types.len(),
                    args.len()
                ),
            ));
        }
        let mut values = self.evaluate_arguments(args, params).await?;
        for (value, data_type) in values.iter_mut().zip(&prepared.param_types) {
            if let Some(data_type) = data_type {
                // As a value written to a column of that type: `'{a,b}'` for a `text[]`
                // parameter is an array, a number for a timestamp epoch milliseconds.
                *value = dml::convert_value(value, data_type)?;
            }
        }
        let mut outputs = Box::pin(self.execute_statements(&prepared.statements, &values)).await?;
        outputs
            .pop()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "prepared statement had no statement"))
    }

    /// Evaluates constant argument expressions (`EXECUTE q(1, 'a', $1)`) to values.
    async fn evaluate_arguments(
        &self,
        args: &[ast::Expr],
        params: &[ScalarValue],
    ) -> Result<Vec<ScalarValue>> {
        if args.is_empty() {
            return Ok(Vec::new());
        }
        let projection = args
            .iter()
            .map(|arg| ast::SelectItem::UnnamedExpr(arg.clone()))
            .collect();
        // A `SELECT` of the arguments, rewritten as any query is (`'{a}'::text[]`).
        let mut select = sqlparser::parser::Parser::parse_sql(
            &sqlparser::dialect::PostgreSqlDialect {},
            "SELECT 1",
        )
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?
        .remove(0);
        if let Statement::Query(query) = &mut select {
            if let ast::SetExpr::Select(body) = query.body.as_mut() {
                body.projection = projection;
            }
        }
        pg_compat::rewrite(&mut select);
        let ctx = self.context(false);
        let plan = ctx
            .state()
            .statement_to_plan(DfStatement::Statement(Box::new(select)))
            .await?;
        let plan = if params.is_empty() {
            plan
        } else {
            plan.with_param_values(params.to_vec())?
        };
        let batches = DataFrame::new(ctx.state(), plan).collect().await?;
        let batch = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| Error::new(ErrorCode::Internal, "EXECUTE arguments gave no row"))?;
        batch
            .columns()
            .iter()
            .map(|column| Ok(ScalarValue::try_from_array(column, 0)?))
            .collect()
    }

    /// `DEALLOCATE [PREPARE] name | ALL` of statements prepared with SQL `PREPARE`.
    pub(super) fn deallocate_sql(&self, name: &ast::Ident) -> Result<Output> {
        if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") {
            self.sql_prepared.0.lock().clear();
            return Ok(Output::Affected {
                tag: "DEALLOCATE ALL".into(),
                count: 0,
            });
        }
        let name = ident_name(name);
        if self.sql_prepared.0.lock().remove(&name).is_none() {
            return Err(no_such_statement(&name));
        }
        Ok(Output::Affected {
            tag: "DEALLOCATE".into(),
            count: 0,
        })
    }

    /// Removes a statement prepared with SQL `PREPARE` (every one for `None`); returns whether
    /// one was removed. For a protocol that also keeps prepared statements of its own and
    /// handles `DEALLOCATE` itself.
    pub fn forget_prepared(&self, name: Option<&str>) -> bool {
        let mut prepared = self.sql_prepared.0.lock();
        match name {
            Some(name) => prepared.remove(name).is_some(),
            None => {
                let any = !prepared.is_empty();
                prepared.clear();
                any
            }
        }
    }
}
