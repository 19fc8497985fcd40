//! Replication under cut network links, end to end: three coordinators and three data nodes,
//! each in a network namespace of its own on a bridge this test makes (it must run as root).
//! Four clients insert unique keys through all three coordinators and record every
//! acknowledgement while, cycle after cycle, the seed picks one fault:
//!
//! - `isolate`: a data node holding copies is cut from every other node (and the leader);
//! - `pair`: the link between two data nodes is cut (both still see the coordinators), so a
//!   primary cannot reach its replica;
//! - `leader`: a data node is cut from the Raft leader only;
//! - `coordinator`: the leader is cut from every other node (a new one must be elected).
//!
//! Each fault holds for `--down-seconds` (longer than the 3 s node timeout), then heals. After
//! each cycle the cluster must see every node again and the table must be GREEN within 60 s;
//! at the end every acknowledged row is present exactly once, nothing appears that no client
//! sent, and every shard's copies hold the same documents (doc count and content checksum in
//! `sys.shards`). Writes through a coordinator that can still reach a quorum and the data nodes
//! must go on during every fault.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use clap::Parser;
use creek_tests::network::{check_available, Network};
use creek_tests::workload::{check_converged, health, verify_ledger, wait_green, Rng, Writers};
use creek_tests::{connect, rows, TestCluster};

#[derive(Parser)]
struct Args {
    /// Fault cycles.
    #[arg(long, default_value_t = 4)]
    cycles: usize,
    /// Seconds a fault holds.
    #[arg(long, default_value_t = 6)]
    down_seconds: u64,
    /// Picks the faults and their nodes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep the nodes' data and logs in this directory (default: a temporary one).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

#[derive(Clone, Copy, Debug)]
enum Fault {
    Isolate,
    Pair,
    Leader,
    Coordinator,
}

const FAULTS: [Fault; 4] = [
    Fault::Isolate,
    Fault::Pair,
    Fault::Leader,
    Fault::Coordinator,
];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    check_available()?;
    let temporary = tempfile::tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let network = Network::create()?;
    let mut cluster =
        TestCluster::start_in(&root.join("cluster"), 3, 3, &[], Some(network)).await?;
    let outcome = scenario(&mut cluster, &args).await;
    if outcome.is_err() {
        eprintln!("{}", cluster.log_tail(30));
    }
    outcome
}

/// Names of the nodes of `cluster` other than `except`.
fn others(cluster: &TestCluster, except: &str) -> Vec<String> {
    cluster
        .coordinators
        .iter()
        .chain(cluster.data_nodes.iter())
        .map(|n| n.id.clone())
        .filter(|id| id != except)
        .collect()
}

/// A coordinator that answers, other than `avoid`.
fn observer(cluster: &TestCluster, avoid: Option<usize>) -> usize {
    (0..cluster.coordinators.len())
        .find(|i| Some(*i) != avoid)
        .unwrap_or(0)
}

async fn scenario(cluster: &mut TestCluster, args: &Args) -> anyhow::Result<()> {
    let mut rng = Rng::new(args.seed);
    let client = connect(&cluster.pg_config(0, "")).await?;
    client
        .batch_execute(
            "CREATE TABLE t (id BIGINT PRIMARY KEY, v TEXT) CLUSTERED INTO 6 SHARDS \
             WITH (number_of_replicas = 1)",
        )
        .await?;
    wait_green(cluster, "t", Duration::from_secs(30)).await?;
    let writers = Writers::start(cluster, 0, "t", 0, 4);
    tokio::time::sleep(Duration::from_secs(2)).await;
    for cycle in 0..args.cycles {
        let fault = FAULTS[rng.below(FAULTS.len())];
        let leader = cluster.leader(0).await?;
        let leader_id = cluster.coordinators[leader].id.clone();
        let holders = rows(
            &connect(&cluster.pg_config(leader, "")).await?,
            "SELECT DISTINCT node_id FROM sys.shards WHERE table_name = 't' AND state = 'STARTED' \
             ORDER BY node_id",
        )
        .await?;
        let victim = holders[rng.below(holders.len())][0].clone();
        let mut cuts: Vec<(String, String)> = Vec::new();
        let (description, avoid) = match fault {
            Fault::Isolate => {
                for other in others(cluster, &victim) {
                    cuts.push((victim.clone(), other));
                }
                (format!("{victim} cut from every node"), None)
            }
            Fault::Pair => {
                let peers: Vec<String> = cluster
                    .data_nodes
                    .iter()
                    .map(|n| n.id.clone())
                    .filter(|id| *id != victim)
                    .collect();
                let peer = peers[rng.below(peers.len())].clone();
                cuts.push((victim.clone(), peer.clone()));
                (format!("link {victim} - {peer} cut"), None)
            }
            Fault::Leader => {
                cuts.push((victim.clone(), leader_id.clone()));
                (format!("{victim} cut from the leader {leader_id}"), None)
            }
            Fault::Coordinator => {
                for other in others(cluster, &leader_id) {
                    cuts.push((leader_id.clone(), other));
                }
                (
                    format!("the leader {leader_id} cut from every node"),
                    Some(leader),
                )
            }
        };
        let network = cluster.network.as_mut().context("a network")?;
        for (a, b) in &cuts {
            network.cut(a, b)?;
        }
        let before = writers.acknowledged();
        writers.longest_ms.store(0, Ordering::Release);
        let started = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.down_seconds)).await;
        let during = writers.acknowledged() - before;
        let seen = observer(cluster, avoid);
        let state = health(&connect(&cluster.pg_config(seen, "")).await?, "t").await?;
        cluster.network.as_mut().context("a network")?.heal_all()?;
        ensure!(
            during > 0,
            "cycle {}: no write was acknowledged while the {description}",
            cycle + 1
        );
        cluster.wait_ready(Duration::from_secs(60)).await?;
        let healed = wait_green(cluster, "t", Duration::from_secs(60)).await?;
        eprintln!(
            "cycle {}: {description} for {} s: {during} rows acknowledged meanwhile (longest insert \
             {} ms), health {state} at its end; every node back and GREEN {:.1} s after healing \
             ({:.1} s in all)",
            cycle + 1,
            args.down_seconds,
            writers.longest_ms.load(Ordering::Acquire),
            healed.as_secs_f64(),
            started.elapsed().as_secs_f64()
        );
    }
    let ledger = writers.finish().await?;
    let client = connect(&cluster.pg_config(0, "")).await?;
    wait_green(cluster, "t", Duration::from_secs(60)).await?;
    let verified = verify_ledger(&client, "t", &ledger).await?;
    check_converged(&client, "t").await?;
    eprintln!(
        "partitions: {} acknowledged, none lost, none duplicated; {} failed or unanswered ({} of \
         them present); copies converged; {} read-backs saw their session's write",
        ledger.acknowledged.len(),
        ledger.uncertain.len(),
        verified.uncertain_present,
        ledger.read_backs,
    );
    if let Some(error) = ledger.errors.first() {
        eprintln!("  first failed insert: {error}");
    }
    Ok(())
}
