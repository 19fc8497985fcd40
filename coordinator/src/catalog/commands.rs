//! The changes cluster state can undergo, and how each one is applied.
//!
//! A [`Command`] is what the Raft log holds. [`apply`] is a pure function of the state and the
//! command, so every voter that applies the same log reaches the same state; that includes shard
//! allocation, which therefore lives here. Nothing in this module does I/O or reads a clock.

use std::collections::BTreeMap;

use creek_common::error::{CodedError, ErrorCode};
use creek_common::schema::{ColumnDef, IndexDef, TableSchema, ViewDef};
use creek_common::state::{qualified, ClusterState, GracefulStop, NodeInfo, NodeRole};
use creek_common::{NodeId, TableId};
use serde::{Deserialize, Serialize};

mod allocation;
mod index;
mod limits;
mod objects;
mod partitions;

pub use allocation::{
    explain_allocations, is_allocation_setting, parse_replicas, shard_view, wanted_copies,
    wanted_copies_of_shard, AllocationExplanation, AWARENESS_SETTING, DEFAULT_REPLICAS,
    REPLICAS_SETTING,
};
pub use index::{index_exists, relation_exists};
pub use limits::{
    parse_max_shards_per_node, DEFAULT_MAX_SHARDS_PER_NODE, MAX_SHARDS_PER_NODE_SETTING,
};

/// One change of cluster state, as stored in the Raft log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Names the cluster once, when it is first formed. `imported` carries a state written by
    /// an older single-node `creek dev` (its `state.json`), taken over as it was.
    Bootstrap {
        cluster_name: String,
        cluster_uuid: String,
        imported: Option<Box<ClusterState>>,
    },
    /// Sets the key that signs clients' Flight tickets to data nodes, once: the leader
    /// proposes it when the state has none (a new cluster, or one formed before tickets).
    SetTicketKey { key: creek_common::state::Secret },
    /// Creates a table; its id and shard placement are decided when the command is applied.
    CreateTable {
        table: TableSchema,
        if_not_exists: bool,
    },
    /// Adds a column to a table.
    AddColumn {
        schema: String,
        name: String,
        column: ColumnDef,
        if_not_exists: bool,
    },
    /// Drops a table (its shards are deleted by the data nodes once they see the new state).
    DropTable {
        schema: String,
        name: String,
        if_exists: bool,
    },
    /// Creates or replaces a view.
    CreateView { view: ViewDef, or_replace: bool },
    /// Drops a view.
    DropView {
        schema: String,
        name: String,
        if_exists: bool,
    },
    /// Defines an analyzer (`CREATE ANALYZER`).
    CreateAnalyzer {
        name: String,
        definition: Box<creek_common::fulltext::AnalyzerDef>,
    },
    /// Drops an analyzer; tables keep the copy of it they were created with.
    DropAnalyzer { name: String },
    /// Declares an index on a table's columns (`CREATE INDEX`).
    CreateIndex {
        schema: String,
        table: String,
        index: IndexDef,
        if_not_exists: bool,
    },
    /// Drops a declared index (`DROP INDEX`).
    DropIndex {
        schema: String,
        name: String,
        if_exists: bool,
    },
    /// Records a node joining (or re-joining with a new address or attributes).
    NodeJoined { node: NodeInfo },
    /// Marks a node alive or gone.
    NodeLiveness { node: NodeId, alive: bool },
    /// Sets (`Some`) or resets (`None`) table settings: replicas, allocation rules, ...
    SetTableSettings {
        schema: String,
        name: String,
        settings: BTreeMap<String, Option<String>>,
    },
    /// Sets (`Some`) or resets (`None`) cluster settings (`SET GLOBAL`).
    SetClusterSettings {
        settings: BTreeMap<String, Option<String>>,
    },
    /// Drains a data node: its copies move to other nodes, then it stops.
    Decommission { node: NodeId },
    /// A data node stops gracefully (SIGTERM): `full` drains it like `Decommission`,
    /// otherwise only its primaries move (see `NodeInfo::stopping`).
    GracefulStop { node: NodeId, full: bool },
    /// A graceful stop that timed out without `cluster.graceful_stop.force`: the node stays.
    CancelGracefulStop { node: NodeId },
    /// A copy finished recovering (reported by its node).
    ShardCopyStarted {
        table: u64,
        shard: u32,
        allocation_id: String,
        primary_term: u64,
    },
    /// A copy failed (reported by the primary that could not replicate to it, or by the
    /// copy's own node); under `primary_term`, which must be current.
    ShardCopyFailed {
        table: u64,
        shard: u32,
        allocation_id: String,
        primary_term: u64,
        reason: String,
    },
    /// Creates the partitions of a partitioned table for these values (one list of partition
    /// column values each, as key text) that do not exist yet.
    CreatePartitions {
        schema: String,
        name: String,
        values: Vec<Vec<Option<String>>>,
    },
    /// Merges widened object column types (new dynamic keys) into a table's definition.
    ExtendObjects {
        schema: String,
        name: String,
        columns: Vec<(String, creek_common::types::ColumnType)>,
    },
    /// Drops partitions of a table, by ident, with their rows.
    DropPartitions {
        schema: String,
        name: String,
        idents: Vec<String>,
    },
    /// Sets (`Some`) or resets (`None`) one partition's allocation settings.
    SetPartitionSettings {
        schema: String,
        name: String,
        ident: String,
        settings: BTreeMap<String, Option<String>>,
    },
}

