//! OBJECT columns: their sub-columns and policies, and the one conversion between JSON and
//! their Arrow form, a struct of the sub-columns the table knows.
//!
//! Every path that writes an object (INSERT, COPY, HTTP and pgwire parameters) decodes it
//! here, data nodes decode the objects they stored with the same function, and dynamic keys
//! are inferred and merged into the table's definition here, so every node agrees on what a
//! key's type is. An IGNORED object's keys that are not sub-columns travel in one extra
//! struct child, [`IGNORED_KEYS`], as JSON text: they are stored and returned, never indexed.
//! Pure functions only: this module must not know how a shard indexes an object or how a
//! client is sent one.

use std::fmt;
use std::str::FromStr;

use datafusion::arrow::datatypes::{DataType, Field};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{CodedError, ErrorCode};
use crate::types::ColumnType;

mod functions;
mod json;

pub use functions::{
    ArrayField, IgnoredKey, ObjectJson, ObjectSet, ARRAY_FIELD_FUNCTION, IGNORED_KEY_FUNCTION,
    OBJECT_JSON_FUNCTION, OBJECT_SET_FUNCTION,
};
use json::excerpt;
pub use json::{has_struct, json_to_array, objects_from_texts, value_to_json, values_from_array};

/// Name of the struct child of an IGNORED object holding its other keys as a JSON object.
/// Sub-column names never start with `_`, so it names no sub-column.
pub const IGNORED_KEYS: &str = "_ignored";

/// The most sub-columns (at any depth) one table's objects may have: dynamic keys come from
/// the data, and a stream of distinct keys must not grow a definition without bound
/// (Elasticsearch's and CrateDB's `mapping.total_fields.limit` has the same default).
pub const MAX_OBJECT_COLUMNS: usize = 1000;

/// How deeply objects and arrays may nest in one column (Elasticsearch's
/// `mapping.depth.limit` is 20). Definitions travel through the Raft log and to every node
/// as JSON, which serde reads to 128 levels; each object level takes four.
pub const MAX_OBJECT_DEPTH: usize = 16;

/// The longest sub-column name, in bytes.
const MAX_KEY_BYTES: usize = 255;

/// What an object does with a key it has no sub-column for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObjectPolicy {
    /// Adds a sub-column, its type inferred from the value (the default).
    #[default]
    Dynamic,
    /// Refuses the row.
    Strict,
    /// Keeps the key in the row, returned on read but not indexed nor typed.
    Ignored,
}

impl fmt::Display for ObjectPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectPolicy::Dynamic => "dynamic",
            ObjectPolicy::Strict => "strict",
            ObjectPolicy::Ignored => "ignored",
        })
    }
}

impl FromStr for ObjectPolicy {
    type Err = CodedError;

    fn from_str(text: &str) -> Result<ObjectPolicy, CodedError> {
        match text.to_ascii_lowercase().as_str() {
            "dynamic" => Ok(ObjectPolicy::Dynamic),
            "strict" => Ok(ObjectPolicy::Strict),
            "ignored" => Ok(ObjectPolicy::Ignored),
            _ => Err(CodedError::new(
                ErrorCode::InvalidParameterValue,
                format!("invalid object policy {text:?}: expected dynamic, strict or ignored"),
            )),
        }
    }
}

/// One sub-column of an object.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ObjectField {
    /// The key.
    pub name: String,
    /// Its type.
    pub column_type: ColumnType,
}

/// The Arrow type of an object column.
pub fn struct_type(policy: ObjectPolicy, fields: &[ObjectField]) -> DataType {
    let mut children: Vec<Field> = fields
        .iter()
        .map(|f| crate::types::column_field(&f.name, &f.column_type))
        .collect();
    if policy == ObjectPolicy::Ignored {
        children.push(Field::new(IGNORED_KEYS, DataType::Utf8, true));
    }
    DataType::Struct(children.into())
}

