//! PostgreSQL's catalog and session functions (`format_type`, `pg_get_indexdef`,
//! `pg_table_is_visible`, `current_setting`, `version`, the `::regclass`/`::regtype` casts, ...)
//! as DataFusion scalar functions.
//!
//! Clients call these in their introspection queries; they read cluster state through
//! `catalog::pg_catalog` and the session's settings captured when the statement's context is
//! built. They are evaluated row by row: they only ever see catalog-sized inputs, never a
//! table scan's.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use creek_common::error::{CodedError, ErrorCode};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;

use crate::catalog::pg_catalog::oids::{self, namespace_oid};
use crate::catalog::pg_catalog::{self, relations, Relation, DATABASE_NAME, SUPERUSER};
use crate::cluster::Cluster;
use crate::session::SessionSettings;
use parking_lot::Mutex;

type RowFunction = Arc<dyn Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync>;

/// A function evaluated once per row on `ScalarValue`s.
struct PgFunction {
    name: &'static str,
    signature: Signature,
    returns: fn(&[DataType]) -> DataType,
    function: RowFunction,
}

impl std::fmt::Debug for PgFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgFunction({})", self.name)
    }
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &PgFunction) -> bool {
        self.name == other.name
    }
}

impl Eq for PgFunction {}

impl Hash for PgFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> DfResult<DataType> {
        Ok((self.returns)(arg_types))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> DfResult<ColumnarValue> {
        let scalars: Option<Vec<ScalarValue>> = args
            .args
            .iter()
            .map(|arg| match arg {
                ColumnarValue::Scalar(value) => Some(value.clone()),
                ColumnarValue::Array(_) => None,
            })
            .collect();
        if let Some(scalars) = scalars {
            return Ok(ColumnarValue::Scalar((self.function)(&scalars)?));
        }
        let mut results = Vec::with_capacity(args.number_rows);
        for row in 0..args.number_rows {
            let values = args
                .args
                .iter()
                .map(|arg| match arg {
                    ColumnarValue::Scalar(value) => Ok(value.clone()),
                    ColumnarValue::Array(array) => ScalarValue::try_from_array(array, row),
                })
                .collect::<DfResult<Vec<_>>>()?;
            results.push((self.function)(&values)?);
        }
        if results.is_empty() {
            return Ok(ColumnarValue::Array(
                datafusion::arrow::array::new_empty_array(args.return_type()),
            ));
        }
        Ok(ColumnarValue::Array(ScalarValue::iter_to_array(results)?))
    }
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(v) => v.map(i64::from),
        ScalarValue::Int16(v) => v.map(i64::from),
        ScalarValue::Int32(v) => v.map(i64::from),
        ScalarValue::Int64(v) => *v,
        ScalarValue::UInt8(v) => v.map(i64::from),
        ScalarValue::UInt16(v) => v.map(i64::from),
        ScalarValue::UInt32(v) => v.map(i64::from),
        ScalarValue::UInt64(v) => v.map(|v| v as i64),
        other => text(other).and_then(|s| s.trim().parse().ok()),
    }
}

fn text(value: &ScalarValue) -> Option<String> {
    match value {
        ScalarValue::Utf8(v) | ScalarValue::Utf8View(v) | ScalarValue::LargeUtf8(v) => v.clone(),
        ScalarValue::Null => None,
        other if other.is_null() => None,
        other => Some(other.to_string()),
    }
}

fn is_text(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8 | DataType::Null
    )
}

fn text_result(value: Option<String>) -> DfResult<ScalarValue> {
    Ok(ScalarValue::Utf8(value))
}

fn coded(code: ErrorCode, message: String) -> DataFusionError {
    DataFusionError::External(Box::new(CodedError::new(code, message)))
}

/// Resolves relation names and oids for the session's search path. The relation list is built
/// once per cluster-state version, not once per row: these functions are called for every row
/// of `pg_class`.
#[derive(Clone)]
struct Resolver {
    cluster: Arc<Cluster>,
    schema: String,
    cache: Arc<Mutex<Option<VersionedRelations>>>,
}

/// The relations of one cluster-state version.
type VersionedRelations = (u64, Arc<Vec<Relation>>);