/// The result of applying a [`Command`]: the state version after it, and whether it changed
/// anything (`false` for `IF NOT EXISTS` on an existing object) or why it was refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommandResponse {
    /// The state version once the command is applied.
    pub version: u64,
    /// `Ok(changed)` or the reason the command was refused (state unchanged).
    pub outcome: Result<bool, CodedError>,
}

fn refused(code: ErrorCode, message: impl Into<String>) -> CodedError {
    CodedError::new(code, message)
}

/// Applies `command` to `state`, then lets the allocator bring the copies in line with it
/// ([`allocation`]'s `reroute`). On `Ok(true)` the caller bumps the version; on `Ok(false)` or
/// an error, `state` must be discarded by the caller (it may be partly changed).
pub fn apply(state: &mut ClusterState, command: &Command) -> Result<bool, CodedError> {
    let changed = apply_command(state, command)?;
    let rerouted = allocation::reroute(state);
    Ok(changed || rerouted)
}

fn apply_command(state: &mut ClusterState, command: &Command) -> Result<bool, CodedError> {
    match command {
        Command::Bootstrap {
            cluster_name,
            cluster_uuid,
            imported,
        } => {
            if !state.cluster_uuid.is_empty() {
                return Ok(false);
            }
            if let Some(imported) = imported {
                *state = (**imported).clone();
            }
            state.cluster_name = cluster_name.clone();
            state.cluster_uuid = cluster_uuid.clone();
            state.next_table_id = state.next_table_id.max(1);
            Ok(true)
        }
        Command::SetTicketKey { key } => {
            // Once only: replacing it would void the tickets of running queries, and two
            // leaders racing to set one must agree on the first.
            if !state.ticket_key.is_empty() {
                return Ok(false);
            }
            state.ticket_key = key.clone();
            Ok(true)
        }
        Command::CreateTable {
            table,
            if_not_exists,
        } => create_table(state, table, *if_not_exists),
        Command::AddColumn {
            schema,
            name,
            column,
            if_not_exists,
        } => {
            let key = qualified(schema, name);
            let table = state.tables.get_mut(&key).ok_or_else(|| {
                refused(
                    ErrorCode::UndefinedTable,
                    format!("relation \"{key}\" does not exist"),
                )
            })?;
            if table.column(&column.name).is_some() {
                if *if_not_exists {
                    return Ok(false);
                }
                return Err(refused(
                    ErrorCode::DuplicateObject,
                    format!(
                        "column \"{}\" of relation \"{}\" already exists",
                        column.name, table.name
                    ),
                ));
            }
            table.columns.push(column.clone());
            table.version += 1;
            table.validate()?;
            Ok(true)
        }
        Command::DropTable {
            schema,
            name,
            if_exists,
        } => {
            let key = qualified(schema, name);
            let Some(table) = state.tables.get(&key) else {
                if *if_exists {
                    return Ok(false);
                }
                return Err(refused(
                    ErrorCode::UndefinedTable,
                    format!("relation \"{key}\" does not exist"),
                ));
            };
            let target = (schema.clone(), name.clone());
            if let Some(view) = state
                .views
                .values()
                .find(|view| crate::plan::views::view_dependencies(view).contains(&target))
            {
                return Err(refused(
                    ErrorCode::DependentObjectsStillExist,
                    format!(
                        "cannot drop table {key} because view {}.{} depends on it",
                        view.schema_name, view.name
                    ),
                ));
            }
            let id = table.id;
            state.tables.remove(&key);
            state.routing.remove(&id.0);
            Ok(true)
        }
        Command::CreateView { view, or_replace } => {
            let key = qualified(&view.schema_name, &view.name);
            if state.tables.contains_key(&key)
                || index_exists(state, &view.schema_name, &view.name)
                || (state.views.contains_key(&key) && !or_replace)
            {
                return Err(refused(
                    ErrorCode::DuplicateObject,
                    format!("relation {key} already exists"),
                ));
            }
            state.views.insert(key, view.clone());
            Ok(true)
        }
        Command::DropView {
            schema,
            name,
            if_exists,
        } => {
            let key = qualified(schema, name);
            if state.views.remove(&key).is_none() {
                if *if_exists {
                    return Ok(false);
                }
                return Err(refused(
                    ErrorCode::UndefinedTable,
                    format!("view \"{key}\" does not exist"),
                ));
            }
            Ok(true)
        }
        Command::CreateAnalyzer { name, definition } => {
            if creek_common::fulltext::builtin_analyzer(name).is_some()
                || state.analyzers.contains_key(name)
            {
                return Err(refused(
                    ErrorCode::DuplicateObject,
                    format!("analyzer {name} already exists"),
                ));
            }
            state
                .analyzers
                .insert(name.clone(), definition.as_ref().clone());
            Ok(true)
        }
        Command::DropAnalyzer { name } => {
            if state.analyzers.remove(name).is_none() {
                return Err(refused(
                    ErrorCode::UndefinedObject,
                    format!("analyzer {name} does not exist"),
                ));
            }
            Ok(true)
        }
        Command::CreateIndex {
            schema,
            table,
            index,
            if_not_exists,
        } => index::create_index(state, schema, table, index, *if_not_exists),
        Command::DropIndex {
            schema,
            name,
            if_exists,
        } => index::drop_index(state, schema, name, *if_exists),
        Command::NodeJoined { node } => {
            // A node that re-joins stays decommissioned: the drain goes on.
            let mut node = node.clone();
            node.decommissioned = state
                .nodes
                .get(&node.id)
                .is_some_and(|existing| existing.decommissioned);
            let node = &node;
            if state.nodes.get(&node.id) == Some(node) {
                return Ok(false);
            }
            if let Some(existing) = state.nodes.get(&node.id) {
                if existing.role != node.role {
                    return Err(refused(
                        ErrorCode::InvalidParameterValue,
                        format!(
                            "node id {} is taken by a {} node",
                            node.id,
                            existing.role.as_str()
                        ),
                    ));
                }
            }
            state.nodes.insert(node.id.clone(), node.clone());
            Ok(true)
        }
        Command::NodeLiveness { node, alive } => match state.nodes.get_mut(node) {
            Some(info) if info.alive != *alive => {
                info.alive = *alive;
                Ok(true)
            }
            _ => Ok(false),
        },
        Command::SetTableSettings {
            schema,
            name,
            settings,
        } => set_table_settings(state, schema, name, settings),
        Command::SetClusterSettings { settings } => {
            let mut changed = false;
            for (key, value) in settings {
                changed |= match value {
                    Some(value) => {
                        state.settings.insert(key.clone(), value.clone()).as_ref() != Some(value)
                    }
                    None => state.settings.remove(key).is_some(),
                };
            }
            Ok(changed)
        }
        Command::GracefulStop { node, full } => match state.nodes.get_mut(node) {
            Some(info) if info.role == NodeRole::Data => {
                let mode = if *full {
                    GracefulStop::Full
                } else {
                    GracefulStop::Primaries
                };
                let changed = info.stopping != Some(mode);
                info.stopping = Some(mode);
                Ok(changed)
            }
            _ => Err(refused(
                ErrorCode::UndefinedObject,
                format!("{node} is not a data node of the cluster"),
            )),
        },
        Command::CancelGracefulStop { node } => match state.nodes.get_mut(node) {
            Some(info) => Ok(info.stopping.take().is_some()),
            None => Ok(false),
        },
        Command::Decommission { node } => match state.nodes.get_mut(node) {
            Some(info) if info.role == NodeRole::Data => {
                let changed = !info.decommissioned;
                info.decommissioned = true;
                Ok(changed)
            }
            Some(_) => Err(refused(
                ErrorCode::InvalidParameterValue,
                format!("{node} is not a data node"),
            )),
            None => Err(refused(
                ErrorCode::UndefinedObject,
                format!("node {node} is not in the cluster"),
            )),
        },
        Command::ShardCopyStarted {
            table,
            shard,
            allocation_id,
            primary_term,
        } => allocation::copy_started(state, *table, *shard, allocation_id, *primary_term),
        Command::ShardCopyFailed {
            table,
            shard,
            allocation_id,
            primary_term,
            ..
        } => allocation::copy_failed(state, *table, *shard, allocation_id, *primary_term),
        Command::CreatePartitions {
            schema,
            name,
            values,
        } => partitions::create_partitions(state, schema, name, values),
        Command::DropPartitions {
            schema,
            name,
            idents,
        } => partitions::drop_partitions(state, schema, name, idents),
        Command::ExtendObjects {
            schema,
            name,
            columns,
        } => objects::extend_objects(state, schema, name, columns),
        Command::SetPartitionSettings {
            schema,
            name,
            ident,
            settings,
        } => partitions::set_partition_settings(state, schema, name, ident, settings),
    }
}

