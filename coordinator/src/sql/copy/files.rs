//! `COPY table FROM 'uri'`: JSON lines or CSV files, read by the coordinator running the
//! statement from its file system (`file:///dir/*.json`) or from S3 (`s3://bucket/prefix/*`)
//! through `object_store`, and written through the INSERT path in batches.
//!
//! A bad row (unparseable, an unknown column, a value its column cannot hold, a duplicate
//! key) is counted against its file with its line and message, and the other rows are
//! written: `RETURN SUMMARY` answers a row per file with those counts; without it, the
//! statement fails if any row failed, saying how many were written. Rows are never dropped
//! silently. Options and their checking live here; the statement's syntax in
//! `sql::parse::copy_files`.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::fulltext::Param;
use creek_common::object_uri;
use creek_common::schema::TableSchema;
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{ArrayRef, StringBuilder};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::record_batch::RecordBatch;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio_util::sync::CancellationToken;

use super::records::{csv_fields, RecordScan};
use super::{CopyFormat, MAX_RECORD_BYTES, ROWS_PER_WRITE};
use crate::cluster::{Cluster, SessionWrites, Visibility};
use crate::error::{Error, Result};
use crate::jobs::JobProgress;
use crate::sql::ddl::split_name;
use crate::sql::dml::objects::ensure_object_keys;
use crate::sql::dml::{conform_batch, write_batch};
use crate::sql::parse::CopyFromClause;

/// Messages kept per file, and line numbers per message, in a summary.
const MAX_ERROR_MESSAGES: usize = 10;
const MAX_ERROR_LINES: usize = 10;

/// How rows are written in the files.
#[derive(Debug, Clone)]
enum FileFormat {
    /// One JSON object per line, keys naming columns.
    Json,
    /// CSV; with a header line naming the columns (the default) or in the COPY's column order.
    Csv(CopyFormat),
}

/// A checked `COPY .. FROM 'uri'`.
pub struct FileCopy {
    table: TableSchema,
    /// The columns the files may fill: the named ones, else every column.
    columns: Vec<String>,
    /// Whether the COPY named its columns (then other JSON keys are not imported).
    named: bool,
    uri: String,
    format: FileFormat,
    /// Whether the statement answers a summary per file.
    pub summary: bool,
    s3: BTreeMap<String, String>,
}

/// What became of one file's rows.
#[derive(Debug, Default)]
pub struct FileSummary {
    pub uri: String,
    pub success_count: u64,
    pub error_count: u64,
    /// Per error message (the first ones): how often, and the first lines it happened on.
    pub errors: BTreeMap<String, (u64, Vec<u64>)>,
    /// The error on the lowest line (rows are converted after later lines were read).
    pub first: Option<(u64, String)>,
}

impl FileSummary {
    fn fail(&mut self, line: u64, message: String) {
        self.error_count += 1;
        if self.first.as_ref().is_none_or(|(first, _)| line < *first) {
            self.first = Some((line, message.clone()));
        }
        if self.errors.len() >= MAX_ERROR_MESSAGES && !self.errors.contains_key(&message) {
            return;
        }
        let entry = self.errors.entry(message).or_default();
        entry.0 += 1;
        if entry.1.len() < MAX_ERROR_LINES {
            entry.1.push(line);
        }
    }

    /// The errors as CrateDB's summary shows them: `{message: {count, line_numbers}}`.
    pub fn errors_json(&self) -> String {
        let errors: serde_json::Map<String, serde_json::Value> = self
            .errors
            .iter()
            .map(|(message, (count, lines))| {
                (
                    message.clone(),
                    serde_json::json!({ "count": count, "line_numbers": lines }),
                )
            })
            .collect();
        serde_json::Value::Object(errors).to_string()
    }
}

/// The columns of `RETURN SUMMARY`: a row per file.
pub fn summary_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("node", DataType::Utf8, false),
        Field::new("uri", DataType::Utf8, false),
        Field::new("success_count", DataType::Int64, false),
        Field::new("error_count", DataType::Int64, false),
        Field::new("errors", DataType::Utf8, false),
    ]))
}

