//! `ec-bench rpc`: requests per second answered by a replica and by anvil for the same requests on the same
//! chain, side by side. Everything runs in this process except anvil: a mock broker, the publisher
//! following anvil, a replica with its JSON-RPC server.

use std::{
    process::{Command, Stdio},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use ec_kafka::KafkaConfig;
use ec_log::EncodeOptions;
use ec_publisher::{Metrics, Publisher, PublisherConfig, TraceMode};
use ec_replica::{ReplicaConfig, Status};
use ec_store::{Store, StoreOptions};
use ec_testkit::MockBroker;
use serde_json::{json, Value};

#[derive(clap::Args)]
pub struct Args {
    /// Concurrent clients per measurement.
    #[arg(long, default_value_t = 64)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Blocks of traffic to build before measuring.
    #[arg(long, default_value_t = 50)]
    blocks: u64,
    #[arg(long, env = "ANVIL_BIN")]
    anvil: Option<String>,
}

const DEV: &str = "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266";

pub fn run(args: Args) -> anyhow::Result<()> {
    let home = std::env::var("HOME").unwrap_or_default();
    let anvil = args.anvil.clone().unwrap_or_else(|| {
        format!("{home}/.cache/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil")
    });
    let genesis = concat!(env!("CARGO_MANIFEST_DIR"), "/../../config/genesis-local.json");
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(&anvil)
        .args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--silent",
            "--chain-id",
            "31337",
            "--init",
            genesis,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {anvil}"))?;
    let broker = MockBroker::start(&["bench", "bench-tx"])?;
    let result = bench(&args, port, &broker.bootstrap_servers(), genesis);
    let _ = child.kill();
    let _ = child.wait();
    result
}

async fn post(http: &reqwest::Client, url: &str, body: &Value) -> anyhow::Result<Value> {
    Ok(http.post(url).json(body).send().await?.json().await?)
}

fn bench(args: &Args, anvil_port: u16, brokers: &str, genesis: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let http = reqwest::Client::new();
        let anvil_url = format!("http://127.0.0.1:{anvil_port}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while post(&http, &anvil_url, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}))
            .await
            .is_err()
        {
            anyhow::ensure!(Instant::now() < deadline, "anvil did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        for i in 0..args.blocks {
            let tx = json!({"from": DEV, "to": format!("0x{:040x}", 0xbe00 + i % 10), "value": "0x1"});
            post(&http, &anvil_url, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendTransaction", "params": [tx]}))
                .await?;
        }
        let kafka = KafkaConfig::plaintext(brokers);
        let cfg = PublisherConfig {
            start_block: None,
            allow_unfinalized_start: false,
            rpc_url: anvil_url.clone(),
            ws_url: None,
            kafka: kafka.clone(),
            topic: "bench".into(),
            cluster_id: "bench".into(),
            genesis: Some(genesis.into()),
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
        };
        tokio::spawn(ec_replica::run_with_store(rcfg, store.clone(), status, std::future::pending()));
        let head = args.blocks;
        rx.wait_for(|s| s.head_block.is_some_and(|h| h >= head)).await?;
        let rpc_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{rpc_port}").parse()?;
        let _server = ec_rpc::serve(addr, store, None, ec_rpc::Limits::default(), None, None).await?;
        let replica_url = format!("http://127.0.0.1:{rpc_port}");

        let tx_hash: Value = post(
            &http,
            &anvil_url,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [format!("{:#x}", head / 2), false]}),
        )
        .await?["result"]["transactions"][0]
            .clone();
        let requests = [
            ("eth_getTransactionReceipt", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionReceipt", "params": [tx_hash]})),
            ("eth_getLogs (whole chain)", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{"fromBlock": "0x0", "toBlock": "latest"}]})),
            ("eth_getBalance (latest)", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [DEV, "latest"]})),
            ("eth_getBalance (old block)", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [DEV, "0x5"]})),
            ("eth_getBlockByNumber (full)", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": [format!("{:#x}", head / 2), true]})),
            ("eth_getTransactionCount", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount", "params": [DEV, "latest"]})),
            ("eth_call (EIP-2935 read)", json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call", "params": [{"to": "0x0000F90827F1C53a10cb7A02335B175320002935", "data": format!("0x{:064x}", head - 2)}, "latest"]})),
        ];
        println!("{} clients, {:.0}s per row, chain of {head} blocks", args.clients, args.seconds);
        println!(
            "{:<30} {:>12} {:>12} {:>7} | {:>9} {:>9} | {:>9} {:>9}",
            "request", "replica rq/s", "anvil rq/s", "ratio", "ours p50", "ours p99", "anvil p50", "anvil p99"
        );
        for (name, body) in &requests {
            // Same answer from both, or the figures mean nothing.
            let (a, b) = (post(&http, &replica_url, body).await?, post(&http, &anvil_url, body).await?);
            // Fields where anvil (1.x) differs from geth and the execution-apis spec, which the replica follows
            // (docs/rpc.md): a block timestamp on receipts, totalDifficulty on blocks, and a block size one
            // byte off. The rest must be equal, or the figures mean nothing.
            let (mut a, mut b) = (a, b);
            for answer in [&mut a, &mut b] {
                if let Some(object) = answer["result"].as_object_mut() {
                    for field in ["blockTimestamp", "totalDifficulty", "size"] {
                        object.remove(field);
                    }
                }
            }
            anyhow::ensure!(a["result"] == b["result"], "{name}: replica {a} vs anvil {b}");
            let ours = load(&http, &replica_url, body, args.clients, args.seconds).await;
            let theirs = load(&http, &anvil_url, body, args.clients, args.seconds).await;
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
        anyhow::Ok(())
    })
}

struct Load {
    rate: f64,
    p50: Duration,
    p99: Duration,
}

/// Requests per second `clients` concurrent clients get answered (errors not counted), and latency
/// percentiles of the answered ones.
async fn load(http: &reqwest::Client, url: &str, body: &Value, clients: usize, seconds: f64) -> Load {
    let ok = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + Duration::from_secs_f64(seconds);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url, body, ok) = (http.clone(), url.to_owned(), body.clone(), ok.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < until {
                    let started = Instant::now();
                    if let Ok(v) = post(&http, &url, &body).await {
                        if v.get("result").is_some() {
                            ok.fetch_add(1, Ordering::Relaxed);
                            latencies.push(started.elapsed());
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    all.sort_unstable();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Load { rate: ok.load(Ordering::Relaxed) as f64 / seconds, p50: pct(0.50), p99: pct(0.99) }
}
