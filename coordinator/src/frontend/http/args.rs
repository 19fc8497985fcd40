//! JSON request arguments (`args`, `bulk_args`) as SQL parameter values. A JSON value says
//! less than a typed protocol parameter, so where a statement's parameter has a known type
//! (from planning it, as the extended protocol's Describe does) the value is read as CrateDB
//! reads it for that type: a number for a timestamp is epoch milliseconds (a fraction: epoch
//! seconds), a JSON array for an array parameter is an array of the element type.

use creek_common::types::{
    date_days_from_epoch_millis, timestamp_micros_from_epoch_millis,
    timestamp_micros_from_epoch_seconds,
};
use creek_common::ErrorCode;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ScalarValue;
use serde_json::Value;

use crate::error::{Error, Result};

/// Whether reading `value` depends on its parameter's type (a number could be a timestamp,
/// an array needs its element type), so the statement is worth planning for its types.
pub fn needs_parameter_types(value: &Value) -> bool {
    matches!(value, Value::Number(_) | Value::Array(_))
}

/// Converts a JSON argument to a parameter value, as `hint` (the parameter's type, if known)
/// says to read it.
pub fn json_to_scalar(value: &Value, hint: Option<&DataType>) -> Result<ScalarValue> {
    Ok(match (value, hint) {
        (Value::Null, Some(data_type)) => ScalarValue::try_from(data_type)?,
        (Value::Null, None) => ScalarValue::Null,
        (Value::Bool(b), _) => ScalarValue::Boolean(Some(*b)),
        (Value::Number(number), Some(DataType::Timestamp(_, zone))) => {
            ScalarValue::TimestampMicrosecond(Some(number_to_micros(number)?), zone.clone())
        }
        (Value::Number(number), Some(DataType::Date32)) => match number.as_i64() {
            Some(millis) => ScalarValue::Date32(Some(
                date_days_from_epoch_millis(millis).ok_or_else(|| out_of_range("date"))?,
            )),
            None => plain_number(number),
        },
        (Value::Number(number), _) => plain_number(number),
        (Value::String(text), _) => ScalarValue::Utf8(Some(text.clone())),
        (Value::Array(items), hint) => array_value(items, hint)?,
        (Value::Object(_), _) => ScalarValue::Utf8(Some(value.to_string())),
    })
}

fn out_of_range(what: &str) -> Error {
    Error::new(ErrorCode::DatetimeOverflow, format!("{what} out of range"))
}

fn plain_number(number: &serde_json::Number) -> ScalarValue {
    match (number.as_i64(), number.as_u64()) {
        (Some(integer), _) => ScalarValue::Int64(Some(integer)),
        (None, Some(unsigned)) => ScalarValue::UInt64(Some(unsigned)),
        _ => ScalarValue::Float64(number.as_f64()),
    }
}

/// A JSON number for a timestamp: an integer is epoch milliseconds, a fraction epoch seconds
/// (CrateDB's rules).
fn number_to_micros(number: &serde_json::Number) -> Result<i64> {
    let micros = match number.as_i64() {
        Some(millis) => timestamp_micros_from_epoch_millis(millis),
        None => timestamp_micros_from_epoch_seconds(number.as_f64().unwrap_or(f64::NAN)),
    };
    micros.ok_or_else(|| out_of_range("timestamp"))
}

/// A JSON array: of the hinted element type, else of the type its elements share.
fn array_value(items: &[Value], hint: Option<&DataType>) -> Result<ScalarValue> {
    let element_hint = match hint {
        Some(DataType::List(field) | DataType::LargeList(field)) => Some(field.data_type()),
        _ => None,
    };
    let mut values = Vec::with_capacity(items.len());
    for item in items {
        values.push(json_to_scalar(item, element_hint)?);
    }
    let element_type = match element_hint {
        Some(data_type) => data_type.clone(),
        None => common_type(&values)?,
    };
    let values = values
        .into_iter()
        .map(|value| {
            if value.is_null() {
                ScalarValue::try_from(&element_type)
            } else if value.data_type() == element_type {
                Ok(value)
            } else {
                value.cast_to(&element_type)
            }
        })
        .collect::<datafusion::common::Result<Vec<_>>>()?;
    Ok(ScalarValue::List(ScalarValue::new_list_nullable(
        &values,
        &element_type,
    )))
}

/// The type the elements of an untyped JSON array share: integers and fractions meet as
/// double; text stays text; all-NULL arrays are text.
fn common_type(values: &[ScalarValue]) -> Result<DataType> {
    let mut common: Option<DataType> = None;
    for value in values.iter().filter(|v| !v.is_null()) {
        let this = value.data_type();
        common = Some(match (common, this) {
            (None, this) => this,
            (Some(a), b) if a == b => a,
            (Some(DataType::Int64), DataType::Float64)
            | (Some(DataType::Float64), DataType::Int64) => DataType::Float64,
            (Some(a), b) => {
                return Err(Error::new(
                    ErrorCode::DatatypeMismatch,
                    format!("array elements have different types: {a} and {b}"),
                ))
            }
        });
    }
    Ok(common.unwrap_or(DataType::Utf8))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, TimeUnit};
    use serde_json::json;

    use super::*;

    #[test]
    fn numbers_for_timestamps_are_epoch_milliseconds() {
        let timestamp = DataType::Timestamp(TimeUnit::Microsecond, None);
        assert_eq!(
            json_to_scalar(&json!(1704164645123i64), Some(&timestamp)).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_704_164_645_123_000), None)
        );
        assert_eq!(
            json_to_scalar(&json!(1704164645.5), Some(&timestamp)).unwrap(),
            ScalarValue::TimestampMicrosecond(Some(1_704_164_645_500_000), None)
        );
        assert!(json_to_scalar(&json!(i64::MAX), Some(&timestamp)).is_err());
        assert_eq!(
            json_to_scalar(&json!(5), None).unwrap(),
            ScalarValue::Int64(Some(5))
        );
    }

    #[test]
    fn json_arrays_are_arrays() {
        let text_array = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let value = json_to_scalar(&json!(["a", "b"]), Some(&text_array)).unwrap();
        assert_eq!(value.data_type(), text_array);
        let untyped = json_to_scalar(&json!([1, 2.5, null]), None).unwrap();
        assert_eq!(
            untyped.data_type(),
            DataType::List(Arc::new(Field::new("item", DataType::Float64, true)))
        );
        assert!(json_to_scalar(&json!([1, "a"]), None).is_err());
    }
}
