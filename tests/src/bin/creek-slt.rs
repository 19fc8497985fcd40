//! Runs sqllogictest files against a live `creek dev` over pgwire.
//!
//! Every record runs even after a failure, so a file reports a per-record pass rate. Files named
//! with `--require` must pass completely (our own suite); files named with `--corpus` (public
//! corpora such as SQLite's) are reported and must reach `--min-pass-rate`.
//! Error records assert the SQLSTATE: error messages end in `(SQLSTATE xxxxx)`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use async_trait::async_trait;
use clap::Parser;
use creek_tests::{CreekServer, TestCluster};
use sqllogictest::{DBOutput, DefaultColumnType, Record};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

#[derive(Parser, Debug)]
#[command(about = "Run sqllogictest files against creek dev")]
struct Args {
    /// Files or directories that must pass completely.
    #[arg(long, num_args = 1..)]
    require: Vec<PathBuf>,
    /// Files or directories of a public corpus, reported with their pass rate.
    #[arg(long, num_args = 1..)]
    corpus: Vec<PathBuf>,
    /// Lowest acceptable record pass rate over the whole corpus, in percent.
    #[arg(long, default_value_t = 0.0)]
    min_pass_rate: f64,
    /// Print each failing record.
    #[arg(long)]
    verbose: bool,
    /// Run against a cluster of `<coordinators>x<data nodes>` processes (e.g. `3x3`) instead of
    /// `creek dev`; file `i` runs through coordinator `i mod coordinators`.
    #[arg(long, value_parser = parse_shape)]
    cluster: Option<(usize, usize)>,
}

fn parse_shape(text: &str) -> Result<(usize, usize), String> {
    let (c, d) = text
        .split_once('x')
        .ok_or_else(|| format!("expected <coordinators>x<data nodes>, got '{text}'"))?;
    let parse = |n: &str| n.parse::<usize>().map_err(|e| format!("{n}: {e}"));
    Ok((parse(c)?, parse(d)?))
}

/// What the files run against.
enum Target {
    Dev(CreekServer),
    Cluster(TestCluster),
}

impl Target {
    /// The connection string for file number `index`.
    fn pg_config(&self, index: usize, options: &str) -> String {
        match self {
            Target::Dev(server) => server.pg_config(options),
            Target::Cluster(cluster) => cluster.pg_config(index, options),
        }
    }

    fn log_tail(&self) -> String {
        match self {
            Target::Dev(server) => server
                .log()
                .lines()
                .rev()
                .take(20)
                .collect::<Vec<_>>()
                .join("\n"),
            Target::Cluster(cluster) => cluster.log_tail(10),
        }
    }
}

#[derive(Debug)]
struct DbError(String);

impl std::fmt::Display for DbError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DbError {}

fn db_error(error: tokio_postgres::Error) -> DbError {
    match error.as_db_error() {
        Some(db) => DbError(format!("{} (SQLSTATE {})", db.message(), db.code().code())),
        None => DbError(error.to_string()),
    }
}

struct Creek {
    client: Client,
}

fn is_query(sql: &str) -> bool {
    let first = sql
        .trim_start_matches(|c: char| c.is_whitespace() || c == '(')
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    matches!(
        first.as_str(),
        "select" | "with" | "values" | "explain" | "show" | "table" | "execute"
    ) || sql.to_ascii_lowercase().contains(" returning ")
}

fn format_value(text: Option<&str>, pg_type: &Type) -> String {
    match text {
        None => "NULL".to_string(),
        Some("") => "(empty)".to_string(),
        Some(text)
            if *pg_type == Type::FLOAT4
                || *pg_type == Type::FLOAT8
                || *pg_type == Type::NUMERIC =>
        {
            match text.parse::<f64>() {
                Ok(value) if value.is_finite() => format!("{value:.3}"),
                _ => text.to_string(),
            }
        }
        Some(text) if *pg_type == Type::BOOL => (if text == "t" {
            "true"
        } else if text == "f" {
            "false"
        } else {
            text
        })
        .to_string(),
        Some(text) => text.to_string(),
    }
}

fn column_type(pg_type: &Type) -> DefaultColumnType {
    if [Type::INT2, Type::INT4, Type::INT8].contains(pg_type) {
        DefaultColumnType::Integer
    } else if [Type::FLOAT4, Type::FLOAT8, Type::NUMERIC].contains(pg_type) {
        DefaultColumnType::FloatingPoint
    } else if [Type::TEXT, Type::VARCHAR].contains(pg_type) {
        DefaultColumnType::Text
    } else {
        DefaultColumnType::Any
    }
}

