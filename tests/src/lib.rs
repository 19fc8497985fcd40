//! Test harness for end-to-end tests: starts `creek dev` processes, or clusters of
//! `creek coordinator` and `creek datanode` processes, on free loopback ports with their own
//! data directories, waits until they answer, and kills or restarts them.
//!
//! Tests talk to Creek only the way users do (pgwire, HTTP); this crate must not link the
//! server crates. A cluster can also run in a private network ([`network`]) whose links the
//! test cuts; [`workload`] holds the recording writers and the checks that faults reuse.

pub mod network;
pub mod workload;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Where [`free_port`] looks: below the kernel's ephemeral range (32768 and up by default),
/// so that no outgoing connection (a client, a gRPC channel, another test's) is given the
/// port between the check here and the server binding it, as one bound to port 0 can be.
const TEST_PORTS: std::ops::Range<u16> = 20_000..32_000;

/// The cluster secret every node a test starts shares (`CREEK_CLUSTER_SECRET`).
pub const TEST_CLUSTER_SECRET: &str = "creek-test-cluster-secret";

/// Returns a loopback port that was free a moment ago and that this process has not handed
/// out before. Each process starts at its own place in [`TEST_PORTS`] (tests run as parallel
/// processes) and walks on from there.
pub fn free_port() -> anyhow::Result<u16> {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::LazyLock;
    static NEXT: LazyLock<AtomicU32> = LazyLock::new(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        AtomicU32::new(std::process::id().wrapping_mul(7_919).wrapping_add(nanos))
    });
    let span = u32::from(TEST_PORTS.end - TEST_PORTS.start);
    for _ in 0..span {
        let offset = NEXT.fetch_add(1, Ordering::AcqRel) % span;
        let port = TEST_PORTS.start + offset as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    bail!("no free loopback port in {TEST_PORTS:?}")
}

/// Returns the `creek` binary: `$CREEK_BIN`, or the one next to this test binary.
pub fn creek_binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("CREEK_BIN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe()?;
    let dir = exe.parent().context("test binary has no directory")?;
    for candidate in [dir.join("creek"), dir.join("../creek")] {
        if candidate.exists() {
            return Ok(candidate);
        }
    }
    bail!(
        "creek binary not found next to {}; set CREEK_BIN",
        exe.display()
    )
}

/// A `creek` process the harness started: its command line and log file, so it can be killed
/// and started again with the same arguments. Dropping it stops it (SIGTERM, then SIGKILL).
pub struct ManagedProcess {
    child: Option<Child>,
    /// A command that runs `creek` (e.g. `ip netns exec ns`), or empty.
    wrapper: Vec<String>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    log_path: PathBuf,
}

impl ManagedProcess {
    /// Starts `creek <args>` with stderr appended to `log_path`.
    pub fn start(args: Vec<String>, log_path: PathBuf) -> anyhow::Result<ManagedProcess> {
        ManagedProcess::start_with_env(args, Vec::new(), log_path)
    }

    /// Starts `creek <args>` with extra environment variables (kept for restarts).
    pub fn start_with_env(
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_path: PathBuf,
    ) -> anyhow::Result<ManagedProcess> {
        ManagedProcess::start_wrapped(Vec::new(), args, env, log_path)
    }

