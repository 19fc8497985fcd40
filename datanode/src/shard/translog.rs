//! The write-ahead log of one shard: every operation is appended (and, by default, fsynced)
//! before it is applied to the index and acknowledged.
//!
//! Files are `translog-<generation>.log`; a record is `[len: u32 LE][crc32: u32 LE][payload]`
//! where the payload is a prost-encoded [`TranslogOp`]. A commit of the index records the highest
//! sequence number it contains, after which older generations are retired: moved to
//! `retained/retained-<generation>.log` and kept for [`RETAIN_AGE`] (at most [`RETAIN_BYTES`]
//! and [`RETAIN_FILES`]; the list is kept in memory, so a roll costs a rename), so a
//! copy that restarts still knows the operation ids (and answers) of writes a coordinator may
//! be retrying, and a lagging copy's gap can be filled from further back. On open, records
//! after that checkpoint are replayed. A torn record at the very end of the last file (a crash
//! during a write that was never acknowledged) is cut off; a bad checksum anywhere else in a
//! live generation is corruption and fails the open with an error naming the shard (a
//! damaged retained generation, which no replay needs, is only skipped).

use std::fs::{self, File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use creek_common::ShardId;
use creek_proto::v1::TranslogOp;
use prost::Message;

use crate::error::{Error, Result};

const HEADER_LEN: usize = 8;
/// How long generations an index commit covers are kept (they serve answers to retried
/// writes, which coordinators send for up to 30 s, and gap fills).
const RETAIN_AGE: std::time::Duration = std::time::Duration::from_secs(60);
/// At most this many bytes of retained generations, the newest kept first.
const RETAIN_BYTES: u64 = 64 << 20;
/// At most this many retained generations (a refresh per write rolls a generation each time).
const RETAIN_FILES: usize = 1024;
/// A single record larger than this is treated as corruption rather than allocated.
const MAX_RECORD_LEN: usize = 1 << 30;

/// An open translog, appending to its newest generation.
pub struct Translog {
    shard_id: ShardId,
    dir: PathBuf,
    generation: u64,
    writer: BufWriter<File>,
    /// Retained generations, oldest first: (generation, bytes, when retired).
    retained: std::collections::VecDeque<(u64, u64, std::time::SystemTime)>,
    retained_bytes: u64,
}

impl Translog {
    /// Opens the translog in `dir`, returning it with every record whose `seq_no` is greater than
    /// `checkpoint` (to replay) and the records up to it that retained or live generations still
    /// hold (already in the index: only their answers matter), each in log order.
    pub fn open(
        shard_id: ShardId,
        dir: &Path,
        checkpoint: u64,
    ) -> Result<(Translog, Vec<TranslogOp>, Vec<TranslogOp>)> {
        let io_err = |source| Error::Io { shard_id, source };
        fs::create_dir_all(dir).map_err(io_err)?;
        let mut generations = list_generations(dir).map_err(io_err)?;
        generations.sort_unstable();
        let mut pending = Vec::new();
        let mut covered = read_retained(shard_id, dir);
        let last = generations.last().copied();
        for generation in &generations {
            let path = generation_path(dir, *generation);
            let is_last = Some(*generation) == last;
            let (ops, valid_len) = read_generation(shard_id, &path, is_last)?;
            if is_last {
                // Cut a torn tail so the file is well-formed once it is no longer the last.
                let file = OpenOptions::new().write(true).open(&path).map_err(io_err)?;
                if file.metadata().map_err(io_err)?.len() > valid_len as u64 {
                    file.set_len(valid_len as u64).map_err(io_err)?;
                    file.sync_all().map_err(io_err)?;
                }
            }
            let (after, before): (Vec<_>, Vec<_>) =
                ops.into_iter().partition(|op| op.seq_no > checkpoint);
            pending.extend(after);
            covered.extend(before);
        }
        let generation = last.map_or(1, |g| g + 1);
        let writer = open_generation(dir, generation).map_err(io_err)?;
        sync_dir(dir).map_err(io_err)?;
        let mut retained_generations =
            list_files(&dir.join(RETAINED_DIR), "retained-").unwrap_or_default();
        retained_generations.sort_unstable();
        let retained: std::collections::VecDeque<_> = retained_generations
            .into_iter()
            .filter_map(|g| {
                let meta = fs::metadata(retained_path(dir, g)).ok()?;
                Some((g, meta.len(), meta.modified().ok()?))
            })
            .collect();
        let retained_bytes = retained.iter().map(|(_, bytes, _)| bytes).sum();
        Ok((
            Translog {
                shard_id,
                dir: dir.to_path_buf(),
                generation,
                writer,
                retained,
                retained_bytes,
            },
            pending,
            covered,
        ))
    }

    /// Appends one operation; with `fsync` it is on disk when this returns.
    pub fn append(&mut self, op: &TranslogOp, fsync: bool) -> Result<()> {
        let payload = op.encode_to_vec();
        let mut header = [0u8; HEADER_LEN];
        header[..4].copy_from_slice(&(payload.len() as u32).to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        let shard_id = self.shard_id;
        let io_err = |source| Error::Io { shard_id, source };
        self.writer.write_all(&header).map_err(io_err)?;
        self.writer.write_all(&payload).map_err(io_err)?;
        self.writer.flush().map_err(io_err)?;
        if fsync {
            self.writer.get_ref().sync_data().map_err(io_err)?;
        }
        Ok(())
    }

    /// Forces every appended record to disk.
    pub fn sync(&mut self) -> Result<()> {
        let shard_id = self.shard_id;
        self.writer
            .flush()
            .and_then(|_| self.writer.get_ref().sync_data())
            .map_err(|source| Error::Io { shard_id, source })
    }

    /// Starts a new generation and, with `delete_old`, deletes the older ones. Called right
    /// after an index commit that contains every operation appended so far; a recovery that
    /// still reads the operations keeps them (`delete_old` false), and the next roll deletes.
    pub fn roll_after_commit(&mut self, delete_old: bool) -> Result<()> {
        let shard_id = self.shard_id;
        let io_err = |source| Error::Io { shard_id, source };
        let next = self.generation + 1;
        self.writer = open_generation(&self.dir, next).map_err(io_err)?;
        sync_dir(&self.dir).map_err(io_err)?;
        if delete_old {
            let mut old = list_generations(&self.dir).map_err(io_err)?;
            old.retain(|g| *g < next);
            old.sort_unstable();
            if !old.is_empty() {
                fs::create_dir_all(self.dir.join(RETAINED_DIR)).map_err(io_err)?;
            }
            for generation in old {
                let path = generation_path(&self.dir, generation);
                let bytes = fs::metadata(&path).map_err(io_err)?.len();
                fs::rename(&path, retained_path(&self.dir, generation)).map_err(io_err)?;
                self.retained
                    .push_back((generation, bytes, std::time::SystemTime::now()));
                self.retained_bytes += bytes;
            }
            self.prune_retained().map_err(io_err)?;
        }
        self.generation = next;
        Ok(())
    }

    /// Deletes the oldest retained generations while one is older than [`RETAIN_AGE`] or
    /// they exceed [`RETAIN_BYTES`] or [`RETAIN_FILES`].
    fn prune_retained(&mut self) -> std::io::Result<()> {
        while let Some(&(generation, bytes, retired)) = self.retained.front() {
            let old = retired.elapsed().is_ok_and(|age| age > RETAIN_AGE);
            // The newest one stays its full age whatever its size: a flush retires a whole
            // flush threshold's worth of log at once (64 MiB by default), and the answers of
            // retries right after it are in there.
            let newest = self.retained.len() == 1;
            if !old
                && (newest
                    || (self.retained_bytes <= RETAIN_BYTES && self.retained.len() <= RETAIN_FILES))
            {
                break;
            }
            match fs::remove_file(retained_path(&self.dir, generation)) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            self.retained.pop_front();
            self.retained_bytes -= bytes;
        }
        Ok(())
    }

    /// Returns every operation on disk with a sequence number above `after`, in log order
    /// (for a recovering copy). Flushes what is buffered first.
    pub fn operations_after(&mut self, after: u64) -> Result<Vec<TranslogOp>> {
        self.sync()?;
        let shard_id = self.shard_id;
        let mut generations =
            list_generations(&self.dir).map_err(|source| Error::Io { shard_id, source })?;
        generations.sort_unstable();
        let mut ops: Vec<TranslogOp> = read_retained(shard_id, &self.dir)
            .into_iter()
            .filter(|op| op.seq_no > after)
            .collect();
        for generation in generations {
            let path = generation_path(&self.dir, generation);
            let (generation_ops, _) = read_generation(shard_id, &path, true)?;
            ops.extend(generation_ops.into_iter().filter(|op| op.seq_no > after));
        }
        ops.sort_by_key(|op| op.seq_no);
        ops.dedup_by_key(|op| op.seq_no);
        Ok(ops)
    }

    /// Returns the bytes the translog holds on disk (retained generations included).
    pub fn size_bytes(&self) -> u64 {
        let live = list_generations(&self.dir)
            .unwrap_or_default()
            .into_iter()
            .map(|g| generation_path(&self.dir, g));
        live.filter_map(|path| fs::metadata(path).ok())
            .map(|meta| meta.len())
            .sum::<u64>()
            + self.retained_bytes
    }
}

fn generation_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("translog-{generation}.log"))
}

