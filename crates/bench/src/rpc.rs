//! `ec-bench rpc`: requests per second answered by a replica and by its upstream (anvil, geth) for the same
//! requests on the same chain, side by side. The load comes from wrk, in its own process; the upstream runs in
//! its own process; this process holds a mock broker, the publisher following the upstream, and a replica with
//! its JSON-RPC server.

use std::{process::Command, sync::Arc, time::Duration};

use anyhow::Context;
use ec_kafka::KafkaConfig;
use ec_log::EncodeOptions;
use ec_publisher::{rpc::RpcClient, Metrics, Publisher, PublisherConfig, TraceMode};
use ec_replica::{ReplicaConfig, Status};
use ec_store::{Store, StoreOptions};
use ec_testkit::MockBroker;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent connections per measurement.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Blocks of traffic (10 transfers each) to build before measuring: ten before the replica starts, the
    /// rest while it follows.
    #[arg(long, default_value_t = 30)]
    blocks: usize,
    /// Upstreams, each measured side by side with a replica following it: anvil, geth.
    #[arg(long, default_value = "anvil,geth", value_delimiter = ',')]
    upstreams: Vec<String>,
    #[arg(long, env = "ANVIL_BIN")]
    anvil: Option<String>,
    /// Measure only the rows whose name contains one of these (for profiling one request); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Worker threads of the runtime the replica's RPC server (and the bench's own replay) runs on.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

/// Blocks built before the replica starts (see [`run`]).
const PREFIX: usize = 10;

const DEV: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";
/// The EIP-2935 history contract (Prague).
const HISTORY: &str = "0x0000F90827F1C53a10cb7A02335B175320002935";

pub fn run(args: Args) -> anyhow::Result<()> {
    let wrk = Command::new("wrk").arg("--version").output();
    anyhow::ensure!(wrk.is_ok(), "wrk is not installed (Debian: apt-get install wrk): it generates the load");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.workers.max(1))
        .enable_all()
        .build()?;
    for upstream in &args.upstreams {
        let chain = crate::backlog::start_client(upstream, args.anvil.as_deref(), 1)?;
        // A few blocks before the replica starts; the rest while it follows at the tip, as a serving replica
        // does, so that it keeps the trie's recent past and `eth_getProof (head-100)` reads it (a replica
        // catching up at start-up keeps none).
        rt.block_on(crate::backlog::build_backlog(&chain, upstream, 10, args.blocks.min(PREFIX)))?;
        let broker = MockBroker::start(&["bench", "bench-tx"])?;
        rt.block_on(bench(&args, &chain, upstream, &broker.bootstrap_servers()))?;
    }
    // The publisher and replica tasks never end: drop them without waiting.
    rt.shutdown_background();
    Ok(())
}

pub(crate) async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    Ok(http.post(url).json(body).send().await?.json().await?)
}

