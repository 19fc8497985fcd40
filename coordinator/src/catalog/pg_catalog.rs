//! The `pg_catalog` schema: PostgreSQL's system catalogs computed from cluster state, so psql
//! (`\l`, `\dt`, `\d t`), SQLAlchemy reflection and driver type introspection work unchanged.
//!
//! Only what clients read is modelled: relations (tables, views, primary-key indexes), their
//! columns, defaults and primary-key constraints, namespaces, built-in types, the one database
//! and the one role. Catalogs of features Creek does not have (policies, publications,
//! inheritance, triggers, sequences, collations, ...) exist with their columns and no rows, so
//! client queries that join them plan and return what PostgreSQL would for an object without
//! them. This module computes rows; it must not change state.

pub mod oids;
mod relations;
mod tables;

use relations::attnums;
pub use relations::{relations, schema_names, Relation, RelationKind};
use tables::TABLES;
pub use tables::{is_catalog_table, EMPTY_TABLES};

use std::sync::Arc;

use async_trait::async_trait;
use creek_common::types::ColumnType;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Int64Builder, ListBuilder, StringBuilder,
    UInt32Builder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{SchemaProvider, Session, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result as DfResult;
use datafusion::logical_expr::Expr;
use datafusion::physical_plan::ExecutionPlan;

use self::oids::*;
use crate::cluster::Cluster;
use crate::plan::views::view_provider;

/// Name of the database every connection sees in `pg_database`, whatever it asked for.
pub const DATABASE_NAME: &str = "crate";
/// Name of the superuser role.
pub const SUPERUSER: &str = "crate";
/// Name Creek gives its access method in `pg_am`.
pub const ACCESS_METHOD: &str = "tantivy";

fn column_data_type(spec: &str) -> DataType {
    let list = |item: DataType| DataType::List(Arc::new(Field::new("item", item, true)));
    match spec {
        "oid" => DataType::UInt32,
        "int" => DataType::Int64,
        "bool" => DataType::Boolean,
        "float4" => DataType::Float32,
        "text[]" => list(DataType::Utf8),
        "int[]" => list(DataType::Int64),
        _ => DataType::Utf8,
    }
}

fn table_schema(spec: &str) -> SchemaRef {
    let fields: Vec<Field> = spec
        .split(',')
        .map(|column| {
            let (name, data_type) = column.trim().split_once(' ').unwrap_or((column, "text"));
            Field::new(name.trim(), column_data_type(data_type.trim()), true)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// One cell of a catalog row; cells a row leaves out are NULL, 0 or false by column type.
#[derive(Debug, Clone)]
enum Cell {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Ints(Vec<i64>),
}

impl From<i64> for Cell {
    fn from(value: i64) -> Cell {
        Cell::Int(value)
    }
}

impl From<&str> for Cell {
    fn from(value: &str) -> Cell {
        Cell::Text(value.to_string())
    }
}

impl From<String> for Cell {
    fn from(value: String) -> Cell {
        Cell::Text(value)
    }
}

impl From<bool> for Cell {
    fn from(value: bool) -> Cell {
        Cell::Bool(value)
    }
}

impl From<Option<String>> for Cell {
    fn from(value: Option<String>) -> Cell {
        value.map_or(Cell::Null, Cell::Text)
    }
}

type Row = Vec<(&'static str, Cell)>;

macro_rules! row {
    ($($name:literal => $value:expr),* $(,)?) => {
        vec![$(($name, Cell::from($value))),*]
    };
}

fn build_batch(schema: &SchemaRef, rows: &[Row]) -> DfResult<RecordBatch> {
    let cell = |row: &Row, name: &str| {
        row.iter()
            .find(|(column, _)| *column == name)
            .map(|(_, cell)| cell.clone())
    };
    let columns: Vec<ArrayRef> = schema
        .fields()
        .iter()
        .map(|field| -> ArrayRef {
            let name = field.name().as_str();
            match field.data_type() {
                DataType::Int64 => {
                    let mut builder = Int64Builder::new();
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Int(v)) => builder.append_value(v),
                            Some(Cell::Null) => builder.append_null(),
                            _ => builder.append_value(0),
                        }
                    }
                    Arc::new(builder.finish())
                }
                DataType::UInt32 => {
                    let mut builder = UInt32Builder::new();
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Int(v)) => builder.append_value(v as u32),
                            Some(Cell::Null) => builder.append_null(),
                            _ => builder.append_value(0),
                        }
                    }
                    Arc::new(builder.finish())
                }
                DataType::Boolean => {
                    let mut builder = BooleanBuilder::new();
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Bool(v)) => builder.append_value(v),
                            Some(Cell::Null) => builder.append_null(),
                            _ => builder.append_value(false),
                        }
                    }
                    Arc::new(builder.finish())
                }
                DataType::Float32 => {
                    let mut builder = Float32Builder::new();
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Int(v)) => builder.append_value(v as f32),
                            _ => builder.append_value(0.0),
                        }
                    }
                    Arc::new(builder.finish())
                }
                DataType::List(item) if item.data_type() == &DataType::Int64 => {
                    let mut builder = ListBuilder::new(Int64Builder::new());
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Ints(values)) => {
                                builder.values().append_slice(&values);
                                builder.append(true);
                            }
                            _ => builder.append_null(),
                        }
                    }
                    Arc::new(builder.finish())
                }
                // Text arrays (ACLs, options) are NULL: Creek has no privileges or options there.
                DataType::List(_) => {
                    let mut builder = ListBuilder::new(StringBuilder::new());
                    for _ in rows {
                        builder.append_null();
                    }
                    Arc::new(builder.finish())
                }
                _ => {
                    let mut builder = StringBuilder::new();
                    for row in rows {
                        match cell(row, name) {
                            Some(Cell::Text(v)) => builder.append_value(v),
                            _ => builder.append_null(),
                        }
                    }
                    Arc::new(builder.finish())
                }
            }
        })
        .collect();
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}

