//! Replication under faults, end to end, on one coordinator and three data nodes started as
//! separate processes on loopback ports (`d3` is tagged `tier=cold`):
//!
//! 1. Unique-key inserts from 4 clients that record every acknowledged row, while a data node
//!    picked by the seed is killed with SIGKILL and restarted, cycle after cycle; then
//!    SIGSTOP/SIGCONT of a node (cut off from everyone, then back). After healing: every
//!    acknowledged row is present exactly once, nothing appears that no client sent, the
//!    table goes GREEN by itself, and every shard's copies hold the same documents (doc count
//!    and content checksum in `sys.shards`).
//! 2. An OCC counter: clients increment one row with `_seq_no`/`_primary_term` conditions while
//!    the node of its primary is killed; the final value equals the successful updates.
//! 3. SIGTERM to a node holding primaries (default `cluster.graceful_stop.min_availability =
//!    'primaries'`): it hands them over and exits cleanly with no insert failing or pausing
//!    for the node timeout; a `'full'` stop that cannot drain times out and the node keeps
//!    serving, and with `force = true` it exits after the timeout.
//! 4. `ALTER TABLE .. SET (number_of_replicas = 2)` builds new copies while writes go on; an
//!    allocation rule moves every shard to the cold node; `ALTER CLUSTER DECOMMISSION` drains a
//!    node and its process exits; no statement fails meanwhile.
//!
//! With `--lose-unsynced` the data nodes run under `tests/faults/lose_unsynced.c` and the
//! table's translog is async, so a killed node loses acknowledged operations for real; the
//! other copies must still have every one of them.
//!
//! Prints what it measures (longest write pause after a kill, time to GREEN). Exits non-zero
//! on the first failed check.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use clap::Parser;
use creek_tests::workload::{
    check_converged, describe, health, signal, verify_ledger, wait_green, Rng, Writers,
};
use creek_tests::{connect, rows, wait_for, TestCluster};
use tokio_postgres::Client;

async fn coordinator(cluster: &TestCluster) -> anyhow::Result<Client> {
    connect(&cluster.pg_config(0, "")).await
}

#[derive(Parser)]
struct Args {
    /// Kill/restart cycles of the insert workload.
    #[arg(long, default_value_t = 3)]
    cycles: usize,
    /// Seconds a killed node stays down (writes go on meanwhile).
    #[arg(long, default_value_t = 6)]
    down_seconds: u64,
    /// Picks the nodes to kill.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Run the data nodes under `tests/faults/lose_unsynced.c`: every kill also loses the
    /// translog bytes not yet fsynced.
    #[arg(long)]
    lose_unsynced: bool,
    /// Run only the part that adds, moves and drains copies (3).
    #[arg(long)]
    only_moves: bool,
    /// Keep the nodes' data and logs in this directory (default: a temporary one).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let temporary = tempfile::tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let env = if args.lose_unsynced {
        creek_tests::lose_unsynced_env(&root)?
    } else {
        Vec::new()
    };
    let mut cluster = TestCluster::start_with_env(&root.join("cluster"), 1, 3, &env).await?;
    let outcome = scenario(&mut cluster, &args, &root.join("cluster")).await;
    if outcome.is_err() {
        eprintln!("{}", cluster.log_tail(30));
    }
    outcome
}

