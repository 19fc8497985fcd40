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
    by_id: HashMap<String, Remembered>,
    order: VecDeque<(String, usize)>,
    bytes: usize,
}

/// One remembered operation.
#[derive(Clone)]
pub struct Remembered {
    /// The operation (without its rows if `answer_only`).
    pub op: Arc<TranslogOp>,
    /// Learnt from a primary during recovery: only its answer is known, so it is never
    /// forwarded again (every copy in the group already has it).
    pub answer_only: bool,
}

impl RecentOps {
    /// Remembers `op`, which this copy applied, under its operation id (if it has one).
    pub fn record(&mut self, op: &TranslogOp) {
        self.insert(op.clone(), false);
    }

    /// Remembers only the answer of `op`, whose effect this copy's index already holds (a
    /// primary applied it before this copy was recovered from it, or a commit covers it).
    pub fn record_answer(&mut self, op: &TranslogOp) {
        self.insert(answer_of(op), true);
    }

    /// Every remembered operation, oldest first, without rows: what a recovering copy needs
    /// to answer retries.
    pub fn answers(&self) -> Vec<TranslogOp> {
        self.order
            .iter()
            .filter_map(|(id, _)| self.by_id.get(id))
            .map(|remembered| answer_of(&remembered.op))
            .collect()
    }

    fn insert(&mut self, op: TranslogOp, answer_only: bool) {
        if op.operation_id.is_empty() || self.by_id.contains_key(&op.operation_id) {
            return;
        }
        let size = op.encoded_len();
        let id = op.operation_id.clone();
        self.by_id.insert(
            id.clone(),
            Remembered {
                op: Arc::new(op),
                answer_only,
            },
        );
        self.order.push_back((id, size));
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
    pub fn get(&self, operation_id: &str) -> Option<Remembered> {
        if operation_id.is_empty() {
            return None;
        }
        self.by_id.get(operation_id).cloned()
    }
}

/// `op` without its rows and ids (never copied): what answering a retry of it needs.
fn answer_of(op: &TranslogOp) -> TranslogOp {
    TranslogOp {
        seq_no: op.seq_no,
        mode: op.mode,
        num_ops: op.num_ops,
        primary_term: op.primary_term,
        operation_id: op.operation_id.clone(),
        statuses: op.statuses.clone(),
        ..TranslogOp::default()
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
            statuses_of(&recent.get("a").unwrap().op),
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

    #[test]
    fn a_recovered_copy_answers_without_the_rows() {
        let mut primary = RecentOps::default();
        primary.record(&op("first", 100));
        primary.record(&op("second", 100));
        let answers = primary.answers();
        assert_eq!(
            answers
                .iter()
                .map(|a| a.operation_id.as_str())
                .collect::<Vec<_>>(),
            ["first", "second"],
            "oldest first, so the copy evicts in the same order"
        );
        assert!(answers.iter().all(|a| a.rows_ipc.is_empty()));
        let mut copy = RecentOps::default();
        for answer in answers {
            copy.record_answer(&answer);
        }
        let remembered = copy.get("second").unwrap();
        assert!(remembered.answer_only, "never forwarded again");
        assert_eq!(statuses_of(&remembered.op), [RowStatus::Duplicate]);
        // An operation the copy applies itself stays forwardable.
        copy.record(&op("third", 10));
        assert!(!copy.get("third").unwrap().answer_only);
    }
}
