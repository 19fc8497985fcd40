//! Builds the DataFusion `SessionContext` a statement plans in: the `crate` catalog over cluster
//! state with the session's default schema, plus the system schemas.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::provider::CreekCatalogProvider;
use crate::cluster::Cluster;
use crate::sql::system::register_system_schemas;

/// Name of the catalog holding user schemas.
pub const CATALOG_NAME: &str = "crate";

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
        .build();
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(
        CATALOG_NAME,
        Arc::new(CreekCatalogProvider::new(cluster.clone(), expose_hidden)),
    );
    register_system_schemas(&ctx, &cluster);
    ctx
}
