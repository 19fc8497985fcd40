//! The changes cluster state can undergo, and how each one is applied.
//!
//! A [`Command`] is what the Raft log holds. [`apply`] is a pure function of the state and the
//! command, so every voter that applies the same log reaches the same state; that includes shard
//! allocation, which therefore lives here. Nothing in this module does I/O or reads a clock.

use std::collections::{BTreeMap, HashMap};

use creek_common::error::{CodedError, ErrorCode};
use creek_common::schema::{ColumnDef, IndexDef, TableSchema, ViewDef};
use creek_common::state::{qualified, ClusterState, NodeInfo, NodeRole};
use creek_common::{NodeId, TableId};
use serde::{Deserialize, Serialize};

mod index;

pub use index::{index_exists, relation_exists};

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

/// Applies `command` to `state`. On `Ok(true)` the caller bumps the version; on `Ok(false)` or
/// an error, `state` must be discarded by the caller (it may be partly changed).
pub fn apply(state: &mut ClusterState, command: &Command) -> Result<bool, CodedError> {
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
    }
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
    table.validate()?;
    let routing = allocate(state, &table)?;
    state.next_table_id = table.id.0 + 1;
    state.routing.insert(table.id.0, routing);
    state.tables.insert(key, table);
    Ok(true)
}

/// The allocation filters a table's settings ask for.
#[derive(Debug, Default)]
struct AllocationRules {
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

fn allocation_rules(table: &TableSchema) -> Result<AllocationRules, CodedError> {
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

/// Places each shard of `table` on the live data node the table's allocation rules admit that
/// holds the fewest shards (ties broken by node id), never exceeding `total_shards_per_node`.
fn allocate(state: &ClusterState, table: &TableSchema) -> Result<Vec<NodeId>, CodedError> {
    let rules = allocation_rules(table)?;
    let data_nodes: Vec<&NodeInfo> = state
        .nodes
        .values()
        .filter(|n| n.role == NodeRole::Data && n.alive)
        .collect();
    if data_nodes.is_empty() {
        return Err(refused(
            ErrorCode::Unavailable,
            "no data nodes are available",
        ));
    }
    let candidates: Vec<&NodeId> = data_nodes
        .iter()
        .filter(|n| rules.admits(&n.attributes))
        .map(|n| &n.id)
        .collect();
    if candidates.is_empty() {
        return Err(refused(
            ErrorCode::InvalidParameterValue,
            format!(
                "no live data node matches the allocation rules of {} ({})",
                table.name,
                rules.describe()
            ),
        ));
    }
    let mut load: HashMap<&NodeId, usize> = candidates.iter().map(|n| (*n, 0)).collect();
    for routing in state.routing.values() {
        for node in routing {
            if let Some(count) = load.get_mut(node) {
                *count += 1;
            }
        }
    }
    let mut own: HashMap<&NodeId, usize> = HashMap::new();
    let mut routing = Vec::with_capacity(table.num_shards as usize);
    for shard in 0..table.num_shards {
        let node = candidates
            .iter()
            .copied()
            .filter(|n| {
                rules
                    .total_shards_per_node
                    .is_none_or(|limit| own.get(n).copied().unwrap_or(0) < limit)
            })
            .min_by_key(|n| (load[*n], *n))
            .ok_or_else(|| {
                refused(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "cannot allocate shard {shard} of {}: {} matching data node(s) \
                         already hold total_shards_per_node shards of it",
                        table.name,
                        candidates.len()
                    ),
                )
            })?;
        *load.get_mut(node).expect("candidate has a load") += 1;
        *own.entry(node).or_default() += 1;
        routing.push(node.clone());
    }
    Ok(routing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::types::ColumnType;

    fn node(id: &str, attrs: &[(&str, &str)]) -> NodeInfo {
        NodeInfo {
            id: NodeId(id.into()),
            role: NodeRole::Data,
            address: format!("{id}:1"),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            voter: false,
            alive: true,
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
            }],
            primary_key: vec![],
            clustered_by: None,
            num_shards: shards,
            settings: settings
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            indexes: Vec::new(),
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
        let id = state.tables[&key].id.0;
        Ok(state.routing[&id].iter().map(|n| n.0.clone()).collect())
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