/// Checks a sub-column name (declared or found in data): `path` names it in messages.
pub fn check_key(key: &str, path: &str) -> Result<(), CodedError> {
    let invalid = key.is_empty()
        || key.starts_with('_')
        || key.len() > MAX_KEY_BYTES
        || key.contains(['.', '[', ']', '\'', '"', '\\', '\u{7f}'])
        || key.chars().any(char::is_control);
    if invalid {
        return Err(CodedError::new(
            ErrorCode::InvalidParameterValue,
            format!(
                "invalid object key {:?} in {path}: keys must be 1 to {MAX_KEY_BYTES} bytes, \
                 not start with _ and not contain . [ ] \\ quotes or control characters",
                excerpt(key)
            ),
        ));
    }
    Ok(())
}

/// Checks the sub-columns of a declared object type: valid, distinct keys at every depth.
pub fn check_declared(column_type: &ColumnType, path: &str) -> Result<(), CodedError> {
    if depth(column_type) > MAX_OBJECT_DEPTH {
        return Err(CodedError::new(
            ErrorCode::ProgramLimitExceeded,
            format!(
                "column {path} nests objects and arrays more than {MAX_OBJECT_DEPTH} levels deep"
            ),
        ));
    }
    match column_type {
        ColumnType::Object { fields, .. } => {
            let mut seen = std::collections::HashSet::new();
            for field in fields {
                let child = child_path(path, &field.name);
                check_key(&field.name, path)?;
                if !seen.insert(field.name.as_str()) {
                    return Err(CodedError::new(
                        ErrorCode::DuplicateObject,
                        format!("column {child} specified more than once"),
                    ));
                }
                check_declared(&field.column_type, &child)?;
            }
            Ok(())
        }
        ColumnType::Array(inner) => check_declared(inner, path),
        _ => Ok(()),
    }
}

/// Whether a shard keeps a column of this type as JSON (its exact form) rather than as
/// typed values: objects, and arrays of objects, points or shapes.
pub fn is_document_type(column_type: &ColumnType) -> bool {
    match column_type {
        ColumnType::Object { .. } => true,
        ColumnType::Array(inner) => {
            matches!(inner.as_ref(), ColumnType::GeoPoint | ColumnType::GeoShape)
                || is_document_type(inner)
        }
        _ => false,
    }
}

/// How many object and array levels a type has (a scalar has none).
pub fn depth(column_type: &ColumnType) -> usize {
    match column_type {
        ColumnType::Object { fields, .. } => {
            1 + fields
                .iter()
                .map(|f| depth(&f.column_type))
                .max()
                .unwrap_or(0)
        }
        ColumnType::Array(inner) => 1 + depth(inner),
        _ => 0,
    }
}

/// How a sub-column is named in messages and `information_schema`: `o['a']['b']`.
pub fn child_path(path: &str, key: &str) -> String {
    format!("{path}['{key}']")
}

/// How many sub-columns (at any depth) a type has.
pub fn sub_column_count(column_type: &ColumnType) -> usize {
    match column_type {
        ColumnType::Object { fields, .. } => fields
            .iter()
            .map(|f| 1 + sub_column_count(&f.column_type))
            .sum(),
        ColumnType::Array(inner) => sub_column_count(inner),
        _ => 0,
    }
}

/// Every sub-column of `column_type` with its path below `path`, depth first.
pub fn sub_columns(column_type: &ColumnType, path: &str) -> Vec<(String, ColumnType)> {
    let mut out = Vec::new();
    let (element, in_array) = match column_type {
        ColumnType::Array(inner) => (inner.as_ref(), true),
        other => (other, false),
    };
    // A sub-column of an array of objects reads as an array of its values.
    let read_as = |t: ColumnType| {
        if in_array {
            ColumnType::Array(Box::new(t))
        } else {
            t
        }
    };
    if let ColumnType::Object { fields, .. } = element {
        for field in fields {
            let child = child_path(path, &field.name);
            out.push((child.clone(), read_as(field.column_type.clone())));
            for (path, sub_type) in sub_columns(&field.column_type, &child) {
                out.push((path, read_as(sub_type)));
            }
        }
    }
    out
}

