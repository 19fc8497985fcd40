//! The `creek` binary: command-line parsing and process start-up only. `creek coordinator` and
//! `creek datanode` are the cluster roles; `creek dev` runs one of each in one process, still
//! talking over loopback gRPC/Flight (Raft with one voter, a real join), so a cluster and the
//! embedded default run the same code.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand, ValueEnum};
use creek_common::state::{NodeInfo, NodeRole};
use creek_common::NodeId;
use creek_coordinator::catalog::Catalog;
use creek_coordinator::cluster::Cluster;
use creek_coordinator::consensus::{Consensus, ConsensusConfig};
use creek_coordinator::jobs::Jobs;
use creek_datanode::membership::MembershipConfig;
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
    /// Runs a coordinator: clients connect here; voters (`--voters`) also keep cluster state.
    Coordinator(CoordinatorArgs),
    /// Runs a data node, which holds shards and joins the coordinators named by `--join`.
    Datanode(DatanodeArgs),
}

#[derive(clap::Args, Debug)]
struct DevArgs {
    /// Where tables, shards and cluster state are stored.
    #[arg(long, default_value = "./creek-data", env = "CREEK_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on for all client ports.
    #[arg(long, default_value = "127.0.0.1", env = "CREEK_BIND")]
    bind: String,
    #[command(flatten)]
    client_ports: ClientPorts,
    /// Internal transport port of the coordinator (Raft, membership); the embedded data node
    /// takes a free loopback port of its own.
    #[arg(long, default_value_t = 4300, env = "CREEK_TRANSPORT_PORT")]
    transport_port: u16,
    /// Port Flight SQL clients pull scan results from the embedded data node on (0: a free
    /// port); fix it to publish it from a container.
    #[arg(long, default_value_t = 0, env = "CREEK_DATA_FLIGHT_PORT")]
    data_flight_port: u16,
    /// Host Flight SQL clients reach the data node's port at; defaults to `--bind` unless that
    /// is a wildcard, then to the host name.
    #[arg(long, env = "CREEK_ADVERTISE_HOST")]
    advertise_host: Option<String>,
}

/// The ports a coordinator serves clients on.
#[derive(clap::Args, Debug)]
struct ClientPorts {
    /// PostgreSQL wire protocol port.
    #[arg(long, default_value_t = 5432, env = "CREEK_PG_PORT")]
    pg_port: u16,
    /// HTTP port (`POST /_sql`).
    #[arg(long, default_value_t = 4200, env = "CREEK_HTTP_PORT")]
    http_port: u16,
    /// Arrow Flight SQL port.
    #[arg(long, default_value_t = 8815, env = "CREEK_FLIGHT_PORT")]
    flight_port: u16,
    /// How long a Flight ticket stays good: a client must start each `DoGet` within this
    /// time after `GetFlightInfo` (e.g. `10m`, `30s`).
    #[arg(long, default_value = "10m", value_parser = parse_ticket_ttl, env = "CREEK_FLIGHT_TICKET_TTL")]
    flight_ticket_ttl: Duration,
    /// Most pgwire connections open at once, and most HTTP connections; one more is refused
    /// (pgwire: 53300, as PostgreSQL refuses it; HTTP: 503), and the others go on.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..), env = "CREEK_MAX_CONNECTIONS")]
    max_connections: u32,
    /// Most memory one query's operators (hash aggregates, joins, sorts) may hold on this
    /// coordinator, e.g. `2gb`; a query that needs more spills to disk where it can, else
    /// fails with 54000. Default: a quarter of the machine's memory.
    #[arg(long, value_parser = parse_memory, env = "CREEK_QUERY_MEMORY_LIMIT")]
    query_memory_limit: Option<u64>,
    /// Most memory all queries together may hold on this coordinator. Default: half of the
    /// machine's memory.
    #[arg(long, value_parser = parse_memory, env = "CREEK_MEMORY_LIMIT")]
    memory_limit: Option<u64>,
}

impl ClientPorts {
    fn query_memory(&self) -> creek_coordinator::memory::QueryMemory {
        let machine = creek_proto::node_stats::physical_memory().unwrap_or(8 << 30);
        let node = self.memory_limit.unwrap_or(machine / 2);
        let query = self.query_memory_limit.unwrap_or(machine / 4);
        creek_coordinator::memory::QueryMemory::new(query as usize, node as usize)
    }
}