impl Resolver {
    fn relations(&self) -> Arc<Vec<Relation>> {
        let state = self.cluster.catalog().state();
        let mut cache = self.cache.lock();
        match cache.as_ref() {
            Some((version, relations)) if *version == state.version => relations.clone(),
            _ => {
                let built = Arc::new(relations(&state));
                *cache = Some((state.version, built.clone()));
                built
            }
        }
    }

    fn by_oid(&self, oid: i64) -> Option<Relation> {
        self.relations().iter().find(|r| r.oid == oid).cloned()
    }

    fn visible(&self, relation: &Relation) -> bool {
        relation.schema == self.schema || relation.schema == "pg_catalog"
    }

    /// `'name'::regclass`: a possibly qualified, possibly quoted name to an oid.
    fn oid_of(&self, name: &str) -> Option<i64> {
        let parts: Vec<String> = name
            .split('.')
            .map(|part| {
                let part = part.trim();
                match part.strip_prefix('"').and_then(|p| p.strip_suffix('"')) {
                    Some(quoted) => quoted.to_string(),
                    None => part.to_lowercase(),
                }
            })
            .collect();
        let (schema, relation) = match parts.as_slice() {
            [relation] => (None, relation.clone()),
            [schema, relation] => (Some(schema.clone()), relation.clone()),
            _ => return None,
        };
        if schema.as_deref().is_none_or(|s| s == "pg_catalog")
            && pg_catalog::is_catalog_table(&relation)
        {
            return Some(match relation.as_str() {
                "pg_class" => oids::PG_CLASS_OID,
                "pg_constraint" => oids::PG_CONSTRAINT_OID,
                other => namespace_oid(&format!("pg_catalog.{other}")),
            });
        }
        let schema = schema.unwrap_or_else(|| self.schema.clone());
        self.relations()
            .iter()
            .find(|r| r.schema == schema && r.name == relation)
            .map(|r| r.oid)
    }

    /// `oid::regclass` printed: the name, qualified when not on the search path.
    fn name_of(&self, oid: i64) -> String {
        match self.by_oid(oid) {
            Some(relation) if self.visible(&relation) => relation.name,
            Some(relation) => relation.qualified_name(),
            None => oid.to_string(),
        }
    }
}

fn variadic() -> Signature {
    Signature::one_of(
        vec![TypeSignature::Nullary, TypeSignature::VariadicAny],
        Volatility::Stable,
    )
}

fn returns_text(_: &[DataType]) -> DataType {
    DataType::Utf8
}

fn returns_bool(_: &[DataType]) -> DataType {
    DataType::Boolean
}

fn returns_int(_: &[DataType]) -> DataType {
    DataType::Int64
}

fn returns_oid(_: &[DataType]) -> DataType {
    DataType::UInt32
}

fn oid_value(oid: Option<i64>) -> ScalarValue {
    ScalarValue::UInt32(oid.map(|oid| oid as u32))
}

fn returns_text_list(_: &[DataType]) -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The `reg*` casts: a name becomes an oid, an oid prints as a name.
fn returns_oid_or_name(args: &[DataType]) -> DataType {
    if args.first().is_some_and(is_text) {
        DataType::UInt32
    } else {
        DataType::Utf8
    }
}

fn function(
    name: &'static str,
    returns: fn(&[DataType]) -> DataType,
    function: impl Fn(&[ScalarValue]) -> DfResult<ScalarValue> + Send + Sync + 'static,
) -> ScalarUDF {
    ScalarUDF::new_from_impl(PgFunction {
        name,
        signature: variadic(),
        returns,
        function: Arc::new(function),
    })
}

