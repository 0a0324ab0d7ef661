//! `ec-bench backlog`: how fast the publisher catches up on a backlog of blocks, one block after another
//! (`--pipeline-depth 1`) next to pipelined (several blocks fetched and traced at once), on anvil and geth,
//! with blocks of 100 and 1,000 transfers.
//!
//! The chain is built first (anvil: exactly N transactions per mined block; geth --dev: N transactions sent
//! per block period, so blocks hold about N), then a publisher starts on an empty topic of an in-process
//! broker and the clock runs until it has published the client's head. Same chain, same broker, same
//! process for every depth: only the ratio between rows is meant to carry over to other machines.

use std::{
    process::{Command, Stdio},
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};

use alloy_consensus::{SignableTransaction, TxEip1559, TxEnvelope};
use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{Address, TxKind, U256};
use anyhow::Context;
use ec_kafka::KafkaConfig;
use ec_log::EncodeOptions;
use ec_publisher::{rpc::RpcClient, Metrics, Publisher, PublisherConfig, TraceMode};
use ec_testkit::MockBroker;
use k256::ecdsa::SigningKey;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Clients: anvil, geth.
    #[arg(long, default_value = "anvil,geth", value_delimiter = ',')]
    clients: Vec<String>,
    /// Transactions per block, comma-separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Blocks in the backlog.
    #[arg(long, default_value_t = 20)]
    blocks: usize,
    /// Pipeline depths to compare.
    #[arg(long, default_value = "1,8", value_delimiter = ',')]
    depths: Vec<usize>,
    /// Fraction of accounts checked with eth_getProof (the publisher's --verify-rate).
    #[arg(long, default_value_t = 0.0)]
    verify_rate: f64,
    /// geth --dev's block period in seconds: long enough for a block's transactions to be sent within one.
    #[arg(long, default_value_t = 4)]
    geth_period: u64,
    /// anvil binary (default: where scripts/setup.sh installs it).
    #[arg(long, env = "ANVIL_BIN")]
    anvil: Option<String>,
}

/// anvil's (and the project genesis's) first dev accounts and their keys (mnemonic "test test ... junk").
const KEYS: [&str; 4] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
];

pub(crate) struct Chain {
    pub(crate) url: String,
    pub(crate) genesis: std::path::PathBuf,
    pub(crate) chain_id: u64,
    /// Kept alive for the client's lifetime.
    _process: Box<dyn std::any::Any>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!(
        "{:<6} {:>6} {:>7} {:>6} {:>7} {:>8} {:>9} {:>9} {:>9} {:>9} {:>10}",
        "client",
        "txs",
        "avg txs",
        "depth",
        "blocks",
        "seconds",
        "blocks/s",
        "fetch ms",
        "trace ms",
        "verify ms",
        "produce ms"
    );
    for client in &args.clients {
        for &size in &args.sizes {
            let chain = start_client(client, args.anvil.as_deref(), args.geth_period)?;
            let avg = rt.block_on(build_backlog(&chain, client, size, args.blocks))?;
            let mut rates = Vec::new();
            for &depth in &args.depths {
                let (blocks, secs, m) = rt.block_on(publish_backlog(&chain, depth, args.verify_rate))?;
                let rate = blocks as f64 / secs;
                rates.push(rate);
                // Per block, summed over the blocks in flight (with depth > 1 they overlap).
                let per_block =
                    |total: &std::sync::atomic::AtomicU64| total.load(Relaxed) as f64 / 1e3 / blocks as f64;
                println!(
                    "{client:<6} {size:>6} {avg:>7.0} {depth:>6} {blocks:>7} {secs:>8.2} {rate:>9.2} {:>9.1} {:>9.1} {:>9.1} {:>10.1}",
                    per_block(&m.fetch_micros_total),
                    per_block(&m.trace_micros_total),
                    per_block(&m.verify_micros_total),
                    per_block(&m.produce_micros_total),
                );
            }
            if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
                println!("{client:<6} {size:>6}: pipelined / sequential = {:.2}x", last / first);
            }
        }
    }
    Ok(())
}

pub(crate) fn start_client(client: &str, anvil: Option<&str>, geth_period: u64) -> anyhow::Result<Chain> {
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    match client {
        "anvil" => {
            let anvil = anvil.map(str::to_owned).unwrap_or_else(|| {
                format!(
                    "{}/.cache/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            let genesis = root.join("config/genesis-local.json");
            let child = Command::new(&anvil)
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent", "--no-mining"])
                .args(["--chain-id", "31337", "--gas-limit", "60000000", "--init"])
                .arg(&genesis)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .with_context(|| format!("starting {anvil}"))?;
            struct Kill(std::process::Child);
            impl Drop for Kill {
                fn drop(&mut self) {
                    let _ = self.0.kill();
                    let _ = self.0.wait();
                }
            }
            Ok(Chain {
                url: format!("http://127.0.0.1:{port}"),
                genesis,
                chain_id: 31337,
                _process: Box::new(Kill(child)),
            })
        }
        "geth" => {
            let funded: Vec<String> = KEYS.iter().map(|k| format!("{}", address_of(k))).collect();
            let funded: Vec<&str> = funded.iter().map(String::as_str).collect();
            let geth = ec_testkit::Geth::dev(&funded, geth_period)
                .map_err(|e| anyhow::anyhow!("geth --dev: {e}"))?;
            Ok(Chain {
                url: format!("http://127.0.0.1:{}", geth.http_port()),
                genesis: geth.dev_genesis_path(),
                chain_id: geth.chain_id(),
                _process: Box::new(geth),
            })
        }
        other => anyhow::bail!("unknown client {other:?}: anvil or geth"),
    }
}

fn address_of(key: &str) -> Address {
    let signer = SigningKey::from_slice(&decode_hex(key)).expect("a valid dev key");
    Address::from_public_key(signer.verifying_key())
}

fn decode_hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).filter_map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok()).collect()
}

