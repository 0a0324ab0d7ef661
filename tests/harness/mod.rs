//! Shared pieces of the end-to-end tests: write logs to a real broker, run the real binary, read checksums.
//!
//! Every broker here is started by the test and dies with it; every child process is killed on drop.

#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
    time::{Duration, Instant},
};

use ec_kafka::{KafkaConfig, LogProducer, PartitionConsumer};
use ec_log::{encode_record, Assembler, EncodeOptions, Record};
use ec_store::{Position, Reads, Store, StoreOptions};

pub const CLUSTER: &str = "test-cluster";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ether-cattle")
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime")
}

/// Encodes and produces records in order; returns the offset of each record's last frame.
pub fn produce(brokers: &str, topic: &str, records: &[(u64, Record)], opts: EncodeOptions) -> Vec<i64> {
    let frames: Vec<(u64, Vec<Vec<u8>>)> = records
        .iter()
        .map(|(seq, rec)| (*seq, encode_record(CLUSTER, *seq, rec, opts).expect("record encodes")))
        .collect();
    produce_frames(brokers, topic, &frames)
}

/// Produces pre-encoded frames (possibly damaged ones) in order.
pub fn produce_frames(brokers: &str, topic: &str, records: &[(u64, Vec<Vec<u8>>)]) -> Vec<i64> {
    produce_frames_with(brokers, topic, records, &[])
}

/// [`produce_frames`] with extra librdkafka producer properties.
pub fn produce_frames_with(
    brokers: &str,
    topic: &str,
    records: &[(u64, Vec<Vec<u8>>)],
    extra: &[(&str, &str)],
) -> Vec<i64> {
    let mut cfg = KafkaConfig::plaintext(brokers);
    cfg.extra = extra.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    let producer = LogProducer::new(&cfg, topic, 1 << 20).expect("producer");
    runtime().block_on(async {
        let mut pending = Vec::with_capacity(records.len());
        for (seq, frames) in records {
            pending.push(producer.enqueue(*seq, frames).expect("enqueue"));
        }
        let mut last = Vec::with_capacity(pending.len());
        for p in pending {
            let offsets = p.wait().await.expect("broker acknowledges");
            last.push(*offsets.last().expect("at least one frame"));
        }
        last
    })
}

/// The partition's (earliest, high) offsets. Retried for up to 60 s: a broker that has just restarted
/// answers "not leader for partition" until its partitions are back online.
pub fn watermarks(brokers: &str, topic: &str) -> (i64, i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    // The stream consumer needs a tokio reactor to exist, even for this blocking call.
    runtime().block_on(async {
        let c = PartitionConsumer::new(&KafkaConfig::plaintext(brokers), topic).expect("consumer");
        loop {
            match c.watermarks(Duration::from_secs(10)) {
                Ok(w) => return w,
                Err(e) if Instant::now() > deadline => panic!("watermarks of {topic}: {e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
            }
        }
    })
}

/// The replica command, catching up once and exiting.
pub fn replica_cmd(data_dir: &Path, brokers: &str, topic: &str) -> Command {
    let mut cmd = replica_follow_cmd(data_dir, brokers, topic);
    cmd.arg("--exit-when-caught-up");
    cmd
}

/// The replica command, following the topic until it is killed. Every test replica checks the prior values
/// of every block against its own state (`--verify-priors`): a publisher that records a wrong prior stops
/// the replica, and the test with it. It also hands every record's batch to the store's writer thread
/// (`--pipeline-from-writes 0`; by default only mainnet-sized blocks are), so that the tests' small records
/// go the way a mainnet block does.
pub fn replica_follow_cmd(data_dir: &Path, brokers: &str, topic: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args([
        "replica",
        "--verify-priors",
        "--pipeline-from-writes",
        "0",
        "--progress-interval",
        "0.5",
        "--topic",
        topic,
        "--brokers",
        brokers,
    ])
    .arg("--data-dir")
    .arg(data_dir)
    .env("RUST_LOG", "info,rdkafka=warn");
    cmd
}

/// [`replica_cmd`] without `--verify-priors`, which reads every prior before its block and so keeps blocks
/// from being grouped under one state root while catching up (`ec_store::Pipeline`): what a production
/// replica runs.
pub fn replica_cmd_grouping(data_dir: &Path, brokers: &str, topic: &str) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["replica", "--pipeline-from-writes", "0", "--progress-interval", "0.5", "--topic", topic])
        .args(["--brokers", brokers, "--exit-when-caught-up"])
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info,rdkafka=warn");
    cmd
}

