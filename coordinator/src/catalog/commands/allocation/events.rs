//! Copies reported started or failed by their nodes (through the leader): a started copy
//! joins the in-sync set and the copy it replaces goes; a failed one leaves the group, its
//! primary role passing to an in-sync started replica. Only the shard's current primary term
//! may report, so a deposed primary cannot fail its successor's copies.

use creek_common::error::{CodedError, ErrorCode};
use creek_common::state::{ClusterState, CopyState, ShardRouting};

use super::super::refused;

/// The copy `allocation_id` finished recovering: it starts and joins the in-sync set; a copy
/// it replaces goes (its primary role passing to it, under a new term).
pub(in crate::catalog::commands) fn copy_started(
    state: &mut ClusterState,
    table: u64,
    shard: u32,
    allocation_id: &str,
    primary_term: u64,
) -> Result<bool, CodedError> {
    let routing = routing_mut(state, table, shard)?;
    if primary_term != routing.primary_term {
        return Err(stale_term(primary_term, routing.primary_term));
    }
    let Some(copy) = routing
        .copies
        .iter_mut()
        .find(|c| c.allocation_id == allocation_id)
    else {
        return Ok(false);
    };
    if copy.state == CopyState::Started {
        return Ok(false);
    }
    copy.state = CopyState::Started;
    let replaces = copy.replaces.take();
    routing.failed_on.clear();
    if !routing.is_in_sync(allocation_id) {
        routing.in_sync.push(allocation_id.to_string());
    }
    if let Some(replaced) = replaces {
        let was_primary = routing
            .copies
            .iter()
            .any(|c| c.allocation_id == replaced && c.primary);
        routing.copies.retain(|c| c.allocation_id != replaced);
        routing.in_sync.retain(|id| *id != replaced);
        if was_primary {
            routing.promote(allocation_id);
        }
    }
    Ok(true)
}

/// A copy failed (a replica that missed a write, a recovery that broke, a shard that hit a
/// storage error): it leaves the copies and the in-sync set; reroute assigns a new one. Only
/// the current primary's term may fail a copy, so a deposed primary cannot fail its
/// successor's replicas.
pub(in crate::catalog::commands) fn copy_failed(
    state: &mut ClusterState,
    table: u64,
    shard: u32,
    allocation_id: &str,
    primary_term: u64,
) -> Result<bool, CodedError> {
    let routing = routing_mut(state, table, shard)?;
    if primary_term < routing.primary_term {
        return Err(stale_term(primary_term, routing.primary_term));
    }
    let Some(failed) = routing
        .copies
        .iter()
        .find(|c| c.allocation_id == allocation_id)
        .cloned()
    else {
        return Ok(false);
    };
    if failed.state == CopyState::Initializing && !routing.failed_on.contains(&failed.node) {
        routing.failed_on.push(failed.node.clone());
    }
    if failed.primary {
        // A failed primary: its lowest in-sync started replica takes over.
        let Some(successor) = routing.successor(|_| true) else {
            // Nothing else holds every write: the primary stays (RED while it is failed).
            return Ok(false);
        };
        routing.promote(&successor);
    }
    routing.copies.retain(|c| c.allocation_id != allocation_id);
    routing.in_sync.retain(|id| id != allocation_id);
    for copy in &mut routing.copies {
        if copy.replaces.as_deref() == Some(allocation_id) {
            copy.replaces = None;
        }
    }
    Ok(true)
}

fn stale_term(got: u64, current: u64) -> CodedError {
    refused(
        ErrorCode::Unavailable,
        format!("primary term {got} is stale: the shard's primary term is {current}"),
    )
}

fn routing_mut(
    state: &mut ClusterState,
    table: u64,
    shard: u32,
) -> Result<&mut ShardRouting, CodedError> {
    state
        .routing
        .get_mut(&table)
        .and_then(|shards| shards.get_mut(shard as usize))
        .ok_or_else(|| {
            refused(
                ErrorCode::UndefinedTable,
                format!("shard {shard} of table {table} does not exist"),
            )
        })
}
