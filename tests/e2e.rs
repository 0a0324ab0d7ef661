//! The seed's operational procedures, end to end, with real processes: Apache Kafka as the broker, anvil as the
//! execution client, and the `ether-cattle` binary as publisher, replicas and balancer.
//!
//! Each test builds its own cluster on free 127.0.0.1 ports and kills it when it ends. The tests of this file
//! run one at a time (they share two cores with the processes they start).

mod harness;

use std::{
    path::PathBuf,
    process::{Command, Output, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex, MutexGuard,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use ec_testkit::KafkaBroker;
use harness::{
    balancer_cmd, bin,
    chain::{assert_replica_equals_upstream, free_port, genesis_file, touched, Upstream, DEV},
    http_get, http_post_json, http_post_raw, read_log, rpc_call, spawn_logged, Killed,
};
use serde_json::{json, Value};

/// The head block number served by the JSON-RPC port `port`, if it answers.
fn rpc_head(port: u16) -> Option<u64> {
    let v = rpc_call(port, "eth_blockNumber", json!([]));
    v["result"].as_str().and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
}

/// One e2e test at a time.
fn serial() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// A process of ours, its output kept in a log file that failure messages quote.
struct Proc {
    child: Killed,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: Command, log: PathBuf) -> Proc {
        Proc { child: spawn_logged(cmd, &log), log }
    }

    fn sigterm(&self) {
        let _ = Command::new("kill").args(["-TERM", &self.child.0.id().to_string()]).status();
    }

    /// Waits for the exit status; SIGKILL after `timeout` (and `None`).
    fn wait_exit(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.0.try_wait() {
                return status.code();
            }
            if Instant::now() > deadline {
                let _ = self.child.0.kill();
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then the exit status (SIGKILL after 20 s).
    fn terminate(&mut self) -> Option<i32> {
        self.sigterm();
        self.wait_exit(Duration::from_secs(20))
    }

    fn kill9(&mut self) {
        let _ = self.child.0.kill();
        let _ = self.child.0.wait();
    }

    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<_> = text.lines().collect();
        lines[lines.len().saturating_sub(15)..].join("\n")
    }
}

/// Polls `cond` until it holds; on timeout, panics quoting the logs of `procs`.
fn wait_until(what: &str, timeout: Duration, procs: &[&Proc], mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() > timeout {
            let logs: Vec<_> =
                procs.iter().map(|p| format!("--- {}\n{}", p.log.display(), p.tail())).collect();
            panic!("timed out after {timeout:?} waiting for {what}\n{}", logs.join("\n"));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command to completion, killing it after `timeout`.
fn run_with_timeout(mut cmd: Command, timeout: Duration) -> Output {
    let child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().expect("spawns");
    let pid = child.id();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    // Kills the command only if it has not finished: the PID could belong to another process afterwards.
    let watchdog = std::thread::spawn(move || {
        if finished.recv_timeout(timeout).is_err() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).status();
        }
    });
    let out = child.wait_with_output().expect("runs");
    let _ = done.send(());
    let _ = watchdog.join();
    out
}

struct Replica {
    proc: Proc,
    rpc: u16,
    health: u16,
    data: PathBuf,
}

impl Replica {
    fn ready(&self) -> bool {
        matches!(http_get(self.health, "/health/ready"), Some((200, _)))
    }

    fn ready_code(&self) -> Option<u16> {
        http_get(self.health, "/health/ready").map(|(c, _)| c)
    }

    fn head(&self) -> Option<u64> {
        rpc_head(self.rpc)
    }

    /// A local snapshot through the real `snapshot` command.
    fn snapshot(&self, name: &str) -> Value {
        let out = run_with_timeout(
            {
                let mut c = Command::new(bin());
                c.args([
                    "snapshot",
                    "--admin-url",
                    &format!("http://127.0.0.1:{}", self.health),
                    "--name",
                    name,
                ]);
                c
            },
            Duration::from_secs(30),
        );
        assert!(out.status.success(), "snapshot failed: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).expect("snapshot prints JSON")
    }
}

#[derive(Clone, Default)]
struct ReplicaOpts {
    from_snapshot: Option<PathBuf>,
    max_silence_secs: Option<f64>,
    /// `--max-behind-client-blocks`; the replica's default (16) when unset.
    max_behind_client_blocks: Option<u64>,
}

/// The broker and the execution client every test starts with.
struct Bed {
    root: tempfile::TempDir,
    broker: KafkaBroker,
    anvil: Upstream,
}

impl Bed {
    fn new(anvil_args: &[&str]) -> Bed {
        let broker = KafkaBroker::start().expect("Apache Kafka broker (see docs/testing.md)");
        let anvil = Upstream::anvil(anvil_args);
        Bed { root: tempfile::tempdir().expect("tempdir"), broker, anvil }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    fn topic(&self, topic: &str, configs: &[&str]) {
        self.broker.create_topic(topic, configs).expect("log topic");
        self.broker.create_topic(&format!("{topic}-tx"), &[]).expect("tx topic");
    }

    fn publisher(&self, topic: &str, name: &str) -> Proc {
        let mut cmd = Command::new(bin());
        cmd.args(["publisher", "--rpc-url", &self.anvil.http_url(), "--ws-url", &self.anvil.ws_url()])
            .args(["--brokers", &self.broker.bootstrap_servers(), "--topic", topic, "--cluster-id", topic])
            .args(["--heartbeat-interval-ms", "500", "--trace-mode", "state-diff"])
            .arg("--genesis")
            .arg(genesis_file());
        Proc::spawn(cmd, self.path(&format!("{name}.log")))
    }

    /// A new replica named `name`: data in `<root>/<name>`, free ports, log `<name>.log`.
    fn replica(&self, topic: &str, name: &str, opts: ReplicaOpts) -> Replica {
        self.replica_on(topic, self.path(name), free_port(), free_port(), &format!("{name}.log"), opts)
    }

    /// A replica process on a given data directory and ports (a restart reuses its predecessor's).
    fn replica_on(
        &self,
        topic: &str,
        data: PathBuf,
        rpc: u16,
        health: u16,
        log: &str,
        opts: ReplicaOpts,
    ) -> Replica {
        let mut cmd = Command::new(bin());
        cmd.args([
            "replica",
            "--verify-priors",
            // Every batch through the store's writer thread, as a mainnet block's (harness::replica_follow_cmd).
            "--pipeline-from-writes",
            "0",
            "--brokers",
            &self.broker.bootstrap_servers(),
            "--topic",
            topic,
        ])
        .arg("--data-dir")
        .arg(&data)
        .args(["--rpc-addr", &format!("127.0.0.1:{rpc}"), "--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--max-silence-secs", &opts.max_silence_secs.unwrap_or(3.0).to_string()])
        .args(
            opts.max_behind_client_blocks
                .map(|n| ["--max-behind-client-blocks".to_string(), n.to_string()])
                .into_iter()
                .flatten(),
        )
        .args(["--progress-interval", "1", "--drain-secs", "2"])
        .arg("--snapshot-dir")
        .arg(self.path("snapshots"));
        if let Some(s) = &opts.from_snapshot {
            cmd.arg("--from-snapshot").arg(s);
        }
        Replica { proc: Proc::spawn(cmd, self.path(log)), rpc, health, data }
    }

    fn balancer(&self, replicas: &[&Replica]) -> (Proc, u16) {
        let port = free_port();
        let backends: Vec<(u16, u16)> = replicas.iter().map(|r| (r.rpc, r.health)).collect();
        let p = Proc::spawn(balancer_cmd(port, &backends), self.path("balancer.log"));
        // Listening is not enough: like the ALB, the balancer routes nowhere until a health check has passed,
        // and load started in between (tens of milliseconds) was answered "no ready replica". Every caller
        // hands over at least one ready replica.
        wait_until("the balancer to see a ready replica", Duration::from_secs(10), &[&p], || {
            http_get(port, "/balancer/status").is_some_and(|(_, body)| body.contains("\"ready\":true"))
        });
        (p, port)
    }

    /// Transfers from anvil's unlocked dev accounts, one every `every`, until the returned flag is set.
    fn traffic(&self, every: Duration) -> (Arc<AtomicBool>, JoinHandle<()>) {
        let stop = Arc::new(AtomicBool::new(false));
        let (flag, port) = (stop.clone(), self.anvil.port);
        let handle = std::thread::spawn(move || {
            let mut i = 0u64;
            while !flag.load(Ordering::Relaxed) {
                let tx = json!({"from": DEV[(i % 4) as usize], "to": format!("{:#042x}", 0xbeef00 + i % 16),
                    "value": format!("{:#x}", i + 1)});
                rpc_call(port, "eth_sendTransaction", json!([tx]));
                i += 1;
                std::thread::sleep(every);
            }
        });
        (stop, handle)
    }
}

fn wait_ready(r: &Replica, what: &str, extra: &[&Proc]) {
    let mut procs = vec![&r.proc];
    procs.extend_from_slice(extra);
    wait_until(what, Duration::from_secs(90), &procs, || r.ready());
}

/// What a load run saw.
#[derive(Default, Debug)]
struct LoadStats {
    ok: u64,
    failed: u64,
    failures: Vec<String>,
    latencies_us: Vec<u64>,
    elapsed: Duration,
}

impl LoadStats {
    fn percentile_ms(&mut self, p: f64) -> f64 {
        self.latencies_us.sort_unstable();
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

/// `clients` threads sending a mix of read requests to `port` until stopped.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<LoadStats>>,
    start: Instant,
}

impl Load {
    fn start(port: u16, clients: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..clients)
            .map(|c| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut s = LoadStats::default();
                    let mut i = c;
                    while !stop.load(Ordering::Relaxed) {
                        let (method, params) = match i % 5 {
                            0 => ("eth_blockNumber", json!([])),
                            1 => ("eth_getBalance", json!([DEV[i % 6], "latest"])),
                            2 => ("eth_getBlockByNumber", json!(["latest", false])),
                            3 => ("eth_getTransactionCount", json!([DEV[i % 4], "latest"])),
                            _ => ("eth_chainId", json!([])),
                        };
                        i += 1;
                        let body = json!({"jsonrpc": "2.0", "id": i, "method": method, "params": params});
                        let t = Instant::now();
                        match http_post_json(port, &body) {
                            Some(v) if v.get("result").is_some() => {
                                s.ok += 1;
                                s.latencies_us.push(t.elapsed().as_micros() as u64);
                            }
                            other => {
                                s.failed += 1;
                                if s.failures.len() < 5 {
                                    s.failures.push(format!("{method}: {other:?}"));
                                }
                                std::thread::sleep(Duration::from_millis(20));
                            }
                        }
                    }
                    s
                })
            })
            .collect();
        Load { stop, threads, start: Instant::now() }
    }

    fn finish(self) -> LoadStats {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = LoadStats { elapsed: self.start.elapsed(), ..Default::default() };
        for t in self.threads {
            let s = t.join().expect("load thread");
            all.ok += s.ok;
            all.failed += s.failed;
            all.failures.extend(s.failures);
            all.latencies_us.extend(s.latencies_us);
        }
        all
    }
}

/// No request failed; on a failure, the balancer's log says which backend left the rotation, and why.
fn assert_no_failures(stats: &LoadStats, what: &str, balancer: &Proc) {
    assert!(stats.ok > 0, "{what}: no request succeeded");
    assert_eq!(
        stats.failed,
        0,
        "{what}: {} of {} requests failed: {:?}\nbalancer log:\n{}",
        stats.failed,
        stats.ok,
        stats.failures,
        balancer.tail()
    );
}

/// Block hashes and chosen state read through RPC port `port` equal anvil's at block `n`.
fn assert_rpc_equals_anvil_at(port: u16, anvil: &Upstream, n: u64) {
    let tag = format!("{n:#x}");
    let ours = rpc_call(port, "eth_getBlockByNumber", json!([tag, false]));
    let theirs = anvil.call("eth_getBlockByNumber", json!([tag, false]));
    assert_eq!(ours["result"]["hash"], theirs["hash"], "block {n} hash");
    for a in DEV.iter().take(4) {
        for m in ["eth_getBalance", "eth_getTransactionCount"] {
            let ours = rpc_call(port, m, json!([a, tag]));
            assert_eq!(ours["result"], anvil.call(m, json!([a, tag])), "{m} {a} at {n}");
        }
    }
}

/// Seed, "Cluster Initialization" and "Replica Configuration": a publisher and a first replica from genesis;
/// a snapshot of it while the chain moves on; a second replica from the snapshot stays out of service until
/// it has caught up, then answers as the first does.
#[test]
fn cluster_initialization_from_a_snapshot() {
    let _serial = serial();
    let bed = Bed::new(&["--block-time", "1"]);
    bed.topic("init", &[]);
    let (stop_traffic, traffic) = bed.traffic(Duration::from_millis(300));
    let publisher = bed.publisher("init", "publisher");
    let first = bed.replica("init", "replica-1", ReplicaOpts::default());
    wait_ready(&first, "the first replica to be ready", &[&publisher]);
    wait_until("a few blocks", Duration::from_secs(30), &[&first.proc], || first.head() >= Some(3));

    let snap = first.snapshot("first");
    let snap_block = snap["block_number"].as_u64().expect("snapshot block");
    let snap_path = PathBuf::from(snap["path"].as_str().expect("snapshot path"));
    assert!(snap["kafka_offset"].as_i64().is_some(), "{snap}");
    // Let the chain move on, so the new replica has a backlog to replay.
    wait_until("blocks after the snapshot", Duration::from_secs(30), &[&first.proc], || {
        first.head() >= Some(snap_block + 4)
    });

    let second = bed.replica(
        "init",
        "replica-2",
        ReplicaOpts { from_snapshot: Some(snap_path), ..Default::default() },
    );
    // Until caught up: health port up and 503, RPC port closed.
    let mut saw_not_ready = false;
    wait_until("the second replica's health port", Duration::from_secs(30), &[&second.proc], || match second
        .ready_code()
    {
        Some(503) => {
            saw_not_ready = true;
            assert!(second.head().is_none(), "RPC must stay closed before the replica has caught up");
            false
        }
        Some(200) => true,
        _ => false,
    });
    let log = std::fs::read_to_string(&second.proc.log).unwrap_or_default();
    assert!(log.contains("created from the snapshot"), "the replica must start from the snapshot:\n{log}");
    assert!(saw_not_ready || log.contains("replay"), "the replica reported ready without replaying:\n{log}");

    stop_traffic.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let head = first.head().expect("head");
    wait_until(
        "the second replica to reach the first's head",
        Duration::from_secs(30),
        &[&second.proc],
        || second.head() >= Some(head),
    );
    for n in [0, snap_block, head] {
        assert_rpc_equals_anvil_at(first.rpc, &bed.anvil, n);
        assert_rpc_equals_anvil_at(second.rpc, &bed.anvil, n);
    }
    let req = |port| rpc_call(port, "eth_getBlockByNumber", json!([format!("{head:#x}"), true]));
    assert_eq!(req(first.rpc), req(second.rpc), "full block {head}");
}

/// Seed, "Periodic Replica Snapshots": once the topic's earliest offset has moved past a snapshot's offset,
/// a replica started from it refuses to start and says why; a newer snapshot still works.
#[test]
fn snapshot_older_than_retention_is_refused() {
    let _serial = serial();
    let bed = Bed::new(&["--block-time", "1"]);
    // Segments roll every second (on the next append), so the oldest ones pass the 3 s retention while the
    // publisher keeps writing, and the broker's retention pass (every second) deletes them.
    bed.topic("ret", &["cleanup.policy=delete", "retention.ms=3000", "segment.ms=1000"]);
    let publisher = bed.publisher("ret", "publisher");
    let first =
        bed.replica("ret", "replica-1", ReplicaOpts { max_silence_secs: Some(30.0), ..Default::default() });
    wait_ready(&first, "the first replica to be ready", &[&publisher]);
    let old = first.snapshot("old");
    let old_offset = old["kafka_offset"].as_i64().expect("offset");

    // Past 3 s, the broker's retention pass deletes the old snapshot's next record while the first replica
    // keeps following. (No broker restart here: a genuine broker takes longer to restart than this topic
    // keeps records, so the running replica would fall out of retention too, and rightly refuse;
    // `broker_restart_and_replica_kill_under_load` covers restarts.)
    wait_until(
        "retention to pass the old snapshot",
        Duration::from_secs(60),
        &[&first.proc, &publisher],
        || harness::watermarks(&bed.broker.bootstrap_servers(), "ret").0 > old_offset + 1,
    );
    let (earliest, _) = harness::watermarks(&bed.broker.bootstrap_servers(), "ret");
    assert!(
        earliest > old_offset + 1,
        "retention must have moved the earliest offset ({earliest}) past {old_offset}"
    );

    let mut cmd = Command::new(bin());
    cmd.args([
        "replica",
        "--verify-priors",
        "--exit-when-caught-up",
        "--brokers",
        &bed.broker.bootstrap_servers(),
        "--topic",
        "ret",
    ])
    .arg("--data-dir")
    .arg(bed.path("from-old"))
    .arg("--from-snapshot")
    .arg(old["path"].as_str().expect("path"));
    let out = run_with_timeout(cmd, Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a snapshot older than retention must be refused: {stderr}");
    assert!(stderr.contains("retention") && stderr.contains(&format!("offset {old_offset}")), "{stderr}");

    // The first replica kept following; a snapshot of it now is resumable.
    let head = bed.anvil.head().0;
    wait_until(
        "the first replica to keep following",
        Duration::from_secs(60),
        &[&first.proc, &publisher],
        || first.head() >= Some(head),
    );
    let new = first.snapshot("new");
    let fresh = bed.replica(
        "ret",
        "from-new",
        ReplicaOpts {
            from_snapshot: Some(new["path"].as_str().expect("path").into()),
            max_silence_secs: Some(30.0),
            ..Default::default()
        },
    );
    wait_ready(&fresh, "a replica from the newer snapshot to be ready", &[]);
    let n = new["block_number"].as_u64().expect("block");
    assert_rpc_equals_anvil_at(fresh.rpc, &bed.anvil, n);
}

/// Seed, "Multiple Clusters": when the publisher goes quiet its replicas leave the balancer (readiness 503)
/// and come back by themselves once it is back.
#[test]
fn stale_publisher_takes_its_replicas_out_of_the_balancer() {
    let _serial = serial();
    let bed = Bed::new(&["--block-time", "1"]);
    bed.topic("stale", &[]);
    let mut publisher = bed.publisher("stale", "publisher");
    let r1 = bed.replica("stale", "replica-1", ReplicaOpts::default());
    let r2 = bed.replica("stale", "replica-2", ReplicaOpts::default());
    wait_ready(&r1, "replica 1 ready", &[&publisher]);
    wait_ready(&r2, "replica 2 ready", &[&publisher]);
    let (balancer, port) = bed.balancer(&[&r1, &r2]);
    assert!(
        rpc_call(port, "eth_blockNumber", json!([]))["result"].is_string(),
        "served through the balancer"
    );

    assert_eq!(
        publisher.terminate(),
        Some(0),
        "the publisher stops cleanly on SIGTERM:\n{}",
        publisher.tail()
    );
    let stopped_at = Instant::now();
    // --max-silence-secs 3, heartbeats every 0.5 s: both must turn 503 within a few seconds.
    wait_until("both replicas to report not ready", Duration::from_secs(10), &[&r1.proc, &r2.proc], || {
        r1.ready_code() == Some(503) && r2.ready_code() == Some(503)
    });
    eprintln!("replicas not ready {:.1} s after the publisher stopped", stopped_at.elapsed().as_secs_f64());
    wait_until("the balancer to stop routing", Duration::from_secs(5), &[&balancer], || {
        matches!(http_post_raw(port, br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#),
            Some((503, body)) if body.contains("no ready replica"))
    });
    let before = r1.head().expect("head");

    let publisher = bed.publisher("stale", "publisher-again");
    wait_ready(&r1, "replica 1 ready again", &[&publisher]);
    wait_ready(&r2, "replica 2 ready again", &[&publisher]);
    wait_until("new blocks through the balancer", Duration::from_secs(30), &[&balancer, &publisher], || {
        rpc_head(port) > Some(before + 1)
    });
}

/// Seed, "Periodic Cluster Refreshes": a second cluster (own topic, own publisher, own replica) comes up
/// beside the first behind the same balancer; its replica joins once ready; the first cluster is then
/// stopped. Requests never fail.
#[test]
fn cluster_refresh_with_no_failed_request() {
    let _serial = serial();
    let bed = Bed::new(&["--block-time", "1"]);
    bed.topic("blue", &[]);
    bed.topic("green", &[]);
    let (stop_traffic, traffic) = bed.traffic(Duration::from_millis(500));
    let mut blue_pub = bed.publisher("blue", "blue-publisher");
    let mut blue = bed.replica("blue", "blue-replica", ReplicaOpts::default());
    wait_ready(&blue, "the blue replica", &[&blue_pub]);
    // The green replica's ports are known before it starts, so the balancer lists it from the beginning:
    // it is simply not ready (not even listening) until it has caught up.
    let green_pub = bed.publisher("green", "green-publisher");
    let green = bed.replica("green", "green-replica", ReplicaOpts::default());
    let (balancer, port) = bed.balancer(&[&blue, &green]);
    let load = Load::start(port, 8);

    wait_ready(&green, "the green replica", &[&green_pub]);
    wait_until("the balancer to see green ready", Duration::from_secs(10), &[&balancer], || {
        http_get(port, "/balancer/status").is_some_and(|(_, b)| b.matches("\"ready\":true").count() == 2)
    });
    std::thread::sleep(Duration::from_secs(3));
    // Cut-over: blue's replica leaves first (SIGTERM), then its publisher. On SIGTERM a replica turns 503
    // at once and keeps serving for --drain-secs, so the balancer moves away before its port closes.
    blue.proc.sigterm();
    wait_until("blue to report draining", Duration::from_secs(5), &[&blue.proc], || {
        blue.ready_code() == Some(503)
    });
    assert!(blue.head().is_some(), "a draining replica still answers RPC");
    assert_eq!(
        blue.proc.wait_exit(Duration::from_secs(30)),
        Some(0),
        "blue replica stops cleanly:\n{}",
        blue.proc.tail()
    );
    assert_eq!(blue_pub.terminate(), Some(0), "blue publisher stops cleanly:\n{}", blue_pub.tail());
    std::thread::sleep(Duration::from_secs(3));
    let stats = load.finish();
    stop_traffic.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    eprintln!("refresh: {} requests, {} failed, over {:?}", stats.ok, stats.failed, stats.elapsed);
    assert_no_failures(&stats, "cluster refresh", &balancer);
    let head = green.head().expect("green head");
    assert_rpc_equals_anvil_at(port, &bed.anvil, head);
}

/// A broker crash (kill -9) and restart mid-stream, and a kill -9 of a replica, under load: no request
/// through the balancer fails while a replica is ready, and afterwards both replicas hold anvil's state.
///
/// The replicas keep serving (slightly stale) data while the broker is away, as long as the outage is
/// shorter than their silence limit and leaves them fewer blocks behind the client than their limit: a
/// genuine Kafka broker takes 5-20 s here to start and recover its log after a crash (a block a second), so
/// the limits are 60 s and 60 blocks. (With the default 16 blocks, a 16 s outage took both out at once.)
#[test]
fn broker_restart_and_replica_kill_under_load() {
    let _serial = serial();
    let mut bed = Bed::new(&["--block-time", "1"]);
    bed.topic("chaos", &[]);
    let (stop_traffic, traffic) = bed.traffic(Duration::from_millis(250));
    let publisher = bed.publisher("chaos", "publisher");
    let opts = ReplicaOpts {
        max_silence_secs: Some(60.0),
        max_behind_client_blocks: Some(60),
        ..Default::default()
    };
    let r1 = bed.replica("chaos", "replica-1", opts.clone());
    let mut r2 = bed.replica("chaos", "replica-2", opts.clone());
    wait_ready(&r1, "replica 1", &[&publisher]);
    wait_ready(&r2, "replica 2", &[&publisher]);
    let (balancer, port) = bed.balancer(&[&r1, &r2]);
    let load = Load::start(port, 16);
    std::thread::sleep(Duration::from_secs(3));

    let outage = Instant::now();
    bed.broker.restart().expect("Kafka restarts");
    eprintln!("broker crashed and listening again after {:.1}s", outage.elapsed().as_secs_f64());
    let head = bed.anvil.head().0;
    wait_until(
        "replicas to follow the restarted broker",
        Duration::from_secs(60),
        &[&r1.proc, &r2.proc, &publisher],
        || r1.head() > Some(head) && r2.head() > Some(head),
    );

    r2.proc.kill9();
    std::thread::sleep(Duration::from_secs(3));
    // Same data directory, same ports: RocksDB recovers from its write-ahead log, the replica resumes.
    let r2 = bed.replica_on("chaos", r2.data.clone(), r2.rpc, r2.health, "replica-2-again.log", opts);
    wait_ready(&r2, "replica 2 after kill -9", &[&publisher]);
    std::thread::sleep(Duration::from_secs(3));
    let stats = load.finish();
    stop_traffic.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    eprintln!("chaos: {} requests, {} failed, over {:?}", stats.ok, stats.failed, stats.elapsed);
    assert_no_failures(&stats, "broker restart and kill -9", &balancer);

    // Every block and every touched account and slot equals anvil's, in both databases.
    let head = bed.anvil.head().0;
    for r in [&r1, &r2] {
        wait_until("the replica to reach anvil's head", Duration::from_secs(30), &[&r.proc], || {
            r.head() >= Some(head)
        });
    }
    let touched = touched(&read_log(&bed.broker.bootstrap_servers(), "chaos"));
    for r in [&r1, &r2] {
        let compared = assert_replica_equals_upstream(&bed.anvil, &r.data, head, &touched);
        assert!(compared > 0);
    }
}

/// 64 clients through the balancer for `EC_LOAD_SECS` (default 60) seconds: zero errors. Prints the
/// figures docs/benchmarks.md quotes.
#[test]
fn load_through_the_balancer() {
    let _serial = serial();
    let secs: u64 = std::env::var("EC_LOAD_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(60);
    let bed = Bed::new(&["--block-time", "1"]);
    bed.topic("load", &[]);
    let (stop_traffic, traffic) = bed.traffic(Duration::from_millis(200));
    let publisher = bed.publisher("load", "publisher");
    let r1 = bed.replica("load", "replica-1", ReplicaOpts::default());
    let r2 = bed.replica("load", "replica-2", ReplicaOpts::default());
    wait_ready(&r1, "replica 1", &[&publisher]);
    wait_ready(&r2, "replica 2", &[&publisher]);
    let (balancer, port) = bed.balancer(&[&r1, &r2]);
    let load = Load::start(port, 64);
    std::thread::sleep(Duration::from_secs(secs));
    let mut stats = load.finish();
    stop_traffic.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let rate = stats.ok as f64 / stats.elapsed.as_secs_f64();
    let (p50, p99) = (stats.percentile_ms(0.5), stats.percentile_ms(0.99));
    let status = http_get(port, "/balancer/metrics").map(|(_, b)| b).unwrap_or_default();
    eprintln!(
        "LOAD 64 clients {:.0} s: {} requests, {} errors, {rate:.0} req/s, p50 {p50:.2} ms, p99 {p99:.2} ms",
        stats.elapsed.as_secs_f64(),
        stats.ok,
        stats.failed
    );
    eprintln!("{}", status.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>().join("\n"));
    assert_no_failures(&stats, "load test", &balancer);
    assert!(stats.elapsed >= Duration::from_secs(secs), "ran the whole time");
    drop(balancer);
}

/// Replica start-up time from a snapshot with a backlog of 1,000 blocks (each with a transfer): the MTTR
/// input of `ether-cattle availability`. Prints the figure.
#[test]
fn startup_time_from_a_snapshot_with_a_1000_block_backlog() {
    let _serial = serial();
    let bed = Bed::new(&[]);
    bed.topic("mttr", &[]);
    let publisher = bed.publisher("mttr", "publisher");
    let first =
        bed.replica("mttr", "replica-1", ReplicaOpts { max_silence_secs: Some(60.0), ..Default::default() });
    wait_ready(&first, "the first replica", &[&publisher]);
    let snap = first.snapshot("base");
    let base = snap["block_number"].as_u64().expect("block");
    // anvil automines; transactions arriving together may share a block, so send until 1,000 blocks exist.
    let mut i = 0u64;
    while bed.anvil.head().0 < base + 1000 {
        let tx = json!({"from": DEV[(i % 4) as usize], "to": format!("{:#042x}", 0xbeef00 + i % 16), "value": "0x1"});
        bed.anvil.send(tx);
        i += 1;
    }
    let head = bed.anvil.head().0;
    wait_until(
        "the first replica to apply the backlog",
        Duration::from_secs(600),
        &[&first.proc, &publisher],
        || first.head() >= Some(head),
    );
    let start = Instant::now();
    let second = bed.replica(
        "mttr",
        "replica-2",
        ReplicaOpts {
            from_snapshot: Some(snap["path"].as_str().expect("path").into()),
            max_silence_secs: Some(60.0),
            ..Default::default()
        },
    );
    wait_until(
        "the replica from the snapshot to be ready",
        Duration::from_secs(300),
        &[&second.proc],
        || second.ready(),
    );
    let ready = start.elapsed();
    wait_until("RPC open", Duration::from_secs(10), &[&second.proc], || second.head() >= Some(head));
    let rpc_open = start.elapsed();
    eprintln!(
        "STARTUP from snapshot at block {base} with {} blocks of backlog: ready after {:.2} s, RPC at head after {:.2} s",
        head - base,
        ready.as_secs_f64(),
        rpc_open.as_secs_f64()
    );
    assert_rpc_equals_anvil_at(second.rpc, &bed.anvil, head);
}

/// A replica flooded with heavy requests (calls that burn the whole gas cap, `eth_getLogs` over the whole
/// chain) keeps replaying and keeps answering `/health/ready` within 100 ms: store-reading work runs on
/// bounded blocking pools, never on the threads that replay and serve health.
#[test]
fn a_flood_of_heavy_requests_stalls_neither_replay_nor_health() {
    let _serial = serial();
    let bed = Bed::new(&["--block-time", "1"]);
    bed.topic("flood", &[]);
    let (stop_traffic, traffic) = bed.traffic(Duration::from_millis(100));
    let publisher = bed.publisher("flood", "publisher");
    let r = bed.replica("flood", "replica", ReplicaOpts::default());
    wait_ready(&r, "the replica", &[&publisher]);

    // An endless loop (JUMPDEST PUSH1 0 JUMP) placed at an address by a state override: each call runs until
    // the replica's gas cap stops it.
    const LOOP: &str = "0x00000000000000000000000000000000000100ff";
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new([std::sync::atomic::AtomicU64::new(0), std::sync::atomic::AtomicU64::new(0)]);
    let flood: Vec<JoinHandle<()>> = (0..32)
        .map(|i: u64| {
            let (stop, answered, port) = (stop.clone(), answered.clone(), r.rpc);
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (kind, body) = if i.is_multiple_of(2) {
                        let call = json!({"to": LOOP});
                        let overrides = json!({ LOOP: {"code": "0x5b600056"} });
                        (0, json!({"jsonrpc": "2.0", "id": i, "method": "eth_call", "params": [call, "latest", overrides]}))
                    } else {
                        let filter = json!({"fromBlock": "0x0", "toBlock": "latest"});
                        (1, json!({"jsonrpc": "2.0", "id": i, "method": "eth_getLogs", "params": [filter]}))
                    };
                    if http_post_json(port, &body).is_some() {
                        answered[kind].fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();

    let head =
        |body: &str| -> Option<u64> { serde_json::from_str::<Value>(body).ok()?["head_block"].as_u64() };
    let started = Instant::now();
    let first = http_get(r.health, "/health/ready").and_then(|(_, b)| head(&b)).expect("a head");
    let (mut worst, mut polls, mut last) = (Duration::ZERO, 0, first);
    while started.elapsed() < Duration::from_secs(20) {
        let t = Instant::now();
        let answer = http_get(r.health, "/health/ready");
        let took = t.elapsed();
        let (code, body) = answer.expect("/health/ready answers during the flood");
        assert!(
            took < Duration::from_millis(100),
            "/health/ready took {took:?} during the flood (poll {polls})"
        );
        assert_eq!(code, 200, "the replica stays ready during the flood: {body}");
        worst = worst.max(took);
        last = head(&body).unwrap_or(last);
        polls += 1;
        std::thread::sleep(Duration::from_millis(50));
    }
    let upstream = bed.anvil.head().0;
    stop.store(true, Ordering::Relaxed);
    for t in flood {
        t.join().expect("flood thread");
    }
    stop_traffic.store(true, Ordering::Relaxed);
    traffic.join().expect("traffic");
    let (calls, scans) = (answered[0].load(Ordering::Relaxed), answered[1].load(Ordering::Relaxed));
    eprintln!(
        "FLOOD 20 s: {calls} gas-cap calls and {scans} whole-chain log scans answered; /health/ready worst \
         {worst:?} over {polls} polls; replica head {first} -> {last}, anvil {upstream}"
    );
    assert!(calls >= 16 && scans >= 16, "the flood must really have run: {calls} calls, {scans} scans");
    assert!(last >= first + 12, "replay kept going during the flood: head {first} -> {last} in 20 s");
    assert!(last + 3 >= upstream, "the replica kept up: head {last}, anvil {upstream}");
}