    /// Starts `<wrapper> creek <args>`: the wrapper must exec `creek` (as `ip netns exec`
    /// does), so the process id is the server's.
    pub fn start_wrapped(
        wrapper: Vec<String>,
        args: Vec<String>,
        env: Vec<(String, String)>,
        log_path: PathBuf,
    ) -> anyhow::Result<ManagedProcess> {
        let mut process = ManagedProcess {
            child: None,
            wrapper,
            args,
            env,
            log_path,
        };
        process.spawn()?;
        Ok(process)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let creek = creek_binary()?;
        let mut command = match self.wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(&creek);
                command
            }
            None => Command::new(&creek),
        };
        let child = command
            .args(&self.args)
            .env("CREEK_CLUSTER_SECRET", TEST_CLUSTER_SECRET)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting creek {}", self.args.join(" ")))?;
        self.child = Some(child);
        Ok(())
    }

    /// Fails if the process has exited.
    pub fn check_running(&mut self) -> anyhow::Result<()> {
        if let Some(child) = self.child.as_mut() {
            if let Some(status) = child.try_wait()? {
                bail!(
                    "creek {} exited with {status}; log: {}",
                    self.args.first().map(String::as_str).unwrap_or(""),
                    self.log_path.display()
                );
            }
        }
        Ok(())
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// How the process ended, if it has (`None` while it runs).
    pub fn exit_status(&mut self) -> anyhow::Result<Option<std::process::ExitStatus>> {
        match self.child.as_mut() {
            Some(child) => Ok(child.try_wait()?),
            None => Ok(None),
        }
    }

    /// Kills the process with SIGKILL (no shutdown work at all).
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again with the same arguments (after killing it if it runs).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill_hard()?;
        self.spawn()
    }

    /// Returns the log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for ManagedProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            // SIGTERM first so the server shuts down cleanly; SIGKILL if it does not.
            let _ = Command::new("kill").arg(child.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Waits until `port` on loopback accepts connections, failing early if `process` exits.
fn wait_for_port(process: &mut ManagedProcess, port: u16, timeout: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while started.elapsed() < timeout {
        process.check_running()?;
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    bail!("creek did not open port {port} in {timeout:?}")
}

/// Returns a libpq-style connection string for `port`; `options` are `-c name=value` settings.
pub fn pg_config(port: u16, options: &str) -> String {
    pg_config_at("127.0.0.1", port, options)
}

/// Like [`pg_config`] for a server on `host`.
pub fn pg_config_at(host: &str, port: u16, options: &str) -> String {
    let mut config = format!("host={host} port={port} user=crate dbname=doc");
    if !options.is_empty() {
        config.push_str(&format!(" options='{options}'"));
    }
    config
}

/// A running `creek dev` process.
pub struct CreekServer {
    process: ManagedProcess,
    /// pgwire port.
    pub pg_port: u16,
    /// HTTP port.
    pub http_port: u16,
}

impl CreekServer {
    /// Starts `creek dev` with data in `data_dir` and waits until pgwire accepts connections.
    pub fn start(data_dir: &Path) -> anyhow::Result<CreekServer> {
        CreekServer::start_with_env(data_dir, Vec::new())
    }

    /// Like [`CreekServer::start`], with extra environment variables for the process (an
    /// `LD_PRELOAD` fault library, say), kept for restarts.
    pub fn start_with_env(
        data_dir: &Path,
        env: Vec<(String, String)>,
    ) -> anyhow::Result<CreekServer> {
        let pg_port = free_port()?;
        let http_port = free_port()?;
        let args = vec![
            "dev".to_string(),
            "--data-dir".to_string(),
            data_dir.display().to_string(),
            "--pg-port".to_string(),
            pg_port.to_string(),
            "--http-port".to_string(),
            http_port.to_string(),
            "--transport-port".to_string(),
            free_port()?.to_string(),
            "--flight-port".to_string(),
            "0".to_string(),
        ];
        let mut server = CreekServer {
            process: ManagedProcess::start_with_env(args, env, data_dir.with_extension("log"))?,
            pg_port,
            http_port,
        };
        wait_for_port(&mut server.process, pg_port, Duration::from_secs(60))?;
        Ok(server)
    }

    /// Returns a libpq-style connection string; `options` are `-c name=value` settings.
    pub fn pg_config(&self, options: &str) -> String {
        pg_config(self.pg_port, options)
    }

    /// Kills the process with SIGKILL (no shutdown work at all).
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        self.process.kill_hard()
    }

    /// Starts the process again on the same ports and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.process.restart()?;
        wait_for_port(&mut self.process, self.pg_port, Duration::from_secs(60))
    }

    /// Returns the server log so far.
    pub fn log(&self) -> String {
        self.process.log()
    }
}