/// The type of the sub-column at `keys` below an object (or array of objects) type.
pub fn sub_column_type<'a>(column_type: &'a ColumnType, keys: &[&str]) -> Option<&'a ColumnType> {
    let Some((first, rest)) = keys.split_first() else {
        return Some(column_type);
    };
    let element = match column_type {
        ColumnType::Array(inner) => inner.as_ref(),
        other => other,
    };
    let ColumnType::Object { fields, .. } = element else {
        return None;
    };
    let field = fields.iter().find(|f| f.name == *first)?;
    sub_column_type(&field.column_type, rest)
}

// ---------------------------------------------------------------------------------------------
// Dynamic keys

/// The type a new key gets from its value; `None` for a value nothing can be inferred from
/// (NULL, an empty array), which adds no sub-column (its key reads as NULL anyway).
pub fn infer_type(value: &Value, path: &str) -> Result<Option<ColumnType>, CodedError> {
    Ok(Some(match value {
        Value::Null => return Ok(None),
        Value::Bool(_) => ColumnType::Boolean,
        Value::Number(n) if n.is_f64() => ColumnType::Double,
        Value::Number(_) => ColumnType::BigInt,
        Value::String(_) => ColumnType::Text { max_len: None },
        Value::Array(items) => {
            let mut element: Option<ColumnType> = None;
            for item in items {
                let Some(item_type) = infer_type(item, path)? else {
                    continue;
                };
                element = Some(match element {
                    None => item_type,
                    Some(current) => merge_types(&current, &item_type, path)
                        .or_else(|error| numeric_widening(&current, &item_type).ok_or(error))?,
                });
            }
            match element {
                Some(element) => ColumnType::Array(Box::new(element)),
                None => return Ok(None),
            }
        }
        Value::Object(map) => {
            let mut fields = Vec::new();
            for (key, value) in map {
                let child = child_path(path, key);
                if let Some(column_type) = infer_type(value, &child)? {
                    check_key(key, path)?;
                    fields.push(ObjectField {
                        name: key.clone(),
                        column_type,
                    });
                }
            }
            ColumnType::Object {
                policy: ObjectPolicy::Dynamic,
                fields,
            }
        }
    }))
}

/// Integers and fractions in one array are doubles.
fn numeric_widening(a: &ColumnType, b: &ColumnType) -> Option<ColumnType> {
    match (a, b) {
        (ColumnType::BigInt, ColumnType::Double) | (ColumnType::Double, ColumnType::BigInt) => {
            Some(ColumnType::Double)
        }
        _ => None,
    }
}

/// Adds to `column_type` the sub-columns `value` has and it lacks (DYNAMIC objects), or
/// refuses the value (a STRICT object's unknown key). Returns whether anything was added.
pub fn widen(column_type: &mut ColumnType, value: &Value, path: &str) -> Result<bool, CodedError> {
    match (column_type, value) {
        (ColumnType::Object { policy, fields }, Value::Object(map)) => {
            let mut added = false;
            for (key, child_value) in map {
                let child = child_path(path, key);
                if let Some(field) = fields.iter_mut().find(|f| f.name == *key) {
                    added |= widen(&mut field.column_type, child_value, &child)?;
                    continue;
                }
                if child_value.is_null() {
                    continue;
                }
                match policy {
                    ObjectPolicy::Ignored => {}
                    ObjectPolicy::Strict => {
                        return Err(CodedError::new(
                            ErrorCode::UndefinedColumn,
                            format!(
                                "cannot add column {child} to strict object {path}: \
                                 the object allows only its declared keys"
                            ),
                        ))
                    }
                    ObjectPolicy::Dynamic => {
                        if let Some(new_type) = infer_type(child_value, &child)? {
                            check_key(key, path)?;
                            fields.push(ObjectField {
                                name: key.clone(),
                                column_type: new_type,
                            });
                            added = true;
                        }
                    }
                }
            }
            Ok(added)
        }
        (ColumnType::Array(inner), Value::Array(items)) => {
            let mut added = false;
            for item in items {
                added |= widen(inner, item, path)?;
            }
            Ok(added)
        }
        _ => Ok(false),
    }
}