/// Registers the functions on `ctx` for a session with `settings`, which `set_config` changes.
pub fn register(
    ctx: &SessionContext,
    cluster: Arc<Cluster>,
    settings: Arc<Mutex<SessionSettings>>,
) {
    let schema = settings.lock().schema.clone();
    let resolver = Resolver {
        cluster,
        schema: schema.clone(),
        cache: Arc::default(),
    };
    let mut functions = vec![
        function("version", returns_text, |_| {
            text_result(Some(format!(
                "PostgreSQL {} on x86_64-pc-linux-gnu, Creek {}",
                crate::frontend::SERVER_VERSION,
                env!("CARGO_PKG_VERSION")
            )))
        }),
        function("current_database", returns_text, |_| {
            text_result(Some(DATABASE_NAME.to_string()))
        }),
        function("pg_get_userbyid", returns_text, |_| {
            text_result(Some(SUPERUSER.to_string()))
        }),
        function("pg_encoding_to_char", returns_text, |args| {
            let name = match args.first().and_then(integer) {
                Some(6) => "UTF8",
                Some(_) => "",
                None => return text_result(None),
            };
            text_result(Some(name.to_string()))
        }),
        function("format_type", returns_text, |args| {
            let oid = args.first().and_then(integer);
            let typmod = args.get(1).and_then(integer);
            text_result(oid.map(|oid| oids::format_type(oid, typmod).unwrap_or("???".into())))
        }),
        function("pg_get_expr", returns_text, |args| {
            text_result(args.first().and_then(text))
        }),
        function("pg_backend_pid", returns_int, |_| {
            Ok(ScalarValue::Int64(Some(i64::from(std::process::id()))))
        }),
        function("to_regtype", returns_oid, |args| {
            Ok(oid_value(
                args.first()
                    .and_then(text)
                    .and_then(|n| oids::type_by_name(&n)),
            ))
        }),
        function("creek_regtype", returns_oid_or_name, |args| {
            let Some(value) = args.first() else {
                return text_result(None);
            };
            if matches!(value, ScalarValue::Utf8(_) | ScalarValue::Utf8View(_)) {
                let Some(name) = text(value) else {
                    return Ok(oid_value(None));
                };
                return match oids::type_by_name(&name) {
                    Some(oid) => Ok(oid_value(Some(oid))),
                    None => Err(coded(
                        ErrorCode::UndefinedObject,
                        format!("type \"{name}\" does not exist"),
                    )),
                };
            }
            // PostgreSQL prints the invalid oid 0 as `-`.
            text_result(integer(value).map(|oid| match oid {
                0 => "-".to_string(),
                oid => oids::format_type(oid, None).unwrap_or_else(|| oid.to_string()),
            }))
        }),
    ];
    // Creek has no sequences, extended statistics or comments.
    for name in [
        "pg_get_serial_sequence",
        "pg_get_statisticsobjdef_columns",
        "obj_description",
        "col_description",
        "shobj_description",
    ] {
        functions.push(function(name, returns_text, |_| text_result(None)));
    }
    for (name, value) in [
        ("pg_type_is_visible", true),
        ("pg_function_is_visible", true),
        ("pg_collation_is_visible", true),
        ("pg_opclass_is_visible", true),
        ("has_table_privilege", true),
        ("has_schema_privilege", true),
        ("has_database_privilege", true),
        ("has_column_privilege", true),
        ("pg_relation_is_publishable", false),
    ] {
        functions.push(function(name, returns_bool, move |_| {
            Ok(ScalarValue::Boolean(Some(value)))
        }));
    }
    {
        let schema = schema.clone();
        functions.push(function("current_schema", returns_text, move |_| {
            text_result(Some(schema.clone()))
        }));
    }
    {
        let schema = schema.clone();
        functions.push(function(
            "current_schemas",
            returns_text_list,
            move |args| {
                let implicit = args
                    .first()
                    .and_then(|v| match v {
                        ScalarValue::Boolean(b) => *b,
                        _ => None,
                    })
                    .unwrap_or(false);
                let mut names = Vec::new();
                if implicit {
                    names.push(ScalarValue::Utf8(Some("pg_catalog".to_string())));
                }
                names.push(ScalarValue::Utf8(Some(schema.clone())));
                Ok(ScalarValue::List(ScalarValue::new_list_nullable(
                    &names,
                    &DataType::Utf8,
                )))
            },
        ));
    }
    {
        let settings = settings.clone();
        functions.push(function("set_config", returns_text, move |args| {
            let (Some(name), Some(value)) = (args.first().and_then(text), args.get(1)) else {
                return text_result(None);
            };
            let value = text(value).unwrap_or_default();
            settings
                .lock()
                .set(&name, &value)
                .map_err(|e| coded(e.code(), e.client_message()))?;
            text_result(Some(value))
        }));
    }
    functions.push(function("current_setting", returns_text, move |args| {
        let Some(name) = args.first().and_then(text) else {
            return text_result(None);
        };
        let missing_ok = matches!(args.get(1), Some(ScalarValue::Boolean(Some(true))));
        match settings.lock().get(&name.to_lowercase()) {
            Some(value) => text_result(Some(value.clone())),
            None if missing_ok => text_result(None),
            None => Err(coded(
                ErrorCode::UndefinedObject,
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }));
    {
        let resolver = resolver.clone();
        functions.push(function("pg_table_is_visible", returns_bool, move |args| {
            let visible = args
                .first()
                .and_then(integer)
                .and_then(|oid| resolver.by_oid(oid))
                .map(|relation| resolver.visible(&relation));
            Ok(ScalarValue::Boolean(visible))
        }));
    }
    {
        let resolver = resolver.clone();
        functions.push(function("pg_get_indexdef", returns_text, move |args| {
            let Some(relation) = args
                .first()
                .and_then(integer)
                .and_then(|oid| resolver.by_oid(oid))
            else {
                return text_result(None);
            };
            let column = args.get(1).and_then(integer).unwrap_or(0);
            if column > 0 {
                let key = relation
                    .table
                    .as_ref()
                    .and_then(|t| t.primary_key.get(column as usize - 1).cloned());
                return text_result(key);
            }
            text_result(relation.index_definition())
        }));
    }
    {
        let resolver = resolver.clone();
        functions.push(function(
            "pg_get_constraintdef",
            returns_text,
            move |args| {
                text_result(
                    args.first()
                        .and_then(integer)
                        .and_then(|oid| resolver.by_oid(oid))
                        .and_then(|r| r.constraint_definition()),
                )
            },
        ));
    }
    {
        let resolver = resolver.clone();
        functions.push(function("pg_get_viewdef", returns_text, move |args| {
            let relation = match args.first() {
                Some(value @ (ScalarValue::Utf8(_) | ScalarValue::Utf8View(_))) => {
                    text(value).and_then(|name| resolver.oid_of(&name))
                }
                Some(value) => integer(value),
                None => None,
            }
            .and_then(|oid| resolver.by_oid(oid));
            text_result(relation.and_then(|r| r.view_query))
        }));
    }
    {
        let resolver = resolver.clone();
        functions.push(function("to_regclass", returns_oid, move |args| {
            Ok(oid_value(
                args.first()
                    .and_then(text)
                    .and_then(|name| resolver.oid_of(&name)),
            ))
        }));
    }
    {
        let resolver = resolver.clone();
        functions.push(function(
            "creek_regclass",
            returns_oid_or_name,
            move |args| {
                let Some(value) = args.first() else {
                    return text_result(None);
                };
                if matches!(value, ScalarValue::Utf8(_) | ScalarValue::Utf8View(_)) {
                    let Some(name) = text(value) else {
                        return Ok(oid_value(None));
                    };
                    return match resolver.oid_of(&name) {
                        Some(oid) => Ok(oid_value(Some(oid))),
                        None => Err(coded(
                            ErrorCode::UndefinedTable,
                            format!("relation \"{name}\" does not exist"),
                        )),
                    };
                }
                text_result(integer(value).map(|oid| resolver.name_of(oid)))
            },
        ));
    }
    {
        let resolver = resolver.clone();
        functions.push(function(
            "creek_regnamespace",
            returns_oid_or_name,
            move |args| {
                let Some(value) = args.first() else {
                    return text_result(None);
                };
                let names = pg_catalog::schema_names(&resolver.cluster.catalog().state());
                if matches!(value, ScalarValue::Utf8(_) | ScalarValue::Utf8View(_)) {
                    let oid = text(value)
                        .filter(|name| names.contains(name))
                        .map(|name| namespace_oid(&name));
                    return Ok(oid_value(oid));
                }
                text_result(integer(value).map(|oid| {
                    names
                        .into_iter()
                        .find(|name| namespace_oid(name) == oid)
                        .unwrap_or_else(|| oid.to_string())
                }))
            },
        ));
    }
    for udf in functions {
        ctx.register_udf(udf);
    }
}
