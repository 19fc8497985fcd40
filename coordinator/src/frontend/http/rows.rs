//! Result rows as CrateDB's JSON (`"rows": [[...], ...]`), written by column position straight
//! from Arrow arrays: two columns of one name (`SELECT a.id, b.id`) stay two values. Values
//! follow CrateDB's conventions: timestamps and dates as epoch milliseconds, arrays as JSON
//! arrays, floats as PostgreSQL prints them (`1e+20`) with `NaN` and the infinities as
//! strings, which JSON numbers cannot hold.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{
    DataType, Date32Type, Date64Type, Float16Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, TimestampMillisecondType,
    TimestampNanosecondType, TimestampSecondType, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::frontend::float_text::{float4_text, float8_text};

const MILLIS_PER_DAY: i64 = 86_400_000;

/// Appends every row of `batch` to `out` as `[v1,v2,...]`, each preceded by a comma unless it
/// is the very first row written (`first_row` tracks that across batches).
pub fn write_rows(out: &mut Vec<u8>, batch: &RecordBatch, first_row: &mut bool) {
    let schema = batch.schema();
    // Shapes are GeoJSON text, written as the objects they are.
    let shapes: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| creek_common::geo::is_shape_field(f))
        .collect();
    for row in 0..batch.num_rows() {
        if !*first_row {
            out.push(b',');
        }
        *first_row = false;
        out.push(b'[');
        for (index, column) in batch.columns().iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            // Only text that is JSON goes out raw: a marker that reached other text (a UNION
            // with a text column) must not break the response.
            match column.as_string_opt::<i32>() {
                Some(texts)
                    if shapes[index]
                        && texts.is_valid(row)
                        && serde_json::from_str::<serde::de::IgnoredAny>(texts.value(row))
                            .is_ok() =>
                {
                    out.extend_from_slice(texts.value(row).as_bytes())
                }
                _ => write_value(out, column.as_ref(), row),
            }
        }
        out.push(b']');
    }
}

fn write_str(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to a Vec cannot fail");
}

