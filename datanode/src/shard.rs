//! One shard: a tantivy index plus its translog, with the write, refresh and real-time lookup
//! rules that make acknowledged writes durable and primary-key lookups real-time.
//!
//! Writes are serialised per shard under one lock: append to the translog (fsync by default),
//! then apply to the index writer, then acknowledge. A refresh commits the index with the highest
//! applied sequence number as its payload and reloads the reader, without fsyncing anything; a
//! flush (on translog size or age) also makes that commit durable and rolls the translog. Until
//! a refresh the ids written since the last one are kept in a small "live" map so that duplicate
//! checks and real-time gets see them. All methods block (disk and CPU): call them from a
//! blocking pool.

pub mod analysis;
pub mod copy;
pub mod document;
pub(crate) mod lazy_sync;
pub mod recent_ops;
mod refresh;
mod replica;
pub mod translog;

pub use replica::{file_checksum, RecoverySnapshot};

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use creek_common::schema::{TableSchema, PRIMARY_TERM_COLUMN, SEQ_NO_COLUMN};
use creek_common::ShardId;
use creek_proto::ipc::{batch_from_ipc, batch_to_ipc};
use creek_proto::v1::{RowStatus, TranslogOp, WriteMode};
use datafusion::arrow::array::BooleanArray;
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::record_batch::RecordBatch;
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use tantivy::schema::{IndexRecordOption, Schema};
use tantivy::{
    DocAddress, DocSet, Index, IndexReader, IndexWriter, ReloadPolicy, Searcher, Term, TERMINATED,
};

use crate::error::{Error, Result};
use copy::{CopyRole, Peer};
use document::{documents_from_batch, id_column, new_index_schema, ShardFields};
use lazy_sync::{remove_strays, LazySyncDirectory};
use recent_ops::RecentOps;
use translog::Translog;

impl std::fmt::Debug for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Shard({})", self.id)
    }
}

/// A shard flushes (see [`Shard::flush`]) once its translog grew by the table's
/// `translog.flush_threshold_size` since the last flush (which bounds the log a restart
/// replays), or once its oldest unflushed operation is this old.
const FLUSH_INTERVAL: Duration = Duration::from_secs(30);

/// Memory budget of one shard's index writer: a segment is cut when it is full. Every
/// indexed column's term dictionary is rebuilt for each segment (an FST build was the largest
/// cost of a COPY of 105-column rows at 48 MiB), so larger segments repeat less of that work
/// per row. The arena grows as documents arrive, so an idle writer does not hold the budget.
const WRITER_MEMORY_BYTES: usize = 128 * 1024 * 1024;

/// A copy that served no search for this long is search-idle: periodic refreshes skip it
/// (a bulk load is not cut into small segments nobody reads) and its next search refreshes
/// before it reads, so that search still sees every write the copy applied (Elasticsearch's
/// `index.search.idle.after`).
const SEARCH_IDLE_AFTER: Duration = Duration::from_secs(30);

/// Ids written since the last refresh that a copy tracks before it refreshes whatever its
/// interval says: the live map holds one entry per such id, so it must not grow with a load
/// into a search-idle copy or a table with periodic refresh off.
const LIVE_IDS_BEFORE_REFRESH: usize = 250_000;

/// What a commit records, so a restart replays only the translog after it.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CommitPayload {
    max_seq_no: u64,
    /// The highest primary term of the operations the commit contains.
    #[serde(default)]
    max_term: u64,
}

/// A document's version: the sequence number and primary term of the operation that wrote
/// it. A conditional write succeeds only if the document still has the version it read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// `_seq_no`.
    pub seq_no: u64,
    /// `_primary_term`.
    pub primary_term: u64,
}

/// The outcome of one write request.
#[derive(Debug)]
pub struct WriteOutcome {
    /// One status per row or delete id, in request order.
    pub statuses: Vec<RowStatus>,
    /// The highest sequence number the shard has assigned.
    pub max_seq_no: u64,
    /// The operation written, which a primary forwards to its replicas (`None` if the
    /// request changed nothing).
    pub op: Option<Arc<TranslogOp>>,
    /// The request repeated an operation id applied before: `statuses` are the first
    /// answer and nothing was written again.
    pub repeated: bool,
}

