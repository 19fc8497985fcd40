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

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use creek_common::schema::TableSchema;
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
use super::ClusterState;
use crate::cluster::Cluster;
use crate::plan::views::view_provider;

/// Name of the database every connection sees in `pg_database`, whatever it asked for.
pub const DATABASE_NAME: &str = "crate";
/// Name of the superuser role.
pub const SUPERUSER: &str = "crate";
/// Name Creek gives its access method in `pg_am`.
pub const ACCESS_METHOD: &str = "tantivy";

/// Every catalog table with its columns as `name type` pairs. Types: `oid` (UInt32, which
/// pgwire reports as PostgreSQL's oid), `int` (int8), `text`, `bool`, `float4`, `text[]`,
/// `int[]`.
const TABLES: &[(&str, &str)] = &[
    (
        "pg_namespace",
        "oid oid, nspname text, nspowner oid, nspacl text[]",
    ),
    (
        "pg_class",
        "oid oid, relname text, relnamespace oid, reltype oid, reloftype oid, relowner oid, \
         relam oid, relfilenode oid, reltablespace oid, relpages int, reltuples float4, \
         relallvisible int, reltoastrelid oid, relhasindex bool, relisshared bool, \
         relpersistence text, relkind text, relnatts int, relchecks int, relhasrules bool, \
         relhastriggers bool, relhassubclass bool, relrowsecurity bool, \
         relforcerowsecurity bool, relispopulated bool, relreplident text, relispartition bool, \
         relrewrite oid, relfrozenxid int, relminmxid int, relacl text[], reloptions text[], \
         relpartbound text",
    ),
    (
        "pg_attribute",
        "attrelid oid, attname text, atttypid oid, attstattarget int, attlen int, attnum int, \
         attndims int, attcacheoff int, atttypmod int, attbyval bool, attalign text, \
         attstorage text, attcompression text, attnotnull bool, atthasdef bool, \
         atthasmissing bool, attidentity text, attgenerated text, attisdropped bool, \
         attislocal bool, attinhcount int, attcollation oid, attacl text[], attoptions text[], \
         attfdwoptions text[]",
    ),
    (
        "pg_type",
        "oid oid, typname text, typnamespace oid, typowner oid, typlen int, typbyval bool, \
         typtype text, typcategory text, typispreferred bool, typisdefined bool, typdelim text, \
         typrelid oid, typsubscript text, typelem oid, typarray oid, typinput text, \
         typoutput text, typreceive text, typsend text, typmodin text, typmodout text, \
         typanalyze text, typalign text, typstorage text, typnotnull bool, typbasetype oid, \
         typtypmod int, typndims int, typcollation oid, typdefaultbin text, typdefault text, \
         typacl text[]",
    ),
    (
        "pg_database",
        "oid oid, datname text, datdba oid, encoding int, datlocprovider text, \
         datistemplate bool, datallowconn bool, datconnlimit int, datfrozenxid int, \
         datminmxid int, dattablespace oid, datcollate text, datctype text, daticulocale text, \
         datcollversion text, datacl text[]",
    ),
    (
        "pg_index",
        "indexrelid oid, indrelid oid, indnatts int, indnkeyatts int, indisunique bool, \
         indnullsnotdistinct bool, indisprimary bool, indisexclusion bool, indimmediate bool, \
         indisclustered bool, indisvalid bool, indcheckxmin bool, indisready bool, \
         indislive bool, indisreplident bool, indkey int[], indcollation int[], indclass int[], \
         indoption int[], indexprs text, indpred text",
    ),
    (
        "pg_constraint",
        "oid oid, conname text, connamespace oid, contype text, condeferrable bool, \
         condeferred bool, convalidated bool, conrelid oid, contypid oid, conindid oid, \
         conparentid oid, confrelid oid, confupdtype text, confdeltype text, \
         confmatchtype text, conislocal bool, coninhcount int, connoinherit bool, conkey int[], \
         confkey int[], conbin text",
    ),
    ("pg_attrdef", "oid oid, adrelid oid, adnum int, adbin text"),
    ("pg_am", "oid oid, amname text, amhandler text, amtype text"),
    (
        "pg_roles",
        "oid oid, rolname text, rolsuper bool, rolinherit bool, rolcreaterole bool, \
         rolcreatedb bool, rolcanlogin bool, rolreplication bool, rolconnlimit int, \
         rolpassword text, rolvaliduntil text, rolbypassrls bool, rolconfig text[]",
    ),
    (
        "pg_user",
        "usename text, usesysid oid, usecreatedb bool, usesuper bool, userepl bool, \
         usebypassrls bool, passwd text, valuntil text, useconfig text[]",
    ),
    (
        "pg_tablespace",
        "oid oid, spcname text, spcowner oid, spcacl text[], spcoptions text[]",
    ),
    (
        "pg_tables",
        "schemaname text, tablename text, tableowner text, tablespace text, hasindexes bool, \
         hasrules bool, hastriggers bool, rowsecurity bool",
    ),
    (
        "pg_views",
        "schemaname text, viewname text, viewowner text, definition text",
    ),
    (
        "pg_settings",
        "name text, setting text, unit text, category text, short_desc text, vartype text, \
         source text",
    ),
    (
        "pg_description",
        "objoid oid, classoid oid, objsubid int, description text",
    ),
    (
        "pg_shdescription",
        "objoid oid, classoid oid, description text",
    ),
    (
        "pg_inherits",
        "inhrelid oid, inhparent oid, inhseqno int, inhdetachpending bool",
    ),
    (
        "pg_policy",
        "oid oid, polname text, polrelid oid, polcmd text, polpermissive bool, polroles int[], \
         polqual text, polwithcheck text",
    ),
    (
        "pg_statistic_ext",
        "oid oid, stxrelid oid, stxname text, stxnamespace oid, stxowner oid, \
         stxstattarget int, stxkeys int[], stxkind text[], stxexprs text",
    ),
    (
        "pg_publication",
        "oid oid, pubname text, pubowner oid, puballtables bool, pubinsert bool, \
         pubupdate bool, pubdelete bool, pubtruncate bool, pubviaroot bool",
    ),
    (
        "pg_publication_namespace",
        "oid oid, pnpubid oid, pnnspid oid",
    ),
    (
        "pg_publication_rel",
        "oid oid, prpubid oid, prrelid oid, prqual text, prattrs int[]",
    ),
    (
        "pg_sequence",
        "seqrelid oid, seqtypid oid, seqstart int, seqincrement int, seqmax int, seqmin int, \
         seqcache int, seqcycle bool",
    ),
    (
        "pg_collation",
        "oid oid, collname text, collnamespace oid, collowner oid, collprovider text, \
         collisdeterministic bool, collencoding int, collcollate text, collctype text",
    ),
    (
        "pg_opclass",
        "oid oid, opcmethod oid, opcname text, opcnamespace oid, opcowner oid, opcfamily oid, \
         opcintype oid, opcdefault bool, opckeytype oid",
    ),
    (
        "pg_trigger",
        "oid oid, tgrelid oid, tgparentid oid, tgname text, tgfoid oid, tgtype int, \
         tgenabled text, tgisinternal bool, tgconstrrelid oid, tgconstrindid oid, \
         tgconstraint oid, tgdeferrable bool, tginitdeferred bool, tgnargs int, tgattr int[], \
         tgqual text, tgoldtable text, tgnewtable text",
    ),
    (
        "pg_rewrite",
        "oid oid, rulename text, ev_class oid, ev_type text, ev_enabled text, is_instead bool, \
         ev_qual text, ev_action text",
    ),
    (
        "pg_proc",
        "oid oid, proname text, pronamespace oid, proowner oid, prolang oid, prokind text, \
         prorettype oid, proargtypes int[], proretset bool, prosrc text",
    ),
    (
        "pg_enum",
        "oid oid, enumtypid oid, enumsortorder float4, enumlabel text",
    ),
    (
        "pg_range",
        "rngtypid oid, rngsubtype oid, rngmultitypid oid, rngcollation oid, rngsubopc oid",
    ),
    (
        "pg_extension",
        "oid oid, extname text, extowner oid, extnamespace oid, extrelocatable bool, \
         extversion text",
    ),
    (
        "pg_depend",
        "classid oid, objid oid, objsubid int, refclassid oid, refobjid oid, \
         refobjsubid int, deptype text",
    ),
    (
        "pg_foreign_table",
        "ftrelid oid, ftserver oid, ftoptions text[]",
    ),
    (
        "pg_partitioned_table",
        "partrelid oid, partstrat text, partnatts int, partdefid oid, partattrs int[]",
    ),
    (
        "pg_matviews",
        "schemaname text, matviewname text, matviewowner text, definition text",
    ),
];