fn write_float_text(out: &mut Vec<u8>, text: String) {
    // Finite values are valid JSON numbers in PostgreSQL's form; the others only as strings.
    if text == "NaN" || text.ends_with("Infinity") {
        write_str(out, &text);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

fn write_display(out: &mut Vec<u8>, value: impl std::fmt::Display) {
    use std::io::Write;
    write!(out, "{value}").expect("writing to a Vec cannot fail");
}

/// Writes the value at `row` of `array` as JSON.
fn write_value(out: &mut Vec<u8>, array: &dyn Array, row: usize) {
    if array.is_null(row) || array.data_type() == &DataType::Null {
        out.extend_from_slice(b"null");
        return;
    }
    match array.data_type() {
        DataType::Boolean => {
            let value = array.as_boolean().value(row);
            out.extend_from_slice(if value { b"true" } else { b"false" });
        }
        DataType::Int8 => write_display(out, array.as_primitive::<Int8Type>().value(row)),
        DataType::Int16 => write_display(out, array.as_primitive::<Int16Type>().value(row)),
        DataType::Int32 => write_display(out, array.as_primitive::<Int32Type>().value(row)),
        DataType::Int64 => write_display(out, array.as_primitive::<Int64Type>().value(row)),
        DataType::UInt8 => write_display(out, array.as_primitive::<UInt8Type>().value(row)),
        DataType::UInt16 => write_display(out, array.as_primitive::<UInt16Type>().value(row)),
        DataType::UInt32 => write_display(out, array.as_primitive::<UInt32Type>().value(row)),
        DataType::UInt64 => write_display(out, array.as_primitive::<UInt64Type>().value(row)),
        DataType::Float16 => {
            let value = array.as_primitive::<Float16Type>().value(row).to_f32();
            write_float_text(out, float4_text(value, 1));
        }
        DataType::Float32 => write_float_text(
            out,
            float4_text(array.as_primitive::<Float32Type>().value(row), 1),
        ),
        DataType::Float64 => write_float_text(
            out,
            float8_text(array.as_primitive::<Float64Type>().value(row), 1),
        ),
        DataType::Utf8 => write_str(out, array.as_string::<i32>().value(row)),
        DataType::LargeUtf8 => write_str(out, array.as_string::<i64>().value(row)),
        DataType::Utf8View => write_str(out, array.as_string_view().value(row)),
        DataType::Timestamp(unit, _) => {
            let millis = match unit {
                TimeUnit::Second => array
                    .as_primitive::<TimestampSecondType>()
                    .value(row)
                    .saturating_mul(1000),
                TimeUnit::Millisecond => {
                    array.as_primitive::<TimestampMillisecondType>().value(row)
                }
                TimeUnit::Microsecond => array
                    .as_primitive::<TimestampMicrosecondType>()
                    .value(row)
                    .div_euclid(1000),
                TimeUnit::Nanosecond => array
                    .as_primitive::<TimestampNanosecondType>()
                    .value(row)
                    .div_euclid(1_000_000),
            };
            write_display(out, millis);
        }
        DataType::Date32 => {
            let days = i64::from(array.as_primitive::<Date32Type>().value(row));
            write_display(out, days * MILLIS_PER_DAY);
        }
        DataType::Date64 => write_display(out, array.as_primitive::<Date64Type>().value(row)),
        DataType::Decimal128(..) | DataType::Decimal256(..) => {
            // Decimals print exactly, as JSON numbers (CrateDB writes BigDecimal so).
            write_formatted(out, array, row, false);
        }
        DataType::List(_) => write_list(out, array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => write_list(out, array.as_list::<i64>().value(row).as_ref()),
        DataType::FixedSizeList(..) => {
            write_list(out, array.as_fixed_size_list().value(row).as_ref())
        }
        DataType::Struct(_) => {
            // An IGNORED object's other keys are merged in by the one JSON rendering.
            let value = creek_common::object::value_to_json(array, row);
            // Serialising a `Value` into memory cannot fail.
            serde_json::to_writer(&mut *out, &value).expect("JSON into a vector");
        }
        _ => write_formatted(out, array, row, true),
    }
}

fn write_list(out: &mut Vec<u8>, values: &dyn Array) {
    out.push(b'[');
    for index in 0..values.len() {
        if index > 0 {
            out.push(b',');
        }
        write_value(out, values, index);
    }
    out.push(b']');
}

/// Writes Arrow's display text of a value: as a JSON string, or bare for a decimal.
fn write_formatted(out: &mut Vec<u8>, array: &dyn Array, row: usize, quoted: bool) {
    let options = FormatOptions::default();
    let text = match ArrayFormatter::try_new(array, &options) {
        Ok(formatter) => formatter.value(row).to_string(),
        Err(_) => String::new(),
    };
    if quoted || text.is_empty() {
        write_str(out, &text);
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

/// Returns CrateDB's type id of a result column for `?types`.
pub fn crate_field_type_id(field: &datafusion::arrow::datatypes::Field) -> serde_json::Value {
    if creek_common::geo::is_shape_field(field) {
        return serde_json::json!(14);
    }
    crate_type_id(field.data_type())
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
        data_type if creek_common::geo::is_point_type(data_type) => 13,
        DataType::Struct(_) => 12,
        DataType::List(inner) => return serde_json::json!([100, crate_type_id(inner.data_type())]),
        _ => 4,
    };
    serde_json::json!(id)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::array::{
        ArrayRef, Date32Array, Float64Array, Int64Array, ListArray, StringArray,
        TimestampMicrosecondArray,
    };
    use datafusion::arrow::datatypes::{Field, Schema};

    use super::*;

    #[test]
    fn rows_are_written_by_position() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("id", DataType::Int64, true),
            Field::new("f", DataType::Float64, true),
            Field::new("s", DataType::Utf8, true),
            Field::new("ts", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new("d", DataType::Date32, true),
            Field::new(
                "l",
                DataType::List(Arc::new(Field::new("item", DataType::Int64, true))),
                true,
            ),
        ]));
        let list = ListArray::from_iter_primitive::<Int64Type, _, _>(vec![
            Some(vec![Some(1), None]),
            None,
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int64Array::from(vec![1, 2])),
            Arc::new(Int64Array::from(vec![10, 20])),
            Arc::new(Float64Array::from(vec![1e20, f64::NAN])),
            Arc::new(StringArray::from(vec![Some("a\"b"), None])),
            Arc::new(TimestampMicrosecondArray::from(vec![
                1_704_164_645_123_456,
                -1,
            ])),
            Arc::new(Date32Array::from(vec![1, -1])),
            Arc::new(list),
        ];
        let batch = RecordBatch::try_new(schema, columns).unwrap();
        let mut out = Vec::new();
        let mut first = true;
        write_rows(&mut out, &batch, &mut first);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"[1,10,1e+20,"a\"b",1704164645123,86400000,[1,null]],[2,20,"NaN",null,-1,-86400000,null]"#
        );
    }
}