fn invalid(message: impl Into<String>) -> Error {
    Error::new(ErrorCode::InvalidParameterValue, message)
}

pub(super) fn text_option(key: &str, value: &Param) -> Result<String> {
    match value {
        Param::Text(text) => Ok(text.clone()),
        Param::Number(n) => Ok(n.to_string()),
        Param::List(_) => Err(invalid(format!("COPY option {key} must be text"))),
    }
}

fn bool_option(key: &str, value: &Param) -> Result<bool> {
    match text_option(key, value)?.to_ascii_lowercase().as_str() {
        "true" | "on" | "1" => Ok(true),
        "false" | "off" | "0" => Ok(false),
        other => Err(invalid(format!(
            "COPY option {key} must be true or false, got {other}"
        ))),
    }
}

/// Checks a parsed `COPY .. FROM 'uri'` against the catalog and its options.
pub fn file_copy(
    cluster: &Cluster,
    clause: &CopyFromClause,
    default_schema: &str,
) -> Result<FileCopy> {
    let (schema, name) = split_name(&clause.table, default_schema)?;
    let table = cluster.catalog().existing_table(&schema, &name)?;
    let named = clause.columns.is_some();
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
    let mut format = None;
    let mut header = true;
    let mut delimiter = b',';
    let mut s3 = BTreeMap::new();
    for (key, value) in &clause.options {
        match key.as_str() {
            "format" => format = Some(text_option(key, value)?.to_ascii_lowercase()),
            "header" => header = bool_option(key, value)?,
            "delimiter" => {
                let text = text_option(key, value)?;
                delimiter = match text.as_bytes() {
                    [byte] if byte.is_ascii() && *byte != b'"' && *byte != b'\n' => *byte,
                    _ => return Err(invalid("COPY delimiter must be one ASCII character")),
                }
            }
            key if object_uri::S3_OPTIONS.contains(&key) => {
                s3.insert(key.to_string(), text_option(key, value)?);
            }
            other => {
                return Err(invalid(format!(
                    "unknown COPY FROM option {other} (known: format, header, delimiter, \
                     access_key_id, secret_access_key, session_token, endpoint, region)"
                )))
            }
        }
    }
    let is_csv_name = clause.uri.to_ascii_lowercase().ends_with(".csv");
    let format = match format.as_deref() {
        Some("json") => FileFormat::Json,
        Some("csv") => FileFormat::Csv(csv_format(header, delimiter)),
        None if is_csv_name => FileFormat::Csv(csv_format(header, delimiter)),
        None => FileFormat::Json,
        Some(other) => {
            return Err(invalid(format!(
                "COPY format must be json or csv, got {other}"
            )))
        }
    };
    object_uri::check_uri(&clause.uri, &s3).map_err(Error::Coded)?;
    Ok(FileCopy {
        table,
        columns,
        named,
        uri: clause.uri.clone(),
        format,
        summary: clause.summary,
        s3,
    })
}

fn csv_format(header: bool, delimiter: u8) -> CopyFormat {
    CopyFormat {
        csv: true,
        delimiter,
        null: String::new(),
        header,
        quote: b'"',
        escape: b'"',
    }
}

