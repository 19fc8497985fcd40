//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text and CSV formats: option parsing and
//! a loader that turns the client's byte stream into rows and writes them in batches through
//! the INSERT path (casts, NOT NULL, duplicate keys). Protocol framing lives in
//! `frontend/pgwire`; this module never sees wire messages.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::TableSchema;
use creek_proto::v1::{RowStatus, WriteMode};
use datafusion::arrow::array::{ArrayRef, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

use super::ddl::{ident_name, split_name};
use super::dml::{conform_batch, write_batch};
use crate::cluster::{Cluster, SessionWrites, Visibility};
use crate::error::{Error, Result};

/// Rows buffered before they are written.
const ROWS_PER_WRITE: usize = 10_000;

/// How the client encodes rows.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    /// CSV (quoted fields) rather than PostgreSQL's text format (backslash escapes).
    pub csv: bool,
    /// Field separator: tab for text, comma for CSV by default.
    pub delimiter: u8,
    /// The text that means NULL: `\N` for text, an unquoted empty field for CSV by default.
    pub null: String,
    /// Whether the first line is a header to skip.
    pub header: bool,
    /// CSV quote character.
    pub quote: u8,
    /// CSV escape character inside quotes.
    pub escape: u8,
}

/// A COPY FROM STDIN waiting for the client's data.
#[derive(Debug, Clone)]
pub struct CopyFromStdin {
    /// The target table.
    pub table: TableSchema,
    /// The columns the data holds, in order.
    pub columns: Vec<String>,
    /// The data format.
    pub format: CopyFormat,
}

fn unsupported(message: &str) -> Error {
    Error::new(ErrorCode::FeatureNotSupported, message)
}

/// Interprets a `COPY` statement; only `COPY table FROM STDIN` is supported.
pub fn copy_from_stdin(
    cluster: &Cluster,
    statement: &Statement,
    default_schema: &str,
) -> Result<CopyFromStdin> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        legacy_options,
        ..
    } = statement
    else {
        return Err(Error::new(ErrorCode::Internal, "not a COPY statement"));
    };
    if *to {
        return Err(unsupported("COPY TO is not supported yet; use SELECT"));
    }
    if !matches!(target, CopyTarget::Stdin) {
        return Err(unsupported(
            "COPY FROM supports only STDIN (psql \\copy reads local files)",
        ));
    }
    let CopySource::Table {
        table_name,
        columns,
    } = source
    else {
        return Err(unsupported("COPY FROM needs a table"));
    };
    let (schema, name) = split_name(table_name, default_schema)?;
    let table = cluster.catalog().existing_table(&schema, &name)?;
    let columns: Vec<String> = if columns.is_empty() {
        table.columns.iter().map(|c| c.name.clone()).collect()
    } else {
        columns.iter().map(ident_name).collect()
    };
    for column in &columns {
        if table.column(column).is_none() {
            return Err(Error::new(
                ErrorCode::UndefinedColumn,
                format!("column \"{column}\" of relation \"{name}\" does not exist"),
            ));
        }
    }
    let mut format = CopyFormat {
        csv: false,
        delimiter: b'\t',
        null: "\\N".into(),
        header: false,
        quote: b'"',
        escape: b'"',
    };
    let mut delimiter = None;
    let mut null = None;
    for option in options {
        match option {
            CopyOption::Format(kind) => match kind.value.to_lowercase().as_str() {
                "csv" => format.csv = true,
                "text" => format.csv = false,
                other => {
                    return Err(unsupported(&format!(
                        "COPY format {other} is not supported"
                    )))
                }
            },
            CopyOption::Delimiter(c) => delimiter = Some(*c),
            CopyOption::Null(text) => null = Some(text.clone()),
            CopyOption::Header(h) => format.header = *h,
            CopyOption::Quote(c) => format.quote = *c as u8,
            CopyOption::Escape(c) => format.escape = *c as u8,
            CopyOption::Freeze(_) | CopyOption::Encoding(_) => {}
            other => {
                return Err(unsupported(&format!(
                    "COPY option {other} is not supported"
                )))
            }
        }
    }
    for option in legacy_options {
        match option {
            CopyLegacyOption::Csv(csv_options) => {
                format.csv = true;
                for csv_option in csv_options {
                    match csv_option {
                        CopyLegacyCsvOption::Header => format.header = true,
                        CopyLegacyCsvOption::Quote(c) => format.quote = *c as u8,
                        CopyLegacyCsvOption::Escape(c) => format.escape = *c as u8,
                        other => {
                            return Err(unsupported(&format!(
                                "COPY option {other} is not supported"
                            )))
                        }
                    }
                }
            }
            CopyLegacyOption::Delimiter(c) => delimiter = Some(*c),
            CopyLegacyOption::Null(text) => null = Some(text.clone()),
            CopyLegacyOption::Header => format.header = true,
            other => {
                return Err(unsupported(&format!(
                    "COPY option {other} is not supported"
                )))
            }
        }
    }
    if format.csv {
        format.delimiter = b',';
        format.null = String::new();
    }
    if let Some(c) = delimiter {
        if !c.is_ascii() {
            return Err(Error::new(
                ErrorCode::InvalidParameterValue,
                "COPY delimiter must be a single one-byte character",
            ));
        }
        format.delimiter = c as u8;
    }
    if let Some(text) = null {
        format.null = text;
    }
    Ok(CopyFromStdin {
        table,
        columns,
        format,
    })
}

