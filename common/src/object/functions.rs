//! The SQL functions objects need beyond DataFusion's, shared by both roles (data nodes run
//! them in plan fragments): reading an IGNORED object's other keys, a value as object JSON
//! (upserts), setting one key (`UPDATE ... SET o['a'] = v`), and a key of an array of
//! objects.

use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, ListArray, StringArray};
use datafusion::arrow::datatypes::{DataType, Field};
use serde_json::{Map, Value};

use super::value_to_json;

/// Name of the function reading a key of an IGNORED object that has no sub-column:
/// `__creek_ignored_key(o['_ignored'], 'key')`, which `o['key']` is planned as.
pub const IGNORED_KEY_FUNCTION: &str = "__creek_ignored_key";

/// The function behind [`IGNORED_KEY_FUNCTION`]: the key's value as text (a string as it is,
/// anything else as JSON), NULL where the object lacks it. Such keys have no type, as in
/// CrateDB; a cast gives them one.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct IgnoredKey {
    signature: datafusion::logical_expr::Signature,
}

impl IgnoredKey {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(IgnoredKey {
            signature: datafusion::logical_expr::Signature::exact(
                vec![DataType::Utf8, DataType::Utf8],
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for IgnoredKey {
    fn name(&self) -> &str {
        IGNORED_KEY_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let rows = args.number_rows;
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let (objects, keys) = (arrays[0].as_string::<i32>(), arrays[1].as_string::<i32>());
        let values: StringArray = (0..rows)
            .map(|row| {
                if objects.is_null(row) || keys.is_null(row) {
                    return None;
                }
                let Ok(Value::Object(map)) = serde_json::from_str::<Value>(objects.value(row))
                else {
                    return None;
                };
                match map.get(keys.value(row))? {
                    Value::Null => None,
                    Value::String(text) => Some(text.clone()),
                    other => Some(other.to_string()),
                }
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            values,
        )))
    }
}

/// Name of the function giving any value as the JSON text an object column reads: a struct
/// as its object, text as it is. Upserts merge old and new objects through it, since two
/// object literals with different keys have no common struct type.
pub const OBJECT_JSON_FUNCTION: &str = "__creek_object_json";

/// The function behind [`OBJECT_JSON_FUNCTION`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ObjectJson {
    signature: datafusion::logical_expr::Signature,
}

impl ObjectJson {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ObjectJson {
            signature: datafusion::logical_expr::Signature::any(
                1,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ObjectJson {
    fn name(&self) -> &str {
        OBJECT_JSON_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let array = &arrays[0];
        let texts: StringArray = (0..args.number_rows)
            .map(|row| match value_to_json(array.as_ref(), row) {
                Value::Null => None,
                Value::String(text) => Some(text),
                other => Some(other.to_string()),
            })
            .collect();
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            texts,
        )))
    }
}

/// Name of the function behind `UPDATE t SET o['a']['b'] = v`: `__creek_object_set(o, 'a',
/// 'b', v)` is the object (as JSON text) with that key set, the objects on its path made
/// where missing; the column then converts it like any object written to it.
pub const OBJECT_SET_FUNCTION: &str = "__creek_object_set";

/// The function behind [`OBJECT_SET_FUNCTION`].
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ObjectSet {
    signature: datafusion::logical_expr::Signature,
}

impl ObjectSet {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ObjectSet {
            signature: datafusion::logical_expr::Signature::variadic_any(
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ObjectSet {
    fn name(&self) -> &str {
        OBJECT_SET_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> datafusion::common::Result<DataType> {
        if args.len() < 3 || args.len() > super::MAX_OBJECT_DEPTH + 2 {
            return datafusion::common::plan_err!(
                "{OBJECT_SET_FUNCTION} takes an object, 1 to {} keys and a value",
                super::MAX_OBJECT_DEPTH
            );
        }
        if !matches!(
            args[0],
            DataType::Struct(_) | DataType::Utf8 | DataType::Null
        ) {
            return datafusion::common::plan_err!(
                "only a key of an object column can be assigned, not one of {}",
                args[0]
            );
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let rows = args.number_rows;
        let arrays = datafusion::logical_expr::ColumnarValue::values_to_arrays(&args.args)?;
        let (object, rest) = arrays.split_first().expect("checked by return_type");
        let (value, keys) = rest.split_last().expect("checked by return_type");
        let mut out = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut root = match value_to_json(object.as_ref(), row) {
                Value::Object(map) => map,
                Value::Null => Map::new(),
                Value::String(text) => match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(map)) => map,
                    _ => return Err(not_an_object()),
                },
                _ => return Err(not_an_object()),
            };
            let path: Vec<String> = keys
                .iter()
                .map(|key| match value_to_json(key.as_ref(), row) {
                    Value::String(key) => Ok(key),
                    other => datafusion::common::exec_err!("object keys are text, got {other}"),
                })
                .collect::<datafusion::common::Result<_>>()?;
            let (last, parents) = path.split_last().expect("at least one key");
            let mut current = &mut root;
            for parent in parents {
                let entry = current
                    .entry(parent.clone())
                    .or_insert_with(|| Value::Object(Map::new()));
                if !entry.is_object() {
                    *entry = Value::Object(Map::new());
                }
                current = entry.as_object_mut().expect("made an object above");
            }
            current.insert(last.clone(), value_to_json(value.as_ref(), row));
            out.push(Some(Value::Object(root).to_string()));
        }
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            StringArray::from(out),
        )))
    }
}

/// The error of `SET col['key'] = v` on a column that holds no objects.
fn not_an_object() -> datafusion::common::DataFusionError {
    datafusion::common::DataFusionError::External(Box::new(crate::error::CodedError::new(
        crate::error::ErrorCode::DatatypeMismatch,
        "only a key of an object column can be assigned",
    )))
}

/// Name of the function reading one sub-column of every object in an array of objects:
/// `o['list']['field']` (or `l['field']`) is an array of the field's values, as in CrateDB.
pub const ARRAY_FIELD_FUNCTION: &str = "__creek_array_field";

/// The function behind [`ARRAY_FIELD_FUNCTION`]: `(list of structs, 'key')`.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ArrayField {
    signature: datafusion::logical_expr::Signature,
}

