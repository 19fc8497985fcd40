//! Durable Raft storage of a voter, under `<data-dir>/raft/`: the log, the vote, the commit
//! index and the latest snapshot; and the state machine that applies committed commands to
//! cluster state and installs each applied version in the [`Catalog`].
//!
//! The log is one append-only file of JSON lines (append, truncate and purge records), fsynced
//! before openraft is told an append is durable, and rewritten compactly once purged records
//! dominate it. A torn last line (a crash mid-write) was never acknowledged and is dropped on
//! replay. The state machine keeps no file of its own: it is the snapshot plus the committed log,
//! replayed at start-up.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Cursor, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::{LogFlushed, LogState, RaftLogStorage, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, Entry, EntryPayload, LogId, OptionalSend, RaftLogReader, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership, Vote,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};

use super::{RaftNodeId, RaftPeer, TypeConfig};
use crate::catalog::commands::{apply, CommandResponse};
use crate::catalog::{Catalog, ClusterState};

type StorageResult<T> = Result<T, StorageError<RaftNodeId>>;

/// One line of the log file.
#[derive(Serialize, Deserialize)]
enum LogRecord {
    Append(Box<Entry<TypeConfig>>),
    /// Removes entries at and after this index (a new leader overwrote them).
    Truncate(u64),
    /// Removes entries up to and including this log id (they are in a snapshot).
    Purge(LogId<RaftNodeId>),
}

#[derive(Default)]
struct LogInner {
    entries: BTreeMap<u64, Entry<TypeConfig>>,
    last_purged: Option<LogId<RaftNodeId>>,
    vote: Option<Vote<RaftNodeId>>,
    committed: Option<LogId<RaftNodeId>>,
    /// Records in the file that no longer describe a live entry.
    dead_records: usize,
}

/// The Raft log, vote and commit index of one voter.
#[derive(Clone)]
pub struct LogStore {
    dir: PathBuf,
    inner: Arc<Mutex<LogInner>>,
    file: Arc<Mutex<File>>,
}

fn io_error(error: impl std::error::Error + 'static) -> AnyError {
    AnyError::new(&error)
}

/// Writes `bytes` to `path` atomically and durably (temp file, fsync, rename, fsync dir).
fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    let mut file = File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    if let Some(parent) = path.parent() {
        File::open(parent)?.sync_all()?;
    }
    Ok(())
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> std::io::Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

impl LogStore {
    /// Opens (or creates) the log under `dir`, replaying the log file.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        std::fs::create_dir_all(dir)?;
        let mut inner = LogInner {
            vote: read_json(&dir.join("vote.json"))?,
            committed: read_json(&dir.join("committed.json"))?,
            ..LogInner::default()
        };
        let log_path = dir.join("log.jsonl");
        if let Ok(file) = File::open(&log_path) {
            let mut lines = BufReader::new(file).lines().peekable();
            while let Some(line) = lines.next() {
                let line = line?;
                let record: LogRecord = match serde_json::from_str(&line) {
                    Ok(record) => record,
                    // Only the last line can be torn: it was never acknowledged.
                    Err(_) if lines.peek().is_none() => break,
                    Err(e) => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::InvalidData,
                            format!("raft log {} is corrupt: {e}", log_path.display()),
                        ))
                    }
                };
                inner.replay(record);
            }
        }
        let store = LogStore {
            dir: dir.to_path_buf(),
            file: Arc::new(Mutex::new(
                OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&log_path)?,
            )),
            inner: Arc::new(Mutex::new(inner)),
        };
        // Start from a compact file, which also drops a torn last line.
        store.rewrite()?;
        Ok(store)
    }

    /// Writes the live entries (and the purge point) as a fresh log file.
    fn rewrite(&self) -> std::io::Result<()> {
        let mut inner = self.inner.lock();
        let mut text = String::new();
        let mut push = |record: &LogRecord| {
            text.push_str(&serde_json::to_string(record).expect("log record serialises"));
            text.push('\n');
        };
        if let Some(purged) = inner.last_purged {
            push(&LogRecord::Purge(purged));
        }
        for entry in inner.entries.values() {
            push(&LogRecord::Append(Box::new(entry.clone())));
        }
        let path = self.dir.join("log.jsonl");
        write_atomically(&path, text.as_bytes())?;
        *self.file.lock() = OpenOptions::new().append(true).open(&path)?;
        inner.dead_records = 0;
        Ok(())
    }

    /// Appends `records` to the file durably, then applies them to the in-memory log; once
    /// purged records dominate the file, rewrites it compactly.
    fn persist(&self, records: Vec<LogRecord>) -> std::io::Result<()> {
        let mut text = String::new();
        for record in &records {
            text.push_str(&serde_json::to_string(record).expect("log record serialises"));
            text.push('\n');
        }
        {
            let mut file = self.file.lock();
            file.write_all(text.as_bytes())?;
            file.sync_data()?;
        }
        let compact = {
            let mut inner = self.inner.lock();
            for record in records {
                inner.replay(record);
            }
            inner.dead_records > 256 && inner.dead_records > 2 * inner.entries.len()
        };
        if compact {
            self.rewrite()?;
        }
        Ok(())
    }
}

