//! The writes' side of partitioned tables: rows create the partitions they belong to (through
//! the cluster state, before any row is written), and a DELETE whose WHERE names only
//! partition columns drops whole partitions instead of deleting row by row. Which partition a
//! row or predicate belongs to is `plan::partitions`' business.

use std::collections::BTreeSet;

use creek_common::schema::TableSchema;
use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::utils::{conjunction, split_conjunction};
use datafusion::logical_expr::{Expr, LogicalPlan};

use super::{collect_plan, plan_rows, DmlContext};
use crate::cluster::Cluster;
use crate::error::Result;
use crate::plan::partitions::{is_partition_predicate, row_partition_values, whole_partitions};

/// `table`'s definition as the catalog has it now (partitions come and go while a statement
/// runs), or `table` itself if it was dropped or replaced meanwhile.
pub(crate) fn current(cluster: &Cluster, table: &TableSchema) -> TableSchema {
    cluster
        .catalog()
        .table(&table.schema_name, &table.name)
        .filter(|t| t.id == table.id)
        .unwrap_or_else(|| table.clone())
}

/// Creates the partitions that rows of `batch` (conformed, generated columns filled) belong
/// to and that do not exist yet. Returns the table's new definition if it created any.
pub(crate) async fn ensure_partitions(
    cluster: &Cluster,
    table: &TableSchema,
    batch: &RecordBatch,
) -> Result<Option<TableSchema>> {
    if !table.is_partitioned() {
        return Ok(None);
    }
    let values = row_partition_values(table, batch)?;
    if values
        .iter()
        .all(|values| table.partition_of_values(values).is_some())
    {
        return Ok(None);
    }
    // Another writer (or an earlier batch of a long COPY) may have created them already.
    let latest = current(cluster, table);
    let missing: BTreeSet<Vec<Option<String>>> = values
        .into_iter()
        .filter(|values| latest.partition_of_values(values).is_none())
        .collect();
    if missing.is_empty() {
        return Ok(Some(latest));
    }
    let table = cluster
        .create_partitions(&latest, missing.into_iter().collect())
        .await?;
    Ok(Some(table))
}

/// If the DELETE's WHERE (`selection`) names only partition columns, drops the partitions
/// whose rows all match it and returns how many rows they held; `None` when rows must be
/// deleted one by one.
pub(super) async fn delete_partitions(
    dml: &DmlContext<'_>,
    table: &TableSchema,
    from: &str,
    selection: &str,
) -> Result<Option<u64>> {
    if !table.is_partitioned() {
        return Ok(None);
    }
    // The partitions as they are when the count is planned: those it counts are dropped.
    let table = &current(dml.cluster, table);
    let sql = format!("SELECT count(*) FROM {from} WHERE {selection}");
    let plan = plan_rows(dml.hidden_ctx, &sql).await?;
    let bound = if plan.get_parameter_types()?.is_empty() {
        plan.clone()
    } else {
        plan.clone().with_param_values(dml.params.clone())?
    };
    let optimized = dml.hidden_ctx.state().optimize(&bound)?;
    let Some(predicate) = sole_predicate(&optimized) else {
        return Ok(None);
    };
    if !split_conjunction(&predicate)
        .iter()
        .all(|p| is_partition_predicate(table, p))
    {
        return Ok(None);
    }
    let Some(partitions) = whole_partitions(table, &predicate) else {
        return Ok(None);
    };
    if partitions.is_empty() {
        return Ok(Some(0));
    }
    dml.cluster.refresh_table(table).await?;
    let batches = collect_plan(dml.hidden_ctx, plan, dml.params).await?;
    let count = rows_counted(&batches);
    let idents = partitions.iter().map(|p| p.ident.clone()).collect();
    dml.cluster.drop_partitions(table, idents).await?;
    Ok(Some(count))
}

/// The one table's filter of a planned `SELECT count(*) ... WHERE`: the predicates pushed
/// into its scan and any left above it, ANDed. `None` if the plan has anything else that
/// could select rows (a join, a subquery).
fn sole_predicate(plan: &LogicalPlan) -> Option<Expr> {
    let mut predicates: Vec<Expr> = Vec::new();
    let mut scans = 0;
    let mut other = false;
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::Filter(filter) => {
                predicates.extend(split_conjunction(&filter.predicate).into_iter().cloned());
            }
            LogicalPlan::TableScan(scan) => {
                scans += 1;
                predicates.extend(scan.filters.iter().cloned());
            }
            LogicalPlan::Aggregate(_) | LogicalPlan::Projection(_) => {}
            _ => other = true,
        }
        Ok(TreeNodeRecursion::Continue)
    });
    if other || scans != 1 {
        return None;
    }
    let mut unique: Vec<Expr> = Vec::new();
    for predicate in predicates {
        if !unique.contains(&predicate) {
            unique.push(predicate);
        }
    }
    conjunction(unique)
}

fn rows_counted(batches: &[RecordBatch]) -> u64 {
    batches
        .iter()
        .filter_map(|b| b.columns().first())
        .filter_map(|c| c.as_any().downcast_ref::<Int64Array>())
        .flat_map(|counts| (0..counts.len()).map(move |i| counts.value(i).max(0) as u64))
        .sum()
}