impl ArrayField {
    /// The function, for a registry.
    pub fn udf() -> datafusion::logical_expr::ScalarUDF {
        datafusion::logical_expr::ScalarUDF::new_from_impl(ArrayField {
            signature: datafusion::logical_expr::Signature::any(
                2,
                datafusion::logical_expr::Volatility::Immutable,
            ),
        })
    }

    /// The struct field `key` names in an array of objects of type `list`.
    fn field<'a>(list: &'a DataType, key: &str) -> datafusion::common::Result<&'a Field> {
        let DataType::List(element) = list else {
            return datafusion::common::plan_err!(
                "{ARRAY_FIELD_FUNCTION} needs an array of objects"
            );
        };
        let DataType::Struct(fields) = element.data_type() else {
            return datafusion::common::plan_err!(
                "{ARRAY_FIELD_FUNCTION} needs an array of objects"
            );
        };
        match fields.iter().find(|f| f.name() == key) {
            Some(field) => Ok(field),
            None => datafusion::common::plan_err!("Field {key} not found in struct"),
        }
    }
}

impl datafusion::logical_expr::ScalarUDFImpl for ArrayField {
    fn name(&self) -> &str {
        ARRAY_FIELD_FUNCTION
    }

    fn signature(&self) -> &datafusion::logical_expr::Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> datafusion::common::Result<DataType> {
        datafusion::common::internal_err!("{ARRAY_FIELD_FUNCTION} types by its key argument")
    }

    fn return_field_from_args(
        &self,
        args: datafusion::logical_expr::ReturnFieldArgs,
    ) -> datafusion::common::Result<datafusion::arrow::datatypes::FieldRef> {
        let Some(Some(datafusion::common::ScalarValue::Utf8(Some(key)))) =
            args.scalar_arguments.get(1)
        else {
            return datafusion::common::plan_err!("{ARRAY_FIELD_FUNCTION} needs a literal key");
        };
        let child = Self::field(args.arg_fields[0].data_type(), key)?;
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::List(Arc::new(child.clone().with_name("item"))),
            true,
        )))
    }

    fn invoke_with_args(
        &self,
        args: datafusion::logical_expr::ScalarFunctionArgs,
    ) -> datafusion::common::Result<datafusion::logical_expr::ColumnarValue> {
        let datafusion::logical_expr::ColumnarValue::Scalar(datafusion::common::ScalarValue::Utf8(
            Some(key),
        )) = &args.args[1]
        else {
            return datafusion::common::exec_err!("{ARRAY_FIELD_FUNCTION} needs a literal key");
        };
        let lists = args.args[0].to_array(args.number_rows)?;
        let child_field = Self::field(lists.data_type(), key)?.clone();
        let lists = lists.as_list::<i32>();
        let structs = lists.values().as_struct();
        let values = structs.column_by_name(key).cloned().ok_or_else(|| {
            datafusion::common::DataFusionError::Execution(format!(
                "Field {key} not found in struct"
            ))
        })?;
        let list = ListArray::try_new(
            Arc::new(child_field.with_name("item").with_nullable(true)),
            lists.offsets().clone(),
            values,
            lists.nulls().cloned(),
        )?;
        Ok(datafusion::logical_expr::ColumnarValue::Array(Arc::new(
            list,
        )))
    }
}