/// Whether `name` matches `pattern`: `*` any run of characters but `/`, `?` any one.
fn glob_matches(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Where the last `*` was and where its match ends so far, for backtracking.
    let (mut pi, mut ni, mut star) = (0, 0, None::<(usize, usize)>);
    while ni < n.len() {
        if pi < p.len() && (p[pi] == '?' && n[ni] != '/' || p[pi] == n[ni] && p[pi] != '*') {
            pi += 1;
            ni += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ni));
            pi += 1;
        } else if let Some((star_pi, star_ni)) = star.filter(|(_, sn)| n[*sn] != '/') {
            pi = star_pi + 1;
            ni = star_ni + 1;
            star = Some((star_pi, star_ni + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn store_error(uri: &str, error: object_store::Error) -> Error {
    Error::Coded(object_uri::store_error(
        &format!("cannot read {uri}"),
        error,
    ))
}

/// The objects `pattern` names: itself without wildcards, else every object under the
/// pattern's fixed prefix whose path matches it.
async fn matching_objects(
    store: &dyn ObjectStore,
    uri: &str,
    pattern: &str,
) -> Result<Vec<StorePath>> {
    let Some(wildcard) = pattern.find(['*', '?']) else {
        let path = StorePath::from(pattern);
        store.head(&path).await.map_err(|e| store_error(uri, e))?;
        return Ok(vec![path]);
    };
    let prefix = &pattern[..pattern[..wildcard].rfind('/').map_or(0, |slash| slash + 1)];
    let listing_prefix =
        (!prefix.is_empty()).then(|| StorePath::from(prefix.trim_end_matches('/')));
    let mut found: Vec<StorePath> = store
        .list(listing_prefix.as_ref())
        .map_ok(|meta| meta.location)
        .try_filter(|location| std::future::ready(glob_matches(pattern, location.as_ref())))
        .try_collect()
        .await
        .map_err(|e| store_error(uri, e))?;
    found.sort();
    Ok(found)
}

/// Rows parsed from a file and not yet written, with their line numbers.
struct Pending {
    builders: Vec<StringBuilder>,
    lines: Vec<u64>,
}

impl Pending {
    fn new(columns: usize) -> Pending {
        Pending {
            builders: (0..columns).map(|_| StringBuilder::new()).collect(),
            lines: Vec::new(),
        }
    }

    fn push(&mut self, line: u64, values: Vec<Option<String>>) {
        for (builder, value) in self.builders.iter_mut().zip(values) {
            builder.append_option(value);
        }
        self.lines.push(line);
    }
}

/// Reads one file's rows into values of `copy.columns`, in order.
struct RowReader<'a> {
    copy: &'a FileCopy,
    /// For CSV: the position in `copy.columns` of each field of a record.
    csv_columns: Option<Vec<usize>>,
}

impl RowReader<'_> {
    fn json_row(&self, line: &str) -> std::result::Result<Vec<Option<String>>, String> {
        let value: serde_json::Value =
            serde_json::from_str(line).map_err(|e| format!("invalid JSON: {e}"))?;
        let serde_json::Value::Object(object) = value else {
            return Err("a line is not a JSON object".into());
        };
        let mut values = vec![None; self.copy.columns.len()];
        for (key, value) in object {
            let Some(index) = self.copy.columns.iter().position(|c| *c == key) else {
                if self.copy.named {
                    continue;
                }
                return Err(format!(
                    "column {key} does not exist in table {}",
                    self.copy.table.name
                ));
            };
            values[index] = match value {
                serde_json::Value::Null => None,
                serde_json::Value::String(text) => Some(text),
                serde_json::Value::Bool(b) => Some(b.to_string()),
                serde_json::Value::Number(n) => Some(n.to_string()),
                // Arrays as JSON text, which array columns read (`plan::array_literal`).
                array @ serde_json::Value::Array(_) => Some(array.to_string()),
                // Objects for object columns, points written `{"lon": .., "lat": ..}` and
                // shapes as GeoJSON objects, all as JSON text the columns read.
                object @ serde_json::Value::Object(_) => {
                    let column_type = self.copy.table.column(&key).map(|c| &c.column_type);
                    let takes_objects = column_type.is_some_and(|t| {
                        crate::sql::dml::objects::is_object(t)
                            || matches!(
                                t,
                                creek_common::types::ColumnType::GeoPoint
                                    | creek_common::types::ColumnType::GeoShape
                            )
                    });
                    if !takes_objects {
                        return Err(format!(
                            "column {key}: an object for a column of another type"
                        ));
                    }
                    Some(object.to_string())
                }
            };
        }
        Ok(values)
    }

    fn csv_row(
        &self,
        record: &str,
        format: &CopyFormat,
    ) -> std::result::Result<Vec<Option<String>>, String> {
        let fields = csv_fields(record, format);
        let positions = self.csv_columns.as_deref().unwrap_or_default();
        if fields.len() != positions.len() {
            return Err(format!(
                "{} fields, expected {}",
                fields.len(),
                positions.len()
            ));
        }
        let mut values = vec![None; self.copy.columns.len()];
        for (field, position) in fields.into_iter().zip(positions) {
            values[*position] = field;
        }
        Ok(values)
    }

    /// Reads a CSV header: the position in `copy.columns` of each named column.
    fn header(&mut self, record: &str, format: &CopyFormat) -> Result<()> {
        let mut positions = Vec::new();
        for name in csv_fields(record, format) {
            let name = name.unwrap_or_default();
            let position = self
                .copy
                .columns
                .iter()
                .position(|c| *c == name)
                .ok_or_else(|| {
                    Error::new(
                        ErrorCode::UndefinedColumn,
                        format!("CSV header names {name:?}, not a column of the COPY"),
                    )
                })?;
            positions.push(position);
        }
        self.csv_columns = Some(positions);
        Ok(())
    }
}

/// Awaits `work` unless the statement is cancelled first.
async fn cancellable<T>(cancel: &CancellationToken, work: impl Future<Output = T>) -> Result<T> {
    tokio::select! {
        biased;
        _ = cancel.cancelled() => Err(Error::new(
            ErrorCode::QueryCanceled,
            "canceling statement due to user request",
        )),
        output = work => Ok(output),
    }
}

/// Runs the COPY; returns what became of each file's rows.
pub async fn copy_from_files(
    cluster: Arc<Cluster>,
    session_writes: Arc<SessionWrites>,
    copy: FileCopy,
    cancel: CancellationToken,
    progress: &JobProgress,
) -> Result<Vec<FileSummary>> {
    let (store, pattern) = object_uri::store_for(&copy.uri, &copy.s3).map_err(Error::Coded)?;
    let paths = cancellable(
        &cancel,
        matching_objects(store.as_ref(), &copy.uri, &pattern),
    )
    .await??;
    let scheme = if copy.uri.starts_with("s3://") {
        let bucket = copy.uri["s3://".len()..]
            .split('/')
            .next()
            .unwrap_or_default();
        format!("s3://{bucket}/")
    } else {
        "file:///".to_string()
    };
    let mut summaries = Vec::with_capacity(paths.len());
    for path in paths {
        let uri = format!("{scheme}{path}");
        tracing::info!(table = %copy.table.name, %uri, "COPY FROM: reading");
        let summary = copy_file(
            &cluster,
            &session_writes,
            &copy,
            store.as_ref(),
            &path,
            uri,
            &cancel,
            progress,
        )
        .await?;
        tracing::info!(
            table = %copy.table.name,
            uri = %summary.uri,
            rows = summary.success_count,
            errors = summary.error_count,
            "COPY FROM: file done"
        );
        summaries.push(summary);
    }
    // Rows imported by a COPY are visible to every session's next query.
    cluster.refresh_table(&copy.table).await?;
    Ok(summaries)
}

#[allow(clippy::too_many_arguments)]
async fn copy_file(
    cluster: &Arc<Cluster>,
    session_writes: &Arc<SessionWrites>,
    copy: &FileCopy,
    store: &dyn ObjectStore,
    path: &StorePath,
    uri: String,
    cancel: &CancellationToken,
    progress: &JobProgress,
) -> Result<FileSummary> {
    let mut summary = FileSummary {
        uri: uri.clone(),
        ..FileSummary::default()
    };
    let mut reader = RowReader {
        copy,
        csv_columns: match &copy.format {
            FileFormat::Csv(format) if !format.header => Some((0..copy.columns.len()).collect()),
            _ => None,
        },
    };
    let mut stream = cancellable(cancel, store.get(path))
        .await?
        .map_err(|e| store_error(&uri, e))?
        .into_stream();
    let mut buffer: Vec<u8> = Vec::new();
    let mut scan = RecordScan::default();
    let mut pending = Pending::new(copy.columns.len());
    // The physical line the next record starts on (a quoted CSV field may hold newlines).
    let mut line: u64 = 1;
    // How much of the unfinished JSON line is known to hold no newline: each chunk is
    // searched once, however long the line.
    let mut json_scanned = 0;
    // Inside a JSON line beyond the bound, already counted: dropped up to its newline.
    let mut skipping = false;
    loop {
        let ended = match cancellable(cancel, stream.next()).await? {
            Some(chunk) => {
                let chunk = chunk.map_err(|e| store_error(&uri, e))?;
                progress.add(0, chunk.len() as u64);
                buffer.extend_from_slice(&chunk);
                false
            }
            None => {
                if !buffer.is_empty() && !buffer.ends_with(b"\n") {
                    buffer.push(b'\n');
                }
                true
            }
        };
        let mut start = 0;
        loop {
            let end = match &copy.format {
                FileFormat::Json => {
                    let from = start + json_scanned;
                    let found = buffer[from..]
                        .iter()
                        .position(|b| *b == b'\n')
                        .map(|at| at + json_scanned);
                    json_scanned = if found.is_some() {
                        0
                    } else {
                        buffer.len() - start
                    };
                    found
                }
                FileFormat::Csv(format) => scan.record_end(&buffer[start..], format),
            };
            let Some(end) = end else { break };
            let record = &buffer[start..start + end];
            start += end + 1;
            let record_line = line;
            line += 1 + record.iter().filter(|b| **b == b'\n').count() as u64;
            if std::mem::take(&mut skipping) {
                continue;
            }
            let Ok(text) = std::str::from_utf8(record) else {
                summary.fail(record_line, "invalid UTF-8".into());
                continue;
            };
            let text = text.strip_suffix('\r').unwrap_or(text);
            if text.trim().is_empty() {
                // Blank lines separate nothing: skipped in both formats.
                continue;
            }
            let row = match &copy.format {
                FileFormat::Json => reader.json_row(text),
                FileFormat::Csv(format) if reader.csv_columns.is_none() => {
                    reader.header(text, format)?;
                    continue;
                }
                FileFormat::Csv(format) => reader.csv_row(text, format),
            };
            match row {
                Ok(values) => pending.push(record_line, values),
                Err(message) => summary.fail(record_line, message),
            }
        }
        buffer.drain(..start);
        let mut stop = false;
        if buffer.len() > MAX_RECORD_BYTES {
            match &copy.format {
                FileFormat::Json => {
                    if !skipping {
                        summary.fail(
                            line,
                            format!("a line is longer than {} MiB", MAX_RECORD_BYTES >> 20),
                        );
                    }
                    skipping = true;
                    buffer.clear();
                    json_scanned = 0;
                }
                FileFormat::Csv(_) => {
                    // An unclosed quote makes the rest of the file one record.
                    summary.fail(
                        line,
                        format!(
                            "a record is longer than {} MiB (a quoted field not closed?)",
                            MAX_RECORD_BYTES >> 20
                        ),
                    );
                    stop = true;
                }
            }
        } else if ended && !buffer.is_empty() {
            summary.fail(line, "a quoted field is not closed".into());
        }
        let done = ended || stop;
        if pending.lines.len() >= ROWS_PER_WRITE || (done && !pending.lines.is_empty()) {
            let before = summary.success_count;
            // Not raced against a cancel: a write of a batch is bounded, and its outcome
            // must be known to the session (read-your-writes) once it was sent.
            write_rows(cluster, session_writes, copy, &mut pending, &mut summary).await?;
            progress.add(summary.success_count - before, 0);
            tracing::debug!(%uri, rows = summary.success_count, "COPY FROM: progress");
        }
        if done {
            break;
        }
    }
    Ok(summary)
}

/// Converts and writes the pending rows; rows that fail are counted, the others written.
async fn write_rows(
    cluster: &Arc<Cluster>,
    session_writes: &Arc<SessionWrites>,
    copy: &FileCopy,
    pending: &mut Pending,
    summary: &mut FileSummary,
) -> Result<()> {
    let lines = std::mem::take(&mut pending.lines);
    let arrays: Vec<ArrayRef> = pending
        .builders
        .iter_mut()
        .map(|builder| Arc::new(builder.finish()) as ArrayRef)
        .collect();
    let fields: Vec<Field> = copy
        .columns
        .iter()
        .map(|column| Field::new(column, DataType::Utf8, true))
        .collect();
    let text = RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)?;
    // New keys of dynamic objects join the table first; a row whose keys cannot (a strict
    // object's unknown key, a type conflict) is a bad row like one that does not convert.
    let whole = match ensure_object_keys(cluster, &copy.table, &text).await {
        Ok(table) => {
            let table = table.unwrap_or_else(|| copy.table.clone());
            conform_batch(&table, &text).map(|batch| (table, batch))
        }
        Err(error) => Err(error),
    };
    let mut table = copy.table.clone();
    let (batch, kept) = match whole {
        Ok((ensured, batch)) => {
            table = ensured;
            (batch, lines)
        }
        Err(_) => {
            // Some row cannot be converted: each row alone, to count the bad ones.
            let mut good = Vec::new();
            let mut kept = Vec::new();
            for (row, line) in lines.iter().enumerate() {
                let one = text.slice(row, 1);
                let converted = match ensure_object_keys(cluster, &table, &one).await {
                    Ok(ensured) => {
                        if let Some(ensured) = ensured {
                            table = ensured;
                        }
                        conform_batch(&table, &one)
                    }
                    Err(error) => Err(error),
                };
                match converted {
                    Ok(one) => {
                        good.push(one);
                        kept.push(*line);
                    }
                    Err(error) => summary.fail(*line, error.client_message()),
                }
            }
            if good.is_empty() {
                return Ok(());
            }
            // Rows converted before a later row added keys lack those keys' sub-columns.
            let good = good
                .iter()
                .map(|batch| conform_batch(&table, batch))
                .collect::<Result<Vec<_>>>()?;
            (concat_batches(&good[0].schema(), &good)?, kept)
        }
    };
    let visibility = Visibility {
        session: session_writes,
        refresh: false,
    };
    let (statuses, _) = write_batch(cluster, &table, &batch, WriteMode::Insert, visibility).await?;
    for (status, line) in statuses.iter().zip(kept) {
        match status {
            RowStatus::Ok => summary.success_count += 1,
            RowStatus::Duplicate => summary.fail(
                line,
                format!(
                    "duplicate key value violates unique constraint \"{}_pkey\"",
                    copy.table.name
                ),
            ),
            other => summary.fail(line, format!("row not written: {other:?}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_within_one_path_part() {
        assert!(glob_matches("data/*.json", "data/a.json"));
        assert!(glob_matches("data/*.json", "data/.json"));
        assert!(!glob_matches("data/*.json", "data/sub/a.json"));
        assert!(glob_matches("data/*/*.json", "data/sub/a.json"));
        assert!(glob_matches("data/file?.csv", "data/file1.csv"));
        assert!(!glob_matches("data/file?.csv", "data/file10.csv"));
        assert!(glob_matches("d*a/x*y*z", "data/xaayazz"));
        assert!(!glob_matches("d*a/x*y*z", "data/xaayaz1"));
        assert!(glob_matches("*", "anything"));
    }

    #[test]
    fn a_summary_keeps_the_first_messages_and_lines() {
        let mut summary = FileSummary::default();
        for line in 1..=30 {
            summary.fail(line, format!("error {}", line % 12));
        }
        assert_eq!(summary.error_count, 30);
        assert_eq!(summary.errors.len(), MAX_ERROR_MESSAGES);
        assert!(summary
            .errors
            .values()
            .all(|(_, lines)| lines.len() <= MAX_ERROR_LINES));
        assert!(summary.errors_json().contains("\"line_numbers\""));
    }
}