async fn bench(
    args: &Args,
    chain: &crate::backlog::Chain,
    upstream: &str,
    brokers: &str,
) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let upstream_url = chain.url.clone();
    let call =
        |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let timeout = Duration::from_secs(30);
    let theirs = RpcClient::new(&upstream_url, timeout)?;
    let head = theirs.block_number().await?;
    let (replica_url, following) = follow(chain, brokers, head, ec_rpc::Limits::default(), None).await?;
    crate::backlog::build_backlog(chain, upstream, 10, args.blocks.saturating_sub(PREFIX)).await?;
    let head = theirs.block_number().await?;
    let ours = RpcClient::new(&replica_url, timeout)?;
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while ours.block_number().await? < head {
        anyhow::ensure!(std::time::Instant::now() < deadline, "the replica did not reach block {head}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A transaction of a block in the middle of the chain.
    let mut tx_hash = Value::Null;
    for n in (1..=head).map(|i| (head / 2 + i) % (head + 1)) {
        let block =
            post(&http, &upstream_url, &call("eth_getBlockByNumber", json!([format!("{n:#x}"), false])))
                .await?;
        if let Some(tx) = block["result"]["transactions"].get(0) {
            tx_hash = tx.clone();
            break;
        }
    }
    anyhow::ensure!(!tx_hash.is_null(), "no transaction in the chain");
    let mid = format!("{:#x}", head / 2);
    let requests = [
        // Reads nothing: what the HTTP server and the JSON-RPC framing alone cost each side, the ceiling of
        // every other row's ratio.
        ("eth_chainId (no state)", call("eth_chainId", json!([]))),
        ("eth_getBalance (latest)", call("eth_getBalance", json!([DEV, "latest"]))),
        ("eth_getBalance (old block)", call("eth_getBalance", json!([DEV, "0x2"]))),
        ("eth_getTransactionCount", call("eth_getTransactionCount", json!([DEV, "latest"]))),
        ("eth_getBlockByNumber (full)", call("eth_getBlockByNumber", json!([mid, true]))),
        ("eth_getTransactionReceipt", call("eth_getTransactionReceipt", json!([tx_hash]))),
        (
            "eth_getLogs (address filter)",
            call("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest", "address": DEV}])),
        ),
        (
            "eth_getLogs (whole chain)",
            call("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}])),
        ),
        // The EIP-2935 contract holds a slot per recent block: an account proof and a storage proof.
        (
            "eth_getProof (latest)",
            call("eth_getProof", json!([HISTORY, [format!("{:#066x}", (head - 2) % 8191)], "latest"])),
        ),
        (
            "eth_getProof (head-100)",
            call(
                "eth_getProof",
                json!([
                    HISTORY,
                    // 32-byte keys: anvil refuses an odd number of digits.
                    [format!("{:#066x}", (head - 2) % 8191)],
                    format!("{:#x}", head.saturating_sub(100))
                ]),
            ),
        ),
        (
            "eth_call (EIP-2935 read)",
            call("eth_call", json!([{"to": HISTORY, "data": format!("0x{:064x}", head - 2)}, "latest"])),
        ),
    ];
    println!(
        "{upstream}: {} connections (wrk, 2 threads, its own process), {:.0} s per row, chain of {head} blocks",
        args.clients, args.seconds
    );
    println!(
        "{:<30} {:>12} {:>12} {:>7} | {:>9} {:>9} | {:>9} {:>9}",
        "request",
        "replica rq/s",
        format!("{upstream} rq/s"),
        "ratio",
        "ours p50",
        "ours p99",
        "their p50",
        "their p99"
    );
    // The ceiling of any answer on this machine: an axum server (the HTTP stack anvil uses) that reads nothing,
    // parses nothing and sends one fixed answer. wrk shares the machine's cores with it, so no server can do
    // better than this row's left column; its ratio to the upstream's `eth_chainId` bounds every ratio below.
    let wanted = |name: &str| args.only.is_empty() || args.only.iter().any(|o| name.contains(o.as_str()));
    const BARE: &str = "bare axum, fixed answer";
    if wanted(BARE) {
        let bare_url = bare_server().await?;
        let chain_id = &requests[0].1;
        let bare = wrk(&bare_url, chain_id, args.clients, args.seconds).await?;
        let theirs = wrk(&upstream_url, chain_id, args.clients, args.seconds).await?;
        print_row(BARE, &bare, &theirs);
    }
    for (name, body) in requests.iter().filter(|(name, _)| wanted(name)) {
        same_answer(&http, name, body, (&replica_url, &upstream_url), upstream).await?;
        let ours = wrk(&replica_url, body, args.clients, args.seconds).await?;
        let theirs = wrk(&upstream_url, body, args.clients, args.seconds).await?;
        print_row(name, &ours, &theirs);
    }
    let kept = following.store.trie_history();
    println!(
        "the replica's trie recent past: {} blocks ({:.1} MB); proofs below the head read from it: {}, walked: {}",
        kept.blocks,
        kept.bytes as f64 / 1e6,
        kept.proofs_read,
        kept.proofs_walked
    );
    following.stop().await;
    Ok(())
}

