//! The publisher's main loop: follow the client's canonical chain and write it to the log, one record at a
//! time, each acknowledged by Kafka before the next is written.
//!
//! Order of every step matters for crash safety: the topic is the only state. On start the publisher reads
//! the topic's tail ([`crate::tail`]) to learn the next sequence and the recent chain; a crash between any
//! two writes therefore resumes exactly after the last acknowledged record (a record written but not
//! acknowledged is written again with the same sequence, which replicas skip).

use std::{
    path::PathBuf,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ec_kafka::{KafkaConfig, LogProducer};
use ec_log::{encode_record, BlockRef, EncodeOptions, Heartbeat, Record, Revert};
use thiserror::Error;
use tracing::{error, info, warn};

use crate::{
    fetch::{fetch_block, FetchError, TraceMode},
    genesis::{self, GenesisError},
    metrics::Metrics,
    rpc::{BlockId, RpcClient, RpcError},
    tail::{self, Published, TailError},
    wake::Wake,
};

#[derive(Debug, Clone)]
pub struct PublisherConfig {
    pub rpc_url: String,
    /// Websocket endpoint for `newHeads`; `None` polls only.
    pub ws_url: Option<String>,
    pub kafka: KafkaConfig,
    pub topic: String,
    pub cluster_id: String,
    /// The chain's genesis file: its state starts a new cluster (empty topic), its `config` is the chain's
    /// fork schedule. Needed on every start for a chain that is not a network the binary knows (blocks past
    /// a fork this binary does not implement are refused).
    pub genesis: Option<PathBuf>,
    /// `None`: detect at start-up.
    pub trace_mode: Option<TraceMode>,
    pub heartbeat_interval: Duration,
    pub poll_interval: Duration,
    /// Deepest reorg handled; deeper stops the publisher.
    pub reorg_window: u64,
    /// Messages read back from the topic's end at start-up.
    pub tail_messages: i64,
    pub encode: EncodeOptions,
}

#[derive(Debug, Error)]
pub enum PublisherError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error(transparent)]
    Genesis(#[from] GenesisError),
    #[error(transparent)]
    Tail(#[from] TailError),
    #[error(transparent)]
    Kafka(#[from] ec_kafka::KafkaIoError),
    #[error("encoding record {sequence}: {source}")]
    Encode { sequence: u64, source: ec_log::LogError },
    #[error("the Kafka producer failed for good while writing record {sequence} ({reason}); restart the publisher")]
    KafkaFatal { sequence: u64, reason: String },
    #[error("topic {0} is empty: a new cluster needs --genesis")]
    NeedGenesis(String),
    #[error(
        "the client serves neither prestateTracer diffMode nor trace_replayBlockTransactions stateDiff: {0}"
    )]
    NoTracer(String),
    #[error(
        "reorg deeper than the window: the log's block {number} ({hash}) is not on the client's chain and the \
         publisher knows no older block within {window} blocks to return to"
    )]
    ReorgTooDeep { number: u64, hash: alloy_primitives::B256, window: u64 },
    #[error("the client's genesis block {client} differs from the log's {log}")]
    GenesisChanged { log: alloy_primitives::B256, client: alloy_primitives::B256 },
    #[error(
        "chain {0} is not a network this binary knows: pass --genesis (the chain's genesis file) so the \
         publisher knows its fork schedule"
    )]
    NeedChainSpec(u64),
    #[error("block {number} is not published: {source}")]
    UnsupportedFork { number: u64, source: ec_chainspec::SpecError },
}

/// See [`Publisher::compare_chains`].
enum Chains {
    Same,
    ClientBehind,
    Diverged,
}

impl PublisherError {
    /// Errors worth retrying: the client's answers (transport, remote errors, a block that changed under
    /// the fetch). The rest (Kafka fatal, a reorg too deep, a changed genesis, a header that does not hash to
    /// its hash) need an operator.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            PublisherError::Rpc(_)
                | PublisherError::Fetch(
                    FetchError::Rpc(_) | FetchError::Inconsistent { .. } | FetchError::Trace { .. }
                )
        )
    }
}

