//! The physical plans a session runs again. A client that sends the same query text over and
//! over (a dashboard, a monitoring probe, pgbench, an ORM's simple-protocol query) pays
//! DataFusion's planning once: turning SQL into a logical plan and the thirty-odd logical and
//! physical optimizer passes cost more than running a small query does.
//!
//! A plan is kept only where running it again gives what planning the statement again would:
//! - it was planned against the very cluster state current now (tables, views, shards and
//!   where their copies live: the state, not its version, since a Raft snapshot may install
//!   another state under a version already seen), and with the session's current settings
//!   (a cache belongs to the session context built for them);
//! - the statement has no parameters and calls no function whose value may change between runs
//!   (`now()`, `random()`, the catalog functions that read session or cluster state): the
//!   optimizer folds some of them into the plan;
//! - every operator is one whose state [`reset_plan_states`] renews for each run (scans,
//!   filters, projections, aggregates, sorts, merges, limits, repartitions), no operator but a
//!   top-N sort holds a dynamic filter, and none shares one (DataFusion cannot renew those);
//! - it reads only shard scans whose shards have one copy each, or no table at all: a scan
//!   picks among copies when it is planned, and a kept plan would pin that pick.
//!
//! It must not decide what a statement means or how it runs (`session` plans and executes);
//! it only keeps and hands back plans.

use std::collections::VecDeque;
use std::sync::Arc;

use creek_common::state::ClusterState;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::{Expr, LogicalPlan, Volatility};
use datafusion::physical_expr::expressions::DynamicFilterPhysicalExpr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_plan::aggregates::AggregateExec;
use datafusion::physical_plan::coalesce_partitions::CoalescePartitionsExec;
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::{GlobalLimitExec, LocalLimitExec};
use datafusion::physical_plan::placeholder_row::PlaceholderRowExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::sorts::sort_preserving_merge::SortPreservingMergeExec;
use datafusion::physical_plan::ExecutionPlan;
use sqlparser::ast::Statement;

use crate::catalog::shard_table::ShardScanExec;

/// Plans kept per session context: enough for the statements an application repeats, small
/// enough that comparing a statement with each is cheap.
const CAPACITY: usize = 16;

/// A session's kept plans, most recently used first.
#[derive(Default)]
pub(super) struct PlanCache {
    entries: VecDeque<Entry>,
}

struct Entry {
    /// The statement as parsed, before any rewrite planning makes.
    statement: Statement,
    state: Arc<ClusterState>,
    schema: SchemaRef,
    plan: Arc<dyn ExecutionPlan>,
}

/// A kept plan, with fresh operator state for one run.
pub(super) struct CachedPlan {
    /// The result schema, as the logical plan gave it.
    pub schema: SchemaRef,
    pub plan: Arc<dyn ExecutionPlan>,
}

impl PlanCache {
    /// The plan kept for `statement` if it was planned against `state`. An entry planned
    /// against another state is dropped: that state will not come back.
    pub fn get(&mut self, statement: &Statement, state: &Arc<ClusterState>) -> Option<CachedPlan> {
        let index = self
            .entries
            .iter()
            .position(|e| e.statement == *statement)?;
        if !Arc::ptr_eq(&self.entries[index].state, state) {
            self.entries.remove(index);
            return None;
        }
        let entry = self.entries.remove(index)?;
        let fresh = reset_plan_states(Arc::clone(&entry.plan)).ok();
        let schema = entry.schema.clone();
        self.entries.push_front(entry);
        Some(CachedPlan {
            schema,
            plan: fresh?,
        })
    }

    /// Keeps `plan` for `statement` if it may run again (see the module comment);
    /// `logical` is the plan it was made from, before optimization.
    pub fn insert(
        &mut self,
        statement: &Statement,
        state: Arc<ClusterState>,
        logical: &LogicalPlan,
        schema: SchemaRef,
        plan: &Arc<dyn ExecutionPlan>,
    ) {
        if !reruns_alike(logical) || !renewable(plan) {
            return;
        }
        self.forget(statement);
        if self.entries.len() == CAPACITY {
            self.entries.pop_back();
        }
        self.entries.push_front(Entry {
            statement: statement.clone(),
            state,
            schema,
            plan: Arc::clone(plan),
        });
    }

    /// Drops what is kept for `statement` (its plan failed).
    pub fn forget(&mut self, statement: &Statement) {
        self.entries.retain(|e| e.statement != *statement);
    }
}

/// Whether running `plan` again means what planning it again would: no parameters, and only
/// immutable functions.
fn reruns_alike(plan: &LogicalPlan) -> bool {
    let mut alike = true;
    let _ = plan.apply_with_subqueries(|node| {
        node.apply_expressions(|expr| {
            expr.apply(|e| {
                let immutable = match e {
                    Expr::Placeholder(_) | Expr::ScalarVariable(..) => false,
                    Expr::ScalarFunction(f) => {
                        f.func.signature().volatility == Volatility::Immutable
                    }
                    _ => true,
                };
                alike &= immutable;
                Ok(if immutable {
                    TreeNodeRecursion::Continue
                } else {
                    TreeNodeRecursion::Stop
                })
            })
        })
    });
    alike
}

/// Whether every operator of `plan` gets fresh state from `reset_plan_states` and reads
/// nothing chosen when it was planned (see the module comment).
fn renewable(plan: &Arc<dyn ExecutionPlan>) -> bool {
    let mut renewable = true;
    let _ = plan.apply(|node| {
        renewable &= renewable_operator(node.as_ref()) && owns_its_dynamic_filters(node.as_ref());
        Ok(if renewable {
            TreeNodeRecursion::Continue
        } else {
            TreeNodeRecursion::Stop
        })
    });
    renewable
}

