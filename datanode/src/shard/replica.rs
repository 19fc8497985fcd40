//! A shard copy's replication duties: applying the operations its primary forwards (in
//! sequence order, refusing older primary terms), and, on a primary, what a recovering copy
//! needs: a snapshot of the files of one commit and the translog operations after it.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use creek_proto::v1::{TranslogOp, WriteMode};

use super::{CommitPayload, Shard, Version};
use crate::error::{Error, Result};

/// The files of one commit of a primary, hard-linked aside for a recovery so that merges
/// and later commits cannot delete them while a copy fetches them. Removed when dropped;
/// while it lives, the primary keeps its translog generations.
pub struct RecoverySnapshot {
    /// Where the files are linked.
    pub dir: PathBuf,
    /// (name, size, CRC-32) of every file.
    pub files: Vec<(String, u64, u32)>,
    /// The highest sequence number the commit contains.
    pub commit_seq_no: u64,
    shard: Arc<Shard>,
}

impl Drop for RecoverySnapshot {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
        self.shard.translog_holds.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Shard {
    /// Applies one operation a primary of term `primary_term` wrote: refused from a term
    /// older than this copy knows (a deposed primary), and out of order (a gap means this
    /// copy missed an operation and must be recovered). An operation this copy already has
    /// is acknowledged again without being applied twice.
    pub fn apply_replicated(&self, op: &TranslogOp, primary_term: u64) -> Result<()> {
        let table = self.table();
        // The term is checked under the writer lock, as this copy's own writes read it
        // (state, then role): a copy promoted meanwhile either logged its first operation
        // of the new term before this one — then this one is refused as stale — or after it.
        // Checked before the lock, a promotion could slip in between, log its own operation
        // at this sequence number, and this one would pass as "already applied" while the
        // deposed primary acknowledged it.
        let mut state = self.state.lock();
        {
            let mut role = self.role.write();
            // A primary takes operations only from a newer primary (which deposes it); one of
            // the same term would be a second primary of that term.
            let stale = primary_term < role.primary_term
                || (role.primary && primary_term == role.primary_term);
            if stale {
                return Err(Error::StaleTerm {
                    shard_id: self.id,
                    got: primary_term,
                    current: role.primary_term,
                });
            }
            if role.primary {
                tracing::warn!(shard_id = %self.id, term = role.primary_term, newer = primary_term, "a newer primary wrote to this copy: demoted");
                role.primary = false;
                role.peers.clear();
            }
            role.primary_term = primary_term;
        }
        self.check_not_failed()?;
        if op.seq_no < state.next_seq_no {
            // Already applied, unless a newer primary assigned the same sequence numbers to
            // other operations (this copy had one its old primary never got acknowledged).
            if op.primary_term > state.last_term {
                return Err(Error::Diverged {
                    shard_id: self.id,
                    seq_no: op.seq_no,
                });
            }
            return Ok(());
        }
        if op.seq_no != state.next_seq_no {
            return Err(Error::OperationGap {
                shard_id: self.id,
                expected: state.next_seq_no,
                got: op.seq_no,
            });
        }
        // Checked before it is logged: an operation this copy could not replay must never
        // reach its translog.
        let mode = WriteMode::try_from(op.mode).map_err(|_| {
            Error::InvalidRequest(format!(
                "operation {} has unknown mode {}",
                op.seq_no, op.mode
            ))
        })?;
        let term = op.primary_term.max(1);
        let mut changes: Vec<(String, Option<Version>)> = Vec::new();
        let mut decoded = None;
        if matches!(mode, WriteMode::Delete | WriteMode::DeleteIfVersion) {
            changes.extend(op.delete_ids.iter().map(|id| (id.clone(), None)));
        } else if !op.rows_ipc.is_empty() {
            let batch = creek_proto::ipc::batch_from_ipc(&op.rows_ipc)?;
            let ids = super::document::id_column(&batch)?;
            for row in 0..batch.num_rows() {
                changes.push((
                    ids.value(row).to_string(),
                    Some(Version {
                        seq_no: op.seq_no + row as u64,
                        primary_term: term,
                    }),
                ));
            }
            decoded = Some(batch);
        }
        self.or_fail(state.translog.append(op, table.fsync_per_request()))?;
        state.live.extend(changes);
        let applied = self.apply_to_index(&mut state, op, true, decoded.as_ref());
        self.or_fail(applied)?;
        self.dirty.store(true, Ordering::Release);
        self.recent.lock().record(op);
        self.refresh_if_many_live(&mut state)
    }

    /// The next sequence number this copy expects.
    pub fn next_seq_no(&self) -> u64 {
        self.state.lock().next_seq_no
    }

    /// Commits and links the commit's files into a directory of their own for a recovery;
    /// the translog keeps its generations until the snapshot is dropped.
    pub fn recovery_snapshot(self: &Arc<Self>, recovery_id: &str) -> Result<RecoverySnapshot> {
        let io_err = |source| Error::Io {
            shard_id: self.id,
            source,
        };
        self.translog_holds.fetch_add(1, Ordering::AcqRel);
        let dir = self.dir.join("recoveries").join(recovery_id);
        let snapshot = RecoverySnapshot {
            dir: dir.clone(),
            files: Vec::new(),
            commit_seq_no: 0,
            shard: self.clone(),
        };
        // A commit, not a refresh: building a copy must not change what this one shows.
        {
            let mut state = self.state.lock();
            self.check_not_failed()?;
            let committed = self.commit_without_reload(&mut state);
            self.or_fail(committed)?;
        }
        let index_dir = self.dir.join("index");
        // A merge may replace segments (and delete their files) at any moment: list and link
        // one meta's files, and start over if one vanished before it was linked.
        let mut attempt = 0;
        let (names, commit_seq_no) = loop {
            attempt += 1;
            match self.link_commit(&index_dir, &dir) {
                Err(Error::Io { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound && attempt < 5 => {}
                other => break other?,
            }
        };
        let mut snapshot = snapshot;
        snapshot.commit_seq_no = commit_seq_no;
        for name in names {
            let (size, crc) = file_checksum(&dir.join(&name)).map_err(io_err)?;
            snapshot.files.push((name, size, crc));
        }
        Ok(snapshot)
    }

    /// Links the files of the index's current meta into `dir` and writes that meta (and the
    /// managed-file list) there; returns the file names and the meta's highest sequence
    /// number.
    fn link_commit(&self, index_dir: &Path, dir: &Path) -> Result<(Vec<String>, u64)> {
        let io_err = |source| Error::Io {
            shard_id: self.id,
            source,
        };
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).map_err(io_err)?;
        let metas = self.index.load_metas().map_err(|source| Error::Index {
            shard_id: self.id,
            source,
        })?;
        let commit_seq_no = metas
            .payload
            .as_deref()
            .and_then(|payload| serde_json::from_str::<CommitPayload>(payload).ok())
            .unwrap_or_default()
            .max_seq_no;
        let mut names: Vec<String> = Vec::new();
        for segment in &metas.segments {
            for name in super::lazy_sync::segment_files(segment) {
                let name = name.to_string_lossy().to_string();
                if index_dir.join(&name).exists() {
                    names.push(name);
                }
            }
        }
        names.sort();
        names.dedup();
        for name in &names {
            std::fs::hard_link(index_dir.join(name), dir.join(name)).map_err(io_err)?;
        }
        // The meta that was listed, not whatever meta.json says by now.
        let meta = serde_json::to_vec_pretty(&metas).map_err(|e| Error::ShardCorrupted {
            shard_id: self.id,
            detail: format!("the index meta does not serialise: {e}"),
        })?;
        std::fs::write(dir.join("meta.json"), meta).map_err(io_err)?;
        let mut managed: Vec<String> = names.clone();
        managed.push("meta.json".to_string());
        let managed = serde_json::to_vec(&managed).expect("names serialise");
        std::fs::write(dir.join(".managed.json"), managed).map_err(io_err)?;
        names.push("meta.json".to_string());
        names.push(".managed.json".to_string());
        Ok((names, commit_seq_no))
    }

    /// Every translog operation above `after`, for the last phase of a recovery.
    pub fn operations_after(&self, after: u64) -> Result<Vec<TranslogOp>> {
        let mut state = self.state.lock();
        let ops = state.translog.operations_after(after);
        self.or_fail(ops)
    }

    /// Whether this primary forwards its writes to copy `allocation_id`.
    pub fn forwards_to(&self, allocation_id: &str) -> bool {
        self.replication_targets()
            .iter()
            .any(|peer| peer.allocation_id == allocation_id)
    }

    /// Starts forwarding writes to a recovering copy (its last recovery phase began).
    pub fn track(&self, peer: super::Peer) {
        let mut tracking = self.tracking.lock();
        if !tracking
            .iter()
            .any(|p| p.allocation_id == peer.allocation_id)
        {
            tracking.push(peer);
        }
    }
}

/// The size and CRC-32 of a file.
pub fn file_checksum(path: &Path) -> std::io::Result<(u64, u32)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((size, hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use creek_common::schema::{ColumnDef, TableSchema, ID_COLUMN};
    use creek_common::types::ColumnType;
    use creek_common::{ShardId, TableId};
    use creek_proto::v1::{TranslogOp, WriteMode};
    use datafusion::arrow::array::{Int32Array, StringArray};
    use datafusion::arrow::datatypes::{DataType, Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;

    use std::time::Duration;

    use crate::error::Error;
    use crate::shard::copy::CopyRole;
    use crate::shard::Shard;

    fn table() -> Arc<TableSchema> {
        Arc::new(TableSchema {
            id: TableId(1),
            schema_name: "doc".into(),
            name: "t".into(),
            columns: vec![ColumnDef {
                name: "a".into(),
                column_type: ColumnType::Integer,
                not_null: false,
                default_expr: None,
                generated: None,
                index: Default::default(),
            }],
            primary_key: vec!["a".into()],
            clustered_by: None,
            num_shards: 1,
            settings: Default::default(),
            indexes: Vec::new(),
            fulltext: Vec::new(),
            partitioned_by: Vec::new(),
            partitions: Vec::new(),
            version: 1,
        })
    }

    fn copy(dir: &std::path::Path, name: &str, primary: bool, term: u64) -> Shard {
        let id = ShardId {
            table: TableId(1),
            shard: 0,
        };
        let shard = Shard::open(id, &dir.join(name), table()).unwrap();
        shard.set_role(CopyRole {
            allocation_id: name.into(),
            primary,
            primary_term: term,
            peers: Vec::new(),
        });
        shard
    }

    fn row(key: i32) -> Vec<u8> {
        rows(key..key + 1)
    }

    /// A write batch of the rows with `keys`, as IPC.
    fn rows(keys: std::ops::Range<i32>) -> Vec<u8> {
        let schema = Arc::new(Schema::new(vec![
            Field::new(ID_COLUMN, DataType::Utf8, false),
            Field::new("a", DataType::Int32, true),
        ]));
        let batch = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from_iter_values(
                    keys.clone().map(|k| k.to_string()),
                )),
                Arc::new(Int32Array::from_iter_values(keys)),
            ],
        )
        .unwrap();
        creek_proto::ipc::batch_to_ipc(&batch).unwrap()
    }

    /// Makes `shard` look unsearched for the whole idle period, then lets a 1 ms refresh
    /// interval pass.
    fn leave_unsearched(shard: &Shard) {
        *shard.last_search.lock() = std::time::Instant::now()
            .checked_sub(crate::shard::SEARCH_IDLE_AFTER)
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
    }

    /// The old primary's last write reached one replica only and was never acknowledged; the
    /// other replica is promoted. Its term start finds the first replica diverged at once,
    /// without waiting for a new write, and catches up a replica that is merely behind.
    #[test]
    fn a_term_start_finds_a_replica_with_an_unacknowledged_write() {
        let dir = tempfile::tempdir().unwrap();
        let old_primary = copy(dir.path(), "p", true, 1);
        let ahead = copy(dir.path(), "r1", false, 1);
        let promoted = copy(dir.path(), "r2", false, 1);
        let first = old_primary
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap()
            .op
            .unwrap();
        for replica in [&ahead, &promoted] {
            replica.apply_replicated(&first, 1).unwrap();
        }
        let unacknowledged = old_primary
            .write(WriteMode::Insert, &row(2), &[], &[], "op-2")
            .unwrap()
            .op
            .unwrap();
        ahead.apply_replicated(&unacknowledged, 1).unwrap();

        promoted.set_role(CopyRole {
            allocation_id: "r2".into(),
            primary: true,
            primary_term: 2,
            peers: Vec::new(),
        });
        let start = promoted.start_primary_term().unwrap().unwrap();
        assert_eq!(
            (start.seq_no, start.primary_term),
            (unacknowledged.seq_no, 2),
            "the number the old primary's lost write had, under the new term"
        );
        assert!(matches!(
            ahead.apply_replicated(&start, 2),
            Err(Error::Diverged { seq_no, .. }) if seq_no == start.seq_no
        ));
        // A copy that only lacks the term start applies it, and the next write follows.
        let behind = copy(dir.path(), "r3", false, 1);
        behind.apply_replicated(&first, 1).unwrap();
        behind.apply_replicated(&start, 2).unwrap();
        let next = promoted
            .write(WriteMode::Insert, &row(3), &[], &[], "op-3")
            .unwrap()
            .op
            .unwrap();
        assert_eq!(next.seq_no, start.seq_no + 1);
        behind.apply_replicated(&next, 2).unwrap();
        assert!(copy(dir.path(), "x", false, 1)
            .start_primary_term()
            .unwrap()
            .is_none());
    }

    /// A forwarded operation that waits for the writer lock while its copy is promoted is
    /// refused as stale once it gets the lock, even if the promotion's own first operation
    /// took that sequence number meanwhile: passing it as "already applied" would let the
    /// deposed primary acknowledge a write no copy kept.
    #[test]
    fn an_operation_that_waited_out_a_promotion_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let old_primary = copy(dir.path(), "p", true, 1);
        let heir = Arc::new(copy(dir.path(), "r", false, 1));
        let op = old_primary
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap()
            .op
            .unwrap();
        let writer_lock = heir.state.lock();
        let applying = {
            let (heir, op) = (heir.clone(), op.clone());
            std::thread::spawn(move || heir.apply_replicated(&op, 1))
        };
        // Let the forwarded operation reach the lock before the promotion lands.
        std::thread::sleep(Duration::from_millis(100));
        heir.set_role(CopyRole {
            allocation_id: "r".into(),
            primary: true,
            primary_term: 2,
            peers: Vec::new(),
        });
        drop(writer_lock);
        let start = heir.start_primary_term().unwrap();
        let applied = applying.join().unwrap();
        assert!(
            matches!(
                applied,
                Err(Error::StaleTerm {
                    got: 1,
                    current: 2,
                    ..
                })
            ),
            "{applied:?}"
        );
        let start = start.expect("the heir is primary");
        assert_eq!((start.seq_no, start.primary_term), (op.seq_no, 2));
    }

