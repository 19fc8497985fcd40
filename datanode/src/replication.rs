//! The primary's side of replication: forwarding each operation to every copy in the
//! replication group, filling a copy's gap from the translog, and failing a copy through the
//! leader before a write it missed is acknowledged.
//!
//! A write is acknowledged only once every copy the primary forwards to has applied it, or
//! has been removed from the in-sync set by a committed cluster-state change. A copy that
//! answers with a newer primary term, or a leader that refuses the removal as coming from a
//! stale term, means this copy was demoted: the write fails and is not acknowledged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use creek_proto::cluster_auth::SignedChannel;
use creek_proto::v1::shard_service_client::ShardServiceClient;
use creek_proto::v1::{ReplicateRequest, ShardCopyEventRequest, TranslogOp};
use parking_lot::Mutex;
use prost::Message;

use crate::cluster_client::ClusterClient;
use crate::error::{Error, Result};
use crate::node::MAX_MESSAGE_BYTES;
use crate::shard::copy::Peer;
use crate::shard::Shard;

/// How long a copy may take to apply one operation before it is failed.
const REPLICATE_TIMEOUT: Duration = Duration::from_secs(10);

/// How many bytes of operations one gap-fill request carries at most (a single larger
/// operation goes alone).
const FILL_BATCH_BYTES: usize = 8 << 20;

/// How many operations one gap-fill request carries at most: the copy applies (and fsyncs)
/// them one by one within one [`REPLICATE_TIMEOUT`].
const FILL_BATCH_OPS: usize = 256;