async fn scenario(
    cluster: &mut TestCluster,
    args: &Args,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    let mut rng = Rng::new(args.seed);
    let client = coordinator(cluster).await?;
    // Under lost unsynced bytes the table's translog is async: a killed copy then really
    // loses acknowledged operations, which only the other copies still hold.
    let durability = if args.lose_unsynced {
        ", \"translog.durability\" = 'async'"
    } else {
        ""
    };
    client
        .batch_execute(&format!(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT) CLUSTERED INTO 6 SHARDS \
             WITH (number_of_replicas = 1{durability})"
        ))
        .await?;
    let green = wait_green(cluster, "t", Duration::from_secs(30)).await?;
    let placement = rows(
        &client,
        "SELECT id, count(*), count(DISTINCT node_id), sum(CASE WHEN \"primary\" THEN 1 ELSE 0 END) \
         FROM sys.shards WHERE table_name = 't' AND state = 'STARTED' GROUP BY id ORDER BY id",
    )
    .await?;
    ensure!(
        placement.len() == 6
            && placement
                .iter()
                .all(|r| r[1] == "2" && r[2] == "2" && r[3] == "1"),
        "every shard needs a primary and a replica on two nodes: {placement:?}"
    );
    eprintln!(
        "copies: 6 shards x 2 copies on distinct nodes, GREEN {:.1} s after CREATE",
        green.as_secs_f64()
    );

    if args.only_moves {
        return reshape(cluster, root).await;
    }
    // 1. Inserts under kill -9 and SIGSTOP.
    let writers = Writers::start(cluster, 0, "t", 0, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut pauses = Vec::new();
    for cycle in 0..args.cycles {
        // The victim is a node that holds copies of t (one that just came back may hold
        // none until rebalancing gives it some).
        let holders = rows(
            &coordinator(cluster).await?,
            "SELECT DISTINCT node_id FROM sys.shards WHERE table_name = 't' AND state = 'STARTED' \
             ORDER BY node_id",
        )
        .await?;
        let holder = &holders[rng.below(holders.len())][0];
        let victim = cluster
            .data_nodes
            .iter()
            .position(|n| &n.id == holder)
            .context("the victim's process")?;
        writers.longest_ms.store(0, Ordering::Release);
        let before = writers.acknowledged();
        cluster.data_nodes[victim].process.kill_hard()?;
        let killed = Instant::now();
        let observer = coordinator(cluster).await?;
        let yellow = wait_for("YELLOW after a kill", Duration::from_secs(20), async || {
            Ok(health(&observer, "t").await? == "YELLOW")
        })
        .await?;
        tokio::time::sleep(Duration::from_secs(args.down_seconds)).await;
        let during = writers.acknowledged() - before;
        ensure!(
            during > 0,
            "no write was acknowledged while d{} was down",
            victim + 1
        );
        pauses.push(writers.longest_ms.load(Ordering::Acquire));
        // Every second node comes back as a fresh one with an empty disk: its copies are
        // gone and must be rebuilt from the others.
        let wiped = cycle % 2 == 1;
        if wiped {
            let dir = root.join(&cluster.data_nodes[victim].id);
            std::fs::remove_dir_all(&dir).with_context(|| format!("wiping {}", dir.display()))?;
        }
        cluster.data_nodes[victim].process.restart()?;
        // Back in the cluster (alive in every coordinator's view), then GREEN.
        cluster.wait_ready(Duration::from_secs(60)).await?;
        let healed = wait_green(cluster, "t", Duration::from_secs(60)).await?;
        eprintln!(
            "cycle {}: d{} killed{}; YELLOW after {:.1} s; {during} rows acknowledged while it was down; \
             longest insert {} ms; GREEN {:.1} s after its restart ({:.1} s after the kill)",
            cycle + 1,
            victim + 1,
            if wiped { " (back with an empty disk)" } else { "" },
            yellow.as_secs_f64(),
            pauses.last().copied().unwrap_or(0),
            healed.as_secs_f64(),
            killed.elapsed().as_secs_f64()
        );
    }
    // A node that stops answering (SIGSTOP: cut off from everyone) and comes back.
    let frozen = rng.below(cluster.data_nodes.len());
    let pid = cluster.data_nodes[frozen].process.pid().context("no pid")?;
    signal(pid, "STOP")?;
    tokio::time::sleep(Duration::from_secs(args.down_seconds)).await;
    signal(pid, "CONT")?;
    let healed = wait_green(cluster, "t", Duration::from_secs(60)).await?;
    eprintln!(
        "d{} stopped for {} s and resumed: GREEN {:.1} s later",
        frozen + 1,
        args.down_seconds,
        healed.as_secs_f64()
    );
    let ledger = writers.finish().await?;
    let client = coordinator(cluster).await?;
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    let verified = verify_ledger(&client, "t", &ledger).await?;
    check_converged(&client, "t").await?;
    eprintln!(
        "inserts: {} acknowledged, none lost, none duplicated; {} failed ({} of them present); \
         copies converged; longest insert after a kill {} ms; {} read-backs saw their \
         session's write",
        ledger.acknowledged.len(),
        ledger.uncertain.len(),
        verified.uncertain_present,
        pauses.iter().max().copied().unwrap_or(0),
        ledger.read_backs,
    );
    if let Some(error) = ledger.errors.first() {
        eprintln!("  first failed insert: {error}");
    }
    ensure!(
        ledger.uncertain.len() <= ledger.acknowledged.len() / 100,
        "too many inserts failed ({}): writes must pause, not fail, while a replica is promoted",
        ledger.uncertain.len()
    );

    // 2. An OCC counter while the primary's node is killed.
    occ_counter(cluster).await?;

    // 3. SIGTERM: a graceful stop hands primaries over first, or times out.
    graceful_stop(cluster).await?;

    // 4. Copies added, moved and drained while writes go on.
    reshape(cluster, root).await?;
    Ok(())
}

