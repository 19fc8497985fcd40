//! One shard: a tantivy index plus its translog, with the write, refresh and real-time lookup
//! rules that make acknowledged writes durable and primary-key lookups real-time.
//!
//! Writes are serialised per shard under one lock: append to the translog (fsync by default),
//! then apply to the index writer, then acknowledge. A refresh commits the index with the highest
//! applied sequence number as its payload, reloads the reader and rolls the translog; until then
//! the ids written since the last refresh are kept in a small "live" map so that duplicate checks
//! and real-time gets see them. All methods block (disk and CPU): call them from a blocking pool.

pub mod document;
pub mod translog;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use creek_common::schema::TableSchema;
use creek_common::ShardId;
use creek_proto::ipc::{batch_from_ipc, batch_to_ipc};
use creek_proto::v1::{RowStatus, TranslogOp, WriteMode};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tantivy::collector::Count;
use tantivy::directory::MmapDirectory;
use tantivy::query::TermQuery;
use tantivy::schema::IndexRecordOption;
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term};

use crate::error::{Error, Result};
use document::{documents_from_batch, id_column, shard_schema, ShardFields};
use translog::Translog;

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({})", self.id)
    }
}

/// Memory budget of one shard's index writer.
const WRITER_MEMORY_BYTES: usize = 48 * 1024 * 1024;

/// What a commit records, so a restart replays only the translog after it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitPayload {
    max_seq_no: u64,
}

/// The outcome of one write request.
#[derive(Debug)]
pub struct WriteOutcome {
    /// One status per row or delete id, in request order.
    pub statuses: Vec<RowStatus>,
    /// The highest sequence number the shard has assigned.
    pub max_seq_no: u64,
}

struct WriterState {
    writer: IndexWriter,
    translog: Translog,
    /// The next sequence number to assign.
    next_seq_no: u64,
    /// Ids written since the last refresh, mapped to whether the row exists now.
    live: HashMap<String, bool>,
}

/// An open shard.
pub struct Shard {
    id: ShardId,
    dir: PathBuf,
    table: RwLock<Arc<TableSchema>>,
    fields: ShardFields,
    reader: IndexReader,
    state: Mutex<WriterState>,
    dirty: AtomicBool,
    last_refresh: Mutex<Instant>,
}

impl Shard {
    /// Opens the shard in `dir`, creating it if absent, and replays its translog.
    pub fn open(id: ShardId, dir: &Path, table: Arc<TableSchema>) -> Result<Shard> {
        let index_err = |source| Error::Index {
            shard_id: id,
            source,
        };
        let index_dir = dir.join("index");
        std::fs::create_dir_all(&index_dir).map_err(|source| Error::Io {
            shard_id: id,
            source,
        })?;
        let (schema, fields) = shard_schema();
        let directory = MmapDirectory::open(&index_dir).map_err(|e| Error::ShardCorrupted {
            shard_id: id,
            detail: e.to_string(),
        })?;
        let index = Index::open_or_create(directory, schema).map_err(index_err)?;
        let checkpoint = index
            .load_metas()
            .map_err(index_err)?
            .payload
            .and_then(|payload| serde_json::from_str::<CommitPayload>(&payload).ok())
            .unwrap_or_default()
            .max_seq_no;
        let writer: IndexWriter = index
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(index_err)?;
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let (translog, pending) = Translog::open(id, &dir.join("translog"), checkpoint)?;
        let next_seq_no = pending
            .iter()
            .map(|op| op.seq_no + op_len(op))
            .max()
            .unwrap_or(0)
            .max(checkpoint + 1);
        let shard = Shard {
            id,
            dir: dir.to_path_buf(),
            table: RwLock::new(table),
            fields,
            reader,
            state: Mutex::new(WriterState {
                writer,
                translog,
                next_seq_no,
                live: HashMap::new(),
            }),
            dirty: AtomicBool::new(false),
            last_refresh: Mutex::new(Instant::now()),
        };
        if !pending.is_empty() {
            tracing::info!(shard_id = %id, ops = pending.len(), "replaying translog");
            let mut state = shard.state.lock();
            for op in &pending {
                // An op may already be in the index (written after the checkpoint but before
                // a crash), so replay replaces by id.
                shard.apply_to_index(&mut state, op, true)?;
            }
            drop(state);
            shard.dirty.store(true, Ordering::Release);
            shard.refresh()?;
        }
        Ok(shard)
    }