pub struct Publisher {
    cfg: PublisherConfig,
    rpc: Arc<RpcClient>,
    producer: LogProducer,
    published: Published,
    /// Configured, or probed on the first block after genesis (a client cannot trace genesis: geth answers
    /// "genesis is not traceable", and a fresh dev chain has no other block yet).
    mode: Option<TraceMode>,
    /// The chain's rules: a block at or past a fork this binary cannot run stops the publisher.
    spec: ec_chainspec::ChainSpec,
    metrics: Arc<Metrics>,
    last_heartbeat: Instant,
}

impl Publisher {
    /// Connects, detects the trace mode, and recovers the position from the topic (writing genesis for a new
    /// cluster).
    pub async fn start(cfg: PublisherConfig, metrics: Arc<Metrics>) -> Result<Self, PublisherError> {
        let rpc = Arc::new(RpcClient::new(&cfg.rpc_url, Duration::from_secs(300))?);
        let head = rpc.block_number().await?;
        let mode = match cfg.trace_mode {
            Some(m) => Some(m),
            None if head > 0 => Some(detect_trace_mode(&rpc, head).await?),
            None => None,
        };
        info!(?mode, client = %cfg.rpc_url, "publisher connected");
        let genesis_file = cfg.genesis.as_deref().map(genesis::load).transpose()?;
        let spec = match &genesis_file {
            Some(file) => genesis::chain_spec(file)?,
            None => {
                let chain_id = rpc.chain_id().await?;
                ec_chainspec::ChainSpec::for_chain_id(chain_id)
                    .ok_or(PublisherError::NeedChainSpec(chain_id))?
            }
        };
        info!(chain = spec.name(), chain_id = spec.chain_id(), "chain specification");
        let producer = LogProducer::new(&cfg.kafka, &cfg.topic, cfg.encode.max_frame_bytes)?;
        let keep = cfg.reorg_window as usize + 1;
        let recovered =
            tail::read_tail(&cfg.kafka, &cfg.topic, &cfg.cluster_id, cfg.tail_messages, keep).await?;
        let mut publisher = Publisher {
            rpc,
            producer,
            published: Published { next_sequence: 0, chain: Default::default() },
            mode,
            spec,
            metrics,
            last_heartbeat: Instant::now(),
            cfg,
        };
        match recovered {
            Some(p) => {
                info!(next_sequence = p.next_sequence, head = ?p.head(), "resuming from the topic's tail");
                publisher.published = p;
            }
            None => {
                let file =
                    genesis_file.ok_or_else(|| PublisherError::NeedGenesis(publisher.cfg.topic.clone()))?;
                let record = genesis::genesis_record(&publisher.rpc, &file, &publisher.spec).await?;
                info!(accounts = record.block.state.len(), hash = %record.block.hash, "new cluster: writing genesis");
                publisher.write(Record::Genesis(record)).await?;
            }
        }
        if let Some(head) = publisher.published.head() {
            publisher.metrics.head_published.store(head.number, Relaxed);
        }
        Ok(publisher)
    }

    pub fn rpc(&self) -> Arc<RpcClient> {
        self.rpc.clone()
    }

    /// The trace mode, probed on `number` the first time a block needs tracing.
    async fn trace_mode(&mut self, number: u64) -> Result<TraceMode, PublisherError> {
        if let Some(mode) = self.mode {
            return Ok(mode);
        }
        let mode = detect_trace_mode(&self.rpc, number).await?;
        info!(?mode, "trace mode detected");
        self.mode = Some(mode);
        Ok(mode)
    }

