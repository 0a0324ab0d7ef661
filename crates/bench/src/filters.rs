//! `ec-bench filters`: what a polling filter's store adds to a poll. A replica follows geth; the same
//! `eth_getFilterChanges` poll of a block filter is measured on the replica (its filters in memory, or in
//! DynamoDB's API at `--dynamodb-endpoint`) and on geth (filters in its memory), side by side, with wrk in
//! its own process: one connection (each poll waits for the last: the latency a client sees) and several on
//! the same filter (polls racing for its cursor).

use std::{sync::Arc, time::Duration};

use ec_rpc::filters::{dynamodb::DynamoFilters, memory::MemoryFilters, methods::Filters, FilterStore};
use ec_testkit::MockBroker;
use serde_json::json;

use crate::rpc::{follow, post, print_row, wrk};

#[derive(clap::Args)]
pub struct Args {
    /// Where the replica keeps filters: `memory`, or `dynamodb` at `--dynamodb-endpoint`.
    #[arg(long, default_value = "memory")]
    store: String,
    /// The DynamoDB API to use (e.g. `http://127.0.0.1:5000`, moto's: `python3 scripts/moto-server.py 5000`);
    /// unset, the SDK's usual endpoint and credentials.
    #[arg(long)]
    dynamodb_endpoint: Option<String>,
    /// Seconds per measurement.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Connections of the contended row (all polling one filter).
    #[arg(long, default_value_t = 8)]
    clients: usize,
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(bench(&args))?;
    rt.shutdown_background();
    Ok(())
}

async fn filter_store(args: &Args) -> anyhow::Result<Arc<dyn FilterStore>> {
    if args.store == "memory" {
        return Ok(Arc::new(MemoryFilters::default()));
    }
    anyhow::ensure!(args.store == "dynamodb", "--store is memory or dynamodb, not {}", args.store);
    // The functions' SDK configuration (rustls): the emulator's at an endpoint, else the usual chain.
    let sdk = match &args.dynamodb_endpoint {
        Some(endpoint) => ec_functions::emulator_sdk_config(endpoint).await,
        None => ec_functions::load_sdk_config().await,
    };
    let client = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoFilters::new(client, "ec-bench-filters");
    store.create_table().await?;
    Ok(Arc::new(store))
}

async fn bench(args: &Args) -> anyhow::Result<()> {
    let chain = crate::backlog::start_client("geth", None, 1)?;
    crate::backlog::build_backlog(&chain, "geth", 10, 5).await?;
    let broker = MockBroker::start(&["bench", "bench-tx"])?;
    let http = reqwest::Client::new();
    let head_of = |v: serde_json::Value| {
        v["result"].as_str().and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
    };
    let head = head_of(
        post(&http, &chain.url, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber"})).await?,
    )
    .ok_or_else(|| anyhow::anyhow!("geth's head"))?;
    let filters = Filters { store: filter_store(args).await?, timeout: Duration::from_secs(300) };
    let (replica_url, following) =
        follow(&chain, &broker.bootstrap_servers(), head, ec_rpc::Limits::default(), Some(filters)).await?;
    let new_filter = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_newBlockFilter", "params": []});
    let id =
        |v: serde_json::Value| v["result"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("{v}"));
    let ours = id(post(&http, &replica_url, &new_filter).await?)?;
    let theirs = id(post(&http, &chain.url, &new_filter).await?)?;
    let poll =
        |id: &str| json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getFilterChanges", "params": [id]});
    println!("replica filters: {}", args.store);
    println!(
        "{:<30} {:>12} {:>12} {:>7} | {:>9} {:>9} | {:>9} {:>9}",
        "request", "replica rq/s", "geth rq/s", "ratio", "ours p50", "ours p99", "their p50", "their p99"
    );
    for (name, clients) in
        [("eth_getFilterChanges, 1 conn", 1), ("eth_getFilterChanges, N conns", args.clients)]
    {
        let a = wrk(&replica_url, &poll(&ours), clients, args.seconds).await?;
        let b = wrk(&chain.url, &poll(&theirs), clients, args.seconds).await?;
        print_row(name, &a, &b);
    }
    following.stop().await;
    Ok(())
}
