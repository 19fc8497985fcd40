//! Builds the DataFusion `SessionContext` a statement plans in: the `crate` catalog over cluster
//! state with the session's default schema, plus the system schemas.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::{Optimizer, OptimizerRule};
use datafusion::physical_optimizer::optimizer::PhysicalOptimizer;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::provider::CreekCatalogProvider;
use crate::cluster::{Cluster, SessionWrites};
use crate::plan::cooperative::YieldAfterJoins;
use crate::plan::decorrelate::CorrelatedScalarSubqueryRule;
use crate::plan::fragments::PushFragmentsToShards;
use crate::plan::integer_casts::RoundIntegerCasts;
use crate::plan::{pg_functions, single_row};
use crate::session::SessionSettings;
use parking_lot::Mutex;

/// Name of the catalog holding user schemas.
pub const CATALOG_NAME: &str = "crate";

/// DataFusion's optimizer rules with Creek's decorrelation right after DataFusion's own
/// `scalar_subquery_to_join`: it must run before projection pruning, which does not see the
/// columns that outer references inside subqueries use. Rounding integer casts comes first,
/// before constant folding evaluates a truncating cast.
fn optimizer_rules() -> Vec<Arc<dyn OptimizerRule + Send + Sync>> {
    let mut rules = Optimizer::new().rules;
    rules.insert(0, Arc::new(RoundIntegerCasts));
    let position = rules
        .iter()
        .position(|rule| rule.name() == "scalar_subquery_to_join")
        .map_or(rules.len(), |index| index + 1);
    rules.insert(position, Arc::new(CorrelatedScalarSubqueryRule));
    rules
}

/// DataFusion's physical optimizer rules, then moving per-shard operators into the fragments
/// data nodes run: last, so it sees the final shape of each shard's operator chain.
fn physical_optimizer_rules() -> Vec<Arc<dyn PhysicalOptimizerRule + Send + Sync>> {
    let mut rules = PhysicalOptimizer::new().rules;
    rules.push(Arc::new(PushFragmentsToShards));
    rules.push(Arc::new(YieldAfterJoins));
    rules
}

/// Creates a context for a session with `settings`: unqualified names resolve in its schema,
/// and PostgreSQL's catalog functions see its settings. With `writes`, the shard scans it
/// plans see what the session wrote (a context only used to resolve names passes `None`).
pub fn session_context(
    cluster: Arc<Cluster>,
    session_settings: &Arc<Mutex<SessionSettings>>,
    expose_hidden: bool,
    writes: Option<Arc<SessionWrites>>,
    runtime: Option<Arc<datafusion::execution::runtime_env::RuntimeEnv>>,
) -> SessionContext {
    let settings = session_settings.lock().clone();
    let mut config = SessionConfig::new()
        .with_default_catalog_and_schema(CATALOG_NAME, &settings.schema)
        .with_create_default_catalog_and_schema(false)
        .with_information_schema(true)
        .with_target_partitions(4);
    config.options_mut().sql_parser.dialect = datafusion::config::Dialect::PostgreSQL;
    config.options_mut().sql_parser.enable_ident_normalization = true;
    if let Some(writes) = writes {
        config = config.with_extension(writes);
    }
    let mut builder = SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime.unwrap_or_default())
        .with_default_features()
        .with_optimizer_rules(optimizer_rules())
        .with_physical_optimizer_rules(physical_optimizer_rules());
    if let Some(planners) = builder.expr_planners() {
        // Before DataFusion's field access, which would refuse the key.
        planners.insert(0, Arc::new(crate::plan::objects::IgnoredKeyPlanner));
    }
    let state = builder.build();
    let ctx = SessionContext::new_with_state(state);
    let mut listed: Vec<(String, String)> = settings
        .other
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    listed.push(("search_path".to_string(), settings.schema.clone()));
    ctx.register_catalog(
        CATALOG_NAME,
        Arc::new(CreekCatalogProvider::new(
            cluster.clone(),
            expose_hidden,
            listed,
        )),
    );
    pg_functions::register(&ctx, cluster, session_settings.clone());
    ctx.register_udaf(single_row::single_row_value());
    ctx.register_udf(crate::plan::array_literal::text_to_array_function());
    ctx.register_udf(crate::plan::fulltext::match_function());
    creek_common::functions::register_shared(&ctx);
    ctx.register_udf(crate::plan::array_literal::try_text_to_array_function());
    ctx
}
