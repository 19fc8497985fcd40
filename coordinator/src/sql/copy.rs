//! `COPY table [(columns)] FROM STDIN` in PostgreSQL's text and CSV formats: option parsing and
//! a loader that turns the client's byte stream into rows and writes them in batches through
//! the INSERT path (`sql::load`: casts, NOT NULL, duplicate keys). Protocol framing lives in
//! `frontend/pgwire`; this module never sees wire messages.

use std::sync::Arc;

use creek_common::error::ErrorCode;
use creek_common::schema::TableSchema;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use sqlparser::ast::{
    CopyLegacyCsvOption, CopyLegacyOption, CopyOption, CopySource, CopyTarget, Statement,
};

pub mod export;
pub mod files;
mod records;

use records::{ColumnBuilders, RecordError, RecordScan};

use super::ddl::{ident_name, split_name};
use super::load::BatchLoader;
use crate::cluster::{Cluster, SessionWrites};
use crate::error::{Error, Result};
use crate::jobs::JobGuard;

/// Rows buffered before they are written.
const ROWS_PER_WRITE: usize = 10_000;

/// Bytes of records buffered before they are written, whatever their number: wide rows must
/// not make 10,000 of them a gigabyte.
const BYTES_PER_WRITE: usize = 16 << 20;

/// The longest record a COPY buffers: a client that never ends its record (an unterminated
/// quoted CSV field, a stream without newlines) fails the COPY instead of filling memory.
const MAX_RECORD_BYTES: usize = 64 << 20;

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
    /// The statement's entry in `sys.jobs`, kept while the data arrives; it counts the
    /// bytes received and the rows written.
    pub job: Option<Arc<JobGuard>>,
}

fn unsupported(message: &str) -> Error {
    Error::new(ErrorCode::FeatureNotSupported, message)
}

/// A COPY option character as the byte the parser splits on: PostgreSQL takes only one-byte
/// characters, and so the split never falls inside a multi-byte one.
fn one_byte(c: char, option: &str) -> Result<u8> {
    u8::try_from(c).ok().filter(u8::is_ascii).ok_or_else(|| {
        Error::new(
            ErrorCode::InvalidParameterValue,
            format!("COPY {option} must be a single one-byte character"),
        )
    })
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
            CopyOption::Quote(c) => format.quote = one_byte(*c, "quote")?,
            CopyOption::Escape(c) => format.escape = one_byte(*c, "escape")?,
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
                        CopyLegacyCsvOption::Quote(c) => format.quote = one_byte(*c, "quote")?,
                        CopyLegacyCsvOption::Escape(c) => format.escape = one_byte(*c, "escape")?,
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
        format.delimiter = one_byte(c, "delimiter")?;
    }
    if let Some(text) = null {
        format.null = text;
    }
    if format.csv && format.delimiter == format.quote {
        return Err(Error::new(
            ErrorCode::InvalidParameterValue,
            "COPY delimiter and quote must be different",
        ));
    }
    Ok(CopyFromStdin {
        table,
        columns,
        format,
        job: None,
    })
}

/// Receives a COPY's data and writes it.
pub struct CopyLoader {
    copy: CopyFromStdin,
    /// Bytes received and not yet parsed: at most the start of one unfinished record.
    pending: Vec<u8>,
    /// How far the unfinished record at the start of `pending` has been scanned.
    scan: RecordScan,
    /// The parsed rows not yet written.
    columns: ColumnBuilders,
    /// The bytes of the records in `columns`.
    buffered_bytes: usize,
    header_skipped: bool,
    finished: bool,
    line: u64,
    error: Option<Error>,
    /// Writes the parsed batches, one in flight while the next is received and parsed.
    loader: BatchLoader,
}