fn renewable_operator(node: &dyn ExecutionPlan) -> bool {
    if let Some(scan) = node.downcast_ref::<ShardScanExec>() {
        return scan.reads_sole_copies() && !scan.has_match();
    }
    // An aggregate's dynamic filter (its bound for MIN/MAX pruning) would survive a reset:
    // `owns_its_dynamic_filters` turns such an aggregate away.
    node.is::<AggregateExec>()
        || node.is::<ProjectionExec>()
        || node.is::<FilterExec>()
        || node.is::<SortExec>()
        || node.is::<SortPreservingMergeExec>()
        || node.is::<CoalescePartitionsExec>()
        || node.is::<GlobalLimitExec>()
        || node.is::<LocalLimitExec>()
        || node.is::<RepartitionExec>()
        || node.is::<CooperativeExec>()
        || node.is::<PlaceholderRowExec>()
        || node.is::<EmptyExec>()
}

/// Whether the only dynamic filters `node` evaluates are those it produces itself and a reset
/// renews (a top-N sort's), not one another operator pushed into it.
fn owns_its_dynamic_filters(node: &dyn ExecutionPlan) -> bool {
    let produced = node.dynamic_expressions_produced();
    if !produced.is_empty() && !node.is::<SortExec>() {
        return false;
    }
    let mut owned = true;
    let _ = node.apply_expressions(&mut |root: &Arc<dyn PhysicalExpr>| -> DfResult<_> {
        root.apply(|expr| {
            if expr.downcast_ref::<DynamicFilterPhysicalExpr>().is_some()
                && !produced.iter().any(|p| same_expr(p, expr))
            {
                owned = false;
                return Ok(TreeNodeRecursion::Stop);
            }
            Ok(TreeNodeRecursion::Continue)
        })
    });
    owned
}

fn same_expr(a: &Arc<dyn PhysicalExpr>, b: &Arc<dyn PhysicalExpr>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::SessionContext;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    use super::*;

    fn statement(sql: &str) -> Statement {
        Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0)
    }

    async fn plans(sql: &str) -> (LogicalPlan, Arc<dyn ExecutionPlan>) {
        let ctx = SessionContext::new();
        let frame = ctx.sql(sql).await.unwrap();
        let logical = frame.logical_plan().clone();
        let physical = frame.create_physical_plan().await.unwrap();
        (logical, physical)
    }

    #[tokio::test]
    async fn only_plans_of_immutable_functions_without_parameters_rerun_alike() {
        for (sql, alike) in [
            ("SELECT 1 + 1", true),
            ("SELECT abs(-1), lower('A')", true),
            ("SELECT now()", false),
            ("SELECT 1 WHERE current_date > '2000-01-01'", false),
            ("SELECT random()", false),
            ("SELECT (SELECT now())", false),
        ] {
            let (logical, _) = plans(sql).await;
            assert_eq!(reruns_alike(&logical), alike, "{sql}");
        }
        let ctx = SessionContext::new();
        let with_parameter = ctx
            .state()
            .create_logical_plan("SELECT $1 + 1")
            .await
            .unwrap();
        assert!(!reruns_alike(&with_parameter));
    }

    #[tokio::test]
    async fn plans_reading_tables_other_than_shard_scans_are_not_kept() {
        let (_, constant) = plans("SELECT 1 + 1").await;
        assert!(renewable(&constant));
        // VALUES become an in-memory scan, as system tables do: not a shard scan.
        let (_, values) = plans("SELECT * FROM (VALUES (1), (2)) AS v(x)").await;
        assert!(!renewable(&values));
    }

    #[tokio::test]
    async fn a_plan_is_handed_back_only_for_the_state_it_was_planned_against() {
        let (logical, physical) = plans("SELECT 1 + 1").await;
        let schema = physical.schema();
        let planned_against = Arc::new(ClusterState::default());
        let mut cache = PlanCache::default();
        let select = statement("SELECT 1 + 1");
        cache.insert(
            &select,
            planned_against.clone(),
            &logical,
            schema,
            &physical,
        );
        assert!(cache
            .get(&statement("SELECT 1 + 2"), &planned_against)
            .is_none());
        let fresh = cache.get(&select, &planned_against).expect("kept");
        assert!(
            !Arc::ptr_eq(&fresh.plan, &physical),
            "each run gets fresh operators"
        );
        // An equal state installed later (a snapshot may reuse a version) is another state.
        let newer = Arc::new(ClusterState::default());
        assert!(cache.get(&select, &newer).is_none());
        assert!(cache.get(&select, &planned_against).is_none(), "dropped");
    }

    #[tokio::test]
    async fn the_least_recently_used_plan_goes_first() {
        let state = Arc::new(ClusterState::default());
        let mut cache = PlanCache::default();
        for i in 0..=CAPACITY {
            let sql = format!("SELECT {i}");
            let (logical, physical) = plans(&sql).await;
            cache.insert(
                &statement(&sql),
                state.clone(),
                &logical,
                physical.schema(),
                &physical,
            );
            if i == 0 {
                continue;
            }
            // Keep the first one in use.
            assert!(cache.get(&statement("SELECT 0"), &state).is_some());
        }
        assert!(cache.get(&statement("SELECT 0"), &state).is_some());
        assert!(cache.get(&statement("SELECT 1"), &state).is_none());
        assert!(cache
            .get(&statement(&format!("SELECT {CAPACITY}")), &state)
            .is_some());
    }
}
