//! Recovery of a shard copy from its primary (the target side; the primary's side is in
//! `service.rs` and `shard/replica.rs`).
//!
//! 1. The primary commits and lists the files of that commit with sizes and CRC-32s.
//! 2. Files this node already has with the same size and checksum (a copy that comes back, a
//!    move of a copy whose segments did not change) are linked; the others are fetched in
//!    chunks and their checksums verified. The files go to a directory of their own, which
//!    replaces the copy's index only once complete.
//! 3. The copy opens with an empty translog and applies the operations the primary logged
//!    after its commit; the primary adds it to the replication group while it still holds
//!    its write order, so the copy sees every operation once, in order.
//! 4. The copy tells the leader it has started; the leader puts it in the in-sync set.
//!
//! Progress is kept in [`RecoveryProgress`] for `sys.shards`. A failed recovery is reported as
//! a failed copy, which the allocator assigns again.

use creek_proto::cluster_auth::SignedChannel;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use creek_common::schema::TableSchema;
use creek_common::ShardId;
use creek_proto::v1::shard_service_client::ShardServiceClient;
use creek_proto::v1::{
    FileChunkRequest, RecoveryOpsRequest, ShardCopyEventRequest, StartRecoveryRequest, TranslogOp,
};
use parking_lot::Mutex;
use prost::Message;

use crate::error::{Error, Result};
use crate::node::{DataNode, MAX_MESSAGE_BYTES};
use crate::shard::copy::CopyRole;
use crate::shard::Shard;

/// Bytes fetched per chunk.
const CHUNK_BYTES: u32 = 1 << 20;

/// What a recovery has done so far.
#[derive(Debug, Default)]
pub struct RecoveryProgress {
    /// FILES, OPERATIONS or DONE.
    pub stage: Mutex<String>,
    pub files_total: AtomicU64,
    pub files_done: AtomicU64,
    pub bytes_total: AtomicU64,
    pub bytes_done: AtomicU64,
    pub operations: AtomicU64,
}

/// Where the recovery comes from.
#[derive(Debug, Clone)]
pub struct RecoverySource {
    /// The primary's transport address.
    pub address: String,
    /// The primary term the recovery runs under.
    pub primary_term: u64,
}

/// Recovers copy `role.allocation_id` of `shard_id` from the primary. The primary then
/// reports the copy started to the leader (it alone knows that the copy receives its writes);
/// a failed recovery is reported failed by this node.
pub async fn recover(
    node: Arc<DataNode>,
    table: Arc<TableSchema>,
    shard_id: ShardId,
    role: CopyRole,
    source: RecoverySource,
    progress: Arc<RecoveryProgress>,
) {
    let outcome = match run(&node, &table, shard_id, &role, &source, &progress).await {
        Ok(recovery_id) => {
            *progress.stage.lock() = "FINALIZE".to_string();
            finish(&source, shard_id, &recovery_id).await
        }
        Err(error) => Err(error.to_string()),
    };
    let Err(reason) = outcome else {
        // Started: the task stays registered (as done) until the state says the copy has
        // started, so a reconciliation against an older state cannot recover it again.
        *progress.stage.lock() = "DONE".to_string();
        node.recovery_failures.lock().remove(&shard_id);
        return;
    };
    let failures = {
        let mut failures = node.recovery_failures.lock();
        let count = failures.entry(shard_id).or_insert(0);
        *count = count.saturating_add(1);
        *count
    };
    tracing::warn!(%shard_id, %reason, failures, "recovery failed");
    *progress.stage.lock() = "FAILED".to_string();
    // The leader assigns a new copy as soon as this one is reported failed, often to this
    // node again; waiting first keeps a primary this node cannot reach from turning that
    // into a loop of state changes.
    tokio::time::sleep(failure_backoff(failures)).await;
    report_failed(&node, shard_id, &role, &source, reason).await;
    // A copy the state still lists as initializing is recovered afresh. (Removing the task
    // aborts it, so nothing may follow.)
    let mut recoveries = node.recoveries.lock();
    if recoveries
        .get(&shard_id)
        .is_some_and(|task| task.allocation_id == role.allocation_id)
    {
        recoveries.remove(&shard_id);
    }
}

/// How long to wait before reporting the `failures`-th failed recovery of a shard in a row:
/// 250 ms, doubling, at most 30 s.
fn failure_backoff(failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(7);
    Duration::from_millis(250 << doublings).min(Duration::from_secs(30))
}

