//! The `creek` binary: command-line parsing and process start-up only. `creek dev` runs one
//! coordinator and one data node in one process; they still talk over loopback gRPC/Flight, so
//! the cluster mode uses the same code paths.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use creek_common::NodeId;
use creek_coordinator::catalog::Catalog;
use creek_coordinator::cluster::Cluster;
use creek_datanode::{DataNode, DatanodeConfig};

/// Creek: one distributed SQL database for rows, documents, search and analytics.
#[derive(Parser, Debug)]
#[command(name = "creek", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs one coordinator and one data node in this process, with a local data directory.
    Dev(DevArgs),
}

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Where tables, shards and cluster state are stored.
    #[arg(long, default_value = "./creek-data", env = "CREEK_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on for all client ports.
    #[arg(long, default_value = "127.0.0.1", env = "CREEK_BIND")]
    bind: String,
    /// PostgreSQL wire protocol port.
    #[arg(long, default_value_t = 5432, env = "CREEK_PG_PORT")]
    pg_port: u16,
    /// HTTP port (`POST /_sql`).
    #[arg(long, default_value_t = 4200, env = "CREEK_HTTP_PORT")]
    http_port: u16,
    /// Arrow Flight SQL port (reserved for Flight SQL clients).
    #[arg(long, default_value_t = 8815, env = "CREEK_FLIGHT_PORT")]
    flight_port: u16,
    /// Internal transport port (gRPC and Flight between coordinator and data node).
    #[arg(long, default_value_t = 4300, env = "CREEK_TRANSPORT_PORT")]
    transport_port: u16,
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,tantivy=warn,h2=warn,tower=warn,hyper=warn")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Dev(args) => run_dev(args).await,
    }
}

async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad address {host}:{port}"))?;
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_node = DataNode::open(DatanodeConfig {
        node_id: "dev-data".into(),
        data_dir: args.data_dir.join("data"),
    })
    .context("opening the data node")?;
    let transport = bind(&args.bind, args.transport_port).await?;
    let transport_address = transport.local_addr()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let data_server = tokio::spawn(data_node.clone().serve(transport, async {
        let _ = shutdown_rx.await;
    }));

    let catalog =
        Catalog::open(args.data_dir.join("cluster"), "creek").context("opening cluster state")?;
    let cluster = Arc::new(Cluster::new(NodeId("dev".into()), catalog));
    cluster.add_data_node(NodeId("dev-data".into()), &transport_address.to_string())?;
    cluster.ensure_shards().await.context("opening shards")?;

    let pg = bind(&args.bind, args.pg_port).await?;
    let http = bind(&args.bind, args.http_port).await?;
    tracing::info!(
        pg = %pg.local_addr()?, http = %http.local_addr()?, transport = %transport_address,
        data_dir = %args.data_dir.display(), flight_port = args.flight_port,
        "creek dev is ready"
    );
    let pg_server = tokio::spawn(creek_coordinator::frontend::pgwire::serve(
        pg,
        cluster.clone(),
    ));
    let http_server = tokio::spawn(creek_coordinator::frontend::http::serve(
        http,
        cluster.clone(),
    ));

    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    pg_server.abort();
    http_server.abort();
    let _ = shutdown_tx.send(());
    let _ = data_server.await;
    Ok(())
}
