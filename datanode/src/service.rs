//! `ShardService` on the data node: durable writes (as primary, replicated before they are
//! acknowledged), operations forwarded by a primary (as replica), the primary's side of
//! recovery, refresh, real-time get and statistics. Which copies exist follows cluster state
//! (see `node::copies`). Every storage call runs on the blocking pool, never on a tokio
//! worker.

use std::sync::Arc;

use creek_common::schema::ID_COLUMN;
use creek_common::{ShardId, TableId};
use creek_proto::ipc::batch_to_ipc;
use creek_proto::v1::shard_service_server::ShardService;
use creek_proto::v1::{
    ExportShardRequest, ExportShardResponse, FileChunkRequest, FileChunkResponse, GetRequest,
    GetResponse, MatchStatsRequest, MatchStatsResponse, RecoveryFile, RecoveryOpsRequest,
    RecoveryOpsResponse, RefreshRequest, RefreshResponse, ReplicateRequest, ReplicateResponse,
    ShardCopyEventRequest, ShardCopyEventResponse, ShardStats, ShardStatsRequest,
    ShardStatsResponse, StartRecoveryRequest, StartRecoveryResponse, TranslogOp, WriteMode,
    WriteRequest, WriteResponse,
};
use datafusion::arrow::datatypes::{Field, Schema};
use prost::Message;
use tonic::{Request, Response, Status};

use crate::codec::column_spec;
use crate::error::Error;
use crate::flight::status_from_datafusion;
use crate::node::{DataNode, SourceSession};
use crate::scan::lookup_ids;
use crate::shard::Version;

/// The gRPC service over a [`DataNode`].
pub struct ShardServiceImpl {
    node: Arc<DataNode>,
}