/// Splits `ops` into consecutive, non-empty runs of at most [`FILL_BATCH_BYTES`] and
/// [`FILL_BATCH_OPS`] each.
fn fill_batches(ops: &[TranslogOp]) -> Vec<&[TranslogOp]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0usize);
    for (index, op) in ops.iter().enumerate() {
        let size = op.encoded_len();
        let full = bytes + size > FILL_BATCH_BYTES || index - start >= FILL_BATCH_OPS;
        if index > start && full {
            batches.push(&ops[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < ops.len() {
        batches.push(&ops[start..]);
    }
    batches
}

/// How many times one operation's gap may be filled before the copy is failed.
const MAX_GAP_FILLS: usize = 3;

/// Channels to the other data nodes, one per address.
#[derive(Default)]
pub struct PeerChannels {
    channels: Mutex<HashMap<String, SignedChannel>>,
}

impl PeerChannels {
    /// A shard-service client for the node at `address`.
    pub fn client(&self, address: &str) -> Result<ShardServiceClient<SignedChannel>> {
        let known = self.channels.lock().get(address).cloned();
        let channel = match known {
            Some(channel) => channel,
            None => {
                let channel = creek_proto::transport::peer_channel(address, Duration::from_secs(2))
                    .map_err(Error::InvalidRequest)?;
                self.channels
                    .lock()
                    .insert(address.to_string(), channel.clone());
                channel
            }
        };
        Ok(ShardServiceClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES))
    }
}

/// Why forwarding to one copy did not succeed.
enum PeerOutcome {
    Applied,
    /// The copy knows a newer primary term: this primary was demoted.
    Deposed(u64),
    /// The copy failed the operation (or did not answer): it must leave the group.
    Failed(String),
}

/// Forwards `op` to every copy `shard` replicates to (see the module documentation).
/// Called with the shard's replication lock held, so copies get operations in order.
pub async fn replicate(
    peers: &PeerChannels,
    leader: &ClusterClient,
    shard: &Arc<Shard>,
    op: &Arc<TranslogOp>,
    refresh: bool,
) -> Result<()> {
    let targets = shard.replication_targets();
    if targets.is_empty() {
        return Ok(());
    }
    let term = shard.primary_term();
    let outcomes = futures::future::join_all(
        targets
            .iter()
            .map(|peer| forward(peers, shard, peer, op, term, refresh)),
    )
    .await;
    for (peer, outcome) in targets.iter().zip(outcomes) {
        match outcome {
            PeerOutcome::Applied => {}
            PeerOutcome::Deposed(newer) => {
                tracing::warn!(shard_id = %shard.id(), term, newer, "a copy knows a newer primary term: this copy was demoted");
                return Err(Error::NotPrimary {
                    shard_id: shard.id(),
                });
            }
            PeerOutcome::Failed(reason) => {
                fail_copy(leader, shard, peer, term, reason).await?;
            }
        }
    }
    Ok(())
}

/// Removes `peer` from the group through the leader; a write is acknowledged only after.
async fn fail_copy(
    leader: &ClusterClient,
    shard: &Arc<Shard>,
    peer: &Peer,
    term: u64,
    reason: String,
) -> Result<()> {
    let shard_id = shard.id();
    tracing::warn!(%shard_id, copy = %peer.allocation_id, node = %peer.node, %reason, "failing a copy that missed a write");
    let request = ShardCopyEventRequest {
        table_id: shard_id.table.0,
        shard: shard_id.shard,
        allocation_id: peer.allocation_id.clone(),
        primary_term: term,
        started: false,
        reason: reason.clone(),
        forwarded: false,
    };
    match leader.shard_copy_event(request).await {
        Ok(()) => {
            shard.stop_tracking(&peer.allocation_id);
            Ok(())
        }
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            // The leader knows a newer primary term for the shard.
            Err(Error::NotPrimary { shard_id })
        }
        Err(status) => Err(Error::Replication {
            shard_id,
            reason: format!(
                "copy {} on {} failed ({reason}) and could not be removed from the in-sync set: {}",
                peer.allocation_id,
                peer.node,
                status.message()
            ),
        }),
    }
}

async fn forward(
    peers: &PeerChannels,
    shard: &Arc<Shard>,
    peer: &Peer,
    op: &TranslogOp,
    term: u64,
    refresh: bool,
) -> PeerOutcome {
    let mut client = match peers.client(&peer.address) {
        Ok(client) => client,
        Err(error) => return PeerOutcome::Failed(error.to_string()),
    };
    let send = |client: &mut ShardServiceClient<SignedChannel>,
                backlog: &[TranslogOp],
                op: &TranslogOp,
                refresh: bool| {
        let request = ReplicateRequest {
            table_id: shard.id().table.0,
            shard: shard.id().shard,
            primary_term: term,
            op: op.encode_to_vec(),
            allocation_id: peer.allocation_id.clone(),
            refresh,
            backlog: backlog.iter().map(|o| o.encode_to_vec()).collect(),
        };
        let mut client = client.clone();
        async move {
            match tokio::time::timeout(REPLICATE_TIMEOUT, client.replicate_write(request)).await {
                Ok(Ok(response)) => Ok(response.into_inner()),
                Ok(Err(status)) => Err(status.message().to_string()),
                Err(_) => Err(format!("no answer within {}s", REPLICATE_TIMEOUT.as_secs())),
            }
        }
    };
    for _ in 0..=MAX_GAP_FILLS {
        let response = match send(&mut client, &[], op, refresh).await {
            Ok(response) => response,
            Err(reason) => return PeerOutcome::Failed(reason),
        };
        if response.newer_term > 0 {
            return PeerOutcome::Deposed(response.newer_term);
        }
        if !response.gap {
            return PeerOutcome::Applied;
        }
        // The copy missed operations (it is recovering, or its old primary died between
        // copies): send them from the translog, then this one again.
        let after = response.next_seq_no.saturating_sub(1);
        let missing = {
            let shard = shard.clone();
            tokio::task::spawn_blocking(move || shard.operations_after(after)).await
        };
        let missing: Vec<TranslogOp> = match missing {
            Ok(Ok(ops)) => ops.into_iter().filter(|o| o.seq_no < op.seq_no).collect(),
            Ok(Err(error)) => return PeerOutcome::Failed(error.to_string()),
            Err(error) => return PeerOutcome::Failed(error.to_string()),
        };
        if missing
            .first()
            .is_none_or(|o| o.seq_no > response.next_seq_no)
        {
            return PeerOutcome::Failed(format!(
                "the copy needs operations from {} that the primary's translog no longer holds",
                response.next_seq_no
            ));
        }
        for batch in fill_batches(&missing) {
            let (last, backlog) = batch.split_last().expect("batches are never empty");
            match send(&mut client, backlog, last, false).await {
                Ok(r) if r.newer_term > 0 => return PeerOutcome::Deposed(r.newer_term),
                Ok(_) => {}
                Err(reason) => return PeerOutcome::Failed(reason),
            }
        }
    }
    PeerOutcome::Failed(format!(
        "operation {} still had a gap after {MAX_GAP_FILLS} fills",
        op.seq_no
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(seq_no: u64, payload: usize) -> TranslogOp {
        TranslogOp {
            seq_no,
            rows_ipc: vec![1; payload],
            num_ops: 1,
            ..TranslogOp::default()
        }
    }

    #[test]
    fn gap_fills_go_in_bounded_batches_in_order() {
        assert!(fill_batches(&[]).is_empty());
        let many: Vec<TranslogOp> = (0..1000).map(|i| op(i, 100)).collect();
        let batches = fill_batches(&many);
        assert_eq!(batches.len(), 4);
        assert!(batches.iter().all(|b| b.len() <= FILL_BATCH_OPS));
        let small: Vec<TranslogOp> = (0..200).map(|i| op(i, 100)).collect();
        assert_eq!(
            fill_batches(&small).len(),
            1,
            "a small backlog is one request"
        );
        let big: Vec<TranslogOp> = (0..20).map(|i| op(i, 1 << 20)).collect();
        let batches = fill_batches(&big);
        assert!(batches.len() >= 3);
        assert!(batches.iter().all(|b| !b.is_empty()
            && (b.len() == 1
                || b.iter().map(|o| o.encoded_len()).sum::<usize>() <= FILL_BATCH_BYTES)));
        let order: Vec<u64> = batches
            .iter()
            .flat_map(|b| b.iter().map(|o| o.seq_no))
            .collect();
        assert_eq!(order, (0..20).collect::<Vec<_>>());
        let huge = [op(0, FILL_BATCH_BYTES * 2), op(1, 10)];
        assert_eq!(
            fill_batches(&huge).len(),
            2,
            "an op larger than a batch goes alone"
        );
    }
}