/// One node of a [`TestCluster`].
pub struct ClusterNode {
    /// `--node-id`.
    pub id: String,
    /// The address it listens on (loopback, or its namespace's address in a [`network`]).
    pub host: String,
    /// The process.
    pub process: ManagedProcess,
    /// pgwire port (coordinators only).
    pub pg_port: Option<u16>,
    /// HTTP port (coordinators only).
    pub http_port: Option<u16>,
    /// Transport port.
    pub transport_port: u16,
}

impl ClusterNode {
    /// Starts `creek <args>` as node `id`, logging to `<root>/<id>.log`.
    fn start(
        root: &Path,
        place: Placement,
        id: String,
        args: &[&str],
        env: &[(String, String)],
    ) -> anyhow::Result<Self> {
        Ok(ClusterNode {
            process: ManagedProcess::start_wrapped(
                place.wrapper,
                args.iter().map(|a| a.to_string()).collect(),
                env.to_vec(),
                root.join(format!("{id}.log")),
            )?,
            id,
            host: place.host,
            pg_port: None,
            http_port: None,
            transport_port: place.transport_port,
        })
    }
}

/// Where a node runs: its address, ports and the command that puts it there.
struct Placement {
    host: String,
    wrapper: Vec<String>,
    transport_port: u16,
    pg_port: u16,
    http_port: u16,
}

/// A cluster of `creek coordinator` and `creek datanode` processes on loopback ports, each with
/// its own data directory under one root.
pub struct TestCluster {
    /// Voting coordinators `c1..`.
    pub coordinators: Vec<ClusterNode>,
    /// Data nodes `d1..`.
    pub data_nodes: Vec<ClusterNode>,
    /// The private network the nodes run in, if any (dropped after them: fields drop in
    /// order).
    pub network: Option<network::Network>,
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Data nodes first: one stopping on SIGTERM hands its primaries over through the
        // leader, which must still be there.
        self.data_nodes.clear();
        self.coordinators.clear();
    }
}

impl TestCluster {
    /// Starts `coordinators` voters and `data_nodes` data nodes under `root` and waits until
    /// every node is alive in cluster state. Data node `i` gets `--attr tier=hot`, except the
    /// last of three or more, which gets `tier=cold`.
    pub async fn start(
        root: &Path,
        coordinators: usize,
        data_nodes: usize,
    ) -> anyhow::Result<TestCluster> {
        TestCluster::start_with_env(root, coordinators, data_nodes, &[]).await
    }

    /// Like [`TestCluster::start`], with extra environment variables for the data nodes
    /// (kept across restarts), e.g. [`lose_unsynced_env`].
    pub async fn start_with_env(
        root: &Path,
        coordinators: usize,
        data_nodes: usize,
        data_env: &[(String, String)],
    ) -> anyhow::Result<TestCluster> {
        TestCluster::start_in(root, coordinators, data_nodes, data_env, None).await
    }

    /// Like [`TestCluster::start_with_env`], every node in a namespace of its own in
    /// `network`, whose links the test can cut.
    pub async fn start_in(
        root: &Path,
        coordinators: usize,
        data_nodes: usize,
        data_env: &[(String, String)],
        network: Option<network::Network>,
    ) -> anyhow::Result<TestCluster> {
        std::fs::create_dir_all(root)?;
        let mut cluster = TestCluster {
            coordinators: Vec::new(),
            data_nodes: Vec::new(),
            network,
        };
        let places: Vec<Placement> = (0..coordinators)
            .map(|i| cluster.place(&format!("c{}", i + 1)))
            .collect::<anyhow::Result<_>>()?;
        let voters = places
            .iter()
            .enumerate()
            .map(|(i, place)| format!("c{}={}:{}", i + 1, place.host, place.transport_port))
            .collect::<Vec<_>>()
            .join(",");
        for (i, place) in places.into_iter().enumerate() {
            let id = format!("c{}", i + 1);
            let (pg_port, http_port) = (place.pg_port, place.http_port);
            let host = place.host.clone();
            let args = [
                "coordinator",
                "--node-id",
                &id,
                "--data-dir",
                &root.join(&id).display().to_string(),
                "--bind",
                &host,
                "--voters",
                &voters,
                "--transport-port",
                &place.transport_port.to_string(),
                "--pg-port",
                &pg_port.to_string(),
                "--http-port",
                &http_port.to_string(),
                "--flight-port",
                "0",
                "--node-timeout",
                "3s",
            ];
            let mut node = ClusterNode::start(root, place, id.clone(), &args, &[])?;
            (node.pg_port, node.http_port) = (Some(pg_port), Some(http_port));
            cluster.coordinators.push(node);
        }
        for i in 0..data_nodes {
            let tier = if data_nodes >= 3 && i + 1 == data_nodes {
                "tier=cold"
            } else {
                "tier=hot"
            };
            cluster.spawn_data_node(root, &format!("d{}", i + 1), tier, data_env)?;
        }
        cluster.wait_ready(Duration::from_secs(60)).await?;
        Ok(cluster)
    }

