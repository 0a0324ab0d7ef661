//! `ec-bench traces`: `debug_traceBlockByNumber` with the call tracer on blocks of a few hundred and a
//! thousand transactions, answered by a replica and by its upstream (geth, anvil) for the same block, side by
//! side in one run. The load comes from wrk in its own process; each answer is first checked equal to geth's.

use std::time::Duration;

use anyhow::Context;
use ec_testkit::MockBroker;
use serde_json::{json, Value};

use crate::rpc::{follow, wrk};

#[derive(clap::Args)]
pub struct Args {
    /// Upstreams, each measured side by side with a replica following it.
    #[arg(long, default_value = "geth,anvil", value_delimiter = ',')]
    upstreams: Vec<String>,
    /// Transactions per traced block.
    #[arg(long, default_value = "300,1000", value_delimiter = ',')]
    sizes: Vec<usize>,
    /// Concurrent connections (and the replica's trace pool: `--rpc-trace-concurrency`).
    #[arg(long, default_value_t = 2)]
    clients: usize,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    #[arg(long, env = "ANVIL_BIN")]
    anvil: Option<String>,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    println!(
        "{:<6} {:>5} {:>13} {:>13} {:>7} | {:>12} {:>12}",
        "client", "txs", "replica tr/s", "client tr/s", "ratio", "ours ms/tx", "theirs ms/tx"
    );
    for upstream in &args.upstreams {
        for &size in &args.sizes {
            // A fresh chain per size: its one big block is the one traced. geth mines on a 2 s clock so that
            // a whole batch lands in one block.
            let chain = crate::backlog::start_client(upstream, args.anvil.as_deref(), 2)?;
            rt.block_on(crate::backlog::build_backlog(&chain, upstream, size, 1))?;
            rt.block_on(measure(&args, &chain, upstream))?;
        }
    }
    rt.shutdown_background();
    Ok(())
}

async fn measure(args: &Args, chain: &crate::backlog::Chain, upstream: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let call =
        |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    let post = |url: String, body: Value| {
        let http = http.clone();
        async move { anyhow::Ok(http.post(url).json(&body).send().await?.json::<Value>().await?) }
    };
    let head = post(chain.url.clone(), call("eth_blockNumber", json!([]))).await?["result"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .context("the upstream's head")?;
    // The block with the most transactions.
    let mut best = (0, 0);
    for n in 1..=head {
        let block =
            post(chain.url.clone(), call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))).await?;
        let txs = block["result"]["transactions"].as_array().map_or(0, Vec::len);
        best = best.max((txs, n));
    }
    let (txs, number) = best;
    let broker = MockBroker::start(&["bench", "bench-tx"])?;
    let limits = ec_rpc::Limits {
        trace_concurrency: args.clients,
        trace_timeout: Duration::from_secs(60),
        ..ec_rpc::Limits::default()
    };
    let (replica_url, following) = follow(chain, &broker.bootstrap_servers(), head, limits, None).await?;
    let body = call("debug_traceBlockByNumber", json!([format!("{number:#x}"), {"tracer": "callTracer"}]));
    let ours = post(replica_url.clone(), body.clone()).await?;
    let theirs = post(chain.url.clone(), body.clone()).await?;
    let answered = ours["result"].as_array().map_or(0, Vec::len);
    anyhow::ensure!(answered == txs, "the replica traced {answered} of {txs} transactions: {ours}");
    if upstream == "geth" {
        let (a, b) = (ours["result"].as_array(), theirs["result"].as_array());
        let first = a.zip(b).and_then(|(a, b)| a.iter().zip(b).find(|(x, y)| x != y));
        anyhow::ensure!(
            first.is_none() && a.map(Vec::len) == b.map(Vec::len),
            "the replica's trace differs from geth's: {first:?}"
        );
    }
    let a = wrk(&replica_url, &body, args.clients, args.seconds).await?;
    let mut b = wrk(&chain.url, &body, args.clients, args.seconds).await?;
    if b.rate == 0.0 {
        // Not one answer within the measurement (anvil's traces grow with the square of the block): time one
        // request, and credit the client with `clients` of them at once (in its favour).
        let started = std::time::Instant::now();
        post(chain.url.clone(), body.clone()).await?;
        b.rate = args.clients as f64 / started.elapsed().as_secs_f64();
    }
    let per_tx = |rate: f64| 1e3 * args.clients as f64 / rate.max(1e-9) / txs as f64;
    println!(
        "{upstream:<6} {txs:>5} {:>13.2} {:>13.2} {:>6.2}x | {:>12.3} {:>12.3}",
        a.rate,
        b.rate,
        a.rate / b.rate.max(1e-9),
        per_tx(a.rate),
        per_tx(b.rate)
    );
    following.stop().await;
    Ok(())
}