/// Checks that the replica and the upstream answer `body` alike, or the figures mean nothing. geth --dev seals
/// a block a second: an answer at "latest" may be asked of two heads, so a difference is asked again a few
/// times before it counts.
async fn same_answer(
    http: &reqwest::Client,
    name: &str,
    body: &Value,
    (replica_url, upstream_url): (&str, &str),
    upstream: &str,
) -> anyhow::Result<()> {
    let mut tries = 0;
    loop {
        let (mut a, mut b) = (post(http, replica_url, body).await?, post(http, upstream_url, body).await?);
        // Fields where anvil (1.x) differs from geth and the execution-apis spec, which the replica follows
        // (docs/rpc.md): a block timestamp on receipts, totalDifficulty on blocks, and a block size one
        // byte off.
        for answer in [&mut a, &mut b] {
            if let Some(object) = answer["result"].as_object_mut() {
                for field in ["blockTimestamp", "totalDifficulty", "size"] {
                    object.remove(field);
                }
            }
        }
        if a["result"] == b["result"] {
            return Ok(());
        }
        tries += 1;
        anyhow::ensure!(tries < 10, "{name}: replica {a} vs {upstream} {b}");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
}

/// What keeps a replica serving: its RPC server (stops when dropped), its replay and its database's
/// directory.
pub(crate) struct Following {
    pub(crate) store: Arc<Store>,
    server: jsonrpsee::server::ServerHandle,
    replica: tokio::task::JoinHandle<Result<ec_replica::Progress, ec_replica::ReplicaError>>,
    shutdown: tokio::sync::oneshot::Sender<()>,
    _dir: tempfile::TempDir,
}

impl Following {
    /// Stops the server and the replay and closes the database before its directory goes: a database left
    /// open when the process exits can abort it (RocksDB's threads outlive its static state).
    pub(crate) async fn stop(self) {
        let Following { store, server, replica, shutdown, _dir } = self;
        let _ = server.stop();
        server.stopped().await;
        let _ = shutdown.send(());
        let _ = replica.await;
        drop(store);
    }
}

/// A publisher following `chain` onto a topic of the mock broker at `brokers`, and a replica replaying it up
/// to block `head`, serving JSON-RPC under `limits`: the replica's URL and its server (which stops when
/// dropped with the returned [`Following`]). Both run on the caller's runtime until it ends.
pub(crate) async fn follow(
    chain: &crate::backlog::Chain,
    brokers: &str,
    head: u64,
    limits: ec_rpc::Limits,
    filters: Option<ec_rpc::filters::methods::Filters>,
) -> anyhow::Result<(String, Following)> {
    let kafka = KafkaConfig::plaintext(brokers);
    let cfg = PublisherConfig {
        start_block: None,
        allow_unfinalized_start: false,
        rpc_url: chain.url.clone(),
        ws_url: None,
        kafka: kafka.clone(),
        topic: "bench".into(),
        cluster_id: "bench".into(),
        genesis: Some(chain.genesis.clone()),
        trace_mode: Some(TraceMode::Prestate),
        heartbeat_interval: Duration::from_secs(1),
        poll_interval: Duration::from_millis(100),
        reorg_window: 64,
        tail_messages: 10_000,
        encode: EncodeOptions::default(),
        standby: false,
        takeover_after: Duration::from_secs(10),
        pipeline_depth: 8,
        verify_rate: 0.0,
    };
    let publisher = Publisher::start(cfg, Arc::new(Metrics::default())).await?;
    tokio::spawn(publisher.run(std::future::pending()));
    let dir = tempfile::tempdir()?;
    let store = Arc::new(Store::open(dir.path(), StoreOptions::default())?);
    let (status, mut rx) = tokio::sync::watch::channel(Status::default());
    let rcfg = ReplicaConfig {
        data_dir: dir.path().to_owned(),
        kafka,
        topic: "bench".into(),
        store: StoreOptions::default(),
        exit_when_caught_up: false,
        progress_interval: Duration::from_secs(3600),
        events: None,
        pipeline_from_writes: ec_store::HAND_OVER_FROM,
    };
    let (shutdown, stopping) = tokio::sync::oneshot::channel::<()>();
    let stopping = async move {
        let _ = stopping.await;
    };
    let replica = tokio::spawn(ec_replica::run_with_store(rcfg, store.clone(), status, stopping));
    rx.wait_for(|s| s.head_block.is_some_and(|h| h >= head)).await?;
    let rpc_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let addr = format!("127.0.0.1:{rpc_port}").parse()?;
    let mut ctx = ec_rpc::Ctx::new(store.clone(), None, limits, None, None);
    ctx.filters = filters;
    let (server, _) = ec_rpc::serve(addr, ctx).await?;
    let following = Following { store, server, replica, shutdown, _dir: dir };
    Ok((format!("http://127.0.0.1:{rpc_port}"), following))
}

pub(crate) fn print_row(name: &str, ours: &Load, theirs: &Load) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{name:<30} {:>12.0} {:>12.0} {:>6.2}x | {:>7.2}ms {:>7.2}ms | {:>7.2}ms {:>7.2}ms",
        ours.rate,
        theirs.rate,
        ours.rate / theirs.rate.max(1e-9),
        ms(ours.p50),
        ms(ours.p99),
        ms(theirs.p50),
        ms(theirs.p99)
    );
}

