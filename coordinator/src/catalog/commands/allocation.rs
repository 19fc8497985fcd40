//! Where shard copies live: the allocator, part of [`super::apply`] and so a pure function of
//! the cluster state (every voter computes the same placement).
//!
//! [`allocate_table`] places a new table: primaries on the live data nodes the table's rules
//! admit with the fewest copies, then as many replicas as `number_of_replicas` asks, never two
//! copies of a shard on one node, spread over the values of the awareness attributes, and the
//! primaries spread over the nodes. Every copy starts INITIALIZING: the primary's node creates
//! it empty and reports it started, then the replicas recover from it. [`reroute`] then keeps
//! every table as its settings and the nodes say, after every change of the state:
//!
//! - a primary on a gone node is replaced by its lowest in-sync started replica (the primary
//!   term grows); replicas on gone nodes are dropped (a shard keeps its last in-sync copy,
//!   RED, rather than forget where its data is);
//! - missing replicas are added as INITIALIZING copies (recovered from the primary), at most
//!   [`MAX_RECOVERIES_PER_NODE`] per node at a time; surplus ones are dropped;
//! - a copy on a node the rules no longer admit, or one being decommissioned, gets a
//!   replacement elsewhere, and goes once that has started (`replaces`); a node that stops
//!   gracefully keeping primaries available hands its primaries to replicas elsewhere (or gets
//!   them replaced) and keeps its replicas until it leaves;
//! - when no recovery is running, one copy moves from the most to the least loaded node if
//!   they differ by two or more.
//!
//! Copies starting and failing are `events`; why a copy is where it is, `explain`.

mod events;
mod explain;

pub(super) use events::{copy_failed, copy_started};
pub use explain::{explain_allocations, AllocationExplanation};

use std::collections::{BTreeMap, HashMap};

use creek_common::error::{CodedError, ErrorCode};
use creek_common::schema::TableSchema;
use creek_common::state::{
    ClusterState, CopyState, GracefulStop, NodeInfo, NodeRole, ShardCopy, ShardRouting,
};
use creek_common::NodeId;

use super::refused;

/// How many copies may be initializing on one node at a time.
pub const MAX_RECOVERIES_PER_NODE: usize = 2;

/// How many placement rounds one reroute runs at most.
const MAX_PLACEMENT_ROUNDS: usize = 4;

/// The cluster setting naming the node attributes copies are spread over.
pub const AWARENESS_SETTING: &str = "routing.allocation.awareness.attributes";

/// The table setting for the replica count: an integer or a range `min-max` (`max` may be
/// `all`) that follows the number of nodes that may hold the table.
pub const REPLICAS_SETTING: &str = "number_of_replicas";

/// The replica count of a table without the setting, as CrateDB: one replica when a second
/// node can hold it.
pub const DEFAULT_REPLICAS: &str = "0-1";

/// The allocation filters a table's settings ask for.
#[derive(Debug, Default)]
pub(super) struct AllocationRules {
    require: BTreeMap<String, Vec<String>>,
    include: BTreeMap<String, Vec<String>>,
    exclude: BTreeMap<String, Vec<String>>,
    total_shards_per_node: Option<usize>,
}

const ALLOCATION_PREFIX: &str = "routing.allocation.";

/// Returns whether `key` is an allocation setting Creek understands.
pub fn is_allocation_setting(key: &str) -> bool {
    let Some(rest) = key.strip_prefix(ALLOCATION_PREFIX) else {
        return false;
    };
    rest == "total_shards_per_node"
        || ["require.", "include.", "exclude."]
            .iter()
            .any(|kind| rest.strip_prefix(kind).is_some_and(|attr| !attr.is_empty()))
}