fn parse_memory(text: &str) -> Result<u64, String> {
    match creek_common::state::parse_byte_size(text) {
        Some(bytes) if bytes >= 1 << 20 => Ok(bytes),
        _ => Err(format!(
            "expected a size of at least 1mb such as 512mb or 2gb, got '{text}'"
        )),
    }
}

/// What every cluster node is started with.
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// This node's id, unique in the cluster.
    #[arg(long, env = "CREEK_NODE_ID")]
    node_id: String,
    /// Where the node keeps its data (Raft log for a voter, shards for a data node).
    #[arg(long, env = "CREEK_DATA_DIR")]
    data_dir: PathBuf,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "CREEK_BIND")]
    bind: String,
    /// Host other nodes reach this one at; defaults to `--bind` unless that is a wildcard,
    /// then to the host name.
    #[arg(long, env = "CREEK_ADVERTISE_HOST")]
    advertise_host: Option<String>,
    /// Internal transport port: gRPC and Arrow Flight between nodes.
    #[arg(long, default_value_t = 4300, env = "CREEK_TRANSPORT_PORT")]
    transport_port: u16,
    /// A node attribute, `key=value` (repeatable), for allocation filters such as
    /// `"routing.allocation.require.tier" = 'hot'`.
    #[arg(long = "attr", value_parser = parse_attribute)]
    attributes: Vec<(String, String)>,
    /// The cluster's name; a node configured for another cluster is refused.
    #[arg(long, default_value = "creek", env = "CREEK_CLUSTER_NAME")]
    cluster_name: String,
    /// A file holding the secret every node of the cluster shares (at least 16 bytes; a
    /// trailing newline is ignored). Internal requests without proof of it are refused.
    /// Takes precedence over `CREEK_CLUSTER_SECRET`.
    #[arg(long, env = "CREEK_CLUSTER_SECRET_FILE")]
    cluster_secret_file: Option<PathBuf>,
    /// The cluster secret itself, for environments that inject secrets as variables (a
    /// command-line flag would show in `ps`, so there is only the variable).
    #[arg(skip = std::env::var("CREEK_CLUSTER_SECRET").ok())]
    cluster_secret: Option<String>,
}

impl NodeArgs {
    /// Installs the cluster secret for the internal transport; a node without one does not
    /// start, since it could neither reach the cluster nor keep strangers out.
    fn install_cluster_secret(&self) -> anyhow::Result<()> {
        let secret = match (&self.cluster_secret_file, &self.cluster_secret) {
            (Some(path), _) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("cannot read the cluster secret {}", path.display())
                })?;
                let end = text
                    .iter()
                    .rposition(|b| !matches!(b, b'\n' | b'\r'))
                    .map_or(0, |i| i + 1);
                text[..end].to_vec()
            }
            (None, Some(secret)) => secret.as_bytes().to_vec(),
            (None, None) => anyhow::bail!(
                "no cluster secret: give every node of the cluster the same one with \
                 --cluster-secret-file or CREEK_CLUSTER_SECRET (at least 16 bytes, e.g. \
                 `openssl rand -hex 32`)"
            ),
        };
        creek_proto::cluster_auth::install(&secret).map_err(anyhow::Error::msg)
    }
}

#[derive(clap::Args, Debug)]
struct CoordinatorArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// The voting coordinators, `id=host:port,...` (the same list on every voter); this node
    /// must be one of them. A single entry makes a one-coordinator cluster.
    #[arg(
        long,
        value_delimiter = ',',
        conflicts_with = "join",
        required_unless_present = "join"
    )]
    voters: Vec<String>,
    /// Coordinators to join as a non-voting coordinator, `host:port,...`.
    #[arg(long, value_delimiter = ',')]
    join: Vec<String>,
    #[command(flatten)]
    client_ports: ClientPorts,
    /// A node not heard from for this long is marked gone (e.g. `10s`, `3s`; at least `2s`:
    /// a primary's lease is half of it and must span several 0.5 s heartbeats).
    #[arg(long, default_value = "10s", value_parser = parse_node_timeout)]
    node_timeout: Duration,
}

