//! How a data node follows the routing table: for every copy the state puts on this node, the
//! shard is open with its role (primary or replica, term, peers), a fresh primary is created
//! empty, and an initializing copy is recovered from its primary; copies the state no longer
//! puts here are closed, and their files deleted once the shard is safely started elsewhere.
//!
//! A started copy must be the one this node holds: its directory records the allocation id it
//! was created or recovered as (`copy.json`). A started copy whose files are gone, or belong
//! to another copy, is reported failed rather than opened empty, so it can never be counted
//! in sync while holding nothing.

use std::collections::HashSet;
use std::sync::Arc;

use creek_common::schema::TableSchema;
use creek_common::state::{ClusterState, CopyState, ShardCopy, ShardRouting};
use creek_common::{NodeId, ShardId, TableId};
use creek_proto::v1::ShardCopyEventRequest;
use serde::{Deserialize, Serialize};

use super::{DataNode, RecoveryTask};
use crate::error::{Error, Result};
use crate::recovery::{self, RecoveryProgress, RecoverySource};
use crate::shard::copy::{CopyRole, Peer};
use crate::shard::Shard;

/// What a shard directory says about the copy in it.
#[derive(Debug, Serialize, Deserialize)]
struct CopyFile {
    allocation_id: String,
}

const COPY_FILE: &str = "copy.json";

impl DataNode {
    /// Records in `shard_id`'s directory which copy its files are.
    pub(crate) fn write_copy_file(&self, shard_id: ShardId, allocation_id: &str) -> Result<()> {
        let dir = self.shard_dir(shard_id);
        std::fs::create_dir_all(&dir).map_err(|source| Error::Io { shard_id, source })?;
        let bytes = serde_json::to_vec(&CopyFile {
            allocation_id: allocation_id.to_string(),
        })
        .expect("copy file serialises");
        crate::durable_file::write(&dir.join(COPY_FILE), &bytes)
            .map_err(|source| Error::Io { shard_id, source })
    }