impl LogInner {
    fn replay(&mut self, record: LogRecord) {
        match record {
            LogRecord::Append(entry) => {
                if self.entries.insert(entry.log_id.index, *entry).is_some() {
                    self.dead_records += 1;
                }
            }
            LogRecord::Truncate(index) => {
                let removed = self.entries.split_off(&index);
                self.dead_records += removed.len() + 1;
            }
            LogRecord::Purge(log_id) => {
                let kept = self.entries.split_off(&(log_id.index + 1));
                self.dead_records += self.entries.len() + 1;
                self.entries = kept;
                self.last_purged = Some(log_id);
            }
        }
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> StorageResult<Vec<Entry<TypeConfig>>> {
        Ok(self
            .inner
            .lock()
            .entries
            .range(range)
            .map(|(_, entry)| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> StorageResult<LogState<TypeConfig>> {
        let inner = self.inner.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|e| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<RaftNodeId>) -> StorageResult<()> {
        let bytes = serde_json::to_vec(vote).expect("vote serialises");
        write_atomically(&self.dir.join("vote.json"), &bytes)
            .map_err(|e| StorageIOError::write_vote(io_error(e)))?;
        self.inner.lock().vote = Some(*vote);
        Ok(())
    }

    async fn read_vote(&mut self) -> StorageResult<Option<Vote<RaftNodeId>>> {
        Ok(self.inner.lock().vote)
    }

    async fn save_committed(&mut self, committed: Option<LogId<RaftNodeId>>) -> StorageResult<()> {
        let bytes = serde_json::to_vec(&committed).expect("log id serialises");
        write_atomically(&self.dir.join("committed.json"), &bytes)
            .map_err(|e| StorageIOError::write(io_error(e)))?;
        self.inner.lock().committed = committed;
        Ok(())
    }

    async fn read_committed(&mut self) -> StorageResult<Option<LogId<RaftNodeId>>> {
        Ok(self.inner.lock().committed)
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> StorageResult<()>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let records: Vec<LogRecord> = entries
            .into_iter()
            .map(|entry| LogRecord::Append(Box::new(entry)))
            .collect();
        let result = self.persist(records);
        let failed = result.as_ref().err().map(|e| e.to_string());
        callback.log_io_completed(result);
        match failed {
            None => Ok(()),
            Some(message) => Err(StorageIOError::write_logs(AnyError::error(message)).into()),
        }
    }

    async fn truncate(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        self.persist(vec![LogRecord::Truncate(log_id.index)])
            .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }

    async fn purge(&mut self, log_id: LogId<RaftNodeId>) -> StorageResult<()> {
        self.persist(vec![LogRecord::Purge(log_id)])
            .map_err(|e| StorageIOError::write_logs(io_error(e)).into())
    }
}

/// A snapshot as stored in `snapshot.json` and sent to followers.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<RaftNodeId, RaftPeer>,
    state: ClusterState,
}

/// Applies committed commands to cluster state.
pub struct StateMachine {
    dir: PathBuf,
    catalog: Arc<Catalog>,
    /// The authoritative state of this voter; the catalog may briefly hold a newer version
    /// published by the leader, never an older one.
    state: ClusterState,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, RaftPeer>,
}

impl StateMachine {
    /// Restores the state machine from `<dir>/snapshot.json`, if any, and installs it.
    pub fn open(dir: &Path, catalog: Arc<Catalog>) -> std::io::Result<StateMachine> {
        std::fs::create_dir_all(dir)?;
        let mut machine = StateMachine {
            dir: dir.to_path_buf(),
            state: (*catalog.state()).clone(),
            catalog,
            last_applied: None,
            membership: StoredMembership::default(),
        };
        if let Some((stored, _)) = read_snapshot(dir)? {
            machine.restore(stored);
        }
        Ok(machine)
    }

    fn restore(&mut self, stored: StoredSnapshot) {
        self.last_applied = stored.meta.last_log_id;
        self.membership = stored.meta.last_membership.clone();
        self.state = stored.state;
        self.catalog.replace(Arc::new(self.state.clone()));
    }
}

/// Reads `<dir>/snapshot.json`: the snapshot last built or installed, and its bytes.
fn read_snapshot(dir: &Path) -> std::io::Result<Option<(StoredSnapshot, Vec<u8>)>> {
    let path = dir.join("snapshot.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let stored = serde_json::from_slice(&bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("raft snapshot {} is corrupt: {e}", path.display()),
        )
    })?;
    Ok(Some((stored, bytes)))
}

/// Builds a snapshot from a copy of the state taken when the build was asked for.
pub struct SnapshotBuilder {
    dir: PathBuf,
    state: ClusterState,
    last_applied: Option<LogId<RaftNodeId>>,
    membership: StoredMembership<RaftNodeId, RaftPeer>,
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> StorageResult<Snapshot<TypeConfig>> {
        let snapshot_id = match self.last_applied {
            Some(id) => format!("{}-{}-{}", id.leader_id, id.index, self.state.version),
            None => format!("empty-{}", self.state.version),
        };
        let meta = SnapshotMeta {
            last_log_id: self.last_applied,
            last_membership: self.membership.clone(),
            snapshot_id,
        };
        let stored = StoredSnapshot {
            meta: meta.clone(),
            state: self.state.clone(),
        };
        let bytes = serde_json::to_vec(&stored).expect("snapshot serialises");
        write_atomically(&self.dir.join("snapshot.json"), &bytes)
            .map_err(|e| StorageIOError::write_snapshot(None, io_error(e)))?;
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> StorageResult<(
        Option<LogId<RaftNodeId>>,
        StoredMembership<RaftNodeId, RaftPeer>,
    )> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> StorageResult<Vec<CommandResponse>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        let mut changed = false;
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match entry.payload {
                EntryPayload::Blank => Ok(false),
                EntryPayload::Membership(membership) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), membership);
                    Ok(false)
                }
                EntryPayload::Normal(command) => {
                    let mut next = self.state.clone();
                    let outcome = apply(&mut next, &command);
                    if matches!(outcome, Ok(true)) {
                        next.version = self.state.version + 1;
                        self.state = next;
                        changed = true;
                    }
                    outcome
                }
            };
            responses.push(CommandResponse {
                version: self.state.version,
                outcome,
            });
        }
        if changed {
            self.catalog.install_applied(Arc::new(self.state.clone()));
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        SnapshotBuilder {
            dir: self.dir.clone(),
            state: self.state.clone(),
            last_applied: self.last_applied,
            membership: self.membership.clone(),
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> StorageResult<Box<Cursor<Vec<u8>>>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<RaftNodeId, RaftPeer>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> StorageResult<()> {
        let bytes = snapshot.into_inner();
        let mut stored: StoredSnapshot = serde_json::from_slice(&bytes)
            .map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_error(e)))?;
        stored.meta = meta.clone();
        let bytes = serde_json::to_vec(&stored).expect("snapshot serialises");
        write_atomically(&self.dir.join("snapshot.json"), &bytes)
            .map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_error(e)))?;
        self.restore(stored);
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> StorageResult<Option<Snapshot<TypeConfig>>> {
        let snapshot = read_snapshot(&self.dir)
            .map_err(|e| StorageIOError::read_snapshot(None, io_error(e)))?;
        Ok(snapshot.map(|(stored, bytes)| Snapshot {
            meta: stored.meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::CommittedLeaderId;

    fn entry(term: u64, index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(term, 1), index),
            payload: EntryPayload::Blank,
        }
    }

    fn indexes(store: &LogStore) -> Vec<(u64, u64)> {
        store
            .inner
            .lock()
            .entries
            .values()
            .map(|e| (e.log_id.leader_id.term, e.log_id.index))
            .collect()
    }

    #[test]
    fn log_survives_reopen_after_truncate_purge_and_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store
            .persist(
                (1..=6)
                    .map(|i| LogRecord::Append(Box::new(entry(1, i))))
                    .collect(),
            )
            .unwrap();
        // A new leader overwrites 5 and 6; a snapshot covers up to 2.
        store.persist(vec![LogRecord::Truncate(5)]).unwrap();
        store
            .persist(vec![LogRecord::Append(Box::new(entry(2, 5)))])
            .unwrap();
        store
            .persist(vec![LogRecord::Purge(entry(1, 2).log_id)])
            .unwrap();
        assert_eq!(indexes(&store), [(1, 3), (1, 4), (2, 5)]);
        drop(store);
        // A crash in the middle of the next append leaves half a line.
        let mut file = OpenOptions::new()
            .append(true)
            .open(dir.path().join("log.jsonl"))
            .unwrap();
        file.write_all(b"{\"Append\":{\"log_id\"").unwrap();
        drop(file);
        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&reopened), [(1, 3), (1, 4), (2, 5)]);
        assert_eq!(reopened.inner.lock().last_purged, Some(entry(1, 2).log_id));
    }

    #[test]
    fn many_purges_compact_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        for i in 1..=2000 {
            store
                .persist(vec![LogRecord::Append(Box::new(entry(1, i)))])
                .unwrap();
            if i % 100 == 0 {
                store
                    .persist(vec![LogRecord::Purge(entry(1, i - 10).log_id)])
                    .unwrap();
            }
        }
        let lines = std::fs::read_to_string(dir.path().join("log.jsonl"))
            .unwrap()
            .lines()
            .count();
        assert!(
            lines < 600,
            "the log file kept {lines} lines for 10 live entries"
        );
        drop(store);
        let reopened = LogStore::open(dir.path()).unwrap();
        assert_eq!(reopened.inner.lock().entries.len(), 10);
    }
}
