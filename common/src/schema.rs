//! Table definitions as kept in cluster state and sent to the data nodes that hold shards.
//!
//! A table's rows are stored as documents (the shard's field layout is the data node's
//! business); adding a column never rewrites data. This module owns the definition and its invariants
//! (checked in [`TableSchema::validate`]); it must not know how a shard stores documents.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::{CodedError, ErrorCode};
use crate::fulltext::FulltextIndexDef;
use crate::ids::TableId;
use crate::types::ColumnType;

/// The table setting bounding the translog a shard keeps between flushes, hence what a
/// restart replays.
pub const TRANSLOG_FLUSH_THRESHOLD: &str = "translog.flush_threshold_size";

/// Its default, in bytes.
pub const DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES: u64 = 64 * 1024 * 1024;

/// Name of the hidden column holding a row's document id (the primary key's canonical form,
/// or a generated id for tables without a primary key).
pub const ID_COLUMN: &str = "_id";
/// The longest text an index term holds, in bytes (tantivy's `MAX_TOKEN_LEN`; a data node
/// test keeps the two equal). Tantivy drops a longer term without an error, so a row whose
/// `_id` is longer is refused, and an equality with a longer text is never asked of the index.
pub const MAX_TERM_BYTES: usize = 65_530;
/// Name of the hidden column holding the sequence number of the operation that wrote a row.
pub const SEQ_NO_COLUMN: &str = "_seq_no";
/// Name of the hidden column holding the primary term under which a row was written; with
/// `_seq_no` it is the row's version, which conditional writes compare.
pub const PRIMARY_TERM_COLUMN: &str = "_primary_term";

/// Name of the hidden column holding a row's relevance to the query's `MATCH` (BM25; 1.0
/// in a query without one).
pub const SCORE_COLUMN: &str = "_score";

/// One column of a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    /// The column name, already normalised (unquoted identifiers are lowercase).
    pub name: String,
    /// The declared type.
    pub column_type: ColumnType,
    /// Whether a null is rejected on write.
    pub not_null: bool,
    /// The `DEFAULT` expression as SQL text, evaluated by the coordinator at insert time.
    pub default_expr: Option<String>,
    /// How the column's values are indexed besides being stored columnar.
    #[serde(default, skip_serializing_if = "ColumnIndex::is_plain")]
    pub index: ColumnIndex,
    /// For a generated column (`GENERATED ALWAYS AS expr`), the expression as SQL text: the
    /// coordinator computes the column from the row's other columns on every write.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generated: Option<String>,
}

/// A column's index, as `CREATE TABLE` declares it (CrateDB's `INDEX OFF`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnIndex {
    /// Every value is an exact term of the inverted index (and columnar): equality, `IN`
    /// and prefix filters are answered from the index.
    #[default]
    Plain,
    /// Columnar only: filters are evaluated on the column values (ranges and equality
    /// still narrow a scan through the columnar data), ingest skips the inverted index.
    Off,
}

impl ColumnIndex {
    /// Whether this is the default.
    pub fn is_plain(&self) -> bool {
        *self == ColumnIndex::Plain
    }
}

/// A table or view definition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableSchema {
    /// Stable id; shard directories are named after it.
    pub id: TableId,
    /// The schema (namespace) name, e.g. `doc`.
    pub schema_name: String,
    /// The table name.
    pub name: String,
    /// Columns in declaration order.
    pub columns: Vec<ColumnDef>,
    /// Primary key columns, in key order; empty when rows get a generated `_id`.
    pub primary_key: Vec<String>,
    /// The `CLUSTERED BY` column, if any; otherwise rows route by `_id`.
    pub clustered_by: Option<String>,
    /// Number of shards, fixed at creation.
    pub num_shards: u32,
    /// Table settings from `WITH (...)`, as given (e.g. `number_of_replicas`).
    pub settings: BTreeMap<String, String>,
    /// Indexes declared with `CREATE INDEX`. Every column is indexed anyway; these are kept so
    /// that they are listed like PostgreSQL's and can be dropped again.
    #[serde(default)]
    pub indexes: Vec<IndexDef>,
    /// FULLTEXT indexes: analyzed text searched by `MATCH` (the shard field layout gives each
    /// one a field of its own).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fulltext: Vec<FulltextIndexDef>,
    /// Grows with every change of the definition (a column added, ...). A write carries the
    /// version it was planned with; a data node holding an older one waits for the newer
    /// definition instead of dropping the values it does not know.
    #[serde(default)]
    pub version: u64,
    /// The `PARTITIONED BY` columns, in order; empty for a table without partitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitioned_by: Vec<String>,
    /// The partitions that exist, in creation order (see [`crate::partition`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partitions: Vec<crate::partition::PartitionDef>,
}

