//! Cluster behaviour end to end, on 3 voting coordinators and 3 data nodes (plus a non-voting
//! coordinator and refused strangers) started as separate processes on loopback ports:
//! allocation by node attributes, writes and reads through every coordinator with identical
//! answers, leader failover (DDL accepted again within 10 s, no acknowledged DDL lost, sessions
//! on the other coordinators unaffected), a data node going and coming back, a lost voter
//! majority (DDL refused, reads and writes go on), and a restart of the whole cluster.
//!
//! Prints the failover figures it measures. Exits non-zero on the first failed check.

use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use creek_tests::{connect, free_port, rows, wait_for, ManagedProcess, TestCluster};
use tokio_postgres::{Client, NoTls};

/// The command line of a data node `name` that tries to join `cluster` from `dir`.
fn stranger_args(
    cluster: &TestCluster,
    name: &str,
    dir: &std::path::Path,
    extra: &[&str],
) -> anyhow::Result<Vec<String>> {
    let mut args: Vec<String> = [
        "datanode",
        "--node-id",
        name,
        "--data-dir",
        &dir.display().to_string(),
        "--bind",
        "127.0.0.1",
        "--join",
        &cluster.join_addresses(),
        "--transport-port",
        &free_port()?.to_string(),
        "--flight-port",
        "0",
    ]
    .iter()
    .map(|a| a.to_string())
    .collect();
    args.extend(extra.iter().map(|a| a.to_string()));
    Ok(args)
}

/// A data node started with another cluster secret never joins, and requests without proof
/// of the secret (a state proposal, a shard read, a plan fragment, a published state) are
/// refused at every internal port.
async fn strangers_without_the_secret(
    cluster: &TestCluster,
    root: &std::path::Path,
) -> anyhow::Result<()> {
    use creek_proto::arrow_flight::flight_service_client::FlightServiceClient;
    use creek_proto::arrow_flight::Ticket;
    use creek_proto::v1::cluster_service_client::ClusterServiceClient;
    use creek_proto::v1::node_service_client::NodeServiceClient;
    use creek_proto::v1::shard_service_client::ShardServiceClient;
    use creek_proto::v1::{GetRequest, ProposeRequest, StateMessage};

    let dir = root.join("wrong-secret");
    std::fs::create_dir_all(&dir)?;
    let wrong = ManagedProcess::start_with_env(
        stranger_args(cluster, "wrong-secret", &dir, &[])?,
        vec![(
            "CREEK_CLUSTER_SECRET".into(),
            "not-this-cluster-secret".into(),
        )],
        root.join("wrong-secret.log"),
    )?;
    wait_for(
        "the node with the wrong secret is refused",
        Duration::from_secs(20),
        async || Ok(wrong.log().contains("wrong cluster secret")),
    )
    .await?;
    let nodes = rows(
        &coordinator(cluster, 0).await?,
        "SELECT count(*) FROM sys.nodes WHERE id = 'wrong-secret'",
    )
    .await?;
    ensure!(
        nodes == [["0"]],
        "a node with the wrong secret joined: {nodes:?}"
    );
    drop(wrong);

    let unauthenticated = |what: &str, result: Result<tonic::Status, String>| match result {
        Ok(status) if status.code() == tonic::Code::Unauthenticated => Ok(()),
        Ok(status) => bail!("{what}: expected UNAUTHENTICATED, got {status:?}"),
        Err(answer) => bail!("{what} without the cluster secret was answered: {answer}"),
    };
    let channel = |address: String| -> anyhow::Result<tonic::transport::Channel> {
        Ok(tonic::transport::Endpoint::from_shared(format!("http://{address}"))?.connect_lazy())
    };
    let coordinator_address = cluster
        .join_addresses()
        .split(',')
        .next()
        .unwrap_or_default()
        .to_string();
    let data_address = {
        let node = &cluster.data_nodes[0];
        format!("{}:{}", node.host, node.transport_port)
    };
    let propose = ClusterServiceClient::new(channel(coordinator_address.clone())?)
        .propose(ProposeRequest {
            command_json: br#"{"DropTable":{"schema":"doc","name":"t"}}"#.to_vec(),
            forwarded: false,
        })
        .await;
    unauthenticated(
        "Propose",
        propose.map(|r| format!("{r:?}")).map_or_else(Ok, Err),
    )?;
    let publish = NodeServiceClient::new(channel(data_address.clone())?)
        .publish_state(StateMessage {
            state_json: b"{}".to_vec(),
        })
        .await;
    unauthenticated(
        "PublishState",
        publish.map(|r| format!("{r:?}")).map_or_else(Ok, Err),
    )?;
    let get = ShardServiceClient::new(channel(data_address.clone())?)
        .get(GetRequest::default())
        .await;
    unauthenticated("Get", get.map(|r| format!("{r:?}")).map_or_else(Ok, Err))?;
    let fragment = FlightServiceClient::new(channel(data_address)?)
        .do_get(Ticket::new(b"any plan".to_vec()))
        .await;
    unauthenticated(
        "Flight DoGet",
        fragment
            .map(|_| "a stream".to_string())
            .map_or_else(Ok, Err),
    )?;
    Ok(())
}

