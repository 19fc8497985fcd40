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