    /// Picks `id`'s address and ports: free loopback ports, or a new namespace in the
    /// network (where the default ports are free).
    fn place(&mut self, id: &str) -> anyhow::Result<Placement> {
        match self.network.as_mut() {
            None => Ok(Placement {
                host: "127.0.0.1".into(),
                wrapper: Vec::new(),
                transport_port: free_port()?,
                pg_port: free_port()?,
                http_port: free_port()?,
            }),
            Some(network) => Ok(Placement {
                host: network.add_host(id)?,
                wrapper: network.wrapper(id)?,
                transport_port: 4300,
                pg_port: 5432,
                http_port: 4200,
            }),
        }
    }

    /// Starts one more data node `id` (data under `<root>/<id>`, attribute `attr` such as
    /// `tier=hot`) that joins through the voters; returns once it runs, not once it joined.
    pub fn spawn_data_node(
        &mut self,
        root: &Path,
        id: &str,
        attr: &str,
        env: &[(String, String)],
    ) -> anyhow::Result<()> {
        let place = self.place(id)?;
        let join = self.join_addresses();
        let host = place.host.clone();
        let port = place.transport_port.to_string();
        let args = [
            "datanode",
            "--node-id",
            id,
            "--data-dir",
            &root.join(id).display().to_string(),
            "--bind",
            &host,
            "--join",
            &join,
            "--transport-port",
            &port,
            "--flight-port",
            "0",
            "--attr",
            attr,
        ];
        self.data_nodes
            .push(ClusterNode::start(root, place, id.to_string(), &args, env)?);
        Ok(())
    }