/// A column as `pg_attribute` lists it.
struct Attribute {
    name: String,
    column_type: ColumnType,
    not_null: bool,
    default: Option<String>,
}

/// The `pg_catalog` schema provider.
#[derive(Debug)]
pub struct PgCatalogSchema {
    cluster: Arc<Cluster>,
    settings: Vec<(String, String)>,
}

impl PgCatalogSchema {
    /// Creates the schema; `settings` are the session's settings, for `pg_settings`.
    pub fn new(cluster: Arc<Cluster>, settings: Vec<(String, String)>) -> PgCatalogSchema {
        PgCatalogSchema { cluster, settings }
    }
}

#[async_trait]
impl SchemaProvider for PgCatalogSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|(name, _)| name.to_string()).collect()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        Ok(TABLES
            .iter()
            .find(|(table, _)| *table == name)
            .map(|(table, spec)| {
                Arc::new(PgCatalogTable {
                    cluster: self.cluster.clone(),
                    settings: self.settings.clone(),
                    name: table,
                    schema: table_schema(spec),
                }) as Arc<dyn TableProvider>
            }))
    }

    fn table_exist(&self, name: &str) -> bool {
        is_catalog_table(name)
    }
}

/// One catalog table, computed when scanned.
#[derive(Debug)]
struct PgCatalogTable {
    cluster: Arc<Cluster>,
    settings: Vec<(String, String)>,
    name: &'static str,
    schema: SchemaRef,
}

