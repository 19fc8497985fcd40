//! `sys.allocations`: for every copy that is unassigned, recovering or on a node it should
//! leave, the reason, in the allocator's own terms (which rule, which node, which limit).

use std::collections::HashMap;

use creek_common::schema::TableSchema;
use creek_common::state::{ClusterState, CopyState, NodeRole, ShardRouting};
use creek_common::NodeId;

use super::{
    allocation_rules, recoveries_per_node, usable, wanted_copies, AllocationRules,
    MAX_RECOVERIES_PER_NODE,
};

/// One copy that is not started where it belongs, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationExplanation {
    pub schema: String,
    pub table: String,
    pub shard: u32,
    /// The node holding the copy, `None` for a copy nothing holds.
    pub node: Option<String>,
    pub primary: bool,
    /// UNASSIGNED, INITIALIZING or STARTED (for a copy that should move).
    pub state: String,
    pub explanation: String,
}

/// Why each copy that is missing, recovering or misplaced is so (for `sys.allocations`).
pub fn explain_allocations(state: &ClusterState) -> Vec<AllocationExplanation> {
    let mut rows = Vec::new();
    let recoveries = recoveries_per_node(state);
    let limit = MAX_RECOVERIES_PER_NODE;
    for table in state.tables.values() {
        let shards = state.routing.get(&table.id.0).cloned().unwrap_or_default();
        let mut group_counts: HashMap<usize, HashMap<NodeId, usize>> = HashMap::new();
        for (number, routing) in shards.iter().enumerate() {
            if routing.dropped {
                continue;
            }
            let group = super::group_of(table, number as u32, shards.len());
            let table_copies_on = group_counts
                .entry(group.start)
                .or_insert_with(|| super::copies_on(&shards, group));
            let view = super::shard_view(table, number as u32);
            let wanted = wanted_copies(state, &view);
            let Ok(rules) = allocation_rules(&view) else {
                continue;
            };
            let row = |node: Option<&NodeId>, primary: bool, state: &str, explanation: String| {
                AllocationExplanation {
                    schema: table.schema_name.clone(),
                    table: table.name.clone(),
                    shard: number as u32,
                    node: node.map(|n| n.to_string()),
                    primary,
                    state: state.to_string(),
                    explanation,
                }
            };
            let primary = routing.primary();
            match primary {
                None => rows.push(row(
                    None,
                    true,
                    "UNASSIGNED",
                    "the shard has no primary: no copy holding every acknowledged write is left"
                        .to_string(),
                )),
                Some(p) if !state.is_alive(&p.node) => rows.push(row(
                    Some(&p.node),
                    true,
                    "UNASSIGNED",
                    format!(
                        "the primary's node {} is gone and no started in-sync replica can take \
                         over; the shard is unavailable until {} returns",
                        p.node, p.node
                    ),
                )),
                _ => {}
            }
            for copy in &routing.copies {
                let node = state.nodes.get(&copy.node);
                if copy.state == CopyState::Initializing {
                    let explanation = match (copy.primary, primary) {
                        (true, _) => "a new primary: its node is creating it".to_string(),
                        (false, Some(p)) if p.state == CopyState::Started => format!(
                            "recovering from the primary on {}{}",
                            p.node,
                            copy.replaces
                                .as_ref()
                                .map(|r| format!(", to replace copy {r}"))
                                .unwrap_or_default()
                        ),
                        _ => "waiting for the primary to start".to_string(),
                    };
                    rows.push(row(
                        Some(&copy.node),
                        copy.primary,
                        "INITIALIZING",
                        explanation,
                    ));
                } else if let Some(node) =
                    node.filter(|n| !usable(n) || !rules.admits(&n.attributes))
                {
                    if state.is_alive(&node.id) {
                        let why = if node.decommissioned {
                            format!("node {} is being decommissioned", node.id)
                        } else if node.stopping.is_some() {
                            format!("node {} is stopping", node.id)
                        } else {
                            format!(
                                "node {} does not match the table's allocation rules ({})",
                                node.id,
                                rules.describe()
                            )
                        };
                        let waiting = routing
                            .copies
                            .iter()
                            .any(|c| c.replaces.as_deref() == Some(copy.allocation_id.as_str()));
                        let next = if waiting {
                            "a replacement is recovering".to_string()
                        } else {
                            format!(
                                "it stays until another node can hold it: {}",
                                refusals(
                                    state,
                                    table,
                                    &rules,
                                    routing,
                                    table_copies_on,
                                    &recoveries,
                                    limit
                                )
                            )
                        };
                        rows.push(row(
                            Some(&copy.node),
                            copy.primary,
                            "STARTED",
                            format!("{why}; {next}"),
                        ));
                    }
                }
            }
            let counting = routing
                .copies
                .iter()
                .filter(|c| c.replaces.is_none() && state.is_alive(&c.node))
                .count();
            if primary.is_some_and(|p| state.is_alive(&p.node)) && counting < wanted {
                let reason = if primary.is_some_and(|p| p.state != CopyState::Started) {
                    "replicas are allocated once the primary has started".to_string()
                } else {
                    format!(
                        "no node can take another copy: {}",
                        refusals(
                            state,
                            table,
                            &rules,
                            routing,
                            table_copies_on,
                            &recoveries,
                            limit
                        )
                    )
                };
                for _ in counting..wanted {
                    rows.push(row(None, false, "UNASSIGNED", reason.clone()));
                }
            }
        }
    }
    rows
}

/// Why each data node cannot take a new copy of a shard with `routing`.
fn refusals(
    state: &ClusterState,
    table: &TableSchema,
    rules: &AllocationRules,
    routing: &ShardRouting,
    table_copies_on: &HashMap<NodeId, usize>,
    recoveries: &HashMap<NodeId, usize>,
    limit: usize,
) -> String {
    let mut reasons = Vec::new();
    for node in state.nodes.values().filter(|n| n.role == NodeRole::Data) {
        let reason = if !node.alive {
            "is gone".to_string()
        } else if node.decommissioned {
            "is being decommissioned".to_string()
        } else if node.stopping.is_some() {
            "is stopping".to_string()
        } else if !rules.admits(&node.attributes) {
            format!("does not match {}", rules.describe())
        } else if routing.copy_on(&node.id).is_some() {
            "already holds a copy of the shard (two copies never share a node)".to_string()
        } else if rules
            .total_shards_per_node
            .is_some_and(|max| table_copies_on.get(&node.id).copied().unwrap_or(0) >= max)
        {
            format!(
                "already holds total_shards_per_node copies of {}",
                table.name
            )
        } else if recoveries.get(&node.id).copied().unwrap_or(0) >= limit {
            format!("is throttled: {limit} recoveries are running there")
        } else {
            "could take it (allocation is pending)".to_string()
        };
        reasons.push(format!("{} {reason}", node.id));
    }
    if reasons.is_empty() {
        return "there are no data nodes".to_string();
    }
    reasons.join("; ")
}
