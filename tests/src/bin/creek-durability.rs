//! Durability check: clients insert rows while `creek dev` is killed with SIGKILL, again and
//! again; after every restart each acknowledged row must be there, and the restarted process
//! must answer every statement it accepts (the first ones right after its port opens
//! included: a restart must never serve from a stale data-node address).
//!
//! With `--lose-unsynced`, the server runs under `tests/faults/lose_unsynced.c` (built here
//! with the C compiler, loaded with `LD_PRELOAD`), which makes a kill -9 also lose every
//! translog byte that was written but not fsynced, as a power failure would. A first pass
//! over a table with `translog.durability = 'async'` must then lose acknowledged rows (the
//! fault is real), and the checked pass over a default table must lose none (every
//! acknowledgement came after an fsync).
//!
//! `creek-durability [--cycles N] [--lose-unsynced]` (default 1 cycle; `tests/run` runs a
//! few, the README gives the long form).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use creek_tests::{lose_unsynced_env, CreekServer};
use tokio_postgres::{Client, NoTls};

#[derive(Parser)]
struct Args {
    /// How many times to kill -9 and restart the server under load.
    #[arg(long, default_value_t = 1)]
    cycles: u32,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
    /// Lose unsynced translog bytes on every kill (see the module documentation).
    #[arg(long)]
    lose_unsynced: bool,
}

async fn connect(server: &CreekServer) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(&server.pg_config(""), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Inserts rows `first, first + stride, ...` into `table` one per statement until an insert
/// fails; returns the ids the server acknowledged.
async fn write_until_failure(client: Client, table: String, first: i64, stride: i64) -> Vec<i64> {
    let mut acknowledged = Vec::new();
    let mut id = first;
    loop {
        let sql = format!("INSERT INTO {table} (id, payload) VALUES ({id}, 'row {id}')");
        match client.simple_query(&sql).await {
            Ok(_) => acknowledged.push(id),
            Err(_) => return acknowledged,
        }
        id += stride;
    }
}

/// Writes with `writers` clients until the server is killed at a moment depending on
/// `cycle`; returns the acknowledged ids.
async fn write_and_kill(
    server: &mut CreekServer,
    table: &str,
    writers: u64,
    first_id: i64,
    cycle: u32,
) -> anyhow::Result<Vec<i64>> {
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let client = connect(server).await?;
        tasks.push(tokio::spawn(write_until_failure(
            client,
            table.to_string(),
            first_id + writer as i64,
            writers as i64,
        )));
    }
    // Kill at a different moment in every cycle, while all writers are busy.
    let delay = 300 + (u64::from(cycle) * 7919) % 1200;
    tokio::time::sleep(Duration::from_millis(delay)).await;
    server.kill_hard()?;
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.extend(task.await?);
    }
    if acknowledged.len() < 10 {
        bail!(
            "cycle {cycle}: only {} rows were acknowledged before the kill; the test proves nothing",
            acknowledged.len()
        );
    }
    Ok(acknowledged)
}

/// The fault's negative control: a table whose writes are acknowledged before their fsync
/// must lose some of them under `lose_unsynced`, or the fault did not take effect.
async fn unsynced_writes_are_lost(server: &mut CreekServer) -> anyhow::Result<()> {
    connect(server)
        .await?
        .batch_execute(
            "CREATE TABLE unsynced (id BIGINT PRIMARY KEY, payload TEXT) \
             CLUSTERED INTO 3 SHARDS WITH (\"translog.durability\" = 'async')",
        )
        .await?;
    let mut lost_total = 0;
    for cycle in 1..=5u32 {
        let acknowledged =
            write_and_kill(server, "unsynced", 4, i64::from(cycle) * 10_000_000, cycle).await?;
        server.restart()?;
        let client = connect(server).await?;
        client.batch_execute("REFRESH TABLE unsynced").await?;
        let present: BTreeSet<i64> = client
            .query("SELECT id FROM unsynced", &[])
            .await?
            .iter()
            .map(|r| r.get::<_, i64>(0))
            .collect();
        let lost = acknowledged
            .iter()
            .filter(|id| !present.contains(id))
            .count();
        lost_total += lost;
        eprintln!(
            "control cycle {cycle}: async durability lost {lost} of {} acknowledged rows",
            acknowledged.len()
        );
        if lost_total > 0 {
            return Ok(());
        }
    }
    bail!("under lose_unsynced an async-durability table lost no acknowledged row: the fault is not in effect")
}