/// What `eth_chainId` answers on the bench's chains; the bare server sends it whatever it is asked.
const BARE_ANSWER: &str = r#"{"jsonrpc":"2.0","id":1,"result":"0x7a69"}"#;

/// Starts the bare server on a free port of 127.0.0.1 (on the bench's runtime, like the replica's server); its
/// URL. It runs until the runtime ends.
async fn bare_server() -> anyhow::Result<String> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let answer = || async { ([(axum::http::header::CONTENT_TYPE, "application/json")], BARE_ANSWER) };
    let app = axum::Router::new().route("/", axum::routing::post(answer));
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(url)
}

pub(crate) struct Load {
    pub(crate) rate: f64,
    pub(crate) p50: Duration,
    pub(crate) p99: Duration,
}

/// Runs wrk (2 threads, 1 for 1 connection, `clients` connections, HTTP/1.1 keep-alive) posting `body` to `url`; its rate and
/// latency percentiles. Any non-2xx answer or socket error fails the measurement.
pub(crate) async fn wrk(url: &str, body: &Value, clients: usize, seconds: f64) -> anyhow::Result<Load> {
    let mut script = tempfile::NamedTempFile::new()?;
    use std::io::Write;
    writeln!(
        script,
        "wrk.method = \"POST\"\nwrk.headers[\"Content-Type\"] = \"application/json\"\nwrk.body = [==[{body}]==]"
    )?;
    let (url, path) = (url.to_owned(), script.path().to_owned());
    // Two threads, or one for one connection (wrk needs a connection per thread).
    let threads = if clients < 2 { "1" } else { "2" };
    let (clients, secs) = (clients.to_string(), format!("{}s", seconds.ceil() as u64));
    let out = tokio::task::spawn_blocking(move || {
        Command::new("wrk")
            // A request slower than wrk's default 2 s timeout (a trace on anvil) is waited for, not dropped.
            .args(["-t", threads, "-c", &clients, "-d", &secs, "--timeout", "60s", "--latency", "-s"])
            .arg(&path)
            .arg(&url)
            .output()
    })
    .await??;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
    anyhow::ensure!(!text.contains("Non-2xx") && !text.contains("Socket errors"), "wrk saw errors: {text}");
    let field =
        |prefix: &str| text.lines().find_map(|l| l.trim().strip_prefix(prefix).map(|v| v.trim().to_owned()));
    let rate: f64 = field("Requests/sec:").and_then(|v| v.parse().ok()).context("wrk's Requests/sec")?;
    let latency = |p: &str| field(p).and_then(|v| parse_duration(&v)).unwrap_or_default();
    Ok(Load { rate, p50: latency("50%"), p99: latency("99%") })
}

/// wrk's durations: `588.00us`, `2.43ms`, `1.01s`.
fn parse_duration(v: &str) -> Option<Duration> {
    let (number, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-6)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1e-3)
    } else {
        (v.strip_suffix('s')?, 1.0)
    };
    number.parse::<f64>().ok().map(|n| Duration::from_secs_f64(n * scale))
}