/// An index declared with `CREATE INDEX`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    /// The index name, unique among the relations of its schema.
    pub name: String,
    /// The indexed columns, in order.
    pub columns: Vec<String>,
}

/// The most shards a table may have.
pub const MAX_SHARDS: u32 = 1024;

/// A view: a named query kept in cluster state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewDef {
    /// The schema (namespace) name.
    pub schema_name: String,
    /// The view name.
    pub name: String,
    /// The defining `SELECT` as SQL text.
    pub query: String,
}

/// Default refresh interval, in milliseconds, for tables that do not set `refresh_interval`.
pub const DEFAULT_REFRESH_INTERVAL_MS: u64 = 1000;

impl TableSchema {
    /// Returns the column called `name`, if any.
    pub fn column(&self, name: &str) -> Option<&ColumnDef> {
        self.columns.iter().find(|column| column.name == name)
    }

    /// Returns the index of the column called `name`, if any.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|column| column.name == name)
    }

    /// Returns the Arrow schema of the user-visible columns, in declaration order.
    pub fn arrow_schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|column| crate::types::column_field(&column.name, &column.column_type))
            .collect();
        Arc::new(Schema::new(fields))
    }

    /// Returns the refresh interval in milliseconds; 0 or negative disables periodic refresh.
    pub fn refresh_interval_ms(&self) -> i64 {
        self.settings
            .get("refresh_interval")
            .and_then(|value| parse_duration_ms(value))
            .unwrap_or(DEFAULT_REFRESH_INTERVAL_MS as i64)
    }

    /// Whether the table sets `refresh_interval` itself rather than leaving the default.
    pub fn sets_refresh_interval(&self) -> bool {
        self.settings.contains_key("refresh_interval")
    }

    /// How many translog bytes a shard collects before it flushes (`translog.flush_threshold_size`,
    /// Elasticsearch's name: `64mb` by default; a byte size such as `512kb`).
    pub fn translog_flush_threshold_bytes(&self) -> u64 {
        self.settings
            .get(TRANSLOG_FLUSH_THRESHOLD)
            .and_then(|value| crate::state::parse_byte_size(value))
            .unwrap_or(DEFAULT_TRANSLOG_FLUSH_THRESHOLD_BYTES)
    }

    /// Returns whether every write is fsynced before it is acknowledged
    /// (`translog.durability = 'request'`, the default).
    pub fn fsync_per_request(&self) -> bool {
        !matches!(
            self.settings.get("translog.durability").map(String::as_str),
            Some("async") | Some("ASYNC")
        )
    }

    /// Returns the name of the index of the table's primary key (`<table>_pkey`), if it has
    /// one.
    pub fn primary_key_index_name(&self) -> Option<String> {
        (!self.primary_key.is_empty()).then(|| format!("{}_pkey", self.name))
    }

    /// Checks the invariants a table must satisfy before it is stored.
    pub fn validate(&self) -> Result<(), CodedError> {
        if self.columns.is_empty() {
            return Err(CodedError::new(
                ErrorCode::InvalidParameterValue,
                format!("table {} must have at least one column", self.name),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for column in &self.columns {
            if column.name.starts_with('_') {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "column name {} is invalid: names starting with _ are reserved",
                        column.name
                    ),
                ));
            }
            // Shards keep array columns' exact form under a key starting with DEL; dots
            // would be read as JSON paths.
            if column.name.contains(['.', '\u{7f}']) || column.name.is_empty() {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "column name {:?} is invalid: names must not be empty or contain '.' or DEL",
                        column.name
                    ),
                ));
            }
            crate::object::check_declared(&column.column_type, &column.name)?;
            if !seen.insert(column.name.as_str()) {
                return Err(CodedError::new(
                    ErrorCode::DuplicateObject,
                    format!("column {} specified more than once", column.name),
                ));
            }
        }
        for key in self.primary_key.iter().chain(self.clustered_by.iter()) {
            let Some(column) = self.column(key) else {
                return Err(CodedError::new(
                    ErrorCode::UndefinedColumn,
                    format!("column {key} named in a key does not exist"),
                ));
            };
            if self.primary_key.contains(key) && column.index == ColumnIndex::Off {
                // Key lookups and uniqueness go through the key's index.
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("primary key column {key} cannot be INDEX OFF"),
                ));
            }
            if !column.column_type.is_routable() {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "column {key} of type {} cannot be a key",
                        column.column_type
                    ),
                ));
            }
        }
        if let Some(clustered_by) = &self.clustered_by {
            if !self.primary_key.is_empty() && !self.primary_key.contains(clustered_by) {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("clustered by column {clustered_by} must be part of the primary key"),
                ));
            }
        }
        self.validate_fulltext()?;
        self.validate_partitioning()?;
        if self.num_shards == 0 || self.num_shards > MAX_SHARDS {
            return Err(CodedError::new(
                ErrorCode::InvalidParameterValue,
                format!(
                    "number of shards must be between 1 and {MAX_SHARDS}, got {}",
                    self.num_shards
                ),
            ));
        }
        Ok(())
    }
}

