//! Subquery predicates in select lists, which DataFusion plans only in filters (as semi and
//! anti joins), rewritten on the syntax tree into scalar subqueries it does plan:
//!
//! - `EXISTS (SELECT ... FROM f WHERE w)` becomes `(SELECT count(*) > 0 FROM f WHERE w)`;
//! - `x IN (subquery)` becomes a `CASE` over counting subqueries that keeps SQL's three-valued
//!   result: true if some value equals `x`; otherwise false if the subquery is empty, NULL if
//!   `x` is NULL or the subquery returned a NULL, and false else. `NOT IN` is its negation.
//!
//! The counts compare the subquery's values with `x` in their WHERE, so when `x` refers to the
//! outer row the correlation is an equality DataFusion decorrelates into a join.
//! Subquery predicates in WHERE, ON and HAVING are left to DataFusion.

use std::ops::ControlFlow;

use sqlparser::ast::{
    BinaryOperator, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, GroupByExpr, Query,
    SelectItem, SetExpr, Statement, UnaryOperator, Value, VisitMut, VisitorMut,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::plan::pg_compat::{aggregates, count_star};

/// How much SQL text the `IN` rewrites of one statement may generate. A rewrite copies its
/// subquery, and the copies' own `IN`s are rewritten in turn, so nested `IN`s multiply; past
/// this budget the remaining ones are left as they are (DataFusion then refuses them with a
/// clear error) instead of growing the statement without bound.
const REWRITE_BUDGET_BYTES: usize = 64 * 1024;

/// Rewrites the subquery predicates of every select list in `statement`.
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut ProjectedSubqueries {
        budget: REWRITE_BUDGET_BYTES,
    });
}

struct ProjectedSubqueries {
    /// Bytes of SQL text the remaining rewrites may generate.
    budget: usize,
}

impl VisitorMut for ProjectedSubqueries {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        if let SetExpr::Select(select) = query.body.as_mut() {
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } = item
                {
                    replace_predicates(expr, &mut self.budget);
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Replaces EXISTS and IN subqueries in `expr`, outside nested queries (those are visited as
/// queries of their own).
fn replace_predicates(expr: &mut Expr, budget: &mut usize) {
    match expr {
        Expr::Exists { subquery, negated } => {
            if let Some(counted) = counting_subquery(subquery) {
                *expr = if *negated { not(counted) } else { counted };
            }
        }
        Expr::InSubquery {
            expr: value,
            subquery,
            negated,
        } => {
            replace_predicates(value, budget);
            if let Some(membership) = membership_case(value, subquery, budget) {
                *expr = if *negated {
                    not(membership)
                } else {
                    membership
                };
            }
        }
        Expr::BinaryOp { left, right, .. } => {
            replace_predicates(left, budget);
            replace_predicates(right, budget);
        }
        Expr::UnaryOp { expr, .. }
        | Expr::Nested(expr)
        | Expr::Cast { expr, .. }
        | Expr::IsNull(expr)
        | Expr::IsNotNull(expr)
        | Expr::IsTrue(expr)
        | Expr::IsNotTrue(expr)
        | Expr::IsFalse(expr)
        | Expr::IsNotFalse(expr)
        | Expr::IsUnknown(expr)
        | Expr::IsNotUnknown(expr) => replace_predicates(expr, budget),
        Expr::Case {
            operand,
            conditions,
            else_result,
            ..
        } => {
            if let Some(operand) = operand {
                replace_predicates(operand, budget);
            }
            for when in conditions {
                replace_predicates(&mut when.condition, budget);
                replace_predicates(&mut when.result, budget);
            }
            if let Some(result) = else_result {
                replace_predicates(result, budget);
            }
        }
        Expr::Function(function) => {
            if let FunctionArguments::List(list) = &mut function.args {
                for arg in &mut list.args {
                    if let FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))
                    | FunctionArg::Named {
                        arg: FunctionArgExpr::Expr(arg),
                        ..
                    } = arg
                    {
                        replace_predicates(arg, budget);
                    }
                }
            }
        }
        Expr::Tuple(items) => {
            for item in items {
                replace_predicates(item, budget);
            }
        }
        _ => {}
    }
}

fn not(expr: Expr) -> Expr {
    Expr::UnaryOp {
        op: UnaryOperator::Not,
        expr: Box::new(Expr::Nested(Box::new(expr))),
    }
}

fn counting_subquery(subquery: &Query) -> Option<Expr> {
    let SetExpr::Select(select) = subquery.body.as_ref() else {
        return None;
    };
    let grouped = !matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if grouped
        || select.having.is_some()
        || aggregates(select)
        || subquery.limit_clause.is_some()
        || subquery.fetch.is_some()
    {
        return None;
    }
    let mut counted = select.as_ref().clone();
    counted.projection = vec![SelectItem::UnnamedExpr(Expr::BinaryOp {
        left: Box::new(count_star()),
        op: BinaryOperator::Gt,
        right: Box::new(Expr::value(Value::Number("0".into(), false))),
    })];
    counted.distinct = None;
    let mut query = subquery.clone();
    query.body = Box::new(SetExpr::Select(Box::new(counted)));
    query.order_by = None;
    Some(Expr::Subquery(Box::new(query)))
}

/// `value IN (subquery)` as a `CASE` over counts of the subquery's values (see the module
/// documentation); `None` if the budget is spent or the text does not parse back, in which
/// case the predicate is left for DataFusion to report.
fn membership_case(value: &Expr, subquery: &Query, budget: &mut usize) -> Option<Expr> {
    // The values are read from a derived table with one column of a name no query uses, so
    // unqualified names in `value` still resolve in the outer query.
    let values = format!("({subquery}) AS __creek_in (__creek_in_value)");
    let text = if refers_to_columns(value) {
        // The value comes from the outer row: each count compares in its own WHERE, an
        // equality DataFusion decorrelates into a join.
        let count = |condition: &str| format!("(SELECT count(*) FROM {values}{condition})");
        format!(
            "CASE WHEN {equal} > 0 THEN true \
                  WHEN {all} = 0 THEN false \
                  WHEN ({value}) IS NULL THEN NULL \
                  WHEN {nulls} > 0 THEN NULL \
                  ELSE false END",
            equal = count(&format!(" WHERE __creek_in_value = ({value})")),
            all = count(""),
            nulls = count(" WHERE __creek_in_value IS NULL"),
        )
    } else {
        // A constant: one uncorrelated subquery counts everything at once.
        format!(
            "(SELECT CASE WHEN count(*) FILTER (WHERE __creek_in_value = ({value})) > 0 THEN true \
                          WHEN count(*) = 0 THEN false \
                          WHEN ({value}) IS NULL THEN NULL \
                          WHEN count(*) FILTER (WHERE __creek_in_value IS NULL) > 0 THEN NULL \
                          ELSE false END \
              FROM {values})"
        )
    };
    *budget = budget.checked_sub(text.len())?;
    Parser::new(&PostgreSqlDialect {})
        .with_recursion_limit(crate::sql::parse::MAX_RECURSION)
        .try_with_sql(&text)
        .and_then(|mut parser| parser.parse_expr())
        .ok()
        .map(|case| Expr::Nested(Box::new(case)))
}

/// Whether `expr` reads a column (of the outer query, here).
fn refers_to_columns(expr: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(e, Expr::Identifier(_) | Expr::CompoundIdentifier(_)) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}
