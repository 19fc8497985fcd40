//! Applying the partition commands: a partition is created with its shards placed, dropped
//! by retiring its shard range (tombstones, so numbers are never reused), and given settings
//! of its own. Pure functions of the state, like every command.

use std::collections::BTreeMap;

use creek_common::error::{CodedError, ErrorCode};
use creek_common::partition::{partition_ident, PartitionDef};
use creek_common::schema::TableSchema;
use creek_common::state::{qualified, ClusterState, ShardRouting};

use super::allocation::{self, is_allocation_setting, parse_replicas, REPLICAS_SETTING};
use super::refused;

fn partitioned_table<'a>(
    state: &'a mut ClusterState,
    schema: &str,
    name: &str,
) -> Result<&'a mut TableSchema, CodedError> {
    let key = qualified(schema, name);
    let table = state.tables.get_mut(&key).ok_or_else(|| {
        refused(
            ErrorCode::UndefinedTable,
            format!("relation \"{key}\" does not exist"),
        )
    })?;
    if !table.is_partitioned() {
        return Err(refused(
            ErrorCode::InvalidParameterValue,
            format!("table {key} is not partitioned"),
        ));
    }
    Ok(table)
}

/// Creates the partitions of `values` that do not exist yet, each with the table's current
/// shard count and its shards placed like a new table's.
pub(super) fn create_partitions(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    values: &[Vec<Option<String>>],
) -> Result<bool, CodedError> {
    let mut table = partitioned_table(state, schema, name)?.clone();
    let mut changed = false;
    for values in values {
        if values.len() != table.partitioned_by.len() {
            return Err(refused(
                ErrorCode::InvalidParameterValue,
                format!(
                    "{} partition values given for {} partition columns",
                    values.len(),
                    table.partitioned_by.len()
                ),
            ));
        }
        if table.partition_of_values(values).is_some() {
            continue;
        }
        let first_shard = state.routing.get(&table.id.0).map_or(0, Vec::len);
        let end = first_shard + table.num_shards as usize;
        if end > u32::MAX as usize {
            return Err(refused(
                ErrorCode::ProgramLimitExceeded,
                format!("table {name} has too many shards for another partition"),
            ));
        }
        let shards = allocation::allocate_shards(state, &table, first_shard..end)?;
        let copies = table.num_shards as usize * allocation::wanted_copies(state, &table);
        super::limits::check_shard_limit(state, copies)?;
        state.routing.entry(table.id.0).or_default().extend(shards);
        table.partitions.push(PartitionDef {
            ident: partition_ident(values),
            values: values.clone(),
            first_shard: first_shard as u32,
            num_shards: table.num_shards,
            settings: BTreeMap::new(),
        });
        changed = true;
    }
    if changed {
        table.version += 1;
        table.validate()?;
        state.tables.insert(qualified(schema, name), table);
    }
    Ok(changed)
}

/// Drops the partitions named by `idents` (those that still exist): their rows go with their
/// shards, which the nodes delete.
pub(super) fn drop_partitions(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    idents: &[String],
) -> Result<bool, CodedError> {
    let table = partitioned_table(state, schema, name)?;
    let dropped: Vec<PartitionDef> = table
        .partitions
        .iter()
        .filter(|p| idents.contains(&p.ident))
        .cloned()
        .collect();
    if dropped.is_empty() {
        return Ok(false);
    }
    table.partitions.retain(|p| !idents.contains(&p.ident));
    table.version += 1;
    let id = table.id.0;
    if let Some(routing) = state.routing.get_mut(&id) {
        for partition in &dropped {
            for shard in partition.shards() {
                if let Some(entry) = routing.get_mut(shard as usize) {
                    *entry = ShardRouting {
                        primary_term: entry.primary_term,
                        copies: Vec::new(),
                        in_sync: Vec::new(),
                        failed_on: Vec::new(),
                        dropped: true,
                    };
                }
            }
        }
    }
    Ok(true)
}

