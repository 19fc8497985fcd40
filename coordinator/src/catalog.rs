//! Cluster state as the coordinator sees it: tables, views and the shard routing table,
//! versioned and persisted, and exposed to DataFusion as catalog/schema providers.
//!
//! In `creek dev` the single coordinator owns and persists the state itself; the cluster issue
//! replaces [`ClusterState`] persistence with a Raft log among voters. Nothing here talks to data
//! nodes: DDL that must reach them goes through `sql::ddl`.

pub mod pg_catalog;
pub mod provider;
pub mod shard_table;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::{TableSchema, ViewDef};
use creek_common::{NodeId, TableId};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The versioned cluster state document.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterState {
    /// Incremented on every change.
    pub version: u64,
    /// The cluster's name.
    pub cluster_name: String,
    /// The next table id to hand out.
    pub next_table_id: u64,
    /// Tables by `schema.name`.
    pub tables: BTreeMap<String, TableSchema>,
    /// Views by `schema.name`.
    pub views: BTreeMap<String, ViewDef>,
    /// For each table id, the node holding each shard (index = shard number).
    pub routing: BTreeMap<u64, Vec<NodeId>>,
}

/// Returns the key under which a table or view is stored.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{schema}.{name}")
}

/// Shared, persisted cluster state.
pub struct Catalog {
    path: PathBuf,
    state: RwLock<Arc<ClusterState>>,
}

impl Catalog {
    /// Loads the state from `<dir>/state.json`, or starts empty.
    pub fn open(dir: PathBuf, cluster_name: &str) -> Result<Catalog> {
        std::fs::create_dir_all(&dir).map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot create {}: {e}", dir.display()),
            )
        })?;
        let path = dir.join("state.json");
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::new(
                    ErrorCode::DataCorrupted,
                    format!("cluster state {} is unreadable: {e}", path.display()),
                )
            })?,
            Err(_) => ClusterState {
                cluster_name: cluster_name.to_string(),
                next_table_id: 1,
                ..ClusterState::default()
            },
        };
        Ok(Catalog {
            path,
            state: RwLock::new(Arc::new(state)),
        })
    }

    /// Returns the current state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// Applies `change` to a copy of the state, persists it durably and publishes it.
    pub fn update<T>(&self, change: impl FnOnce(&mut ClusterState) -> Result<T>) -> Result<T> {
        let mut guard = self.state.write();
        let mut next = (**guard).clone();
        let result = change(&mut next)?;
        next.version += 1;
        let bytes = serde_json::to_vec_pretty(&next).expect("cluster state serialises");
        let temp = self.path.with_extension("json.tmp");
        let persist = || -> std::io::Result<()> {
            use std::io::Write;
            let mut file = std::fs::File::create(&temp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&temp, &self.path)?;
            if let Some(parent) = self.path.parent() {
                std::fs::File::open(parent)?.sync_all()?;
            }
            Ok(())
        };
        persist().map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("cannot persist cluster state: {e}"),
            )
        })?;
        *guard = Arc::new(next);
        Ok(result)
    }

    /// Returns a table by schema and name.
    pub fn table(&self, schema: &str, name: &str) -> Option<TableSchema> {
        self.state
            .read()
            .tables
            .get(&qualified(schema, name))
            .cloned()
    }

    /// Returns a table, or the "relation does not exist" error (42P01 / 4041).
    pub fn existing_table(&self, schema: &str, name: &str) -> Result<TableSchema> {
        self.table(schema, name).ok_or_else(|| {
            Error::new(
                ErrorCode::UndefinedTable,
                format!("relation \"{schema}.{name}\" does not exist"),
            )
        })
    }

    /// Returns the node holding each shard of `table`.
    pub fn routing(&self, table: TableId) -> Vec<NodeId> {
        self.state
            .read()
            .routing
            .get(&table.0)
            .cloned()
            .unwrap_or_default()
    }
}
