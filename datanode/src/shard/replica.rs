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
        {
            let mut role = self.role.write();
            if primary_term < role.primary_term {
                return Err(Error::StaleTerm {
                    shard_id: self.id,
                    got: primary_term,
                    current: role.primary_term,
                });
            }
            role.primary_term = primary_term;
        }
        let table = self.table();
        let mut state = self.state.lock();
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
        self.or_fail(state.translog.append(op, table.fsync_per_request()))?;
        let mode = WriteMode::try_from(op.mode).unwrap_or(WriteMode::Upsert);
        let term = op.primary_term.max(1);
        if matches!(mode, WriteMode::Delete | WriteMode::DeleteIfVersion) {
            for id in &op.delete_ids {
                state.live.insert(id.clone(), None);
            }
        } else if !op.rows_ipc.is_empty() {
            let batch = creek_proto::ipc::batch_from_ipc(&op.rows_ipc)?;
            let ids = super::document::id_column(&batch)?;
            for row in 0..batch.num_rows() {
                state.live.insert(
                    ids.value(row).to_string(),
                    Some(Version {
                        seq_no: op.seq_no + row as u64,
                        primary_term: term,
                    }),
                );
            }
        }
        let applied = self.apply_to_index(&mut state, op, true);
        self.or_fail(applied)?;
        self.dirty.store(true, Ordering::Release);
        self.recent.lock().record(op);
        Ok(())
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
        self.dirty.store(true, Ordering::Release);
        self.refresh()?;
        let index_dir = self.dir.join("index");
        let (names, commit_seq_no) = {
            // Commits happen under the state lock: the files listed are one commit's.
            let _state = self.state.lock();
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
            // A segment's files are named by its id (plus an extension per component).
            let segment_ids: Vec<String> = metas
                .segments
                .iter()
                .map(|segment| segment.id().uuid_string())
                .collect();
            let mut names: Vec<String> = std::fs::read_dir(&index_dir)
                .map_err(io_err)?
                .flatten()
                .filter_map(|entry| entry.file_name().to_str().map(str::to_string))
                .filter(|name| segment_ids.iter().any(|id| name.starts_with(id.as_str())))
                .collect();
            names.push("meta.json".to_string());
            names.push(".managed.json".to_string());
            names.sort();
            names.dedup();
            std::fs::create_dir_all(&dir).map_err(io_err)?;
            for name in &names {
                std::fs::hard_link(index_dir.join(name), dir.join(name)).map_err(io_err)?;
            }
            (names, commit_seq_no)
        };
        let mut snapshot = snapshot;
        snapshot.commit_seq_no = commit_seq_no;
        for name in names {
            let (size, crc) = file_checksum(&dir.join(&name)).map_err(io_err)?;
            snapshot.files.push((name, size, crc));
        }
        Ok(snapshot)
    }

    /// Every translog operation above `after`, for the last phase of a recovery.
    pub fn operations_after(&self, after: u64) -> Result<Vec<TranslogOp>> {
        let mut state = self.state.lock();
        let ops = state.translog.operations_after(after);
        self.or_fail(ops)
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