async fn coordinator(cluster: &TestCluster, index: usize) -> anyhow::Result<Client> {
    connect(&cluster.pg_config(index, "-c write_refresh=true")).await
}

/// Retries `sql` on coordinator `index` until it succeeds; returns how long that took.
async fn until_accepted(
    cluster: &TestCluster,
    index: usize,
    sql: &str,
    limit: Duration,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = String::new();
    while started.elapsed() < limit {
        match coordinator(cluster, index).await {
            Ok(client) => match client.simple_query(sql).await {
                Ok(_) => return Ok(started.elapsed()),
                Err(e) => last = format!("{e:?}"),
            },
            Err(e) => last = e.to_string(),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("`{sql}` not accepted within {limit:?}; last error: {last}")
}

const QUERIES: &[&str] = &[
    "SELECT count(*), sum(v), min(k), max(k) FROM t",
    "SELECT g, count(*), sum(v) FROM t GROUP BY g ORDER BY g",
    "SELECT k, v FROM t ORDER BY v DESC, k LIMIT 5",
    "SELECT * FROM t WHERE k = 4242",
    "SELECT t.g, count(*), sum(d.weight) FROM t JOIN dims d ON t.g = d.g GROUP BY t.g ORDER BY t.g",
    "SELECT count(*) FROM t WHERE k IN (SELECT k FROM hot_t)",
];

async fn answers(client: &Client) -> anyhow::Result<Vec<Vec<Vec<String>>>> {
    let mut all = Vec::new();
    for sql in QUERIES {
        all.push(rows(client, sql).await?);
    }
    Ok(all)
}

async fn check_placement(client: &Client) -> anyhow::Result<()> {
    let shards = rows(
        client,
        "SELECT table_name, node_id, count(*) FROM sys.shards GROUP BY table_name, node_id \
         ORDER BY table_name, node_id",
    )
    .await?;
    let of = |table: &str| -> Vec<(String, String)> {
        shards
            .iter()
            .filter(|r| r[0] == table)
            .map(|r| (r[1].clone(), r[2].clone()))
            .collect()
    };
    ensure!(
        of("t") == [("d1", "2"), ("d2", "2"), ("d3", "2")].map(|(a, b)| (a.into(), b.into())),
        "t is not balanced: {:?}",
        of("t")
    );
    ensure!(
        of("hot_t").iter().all(|(node, _)| node != "d3") && of("hot_t").len() == 2,
        "hot_t must be on the hot nodes d1 and d2: {:?}",
        of("hot_t")
    );
    ensure!(
        of("cold_t") == [("d3".to_string(), "2".to_string())],
        "cold_t must be on the cold node d3 only: {:?}",
        of("cold_t")
    );
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let root = tempfile::tempdir()?;
    let mut cluster = TestCluster::start(&root.path().join("cluster"), 3, 3).await?;
    let outcome = scenario(&mut cluster, root.path()).await;
    if outcome.is_err() {
        eprintln!("{}", cluster.log_tail(15));
    }
    outcome
}

async fn scenario(cluster: &mut TestCluster, root: &std::path::Path) -> anyhow::Result<()> {
    // Membership as every coordinator sees it.
    for index in 0..3 {
        let client = coordinator(cluster, index).await?;
        let nodes = rows(
            &client,
            "SELECT id, role, attributes, voter, alive FROM sys.nodes ORDER BY id",
        )
        .await?;
        ensure!(nodes.len() == 6, "sys.nodes on c{}: {nodes:?}", index + 1);
        ensure!(
            nodes[5][2] == r#"{"tier":"cold"}"#,
            "d3 attributes: {:?}",
            nodes[5]
        );
        let leaders = rows(&client, "SELECT count(*) FROM sys.nodes WHERE leader").await?;
        ensure!(leaders[0][0] == "1", "exactly one leader: {leaders:?}");
    }
    eprintln!("cluster: 3 voting coordinators, 3 data nodes, one leader");

    // DDL through one coordinator, allocation by attributes.
    let c1 = coordinator(cluster, 0).await?;
    c1.batch_execute(
        // One copy per shard: this scenario is about placement and a lone copy's node going
        // away (replicas are creek-replication's).
        "CREATE TABLE t (k INT PRIMARY KEY, g INT, v BIGINT) CLUSTERED INTO 6 SHARDS
           WITH (number_of_replicas = 0);
         CREATE TABLE dims (g INT PRIMARY KEY, weight INT) CLUSTERED INTO 2 SHARDS
           WITH (number_of_replicas = 0);
         CREATE TABLE hot_t (k INT PRIMARY KEY) CLUSTERED INTO 2 SHARDS
           WITH (number_of_replicas = 0, \"routing.allocation.require.tier\" = 'hot', \"routing.allocation.total_shards_per_node\" = 1);
         CREATE TABLE cold_t (k INT PRIMARY KEY) CLUSTERED INTO 2 SHARDS
           WITH (number_of_replicas = 0, \"routing.allocation.require.tier\" = 'cold');",
    )
    .await?;
    let refused = c1
        .simple_query(
            "CREATE TABLE too_many (k INT) CLUSTERED INTO 3 SHARDS \
             WITH (\"routing.allocation.require.tier\" = 'hot', \
                   \"routing.allocation.total_shards_per_node\" = 1)",
        )
        .await;
    ensure!(
        refused.is_err_and(|e| format!("{e:?}").contains("total_shards_per_node")),
        "an unsatisfiable allocation must be refused"
    );
    check_placement(&c1).await?;
    eprintln!("allocation: balanced by count; require/total_shards_per_node honoured");

    // Writes through the other coordinators go to the shards' nodes.
    let c2 = coordinator(cluster, 1).await?;
    let c3 = coordinator(cluster, 2).await?;
    c2.batch_execute(
        "INSERT INTO t SELECT x, x % 7, x * 3 FROM generate_series(1, 6000) AS s(x);
         INSERT INTO dims SELECT x, x * 10 FROM generate_series(0, 6) AS s(x);",
    )
    .await?;
    c3.batch_execute(
        "INSERT INTO hot_t SELECT x FROM generate_series(1, 100) AS s(x);
         INSERT INTO cold_t VALUES (1), (2), (3);",
    )
    .await?;
    // num_docs counts what each copy's last refresh made visible.
    c1.batch_execute("REFRESH TABLE t").await?;
    let per_node = rows(
        &c1,
        "SELECT node_id, sum(num_docs) FROM sys.shards WHERE table_name = 't' \
         GROUP BY node_id ORDER BY node_id",
    )
    .await?;
    ensure!(
        per_node.len() == 3
            && per_node
                .iter()
                .all(|r| r[1].parse::<i64>().unwrap_or(0) > 1000),
        "rows of t must be spread over the data nodes: {per_node:?}"
    );

    // The same answers through every coordinator.
    let expected = answers(&c1).await?;
    ensure!(
        expected[0] == [["6000", "54009000", "1", "6000"]],
        "totals: {:?}",
        expected[0]
    );
    for (index, client) in [(1, &c2), (2, &c3)] {
        ensure!(
            answers(client).await? == expected,
            "coordinator c{} answers differently",
            index + 1
        );
    }
    eprintln!("queries: identical answers through c1, c2, c3 (group by, top-n, lookup, joins)");

    // Cancelling a query that fans out to every data node ends it and frees the session.
    // While it runs, sys.jobs on another coordinator lists it as c2's.
    let long = coordinator(cluster, 1).await?;
    let token = long.cancel_token();
    let watcher = coordinator(cluster, 0).await?;
    let canceller = tokio::spawn(async move {
        let jobs = "SELECT node, stmt FROM sys.jobs WHERE stmt LIKE 'SELECT count(*) FROM t%'";
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut listed = Vec::new();
        while Instant::now() < deadline {
            listed = rows(&watcher, jobs).await?;
            if !listed.is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(NoTls).await?;
        ensure!(
            listed.len() == 1 && listed[0][0] == "c2",
            "sys.jobs on c1 must list the join once, as c2's: {listed:?}"
        );
        let deadline = Instant::now() + Duration::from_secs(10);
        while !rows(&watcher, jobs).await?.is_empty() {
            ensure!(
                Instant::now() < deadline,
                "the cancelled join stays in sys.jobs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::Ok(())
    });
    let started = Instant::now();
    let cancelled = long
        .simple_query("SELECT count(*) FROM t a, t b, t c")
        .await
        .err()
        .context("a 2*10^11-row join must not finish")?;
    canceller.await??;
    ensure!(
        cancelled.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "cancel must end the query with 57014: {cancelled:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(30),
        "cancel took too long"
    );
    ensure!(rows(&long, "SELECT count(*) FROM t").await? == [["6000"]]);
    eprintln!(
        "sys.jobs: c1 listed the join running on c2 until it was cancelled; cancel: a query \
         over all data nodes ended with 57014 after {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // KILL on c1 ends the same join running on c3, found by its id in sys.jobs.
    let victim = coordinator(cluster, 2).await?;
    let killer = coordinator(cluster, 0).await?;
    let kill = tokio::spawn(async move {
        let jobs =
            "SELECT id FROM sys.jobs WHERE node = 'c3' AND stmt LIKE 'SELECT count(*) FROM t%'";
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let listed = rows(&killer, jobs).await?;
            if let [id] = listed.as_slice() {
                let answer = killer.simple_query(&format!("KILL '{}'", id[0])).await?;
                let killed = answer.iter().find_map(|m| match m {
                    tokio_postgres::SimpleQueryMessage::CommandComplete(n) => Some(*n),
                    _ => None,
                });
                ensure!(killed == Some(1), "KILL on c1 of c3's job: {killed:?}");
                return anyhow::Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "c3's join never showed in sys.jobs"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let killed = victim
        .simple_query("SELECT count(*) FROM t a, t b, t c")
        .await
        .err()
        .context("a 2*10^11-row join must not finish")?;
    kill.await??;
    ensure!(
        killed.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED),
        "KILL must end the query with 57014: {killed:?}"
    );
    ensure!(rows(&victim, "SELECT count(*) FROM t").await? == [["6000"]]);
    eprintln!("KILL: c1 killed a join running on c3 by its sys.jobs id; the session goes on");

    // A non-voting coordinator joins, serves queries and forwards DDL.
    let (pg, http, transport) = (free_port()?, free_port()?, free_port()?);
    let follower_args = [
        "coordinator",
        "--node-id",
        "c4",
        "--data-dir",
        &root.join("c4").display().to_string(),
        "--bind",
        "127.0.0.1",
        "--join",
        &cluster.join_addresses(),
        "--transport-port",
        &transport.to_string(),
        "--pg-port",
        &pg.to_string(),
        "--http-port",
        &http.to_string(),
    ];
    let mut follower = ManagedProcess::start(
        follower_args.iter().map(|a| a.to_string()).collect(),
        root.join("c4.log"),
    )?;
    let follower_config = creek_tests::pg_config(pg, "-c write_refresh=true");
    wait_for("c4 joins", Duration::from_secs(30), async || {
        follower.check_running()?;
        let client = connect(&follower_config).await?;
        Ok(rows(&client, "SELECT voter FROM sys.nodes WHERE id = 'c4'").await? == [["f"]])
    })
    .await?;
    let c4 = connect(&follower_config).await?;
    ensure!(
        answers(&c4).await? == expected,
        "the non-voting coordinator answers differently"
    );
    c4.batch_execute("CREATE TABLE from_follower (a INT); INSERT INTO from_follower VALUES (1)")
        .await?;
    ensure!(rows(&c1, "SELECT a FROM from_follower").await? == [["1"]]);
    eprintln!("non-voting coordinator: joins, answers identically, forwards DDL");

    // Strangers are refused with a reason.
    for (name, identity, reason) in [
        ("stranger", None, "configured for cluster"),
        (
            "moved",
            Some(
                r#"{"cluster_name":"creek","cluster_uuid":"00000000-0000-0000-0000-000000000000"}"#,
            ),
            "belongs to another cluster",
        ),
    ] {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir)?;
        if let Some(identity) = identity {
            std::fs::write(dir.join("cluster.json"), identity)?;
        }
        let cluster_name = if identity.is_none() { "other" } else { "creek" };
        let mut stranger = ManagedProcess::start(
            stranger_args(cluster, name, &dir, &["--cluster-name", cluster_name])?,
            root.join(format!("{name}.log")),
        )?;
        wait_for(
            &format!("{name} is refused"),
            Duration::from_secs(20),
            async || Ok(stranger.check_running().is_err()),
        )
        .await?;
        ensure!(
            stranger.log().contains(reason),
            "{name}: expected '{reason}' in its log:\n{}",
            stranger.log()
        );
    }
    eprintln!("membership: nodes of another cluster are refused with a reason");

    strangers_without_the_secret(cluster, root).await?;
    eprintln!(
        "internal transport: a node with the wrong secret and raw requests without one are refused"
    );

    // Kill -9 the leader; a session on another coordinator keeps working; DDL comes back.
    let leader = cluster.leader(0).await?;
    let survivor = (leader + 1) % 3;
    let session = coordinator(cluster, survivor).await?;
    let tables_before = rows(&session, "SHOW TABLES").await?;
    cluster.coordinators[leader].process.kill_hard()?;
    let killed_at = Instant::now();
    let ddl_back = until_accepted(
        cluster,
        survivor,
        "CREATE TABLE after_failover (a INT)",
        Duration::from_secs(10),
    )
    .await
    .context("DDL must be accepted again within 10 s of killing the leader")?;
    ensure!(
        answers(&session).await? == expected,
        "a session on a surviving coordinator must keep working"
    );
    let mut tables_after = rows(&session, "SHOW TABLES").await?;
    tables_after.retain(|t| t[0] != "after_failover");
    ensure!(
        tables_after == tables_before,
        "acknowledged DDL lost: {tables_before:?} -> {tables_after:?}"
    );
    let new_leader = cluster.leader(survivor).await?;
    ensure!(new_leader != leader, "a new leader must be elected");
    eprintln!(
        "failover: leader c{} killed; c{} elected; DDL accepted again after {:.2} s \
         ({:.2} s since the kill)",
        leader + 1,
        new_leader + 1,
        ddl_back.as_secs_f64(),
        killed_at.elapsed().as_secs_f64()
    );
    cluster.coordinators[leader].process.restart()?;
    cluster.wait_ready(Duration::from_secs(30)).await?;
    let rejoined = coordinator(cluster, leader).await?;
    ensure!(
        rows(&rejoined, "SELECT count(*) FROM after_failover").await? == [["0"]],
        "the restarted coordinator must catch up on DDL it missed"
    );
    eprintln!("rejoin: the killed coordinator restarts and catches up");
    // The old session to c1 may have gone with the killed leader.
    let c1 = coordinator(cluster, 0).await?;

    // A data node goes away and comes back.
    cluster.data_nodes[1].process.kill_hard()?;
    let gone = wait_for("d2 marked gone", Duration::from_secs(15), async || {
        Ok(rows(&c1, "SELECT alive FROM sys.nodes WHERE id = 'd2'").await? == [["f"]])
    })
    .await?;
    let health = rows(&c1, "SELECT table_name, health FROM sys.health ORDER BY 1").await?;
    ensure!(
        health.contains(&vec!["t".to_string(), "RED".to_string()])
            && health.contains(&vec!["cold_t".to_string(), "GREEN".to_string()]),
        "health with d2 gone: {health:?}"
    );
    ensure!(rows(&c1, "SELECT count(*) FROM cold_t").await? == [["3"]]);
    let error = c1
        .simple_query("SELECT count(*) FROM t")
        .await
        .err()
        .context("a scan of shards on a gone node must fail")?;
    ensure!(
        format!("{error:?}").contains("not available"),
        "unclear error for a gone node: {error:?}"
    );
    cluster.data_nodes[1].process.restart()?;
    cluster.wait_ready(Duration::from_secs(30)).await?;
    ensure!(answers(&c1).await? == expected, "d2's rows must be back");
    eprintln!(
        "data node: marked gone {:.1} s after kill -9 (3 s after its last heartbeat); health RED, clear errors; \
         back with its rows after restart",
        gone.as_secs_f64()
    );

    // Losing the voter majority: DDL fails clearly, reads and writes go on.
    let keep = cluster.leader(0).await?;
    for index in 0..3 {
        if index != keep {
            cluster.coordinators[index].process.kill_hard()?;
        }
    }
    let lonely = coordinator(cluster, keep).await?;
    // Give the leader an election timeout to notice it is alone; before that it would still
    // append the change and only fail it on the commit timeout (to commit it later).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let started = Instant::now();
    let error = lonely
        .simple_query("CREATE TABLE without_majority (a INT)")
        .await
        .err()
        .context("DDL without a voter majority must fail")?;
    ensure!(
        format!("{error:?}").contains("majority"),
        "unclear error without a majority: {error:?}"
    );
    lonely
        .batch_execute("INSERT INTO t VALUES (7001, 1, 1)")
        .await?;
    ensure!(rows(&lonely, "SELECT count(*) FROM t").await? == [["6001"]]);
    eprintln!(
        "majority lost: DDL refused after {:.1} s with a clear error; reads and writes go on",
        started.elapsed().as_secs_f64()
    );

    // The whole cluster restarts: every table and row is back.
    for node in cluster
        .coordinators
        .iter_mut()
        .chain(cluster.data_nodes.iter_mut())
    {
        node.process.kill_hard()?;
    }
    for node in cluster
        .coordinators
        .iter_mut()
        .chain(cluster.data_nodes.iter_mut())
    {
        node.process.restart()?;
    }
    let restarted = Instant::now();
    cluster.wait_ready(Duration::from_secs(60)).await?;
    let c1 = coordinator(cluster, 0).await?;
    let mut tables = rows(&c1, "SHOW TABLES").await?;
    tables.sort();
    ensure!(
        tables
            == [
                "after_failover",
                "cold_t",
                "dims",
                "from_follower",
                "hot_t",
                "t"
            ]
            .map(|t| vec![t.to_string()]),
        "tables after a full restart: {tables:?}"
    );
    ensure!(rows(&c1, "SELECT count(*) FROM t").await? == [["6001"]]);
    c1.batch_execute("DELETE FROM t WHERE k = 7001").await?;
    for index in 0..3 {
        ensure!(
            answers(&coordinator(cluster, index).await?).await? == expected,
            "answers after a full restart differ on c{}",
            index + 1
        );
    }
    eprintln!(
        "full restart: all tables and rows back; ready {:.1} s after start",
        restarted.elapsed().as_secs_f64()
    );
    drop(follower);
    Ok(())
}
