//! Workloads that record what was acknowledged, and the checks run after faults heal: every
//! fault test (kills, stops, cut links, moves) drives its cluster with these and judges it by
//! them, so they mean the same thing everywhere.
//!
//! This module runs clients and reads system tables; it never starts or harms nodes.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::ensure;
use tokio_postgres::error::SqlState;
use tokio_postgres::Client;

use crate::{connect, rows, wait_for, TestCluster};

/// A std mutex that shrugs off poisoning (a panicked writer task must not hide the ledger).
pub struct Mutex<T>(std::sync::Mutex<T>);

impl<T> Mutex<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> Self {
        Mutex(std::sync::Mutex::new(value))
    }

    /// Locks, even after a panic elsewhere.
    pub fn lock(&self) -> std::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// A deterministic generator (xorshift64*): a seed replays the same faults.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    /// The next number.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A number below `n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// What the writers saw.
#[derive(Default)]
pub struct Ledger {
    /// Keys whose INSERT was acknowledged: they must be there, once.
    pub acknowledged: Vec<i64>,
    /// Keys whose INSERT failed: they may or may not be there.
    pub uncertain: Vec<i64>,
    /// The errors of the failed inserts.
    pub errors: Vec<String>,
    /// Keys whose INSERT was refused as a duplicate: every key is sent by one writer once,
    /// so this is a retry that ran twice.
    pub false_duplicates: Vec<i64>,
    /// Keys whose acknowledged INSERT the same session's next scan did not return
    /// (read-your-writes broken).
    pub unseen_writes: Vec<i64>,
    /// How many such read-backs answered.
    pub read_backs: usize,
}

/// Every this many acknowledged inserts, a writer reads its last row back by a scan (a
/// range, not a key lookup, which is real-time anyway: `BETWEEN id AND id` would be one).
const READ_BACK_EVERY: i64 = 5;

/// How long a writer waits for one statement (the coordinator retries writes for 30 s).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(45);

/// Unique-key writers inserting `(id, 'w<n>')` into `table` until told to stop.
pub struct Writers {
    /// Set to stop the writers.
    pub stop: Arc<AtomicBool>,
    /// What they saw.
    pub ledger: Arc<Mutex<Ledger>>,
    /// The longest acknowledged insert since last reset, in ms.
    pub longest_ms: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Writers {
    /// Starts `count` writers, writer `w` on coordinator `coordinator + w` of `cluster`
    /// (wrapping around), with keys from `first_id` on (writer `w` uses
    /// `first_id + w * 1e6 + n`).
    pub fn start(
        cluster: &TestCluster,
        coordinator: usize,
        table: &str,
        first_id: i64,
        count: usize,
    ) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let longest_ms = Arc::new(AtomicU64::new(0));
        let tasks = (0..count)
            .map(|writer| {
                let config = cluster.pg_config(coordinator + writer, "");
                let table = table.to_string();
                let (stop, ledger, longest) = (stop.clone(), ledger.clone(), longest_ms.clone());
                tokio::spawn(async move {
                    let mut client: Option<Client> = None;
                    let mut next = 0i64;
                    while !stop.load(Ordering::Acquire) {
                        if client.as_ref().is_none_or(|c| c.is_closed()) {
                            client = connect(&config).await.ok();
                            if client.is_none() {
                                tokio::time::sleep(Duration::from_millis(100)).await;
                                continue;
                            }
                        }
                        let id = first_id + writer as i64 * 1_000_000 + next;
                        next += 1;
                        let started = Instant::now();
                        let sql = format!("INSERT INTO {table} (id, v) VALUES ({id}, 'w{writer}')");
                        // A statement stuck behind a cut link is given up (and its
                        // connection dropped) after longer than the server's own retries.
                        let result = tokio::time::timeout(
                            STATEMENT_TIMEOUT,
                            client.as_ref().expect("connected").simple_query(&sql),
                        )
                        .await;
                        let took = started.elapsed().as_millis() as u64;
                        let acknowledged = matches!(result, Ok(Ok(_)));
                        {
                            let mut book = ledger.lock();
                            match result {
                                Ok(Ok(_)) => {
                                    book.acknowledged.push(id);
                                    longest.fetch_max(took, Ordering::AcqRel);
                                }
                                Ok(Err(error)) => {
                                    if error.code() == Some(&SqlState::UNIQUE_VIOLATION) {
                                        book.false_duplicates.push(id);
                                    }
                                    book.uncertain.push(id);
                                    book.errors.push(format!("{error:?}"));
                                }
                                Err(_) => {
                                    book.uncertain.push(id);
                                    book.errors
                                        .push(format!("no answer in {STATEMENT_TIMEOUT:?}"));
                                    client = None;
                                }
                            }
                        }
                        if acknowledged && next % READ_BACK_EVERY == 0 {
                            let sql = format!(
                                "SELECT count(*) FROM {table} WHERE id >= {id} AND id < {id} + 1"
                            );
                            let read = tokio::time::timeout(
                                STATEMENT_TIMEOUT,
                                client.as_ref().expect("connected").simple_query(&sql),
                            )
                            .await;
                            // A read that fails (its copy lost mid-fault) proves nothing
                            // either way; one that answers must include the write.
                            match read {
                                Ok(Ok(messages)) => {
                                    let mut ledger = ledger.lock();
                                    ledger.read_backs += 1;
                                    if count_of(&messages) != Some(1) {
                                        ledger.unseen_writes.push(id);
                                    }
                                }
                                Ok(Err(_)) => {}
                                Err(_) => client = None,
                            }
                        }
                    }
                })
            })
            .collect();
        Writers {
            stop,
            ledger,
            longest_ms,
            tasks,
        }
    }