#[async_trait]
impl sqllogictest::AsyncDB for Creek {
    type Error = DbError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, DbError> {
        if !is_query(sql) {
            let messages = self.client.simple_query(sql).await.map_err(db_error)?;
            let count = messages
                .iter()
                .filter_map(|m| match m {
                    SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                })
                .last()
                .unwrap_or(0);
            return Ok(DBOutput::StatementComplete(count));
        }
        // Describe for the column types, then run with the simple protocol for text values.
        let statement = self.client.prepare(sql).await.map_err(db_error)?;
        let types: Vec<Type> = statement
            .columns()
            .iter()
            .map(|c| c.type_().clone())
            .collect();
        let messages = self.client.simple_query(sql).await.map_err(db_error)?;
        let mut rows = Vec::new();
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                let values = (0..row.len())
                    .map(|i| format_value(row.get(i), types.get(i).unwrap_or(&Type::TEXT)))
                    .collect();
                rows.push(values);
            }
        }
        Ok(DBOutput::Rows {
            types: types.iter().map(column_type).collect(),
            rows,
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "creek"
    }

    async fn sleep(duration: std::time::Duration) {
        tokio::time::sleep(duration).await;
    }
}

/// Per-file outcome.
struct FileResult {
    path: PathBuf,
    passed: usize,
    failed: usize,
    first_failures: Vec<String>,
}

fn collect_files(paths: &[PathBuf]) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            let mut stack = vec![path.clone()];
            while let Some(dir) = stack.pop() {
                for entry in std::fs::read_dir(&dir)? {
                    let entry = entry?.path();
                    if entry.is_dir() {
                        stack.push(entry);
                    } else if matches!(
                        entry.extension().and_then(|e| e.to_str()),
                        Some("slt" | "test")
                    ) {
                        files.push(entry);
                    }
                }
            }
        } else {
            files.push(path.clone());
        }
    }
    files.sort();
    Ok(files)
}