/// Receives a COPY's data and writes it.
pub struct CopyLoader {
    cluster: Arc<Cluster>,
    /// The session running the COPY: it sees the rows written even if the COPY fails later.
    session_writes: Arc<SessionWrites>,
    copy: CopyFromStdin,
    pending: Vec<u8>,
    rows: Vec<Vec<Option<String>>>,
    header_skipped: bool,
    finished: bool,
    written: u64,
    line: u64,
    error: Option<Error>,
    /// The write of the last full batch, running while the next one is received and
    /// parsed: the network, the coordinator's parsing and the data nodes' indexing overlap.
    in_flight: Option<tokio::task::JoinHandle<Result<Vec<RowStatus>>>>,
}

impl CopyLoader {
    /// Creates a loader for `copy`.
    pub fn new(
        cluster: Arc<Cluster>,
        session_writes: Arc<SessionWrites>,
        copy: CopyFromStdin,
    ) -> CopyLoader {
        CopyLoader {
            cluster,
            session_writes,
            copy,
            pending: Vec::new(),
            rows: Vec::new(),
            header_skipped: false,
            finished: false,
            written: 0,
            line: 0,
            error: None,
            in_flight: None,
        }
    }

    /// Returns how many columns each row has.
    pub fn column_count(&self) -> usize {
        self.copy.columns.len()
    }

    /// Takes a chunk of data. After a failure the rest of the data is discarded and the error is
    /// reported by [`CopyLoader::finish`], as PostgreSQL does.
    pub async fn push(&mut self, bytes: &[u8]) {
        if self.error.is_some() || self.finished {
            return;
        }
        self.pending.extend_from_slice(bytes);
        if let Err(error) = self.parse_complete_records() {
            self.error = Some(error);
            return;
        }
        if self.rows.len() >= ROWS_PER_WRITE {
            if let Err(error) = self.write_full_batch().await {
                self.error = Some(error);
            }
        }
    }

    /// Gives the COPY up (the client sent CopyFail, or it failed): returns once the write in
    /// flight, if any, has ended, so that no write of it is still running when the client is
    /// answered. Rows already written stay, as for a multi-row INSERT that fails part way.
    pub async fn abandon(mut self) {
        if let Some(write) = self.in_flight.take() {
            let _ = write.await;
        }
    }

    /// Starts writing the buffered rows once the previous write has finished.
    async fn write_full_batch(&mut self) -> Result<()> {
        let batch = self.take_batch()?;
        self.settle().await?;
        if let Some(batch) = batch {
            self.start_write(batch);
        }
        Ok(())
    }

