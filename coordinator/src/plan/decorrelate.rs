//! Decorrelates scalar subqueries whose correlation is not an equality, such as
//! `(SELECT count(*) FROM t AS x WHERE x.b < t.b)`, which DataFusion's own
//! `ScalarSubqueryToJoin` leaves in place (and then cannot execute).
//!
//! The rewrite is the textbook one: number the outer rows, LEFT JOIN the subquery's input on the
//! correlated predicate, aggregate per outer row, and use the aggregate as a column. `count(*)`
//! counts a marker column of the subquery side, so an outer row with no match gets 0, not 1
//! (the "count bug"). Only subqueries of the shape `[Projection] → Aggregate (no GROUP BY, one
//! aggregate) → Filter → input without outer references` are rewritten; anything else is left
//! for DataFusion to report.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    col, lit, Expr, JoinType, LogicalPlan, LogicalPlanBuilder, Projection, Subquery,
};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// Numbers rewrites so the helper columns of several subqueries in one plan never clash.
static REWRITES: AtomicUsize = AtomicUsize::new(0);

/// Names of the helper columns of one rewrite; `n` keeps several rewrites of a query apart.
struct Names {
    row_number: String,
    subquery_alias: String,
    match_marker: String,
    aggregate: String,
    value: String,
}

impl Names {
    fn next() -> Names {
        let n = REWRITES.fetch_add(1, Ordering::Relaxed);
        Names {
            row_number: format!("__creek_rn_{n}"),
            subquery_alias: format!("__creek_sq_{n}"),
            match_marker: format!("__creek_match_{n}"),
            aggregate: format!("__creek_agg_{n}"),
            value: format!("__creek_sqv_{n}"),
        }
    }
}

/// The optimizer rule; see the module docs.
#[derive(Debug, Default)]
pub struct CorrelatedScalarSubqueryRule;

impl OptimizerRule for CorrelatedScalarSubqueryRule {
    fn name(&self) -> &str {
        "creek_correlated_scalar_subquery"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::TopDown)
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        match plan {
            LogicalPlan::Projection(projection) => {
                let Some(subquery) = projection
                    .expr
                    .iter()
                    .find_map(find_correlated_scalar_subquery)
                else {
                    return Ok(Transformed::no(LogicalPlan::Projection(projection)));
                };
                let names = Names::next();
                let Some(new_input) = decorrelate(projection.input.as_ref(), &subquery, &names)?
                else {
                    return Ok(Transformed::no(LogicalPlan::Projection(projection)));
                };
                let exprs = projection
                    .expr
                    .into_iter()
                    .map(|expr| replace_subquery(expr, &subquery, &names.value))
                    .collect::<Result<Vec<_>>>()?;
                Ok(Transformed::yes(LogicalPlan::Projection(
                    Projection::try_new(exprs, Arc::new(new_input))?,
                )))
            }
            LogicalPlan::Filter(filter) => {
                let Some(subquery) = find_correlated_scalar_subquery(&filter.predicate) else {
                    return Ok(Transformed::no(LogicalPlan::Filter(filter)));
                };
                let names = Names::next();
                let Some(new_input) = decorrelate(filter.input.as_ref(), &subquery, &names)? else {
                    return Ok(Transformed::no(LogicalPlan::Filter(filter)));
                };
                let predicate = replace_subquery(filter.predicate, &subquery, &names.value)?;
                // Keep the filter's output schema: drop the value column again.
                let original: Vec<Expr> = column_exprs(filter.input.as_ref());
                let plan = LogicalPlanBuilder::from(new_input)
                    .filter(predicate)?
                    .project(original)?
                    .build()?;
                Ok(Transformed::yes(plan))
            }
            other => Ok(Transformed::no(other)),
        }
    }
}

fn replace_subquery(expr: Expr, subquery: &Subquery, value: &str) -> Result<Expr> {
    let target = Expr::ScalarSubquery(subquery.clone());
    Ok(expr
        .transform(|e| {
            if e == target {
                Ok(Transformed::yes(col(Column::from_name(value))))
            } else {
                Ok(Transformed::no(e))
            }
        })?
        .data)
}

fn find_correlated_scalar_subquery(expr: &Expr) -> Option<Subquery> {
    let mut found = None;
    let _ = expr.apply(|e| {
        if let Expr::ScalarSubquery(subquery) = e {
            if !subquery.outer_ref_columns.is_empty() && found.is_none() {
                found = Some(subquery.clone());
            }
        }
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    });
    found
}