#[derive(clap::Args, Debug)]
struct DatanodeArgs {
    #[command(flatten)]
    node: NodeArgs,
    /// Coordinators to join, `host:port,...`; names are resolved again on every attempt.
    #[arg(long, value_delimiter = ',', required = true)]
    join: Vec<String>,
    /// Port clients fetch scan results from directly (the Flight tickets a coordinator's
    /// Flight SQL hands out; 0 picks a free port), advertised at `--advertise-host`. Not the
    /// coordinators' 8815, so both roles can share a host.
    #[arg(long, default_value_t = 8816, env = "CREEK_DATA_FLIGHT_PORT")]
    flight_port: u16,
}

fn parse_attribute(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => {
            Ok((key.trim().to_string(), value.trim().to_string()))
        }
        _ => Err(format!("expected key=value, got '{text}'")),
    }
}

fn parse_node_timeout(text: &str) -> Result<Duration, String> {
    let timeout = parse_duration(text)?;
    if timeout < Duration::from_secs(2) {
        return Err(format!(
            "--node-timeout must be at least 2s (data nodes heartbeat every 0.5 s and hold a \
             primary lease of half the timeout), got '{text}'"
        ));
    }
    Ok(timeout)
}

fn parse_ticket_ttl(text: &str) -> Result<Duration, String> {
    let ttl = parse_duration(text)?;
    if ttl > Duration::from_secs(7 * 24 * 3600) {
        return Err(format!(
            "--flight-ticket-ttl must be at most 7d, got '{text}'"
        ));
    }
    Ok(ttl)
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    match creek_common::schema::parse_duration_ms(text) {
        Some(ms) if ms > 0 => Ok(Duration::from_millis(ms as u64)),
        _ => Err(format!(
            "expected a duration such as 10s or 500ms, got '{text}'"
        )),
    }
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,tantivy=warn,h2=warn,tower=warn,hyper=warn,openraft=warn",
        )
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Statements are parsed and planned on these threads: they get the query runtime's
    // stack (see `THREAD_STACK_BYTES`).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_stack_size(creek_proto::exec::THREAD_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        match cli.command {
            Command::Dev(args) => run_dev(args).await,
            Command::Coordinator(args) => run_coordinator(args).await,
            Command::Datanode(args) => run_datanode(args).await,
        }
    })
}

async fn bind(host: &str, port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    let address: SocketAddr = format!("{host}:{port}")
        .parse()
        .with_context(|| format!("bad address {host}:{port}"))?;
    tokio::net::TcpListener::bind(address)
        .await
        .with_context(|| format!("cannot listen on {address}"))
}

/// The host others reach a process listening on `bind` at: `advertise` if given.
fn advertised_host(bind: &str, advertise: Option<&str>) -> String {
    if let Some(host) = advertise {
        return host.to_string();
    }
    if !matches!(bind, "0.0.0.0" | "::" | "[::]") {
        return bind.to_string();
    }
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "127.0.0.1".to_string())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    tracing::info!("shutting down");
    Ok(())
}

/// Serves pgwire and HTTP for `cluster` until a signal arrives.
async fn serve_clients(
    cluster: Arc<Cluster>,
    bind_host: &str,
    ports: &ClientPorts,
) -> anyhow::Result<()> {
    let pg = bind(bind_host, ports.pg_port).await?;
    let http = bind(bind_host, ports.http_port).await?;
    let flight = bind(bind_host, ports.flight_port).await?;
    tracing::info!(
        node = %cluster.node_id(), pg = %pg.local_addr()?, http = %http.local_addr()?,
        flight = %flight.local_addr()?, "accepting clients"
    );
    let pg_server = tokio::spawn(creek_coordinator::frontend::pgwire::serve(
        pg,
        cluster.clone(),
        ports.max_connections as usize,
    ));
    let http_server = tokio::spawn(creek_coordinator::frontend::http::serve(
        http,
        cluster.clone(),
        ports.max_connections as usize,
    ));
    let flight_server = tokio::spawn(creek_coordinator::frontend::flight_sql::serve(
        flight,
        cluster,
        ports.flight_ticket_ttl,
    ));
    wait_for_signal().await?;
    pg_server.abort();
    http_server.abort();
    flight_server.abort();
    Ok(())
}

