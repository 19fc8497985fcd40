//! The cluster state document: nodes, tables, views and the shard routing table, with a
//! version that grows by one on every change.
//!
//! Coordinators change it only through Raft (the coordinator's `consensus` module) and publish
//! whole versions to every node; data nodes read it to know which shards they hold. This module
//! owns the shape and the pure queries over it; it must not decide how a change is made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{NodeId, TableId};
use crate::schema::{TableSchema, ViewDef};

/// What a node does in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeRole {
    /// Parses, plans and merges; holds no table data.
    Coordinator,
    /// Holds shards and runs plan fragments.
    Data,
}

impl NodeRole {
    /// The role's name in `sys.nodes`.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeRole::Coordinator => "coordinator",
            NodeRole::Data => "data",
        }
    }
}

/// One member of the cluster as recorded in cluster state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `--node-id`.
    pub id: NodeId,
    /// Coordinator or data node.
    pub role: NodeRole,
    /// The transport address (`host:port`) other nodes reach it at.
    pub address: String,
    /// `--attr key=value` pairs, used by allocation filters.
    #[serde(default)]
    pub attributes: BTreeMap<String, String>,
    /// Whether the node is a Raft voter.
    #[serde(default)]
    pub voter: bool,
    /// False once the leader has not heard from the node for the node timeout.
    pub alive: bool,
}

/// The versioned cluster state document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    /// Incremented on every change.
    pub version: u64,
    /// The cluster's name (`--cluster-name`).
    pub cluster_name: String,
    /// Generated once when the cluster is first formed; a node that has joined one cluster
    /// refuses to join another.
    #[serde(default)]
    pub cluster_uuid: String,
    /// The next table id to hand out.
    pub next_table_id: u64,
    /// Tables by `schema.name`.
    pub tables: BTreeMap<String, TableSchema>,
    /// Views by `schema.name`.
    pub views: BTreeMap<String, ViewDef>,
    /// For each table id, the node holding each shard (index = shard number).
    pub routing: BTreeMap<u64, Vec<NodeId>>,
    /// Every node that has joined, by id.
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// The Raft term of the leader that sent this copy (0 in a voter's own state machine, which
    /// sends nothing). A node refuses a copy from a leader older than one it has heard from,
    /// so a deposed leader cannot push states after its successor has.
    #[serde(default)]
    pub leader_term: u64,
}

/// Returns the key under which a table or view is stored.
pub fn qualified(schema: &str, name: &str) -> String {
    format!("{schema}.{name}")
}

impl ClusterState {
    /// Returns the table with id `table`.
    pub fn table_by_id(&self, table: TableId) -> Option<&TableSchema> {
        self.tables.values().find(|t| t.id == table)
    }

    /// Returns, for each table, the shard numbers cluster state assigns to `node`.
    pub fn shards_of_node(&self, node: &NodeId) -> Vec<(&TableSchema, Vec<u32>)> {
        self.tables
            .values()
            .filter_map(|table| {
                let shards: Vec<u32> = self
                    .routing
                    .get(&table.id.0)?
                    .iter()
                    .enumerate()
                    .filter(|(_, holder)| *holder == node)
                    .map(|(shard, _)| shard as u32)
                    .collect();
                (!shards.is_empty()).then_some((table, shards))
            })
            .collect()
    }

    /// Checks that `incoming`, a copy sent to a node whose latest state is `self`, may be
    /// installed: it must belong to the same cluster, come from a leader at least as recent
    /// as the one `self` came from, and be newer. `Ok(false)` for a copy that is merely not
    /// newer; an error for one that must never be installed.
    pub fn accepts(&self, incoming: &ClusterState) -> Result<bool, String> {
        if !self.cluster_uuid.is_empty()
            && !incoming.cluster_uuid.is_empty()
            && self.cluster_uuid != incoming.cluster_uuid
        {
            return Err(format!(
                "cluster state of another cluster (uuid {}, this node is in {})",
                incoming.cluster_uuid, self.cluster_uuid
            ));
        }
        if incoming.leader_term < self.leader_term {
            return Err(format!(
                "cluster state version {} from a leader of term {}, older than term {} already heard from",
                incoming.version, incoming.leader_term, self.leader_term
            ));
        }
        Ok(incoming.version > self.version)
    }

    /// Returns whether `node` is known and alive.
    pub fn is_alive(&self, node: &NodeId) -> bool {
        self.nodes.get(node).is_some_and(|n| n.alive)
    }
}