/// The publisher of cluster [`CLUSTER`] on topic `log`: `brokers`, the client at `rpc_url`, the chain's
/// `genesis` file. Tests add their own flags.
pub fn publisher_cmd(brokers: &str, rpc_url: &str, genesis: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["publisher", "--topic", "log", "--cluster-id", CLUSTER, "--brokers", brokers])
        .args(["--rpc-url", rpc_url])
        .arg("--genesis")
        .arg(genesis);
    cmd
}

/// Runs a replica to completion and returns its output.
pub fn run_replica(data_dir: &Path, brokers: &str, topic: &str) -> Output {
    replica_cmd(data_dir, brokers, topic).output().expect("replica runs")
}

/// What a finished command printed: its standard output, then its standard error.
pub fn output_text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

pub fn run_replica_ok(data_dir: &Path, brokers: &str, topic: &str) {
    let out = run_replica(data_dir, brokers, topic);
    assert!(out.status.success(), "replica failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `checksum` command's first line, from the real binary.
pub fn checksum(data_dir: &Path) -> String {
    let out =
        Command::new(bin()).arg("checksum").arg("--data-dir").arg(data_dir).output().expect("checksum runs");
    assert!(out.status.success(), "checksum failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.lines().next().unwrap_or_default().to_owned()
}

pub fn position(data_dir: &Path) -> Option<Position> {
    Store::open_read_only(data_dir).ok()?.position().ok()?
}

/// Replays records straight into a fresh store, with no Kafka in between: the reference a replica's
/// database must equal.
pub fn apply_direct(dir: &Path, records: &[(u64, Record)], opts: EncodeOptions) -> String {
    {
        let store = Store::open(dir, StoreOptions::default()).expect("store opens");
        let mut assembler = Assembler::new();
        let mut offset = 0i64;
        for (seq, rec) in records {
            for frame in encode_record(CLUSTER, *seq, rec, opts).expect("encodes") {
                if let Some(a) = assembler.push(offset, &frame).expect("frame decodes") {
                    store.apply(&a).expect("record applies");
                }
                offset += 1;
            }
        }
    }
    checksum(dir)
}

/// A child process killed (SIGKILL) when dropped, so a failing test leaves nothing running.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn spawn_quiet(mut cmd: Command) -> Killed {
    Killed(cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn().expect("spawns"))
}

/// The local balancer on 127.0.0.1:`port` in front of replicas given as (RPC port, health port), checking
/// their readiness every 0.2 s.
pub fn balancer_cmd(port: u16, replicas: &[(u16, u16)]) -> Command {
    let mut cmd = Command::new(bin());
    cmd.args(["balancer", "--listen", &format!("127.0.0.1:{port}"), "--check-interval-secs", "0.2"]);
    for (rpc, health) in replicas {
        cmd.args(["--backend", &format!("http://127.0.0.1:{rpc},http://127.0.0.1:{health}/health/ready")]);
    }
    cmd
}

/// Spawns `cmd` with its output appended to `log` (which failure messages can quote).
pub fn spawn_logged(mut cmd: Command, log: &Path) -> Killed {
    let file = std::fs::OpenOptions::new().create(true).append(true).open(log).expect("log file");
    let child = cmd
        .stdout(Stdio::from(file.try_clone().expect("log file")))
        .stderr(Stdio::from(file))
        .env("RUST_LOG", "info,rdkafka=warn")
        .spawn()
        .expect("spawns");
    Killed(child)
}

/// Polls `cond` until it holds or `timeout` passes.
pub fn wait_for(what: &str, timeout: Duration, cond: impl FnMut() -> bool) {
    wait_for_or_explain(what, timeout, cond, String::new);
}

/// [`wait_for`], with what `explain` says (the logs of what did not happen, say) in the timeout's message.
pub fn wait_for_or_explain(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    explain: impl Fn() -> String,
) {
    let start = Instant::now();
    while !cond() {
        if start.elapsed() >= timeout {
            let explained = explain();
            let sep = if explained.is_empty() { "" } else { "\n" };
            panic!("timed out after {timeout:?} waiting for {what}{sep}{explained}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("tempdir")
}

pub fn path(dir: &tempfile::TempDir, name: &str) -> PathBuf {
    dir.path().join(name)
}

pub mod chain;
pub mod cluster;
pub mod evm;
pub mod proxy;
pub mod script;

/// Every complete record in the topic, in order (duplicates included).
pub fn read_log(brokers: &str, topic: &str) -> Vec<ec_log::Assembled> {
    runtime().block_on(async {
        let c = PartitionConsumer::new(&KafkaConfig::plaintext(brokers), topic).expect("consumer");
        let (low, high) = c.watermarks(Duration::from_secs(10)).expect("watermarks");
        let mut out = Vec::new();
        if high <= low {
            return out;
        }
        c.assign(low).expect("assign");
        let mut a = Assembler::new();
        while let ec_kafka::Fetched::Message { offset, payload } = c.next().await.expect("fetch") {
            if let Some(rec) = a.push(offset, &payload).expect("valid log") {
                out.push(rec);
            }
            if offset + 1 >= high {
                break;
            }
        }
        out
    })
}

/// A plain HTTP/1.0 GET on 127.0.0.1: `(status code, body)`, or `None` when nothing answers.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    Some((code, body))
}

/// A JSON-RPC POST over plain HTTP/1.0 on 127.0.0.1; the whole response body as JSON.
pub fn http_post_json(port: u16, body: &serde_json::Value) -> Option<serde_json::Value> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let body = body.to_string();
    let req = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    serde_json::from_str(text.split_once("\r\n\r\n")?.1).ok()
}

/// A raw HTTP POST with any body; the status code and the body text.
pub fn http_post_raw(port: u16, body: &[u8]) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let head = format!(
        "POST / HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    Some((code, text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default()))
}

/// A JSON-RPC quantity ("0x2a") as a number; panics, naming the value, on anything else.
pub fn quantity(v: &serde_json::Value) -> u64 {
    v.as_str()
        .and_then(|s| s.strip_prefix("0x"))
        .and_then(|digits| u64::from_str_radix(digits, 16).ok())
        .unwrap_or_else(|| panic!("not a JSON-RPC quantity: {v}"))
}

/// One JSON-RPC call on 127.0.0.1:`port`: the whole response, or `null` when nothing answers.
pub fn rpc_call(port: u16, method: &str, params: serde_json::Value) -> serde_json::Value {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    http_post_json(port, &body).unwrap_or(serde_json::Value::Null)
}

/// Waits until the replica serving JSON-RPC on `port` reports block `head` or a later one as its newest. (At
/// or past: geth on demand may seal an empty block after the last transaction's, and a replica catching up
/// applies blocks in groups, so it may never report `head` itself.)
pub fn wait_rpc_head(port: u16, head: u64) {
    wait_for("the replica's RPC to reach the client's head", Duration::from_secs(60), || {
        let answer = rpc_call(port, "eth_blockNumber", serde_json::json!([]));
        answer["result"].as_str().and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
            >= Some(head)
    });
}

/// The paths where `got` differs from `want`.
pub fn differences(path: &str, got: &serde_json::Value, want: &serde_json::Value, out: &mut Vec<String>) {
    match (got, want) {
        (serde_json::Value::Object(g), serde_json::Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => differences(&format!("{path}.{k}"), gv, wv, out),
                    None => out.push(format!("{path}.{k}: missing (want {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: extra ({})", g[k]));
            }
        }
        (serde_json::Value::Array(g), serde_json::Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        _ if got == want => {}
        _ => {
            let short = |v: &serde_json::Value| v.to_string().chars().take(200).collect::<String>();
            out.push(format!("{path}: got {}, want {}", short(got), short(want)));
        }
    }
}
