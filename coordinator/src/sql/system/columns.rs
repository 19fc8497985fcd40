//! `information_schema.columns` (to which `plan::pg_compat` redirects) and `sys.columns`:
//! every column of every relation the session can name, with Creek's type names, and for
//! tables one row per sub-column of their objects (`o['a']['b']`), as CrateDB lists them, so
//! keys a DYNAMIC object gained from data show here at once. Columns of other relations
//! (views, `sys`, `pg_catalog`) come from their Arrow schemas.

use std::sync::Arc;

use creek_common::schema::{ColumnDef, TableSchema};
use creek_common::types::ColumnType;
use datafusion::arrow::array::{ArrayRef, StringBuilder, UInt64Builder};
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::context::SessionState;

use crate::cluster::Cluster;

/// The columns of `information_schema.columns`: DataFusion's (those of the SQL standard a
/// client reads) and CrateDB's generated-column pair.
pub fn columns_fields() -> Vec<Field> {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    let number = |name: &str, nullable: bool| Field::new(name, DataType::UInt64, nullable);
    vec![
        text("table_catalog", false),
        text("table_schema", false),
        text("table_name", false),
        text("column_name", false),
        number("ordinal_position", false),
        text("column_default", true),
        text("is_nullable", false),
        text("data_type", false),
        number("character_maximum_length", true),
        number("character_octet_length", true),
        number("numeric_precision", true),
        number("numeric_precision_radix", true),
        number("numeric_scale", true),
        number("datetime_precision", true),
        text("interval_type", true),
        text("is_generated", false),
        text("generation_expression", true),
    ]
}

/// The name `information_schema.columns` gives a type: CrateDB's (`text`, `bigint`,
/// `object`, `text_array`, `timestamp with time zone`).
pub fn type_name(column_type: &ColumnType) -> String {
    match column_type {
        ColumnType::Array(inner) => format!("{}_array", type_name(inner)),
        ColumnType::Object { .. } => "object".to_string(),
        // Length, precision and scale have columns of their own, as in PostgreSQL.
        ColumnType::Text { max_len: Some(_) } => "character varying".to_string(),
        ColumnType::Numeric { .. } => "numeric".to_string(),
        other => other.to_string(),
    }
}

#[derive(Default)]
struct Rows {
    catalog: StringBuilder,
    schema: StringBuilder,
    table: StringBuilder,
    column: StringBuilder,
    position: UInt64Builder,
    default: StringBuilder,
    nullable: StringBuilder,
    data_type: StringBuilder,
    max_length: UInt64Builder,
    octet_length: UInt64Builder,
    precision: UInt64Builder,
    radix: UInt64Builder,
    scale: UInt64Builder,
    datetime_precision: UInt64Builder,
    interval_type: StringBuilder,
    generated: StringBuilder,
    expression: StringBuilder,
}

/// One column's row, by type.
struct Row<'a> {
    catalog: &'a str,
    schema: &'a str,
    table: &'a str,
    column: &'a str,
    position: u64,
    column_type: Option<&'a ColumnType>,
    arrow_type: &'a DataType,
    nullable: bool,
    default: Option<&'a str>,
    generated: Option<&'a str>,
}

impl Rows {
    fn push(&mut self, row: Row<'_>) {
        self.catalog.append_value(row.catalog);
        self.schema.append_value(row.schema);
        self.table.append_value(row.table);
        self.column.append_value(row.column);
        self.position.append_value(row.position);
        self.default.append_option(row.default);
        self.nullable
            .append_value(if row.nullable { "YES" } else { "NO" });
        let name = match row.column_type {
            Some(column_type) => type_name(column_type),
            None => ColumnType::from_arrow(row.arrow_type)
                .map_or_else(|| row.arrow_type.to_string(), |t| type_name(&t)),
        };
        self.data_type.append_value(name);
        let max_length = match row.column_type {
            Some(ColumnType::Text { max_len: Some(n) }) => Some(u64::from(*n)),
            _ => None,
        };
        self.max_length.append_option(max_length);
        let octet_length = matches!(row.arrow_type, DataType::Utf8).then_some(i32::MAX as u64);
        self.octet_length.append_option(octet_length);
        let (precision, radix, scale) = match row.arrow_type {
            DataType::Int16 => (Some(16), Some(2), Some(0)),
            DataType::Int32 => (Some(32), Some(2), Some(0)),
            DataType::Int64 => (Some(64), Some(2), Some(0)),
            DataType::Float32 => (Some(24), Some(2), None),
            DataType::Float64 => (Some(53), Some(2), None),
            DataType::Decimal128(p, s) => (Some(u64::from(*p)), Some(10), Some(*s as u64)),
            _ => (None, None, None),
        };
        self.precision.append_option(precision);
        self.radix.append_option(radix);
        self.scale.append_option(scale);
        let datetime = matches!(row.arrow_type, DataType::Timestamp(..)).then_some(6);
        self.datetime_precision.append_option(datetime);
        self.interval_type.append_null();
        self.generated.append_value(if row.generated.is_some() {
            "ALWAYS"
        } else {
            "NEVER"
        });
        self.expression.append_option(row.generated);
    }