/// Catalog tables that never have rows in Creek. A query that inner-joins one of them is empty
/// whatever else it computes, which `plan::pg_compat` uses to answer it without planning.
pub const EMPTY_TABLES: &[&str] = &[
    "pg_description",
    "pg_shdescription",
    "pg_inherits",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_namespace",
    "pg_publication_rel",
    "pg_sequence",
    "pg_collation",
    "pg_opclass",
    "pg_trigger",
    "pg_rewrite",
    "pg_proc",
    "pg_enum",
    "pg_range",
    "pg_extension",
    "pg_depend",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_matviews",
];

/// Returns whether `name` is a `pg_catalog` table.
pub fn is_catalog_table(name: &str) -> bool {
    TABLES.iter().any(|(table, _)| *table == name)
}

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

/// What kind of relation a `pg_class` row is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    /// A table (`r`).
    Table,
    /// A view (`v`).
    View,
    /// A table's primary-key index (`i`).
    PrimaryKey,
}

impl RelationKind {
    fn relkind(self) -> &'static str {
        match self {
            RelationKind::Table => "r",
            RelationKind::View => "v",
            RelationKind::PrimaryKey => "i",
        }
    }
}

/// A relation as the catalogs list it.
#[derive(Debug, Clone)]
pub struct Relation {
    /// `pg_class.oid`.
    pub oid: i64,
    /// The relation's name.
    pub name: String,
    /// The schema it lives in.
    pub schema: String,
    /// Table, view or primary-key index.
    pub kind: RelationKind,
    /// The table it belongs to (itself for a table, the indexed table for an index).
    pub table: Option<TableSchema>,
    /// A view's defining query.
    pub view_query: Option<String>,
}

