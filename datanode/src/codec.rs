//! Decodes the leaf of a plan fragment (`ShardScanNode`) into a [`TantivyScanExec`] over the
//! shards this node holds. The data node only ever decodes fragments; encoding them is the
//! coordinator's job.

use std::fmt;
use std::sync::Arc;

use creek_common::schema::{
    TableSchema, ID_COLUMN, PRIMARY_TERM_COLUMN, SCORE_COLUMN, SEQ_NO_COLUMN,
};
use creek_common::{ShardId, TableId};
use creek_proto::v1::ShardScanNode;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_proto::bytes::Serializeable;
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use prost::Message;

use crate::node::DataNode;
use crate::scan::columns::ColumnSpec;
use crate::scan::TantivyScanExec;

/// Resolves `ShardScanNode` extension nodes against the node's open shards.
pub struct DatanodeCodec {
    node: Arc<DataNode>,
}

impl DatanodeCodec {
    /// Creates a codec bound to `node`.
    pub fn new(node: Arc<DataNode>) -> DatanodeCodec {
        DatanodeCodec { node }
    }
}

impl fmt::Debug for DatanodeCodec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DatanodeCodec")
    }
}

impl PhysicalExtensionCodec for DatanodeCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        _inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let node = ShardScanNode::decode(buf)
            .map_err(|e| DataFusionError::Plan(format!("bad shard scan node: {e}")))?;
        let table_id = TableId(node.table_id);
        // A node without the table holds none of its shards (it dropped them, or has not
        // learnt of the table yet): the same answer as for a shard that moved away.
        let table = self.node.table(table_id).ok_or_else(|| {
            DataFusionError::from(crate::error::Error::ShardNotFound {
                shard_id: ShardId {
                    table: table_id,
                    shard: node.shards.first().copied().unwrap_or_default(),
                },
            })
        })?;
        let shards = node
            .shards
            .iter()
            .map(|shard| {
                let shard_id = ShardId {
                    table: table.id,
                    shard: *shard,
                };
                self.node.shard(shard_id).map_err(DataFusionError::from)
            })
            .collect::<DfResult<Vec<_>>>()?;
        let columns = node
            .columns
            .iter()
            .map(|name| column_spec(&table, name))
            .collect::<DfResult<Vec<_>>>()?;
        let filters = node
            .filters
            .iter()
            .map(|bytes| Expr::from_bytes_with_ctx(bytes, ctx))
            .collect::<DfResult<Vec<_>>>()?;
        let scan = TantivyScanExec::new(
            table,
            shards,
            columns,
            filters,
            node.limit.map(|limit| limit as usize),
            node.realtime_ids,
            node.visible_seq_nos,
        );
        Ok(Arc::new(if node.match_spec.is_empty() {
            scan
        } else {
            let spec: creek_common::fulltext::MatchSpec = serde_json::from_str(&node.match_spec)
                .map_err(|e| DataFusionError::Plan(format!("bad MATCH in a shard scan: {e}")))?;
            crate::scan::fulltext::check_fields(&spec, scan.table())
                .map_err(|e| DataFusionError::Plan(e.to_string()))?;
            scan.with_match(spec)
        }))
    }

    fn try_encode(
        &self,
        _node: Arc<dyn ExecutionPlan>,
        _buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> DfResult<()> {
        Err(DataFusionError::Internal(
            "data nodes do not encode plan fragments".into(),
        ))
    }
}

/// Resolves an output column name to what the scan reads.
pub fn column_spec(table: &TableSchema, name: &str) -> DfResult<ColumnSpec> {
    match name {
        ID_COLUMN => Ok(ColumnSpec::Id),
        SEQ_NO_COLUMN => Ok(ColumnSpec::SeqNo),
        PRIMARY_TERM_COLUMN => Ok(ColumnSpec::PrimaryTerm),
        SCORE_COLUMN => Ok(ColumnSpec::Score),
        _ => table
            .column(name)
            .map(|column| ColumnSpec::Table {
                name: column.name.clone(),
                column_type: column.column_type.clone(),
                index: column.index,
            })
            .ok_or_else(|| {
                DataFusionError::Plan(format!("column {name} does not exist in {}", table.name))
            }),
    }
}
