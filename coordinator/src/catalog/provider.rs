//! DataFusion catalog and schema providers backed by cluster state. Every lookup reads the
//! current state, so DDL from any session is visible to the next statement of every session.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::Result as DfResult;

use super::pg_catalog::{is_catalog_table, schema_names, PgCatalogSchema};
use super::shard_table::ShardTable;
use super::Catalog;
use crate::cluster::Cluster;
use crate::plan::views::view_provider;

/// The `crate` catalog: every schema that has a table or view.
#[derive(Debug)]
pub struct CreekCatalogProvider {
    cluster: Arc<Cluster>,
    expose_hidden: bool,
    settings: Vec<(String, String)>,
}

impl CreekCatalogProvider {
    /// Creates the provider; with `expose_hidden`, tables also show `_id` and `_seq_no`
    /// (used by UPDATE and DELETE). `settings` are the session's, listed by `pg_settings`.
    pub fn new(
        cluster: Arc<Cluster>,
        expose_hidden: bool,
        settings: Vec<(String, String)>,
    ) -> CreekCatalogProvider {
        CreekCatalogProvider {
            cluster,
            expose_hidden,
            settings,
        }
    }
}

impl std::fmt::Debug for Catalog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Catalog(version {})", self.state().version)
    }
}

impl CreekCatalogProvider {
    fn pg_catalog(&self) -> PgCatalogSchema {
        PgCatalogSchema::new(self.cluster.clone(), self.settings.clone())
    }
}

impl CatalogProvider for CreekCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let mut names = schema_names(&self.cluster.catalog().state());
        // DataFusion serves `information_schema` itself.
        names.remove("information_schema");
        names.into_iter().collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            "sys" => Some(crate::sql::system::sys_schema(self.cluster.clone())),
            "pg_catalog" => Some(Arc::new(self.pg_catalog())),
            _ => Some(Arc::new(CreekSchemaProvider {
                cluster: self.cluster.clone(),
                schema: name.to_string(),
                expose_hidden: self.expose_hidden,
                pg_catalog: self.pg_catalog(),
            })),
        }
    }
}

/// One schema (namespace) of user tables and views; it exists implicitly. As in PostgreSQL,
/// `pg_catalog` tables are found unqualified too, after the schema's own tables.
#[derive(Debug)]
pub struct CreekSchemaProvider {
    cluster: Arc<Cluster>,
    schema: String,
    expose_hidden: bool,
    pg_catalog: PgCatalogSchema,
}

#[async_trait]
impl SchemaProvider for CreekSchemaProvider {
    fn table_names(&self) -> Vec<String> {
        let state = self.cluster.catalog().state();
        state
            .tables
            .values()
            .filter(|t| t.schema_name == self.schema)
            .map(|t| t.name.clone())
            .chain(
                state
                    .views
                    .values()
                    .filter(|v| v.schema_name == self.schema)
                    .map(|v| v.name.clone()),
            )
            .collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let state = self.cluster.catalog().state();
        let key = super::qualified(&self.schema, name);
        if let Some(table) = state.tables.get(&key) {
            let table = Arc::new(table.clone());
            let provider = if self.expose_hidden {
                ShardTable::with_hidden_columns(table, self.cluster.clone())
            } else {
                ShardTable::new(table, self.cluster.clone())
            };
            return Ok(Some(Arc::new(provider)));
        }
        if let Some(view) = state.views.get(&key) {
            return view_provider(&self.cluster, view).await.map(Some);
        }
        self.pg_catalog.table(name).await
    }

    fn table_exist(&self, name: &str) -> bool {
        let state = self.cluster.catalog().state();
        let key = super::qualified(&self.schema, name);
        state.tables.contains_key(&key) || state.views.contains_key(&key) || is_catalog_table(name)
    }
}
