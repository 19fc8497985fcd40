//! Output column names. DataFusion names every scalar subquery `(<subquery>)`, so a SELECT with
//! two unaliased subqueries fails with "projections require unique expression names", which
//! PostgreSQL accepts. Before planning, unaliased select items that contain a subquery get their
//! SQL text as alias (made unique), which is also the name CrateDB shows.

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
