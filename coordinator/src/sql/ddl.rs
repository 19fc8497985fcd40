//! DDL: turns sqlparser's CREATE/DROP/ALTER statements into cluster-state changes. Semantic
//! checks (duplicate columns, key columns that do not exist, ...) live in
//! `TableSchema::validate`, which the cluster applies before anything is created.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::fulltext::{self, AnalyzerDef, FulltextIndexDef};
use creek_common::schema::{ColumnDef, ColumnIndex, TableSchema, ViewDef};
use creek_common::types::{ColumnType, DEFAULT_NUMERIC_PRECISION, DEFAULT_NUMERIC_SCALE};
use creek_common::TableId;
use sqlparser::ast::{
    self, ColumnOption, CreateTable, DataType, ExactNumberInfo, ObjectName, TableConstraint,
};

mod index;
mod object;

pub use index::{create_index, drop_index};

use super::parse::{FulltextClause, TableClauses};
use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// Default shard count per data node for tables without `INTO n SHARDS`.
pub const DEFAULT_SHARDS_PER_NODE: u32 = 2;

pub use crate::plan::identifiers::ident_name;

/// Splits `[schema.]name` into (schema, name), using `default_schema` when unqualified.
pub fn split_name(name: &ObjectName, default_schema: &str) -> Result<(String, String)> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|part| {
            part.as_ident()
                .map(ident_name)
                .unwrap_or_else(|| part.to_string())
        })
        .collect();
    match parts.as_slice() {
        [table] => Ok((default_schema.to_string(), table.clone())),
        [schema, table] => Ok((schema.clone(), table.clone())),
        [_catalog, schema, table] => Ok((schema.clone(), table.clone())),
        _ => Err(Error::new(
            ErrorCode::SyntaxError,
            format!("invalid relation name {name}"),
        )),
    }
}

/// The longest `varchar(n)` PostgreSQL accepts.
const MAX_VARCHAR_LENGTH: u64 = 10_485_760;

/// `numeric(precision, scale)`, checked as PostgreSQL checks it, within what a 128-bit decimal
/// holds: 1 to 38 digits, and a scale from 0 to the precision (PostgreSQL 15 also allows a
/// negative scale and one above the precision; Creek refuses both rather than store them
/// differently).
fn numeric_type(precision: u64, scale: i64) -> Result<ColumnType> {
    let max_precision = u64::from(DEFAULT_NUMERIC_PRECISION);
    if !(1..=max_precision).contains(&precision) {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("NUMERIC precision {precision} must be between 1 and {max_precision}"),
        ));
    }
    if scale < 0 || scale as u64 > precision {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("NUMERIC scale {scale} must be between 0 and precision {precision}"),
        ));
    }
    Ok(ColumnType::Numeric {
        precision: u8::try_from(precision).expect("checked to be at most 38"),
        scale: i8::try_from(scale).expect("checked to be at most the precision"),
    })
}

/// `float(p)`: as in PostgreSQL, 1 to 24 bits is `real`, 25 to 53 `double precision`.
fn float_of_precision(bits: u64) -> Result<ColumnType> {
    match bits {
        0 => Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "precision for type float must be at least 1 bit",
        )),
        1..=24 => Ok(ColumnType::Real),
        25..=53 => Ok(ColumnType::Double),
        _ => Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "precision for type float must be less than 54 bits",
        )),
    }
}

fn varchar_length(length: u64) -> Result<u32> {
    if length == 0 {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "length for type varchar must be at least 1",
        ));
    }
    if length > MAX_VARCHAR_LENGTH {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            format!("length for type varchar cannot exceed {MAX_VARCHAR_LENGTH}"),
        ));
    }
    Ok(u32::try_from(length).expect("checked to be at most 10485760"))
}