async fn occ_counter(cluster: &mut TestCluster) -> anyhow::Result<()> {
    let client = coordinator(cluster).await?;
    client
        .batch_execute(
            "CREATE TABLE counter (id INT PRIMARY KEY, n BIGINT) CLUSTERED INTO 1 SHARDS \
             WITH (number_of_replicas = 1); INSERT INTO counter VALUES (1, 0)",
        )
        .await?;
    wait_green(cluster, "counter", Duration::from_secs(30)).await?;
    let successes = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for _ in 0..3 {
        let config = cluster.pg_config(0, "");
        let (successes, stop) = (successes.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut client: Option<Client> = None;
            while !stop.load(Ordering::Acquire) {
                if client.as_ref().is_none_or(|c| c.is_closed()) {
                    client = connect(&config).await.ok();
                    continue;
                }
                let c = client.as_ref().expect("connected");
                let Ok(read) = rows(c, "SELECT _seq_no, _primary_term, n FROM counter WHERE id = 1").await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let Some(row) = read.first() else { continue };
                let update = format!(
                    "UPDATE counter SET n = {} WHERE id = 1 AND _seq_no = {} AND _primary_term = {}",
                    row[2].parse::<i64>().unwrap_or(0) + 1,
                    row[0],
                    row[1]
                );
                // Only an update that answered "1 row" counts; a failed one must not have
                // applied (it is not retried blindly by the client).
                if let Ok(messages) = c.simple_query(&update).await {
                    let changed = messages.iter().any(|m| {
                        matches!(m, tokio_postgres::SimpleQueryMessage::CommandComplete(1))
                    });
                    if changed {
                        successes.fetch_add(1, Ordering::AcqRel);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let primary = rows(
        &client,
        "SELECT node_id FROM sys.shards WHERE table_name = 'counter' AND \"primary\"",
    )
    .await?;
    let node = primary
        .first()
        .map(|r| r[0].clone())
        .context("the counter's primary")?;
    let index = cluster
        .data_nodes
        .iter()
        .position(|n| n.id == node)
        .context("primary node")?;
    cluster.data_nodes[index].process.kill_hard()?;
    tokio::time::sleep(Duration::from_secs(6)).await;
    cluster.data_nodes[index].process.restart()?;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::Release);
    for task in tasks {
        task.await?;
    }
    wait_green(cluster, "counter", Duration::from_secs(60)).await?;
    let client = coordinator(cluster).await?;
    let value = rows(&client, "SELECT n, _primary_term FROM counter WHERE id = 1").await?;
    let expected = successes.load(Ordering::Acquire);
    ensure!(
        value.first().is_some_and(|r| r[0] == expected.to_string()),
        "counter is {value:?} after {expected} successful conditional updates"
    );
    ensure!(expected > 0, "no conditional update succeeded");
    check_converged(&client, "counter").await?;
    eprintln!(
        "occ counter: {expected} successful conditional increments, final value {} (primary term now {}), \
         with the primary's node {node} killed meanwhile",
        value[0][0], value[0][1]
    );
    Ok(())
}

/// Waits until data node `index`'s process has exited; returns how long that took.
async fn wait_exit(
    cluster: &mut TestCluster,
    index: usize,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let process = &mut cluster.data_nodes[index].process;
    wait_for("the node's process exits", limit, async || {
        Ok(process.exit_status()?.is_some())
    })
    .await
}

async fn graceful_stop(cluster: &mut TestCluster) -> anyhow::Result<()> {
    let client = coordinator(cluster).await?;
    client
        .batch_execute(
            "CREATE TABLE g (id BIGINT PRIMARY KEY, v TEXT) CLUSTERED INTO 6 SHARDS \
             WITH (number_of_replicas = 1)",
        )
        .await?;
    wait_green(cluster, "g", Duration::from_secs(60)).await?;
    let holder = rows(
        &client,
        "SELECT node_id FROM sys.shards WHERE table_name = 'g' AND \"primary\" ORDER BY node_id LIMIT 1",
    )
    .await?;
    let node = holder
        .first()
        .map(|r| r[0].clone())
        .context("a primary's node")?;
    let index = cluster
        .data_nodes
        .iter()
        .position(|n| n.id == node)
        .context("its process")?;
    // Default settings (min_availability = 'primaries'): the primaries move, then it exits.
    let writers = Writers::start(cluster, 0, "g", 0, 2);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let pid = cluster.data_nodes[index].process.pid().context("no pid")?;
    signal(pid, "TERM")?;
    let took = wait_exit(cluster, index, Duration::from_secs(30)).await?;
    let status = cluster.data_nodes[index].process.exit_status()?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "a gracefully stopped node must exit cleanly: {status:?}"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;
    let longest = writers.longest_ms.load(Ordering::Acquire);
    let ledger = writers.finish().await?;
    ensure!(
        ledger.errors.is_empty(),
        "{} inserts failed around a graceful stop; first: {}",
        ledger.errors.len(),
        ledger.errors[0]
    );
    // A node that just vanished pauses writes for the node timeout (3 s); one that handed
    // its primaries over first must not.
    ensure!(
        longest < 2_500,
        "an insert took {longest} ms around a graceful stop"
    );
    cluster.data_nodes[index].process.restart()?;
    cluster.wait_ready(Duration::from_secs(60)).await?;
    wait_green(cluster, "g", Duration::from_secs(60)).await?;
    verify_ledger(&client, "g", &ledger).await?;
    check_converged(&client, "g").await?;
    eprintln!(
        "graceful stop: SIGTERM to {node} holding primaries: exited cleanly after {:.1} s; \
         {} inserts meanwhile, none failed, longest {longest} ms",
        took.as_secs_f64(),
        ledger.acknowledged.len()
    );

    // 'full' with a copy that can go nowhere (only the cold node d3 may hold it): the stop
    // times out, and without force the node keeps running and serving.
    client
        .batch_execute(
            "CREATE TABLE pinned (id INT PRIMARY KEY) CLUSTERED INTO 1 SHARDS WITH \
             (number_of_replicas = 0, \"routing.allocation.require.tier\" = 'cold'); \
             INSERT INTO pinned VALUES (1); \
             SET GLOBAL \"cluster.graceful_stop.min_availability\" = 'full', \
                        \"cluster.graceful_stop.timeout\" = '2s'",
        )
        .await?;
    wait_green(cluster, "pinned", Duration::from_secs(30)).await?;
    let cold = cluster
        .data_nodes
        .iter()
        .position(|n| n.id == "d3")
        .context("d3")?;
    signal(
        cluster.data_nodes[cold].process.pid().context("no pid")?,
        "TERM",
    )?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    ensure!(
        cluster.data_nodes[cold].process.exit_status()?.is_none(),
        "a graceful stop that timed out without force must leave the node running"
    );
    client
        .batch_execute("INSERT INTO pinned VALUES (2)")
        .await?;
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    // With force the same stop ends the process after the timeout.
    client
        .batch_execute("SET GLOBAL \"cluster.graceful_stop.force\" = true")
        .await?;
    signal(
        cluster.data_nodes[cold].process.pid().context("no pid")?,
        "TERM",
    )?;
    let forced = wait_exit(cluster, cold, Duration::from_secs(20)).await?;
    ensure!(
        forced >= Duration::from_millis(1_500),
        "a forced stop must wait for its timeout first (exited after {forced:?})"
    );
    cluster.data_nodes[cold].process.restart()?;
    cluster.wait_ready(Duration::from_secs(60)).await?;
    client
        .batch_execute(
            "RESET GLOBAL \"cluster.graceful_stop.min_availability\", \
             \"cluster.graceful_stop.timeout\", \"cluster.graceful_stop.force\"; \
             DROP TABLE pinned; DROP TABLE g",
        )
        .await?;
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    eprintln!(
        "graceful stop: 'full' that cannot drain timed out and d3 kept serving; with force it \
         exited {:.1} s after SIGTERM",
        forced.as_secs_f64()
    );
    Ok(())
}

async fn count(client: &Client) -> anyhow::Result<String> {
    let found = rows(client, "SELECT count(*) FROM t").await?;
    Ok(found[0][0].clone())
}

async fn reshape(cluster: &mut TestCluster, root: &std::path::Path) -> anyhow::Result<()> {
    let client = coordinator(cluster).await?;
    // Enough data that moving it takes a while (and the throttle below shows).
    client
        .batch_execute(
            "INSERT INTO t SELECT 500000000 + x, repeat(md5(x::text), 6) FROM generate_series(1, 10000) AS s(x); \
             REFRESH TABLE t",
        )
        .await?;
    let total = count(&client).await?;
    let writers = Writers::start(cluster, 0, "t", 100_000_000, 2);

    // New copies under a recovery throttle: the biggest shard's files cannot arrive faster.
    let largest: f64 = rows(
        &client,
        "SELECT max(size) FROM sys.shards WHERE table_name = 't' AND \"primary\"",
    )
    .await?[0][0]
        .parse()?;
    const RATE: f64 = 64.0 * 1024.0;
    client
        .batch_execute(
            "SET GLOBAL \"indices.recovery.max_bytes_per_sec\" = '64kb'; \
             ALTER TABLE t SET (number_of_replicas = 2)",
        )
        .await?;
    let took = wait_green(cluster, "t", Duration::from_secs(120)).await?;
    ensure!(
        took.as_secs_f64() >= largest / RATE * 0.5,
        "a {largest} byte shard recovered in {took:?} under a 64 KiB/s throttle"
    );
    eprintln!(
        "throttle: new copies of shards of up to {:.0} KiB took {:.1} s at 64 KiB/s",
        largest / 1024.0,
        took.as_secs_f64()
    );
    client
        .batch_execute("RESET GLOBAL \"indices.recovery.max_bytes_per_sec\"")
        .await?;
    let copies = rows(
        &client,
        "SELECT count(*) FROM sys.shards WHERE table_name = 't' AND state = 'STARTED'",
    )
    .await?;
    ensure!(
        copies == [["18"]],
        "3 copies of 6 shards expected: {copies:?}"
    );
    eprintln!(
        "number_of_replicas = 2: 18 started copies, GREEN after {:.1} s",
        took.as_secs_f64()
    );

    client
        .batch_execute(
            "ALTER TABLE t SET (number_of_replicas = 0, \"routing.allocation.require.tier\" = 'cold')",
        )
        .await?;
    let took = wait_for(
        "t on the cold node only",
        Duration::from_secs(60),
        async || {
            let nodes = rows(
                &client,
                "SELECT node_id, state FROM sys.shards WHERE table_name = 't'",
            )
            .await?;
            Ok(nodes.len() == 6 && nodes.iter().all(|r| r[0] == "d3" && r[1] == "STARTED"))
        },
    )
    .await
    .map_err(|error| {
        let context = futures::executor::block_on(describe(&client, "t"));
        error.context(context)
    })?;
    eprintln!(
        "require.tier = cold: every shard moved to d3 in {:.1} s",
        took.as_secs_f64()
    );

    client
        .batch_execute(
            "ALTER TABLE t RESET (\"routing.allocation.require.tier\"); \
             ALTER TABLE t SET (number_of_replicas = 1)",
        )
        .await?;
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    // A new node gets copies moved to it.
    cluster.spawn_data_node(root, "d4", "tier=hot", &[])?;
    let took = wait_for("d4 gets copies", Duration::from_secs(90), async || {
        let on_d4 = rows(
            &client,
            "SELECT count(*) FROM sys.shards WHERE node_id = 'd4' AND state = 'STARTED'",
        )
        .await?;
        let settled = rows(
            &client,
            "SELECT count(*) FROM sys.shards WHERE state <> 'STARTED'",
        )
        .await?;
        Ok(on_d4[0][0].parse::<i64>().unwrap_or(0) >= 3 && settled == [["0"]])
    })
    .await?;
    eprintln!(
        "a new data node d4 joined and got copies rebalanced to it in {:.1} s",
        took.as_secs_f64()
    );
    client
        .batch_execute("ALTER CLUSTER DECOMMISSION 'd2'")
        .await?;
    let took = wait_for("d2 drains and exits", Duration::from_secs(90), async || {
        Ok(cluster.data_nodes[1].process.exit_status()?.is_some())
    })
    .await?;
    let status = cluster.data_nodes[1].process.exit_status()?;
    ensure!(
        status.is_some_and(|s| s.success()),
        "a drained node must exit cleanly: {status:?}"
    );
    let on_d2 = rows(
        &client,
        "SELECT count(*) FROM sys.shards WHERE node_id = 'd2'",
    )
    .await?;
    ensure!(on_d2 == [["0"]], "d2 still holds copies: {on_d2:?}");
    eprintln!(
        "decommission: d2 drained and its process exited after {:.1} s",
        took.as_secs_f64()
    );

    let ledger = writers.finish().await?;
    if !ledger.errors.is_empty() {
        bail!(
            "{} statements failed while shards moved; first: {}",
            ledger.errors.len(),
            ledger.errors[0]
        );
    }
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    client.batch_execute("REFRESH TABLE t").await?;
    let after = count(&client).await?;
    let expected = total.parse::<usize>()? + ledger.acknowledged.len();
    if after != expected.to_string() {
        // Say whether rows are gone or only miscounted, and which copy lacks them.
        let present: HashSet<i64> = rows(&client, "SELECT id FROM t WHERE id >= 100000000")
            .await?
            .iter()
            .map(|r| r[0].parse::<i64>())
            .collect::<Result<_, _>>()?;
        let lost: Vec<i64> = ledger
            .acknowledged
            .iter()
            .filter(|id| !present.contains(id))
            .copied()
            .collect();
        let scanned = rows(&client, "SELECT count(id) FROM t").await?;
        let copies = rows(
            &client,
            "SELECT id, node_id, \"primary\", num_docs, seq_no FROM sys.shards \
             WHERE table_name = 't' ORDER BY id, node_id",
        )
        .await?;
        bail!(
            "{after} rows after the moves, expected {expected}; count(id) = {scanned:?}; \
             acknowledged ids not found by a scan: {lost:?}; copies: {copies:?}"
        );
    }
    check_converged(&client, "t").await?;
    eprintln!(
        "moves: {} rows written meanwhile, no statement failed, every row there",
        ledger.acknowledged.len()
    );
    Ok(())
}