    /// Returns the shard's id.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// Returns the table definition the shard writes with.
    pub fn table(&self) -> Arc<TableSchema> {
        self.table.read().clone()
    }

    /// Replaces the table definition (after `ALTER TABLE`).
    pub fn set_table(&self, table: Arc<TableSchema>) {
        *self.table.write() = table;
    }

    /// Returns the fixed index fields.
    pub fn fields(&self) -> ShardFields {
        self.fields
    }

    /// Returns a searcher over the last refresh.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// Applies a write request durably and returns per-row statuses.
    pub fn write(
        &self,
        mode: WriteMode,
        rows_ipc: &[u8],
        delete_ids: &[String],
    ) -> Result<WriteOutcome> {
        let table = self.table();
        let mut state = self.state.lock();
        let searcher = self.reader.searcher();
        let (op, statuses) = match mode {
            WriteMode::Delete => {
                let mut statuses = Vec::with_capacity(delete_ids.len());
                let mut deleted = Vec::new();
                for id in delete_ids {
                    if self.exists(&state, &searcher, id)? {
                        state.live.insert(id.clone(), false);
                        deleted.push(id.clone());
                        statuses.push(RowStatus::Ok);
                    } else {
                        statuses.push(RowStatus::NotFound);
                    }
                }
                let op = TranslogOp {
                    seq_no: state.next_seq_no,
                    mode: WriteMode::Delete as i32,
                    rows_ipc: Vec::new(),
                    num_ops: deleted.len() as u64,
                    delete_ids: deleted,
                };
                (op, statuses)
            }
            WriteMode::Insert | WriteMode::InsertIgnore | WriteMode::Upsert => {
                let batch = batch_from_ipc(rows_ipc)?;
                let ids = id_column(&batch)?;
                let mut keep = Vec::with_capacity(batch.num_rows());
                let mut statuses = Vec::with_capacity(batch.num_rows());
                for row in 0..batch.num_rows() {
                    let id = ids.value(row);
                    let accepted =
                        mode == WriteMode::Upsert || !self.exists(&state, &searcher, id)?;
                    if accepted {
                        state.live.insert(id.to_string(), true);
                        statuses.push(RowStatus::Ok);
                    } else if mode == WriteMode::Insert {
                        statuses.push(RowStatus::Duplicate);
                    } else {
                        statuses.push(RowStatus::Skipped);
                    }
                    keep.push(accepted);
                }
                let num_accepted = keep.iter().filter(|k| **k).count() as u64;
                let accepted_rows = if num_accepted == keep.len() as u64 {
                    rows_ipc.to_vec()
                } else {
                    batch_to_ipc(&filter_record_batch(&batch, &BooleanArray::from(keep))?)?
                };
                // Replay replaces by id, so a replayed insert is idempotent.
                let op = TranslogOp {
                    seq_no: state.next_seq_no,
                    mode: WriteMode::Upsert as i32,
                    rows_ipc: accepted_rows,
                    delete_ids: Vec::new(),
                    num_ops: num_accepted,
                };
                (op, statuses)
            }
        };
        if op.num_ops > 0 {
            state.translog.append(&op, table.fsync_per_request())?;
            // An accepted INSERT was just checked to be absent, so only an upsert needs to
            // delete an older version. Deleting per row anyway costs tantivy a delete term for
            // every document, each applied against every segment at the next commit.
            self.apply_to_index(&mut state, &op, mode == WriteMode::Upsert)?;
            self.dirty.store(true, Ordering::Release);
        }
        Ok(WriteOutcome {
            statuses,
            max_seq_no: state.next_seq_no.saturating_sub(1),
        })
    }