    fn finish(mut self) -> Vec<ArrayRef> {
        vec![
            Arc::new(self.catalog.finish()),
            Arc::new(self.schema.finish()),
            Arc::new(self.table.finish()),
            Arc::new(self.column.finish()),
            Arc::new(self.position.finish()),
            Arc::new(self.default.finish()),
            Arc::new(self.nullable.finish()),
            Arc::new(self.data_type.finish()),
            Arc::new(self.max_length.finish()),
            Arc::new(self.octet_length.finish()),
            Arc::new(self.precision.finish()),
            Arc::new(self.radix.finish()),
            Arc::new(self.scale.finish()),
            Arc::new(self.datetime_precision.finish()),
            Arc::new(self.interval_type.finish()),
            Arc::new(self.generated.finish()),
            Arc::new(self.expression.finish()),
        ]
    }
}

/// A table's columns, numbered from 1 as `pg_attribute` and `SELECT *` number them, then
/// their sub-columns after the last (so keys added by data never renumber a column).
fn table_rows(rows: &mut Rows, catalog: &str, table: &TableSchema) {
    let mut position = table.columns.len() as u64;
    for (index, column) in table.columns.iter().enumerate() {
        push_column(
            rows,
            catalog,
            table,
            column,
            index as u64 + 1,
            &mut position,
        );
    }
}

fn push_column(
    rows: &mut Rows,
    catalog: &str,
    table: &TableSchema,
    column: &ColumnDef,
    column_position: u64,
    position: &mut u64,
) {
    let arrow_type = column.column_type.arrow_type();
    rows.push(Row {
        catalog,
        schema: &table.schema_name,
        table: &table.name,
        column: &column.name,
        position: column_position,
        column_type: Some(&column.column_type),
        arrow_type: &arrow_type,
        nullable: !column.not_null && !table.primary_key.contains(&column.name),
        default: column.default_expr.as_deref(),
        generated: column.generated.as_deref(),
    });
    for (path, sub_type) in creek_common::object::sub_columns(&column.column_type, &column.name) {
        *position += 1;
        let sub_arrow = sub_type.arrow_type();
        rows.push(Row {
            catalog,
            schema: &table.schema_name,
            table: &table.name,
            column: &path,
            position: *position,
            column_type: Some(&sub_type),
            arrow_type: &sub_arrow,
            nullable: true,
            default: None,
            generated: None,
        });
    }
}

/// The rows of `information_schema.columns` for what `session` can name.
pub async fn columns_rows(cluster: &Cluster, session: &dyn Session) -> DfResult<Vec<ArrayRef>> {
    let state = session
        .as_any()
        .downcast_ref::<SessionState>()
        .ok_or_else(|| DataFusionError::Internal("a session without a catalog".into()))?;
    let mut rows = Rows::default();
    let catalogs = state.catalog_list();
    for catalog_name in catalogs.catalog_names() {
        let Some(catalog) = catalogs.catalog(&catalog_name) else {
            continue;
        };
        for schema_name in catalog.schema_names() {
            if schema_name == "information_schema" {
                continue;
            }
            let Some(schema) = catalog.schema(&schema_name) else {
                continue;
            };
            let mut names = schema.table_names();
            names.sort();
            for table_name in names {
                if let Some(table) = cluster.catalog().table(&schema_name, &table_name) {
                    table_rows(&mut rows, &catalog_name, &table);
                    continue;
                }
                // A relation that cannot be opened (a view whose table is gone) is left out,
                // not the listing failed.
                let Ok(Some(provider)) = schema.table(&table_name).await else {
                    continue;
                };
                for (index, field) in provider.schema().fields().iter().enumerate() {
                    rows.push(Row {
                        catalog: &catalog_name,
                        schema: &schema_name,
                        table: &table_name,
                        column: field.name(),
                        position: index as u64 + 1,
                        column_type: None,
                        arrow_type: field.data_type(),
                        nullable: field.is_nullable(),
                        default: None,
                        generated: None,
                    });
                }
            }
        }
    }
    Ok(rows.finish())
}

/// Builds the batch of `information_schema.columns`.
pub async fn columns_batch(
    cluster: &Cluster,
    session: &dyn Session,
    schema: datafusion::arrow::datatypes::SchemaRef,
) -> DfResult<RecordBatch> {
    Ok(RecordBatch::try_new(
        schema,
        columns_rows(cluster, session).await?,
    )?)
}