/// Starts a coordinator's consensus and transport server.
async fn start_coordinator(
    config: ConsensusConfig,
    transport: tokio::net::TcpListener,
    data_dir: PathBuf,
    memory: creek_coordinator::memory::QueryMemory,
) -> anyhow::Result<Arc<Cluster>> {
    let catalog = Arc::new(Catalog::new(&config.cluster_name));
    let consensus = Consensus::start(config, catalog)
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.client_message()))?;
    let jobs = Jobs::new(consensus.node_id().to_string());
    tokio::spawn(creek_coordinator::consensus::service::serve(
        transport,
        consensus.clone(),
        jobs.clone(),
        data_dir,
        std::future::pending(),
    ));
    Ok(Arc::new(Cluster::new(consensus, jobs, memory)))
}

fn open_data_node(node_id: &str, data_dir: PathBuf) -> anyhow::Result<Arc<DataNode>> {
    std::fs::create_dir_all(&data_dir)
        .with_context(|| format!("cannot create {}", data_dir.display()))?;
    DataNode::open(DatanodeConfig {
        node_id: node_id.to_string(),
        data_dir,
    })
    .context("opening the data node")
}

/// The id of `creek dev`'s data node.
const DEV_DATA_NODE: &str = "dev-data";

async fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    // Both roles live in this process: a secret of its own keeps its transport port closed
    // to every other process.
    creek_proto::cluster_auth::install_random();
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("cannot create {}", args.data_dir.display()))?;
    let data_node = open_data_node(DEV_DATA_NODE, args.data_dir.join("data"))?;
    let data_transport = bind(&args.bind, 0).await?;
    let data_address = data_transport.local_addr()?;
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let data_server = tokio::spawn(data_node.clone().serve(data_transport, async {
        let _ = shutdown_rx.await;
    }));
    // The embedded data node serves scans to Flight SQL clients on a free port of the client
    // address: the same direct pulls as in a cluster.
    let data_flight = bind(&args.bind, args.data_flight_port).await?;
    let data_flight_address = format!(
        "{}:{}",
        advertised_host(&args.bind, args.advertise_host.as_deref()),
        data_flight.local_addr()?.port()
    );
    let data_flight_server = tokio::spawn(
        data_node
            .clone()
            .serve_client_flight(data_flight, std::future::pending()),
    );

    let transport = bind(&args.bind, args.transport_port).await?;
    let transport_address = transport.local_addr()?.to_string();
    let cluster_dir = args.data_dir.join("cluster");
    let legacy = cluster_dir.join("state.json");
    let imported_state = match std::fs::read(&legacy) {
        Ok(bytes) => Some(
            serde_json::from_slice(&bytes)
                .with_context(|| format!("cluster state {} is unreadable", legacy.display()))?,
        ),
        Err(_) => None,
    };
    let me = NodeInfo {
        id: NodeId("dev".into()),
        role: NodeRole::Coordinator,
        address: transport_address.clone(),
        flight_address: None,
        attributes: Default::default(),
        voter: true,
        alive: true,
        decommissioned: false,
        stopping: None,
    };
    let cluster = start_coordinator(
        ConsensusConfig {
            node: me,
            cluster_name: "creek".into(),
            raft_dir: cluster_dir.join("raft"),
            voters: vec![("dev".into(), transport_address.clone())],
            join: vec![],
            node_timeout: Duration::from_secs(10),
            imported_state,
        },
        transport,
        cluster_dir,
        args.client_ports.query_memory(),
    )
    .await?;
    let membership = tokio::spawn(creek_datanode::membership::run(
        data_node,
        MembershipConfig {
            cluster_name: "creek".into(),
            join: vec![transport_address.clone()],
            address: data_address.to_string(),
            attributes: Default::default(),
            flight_address: Some(data_flight_address),
        },
    ));
    cluster
        .consensus()
        .wait_for_data_node(
            &NodeId(DEV_DATA_NODE.into()),
            &data_address.to_string(),
            Duration::from_secs(60),
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}", e.client_message()))?;
    tracing::info!(
        transport = %transport_address, data_node = %data_address,
        data_dir = %args.data_dir.display(), "creek dev is ready"
    );
    serve_clients(cluster, &args.bind, &args.client_ports).await?;
    membership.abort();
    data_flight_server.abort();
    let _ = shutdown_tx.send(());
    let _ = data_server.await;
    Ok(())
}

