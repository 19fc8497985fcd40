//! Creek's SQL column types and their Arrow representation.
//!
//! A column type decides three things that must agree on every node: the Arrow type a scan
//! produces, how a value is stored in a shard document, and the name `SHOW CREATE TABLE` and
//! `information_schema` print. This module owns that mapping and nothing else.

use std::fmt;

use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use serde::{Deserialize, Serialize};

/// A column's declared type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ColumnType {
    /// `boolean`
    Boolean,
    /// `smallint` (16 bit)
    SmallInt,
    /// `integer` (32 bit)
    Integer,
    /// `bigint` (64 bit)
    BigInt,
    /// `real` (32 bit float)
    Real,
    /// `double precision`
    Double,
    /// `numeric(precision, scale)`; stored exactly as a 128-bit decimal.
    Numeric {
        /// Total digits, at most 38.
        precision: u8,
        /// Digits after the decimal point.
        scale: i8,
    },
    /// `text` / `varchar(n)`; `max_len` is enforced on write.
    Text {
        /// The declared maximum length in characters, if any.
        max_len: Option<u32>,
    },
    /// `timestamp without time zone`, microsecond precision.
    Timestamp,
    /// `timestamp with time zone`, microsecond precision, stored as UTC.
    TimestampTz,
    /// `date`
    Date,
    /// `ip`: an IPv4 or IPv6 address, stored in canonical text form.
    Ip,
    /// `array(t)` / `t[]`
    Array(Box<ColumnType>),
    /// `geo_point`: a longitude and a latitude in degrees (WGS 84), as `[lon, lat]`.
    GeoPoint,
    /// `geo_shape`: any geometry in longitude/latitude degrees, as canonical GeoJSON text
    /// (`crate::geo::canonical_shape`).
    GeoShape,
    /// `object(dynamic | strict | ignored) as (...)`: a document of typed sub-columns, as an
    /// Arrow struct (`crate::object`).
    Object {
        /// What a key without a sub-column does.
        policy: crate::object::ObjectPolicy,
        /// The sub-columns, in the order they were declared or added.
        fields: Vec<crate::object::ObjectField>,
    },
}

/// Default precision and scale of a `numeric` declared without them.
pub const DEFAULT_NUMERIC_PRECISION: u8 = 38;
/// Default scale of a `numeric` declared without one.
pub const DEFAULT_NUMERIC_SCALE: i8 = 10;

/// Microseconds (a timestamp's unit) in one millisecond.
const MICROS_PER_MILLI: i64 = 1_000;
/// Milliseconds in one day.
const MILLIS_PER_DAY: i64 = 86_400_000;

/// A number written for a timestamp read as epoch milliseconds (CrateDB's rule), as the
/// timestamp's microseconds; `None` beyond the range of a timestamp.
pub fn timestamp_micros_from_epoch_millis(millis: i64) -> Option<i64> {
    millis.checked_mul(MICROS_PER_MILLI)
}

/// A fractional number written for a timestamp read as epoch seconds (CrateDB's rule), as the
/// timestamp's microseconds (truncated); `None` if not finite or beyond the range.
pub fn timestamp_micros_from_epoch_seconds(seconds: f64) -> Option<i64> {
    let micros = (seconds * 1_000_000.0).trunc();
    // `as` would saturate; the range check keeps a saturated value from being stored.
    (micros.is_finite() && micros >= i64::MIN as f64 && micros < i64::MAX as f64)
        .then_some(micros as i64)
}

/// A number written for a date read as epoch milliseconds, as days since the epoch.
pub fn date_days_from_epoch_millis(millis: i64) -> Option<i32> {
    i32::try_from(millis.div_euclid(MILLIS_PER_DAY)).ok()
}

