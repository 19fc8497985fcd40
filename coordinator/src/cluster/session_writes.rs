//! What one session has written: per shard, the highest sequence number a primary answered
//! the session's writes with. Scans carry it so that the copy they read shows the session's
//! own writes (read-your-writes without REFRESH); other sessions' writes become visible at
//! the table's next periodic refresh.
//!
//! Pure bookkeeping: it records and reports, and knows nothing of how a scan is routed.

use std::collections::HashMap;

use creek_common::TableId;
use parking_lot::Mutex;

/// The session's highest written sequence number per (table, shard). Table ids are never
/// reused, so a dropped and re-created table starts with nothing to wait for.
#[derive(Debug, Default)]
pub struct SessionWrites {
    seq_nos: Mutex<HashMap<(TableId, u32), u64>>,
    /// Writes answered so far, to tell whether any happened since a point (`BEGIN`).
    count: std::sync::atomic::AtomicU64,
}

impl SessionWrites {
    /// Records that a write to `shard` of `table` was answered with `seq_no` (the highest
    /// sequence number its primary had assigned after applying it).
    pub fn record(&self, table: TableId, shard: u32, seq_no: u64) {
        let mut seq_nos = self.seq_nos.lock();
        let entry = seq_nos.entry((table, shard)).or_default();
        *entry = (*entry).max(seq_no);
        self.count
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    /// How many writes to a shard the session has had answered.
    pub fn count(&self) -> u64 {
        self.count.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether the session has written anything.
    pub fn is_empty(&self) -> bool {
        self.seq_nos.lock().is_empty()
    }

    /// The sequence number each of `shards` must show for the session to see its writes
    /// (0: the session wrote nothing there).
    pub fn required(&self, table: TableId, shards: &[u32]) -> Vec<u64> {
        let seq_nos = self.seq_nos.lock();
        shards
            .iter()
            .map(|shard| seq_nos.get(&(table, *shard)).copied().unwrap_or(0))
            .collect()
    }
}

/// How a write becomes visible to reads: to the writing session's later statements always
/// (through `session`), to every session at once only with `refresh` (the `write_refresh`
/// session setting: the shard refreshes before it answers).
#[derive(Debug, Clone, Copy)]
pub struct Visibility<'a> {
    /// The writing session's record.
    pub session: &'a SessionWrites,
    /// Refresh before answering.
    pub refresh: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_highest_seq_no_per_shard() {
        let writes = SessionWrites::default();
        writes.record(TableId(1), 0, 5);
        writes.record(TableId(1), 0, 3);
        writes.record(TableId(1), 2, 9);
        writes.record(TableId(2), 0, 7);
        assert_eq!(writes.required(TableId(1), &[0, 1, 2]), vec![5, 0, 9]);
        assert_eq!(writes.required(TableId(2), &[0]), vec![7]);
    }
}
