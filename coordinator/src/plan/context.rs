//! Builds the DataFusion `SessionContext` a statement plans in: the `crate` catalog over cluster
//! state with the session's default schema, plus the system schemas.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::provider::CreekCatalogProvider;
use crate::cluster::Cluster;
use crate::plan::decorrelate::CorrelatedScalarSubqueryRule;
use crate::sql::system::register_system_schemas;

/// Name of the catalog holding user schemas.
pub const CATALOG_NAME: &str = "crate";

/// DataFusion's optimizer rules with Creek's decorrelation right after DataFusion's own
/// `scalar_subquery_to_join`: it must run before projection pruning, which does not see the
/// columns that outer references inside subqueries use.
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    let position = rules
        .iter()
        .position(|rule| rule.name() == "scalar_subquery_to_join")
        .map_or(rules.len(), |index| index + 1);
    rules.insert(position, Arc::new(CorrelatedScalarSubqueryRule));
    rules
}

/// Creates a context whose unqualified names resolve in `default_schema`.
pub fn session_context(
    cluster: Arc<Cluster>,
    default_schema: &str,
    expose_hidden: bool,
) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, default_schema)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(4);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    config.options_mut().sql_parser.enable_ident_normalization = true;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(
        CATALOG_NAME,
        Arc::new(CreekCatalogProvider::new(cluster.clone(), expose_hidden)),
    );
    register_system_schemas(&ctx, &cluster);
    ctx
}
