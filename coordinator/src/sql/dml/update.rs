//! UPDATE: a query over the table (`_id` and every column, the assigned ones replaced by their
//! expressions, under the statement's WHERE) computes the new rows, which are written back as
//! upserts to their shards. The table is refreshed first so the query sees every
//! acknowledged write.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::routing::shard_for_key;
use creek_common::schema::{TableSchema, ID_COLUMN};
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{Array, ArrayRef, StringArray, UInt32Array};
use datafusion::arrow::compute::take_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use sqlparser::ast;

use super::{collect_plan, conform_batch, lookup_table, DmlContext};
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::plan::identifiers::last_name;
use crate::plan::params::placeholder_index;
use crate::plan::routing::array_key_texts;
use crate::sql::Output;

/// The query an UPDATE runs to compute its rows, and what its assignments say about
/// parameter types.
struct UpdateQuery {
    table: TableSchema,
    sql: String,
    /// `SET column = $n`: parameter `n` takes the column's type, as in PostgreSQL (the query
    /// alone cannot say, a bare parameter in a select list has no type).
    assigned_parameters: Vec<(usize, DataType)>,
}

fn update_query(
    cluster: &Cluster,
    default_schema: &str,
    update: &ast::Update,
) -> Result<UpdateQuery> {
    let ast::TableFactor::Table { name, alias, .. } = &update.table.relation else {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "UPDATE of this relation is not supported",
        ));
    };
    if update.from.is_some() || !update.table.joins.is_empty() {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "UPDATE ... FROM is not supported",
        ));
    }
    let table = lookup_table(cluster, name, default_schema)?;
    let mut assignments: BTreeMap<String, String> = BTreeMap::new();
    let mut assigned_parameters = Vec::new();
    for assignment in &update.assignments {
        let column = match &assignment.target {
            ast::AssignmentTarget::ColumnName(name) => last_name(name),
            other => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    format!("UPDATE of {other} is not supported"),
                ))
            }
        };
        let Some(definition) = table.column(&column) else {
            return Err(Error::new(
                ErrorCode::UndefinedColumn,
                format!("column \"{column}\" does not exist"),
            ));
        };
        if table.primary_key.contains(&column)
            || table.clustered_by.as_deref() == Some(column.as_str())
        {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!("updating primary key or routing column \"{column}\" is not supported"),
            ));
        }
        if let Some(index) = placeholder_index(&assignment.value) {
            assigned_parameters.push((index, definition.column_type.arrow_type()));
        }
        assignments.insert(column, assignment.value.to_string());
    }
    let select: Vec<String> = std::iter::once(format!("\"{ID_COLUMN}\""))
        .chain(
            table
                .columns
                .iter()
                .map(|c| match assignments.get(&c.name) {
                    Some(expr) => format!("{expr} AS \"{}\"", c.name),
                    None => format!("\"{}\"", c.name),
                }),
        )
        .collect();
    let relation = match alias {
        Some(alias) => format!("{name} AS {alias}"),
        None => name.to_string(),
    };
    let mut sql = format!("SELECT {} FROM {relation}", select.join(", "));
    if let Some(selection) = &update.selection {
        sql.push_str(&format!(" WHERE {selection}"));
    }
    Ok(UpdateQuery {
        table,
        sql,
        assigned_parameters,
    })
}

/// Returns the parameter types of an UPDATE, for extended-protocol Describe: those its query
/// infers (`WHERE id = $2`), then the assigned columns' types (`SET v = $1`).
pub(crate) async fn update_parameter_types(
    hidden_ctx: &SessionContext,
    cluster: &Cluster,
    default_schema: &str,
    update: &ast::Update,
) -> Result<Vec<Option<DataType>>> {
    let query = update_query(cluster, default_schema, update)?;
    let plan = hidden_ctx.state().create_logical_plan(&query.sql).await?;
    let mut types = super::plan_parameter_types(&plan)?;
    for (index, data_type) in query.assigned_parameters {
        crate::plan::params::set_parameter_type(&mut types, index, Some(data_type));
    }
    Ok(types)
}

/// Executes an UPDATE.
pub async fn update(dml: &DmlContext<'_>, update: &ast::Update) -> Result<Output> {
    let UpdateQuery { table, sql, .. } = update_query(dml.cluster, dml.default_schema, update)?;
    dml.cluster.refresh_table(&table).await?;
    let plan = dml.hidden_ctx.state().create_logical_plan(&sql).await?;
    let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
    let mut count = 0u64;
    for batch in batches {
        if batch.num_rows() == 0 {
            continue;
        }
        let conformed = conform_batch(&table, &batch)?;
        let ids = batch
            .column_by_name(ID_COLUMN)
            .and_then(|a| a.as_any().downcast_ref::<StringArray>())
            .ok_or_else(|| Error::new(ErrorCode::Internal, "update lost the _id column"))?
            .clone();
        let routing_texts = routing_texts(&table, &conformed, &ids)?;
        let mut by_shard: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
        for (row, text) in routing_texts.iter().enumerate() {
            by_shard
                .entry(shard_for_key(text, table.num_shards))
                .or_default()
                .push(row as u32);
        }
        let mut fields = vec![Field::new(ID_COLUMN, DataType::Utf8, false)];
        fields.extend(
            conformed
                .schema()
                .fields()
                .iter()
                .map(|f| f.as_ref().clone()),
        );
        let mut arrays: Vec<ArrayRef> = vec![Arc::new(ids.clone())];
        arrays.extend(conformed.columns().iter().cloned());
        let with_ids = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
        for (shard, rows) in by_shard {
            let part = take_record_batch(&with_ids, &UInt32Array::from(rows))?;
            let statuses = dml
                .cluster
                .write_rows(&table, shard, WriteMode::Upsert, &part, dml.write_refresh)
                .await?;
            count += statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
        }
    }
    Ok(Output::Affected {
        tag: "UPDATE".into(),
        count,
    })
}

fn routing_texts(
    table: &TableSchema,
    batch: &RecordBatch,
    ids: &StringArray,
) -> Result<Vec<String>> {
    match &table.clustered_by {
        Some(column) => {
            let array = batch
                .column_by_name(column)
                .ok_or_else(|| Error::new(ErrorCode::Internal, "routing column missing"))?;
            Ok(array_key_texts(array)?
                .into_iter()
                .enumerate()
                .map(|(row, text)| text.unwrap_or_else(|| ids.value(row).to_string()))
                .collect())
        }
        None => Ok((0..ids.len())
            .map(|row| ids.value(row).to_string())
            .collect()),
    }
}
