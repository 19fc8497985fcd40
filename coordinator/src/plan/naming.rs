//! Output column names. DataFusion names every scalar subquery `(<subquery>)`, so a SELECT with
//! two unaliased subqueries fails with "projections require unique expression names", which
//! PostgreSQL accepts. Before planning, unaliased select items that contain a subquery get their
//! SQL text as alias (made unique), which is also the name CrateDB shows; other items of the
//! outermost query that would share a name (`SELECT 1, 1`) get internal aliases.

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Ident, Query, SelectItem, SetExpr, Statement, VisitMut, VisitorMut};

/// Aliases unaliased subquery select items of every query in `statement`.
pub fn alias_subquery_columns(statement: &mut Statement) {
    let _ = statement.visit(&mut SubqueryAliaser);
}

struct SubqueryAliaser;

impl VisitorMut for SubqueryAliaser {
    type Break = ();

    fn pre_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        alias_in_set_expr(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn alias_in_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut used: HashSet<String> = HashSet::new();
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item {
                    if contains_subquery(expr) {
                        let base = expr.to_string();
                        let mut name = base.clone();
                        let mut suffix = 2;
                        while !used.insert(name.clone()) {
                            name = format!("{base}_{suffix}");
                            suffix += 1;
                        }
                        *item = SelectItem::ExprWithAlias {
                            expr: expr.clone(),
                            alias: Ident::with_quote('"', name),
                        };
                    }
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            alias_in_set_expr(left);
            alias_in_set_expr(right);
        }
        _ => {}
    }
}

/// Aliases the select items of the outermost query that DataFusion would name alike
/// (`SELECT 1, 1`, `SELECT NULL, NULL`, `SELECT a AS x, b AS x`): PostgreSQL accepts them,
/// DataFusion refuses a projection with two equal names. The aliases are internal: clients
/// see the names `output_names` computes from the statement as written, laid over the plan
/// by position. Derived tables are left alone (their column names are what outer queries
/// refer to).
pub fn alias_duplicate_outputs(statement: &mut Statement) {
    match statement {
        Statement::Query(query) => dedupe_set_expr(&mut query.body),
        Statement::Explain { statement, .. } => alias_duplicate_outputs(statement),
        _ => {}
    }
}

fn dedupe_set_expr(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            let mut seen: HashSet<String> = HashSet::new();
            for (position, item) in select.projection.iter_mut().enumerate() {
                let key = match item {
                    SelectItem::UnnamedExpr(expr) => expr.to_string(),
                    SelectItem::ExprWithAlias { alias, .. } if alias.quote_style.is_some() => {
                        alias.value.clone()
                    }
                    SelectItem::ExprWithAlias { alias, .. } => alias.value.to_lowercase(),
                    _ => continue,
                };
                if seen.insert(key) {
                    continue;
                }
                let expr = match item {
                    SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => {
                        expr.clone()
                    }
                    _ => continue,
                };
                *item = SelectItem::ExprWithAlias {
                    expr,
                    alias: Ident::with_quote('"', format!("__creek_output_{position}")),
                };
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            dedupe_set_expr(left);
            dedupe_set_expr(right);
        }
        SetExpr::Query(query) => dedupe_set_expr(&mut query.body),
        _ => {}
    }
}

fn contains_subquery(expr: &Expr) -> bool {
    let mut found = false;
    let _ = sqlparser::ast::visit_expressions(expr, |e| {
        if matches!(
            e,
            Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. }
        ) {
            found = true;
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    });
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::parser::Parser;

    #[test]
    fn duplicate_outputs_get_internal_aliases() {
        let sql = "SELECT 1, 1, NULL AS x, 2 AS X, a FROM (SELECT 1, 1 AS b) s";
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        alias_duplicate_outputs(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT 1, 1 AS \"__creek_output_1\", NULL AS x, 2 AS \"__creek_output_3\", a \
             FROM (SELECT 1, 1 AS b) s"
        );
    }

    #[test]
    fn duplicate_subqueries_get_distinct_aliases() {
        let sql = "SELECT a, (SELECT 1), (SELECT 1), b + 1 FROM t";
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .unwrap()
            .remove(0);
        alias_subquery_columns(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT a, (SELECT 1) AS \"(SELECT 1)\", (SELECT 1) AS \"(SELECT 1)_2\", b + 1 FROM t"
        );
    }
}