/// Asks the primary to report the recovered copy started; `Err` with the reason if it did
/// not (the copy is then reported failed and recovered again).
async fn finish(
    source: &RecoverySource,
    shard_id: ShardId,
    recovery_id: &str,
) -> Result<(), String> {
    let mut primary = primary_client(&source.address).map_err(|e| e.to_string())?;
    let mut last = String::new();
    for _ in 0..REPORT_ATTEMPTS {
        let request = RecoveryOpsRequest {
            recovery_id: recovery_id.to_string(),
        };
        match primary.finish_recovery(request).await {
            Ok(response) if response.get_ref().refused.is_empty() => return Ok(()),
            Ok(response) => {
                return Err(format!(
                    "the leader refused the recovered copy: {}",
                    response.into_inner().refused
                ))
            }
            Err(status) if status.code() == tonic::Code::Unavailable => {
                last = status.message().to_string();
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Err(status) => {
                return Err(format!(
                    "the primary did not confirm the copy of shard {shard_id}: {}",
                    status.message()
                ))
            }
        }
    }
    Err(format!(
        "the primary did not confirm the copy of shard {shard_id}: {last}"
    ))
}

/// Reports a failed recovery to the leader, under the shard's current primary term (a
/// report under an older one would be refused).
async fn report_failed(
    node: &Arc<DataNode>,
    shard_id: ShardId,
    role: &CopyRole,
    source: &RecoverySource,
    reason: String,
) {
    for attempt in 0..REPORT_ATTEMPTS {
        let term = node
            .primary_term_of(shard_id)
            .unwrap_or(source.primary_term);
        let report = ShardCopyEventRequest {
            table_id: shard_id.table.0,
            shard: shard_id.shard,
            allocation_id: role.allocation_id.clone(),
            primary_term: term,
            started: false,
            reason: reason.clone(),
            forwarded: false,
        };
        match node.cluster_client().shard_copy_event(report).await {
            Ok(()) => return,
            Err(status) => {
                tracing::warn!(%shard_id, %status, attempt, "reporting a failed recovery failed");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// How many times a recovery's outcome is reported before the node's next reconciliation
/// takes over.
const REPORT_ATTEMPTS: usize = 10;

fn primary_client(address: &str) -> Result<ShardServiceClient<SignedChannel>> {
    let channel = creek_proto::transport::peer_channel(address, Duration::from_secs(5))
        .map_err(Error::InvalidRequest)?;
    Ok(ShardServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

async fn run(
    node: &Arc<DataNode>,
    table: &Arc<TableSchema>,
    shard_id: ShardId,
    role: &CopyRole,
    source: &RecoverySource,
    progress: &Arc<RecoveryProgress>,
) -> Result<String> {
    let failed = |reason: String| Error::Recovery { shard_id, reason };
    let mut primary = primary_client(&source.address)?;
    *progress.stage.lock() = "FILES".to_string();
    let start = primary
        .start_recovery(StartRecoveryRequest {
            table_id: shard_id.table.0,
            shard: shard_id.shard,
            target_allocation_id: role.allocation_id.clone(),
            target_node: node.node_id().to_string(),
        })
        .await
        .map_err(|status| failed(format!("the primary refused: {}", status.message())))?
        .into_inner();
    progress
        .files_total
        .store(start.files.len() as u64, Ordering::Release);
    progress.bytes_total.store(
        start
            .files
            .iter()
            .fold(0u64, |total, f| total.saturating_add(f.size)),
        Ordering::Release,
    );
    let shard_dir = node.shard_dir(shard_id);
    let incoming = shard_dir.join("recovering");
    let current = shard_dir.join("index");
    let io = |source: std::io::Error| Error::Io { shard_id, source };
    let _ = std::fs::remove_dir_all(&incoming);
    std::fs::create_dir_all(&incoming).map_err(io)?;
    let mut throttle = Throttle::new(node.clone());
    for file in &start.files {
        let name =
            safe_name(&file.name).ok_or_else(|| failed(format!("bad file name {}", file.name)))?;
        let local = current.join(name);
        let target = incoming.join(name);
        let reusable = matches!(
            file_checksum_blocking(local.clone()).await,
            Ok((size, crc)) if size == file.size && crc == file.crc32
        );
        if reusable {
            std::fs::hard_link(&local, &target).map_err(io)?;
            progress.bytes_done.fetch_add(file.size, Ordering::AcqRel);
        } else {
            fetch_file(
                &mut primary,
                shard_id,
                &start.recovery_id,
                file,
                &target,
                progress,
                &mut throttle,
            )
            .await?;
        }
        progress.files_done.fetch_add(1, Ordering::AcqRel);
    }
    crate::durable_file::sync_dir(&incoming).map_err(io)?;
    // The copy's old files (a copy that came back) give way to the recovered ones.
    node.close_shard(shard_id);
    let replaced = shard_dir.join("index.replaced");
    let _ = std::fs::remove_dir_all(&replaced);
    if current.exists() {
        std::fs::rename(&current, &replaced).map_err(io)?;
    }
    std::fs::rename(&incoming, &current).map_err(io)?;
    let _ = std::fs::remove_dir_all(&replaced);
    let _ = std::fs::remove_dir_all(shard_dir.join("translog"));
    crate::durable_file::sync_dir(&shard_dir).map_err(io)?;
    // The files are this copy's now: a restart opens them as this copy, never as another.
    node.write_copy_file(shard_id, &role.allocation_id)?;
    let opened = {
        let table = table.clone();
        let dir = shard_dir.clone();
        tokio::task::spawn_blocking(move || Shard::open(shard_id, &dir, table))
            .await
            .map_err(|e| failed(e.to_string()))??
    };
    let shard = Arc::new(opened);
    shard.remember_answers(&start.answers);
    shard.set_role(CopyRole {
        primary: false,
        primary_term: source.primary_term,
        ..role.clone()
    });
    node.install_shard(shard.clone());
    *progress.stage.lock() = "OPERATIONS".to_string();
    let mut ops = primary
        .recovery_ops(RecoveryOpsRequest {
            recovery_id: start.recovery_id.clone(),
        })
        .await
        .map_err(|status| failed(format!("operations: {}", status.message())))?
        .into_inner();
    while let Some(message) = ops
        .message()
        .await
        .map_err(|status| failed(format!("operations: {}", status.message())))?
    {
        let decoded: Vec<TranslogOp> = message
            .ops
            .iter()
            .map(|bytes| TranslogOp::decode(bytes.as_slice()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| failed(format!("undecodable operation: {e}")))?;
        let count = decoded.len() as u64;
        let target = shard.clone();
        let term = source.primary_term;
        tokio::task::spawn_blocking(move || {
            decoded
                .iter()
                .try_for_each(|op| target.apply_replicated(op, term.max(op.primary_term)))
        })
        .await
        .map_err(|e| failed(e.to_string()))??;
        progress.operations.fetch_add(count, Ordering::AcqRel);
    }
    // Once started it serves reads: it shows at least what the primary showed when the
    // copy was built (a refresh the copy missed while recovering included).
    let visible = shard.clone();
    tokio::task::spawn_blocking(move || visible.refresh())
        .await
        .map_err(|e| failed(e.to_string()))??;
    Ok(start.recovery_id)
}

/// Keeps one recovery's fetching under `indices.recovery.max_bytes_per_sec` (read again for
/// every chunk, so a changed setting applies at once), so a recovery does not starve queries.
struct Throttle {
    node: Arc<DataNode>,
    started: std::time::Instant,
    fetched: u64,
}

impl Throttle {
    fn new(node: Arc<DataNode>) -> Throttle {
        Throttle {
            node,
            started: std::time::Instant::now(),
            fetched: 0,
        }
    }

    /// Counts `bytes` fetched and sleeps until the rate allows them.
    async fn pace(&mut self, bytes: u64) {
        self.fetched = self.fetched.saturating_add(bytes);
        let Some(rate) = self.node.recovery_rate() else {
            // Unbounded now: later pacing starts from here.
            self.started = std::time::Instant::now();
            self.fetched = 0;
            return;
        };
        let due = Duration::from_secs_f64(self.fetched as f64 / rate as f64);
        let elapsed = self.started.elapsed();
        if due > elapsed {
            tokio::time::sleep(due - elapsed).await;
        }
    }
}

/// A file name from the primary, refused if it is not a plain name in the index directory.
fn safe_name(name: &str) -> Option<&str> {
    let plain = !name.is_empty()
        && !name.contains('/')
        && !name.contains('\\')
        && name != "."
        && name != "..";
    plain.then_some(name)
}

async fn file_checksum_blocking(path: PathBuf) -> std::io::Result<(u64, u32)> {
    tokio::task::spawn_blocking(move || crate::shard::file_checksum(&path))
        .await
        .map_err(std::io::Error::other)?
}

async fn fetch_file(
    primary: &mut ShardServiceClient<SignedChannel>,
    shard_id: ShardId,
    recovery_id: &str,
    file: &creek_proto::v1::RecoveryFile,
    target: &Path,
    progress: &RecoveryProgress,
    throttle: &mut Throttle,
) -> Result<()> {
    use std::io::Write;
    let failed = |reason: String| Error::Recovery { shard_id, reason };
    let io = |source: std::io::Error| failed(format!("writing {}: {source}", target.display()));
    let mut out = std::fs::File::create(target).map_err(io)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut offset = 0u64;
    while offset < file.size {
        let length = (file.size - offset).min(u64::from(CHUNK_BYTES)) as u32;
        let chunk = primary
            .fetch_file_chunk(FileChunkRequest {
                recovery_id: recovery_id.to_string(),
                name: file.name.clone(),
                offset,
                length,
            })
            .await
            .map_err(|status| failed(format!("fetching {}: {}", file.name, status.message())))?
            .into_inner();
        if chunk.data.is_empty() || chunk.data.len() as u64 > u64::from(length) {
            return Err(failed(format!(
                "the primary sent a bad chunk of {}",
                file.name
            )));
        }
        hasher.update(&chunk.data);
        out.write_all(&chunk.data).map_err(io)?;
        offset += chunk.data.len() as u64;
        throttle.pace(chunk.data.len() as u64).await;
        progress
            .bytes_done
            .fetch_add(chunk.data.len() as u64, Ordering::AcqRel);
    }
    out.sync_all().map_err(io)?;
    if hasher.finalize() != file.crc32 {
        return Err(failed(format!("checksum mismatch for {}", file.name)));
    }
    Ok(())
}
