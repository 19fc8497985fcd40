//! Queries a client may pull straight from the data nodes (Flight SQL's parallel endpoints).
//!
//! A query whose plan is a shard scan with only per-shard work above it (filters, projections,
//! what `plan::fragments` moves onto the data nodes) needs no merge: each data node's part of
//! it is a fragment the client can fetch from that node, and the coordinator never relays a
//! row. Everything else (aggregates, sorts, joins, limits, system tables, DDL and DML) runs here
//! as [`Session::execute_statements`] runs it. This module decides which; it does not sign or
//! send anything (the front end does).

use std::sync::Arc;

use creek_common::NodeId;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::{ParamValues, ScalarValue};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::ExecutionPlan;
use sqlparser::ast::Statement;

use super::{names_system_column, plan_query, QueryPlan, Session};
use crate::catalog::shard_table::ShardScanExec;
use crate::error::{Error, Result};
use crate::plan::output_names::OutputNames;
use crate::plan::pk_lookup::PkLookup;
use crate::sql::parse::ParsedStatement;
use crate::sql::Output;
use creek_common::error::ErrorCode;

/// How a statement's result reaches the client.
pub enum Export {
    /// Rows (or a count) from the coordinator.
    Output(Output),
    /// One fragment per data node, each fetched from its node.
    Scan(ScanExport),
}

/// A scan split by data node.
pub struct ScanExport {
    /// The result schema, named for the client (`creek_proto::ipc::client_schema`).
    pub schema: SchemaRef,
    /// Each data node's fragment ticket (unsigned `FragmentTicket` bytes).
    pub fragments: Vec<(NodeId, Vec<u8>)>,
}

impl Session {
    /// Runs `statements` (their last statement's result is returned), or, when they are one
    /// query that is a scan split by data node, plans it only and returns the fragments.
    pub async fn export(
        &self,
        statements: &[ParsedStatement],
        params: &[ScalarValue],
    ) -> Result<Export> {
        if let [ParsedStatement::Sql(statement, _)] = statements {
            if let Some(scan) = self.plan_scan(statement, params).await? {
                return Ok(Export::Scan(scan));
            }
        }
        let mut outputs = self.execute_statements(statements, params).await?;
        let output = outputs
            .pop()
            .ok_or_else(|| Error::new(ErrorCode::SyntaxError, "empty statement"))?;
        Ok(Export::Output(output))
    }

    /// The fragments of `statement` if it is a query that needs no merge.
    async fn plan_scan(
        &self,
        statement: &Statement,
        params: &[ScalarValue],
    ) -> Result<Option<ScanExport>> {
        let default_schema = self.settings.lock().schema.clone();
        if !matches!(statement, Statement::Query(_))
            || names_system_column(statement)
            || PkLookup::recognise(&self.cluster, statement, &default_schema).is_some()
        {
            return Ok(None);
        }
        let names = OutputNames::of(statement, self.naming);
        let state = self.context(false).state();
        let QueryPlan::Plan(plan) = plan_query(&state, Box::new(statement.clone())).await? else {
            return Ok(None);
        };
        let plan = if params.is_empty() {
            plan
        } else {
            plan.with_param_values(ParamValues::List(
                params.iter().cloned().map(Into::into).collect(),
            ))?
        };
        if let LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) | LogicalPlan::Copy(_) = plan {
            return Ok(None);
        }
        let planned: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let physical = state.create_physical_plan(&plan).await?;
        let Some(scan) = unmerged_scan(&physical).filter(|scan| !scan.limits_rows()) else {
            return Ok(None);
        };
        // The fragments wait for no session's writes (see `node_fragments`).
        if !self.writes().is_empty() {
            return Ok(None);
        }
        let Some(fragments) = scan.node_fragments()? else {
            return Ok(None);
        };
        if fragments.is_empty() {
            return Ok(None);
        }
        let named = names
            .as_ref()
            .and_then(|names| names.apply(&planned))
            .unwrap_or(planned);
        Ok(Some(ScanExport {
            schema: creek_proto::ipc::client_schema(&named),
            fragments,
        }))
    }
}

/// The shard scan `plan` is, under operators that only pass its partitions' batches on.
fn unmerged_scan(plan: &Arc<dyn ExecutionPlan>) -> Option<&ShardScanExec> {
    let mut node = plan;
    loop {
        if let Some(scan) = node.downcast_ref::<ShardScanExec>() {
            return Some(scan);
        }
        if node.is::<CoalescePartitionsExec>()
            && node
                .downcast_ref::<CoalescePartitionsExec>()?
                .fetch()
                .is_none()
            || node.is::<CooperativeExec>()
        {
            node = node.children().into_iter().next()?;
            continue;
        }
        return None;
    }
}