    /// Follows the client until `shutdown` resolves or an error stops it.
    pub async fn run(
        mut self,
        shutdown: impl std::future::Future<Output = ()>,
    ) -> Result<(), PublisherError> {
        let mut wake = Wake::new(self.cfg.ws_url.clone(), self.cfg.poll_interval);
        let mut heartbeat = tokio::time::interval(self.cfg.heartbeat_interval);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    info!("publisher stopping");
                    return Ok(());
                }
                _ = heartbeat.tick() => {
                    if self.last_heartbeat.elapsed() >= self.cfg.heartbeat_interval / 2 {
                        self.heartbeat().await?;
                    }
                }
                _ = wake.wait() => {
                    if let Err(e) = self.sync().await {
                        if !e.is_transient() {
                            return Err(e);
                        }
                        // The client hiccuped or changed its chain mid-fetch: the log is untouched; retry.
                        warn!(error = %e, "sync failed; retrying at the next wake-up");
                        tokio::time::sleep(self.cfg.poll_interval).await;
                    }
                }
            }
        }
    }

    /// Publishes every canonical block the log does not have yet, unwinding first if the chain moved away.
    /// Returns (to wait for the next wake-up) when the client has nothing new, is behind the log, or changed
    /// its chain while a block was being fetched.
    pub async fn sync(&mut self) -> Result<(), PublisherError> {
        loop {
            // A long catch-up must not starve replicas of heartbeats (their readiness depends on them).
            if self.last_heartbeat.elapsed() >= self.cfg.heartbeat_interval {
                self.heartbeat().await?;
            }
            let client_head = self.rpc.block_number().await?;
            self.metrics.client_head.store(client_head, Relaxed);
            let ours = self.head();
            match self.compare_chains(client_head).await? {
                Chains::Same if client_head > ours.number => {}
                Chains::Same | Chains::ClientBehind => return Ok(()),
                Chains::Diverged => {
                    self.unwind().await?;
                    continue;
                }
            }
            let next = ours.number + 1;
            let mode = self.trace_mode(next).await?;
            let Some((block, timings)) = fetch_block(&self.rpc, next, mode).await? else {
                return Ok(());
            };
            if block.parent_hash != ours.hash {
                return Ok(()); // the chain moved meanwhile: the next wake-up sees how
            }
            // A fork this binary does not implement: replicas would run the block's calls under old rules.
            self.spec
                .check_supported(block.number, block.timestamp)
                .map_err(|source| PublisherError::UnsupportedFork { number: block.number, source })?;
            // The chain may have moved while the block was traced: publish only what is still canonical.
            match self.rpc.block_hash(BlockId::Number(next)).await? {
                Some((_, hash)) if hash == block.hash => {}
                _ => return Ok(()),
            }
            self.metrics.fetch_micros_total.fetch_add(timings.fetch.as_micros() as u64, Relaxed);
            self.metrics.trace_micros_total.fetch_add(timings.trace.as_micros() as u64, Relaxed);
            self.metrics.last_trace_micros.store(timings.trace.as_micros() as u64, Relaxed);
            self.write(Record::Block(block)).await?;
            self.metrics.blocks_published.fetch_add(1, Relaxed);
            self.metrics.head_published.store(next, Relaxed);
        }
    }

    /// How the client's chain relates to the log's, judged at the highest height both have.
    async fn compare_chains(&self, client_head: u64) -> Result<Chains, PublisherError> {
        let ours = self.head();
        let probe = client_head.min(ours.number);
        let Some(mine) = self.published.chain.iter().rev().find(|b| b.number == probe) else {
            // Older than the blocks the publisher remembers: the client is far behind the log.
            return Ok(Chains::ClientBehind);
        };
        match self.rpc.block_hash(BlockId::Number(probe)).await? {
            Some((_, hash)) if hash == mine.hash && probe == ours.number => Ok(Chains::Same),
            // Same chain, but the client has not reached the log's head (a lagging or restarted node, a
            // failover): wait for it rather than revert good blocks.
            Some((_, hash)) if hash == mine.hash => Ok(Chains::ClientBehind),
            Some(_) => Ok(Chains::Diverged),
            None => Ok(Chains::ClientBehind),
        }
    }
    fn head(&self) -> BlockRef {
        // The log always holds genesis before `run`, so the chain is never empty here; an empty chain would
        // have failed in `start` (TailError::NoBlock).
        self.published.head().unwrap_or(BlockRef { number: 0, hash: Default::default() })
    }

    /// Finds the newest block the log and the client share, then writes reverts for every log block above
    /// it, newest first. Nothing is written unless that block is within the window.
    async fn unwind(&mut self) -> Result<(), PublisherError> {
        self.metrics.reorgs.fetch_add(1, Relaxed);
        let mut fork = None;
        for b in self.published.chain.iter().rev() {
            if let Some((_, hash)) = self.rpc.block_hash(BlockId::Number(b.number)).await? {
                if hash == b.hash {
                    fork = Some(*b);
                    break;
                }
            }
        }
        let head = self.head();
        let Some(fork) = fork else {
            let oldest = self.published.chain.front().copied().unwrap_or(head);
            if oldest.number == 0 {
                let client = self.rpc.block_hash(BlockId::Number(0)).await?.map(|c| c.1).unwrap_or_default();
                return Err(PublisherError::GenesisChanged { log: oldest.hash, client });
            }
            return Err(PublisherError::ReorgTooDeep {
                number: head.number,
                hash: head.hash,
                window: self.cfg.reorg_window,
            });
        };
        let depth = head.number - fork.number;
        while let Some(top) = self.published.head().filter(|t| t.number > fork.number) {
            self.write(Record::Revert(Revert { number: top.number, hash: top.hash })).await?;
            self.metrics.reverts_written.fetch_add(1, Relaxed);
        }
        warn!(depth, new_head = fork.number, "reorg: reverted {depth} block(s)");
        self.metrics.head_published.store(fork.number, Relaxed);
        Ok(())
    }

    async fn heartbeat(&mut self) -> Result<(), PublisherError> {
        let head = self.head();
        // Safe and finalized as the client sees them, if the log already holds those blocks.
        let tag0 =
            |r: Option<(u64, alloy_primitives::B256)>| r.map(|(number, hash)| BlockRef { number, hash });
        // Only tags that name a block the log holds (or older than what the publisher remembers).
        let chain = &self.published.chain;
        let oldest = chain.front().map_or(0, |b| b.number);
        let tag = |r: Option<BlockRef>| {
            r.filter(|t| t.number < oldest || chain.iter().any(|b| b.number == t.number && b.hash == t.hash))
        };
        let safe = tag(tag0(self.rpc.block_hash(BlockId::Safe).await.unwrap_or(None)));
        let finalized = tag(tag0(self.rpc.block_hash(BlockId::Finalized).await.unwrap_or(None)));
        let time_ms = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        self.write(Record::Heartbeat(Heartbeat { time_ms, head, safe, finalized })).await?;
        self.metrics.heartbeats_written.fetch_add(1, Relaxed);
        Ok(())
    }

    /// Writes one record and waits for Kafka to acknowledge it. While Kafka refuses, retries the same record
    /// (same sequence) and goes no further: nothing is ever skipped.
    async fn write(&mut self, record: Record) -> Result<(), PublisherError> {
        let sequence = self.published.next_sequence;
        let frames = encode_record(&self.cfg.cluster_id, sequence, &record, self.cfg.encode)
            .map_err(|source| PublisherError::Encode { sequence, source })?;
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.producer.send_frames(sequence, &frames).await {
                Ok(_) => break,
                Err(e) => {
                    self.metrics.produce_failures.fetch_add(1, Relaxed);
                    if let Some(fatal) = self.producer.fatal_error() {
                        // Retrying cannot help; a restart resumes from the topic's tail with nothing lost.
                        return Err(PublisherError::KafkaFatal { sequence, reason: fatal });
                    }
                    error!(sequence, error = %e, "Kafka refuses the record; retrying it, publishing nothing else meanwhile");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.metrics.produce_micros_total.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        self.metrics.records_written.fetch_add(1, Relaxed);
        self.metrics.bytes_written.fetch_add(frames.iter().map(|f| f.len() as u64).sum(), Relaxed);
        self.published.follow(sequence, &record, self.cfg.reorg_window as usize + 1);
        if matches!(record, Record::Heartbeat(_)) {
            self.last_heartbeat = Instant::now();
        }
        Ok(())
    }
}

/// Prefers the prestate tracer: on clients that serve both, parity's stateDiff cannot express a deleted
/// account (anvil omits it), while prestate diffs show deletions as absence from `post`.
async fn detect_trace_mode(rpc: &RpcClient, head: u64) -> Result<TraceMode, PublisherError> {
    let prestate = rpc.prestate_diff(head).await;
    if prestate.is_ok() {
        return Ok(TraceMode::Prestate);
    }
    match rpc.state_diff(head).await {
        Ok(_) => Ok(TraceMode::StateDiff),
        Err(e) => Err(PublisherError::NoTracer(format!(
            "prestate: {}; stateDiff: {e}",
            prestate.err().map(|e| e.to_string()).unwrap_or_default()
        ))),
    }
}