/// The replica count a setting asks for: `(min, max)`, `max = None` for `all`.
pub fn parse_replicas(value: &str) -> Result<(usize, Option<usize>), CodedError> {
    let bad = || {
        refused(
            ErrorCode::InvalidParameterValue,
            format!(
                "number_of_replicas must be a count or a range such as '0-1' or '1-all', got '{value}'"
            ),
        )
    };
    let value = value.trim().trim_matches('\'');
    match value.split_once('-') {
        None => {
            let count = value.parse::<usize>().map_err(|_| bad())?;
            Ok((count, Some(count)))
        }
        Some((min, max)) => {
            let min = min.trim().parse::<usize>().map_err(|_| bad())?;
            let max = match max.trim() {
                "all" => None,
                max => Some(max.parse::<usize>().map_err(|_| bad())?),
            };
            if max.is_some_and(|max| max < min) {
                return Err(bad());
            }
            Ok((min, max))
        }
    }
}

pub(super) fn allocation_rules(table: &TableSchema) -> Result<AllocationRules, CodedError> {
    let mut rules = AllocationRules::default();
    for (key, value) in &table.settings {
        let Some(rest) = key.strip_prefix(ALLOCATION_PREFIX) else {
            continue;
        };
        let values = || -> Vec<String> {
            value
                .split(',')
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
                .collect()
        };
        if rest == "total_shards_per_node" {
            let limit: i64 = value.trim().parse().map_err(|_| {
                refused(
                    ErrorCode::InvalidParameterValue,
                    format!("{key} must be an integer, got '{value}'"),
                )
            })?;
            rules.total_shards_per_node = match limit {
                -1 => None,
                n if n > 0 => Some(n as usize),
                _ => {
                    return Err(refused(
                        ErrorCode::InvalidParameterValue,
                        format!("{key} must be positive or -1, got {limit}"),
                    ))
                }
            };
        } else if let Some(attr) = rest.strip_prefix("require.") {
            rules.require.insert(attr.to_string(), values());
        } else if let Some(attr) = rest.strip_prefix("include.") {
            rules.include.insert(attr.to_string(), values());
        } else if let Some(attr) = rest.strip_prefix("exclude.") {
            rules.exclude.insert(attr.to_string(), values());
        }
    }
    Ok(rules)
}

impl AllocationRules {
    /// Whether a node with `attributes` may hold a shard of the table.
    fn admits(&self, attributes: &BTreeMap<String, String>) -> bool {
        let has = |attr: &String, allowed: &Vec<String>| {
            attributes
                .get(attr)
                .is_some_and(|v| allowed.iter().any(|a| a == v))
        };
        self.require
            .iter()
            .all(|(attr, allowed)| has(attr, allowed))
            && (self.include.is_empty()
                || self
                    .include
                    .iter()
                    .any(|(attr, allowed)| has(attr, allowed)))
            && !self
                .exclude
                .iter()
                .any(|(attr, allowed)| has(attr, allowed))
    }

    fn describe(&self) -> String {
        let mut parts = Vec::new();
        for (kind, rules) in [
            ("require", &self.require),
            ("include", &self.include),
            ("exclude", &self.exclude),
        ] {
            for (attr, values) in rules {
                parts.push(format!("{kind}.{attr}={}", values.join(",")));
            }
        }
        if let Some(limit) = self.total_shards_per_node {
            parts.push(format!("total_shards_per_node={limit}"));
        }
        parts.join(", ")
    }
}

/// Whether `node` may hold copies at all: a live data node not being decommissioned.
fn usable(node: &NodeInfo) -> bool {
    node.role == NodeRole::Data && node.alive && !node.decommissioned && node.stopping.is_none()
}

/// How many copies of every table each node holds.
fn loads(state: &ClusterState) -> HashMap<NodeId, usize> {
    let mut load = HashMap::new();
    for shards in state.routing.values() {
        for routing in shards {
            for copy in &routing.copies {
                *load.entry(copy.node.clone()).or_default() += 1;
            }
        }
    }
    load
}