    /// Makes every applied write visible to new searchers and durable in the index, then drops
    /// the translog generations the commit covers.
    pub fn refresh(&self) -> Result<()> {
        let mut state = self.state.lock();
        if !self.dirty.swap(false, Ordering::AcqRel) {
            *self.last_refresh.lock() = Instant::now();
            return Ok(());
        }
        let index_err = |source| Error::Index {
            shard_id: self.id,
            source,
        };
        // Async-durability writes must be on disk before the commit makes the log disposable.
        state.translog.sync()?;
        let payload = serde_json::to_string(&CommitPayload {
            max_seq_no: state.next_seq_no.saturating_sub(1),
        })
        .expect("payload serialises");
        let mut prepared = state.writer.prepare_commit().map_err(index_err)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(index_err)?;
        state.translog.roll_after_commit()?;
        self.reader.reload().map_err(index_err)?;
        state.live.clear();
        *self.last_refresh.lock() = Instant::now();
        Ok(())
    }

    /// Refreshes if the shard has unrefreshed writes older than `interval_ms`.
    pub fn refresh_if_due(&self, interval_ms: i64) -> Result<()> {
        if interval_ms <= 0 || !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.last_refresh.lock().elapsed().as_millis() as i64 >= interval_ms {
            self.refresh()?;
        }
        Ok(())
    }

    /// Refreshes if any of `ids` was written since the last refresh, so a following scan sees
    /// their latest state (real-time get).
    pub fn refresh_if_any_live(&self, ids: &[String]) -> Result<()> {
        let needs_refresh = {
            let state = self.state.lock();
            ids.iter().any(|id| state.live.contains_key(id))
        };
        if needs_refresh {
            self.refresh()?;
        }
        Ok(())
    }

    /// Syncs the translog of an async-durability shard.
    pub fn sync_translog(&self) -> Result<()> {
        self.state.lock().translog.sync()
    }

    /// Returns (live documents, bytes on disk, highest sequence number).
    pub fn stats(&self) -> (u64, u64, u64) {
        let searcher = self.reader.searcher();
        let state = self.state.lock();
        let size = dir_size(&self.dir.join("index")) + state.translog.size_bytes();
        (
            searcher.num_docs(),
            size,
            state.next_seq_no.saturating_sub(1),
        )
    }

    fn exists(&self, state: &WriterState, searcher: &Searcher, id: &str) -> Result<bool> {
        if let Some(exists) = state.live.get(id) {
            return Ok(*exists);
        }
        let term = Term::from_field_text(self.fields.id, id);
        let query = TermQuery::new(term, IndexRecordOption::Basic);
        let count = searcher
            .search(&query, &Count)
            .map_err(|source| Error::Index {
                shard_id: self.id,
                source,
            })?;
        Ok(count > 0)
    }

    fn apply_to_index(
        &self,
        state: &mut WriterState,
        op: &TranslogOp,
        replace: bool,
    ) -> Result<()> {
        let mode = WriteMode::try_from(op.mode).unwrap_or(WriteMode::Upsert);
        match mode {
            WriteMode::Delete => {
                for id in &op.delete_ids {
                    state
                        .writer
                        .delete_term(Term::from_field_text(self.fields.id, id));
                }
            }
            WriteMode::Insert | WriteMode::InsertIgnore | WriteMode::Upsert => {
                if !op.rows_ipc.is_empty() {
                    let batch = batch_from_ipc(&op.rows_ipc)?;
                    self.index_batch(state, &batch, op.seq_no, replace)?;
                }
            }
        }
        state.next_seq_no = state.next_seq_no.max(op.seq_no + op_len(op));
        Ok(())
    }

    fn index_batch(
        &self,
        state: &mut WriterState,
        batch: &RecordBatch,
        first_seq_no: u64,
        replace: bool,
    ) -> Result<()> {
        let table = self.table();
        let documents = documents_from_batch(&table, self.fields, batch, first_seq_no)?;
        for (id, document) in documents {
            if replace {
                state
                    .writer
                    .delete_term(Term::from_field_text(self.fields.id, &id));
            }
            state
                .writer
                .add_document(document)
                .map_err(|source| Error::Index {
                    shard_id: self.id,
                    source,
                })?;
        }
        Ok(())
    }
}

/// Returns how many sequence numbers an operation consumes.
fn op_len(op: &TranslogOp) -> u64 {
    op.num_ops.max(1)
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|entry| entry.ok()?.metadata().ok())
                .map(|meta| meta.len())
                .sum()
        })
        .unwrap_or(0)
}