impl TableSchema {
    /// Returns the FULLTEXT index called `name`, if any.
    pub fn fulltext_index(&self, name: &str) -> Option<&FulltextIndexDef> {
        self.fulltext.iter().find(|index| index.name == name)
    }

    /// A FULLTEXT index names text columns of the table, and its name is unique among the
    /// table's columns and indexes, unless it is a column's own (column-level) index.
    fn validate_fulltext(&self) -> Result<(), CodedError> {
        let mut names = std::collections::HashSet::new();
        for index in &self.fulltext {
            if index.name.starts_with('_') || index.name.contains(['.', '\u{7f}']) {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("index name {:?} is invalid", index.name),
                ));
            }
            if !names.insert(index.name.as_str()) {
                return Err(CodedError::new(
                    ErrorCode::DuplicateObject,
                    format!("index {} specified more than once", index.name),
                ));
            }
            let own = index.columns.len() == 1 && index.columns[0] == index.name;
            if self.column(&index.name).is_some() && !own {
                return Err(CodedError::new(
                    ErrorCode::DuplicateObject,
                    format!("index {} has the name of a column", index.name),
                ));
            }
            if index.columns.is_empty() {
                return Err(CodedError::new(
                    ErrorCode::InvalidParameterValue,
                    format!("index {} names no column", index.name),
                ));
            }
            for name in &index.columns {
                let Some(column) = self.column(name) else {
                    return Err(CodedError::new(
                        ErrorCode::UndefinedColumn,
                        format!("column {name} of index {} does not exist", index.name),
                    ));
                };
                if !matches!(column.column_type, ColumnType::Text { .. }) {
                    return Err(CodedError::new(
                        ErrorCode::DatatypeMismatch,
                        format!(
                            "FULLTEXT index {} can only index text columns, {name} is {}",
                            index.name, column.column_type
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Parses a duration such as `1s`, `500ms`, `2m` or a bare number of milliseconds.
pub fn parse_duration_ms(text: &str) -> Option<i64> {
    let text = text.trim().trim_matches('\'');
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '-'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: i64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1,
        "s" => 1000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return None,
    };
    // A duration too long to count in milliseconds is no duration at all, not a wrapped one.
    value.checked_mul(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(columns: &[&str], pk: &[&str]) -> TableSchema {
        TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: columns
                .iter()
                .map(|name| ColumnDef {
                    name: name.to_string(),
                    column_type: ColumnType::BigInt,
                    not_null: false,
                    default_expr: None,
                    generated: None,
                    index: Default::default(),
                })
                .collect(),
            primary_key: pk.iter().map(|s| s.to_string()).collect(),
            clustered_by: None,
            num_shards: 4,
            settings: BTreeMap::new(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 0,
        }
    }

    #[test]
    fn validate_rejects_bad_tables() {
        assert!(table(&["a", "b"], &["a"]).validate().is_ok());
        assert_eq!(
            table(&["a", "a"], &[]).validate().unwrap_err().code,
            ErrorCode::DuplicateObject
        );
        assert_eq!(
            table(&["a"], &["b"]).validate().unwrap_err().code,
            ErrorCode::UndefinedColumn
        );
        assert!(table(&["_x"], &[]).validate().is_err());
        let mut no_shards = table(&["a"], &[]);
        no_shards.num_shards = 0;
        assert!(no_shards.validate().is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration_ms("1s"), Some(1000));
        assert_eq!(parse_duration_ms("250ms"), Some(250));
        assert_eq!(parse_duration_ms("'2m'"), Some(120_000));
        assert_eq!(parse_duration_ms("-1"), Some(-1));
        assert_eq!(parse_duration_ms("x"), None);
        assert_eq!(parse_duration_ms("9223372036854775807h"), None);
        assert_eq!(parse_duration_ms("-9223372036854775808ms"), Some(i64::MIN));
    }
}