/// The awareness attributes copies are spread over (cluster setting).
fn awareness_attributes(state: &ClusterState) -> Vec<String> {
    state
        .settings
        .get(AWARENESS_SETTING)
        .map(|value| {
            value
                .split(',')
                .map(|a| a.trim().to_string())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default()
}

/// The replica count of `table` with `eligible` nodes able to hold it.
fn wanted_replicas(table: &TableSchema, eligible: usize) -> usize {
    let setting = table
        .settings
        .get(REPLICAS_SETTING)
        .map(String::as_str)
        .unwrap_or(DEFAULT_REPLICAS);
    // Checked when the setting was stored; a bad stored value means no replicas.
    let (min, max) = parse_replicas(setting).unwrap_or((0, Some(0)));
    if max == Some(min) {
        return min;
    }
    let possible = eligible.saturating_sub(1);
    possible.clamp(min, max.unwrap_or(usize::MAX))
}

fn next_allocation_id(state: &mut ClusterState, table: u64, shard: usize) -> String {
    state.next_allocation_id += 1;
    format!("{table}.{shard}.{}", state.next_allocation_id)
}

/// The best node for a new copy of a shard that already has `copies`: admitted by the
/// table's rules, holding no copy of the shard, under `total_shards_per_node`, spread over
/// the awareness attributes, then the fewest copies, then the lowest id.
fn best_node<'a>(
    nodes: &'a [&'a NodeInfo],
    rules: &AllocationRules,
    copies: &[ShardCopy],
    table_copies_on: &HashMap<NodeId, usize>,
    load: &HashMap<NodeId, usize>,
    awareness: &[String],
    by_id: &HashMap<&NodeId, &NodeInfo>,
) -> Option<&'a NodeInfo> {
    nodes
        .iter()
        .copied()
        .filter(|node| rules.admits(&node.attributes))
        .filter(|node| copies.iter().all(|copy| copy.node != node.id))
        .filter(|node| {
            rules
                .total_shards_per_node
                .is_none_or(|limit| table_copies_on.get(&node.id).copied().unwrap_or(0) < limit)
        })
        .min_by_key(|node| {
            let same_zone: usize = awareness
                .iter()
                .map(|attribute| {
                    let value = node.attributes.get(attribute);
                    copies
                        .iter()
                        .filter(|copy| {
                            by_id
                                .get(&copy.node)
                                .and_then(|other| other.attributes.get(attribute))
                                == value
                        })
                        .count()
                })
                .sum();
            (
                same_zone,
                load.get(&node.id).copied().unwrap_or(0),
                node.id.clone(),
            )
        })
}

/// `table` as shard `shard` sees it: with its partition's own settings over the table's.
pub fn shard_view(table: &TableSchema, shard: u32) -> std::borrow::Cow<'_, TableSchema> {
    match table.partition_of_shard(shard) {
        Some(partition) if !partition.settings.is_empty() => {
            let mut view = table.clone();
            view.settings = table.settings_of_shard(shard);
            std::borrow::Cow::Owned(view)
        }
        _ => std::borrow::Cow::Borrowed(table),
    }
}

/// The shards `total_shards_per_node` counts together with `shard`: its partition's, or all
/// of a table without partitions (`count` routing entries).
pub(super) fn group_of(table: &TableSchema, shard: u32, count: usize) -> std::ops::Range<usize> {
    match table.partition_of_shard(shard) {
        Some(partition) => {
            partition.first_shard as usize..(partition.shards().end as usize).min(count)
        }
        None => 0..count,
    }
}

/// How many copies of `shards[group]` each node holds.
pub(super) fn copies_on(
    shards: &[ShardRouting],
    group: std::ops::Range<usize>,
) -> HashMap<NodeId, usize> {
    let mut on: HashMap<NodeId, usize> = HashMap::new();
    for routing in shards.get(group).unwrap_or_default() {
        for copy in &routing.copies {
            *on.entry(copy.node.clone()).or_default() += 1;
        }
    }
    on
}

/// How many copies (primary included) shard `shard` of `table` should have.
pub fn wanted_copies_of_shard(state: &ClusterState, table: &TableSchema, shard: u32) -> usize {
    wanted_copies(state, &shard_view(table, shard))
}

/// How many copies (primary included) `table` should have with the nodes of `state`.
pub fn wanted_copies(state: &ClusterState, table: &TableSchema) -> usize {
    let eligible = match allocation_rules(table) {
        Ok(rules) => state
            .nodes
            .values()
            .filter(|n| usable(n) && rules.admits(&n.attributes))
            .count(),
        Err(_) => 0,
    };
    1 + wanted_replicas(table, eligible)
}

