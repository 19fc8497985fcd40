//! Arrow IPC framing for record batches carried inside protobuf `bytes` fields.

use datafusion::arrow::error::ArrowError;
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::arrow::ipc::writer::StreamWriter;
use datafusion::arrow::record_batch::RecordBatch;

/// Encodes one batch as an Arrow IPC stream.
pub fn batch_to_ipc(batch: &RecordBatch) -> Result<Vec<u8>, ArrowError> {
    let mut buffer = Vec::new();
    {
        let mut writer = StreamWriter::try_new(&mut buffer, batch.schema_ref())?;
        writer.write(batch)?;
        writer.finish()?;
    }
    Ok(buffer)
}

/// Decodes an Arrow IPC stream into one batch (concatenating if the stream holds several).
pub fn batch_from_ipc(bytes: &[u8]) -> Result<RecordBatch, ArrowError> {
    let reader = StreamReader::try_new(bytes, None)?;
    let schema = reader.schema();
    let batches = reader.collect::<Result<Vec<_>, _>>()?;
    datafusion::arrow::compute::concat_batches(&schema, &batches)
}