    /// The allocation id `shard_id`'s directory holds: `Ok(None)` for a directory from before
    /// copies were recorded (adopted as whichever copy the state says), `Err` for no
    /// directory at all.
    fn copy_on_disk(&self, shard_id: ShardId) -> std::result::Result<Option<String>, ()> {
        let dir = self.shard_dir(shard_id);
        if !dir.join("index").exists() {
            return Err(());
        }
        Ok(std::fs::read(dir.join(COPY_FILE))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<CopyFile>(&bytes).ok())
            .map(|file| file.allocation_id))
    }

    /// Makes this node hold the copies `state` assigns to it (see the module documentation).
    pub(super) fn follow_routing(self: &Arc<Self>, state: &ClusterState) {
        let me = NodeId(self.node_id().to_string());
        let mut assigned: HashSet<ShardId> = HashSet::new();
        for (table, shards) in state.shards_of_node(&me) {
            let table = Arc::new(table.clone());
            for shard in shards {
                let shard_id = ShardId {
                    table: table.id,
                    shard,
                };
                assigned.insert(shard_id);
                let Some(routing) = state.shard_routing(table.id, shard) else {
                    continue;
                };
                let Some(copy) = routing.copy_on(&me) else {
                    continue;
                };
                if let Err(error) = self.follow_copy(state, &table, shard_id, routing, copy) {
                    tracing::error!(%shard_id, %error, "following the routing table failed");
                    self.report_failed(shard_id, copy, routing.primary_term, error.to_string());
                }
            }
        }
        // A shard's back-off counts failures in a row of recoveries that are still wanted here.
        self.recovery_failures
            .lock()
            .retain(|shard_id, _| assigned.contains(shard_id));
        // Copies this node holds, recovers or failed to open that the state no longer lists.
        let mut held: HashSet<ShardId> = self.shards.read().keys().copied().collect();
        held.extend(self.recoveries.lock().keys().copied());
        held.extend(self.failed.read().keys().copied());
        for shard_id in held.difference(&assigned) {
            self.recoveries.lock().remove(shard_id);
            self.failed.write().remove(shard_id);
            let closed = self.close_shard(*shard_id);
            let Some(routing) = state.shard_routing(shard_id.table, shard_id.shard) else {
                // A dropped table is deleted with the table (`apply_state`).
                continue;
            };
            // The files go only when another copy serves the shard: never delete the last
            // place a shard's data is.
            let started_elsewhere = routing.copies.iter().any(|c| {
                c.node != me
                    && c.state == CopyState::Started
                    && routing.is_in_sync(&c.allocation_id)
            });
            if routing.dropped {
                tracing::info!(%shard_id, "deleting a copy of a dropped partition");
                self.delete_copy_when_unused(*shard_id, closed);
            } else if started_elsewhere {
                tracing::info!(%shard_id, "deleting a copy the cluster moved elsewhere");
                self.delete_copy_when_unused(*shard_id, closed);
            }
        }
        // Copies of dropped partitions left on disk while this node was away (never opened
        // again, so not among the held ones above).
        let tables: Vec<TableId> = self.tables.read().keys().copied().collect();
        for table in tables {
            let Some(shards) = state.routing.get(&table.0) else {
                continue;
            };
            for (shard, routing) in shards.iter().enumerate() {
                let shard_id = ShardId {
                    table,
                    shard: shard as u32,
                };
                if routing.dropped && !held.contains(&shard_id) && self.shard_dir(shard_id).exists()
                {
                    tracing::info!(%shard_id, "deleting a copy of a dropped partition");
                    // Not here: a big copy's files would hold up applying the state.
                    let node = self.clone();
                    match tokio::runtime::Handle::try_current() {
                        Ok(runtime) => {
                            runtime.spawn_blocking(move || {
                                node.delete_copy_when_unused(shard_id, None)
                            });
                        }
                        Err(_) => node.delete_copy_when_unused(shard_id, None),
                    }
                }
            }
        }
        // Recoveries this node serves as primary for copies the state no longer expects.
        self.sessions.lock().retain(|_, session| {
            state
                .shard_routing(session.shard.id().table, session.shard.id().shard)
                .is_some_and(|routing| {
                    routing.copies.iter().any(|c| {
                        c.allocation_id == session.target.allocation_id
                            && c.state == CopyState::Initializing
                    })
                })
        });
    }

    fn follow_copy(
        self: &Arc<Self>,
        state: &ClusterState,
        table: &Arc<TableSchema>,
        shard_id: ShardId,
        routing: &ShardRouting,
        copy: &ShardCopy,
    ) -> Result<()> {
        let role = role_of(state, routing, copy);
        match copy.state {
            CopyState::Started => {
                self.recoveries.lock().remove(&shard_id);
                let shard = match self.shard(shard_id) {
                    Ok(shard) if shard.failure().is_none() => shard,
                    _ => {
                        match self.copy_on_disk(shard_id) {
                            Ok(Some(on_disk)) if on_disk != copy.allocation_id => {
                                return Err(Error::InvalidRequest(format!(
                                    "the files of shard {shard_id} here are copy {on_disk}, not {}",
                                    copy.allocation_id
                                )))
                            }
                            Err(()) => {
                                return Err(Error::InvalidRequest(format!(
                                    "started copy {} of shard {shard_id} has no files on this node",
                                    copy.allocation_id
                                )))
                            }
                            Ok(_) => {}
                        }
                        self.open_shard(table.clone(), shard_id)?
                    }
                };
                // A copy that comes back from its own disk with an async translog may have
                // lost operations that were acknowledged (the other copies hold them): while
                // another in-sync copy can serve, it is reported failed and rebuilt from the
                // primary, and a primary steps down first so that the leader promotes a
                // replica. A copy that nobody else can replace serves as it is.
                let opened_from_disk = shard.role().allocation_id.is_empty();
                let successor = routing.copies.iter().any(|c| {
                    c.allocation_id != copy.allocation_id
                        && c.state == CopyState::Started
                        && routing.is_in_sync(&c.allocation_id)
                        && state.is_alive(&c.node)
                });
                let suspect = !table.fsync_per_request() && opened_from_disk && successor;
                if suspect && copy.primary {
                    shard.fence_primary_up_to(routing.primary_term);
                }
                if !successor {
                    shard.fence_primary_up_to(0);
                }
                let before = shard.role();
                shard.set_role(role);
                let after = shard.role();
                if after.primary && (!before.primary || before.primary_term < after.primary_term) {
                    self.start_primary_term(shard.clone());
                }
                if suspect || (copy.primary && shard.primary_fence() >= routing.primary_term) {
                    return Err(Error::InvalidRequest(format!(
                        "copy {} of shard {shard_id} restarted with translog.durability = \
                         'async' and may lack acknowledged writes the other copies hold; it is \
                         rebuilt from them",
                        copy.allocation_id
                    )));
                }
            }
            CopyState::Initializing if copy.primary => {
                // A new table's primary: created empty, then reported started.
                let existing = self.shard(shard_id).ok();
                let shard = match existing {
                    Some(shard) => shard,
                    None => {
                        let _ = std::fs::remove_dir_all(self.shard_dir(shard_id));
                        self.write_copy_file(shard_id, &copy.allocation_id)?;
                        self.open_shard(table.clone(), shard_id)?
                    }
                };
                shard.set_role(role);
                self.report_started(shard_id, copy, routing.primary_term);
            }
            CopyState::Initializing => {
                let running = self
                    .recoveries
                    .lock()
                    .get(&shard_id)
                    .is_some_and(|task| task.allocation_id == copy.allocation_id);
                if running {
                    return Ok(());
                }
                let Some(primary) = routing.primary().filter(|p| p.state == CopyState::Started)
                else {
                    return Ok(());
                };
                let Some(address) = state.nodes.get(&primary.node).map(|n| n.address.clone())
                else {
                    return Ok(());
                };
                let progress = Arc::new(RecoveryProgress::default());
                let source = RecoverySource {
                    address,
                    primary_term: routing.primary_term,
                };
                // Registered before the task can run, so its end always finds its entry.
                let mut recoveries = self.recoveries.lock();
                let handle = tokio::runtime::Handle::current().spawn(recovery::recover(
                    self.clone(),
                    table.clone(),
                    shard_id,
                    role,
                    source,
                    progress.clone(),
                ));
                recoveries.insert(
                    shard_id,
                    RecoveryTask {
                        allocation_id: copy.allocation_id.clone(),
                        progress,
                        handle: handle.abort_handle(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Opens the shard (from its files, or empty) and registers it.
    fn open_shard(&self, table: Arc<TableSchema>, shard_id: ShardId) -> Result<Arc<Shard>> {
        self.open_shards(table.as_ref().clone(), &[shard_id.shard]);
        self.shard(shard_id).map_err(|_| {
            let reason = self
                .failed
                .read()
                .get(&shard_id)
                .cloned()
                .unwrap_or_else(|| "it could not be opened".to_string());
            Error::InvalidRequest(format!("shard {shard_id} did not open: {reason}"))
        })
    }

    fn report(&self, request: ShardCopyEventRequest) {
        let client = self.cluster_client.clone();
        tokio::runtime::Handle::current().spawn(async move {
            if let Err(status) = client.shard_copy_event(request).await {
                tracing::warn!(%status, "reporting a shard copy to the leader failed");
            }
        });
    }

    fn report_started(&self, shard_id: ShardId, copy: &ShardCopy, primary_term: u64) {
        self.report(ShardCopyEventRequest {
            table_id: shard_id.table.0,
            shard: shard_id.shard,
            allocation_id: copy.allocation_id.clone(),
            primary_term,
            started: true,
            reason: String::new(),
            forwarded: false,
        });
    }

    /// A copy that just became primary starts its term (in the background): an operation
    /// that changes nothing, forwarded to every copy, so that one holding a write the old
    /// primary never got acknowledged is found diverged and rebuilt now rather than at the
    /// next write (see [`Shard::start_primary_term`]).
    fn start_primary_term(self: &Arc<Self>, shard: Arc<Shard>) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let node = self.clone();
        runtime.spawn(async move {
            let shard_id = shard.id();
            let _order = shard.replication_lock().lock().await;
            let started = {
                let shard = shard.clone();
                tokio::task::spawn_blocking(move || shard.start_primary_term()).await
            };
            let op = match started {
                Ok(Ok(Some(op))) => op,
                Ok(Ok(None)) => return,
                Ok(Err(error)) => {
                    tracing::warn!(%shard_id, %error, "starting a primary term failed");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%shard_id, %error, "starting a primary term failed");
                    return;
                }
            };
            let replicated = crate::replication::replicate(
                &node.peers,
                &node.cluster_client(),
                &shard,
                &op,
                false,
            )
            .await;
            match replicated {
                Ok(()) => tracing::info!(
                    %shard_id, term = op.primary_term, seq_no = op.seq_no,
                    "primary term started on every copy"
                ),
                Err(error) => {
                    tracing::warn!(%shard_id, %error, "starting a primary term on the copies failed")
                }
            }
        });
    }

    /// Reports copy `copy` of `shard_id` failed (in the background).
    pub(crate) fn report_failed(
        &self,
        shard_id: ShardId,
        copy: &ShardCopy,
        primary_term: u64,
        reason: String,
    ) {
        self.report(ShardCopyEventRequest {
            table_id: shard_id.table.0,
            shard: shard_id.shard,
            allocation_id: copy.allocation_id.clone(),
            primary_term,
            started: false,
            reason,
            forwarded: false,
        });
    }
}

/// The role of `copy` in its shard's replication group.
fn role_of(state: &ClusterState, routing: &ShardRouting, copy: &ShardCopy) -> CopyRole {
    let peers = if copy.primary {
        routing
            .copies
            .iter()
            .filter(|c| c.allocation_id != copy.allocation_id && c.state == CopyState::Started)
            .filter_map(|c| {
                Some(Peer {
                    node: c.node.clone(),
                    address: state.nodes.get(&c.node)?.address.clone(),
                    allocation_id: c.allocation_id.clone(),
                    in_sync: routing.is_in_sync(&c.allocation_id),
                })
            })
            .collect()
    } else {
        Vec::new()
    };
    CopyRole {
        allocation_id: copy.allocation_id.clone(),
        primary: copy.primary,
        primary_term: routing.primary_term,
        peers,
    }
}
