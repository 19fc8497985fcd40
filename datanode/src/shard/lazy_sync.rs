//! The index directory of one shard: tantivy's memory-mapped directory, except that nothing
//! is fsynced until the shard flushes. A refresh (a tantivy commit that makes writes visible)
//! then costs writing the new segment files, not a dozen fsyncs: durability comes from the
//! translog, which keeps every operation since the last flush.
//!
//! The invariant that makes a crash at any moment reopen a consistent index: `meta.json` and
//! `.managed.json` on disk are only ever replaced by [`LazySyncDirectory::persist`], after
//! every file written since has been synced, and a file an on-disk meta may still name is not
//! deleted until a newer meta is on disk. Between flushes tantivy's metas live in memory here
//! (readers reload from them). After a crash, files written since the last flush are strays
//! on disk that no meta names: [`remove_strays`] deletes them before a writer opens.
//!
//! It knows nothing of shards, sequence numbers or the translog.

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use tantivy::directory::error::{DeleteError, LockError, OpenReadError, OpenWriteError};
use tantivy::directory::{
    AntiCallToken, Directory, DirectoryLock, FileHandle, Lock, MmapDirectory, TerminatingWrite,
    WatchCallback, WatchHandle, WritePtr,
};
use tantivy::index::{SegmentComponent, SegmentMeta};
use tantivy::Index;

use crate::durable_file;

/// What changed since the last [`LazySyncDirectory::persist`].
#[derive(Default)]
struct Unpersisted {
    /// Files written (and closed) but not synced.
    unsynced: HashSet<PathBuf>,
    /// The latest content tantivy gave each atomically written file (`meta.json`,
    /// `.managed.json`): what it reads back, not yet on disk.
    atomic: HashMap<PathBuf, Vec<u8>>,
    /// Files tantivy deleted that an on-disk meta may still name.
    deletes: Vec<PathBuf>,
}

/// A directory that syncs only when told to (see the module docs).
#[derive(Clone)]
pub struct LazySyncDirectory {
    root: PathBuf,
    inner: MmapDirectory,
    unpersisted: Arc<Mutex<Unpersisted>>,
}

impl std::fmt::Debug for LazySyncDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LazySyncDirectory({})", self.root.display())
    }
}

/// Lock files (`.tantivy-*.lock`) and other dot files tantivy does not manage go straight to
/// the inner directory.
fn is_hidden(path: &Path) -> bool {
    path.to_str().is_some_and(|name| name.starts_with('.')) && path != Path::new(".managed.json")
}

impl LazySyncDirectory {
    /// Opens the directory at `root`, which must exist.
    pub fn open(root: &Path) -> io::Result<LazySyncDirectory> {
        let inner = MmapDirectory::open(root).map_err(io::Error::other)?;
        Ok(LazySyncDirectory {
            root: root.to_path_buf(),
            inner,
            unpersisted: Arc::default(),
        })
    }