impl PgCatalogTable {
    /// The columns of a relation; a view's come from planning its query.
    async fn attributes(&self, relation: &Relation) -> DfResult<Vec<Attribute>> {
        match (relation.kind, &relation.table) {
            (RelationKind::Table, Some(table)) => Ok(table
                .columns
                .iter()
                .map(|c| Attribute {
                    name: c.name.clone(),
                    column_type: c.column_type.clone(),
                    not_null: c.not_null || table.primary_key.contains(&c.name),
                    default: c.default_expr.clone(),
                })
                .collect()),
            (RelationKind::PrimaryKey | RelationKind::Index, Some(table)) => Ok(relation
                .index_columns
                .iter()
                .filter_map(|key| table.columns.iter().find(|c| &c.name == key))
                .map(|c| Attribute {
                    name: c.name.clone(),
                    column_type: c.column_type.clone(),
                    not_null: relation.kind == RelationKind::PrimaryKey || c.not_null,
                    default: None,
                })
                .collect()),
            _ => {
                let state = self.cluster.catalog().state();
                let key = super::qualified(&relation.schema, &relation.name);
                let Some(view) = state.views.get(&key) else {
                    return Ok(Vec::new());
                };
                // A view whose tables were dropped has no columns rather than failing the scan.
                let Ok(provider) = view_provider(&self.cluster, view).await else {
                    return Ok(Vec::new());
                };
                Ok(provider
                    .schema()
                    .fields()
                    .iter()
                    .map(|f| Attribute {
                        name: f.name().clone(),
                        column_type: ColumnType::from_arrow(f.data_type())
                            .unwrap_or(ColumnType::Text { max_len: None }),
                        not_null: false,
                        default: None,
                    })
                    .collect())
            }
        }
    }

