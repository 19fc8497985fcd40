//! `COPY table [(columns)] TO DIRECTORY 'uri'`: every shard's visible rows as JSON lines, one
//! file per shard (`<table>_<shard>_.json`, as CrateDB names them) under a `file://` or
//! `s3://` directory, written by the nodes of the shards' primaries in parallel (a
//! `file://` directory is on each of those nodes). The coordinator checks the statement,
//! refreshes the table so that every acknowledged write is exported, and sums the rows.

use std::collections::BTreeMap;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::object_uri;
use creek_common::schema::TableSchema;
use futures::future::try_join_all;
use tokio_util::sync::CancellationToken;

use super::files::text_option;
use crate::cluster::Cluster;
use crate::error::{Error, Result};
use crate::jobs::JobProgress;
use crate::sql::ddl::split_name;
use crate::sql::parse::CopyToClause;

/// A checked `COPY .. TO DIRECTORY`.
pub struct CopyTo {
    table: TableSchema,
    columns: Vec<String>,
    /// The directory, without a trailing `/`.
    directory: String,
    s3: BTreeMap<String, String>,
}

/// Checks a parsed `COPY .. TO DIRECTORY` against the catalog and its options.
pub fn copy_to(cluster: &Cluster, clause: &CopyToClause, default_schema: &str) -> Result<CopyTo> {
    let (schema, name) = split_name(&clause.table, default_schema)?;
    let table = cluster.catalog().existing_table(&schema, &name)?;
    let columns = clause
        .columns
        .clone()
        .unwrap_or_else(|| table.columns.iter().map(|c| c.name.clone()).collect());
    if let Some(column) = columns.iter().find(|c| table.column(c).is_none()) {
        return Err(Error::new(
            ErrorCode::UndefinedColumn,
            format!("column \"{column}\" of relation \"{name}\" does not exist"),
        ));
    }
    let mut s3 = BTreeMap::new();
    for (key, value) in &clause.options {
        match key.as_str() {
            "format" if text_option(key, value)?.eq_ignore_ascii_case("json") => {}
            "format" => {
                return Err(Error::new(
                    ErrorCode::FeatureNotSupported,
                    "COPY TO DIRECTORY writes JSON lines only (format = 'json')",
                ))
            }
            key if object_uri::S3_OPTIONS.contains(&key) => {
                s3.insert(key.to_string(), text_option(key, value)?);
            }
            other => {
                return Err(Error::new(
                    ErrorCode::InvalidParameterValue,
                    format!(
                        "unknown COPY TO option {other} (known: format, access_key_id, \
                         secret_access_key, session_token, endpoint, region)"
                    ),
                ))
            }
        }
    }
    object_uri::check_uri(&clause.uri, &s3).map_err(Error::Coded)?;
    if clause.uri.contains(['*', '?']) {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "COPY TO DIRECTORY takes a directory, not a pattern",
        ));
    }
    Ok(CopyTo {
        table,
        columns,
        directory: clause.uri.trim_end_matches('/').to_string(),
        s3,
    })
}

/// Runs the export; returns the number of rows written.
pub async fn copy_to_directory(
    cluster: Arc<Cluster>,
    copy: CopyTo,
    cancel: CancellationToken,
    progress: &JobProgress,
) -> Result<u64> {
    cluster.refresh_table(&copy.table).await?;
    // The partitions as they are now (a partition dropped since planning has no shards).
    let table = crate::sql::dml::partitions::current(&cluster, &copy.table);
    let exports = table.live_shards().into_iter().map(|shard| {
        let uri = format!("{}/{}_{shard}_.json", copy.directory, copy.table.name);
        let (cluster, copy) = (&cluster, &copy);
        async move {
            let (rows, bytes) = cluster
                .export_shard(&copy.table, shard, &copy.columns, &uri, &copy.s3)
                .await?;
            progress.add(rows, bytes);
            tracing::info!(table = %copy.table.name, shard, %uri, rows, "COPY TO: shard written");
            Ok::<u64, Error>(rows)
        }
    });
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Error::new(
            ErrorCode::QueryCanceled,
            "canceling statement due to user request",
        )),
        rows = try_join_all(exports) => Ok(rows?.into_iter().sum()),
    }
}