impl Relation {
    /// The relation's name qualified by its schema, as `::regclass` prints it when the schema
    /// is not searched.
    pub fn qualified_name(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    /// `pg_get_indexdef` of a primary-key index.
    pub fn index_definition(&self) -> Option<String> {
        let table = self.table.as_ref()?;
        (self.kind == RelationKind::PrimaryKey).then(|| {
            format!(
                "CREATE UNIQUE INDEX {} ON {}.{} USING {ACCESS_METHOD} ({})",
                self.name,
                table.schema_name,
                table.name,
                table.primary_key.join(", ")
            )
        })
    }

    /// `pg_get_constraintdef` of a primary-key constraint.
    pub fn constraint_definition(&self) -> Option<String> {
        let table = self.table.as_ref()?;
        (self.kind == RelationKind::PrimaryKey)
            .then(|| format!("PRIMARY KEY ({})", table.primary_key.join(", ")))
    }
}

/// The attribute numbers (1-based column positions) of a table's primary key, in key order.
fn primary_key_attnums(table: &TableSchema) -> Vec<i64> {
    table
        .primary_key
        .iter()
        .filter_map(|key| table.columns.iter().position(|c| &c.name == key))
        .map(|position| position as i64 + 1)
        .collect()
}

fn primary_key_name(table: &TableSchema) -> String {
    format!("{}_pkey", table.name)
}

/// Every relation in cluster state: tables, their primary-key indexes and views.
pub fn relations(state: &ClusterState) -> Vec<Relation> {
    let mut relations = Vec::new();
    for table in state.tables.values() {
        relations.push(Relation {
            oid: table_oid(table.id.0),
            name: table.name.clone(),
            schema: table.schema_name.clone(),
            kind: RelationKind::Table,
            table: Some(table.clone()),
            view_query: None,
        });
        if !table.primary_key.is_empty() {
            relations.push(Relation {
                oid: primary_key_oid(table.id.0),
                name: primary_key_name(table),
                schema: table.schema_name.clone(),
                kind: RelationKind::PrimaryKey,
                table: Some(table.clone()),
                view_query: None,
            });
        }
    }
    for view in state.views.values() {
        relations.push(Relation {
            oid: view_oid(&view.schema_name, &view.name),
            name: view.name.clone(),
            schema: view.schema_name.clone(),
            kind: RelationKind::View,
            table: None,
            view_query: Some(view.query.clone()),
        });
    }
    relations
}

/// Schemas that exist: implicit ones plus every schema holding a table or view.
pub fn schema_names(state: &ClusterState) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = state
        .tables
        .values()
        .map(|t| t.schema_name.clone())
        .chain(state.views.values().map(|v| v.schema_name.clone()))
        .collect();
    for builtin in ["doc", "sys", "pg_catalog", "information_schema"] {
        names.insert(builtin.to_string());
    }
    names
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
            (RelationKind::PrimaryKey, Some(table)) => Ok(table
                .primary_key
                .iter()
                .filter_map(|key| table.columns.iter().find(|c| &c.name == key))
                .map(|c| Attribute {
                    name: c.name.clone(),
                    column_type: c.column_type.clone(),
                    not_null: true,
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
                        Some(t) => t.primary_key.len() as i64,
                        None => 0,
                    };
                    let has_index = relation.kind == RelationKind::Table
                        && relation
                            .table
                            .as_ref()
                            .is_some_and(|t| !t.primary_key.is_empty());
                    let am = match relation.kind {
                        RelationKind::Table => TABLE_AM_OID,
                        RelationKind::PrimaryKey => INDEX_AM_OID,
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
                for relation in relations
                    .iter()
                    .filter(|r| r.kind == RelationKind::PrimaryKey)
                {
                    let Some(table) = &relation.table else {
                        continue;
                    };
                    let keys = primary_key_attnums(table);
                    let count = keys.len() as i64;
                    rows.push(vec![
                        ("indexrelid", Cell::Int(relation.oid)),
                        ("indrelid", Cell::Int(table_oid(table.id.0))),
                        ("indnatts", Cell::Int(count)),
                        ("indnkeyatts", Cell::Int(count)),
                        ("indisunique", Cell::Bool(true)),
                        ("indisprimary", Cell::Bool(true)),
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
                    let keys = primary_key_attnums(table);
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
                        "hasindexes" => relation.table.as_ref().is_some_and(|t| !t.primary_key.is_empty()),
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