    /// Syncs the files written so far, without holding the directory's lock during the
    /// fsyncs (tantivy's threads go on writing); [`LazySyncDirectory::persist`] then syncs
    /// only what was written after.
    pub fn sync_written(&self) -> io::Result<()> {
        let written: Vec<PathBuf> = self.unpersisted.lock().unsynced.iter().cloned().collect();
        let mut synced = Vec::with_capacity(written.len());
        for path in written {
            match File::open(self.root.join(&path)) {
                Ok(file) => file.sync_data()?,
                // Deleted meanwhile (merged away before any meta on disk named it).
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
            synced.push(path);
        }
        let mut unpersisted = self.unpersisted.lock();
        for path in &synced {
            unpersisted.unsynced.remove(path);
        }
        Ok(())
    }

    /// Makes the latest metas durable: syncs every file written since the last call, then
    /// replaces `.managed.json` and `meta.json` on disk (each written to a temporary file,
    /// synced, renamed, the directory synced), then deletes the files tantivy dropped before.
    /// On error nothing already on disk was replaced by a half-written file.
    pub fn persist(&self) -> io::Result<()> {
        let mut unpersisted = self.unpersisted.lock();
        for path in &unpersisted.unsynced {
            // Under the lock tantivy cannot delete one of these (`delete` takes it first): a
            // file gone here was removed by something else, and the meta would name it.
            File::open(self.root.join(path))?.sync_data()?;
        }
        durable_file::sync_dir(&self.root)?;
        unpersisted.unsynced.clear();
        // The managed-file list first: a meta on disk must never name a file that list lacks
        // (tantivy would not clean it up later).
        for name in [".managed.json", "meta.json"] {
            if let Some(content) = unpersisted.atomic.remove(Path::new(name)) {
                if let Err(error) = durable_file::write(&self.root.join(name), &content) {
                    unpersisted.atomic.insert(PathBuf::from(name), content);
                    return Err(error);
                }
            }
        }
        for path in std::mem::take(&mut unpersisted.deletes) {
            match std::fs::remove_file(self.root.join(&path)) {
                Ok(()) => {}
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// The files written since the last [`LazySyncDirectory::persist`] and not synced.
    #[cfg(test)]
    pub fn unsynced_files(&self) -> Vec<PathBuf> {
        self.unpersisted.lock().unsynced.iter().cloned().collect()
    }

    /// Whether anything was written since the last [`LazySyncDirectory::persist`].
    #[cfg(test)]
    pub fn has_unpersisted(&self) -> bool {
        let unpersisted = self.unpersisted.lock();
        !unpersisted.unsynced.is_empty() || !unpersisted.atomic.is_empty()
    }
}

/// The files a committed segment consists of.
pub fn segment_files(segment: &SegmentMeta) -> Vec<PathBuf> {
    let mut components = vec![
        SegmentComponent::Postings,
        SegmentComponent::Positions,
        SegmentComponent::FastFields,
        SegmentComponent::FieldNorms,
        SegmentComponent::Terms,
        SegmentComponent::Store,
    ];
    if segment.delete_opstamp().is_some() {
        components.push(SegmentComponent::Delete);
    }
    components
        .into_iter()
        .map(|component| segment.relative_path(component))
        .collect()
}

/// Deletes the files in the index directory at `root` that no segment of the meta on disk
/// uses (written after the last flush, then the process died), and leftover temporary files.
/// Call before any writer opens the index.
pub fn remove_strays(root: &Path, index: &Index) -> io::Result<usize> {
    let metas = index.searchable_segment_metas().map_err(io::Error::other)?;
    let mut living: HashSet<PathBuf> = metas.iter().flat_map(segment_files).collect();
    living.insert(PathBuf::from("meta.json"));
    living.insert(PathBuf::from(".managed.json"));
    let mut removed = 0;
    for entry in std::fs::read_dir(root)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let name = PathBuf::from(entry.file_name());
        let temporary = name.to_str().is_some_and(|n| n.ends_with(".tmp"));
        if living.contains(&name) || (is_hidden(&name) && !temporary) {
            continue;
        }
        std::fs::remove_file(entry.path())?;
        removed += 1;
    }
    if removed > 0 {
        durable_file::sync_dir(root)?;
    }
    Ok(removed)
}

/// A segment file being written: flushed when tantivy closes it, synced only by `persist`.
struct UnsyncedFile {
    file: File,
    path: PathBuf,
    unpersisted: Arc<Mutex<Unpersisted>>,
}

impl Write for UnsyncedFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl TerminatingWrite for UnsyncedFile {
    fn terminate_ref(&mut self, _: AntiCallToken) -> io::Result<()> {
        self.file.flush()?;
        self.unpersisted.lock().unsynced.insert(self.path.clone());
        Ok(())
    }
}

impl Directory for LazySyncDirectory {
    fn get_file_handle(&self, path: &Path) -> Result<Arc<dyn FileHandle>, OpenReadError> {
        if let Some(content) = self.unpersisted.lock().atomic.get(path) {
            return Ok(Arc::new(tantivy::directory::OwnedBytes::new(
                content.clone(),
            )));
        }
        self.inner.get_file_handle(path)
    }

    fn delete(&self, path: &Path) -> Result<(), DeleteError> {
        if is_hidden(path) {
            return self.inner.delete(path);
        }
        let mut unpersisted = self.unpersisted.lock();
        // A file written since the last persist: no meta on disk names it.
        if unpersisted.unsynced.remove(path) {
            drop(unpersisted);
            return self.inner.delete(path);
        }
        if !self.root.join(path).exists() && !unpersisted.atomic.contains_key(path) {
            return Err(DeleteError::FileDoesNotExist(path.to_path_buf()));
        }
        unpersisted.atomic.remove(path);
        unpersisted.deletes.push(path.to_path_buf());
        Ok(())
    }

    fn exists(&self, path: &Path) -> Result<bool, OpenReadError> {
        {
            let unpersisted = self.unpersisted.lock();
            if unpersisted.atomic.contains_key(path) {
                return Ok(true);
            }
            if unpersisted.deletes.iter().any(|deleted| deleted == path) {
                return Ok(false);
            }
        }
        self.inner.exists(path)
    }

    fn open_write(&self, path: &Path) -> Result<WritePtr, OpenWriteError> {
        if is_hidden(path) {
            return self.inner.open_write(path);
        }
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(self.root.join(path))
            .map_err(|error| {
                if error.kind() == io::ErrorKind::AlreadyExists {
                    OpenWriteError::FileAlreadyExists(path.to_path_buf())
                } else {
                    OpenWriteError::wrap_io_error(error, path.to_path_buf())
                }
            })?;
        Ok(BufWriter::new(Box::new(UnsyncedFile {
            file,
            path: path.to_path_buf(),
            unpersisted: self.unpersisted.clone(),
        })))
    }

    fn atomic_read(&self, path: &Path) -> Result<Vec<u8>, OpenReadError> {
        if let Some(content) = self.unpersisted.lock().atomic.get(path) {
            return Ok(content.clone());
        }
        self.inner.atomic_read(path)
    }

    fn atomic_write(&self, path: &Path, data: &[u8]) -> io::Result<()> {
        if is_hidden(path) {
            return self.inner.atomic_write(path, data);
        }
        self.unpersisted
            .lock()
            .atomic
            .insert(path.to_path_buf(), data.to_vec());
        Ok(())
    }

    fn sync_directory(&self) -> io::Result<()> {
        // Durability is `persist`'s job.
        Ok(())
    }

    fn acquire_lock(&self, lock: &Lock) -> Result<DirectoryLock, LockError> {
        // The inner directory's advisory file locks, which a dead process does not hold (the
        // default would take a lock file's existence for a lock, left behind by a crash).
        self.inner.acquire_lock(lock)
    }

    fn watch(&self, watch_callback: WatchCallback) -> tantivy::Result<WatchHandle> {
        self.inner.watch(watch_callback)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tantivy::schema::{Schema, STORED, STRING};
    use tantivy::{doc, IndexWriter};

    fn open(dir: &Path) -> (Index, LazySyncDirectory, tantivy::schema::Field) {
        let mut builder = Schema::builder();
        let field = builder.add_text_field("id", STRING | STORED);
        let directory = LazySyncDirectory::open(dir).unwrap();
        let index = Index::open_or_create(directory.clone(), builder.build()).unwrap();
        remove_strays(dir, &index).unwrap();
        (index, directory, field)
    }

    /// A reader that never reloads by itself (as the shard's), so that no thread of it
    /// outlives the test's simulated crash.
    fn docs(index: &Index) -> u64 {
        let reader: tantivy::IndexReader = index
            .reader_builder()
            .reload_policy(tantivy::ReloadPolicy::Manual)
            .try_into()
            .unwrap();
        reader.searcher().num_docs()
    }

    fn on_disk_docs(dir: &Path) -> u64 {
        docs(&Index::open_in_dir(dir).unwrap())
    }

    /// A commit without persist is visible to readers but leaves the disk at the last
    /// persisted meta, which names no unsynced file: a power loss that empties every
    /// unsynced file (simulated here) still opens; strays are removed on the next open; a
    /// persisted commit survives.
    #[test]
    fn only_persisted_commits_reach_the_disk() {
        let dir = tempfile::tempdir().unwrap();
        {
            let (index, directory, field) = open(dir.path());
            let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
            writer.add_document(doc!(field => "a")).unwrap();
            writer.commit().unwrap();
            directory.persist().unwrap();
            writer.add_document(doc!(field => "b")).unwrap();
            writer.commit().unwrap();
            assert_eq!(docs(&index), 2, "readers see the commit");
            assert!(directory.has_unpersisted());
            assert_eq!(
                on_disk_docs(dir.path()),
                1,
                "the disk has the persisted one"
            );
            writer.wait_merging_threads().unwrap();
            let unsynced = directory.unsynced_files();
            assert!(!unsynced.is_empty());
            for path in unsynced {
                File::create(dir.path().join(path)).unwrap();
            }
        }
        let files_before = std::fs::read_dir(dir.path()).unwrap().count();
        let (index, directory, field) = open(dir.path());
        let files_after = std::fs::read_dir(dir.path()).unwrap().count();
        assert!(
            files_after < files_before,
            "the unpersisted segment's files are gone"
        );
        assert_eq!(docs(&index), 1);
        let mut writer: IndexWriter = index.writer_with_num_threads(1, 15_000_000).unwrap();
        writer.add_document(doc!(field => "c")).unwrap();
        writer.commit().unwrap();
        directory.persist().unwrap();
        assert!(!directory.has_unpersisted());
        writer.wait_merging_threads().unwrap();
        assert_eq!(on_disk_docs(dir.path()), 2);
    }
}