/// The subdirectory retained generations live in (so listing the live ones stays cheap).
const RETAINED_DIR: &str = "retained";

fn retained_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(RETAINED_DIR)
        .join(format!("retained-{generation}.log"))
}

/// The operations of every retained generation younger than [`RETAIN_AGE`], oldest first
/// (older ones, say after a long downtime, serve nobody and are not read); a damaged one is
/// skipped (no replay needs it).
fn read_retained(shard_id: ShardId, dir: &Path) -> Vec<TranslogOp> {
    let mut generations = list_files(&dir.join(RETAINED_DIR), "retained-").unwrap_or_default();
    generations.sort_unstable();
    let mut ops = Vec::new();
    for generation in generations {
        let path = retained_path(dir, generation);
        let fresh = fs::metadata(&path)
            .and_then(|meta| meta.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age <= RETAIN_AGE);
        if !fresh {
            continue;
        }
        match read_generation(shard_id, &path, true) {
            Ok((generation_ops, _)) => ops.extend(generation_ops),
            Err(error) => {
                tracing::warn!(%shard_id, generation, %error, "skipping a damaged retained translog generation")
            }
        }
    }
    ops
}

fn list_generations(dir: &Path) -> std::io::Result<Vec<u64>> {
    list_files(dir, "translog-")
}

