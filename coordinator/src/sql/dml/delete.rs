//! DELETE: a query over the table (`_id` and the routing column under the statement's WHERE)
//! finds the rows, whose ids are then deleted on their shards. The table is refreshed first
//! so the query sees every acknowledged write.

use std::collections::BTreeMap;

use creek_common::error::ErrorCode;
use creek_common::routing::shard_for_key;
use creek_common::schema::{TableSchema, ID_COLUMN};
use creek_proto::v1::RowStatus;
use datafusion::arrow::array::{Array, StringArray};
use datafusion::arrow::datatypes::DataType;
use datafusion::prelude::SessionContext;
use sqlparser::ast;

use super::{collect_plan, lookup_table, DmlContext};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::routing::array_key_texts;
use crate::sql::Output;

/// The table a DELETE acts on and the query that finds its rows.
fn delete_query(
    cluster: &Cluster,
    default_schema: &str,
    delete: &ast::Delete,
) -> Result<(TableSchema, String)> {
    let tables = match &delete.from {
        ast::FromTable::WithFromKeyword(tables) | ast::FromTable::WithoutKeyword(tables) => tables,
    };
    let [relation] = tables.as_slice() else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE from several tables is not supported",
        ));
    };
    let ast::TableFactor::Table { name, alias, .. } = &relation.relation else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "DELETE of this relation is not supported",
        ));
    };
    let table = lookup_table(cluster, name, default_schema)?;
    let routing_column = table.clustered_by.clone();
    let mut sql = format!(
        "SELECT \"{ID_COLUMN}\"{} FROM {name}{}",
        routing_column
            .as_ref()
            .map(|c| format!(", \"{c}\""))
            .unwrap_or_default(),
        alias
            .as_ref()
            .map(|a| format!(" AS {a}"))
            .unwrap_or_default()
    );
    if let Some(selection) = &delete.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    Ok((table, sql))
}

/// Returns the parameter types of a DELETE (those its WHERE infers), for extended-protocol
/// Describe.
pub(crate) async fn delete_parameter_types(
    hidden_ctx: &SessionContext,
    cluster: &Cluster,
    default_schema: &str,
    delete: &ast::Delete,
) -> Result<Vec<Option<DataType>>> {
    let (_, sql) = delete_query(cluster, default_schema, delete)?;
    let plan = hidden_ctx.state().create_logical_plan(&sql).await?;
    super::plan_parameter_types(&plan)
}

/// Executes a DELETE.
pub async fn delete(dml: &DmlContext<'_>, delete: &ast::Delete) -> Result<Output> {
    let (table, sql) = delete_query(dml.cluster, dml.default_schema, delete)?;
    dml.cluster.refresh_table(&table).await?;
    let routing_column = table.clustered_by.clone();
    let plan = dml.hidden_ctx.state().create_logical_plan(&sql).await?;
    let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
    let mut by_shard: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for batch in batches {
        let ids = batch
            .column(0)
            .as_any()
            .downcast_ref::<StringArray>()
            .ok_or_else(|| Error::new(ErrorCode::Internal, "delete lost the _id column"))?
            .clone();
        let texts = match &routing_column {
            Some(_) => array_key_texts(batch.column(1))?,
            None => vec![None; ids.len()],
        };
        for (row, text) in texts.into_iter().enumerate() {
            let id = ids.value(row).to_string();
            let shard = shard_for_key(text.as_deref().unwrap_or(&id), table.num_shards);
            by_shard.entry(shard).or_default().push(id);
        }
    }
    let mut count = 0u64;
    for (shard, ids) in by_shard {
        let statuses = dml
            .cluster
            .delete_ids(&table, shard, ids, dml.write_refresh)
            .await?;
        count += statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
    }
    Ok(Output::Affected {
        tag: "DELETE".into(),
        count,
    })
}
