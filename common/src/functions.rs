//! The functions both roles resolve: what a data node can decode and run in a plan fragment
//! or a pushed filter. A coordinator checks a fragment against this same set before it sends
//! one, so the two cannot disagree. Coordinator-only functions must not be added here.

use std::sync::Arc;

use datafusion::execution::TaskContext;
use datafusion::prelude::SessionContext;

/// Registers Creek's shared functions (the geo functions, reading an IGNORED object's keys)
/// with `ctx`: every context that plans or evaluates user expressions has them.
pub fn register_shared(ctx: &SessionContext) {
    for function in crate::geo::functions() {
        ctx.register_udf(function);
    }
    ctx.register_udf(crate::object::IgnoredKey::udf());
    ctx.register_udf(crate::object::ObjectJson::udf());
    ctx.register_udf(crate::object::ArrayField::udf());
    ctx.register_udf(crate::object::ObjectSet::udf());
}

/// A task context with DataFusion's built-in functions and Creek's shared ones. Building one
/// copies every registry: build it once and share it.
pub fn fragment_task_context() -> Arc<TaskContext> {
    let ctx = SessionContext::new();
    register_shared(&ctx);
    ctx.task_ctx()
}
