//! Test harness for end-to-end tests: starts `creek dev` processes on free loopback ports with
//! their own data directories, waits until they answer, and kills or restarts them.
//!
//! Tests talk to Creek only the way users do (pgwire, HTTP); this crate must not link the
//! server crates.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// Returns a loopback port that was free a moment ago.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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

/// A running `creek dev` process.
pub struct CreekServer {
    child: Option<Child>,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// pgwire port.
    pub pg_port: u16,
    /// HTTP port.
    pub http_port: u16,
    transport_port: u16,
}

impl CreekServer {
    /// Starts `creek dev` with data in `data_dir` and waits until pgwire accepts connections.
    pub fn start(data_dir: &Path) -> anyhow::Result<CreekServer> {
        let mut server = CreekServer {
            child: None,
            data_dir: data_dir.to_path_buf(),
            log_path: data_dir.with_extension("log"),
            pg_port: free_port()?,
            http_port: free_port()?,
            transport_port: free_port()?,
        };
        server.spawn()?;
        Ok(server)
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)?;
        let child = Command::new(creek_binary()?)
            .arg("dev")
            .arg("--data-dir")
            .arg(&self.data_dir)
            .args(["--pg-port", &self.pg_port.to_string()])
            .args(["--http-port", &self.http_port.to_string()])
            .args(["--transport-port", &self.transport_port.to_string()])
            .args(["--flight-port", "0"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting creek dev")?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(60))
    }

    fn wait_ready(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        while started.elapsed() < timeout {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "creek dev exited with {status}; log: {}",
                        self.log_path.display()
                    );
                }
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.pg_port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!(
            "creek dev did not open port {} in {timeout:?}",
            self.pg_port
        )
    }

    /// Returns a libpq-style connection string; `options` are `-c name=value` settings.
    pub fn pg_config(&self, options: &str) -> String {
        let mut config = format!("host=127.0.0.1 port={} user=crate dbname=doc", self.pg_port);
        if !options.is_empty() {
            config.push_str(&format!(" options='{options}'"));
        }
        config
    }

    /// Kills the process with SIGKILL (no shutdown work at all).
    pub fn kill_hard(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the process again on the same ports and data directory.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.kill_hard()?;
        self.spawn()
    }

    /// Returns the server log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }
}

impl Drop for CreekServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
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