/// Maps a SQL type to a Creek column type.
pub fn column_type(data_type: &DataType) -> Result<ColumnType> {
    use DataType as D;
    Ok(match data_type {
        D::Boolean | D::Bool => ColumnType::Boolean,
        D::SmallInt(_) | D::Int2(_) | D::TinyInt(_) => ColumnType::SmallInt,
        D::Int(_) | D::Integer(_) | D::Int4(_) | D::MediumInt(_) => ColumnType::Integer,
        D::BigInt(_) | D::Int8(_) | D::Int64 => ColumnType::BigInt,
        D::Real | D::Float4 | D::Float32 => ColumnType::Real,
        D::Double(_) | D::DoublePrecision | D::Float8 | D::Float64 => ColumnType::Double,
        D::Float(info) => match info {
            ExactNumberInfo::None => ColumnType::Double,
            ExactNumberInfo::Precision(bits) => float_of_precision(*bits)?,
            ExactNumberInfo::PrecisionAndScale(..) => {
                return Err(Error::new(
                    ErrorCode::SyntaxError,
                    "type float takes at most one argument, its precision in bits",
                ))
            }
        },
        D::Numeric(info) | D::Decimal(info) | D::Dec(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (
                    u64::from(DEFAULT_NUMERIC_PRECISION),
                    i64::from(DEFAULT_NUMERIC_SCALE),
                ),
                ExactNumberInfo::Precision(p) => (*p, 0),
                ExactNumberInfo::PrecisionAndScale(p, s) => (*p, *s),
            };
            numeric_type(precision, scale)?
        }
        D::Text | D::String(_) | D::Char(_) | D::Character(_) | D::Nvarchar(_) => {
            ColumnType::Text { max_len: None }
        }
        D::Varchar(length) | D::CharacterVarying(length) | D::CharVarying(length) => {
            ColumnType::Text {
                max_len: match length {
                    Some(ast::CharacterLength::IntegerLength { length, .. }) => {
                        Some(varchar_length(*length)?)
                    }
                    _ => None,
                },
            }
        }
        D::Timestamp(_, tz) => match tz {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => ColumnType::TimestampTz,
            _ => ColumnType::Timestamp,
        },
        D::TimestampNtz(_) | D::Datetime(_) => ColumnType::Timestamp,
        D::Date => ColumnType::Date,
        D::Array(inner) => match inner {
            ast::ArrayElemTypeDef::AngleBracket(t)
            | ast::ArrayElemTypeDef::SquareBracket(t, _)
            | ast::ArrayElemTypeDef::Parenthesis(t) => array_of(column_type(t)?)?,
            ast::ArrayElemTypeDef::None => {
                return Err(Error::new(
                    ErrorCode::SyntaxError,
                    "array type needs an element type",
                ))
            }
        },
        D::Custom(name, args) => {
            let type_name = name.to_string().to_lowercase();
            match (type_name.as_str(), args.as_slice()) {
                ("ip" | "inet", []) => ColumnType::Ip,
                ("array", [inner]) => array_of(column_type_from_name(inner)?)?,
                ("geo_point", []) => ColumnType::GeoPoint,
                ("geo_shape", []) => ColumnType::GeoShape,
                (super::parse::LIFTED_OBJECT_TYPE, [text]) => object::object_type(text)?,
                ("string" | "keyword", []) => ColumnType::Text { max_len: None },
                ("long", []) => ColumnType::BigInt,
                ("short", []) => ColumnType::SmallInt,
                ("float", []) => ColumnType::Real,
                ("double", []) => ColumnType::Double,
                ("timestamptz", []) => ColumnType::TimestampTz,
                _ => {
                    return Err(Error::new(
                        ErrorCode::UndefinedObject,
                        format!("type \"{name}\" does not exist"),
                    ))
                }
            }
        }
        other => {
            return Err(Error::new(
                ErrorCode::FeatureNotSupported,
                format!("column type {other} is not supported"),
            ))
        }
    })
}

/// An array of `inner`.
fn array_of(inner: ColumnType) -> Result<ColumnType> {
    Ok(ColumnType::Array(Box::new(inner)))
}

fn column_type_from_name(name: &str) -> Result<ColumnType> {
    let dialect = sqlparser::dialect::PostgreSqlDialect {};
    let mut parser = sqlparser::parser::Parser::new(&dialect)
        .try_with_sql(name)
        .map_err(|e| Error::new(ErrorCode::SyntaxError, e.to_string()))?;
    let data_type = parser
        .parse_data_type()
        .map_err(|e| Error::new(ErrorCode::SyntaxError, e.to_string()))?;
    column_type(&data_type)
}