/// Runs the statements a client would run right after a restart and checks the answers:
/// every acknowledged row is present, and a new write and a key lookup work.
async fn check_after_restart(
    server: &CreekServer,
    acknowledged: &BTreeSet<i64>,
    cycle: u32,
) -> anyhow::Result<()> {
    let client = connect(server).await.context("connecting after restart")?;
    client
        .batch_execute("REFRESH TABLE acked")
        .await
        .context("REFRESH right after restart")?;
    let rows = client
        .query("SELECT id FROM acked", &[])
        .await
        .context("scan right after restart")?;
    let present: BTreeSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
    let missing: Vec<i64> = acknowledged.difference(&present).copied().collect();
    if !missing.is_empty() {
        bail!(
            "cycle {cycle}: {} acknowledged rows lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    let probe = -(i64::from(cycle) + 1);
    client
        .execute(
            "INSERT INTO acked (id, payload) VALUES ($1, 'probe')",
            &[&probe],
        )
        .await
        .context("insert right after restart")?;
    let found = client
        .query("SELECT payload FROM acked WHERE id = $1", &[&probe])
        .await
        .context("key lookup right after restart")?;
    if found.len() != 1 {
        bail!("cycle {cycle}: a row written after the restart is not found by its key");
    }
    eprintln!(
        "cycle {cycle}: {} rows acknowledged so far, all {} present after kill -9 and restart",
        acknowledged.len(),
        present.len()
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let data = tempfile::tempdir()?;
    let env = if args.lose_unsynced {
        lose_unsynced_env(data.path())?
    } else {
        Vec::new()
    };
    let mut server = CreekServer::start_with_env(&data.path().join("creek"), env)?;
    if args.lose_unsynced {
        if let Err(error) = unsynced_writes_are_lost(&mut server).await {
            bail!("{error:#}\nserver log:\n{}", server.log());
        }
    }
    connect(&server)
        .await?
        .batch_execute(
            // Refreshes every 20 ms and flushes every 64 KiB of translog, so that kills land
            // during refreshes, flushes and the merges they start.
            "CREATE TABLE acked (id BIGINT PRIMARY KEY, payload TEXT) CLUSTERED INTO 3 SHARDS \
             WITH (refresh_interval = 20, \"translog.flush_threshold_size\" = '64kb')",
        )
        .await?;
    let started = Instant::now();
    let mut acknowledged: BTreeSet<i64> = BTreeSet::new();
    let mut next_id: i64 = 0;
    for cycle in 1..=args.cycles {
        acknowledged
            .extend(write_and_kill(&mut server, "acked", args.writers, next_id, cycle).await?);
        // Beyond every id tried, acknowledged or not: an insert cut off by the kill may
        // have been written without its acknowledgement.
        next_id += 10_000_000;
        server
            .restart()
            .with_context(|| format!("restarting after kill -9 in cycle {cycle}"))?;
        if let Err(error) = check_after_restart(&server, &acknowledged, cycle).await {
            bail!("{error:#}\nserver log:\n{}", server.log());
        }
    }
    eprintln!(
        "durability{}: {} kill -9 cycles, {} acknowledged rows, none lost, in {:?}",
        if args.lose_unsynced {
            " (unsynced bytes lost on every kill)"
        } else {
            ""
        },
        args.cycles,
        acknowledged.len(),
        started.elapsed()
    );
    eprintln!("1 passed, 0 failed");
    Ok(())
}