/// Checks that a table's allocation rules parse.
pub(super) fn check_rules(table: &TableSchema) -> Result<(), CodedError> {
    allocation_rules(table).map(|_| ())
}

/// Places every shard of a new table (see the module documentation).
pub(super) fn allocate_table(
    state: &mut ClusterState,
    table: &TableSchema,
) -> Result<Vec<ShardRouting>, CodedError> {
    allocate_shards(state, table, 0..table.num_shards as usize)
}

/// Places new shards `shards` of `table` (all of a new table's, or a new partition's with
/// `table` carrying the partition's settings).
pub(super) fn allocate_shards(
    state: &mut ClusterState,
    table: &TableSchema,
    shards_to_place: std::ops::Range<usize>,
) -> Result<Vec<ShardRouting>, CodedError> {
    let rules = allocation_rules(table)?;
    let nodes: Vec<NodeInfo> = state
        .nodes
        .values()
        .filter(|n| usable(n))
        .cloned()
        .collect();
    if nodes.is_empty() {
        return Err(refused(
            ErrorCode::Unavailable,
            "no data nodes are available",
        ));
    }
    let node_refs: Vec<&NodeInfo> = nodes.iter().collect();
    let by_id: HashMap<&NodeId, &NodeInfo> = nodes.iter().map(|n| (&n.id, n)).collect();
    let eligible = nodes.iter().filter(|n| rules.admits(&n.attributes)).count();
    if eligible == 0 {
        return Err(refused(
            ErrorCode::InvalidParameterValue,
            format!(
                "no live data node matches the allocation rules of {} ({})",
                table.name,
                rules.describe()
            ),
        ));
    }
    let awareness = awareness_attributes(state);
    let mut load = loads(state);
    let mut table_copies_on: HashMap<NodeId, usize> = HashMap::new();
    let replicas = wanted_replicas(table, eligible);
    // `total_shards_per_node` counts a partition's copies alone (as CrateDB counts an index's),
    // so a new partition's count starts empty like a new table's.
    let mut shards: Vec<ShardRouting> = Vec::with_capacity(shards_to_place.len());
    // Shard by shard, each copy on the least loaded admitted node: primaries and replicas
    // spread evenly together.
    for shard in shards_to_place {
        let mut routing = ShardRouting {
            primary_term: 1,
            copies: Vec::new(),
            in_sync: Vec::new(),
            failed_on: Vec::new(),
            dropped: false,
        };
        for copy in 0..=replicas {
            let Some(node) = best_node(
                &node_refs,
                &rules,
                &routing.copies,
                &table_copies_on,
                &load,
                &awareness,
                &by_id,
            ) else {
                if copy == 0 {
                    return Err(refused(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "cannot allocate shard {shard} of {}: {eligible} matching data node(s) \
                             already hold total_shards_per_node shards of it",
                            table.name
                        ),
                    ));
                }
                // Fewer nodes than copies: the rest stay unassigned (YELLOW).
                break;
            };
            let node_id = node.id.clone();
            *load.entry(node_id.clone()).or_default() += 1;
            *table_copies_on.entry(node_id.clone()).or_default() += 1;
            let allocation_id = next_allocation_id(state, table.id.0, shard);
            // Every copy starts initializing: the primary's node creates it empty and reports
            // it started; replicas then recover from it. The primary is in sync from the
            // start (it holds every write there is).
            routing.copies.push(ShardCopy {
                node: node_id,
                allocation_id: allocation_id.clone(),
                primary: copy == 0,
                state: CopyState::Initializing,
                replaces: None,
            });
            if copy == 0 {
                routing.in_sync.push(allocation_id);
            }
        }
        shards.push(routing);
    }
    // Every copy of a new shard is empty, so any may be its primary: spread the primaries
    // (they do the writes' ordering work) as evenly as the copies.
    let mut primaries: HashMap<NodeId, usize> = HashMap::new();
    for routing in state.routing.values().flatten() {
        if let Some(primary) = routing.primary() {
            *primaries.entry(primary.node.clone()).or_default() += 1;
        }
    }
    for routing in &mut shards {
        let Some(chosen) = routing
            .copies
            .iter()
            .min_by_key(|c| (primaries.get(&c.node).copied().unwrap_or(0), c.node.clone()))
            .map(|c| c.allocation_id.clone())
        else {
            continue;
        };
        for copy in &mut routing.copies {
            copy.primary = copy.allocation_id == chosen;
            if copy.primary {
                *primaries.entry(copy.node.clone()).or_default() += 1;
            }
        }
        routing.in_sync = vec![chosen];
    }
    Ok(shards)
}