    /// Writes what is left and returns the number of rows copied.
    pub async fn finish(mut self) -> Result<u64> {
        let written = self.write_rest().await;
        if written.is_err() {
            // No write of this COPY may still be running once the client has its answer.
            if let Some(write) = self.in_flight.take() {
                let _ = write.await;
            }
        }
        written?;
        // A finished COPY is visible to every session's next query, as users of PostgreSQL
        // expect of a bulk load; one refresh per COPY, not per row.
        self.cluster.refresh_table(&self.copy.table).await?;
        Ok(self.written)
    }

    async fn write_rest(&mut self) -> Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !self.pending.is_empty() && !self.finished {
            // The last line may lack its newline.
            self.pending.push(b'\n');
            self.parse_complete_records()?;
        }
        self.write_full_batch().await?;
        self.settle().await
    }

    fn parse_complete_records(&mut self) -> Result<()> {
        let mut start = 0;
        while let Some(end) = record_end(&self.pending[start..], &self.copy.format) {
            let record = self.pending[start..start + end].to_vec();
            start += end + 1;
            self.line += 1;
            let text = String::from_utf8(record).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidEncoding,
                    format!("invalid UTF-8 in COPY data, line {}", self.line),
                )
            })?;
            let text = text.strip_suffix('\r').unwrap_or(&text);
            if self.copy.format.header && !self.header_skipped {
                self.header_skipped = true;
                continue;
            }
            if text == "\\." {
                self.finished = true;
                break;
            }
            let fields = if self.copy.format.csv {
                parse_csv_record(text, &self.copy.format)
            } else {
                parse_text_record(text, &self.copy.format)
            };
            if fields.len() != self.copy.columns.len() {
                return Err(Error::new(
                    ErrorCode::InvalidTextRepresentation,
                    format!(
                        "COPY line {}: expected {} columns, got {}",
                        self.line,
                        self.copy.columns.len(),
                        fields.len()
                    ),
                ));
            }
            self.rows.push(fields);
        }
        self.pending.drain(..start);
        Ok(())
    }

    /// The buffered rows as a batch of the table's types (`None` if there are none).
    fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        if self.rows.is_empty() {
            return Ok(None);
        }
        let rows = std::mem::take(&mut self.rows);
        let mut fields = Vec::with_capacity(self.copy.columns.len());
        let mut arrays: Vec<ArrayRef> = Vec::with_capacity(self.copy.columns.len());
        for (index, column) in self.copy.columns.iter().enumerate() {
            fields.push(Field::new(column, DataType::Utf8, true));
            arrays.push(std::sync::Arc::new(StringArray::from_iter(
                rows.iter().map(|row| row[index].as_deref()),
            )));
        }
        let batch = RecordBatch::try_new(std::sync::Arc::new(Schema::new(fields)), arrays)?;
        Ok(Some(conform_batch(&self.copy.table, &batch)?))
    }

    fn start_write(&mut self, batch: RecordBatch) {
        let cluster = self.cluster.clone();
        let table = self.copy.table.clone();
        let session = self.session_writes.clone();
        self.in_flight = Some(tokio::spawn(async move {
            let visibility = Visibility {
                session: &session,
                refresh: false,
            };
            let (statuses, _) =
                write_batch(&cluster, &table, &batch, WriteMode::Insert, visibility).await?;
            Ok(statuses)
        }));
    }

    /// Waits for the write in flight and counts its rows; a duplicate key fails the COPY.
    async fn settle(&mut self) -> Result<()> {
        let Some(write) = self.in_flight.take() else {
            return Ok(());
        };
        let statuses = write.await.map_err(|e| {
            Error::new(
                ErrorCode::Internal,
                format!("a COPY write task failed: {e}"),
            )
        })??;
        let duplicates = statuses
            .iter()
            .filter(|s| **s == RowStatus::Duplicate)
            .count();
        self.written += statuses.iter().filter(|s| **s == RowStatus::Ok).count() as u64;
        if duplicates > 0 {
            return Err(Error::new(
                ErrorCode::DuplicateKey,
                format!(
                    "duplicate key value violates unique constraint \"{}_pkey\" ({duplicates} row(s) rejected, {} written)",
                    self.copy.table.name, self.written
                ),
            ));
        }
        Ok(())
    }
}