impl CopyLoader {
    /// Creates a loader for `copy`.
    pub fn new(
        cluster: Arc<Cluster>,
        session_writes: Arc<SessionWrites>,
        copy: CopyFromStdin,
    ) -> CopyLoader {
        let columns = ColumnBuilders::new(copy.columns.len());
        let loader = BatchLoader::new(
            cluster,
            session_writes,
            copy.table.clone(),
            copy.job.clone(),
        );
        CopyLoader {
            copy,
            pending: Vec::new(),
            scan: RecordScan::default(),
            columns,
            buffered_bytes: 0,
            header_skipped: false,
            finished: false,
            line: 0,
            error: None,
            loader,
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
        if let Some(job) = &self.copy.job {
            job.progress().add(0, bytes.len() as u64);
        }
        if let Err(error) = self.parse_complete_records() {
            self.error = Some(error);
            return;
        }
        if self.columns.rows() >= ROWS_PER_WRITE || self.buffered_bytes >= BYTES_PER_WRITE {
            if let Err(error) = self.write_full_batch().await {
                self.error = Some(error);
            }
        }
    }

    /// Gives the COPY up (the client sent CopyFail, or it failed): returns once the write in
    /// flight, if any, has ended, so that no write of it is still running when the client is
    /// answered. Rows already written stay, as for a multi-row INSERT that fails part way.
    pub async fn abandon(self) {
        self.loader.abandon().await
    }

    /// Starts writing the buffered rows once the previous write has finished.
    async fn write_full_batch(&mut self) -> Result<()> {
        if let Some(batch) = self.take_batch()? {
            self.loader.write(&batch).await?;
        }
        Ok(())
    }

    /// Writes what is left and returns the number of rows copied.
    pub async fn finish(mut self) -> Result<u64> {
        if let Err(error) = self.write_rest().await {
            // No write of this COPY may still be running once the client has its answer.
            self.loader.abandon().await;
            return Err(error);
        }
        self.loader.finish().await
    }

    async fn write_rest(&mut self) -> Result<()> {
        if let Some(error) = self.error.take() {
            return Err(error);
        }
        if !self.pending.is_empty() && !self.finished {
            // The last line may lack its newline.
            self.pending.push(b'\n');
            self.parse_complete_records()?;
            if !self.pending.is_empty() && !self.finished {
                // Still no end: the data ends inside a quoted field (or on a lone backslash).
                let problem = if self.scan.in_quotes() {
                    "unterminated CSV quoted field"
                } else {
                    "the data ends inside an escape"
                };
                return Err(Error::new(
                    ErrorCode::BadCopyFileFormat,
                    format!("{problem} (COPY line {})", self.line + 1),
                ));
            }
        }
        self.write_full_batch().await
    }

    fn parse_complete_records(&mut self) -> Result<()> {
        let format = &self.copy.format;
        let mut start = 0;
        while let Some(end) = self.scan.record_end(&self.pending[start..], format) {
            let record = &self.pending[start..start + end];
            start += end + 1;
            self.line += 1;
            let text = std::str::from_utf8(record).map_err(|_| {
                Error::new(
                    ErrorCode::InvalidEncoding,
                    format!("invalid UTF-8 in COPY data, line {}", self.line),
                )
            })?;
            let text = text.strip_suffix('\r').unwrap_or(text);
            if format.header && !self.header_skipped {
                self.header_skipped = true;
                continue;
            }
            if text == "\\." {
                self.finished = true;
                break;
            }
            self.buffered_bytes += text.len();
            if let Err(error) = self.columns.push_record(text, format) {
                // PostgreSQL's wording and codes.
                let (code, problem) = match error {
                    RecordError::Encoding => (
                        ErrorCode::InvalidEncoding,
                        "an escape spells bytes that are not UTF-8".to_string(),
                    ),
                    RecordError::FieldCount { found } => (
                        ErrorCode::BadCopyFileFormat,
                        match self.copy.columns.get(found) {
                            Some(column) => format!("missing data for column \"{column}\""),
                            None => "extra data after last expected column".to_string(),
                        },
                    ),
                };
                return Err(Error::new(
                    code,
                    format!("{problem} (COPY line {})", self.line),
                ));
            }
        }
        self.pending.drain(..start);
        if self.scan.scanned() > MAX_RECORD_BYTES {
            return Err(Error::new(
                ErrorCode::ProgramLimitExceeded,
                format!(
                    "COPY line {}: a record is longer than {} MiB (an unterminated quoted field?)",
                    self.line + 1,
                    MAX_RECORD_BYTES >> 20
                ),
            ));
        }
        Ok(())
    }

    /// The buffered rows as a batch of text columns (`None` if there are none); the loader
    /// converts them to the table's types.
    fn take_batch(&mut self) -> Result<Option<RecordBatch>> {
        let rows = self.columns.rows();
        self.buffered_bytes = 0;
        if rows == 0 {
            return Ok(None);
        }
        let fields: Vec<Field> = self
            .copy
            .columns
            .iter()
            .map(|column| Field::new(column, DataType::Utf8, true))
            .collect();
        Ok(Some(RecordBatch::try_new(
            Arc::new(Schema::new(fields)),
            self.columns.finish(),
        )?))
    }
}
