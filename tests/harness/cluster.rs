//! A cluster for the publisher and RPC tests: an execution client, a broker, a publisher writing the client's
//! chain to the log topic, and replicas of that log.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy_primitives::B256;
use ec_testkit::MockBroker;
use serde_json::json;

use super::{
    chain::{free_port, Upstream},
    publisher_cmd, read_log, replica_follow_cmd, run_replica_ok, spawn_quiet, tempdir, Killed,
};

/// A client (anvil or geth), a mock broker with the `log` and `log-tx` topics, and a publisher following the
/// client into `log`; everything is killed on drop.
pub struct Cluster {
    pub broker: MockBroker,
    pub client: Upstream,
    pub publisher: Option<Killed>,
    pub tmp: tempfile::TempDir,
    /// The publisher's JSON-RPC endpoint when not the client itself (a proxy), and more flags.
    pub rpc_url: Option<String>,
    pub publisher_args: Vec<String>,
}

impl Cluster {
    /// anvil with `anvil_args`, the broker and a publisher.
    pub fn start(anvil_args: &[&str]) -> Cluster {
        Cluster::on(Upstream::anvil(anvil_args))
    }

    /// The broker and a publisher following `client`.
    pub fn on(client: Upstream) -> Cluster {
        let broker = MockBroker::start(&["log", "log-tx"]).expect("mock broker");
        let mut c = Cluster::idle(client, broker);
        c.start_publisher();
        c
    }

    /// The broker and `client`, no publisher yet.
    pub fn idle(client: Upstream, broker: MockBroker) -> Cluster {
        Cluster { broker, client, publisher: None, tmp: tempdir(), rpc_url: None, publisher_args: Vec::new() }
    }

    fn publisher_cmd(&self) -> Command {
        let rpc_url = self.rpc_url.clone().unwrap_or_else(|| self.client.http_url());
        let mut cmd = publisher_cmd(&self.broker.bootstrap_servers(), &rpc_url, self.client.genesis());
        cmd.args(["--ws-url", &self.client.ws_url()])
            .args(["--heartbeat-interval-ms", "500", "--poll-interval-ms", "100", "--reorg-window", "32"])
            .args(&self.publisher_args)
            .env("RUST_LOG", "info,rdkafka=warn");
        cmd
    }

    pub fn start_publisher(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("publisher.log"))
            .expect("log file");
        let child = self
            .publisher_cmd()
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("publisher starts");
        self.publisher = Some(Killed(child));
    }

    pub fn publisher_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("publisher.log")).unwrap_or_default()
    }

    /// A replica following the topic with JSON-RPC on a free port (and `extra` flags); killed on drop.
    pub fn rpc_replica(&self, extra: &[&str]) -> (Killed, u16) {
        let port = free_port();
        let data = self.tmp.path().join(format!("rpc-replica-{port}"));
        let mut cmd = replica_follow_cmd(&data, &self.brokers(), "log");
        cmd.args(["--rpc-addr", &format!("127.0.0.1:{port}")]).args(extra);
        (spawn_quiet(cmd), port)
    }

    pub fn brokers(&self) -> String {
        self.broker.bootstrap_servers()
    }

    /// Waits until the log's head is the client's head, then replays it into a fresh replica; returns the
    /// replica directory and the log as it was when the replica started (the replica holds at least that).
    pub fn replay(&self, name: &str) -> (std::path::PathBuf, Vec<ec_log::Assembled>) {
        let wait = std::env::var("EC_TEST_WAIT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            // anvil answers eth_sendTransaction before it mines: wait until nothing is pending, then compare
            // with its head as of now.
            let pool = self.client.call("txpool_status", json!([]));
            if pool["pending"].as_str().is_some_and(|p| p != "0x0")
                || pool["pending"].as_u64().is_some_and(|p| p > 0)
            {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let (head, hash) = self.client.head();
            if published_head(&read_log(&self.brokers(), "log")) == Some((head, hash)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the log did not reach anvil's head {head} in {wait}s; publisher log:\n{}",
                self.publisher_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        // The log as of now, read before the replica runs: the replica reads at least this far, while a
        // client that keeps sealing blocks (geth --dev with a period) may add more to the topic meanwhile,
        // which a log read afterwards would name but the replica may not hold.
        let log = read_log(&self.brokers(), "log");
        let dir = self.tmp.path().join(name);
        run_replica_ok(&dir, &self.brokers(), "log");
        (dir, log)
    }
}

/// The head block of a log, following blocks and reverts (skipping duplicate sequences).
pub fn published_head(log: &[ec_log::Assembled]) -> Option<(u64, B256)> {
    let mut chain: Vec<(u64, B256)> = Vec::new();
    let mut next = 0;
    for r in log {
        if r.envelope.sequence < next {
            continue;
        }
        next = r.envelope.sequence + 1;
        match &r.record {
            ec_log::Record::Genesis(g) => chain.push((0, g.block.hash)),
            ec_log::Record::Checkpoint(c) => chain.push((c.block.number, c.block.hash)),
            ec_log::Record::Block(b) => chain.push((b.number, b.hash)),
            ec_log::Record::Revert(_) => {
                chain.pop();
            }
            ec_log::Record::Heartbeat(_) => {}
        }
    }
    chain.last().copied()
}