/// Brings every shard's copies in line with the nodes and the tables' settings (see the
/// module documentation). Returns whether anything changed.
pub(super) fn reroute(state: &mut ClusterState) -> bool {
    let mut changed = false;
    let tables: Vec<TableSchema> = state.tables.values().cloned().collect();
    for table in &tables {
        changed |= fail_over_and_drop_gone(state, table);
    }
    // Placing copies can free a node for another copy (a surplus copy dropped, a primary
    // handed over): place until nothing changes, bounded.
    for _ in 0..MAX_PLACEMENT_ROUNDS {
        let mut placed = false;
        for table in &tables {
            placed |= place_copies(state, table);
        }
        changed |= placed;
        if !placed {
            break;
        }
    }
    if !changed {
        changed |= rebalance_one(state, &tables);
    }
    changed
}

/// Promotes replicas of primaries on gone nodes and drops replicas on gone nodes.
fn fail_over_and_drop_gone(state: &mut ClusterState, table: &TableSchema) -> bool {
    let alive: HashMap<NodeId, bool> = state
        .nodes
        .values()
        .map(|n| (n.id.clone(), n.alive))
        .collect();
    let is_alive = |node: &NodeId| alive.get(node).copied().unwrap_or(false);
    let Some(shards) = state.routing.get_mut(&table.id.0) else {
        return false;
    };
    let mut changed = false;
    for routing in shards.iter_mut() {
        let primary_gone = routing.primary().is_some_and(|p| !is_alive(&p.node));
        if primary_gone {
            if let Some(successor) = routing.successor(|c| is_alive(&c.node)) {
                let old = routing
                    .primary()
                    .map(|p| p.allocation_id.clone())
                    .expect("checked above");
                routing.copies.retain(|c| c.allocation_id != old);
                routing.in_sync.retain(|id| *id != old);
                routing.promote(&successor);
                changed = true;
            }
        }
        // Replicas on gone nodes can receive no writes: out of the group. A shard whose
        // primary is gone with no successor keeps everything (RED) until its node returns.
        if routing.primary().is_some_and(|p| is_alive(&p.node)) {
            let before = routing.copies.len();
            let gone: Vec<String> = routing
                .copies
                .iter()
                .filter(|c| !c.primary && !is_alive(&c.node))
                .map(|c| c.allocation_id.clone())
                .collect();
            routing.copies.retain(|c| !gone.contains(&c.allocation_id));
            routing.in_sync.retain(|id| !gone.contains(id));
            // A copy that was to replace a dropped one has nothing left to replace.
            for copy in &mut routing.copies {
                if copy.replaces.as_ref().is_some_and(|r| gone.contains(r)) {
                    copy.replaces = None;
                }
            }
            changed |= routing.copies.len() != before;
        }
    }
    changed
}

/// Adds missing replicas, drops surplus ones and replaces copies on nodes that may no longer
/// hold them: over all shards of a table, or partition by partition with each one's settings.
fn place_copies(state: &mut ClusterState, table: &TableSchema) -> bool {
    let shard_count = state.routing.get(&table.id.0).map_or(0, Vec::len);
    if !table.is_partitioned() {
        return place_copies_in(state, table, 0..shard_count);
    }
    let mut changed = false;
    for partition in &table.partitions {
        let view = shard_view(table, partition.first_shard);
        let range = partition.first_shard as usize..partition.shards().end as usize;
        changed |= place_copies_in(
            state,
            &view,
            range.start.min(shard_count)..range.end.min(shard_count),
        );
    }
    changed
}