    async fn rows(&self) -> DfResult<Vec<Row>> {
        let state = self.cluster.catalog().state();
        let relations = relations(&state);
        let mut rows: Vec<Row> = Vec::new();
        match self.name {
            "pg_namespace" => {
                for name in schema_names(&state) {
                    rows.push(row! {
                        "oid" => namespace_oid(&name),
                        "nspname" => name,
                        "nspowner" => SUPERUSER_OID,
                    });
                }
            }
            "pg_class" => {
                for relation in &relations {
                    let natts = match &relation.table {
                        Some(t) if relation.kind == RelationKind::Table => t.columns.len() as i64,
                        Some(_) => relation.index_columns.len() as i64,
                        None => 0,
                    };
                    let has_index = relation.kind == RelationKind::Table
                        && relation
                            .table
                            .as_ref()
                            .is_some_and(|t| !t.primary_key.is_empty() || !t.indexes.is_empty());
                    let am = match relation.kind {
                        RelationKind::Table => TABLE_AM_OID,
                        RelationKind::PrimaryKey | RelationKind::Index => INDEX_AM_OID,
                        RelationKind::View => 0,
                    };
                    rows.push(row! {
                        "oid" => relation.oid,
                        "relname" => relation.name.clone(),
                        "relnamespace" => namespace_oid(&relation.schema),
                        "relowner" => SUPERUSER_OID,
                        "relam" => am,
                        "relfilenode" => relation.oid,
                        "relhasindex" => has_index,
                        "relpersistence" => "p",
                        "relkind" => relation.kind.relkind(),
                        "relnatts" => natts,
                        "relispopulated" => true,
                        "relreplident" => if relation.kind == RelationKind::Table { "d" } else { "n" },
                    });
                }
            }
            "pg_attribute" => {
                for relation in &relations {
                    for (index, attribute) in
                        self.attributes(relation).await?.into_iter().enumerate()
                    {
                        let (type_oid, typmod) = column_type_oid(&attribute.column_type);
                        let len = type_by_oid(type_oid)
                            .map_or(-1, |(t, array)| if array { -1 } else { t.len });
                        rows.push(row! {
                            "attrelid" => relation.oid,
                            "attname" => attribute.name,
                            "atttypid" => type_oid,
                            "attstattarget" => -1,
                            "attlen" => len,
                            "attnum" => index as i64 + 1,
                            "attndims" => i64::from(matches!(attribute.column_type, ColumnType::Array(_))),
                            "attcacheoff" => -1,
                            "atttypmod" => typmod,
                            "attalign" => "i",
                            "attstorage" => "x",
                            "attcompression" => "",
                            "attnotnull" => attribute.not_null,
                            "atthasdef" => attribute.default.is_some(),
                            "attidentity" => "",
                            "attgenerated" => "",
                            "attislocal" => true,
                        });
                    }
                }
            }
            "pg_attrdef" => {
                for relation in relations.iter().filter(|r| r.kind == RelationKind::Table) {
                    let Some(table) = &relation.table else {
                        continue;
                    };
                    for (index, column) in table.columns.iter().enumerate() {
                        if let Some(default) = &column.default_expr {
                            rows.push(row! {
                                "oid" => relation.oid * 1000 + index as i64,
                                "adrelid" => relation.oid,
                                "adnum" => index as i64 + 1,
                                "adbin" => default.clone(),
                            });
                        }
                    }
                }
            }
            "pg_index" => {
                for relation in relations.iter().filter(|r| r.kind.is_index()) {
                    let Some(table) = &relation.table else {
                        continue;
                    };
                    let keys = attnums(table, &relation.index_columns);
                    let count = keys.len() as i64;
                    let primary = relation.kind == RelationKind::PrimaryKey;
                    rows.push(vec![
                        ("indexrelid", Cell::Int(relation.oid)),
                        ("indrelid", Cell::Int(table_oid(table.id.0))),
                        ("indnatts", Cell::Int(count)),
                        ("indnkeyatts", Cell::Int(count)),
                        ("indisunique", Cell::Bool(primary)),
                        ("indisprimary", Cell::Bool(primary)),
                        ("indimmediate", Cell::Bool(true)),
                        ("indisvalid", Cell::Bool(true)),
                        ("indisready", Cell::Bool(true)),
                        ("indislive", Cell::Bool(true)),
                        ("indkey", Cell::Ints(keys)),
                        ("indcollation", Cell::Ints(vec![0; count as usize])),
                        ("indclass", Cell::Ints(vec![0; count as usize])),
                        ("indoption", Cell::Ints(vec![0; count as usize])),
                    ]);
                }
            }
            "pg_constraint" => {
                for relation in relations
                    .iter()
                    .filter(|r| r.kind == RelationKind::PrimaryKey)
                {
                    let Some(table) = &relation.table else {
                        continue;
                    };
                    let keys = attnums(table, &table.primary_key);
                    let mut row = row! {
                        "oid" => relation.oid,
                        "conname" => relation.name.clone(),
                        "connamespace" => namespace_oid(&relation.schema),
                        "contype" => "p",
                        "convalidated" => true,
                        "conrelid" => table_oid(table.id.0),
                        "conindid" => relation.oid,
                        "confupdtype" => " ",
                        "confdeltype" => " ",
                        "confmatchtype" => " ",
                        "conislocal" => true,
                        "connoinherit" => true,
                    };
                    row.push(("conkey", Cell::Ints(keys)));
                    rows.push(row);
                }
            }
            "pg_type" => {
                for ty in BASE_TYPES {
                    rows.push(type_row(ty, false));
                    rows.push(type_row(ty, true));
                }
            }
            "pg_database" => rows.push(row! {
                "oid" => DATABASE_OID,
                "datname" => DATABASE_NAME,
                "datdba" => SUPERUSER_OID,
                "encoding" => 6,
                "datlocprovider" => "c",
                "datallowconn" => true,
                "datconnlimit" => -1,
                "dattablespace" => 1663,
                "datcollate" => "C",
                "datctype" => "C",
            }),
            "pg_am" => {
                rows.push(row! {"oid" => TABLE_AM_OID, "amname" => ACCESS_METHOD, "amtype" => "t"});
                rows.push(row! {"oid" => INDEX_AM_OID, "amname" => ACCESS_METHOD, "amtype" => "i"});
            }
            "pg_roles" => rows.push(row! {
                "oid" => SUPERUSER_OID,
                "rolname" => SUPERUSER,
                "rolsuper" => true,
                "rolinherit" => true,
                "rolcreaterole" => true,
                "rolcreatedb" => true,
                "rolcanlogin" => true,
                "rolreplication" => true,
                "rolconnlimit" => -1,
                "rolbypassrls" => true,
            }),
            "pg_user" => rows.push(row! {
                "usename" => SUPERUSER,
                "usesysid" => SUPERUSER_OID,
                "usecreatedb" => true,
                "usesuper" => true,
                "userepl" => true,
                "usebypassrls" => true,
            }),
            "pg_tablespace" => {
                rows.push(
                    row! {"oid" => 1663, "spcname" => "pg_default", "spcowner" => SUPERUSER_OID},
                );
                rows.push(
                    row! {"oid" => 1664, "spcname" => "pg_global", "spcowner" => SUPERUSER_OID},
                );
            }
            "pg_tables" => {
                for relation in relations.iter().filter(|r| r.kind == RelationKind::Table) {
                    rows.push(row! {
                        "schemaname" => relation.schema.clone(),
                        "tablename" => relation.name.clone(),
                        "tableowner" => SUPERUSER,
                        "hasindexes" => relation.table.as_ref().is_some_and(|t| !t.primary_key.is_empty() || !t.indexes.is_empty()),
                    });
                }
            }
            "pg_indexes" => {
                for relation in relations.iter().filter(|r| r.kind.is_index()) {
                    let Some(table) = &relation.table else {
                        continue;
                    };
                    rows.push(row! {
                        "schemaname" => relation.schema.clone(),
                        "tablename" => table.name.clone(),
                        "indexname" => relation.name.clone(),
                        "indexdef" => relation.index_definition(),
                    });
                }
            }
            "pg_views" => {
                for relation in relations.iter().filter(|r| r.kind == RelationKind::View) {
                    rows.push(row! {
                        "schemaname" => relation.schema.clone(),
                        "viewname" => relation.name.clone(),
                        "viewowner" => SUPERUSER,
                        "definition" => relation.view_query.clone(),
                    });
                }
            }
            "pg_settings" => {
                for (name, setting) in &self.settings {
                    rows.push(row! {
                        "name" => name.clone(),
                        "setting" => setting.clone(),
                        "vartype" => "string",
                        "source" => "session",
                    });
                }
            }
            _ => {}
        }
        Ok(rows)
    }
}

