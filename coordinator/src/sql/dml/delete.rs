//! DELETE: a query over the table (`_id` and the routing column under the statement's WHERE)
//! finds the rows, whose ids are then deleted on their shards. The table is refreshed first
//! so the query sees every acknowledged write.

use std::collections::BTreeMap;

use creek_common::error::ErrorCode;
use creek_common::partition::PartitionDef;
use creek_common::schema::{TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN};
use creek_proto::v1::RowStatus;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use sqlparser::ast;

use super::update::{conflict_pause, row_versions, rows_query, CONFLICT_RETRIES};
use super::{collect_plan, lookup_table, plan_rows, DmlContext};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::partitions::row_partition_values;
use crate::plan::routing::{array_key_texts, shard_of};
use crate::sql::Output;

/// The table a DELETE acts on and the query that finds its rows: (table, FROM, select,
/// WHERE).
fn delete_query(
    cluster: &Cluster,
    default_schema: &str,
    delete: &ast::Delete,
) -> Result<(TableSchema, String, String, Option<String>)> {
    let tables = match &delete.from {
        ast::FromTable::WithFromKeyword(tables) | ast::FromTable::WithoutKeyword(tables) => tables,
    };
    let [relation] = tables.as_slice() else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE from several tables is not supported",
        ));
    };
    // Clauses that would narrow or report the deletion are refused rather than ignored.
    let unsupported = [
        (
            delete.using.is_some() || !relation.joins.is_empty(),
            "USING",
        ),
        (delete.limit.is_some(), "LIMIT"),
        (!delete.order_by.is_empty(), "ORDER BY"),
        (
            delete.returning.is_some() || delete.output.is_some(),
            "RETURNING",
        ),
        (!delete.tables.is_empty(), "a table list before FROM"),
    ];
    if let Some((_, clause)) = unsupported.iter().find(|(present, _)| *present) {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            format!("DELETE with {clause} is not supported"),
        ));
    }
    let ast::TableFactor::Table { name, alias, .. } = &relation.relation else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE of this relation is not supported",
        ));
    };
    let table = lookup_table(cluster, name, default_schema)?;
    // The routing column (column 3) and the partition columns locate each row's shard.
    let locating: String = table
        .clustered_by
        .iter()
        .chain(&table.partitioned_by)
        .map(|c| format!(", \"{c}\""))
        .collect();
    let from = format!(
        "{name}{}",
        alias
            .as_ref()
            .map(|a| format!(" AS {a}"))
            .unwrap_or_default()
    );
    let select = format!(
        "SELECT \"{ID_COLUMN}\", \"{SEQ_NO_COLUMN}\", \"{PRIMARY_TERM_COLUMN}\"{locating} FROM {from}"
    );
    Ok((
        table,
        from,
        select,
        delete.selection.as_ref().map(ToString::to_string),
    ))
}

/// Returns the parameter types of a DELETE (those its WHERE infers), for extended-protocol
/// Describe.
pub(crate) async fn delete_parameter_types(
    hidden_ctx: &SessionContext,
    cluster: &Cluster,
    default_schema: &str,
    delete: &ast::Delete,
) -> Result<Vec<Option<DataType>>> {
    let (_, _, select, selection) = delete_query(cluster, default_schema, delete)?;
    let sql = rows_query(&select, selection.as_deref(), None);
    let plan = plan_rows(hidden_ctx, &sql).await?;
    super::plan_parameter_types(&plan)
}

/// The ids a DELETE removes from one shard, with the version each was read at.
type ShardDeletes = (Vec<String>, Vec<(u64, u64)>);

/// Executes a DELETE: each row is deleted only if it still has the version it was read at,
/// so a row updated meanwhile has its WHERE evaluated again (and is retried) instead of being
/// deleted on the strength of its old values.
pub async fn delete(dml: &DmlContext<'_>, delete: &ast::Delete) -> Result<Output> {
    let (table, from, select, selection) = delete_query(dml.cluster, dml.default_schema, delete)?;
    if let Some(selection) = &selection {
        if let Some(count) =
            super::partitions::delete_partitions(dml, &table, &from, selection).await?
        {
            return Ok(Output::Affected {
                tag: "DELETE".into(),
                count,
            });
        }
    }
    let routing_column = table.clustered_by.clone();
    let mut count = 0u64;
    let mut retry_ids: Option<Vec<String>> = None;
    for attempt in 0..=CONFLICT_RETRIES {
        conflict_pause(attempt).await;
        dml.cluster.refresh_table(&table).await?;
        let sql = rows_query(&select, selection.as_deref(), retry_ids.as_deref());
        let plan = plan_rows(dml.hidden_ctx, &sql).await?;
        let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
        let mut by_shard: BTreeMap<u32, ShardDeletes> = BTreeMap::new();
        for batch in batches {
            let ids = batch
                .column(0)
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| Error::new(ErrorCode::Internal, "delete lost the _id column"))?
                .clone();
            let versions = row_versions(&batch)?;
            let values = match &routing_column {
                Some(_) => array_key_texts(batch.column(3))?,
                None => vec![None; ids.len()],
            };
            let located = super::partitions::current(dml.cluster, &table);
            // A row whose partition was dropped meanwhile is gone with it.
            let partitions: Vec<Option<Option<&PartitionDef>>> = if located.is_partitioned() {
                row_partition_values(&located, &batch)?
                    .iter()
                    .map(|values| located.partition_of_values(values).map(Some))
                    .collect()
            } else {
                vec![Some(None); batch.num_rows()]
            };
            for (row, (value, partition)) in values.into_iter().zip(partitions).enumerate() {
                let Some(partition) = partition else {
                    continue;
                };
                let id = ids.value(row).to_string();
                let shard = shard_of(&table, partition, &id, value.as_deref());
                let (shard_ids, shard_versions) = by_shard.entry(shard).or_default();
                shard_ids.push(id);
                shard_versions.push(versions[row]);
            }
        }
        let mut conflicts = Vec::new();
        for (shard, (ids, versions)) in by_shard {
            let statuses = dml
                .cluster
                .delete_ids_if_version(&table, shard, ids.clone(), &versions, dml.visibility)
                .await?;
            for (id, status) in ids.into_iter().zip(statuses) {
                match status {
                    RowStatus::Ok => count += 1,
                    RowStatus::VersionConflict => conflicts.push(id),
                    // Deleted by someone else meanwhile.
                    _ => {}
                }
            }
        }
        if conflicts.is_empty() {
            return Ok(Output::Affected {
                tag: "DELETE".into(),
                count,
            });
        }
        retry_ids = Some(conflicts);
    }
    Err(Error::new(
        ErrorCode::SerializationFailure,
        format!(
            "could not delete {} row(s) of {}: they kept changing concurrently; retry the statement",
            retry_ids.map_or(0, |ids| ids.len()),
            table.name
        ),
    ))
}