/// `ALTER TABLE ... SET (...)` / `RESET (...)`: replicas and allocation rules, checked before
/// they are stored (reroute then moves and adds copies).
fn set_table_settings(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    settings: &BTreeMap<String, Option<String>>,
) -> Result<bool, CodedError> {
    let key = qualified(schema, name);
    let table = state.tables.get_mut(&key).ok_or_else(|| {
        refused(
            ErrorCode::UndefinedTable,
            format!("relation \"{key}\" does not exist"),
        )
    })?;
    let mut changed = false;
    for (setting, value) in settings {
        if setting == REPLICAS_SETTING {
            if let Some(value) = value {
                parse_replicas(value)?;
            }
        } else if !is_allocation_setting(setting)
            && !matches!(
                setting.as_str(),
                "refresh_interval"
                    | "translog.durability"
                    | creek_common::schema::TRANSLOG_FLUSH_THRESHOLD
                    | "write.wait_for_active_shards"
            )
        {
            return Err(refused(
                ErrorCode::InvalidParameterValue,
                format!("setting {setting} cannot be changed on an existing table"),
            ));
        }
        changed |= match value {
            Some(value) => {
                table
                    .settings
                    .insert(setting.clone(), value.clone())
                    .as_ref()
                    != Some(value)
            }
            None => table.settings.remove(setting).is_some(),
        };
    }
    if changed {
        table.version += 1;
        // Rules that admit no node at all are refused rather than strand every copy.
        allocation::check_rules(table)?;
    }
    Ok(changed)
}

