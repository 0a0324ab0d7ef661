//! `ec-bench simulate`: `eth_simulateV1` with 10 blocks of 5 calls (storage writes that log, value transfers,
//! transfers traced), answered by a replica and by geth for the same base block, side by side in one run.
//! The load comes from wrk in its own process; the replica's answer is first checked equal to geth's.

use std::time::Duration;

use anyhow::Context;
use ec_testkit::MockBroker;
use serde_json::{json, Value};

use crate::rpc::{follow, wrk};

#[derive(clap::Args)]
pub struct Args {
    /// Simulated blocks per request.
    #[arg(long, default_value_t = 10)]
    blocks: usize,
    /// Calls per simulated block.
    #[arg(long, default_value_t = 5)]
    calls: usize,
    /// Concurrent connections.
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
}

/// A contract that stores its calldata's second word at the slot its first word names and logs it.
const STORAGE: &str = "0x368015602057600114602557602035806000526000358091905560206000a1005b600080fd5b33ff";
const SENDER: &str = "0xc000000000000000000000000000000000000000";
const CONTRACT: &str = "0xc100000000000000000000000000000000000000";

/// The request: `blocks` blocks of `calls` calls on top of block `base`, three storage writes and the rest
/// transfers per block, the sender and the contract set by state overrides.
fn request(args: &Args, base: u64) -> Value {
    let blocks: Vec<Value> = (0..args.blocks)
        .map(|b| {
            let calls: Vec<Value> = (0..args.calls)
                .map(|i| {
                    if i % 5 < 3 {
                        let data = format!("0x{:064x}{:064x}", b * args.calls + i, i + 1);
                        json!({"from": SENDER, "to": CONTRACT, "input": data})
                    } else {
                        json!({"from": SENDER, "to": format!("0x{:040x}", 0xd000 + i), "value": "0x1"})
                    }
                })
                .collect();
            let overrides = if b == 0 {
                json!({SENDER: {"balance": "0x3635c9adc5dea00000"}, CONTRACT: {"code": STORAGE}})
            } else {
                json!({})
            };
            json!({"stateOverrides": overrides, "calls": calls})
        })
        .collect();
    json!({"jsonrpc": "2.0", "id": 1, "method": "eth_simulateV1",
           "params": [{"blockStateCalls": blocks, "traceTransfers": true}, format!("{base:#x}")]})
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    // geth on a 2 s clock, with a few blocks of transfers for a chain to stand on.
    let chain = crate::backlog::start_client("geth", None, 2)?;
    rt.block_on(crate::backlog::build_backlog(&chain, "geth", 20, 2))?;
    rt.block_on(measure(&args, &chain))?;
    rt.shutdown_background();
    Ok(())
}

async fn measure(args: &Args, chain: &crate::backlog::Chain) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move { anyhow::Ok(http.post(url).json(&body).send().await?.json::<Value>().await?) }
    };
    let head = post(
        chain.url.clone(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []}),
    )
    .await?["result"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .context("geth's head")?;
    let broker = MockBroker::start(&["bench", "bench-tx"])?;
    let limits = ec_rpc::Limits { call_timeout: Duration::from_secs(30), ..ec_rpc::Limits::default() };
    let (replica_url, following) = follow(chain, &broker.bootstrap_servers(), head, limits, None).await?;
    let body = request(args, head);
    let ours = post(replica_url.clone(), body.clone()).await?;
    let theirs = post(chain.url.clone(), body.clone()).await?;
    let simulated = ours["result"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(simulated == args.blocks, "the replica simulated {simulated} blocks: {ours}");
    anyhow::ensure!(ours == theirs, "the replica's answer differs from geth's:\nours {ours}\ngeth {theirs}");
    let a = wrk(&replica_url, &body, args.clients, args.seconds).await?;
    let b = wrk(&chain.url, &body, args.clients, args.seconds).await?;
    println!(
        "{:<18} {:>13} {:>13} {:>7} | {:>10} {:>10}",
        "request", "replica req/s", "geth req/s", "ratio", "ours p50", "geth p50"
    );
    println!(
        "{:<18} {:>13.2} {:>13.2} {:>6.2}x | {:>10.2?} {:>10.2?}",
        format!("{} blocks x {} calls", args.blocks, args.calls),
        a.rate,
        b.rate,
        a.rate / b.rate.max(1e-9),
        a.p50,
        b.p50
    );
    following.stop().await;
    Ok(())
}