async fn run_coordinator(args: CoordinatorArgs) -> anyhow::Result<()> {
    let node = &args.node;
    node.install_cluster_secret()?;
    std::fs::create_dir_all(&node.data_dir)
        .with_context(|| format!("cannot create {}", node.data_dir.display()))?;
    let mut voters = Vec::new();
    for entry in &args.voters {
        let (name, address) = entry
            .split_once('=')
            .with_context(|| format!("--voters entries are id=host:port, got '{entry}'"))?;
        voters.push((name.trim().to_string(), address.trim().to_string()));
    }
    let voter = !voters.is_empty();
    let address = match voters.iter().find(|(name, _)| *name == node.node_id) {
        Some((_, address)) => address.clone(),
        None if voter => anyhow::bail!(
            "--node-id {} is not among --voters; start a non-voting coordinator with --join",
            node.node_id
        ),
        None => format!(
            "{}:{}",
            advertised_host(&node.bind, node.advertise_host.as_deref()),
            node.transport_port
        ),
    };
    let transport = bind(&node.bind, node.transport_port).await?;
    let me = NodeInfo {
        id: NodeId(node.node_id.clone()),
        role: NodeRole::Coordinator,
        address,
        flight_address: None,
        attributes: node.attributes.iter().cloned().collect(),
        voter,
        alive: true,
        decommissioned: false,
        stopping: None,
    };
    let cluster = start_coordinator(
        ConsensusConfig {
            node: me,
            cluster_name: node.cluster_name.clone(),
            raft_dir: node.data_dir.join("raft"),
            voters,
            join: args.join.clone(),
            node_timeout: args.node_timeout,
            imported_state: None,
        },
        transport,
        node.data_dir.clone(),
        args.client_ports.query_memory(),
    )
    .await?;
    let consensus = cluster.consensus().clone();
    if !consensus.wait_joined(Duration::from_secs(30)).await {
        tracing::warn!(
            "not joined to the cluster after 30 s; serving clients with the state known"
        );
    }
    tokio::select! {
        served = serve_clients(cluster, &node.bind, &args.client_ports) => served,
        reason = consensus.refused() => {
            Err(anyhow::anyhow!("the cluster refused this coordinator: {reason}"))
        }
    }
}

async fn run_datanode(args: DatanodeArgs) -> anyhow::Result<()> {
    let node = &args.node;
    node.install_cluster_secret()?;
    let data_node = open_data_node(&node.node_id, node.data_dir.clone())?;
    let transport = bind(&node.bind, node.transport_port).await?;
    let port = transport.local_addr()?.port();
    let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(data_node.clone().serve(transport, async {
        let _ = shutdown_rx.await;
    }));
    let flight = bind(&node.bind, args.flight_port).await?;
    let flight_port = flight.local_addr()?.port();
    let flight_server = tokio::spawn(
        data_node
            .clone()
            .serve_client_flight(flight, std::future::pending()),
    );
    let membership = creek_datanode::membership::run(
        data_node.clone(),
        MembershipConfig {
            cluster_name: node.cluster_name.clone(),
            join: args.join.clone(),
            address: format!(
                "{}:{port}",
                advertised_host(&node.bind, node.advertise_host.as_deref())
            ),
            attributes: node.attributes.iter().cloned().collect(),
            flight_address: Some(format!(
                "{}:{flight_port}",
                advertised_host(&node.bind, node.advertise_host.as_deref())
            )),
        },
    );
    tracing::info!(node = %node.node_id, port, flight_port, "data node started");
    tokio::pin!(membership);
    // Membership ends when the node was decommissioned and drained, or refused.
    let ended = |outcome: Result<(), String>| {
        outcome.map_err(|reason| anyhow::anyhow!("the cluster refused this node: {reason}"))
    };
    let outcome = loop {
        tokio::select! {
            outcome = &mut membership => break ended(outcome),
            signal = wait_for_signal() => {
                if let Err(error) = signal {
                    break Err(error);
                }
                // Heartbeats go on meanwhile: the node serves until its copies are safe.
                let second = async {
                    let _ = wait_for_signal().await;
                };
                let stop = tokio::select! {
                    outcome = creek_datanode::graceful_stop::run(&data_node, second) => outcome,
                    outcome = &mut membership => break ended(outcome),
                };
                if stop == creek_datanode::graceful_stop::Outcome::Stop {
                    break Ok(());
                }
            }
        }
    };
    flight_server.abort();
    let _ = shutdown_tx.send(());
    let _ = server.await;
    outcome
}
