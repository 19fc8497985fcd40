//! Document ids and shard routing of rows. A row's `_id` is its primary key in canonical text
//! form (a JSON array for composite keys), or a generated id; its shard is the hash of the
//! `CLUSTERED BY` value, or of the `_id`. Inserts and primary-key lookups must compute the
//! same text for the same value, so both go through [`array_key_texts`] / [`scalar_to_key_text`].

use creek_common::error::ErrorCode;
use creek_common::routing::shard_for_key;
use creek_common::schema::TableSchema;
use datafusion::arrow::array::{Array, ArrayRef};
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
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

/// Returns the canonical text of every value of `array` (`None` for nulls).
pub fn array_key_texts(array: &ArrayRef) -> Result<Vec<Option<String>>> {
    let options = FormatOptions::default();
    let formatter = ArrayFormatter::try_new(array.as_ref(), &options)
        .map_err(|e| Error::new(ErrorCode::Internal, e.to_string()))?;
    Ok((0..array.len())
        .map(|row| (!array.is_null(row)).then(|| formatter.value(row).to_string()))
        .collect())
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
            ids.push(id_for_key_values(&texts));
        }
        ids
    };
    let shards = match &table.clustered_by {
        Some(column) if !table.primary_key.is_empty() || batch.column_by_name(column).is_some() => {
            let array = batch.column_by_name(column).ok_or_else(|| {
                Error::new(
                    ErrorCode::Internal,
                    format!("routing column {column} missing"),
                )
            })?;
            let texts = array_key_texts(array)?;
            texts
                .into_iter()
                .zip(&ids)
                .map(|(text, id)| shard_for_key(text.as_deref().unwrap_or(id), table.num_shards))
                .collect()
        }
        _ => ids
            .iter()
            .map(|id| shard_for_key(id, table.num_shards))
            .collect(),
    };
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