fn create_table(
    state: &mut ClusterState,
    table: &TableSchema,
    if_not_exists: bool,
) -> Result<bool, CodedError> {
    let key = qualified(&table.schema_name, &table.name);
    if relation_exists(state, &table.schema_name, &table.name) {
        if if_not_exists {
            return Ok(false);
        }
        return Err(refused(
            ErrorCode::DuplicateObject,
            format!("relation {key} already exists"),
        ));
    }
    let mut table = table.clone();
    table.id = TableId(state.next_table_id.max(1));
    table.version = 1;
    table.partitions.clear();
    table.validate()?;
    // A partitioned table's shards come with its partitions, as rows arrive.
    let routing = if table.is_partitioned() {
        allocation::check_rules(&table)?;
        Vec::new()
    } else {
        let routing = allocation::allocate_table(state, &table)?;
        limits::check_shard_limit(
            state,
            table.num_shards as usize * wanted_copies(state, &table),
        )?;
        routing
    };
    state.next_table_id = table.id.0 + 1;
    state.routing.insert(table.id.0, routing);
    state.tables.insert(key, table);
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::state::{CopyState, ShardRouting};
    use creek_common::types::ColumnType;

    fn node(id: &str, attrs: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            flight_address: None,
            id: NodeId(id.into()),
            role: NodeRole::Data,
            address: format!("{id}:1"),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            voter: false,
            alive: true,
            decommissioned: false,
            stopping: None,
        }
    }

    fn table(name: &str, shards: u32, settings: &[(&str, &str)]) -> TableSchema {
        TableSchema {
            id: TableId(0),
            schema_name: "doc".into(),
            name: name.into(),
            columns: vec![ColumnDef {
                name: "a".into(),
                column_type: ColumnType::Integer,
                not_null: false,
                default_expr: None,
                generated: None,
                index: Default::default(),
            }],
            primary_key: vec![],
            clustered_by: None,
            num_shards: shards,
            // No replicas unless a test asks: these tests are about primaries' placement.
            settings: std::iter::once(("number_of_replicas", "0"))
                .chain(settings.iter().copied())
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 0,
        }
    }

    fn cluster(nodes: &[NodeInfo]) -> ClusterState {
        let mut state = ClusterState {
            next_table_id: 1,
            ..ClusterState::default()
        };
        for n in nodes {
            apply(&mut state, &Command::NodeJoined { node: n.clone() }).unwrap();
        }
        state
    }

    fn create(state: &mut ClusterState, t: TableSchema) -> Result<Vec<String>, CodedError> {
        let key = qualified(&t.schema_name, &t.name);
        apply(
            state,
            &Command::CreateTable {
                table: t,
                if_not_exists: false,
            },
        )?;
        // The nodes create the new copies and report them started.
        finish_recoveries(state);
        let id = state.tables[&key].id.0;
        Ok(state.routing[&id]
            .iter()
            .map(|routing| routing.primary().expect("a primary").node.0.clone())
            .collect())
    }

    fn routing_of<'a>(state: &'a ClusterState, name: &str) -> &'a Vec<ShardRouting> {
        let id = state.tables[&qualified("doc", name)].id.0;
        &state.routing[&id]
    }

    fn kill(state: &mut ClusterState, node: &str) {
        apply(
            state,
            &Command::NodeLiveness {
                node: NodeId(node.into()),
                alive: false,
            },
        )
        .unwrap();
    }

    /// Reports every initializing copy as recovered, as their nodes would.
    fn finish_recoveries(state: &mut ClusterState) {
        loop {
            let pending: Vec<(u64, u32, String, u64)> = state
                .routing
                .iter()
                .flat_map(|(table, shards)| {
                    shards.iter().enumerate().flat_map(move |(shard, routing)| {
                        routing
                            .copies
                            .iter()
                            .filter(|c| c.state == CopyState::Initializing)
                            .map(move |c| {
                                (
                                    *table,
                                    shard as u32,
                                    c.allocation_id.clone(),
                                    routing.primary_term,
                                )
                            })
                    })
                })
                .collect();
            if pending.is_empty() {
                return;
            }
            for (table, shard, allocation_id, primary_term) in pending {
                apply(
                    state,
                    &Command::ShardCopyStarted {
                        table,
                        shard,
                        allocation_id,
                        primary_term,
                    },
                )
                .unwrap();
            }
        }
    }

    #[test]
    fn ticket_key_is_set_once() {
        use creek_common::state::Secret;
        let mut state = cluster(&[]);
        let first = Command::SetTicketKey {
            key: Secret::new("aa".repeat(32)),
        };
        assert!(apply(&mut state, &first).unwrap());
        // A second proposal (another leader racing) changes nothing: running queries' tickets
        // stay good.
        let second = Command::SetTicketKey {
            key: Secret::new("bb".repeat(32)),
        };
        assert!(!apply(&mut state, &second).unwrap());
        assert_eq!(state.ticket_key.expose(), "aa".repeat(32));
        assert_eq!(format!("{:?}", state.ticket_key), "Secret(***)");
    }

    #[test]
    fn replicas_fail_over_and_are_rebuilt() {
        let mut state = cluster(&[node("d1", &[]), node("d2", &[]), node("d3", &[])]);
        create(&mut state, table("r", 3, &[("number_of_replicas", "1")])).unwrap();
        for routing in routing_of(&state, "r") {
            assert_eq!(routing.copies.len(), 2);
            assert_ne!(routing.copies[0].node, routing.copies[1].node);
            assert_eq!(routing.in_sync.len(), 2);
        }
        // d1 dies: its primaries pass to their replicas under a new term, and each shard
        // that lost a copy gets a new replica on the remaining node.
        kill(&mut state, "d1");
        for routing in routing_of(&state, "r") {
            let primary = routing.primary().expect("a primary");
            assert_ne!(primary.node.0, "d1");
            assert!(routing.copies.iter().all(|c| c.node.0 != "d1"));
            assert_eq!(routing.copies.len(), 2, "{routing:?}");
        }
        let promoted = routing_of(&state, "r")
            .iter()
            .filter(|r| r.primary_term == 2)
            .count();
        assert!(promoted >= 1);
        finish_recoveries(&mut state);
        for routing in routing_of(&state, "r") {
            assert!(routing.copies.iter().all(|c| c.state == CopyState::Started));
            assert_eq!(routing.in_sync.len(), 2);
        }
        // A stale primary term cannot fail a copy.
        let routing = routing_of(&state, "r")[0].clone();
        let table_id = state.tables[&qualified("doc", "r")].id.0;
        let stale = apply(
            &mut state,
            &Command::ShardCopyFailed {
                table: table_id,
                shard: 0,
                allocation_id: routing.copies[0].allocation_id.clone(),
                primary_term: routing.primary_term - 1,
                reason: "test".into(),
            },
        );
        if routing.primary_term > 1 {
            assert!(stale.is_err());
        }
    }

    #[test]
    fn replica_ranges_follow_the_nodes_and_copies_spread_over_zones() {
        let mut state = cluster(&[
            node("d1", &[("zone", "a")]),
            node("d2", &[("zone", "a")]),
            node("d3", &[("zone", "b")]),
        ]);
        apply(
            &mut state,
            &Command::SetClusterSettings {
                settings: [(AWARENESS_SETTING.to_string(), Some("zone".to_string()))].into(),
            },
        )
        .unwrap();
        create(&mut state, table("z", 2, &[("number_of_replicas", "0-1")])).unwrap();
        let zone = |node: &NodeId| if node.0 == "d3" { "b" } else { "a" };
        for routing in routing_of(&state, "z") {
            assert_eq!(routing.copies.len(), 2);
            assert_ne!(zone(&routing.copies[0].node), zone(&routing.copies[1].node));
        }
        let mut single = cluster(&[node("d1", &[])]);
        create(&mut single, table("s", 2, &[("number_of_replicas", "0-1")])).unwrap();
        assert!(routing_of(&single, "s").iter().all(|r| r.copies.len() == 1));
    }

    #[test]
    fn decommission_and_rules_move_copies() {
        let mut state = cluster(&[
            node("d1", &[("tier", "hot")]),
            node("d2", &[("tier", "hot")]),
            node("d3", &[("tier", "cold")]),
        ]);
        create(&mut state, table("m", 2, &[])).unwrap();
        apply(
            &mut state,
            &Command::SetTableSettings {
                schema: "doc".into(),
                name: "m".into(),
                settings: [(
                    "routing.allocation.require.tier".to_string(),
                    Some("cold".to_string()),
                )]
                .into(),
            },
        )
        .unwrap();
        finish_recoveries(&mut state);
        for routing in routing_of(&state, "m") {
            assert_eq!(routing.copies.len(), 1);
            assert_eq!(routing.copies[0].node.0, "d3");
            assert!(routing.copies[0].primary);
        }
        apply(
            &mut state,
            &Command::SetTableSettings {
                schema: "doc".into(),
                name: "m".into(),
                settings: [("routing.allocation.require.tier".to_string(), None)].into(),
            },
        )
        .unwrap();
        apply(
            &mut state,
            &Command::Decommission {
                node: NodeId("d3".into()),
            },
        )
        .unwrap();
        finish_recoveries(&mut state);
        assert!(routing_of(&state, "m")
            .iter()
            .all(|r| r.copies.iter().all(|c| c.node.0 != "d3")));
    }

    #[test]
    fn a_graceful_stop_hands_over_primaries_and_keeps_replicas() {
        let mut state = cluster(&[node("d1", &[]), node("d2", &[]), node("d3", &[])]);
        create(&mut state, table("g", 6, &[("number_of_replicas", "1")])).unwrap();
        let d1 = NodeId("d1".into());
        let held_before = routing_of(&state, "g")
            .iter()
            .filter(|r| r.copy_on(&d1).is_some())
            .count();
        apply(
            &mut state,
            &Command::GracefulStop {
                node: d1.clone(),
                full: false,
            },
        )
        .unwrap();
        finish_recoveries(&mut state);
        for routing in routing_of(&state, "g") {
            let primary = routing.primary().unwrap();
            assert_ne!(primary.node, d1, "a stopping node keeps no primary");
            assert_eq!(primary.state, CopyState::Started);
            assert_eq!(routing.copies.len(), 2, "no extra copy while d1 is there");
        }
        let held_after = routing_of(&state, "g")
            .iter()
            .filter(|r| r.copy_on(&d1).is_some())
            .count();
        assert_eq!(held_before, held_after, "its replicas stay until it leaves");
        apply(
            &mut state,
            &Command::CancelGracefulStop { node: d1.clone() },
        )
        .unwrap();
        assert!(state.nodes[&d1].stopping.is_none());
        apply(
            &mut state,
            &Command::GracefulStop {
                node: d1,
                full: true,
            },
        )
        .unwrap();
        finish_recoveries(&mut state);
        assert!(routing_of(&state, "g")
            .iter()
            .all(|r| r.copies.iter().all(|c| c.node.0 != "d1")));
    }

    #[test]
    fn a_new_node_gets_copies_moved_to_it() {
        let mut state = cluster(&[node("d1", &[])]);
        create(&mut state, table("b", 4, &[])).unwrap();
        apply(
            &mut state,
            &Command::NodeJoined {
                node: node("d2", &[]),
            },
        )
        .unwrap();
        finish_recoveries(&mut state);
        let on_d2 = routing_of(&state, "b")
            .iter()
            .filter(|r| r.copies.iter().any(|c| c.node.0 == "d2"))
            .count();
        assert_eq!(on_d2, 2);
    }

    #[test]
    fn balances_by_shard_count_across_tables() {
        let mut state = cluster(&[node("d1", &[]), node("d2", &[]), node("d3", &[])]);
        assert_eq!(
            create(&mut state, table("a", 4, &[])).unwrap(),
            ["d1", "d2", "d3", "d1"]
        );
        // d1 holds two already, so the next table starts on d2.
        assert_eq!(
            create(&mut state, table("b", 2, &[])).unwrap(),
            ["d2", "d3"]
        );
    }

    #[test]
    fn honours_require_include_exclude_and_limits() {
        let nodes = [
            node("d1", &[("tier", "hot"), ("zone", "a")]),
            node("d2", &[("tier", "hot"), ("zone", "b")]),
            node("d3", &[("tier", "cold"), ("zone", "a")]),
        ];
        let mut state = cluster(&nodes);
        let cold = create(
            &mut state,
            table("c", 3, &[("routing.allocation.require.tier", "cold")]),
        )
        .unwrap();
        assert_eq!(cold, ["d3", "d3", "d3"]);
        let excluded = create(
            &mut state,
            table("e", 2, &[("routing.allocation.exclude.zone", "a")]),
        )
        .unwrap();
        assert_eq!(excluded, ["d2", "d2"]);
        let included = create(
            &mut state,
            table("i", 2, &[("routing.allocation.include.zone", "a,c")]),
        )
        .unwrap();
        assert_eq!(included, ["d1", "d1"]);
        let limited = create(
            &mut state,
            table(
                "l",
                3,
                &[
                    ("routing.allocation.require.tier", "hot"),
                    ("routing.allocation.total_shards_per_node", "1"),
                ],
            ),
        );
        let error = limited.unwrap_err();
        assert!(error.message.contains("total_shards_per_node"), "{error}");
        let none = create(
            &mut state,
            table("n", 1, &[("routing.allocation.require.tier", "warm")]),
        )
        .unwrap_err();
        assert!(none.message.contains("require.tier=warm"), "{none}");
    }

    #[test]
    fn skips_gone_nodes_and_refuses_without_data_nodes() {
        let mut state = cluster(&[node("d1", &[]), node("d2", &[])]);
        apply(
            &mut state,
            &Command::NodeLiveness {
                node: NodeId("d1".into()),
                alive: false,
            },
        )
        .unwrap();
        assert_eq!(
            create(&mut state, table("a", 2, &[])).unwrap(),
            ["d2", "d2"]
        );
        let mut empty = cluster(&[]);
        assert_eq!(
            create(&mut empty, table("a", 1, &[])).unwrap_err().code,
            ErrorCode::Unavailable
        );
    }
}
