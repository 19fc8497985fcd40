//! CrateDB's JSON value conventions: timestamps as epoch milliseconds and numeric type ids for
//! `?types`.

use std::sync::Arc;

use datafusion::arrow::array::{ArrayRef, Int64Array, TimestampMicrosecondArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::RecordBatch;

/// Replaces timestamp columns by epoch milliseconds (Int64), as CrateDB answers them.
pub fn epoch_millis(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if let DataType::Timestamp(_, _) = field.data_type() {
            let micros = datafusion::arrow::compute::cast(
                column,
                &DataType::Timestamp(TimeUnit::Microsecond, None),
            )?;
            let micros = micros
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("cast to microseconds");
            let millis: Int64Array = micros
                .iter()
                .map(|v| v.map(|v| v.div_euclid(1000)))
                .collect();
            fields.push(Field::new(field.name(), DataType::Int64, true));
            columns.push(Arc::new(millis));
        } else {
            fields.push(field.as_ref().clone());
            columns.push(column.clone());
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

/// Returns CrateDB's type id for `?types`.
pub fn crate_type_id(data_type: &DataType) -> serde_json::Value {
    let id = match data_type {
        DataType::Null => 0,
        DataType::Boolean => 3,
        DataType::Int8 | DataType::Int16 => 8,
        DataType::Int32 => 9,
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => 10,
        DataType::Float32 => 7,
        DataType::Float64 => 6,
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => 4,
        DataType::Timestamp(_, Some(_)) => 11,
        DataType::Timestamp(_, None) => 15,
        DataType::Date32 | DataType::Date64 => 24,
        DataType::Decimal128(..) => 22,
        DataType::List(inner) => return serde_json::json!([100, crate_type_id(inner.data_type())]),
        _ => 4,
    };
    serde_json::json!(id)
}