/// Builds `blocks` blocks of about `size` transfers each; returns the average transaction count.
pub(crate) async fn build_backlog(
    chain: &Chain,
    client: &str,
    size: usize,
    blocks: usize,
) -> anyhow::Result<f64> {
    let rpc = RpcClient::new(&chain.url, Duration::from_secs(600))?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while rpc.block_number().await.is_err() {
        anyhow::ensure!(Instant::now() < deadline, "{client} did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let keys: Vec<SigningKey> =
        KEYS.iter().map(|k| SigningKey::from_slice(&decode_hex(k))).collect::<Result<_, _>>()?;
    let mut nonces = Vec::new();
    for k in &keys {
        nonces.push(rpc.nonce(Address::from_public_key(k.verifying_key()), rpc.block_number().await?).await?);
    }
    let start = rpc.block_number().await?;
    let mut sent = 0usize;
    while (rpc.block_number().await? - start) < blocks as u64 {
        let before = rpc.block_number().await?;
        let mut calls = Vec::with_capacity(size);
        for i in 0..size {
            let k = i % keys.len();
            let tx = TxEip1559 {
                chain_id: chain.chain_id,
                nonce: nonces[k],
                gas_limit: 21_000,
                max_fee_per_gas: 100_000_000_000,
                max_priority_fee_per_gas: 1_000_000_000,
                to: TxKind::Call(Address::with_last_byte((i % 251) as u8)),
                value: U256::from(1),
                ..Default::default()
            };
            nonces[k] += 1;
            let (sig, recid) = keys[k].sign_prehash_recoverable(tx.signature_hash().as_slice())?;
            let bytes = sig.to_bytes();
            let signature = alloy_primitives::Signature::new(
                U256::from_be_slice(&bytes[..32]),
                U256::from_be_slice(&bytes[32..]),
                recid.is_y_odd(),
            );
            let raw = TxEnvelope::from(tx.into_signed(signature)).encoded_2718();
            calls.push(("eth_sendRawTransaction", json!([alloy_primitives::Bytes::from(raw)])));
        }
        for chunk in calls.chunks(250) {
            for answer in rpc.batch(chunk).await? {
                answer.context("a transaction was refused")?;
            }
        }
        sent += size;
        if client == "anvil" {
            rpc.call::<serde_json::Value>("evm_mine", json!([])).await?;
        } else {
            // geth mines every --geth-period seconds: wait for the block that takes them.
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let status: serde_json::Value = rpc.call("txpool_status", json!([])).await?;
                let pending =
                    status["pending"].as_str().map_or(1, |p| u64::from_str_radix(&p[2..], 16).unwrap_or(1));
                if pending == 0 && rpc.block_number().await? > before {
                    break;
                }
                anyhow::ensure!(Instant::now() < deadline, "geth did not mine the transactions");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    let built = rpc.block_number().await? - start;
    Ok(sent as f64 / built as f64)
}

/// Publishes the whole chain onto a new topic with `depth`; returns (blocks, seconds, the publisher's metrics).
async fn publish_backlog(
    chain: &Chain,
    depth: usize,
    verify_rate: f64,
) -> anyhow::Result<(u64, f64, Arc<Metrics>)> {
    let broker = MockBroker::start(&["backlog"])?;
    let rpc = RpcClient::new(&chain.url, Duration::from_secs(600))?;
    let head = rpc.block_number().await?;
    let cfg = PublisherConfig {
        start_block: None,
        allow_unfinalized_start: false,
        rpc_url: chain.url.clone(),
        ws_url: None,
        kafka: KafkaConfig::plaintext(broker.bootstrap_servers()),
        topic: "backlog".into(),
        cluster_id: "backlog".into(),
        genesis: Some(chain.genesis.clone()),
        trace_mode: Some(TraceMode::Prestate),
        heartbeat_interval: Duration::from_secs(2),
        poll_interval: Duration::from_millis(50),
        reorg_window: 64,
        tail_messages: 10_000,
        encode: EncodeOptions::default(),
        standby: false,
        takeover_after: Duration::from_secs(10),
        pipeline_depth: depth,
        verify_rate,
    };
    let metrics = Arc::new(Metrics::default());
    let started = Instant::now();
    let publisher = Publisher::start(cfg, metrics.clone()).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(publisher.run(async {
        let _ = stopped.await;
    }));
    let deadline = Instant::now() + Duration::from_secs(1800);
    while metrics.head_published.load(Relaxed) < head {
        anyhow::ensure!(!task.is_finished(), "the publisher stopped");
        anyhow::ensure!(Instant::now() < deadline, "the publisher did not catch up in 30 minutes");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await??;
    Ok((head, secs, metrics))
}
