//! `ec-bench publisher`: what one block costs the publisher, by phase, on anvil, for blocks of 100 and 1,000
//! transactions, with both trace modes.

use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::Context;
use ec_kafka::{KafkaConfig, LogProducer};
use ec_log::{encode_record, EncodeOptions, Record};
use ec_publisher::{
    fetch::{fetch_block, FetchOptions},
    rpc::RpcClient,
    TraceMode,
};
use ec_testkit::MockBroker;
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Transactions per block, comma-separated.
    #[arg(long, default_value = "100,1000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// anvil binary (default: where scripts/setup.sh installs it).
    #[arg(long, env = "ANVIL_BIN")]
    anvil: Option<String>,
}

const DEV: [&str; 4] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
];

pub fn run(args: Args) -> anyhow::Result<()> {
    let anvil = args.anvil.unwrap_or_else(|| {
        format!(
            "{}/.cache/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil",
            std::env::var("HOME").unwrap_or_default()
        )
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let mut child = Command::new(&anvil)
        .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--silent", "--no-mining"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .with_context(|| format!("starting {anvil}"))?;
    let result = bench(port, &args.sizes);
    let _ = child.kill();
    let _ = child.wait();
    result
}

fn bench(port: u16, sizes: &[usize]) -> anyhow::Result<()> {
    let broker = MockBroker::start(&["bench"])?;
    let brokers = broker.bootstrap_servers();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(async {
        let rpc = RpcClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(600))?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while rpc.block_number().await.is_err() {
            anyhow::ensure!(Instant::now() < deadline, "anvil did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let producer = LogProducer::new(&KafkaConfig::plaintext(&brokers), "bench", 900_000)?;
        println!(
            "{:>6} {:<10} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>10}",
            "txs",
            "trace",
            "fetch ms",
            "trace ms",
            "encode ms",
            "produce ms",
            "total ms",
            "blocks/s",
            "record KB"
        );
        let mut sequence = 0u64;
        for &n in sizes {
            // One block of n transfers from four senders, mined at once.
            for i in 0..n {
                let to = format!("0x{:040x}", 0xa000 + i % 97);
                let tx = json!({"from": DEV[i % 4], "to": to, "value": "0x1", "gas": "0x5208"});
                rpc.call::<serde_json::Value>("eth_sendTransaction", json!([tx])).await?;
            }
            rpc.call::<serde_json::Value>("evm_mine", json!([])).await?;
            let number = rpc.block_number().await?;
            for mode in [TraceMode::StateDiff, TraceMode::Prestate] {
                let (block, t) = fetch_block(&rpc, number, mode, &FetchOptions::default())
                    .await?
                    .context("block just mined")?;
                anyhow::ensure!(block.transactions.len() == n, "block has {} txs", block.transactions.len());
                let started = Instant::now();
                let frames =
                    encode_record("bench", sequence, &Record::Block(block), EncodeOptions::default())?;
                let encode = started.elapsed();
                let started = Instant::now();
                producer.send_frames(sequence, &frames).await?;
                let produce = started.elapsed();
                sequence += 1;
                let total = t.fetch + t.trace + encode + produce;
                let ms = |d: Duration| d.as_secs_f64() * 1e3;
                println!(
                    "{:>6} {:<10} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.1} {:>9.2} {:>10.1}",
                    n,
                    format!("{mode:?}"),
                    ms(t.fetch),
                    ms(t.trace),
                    ms(encode),
                    ms(produce),
                    ms(total),
                    1.0 / total.as_secs_f64(),
                    frames.iter().map(Vec::len).sum::<usize>() as f64 / 1e3
                );
            }
        }
        anyhow::Ok(())
    })
}
