//! `sys.shards` (every copy of every shard: where it is, what it is doing, its checkpoints
//! and recovery progress) and `sys.allocations` (why a copy is unassigned). The routing
//! table says which copies exist; the data nodes' figures fill in what each copy holds.

use std::collections::HashMap;
use std::sync::Arc;

use creek_common::state::ClusterState;
use creek_common::NodeId;
use creek_proto::v1::ShardStats;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};

use crate::catalog::CopyState;

/// The columns of `sys.shards`.
pub fn shards_fields() -> Vec<Field> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let int = |name: &str, nullable: bool| Field::new(name, DataType::Int64, nullable);
    vec![
        text("schema_name", false),
        text("table_name", false),
        int("id", false),
        text("partition_ident", false),
        text("node_id", true),
        Field::new("primary", DataType::Boolean, false),
        int("num_docs", true),
        int("size", true),
        text("state", false),
        text("failure", true),
        text("allocation_id", true),
        Field::new("in_sync", DataType::Boolean, false),
        int("primary_term", false),
        int("seq_no", true),
        int("content_checksum", true),
        text("recovery_stage", true),
        int("recovery_files_done", true),
        int("recovery_files_total", true),
        int("recovery_bytes_done", true),
        int("recovery_bytes_total", true),
        int("recovery_ops", true),
    ]
}

#[derive(Default)]
struct Columns {
    schema_name: Vec<String>,
    table_name: Vec<String>,
    id: Vec<i64>,
    partition_ident: Vec<String>,
    node_id: Vec<Option<String>>,
    primary: Vec<bool>,
    num_docs: Vec<Option<i64>>,
    size: Vec<Option<i64>>,
    state: Vec<String>,
    failure: Vec<Option<String>>,
    allocation_id: Vec<Option<String>>,
    in_sync: Vec<bool>,
    primary_term: Vec<i64>,
    seq_no: Vec<Option<i64>>,
    checksum: Vec<Option<i64>>,
    stage: Vec<Option<String>>,
    recovery: [Vec<Option<i64>>; 5],
}

/// The rows of `sys.shards`, one per copy (and one per copy that should exist but has no
/// node: UNASSIGNED).
pub fn shards_rows(state: &ClusterState, stats: &[(NodeId, ShardStats)]) -> Vec<ArrayRef> {
    let by_copy: HashMap<(&NodeId, u64, u32), &ShardStats> = stats
        .iter()
        .map(|(node, s)| ((node, s.table_id, s.shard), s))
        .collect();
    let mut c = Columns::default();
    for table in state.tables.values() {
        let shards = state.routing.get(&table.id.0).cloned().unwrap_or_default();
        for (number, routing) in shards.iter().enumerate() {
            if routing.dropped {
                continue;
            }
            let wanted =
                crate::catalog::commands::wanted_copies_of_shard(state, table, number as u32);
            let mut push = |copy: Option<&creek_common::state::ShardCopy>| {
                c.schema_name.push(table.schema_name.clone());
                c.table_name.push(table.name.clone());
                c.id.push(number as i64);
                c.partition_ident.push(
                    table
                        .partition_of_shard(number as u32)
                        .map(|p| p.ident.clone())
                        .unwrap_or_default(),
                );
                c.primary_term.push(routing.primary_term as i64);
                let Some(copy) = copy else {
                    c.node_id.push(None);
                    c.primary.push(false);
                    c.num_docs.push(None);
                    c.size.push(None);
                    c.state.push("UNASSIGNED".to_string());
                    c.failure.push(None);
                    c.allocation_id.push(None);
                    c.in_sync.push(false);
                    c.seq_no.push(None);
                    c.checksum.push(None);
                    c.stage.push(None);
                    for column in &mut c.recovery {
                        column.push(None);
                    }
                    return;
                };
                let stat = by_copy
                    .get(&(&copy.node, table.id.0, number as u32))
                    .filter(|s| {
                        s.allocation_id.is_empty() || s.allocation_id == copy.allocation_id
                    });
                let relocating = routing
                    .copies
                    .iter()
                    .any(|other| other.replaces.as_deref() == Some(copy.allocation_id.as_str()));
                let label = match (stat.map(|s| s.state.as_str()), copy.state) {
                    (Some("FAILED"), _) => "FAILED",
                    _ if !state.is_alive(&copy.node) => "UNASSIGNED",
                    (_, CopyState::Initializing) => "INITIALIZING",
                    (_, CopyState::Started) if relocating => "RELOCATING",
                    (_, CopyState::Started) => "STARTED",
                };
                c.node_id.push(Some(copy.node.to_string()));
                c.primary.push(copy.primary);
                c.state.push(label.to_string());
                c.allocation_id.push(Some(copy.allocation_id.clone()));
                c.in_sync.push(routing.is_in_sync(&copy.allocation_id));
                let recovering = stat.is_some_and(|s| s.state == "RECOVERING");
                let figure = |value: u64| (!recovering).then_some(value as i64);
                c.num_docs.push(stat.and_then(|s| figure(s.num_docs)));
                c.size.push(stat.and_then(|s| figure(s.size_bytes)));
                c.seq_no.push(stat.and_then(|s| figure(s.max_seq_no)));
                c.checksum
                    .push(stat.and_then(|s| figure(s.content_checksum)));
                c.failure.push(
                    stat.filter(|s| !s.failure.is_empty())
                        .map(|s| s.failure.clone()),
                );
                let progress = stat.filter(|_| recovering);
                c.stage.push(progress.map(|s| s.recovery_stage.clone()));
                let values = progress.map(|s| {
                    [
                        s.recovery_files_done,
                        s.recovery_files_total,
                        s.recovery_bytes_done,
                        s.recovery_bytes_total,
                        s.recovery_ops,
                    ]
                });
                for (i, column) in c.recovery.iter_mut().enumerate() {
                    column.push(values.map(|v| v[i] as i64));
                }
            };
            for copy in &routing.copies {
                push(Some(copy));
            }
            let counting = routing
                .copies
                .iter()
                .filter(|copy| copy.replaces.is_none())
                .count();
            for _ in counting..wanted {
                push(None);
            }
        }
    }
    let ints = |v: Vec<Option<i64>>| Arc::new(Int64Array::from(v)) as ArrayRef;
    let [files_done, files_total, bytes_done, bytes_total, ops] = c.recovery;
    vec![
        Arc::new(StringArray::from(c.schema_name)),
        Arc::new(StringArray::from(c.table_name)),
        Arc::new(Int64Array::from(c.id)),
        Arc::new(StringArray::from(c.partition_ident)),
        Arc::new(StringArray::from(c.node_id)),
        Arc::new(BooleanArray::from(c.primary)),
        ints(c.num_docs),
        ints(c.size),
        Arc::new(StringArray::from(c.state)),
        Arc::new(StringArray::from(c.failure)),
        Arc::new(StringArray::from(c.allocation_id)),
        Arc::new(BooleanArray::from(c.in_sync)),
        Arc::new(Int64Array::from(c.primary_term)),
        ints(c.seq_no),
        ints(c.checksum),
        Arc::new(StringArray::from(c.stage)),
        ints(files_done),
        ints(files_total),
        ints(bytes_done),
        ints(bytes_total),
        ints(ops),
    ]
}