    /// A restarted copy knows the terms of the operations it replayed from its translog, so
    /// a deposed primary's forwarded operation is refused before any cluster state arrives.
    #[test]
    fn a_replayed_term_is_known_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let op = {
            let primary = copy(dir.path(), "p", true, 3);
            primary
                .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
                .unwrap()
                .op
                .unwrap()
        };
        let id = ShardId {
            table: TableId(1),
            shard: 0,
        };
        let reopened = Shard::open(id, &dir.path().join("p"), table()).unwrap();
        assert_eq!(reopened.primary_term(), 3);
        let stale = TranslogOp {
            seq_no: op.seq_no + 1,
            primary_term: 2,
            ..(*op).clone()
        };
        assert!(matches!(
            reopened.apply_replicated(&stale, 2),
            Err(Error::StaleTerm {
                got: 2,
                current: 3,
                ..
            })
        ));
    }

    /// A copy demoted after its caller checked that it was primary writes nothing, rather
    /// than an operation under its successor's term.
    #[test]
    fn a_demoted_copy_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let copy = copy(dir.path(), "p", true, 1);
        let before = copy.next_seq_no();
        copy.set_role(CopyRole {
            allocation_id: "p".into(),
            primary: false,
            primary_term: 2,
            peers: Vec::new(),
        });
        assert!(matches!(
            copy.write(WriteMode::Insert, &row(1), &[], &[], "op-1"),
            Err(Error::NotPrimary { .. })
        ));
        assert_eq!(copy.next_seq_no(), before);
    }

    /// A retry answered from what a recovery taught this copy still goes through a
    /// replication round (an empty operation of its term), never straight back.
    #[test]
    fn a_learnt_answer_is_given_after_a_replication_barrier() {
        let dir = tempfile::tempdir().unwrap();
        let primary = copy(dir.path(), "p", true, 1);
        let first = primary
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap();
        let recovered = copy(dir.path(), "c", false, 1);
        recovered.remember_answers(&primary.recent_answers());
        recovered
            .apply_replicated(first.op.as_ref().unwrap(), 1)
            .unwrap();
        recovered.set_role(CopyRole {
            allocation_id: "c".into(),
            primary: true,
            primary_term: 2,
            peers: Vec::new(),
        });
        let retry = recovered
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap();
        assert!(retry.repeated);
        assert_eq!(
            retry.statuses, first.statuses,
            "the first answer, not a duplicate"
        );
        let barrier = retry.op.unwrap();
        assert!(barrier.rows_ipc.is_empty() && barrier.operation_id.is_empty());
        assert_eq!(barrier.primary_term, 2);
    }

    /// A read that must see a write: the primary refreshes for it; a replica that has not
    /// applied it yet fails the read after the wait instead of answering without it, and
    /// serves it once the operation arrives.
    #[test]
    fn a_read_waits_for_the_sessions_writes_to_be_visible() {
        let dir = tempfile::tempdir().unwrap();
        let primary = copy(dir.path(), "p", true, 1);
        let replica = copy(dir.path(), "r", false, 1);
        let outcome = primary
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap();
        assert_eq!(primary.searcher().num_docs(), 0, "not refreshed yet");
        primary
            .ensure_visible(outcome.max_seq_no, Duration::ZERO)
            .unwrap();
        assert_eq!(primary.searcher().num_docs(), 1);

        let started = std::time::Instant::now();
        assert!(matches!(
            replica.ensure_visible(outcome.max_seq_no, Duration::from_millis(50)),
            Err(Error::NotCaughtUp { applied: 0, wanted, .. }) if wanted == outcome.max_seq_no
        ));
        assert!(started.elapsed() >= Duration::from_millis(40), "it waited");
        replica.apply_replicated(&outcome.op.unwrap(), 1).unwrap();
        replica
            .ensure_visible(outcome.max_seq_no, Duration::ZERO)
            .unwrap();
        assert_eq!(replica.searcher().num_docs(), 1);
        // Nothing left to show: no refresh (and no wait) at all.
        replica.ensure_visible(0, Duration::ZERO).unwrap();
    }

    /// A copy nobody searched lately skips its periodic refreshes; its next search refreshes
    /// first and so sees every applied write, and periodic refreshes resume after it.
    #[test]
    fn a_search_idle_copy_refreshes_on_its_next_search() {
        let dir = tempfile::tempdir().unwrap();
        let shard = copy(dir.path(), "p", true, 1);
        shard
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap();
        leave_unsearched(&shard);
        shard.refresh_if_due(1).unwrap();
        assert_eq!(shard.searcher().num_docs(), 0, "an idle copy skips it");
        shard.ensure_visible(0, Duration::ZERO).unwrap();
        assert_eq!(
            shard.searcher().num_docs(),
            1,
            "a search refreshes an idle copy"
        );
        shard
            .write(WriteMode::Insert, &row(2), &[], &[], "op-2")
            .unwrap();
        std::thread::sleep(Duration::from_millis(5));
        shard.refresh_if_due(1).unwrap();
        assert_eq!(shard.searcher().num_docs(), 2, "searched lately: refreshed");

        // An interval set explicitly is kept to however long nobody searched.
        let mut explicit = (*table()).clone();
        explicit
            .settings
            .insert("refresh_interval".into(), "1".into());
        shard.set_table(Arc::new(explicit));
        shard
            .write(WriteMode::Insert, &row(3), &[], &[], "op-3")
            .unwrap();
        leave_unsearched(&shard);
        shard.refresh_if_due(1).unwrap();
        assert_eq!(
            shard.searcher().num_docs(),
            3,
            "an explicit interval: refreshed"
        );
    }

    /// Writes into a copy that never refreshes on its own still bound the ids it tracks as
    /// unrefreshed: past the limit the write refreshes.
    #[test]
    fn unrefreshed_ids_are_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let shard = copy(dir.path(), "p", true, 1);
        let limit = crate::shard::LIVE_IDS_BEFORE_REFRESH as i32;
        shard
            .write(WriteMode::Insert, &rows(0..limit), &[], &[], "op-1")
            .unwrap();
        assert_eq!(shard.searcher().num_docs(), limit as u64);
        assert!(shard.state.lock().live.is_empty());
    }

    /// Building a replica commits the primary's applied writes for the copy but leaves what
    /// the primary shows alone: another session still waits for the primary's refresh.
    #[test]
    fn a_recovery_snapshot_commits_without_showing_the_writes() {
        let dir = tempfile::tempdir().unwrap();
        let shard = Arc::new(copy(dir.path(), "p", true, 1));
        let outcome = shard
            .write(WriteMode::Insert, &rows(0..3), &[], &[], "op-1")
            .unwrap();
        let snapshot = shard.recovery_snapshot("r1").unwrap();
        assert_eq!(snapshot.commit_seq_no, outcome.max_seq_no);
        assert!(snapshot.files.iter().any(|(name, ..)| name == "meta.json"));
        assert_eq!(shard.searcher().num_docs(), 0, "the primary shows no more");
        shard.refresh().unwrap();
        assert_eq!(
            shard.searcher().num_docs(),
            3,
            "still unrefreshed, so refreshed now"
        );
    }

    /// A closed copy (its directory may be taken over by a new copy) refuses to write,
    /// refresh or flush; searchers handed out before keep reading.
    #[test]
    fn a_closed_copy_writes_refreshes_and_flushes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let shard = copy(dir.path(), "p", true, 1);
        shard
            .write(WriteMode::Insert, &row(1), &[], &[], "op-1")
            .unwrap();
        shard.refresh().unwrap();
        let searcher = shard.searcher();
        shard.close();
        assert!(matches!(
            shard.write(WriteMode::Insert, &row(2), &[], &[], "op-2"),
            Err(Error::ShardNotFound { .. })
        ));
        assert!(matches!(shard.refresh(), Err(Error::ShardNotFound { .. })));
        assert!(matches!(shard.flush(), Err(Error::ShardNotFound { .. })));
        assert_eq!(searcher.num_docs(), 1);
    }
}
