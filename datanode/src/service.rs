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
        let outcome = blocking(move || {
            let outcome = shard.write(mode, &request.rows_ipc, &request.delete_ids)?;
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
        let stats = blocking(move || {
            Ok(shards
                .iter()
                .map(|shard| {
                    let (num_docs, size_bytes, max_seq_no) = shard.stats();
                    ShardStats {
                        table_id: shard.id().table.0,
                        shard: shard.id().shard,
                        num_docs,
                        size_bytes,
                        primary: true,
                        max_seq_no,
                    }
                })
                .collect())
        })
        .await?;
        Ok(Response::new(ShardStatsResponse { shards: stats }))
    }
}
