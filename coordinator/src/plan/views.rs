//! Views: a stored `SELECT` planned in the context of the view's schema when referenced.

use std::sync::Arc;

use creek_common::schema::ViewDef;
use datafusion::catalog::TableProvider;
use datafusion::datasource::ViewTable;
use datafusion::error::Result as DfResult;

use crate::cluster::Cluster;
use crate::plan::context::session_context;

/// Plans `view` and returns it as a table provider.
pub async fn view_provider(
    cluster: &Arc<Cluster>,
    view: &ViewDef,
) -> DfResult<Arc<dyn TableProvider>> {
    let ctx = session_context(cluster.clone(), &view.schema_name, false);
    let plan = ctx.state().create_logical_plan(&view.query).await?;
    Ok(Arc::new(ViewTable::new(plan, Some(view.query.clone()))))
}