fn columns_of(constraint_columns: &[ast::IndexColumn]) -> Vec<String> {
    constraint_columns
        .iter()
        .map(|c| match &c.column.expr {
            ast::Expr::Identifier(ident) => ident_name(ident),
            other => other.to_string().to_lowercase(),
        })
        .collect()
}

/// Builds the table definition of a `CREATE TABLE`.
pub fn table_from_create(
    create: &CreateTable,
    clauses: &TableClauses,
    default_schema: &str,
    data_nodes: usize,
    analyzers: &BTreeMap<String, AnalyzerDef>,
) -> Result<TableSchema> {
    if create.query.is_some() {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "CREATE TABLE AS is not supported yet",
        ));
    }
    let (schema_name, name) = split_name(&create.name, default_schema)?;
    let mut primary_key: Vec<String> = Vec::new();
    let mut columns = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        let column_name = ident_name(&column.name);
        let mut not_null = false;
        let mut default_expr = None;
        let mut generated = None;
        for option in &column.options {
            match &option.option {
                ColumnOption::NotNull => not_null = true,
                ColumnOption::Null => not_null = false,
                ColumnOption::Default(expr) => default_expr = Some(expr.to_string()),
                ColumnOption::Generated {
                    generation_expr: Some(expr),
                    generation_expr_mode,
                    ..
                } if *generation_expr_mode != Some(ast::GeneratedExpressionMode::Virtual) => {
                    generated = Some(expr.to_string());
                }
                ColumnOption::PrimaryKey(_) => {
                    primary_key.push(column_name.clone());
                    not_null = true;
                }
                ColumnOption::Unique(_) => {
                    return Err(Error::new(
                        ErrorCode::FeatureNotSupported,
                        "UNIQUE constraints are not supported; use a PRIMARY KEY",
                    ))
                }
                ColumnOption::Comment(_) => {}
                other => {
                    return Err(Error::new(
                        ErrorCode::FeatureNotSupported,
                        format!("column option {other} is not supported"),
                    ))
                }
            }
        }
        // A column's own FULLTEXT index replaces its exact terms: `=` and LIKE read its
        // values from the columnar store instead, as for INDEX OFF.
        let own_fulltext = clauses
            .fulltext
            .iter()
            .any(|index| index.columns == [column_name.clone()] && index.name == column_name);
        columns.push(ColumnDef {
            index: if own_fulltext {
                ColumnIndex::Off
            } else {
                clauses
                    .column_index
                    .get(&column_name)
                    .copied()
                    .unwrap_or_default()
            },
            name: column_name,
            column_type: column_type(&column.data_type)?,
            not_null,
            default_expr,
            generated,
        });
    }
    if let Some(name) = clauses
        .column_index
        .keys()
        .find(|name| !columns.iter().any(|c| &c.name == *name))
    {
        return Err(Error::new(
            ErrorCode::SyntaxError,
            format!("INDEX OFF given for {name}, which is not a column definition"),
        ));
    }
    for constraint in &create.constraints {
        match constraint {
            TableConstraint::PrimaryKey(pk) => {
                if !primary_key.is_empty() {
                    return Err(Error::new(
                        ErrorCode::InvalidParameterValue,
                        "multiple primary keys are not allowed",
                    ));
                }
                primary_key = columns_of(&pk.columns);
                for key in &primary_key {
                    if let Some(column) = columns.iter_mut().find(|c| &c.name == key) {
                        column.not_null = true;
                    }
                }
            }
            other => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    format!("table constraint {other} is not supported"),
                ))
            }
        }
    }
    let mut settings = BTreeMap::new();
    for (key, value) in &clauses.settings {
        check_table_setting(key, value)?;
        settings.insert(key.clone(), value.clone());
    }
    let table = TableSchema {
        id: TableId(0),
        schema_name,
        name,
        columns,
        primary_key,
        clustered_by: clauses.clustered_by.clone(),
        num_shards: clauses.num_shards.unwrap_or_else(|| {
            let per_node = u32::try_from(data_nodes.max(1)).unwrap_or(u32::MAX);
            DEFAULT_SHARDS_PER_NODE
                .saturating_mul(per_node)
                .min(creek_common::schema::MAX_SHARDS)
        }),
        settings,
        indexes: Vec::new(),
        fulltext: fulltext_indexes(&clauses.fulltext, analyzers)?,
        version: 0,
        partitioned_by: clauses.partitioned_by.clone(),
        partitions: Vec::new(),
    };
    table.validate()?;
    crate::sql::dml::check_generated_columns(&table)?;
    Ok(table)
}

