//! `ShardService` on the data node: durable writes, refresh, real-time get and statistics (which
//! shards exist follows cluster state, see `membership`). Every storage call runs on the blocking pool, never on a tokio worker.

use std::sync::Arc;

use creek_common::schema::ID_COLUMN;
use creek_common::{ShardId, TableId};
use creek_proto::ipc::batch_to_ipc;
use creek_proto::v1::shard_service_server::ShardService;
use creek_proto::v1::{
    GetRequest, GetResponse, RefreshRequest, RefreshResponse, ShardStats, ShardStatsRequest,
    ShardStatsResponse, WriteMode, WriteRequest, WriteResponse,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::logical_expr::{col, lit};
use datafusion::physical_plan::{collect, ExecutionPlan};
use datafusion::prelude::SessionContext;
use tonic::{Request, Response, Status};

use crate::codec::column_spec;
use crate::error::Error;
use crate::flight::status_from_datafusion;
use crate::node::DataNode;
use crate::scan::TantivyScanExec;
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
        let request = request.into_inner();
        let shard = self.node.shard(ShardId {
            table: TableId(request.table_id),
            shard: request.shard,
        })?;
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
        let outcome = blocking(move || {
            let outcome = shard.write(mode, &request.rows_ipc, &request.delete_ids, &expected)?;
            if request.refresh {
                shard.refresh()?;
            }
            Ok(outcome)
        })
        .await?;
        Ok(Response::new(WriteResponse {
            statuses: outcome.statuses.into_iter().map(|s| s as i32).collect(),
            max_seq_no: outcome.max_seq_no,
        }))
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
        let filter = col(ID_COLUMN).in_list(
            request.ids.iter().map(|id| lit(id.clone())).collect(),
            false,
        );
        let scan = Arc::new(TantivyScanExec::new(
            table,
            vec![shard],
            columns,
            vec![filter],
            None,
            request.ids.clone(),
        ));
        let schema = scan.schema();
        let batches = collect(scan, SessionContext::new().task_ctx())
            .await
            .map_err(status_from_datafusion)?;
        let batch =
            concat_batches(&schema, &batches).map_err(|e| Status::internal(e.to_string()))?;
        let rows_ipc = batch_to_ipc(&batch).map_err(|e| Status::internal(e.to_string()))?;
        Ok(Response::new(GetResponse { rows_ipc }))
    }

    async fn shard_stats(
        &self,
        _request: Request<ShardStatsRequest>,
    ) -> Result<Response<ShardStatsResponse>, Status> {
        let shards = self.node.shards();
        let failed = self.node.failed_shards();
        let stats = blocking(move || {
            let mut stats: Vec<ShardStats> = shards
                .iter()
                .map(|shard| {
                    let (num_docs, size_bytes, max_seq_no) = shard.stats();
                    let failure = shard.failure();
                    ShardStats {
                        table_id: shard.id().table.0,
                        shard: shard.id().shard,
                        num_docs,
                        size_bytes,
                        primary: true,
                        max_seq_no,
                        state: if failure.is_some() {
                            "FAILED"
                        } else {
                            "STARTED"
                        }
                        .to_string(),
                        failure: failure.unwrap_or_default(),
                    }
                })
                .collect();
            stats.extend(failed.into_iter().map(|(shard_id, reason)| ShardStats {
                table_id: shard_id.table.0,
                shard: shard_id.shard,
                primary: true,
                state: "FAILED".to_string(),
                failure: reason,
                ..ShardStats::default()
            }));
            Ok(stats)
        })
        .await?;
        Ok(Response::new(ShardStatsResponse { shards: stats }))
    }
}
