//! The cluster state document: nodes, tables, views and the shard routing table, with a
//! version that grows by one on every change.
//!
//! Coordinators change it only through Raft (the coordinator's `consensus` module) and publish
//! whole versions to every node; data nodes read it to know which shards they hold. This module
//! owns the shape and the pure queries over it; it must not decide how a change is made.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::fulltext::AnalyzerDef;
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
    /// Set by `ALTER CLUSTER DECOMMISSION`: the node's copies move elsewhere, then it stops.
    #[serde(default)]
    pub decommissioned: bool,
    /// Set while the node stops gracefully (SIGTERM); it gets no new copies. Unlike
    /// `decommissioned`, it ends when the node's next process joins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stopping: Option<GracefulStop>,
}

/// What a gracefully stopping node moves off before it stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GracefulStop {
    /// Its primaries hand over to in-sync replicas elsewhere (or are copied there first);
    /// its replicas stay until it leaves.
    Primaries,
    /// Every copy moves off, as for a decommissioned node.
    Full,
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
    /// Analyzers defined by `CREATE ANALYZER`, by name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub analyzers: BTreeMap<String, AnalyzerDef>,
    /// For each table id, the copies of each shard (index = shard number).
    #[serde(deserialize_with = "deserialize_routing")]
    pub routing: BTreeMap<u64, Vec<ShardRouting>>,
    /// The next allocation id to hand out (allocation ids name shard copies for their life).
    #[serde(default)]
    pub next_allocation_id: u64,
    /// Cluster-wide settings (`SET GLOBAL`), e.g. `routing.allocation.awareness.attributes`.
    #[serde(default)]
    pub settings: BTreeMap<String, String>,
    /// Every node that has joined, by id.
    #[serde(default)]
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    /// The Raft term of the leader that sent this copy (0 in a voter's own state machine, which
    /// sends nothing). A node refuses a copy from a leader older than one it has heard from,
    /// so a deposed leader cannot push states after its successor has.
    #[serde(default)]
    pub leader_term: u64,
}

/// What a shard copy is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum CopyState {
    /// Being built by recovery from the primary; receives new writes but serves no reads.
    Initializing,
    /// Serves reads (and, if primary, writes).
    Started,
}

impl CopyState {
    /// The state's name in `sys.shards`.
    pub fn as_str(self) -> &'static str {
        match self {
            CopyState::Initializing => "INITIALIZING",
            CopyState::Started => "STARTED",
        }
    }
}

/// One copy of a shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCopy {
    /// The data node holding it.
    pub node: NodeId,
    /// Names this copy for its life: a copy recovered again elsewhere gets a new one.
    pub allocation_id: String,
    /// Whether it is the primary, which orders and replicates the writes.
    pub primary: bool,
    /// Recovering or started.
    pub state: CopyState,
    /// For a copy built to replace another (a move): the allocation id it replaces, which
    /// is removed once this one has started.
    #[serde(default)]
    pub replaces: Option<String>,
}

/// The copies of one shard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardRouting {
    /// Grows whenever a new primary is chosen; copies refuse writes of an older term.
    pub primary_term: u64,
    /// Every copy, the primary among them (if it has one).
    pub copies: Vec<ShardCopy>,
    /// Allocation ids of the copies holding every acknowledged write.
    pub in_sync: Vec<String>,
    /// Nodes where a recovery of this shard failed since a copy last started: the allocator
    /// tries other nodes first (a node that cannot reach the primary is not picked again and
    /// again).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed_on: Vec<NodeId>,
    /// The shard belonged to a partition that was dropped: it has no copies, its number is
    /// never reused, and nodes delete what they still hold of it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dropped: bool,
}

impl ShardRouting {
    /// Returns the primary copy, if the shard has one.
    pub fn primary(&self) -> Option<&ShardCopy> {
        self.copies.iter().find(|copy| copy.primary)
    }

    /// Returns whether `allocation_id` is in the in-sync set.
    pub fn is_in_sync(&self, allocation_id: &str) -> bool {
        self.in_sync.iter().any(|id| id == allocation_id)
    }

    /// The replica that would take over as primary: the lowest allocation id among the
    /// started in-sync replicas that `eligible` admits.
    pub fn successor(&self, eligible: impl Fn(&ShardCopy) -> bool) -> Option<String> {
        self.copies
            .iter()
            .filter(|c| {
                !c.primary
                    && c.state == CopyState::Started
                    && self.is_in_sync(&c.allocation_id)
                    && eligible(c)
            })
            .map(|c| c.allocation_id.clone())
            .min()
    }