/// The generation numbers of the files `<prefix><generation>.log` in `dir`.
fn list_files(dir: &Path, prefix: &str) -> std::io::Result<Vec<u64>> {
    let mut generations = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(number) = name
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix(".log"))
        {
            if let Ok(generation) = number.parse() {
                generations.push(generation);
            }
        }
    }
    Ok(generations)
}

fn open_generation(dir: &Path, generation: u64) -> std::io::Result<BufWriter<File>> {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(generation_path(dir, generation))?;
    Ok(BufWriter::with_capacity(256 * 1024, file))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

fn read_generation(
    shard_id: ShardId,
    path: &Path,
    is_last: bool,
) -> Result<(Vec<TranslogOp>, usize)> {
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|mut file| file.read_to_end(&mut bytes))
        .map_err(|source| Error::Io { shard_id, source })?;
    let mut ops = Vec::new();
    let mut offset = 0usize;
    let corrupt = |detail: String| Error::ShardCorrupted { shard_id, detail };
    while offset < bytes.len() {
        let remaining = bytes.len() - offset;
        if remaining < HEADER_LEN {
            if is_last {
                break;
            }
            return Err(corrupt(format!(
                "{} ends inside a record header",
                path.display()
            )));
        }
        let len =
            u32::from_le_bytes(bytes[offset..offset + 4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(bytes[offset + 4..offset + 8].try_into().expect("4 bytes"));
        let end = offset + HEADER_LEN + len;
        if len > MAX_RECORD_LEN || end > bytes.len() {
            if is_last && len <= MAX_RECORD_LEN {
                break;
            }
            return Err(corrupt(format!(
                "{} has a record of {len} bytes at offset {offset} past the end of the file",
                path.display()
            )));
        }
        let payload = &bytes[offset + HEADER_LEN..end];
        if crc32fast::hash(payload) != crc {
            if is_last && end == bytes.len() {
                break;
            }
            return Err(corrupt(format!(
                "checksum mismatch in {} at offset {offset}",
                path.display()
            )));
        }
        let op = TranslogOp::decode(payload)
            .map_err(|e| corrupt(format!("undecodable record in {}: {e}", path.display())))?;
        ops.push(op);
        offset = end;
    }
    Ok((ops, offset))
}

#[cfg(test)]
mod tests {
    use super::*;
    use creek_common::TableId;

    fn shard() -> ShardId {
        ShardId {
            table: TableId(1),
            shard: 0,
        }
    }

    fn op(seq_no: u64) -> TranslogOp {
        TranslogOp {
            seq_no,
            mode: 0,
            rows_ipc: vec![1, 2, 3],
            delete_ids: vec![format!("id{seq_no}")],
            num_ops: 1,
            primary_term: 1,
            ..TranslogOp::default()
        }
    }

    #[test]
    fn replays_records_after_the_checkpoint() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, pending, _) = Translog::open(shard(), dir.path(), 0).unwrap();
            assert!(pending.is_empty());
            for seq_no in 1..=5 {
                log.append(&op(seq_no), true).unwrap();
            }
        }
        let (_, pending, _) = Translog::open(shard(), dir.path(), 3).unwrap();
        assert_eq!(
            pending.iter().map(|op| op.seq_no).collect::<Vec<_>>(),
            vec![4, 5]
        );
    }

    #[test]
    fn a_torn_tail_is_cut_but_inner_corruption_fails() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (mut log, _, _) = Translog::open(shard(), dir.path(), 0).unwrap();
            log.append(&op(1), true).unwrap();
            log.append(&op(2), true).unwrap();
        }
        let path = generation_path(dir.path(), 1);
        let mut bytes = fs::read(&path).unwrap();
        bytes.truncate(bytes.len() - 2);
        fs::write(&path, &bytes).unwrap();
        let (_, pending, _) = Translog::open(shard(), dir.path(), 0).unwrap();
        assert_eq!(pending.len(), 1);

        // Flip a payload byte of the first record of a non-last generation.
        bytes[HEADER_LEN] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        let error = Translog::open(shard(), dir.path(), 0).err().unwrap();
        assert!(error.to_string().contains("shard 1/0"), "{error}");
    }

    #[test]
    fn committed_generations_are_retained_for_answers_and_gap_fills() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Translog::open(shard(), dir.path(), 0).unwrap();
        log.append(&op(1), true).unwrap();
        log.roll_after_commit(true).unwrap();
        log.append(&op(2), true).unwrap();
        log.roll_after_commit(true).unwrap();
        log.append(&op(3), true).unwrap();
        assert_eq!(
            log.operations_after(0)
                .unwrap()
                .iter()
                .map(|o| o.seq_no)
                .collect::<Vec<_>>(),
            [1, 2, 3],
            "a gap fill reaches into retained generations"
        );
        drop(log);
        let (_, pending, covered) = Translog::open(shard(), dir.path(), 2).unwrap();
        assert_eq!(pending.iter().map(|o| o.seq_no).collect::<Vec<_>>(), [3]);
        assert_eq!(covered.iter().map(|o| o.seq_no).collect::<Vec<_>>(), [1, 2]);
        // A damaged retained generation is skipped, never fatal.
        fs::write(retained_path(dir.path(), 1), b"garbage that is no record").unwrap();
        let (_, pending, covered) = Translog::open(shard(), dir.path(), 2).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(covered.iter().map(|o| o.seq_no).collect::<Vec<_>>(), [2]);
    }

    #[test]
    fn rolling_retires_old_generations() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Translog::open(shard(), dir.path(), 0).unwrap();
        log.append(&op(1), true).unwrap();
        log.roll_after_commit(true).unwrap();
        log.append(&op(2), true).unwrap();
        drop(log);
        let (_, pending, _) = Translog::open(shard(), dir.path(), 1).unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!(list_generations(dir.path()).unwrap().len(), 2);
        assert_eq!(
            list_files(&dir.path().join(RETAINED_DIR), "retained-").unwrap(),
            [1]
        );
    }

    /// A flush retires a whole flush threshold of log at once: that generation, bigger than
    /// the retention budget, is still kept for its full age; the older ones make room.
    #[test]
    fn the_newest_retired_generation_is_kept_whatever_its_size() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _, _) = Translog::open(shard(), dir.path(), 0).unwrap();
        log.append(&op(1), false).unwrap();
        log.roll_after_commit(true).unwrap();
        let mut big = op(2);
        big.rows_ipc = vec![7; (RETAIN_BYTES + (1 << 20)) as usize];
        log.append(&big, false).unwrap();
        log.roll_after_commit(true).unwrap();
        assert_eq!(
            list_files(&dir.path().join(RETAINED_DIR), "retained-").unwrap(),
            [2],
            "generation 1 made room, generation 2 stays"
        );
    }
}
