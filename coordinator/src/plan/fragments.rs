//! Moves per-shard work into the plan fragments data nodes run.
//!
//! DataFusion plans a query as if shards were local partitions: filters (pushed down inexactly,
//! so re-checked above the scan), projections, partial aggregates and per-partition top-N sorts
//! sit above the [`ShardScanExec`]. Every one of those operators works on one partition at a
//! time, so it can run next to the shard instead, and the coordinator then receives partial
//! aggregate states or the top rows of each shard rather than every row. This rule, run last
//! among the physical optimizer rules, folds the chain of such operators directly above a shard
//! scan into the scan's fragment. It never changes a plan's result: the coordinator keeps every
//! operator that combines partitions (final aggregates, merges, global limits).
//!
//! A chain is only moved when it encodes with datafusion-proto and decodes with no more than
//! the data nodes have (see [`ShardScanExec::with_fragment`]).

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::config::ConfigOptions;
use datafusion::error::Result as DfResult;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_plan::aggregates::{AggregateExec, AggregateMode};
use datafusion::physical_plan::coop::CooperativeExec;
use datafusion::physical_plan::execution_plan::{ChildrenPropertiesMode, ReplaceChildrenOptions};
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, Partitioning};

use crate::catalog::shard_table::ShardScanExec;

/// The physical optimizer rule.
#[derive(Debug, Default)]
pub struct PushFragmentsToShards;

impl PhysicalOptimizerRule for PushFragmentsToShards {
    fn optimize(
        &self,
        plan: Arc<dyn ExecutionPlan>,
        _config: &ConfigOptions,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        plan.transform_down(|node| {
            if let Some(kept) = absorb_copy_of_single_partition_sort(&node)? {
                return Ok(Transformed::new(kept, true, TreeNodeRecursion::Jump));
            }
            Ok(match absorb(&node) {
                Some(scan) => Transformed::new(scan, true, TreeNodeRecursion::Jump),
                None => Transformed::no(node),
            })
        })
        .map(|transformed| transformed.data)
    }

    fn name(&self) -> &str {
        "push_fragments_to_shards"
    }

    fn schema_check(&self) -> bool {
        true
    }
}

/// A sort over a single partition (a scan of shards that all live on one data node) is planned
/// as one global sort, which cannot move. A per-partition copy of it can: each shard sorts (and
/// keeps its top-N) on the data node, and the coordinator's sort, kept above, then orders at
/// most N rows per shard.
fn absorb_copy_of_single_partition_sort(
    node: &Arc<dyn ExecutionPlan>,
) -> DfResult<Option<Arc<dyn ExecutionPlan>>> {
    let Some(sort) = node.downcast_ref::<SortExec>() else {
        return Ok(None);
    };
    let input = sort.input();
    if sort.preserve_partitioning() || input.properties().partitioning.partition_count() != 1 {
        return Ok(None);
    }
    let local: Arc<dyn ExecutionPlan> = Arc::new(
        SortExec::new(sort.expr().clone(), Arc::clone(input))
            .with_fetch(sort.fetch())
            .with_preserve_partitioning(true),
    );
    match absorb(&local) {
        Some(scan) => Ok(Some(Arc::clone(node).replace_children(
            vec![scan],
            ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
        )?)),
        None => Ok(None),
    }
}

/// What an operator in a chain above a shard scan is.
enum Step {
    /// Runs per partition and can move to the data node.
    Movable,
    /// A round-robin repartition, only there to spread work over cores, or a cooperative
    /// scheduling wrapper; dropped when the operators above it move (the data node
    /// parallelises by shard instead).
    Spread,
    /// Neither: the chain stops here.
    Stop,
}

fn step(plan: &dyn ExecutionPlan) -> Step {
    let any = plan;
    if any.is::<FilterExec>() || any.is::<ProjectionExec>() || any.is::<LocalLimitExec>() {
        return Step::Movable;
    }
    if let Some(aggregate) = any.downcast_ref::<AggregateExec>() {
        return match aggregate.mode() {
            AggregateMode::Partial => Step::Movable,
            _ => Step::Stop,
        };
    }
    if let Some(sort) = any.downcast_ref::<SortExec>() {
        return if sort.preserve_partitioning() {
            Step::Movable
        } else {
            Step::Stop
        };
    }
    if any.is::<CooperativeExec>() {
        // A scheduling wrapper the coordinator adds above leaves; the data node's own scan
        // streams need none.
        return Step::Spread;
    }
    if let Some(repartition) = any.downcast_ref::<RepartitionExec>() {
        if matches!(repartition.partitioning(), Partitioning::RoundRobinBatch(_))
            && !repartition.preserve_order()
        {
            return Step::Spread;
        }
    }
    Step::Stop
}

/// If `node` starts a movable chain that ends in a shard scan without a fragment, the scan with
/// the chain folded in.
fn absorb(node: &Arc<dyn ExecutionPlan>) -> Option<Arc<dyn ExecutionPlan>> {
    if !matches!(step(node.as_ref()), Step::Movable) {
        return None;
    }
    let mut chain: Vec<Arc<dyn ExecutionPlan>> = Vec::new();
    let mut current = node.clone();
    let scan = loop {
        if let Some(scan) = current.downcast_ref::<ShardScanExec>() {
            if scan.fragment().is_some() {
                return None;
            }
            break scan.clone();
        }
        let children = current.children();
        let [child] = children.as_slice() else {
            return None;
        };
        let child = Arc::clone(child);
        match step(current.as_ref()) {
            Step::Movable => chain.push(current.clone()),
            Step::Spread => {}
            Step::Stop => return None,
        }
        current = child;
    };
    // Rebuild the chain bottom-up over the bare scan, without the spreading repartitions.
    let mut fragment: Arc<dyn ExecutionPlan> = Arc::new(scan.clone());
    for op in chain.iter().rev() {
        fragment = Arc::clone(op)
            .replace_children(
                vec![fragment],
                ReplaceChildrenOptions::new(ChildrenPropertiesMode::Recompute),
            )
            .ok()?;
    }
    let pushed = scan.with_fragment(fragment).ok()?;
    Some(Arc::new(pushed))
}
