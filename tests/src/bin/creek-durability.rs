//! Durability check: a client inserts rows while `creek dev` is killed with SIGKILL; after a
//! restart every acknowledged row must be there.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use creek_tests::CreekServer;
use tokio_postgres::NoTls;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let data = tempfile::tempdir()?;
    let mut server = CreekServer::start(&data.path().join("creek"))?;
    let (client, connection) = tokio_postgres::connect(&server.pg_config(""), NoTls).await?;
    let connection = tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE TABLE acked (id BIGINT PRIMARY KEY, payload TEXT) CLUSTERED INTO 3 SHARDS",
        )
        .await?;

    // Insert one row per statement as fast as possible; remember every acknowledged id.
    let writer = tokio::spawn(async move {
        let mut acknowledged = Vec::new();
        for id in 0..1_000_000i64 {
            let sql = format!("INSERT INTO acked (id, payload) VALUES ({id}, 'row {id}')");
            match client.simple_query(&sql).await {
                Ok(_) => acknowledged.push(id),
                Err(_) => break,
            }
        }
        acknowledged
    });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill_hard()?;
    let acknowledged = writer.await?;
    connection.abort();
    if acknowledged.len() < 10 {
        bail!(
            "only {} rows were acknowledged before the kill; the test proves nothing",
            acknowledged.len()
        );
    }

    server.restart().context("restarting after kill -9")?;
    let (client, connection) = tokio_postgres::connect(&server.pg_config(""), NoTls).await?;
    tokio::spawn(connection);
    client.batch_execute("REFRESH TABLE acked").await?;
    let started = Instant::now();
    let rows = client.query("SELECT id FROM acked", &[]).await?;
    let present: std::collections::HashSet<i64> = rows.iter().map(|r| r.get::<_, i64>(0)).collect();
    let missing: Vec<i64> = acknowledged
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    eprintln!(
        "durability: {} rows acknowledged before kill -9, {} present after restart (checked in {:?})",
        acknowledged.len(),
        present.len(),
        started.elapsed()
    );
    if !missing.is_empty() {
        bail!(
            "{} acknowledged rows lost, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(10)]
        );
    }
    eprintln!("1 passed, 0 failed");
    Ok(())
}
