//! Making a shard's writes visible and durable in its index: refresh (a commit nothing is
//! fsynced for, then a reader reload), flush (that commit made durable, then the translog
//! rolled), and the waits a reader asks for (its session's writes, real-time ids). It does
//! not write documents or touch the translog's records.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::{
    CommitPayload, Shard, WriterState, FLUSH_INTERVAL, LIVE_IDS_BEFORE_REFRESH, SEARCH_IDLE_AFTER,
};
use crate::error::{Error, Result};

impl Shard {
    /// Makes every applied write visible to new searchers: a tantivy commit whose files are
    /// written but not synced (the translog still holds every operation since the last
    /// [`Shard::flush`], so a crash loses nothing acknowledged).
    pub fn refresh(&self) -> Result<()> {
        let mut state = self.state.lock();
        self.check_not_failed()?;
        self.refresh_locked(&mut state)
    }

    /// Refreshes once [`LIVE_IDS_BEFORE_REFRESH`] ids wait in the live map, whatever the
    /// interval (called after each applied write, holding the writer lock).
    pub(super) fn refresh_if_many_live(&self, state: &mut WriterState) -> Result<()> {
        if state.live.len() >= LIVE_IDS_BEFORE_REFRESH {
            self.refresh_locked(state)?;
        }
        Ok(())
    }

    fn refresh_locked(&self, state: &mut WriterState) -> Result<()> {
        // Set under the writer lock: what is applied now is what the reloaded reader shows.
        let applied = state.next_seq_no.saturating_sub(1);
        if !self.dirty.swap(false, Ordering::AcqRel) {
            // Nothing was written since the last refresh (at most empty operations, which
            // change no document).
            self.visible_seq_no.fetch_max(applied, Ordering::AcqRel);
            *self.last_refresh.lock() = Instant::now();
            return Ok(());
        }
        let committed = self.commit(state);
        // A commit that failed half way is not retried in place: the shard fails, and opening
        // it again replays the translog, which still holds every write.
        self.or_fail(committed)?;
        state.live.clear();
        self.visible_seq_no.fetch_max(applied, Ordering::AcqRel);
        *self.last_refresh.lock() = Instant::now();
        Ok(())
    }

    /// A tantivy commit recording the highest applied sequence number, and a reader reload.
    fn commit(&self, state: &mut WriterState) -> Result<()> {
        self.commit_without_reload(state)?;
        self.reader.reload().map_err(|source| Error::Index {
            shard_id: self.id,
            source,
        })
    }

    pub(super) fn commit_without_reload(&self, state: &mut WriterState) -> Result<()> {
        let index_err = |source| Error::Index {
            shard_id: self.id,
            source,
        };
        let payload = serde_json::to_string(&CommitPayload {
            max_seq_no: state.next_seq_no.saturating_sub(1),
            max_term: state.last_term,
        })
        .expect("payload serialises");
        let mut prepared = state.writer.prepare_commit().map_err(index_err)?;
        prepared.set_payload(&payload);
        prepared.commit().map_err(index_err)?;
        Ok(())
    }

    /// Makes every applied write durable in the index — commit, sync the files written since
    /// the last flush, then put the commit's meta on disk — and drops the translog
    /// generations it covers. Everything a refresh does, too.
    pub fn flush(&self) -> Result<()> {
        let io_err = |source| Error::Io {
            shard_id: self.id,
            source,
        };
        self.check_not_failed()?;
        // Most of a flush's fsyncs (merged segments can be large) run before the writer lock
        // is taken, so that writes and refreshes do not wait for them.
        self.or_fail(self.directory.sync_written().map_err(io_err))?;
        let mut state = self.state.lock();
        self.check_not_failed()?;
        let flushed = (|| {
            // Async-durability writes must be on disk before the commit makes the log
            // disposable.
            state.translog.sync()?;
            // Always a commit, so that its payload covers empty operations too; the reader
            // is not reloaded (what other sessions see changes only on refresh), so the
            // applied writes stay unrefreshed, and so does the live map.
            self.commit_without_reload(&mut state)?;
            self.directory.persist().map_err(io_err)?;
            // While a recovery reads the translog, its generations stay.
            let delete_old = self.translog_holds.load(Ordering::Acquire) == 0;
            state.translog.roll_after_commit(delete_old)
        })();
        self.or_fail(flushed)?;
        state.unflushed_bytes = 0;
        state.last_flush = Instant::now();
        Ok(())
    }

    /// Flushes if the translog has grown by the table's `translog.flush_threshold_size`
    /// since the last flush, or holds operations older than [`FLUSH_INTERVAL`].
    pub fn flush_if_due(&self) -> Result<()> {
        let threshold = self.table().translog_flush_threshold_bytes();
        let due = {
            let state = self.state.lock();
            state.unflushed_bytes >= threshold
                || (state.unflushed_bytes > 0 && state.last_flush.elapsed() >= FLUSH_INTERVAL)
        };
        if due {
            self.flush()?;
        }
        Ok(())
    }

    /// Returns once every operation up to `seq_no` is visible to new searchers: at once if
    /// it is, after a refresh if this copy has applied them (a refresh in flight is waited
    /// for, not repeated), after waiting up to `wait` for a copy still applying them (a
    /// replica is sent a write just before its primary answers). A copy that does not get
    /// there in time fails the read rather than answer without the writes. Every search of
    /// the copy asks this first: a search-idle copy refreshes here, as its periodic
    /// refreshes were skipped.
    pub fn ensure_visible(&self, seq_no: u64, wait: Duration) -> Result<()> {
        if self.is_search_idle() {
            // Unconditional: a refresh another search of this idle copy started may still be
            // committing (it cleared `dirty` first); this one waits for it on the writer lock
            // and costs nothing more when it finds nothing new. The copy counts as searched
            // only after it, so that every search arriving meanwhile waits the same way.
            self.refresh()?;
        }
        *self.last_search.lock() = Instant::now();
        if seq_no <= self.visible_seq_no.load(Ordering::Acquire) {
            return Ok(());
        }
        let deadline = Instant::now() + wait;
        let mut pause = Duration::from_micros(200);
        loop {
            let applied = self.state.lock().next_seq_no.saturating_sub(1);
            if applied >= seq_no {
                self.refresh()?;
                if seq_no <= self.visible_seq_no.load(Ordering::Acquire) {
                    return Ok(());
                }
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(Error::NotCaughtUp {
                    shard_id: self.id,
                    applied,
                    wanted: seq_no,
                });
            }
            std::thread::sleep(pause.min(deadline - now));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// Refreshes if the shard has unrefreshed writes older than `interval_ms` and served a
    /// search lately (a search-idle copy refreshes on its next search instead).
    pub fn refresh_if_due(&self, interval_ms: i64) -> Result<()> {
        if interval_ms <= 0 || !self.dirty.load(Ordering::Acquire) {
            return Ok(());
        }
        if self.is_search_idle() {
            return Ok(());
        }
        if self.last_refresh.lock().elapsed().as_millis() as i64 >= interval_ms {
            self.refresh()?;
        }
        Ok(())
    }

    /// Whether periodic refreshes skip this copy: it served no search for
    /// [`SEARCH_IDLE_AFTER`] and its table leaves `refresh_interval` at the default (an
    /// interval set explicitly, `-1` included, is kept to, as Elasticsearch does).
    fn is_search_idle(&self) -> bool {
        self.last_search.lock().elapsed() >= SEARCH_IDLE_AFTER
            && !self.table().sets_refresh_interval()
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
}
