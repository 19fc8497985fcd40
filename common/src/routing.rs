//! Maps a row's routing key to its shard, and key values to their canonical text.
//!
//! Neither may ever change once data is written: a different text or hash would send lookups
//! for existing rows to the wrong shard and make the same key two documents. The hash is a
//! fixed FNV-1a; the text is Creek's own encoding of each key type ([`key_texts`]), written
//! here rather than borrowed from a display formatter whose output a library upgrade could
//! change. Both are pinned by tests.

use chrono::DateTime;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};

use crate::error::{CodedError, ErrorCode};

/// Returns the canonical text of every value of `array` (`None` for NULL): the text a key
/// value is identified and routed by.
///
/// Integers are decimal; booleans `true`/`false`; text is itself; decimals are the exact
/// digits with the column's scale (`12.50`); floats the shortest digits that read back
/// exactly, with `-0` taken as `0` since SQL compares them equal; dates `YYYY-MM-DD`;
/// timestamps ISO 8601 with the fraction only as far as it is non-zero and `+00:00` for
/// `with time zone` (`2024-01-02T03:04:05.123+00:00`).
pub fn key_texts(array: &dyn Array) -> Result<Vec<Option<String>>, CodedError> {
    let rows = 0..array.len();
    let valid = |row: usize| array.is_valid(row);
    macro_rules! each {
        ($convert:expr) => {
            rows.map(|row| valid(row).then(|| $convert(row))).collect()
        };
    }
    Ok(match array.data_type() {
        DataType::Boolean => each!(|row| array.as_boolean().value(row).to_string()),
        DataType::Int8 => each!(|row| array.as_primitive::<Int8Type>().value(row).to_string()),
        DataType::Int16 => each!(|row| array.as_primitive::<Int16Type>().value(row).to_string()),
        DataType::Int32 => each!(|row| array.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => each!(|row| array.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::UInt8 => each!(|row| array.as_primitive::<UInt8Type>().value(row).to_string()),
        DataType::UInt16 => each!(|row| array.as_primitive::<UInt16Type>().value(row).to_string()),
        DataType::UInt32 => each!(|row| array.as_primitive::<UInt32Type>().value(row).to_string()),
        DataType::UInt64 => each!(|row| array.as_primitive::<UInt64Type>().value(row).to_string()),
        DataType::Float32 => {
            each!(|row| float_text(f64::from(array.as_primitive::<Float32Type>().value(row))))
        }
        DataType::Float64 => {
            each!(|row| float_text(array.as_primitive::<Float64Type>().value(row)))
        }
        DataType::Decimal128(_, scale) => {
            let scale = *scale;
            each!(|row| decimal_text(array.as_primitive::<Decimal128Type>().value(row), scale))
        }
        DataType::Utf8 => each!(|row| array.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => each!(|row| array.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => each!(|row| array.as_string_view().value(row).to_string()),
        DataType::Date32 => {
            let dates = array.as_primitive::<Date32Type>();
            let mut texts = Vec::with_capacity(array.len());
            for row in rows {
                texts.push(if valid(row) {
                    Some(date_text(dates.value(row)).ok_or_else(|| out_of_range("date"))?)
                } else {
                    None
                });
            }
            texts
        }
        DataType::Timestamp(unit, zone) => {
            let micros = |row: usize| -> i64 {
                match unit {
                    TimeUnit::Second => array
                        .as_primitive::<TimestampSecondType>()
                        .value(row)
                        .saturating_mul(1_000_000),
                    TimeUnit::Millisecond => array
                        .as_primitive::<TimestampMillisecondType>()
                        .value(row)
                        .saturating_mul(1_000),
                    TimeUnit::Microsecond => {
                        array.as_primitive::<TimestampMicrosecondType>().value(row)
                    }
                    TimeUnit::Nanosecond => array
                        .as_primitive::<TimestampNanosecondType>()
                        .value(row)
                        .div_euclid(1_000),
                }
            };
            let mut texts = Vec::with_capacity(array.len());
            for row in rows {
                texts.push(if valid(row) {
                    Some(
                        timestamp_text(micros(row), zone.is_some())
                            .ok_or_else(|| out_of_range("timestamp"))?,
                    )
                } else {
                    None
                });
            }
            texts
        }
        other => {
            return Err(CodedError::new(
                ErrorCode::FeatureNotSupported,
                format!("values of type {other} cannot be a primary key or routing key"),
            ))
        }
    })
}

fn out_of_range(what: &str) -> CodedError {
    CodedError::new(ErrorCode::DatetimeOverflow, format!("{what} out of range"))
}

fn float_text(value: f64) -> String {
    if value == 0.0 {
        // -0 and 0 are one key.
        return "0".to_string();
    }
    if value.is_nan() {
        return "NaN".to_string();
    }
    // Shortest digits that read back exactly (`1.5`, `1e20`, `inf`).
    format!("{value:?}")
}

fn decimal_text(mantissa: i128, scale: i8) -> String {
    if scale <= 0 {
        let factor = 10i128.checked_pow(u32::from(scale.unsigned_abs()));
        return match factor.and_then(|f| mantissa.checked_mul(f)) {
            Some(value) => value.to_string(),
            None => format!("{mantissa}e{}", -i32::from(scale)),
        };
    }
    let digits = mantissa.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = if digits.len() <= scale {
        format!("{}{digits}", "0".repeat(scale + 1 - digits.len()))
    } else {
        digits
    };
    let (integer, fraction) = padded.split_at(padded.len() - scale);
    let sign = if mantissa < 0 { "-" } else { "" };
    format!("{sign}{integer}.{fraction}")
}

fn date_text(days: i32) -> Option<String> {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
    let date = epoch.checked_add_signed(chrono::Duration::try_days(i64::from(days))?)?;
    Some(date.format("%Y-%m-%d").to_string())
}

fn timestamp_text(micros: i64, with_zone: bool) -> Option<String> {
    let timestamp = DateTime::from_timestamp_micros(micros)?.naive_utc();
    let mut text = timestamp.format("%Y-%m-%dT%H:%M:%S%.f").to_string();
    if with_zone {
        text.push_str("+00:00");
    }
    Some(text)
}

/// Returns the shard number, in `0..num_shards`, that owns `routing_key`.
pub fn shard_for_key(routing_key: &str, num_shards: u32) -> u32 {
    debug_assert!(num_shards > 0, "a table has at least one shard");
    (fnv1a64(routing_key.as_bytes()) % u64::from(num_shards.max(1))) as u32
}

/// FNV-1a, 64 bit: stable across versions and platforms, so it may name things on disk and in
/// catalogs.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_is_stable_across_releases() {
        // Pinned values: changing them would orphan existing rows.
        assert_eq!(shard_for_key("1", 4), (fnv1a64(b"1") % 4) as u32);
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn key_texts_are_pinned() {
        use std::sync::Arc;

        use datafusion::arrow::array::{
            ArrayRef, BooleanArray, Date32Array, Decimal128Array, Float64Array, Int32Array,
            Int64Array, StringArray, TimestampMicrosecondArray,
        };

        // Changing any of these texts, or the shards they hash to, would orphan stored rows.
        let cases: Vec<(ArrayRef, &str, u32)> = vec![
            (Arc::new(Int64Array::from(vec![-42])), "-42", 4),
            (Arc::new(Int32Array::from(vec![7])), "7", 2),
            (Arc::new(BooleanArray::from(vec![true])), "true", 3),
            (Arc::new(StringArray::from(vec!["héllo"])), "héllo", 4),
            (Arc::new(Float64Array::from(vec![1.5])), "1.5", 1),
            (Arc::new(Float64Array::from(vec![-0.0])), "0", 4),
            (Arc::new(Float64Array::from(vec![1e20])), "1e20", 0),
            (
                Arc::new(
                    Decimal128Array::from(vec![-1250])
                        .with_precision_and_scale(10, 2)
                        .unwrap(),
                ),
                "-12.50",
                1,
            ),
            (
                Arc::new(
                    Decimal128Array::from(vec![5])
                        .with_precision_and_scale(10, 3)
                        .unwrap(),
                ),
                "0.005",
                4,
            ),
            (Arc::new(Date32Array::from(vec![19724])), "2024-01-02", 0),
            (
                Arc::new(TimestampMicrosecondArray::from(vec![1_704_164_645_123_000])),
                "2024-01-02T03:04:05.123",
                2,
            ),
            (
                Arc::new(
                    TimestampMicrosecondArray::from(vec![1_704_164_645_000_000])
                        .with_timezone("+00:00"),
                ),
                "2024-01-02T03:04:05+00:00",
                1,
            ),
        ];
        for (array, text, shard) in cases {
            let texts = key_texts(array.as_ref()).unwrap();
            assert_eq!(
                texts,
                vec![Some(text.to_string())],
                "{:?}",
                array.data_type()
            );
            assert_eq!(shard_for_key(text, 7), shard, "{text}");
        }
        let with_null: ArrayRef = Arc::new(Int64Array::from(vec![Some(1), None]));
        assert_eq!(
            key_texts(with_null.as_ref()).unwrap(),
            vec![Some("1".into()), None]
        );
    }

    #[test]
    fn every_key_lands_in_range() {
        for key in 0..1000 {
            assert!(shard_for_key(&key.to_string(), 7) < 7);
        }
    }
}