fn type_row(ty: &PgType, array: bool) -> Row {
    let mut row = if array {
        row! {
            "oid" => ty.array_oid,
            "typname" => format!("_{}", ty.name),
            "typlen" => -1,
            "typcategory" => "A",
            "typelem" => ty.oid,
            "typarray" => 0,
            "typinput" => "array_in",
            "typoutput" => "array_out",
            "typreceive" => "array_recv",
            "typsend" => "array_send",
            "typsubscript" => "array_subscript_handler",
        }
    } else {
        row! {
            "oid" => ty.oid,
            "typname" => ty.name,
            "typlen" => ty.len,
            "typcategory" => ty.category,
            "typelem" => 0,
            "typarray" => ty.array_oid,
            "typinput" => format!("{}in", ty.name),
            "typoutput" => format!("{}out", ty.name),
            "typreceive" => format!("{}recv", ty.name),
            "typsend" => format!("{}send", ty.name),
            "typsubscript" => "-",
        }
    };
    row.extend(row! {
        "typnamespace" => PG_CATALOG_NAMESPACE,
        "typowner" => SUPERUSER_OID,
        "typbyval" => !array && (1..=8).contains(&ty.len),
        "typtype" => "b",
        "typisdefined" => true,
        "typdelim" => ",",
        "typalign" => "i",
        "typstorage" => if ty.len < 0 || array { "x" } else { "p" },
        "typtypmod" => -1,
        "typcollation" => if ty.category == "S" { 100 } else { 0 },
    });
    row
}

#[async_trait]
impl TableProvider for PgCatalogTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::View
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let batch = build_batch(&self.schema, &self.rows().await?)?;
        let table = MemTable::try_new(self.schema.clone(), vec![vec![batch]])?;
        table.scan(state, projection, filters, limit).await
    }
}
