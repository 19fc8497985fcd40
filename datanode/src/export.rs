//! COPY TO DIRECTORY on a data node: the visible rows of one shard copy, read by the same
//! scan as a query's, written as JSON lines to one object (`file://` or `s3://`) through
//! `object_store`, in multipart chunks so memory stays at a batch however large the shard.
//!
//! It writes only the file it is asked for; which shards go where is the coordinator's
//! (`sql/copy/export.rs`). A file that fails part way is aborted, not left half written.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::{CodedError, ErrorCode};
use creek_common::object_uri;
use creek_common::ShardId;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::ExecutionPlan;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::path::Path as StorePath;
use tokio::io::AsyncWriteExt;

use crate::codec::column_spec;
use crate::node::DataNode;
use crate::scan::TantivyScanExec;

fn failed(uri: &str, error: impl std::fmt::Display) -> CodedError {
    CodedError::new(
        ErrorCode::Unavailable,
        format!("cannot write {uri}: {error}"),
    )
}

/// Appends one JSON object per row of `batch` to `out`, NULLs left out: objects as objects
/// (an IGNORED object's other keys merged in), shapes as GeoJSON objects, points as
/// `[lon, lat]`, as COPY FROM reads them back.
fn write_json_lines(
    batch: &RecordBatch,
    shapes: &[String],
    out: &mut Vec<u8>,
) -> serde_json::Result<()> {
    let schema = batch.schema();
    for row in 0..batch.num_rows() {
        let mut line = serde_json::Map::new();
        for (field, column) in schema.fields().iter().zip(batch.columns()) {
            let value = creek_common::object::value_to_json(column.as_ref(), row);
            let value = match value {
                serde_json::Value::Null => continue,
                serde_json::Value::String(text) if shapes.contains(field.name()) => {
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
                }
                value => value,
            };
            line.insert(field.name().clone(), value);
        }
        serde_json::to_writer(&mut *out, &serde_json::Value::Object(line))?;
        out.push(b'\n');
    }
    Ok(())
}

/// Writes `columns` of every visible row of `shard` to `uri`; returns (rows, bytes).
pub async fn export_shard(
    node: &DataNode,
    shard_id: ShardId,
    columns: &[String],
    uri: &str,
    s3: &BTreeMap<String, String>,
) -> Result<(u64, u64), CodedError> {
    let shard = node
        .shard(shard_id)
        .map_err(|e| CodedError::new(ErrorCode::Unavailable, e.to_string()))?;
    let table = shard.table();
    let specs = columns
        .iter()
        .map(|name| column_spec(&table, name))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CodedError::from_datafusion(&e))?;
    let shapes: Vec<String> = columns
        .iter()
        .filter(|name| {
            table
                .column(name)
                .is_some_and(|c| c.column_type == creek_common::types::ColumnType::GeoShape)
        })
        .cloned()
        .collect();
    let (store, path) = object_uri::store_for(uri, s3)?;
    let scan = TantivyScanExec::new(
        table.clone(),
        vec![shard],
        specs,
        Vec::new(),
        None,
        Vec::new(),
        Vec::new(),
    );
    let mut batches = scan
        .execute(0, Arc::new(TaskContext::default()))
        .map_err(|e| CodedError::from_datafusion(&e))?;
    let mut writer = BufWriter::new(store, StorePath::from(path));
    let mut rows = 0u64;
    let mut bytes = 0u64;
    let mut buffer = Vec::new();
    let outcome: Result<(), CodedError> = async {
        while let Some(batch) = batches.next().await {
            let batch = batch.map_err(|e| CodedError::from_datafusion(&e))?;
            buffer.clear();
            write_json_lines(&batch, &shapes, &mut buffer).map_err(|e| failed(uri, e))?;
            writer
                .write_all(&buffer)
                .await
                .map_err(|e| failed(uri, e))?;
            rows += batch.num_rows() as u64;
            bytes += buffer.len() as u64;
        }
        writer.shutdown().await.map_err(|e| failed(uri, e))
    }
    .await;
    if let Err(error) = outcome {
        let _ = writer.abort().await;
        return Err(error);
    }
    Ok((rows, bytes))
}