fn place_copies_in(
    state: &mut ClusterState,
    table: &TableSchema,
    shards: std::ops::Range<usize>,
) -> bool {
    let Ok(rules) = allocation_rules(table) else {
        return false;
    };
    let nodes: Vec<NodeInfo> = state
        .nodes
        .values()
        .filter(|n| usable(n))
        .cloned()
        .collect();
    let node_refs: Vec<&NodeInfo> = nodes.iter().collect();
    let by_id_owned: HashMap<NodeId, NodeInfo> = state
        .nodes
        .values()
        .map(|n| (n.id.clone(), n.clone()))
        .collect();
    let by_id: HashMap<&NodeId, &NodeInfo> = by_id_owned.iter().collect();
    let eligible = nodes.iter().filter(|n| rules.admits(&n.attributes)).count();
    let wanted = 1 + wanted_replicas(table, eligible);
    let awareness = awareness_attributes(state);
    let mut load = loads(state);
    let mut recoveries = recoveries_per_node(state);
    let mut table_copies_on = state
        .routing
        .get(&table.id.0)
        .map(|all| copies_on(all, group_of(table, shards.start as u32, all.len())))
        .unwrap_or_default();
    let mut new_ids = Vec::new();
    let mut changed = false;
    for shard in shards {
        let routing = state.routing[&table.id.0][shard].clone();
        let Some(primary) = routing.primary() else {
            continue;
        };
        // Copies recover from a started primary on a live node; a RED shard waits for its
        // primary's node instead of placing copies that could never recover.
        let primary_alive = by_id.get(&primary.node).is_some_and(|n| n.alive);
        if primary.state != CopyState::Started || !primary_alive {
            continue;
        }
        let mut routing = routing.clone();
        let admitted = |copy: &ShardCopy| {
            by_id
                .get(&copy.node)
                .is_some_and(|node| usable(node) && rules.admits(&node.attributes))
        };
        // A primary on a node that may no longer hold it hands over to a started in-sync
        // replica on a node that may (under a new term), rather than be copied anew.
        if !admitted(primary) && primary.replaces.is_none() {
            if let Some(heir) = routing.successor(admitted) {
                routing.promote(&heir);
                changed = true;
            }
        }
        let replaced: Vec<String> = routing
            .copies
            .iter()
            .filter_map(|c| c.replaces.clone())
            .collect();
        // Copies on nodes that may no longer hold them get a replacement; replicas on a
        // node that stops keeping primaries available stay until it has left.
        let stopping = |copy: &ShardCopy| {
            by_id
                .get(&copy.node)
                .is_some_and(|n| n.stopping == Some(GracefulStop::Primaries))
        };
        let misplaced: Vec<String> = routing
            .copies
            .iter()
            .filter(|c| {
                !admitted(c) && !replaced.contains(&c.allocation_id) && (c.primary || !stopping(c))
            })
            .map(|c| c.allocation_id.clone())
            .collect();
        for allocation_id in misplaced {
            if let Some(node) = pick_recovery_target(
                &node_refs,
                &rules,
                &routing,
                &table_copies_on,
                &load,
                &awareness,
                &by_id,
                &recoveries,
            ) {
                let node_id = node.id.clone();
                add_initializing(
                    &mut routing,
                    &node_id,
                    Some(allocation_id),
                    &mut new_ids,
                    (table.id.0, shard),
                );
                note_recovery(&node_id, &mut load, &mut recoveries, &mut table_copies_on);
                changed = true;
            }
        }
        // Copies that count: not about to be replaced.
        let replaced: Vec<String> = routing
            .copies
            .iter()
            .filter_map(|c| c.replaces.clone())
            .collect();
        let counting = routing
            .copies
            .iter()
            .filter(|c| !replaced.contains(&c.allocation_id))
            .count();
        if counting < wanted {
            for _ in counting..wanted {
                let Some(node) = pick_recovery_target(
                    &node_refs,
                    &rules,
                    &routing,
                    &table_copies_on,
                    &load,
                    &awareness,
                    &by_id,
                    &recoveries,
                ) else {
                    break;
                };
                let node_id = node.id.clone();
                add_initializing(
                    &mut routing,
                    &node_id,
                    None,
                    &mut new_ids,
                    (table.id.0, shard),
                );
                note_recovery(&node_id, &mut load, &mut recoveries, &mut table_copies_on);
                changed = true;
            }
        } else if counting > wanted {
            // Surplus: initializing copies first, then started replicas on the busiest nodes.
            let mut surplus: Vec<&ShardCopy> = routing
                .copies
                .iter()
                .filter(|c| !c.primary && c.replaces.is_none())
                .collect();
            surplus.sort_by_key(|c| {
                (
                    admitted(c),
                    c.state == CopyState::Started,
                    std::cmp::Reverse(load.get(&c.node).copied().unwrap_or(0)),
                    c.allocation_id.clone(),
                )
            });
            let drop: Vec<String> = surplus
                .iter()
                .take(counting - wanted)
                .map(|c| c.allocation_id.clone())
                .collect();
            routing.copies.retain(|c| !drop.contains(&c.allocation_id));
            routing.in_sync.retain(|id| !drop.contains(id));
            changed |= !drop.is_empty();
        }
        state.routing.get_mut(&table.id.0).expect("exists")[shard] = routing;
    }
    // Allocation ids are handed out in order once the placement is decided.
    for (routing_key, placeholder) in new_ids {
        let (table_id, shard) = routing_key;
        let id = next_allocation_id(state, table_id, shard);
        let routing = &mut state.routing.get_mut(&table_id).expect("exists")[shard];
        for copy in &mut routing.copies {
            if copy.allocation_id == placeholder {
                copy.allocation_id.clone_from(&id);
            }
        }
    }
    changed
}

