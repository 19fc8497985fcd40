//! Document ids and shard routing of rows. A row's `_id` is its primary key in canonical text
//! form (a JSON array for composite keys), or a generated id; its shard is the hash of the
//! `CLUSTERED BY` value, or of the `_id`. Inserts and primary-key lookups must compute the
//! same text for the same value, so both go through [`array_key_texts`] / [`scalar_to_key_text`],
//! and every row's shard comes from [`shard_of`].

use creek_common::error::ErrorCode;
use creek_common::partition::PartitionDef;
use creek_common::routing::{key_texts, shard_for_key};
use creek_common::schema::{TableSchema, MAX_TERM_BYTES};
use datafusion::arrow::array::ArrayRef;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;

use crate::error::{Error, Result};

/// Returns the `_id` of a row from its primary-key value texts.
pub fn id_for_key_values(texts: &[String]) -> String {
    if texts.len() == 1 {
        texts[0].clone()
    } else {
        serde_json::to_string(texts).expect("strings serialise")
    }
}

/// Returns the canonical text of every value of `array` (`None` for nulls), Creek's own key
/// encoding (`creek_common::routing::key_texts`).
pub fn array_key_texts(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    Ok(key_texts(array.as_ref())?)
}

/// The shard of a row: the hash of its `CLUSTERED BY` value when the table has one and the
/// row's value is not NULL, otherwise of its `_id`, among the shards of the row's partition
/// (of a partitioned table) or of the table. The one routing rule: inserts, updates, deletes
/// and key lookups all call it.
pub fn shard_of(
    table: &TableSchema,
    partition: Option<&PartitionDef>,
    id: &str,
    routing_value: Option<&str>,
) -> u32 {
    let key = match (&table.clustered_by, routing_value) {
        (Some(_), Some(value)) => value,
        _ => id,
    };
    match partition {
        Some(partition) => partition.first_shard + shard_for_key(key, partition.num_shards),
        None => shard_for_key(key, table.num_shards),
    }
}

/// The partition of every row of `batch` (`None` for all rows of a table without
/// partitions).
pub fn partitions_of_rows<'a>(
    table: &'a TableSchema,
    batch: &RecordBatch,
) -> Result<Vec<Option<&'a PartitionDef>>> {
    if table.is_partitioned() {
        Ok(super::partitions::row_partitions(table, batch)?
            .into_iter()
            .map(Some)
            .collect())
    } else {
        Ok(vec![None; batch.num_rows()])
    }
}

/// The canonical `CLUSTERED BY` value text of every row of `batch` (all `None` when the table
/// has no routing column or the batch lacks it).
pub fn routing_values(table: &TableSchema, batch: &RecordBatch) -> Result<Vec<Option<String>>> {
    match table
        .clustered_by
        .as_ref()
        .and_then(|column| batch.column_by_name(column))
    {
        Some(array) => array_key_texts(array),
        None => Ok(vec![None; batch.num_rows()]),
    }
}

/// Returns the canonical text of `value` after casting it to the key column's type.
pub fn scalar_to_key_text(value: &ScalarValue, target: &DataType) -> Option<String> {
    let value = if &value.data_type() == target {
        value.clone()
    } else {
        value.cast_to(target).ok()?
    };
    let array = value.to_array().ok()?;
    array_key_texts(&array).ok()?.into_iter().next().flatten()
}

/// Computes `_id` and shard for every row of `batch` (which has the table's columns).
/// Rows of tables without a primary key get fresh generated ids.
pub fn ids_and_shards(table: &TableSchema, batch: &RecordBatch) -> Result<(Vec<String>, Vec<u32>)> {
    let rows = batch.num_rows();
    let ids: Vec<String> = if table.primary_key.is_empty() {
        (0..rows).map(|_| generated_id()).collect()
    } else {
        let mut key_columns = Vec::with_capacity(table.primary_key.len());
        for key in &table.primary_key {
            let array = batch.column_by_name(key).ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("primary key column {key} missing from row batch"),
                )
            })?;
            key_columns.push(array_key_texts(array)?);
        }
        let mut ids = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut texts = Vec::with_capacity(key_columns.len());
            for (column, key) in key_columns.iter().zip(&table.primary_key) {
                match &column[row] {
                    Some(text) => texts.push(text.clone()),
                    None => {
                        return Err(Error::new(
                            ErrorCode::NotNullViolation,
                            format!("primary key column \"{key}\" must not be null"),
                        ))
                    }
                }
            }
            let id = id_for_key_values(&texts);
            if id.len() > MAX_TERM_BYTES {
                return Err(Error::new(
                    ErrorCode::ProgramLimitExceeded,
                    format!(
                        "primary key of {} bytes is too long: a key holds at most {MAX_TERM_BYTES} bytes",
                        id.len()
                    ),
                ));
            }
            ids.push(id);
        }
        ids
    };
    if table.clustered_by.is_some()
        && !table.primary_key.is_empty()
        && table
            .clustered_by
            .as_ref()
            .is_some_and(|column| batch.column_by_name(column).is_none())
    {
        return Err(Error::new(
            ErrorCode::Internal,
            "routing column missing from row batch",
        ));
    }
    let values = routing_values(table, batch)?;
    let partitions = partitions_of_rows(table, batch)?;
    let shards = ids
        .iter()
        .zip(&values)
        .zip(partitions)
        .map(|((id, value), partition)| shard_of(table, partition, id, value.as_deref()))
        .collect();
    Ok((ids, shards))
}

fn generated_id() -> String {
    // 22 characters of base64url from a random v4 UUID, like CrateDB's generated ids.
    let bytes = uuid::Uuid::new_v4().into_bytes();
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    let mut buffer: u32 = 0;
    let mut bits = 0;
    for byte in bytes {
        buffer = (buffer << 8) | u32::from(byte);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((buffer >> bits) & 0x3f) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (6 - bits)) & 0x3f) as usize] as char);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    use datafusion::arrow::array::Int64Array;

    #[test]
    fn scalar_and_array_texts_agree() {
        let array: ArrayRef = Arc::new(Int64Array::from(vec![Some(42), None]));
        let texts = array_key_texts(&array).unwrap();
        assert_eq!(texts, vec![Some("42".to_string()), None]);
        assert_eq!(
            scalar_to_key_text(&ScalarValue::Int32(Some(42)), &DataType::Int64),
            Some("42".to_string())
        );
        assert_eq!(
            scalar_to_key_text(&ScalarValue::Utf8(Some("42".into())), &DataType::Int64),
            Some("42".to_string())
        );
    }

    #[test]
    fn composite_ids_are_json_arrays() {
        assert_eq!(id_for_key_values(&["a".into(), "1".into()]), r#"["a","1"]"#);
        assert_eq!(id_for_key_values(&["a".into()]), "a");
        assert_eq!(generated_id().len(), 22);
    }
}
