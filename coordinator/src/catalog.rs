//! Cluster state as this coordinator sees it: the latest applied version of the
//! [`ClusterState`] document, exposed to DataFusion as catalog/schema providers.
//!
//! The catalog only holds and hands out versions; it never changes one itself. Changes are
//! [`commands::Command`]s committed through Raft (`crate::consensus`), which installs each
//! applied version here; non-voting coordinators install the versions the leader publishes.

pub mod commands;
pub mod pg_catalog;
pub mod provider;
pub mod shard_table;

use std::sync::Arc;
use std::time::Duration;

use creek_common::error::ErrorCode;
use creek_common::schema::TableSchema;
pub use creek_common::state::{
    qualified, ClusterState, CopyState, NodeInfo, NodeRole, ShardRouting,
};
use creek_common::NodeId;
use creek_common::TableId;
use parking_lot::RwLock;
use tokio::sync::watch;

use crate::error::{Error, Result};

/// The latest cluster state version this coordinator knows.
pub struct Catalog {
    state: RwLock<Arc<ClusterState>>,
    versions: watch::Sender<u64>,
    /// The highest leader term a copy was installed from; kept apart from the state, which a
    /// voter's own state machine replaces with term 0.
    leader_term: std::sync::atomic::AtomicU64,
}

impl Catalog {
    /// Starts with an empty state of cluster `cluster_name` (version 0), until one is installed.
    pub fn new(cluster_name: &str) -> Catalog {
        Catalog {
            state: RwLock::new(Arc::new(ClusterState {
                cluster_name: cluster_name.to_string(),
                next_table_id: 1,
                ..ClusterState::default()
            })),
            versions: watch::channel(0).0,
            leader_term: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Returns the current state.
    pub fn state(&self) -> Arc<ClusterState> {
        self.state.read().clone()
    }

    /// Installs `state`, a copy another node sent, if it is newer than the current one and
    /// may be installed at all (same cluster, a leader not older than one heard from before:
    /// see [`ClusterState::accepts`]); returns whether it was.
    pub fn install(&self, state: Arc<ClusterState>) -> bool {
        use std::sync::atomic::Ordering;
        let mut guard = self.state.write();
        if state.version <= guard.version && state.cluster_uuid == guard.cluster_uuid {
            // This state or an older one: nothing to install, nothing to refuse (a
            // coordinator re-installing what its own state machine applied lands here). A
            // newer leader term it carries is still learnt.
            self.leader_term
                .fetch_max(state.leader_term, Ordering::AcqRel);
            return false;
        }
        let mut current = guard.as_ref().clone();
        current.leader_term = self.leader_term.load(Ordering::Acquire);
        match current.accepts(&state) {
            Err(reason) => {
                tracing::warn!(%reason, "refusing a cluster state");
                return false;
            }
            Ok(newer) => {
                self.leader_term
                    .fetch_max(state.leader_term, Ordering::AcqRel);
                if !newer {
                    return false;
                }
            }
        }
        let version = state.version;
        *guard = state;
        drop(guard);
        self.versions.send_replace(version);
        true
    }

    /// Installs a state this coordinator's own Raft state machine produced (authoritative: no
    /// cluster or term check), if it is newer than the current one.
    pub fn install_applied(&self, state: Arc<ClusterState>) -> bool {
        let mut guard = self.state.write();
        if state.version <= guard.version {
            return false;
        }
        let version = state.version;
        *guard = state;
        drop(guard);
        self.versions.send_replace(version);
        true
    }

    /// Replaces the state even if it is not newer (a Raft snapshot install is authoritative).
    pub fn replace(&self, state: Arc<ClusterState>) {
        let version = state.version;
        *self.state.write() = state;
        self.versions.send_replace(version);
    }

    /// Waits until a version of at least `version` is installed; returns whether it was within
    /// `timeout`.
    pub async fn wait_for_version(&self, version: u64, timeout: Duration) -> bool {
        let mut receiver = self.versions.subscribe();
        tokio::time::timeout(timeout, receiver.wait_for(|v| *v >= version))
            .await
            .is_ok_and(|r| r.is_ok())
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

    /// Returns whether `node` is known and alive in the current state.
    pub fn is_alive(&self, node: &NodeId) -> bool {
        self.state.read().is_alive(node)
    }

    /// Returns the copies of every shard of `table`.
    pub fn routing(&self, table: TableId) -> Vec<ShardRouting> {
        self.state
            .read()
            .routing
            .get(&table.0)
            .cloned()
            .unwrap_or_default()
    }
}
