//! Redis servers of a test's own: a single server on a Unix socket (its
//! `INFO commandstats` and `SCAN` see only that test's commands) and a
//! three-node Redis Cluster on loopback ports. Both run Debian's
//! `redis-server` (which `scripts/test.sh` installs), keep nothing on disk
//! and are killed when dropped.
//!
//! # Example
//!
//! ```no_run
//! use guardrails_testkit::redis::PrivateRedis;
//!
//! let redis = PrivateRedis::start();
//! assert!(redis.url().starts_with("redis+unix://"));
//! assert_eq!(redis.cli(&["PING"]), "PONG");
//! ```

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A `redis-server` of one test, on a Unix socket in a fresh directory.
#[derive(Debug)]
pub struct PrivateRedis {
    dir: PathBuf,
    child: Child,
}

impl PrivateRedis {
    /// Starts the server and waits until it answers; panics with the reason
    /// when it can't (no `redis-server` on the `PATH`, say).
    pub fn start() -> Self {
        let dir = fresh_dir("redis");
        let child = spawn_private(&dir);
        let redis = Self { dir, child };
        redis.wait_until_up();
        redis
    }

    /// Stops the server (an outage): connections fail until
    /// [`restart`](Self::restart). Its data is gone (nothing is kept on
    /// disk).
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(self.dir.join("redis.sock"));
    }

    /// Starts it again on the same socket, empty, and waits until it
    /// answers.
    pub fn restart(&mut self) {
        self.stop();
        self.child = spawn_private(&self.dir);
        self.wait_until_up();
    }

    fn wait_until_up(&self) {
        wait_for(
            || self.try_cli(&["PING"]).as_deref() == Some("PONG"),
            "redis-server",
        );
    }

    /// `redis+unix:///…/redis.sock`.
    pub fn url(&self) -> String {
        format!("redis+unix://{}", self.dir.join("redis.sock").display())
    }

    /// The output of `redis-cli` running `args` on this server.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    fn try_cli(&self, args: &[&str]) -> Option<String> {
        cli(
            &["-s", &self.dir.join("redis.sock").display().to_string()],
            args,
        )
    }

    /// How many times `command` ran since the server started (or since
    /// `CONFIG RESETSTAT`): `calls` in `INFO commandstats`.
    pub fn calls(&self, command: &str) -> u64 {
        command_calls(&self.cli(&["INFO", "commandstats"]), command)
    }

    /// Every key on the server.
    pub fn keys(&self) -> Vec<String> {
        key_list(&self.cli(&["--scan"]))
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `redis-server` on `dir/redis.sock`, keeping nothing on disk.
fn spawn_private(dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args(["--port", "0", "--save", "", "--appendonly", "no"])
        .arg("--unixsocket")
        .arg(dir.join("redis.sock"))
        .arg("--dir")
        .arg(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("redis-server could not be started ({e}): scripts/test.sh installs it")
        })
}

/// A three-node Redis Cluster (masters only) on loopback ports.
#[derive(Debug)]
pub struct RedisCluster {
    dir: PathBuf,
    ports: Vec<u16>,
    nodes: Vec<Child>,
}

impl RedisCluster {
    /// Starts three nodes, assigns the slots and waits until the cluster
    /// says `cluster_state:ok` on every node.
    pub fn start() -> Self {
        let dir = fresh_dir("redis-cluster");
        let ports = free_cluster_ports(3);
        let mut nodes = Vec::new();
        for port in &ports {
            let node_dir = dir.join(port.to_string());
            std::fs::create_dir_all(&node_dir).unwrap();
            let child = Command::new("redis-server")
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .args(["--cluster-enabled", "yes", "--cluster-node-timeout", "2000"])
                .args(["--port", &port.to_string()])
                .arg("--cluster-config-file")
                .arg(node_dir.join("nodes.conf"))
                .arg("--dir")
                .arg(&node_dir)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("redis-server could not be started ({e})"));
            nodes.push(child);
        }
        let cluster = Self { dir, ports, nodes };
        for port in &cluster.ports {
            wait_for(
                || cluster.try_cli(*port, &["PING"]).as_deref() == Some("PONG"),
                "a cluster node",
            );
        }
        let addresses: Vec<String> = cluster
            .ports
            .iter()
            .map(|p| format!("127.0.0.1:{p}"))
            .collect();
        let mut create = vec!["--cluster", "create"];
        create.extend(addresses.iter().map(String::as_str));
        create.extend(["--cluster-replicas", "0", "--cluster-yes"]);
        cli(&[], &create).expect("redis-cli --cluster create failed");
        for port in &cluster.ports {
            wait_for(
                || {
                    cluster
                        .try_cli(*port, &["CLUSTER", "INFO"])
                        .is_some_and(|info| info.contains("cluster_state:ok"))
                },
                "the cluster to be ready",
            );
        }
        cluster
    }

    /// The URL of the first node (the seed a client discovers the rest from).
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.ports[0])
    }

    /// The output of `redis-cli -c` running `args` on the cluster.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(self.ports[0], args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} failed"))
    }

    fn try_cli(&self, port: u16, args: &[&str]) -> Option<String> {
        cli(&["-c", "-p", &port.to_string()], args)
    }

    /// `calls` of `command` summed over every node.
    pub fn calls(&self, command: &str) -> u64 {
        self.ports
            .iter()
            .map(|p| {
                command_calls(
                    &self
                        .try_cli(*p, &["INFO", "commandstats"])
                        .unwrap_or_default(),
                    command,
                )
            })
            .sum()
    }

    /// Every key on every node.
    pub fn keys(&self) -> Vec<String> {
        self.ports
            .iter()
            .flat_map(|p| key_list(&self.try_cli(*p, &["--scan"]).unwrap_or_default()))
            .collect()
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            let _ = node.kill();
            let _ = node.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The keys `redis-cli --scan` printed, one a line.
fn key_list(scan: &str) -> Vec<String> {
    scan.lines()
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `calls=N` of `cmdstat_<command>` in an `INFO commandstats` answer.
fn command_calls(info: &str, command: &str) -> u64 {
    let prefix = format!("cmdstat_{}:", command.to_ascii_lowercase());
    info.lines()
        .find_map(|l| l.trim().strip_prefix(prefix.as_str()))
        .and_then(|stats| stats.split(',').find_map(|kv| kv.strip_prefix("calls=")))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0)
}

fn cli(connection: &[&str], args: &[&str]) -> Option<String> {
    let out = Command::new("redis-cli")
        .args(connection)
        .args(args)
        .stderr(Stdio::null())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn fresh_dir(kind: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Unix socket paths are short (108 bytes): under /tmp, not a deep
    // target directory.
    let dir = PathBuf::from(format!("/tmp/gr-{kind}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `count` free ports whose cluster bus ports (port + 10000) are free too.
fn free_cluster_ports(count: usize) -> Vec<u16> {
    let mut ports = Vec::new();
    let mut candidate = 20_000 + (std::process::id() % 10_000) as u16;
    while ports.len() < count {
        candidate = if candidate >= 39_990 {
            20_000
        } else {
            candidate + 7
        };
        let free = |p: u16| TcpListener::bind(("127.0.0.1", p)).is_ok();
        if free(candidate) && free(candidate + 10_000) {
            ports.push(candidate);
        }
    }
    ports
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < Duration::from_secs(15),
            "{what} did not come up within 15 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