struct WriterState {
    writer: IndexWriter,
    translog: Translog,
    /// The next sequence number to assign.
    next_seq_no: u64,
    /// The highest primary term among the operations applied: a replica that gets an
    /// operation it already has a sequence number for, from a newer term, has diverged.
    last_term: u64,
    /// Ids written since the last refresh, mapped to the version of the row now (`None`:
    /// deleted). The index reader lags until the next refresh; this map does not.
    live: HashMap<String, Option<Version>>,
    /// Translog bytes applied since the last flush, and when that was.
    unflushed_bytes: u64,
    last_flush: Instant,
}

/// An open shard.
pub struct Shard {
    id: ShardId,
    dir: PathBuf,
    table: RwLock<Arc<TableSchema>>,
    fields: ShardFields,
    /// The index's schema: which columns have fields of their own (see `shard::document`).
    schema: Schema,
    reader: IndexReader,
    state: Mutex<WriterState>,
    dirty: AtomicBool,
    /// Every operation up to this sequence number that the copy applied is visible to new
    /// searchers (a reader asking for its own writes waits for this, see
    /// [`Shard::ensure_visible`]).
    visible_seq_no: AtomicU64,
    last_refresh: Mutex<Instant>,
    /// When this copy last served a search (see [`SEARCH_IDLE_AFTER`]).
    last_search: Mutex<Instant>,
    /// Set by the first storage error the shard cannot account for (a translog append or
    /// index write that may have half happened, a failed commit): from then on the shard
    /// acknowledges nothing, so it never acknowledges a write it might not replay. It is
    /// opened afresh (replaying and cutting its translog) to serve again.
    failed: Mutex<Option<String>>,
    /// This copy's role in its replication group, from the cluster state.
    role: RwLock<CopyRole>,
    /// Recovering copies that reached their last recovery phase: a primary forwards writes
    /// to them as to started copies.
    tracking: Mutex<Vec<Peer>>,
    /// Held by a primary from writing an operation until every copy has it, so that copies
    /// receive operations in sequence order.
    replication: tokio::sync::Mutex<()>,
    /// Operations applied recently, by operation id (retries get the first answer).
    recent: Mutex<RecentOps>,
    /// While a recovery reads this copy's translog, no generation is deleted.
    translog_holds: AtomicUsize,
    /// The index, for listing a commit's files to a recovering copy.
    index: Index,
    /// The index's directory, which a flush makes durable.
    directory: LazySyncDirectory,
    /// Up to this primary term the copy may not act as primary (see
    /// [`Shard::fence_primary_up_to`]).
    primary_fence: AtomicU64,
    /// Set when the node stops serving this copy: its directory may be handed to a new
    /// copy of the shard, so it writes, refreshes and flushes no more.
    closed: AtomicBool,
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
        let directory = LazySyncDirectory::open(&index_dir).map_err(|e| Error::ShardCorrupted {
            shard_id: id,
            detail: e.to_string(),
        })?;
        // An existing index keeps the layout it was created with (recovered copies take
        // their primary's); a new one is laid out for the table as it is now.
        let index = if Index::exists(&directory).map_err(|e| index_err(e.into()))? {
            Index::open(directory.clone()).map_err(index_err)?
        } else {
            Index::create(
                directory.clone(),
                new_index_schema(&table),
                tantivy::IndexSettings::default(),
            )
            .map_err(index_err)?
        };
        analysis::register_analyzers(&index, &table).map_err(index_err)?;
        let schema = index.schema();
        let fields = ShardFields::of(&schema).map_err(|e| Error::ShardCorrupted {
            shard_id: id,
            detail: e.to_string(),
        })?;
        // The writer and reader are made from this handle; the shard keeps it for recovery.
        let index_handle = index.clone();
        let committed = index
            .load_metas()
            .map_err(index_err)?
            .payload
            .and_then(|payload| serde_json::from_str::<CommitPayload>(&payload).ok())
            .unwrap_or_default();
        let checkpoint = committed.max_seq_no;
        let writer: IndexWriter = index_handle
            .writer_with_num_threads(1, WRITER_MEMORY_BYTES)
            .map_err(index_err)?;
        // Segments written after the last flush, by a process that died before the next:
        // the translog still has their operations. Removed once the writer lock is held, so
        // never under another live writer.
        let strays = remove_strays(&index_dir, &index).map_err(|source| Error::Io {
            shard_id: id,
            source,
        })?;
        if strays > 0 {
            tracing::info!(shard_id = %id, files = strays, "removed index files no flush covered");
        }
        let reader = index_handle
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()
            .map_err(index_err)?;
        let (translog, pending, covered) = Translog::open(id, &dir.join("translog"), checkpoint)?;
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
            schema,
            reader,
            state: Mutex::new(WriterState {
                writer,
                translog,
                next_seq_no,
                last_term: committed.max_term,
                live: HashMap::new(),
                unflushed_bytes: 0,
                last_flush: Instant::now(),
            }),
            dirty: AtomicBool::new(false),
            visible_seq_no: AtomicU64::new(checkpoint),
            last_refresh: Mutex::new(Instant::now()),
            last_search: Mutex::new(Instant::now()),
            failed: Mutex::new(None),
            // A copy serves as primary only once the cluster state says so.
            role: RwLock::new(CopyRole {
                primary: false,
                primary_term: committed.max_term.max(1),
                ..CopyRole::default()
            }),
            tracking: Mutex::new(Vec::new()),
            replication: tokio::sync::Mutex::new(()),
            recent: Mutex::new(RecentOps::default()),
            translog_holds: AtomicUsize::new(0),
            index,
            directory,
            primary_fence: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        };
        // Operations the index already holds: only their answers are needed (a coordinator
        // may still be retrying them).
        shard.remember_answers(&covered);
        if !pending.is_empty() {
            tracing::info!(shard_id = %id, ops = pending.len(), "replaying translog");
            let mut state = shard.state.lock();
            for op in &pending {
                // An op may already be in the index (written after the checkpoint but before
                // a crash), so replay replaces by id.
                shard.apply_to_index(&mut state, op, true, None)?;
                shard.recent.lock().record(op);
            }
            // The replayed operations' terms count as learnt: an operation from a primary
            // older than them is stale here even before the cluster state arrives.
            let mut role = shard.role.write();
            role.primary_term = role.primary_term.max(state.last_term);
            drop(role);
            drop(state);
            shard.dirty.store(true, Ordering::Release);
            shard.refresh()?;
        }
        Ok(shard)
    }

    /// Stops the copy for good (the node no longer serves it): from now on it writes,
    /// refreshes and flushes nothing, so a new copy may take over its directory. Searchers
    /// already handed out keep reading.
    pub fn close(&self) {
        // Taken so that a write, refresh or flush under way finishes first.
        let _state = self.state.lock();
        self.closed.store(true, Ordering::Release);
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

    /// Returns the index's schema, for locating columns in it.
    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    /// Returns a searcher over the last refresh.
    pub fn searcher(&self) -> Searcher {
        self.reader.searcher()
    }

    /// Returns why the shard failed, if it did (see [`Shard::fail`]).
    pub fn failure(&self) -> Option<String> {
        self.failed.lock().clone()
    }

    /// Marks the shard failed: it acknowledges nothing from now on.
    fn fail(&self, error: &Error) {
        let mut failed = self.failed.lock();
        if failed.is_none() {
            tracing::error!(shard_id = %self.id, %error, "shard failed; it acknowledges no more writes");
            *failed = Some(error.to_string());
        }
    }

    fn check_not_failed(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(Error::ShardNotFound { shard_id: self.id });
        }
        match self.failed.lock().as_ref() {
            Some(reason) => Err(Error::ShardFailed {
                shard_id: self.id,
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Runs a storage step whose failure leaves the shard in an unknown state: any error
    /// fails the shard as a unit.
    fn or_fail<T>(&self, result: Result<T>) -> Result<T> {
        result.inspect_err(|error| self.fail(error))
    }

    /// Applies a write request durably and returns per-row statuses. For the `*_IF_VERSION`
    /// modes, `expected` holds the version each row (or delete id) was read at; a document
    /// whose version differs now gets `VersionConflict`, one that is gone `NotFound`.
    pub fn write(
        &self,
        mode: WriteMode,
        rows_ipc: &[u8],
        delete_ids: &[String],
        expected: &[Version],
        operation_id: &str,
    ) -> Result<WriteOutcome> {
        let table = self.table();
        let mut state = self.state.lock();
        self.check_not_failed()?;
        // One look at the role under the writer lock: a copy demoted since the caller checked
        // must not log an operation under the term of the primary that replaced it (that
        // operation would later pass for the new primary's own at the same sequence number).
        let role = self.role();
        if !role.primary {
            return Err(Error::NotPrimary { shard_id: self.id });
        }
        let term = role.primary_term;
        let remembered = self.recent.lock().get(operation_id);
        if let Some(remembered) = remembered {
            // An answer learnt in recovery comes without the operation: an empty one of this
            // term is forwarded instead, so the answer goes out only once every copy in the
            // group is known to hold everything up to here (a copy that cannot be brought
            // there is failed first).
            let op = if remembered.answer_only {
                self.log_empty_op(&mut state, term, table.fsync_per_request())?
            } else {
                remembered.op.clone()
            };
            return Ok(WriteOutcome {
                statuses: recent_ops::statuses_of(&remembered.op),
                max_seq_no: state.next_seq_no.saturating_sub(1),
                op: Some(op),
                repeated: true,
            });
        }
        let searcher = self.reader.searcher();
        let conditional = matches!(
            mode,
            WriteMode::UpdateIfVersion | WriteMode::DeleteIfVersion
        );
        let expected_len = if matches!(mode, WriteMode::DeleteIfVersion) {
            delete_ids.len()
        } else {
            0
        };
        if conditional && mode == WriteMode::DeleteIfVersion && expected.len() != expected_len {
            return Err(Error::InvalidRequest(
                "a conditional delete needs one expected version per id".into(),
            ));
        }
        // What this request does to each id, applied to the live map only once the operation
        // is in the translog: a failed append must leave no trace. The version an accepted
        // row gets is its position among the accepted rows after the operation's seq_no.
        let mut changes: HashMap<String, Option<Version>> = HashMap::new();
        let mut accepted_batch = None;
        let first_seq_no = state.next_seq_no;
        let (op, statuses) = match mode {
            WriteMode::Delete | WriteMode::DeleteIfVersion => {
                let mut statuses = Vec::with_capacity(delete_ids.len());
                let mut deleted = Vec::new();
                for (index, id) in delete_ids.iter().enumerate() {
                    let current = self.current_version(&state, &changes, &searcher, id)?;
                    let status = match (current, conditional) {
                        (None, _) => RowStatus::NotFound,
                        (Some(version), true) if version != expected[index] => {
                            RowStatus::VersionConflict
                        }
                        (Some(_), _) => RowStatus::Ok,
                    };
                    if status == RowStatus::Ok {
                        changes.insert(id.clone(), None);
                        deleted.push(id.clone());
                    }
                    statuses.push(status);
                }
                let op = TranslogOp {
                    seq_no: first_seq_no,
                    mode: WriteMode::Delete as i32,
                    rows_ipc: Vec::new(),
                    num_ops: deleted.len() as u64,
                    delete_ids: deleted,
                    primary_term: term,
                    ..TranslogOp::default()
                };
                (op, statuses)
            }
            WriteMode::Insert
            | WriteMode::InsertIgnore
            | WriteMode::Upsert
            | WriteMode::UpdateIfVersion => {
                let batch = batch_from_ipc(rows_ipc)?;
                let ids = id_column(&batch)?;
                if mode == WriteMode::UpdateIfVersion && expected.len() != batch.num_rows() {
                    return Err(Error::InvalidRequest(
                        "a conditional update needs one expected version per row".into(),
                    ));
                }
                let mut keep = Vec::with_capacity(batch.num_rows());
                let mut statuses = Vec::with_capacity(batch.num_rows());
                let mut accepted_count = 0u64;
                for row in 0..batch.num_rows() {
                    let id = ids.value(row);
                    let status = match mode {
                        WriteMode::Upsert => RowStatus::Ok,
                        WriteMode::UpdateIfVersion => {
                            match self.current_version(&state, &changes, &searcher, id)? {
                                None => RowStatus::NotFound,
                                Some(version) if Some(&version) != expected.get(row) => {
                                    RowStatus::VersionConflict
                                }
                                Some(_) => RowStatus::Ok,
                            }
                        }
                        _ => match self.document_exists(&state, &changes, &searcher, id)? {
                            false => RowStatus::Ok,
                            true if mode == WriteMode::Insert => RowStatus::Duplicate,
                            true => RowStatus::Skipped,
                        },
                    };
                    let accepted = status == RowStatus::Ok;
                    if accepted {
                        let version = Version {
                            seq_no: first_seq_no + accepted_count,
                            primary_term: term,
                        };
                        changes.insert(id.to_string(), Some(version));
                        accepted_count += 1;
                    }
                    statuses.push(status);
                    keep.push(accepted);
                }
                let (accepted_rows, accepted) = if accepted_count == keep.len() as u64 {
                    (rows_ipc.to_vec(), batch)
                } else {
                    let accepted = filter_record_batch(&batch, &BooleanArray::from(keep))?;
                    (batch_to_ipc(&accepted)?, accepted)
                };
                accepted_batch = Some(accepted);
                // Replay replaces by id, so a replayed insert is idempotent.
                let op = TranslogOp {
                    seq_no: first_seq_no,
                    mode: WriteMode::Upsert as i32,
                    rows_ipc: accepted_rows,
                    delete_ids: Vec::new(),
                    num_ops: accepted_count,
                    primary_term: term,
                    ..TranslogOp::default()
                };
                (op, statuses)
            }
        };
        let mut op = op;
        op.operation_id = operation_id.to_string();
        op.statuses = statuses.iter().map(|s| *s as i32).collect();
        let written = op.num_ops > 0;
        if written {
            self.or_fail(state.translog.append(&op, table.fsync_per_request()))?;
            state.live.extend(changes);
            // An accepted INSERT was just checked to be absent, so only upserts and updates
            // need to delete an older version. Deleting per row anyway costs tantivy a delete
            // term for every document, each applied against every segment at the next commit.
            let replace = matches!(mode, WriteMode::Upsert | WriteMode::UpdateIfVersion);
            let applied = self.apply_to_index(&mut state, &op, replace, accepted_batch.as_ref());
            self.or_fail(applied)?;
            self.dirty.store(true, Ordering::Release);
            self.recent.lock().record(&op);
            self.refresh_if_many_live(&mut state)?;
        }
        Ok(WriteOutcome {
            statuses,
            max_seq_no: state.next_seq_no.saturating_sub(1),
            op: written.then(|| Arc::new(op)),
            repeated: false,
        })
    }

    /// Starts this copy's term as primary: logs an operation that changes nothing under the
    /// next sequence number and the new term (call it holding the replication lock, then
    /// forward it). A replica that holds an operation of the old primary which this one
    /// never got (never acknowledged, since it lacks it) sees the same sequence number under
    /// a newer term, reports itself diverged and is rebuilt, instead of keeping that write
    /// while no new one arrives; a replica behind gets its gap filled. `None` on a copy that
    /// is not primary.
    pub fn start_primary_term(&self) -> Result<Option<Arc<TranslogOp>>> {
        let table = self.table();
        let mut state = self.state.lock();
        self.check_not_failed()?;
        let role = self.role();
        if !role.primary {
            return Ok(None);
        }
        self.log_empty_op(&mut state, role.primary_term, table.fsync_per_request())
            .map(Some)
    }

    /// Logs an operation that changes nothing under the next sequence number and `term`.
    fn log_empty_op(
        &self,
        state: &mut WriterState,
        term: u64,
        fsync: bool,
    ) -> Result<Arc<TranslogOp>> {
        let op = TranslogOp {
            seq_no: state.next_seq_no,
            mode: WriteMode::Upsert as i32,
            num_ops: 1,
            primary_term: term,
            ..TranslogOp::default()
        };
        self.or_fail(state.translog.append(&op, fsync))?;
        let applied = self.apply_to_index(state, &op, false, None);
        self.or_fail(applied)?;
        Ok(Arc::new(op))
    }

    /// The answers of the operations this copy remembers, for a copy recovering from it.
    pub fn recent_answers(&self) -> Vec<TranslogOp> {
        self.recent.lock().answers()
    }

    /// Remembers the answers of operations this copy's index already holds: those a primary
    /// remembered when this copy was recovered from it, or those of committed translog
    /// generations at open.
    pub fn remember_answers(&self, answers: &[TranslogOp]) {
        let mut recent = self.recent.lock();
        for op in answers {
            recent.record_answer(op);
        }
    }

    /// The primary term this copy knows.
    pub fn primary_term(&self) -> u64 {
        self.role.read().primary_term
    }

    /// Returns this copy's role.
    pub fn role(&self) -> CopyRole {
        self.role.read().clone()
    }

    /// Sets this copy's role from the cluster state. The primary term only grows: a copy
    /// that learnt a newer term from a replicated operation keeps it.
    pub fn set_role(&self, role: CopyRole) {
        let mut current = self.role.write();
        let primary_term = current.primary_term.max(role.primary_term);
        // A state older than the term this copy learnt from a newer primary cannot make it
        // primary again.
        let primary = role.primary
            && role.primary_term >= current.primary_term
            && role.primary_term > self.primary_fence.load(Ordering::Acquire);
        *current = CopyRole {
            primary_term,
            primary,
            ..role
        };
        // Tracked recoveries that the state now lists as peers need no tracking.
        let peers: Vec<String> = current
            .peers
            .iter()
            .map(|p| p.allocation_id.clone())
            .collect();
        self.tracking
            .lock()
            .retain(|p| !peers.contains(&p.allocation_id));
    }

    /// Never act as primary under a term up to `term` (0 lifts the fence): a copy that may
    /// lack acknowledged writes waits for a newer primary.
    pub fn fence_primary_up_to(&self, term: u64) {
        self.primary_fence.store(term, Ordering::Release);
        if term > 0 {
            let mut role = self.role.write();
            if role.primary_term <= term {
                role.primary = false;
            }
        }
    }

    /// The term up to which this copy may not act as primary.
    pub fn primary_fence(&self) -> u64 {
        self.primary_fence.load(Ordering::Acquire)
    }

    /// The copies a primary forwards writes to: the state's peers and tracked recoveries.
    pub fn replication_targets(&self) -> Vec<Peer> {
        let mut targets = self.role.read().peers.clone();
        for tracked in self.tracking.lock().iter() {
            if !targets
                .iter()
                .any(|p| p.allocation_id == tracked.allocation_id)
            {
                targets.push(tracked.clone());
            }
        }
        targets
    }

    /// Stops forwarding to a copy (it failed).
    pub fn stop_tracking(&self, allocation_id: &str) {
        self.tracking
            .lock()
            .retain(|p| p.allocation_id != allocation_id);
        self.role
            .write()
            .peers
            .retain(|p| p.allocation_id != allocation_id);
    }

    /// The lock a primary holds from writing an operation until every copy has it.
    pub fn replication_lock(&self) -> &tokio::sync::Mutex<()> {
        &self.replication
    }

    /// Syncs the translog of an async-durability shard.
    pub fn sync_translog(&self) -> Result<()> {
        let mut state = self.state.lock();
        self.check_not_failed()?;
        let synced = state.translog.sync();
        self.or_fail(synced)
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

    /// A checksum of the live documents this copy's searcher sees: each document's sequence
    /// number and primary term, combined independently of order, so two copies that made the
    /// same writes visible have the same checksum whatever their segments look like.
    pub fn content_checksum(&self) -> Result<u64> {
        let searcher = self.reader.searcher();
        let index_err = |source| Error::Index {
            shard_id: self.id,
            source,
        };
        let mut sum = 0u64;
        for segment in searcher.segment_readers() {
            let fast_fields = segment.fast_fields();
            let seq_nos = fast_fields.i64(SEQ_NO_COLUMN).map_err(index_err)?;
            let terms = fast_fields.i64(PRIMARY_TERM_COLUMN).map_err(index_err)?;
            let alive = segment.alive_bitset();
            for doc in 0..segment.max_doc() {
                if alive.is_some_and(|bits| !bits.is_alive(doc)) {
                    continue;
                }
                let seq_no = seq_nos.first(doc).unwrap_or(0) as u64;
                let term = terms.first(doc).unwrap_or(0).max(1) as u64;
                sum = sum.wrapping_add(mix(seq_no ^ term.rotate_left(48)));
            }
        }
        Ok(sum)
    }

    /// The live document with `id` in the searcher's segments, read straight from the id
    /// field's postings (the hot path of every insert's duplicate check).
    pub fn find_document(&self, searcher: &Searcher, id: &str) -> Result<Option<DocAddress>> {
        let term = Term::from_field_text(self.fields.id, id);
        for (ordinal, segment) in searcher.segment_readers().iter().enumerate() {
            let inverted =
                segment
                    .inverted_index(self.fields.id)
                    .map_err(|source| Error::Index {
                        shard_id: self.id,
                        source,
                    })?;
            let postings = inverted
                .read_postings(&term, IndexRecordOption::Basic)
                .map_err(|source| Error::Io {
                    shard_id: self.id,
                    source,
                })?;
            let Some(mut postings) = postings else {
                continue;
            };
            let alive = segment.alive_bitset();
            let mut doc = postings.doc();
            while doc != TERMINATED {
                if alive.is_none_or(|bits| bits.is_alive(doc)) {
                    return Ok(Some(DocAddress::new(ordinal as u32, doc)));
                }
                doc = postings.advance();
            }
        }
        Ok(None)
    }

    /// Whether document `id` exists now, as [`Shard::current_version`] sees it, without reading
    /// its version.
    fn document_exists(
        &self,
        state: &WriterState,
        changes: &HashMap<String, Option<Version>>,
        searcher: &Searcher,
        id: &str,
    ) -> Result<bool> {
        if let Some(version) = changes.get(id).or_else(|| state.live.get(id)) {
            return Ok(version.is_some());
        }
        Ok(self.find_document(searcher, id)?.is_some())
    }

    /// The version of document `id` now: as changed by this request (`changes`), as written
    /// since the last refresh (the live map), or as the index has it; `None` if it does not
    /// exist.
    fn current_version(
        &self,
        state: &WriterState,
        changes: &HashMap<String, Option<Version>>,
        searcher: &Searcher,
        id: &str,
    ) -> Result<Option<Version>> {
        if let Some(version) = changes.get(id).or_else(|| state.live.get(id)) {
            return Ok(*version);
        }
        let index_err = |source| Error::Index {
            shard_id: self.id,
            source,
        };
        let Some(address) = self.find_document(searcher, id)? else {
            return Ok(None);
        };
        let fast_fields = searcher.segment_reader(address.segment_ord).fast_fields();
        let read = |name: &str| -> Result<u64> {
            let column = fast_fields.i64(name).map_err(index_err)?;
            Ok(column.first(address.doc_id).unwrap_or(0).max(0) as u64)
        };
        Ok(Some(Version {
            seq_no: read(SEQ_NO_COLUMN)?,
            // Documents written before primary terms were recorded read 0: term 1.
            primary_term: read(PRIMARY_TERM_COLUMN)?.max(1),
        }))
    }

    /// Applies a logged operation to the index. `decoded` is the operation's rows when the
    /// caller already decoded them (a write checks its ids first), so no payload is decoded
    /// twice; `None` decodes them here.
    fn apply_to_index(
        &self,
        state: &mut WriterState,
        op: &TranslogOp,
        replace: bool,
        decoded: Option<&RecordBatch>,
    ) -> Result<()> {
        // Translog operations are only ever deletes and upserts (conditional writes are
        // logged as what they did); an unknown mode is corruption, not a guess.
        let mode = WriteMode::try_from(op.mode).map_err(|_| Error::ShardCorrupted {
            shard_id: self.id,
            detail: format!(
                "translog operation {} has unknown mode {}",
                op.seq_no, op.mode
            ),
        })?;
        match mode {
            WriteMode::Delete | WriteMode::DeleteIfVersion => {
                for id in &op.delete_ids {
                    state
                        .writer
                        .delete_term(Term::from_field_text(self.fields.id, id));
                }
            }
            WriteMode::Insert
            | WriteMode::InsertIgnore
            | WriteMode::Upsert
            | WriteMode::UpdateIfVersion => {
                let term = op.primary_term.max(1);
                match decoded {
                    Some(batch) => self.index_batch(state, batch, op.seq_no, term, replace)?,
                    None if !op.rows_ipc.is_empty() => {
                        let batch = batch_from_ipc(&op.rows_ipc)?;
                        self.index_batch(state, &batch, op.seq_no, term, replace)?;
                    }
                    None => {}
                }
            }
        }
        state.next_seq_no = state.next_seq_no.max(op.seq_no + op_len(op));
        state.last_term = state.last_term.max(op.primary_term);
        state.unflushed_bytes +=
            (op.rows_ipc.len() + op.delete_ids.iter().map(String::len).sum::<usize>()) as u64 + 64;
        Ok(())
    }

    fn index_batch(
        &self,
        state: &mut WriterState,
        batch: &RecordBatch,
        first_seq_no: u64,
        primary_term: u64,
        replace: bool,
    ) -> Result<()> {
        let table = self.table();
        let documents = documents_from_batch(
            &table,
            &self.schema,
            self.fields,
            batch,
            first_seq_no,
            primary_term,
        )?;
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

/// A 64-bit finaliser (splitmix64), so that summed values do not cancel out.
fn mix(mut x: u64) -> u64 {
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