impl ShardServiceImpl {
    /// Creates the service for `node`.
    pub fn new(node: Arc<DataNode>) -> ShardServiceImpl {
        ShardServiceImpl { node }
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
        .map_err(Status::from)
}

/// How long a write waits for this node to learn a table definition newer than its own.
const TABLE_VERSION_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Waits until `shard` has the table definition `version` (or newer): the coordinator planned
/// the write with it, and an older definition would not know all of its columns. The node
/// gets the new version published, or with its next heartbeat answer.
async fn wait_for_table_version(shard: &crate::shard::Shard, version: u64) -> Result<(), Status> {
    let deadline = tokio::time::Instant::now() + TABLE_VERSION_WAIT;
    while shard.table().version < version {
        if tokio::time::Instant::now() > deadline {
            return Err(Status::from(Error::TableBehind {
                shard_id: shard.id(),
                have: shard.table().version,
                want: version,
            }));
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    Ok(())
}

#[tonic::async_trait]
impl ShardService for ShardServiceImpl {
    async fn write(
        &self,
        request: Request<WriteRequest>,
    ) -> Result<Response<WriteResponse>, Status> {
        // Run apart from the request: a coordinator that gives up (its statement cancelled,
        // its connection gone) drops this handler, and a write dropped between applying on
        // the primary and reaching the replicas would leave the copies apart.
        tokio::spawn(write_to_primary(self.node.clone(), request.into_inner()))
            .await
            .map_err(|error| Status::internal(format!("write task failed: {error}")))?
    }

    async fn refresh(
        &self,
        request: Request<RefreshRequest>,
    ) -> Result<Response<RefreshResponse>, Status> {
        let request = request.into_inner();
        let table = TableId(request.table_id);
        let shards = if request.shards.is_empty() {
            self.node
                .shards()
                .into_iter()
                .filter(|s| s.id().table == table)
                .collect()
        } else {
            request
                .shards
                .iter()
                .map(|shard| {
                    self.node.shard(ShardId {
                        table,
                        shard: *shard,
                    })
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        blocking(move || shards.iter().try_for_each(|shard| shard.refresh())).await?;
        Ok(Response::new(RefreshResponse {}))
    }

    async fn get(&self, request: Request<GetRequest>) -> Result<Response<GetResponse>, Status> {
        let request = request.into_inner();
        let shard_id = ShardId {
            table: TableId(request.table_id),
            shard: request.shard,
        };
        let shard = self.node.shard(shard_id)?;
        let table = shard.table();
        let mut columns = vec![column_spec(&table, ID_COLUMN).map_err(status_from_datafusion)?];
        for name in &request.columns {
            columns.push(column_spec(&table, name).map_err(status_from_datafusion)?);
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|spec| Field::new(spec.name(), spec.arrow_type(), true))
                .collect::<Vec<_>>(),
        ));
        let ids = request.ids;
        let batch = tokio::task::spawn_blocking(move || lookup_ids(&shard, &columns, &ids, schema))
            .await
            .map_err(|e| Status::internal(format!("storage task failed: {e}")))?
            .map_err(status_from_datafusion)?;
        let rows_ipc = batch_to_ipc(&batch).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(GetResponse { rows_ipc }))
    }

    async fn export_shard(
        &self,
        request: Request<ExportShardRequest>,
    ) -> Result<Response<ExportShardResponse>, Status> {
        let request = request.into_inner();
        let shard_id = ShardId {
            table: TableId(request.table_id),
            shard: request.shard,
        };
        let s3 = request.s3.into_iter().collect();
        let (rows, bytes) =
            crate::export::export_shard(&self.node, shard_id, &request.columns, &request.uri, &s3)
                .await
                .map_err(|e| creek_proto::status::status_from_error(&e))?;
        Ok(Response::new(ExportShardResponse { rows, bytes }))
    }

    async fn match_stats(
        &self,
        request: Request<MatchStatsRequest>,
    ) -> Result<Response<MatchStatsResponse>, Status> {
        let request = request.into_inner();
        let spec: creek_common::fulltext::MatchSpec = serde_json::from_str(&request.match_spec)
            .map_err(|e| Status::invalid_argument(format!("bad MATCH: {e}")))?;
        let shards = request
            .shards
            .iter()
            .map(|shard| {
                self.node.shard(ShardId {
                    table: TableId(request.table_id),
                    shard: *shard,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let visible = request.visible_seq_nos;
        let stats =
            blocking(move || {
                let mut stats = creek_common::fulltext::MatchStats::default();
                for (i, shard) in shards.iter().enumerate() {
                    shard.ensure_visible(
                        visible.get(i).copied().unwrap_or(0),
                        crate::scan::CATCH_UP_WAIT,
                    )?;
                    let searcher = shard.searcher();
                    let shard_stats = crate::scan::fulltext::shard_stats(&spec, &searcher)
                        .map_err(|source| Error::Index {
                            shard_id: shard.id(),
                            source,
                        })?;
                    stats.merge(shard_stats);
                }
                Ok(stats)
            })
            .await?;
        let stats = serde_json::to_string(&stats).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(MatchStatsResponse { stats }))
    }

    async fn shard_stats(
        &self,
        _request: Request<ShardStatsRequest>,
    ) -> Result<Response<ShardStatsResponse>, Status> {
        let shards = self.node.shards();
        let failed = self.node.failed_shards();
        let recovering = self.node.recovery_progress();
        let stats = blocking(move || {
            let mut stats: Vec<ShardStats> = Vec::new();
            for shard in &shards {
                if recovering.iter().any(|(id, _, _)| *id == shard.id()) {
                    continue;
                }
                let (num_docs, size_bytes, max_seq_no) = shard.stats();
                let failure = shard.failure();
                let role = shard.role();
                let content_checksum = if failure.is_none() {
                    shard.content_checksum().unwrap_or_default()
                } else {
                    0
                };
                stats.push(ShardStats {
                    table_id: shard.id().table.0,
                    shard: shard.id().shard,
                    num_docs,
                    size_bytes,
                    primary: role.primary,
                    max_seq_no,
                    state: if failure.is_some() {
                        "FAILED"
                    } else {
                        "STARTED"
                    }
                    .to_string(),
                    failure: failure.unwrap_or_default(),
                    allocation_id: role.allocation_id,
                    primary_term: role.primary_term,
                    content_checksum,
                    ..ShardStats::default()
                });
            }
            for (shard_id, allocation_id, progress) in recovering {
                use std::sync::atomic::Ordering::Acquire;
                stats.push(ShardStats {
                    table_id: shard_id.table.0,
                    shard: shard_id.shard,
                    state: "RECOVERING".to_string(),
                    allocation_id,
                    recovery_stage: progress.stage.lock().clone(),
                    recovery_files_done: progress.files_done.load(Acquire),
                    recovery_files_total: progress.files_total.load(Acquire),
                    recovery_bytes_done: progress.bytes_done.load(Acquire),
                    recovery_bytes_total: progress.bytes_total.load(Acquire),
                    recovery_ops: progress.operations.load(Acquire),
                    ..ShardStats::default()
                });
            }
            stats.extend(failed.into_iter().map(|(shard_id, reason)| ShardStats {
                table_id: shard_id.table.0,
                shard: shard_id.shard,
                state: "FAILED".to_string(),
                failure: reason,
                ..ShardStats::default()
            }));
            Ok(stats)
        })
        .await?;
        Ok(Response::new(ShardStatsResponse { shards: stats }))
    }

    async fn replicate_write(
        &self,
        request: Request<ReplicateRequest>,
    ) -> Result<Response<ReplicateResponse>, Status> {
        let request = request.into_inner();
        let shard_id = ShardId {
            table: TableId(request.table_id),
            shard: request.shard,
        };
        let shard = self.node.shard(shard_id)?;
        let role = shard.role();
        if role.allocation_id != request.allocation_id {
            return Err(Error::InvalidRequest(format!(
                "shard {shard_id} here is copy {}, not {}",
                role.allocation_id, request.allocation_id
            ))
            .into());
        }
        let decode = |bytes: &[u8]| {
            TranslogOp::decode(bytes)
                .map_err(|e| Status::invalid_argument(format!("undecodable operation: {e}")))
        };
        let mut ops = request
            .backlog
            .iter()
            .map(|bytes| decode(bytes))
            .collect::<Result<Vec<_>, Status>>()?;
        ops.push(decode(&request.op)?);
        let term = request.primary_term;
        let response = blocking(move || {
            match ops
                .iter()
                .try_for_each(|op| shard.apply_replicated(op, term))
            {
                Ok(()) => {}
                Err(Error::OperationGap { expected, .. }) => {
                    return Ok(ReplicateResponse {
                        gap: true,
                        next_seq_no: expected,
                        newer_term: 0,
                    })
                }
                Err(Error::StaleTerm { current, .. }) => {
                    return Ok(ReplicateResponse {
                        newer_term: current,
                        ..ReplicateResponse::default()
                    })
                }
                Err(error) => return Err(error),
            }
            if request.refresh {
                shard.refresh()?;
            }
            Ok(ReplicateResponse::default())
        })
        .await?;
        Ok(Response::new(response))
    }

    async fn start_recovery(
        &self,
        request: Request<StartRecoveryRequest>,
    ) -> Result<Response<StartRecoveryResponse>, Status> {
        let request = request.into_inner();
        let shard_id = ShardId {
            table: TableId(request.table_id),
            shard: request.shard,
        };
        let shard = self.node.shard(shard_id)?;
        let role = shard.role();
        if !role.primary {
            return Err(Error::NotPrimary { shard_id }.into());
        }
        let address = self
            .node
            .coordinator_address(&request.target_node)
            .ok_or_else(|| {
                Status::failed_precondition(format!(
                    "node {} is not in this node's cluster state yet",
                    request.target_node
                ))
            })?;
        let recovery_id = format!(
            "{}-{}-{}",
            shard_id.table.0,
            shard_id.shard,
            NEXT_RECOVERY.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let snapshot = {
            let shard = shard.clone();
            let recovery_id = recovery_id.clone();
            blocking(move || shard.recovery_snapshot(&recovery_id)).await?
        };
        let response = StartRecoveryResponse {
            recovery_id: recovery_id.clone(),
            files: snapshot
                .files
                .iter()
                .map(|(name, size, crc32)| RecoveryFile {
                    name: name.clone(),
                    size: *size,
                    crc32: *crc32,
                })
                .collect(),
            commit_seq_no: snapshot.commit_seq_no,
            primary_term: role.primary_term,
            answers: shard.recent_answers(),
        };
        let mut sessions = self.node.sessions.lock();
        // A target that vanished mid-recovery leaves its session; old ones go.
        sessions.retain(|_, session| session.created.elapsed() < SESSION_TTL);
        sessions.insert(
            recovery_id,
            SourceSession {
                snapshot,
                shard,
                target: crate::shard::copy::Peer {
                    node: creek_common::NodeId(request.target_node),
                    address,
                    allocation_id: request.target_allocation_id,
                    in_sync: false,
                },
                created: std::time::Instant::now(),
            },
        );
        Ok(Response::new(response))
    }

    async fn fetch_file_chunk(
        &self,
        request: Request<FileChunkRequest>,
    ) -> Result<Response<FileChunkResponse>, Status> {
        let request = request.into_inner();
        let path = {
            let sessions = self.node.sessions.lock();
            let session = sessions.get(&request.recovery_id).ok_or_else(|| {
                Status::not_found(format!("no recovery {} on this node", request.recovery_id))
            })?;
            // Only the files the snapshot listed are served, never a path the request makes.
            if !session
                .snapshot
                .files
                .iter()
                .any(|(name, _, _)| *name == request.name)
            {
                return Err(Status::invalid_argument(format!(
                    "{} is not a file of recovery {}",
                    request.name, request.recovery_id
                )));
            }
            session.snapshot.dir.join(&request.name)
        };
        let length = request.length.min(MAX_CHUNK_BYTES) as usize;
        let offset = request.offset;
        let data = tokio::task::spawn_blocking(move || -> std::io::Result<Vec<u8>> {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = std::fs::File::open(&path)?;
            file.seek(SeekFrom::Start(offset))?;
            let mut data = Vec::with_capacity(length);
            file.take(length as u64).read_to_end(&mut data)?;
            Ok(data)
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| Status::internal(format!("reading {}: {e}", request.name)))?;
        Ok(Response::new(FileChunkResponse { data }))
    }

    type RecoveryOpsStream = std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<RecoveryOpsResponse, Status>> + Send + 'static>,
    >;

    async fn recovery_ops(
        &self,
        request: Request<RecoveryOpsRequest>,
    ) -> Result<Response<Self::RecoveryOpsStream>, Status> {
        let recovery_id = request.into_inner().recovery_id;
        let (shard, target, after) = self.session(&recovery_id)?;
        // Under the write order: every operation up to now is in `ops`, and every later one
        // is forwarded to the target (which fills any overlap as a gap or a duplicate).
        let ops = {
            let _order = shard.replication_lock().lock().await;
            if !shard.role().primary {
                return Err(Error::NotPrimary {
                    shard_id: shard.id(),
                }
                .into());
            }
            let reader = shard.clone();
            let ops = blocking(move || reader.operations_after(after)).await?;
            shard.track(target);
            ops
        };
        let mut chunks: Vec<Vec<Vec<u8>>> = Vec::new();
        let mut chunk: Vec<Vec<u8>> = Vec::new();
        let mut bytes = 0usize;
        for op in ops {
            let encoded = op.encode_to_vec();
            bytes += encoded.len();
            chunk.push(encoded);
            if bytes >= OPS_CHUNK_BYTES {
                chunks.push(std::mem::take(&mut chunk));
                bytes = 0;
            }
        }
        if !chunk.is_empty() {
            chunks.push(chunk);
        }
        // The session (and the translog it holds) lives on until the target finishes.
        let stream = futures::stream::iter(
            chunks
                .into_iter()
                .map(|ops| Ok(RecoveryOpsResponse { ops })),
        );
        Ok(Response::new(Box::pin(stream)))
    }

    async fn finish_recovery(
        &self,
        request: Request<RecoveryOpsRequest>,
    ) -> Result<Response<ShardCopyEventResponse>, Status> {
        let recovery_id = request.into_inner().recovery_id;
        let (shard, target, _) = self.session(&recovery_id)?;
        if !shard.role().primary {
            return Err(Error::NotPrimary {
                shard_id: shard.id(),
            }
            .into());
        }
        if !shard.forwards_to(&target.allocation_id) {
            return Err(Status::failed_precondition(format!(
                "copy {} does not receive the primary's writes (it failed meanwhile)",
                target.allocation_id
            )));
        }
        // Only the primary vouches for the copy: it receives every write from now on, so
        // the leader may count it in sync.
        let report = ShardCopyEventRequest {
            table_id: shard.id().table.0,
            shard: shard.id().shard,
            allocation_id: target.allocation_id.clone(),
            primary_term: shard.primary_term(),
            started: true,
            reason: String::new(),
            forwarded: false,
        };
        let answer = self.node.cluster_client().shard_copy_event(report).await;
        self.node.sessions.lock().remove(&recovery_id);
        match answer {
            Ok(()) => Ok(Response::new(ShardCopyEventResponse::default())),
            Err(status) if status.code() == tonic::Code::FailedPrecondition => {
                Ok(Response::new(ShardCopyEventResponse {
                    state_version: 0,
                    refused: status.message().to_string(),
                }))
            }
            Err(status) => Err(status),
        }
    }
}

impl ShardServiceImpl {
    /// The primary shard, target copy and commit of recovery `recovery_id`. Fails if the
    /// recovery is unknown, or if the shard is no longer the copy this node serves (one
    /// reopened since the recovery began has lost the recovery's tracking).
    fn session(
        &self,
        recovery_id: &str,
    ) -> Result<(Arc<crate::shard::Shard>, crate::shard::copy::Peer, u64), Status> {
        let (shard, target, commit_seq_no) = {
            let sessions = self.node.sessions.lock();
            let session = sessions.get(recovery_id).ok_or_else(|| {
                Status::not_found(format!("no recovery {recovery_id} on this node"))
            })?;
            (
                session.shard.clone(),
                session.target.clone(),
                session.snapshot.commit_seq_no,
            )
        };
        let current = self.node.shard(shard.id())?;
        if !Arc::ptr_eq(&current, &shard) {
            return Err(Status::failed_precondition(format!(
                "the primary of shard {} was reopened during the recovery; recover again",
                shard.id()
            )));
        }
        Ok((shard, target, commit_seq_no))
    }
}

/// Numbers the recoveries this node serves.
static NEXT_RECOVERY: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

/// How long a recovery may take before its held files are released.
const SESSION_TTL: std::time::Duration = std::time::Duration::from_secs(6 * 3600);

/// The largest file chunk served at once.
const MAX_CHUNK_BYTES: u32 = 8 * 1024 * 1024;

/// About how many bytes of operations go in one recovery message.
const OPS_CHUNK_BYTES: usize = 4 * 1024 * 1024;

/// A write to the primary copy of a shard and its replication (see `ShardService::write`).
async fn write_to_primary(
    node: Arc<DataNode>,
    request: WriteRequest,
) -> Result<Response<WriteResponse>, Status> {
    let shard_id = ShardId {
        table: TableId(request.table_id),
        shard: request.shard,
    };
    let shard = node.shard(shard_id)?;
    if !shard.role().primary {
        return Err(Error::NotPrimary { shard_id }.into());
    }
    let mode = WriteMode::try_from(request.mode)
        .map_err(|_| Status::invalid_argument("unknown write mode"))?;
    wait_for_table_version(&shard, request.schema_version).await?;
    if request.expected_seq_nos.len() != request.expected_primary_terms.len() {
        return Err(Status::invalid_argument(
            "expected versions need a sequence number and a primary term each",
        ));
    }
    let expected: Vec<Version> = request
        .expected_seq_nos
        .iter()
        .zip(&request.expected_primary_terms)
        .map(|(seq_no, primary_term)| Version {
            seq_no: *seq_no,
            primary_term: *primary_term,
        })
        .collect();
    node.check_lease()?;
    // Held until every copy has the operation, so copies apply operations in order.
    let order = shard.replication_lock().lock().await;
    if !shard.role().primary {
        return Err(Error::NotPrimary { shard_id }.into());
    }
    let refresh = request.refresh;
    let outcome = {
        let shard = shard.clone();
        blocking(move || {
            shard.write(
                mode,
                &request.rows_ipc,
                &request.delete_ids,
                &expected,
                &request.operation_id,
            )
        })
        .await
    };
    let outcome = match outcome {
        Ok(outcome) => outcome,
        // A copy closed under the write (it moved, or this node stopped holding it) is
        // not this node's primary any more: the coordinator retries where it is now.
        Err(_)
            if node
                .shard(shard_id)
                .map_or(true, |s| !Arc::ptr_eq(&s, &shard)) =>
        {
            return Err(Error::NotPrimary { shard_id }.into())
        }
        Err(status) => return Err(status),
    };
    if let Some(op) = &outcome.op {
        crate::replication::replicate(&node.peers, &node.cluster_client(), &shard, op, refresh)
            .await?;
    }
    // Acknowledged only as the primary of the term the operation was written under (a
    // repeated one keeps the term of its first primary).
    let role = shard.role();
    let term_moved = outcome
        .op
        .as_ref()
        .is_some_and(|op| !outcome.repeated && role.primary_term != op.primary_term);
    if !role.primary || term_moved {
        return Err(Error::NotPrimary { shard_id }.into());
    }
    drop(order);
    if refresh {
        let shard = shard.clone();
        blocking(move || shard.refresh()).await?;
    }
    // A primary that lost touch with the leader may have been replaced meanwhile.
    node.check_lease()?;
    Ok(Response::new(WriteResponse {
        statuses: outcome.statuses.into_iter().map(|s| s as i32).collect(),
        max_seq_no: outcome.max_seq_no,
    }))
}