    /// The voters' transport addresses, as `--join` takes them.
    pub fn join_addresses(&self) -> String {
        self.coordinators
            .iter()
            .map(|c| format!("{}:{}", c.host, c.transport_port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connection string of coordinator `index` (wrapping around).
    pub fn pg_config(&self, index: usize, options: &str) -> String {
        let node = &self.coordinators[index % self.coordinators.len()];
        pg_config_at(
            &node.host,
            node.pg_port.expect("coordinators have a pg port"),
            options,
        )
    }

    /// Runs `sql` on coordinator `index` and returns the first column of every row as text.
    pub async fn query(&self, index: usize, sql: &str) -> anyhow::Result<Vec<String>> {
        query_text(&self.pg_config(index, ""), sql).await
    }

    /// Waits until every running coordinator answers, sees every running node alive and a
    /// leader, and all are at the same cluster-state version.
    pub async fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let mut last_error = anyhow::anyhow!("not checked");
        while started.elapsed() < timeout {
            for node in self
                .coordinators
                .iter_mut()
                .chain(self.data_nodes.iter_mut())
            {
                if node.process.is_running() {
                    node.process.check_running()?;
                }
            }
            match self.check_ready().await {
                Ok(()) => return Ok(()),
                Err(error) => last_error = error,
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("cluster not ready in {timeout:?}: {last_error}")
    }

    async fn check_ready(&self) -> anyhow::Result<()> {
        let mut expected: Vec<String> = self
            .coordinators
            .iter()
            .chain(self.data_nodes.iter())
            .filter(|n| n.process.is_running())
            .map(|n| n.id.clone())
            .collect();
        expected.sort();
        let mut versions = Vec::new();
        for (index, node) in self.coordinators.iter().enumerate() {
            if !node.process.is_running() {
                continue;
            }
            let alive = self
                .query(index, "SELECT id FROM sys.nodes WHERE alive ORDER BY id")
                .await?;
            let leader = self
                .query(index, "SELECT master_node FROM sys.cluster")
                .await?;
            if leader.first().is_none_or(|l| l.is_empty()) {
                bail!("{} knows no leader", node.id);
            }
            if !expected.iter().all(|id| alive.contains(id)) {
                bail!("{} sees {alive:?} alive, expected {expected:?}", node.id);
            }
            versions.push(
                self.query(index, "SELECT state_version FROM sys.cluster")
                    .await?
                    .join(""),
            );
        }
        if versions.windows(2).any(|pair| pair[0] != pair[1]) {
            bail!("coordinators are at different state versions: {versions:?}");
        }
        Ok(())
    }

    /// Index of the coordinator that is the Raft leader, as coordinator `asked` sees it.
    pub async fn leader(&self, asked: usize) -> anyhow::Result<usize> {
        let name = self
            .query(asked, "SELECT master_node FROM sys.cluster")
            .await?
            .into_iter()
            .next()
            .unwrap_or_default();
        self.coordinators
            .iter()
            .position(|c| c.id == name)
            .with_context(|| format!("leader '{name}' is not a coordinator"))
    }

    /// The logs of every node, last lines first, for failure reports.
    pub fn log_tail(&self, lines: usize) -> String {
        self.coordinators
            .iter()
            .chain(self.data_nodes.iter())
            .map(|n| {
                let log = n.process.log();
                let tail: Vec<&str> = log.lines().rev().take(lines).collect();
                format!("--- {}\n{}", n.id, tail.join("\n"))
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `sql` with the simple protocol and returns the first column of every row as text
/// (NULL as an empty string).
pub async fn query_text(config: &str, sql: &str) -> anyhow::Result<Vec<String>> {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let mut rows = Vec::new();
    for message in client.simple_query(sql).await? {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            rows.push(row.get(0).unwrap_or("").to_string());
        }
    }
    Ok(rows)
}

/// Every row of a simple-protocol query, each column as text (NULL as "NULL").
pub async fn rows(client: &tokio_postgres::Client, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    let mut out = Vec::new();
    for message in client
        .simple_query(sql)
        .await
        .with_context(|| format!("running {sql}"))?
    {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = message {
            out.push(
                (0..row.len())
                    .map(|i| row.get(i).unwrap_or("NULL").to_string())
                    .collect(),
            );
        }
    }
    Ok(out)
}

/// Connects with `config`; the connection runs in the background.
pub async fn connect(config: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(config, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

/// Polls `check` every 100 ms until it returns true; returns how long that took.
pub async fn wait_for(
    what: &str,
    limit: Duration,
    mut check: impl AsyncFnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let mut last = String::from("never true");
    while started.elapsed() < limit {
        match check().await {
            Ok(true) => return Ok(started.elapsed()),
            Ok(false) => {}
            Err(error) => last = format!("{error:#}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("{what}: not within {limit:?} (last: {last})")
}

/// Builds `tests/faults/lose_unsynced.c` into `dir` and returns the environment that loads
/// it: a process started with it loses every unsynced translog byte when it is killed.
pub fn lose_unsynced_env(dir: &std::path::Path) -> anyhow::Result<Vec<(String, String)>> {
    let source = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("faults/lose_unsynced.c");
    let library = dir.join("lose_unsynced.so");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = std::process::Command::new(&compiler)
        .args(["-shared", "-fPIC", "-O2", "-o"])
        .arg(&library)
        .arg(&source)
        .args(["-ldl", "-lpthread"])
        .status()
        .with_context(|| format!("running {compiler} to build {}", source.display()))?;
    if !status.success() {
        bail!("building {} failed", source.display());
    }
    Ok(vec![
        ("LD_PRELOAD".to_string(), library.display().to_string()),
        (
            "CREEK_LOSE_UNSYNCED_MATCH".to_string(),
            "translog-".to_string(),
        ),
    ])
}
