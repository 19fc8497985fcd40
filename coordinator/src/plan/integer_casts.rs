//! Casts of fractional numbers to integers round, as PostgreSQL's casts of numerics do
//! (`1.5::int` is 2, `-2.5::int` is -3: half away from zero; PostgreSQL rounds a double's
//! halves to even, but its literals are numerics); Arrow's cast truncates. A logical optimizer rule, run first, puts the
//! rounding under every such cast: `round(x)` for doubles, a cast to a whole numeric (which
//! Arrow rounds half away from zero) for numerics. It needs the input's type, so it works on
//! the typed plan rather than on the syntax tree.
//!
//! Writes to integer columns round by the same rule in `sql::dml::conform`.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DFSchema, Result};
use datafusion::logical_expr::expr::{Cast, TryCast};
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::{Expr, ExprSchemable, LogicalPlan};
use datafusion::optimizer::optimizer::ApplyOrder;
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};

/// The rule; see the module documentation.
#[derive(Debug, Default)]
pub struct RoundIntegerCasts;

impl OptimizerRule for RoundIntegerCasts {
    fn name(&self) -> &str {
        "creek_round_integer_casts"
    }

    fn apply_order(&self) -> Option<ApplyOrder> {
        Some(ApplyOrder::BottomUp)
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        // Expressions read their inputs' columns (a join's both sides); a leaf's read its own.
        let inputs = plan.inputs();
        let schema = if inputs.is_empty() {
            Arc::clone(plan.schema())
        } else {
            let mut merged = DFSchema::empty();
            for input in inputs {
                merged.merge(input.schema());
            }
            Arc::new(merged)
        };
        // Names are kept so the plan's schema does not change (as DataFusion's own
        // simplification keeps them); a grouping set keeps its shape, its members are
        // rewritten.
        let names = NamePreserver::new(&plan);
        let mut rewrite = |expr: Expr| {
            let name = names.save(&expr);
            let rewritten = expr.transform_up(|e| round_under_cast(e, &schema))?;
            Ok(Transformed::new_transformed(
                name.restore(rewritten.data),
                rewritten.transformed,
            ))
        };
        plan.map_expressions(|expr| {
            if let Expr::GroupingSet(_) = &expr {
                expr.map_children(&mut rewrite)
            } else {
                rewrite(expr)
            }
        })
    }
}

/// `expr` with its integer casts rounding, for an expression evaluated outside the optimizer
/// (a generated column), so it computes what the same cast in a query computes.
pub fn round_casts(expr: Expr, schema: &DFSchema) -> Result<Expr> {
    Ok(expr.transform_up(|e| round_under_cast(e, schema))?.data)
}

/// `CAST(x AS <integer>)` of a fractional `x` becomes `CAST(round(x) AS <integer>)`.
fn round_under_cast(expr: Expr, schema: &DFSchema) -> Result<Transformed<Expr>> {
    let (inner, target) = match &expr {
        Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field })
            if field.data_type().is_integer() =>
        {
            (expr.as_ref(), field)
        }
        _ => return Ok(Transformed::no(expr)),
    };
    let Ok(source) = inner.get_type(schema) else {
        return Ok(Transformed::no(expr));
    };
    let rounded = match source {
        DataType::Float32 | DataType::Float64 if !is_round(inner) => {
            datafusion::functions::math::expr_fn::round(vec![inner.clone()])
        }
        // `round` has no half-precision kernel.
        DataType::Float16 => datafusion::functions::math::expr_fn::round(vec![inner
            .clone()
            .cast_to(&DataType::Float64, schema)?]),
        DataType::Decimal128(_, scale) if scale > 0 => inner
            .clone()
            .cast_to(&DataType::Decimal128(38, 0), schema)?,
        DataType::Decimal256(_, scale) if scale > 0 => inner
            .clone()
            .cast_to(&DataType::Decimal256(76, 0), schema)?,
        _ => return Ok(Transformed::no(expr)),
    };
    let target = Arc::clone(target);
    Ok(Transformed::yes(match expr {
        Expr::TryCast(_) => Expr::TryCast(TryCast::new_from_field(Box::new(rounded), target)),
        _ => Expr::Cast(Cast::new_from_field(Box::new(rounded), target)),
    }))
}

/// Whether `expr` is already `round(x)` (one argument: `round(x, 1)` keeps a fraction): the
/// optimizer runs its rules more than once, and a rounded cast must not be wrapped again.
fn is_round(expr: &Expr) -> bool {
    matches!(expr, Expr::ScalarFunction(function)
        if function.name() == "round" && function.args.len() == 1)
}