/// The columns of `information_schema.table_partitions`.
pub fn partitions_fields() -> Vec<Field> {
    vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("partition_ident", DataType::Utf8, false),
        Field::new("values", DataType::Utf8, false),
        Field::new("number_of_shards", DataType::Int64, false),
        Field::new("number_of_replicas", DataType::Utf8, false),
        Field::new("settings", DataType::Utf8, false),
    ]
}

/// The rows of `information_schema.table_partitions`: one per partition of every partitioned
/// table, its values as a JSON object (numbers for numeric columns), its own settings too.
pub fn partitions_rows(state: &ClusterState) -> Vec<ArrayRef> {
    let mut columns: [Vec<String>; 6] = Default::default();
    let mut shards = Vec::new();
    for table in state.tables.values() {
        for partition in &table.partitions {
            let values: serde_json::Map<String, serde_json::Value> = table
                .partitioned_by
                .iter()
                .zip(&partition.values)
                .map(|(name, value)| {
                    let numeric = table
                        .column(name)
                        .is_some_and(|c| c.column_type.arrow_type().is_numeric());
                    let json = match value {
                        None => serde_json::Value::Null,
                        Some(text) if numeric => serde_json::from_str(text)
                            .unwrap_or_else(|_| serde_json::Value::String(text.clone())),
                        Some(text) => serde_json::Value::String(text.clone()),
                    };
                    (name.clone(), json)
                })
                .collect();
            let settings = table.settings_of_shard(partition.first_shard);
            columns[0].push(table.schema_name.clone());
            columns[1].push(table.name.clone());
            columns[2].push(partition.ident.clone());
            columns[3].push(serde_json::Value::Object(values).to_string());
            columns[4].push(
                settings
                    .get(crate::catalog::commands::REPLICAS_SETTING)
                    .cloned()
                    .unwrap_or_else(|| crate::catalog::commands::DEFAULT_REPLICAS.to_string()),
            );
            columns[5].push(serde_json::to_string(&partition.settings).expect("strings serialise"));
            shards.push(i64::from(partition.num_shards));
        }
    }
    let [schema, name, ident, values, replicas, settings] = columns;
    vec![
        Arc::new(StringArray::from(schema)),
        Arc::new(StringArray::from(name)),
        Arc::new(StringArray::from(ident)),
        Arc::new(StringArray::from(values)),
        Arc::new(Int64Array::from(shards)),
        Arc::new(StringArray::from(replicas)),
        Arc::new(StringArray::from(settings)),
    ]
}

/// The columns of `sys.allocations`.
pub fn allocations_fields() -> Vec<Field> {
    vec![
        Field::new("table_schema", DataType::Utf8, false),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("shard_id", DataType::Int64, false),
        Field::new("node_id", DataType::Utf8, true),
        Field::new("primary", DataType::Boolean, false),
        Field::new("current_state", DataType::Utf8, false),
        Field::new("explanation", DataType::Utf8, false),
    ]
}

/// The rows of `sys.allocations`: every copy that is not started where it belongs, with
/// the reason.
pub fn allocations_rows(state: &ClusterState) -> Vec<ArrayRef> {
    let rows = crate::catalog::commands::explain_allocations(state);
    vec![
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.schema.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.table.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(Int64Array::from(
            rows.iter().map(|r| i64::from(r.shard)).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.node.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(BooleanArray::from(
            rows.iter().map(|r| r.primary).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter().map(|r| r.state.clone()).collect::<Vec<_>>(),
        )),
        Arc::new(StringArray::from(
            rows.iter()
                .map(|r| r.explanation.clone())
                .collect::<Vec<_>>(),
        )),
    ]
}
