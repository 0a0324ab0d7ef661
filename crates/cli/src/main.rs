//! `ether-cattle`: the replica, and the tools around it.

/// mimalloc: a replica's trie walks allocate per leaf and node, and glibc's malloc made a block a third slower
/// (docs/benchmarks.md).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod availability;
mod aws;
mod balancer_cmd;
mod filters_args;
mod healthcheck;
mod import_cmd;
mod kafka_args;
mod publisher_cmd;
mod replica_cmd;
mod snapshot_cmd;
mod synth;
mod topics_cmd;
mod verify_cmd;
mod verify_root_cmd;

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};
use ec_store::{Store, DEFAULT_UNDO_WINDOW};

#[derive(Parser)]
#[command(name = "ether-cattle", version, about = "Ethereum RPC nodes as cattle: replicas fed from Kafka")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Replay the cluster's topic into a local database and keep following it.
    Replica(Box<ReplicaArgs>),
    /// Follow an execution client and write every block, reorg and heartbeat to the cluster's topic.
    Publisher(publisher_cmd::PublisherArgs),
    /// Build a replica database at block N of a synced node from a dump of its state (checked against
    /// block N's state root), for a cluster whose publisher starts with --start-block N.
    ImportState(import_cmd::ImportStateArgs),
    /// Print a digest of a database's logical content (works beside a running replica).
    Checksum {
        #[arg(long, env = "EC_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Re-execute stored blocks and compare the state each writes with the block's record (exit 3 at the
    /// first difference, naming its block, transaction and key).
    VerifyBlocks(verify_cmd::VerifyBlocksArgs),
    /// Recompute the whole state root from the state tables alone and compare it with the head block's
    /// header (exit 0 equal, 3 different, 1 when it cannot run).
    VerifyRoot(verify_root_cmd::VerifyRootArgs),
    /// Print where a database stands: sequence, Kafka offset, head block (works beside a running replica).
    Status {
        #[arg(long, env = "EC_DATA_DIR")]
        data_dir: PathBuf,
    },
    /// Write a deterministic synthetic log to a topic (for demos, tests and benchmarks).
    SynthLog(synth::SynthArgs),
    /// Balance JSON-RPC over replicas, routing only to ready ones (the local cluster's ALB).
    Balancer(balancer_cmd::BalancerArgs),
    /// Take a local snapshot (RocksDB checkpoint) of a running replica's database.
    Snapshot(snapshot_cmd::SnapshotArgs),
    /// Availability of N independent clusters from MTBF and MTTR (the seed's formula), or clusters for a target.
    Availability(availability::AvailabilityArgs),
    /// GET a health URL; exit 0 on 2xx (the container image's HEALTHCHECK: no curl in the image).
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Create a cluster's log and tx topics (one partition each) through the Kafka admin API; idempotent.
    CreateTopics(topics_cmd::CreateTopicsArgs),
    /// Change a topic's settings (e.g. retention.ms) through the Kafka admin API, keeping its others.
    AlterTopic(topics_cmd::AlterTopicArgs),
    /// Delete a retired cluster's log and tx topics through the Kafka admin API.
    DeleteTopics(topics_cmd::DeleteTopicsArgs),
}