/// Merges a proposed definition of a column into the current one: the current sub-columns
/// keep their types, new ones are added. Two writers that added the same key with different
/// types conflict; the one whose change arrives second gets this error.
pub fn merge_types(
    current: &ColumnType,
    proposed: &ColumnType,
    path: &str,
) -> Result<ColumnType, CodedError> {
    match (current, proposed) {
        (
            ColumnType::Object { policy, fields },
            ColumnType::Object {
                fields: proposed_fields,
                ..
            },
        ) => {
            let mut merged = fields.clone();
            for field in proposed_fields {
                let child = child_path(path, &field.name);
                match merged.iter_mut().find(|f| f.name == field.name) {
                    Some(existing) => {
                        existing.column_type =
                            merge_types(&existing.column_type, &field.column_type, &child)?
                    }
                    None if *policy == ObjectPolicy::Dynamic => merged.push(field.clone()),
                    None => {
                        return Err(CodedError::new(
                            ErrorCode::UndefinedColumn,
                            format!("cannot add column {child} to {policy} object {path}"),
                        ))
                    }
                }
            }
            Ok(ColumnType::Object {
                policy: *policy,
                fields: merged,
            })
        }
        (ColumnType::Array(a), ColumnType::Array(b)) => {
            Ok(ColumnType::Array(Box::new(merge_types(a, b, path)?)))
        }
        (a, b) if a == b => Ok(a.clone()),
        // Another writer made the key a double first: whole numbers are doubles too.
        (ColumnType::Double, ColumnType::BigInt) => Ok(ColumnType::Double),
        (a, b) => Err(CodedError::new(
            ErrorCode::DatatypeMismatch,
            format!("column {path} has type {a}, a value of type {b} cannot be stored in it"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(policy: ObjectPolicy, fields: &[(&str, ColumnType)]) -> ColumnType {
        ColumnType::Object {
            policy,
            fields: fields
                .iter()
                .map(|(name, column_type)| ObjectField {
                    name: name.to_string(),
                    column_type: column_type.clone(),
                })
                .collect(),
        }
    }

    #[test]
    fn dynamic_keys_are_inferred_and_merged() {
        let mut column = object(ObjectPolicy::Dynamic, &[("a", ColumnType::BigInt)]);
        let value: Value =
            serde_json::from_str(r#"{"a": 1, "b": "x", "c": {"d": 1.5}, "e": null, "f": []}"#)
                .unwrap();
        assert!(widen(&mut column, &value, "o").unwrap());
        assert_eq!(sub_column_count(&column), 4);
        assert_eq!(
            sub_column_type(&column, &["c", "d"]),
            Some(&ColumnType::Double)
        );
        // The same key with another type conflicts when merged.
        let other = object(
            ObjectPolicy::Dynamic,
            &[("b", ColumnType::BigInt), ("g", ColumnType::Boolean)],
        );
        assert_eq!(
            merge_types(&column, &other, "o").unwrap_err().code,
            ErrorCode::DatatypeMismatch
        );
        let same = object(ObjectPolicy::Dynamic, &[("g", ColumnType::Boolean)]);
        assert_eq!(
            sub_column_count(&merge_types(&column, &same, "o").unwrap()),
            5
        );
    }

    #[test]
    fn strict_refuses_and_ignored_keeps_unknown_keys() {
        let value: Value = serde_json::from_str(r#"{"a": 1, "z": [1, 2]}"#).unwrap();
        let mut strict = object(ObjectPolicy::Strict, &[("a", ColumnType::Integer)]);
        assert_eq!(
            widen(&mut strict, &value, "o").unwrap_err().code,
            ErrorCode::UndefinedColumn
        );
        let ignored = object(ObjectPolicy::Ignored, &[("a", ColumnType::Integer)]);
        let array = json_to_array(&[Some(&value), None], &ignored, "o").unwrap();
        assert_eq!(value_to_json(array.as_ref(), 0), value);
        assert_eq!(value_to_json(array.as_ref(), 1), Value::Null);
    }

    #[test]
    fn values_convert_strictly_and_round_trip() {
        let column = object(
            ObjectPolicy::Strict,
            &[
                ("n", ColumnType::SmallInt),
                ("ts", ColumnType::TimestampTz),
                (
                    "tags",
                    ColumnType::Array(Box::new(ColumnType::Text { max_len: None })),
                ),
                (
                    "inner",
                    object(ObjectPolicy::Dynamic, &[("x", ColumnType::Double)]),
                ),
                ("empty", object(ObjectPolicy::Dynamic, &[])),
            ],
        );
        let value: Value = serde_json::from_str(
            r#"{"n": 7, "ts": 1704067200000, "tags": ["a", null], "inner": {"x": "NaN"}, "empty": {}}"#,
        )
        .unwrap();
        let array = json_to_array(&[Some(&value)], &column, "o").unwrap();
        let stored = value_to_json(array.as_ref(), 0);
        assert_eq!(stored["n"], Value::from(7));
        assert_eq!(stored["ts"], Value::from("2024-01-01T00:00:00Z"));
        assert_eq!(stored["inner"]["x"], Value::from("NaN"));
        // What is stored reads back to the same value.
        let again = json_to_array(&[Some(&stored)], &column, "o").unwrap();
        assert_eq!(value_to_json(again.as_ref(), 0), stored);
        let too_big: Value = serde_json::from_str(r#"{"n": 70000}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&too_big)], &column, "o")
                .unwrap_err()
                .code,
            ErrorCode::NumericOutOfRange
        );
        let fraction: Value = serde_json::from_str(r#"{"n": 1.5}"#).unwrap();
        assert!(json_to_array(&[Some(&fraction)], &column, "o").is_err());
    }

    #[test]
    fn hostile_values_are_refused_and_stored_ones_read_leniently() {
        // Nesting beyond the limit never reaches a definition.
        let deep = format!("{}1{}", "{\"a\":".repeat(20), "}".repeat(20));
        let value: Value = serde_json::from_str(&deep).unwrap();
        let mut column = object(ObjectPolicy::Dynamic, &[]);
        assert!(widen(&mut column, &value, "o").unwrap());
        assert_eq!(
            check_declared(&column, "o").unwrap_err().code,
            ErrorCode::ProgramLimitExceeded
        );
        // Timestamps beyond four-digit years would not read back from their text.
        let ts = object(ObjectPolicy::Strict, &[("t", ColumnType::Timestamp)]);
        let far: Value = serde_json::from_str(r#"{"t": 253402300800000}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&far)], &ts, "o").unwrap_err().code,
            ErrorCode::DatetimeOverflow
        );
        let real = object(ObjectPolicy::Strict, &[("r", ColumnType::Real)]);
        let huge: Value = serde_json::from_str(r#"{"r": 1e39}"#).unwrap();
        assert_eq!(
            json_to_array(&[Some(&huge)], &real, "o").unwrap_err().code,
            ErrorCode::NumericOutOfRange
        );
        // A node whose definition lacks a newer key reads the rest of the object.
        let older = object(ObjectPolicy::Dynamic, &[("a", ColumnType::BigInt)]);
        let read = objects_from_texts(&[Some(r#"{"a": 1, "newer": "x"}"#)], &older, "o").unwrap();
        assert_eq!(value_to_json(read.as_ref(), 0), serde_json::json!({"a": 1}));
    }

    #[test]
    fn bad_keys_are_refused() {
        for key in ["", "_id", "a.b", "a[1]", "x'y", "a\\b"] {
            assert!(check_key(key, "o").is_err(), "{key}");
        }
        assert!(check_key("name", "o").is_ok());
    }
}
