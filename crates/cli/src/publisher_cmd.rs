//! `ether-cattle publisher`: follow an execution client and write the cluster's log.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use ec_log::{EncodeOptions, DEFAULT_MAX_FRAME_BYTES};
use ec_publisher::{Metrics, Publisher, PublisherConfig, TraceMode};

use crate::kafka_args::KafkaArgs;

#[derive(clap::Args)]
pub struct PublisherArgs {
    /// The execution client's HTTP JSON-RPC endpoint.
    #[arg(long, env = "EC_RPC_URL")]
    rpc_url: String,
    /// Its websocket endpoint, for newHeads notifications (polling is always on as well).
    #[arg(long, env = "EC_WS_URL")]
    ws_url: Option<String>,
    /// The cluster's log topic.
    #[arg(long, env = "EC_TOPIC")]
    topic: String,
    /// Raw transactions from replicas to relay to the client; default `<topic>-tx`. `none` disables.
    #[arg(long, env = "EC_TX_TOPIC")]
    tx_topic: Option<String>,
    #[command(flatten)]
    kafka: KafkaArgs,
    /// Cluster id written into every record.
    #[arg(long, env = "EC_CLUSTER_ID")]
    cluster_id: String,
    /// geth-style genesis.json; needed to start a new cluster (empty topic).
    #[arg(long, env = "EC_GENESIS")]
    genesis: Option<PathBuf>,
    /// Start a new cluster (empty topic) at this block of the client instead of genesis: writes a checkpoint
    /// record and follows from the next block. Replicas start from a database imported at the same block
    /// (`ether-cattle import-state`). Ignored when the topic already holds a log.
    #[arg(long, env = "EC_START_BLOCK")]
    start_block: Option<u64>,
    /// Accept a --start-block the client does not report finalized (devnets that do not finalize).
    #[arg(long, env = "EC_ALLOW_UNFINALIZED_START")]
    allow_unfinalized_start: bool,
    /// auto, prestate (debug_traceBlockByNumber prestateTracer diffMode) or state-diff
    /// (trace_replayBlockTransactions stateDiff).
    #[arg(long, env = "EC_TRACE_MODE", default_value = "auto")]
    trace_mode: String,
    #[arg(long, env = "EC_HEARTBEAT_INTERVAL_MS", default_value_t = 2000)]
    heartbeat_interval_ms: u64,
    #[arg(long, env = "EC_POLL_INTERVAL_MS", default_value_t = 500)]
    poll_interval_ms: u64,
    /// Deepest reorg followed; a deeper one stops the publisher.
    #[arg(long, env = "EC_REORG_WINDOW", default_value_t = 64)]
    reorg_window: u64,
    /// Messages read back from the end of the topic at start-up to find where to continue.
    #[arg(long, default_value_t = 20_000)]
    tail_messages: i64,
    #[arg(long, default_value_t = DEFAULT_MAX_FRAME_BYTES)]
    max_frame_bytes: usize,
    /// Wait until the topic has been silent for --takeover-after-secs before taking over: run every
    /// publisher of a cluster (the active one, standbys, a restarted one) with this, so that a restart never
    /// fences a healthy active publisher. Without it the publisher takes over at once.
    #[arg(long, env = "EC_STANDBY")]
    standby: bool,
    /// How long a standby waits for silence; above the heartbeat interval, below the replicas' silence limit.
    #[arg(long, env = "EC_TAKEOVER_AFTER_SECS", default_value_t = 10.0)]
    takeover_after_secs: f64,
    /// Blocks fetched and traced concurrently while catching up (1: one after another).
    #[arg(long, env = "EC_PIPELINE_DEPTH", default_value_t = 8)]
    pipeline_depth: usize,
    /// Fraction of every block's changed accounts checked against eth_getProof proofs of the block's state
    /// root (and their values before the block against the parent's) before the block is written; every
    /// wipe and deletion is checked at any rate above 0; a mismatch stops the publisher (0: off, 1: every
    /// account).
    #[arg(long, env = "EC_VERIFY_RATE", default_value_t = 0.02)]
    verify_rate: f64,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9101).
    #[arg(long, env = "EC_METRICS_ADDR")]
    metrics_addr: Option<SocketAddr>,
}

pub async fn run(args: PublisherArgs, shutdown: impl std::future::Future<Output = ()>) -> anyhow::Result<()> {
    let trace_mode = match args.trace_mode.as_str() {
        "auto" => None,
        "prestate" => Some(TraceMode::Prestate),
        "state-diff" => Some(TraceMode::StateDiff),
        other => anyhow::bail!("--trace-mode must be auto, prestate or state-diff, not {other:?}"),
    };
    let kafka = args.kafka.connect().await?;
    let tx_topic = match args.tx_topic.as_deref() {
        Some("none") => None,
        Some(t) => Some(t.to_owned()),
        None => Some(format!("{}-tx", args.topic)),
    };
    let cfg = PublisherConfig {
        rpc_url: args.rpc_url,
        ws_url: args.ws_url,
        kafka: kafka.clone(),
        topic: args.topic,
        cluster_id: args.cluster_id.clone(),
        genesis: args.genesis,
        start_block: args.start_block,
        allow_unfinalized_start: args.allow_unfinalized_start,
        trace_mode,
        heartbeat_interval: Duration::from_millis(args.heartbeat_interval_ms.max(10)),
        poll_interval: Duration::from_millis(args.poll_interval_ms.max(10)),
        reorg_window: args.reorg_window,
        tail_messages: args.tail_messages,
        encode: EncodeOptions { max_frame_bytes: args.max_frame_bytes, ..EncodeOptions::default() },
        standby: args.standby,
        takeover_after: Duration::from_secs_f64(args.takeover_after_secs.max(0.0)),
        pipeline_depth: args.pipeline_depth.max(1),
        verify_rate: args.verify_rate.clamp(0.0, 1.0),
    };
    let metrics = Arc::new(Metrics::default());
    if let Some(addr) = args.metrics_addr {
        let m = metrics.clone();
        tokio::spawn(async move {
            if let Err(e) = ec_publisher::metrics::serve(addr, m).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }
    let publisher = Publisher::start(cfg, metrics.clone()).await?;
    if let Some(tx_topic) = tx_topic {
        let group = format!("ether-cattle-publisher-{}", args.cluster_id);
        let relay = ec_publisher::relay::run(kafka, tx_topic, group, publisher.rpc(), metrics);
        tokio::spawn(async move {
            if let Err(e) = relay.await {
                tracing::error!(error = %e, "transaction relay stopped");
            }
        });
    }
    publisher.run(shutdown).await?;
    Ok(())
}
