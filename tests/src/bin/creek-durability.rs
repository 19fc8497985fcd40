//! Durability check: clients insert rows while `creek dev` is killed with SIGKILL, again and
//! again; after every restart each acknowledged row must be there, and the restarted process
//! must answer every statement it accepts (the first ones right after its port opens
//! included: a restart must never serve from a stale data-node address).
//!
//! `creek-durability [--cycles N]` (default 1; `tests/run` runs a few, the README gives the
//! long form).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;
use creek_tests::CreekServer;
use tokio_postgres::{Client, NoTls};

#[derive(Parser)]
struct Args {
    /// How many times to kill -9 and restart the server under load.
    #[arg(long, default_value_t = 1)]
    cycles: u32,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    writers: u64,
}

async fn connect(server: &CreekServer) -> anyhow::Result<Client> {
    let (client, connection) = tokio_postgres::connect(&server.pg_config(""), NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Inserts rows `first, first + stride, ...` one per statement until an insert fails;
/// returns the ids the server acknowledged.
async fn write_until_failure(client: Client, first: i64, stride: i64) -> Vec<i64> {
    let mut acknowledged = Vec::new();
    let mut id = first;
    loop {
        let sql = format!("INSERT INTO acked (id, payload) VALUES ({id}, 'row {id}')");
        match client.simple_query(&sql).await {
            Ok(_) => acknowledged.push(id),
            Err(_) => return acknowledged,
        }
        id += stride;
    }
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
    let mut server = CreekServer::start(&data.path().join("creek"))?;
    connect(&server)
        .await?
        .batch_execute(
            "CREATE TABLE acked (id BIGINT PRIMARY KEY, payload TEXT) CLUSTERED INTO 3 SHARDS",
        )
        .await?;
    let started = Instant::now();
    let mut acknowledged: BTreeSet<i64> = BTreeSet::new();
    let mut next_id: i64 = 0;
    for cycle in 1..=args.cycles {
        let mut writers = Vec::new();
        for writer in 0..args.writers {
            let client = connect(&server).await?;
            writers.push(tokio::spawn(write_until_failure(
                client,
                next_id + writer as i64,
                args.writers as i64,
            )));
        }
        // Kill at a different moment in every cycle, while all writers are busy.
        let delay = 300 + (u64::from(cycle) * 7919) % 1200;
        tokio::time::sleep(Duration::from_millis(delay)).await;
        server.kill_hard()?;
        let mut written_this_cycle = 0;
        for writer in writers {
            let ids = writer.await?;
            written_this_cycle += ids.len();
            acknowledged.extend(ids);
        }
        if written_this_cycle < 10 {
            bail!(
                "cycle {cycle}: only {written_this_cycle} rows were acknowledged before the kill; \
                 the test proves nothing"
            );
        }
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
        "durability: {} kill -9 cycles, {} acknowledged rows, none lost, in {:?}",
        args.cycles,
        acknowledged.len(),
        started.elapsed()
    );
    eprintln!("1 passed, 0 failed");
    Ok(())
}
