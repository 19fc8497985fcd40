//! Views: a stored `SELECT` planned in the context of the view's schema when referenced.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::sync::Arc;

use creek_common::schema::ViewDef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::ViewTable;
use datafusion::error::Result as DfResult;
use sqlparser::ast::{visit_relations, Query, Visit, Visitor};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::cluster::Cluster;
use crate::plan::context::session_context;
use crate::session::SessionSettings;
use parking_lot::Mutex;

/// Returns the `(schema, name)` of every relation `view`'s query reads (CTE names excluded);
/// unqualified names are in the view's schema, where the view plans them.
pub fn view_dependencies(view: &ViewDef) -> Vec<(String, String)> {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, &view.query) else {
        return Vec::new();
    };
    let mut ctes = CteNames(HashSet::new());
    let mut relations = Vec::new();
    for statement in &statements {
        let _ = statement.visit(&mut ctes);
        let _ = visit_relations(statement, |name| {
            let parts: Vec<String> = name
                .0
                .iter()
                .filter_map(|part| part.as_ident())
                .map(|ident| match ident.quote_style {
                    Some(_) => ident.value.clone(),
                    None => ident.value.to_lowercase(),
                })
                .collect();
            match parts.as_slice() {
                [table] => relations.push((view.schema_name.clone(), table.clone())),
                [.., schema, table] => relations.push((schema.clone(), table.clone())),
                [] => {}
            }
            ControlFlow::<()>::Continue(())
        });
    }
    relations.retain(|(schema, name)| !(schema == &view.schema_name && ctes.0.contains(name)));
    relations
}

/// Collects the names of every common table expression in a statement.
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            for cte in &with.cte_tables {
                self.0.insert(cte.alias.name.value.to_lowercase());
            }
        }
        ControlFlow::Continue(())
    }
}

/// Plans `view` and returns it as a table provider.
pub async fn view_provider(
    cluster: &Arc<Cluster>,
    view: &ViewDef,
) -> DfResult<Arc<dyn TableProvider>> {
    let settings = Arc::new(Mutex::new(SessionSettings {
        schema: view.schema_name.clone(),
        ..SessionSettings::default()
    }));
    // Only names are resolved here: the scans are planned in the querying session's
    // context, which carries its writes.
    let ctx = session_context(cluster.clone(), &settings, false, None, None);
    let plan = ctx.state().create_logical_plan(&view.query).await?;
    Ok(Arc::new(ViewTable::new(plan, Some(view.query.clone()))))
}
