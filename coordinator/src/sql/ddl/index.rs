//! `CREATE INDEX` and `DROP INDEX`. Every column not declared `INDEX OFF` is indexed
//! already, so an index is a
//! declaration recorded in cluster state (`catalog/commands/index.rs`), listed like
//! PostgreSQL's and dropped again; what it cannot honour is refused rather than accepted and
//! ignored: a UNIQUE index (only the primary key is unique), an index on expressions and a
//! partial index.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::IndexDef;
use sqlparser::ast::{self, ObjectName};

use super::{ident_name, split_name};
use crate::catalog::commands::relation_exists;
use crate::cluster::Cluster;
use crate::error::{Error, Result};

/// Runs `CREATE INDEX`.
pub async fn create_index(
    cluster: &Arc<Cluster>,
    create: &ast::CreateIndex,
    default_schema: &str,
) -> Result<()> {
    if create.unique {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "unique indexes are not supported: only a primary key is unique",
        ));
    }
    if create.predicate.is_some() {
        return Err(Error::new(
            ErrorCode::FeatureNotSupported,
            "partial indexes are not supported: every row of every column is indexed",
        ));
    }
    let (schema, table_name) = split_name(&create.table_name, default_schema)?;
    let table = cluster.catalog().existing_table(&schema, &table_name)?;
    let mut columns = Vec::with_capacity(create.columns.len());
    for column in &create.columns {
        match &column.column.expr {
            ast::Expr::Identifier(ident) => {
                let name = ident_name(ident);
                if table
                    .column(&name)
                    .is_some_and(|c| c.index == creek_common::schema::ColumnIndex::Off)
                {
                    // Its shards hold no inverted index for it, and adding one would mean
                    // rewriting them.
                    return Err(Error::new(
                        ErrorCode::FeatureNotSupported,
                        format!("column {name} is INDEX OFF: an index on it is not supported"),
                    ));
                }
                columns.push(name)
            }
            other => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    format!("indexes on expressions are not supported: {other}"),
                ))
            }
        }
    }
    let name = match &create.name {
        Some(name) => index_name(name, &schema)?,
        None => {
            // PostgreSQL's choice of name: `<table>_<columns>_idx`, numbered if it is taken.
            let base = format!("{}_{}_idx", table.name, columns.join("_"));
            let state = cluster.catalog().state();
            let mut name = base.clone();
            let mut suffix = 1;
            while relation_exists(&state, &schema, &name) {
                name = format!("{base}{suffix}");
                suffix += 1;
            }
            name
        }
    };
    cluster
        .create_index(
            &schema,
            &table.name,
            IndexDef { name, columns },
            create.if_not_exists,
        )
        .await
}

/// Runs `DROP INDEX [IF EXISTS] name`.
pub async fn drop_index(
    cluster: &Arc<Cluster>,
    name: &ObjectName,
    if_exists: bool,
    default_schema: &str,
) -> Result<()> {
    let (schema, index) = split_name(name, default_schema)?;
    cluster.drop_index(&schema, &index, if_exists).await
}

/// An index name given as `name` or `schema.name`, which must be the table's schema.
fn index_name(name: &ObjectName, table_schema: &str) -> Result<String> {
    let (schema, index) = split_name(name, table_schema)?;
    if schema != table_schema {
        return Err(Error::new(
            ErrorCode::SyntaxError,
            "an index is created in the schema of its table; do not qualify its name",
        ));
    }
    Ok(index)
}