type RoutingKey = (u64, usize);

fn add_initializing(
    routing: &mut ShardRouting,
    node: &NodeId,
    replaces: Option<String>,
    new_ids: &mut Vec<(RoutingKey, String)>,
    key: RoutingKey,
) {
    // A placeholder id, replaced by the next allocation id in a second pass.
    let placeholder = format!("new:{}:{}", new_ids.len(), node);
    new_ids.push((key, placeholder.clone()));
    routing.copies.push(ShardCopy {
        node: node.clone(),
        allocation_id: placeholder,
        primary: false,
        state: CopyState::Initializing,
        replaces,
    });
}

fn note_recovery(
    node: &NodeId,
    load: &mut HashMap<NodeId, usize>,
    recoveries: &mut HashMap<NodeId, usize>,
    table_copies_on: &mut HashMap<NodeId, usize>,
) {
    *load.entry(node.clone()).or_default() += 1;
    *recoveries.entry(node.clone()).or_default() += 1;
    *table_copies_on.entry(node.clone()).or_default() += 1;
}

/// Initializing copies per target node.
fn recoveries_per_node(state: &ClusterState) -> HashMap<NodeId, usize> {
    let mut recoveries = HashMap::new();
    for shards in state.routing.values() {
        for routing in shards {
            for copy in &routing.copies {
                if copy.state == CopyState::Initializing {
                    *recoveries.entry(copy.node.clone()).or_default() += 1;
                }
            }
        }
    }
    recoveries
}