impl ColumnType {
    /// Returns the Arrow type a scan of this column produces.
    pub fn arrow_type(&self) -> DataType {
        match self {
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::SmallInt => DataType::Int16,
            ColumnType::Integer => DataType::Int32,
            ColumnType::BigInt => DataType::Int64,
            ColumnType::Real => DataType::Float32,
            ColumnType::Double => DataType::Float64,
            ColumnType::Numeric { precision, scale } => DataType::Decimal128(*precision, *scale),
            ColumnType::Text { .. } | ColumnType::Ip => DataType::Utf8,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            ColumnType::TimestampTz => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("+00:00".into()))
            }
            ColumnType::Date => DataType::Date32,
            ColumnType::Array(inner) => {
                DataType::List(Field::new("item", inner.arrow_type(), true).into())
            }
            ColumnType::GeoPoint => crate::geo::point_type(),
            ColumnType::GeoShape => DataType::Utf8,
            ColumnType::Object { policy, fields } => crate::object::struct_type(*policy, fields),
        }
    }

    /// Returns the type a column gets when it is created from an Arrow type (e.g. by
    /// `CREATE TABLE AS` or dynamic columns).
    pub fn from_arrow(data_type: &DataType) -> Option<ColumnType> {
        Some(match data_type {
            DataType::Boolean => ColumnType::Boolean,
            DataType::Int8 | DataType::Int16 | DataType::UInt8 => ColumnType::SmallInt,
            DataType::Int32 | DataType::UInt16 => ColumnType::Integer,
            DataType::Int64 | DataType::UInt32 | DataType::UInt64 => ColumnType::BigInt,
            DataType::Float16 | DataType::Float32 => ColumnType::Real,
            DataType::Float64 => ColumnType::Double,
            DataType::Decimal128(p, s) => ColumnType::Numeric {
                precision: *p,
                scale: *s,
            },
            DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
                ColumnType::Text { max_len: None }
            }
            DataType::Timestamp(_, None) => ColumnType::Timestamp,
            DataType::Timestamp(_, Some(_)) => ColumnType::TimestampTz,
            DataType::Date32 | DataType::Date64 => ColumnType::Date,
            DataType::List(field) | DataType::LargeList(field) => {
                ColumnType::Array(Box::new(ColumnType::from_arrow(field.data_type())?))
            }
            data_type if crate::geo::is_point_type(data_type) => ColumnType::GeoPoint,
            DataType::Struct(children) => ColumnType::Object {
                policy: crate::object::ObjectPolicy::Dynamic,
                fields: children
                    .iter()
                    .map(|child| {
                        Some(crate::object::ObjectField {
                            name: child.name().clone(),
                            column_type: ColumnType::from_arrow(child.data_type())?,
                        })
                    })
                    .collect::<Option<Vec<_>>>()?,
            },
            _ => return None,
        })
    }

    /// Returns whether values of this type can be a primary key or routing key.
    pub fn is_routable(&self) -> bool {
        !matches!(
            self,
            ColumnType::Array(_)
                | ColumnType::GeoPoint
                | ColumnType::GeoShape
                | ColumnType::Object { .. }
        )
    }
}

/// The Arrow field of a column (or sub-column) `name` of `column_type`: shapes carry the
/// marker that tells front ends their text is GeoJSON.
pub fn column_field(name: &str, column_type: &ColumnType) -> Field {
    let field = Field::new(name, column_type.arrow_type(), true);
    if *column_type == ColumnType::GeoShape {
        let (key, value) = crate::geo::SHAPE_FIELD_METADATA;
        field.with_metadata([(key.to_string(), value.to_string())].into())
    } else {
        field
    }
}

impl fmt::Display for ColumnType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ColumnType::Boolean => f.write_str("boolean"),
            ColumnType::SmallInt => f.write_str("smallint"),
            ColumnType::Integer => f.write_str("integer"),
            ColumnType::BigInt => f.write_str("bigint"),
            ColumnType::Real => f.write_str("real"),
            ColumnType::Double => f.write_str("double precision"),
            ColumnType::Numeric { precision, scale } => write!(f, "numeric({precision},{scale})"),
            ColumnType::Text { max_len: None } => f.write_str("text"),
            ColumnType::Text { max_len: Some(n) } => write!(f, "varchar({n})"),
            ColumnType::Timestamp => f.write_str("timestamp without time zone"),
            ColumnType::TimestampTz => f.write_str("timestamp with time zone"),
            ColumnType::Date => f.write_str("date"),
            ColumnType::Ip => f.write_str("ip"),
            ColumnType::Array(inner) => write!(f, "array({inner})"),
            ColumnType::GeoPoint => f.write_str("geo_point"),
            ColumnType::GeoShape => f.write_str("geo_shape"),
            ColumnType::Object { policy, fields } => {
                write!(f, "object({policy})")?;
                if !fields.is_empty() {
                    f.write_str(" as (")?;
                    for (index, field) in fields.iter().enumerate() {
                        if index > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "\"{}\" {}", field.name, field.column_type)?;
                    }
                    f.write_str(")")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_numbers_convert_or_refuse() {
        assert_eq!(
            timestamp_micros_from_epoch_millis(1_704_164_645_123),
            Some(1_704_164_645_123_000)
        );
        assert_eq!(timestamp_micros_from_epoch_millis(i64::MAX), None);
        assert_eq!(timestamp_micros_from_epoch_seconds(1.5), Some(1_500_000));
        assert_eq!(timestamp_micros_from_epoch_seconds(f64::NAN), None);
        assert_eq!(timestamp_micros_from_epoch_seconds(1e300), None);
        assert_eq!(date_days_from_epoch_millis(-1), Some(-1));
        assert_eq!(date_days_from_epoch_millis(i64::MAX), None);
    }

    #[test]
    fn arrow_round_trip_keeps_the_type() {
        let types = [
            ColumnType::Boolean,
            ColumnType::SmallInt,
            ColumnType::Integer,
            ColumnType::BigInt,
            ColumnType::Real,
            ColumnType::Double,
            ColumnType::Numeric {
                precision: 10,
                scale: 2,
            },
            ColumnType::Text { max_len: None },
            ColumnType::Timestamp,
            ColumnType::TimestampTz,
            ColumnType::Date,
            ColumnType::Array(Box::new(ColumnType::BigInt)),
            ColumnType::GeoPoint,
        ];
        for column_type in types {
            assert_eq!(
                ColumnType::from_arrow(&column_type.arrow_type()),
                Some(column_type)
            );
        }
    }
}