/// Normalises a corpus file: CRLF line ends, trailing comments on `skipif`/`onlyif` lines.
fn normalise(script: &str) -> String {
    script
        .replace("\r\n", "\n")
        .lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("skipif") || trimmed.starts_with("onlyif") {
                let mut words = trimmed.split_whitespace();
                format!(
                    "{} {}",
                    words.next().unwrap_or(""),
                    words.next().unwrap_or("")
                )
            } else {
                line.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

const LABELS: [&str; 2] = ["postgresql", "creek"];

fn condition_skips(condition: &sqllogictest::Condition) -> bool {
    match condition {
        sqllogictest::Condition::OnlyIf { label } => !LABELS.contains(&label.as_str()),
        sqllogictest::Condition::SkipIf { label } => LABELS.contains(&label.as_str()),
    }
}

async fn run_file(
    server: &Target,
    index: usize,
    path: &Path,
    schema: &str,
    verbose: bool,
    corpus: bool,
) -> anyhow::Result<FileResult> {
    let mut script = normalise(
        &std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    if corpus {
        // SQLite's runner lists result values one per line by default.
        script = format!("control resultmode valuewise\n{script}");
    }
    let records =
        sqllogictest::parse_with_name::<DefaultColumnType>(&script, path.display().to_string())
            .map_err(|e| anyhow::anyhow!("parsing {}: {e}", path.display()))?;
    let config = server.pg_config(index, &format!("-c search_path={schema}"));
    let make_connection = move || {
        let config = config.clone();
        async move {
            let (client, connection) = tokio_postgres::connect(&config, NoTls)
                .await
                .map_err(db_error)?;
            tokio::spawn(connection);
            Ok::<_, DbError>(Creek { client })
        }
    };
    let mut runner = sqllogictest::Runner::new(make_connection);
    for label in LABELS {
        runner.add_label(label);
    }
    if corpus {
        // SQLite's runner hashes results of more than 8 values by default.
        runner.with_hash_threshold(8);
    }
    let mut result = FileResult {
        path: path.to_path_buf(),
        passed: 0,
        failed: 0,
        first_failures: Vec::new(),
    };
    let mut pending_conditions: Vec<sqllogictest::Condition> = Vec::new();
    for record in records {
        match &record {
            Record::Condition(condition) => {
                pending_conditions.push(condition.clone());
                continue;
            }
            Record::Halt { .. } => {
                // `onlyif other-engine` + `halt` stops only that engine.
                if !pending_conditions.iter().any(condition_skips) {
                    break;
                }
                pending_conditions.clear();
                continue;
            }
            Record::Comment(_) | Record::Newline => continue,
            _ => pending_conditions.clear(),
        }
        let counts = matches!(record, Record::Statement { .. } | Record::Query { .. });
        let skipped = match &record {
            Record::Statement { conditions, .. } | Record::Query { conditions, .. } => {
                conditions.iter().any(condition_skips)
            }
            _ => false,
        };
        let outcome = runner.run_async(record).await;
        if !counts || skipped {
            continue;
        }
        match outcome {
            Ok(_) => result.passed += 1,
            Err(error) => {
                result.failed += 1;
                if verbose || result.first_failures.len() < 3 {
                    result.first_failures.push(error.display(false).to_string());
                }
            }
        }
    }
    runner.shutdown_async().await;
    Ok(result)
}

async fn drop_schema_tables(server: &Target, index: usize, schema: &str) {
    let Ok((client, connection)) = tokio_postgres::connect(
        &server.pg_config(index, &format!("-c search_path={schema}")),
        NoTls,
    )
    .await
    else {
        return;
    };
    tokio::spawn(connection);
    // Views first: a table a view reads cannot be dropped.
    if let Ok(messages) = client
        .simple_query("SELECT viewname FROM pg_views WHERE schemaname = current_schema()")
        .await
    {
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                if let Some(name) = row.get(0) {
                    let _ = client
                        .simple_query(&format!("DROP VIEW \"{schema}\".\"{name}\""))
                        .await;
                }
            }
        }
    }
    if let Ok(messages) = client.simple_query("SHOW TABLES").await {
        for message in messages {
            if let SimpleQueryMessage::Row(row) = message {
                if let Some(name) = row.get(0) {
                    let _ = client
                        .simple_query(&format!("DROP TABLE \"{schema}\".\"{name}\""))
                        .await;
                }
            }
        }
    }
}

async fn run_set(
    server: &Target,
    files: &[PathBuf],
    offset: usize,
    verbose: bool,
    corpus: bool,
) -> anyhow::Result<Vec<FileResult>> {
    let mut results = Vec::new();
    for (index, file) in files.iter().enumerate() {
        let schema = format!("slt{}", offset + index);
        let started = Instant::now();
        let result = run_file(server, offset + index, file, &schema, verbose, corpus).await?;
        drop_schema_tables(server, offset + index, &schema).await;
        let total = result.passed + result.failed;
        let rate = if total == 0 {
            100.0
        } else {
            100.0 * result.passed as f64 / total as f64
        };
        eprintln!(
            "{:<60} {:>6}/{:<6} records passed ({rate:.1} %) in {:.1}s",
            file.display(),
            result.passed,
            total,
            started.elapsed().as_secs_f64()
        );
        for failure in &result.first_failures {
            eprintln!("    {}", failure.replace('\n', "\n    "));
        }
        results.push(result);
    }
    Ok(results)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let server = match args.cluster {
        Some((coordinators, data_nodes)) => Target::Cluster(
            TestCluster::start(&data.path().join("cluster"), coordinators, data_nodes).await?,
        ),
        None => Target::Dev(CreekServer::start(&data.path().join("creek"))?),
    };
    let required_files = collect_files(&args.require)?;
    let corpus_files = collect_files(&args.corpus)?;
    let required = run_set(&server, &required_files, 0, args.verbose, false).await?;
    let corpus = run_set(
        &server,
        &corpus_files,
        required_files.len(),
        args.verbose,
        true,
    )
    .await?;

    let required_failed: usize = required.iter().map(|r| r.failed).sum();
    let required_passed: usize = required.iter().map(|r| r.passed).sum();
    let corpus_passed: usize = corpus.iter().map(|r| r.passed).sum();
    let corpus_total: usize = corpus.iter().map(|r| r.passed + r.failed).sum();
    let corpus_rate = if corpus_total == 0 {
        100.0
    } else {
        100.0 * corpus_passed as f64 / corpus_total as f64
    };
    eprintln!();
    eprintln!("own suite: {required_passed} passed, {required_failed} failed records");
    if corpus_total > 0 {
        eprintln!("corpus: {corpus_passed}/{corpus_total} records passed ({corpus_rate:.1} %)");
    }
    let failing_files: Vec<String> = required
        .iter()
        .filter(|r| r.failed > 0)
        .map(|r| r.path.display().to_string())
        .collect();
    if !failing_files.is_empty() {
        eprintln!("failing files: {}", failing_files.join(", "));
        eprintln!("server log: {}", server.log_tail());
        std::process::exit(1);
    }
    if corpus_rate < args.min_pass_rate {
        eprintln!(
            "corpus pass rate {corpus_rate:.1} % is below the required {:.1} %",
            args.min_pass_rate
        );
        std::process::exit(1);
    }
    Ok(())
}
