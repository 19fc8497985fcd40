//! A private network for a test cluster: one Linux network namespace per node, joined by veth
//! pairs to a bridge the test creates, so links between chosen nodes can be cut and healed.
//!
//! A cut is a pair of blackhole routes (one in each namespace): packets between the two nodes
//! vanish, established connections hang instead of failing fast, and new connections are
//! refused — what a partition looks like to a process. Needs root (`ip netns`, `ip link`);
//! everything is made under a name unique to the test process and removed on drop, and
//! namespaces left behind by a test process that died are removed when the next one starts.
//!
//! This module only shapes the network; it knows nothing about Creek.

use std::collections::BTreeSet;
use std::process::Command;

use anyhow::{bail, ensure, Context};

/// Prefix of every namespace and interface this module makes (`ck<pid>...`).
const PREFIX: &str = "ck";

/// The bridge, the namespaces and the cuts of one test.
pub struct Network {
    tag: String,
    /// Third octet of this test's 10.77.x.0/24 subnet.
    subnet: u8,
    hosts: Vec<Host>,
    cuts: BTreeSet<(usize, usize)>,
}

/// One node's namespace.
struct Host {
    name: String,
    namespace: String,
    /// The bridge-side end of the node's veth pair.
    outer: String,
    address: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .with_context(|| "running ip (iproute2)")?;
    ensure!(
        output.status.success(),
        "ip {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(())
}

fn ip_in(namespace: &str, args: &[&str]) -> anyhow::Result<()> {
    let mut full = vec!["netns", "exec", namespace, "ip"];
    full.extend_from_slice(args);
    ip(&full)
}

/// Removes namespaces and bridges of earlier test processes that are no longer running.
fn remove_stale() {
    let Ok(output) = Command::new("ip").args(["netns", "list"]).output() else {
        return;
    };
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let name = line.split_whitespace().next().unwrap_or("");
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let pid: String = rest.chars().take_while(char::is_ascii_digit).collect();
        if pid.is_empty() || std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = ip(&["netns", "del", name]);
        let _ = ip(&["link", "del", &format!("{PREFIX}{pid}br")]);
    }
}

impl Network {
    /// Makes the bridge (with an address of its own, so the test process reaches every node).
    pub fn create() -> anyhow::Result<Network> {
        Command::new("ip")
            .arg("-V")
            .output()
            .context("iproute2's `ip` is needed for the network tests")?;
        remove_stale();
        let pid = std::process::id();
        // A subnet no other bridge uses (another test may run at the same time).
        let used = Command::new("ip")
            .args(["-4", "-o", "addr"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let subnet = (0..250u32)
            .map(|i| ((pid + i) % 250) as u8 + 1)
            .find(|n| !used.contains(&format!(" 10.77.{n}.")))
            .context("no free 10.77.x.0/24 subnet for the test network")?;
        let network = Network {
            tag: format!("{PREFIX}{pid}"),
            subnet,
            hosts: Vec::new(),
            cuts: BTreeSet::new(),
        };
        let bridge = network.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])
            .context("creating a bridge (the network tests must run as root)")?;
        ip(&[
            "addr",
            "add",
            &format!("10.77.{}.1/24", network.subnet),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(network)
    }

    fn bridge(&self) -> String {
        format!("{}br", self.tag)
    }

    /// Adds a namespace for node `name` and returns its address.
    pub fn add_host(&mut self, name: &str) -> anyhow::Result<String> {
        let index = self.hosts.len();
        ensure!(index < 200, "too many hosts");
        let namespace = format!("{}-{name}", self.tag);
        // Interface names have at most 15 bytes.
        let outer = format!("{}v{index}", self.tag);
        let address = format!("10.77.{}.{}", self.subnet, index + 10);
        ip(&["netns", "add", &namespace])?;
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", "eth0", "netns", &namespace,
        ])?;
        ip(&["link", "set", &outer, "master", &self.bridge()])?;
        ip(&["link", "set", &outer, "up"])?;
        ip_in(&namespace, &["link", "set", "lo", "up"])?;
        ip_in(
            &namespace,
            &["addr", "add", &format!("{address}/24"), "dev", "eth0"],
        )?;
        ip_in(&namespace, &["link", "set", "eth0", "up"])?;
        self.hosts.push(Host {
            name: name.to_string(),
            namespace,
            outer,
            address: address.clone(),
        });
        Ok(address)
    }

    /// The command prefix that runs a program inside `name`'s namespace.
    pub fn wrapper(&self, name: &str) -> anyhow::Result<Vec<String>> {
        let host = self.host(name)?;
        Ok(["ip", "netns", "exec", &self.hosts[host].namespace]
            .iter()
            .map(|s| s.to_string())
            .collect())
    }

    fn host(&self, name: &str) -> anyhow::Result<usize> {
        self.hosts
            .iter()
            .position(|h| h.name == name)
            .with_context(|| format!("no host {name} in the test network"))
    }

    /// Cuts the link between `a` and `b` in both directions.
    pub fn cut(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        let (a, b) = (self.host(a)?, self.host(b)?);
        ensure!(a != b, "a host cannot be cut from itself");
        let key = (a.min(b), a.max(b));
        if !self.cuts.insert(key) {
            return Ok(());
        }
        for (from, to) in [(a, b), (b, a)] {
            ip_in(
                &self.hosts[from].namespace,
                &[
                    "route",
                    "add",
                    "blackhole",
                    &format!("{}/32", self.hosts[to].address),
                ],
            )?;
        }
        Ok(())
    }

    /// Restores the link between `a` and `b`.
    pub fn heal(&mut self, a: &str, b: &str) -> anyhow::Result<()> {
        let (a, b) = (self.host(a)?, self.host(b)?);
        if !self.cuts.remove(&(a.min(b), a.max(b))) {
            return Ok(());
        }
        for (from, to) in [(a, b), (b, a)] {
            ip_in(
                &self.hosts[from].namespace,
                &[
                    "route",
                    "del",
                    "blackhole",
                    &format!("{}/32", self.hosts[to].address),
                ],
            )?;
        }
        Ok(())
    }

    /// Heals every cut.
    pub fn heal_all(&mut self) -> anyhow::Result<()> {
        let cuts: Vec<(usize, usize)> = self.cuts.iter().copied().collect();
        for (a, b) in cuts {
            let (a, b) = (self.hosts[a].name.clone(), self.hosts[b].name.clone());
            self.heal(&a, &b)?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for host in &self.hosts {
            // Deleting the namespace deletes its veth end, and with it the pair.
            let _ = ip(&["netns", "del", &host.namespace]);
            let _ = ip(&["link", "del", &host.outer]);
        }
        let _ = ip(&["link", "del", &self.bridge()]);
    }
}

/// Fails unless this process may make network namespaces.
pub fn check_available() -> anyhow::Result<()> {
    let probe = format!("{PREFIX}{}probe", std::process::id());
    if ip(&["netns", "add", &probe]).is_err() {
        bail!("this test makes network namespaces and must run as root with iproute2");
    }
    let _ = ip(&["netns", "del", &probe]);
    Ok(())
}