    /// How many inserts were acknowledged so far.
    pub fn acknowledged(&self) -> usize {
        self.ledger.lock().acknowledged.len()
    }

    /// Stops the writers and returns what they saw.
    pub async fn finish(self) -> anyhow::Result<Ledger> {
        self.stop.store(true, Ordering::Release);
        for task in self.tasks {
            task.await?;
        }
        let ledger = std::mem::take(&mut *self.ledger.lock());
        Ok(ledger)
    }
}

/// The single integer a `SELECT count(*)` answered.
fn count_of(messages: &[tokio_postgres::SimpleQueryMessage]) -> Option<i64> {
    messages.iter().find_map(|message| match message {
        tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0)?.parse().ok(),
        _ => None,
    })
}

/// What [`verify_ledger`] found.
pub struct Verified {
    /// Failed inserts whose row is there anyway.
    pub uncertain_present: usize,
}

/// Checks `table` against `ledger`: every acknowledged key present exactly once, and no key
/// that no writer sent.
pub async fn verify_ledger(
    client: &Client,
    table: &str,
    ledger: &Ledger,
) -> anyhow::Result<Verified> {
    ensure!(
        ledger.false_duplicates.is_empty(),
        "{} inserts of new keys into {table} were refused as duplicates (a retried write ran \
         twice), e.g. {:?}",
        ledger.false_duplicates.len(),
        &ledger.false_duplicates[..ledger.false_duplicates.len().min(10)]
    );
    ensure!(
        ledger.unseen_writes.is_empty(),
        "{} of {} read-backs by the writing session missed its acknowledged insert into \
         {table} (read-your-writes broken), e.g. {:?}",
        ledger.unseen_writes.len(),
        ledger.read_backs,
        &ledger.unseen_writes[..ledger.unseen_writes.len().min(10)]
    );
    client
        .batch_execute(&format!("REFRESH TABLE {table}"))
        .await?;
    let present: Vec<i64> = rows(client, &format!("SELECT id FROM {table}"))
        .await?
        .into_iter()
        .map(|r| r[0].parse::<i64>().map_err(anyhow::Error::from))
        .collect::<anyhow::Result<_>>()?;
    let unique: HashSet<i64> = present.iter().copied().collect();
    ensure!(
        unique.len() == present.len(),
        "{} rows of {table} are duplicated",
        present.len() - unique.len()
    );
    let lost: Vec<i64> = ledger
        .acknowledged
        .iter()
        .filter(|id| !unique.contains(id))
        .copied()
        .collect();
    ensure!(
        lost.is_empty(),
        "{} acknowledged rows of {table} lost, e.g. {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    let sent: HashSet<i64> = ledger
        .acknowledged
        .iter()
        .chain(&ledger.uncertain)
        .copied()
        .collect();
    let invented = unique.iter().filter(|id| !sent.contains(id)).count();
    ensure!(
        invented == 0,
        "{invented} rows of {table} appeared that no client inserted"
    );
    Ok(Verified {
        uncertain_present: ledger
            .uncertain
            .iter()
            .filter(|id| unique.contains(id))
            .count(),
    })
}

/// `table`'s health in `sys.health` (`MISSING` when it has no row).
pub async fn health(client: &Client, table: &str) -> anyhow::Result<String> {
    let found = rows(
        client,
        &format!("SELECT health FROM sys.health WHERE table_name = '{table}'"),
    )
    .await?;
    Ok(found
        .first()
        .map(|r| r[0].clone())
        .unwrap_or_else(|| "MISSING".into()))
}

/// Waits until `table` is GREEN as coordinator 0 sees it; returns how long that took.
pub async fn wait_green(
    cluster: &TestCluster,
    table: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let config = cluster.pg_config(0, "");
    wait_for(&format!("{table} GREEN"), limit, async || {
        let client = connect(&config).await?;
        Ok(health(&client, table).await? == "GREEN")
    })
    .await
}

/// The copies of `table` and the allocation explanations, for failure reports.
pub async fn describe(client: &Client, table: &str) -> String {
    let shards = rows(
        client,
        &format!(
            "SELECT id, node_id, state, \"primary\", in_sync, allocation_id, primary_term, failure \
             FROM sys.shards WHERE table_name = '{table}' ORDER BY id, node_id"
        ),
    )
    .await;
    let why = rows(client, "SELECT * FROM sys.allocations").await;
    let version = rows(client, "SELECT state_version FROM sys.cluster").await;
    format!("sys.shards: {shards:?}\nsys.allocations: {why:?}\nstate version: {version:?}")
}

/// Checks that every shard's started copies hold the same documents, once no copy is moving
/// or recovering any more (rebalancing may still run after GREEN).
pub async fn check_converged(client: &Client, table: &str) -> anyhow::Result<()> {
    wait_for(
        &format!("{table}'s copies settle"),
        Duration::from_secs(120),
        async || {
            let moving = rows(
                client,
                &format!(
                    "SELECT count(*) FROM sys.shards WHERE table_name = '{table}' \
                     AND state <> 'STARTED'"
                ),
            )
            .await?;
            Ok(moving == [["0"]])
        },
    )
    .await
    .map_err(|error| {
        let context = futures::executor::block_on(describe(client, table));
        error.context(context)
    })?;
    client
        .batch_execute(&format!("REFRESH TABLE {table}"))
        .await?;
    let copies = rows(
        client,
        &format!(
            "SELECT id, node_id, num_docs, content_checksum, seq_no, state FROM sys.shards \
             WHERE table_name = '{table}' ORDER BY id, node_id"
        ),
    )
    .await?;
    let mut by_shard: BTreeMap<String, Vec<&Vec<String>>> = BTreeMap::new();
    for copy in &copies {
        ensure!(
            copy[5] == "STARTED",
            "a copy of {table} is not started: {copy:?}"
        );
        by_shard.entry(copy[0].clone()).or_default().push(copy);
    }
    for (shard, copies) in by_shard {
        let first = copies[0];
        for other in &copies[1..] {
            ensure!(
                other[2] == first[2] && other[3] == first[3],
                "copies of shard {shard} of {table} differ: {first:?} vs {other:?}"
            );
        }
    }
    Ok(())
}

/// Sends signal `name` (`STOP`, `CONT`, ...) to `pid`.
pub fn signal(pid: u32, name: &str) -> anyhow::Result<()> {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()?;
    ensure!(status.success(), "kill -{name} {pid} failed");
    Ok(())
}
