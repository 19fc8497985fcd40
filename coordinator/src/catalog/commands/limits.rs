//! Bounds on how much a cluster may be asked to hold. Shards are never free (each is an index
//! with its own files, writer and translog), and a partitioned table creates them from data:
//! a COPY partitioned by minute would otherwise open shards until the nodes fall over. Pure
//! checks on the state, applied with the commands that add shards.

use creek_common::error::{CodedError, ErrorCode};
use creek_common::state::{ClusterState, NodeRole};

/// The cluster setting bounding the shard copies per data node (Elasticsearch's and
/// CrateDB's name and default).
pub const MAX_SHARDS_PER_NODE_SETTING: &str = "cluster.max_shards_per_node";

/// Its default.
pub const DEFAULT_MAX_SHARDS_PER_NODE: usize = 1000;

/// Reads the setting's value: a positive count.
pub fn parse_max_shards_per_node(value: &str) -> Option<usize> {
    value
        .trim()
        .trim_matches('\'')
        .parse()
        .ok()
        .filter(|n| *n > 0)
}

/// Refuses adding `copies` shard copies (primaries and the replicas they will get) when the
/// cluster would then hold more than the setting allows per data node.
pub(super) fn check_shard_limit(state: &ClusterState, copies: usize) -> Result<(), CodedError> {
    let per_node = state
        .settings
        .get(MAX_SHARDS_PER_NODE_SETTING)
        .and_then(|v| parse_max_shards_per_node(v))
        .unwrap_or(DEFAULT_MAX_SHARDS_PER_NODE);
    let data_nodes = state
        .nodes
        .values()
        .filter(|n| n.role == NodeRole::Data && !n.decommissioned)
        .count();
    let open: usize = state
        .routing
        .values()
        .flatten()
        .map(|routing| routing.copies.len())
        .sum();
    let limit = per_node.saturating_mul(data_nodes);
    if open.saturating_add(copies) > limit {
        return Err(CodedError::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "this would add {copies} shard copies to the {open} the cluster holds, more than \
                 {MAX_SHARDS_PER_NODE_SETTING} = {per_node} for each of its {data_nodes} data \
                 node(s) allows ({limit})"
            ),
        ));
    }
    Ok(())
}