/// The FULLTEXT indexes `CREATE TABLE` declares, each with its analyzer's definition: a
/// built-in one, or one of cluster state's `analyzers`.
fn fulltext_indexes(
    clauses: &[FulltextClause],
    analyzers: &BTreeMap<String, AnalyzerDef>,
) -> Result<Vec<FulltextIndexDef>> {
    clauses
        .iter()
        .map(|clause| {
            let analyzer = clause
                .analyzer
                .clone()
                .unwrap_or_else(|| fulltext::DEFAULT_ANALYZER.to_string());
            let definition = fulltext::builtin_analyzer(&analyzer)
                .or_else(|| analyzers.get(&analyzer).cloned())
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::UndefinedObject,
                        format!("analyzer {analyzer} does not exist"),
                    )
                })?;
            Ok(FulltextIndexDef {
                name: clause.name.clone(),
                columns: clause.columns.clone(),
                analyzer,
                definition,
            })
        })
        .collect()
}

/// Whether `key` names a table setting.
pub fn is_table_setting(key: &str) -> bool {
    matches!(
        key,
        "number_of_replicas"
            | "refresh_interval"
            | "translog.durability"
            | creek_common::schema::TRANSLOG_FLUSH_THRESHOLD
            | "write.wait_for_active_shards"
            | "column_policy"
    ) || crate::catalog::commands::is_allocation_setting(key)
}

/// Checks one table setting of `CREATE TABLE .. WITH (..)` or `ALTER TABLE .. SET (..)`.
pub fn check_table_setting(key: &str, value: &str) -> Result<()> {
    let invalid = |message: String| Err(Error::new(ErrorCode::InvalidParameterValue, message));
    match key {
        "number_of_replicas" => {
            crate::catalog::commands::parse_replicas(value).map_err(Error::Coded)?;
        }
        "refresh_interval" => {
            if creek_common::schema::parse_duration_ms(value).is_none() {
                return invalid(format!("invalid refresh_interval '{value}'"));
            }
        }
        "translog.durability" => {
            if !matches!(value.to_lowercase().as_str(), "request" | "async") {
                return invalid(format!(
                    "translog.durability must be 'request' or 'async', got '{value}'"
                ));
            }
        }
        creek_common::schema::TRANSLOG_FLUSH_THRESHOLD => {
            if creek_common::state::parse_byte_size(value).is_none_or(|bytes| bytes == 0) {
                return invalid(format!(
                    "translog.flush_threshold_size must be a byte size above 0 such as '64mb', got '{value}'"
                ));
            }
        }
        "write.wait_for_active_shards" => {
            let valid = value.eq_ignore_ascii_case("all")
                || value.parse::<usize>().is_ok_and(|n| (1..=100).contains(&n));
            if !valid {
                return invalid(format!(
                    "write.wait_for_active_shards must be 'all' or a number of copies from 1, got '{value}'"
                ));
            }
        }
        "column_policy" => {}
        key if crate::catalog::commands::is_allocation_setting(key) => {}
        _ => return invalid(format!("invalid table setting {key}")),
    }
    Ok(())
}

/// A type's name in upper case, but not the quoted names of an object's sub-columns.
fn uppercase_outside_quotes(text: &str) -> String {
    let mut quoted = false;
    text.chars()
        .map(|c| {
            if c == '"' {
                quoted = !quoted;
            }
            if quoted {
                c
            } else {
                c.to_ascii_uppercase()
            }
        })
        .collect()
}