#[allow(clippy::too_many_arguments)]
fn pick_recovery_target<'a>(
    nodes: &'a [&'a NodeInfo],
    rules: &AllocationRules,
    routing: &ShardRouting,
    table_copies_on: &HashMap<NodeId, usize>,
    load: &HashMap<NodeId, usize>,
    awareness: &[String],
    by_id: &HashMap<&NodeId, &NodeInfo>,
    recoveries: &HashMap<NodeId, usize>,
) -> Option<&'a NodeInfo> {
    let free: Vec<&NodeInfo> = nodes
        .iter()
        .copied()
        .filter(|n| recoveries.get(&n.id).copied().unwrap_or(0) < MAX_RECOVERIES_PER_NODE)
        .collect();
    // Nodes where this shard's recovery has not failed come first; the others only when
    // nothing else can take the copy (their own back-off paces the retries).
    let untried: Vec<&NodeInfo> = free
        .iter()
        .copied()
        .filter(|n| !routing.failed_on.contains(&n.id))
        .collect();
    let pick = |candidates: &[&NodeInfo]| {
        best_node(
            candidates,
            rules,
            &routing.copies,
            table_copies_on,
            load,
            awareness,
            by_id,
        )
        .map(|n| n.id.clone())
    };
    let chosen = pick(&untried).or_else(|| pick(&free))?;
    nodes.iter().copied().find(|n| n.id == chosen)
}

/// Moves one copy from the most to the least loaded usable node when they differ by two or
/// more and nothing is recovering.
fn rebalance_one(state: &mut ClusterState, tables: &[TableSchema]) -> bool {
    if recoveries_per_node(state).values().any(|n| *n > 0) {
        return false;
    }
    let usable_nodes: Vec<NodeInfo> = state
        .nodes
        .values()
        .filter(|n| usable(n))
        .cloned()
        .collect();
    if usable_nodes.len() < 2 {
        return false;
    }
    let load = loads(state);
    let load_of = |node: &NodeId| load.get(node).copied().unwrap_or(0);
    let most = usable_nodes
        .iter()
        .max_by_key(|n| (load_of(&n.id), std::cmp::Reverse(n.id.clone())))
        .expect("two nodes")
        .id
        .clone();
    let by_id_owned: HashMap<NodeId, NodeInfo> = state
        .nodes
        .values()
        .map(|n| (n.id.clone(), n.clone()))
        .collect();
    let by_id: HashMap<&NodeId, &NodeInfo> = by_id_owned.iter().collect();
    let awareness = awareness_attributes(state);
    for table in tables {
        let Ok(rules) = allocation_rules(table) else {
            continue;
        };
        let Some(shards) = state.routing.get(&table.id.0) else {
            continue;
        };
        let mut group_counts: HashMap<usize, HashMap<NodeId, usize>> = HashMap::new();
        for (shard, routing) in shards.iter().enumerate() {
            let group = group_of(table, shard as u32, shards.len());
            let table_copies_on = group_counts
                .entry(group.start)
                .or_insert_with(|| copies_on(shards, group));
            let view = shard_view(table, shard as u32);
            let shard_rules;
            let rules = if matches!(view, std::borrow::Cow::Owned(_)) {
                let Ok(own) = allocation_rules(&view) else {
                    continue;
                };
                shard_rules = own;
                &shard_rules
            } else {
                &rules
            };
            // Replicas move first; a primary moves only if it is all the shard has.
            let candidate = routing
                .copies
                .iter()
                .filter(|c| c.node == most && c.state == CopyState::Started)
                .min_by_key(|c| (c.primary, c.allocation_id.clone()));
            let Some(candidate) = candidate else {
                continue;
            };
            let targets: Vec<&NodeInfo> = usable_nodes
                .iter()
                .filter(|n| load_of(&n.id) + 2 <= load_of(&most))
                .collect();
            let Some(target) = best_node(
                &targets,
                rules,
                &routing.copies,
                table_copies_on,
                &load,
                &awareness,
                &by_id,
            ) else {
                continue;
            };
            let target = target.id.clone();
            let replaces = candidate.allocation_id.clone();
            let mut new_ids = Vec::new();
            let mut updated = routing.clone();
            add_initializing(
                &mut updated,
                &target,
                Some(replaces),
                &mut new_ids,
                (table.id.0, shard),
            );
            let id = next_allocation_id(state, table.id.0, shard);
            for copy in &mut updated.copies {
                if copy.allocation_id.starts_with("new:") {
                    copy.allocation_id.clone_from(&id);
                }
            }
            state.routing.get_mut(&table.id.0).expect("exists")[shard] = updated;
            return true;
        }
    }
    false
}
