//! The operations a shard copy applied recently, by operation id: a write the coordinator
//! retries after losing its answer (a failover, a dropped connection) gets the first answer
//! back instead of running again, which would report a false duplicate key or insert a
//! second row with a generated id. Every copy fills it from the operations it applies, so a
//! promoted replica answers retries of writes its old primary accepted.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use creek_proto::v1::{RowStatus, TranslogOp};
use prost::Message;

/// How many operations are remembered, and how many bytes of them at most.
const MAX_OPERATIONS: usize = 4096;
const MAX_BYTES: usize = 64 * 1024 * 1024;

/// Recently applied operations by id, oldest evicted first.
#[derive(Default)]
pub struct RecentOps {
    by_id: HashMap<String, Arc<TranslogOp>>,
    order: VecDeque<(String, usize)>,
    bytes: usize,
}

impl RecentOps {
    /// Remembers `op` under its operation id (if it has one).
    pub fn record(&mut self, op: &TranslogOp) {
        if op.operation_id.is_empty() || self.by_id.contains_key(&op.operation_id) {
            return;
        }
        let size = op.encoded_len();
        self.by_id
            .insert(op.operation_id.clone(), Arc::new(op.clone()));
        self.order.push_back((op.operation_id.clone(), size));
        self.bytes += size;
        while self.order.len() > MAX_OPERATIONS || self.bytes > MAX_BYTES {
            let Some((id, size)) = self.order.pop_front() else {
                break;
            };
            self.by_id.remove(&id);
            self.bytes -= size;
        }
    }

    /// Returns the operation applied under `operation_id`, if it is remembered.
    pub fn get(&self, operation_id: &str) -> Option<Arc<TranslogOp>> {
        if operation_id.is_empty() {
            return None;
        }
        self.by_id.get(operation_id).cloned()
    }
}

/// The statuses an operation answered, as row statuses.
pub fn statuses_of(op: &TranslogOp) -> Vec<RowStatus> {
    op.statuses
        .iter()
        .map(|s| RowStatus::try_from(*s).unwrap_or(RowStatus::Ok))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: &str, payload: usize) -> TranslogOp {
        TranslogOp {
            operation_id: id.into(),
            rows_ipc: vec![0; payload],
            statuses: vec![RowStatus::Duplicate as i32],
            ..TranslogOp::default()
        }
    }

    #[test]
    fn remembers_recent_operations_within_bounds() {
        let mut recent = RecentOps::default();
        recent.record(&op("a", 10));
        assert_eq!(
            statuses_of(&recent.get("a").unwrap()),
            [RowStatus::Duplicate]
        );
        assert!(recent.get("").is_none());
        for i in 0..MAX_OPERATIONS {
            recent.record(&op(&format!("op{i}"), 10));
        }
        assert!(recent.get("a").is_none(), "the oldest is evicted");
        recent.record(&op("big", MAX_BYTES));
        assert!(recent.by_id.len() <= 1);
    }
}