#[derive(clap::Args)]
struct ReplicaArgs {
    /// The replica's RocksDB directory (an EBS volume in production).
    #[arg(long, env = "EC_DATA_DIR")]
    data_dir: PathBuf,
    /// The cluster's topic.
    #[arg(long, env = "EC_TOPIC")]
    topic: String,
    #[command(flatten)]
    kafka: kafka_args::KafkaArgs,
    /// Blocks a reorg can reach back; deeper reverts are refused.
    #[arg(long, env = "EC_UNDO_WINDOW", default_value_t = DEFAULT_UNDO_WINDOW)]
    undo_window: u64,
    /// Keep account and storage history for the newest K blocks only, pruning older history as blocks arrive
    /// (the disk stops growing with state history; block bodies, receipts and logs are all kept). State
    /// reads older than the window answer "historical state unavailable". At least --undo-window. Default:
    /// keep all history.
    #[arg(long, env = "EC_HISTORY_BLOCKS")]
    history_blocks: Option<u64>,
    /// fsync every write batch (only needed against power loss; Kafka replays what is lost otherwise).
    #[arg(long, env = "EC_SYNC_WRITES")]
    sync_writes: bool,
    /// Write what the replica catches up at start-up without RocksDB's write-ahead log (with atomic flushes
    /// and 256 MiB memtables); a crash then loses what was caught up since the last flush of the memtables
    /// (at most --catch-up-flush-secs), which is replayed from Kafka. Once caught up, every record goes
    /// through the log. 10-14% faster catching up on a small state, no faster on a large one
    /// (docs/benchmarks.md).
    #[arg(long, env = "EC_CATCH_UP_WITHOUT_WAL")]
    catch_up_without_wal: bool,
    /// Catching up without the write-ahead log, flush the memtables at least this often (seconds).
    #[arg(long, env = "EC_CATCH_UP_FLUSH_SECS", default_value_t = ec_store::DEFAULT_CATCH_UP_FLUSH_INTERVAL.as_secs_f64())]
    catch_up_flush_secs: f64,
    /// RocksDB block cache in MiB, shared by every table (data, index and filter blocks). The OS page cache
    /// holds more of the database on top of it: about a third of the instance's memory is a good start.
    #[arg(long, env = "EC_BLOCK_CACHE_MB", default_value_t = 512)]
    block_cache_mb: usize,
    /// Compare every value a block record says it replaces with this replica's own, and stop at the first
    /// difference (a publisher or replica gone wrong). Costs one read per changed account and slot; off,
    /// applying a block reads nothing per key.
    #[arg(long, env = "EC_VERIFY_PRIORS")]
    verify_priors: bool,
    /// Keep the state trie and check every block's state root against its header (`on`): a record that
    /// leaves out or misstates a change stops the replica (exit 3) before it is applied, and
    /// `eth_getProof` is served. `off` applies faster and proves nothing; the trie is rebuilt (once) when it
    /// is turned back on.
    #[arg(long, env = "EC_STATE_TRIE", default_value = "on", value_parser = ["on", "off"])]
    state_trie: String,
    /// Blocks of at least this many writes are written by a thread of their own while the next record is
    /// decoded and prepared; smaller ones in place (the hand-over costs more than it saves on them). 0 hands
    /// every record over (the tests do, to exercise it).
    #[arg(long, env = "EC_PIPELINE_FROM_WRITES", default_value_t = ec_store::HAND_OVER_FROM)]
    pipeline_from_writes: usize,
    /// Exit with status 0 once caught up with the topic, instead of following it.
    #[arg(long)]
    exit_when_caught_up: bool,
    /// Ethereum JSON-RPC (HTTP and websocket), opened once the replica has caught up (e.g. 0.0.0.0:8545).
    #[arg(long, env = "EC_RPC_ADDR")]
    rpc_addr: Option<std::net::SocketAddr>,
    /// Widest block range eth_getLogs serves.
    #[arg(long, env = "EC_MAX_LOG_BLOCK_RANGE", default_value_t = 10_000)]
    max_log_block_range: u64,
    /// Most logs one eth_getLogs answer holds.
    #[arg(long, env = "EC_MAX_LOGS", default_value_t = 10_000)]
    max_logs: usize,
    /// Most gas one eth_call / eth_estimateGas may spend.
    #[arg(long, env = "EC_RPC_GAS_CAP", default_value_t = 50_000_000)]
    rpc_gas_cap: u64,
    /// Longest one eth_call / eth_estimateGas may run, in seconds.
    #[arg(long, env = "EC_RPC_CALL_TIMEOUT_SECS", default_value_t = 5.0)]
    rpc_call_timeout_secs: f64,
    /// Worker threads of the JSON-RPC server's own runtime, apart from replay and /health (cheap reads run on
    /// them). Default: one per core.
    #[arg(long, env = "EC_RPC_THREADS")]
    rpc_threads: Option<usize>,
    /// eth_getLogs requests that run at once. Default: 1 per core.
    #[arg(long, env = "EC_RPC_LOGS_CONCURRENCY")]
    rpc_logs_concurrency: Option<usize>,
    /// eth_call / eth_estimateGas / eth_createAccessList requests that run at once. Default: 1 per core.
    #[arg(long, env = "EC_RPC_EVM_CONCURRENCY")]
    rpc_evm_concurrency: Option<usize>,
    /// debug_trace* and trace_* requests that re-execute at once (each on a blocking thread). Default: half
    /// the cores.
    #[arg(long, env = "EC_RPC_TRACE_CONCURRENCY")]
    rpc_trace_concurrency: Option<usize>,
    /// Longest one trace may run, in seconds (geth's `timeout` tracer option may ask for less).
    #[arg(long, env = "EC_RPC_TRACE_TIMEOUT_SECS", default_value_t = 5.0)]
    rpc_trace_timeout_secs: f64,
    /// Largest answer one trace may build, in MB (an unfiltered struct-logger trace of a mainnet block can
    /// take gigabytes); larger traces answer an error that says so.
    #[arg(long, env = "EC_RPC_MAX_TRACE_MB", default_value_t = 60)]
    rpc_max_trace_mb: usize,
    /// Widest block range one trace_filter re-executes (reth's default).
    #[arg(long, env = "EC_RPC_TRACE_FILTER_MAX_BLOCKS", default_value_t = 100)]
    rpc_trace_filter_max_blocks: u64,
    /// How many blocks behind the head `eth_getProof` answers (geth's path scheme keeps 128). The replica
    /// keeps what each of these blocks changed in the trie in memory (within --proof-history-mb), so a
    /// proof there reads the nodes as they were; a block it does not hold (caught up in a group, or before
    /// a restart) is proven by laying its values over every key changed since, which grows with the depth.
    #[arg(long, env = "EC_PROOF_WINDOW", default_value_t = 128)]
    proof_window: u64,
    /// The most memory, in MiB, the trie's recent past for proofs below the head may take (the oldest
    /// blocks go first; 0 keeps none).
    #[arg(long, env = "EC_PROOF_HISTORY_MB", default_value_t = ec_store::DEFAULT_PROOF_HISTORY_BYTES >> 20)]
    proof_history_mb: usize,
    /// How long eth_sendRawTransactionSync waits for the receipt when the request names no timeout.
    #[arg(long, env = "EC_TX_SYNC_TIMEOUT_SECS", default_value_t = 20.0)]
    tx_sync_timeout_secs: f64,
    /// The longest eth_sendRawTransactionSync waits, whatever the request asks; keep it under the load
    /// balancer's idle timeout (120 s in infra/shared.yaml), or the balancer closes the connection first.
    #[arg(long, env = "EC_TX_SYNC_MAX_TIMEOUT_SECS", default_value_t = 60.0)]
    tx_sync_max_timeout_secs: f64,
    #[command(flatten)]
    filters: filters_args::FilterArgs,
    /// Topic for transactions accepted by eth_sendRawTransaction; default `<topic>-tx`, `none` refuses them.
    #[arg(long, env = "EC_TX_TOPIC")]
    tx_topic: Option<String>,
    /// Private HTTP port for /health/live, /health/ready, /metrics and /admin/position (e.g. 0.0.0.0:8081).
    #[arg(long, env = "EC_HEALTH_ADDR")]
    health_addr: Option<std::net::SocketAddr>,
    /// Ready only while at most this many messages behind the topic.
    #[arg(long, env = "EC_MAX_LAG_RECORDS", default_value_t = 50)]
    max_lag_records: i64,
    /// Ready only while a publisher record arrived within this many seconds (heartbeats come every few).
    #[arg(long, env = "EC_MAX_SILENCE_SECS", default_value_t = 30.0)]
    max_silence_secs: f64,
    /// Ready only while the head block is at most this many seconds old (0: no limit). Unset: 60 on the
    /// public networks this build knows, no limit on a chain from a genesis file (its block time is
    /// unknown; set this for any such chain that produces blocks on a schedule).
    #[arg(long, env = "EC_MAX_HEAD_AGE_SECS")]
    max_head_age_secs: Option<f64>,
    /// Seconds the publisher may report trouble (client unreachable, a block failing) before the replica
    /// leaves the balancer. A publisher that reports it stopped makes it leave at once.
    #[arg(long, env = "EC_PUBLISHER_GRACE_SECS", default_value_t = 20.0)]
    publisher_grace_secs: f64,
    /// Most blocks the client's head (as the publisher's heartbeats report it) may be past this replica's
    /// head while it is ready (0: no limit): a publisher falling behind its client takes replicas out.
    #[arg(long, env = "EC_MAX_BEHIND_CLIENT_BLOCKS", default_value_t = 16)]
    max_behind_client_blocks: u64,
    /// Enables `POST /admin/snapshot` on the health port: local snapshots go into this directory.
    #[arg(long, env = "EC_SNAPSHOT_DIR")]
    snapshot_dir: Option<PathBuf>,
    /// Start from this local snapshot when the data directory is empty (ignored once it holds a database).
    #[arg(long, env = "EC_FROM_SNAPSHOT")]
    from_snapshot: Option<PathBuf>,
    /// On SIGTERM: seconds to keep serving with readiness 503, so the load balancer stops routing here
    /// before the RPC port closes (match the balancer's health-check interval × unhealthy threshold).
    #[arg(long, env = "EC_DRAIN_SECS", default_value_t = 5.0)]
    drain_secs: f64,
    /// Seconds between progress lines while replaying.
    #[arg(long, env = "EC_PROGRESS_INTERVAL", default_value_t = 5.0)]
    progress_interval: f64,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,rdkafka=warn".into()),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.command {
        Command::Replica(args) => runtime.block_on(replica_cmd::run(*args)),
        Command::Publisher(args) => {
            let result = runtime.block_on(publisher_cmd::run(args, shutdown_signal()));
            // A Kafka call the stop cut short runs on in a blocking thread until its own timeout (30 s for a
            // commit); the process does not wait for it (see `until_stopped` in the publisher).
            runtime.shutdown_timeout(std::time::Duration::from_secs(1));
            report(result)
        }
        Command::ImportState(args) => report(runtime.block_on(import_cmd::run(args))),
        Command::Checksum { data_dir } => report(checksum(&data_dir)),
        Command::Status { data_dir } => report(status(&data_dir)),
        Command::VerifyBlocks(args) => verify_cmd::run(args),
        Command::VerifyRoot(args) => verify_root_cmd::run(args),
        Command::SynthLog(args) => report(runtime.block_on(synth::run(args))),
        Command::Balancer(args) => report(runtime.block_on(balancer_cmd::run(args, shutdown_signal()))),
        Command::Snapshot(args) => report(runtime.block_on(snapshot_cmd::run(args))),
        Command::Availability(args) => report(availability::run(args)),
        Command::Healthcheck(args) => report(healthcheck::run(args)),
        Command::CreateTopics(args) => report(runtime.block_on(topics_cmd::run(args))),
        Command::AlterTopic(args) => report(runtime.block_on(topics_cmd::alter(args))),
        Command::DeleteTopics(args) => report(runtime.block_on(topics_cmd::delete(args))),
    }
}

fn report(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM (ECS stops tasks with SIGTERM).
pub(crate) async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn checksum(data_dir: &std::path::Path) -> anyhow::Result<()> {
    let store = Store::open_read_only(data_dir)?;
    let sum = store.checksum().with_context(|| format!("reading {}", data_dir.display()))?;
    print!("{sum}");
    print_position(data_dir)
}

fn status(data_dir: &std::path::Path) -> anyhow::Result<()> {
    print_position(data_dir)
}

fn print_position(data_dir: &std::path::Path) -> anyhow::Result<()> {
    match Store::position_and_head(data_dir)? {
        (Some(p), Some(h)) => println!(
            "position sequence {} kafka_offset {} head block {} {}",
            p.sequence, p.kafka_offset, h.number, h.hash
        ),
        _ => println!("position empty"),
    }
    Ok(())
}