/// Returns the index of the newline that ends the first complete record, if any. In CSV a
/// newline inside quotes does not end the record.
fn record_end(data: &[u8], format: &CopyFormat) -> Option<usize> {
    if !format.csv {
        return data.iter().position(|b| *b == b'\n');
    }
    let mut quoted = false;
    let mut index = 0;
    while index < data.len() {
        let byte = data[index];
        if quoted
            && byte == format.escape
            && format.escape != format.quote
            && data.get(index + 1) == Some(&format.quote)
        {
            index += 2;
            continue;
        }
        if byte == format.quote {
            quoted = !quoted;
        } else if byte == b'\n' && !quoted {
            return Some(index);
        }
        index += 1;
    }
    None
}

/// Splits one line of PostgreSQL's text format, undoing backslash escapes.
fn parse_text_record(line: &str, format: &CopyFormat) -> Vec<Option<String>> {
    line.split(format.delimiter as char)
        .map(|raw| {
            if raw == format.null {
                return None;
            }
            let mut out = String::with_capacity(raw.len());
            let mut chars = raw.chars();
            while let Some(c) = chars.next() {
                if c != '\\' {
                    out.push(c);
                    continue;
                }
                match chars.next() {
                    Some('t') => out.push('\t'),
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('b') => out.push('\u{8}'),
                    Some('f') => out.push('\u{c}'),
                    Some('v') => out.push('\u{b}'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        })
        .collect()
}

/// Splits one CSV record: quoted fields keep delimiters and newlines; an unquoted field equal
/// to the NULL string is NULL, a quoted one never is.
fn parse_csv_record(record: &str, format: &CopyFormat) -> Vec<Option<String>> {
    let delimiter = format.delimiter as char;
    let quote = format.quote as char;
    let escape = format.escape as char;
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted_field = false;
    let mut in_quotes = false;
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        if in_quotes {
            // An escaped quote (`""` by default) is a literal quote; a lone quote closes.
            if c == escape && chars.peek() == Some(&quote) {
                chars.next();
                field.push(quote);
            } else if c == quote {
                in_quotes = false;
            } else {
                field.push(c);
            }
        } else if c == quote {
            in_quotes = true;
            quoted_field = true;
        } else if c == delimiter {
            fields.push(finish_csv_field(
                std::mem::take(&mut field),
                quoted_field,
                format,
            ));
            quoted_field = false;
        } else {
            field.push(c);
        }
    }
    fields.push(finish_csv_field(field, quoted_field, format));
    fields
}

fn finish_csv_field(field: String, quoted: bool, format: &CopyFormat) -> Option<String> {
    if !quoted && field == format.null {
        None
    } else {
        Some(field)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: b'\t',
            null: "\\N".into(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: b',',
            null: String::new(),
            header: false,
            quote: b'"',
            escape: b'"',
        }
    }

    #[test]
    fn text_format_unescapes_and_reads_nulls() {
        assert_eq!(
            parse_text_record("1\ta\\tb\t\\N\tc\\\\d", &text()),
            vec![
                Some("1".into()),
                Some("a\tb".into()),
                None,
                Some("c\\d".into())
            ]
        );
    }

    #[test]
    fn csv_quotes_keep_delimiters_and_mark_non_null() {
        assert_eq!(
            parse_csv_record("1,\"x, \"\"y\"\"\",,\"\"", &csv()),
            vec![
                Some("1".into()),
                Some("x, \"y\"".into()),
                None,
                Some(String::new())
            ]
        );
    }

    #[test]
    fn csv_records_may_span_lines_inside_quotes() {
        let data = b"1,\"two\nlines\"\n2,x\n";
        let end = record_end(data, &csv()).unwrap();
        assert_eq!(&data[..end], b"1,\"two\nlines\"");
        assert_eq!(record_end(b"no newline yet", &csv()), None);
    }
}