/// Returns `input` extended with a column ``names.value`` holding the subquery's value per row.
fn decorrelate(
    input: &LogicalPlan,
    subquery: &Subquery,
    names: &Names,
) -> Result<Option<LogicalPlan>> {
    let (final_expr, aggregate) = match subquery.subquery.as_ref() {
        LogicalPlan::Projection(p) if p.expr.len() == 1 => match p.input.as_ref() {
            LogicalPlan::Aggregate(a) => (Some(p.expr[0].clone()), a),
            _ => return Ok(None),
        },
        LogicalPlan::Aggregate(a) => (None, a),
        _ => return Ok(None),
    };
    if !aggregate.group_expr.is_empty() || aggregate.aggr_expr.len() != 1 {
        return Ok(None);
    }
    // Peel aliases between the aggregate and the filter; their qualifiers name inner columns too.
    let mut inner_qualifiers: Vec<_> = Vec::new();
    let mut below = aggregate.input.as_ref();
    while let LogicalPlan::SubqueryAlias(alias) = below {
        inner_qualifiers.extend(alias.schema.iter().map(|(q, _)| q.cloned()));
        below = alias.input.as_ref();
    }
    let LogicalPlan::Filter(filter) = below else {
        return Ok(None);
    };
    if filter.input.contains_outer_reference() {
        return Ok(None);
    }
    inner_qualifiers.extend(filter.input.schema().iter().map(|(q, _)| q.cloned()));
    let requalify = |expr: Expr| -> Result<Expr> {
        expr.transform(|e| match e {
            Expr::Column(c) if inner_qualifiers.contains(&c.relation) => Ok(Transformed::yes(col(
                Column::new(Some(names.subquery_alias.as_str()), c.name),
            ))),
            Expr::OuterReferenceColumn(_, c) => {
                Ok(Transformed::yes(Expr::Column(resolve_outer(input, c))))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
    };
    let (correlated, local): (Vec<Expr>, Vec<Expr>) =
        split_conjunction_owned(filter.predicate.clone())
            .into_iter()
            .partition(|e| e.contains_outer());
    // The subquery side: its input, its local predicates, and a marker for count(*).
    let mut inner = LogicalPlanBuilder::from(filter.input.as_ref().clone());
    if let Some(local) = conjunction(local) {
        inner = inner.filter(local)?;
    }
    let mut inner_columns: Vec<Expr> = column_exprs(filter.input.as_ref());
    inner_columns.push(lit(true).alias(&names.match_marker));
    let inner = match inner
        .project(inner_columns)
        .and_then(|b| b.alias(&names.subquery_alias))
    {
        Ok(inner) => inner.build()?,
        // Inner columns whose names clash once requalified: leave the query alone.
        Err(_) => return Ok(None),
    };
    let join_predicate = match conjunction(correlated) {
        Some(predicate) => requalify(predicate)?,
        None => return Ok(None),
    };
    let outer_columns: Vec<Expr> = column_exprs(input);
    let numbered = LogicalPlanBuilder::from(input.clone())
        .window(vec![row_number().alias(&names.row_number)])?;
    let joined = numbered.join_on(inner, JoinType::Left, vec![join_predicate])?;
    let marker = Column::new(
        Some(names.subquery_alias.as_str()),
        names.match_marker.as_str(),
    );
    let aggregate_expr = count_matches_only(requalify(aggregate.aggr_expr[0].clone())?, marker);
    let mut group_by = outer_columns.clone();
    group_by.push(col(names.row_number.as_str()));
    let aggregated = joined.aggregate(group_by, vec![aggregate_expr.alias(&names.aggregate)])?;
    let aggregate_output = aggregate.schema.field(0).name().clone();
    let value = match final_expr {
        Some(expr) => {
            expr.transform(|e| match e {
                Expr::Column(c) if c.name == aggregate_output => {
                    Ok(Transformed::yes(col(names.aggregate.as_str())))
                }
                other => Ok(Transformed::no(other)),
            })?
            .data
        }
        None => col(names.aggregate.as_str()),
    };
    let value = match value {
        Expr::Alias(alias) => *alias.expr,
        other => other,
    };
    let mut projection = outer_columns;
    projection.push(value.alias(&names.value));
    Ok(Some(aggregated.project(projection)?.build()?))
}

/// Resolves an outer reference against the plan it now sits on. The optimizer may have pushed
/// the node below the alias the reference names (`e.salary` over a scan of `emp`); then the
/// column is found by its unqualified name.
fn resolve_outer(input: &LogicalPlan, column: Column) -> Column {
    let schema = input.schema();
    if schema.has_column(&column) {
        return column;
    }
    match schema.qualified_field_with_unqualified_name(&column.name) {
        Ok((qualifier, field)) => Column::new(qualifier.cloned(), field.name()),
        Err(_) => column,
    }
}

/// Returns every output column of `plan` as a column expression.
fn column_exprs(plan: &LogicalPlan) -> Vec<Expr> {
    plan.schema().columns().into_iter().map(col).collect()
}

/// Makes `count(*)` count the subquery side's match marker, so outer rows without a match get 0.
fn count_matches_only(expr: Expr, marker: Column) -> Expr {
    match expr {
        Expr::AggregateFunction(mut function) if is_count_star(&function) => {
            function.params.args = vec![col(marker)];
            Expr::AggregateFunction(function)
        }
        Expr::Alias(alias) => count_matches_only(*alias.expr, marker),
        other => other,
    }
}

fn is_count_star(function: &AggregateFunction) -> bool {
    function.func.name() == "count"
        && !function.params.distinct
        && matches!(function.params.args.as_slice(), [Expr::Literal(..)])
}