/// `ALTER TABLE t PARTITION (..) SET (..)`: allocation settings (replicas, allocation rules)
/// of one partition, which the allocator applies to its shards instead of the table's.
pub(super) fn set_partition_settings(
    state: &mut ClusterState,
    schema: &str,
    name: &str,
    ident: &str,
    settings: &BTreeMap<String, Option<String>>,
) -> Result<bool, CodedError> {
    let table = partitioned_table(state, schema, name)?;
    let Some(index) = table.partitions.iter().position(|p| p.ident == ident) else {
        return Err(refused(
            ErrorCode::UndefinedObject,
            format!("no partition {ident} in table {name}"),
        ));
    };
    for (setting, value) in settings {
        if setting == REPLICAS_SETTING {
            if let Some(value) = value {
                parse_replicas(value)?;
            }
        } else if !is_allocation_setting(setting) {
            return Err(refused(
                ErrorCode::InvalidParameterValue,
                format!(
                    "setting {setting} cannot be set for one partition (only \
                     number_of_replicas and routing.allocation.*)"
                ),
            ));
        }
    }
    let partition = &mut table.partitions[index];
    let before = partition.settings.clone();
    for (setting, value) in settings {
        match value {
            Some(value) => partition.settings.insert(setting.clone(), value.clone()),
            None => partition.settings.remove(setting),
        };
    }
    if partition.settings == before {
        return Ok(false);
    }
    table.version += 1;
    let view = allocation::shard_view(table, table.partitions[index].first_shard);
    allocation::check_rules(&view)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use creek_common::schema::ColumnDef;
    use creek_common::state::{CopyState, NodeInfo, NodeRole};
    use creek_common::types::ColumnType;
    use creek_common::{NodeId, TableId};

    use super::super::{apply, Command};
    use super::*;

    fn node(id: &str, tier: &str) -> NodeInfo {
        NodeInfo {
            flight_address: None,
            id: NodeId(id.into()),
            role: NodeRole::Data,
            address: format!("{id}:1"),
            attributes: [("tier".to_string(), tier.to_string())].into(),
            voter: false,
            alive: true,
            decommissioned: false,
            stopping: None,
        }
    }

    fn run(state: &mut ClusterState, command: Command) -> Result<bool, CodedError> {
        let mut next = state.clone();
        let changed = apply(&mut next, &command)?;
        *state = next;
        // The nodes create or recover the new copies and report them started.
        loop {
            let pending: Vec<(u64, u32, String, u64)> = state
                .routing
                .iter()
                .flat_map(|(table, shards)| {
                    shards.iter().enumerate().flat_map(move |(shard, r)| {
                        r.copies
                            .iter()
                            .filter(|c| c.state == CopyState::Initializing)
                            .map(move |c| {
                                (
                                    *table,
                                    shard as u32,
                                    c.allocation_id.clone(),
                                    r.primary_term,
                                )
                            })
                    })
                })
                .collect();
            if pending.is_empty() {
                return Ok(changed);
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
                )?;
            }
        }
    }

    fn nodes_of(state: &ClusterState, shards: std::ops::Range<u32>) -> Vec<String> {
        let routing = &state.routing[&1];
        shards
            .map(|s| {
                let mut nodes: Vec<String> = routing[s as usize]
                    .copies
                    .iter()
                    .map(|c| c.node.0.clone())
                    .collect();
                nodes.sort();
                nodes.join("+")
            })
            .collect()
    }

    /// A cluster of data nodes, each `(id, tier)`.
    fn cluster(nodes: &[(&str, &str)]) -> ClusterState {
        let mut state = ClusterState {
            next_table_id: 1,
            ..ClusterState::default()
        };
        for (id, tier) in nodes {
            let joined = Command::NodeJoined {
                node: node(id, tier),
            };
            run(&mut state, joined).unwrap();
        }
        state
    }

    /// Creates `doc.t (p, x) PARTITIONED BY (p)`, two shards a partition, no replicas.
    fn create_partitioned(state: &mut ClusterState, settings: &[(&str, &str)]) {
        let column = |name: &str| ColumnDef {
            name: name.into(),
            column_type: ColumnType::Integer,
            not_null: false,
            default_expr: None,
            index: Default::default(),
            generated: None,
        };
        let table = TableSchema {
            id: TableId(0),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![column("p"), column("x")],
            primary_key: vec![],
            clustered_by: None,
            num_shards: 2,
            settings: std::iter::once(&("number_of_replicas", "0"))
                .chain(settings)
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            indexes: vec![],
            fulltext: vec![],
            version: 0,
            partitioned_by: vec!["p".into()],
            partitions: vec![],
        };
        let create = Command::CreateTable {
            table,
            if_not_exists: false,
        };
        run(state, create).unwrap();
    }

    #[test]
    fn partitions_get_shard_ranges_settings_and_tombstones() {
        let mut state = cluster(&[("d1", "hot"), ("d2", "hot"), ("d3", "cold")]);
        let settings = [
            ("routing.allocation.require.tier", "hot"),
            // Per partition, as CrateDB counts per index: two partitions of two shards fit
            // on two nodes.
            ("routing.allocation.total_shards_per_node", "1"),
        ];
        create_partitioned(&mut state, &settings);
        assert!(state.routing[&1].is_empty(), "no partition, no shards");
        let values = |v: &str| vec![Some(v.to_string())];
        let partitions = Command::CreatePartitions {
            schema: "doc".into(),
            name: "t".into(),
            values: vec![values("1"), values("2")],
        };
        assert!(run(&mut state, partitions.clone()).unwrap());
        // Again (a concurrent writer): nothing changes.
        assert!(!run(&mut state, partitions).unwrap());
        let t = &state.tables["doc.t"];
        let ranges: Vec<_> = t.partitions.iter().map(|p| p.shards()).collect();
        assert_eq!(ranges, [0..2, 2..4]);
        assert_eq!(nodes_of(&state, 0..4), ["d1", "d2", "d1", "d2"]);
        let ident = t.partitions[0].ident.clone();
        // One partition moves to the cold node; the other stays.
        let cold = Command::SetPartitionSettings {
            schema: "doc".into(),
            name: "t".into(),
            ident: ident.clone(),
            // Its two shards on the one cold node: its own limit too.
            settings: [
                (
                    "routing.allocation.require.tier".to_string(),
                    Some("cold".to_string()),
                ),
                (
                    "routing.allocation.total_shards_per_node".to_string(),
                    Some("2".to_string()),
                ),
            ]
            .into(),
        };
        run(&mut state, cold).unwrap();
        // The moved copies replace the old ones once started; the old are then dropped.
        for _ in 0..3 {
            run(
                &mut state,
                Command::NodeLiveness {
                    node: NodeId("d3".into()),
                    alive: true,
                },
            )
            .unwrap();
        }
        assert_eq!(nodes_of(&state, 2..4), ["d1", "d2"]);
        assert!(
            nodes_of(&state, 0..2).iter().all(|n| n.contains("d3")),
            "{:?}",
            nodes_of(&state, 0..2)
        );
        let refused = Command::SetPartitionSettings {
            schema: "doc".into(),
            name: "t".into(),
            ident: ident.clone(),
            settings: [("refresh_interval".to_string(), Some("1s".to_string()))].into(),
        };
        assert!(run(&mut state, refused).is_err());
        let drop = Command::DropPartitions {
            schema: "doc".into(),
            name: "t".into(),
            idents: vec![ident],
        };
        run(&mut state, drop).unwrap();
        let routing = &state.routing[&1];
        assert!(routing[..2]
            .iter()
            .all(|r| r.dropped && r.copies.is_empty()));
        assert!(routing[2..]
            .iter()
            .all(|r| !r.dropped && r.primary().is_some()));
        // The dropped values come back as a new partition with new shard numbers.
        let again = Command::CreatePartitions {
            schema: "doc".into(),
            name: "t".into(),
            values: vec![values("1")],
        };
        run(&mut state, again).unwrap();
        let t = &state.tables["doc.t"];
        assert_eq!(t.partition_of_values(&values("1")).unwrap().shards(), 4..6);
        assert!(state.routing[&1][..2]
            .iter()
            .all(|r| r.dropped && r.copies.is_empty()));
    }

    #[test]
    fn partitions_stop_at_the_shard_limit() {
        let mut state = cluster(&[("d1", "hot"), ("d2", "hot"), ("d3", "hot")]);
        let limit = Command::SetClusterSettings {
            settings: [(
                super::super::MAX_SHARDS_PER_NODE_SETTING.to_string(),
                Some("3".to_string()),
            )]
            .into(),
        };
        run(&mut state, limit).unwrap();
        create_partitioned(&mut state, &[]);
        let partition = |v: u32| Command::CreatePartitions {
            schema: "doc".into(),
            name: "t".into(),
            values: vec![vec![Some(v.to_string())]],
        };
        // 3 nodes x 3 copies: four partitions of two shards fit, a fifth does not.
        for v in 0..4 {
            run(&mut state, partition(v)).unwrap();
        }
        let refused = run(&mut state, partition(4)).unwrap_err();
        assert_eq!(refused.code, ErrorCode::ProgramLimitExceeded);
        assert!(
            refused.message.contains("cluster.max_shards_per_node"),
            "{refused}"
        );
        assert_eq!(state.tables["doc.t"].partitions.len(), 4);
    }
}
