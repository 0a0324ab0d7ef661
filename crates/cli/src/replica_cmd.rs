//! `ether-cattle replica`: the replay, its health endpoint and its JSON-RPC server in one process.
//!
//! [`run`] reads as its steps: configuration from the flags, the database (restored from a snapshot
//! first when asked), the health endpoint, the JSON-RPC server on its own runtime (open once caught up),
//! the staged shutdown, and the replay, whose error decides the exit code.

use std::{process::ExitCode, sync::Arc, time::Duration};

use anyhow::Context;
use ec_replica::{ReplicaConfig, Status};
use ec_store::{Store, StoreOptions};
use tokio::{sync::watch, task::JoinHandle};

use crate::{shutdown_signal, ReplicaArgs};

pub(crate) async fn run(args: ReplicaArgs) -> ExitCode {
    let started = match start(args).await {
        Ok(started) => started,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let Started { cfg, store, status, shutdown, _rpc_runtime } = started;
    match ec_replica::run_with_store(cfg, store, status, shutdown).await {
        Ok(_) => {
            tracing::info!("replica stopped cleanly");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("replica stopped: {e}");
            eprintln!("error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}

/// Everything the replay runs with; the JSON-RPC runtime lives as long as it.
struct Started<S> {
    cfg: ReplicaConfig,
    store: Arc<Store>,
    status: watch::Sender<Status>,
    shutdown: S,
    _rpc_runtime: BackgroundRuntime,
}

/// Every step before the replay: what fails here fails before anything is served.
async fn start(args: ReplicaArgs) -> anyhow::Result<Started<impl std::future::Future<Output = ()>>> {
    let limits = rpc_limits(&args);
    let filters = args.filters.open().await.context("polling filters")?;
    let kafka = args.kafka.clone().connect().await?;
    let cfg = replica_config(&args, kafka);
    if let Some(snapshot) = &args.from_snapshot {
        restore(snapshot, &cfg.data_dir).context("starting from snapshot")?;
    }
    let store = Arc::new(Store::open(&cfg.data_dir, cfg.store.clone()).context("opening the store")?);
    // With JSON-RPC configured, the replica is not ready until its port is open (it opens once caught up).
    let (status, status_rx) =
        watch::channel(Status { rpc_pending: args.rpc_addr.is_some(), ..Status::default() });
    let extra_metrics = ec_replica::health::ExtraMetrics::default();
    serve_health(&args, status_rx, &store, &cfg.topic, extra_metrics.clone());
    let tx_producer = tx_producer(&args, &cfg)?;
    // The JSON-RPC server runs on a runtime of its own: however busy its requests keep its workers, replay
    // and /health (on this runtime) keep theirs.
    let rpc_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.rpc_threads.unwrap_or(ec_rpc::cores()).max(1))
        .thread_name("rpc")
        .enable_all()
        .build()
        .context("the JSON-RPC runtime")?;
    let rpc_runtime = BackgroundRuntime(Some(rpc_runtime));
    let (stop_rpc, stop_rpc_rx) = watch::channel(false);
    let rpc_task = args.rpc_addr.map(|addr| {
        let mut ctx = ec_rpc::Ctx::new(
            store.clone(),
            tx_producer,
            limits,
            Some(status.subscribe()),
            cfg.events.clone(),
        );
        ctx.filters = filters;
        rpc_runtime.spawn(serve_rpc_once_caught_up(addr, ctx, status.clone(), stop_rpc_rx, extra_metrics))
    });
    let drain = Duration::from_secs_f64(args.drain_secs.max(0.0));
    let shutdown = staged_shutdown(status.clone(), drain, stop_rpc, rpc_task);
    Ok(Started { cfg, store, status, shutdown, _rpc_runtime: rpc_runtime })
}

fn replica_config(args: &ReplicaArgs, kafka: ec_kafka::KafkaConfig) -> ReplicaConfig {
    ReplicaConfig {
        data_dir: args.data_dir.clone(),
        kafka,
        topic: args.topic.clone(),
        store: StoreOptions {
            undo_window: args.undo_window,
            sync_writes: args.sync_writes,
            history_blocks: args.history_blocks,
            verify_priors: args.verify_priors,
            state_trie: if args.state_trie == "off" {
                ec_store::TrieMode::Off
            } else {
                ec_store::TrieMode::Check
            },
            tuning: ec_store::Tuning {
                memtable_bytes: if args.catch_up_without_wal {
                    ec_store::CATCH_UP_WITHOUT_WAL_MEMTABLE_BYTES
                } else {
                    ec_store::Tuning::replica(0).memtable_bytes
                },
                ..ec_store::Tuning::replica(args.block_cache_mb << 20)
            },
            catch_up_wal: !args.catch_up_without_wal,
            catch_up_flush_interval: Duration::from_secs_f64(args.catch_up_flush_secs.max(0.0)),
            proof_history_blocks: args.proof_window,
            proof_history_bytes: args.proof_history_mb << 20,
        },
        exit_when_caught_up: args.exit_when_caught_up,
        progress_interval: Duration::from_secs_f64(args.progress_interval.max(0.1)),
        events: Some(tokio::sync::broadcast::channel(1024).0),
        pipeline_from_writes: args.pipeline_from_writes,
    }
}

/// `--from-snapshot`: the data directory created from a local snapshot, unless it already holds a database.
fn restore(snapshot: &std::path::Path, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if ec_replica::snapshot::restore(snapshot, data_dir)? {
        tracing::info!(snapshot = %snapshot.display(), "data directory created from the snapshot");
    } else {
        tracing::info!("data directory already holds a database; --from-snapshot ignored");
    }
    Ok(())
}

/// `--health-addr`: readiness, metrics and local snapshots, bound before the replay starts, so the load
/// balancer sees "not ready" (503), not "down".
fn serve_health(
    args: &ReplicaArgs,
    status: watch::Receiver<Status>,
    store: &Arc<Store>,
    topic: &str,
    extra_metrics: ec_replica::health::ExtraMetrics,
) {
    let Some(addr) = args.health_addr else { return };
    let readiness = ec_replica::readiness::ReadinessConfig {
        max_lag_records: args.max_lag_records,
        max_silence: Duration::from_secs_f64(args.max_silence_secs.max(0.0)),
        max_head_age: args.max_head_age_secs.map(|s| Duration::from_secs_f64(s.max(0.0))),
        publisher_grace: Duration::from_secs_f64(args.publisher_grace_secs.max(0.0)),
        max_behind_client_blocks: args.max_behind_client_blocks,
    };
    let snapshots = args.snapshot_dir.clone().map(|dir| {
        Arc::new(ec_replica::snapshot::LocalSnapshots { store: store.clone(), dir, topic: topic.to_owned() })
    });
    let router = ec_replica::health::router(status, readiness, topic.to_owned(), extra_metrics, snapshots);
    tokio::spawn(async move {
        if let Err(e) = ec_replica::health::serve(addr, router).await {
            tracing::error!(%addr, error = %e, "health endpoint failed");
        }
    });
}

/// `--tx-topic`: where `eth_sendRawTransaction` forwards to (`<topic>-tx` by default, `none` for nowhere).
fn tx_producer(args: &ReplicaArgs, cfg: &ReplicaConfig) -> anyhow::Result<Option<ec_kafka::TxProducer>> {
    match args.tx_topic.as_deref() {
        Some("none") => Ok(None),
        other => {
            let topic = other.map_or_else(|| format!("{}-tx", cfg.topic), str::to_owned);
            let producer = ec_kafka::TxProducer::new(&cfg.kafka, &topic)
                .with_context(|| format!("transaction topic {topic}"))?;
            Ok(Some(producer))
        }
    }
}

/// JSON-RPC, opened only once the replica has replayed its backlog (never serve a stale snapshot's state),
/// closed when `stop` turns true, after the requests in flight finish.
async fn serve_rpc_once_caught_up(
    addr: std::net::SocketAddr,
    ctx: ec_rpc::Ctx,
    status: watch::Sender<Status>,
    mut stop: watch::Receiver<bool>,
    extra_metrics: ec_replica::health::ExtraMetrics,
) {
    let mut caught_up = status.subscribe();
    // (`wait_for` hands back a read guard; the inner async blocks drop it so the task stays `Send`.)
    tokio::select! {
        r = caught_up.wait_for(|s| s.caught_up) => if r.is_err() { return },
        _ = async { let _ = stop.wait_for(|s| *s).await; } => return,
    }
    let store = ctx.store.clone();
    match ec_rpc::serve(addr, ctx).await {
        Ok((handle, rpc_metrics)) => {
            let _ = extra_metrics.set(Box::new(move || {
                rpc_metrics.render() + &ec_rpc::metrics::proof_history(store.trie_history())
            }));
            status.send_modify(|s| s.rpc_pending = false);
            tracing::info!(%addr, "JSON-RPC open");
            tokio::select! {
                _ = handle.clone().stopped() => {}
                _ = async { let _ = stop.wait_for(|s| *s).await; } => {
                    let _ = handle.stop();
                    handle.stopped().await;
                    tracing::info!(%addr, "JSON-RPC closed; in-flight requests finished");
                }
            }
        }
        Err(e) => tracing::error!(%addr, error = %e, "JSON-RPC server failed"),
    }
}

/// Stopping (SIGTERM from ECS/ASG, or Ctrl-C) is staged so that no request is cut off: readiness turns 503
/// at once, RPC keeps serving for `drain` while the balancer takes the replica out, then the RPC server
/// stops accepting and finishes what is in flight, and only then does the future resolve, so that replay
/// stops and the database closes (RocksDB flushes on close; the WAL would replay anything unflushed anyway).
async fn staged_shutdown(
    status: watch::Sender<Status>,
    drain: Duration,
    stop_rpc: watch::Sender<bool>,
    rpc_task: Option<JoinHandle<()>>,
) {
    shutdown_signal().await;
    status.send_modify(|s| s.draining = true);
    tracing::info!(
        drain_secs = drain.as_secs_f64(),
        "stopping: readiness is 503; still serving while draining"
    );
    tokio::time::sleep(drain).await;
    let _ = stop_rpc.send(true);
    if let Some(task) = rpc_task {
        if tokio::time::timeout(Duration::from_secs(30), task).await.is_err() {
            tracing::warn!("in-flight RPC requests did not finish within 30 s; stopping anyway");
        }
    }
}

/// A runtime dropped without waiting for its tasks (dropping one inside an async context would panic).
struct BackgroundRuntime(Option<tokio::runtime::Runtime>);

impl std::ops::Deref for BackgroundRuntime {
    type Target = tokio::runtime::Runtime;
    fn deref(&self) -> &Self::Target {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for BackgroundRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// The JSON-RPC limits from the flags; unset pool sizes take the library's defaults (per core), written once
/// in `ec_rpc::Limits::default`.
fn rpc_limits(args: &ReplicaArgs) -> ec_rpc::Limits {
    let defaults = ec_rpc::Limits::default();
    ec_rpc::Limits {
        max_log_block_range: args.max_log_block_range,
        max_logs: args.max_logs,
        gas_cap: args.rpc_gas_cap,
        call_timeout: Duration::from_secs_f64(args.rpc_call_timeout_secs.max(0.01)),
        logs_concurrency: args.rpc_logs_concurrency.unwrap_or(defaults.logs_concurrency),
        evm_concurrency: args.rpc_evm_concurrency.unwrap_or(defaults.evm_concurrency),
        trace_concurrency: args.rpc_trace_concurrency.unwrap_or(defaults.trace_concurrency),
        trace_timeout: Duration::from_secs_f64(args.rpc_trace_timeout_secs.max(0.01)),
        max_trace_bytes: args.rpc_max_trace_mb.max(1) << 20,
        max_trace_filter_blocks: args.rpc_trace_filter_max_blocks.max(1),
        proof_window: args.proof_window,
        tx_sync_default_timeout: Duration::from_secs_f64(args.tx_sync_timeout_secs.max(0.0)),
        tx_sync_max_timeout: Duration::from_secs_f64(args.tx_sync_max_timeout_secs.max(0.0)),
    }
}