/// Renders `SHOW CREATE TABLE`.
pub fn show_create_table(table: &TableSchema) -> String {
    let mut lines: Vec<String> = table
        .columns
        .iter()
        .map(|c| {
            let mut line = format!(
                "   \"{}\" {}",
                c.name,
                uppercase_outside_quotes(&c.column_type.to_string())
            );
            if c.not_null && !table.primary_key.contains(&c.name) {
                line.push_str(" NOT NULL");
            }
            let own_fulltext = table
                .fulltext_index(&c.name)
                .filter(|index| index.columns == [c.name.clone()]);
            if let Some(index) = own_fulltext {
                line.push_str(&format!(
                    " INDEX USING FULLTEXT WITH (analyzer = '{}')",
                    index.analyzer
                ));
            } else if c.index == ColumnIndex::Off {
                line.push_str(" INDEX OFF");
            }
            if let Some(default) = &c.default_expr {
                line.push_str(&format!(" DEFAULT {default}"));
            }
            if let Some(expression) = &c.generated {
                line.push_str(&format!(" GENERATED ALWAYS AS ({expression})"));
            }
            line
        })
        .collect();
    if !table.primary_key.is_empty() {
        let keys: Vec<String> = table
            .primary_key
            .iter()
            .map(|k| format!("\"{k}\""))
            .collect();
        lines.push(format!("   PRIMARY KEY ({})", keys.join(", ")));
    }
    for index in &table.fulltext {
        if index.columns == [index.name.clone()] {
            continue;
        }
        let columns: Vec<String> = index.columns.iter().map(|c| format!("\"{c}\"")).collect();
        lines.push(format!(
            "   INDEX \"{}\" USING FULLTEXT ({}) WITH (analyzer = '{}')",
            index.name,
            columns.join(", "),
            index.analyzer
        ));
    }
    let mut text = format!(
        "CREATE TABLE IF NOT EXISTS \"{}\".\"{}\" (\n{}\n)\n",
        table.schema_name,
        table.name,
        lines.join(",\n")
    );
    match &table.clustered_by {
        Some(column) => text.push_str(&format!(
            "CLUSTERED BY (\"{column}\") INTO {} SHARDS\n",
            table.num_shards
        )),
        None => text.push_str(&format!("CLUSTERED INTO {} SHARDS\n", table.num_shards)),
    }
    if table.is_partitioned() {
        let columns: Vec<String> = table
            .partitioned_by
            .iter()
            .map(|c| format!("\"{c}\""))
            .collect();
        text.push_str(&format!("PARTITIONED BY ({})\n", columns.join(", ")));
    }
    let mut settings = table.settings.clone();
    settings
        .entry("number_of_replicas".into())
        .or_insert_with(|| "0".into());
    settings
        .entry("refresh_interval".into())
        .or_insert_with(|| "1000".into());
    settings
        .entry("translog.durability".into())
        .or_insert_with(|| "REQUEST".into());
    let rendered: Vec<String> = settings
        .iter()
        .map(|(k, v)| {
            if v.parse::<f64>().is_ok() {
                format!("   \"{k}\" = {v}")
            } else {
                format!("   \"{k}\" = '{v}'")
            }
        })
        .collect();
    text.push_str(&format!("WITH (\n{}\n)", rendered.join(",\n")));
    text
}

/// Adds a column (`ALTER TABLE ... ADD COLUMN`).
pub async fn add_column(
    cluster: &Arc<Cluster>,
    table: &TableSchema,
    column: &ast::ColumnDef,
    index: ColumnIndex,
    if_not_exists: bool,
) -> Result<()> {
    let name = ident_name(&column.name);
    if table.column(&name).is_some() {
        if if_not_exists {
            return Ok(());
        }
        return Err(Error::new(
            ErrorCode::DuplicateObject,
            format!(
                "column \"{name}\" of relation \"{}\" already exists",
                table.name
            ),
        ));
    }
    let mut not_null = false;
    let mut default_expr = None;
    for option in &column.options {
        match &option.option {
            ColumnOption::NotNull => not_null = true,
            ColumnOption::Null => {}
            ColumnOption::Default(expr) => default_expr = Some(expr.to_string()),
            other => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    format!("column option {other} is not supported in ADD COLUMN"),
                ))
            }
        }
    }
    let column = ColumnDef {
        name,
        column_type: column_type(&column.data_type)?,
        not_null,
        default_expr,
        index,
        generated: None,
    };
    let mut changed = table.clone();
    changed.columns.push(column.clone());
    changed.validate()?;
    cluster.add_column(table, column, if_not_exists).await
}

/// Creates or replaces a view.
pub async fn create_view(cluster: &Arc<Cluster>, view: ViewDef, or_replace: bool) -> Result<()> {
    cluster.create_view(view, or_replace).await
}