    /// Makes copy `allocation_id` the primary under a new primary term.
    pub fn promote(&mut self, allocation_id: &str) {
        for copy in &mut self.copies {
            copy.primary = copy.allocation_id == allocation_id;
        }
        self.primary_term += 1;
    }

    /// Returns the copy held by `node`, if any.
    pub fn copy_on(&self, node: &NodeId) -> Option<&ShardCopy> {
        self.copies.iter().find(|copy| &copy.node == node)
    }
}

/// Reads the routing table, also as written before shards had copies (one node id per
/// shard), so the states of older clusters (Raft snapshots) still load.
fn deserialize_routing<'de, D>(
    deserializer: D,
) -> Result<BTreeMap<u64, Vec<ShardRouting>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Entry {
        Copies(ShardRouting),
        Node(NodeId),
    }
    let raw: BTreeMap<u64, Vec<Entry>> = BTreeMap::deserialize(deserializer)?;
    Ok(raw
        .into_iter()
        .map(|(table, shards)| {
            let shards = shards
                .into_iter()
                .enumerate()
                .map(|(shard, entry)| match entry {
                    Entry::Copies(routing) => routing,
                    Entry::Node(node) => {
                        let allocation_id = format!("{table}.{shard}.0");
                        ShardRouting {
                            primary_term: 1,
                            copies: vec![ShardCopy {
                                node,
                                allocation_id: allocation_id.clone(),
                                primary: true,
                                state: CopyState::Started,
                                replaces: None,
                            }],
                            in_sync: vec![allocation_id],
                            failed_on: Vec::new(),
                            dropped: false,
                        }
                    }
                })
                .collect();
            (table, shards)
        })
        .collect())
}

/// What a data node keeps available when it stops on SIGTERM: `primaries` (default: its
/// primaries move first), `full` (every copy moves first, as `ALTER CLUSTER DECOMMISSION`),
/// `none` (it stops at once).
pub const GRACEFUL_STOP_MIN_AVAILABILITY: &str = "cluster.graceful_stop.min_availability";
/// How long a graceful stop may take (a duration, default `2h`).
pub const GRACEFUL_STOP_TIMEOUT: &str = "cluster.graceful_stop.timeout";
/// Whether a graceful stop that timed out stops the node anyway (`true`) or gives up and
/// keeps it running (`false`, the default).
pub const GRACEFUL_STOP_FORCE: &str = "cluster.graceful_stop.force";

/// The cluster setting bounding how many bytes per second one recovery fetches (`40mb`,
/// `512kb`, `1gb` or a byte count; `0` or unset: no bound).
pub const RECOVERY_MAX_BYTES_PER_SEC: &str = "indices.recovery.max_bytes_per_sec";

/// Parses a byte size such as `40mb`, `512kb`, `1gb`, `100b` or `4096` (case-insensitive).
pub fn parse_byte_size(text: &str) -> Option<u64> {
    let text = text.trim().trim_matches('\'').to_ascii_lowercase();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: u64 = number.parse().ok()?;
    let factor: u64 = match unit.trim() {
        "" | "b" => 1,
        "kb" | "k" => 1 << 10,
        "mb" | "m" => 1 << 20,
        "gb" | "g" => 1 << 30,
        _ => return None,
    };
    value.checked_mul(factor)
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

    /// Returns, for each table, the shard numbers of which `node` holds a copy.
    pub fn shards_of_node(&self, node: &NodeId) -> Vec<(&TableSchema, Vec<u32>)> {
        self.tables
            .values()
            .filter_map(|table| {
                let shards: Vec<u32> = self
                    .routing
                    .get(&table.id.0)?
                    .iter()
                    .enumerate()
                    .filter(|(_, routing)| routing.copy_on(node).is_some())
                    .map(|(shard, _)| shard as u32)
                    .collect();
                (!shards.is_empty()).then_some((table, shards))
            })
            .collect()
    }

    /// Returns the routing of one shard.
    pub fn shard_routing(&self, table: TableId, shard: u32) -> Option<&ShardRouting> {
        self.routing.get(&table.0)?.get(shard as usize)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_with_their_units_and_never_wrap() {
        assert_eq!(parse_byte_size("4096"), Some(4096));
        assert_eq!(parse_byte_size("'40mb'"), Some(40 << 20));
        assert_eq!(parse_byte_size("512KB"), Some(512 << 10));
        assert_eq!(parse_byte_size("1g"), Some(1 << 30));
        assert_eq!(parse_byte_size("0"), Some(0));
        assert_eq!(parse_byte_size("ten mb"), None);
        assert_eq!(parse_byte_size("-1mb"), None);
        assert_eq!(parse_byte_size("18446744073709551615gb"), None);
    }
}
