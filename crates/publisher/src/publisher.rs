//! The publisher's main loop: follow the client's canonical chain and write it to the log.
//!
//! Order of every step matters for crash safety: the topic is the only state. On start the publisher
//! registers as the cluster's only writer (a Kafka transactional producer whose id is the cluster id: that
//! fences any older publisher and aborts what it left open), then reads the topic's tail ([`crate::tail`])
//! to learn the next sequence and the recent chain. Records are written in transactions, committed before
//! the publisher goes on; a crash between any two commits therefore resumes exactly after the last committed
//! record, and replicas (which read committed records only) never see a half-written one.
//!
//! Blocks are fetched and traced up to `pipeline_depth` ahead, concurrently, and published strictly in
//! order, one transaction per run of blocks, after checking the newest is still canonical.

use std::{
    path::PathBuf,
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use ec_kafka::{KafkaConfig, LogProducer};
use ec_log::{encode_record, BlockRef, ClientHead, EncodeOptions, Heartbeat, PublisherState, Record, Revert};
use futures_util::StreamExt;
use thiserror::Error;
use tracing::{error, info, warn};

use crate::{
    fetch::{fetch_block, FetchError, FetchOptions, TraceMode},
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
    /// Start a new cluster (empty topic) at this block of the client, with a checkpoint record, instead of
    /// genesis. The replicas' databases are imported at the same block (`ether-cattle import-state`).
    pub start_block: Option<u64>,
    /// Accept a start block the client does not report finalized (devnets, tests).
    pub allow_unfinalized_start: bool,
    /// `None`: detect at start-up.
    pub trace_mode: Option<TraceMode>,
    pub heartbeat_interval: Duration,
    pub poll_interval: Duration,
    /// Deepest reorg handled; deeper stops the publisher.
    pub reorg_window: u64,
    /// Messages read back from the topic's end at start-up.
    pub tail_messages: i64,
    pub encode: EncodeOptions,
    /// Wait, before taking over, until the topic has been silent for `takeover_after` (the active
    /// publisher is gone). Without it the publisher takes over at once, fencing any active one.
    pub standby: bool,
    pub takeover_after: Duration,
    /// Blocks fetched and traced concurrently ahead of the one being published (1: one after another).
    pub pipeline_depth: usize,
    /// Fraction of each block's changed accounts checked against `eth_getProof` before the block is
    /// written (0: off; 1: all).
    pub verify_rate: f64,
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
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    #[error(transparent)]
    Kafka(#[from] ec_kafka::KafkaIoError),
    #[error("encoding record {sequence}: {source}")]
    Encode { sequence: u64, source: ec_log::LogError },
    #[error("the Kafka producer failed for good while writing record {sequence} ({reason}); restart the publisher")]
    KafkaFatal { sequence: u64, reason: String },
    #[error(
        "another publisher of cluster {cluster} took over the log (this one is fenced: {reason}); nothing more \
         is written by this process. Run publishers with --standby so that a restarted one waits"
    )]
    Fenced { cluster: String, reason: String },
    #[error("topic {0} is empty: a new cluster needs --genesis (start at block 0) or --start-block N (start at a checkpoint)")]
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
    #[error(
        "the client's chain no longer holds block {number} ({hash}), the checkpoint this log starts at: a \
         checkpoint cannot be reverted. Start a new cluster at a finalized block"
    )]
    CheckpointReorged { number: u64, hash: alloy_primitives::B256 },
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
    ///
    /// An answer that does not decode (an unknown transaction type, a client that changed its format) is not
    /// transient: the same answer comes back on every retry, so the publisher stops and says so.
    ///
    /// A proof that does not verify against the block's own state root says nothing about the record, only
    /// that the client answered for another state: retried, like any answer inconsistent with the block (anvil
    /// 1.7.1 once answered a proof at a block, asked by hash, for another state while the publisher caught up
    /// 8 blocks at a time). A verified proof that differs from the record stops the publisher.
    pub fn is_transient(&self) -> bool {
        match self {
            PublisherError::Rpc(e) | PublisherError::Fetch(FetchError::Rpc(e)) => {
                !matches!(e, RpcError::Decode { .. })
            }
            PublisherError::Fetch(FetchError::Inconsistent { .. } | FetchError::Trace { .. }) => true,
            PublisherError::Fetch(FetchError::StateMismatch {
                mismatch: crate::verify::Mismatch::BadProof { .. },
                ..
            }) => true,
            _ => false,
        }
    }

    /// The client did not answer at all (as opposed to answering badly).
    fn is_unreachable(&self) -> bool {
        matches!(self, PublisherError::Rpc(e) | PublisherError::Fetch(FetchError::Rpc(e)) if e.is_unreachable())
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
    /// What the heartbeats report.
    state: PublisherState,
    client_head: Option<ClientHead>,
    /// The safe and finalized blocks the last heartbeat reported, reported again while the client is too
    /// slow to say (see [`Publisher::heartbeat`]).
    tags: (Option<BlockRef>, Option<BlockRef>),
    /// Blocks or reverts were written since the last heartbeat.
    unannounced: bool,
}

impl Publisher {
    /// Connects, detects the trace mode, and recovers the position from the topic (writing genesis for a new
    /// cluster).
    pub async fn start(cfg: PublisherConfig, metrics: Arc<Metrics>) -> Result<Self, PublisherError> {
        let rpc = Arc::new(RpcClient::new(&cfg.rpc_url, Duration::from_secs(300))?);
        let head = until_reachable("eth_blockNumber", || rpc.block_number()).await?;
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
                let chain_id = until_reachable("eth_chainId", || rpc.chain_id()).await?;
                ec_chainspec::ChainSpec::for_chain_id(chain_id)
                    .ok_or(PublisherError::NeedChainSpec(chain_id))?
            }
        };
        info!(chain = spec.name(), chain_id = spec.chain_id(), "chain specification");
        if cfg.standby {
            tail::wait_for_silence(&cfg.kafka, &cfg.topic, cfg.takeover_after).await?;
        }
        // Fences every older publisher of this cluster and aborts its open transaction; only then is the
        // tail final (nothing can be appended behind it).
        let producer = register(&cfg).await;
        info!(cluster = %cfg.cluster_id, "registered as the cluster's only writer");
        let keep = cfg.reorg_window as usize + 1;
        let recovered =
            tail::read_tail(&cfg.kafka, &cfg.topic, &cfg.cluster_id, cfg.tail_messages, keep).await?;
        let mut publisher = Publisher {
            rpc,
            producer,
            published: Published::default(),
            mode,
            spec,
            metrics,
            last_heartbeat: Instant::now(),
            state: PublisherState::Following,
            client_head: None,
            tags: (None, None),
            unannounced: true,
            cfg,
        };
        match recovered {
            Some(p) => {
                info!(next_sequence = p.next_sequence, head = ?p.head(), "resuming from the topic's tail");
                publisher.published = p;
            }
            None if publisher.cfg.start_block.is_some_and(|n| n > 0) => {
                let number = publisher.cfg.start_block.unwrap_or_default();
                let record = crate::checkpoint::checkpoint_record(
                    &publisher.rpc,
                    &publisher.spec,
                    number,
                    publisher.cfg.allow_unfinalized_start,
                )
                .await?;
                info!(number, hash = %record.block.hash, "new cluster: writing the checkpoint");
                publisher.write(vec![Record::Checkpoint(record)]).await?;
            }
            None => {
                let file =
                    genesis_file.ok_or_else(|| PublisherError::NeedGenesis(publisher.cfg.topic.clone()))?;
                let record = genesis::genesis_record(&publisher.rpc, &file, &publisher.spec).await?;
                info!(accounts = record.block.state.len(), hash = %record.block.hash, "new cluster: writing genesis");
                publisher.write(vec![Record::Genesis(record)]).await?;
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
        // The first heartbeat waits for the first sync: a publisher restarted into the same failure must
        // not report itself following in between.
        heartbeat.tick().await;
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => {
                    info!("publisher stopping");
                    return Ok(());
                }
                _ = heartbeat.tick() => {
                    if self.last_heartbeat.elapsed() >= self.cfg.heartbeat_interval / 2 {
                        let Some(written) = until_stopped(self.heartbeat(), &mut shutdown).await else {
                            return Ok(());
                        };
                        written?;
                    }
                }
                _ = wake.wait() => {
                    let Some(synced) = until_stopped(self.sync(), &mut shutdown).await else { return Ok(()) };
                    match synced {
                        Ok(()) => {
                            self.set_state(PublisherState::Following);
                            // Caught up with new blocks: tell replicas at once where safe and finalized
                            // are now, rather than at the next tick (they would answer null meanwhile).
                            if self.unannounced {
                                self.heartbeat().await?;
                            }
                        }
                        Err(e) if e.is_transient() => {
                            // The client hiccuped or changed its chain mid-fetch: the log is untouched; retry.
                            // The heartbeats say so meanwhile, and replicas leave the balancer if it lasts.
                            warn!(error = %e, "sync failed; retrying at the next wake-up");
                            self.note_trouble(&e);
                            tokio::time::sleep(self.cfg.poll_interval).await;
                        }
                        Err(e) => {
                            error!(error = %e, "stopping: this error needs an operator");
                            self.set_state(PublisherState::Stopped { error: e.to_string() });
                            // Best effort: replicas learn why at once instead of after their silence limit.
                            if !matches!(e, PublisherError::Fenced { .. } | PublisherError::KafkaFatal { .. }) {
                                if let Err(hb) = self.heartbeat().await {
                                    warn!(error = %hb, "the last heartbeat (stopped) could not be written");
                                }
                            }
                            return Err(e);
                        }
                    }
                }
            }
        }
    }

    fn set_state(&mut self, state: PublisherState) {
        if state != self.state {
            info!(state = %state.describe(), "publisher state");
        }
        self.metrics.state.store(state.code() as u64, Relaxed);
        self.state = state;
    }

    /// A transient failure: the client is unreachable, or the next block keeps failing. The trouble's start
    /// is kept while the same trouble lasts.
    fn note_trouble(&mut self, e: &PublisherError) {
        let now = now_ms();
        let error = e.to_string();
        let state = if e.is_unreachable() {
            let since_ms = match &self.state {
                PublisherState::ClientUnreachable { since_ms, .. } => *since_ms,
                _ => now,
            };
            PublisherState::ClientUnreachable { since_ms, error }
        } else {
            let number = self.head().number + 1;
            let since_ms = match &self.state {
                PublisherState::Stuck { number: n, since_ms, .. } if *n == number => *since_ms,
                _ => now,
            };
            PublisherState::Stuck { number, since_ms, error }
        };
        self.set_state(state);
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
            let rpc = self.rpc.clone();
            let client_head = self.beating(async move { rpc.block_number().await }).await??;
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
            let last = client_head.min(ours.number + self.cfg.pipeline_depth.max(1) as u64);
            let (blocks, failed) = self.fetch_run(ours, next, last, mode).await;
            let complete = failed.is_none() && blocks.len() as u64 == last - ours.number;
            if let Some(newest) = blocks.last() {
                // The chain may have moved while the blocks were traced: publish only what is still
                // canonical. The blocks link parent to child, so the newest being canonical covers them all.
                let (rpc, number) = (self.rpc.clone(), newest.number);
                match self.beating(async move { rpc.block_hash(BlockId::Number(number)).await }).await?? {
                    Some((_, hash)) if hash == newest.hash => {}
                    _ => return Ok(()), // the next wake-up sees how it moved
                }
                let count = blocks.len() as u64;
                let newest = newest.number;
                self.write(blocks.into_iter().map(Record::Block).collect()).await?;
                self.metrics.blocks_published.fetch_add(count, Relaxed);
                self.metrics.head_published.store(newest, Relaxed);
            }
            if let Some(e) = failed {
                return Err(e);
            }
            if !complete {
                return Ok(()); // a block vanished or the chain moved meanwhile
            }
        }
    }

    /// Fetches and traces blocks `next..=last` concurrently (at most `pipeline_depth` at once) and returns,
    /// in order, the longest run that links to `ours` parent by parent, with the error that ended it early.
    ///
    /// A slow client must not look like a dead publisher: heartbeats go out on their timer while the run is
    /// fetched, and a run stops taking blocks after a quarter of the takeover time (at least one block),
    /// so a standby waiting for silence never sees any.
    async fn fetch_run(
        &mut self,
        ours: BlockRef,
        next: u64,
        last: u64,
        mode: TraceMode,
    ) -> (Vec<ec_log::Block>, Option<PublisherError>) {
        let opts = FetchOptions { verify_rate: self.cfg.verify_rate };
        let rpc = self.rpc.clone();
        let mut fetches = futures_util::stream::iter(next..=last)
            .map(|n| {
                let rpc = rpc.clone();
                async move { fetch_block(&rpc, n, mode, &opts).await }
            })
            .buffered(self.cfg.pipeline_depth.max(1));
        let budget = (self.cfg.takeover_after / 4).max(self.cfg.heartbeat_interval);
        let deadline = tokio::time::Instant::now() + budget;
        let mut beat = self.heartbeat_timer();
        let mut blocks: Vec<ec_log::Block> = Vec::new();
        let mut parent = ours.hash;
        loop {
            let fetched = tokio::select! {
                fetched = fetches.next() => fetched,
                _ = beat.tick() => {
                    if let Err(e) = self.heartbeat().await {
                        return (blocks, Some(e));
                    }
                    continue;
                }
                _ = tokio::time::sleep_until(deadline), if !blocks.is_empty() => break,
            };
            let Some(fetched) = fetched else { break };
            let (block, timings) = match fetched {
                Ok(Some(found)) => found,
                Ok(None) => break,
                Err(e) => return (blocks, Some(e.into())),
            };
            if block.parent_hash != parent {
                break; // the chain moved meanwhile: the next wake-up sees how
            }
            // A fork this binary does not implement: replicas would run the block's calls under old rules.
            if let Err(source) = self.spec.check_supported(block.number, block.timestamp) {
                return (blocks, Some(PublisherError::UnsupportedFork { number: block.number, source }));
            }
            self.metrics.record_fetch(&timings);
            parent = block.hash;
            blocks.push(block);
        }
        (blocks, None)
    }

    /// A timer for heartbeats during a long step, first due when the next heartbeat is.
    fn heartbeat_timer(&self) -> tokio::time::Interval {
        let every = self.cfg.heartbeat_interval.max(Duration::from_millis(10));
        let due = every.saturating_sub(self.last_heartbeat.elapsed());
        let mut timer = tokio::time::interval_at(tokio::time::Instant::now() + due, every);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer
    }

    /// Awaits `call` (which must not borrow the publisher: the heartbeats need it) while writing heartbeats
    /// on their timer.
    async fn beating<T>(&mut self, call: impl std::future::Future<Output = T>) -> Result<T, PublisherError> {
        tokio::pin!(call);
        let mut beat = self.heartbeat_timer();
        loop {
            tokio::select! {
                answer = &mut call => return Ok(answer),
                _ = beat.tick() => self.heartbeat().await?,
            }
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
            if self.published.checkpoint == Some(oldest) {
                return Err(PublisherError::CheckpointReorged { number: oldest.number, hash: oldest.hash });
            }
            return Err(PublisherError::ReorgTooDeep {
                number: head.number,
                hash: head.hash,
                window: self.cfg.reorg_window,
            });
        };
        let depth = head.number - fork.number;
        while let Some(top) = self.published.head().filter(|t| t.number > fork.number) {
            self.write(vec![Record::Revert(Revert { number: top.number, hash: top.hash })]).await?;
            self.metrics.reverts_written.fetch_add(1, Relaxed);
        }
        warn!(depth, new_head = fork.number, "reorg: reverted {depth} block(s)");
        self.metrics.head_published.store(fork.number, Relaxed);
        Ok(())
    }

    /// Writes a heartbeat: the log's head, the client's head and its safe and finalized blocks, the
    /// publisher's state. The client is asked under a short timeout (a quarter of the heartbeat interval, at
    /// most 2 s): a slow client must not delay the heartbeat that says this publisher is alive. What it did
    /// not answer in time is reported as last known (the client's head number as the sync loop last read
    /// it, with the timestamp of the last head read whole).
    async fn heartbeat(&mut self) -> Result<(), PublisherError> {
        let head = self.head();
        let limit =
            (self.cfg.heartbeat_interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(2));
        match tokio::time::timeout(limit, self.rpc.block_summary(BlockId::Latest)).await {
            Ok(Ok(Some((number, _, timestamp)))) => self.client_head = Some(ClientHead { number, timestamp }),
            Ok(Ok(None)) | Err(_) => {}
            Ok(Err(e)) if e.is_unreachable() && self.state == PublisherState::Following => {
                self.set_state(PublisherState::ClientUnreachable { since_ms: now_ms(), error: e.to_string() })
            }
            Ok(Err(_)) => {}
        }
        // A client too slow for the heartbeat's read still told the sync loop its head: the lag behind the
        // client is what replicas judge readiness by, and a slow client is when it grows.
        let seen = self.metrics.client_head.load(Relaxed);
        if let Some(c) = self.client_head.as_mut().filter(|c| c.number < seen) {
            c.number = seen;
        }
        let tags = async { (self.tag(BlockId::Safe, head).await, self.tag(BlockId::Finalized, head).await) };
        if let Ok(tags) = tokio::time::timeout(limit, tags).await {
            self.tags = tags;
        }
        // Tags last known are kept only while the log still holds them.
        let (safe, finalized) = self.tags;
        let held = |t: Option<BlockRef>| t.filter(|t| self.holds(*t));
        let record = Heartbeat {
            time_ms: now_ms(),
            head,
            safe: held(safe),
            finalized: held(finalized),
            client_head: self.client_head,
            state: self.state.clone(),
            reorg_window: self.cfg.reorg_window,
        };
        self.write(vec![Record::Heartbeat(record)]).await?;
        self.metrics.heartbeats_written.fetch_add(1, Relaxed);
        Ok(())
    }

    /// The client's safe or finalized block, as a block the log holds: the tag itself when the log has it
    /// (or it is older than what the publisher remembers); the log's head when the tag is above it (a
    /// publisher catching up) and the head is on the client's chain, since a block below a safe block of
    /// the same chain is itself safe; else nothing.
    async fn tag(&self, id: BlockId, head: BlockRef) -> Option<BlockRef> {
        let (number, hash) = self.rpc.block_hash(id).await.ok().flatten()?;
        if number > head.number {
            let (_, canonical) = self.rpc.block_hash(BlockId::Number(head.number)).await.ok().flatten()?;
            return (canonical == head.hash).then_some(head);
        }
        let tag = BlockRef { number, hash };
        self.holds(tag).then_some(tag)
    }

    /// Whether `b` is on the log's chain (or older than the blocks the publisher remembers).
    fn holds(&self, b: BlockRef) -> bool {
        let chain = &self.published.chain;
        let oldest = chain.front().map_or(0, |c| c.number);
        b.number < oldest || chain.iter().any(|c| *c == b)
    }

    /// Writes records as one Kafka transaction and waits for its commit. While Kafka refuses, retries the
    /// same records (same sequences, same bytes) and goes no further: nothing is ever skipped. A fenced
    /// producer (another publisher took over) stops the publisher.
    async fn write(&mut self, records: Vec<Record>) -> Result<(), PublisherError> {
        let first = self.published.next_sequence;
        let mut encoded = Vec::with_capacity(records.len());
        for (i, record) in records.iter().enumerate() {
            let sequence = first + i as u64;
            let frames = encode_record(&self.cfg.cluster_id, sequence, record, self.cfg.encode)
                .map_err(|source| PublisherError::Encode { sequence, source })?;
            encoded.push((sequence, frames));
        }
        // What tells this publisher's records from a rival's with the same sequences.
        let crcs: Vec<u32> = encoded
            .iter()
            .map(|(_, frames)| {
                frames.first().and_then(|f| ec_log::Frame::decode(f).ok()).map_or(0, |f| f.header.record_crc)
            })
            .collect();
        let started = Instant::now();
        let mut backoff = Duration::from_millis(200);
        loop {
            match self.producer.send_transaction(&encoded).await {
                Ok(()) => break,
                Err(e) => {
                    self.metrics.produce_failures.fetch_add(1, Relaxed);
                    if let Some(fatal) = self.producer.fatal_error() {
                        if fatal.to_lowercase().contains("fenced") || fatal.contains("InvalidProducerEpoch") {
                            // Kafka says "fenced" both when a rival registered under the cluster's id and
                            // when the coordinator aborted a transaction that outlived its timeout (a broker
                            // outage) and bumped the epoch. A younger transaction was fenced by a rival: stop.
                            // An older one may have been either: the log tells them apart.
                            if started.elapsed() < ec_kafka::transaction_timeout(&self.cfg.kafka) {
                                return Err(PublisherError::Fenced {
                                    cluster: self.cfg.cluster_id.clone(),
                                    reason: fatal,
                                });
                            }
                            self.check_not_taken_over(first, &crcs, fatal.clone()).await?;
                        }
                        // This producer can write nothing more (e.g. a transaction that outlived a broker
                        // outage). A new one, registered under the same id, learns from the topic whether the
                        // records made it: what a restart would do, without the restart.
                        warn!(sequence = first, reason = %fatal, "the Kafka producer failed for good; replacing it");
                        match self.replace_producer(first, &crcs).await? {
                            Replaced::Written => break,
                            Replaced::Retry => continue,
                        }
                    }
                    error!(sequence = first, error = %e, "Kafka refuses the records; retrying them, publishing nothing else meanwhile");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
        self.metrics.produce_micros_total.fetch_add(started.elapsed().as_micros() as u64, Relaxed);
        let bytes: usize = encoded.iter().flat_map(|(_, frames)| frames.iter().map(Vec::len)).sum();
        self.metrics.bytes_written.fetch_add(bytes as u64, Relaxed);
        for (record, (sequence, _)) in records.iter().zip(&encoded) {
            self.metrics.records_written.fetch_add(1, Relaxed);
            self.published.follow(*sequence, record, self.cfg.reorg_window as usize + 1);
            if matches!(record, Record::Heartbeat(_)) {
                self.last_heartbeat = Instant::now();
                self.unannounced = false;
            } else {
                self.unannounced = true;
            }
        }
        Ok(())
    }
}

/// What a replaced producer found in the topic about the records being written.
enum Replaced {
    /// They were committed before the old producer failed.
    Written,
    /// They were not: write them again.
    Retry,
}

impl Publisher {
    /// After a "fenced" error: waits long enough for a rival publisher that took over to have written (it
    /// heartbeats every `--heartbeat-interval-ms`), then reads the log. If it holds other records than this
    /// one was writing, a rival writes it: stop. If not, nobody else is writing, and the error was the
    /// coordinator aborting a timed-out transaction: the caller replaces the producer and goes on.
    async fn check_not_taken_over(
        &mut self,
        first: u64,
        ours: &[u32],
        reason: String,
    ) -> Result<(), PublisherError> {
        let grace = (self.cfg.heartbeat_interval * 3).max(Duration::from_secs(3));
        warn!(sequence = first, %reason, ?grace, "fenced: waiting to see whether another publisher writes the log");
        tokio::time::sleep(grace).await;
        let tail = log_tail(&self.cfg).await?;
        records_in_log(&tail, first, ours)
            .map(|_| ())
            .map_err(|_| PublisherError::Fenced { cluster: self.cfg.cluster_id.clone(), reason })
    }

    /// Replaces a producer that failed for good with a new one of the same transactional id (which fences
    /// the old and aborts its open transaction), retrying while Kafka is unreachable, and learns from the
    /// tail whether the records `first..` (checksums `ours`) were committed. The tail is read before
    /// registering too: registering would fence a rival that took over meanwhile, which must go on instead.
    async fn replace_producer(&mut self, first: u64, ours: &[u32]) -> Result<Replaced, PublisherError> {
        let fenced = |reason| PublisherError::Fenced { cluster: self.cfg.cluster_id.clone(), reason };
        records_in_log(&log_tail(&self.cfg).await?, first, ours).map_err(fenced)?;
        let producer = register(&self.cfg).await;
        let tail = log_tail(&self.cfg).await?;
        self.producer = producer;
        records_in_log(&tail, first, ours).map_err(fenced)
    }
}

/// What the log's committed tail holds: the sequence it continues at (0 for an empty log) and the
/// checksums of its last records.
async fn log_tail(cfg: &PublisherConfig) -> Result<tail::Published, PublisherError> {
    let keep = cfg.reorg_window as usize + 1;
    let tail = tail::read_tail(&cfg.kafka, &cfg.topic, &cfg.cluster_id, cfg.tail_messages, keep).await?;
    Ok(tail.unwrap_or_default())
}

/// Where the records `first..` (checksums `ours`) stand in the log, judged by content: not written (the log
/// continues at `first`), written (it continues right after them and holds these very records), or
/// neither: another writer wrote the log meanwhile, the reason why this one must stop.
fn records_in_log(tail: &tail::Published, first: u64, ours: &[u32]) -> Result<Replaced, String> {
    let next = tail.next_sequence;
    let after = first + ours.len() as u64;
    if next == first {
        return Ok(Replaced::Retry);
    }
    if next != after {
        return Err(format!(
            "the log continues at record {next} while this publisher was writing {first}..{after}"
        ));
    }
    for (i, crc) in ours.iter().enumerate() {
        let sequence = first + i as u64;
        match tail.crcs.get(&sequence) {
            Some(theirs) if theirs == crc => {}
            Some(_) => {
                return Err(format!("record {sequence} in the log is not the one this publisher wrote"))
            }
            None => return Err(format!("record {sequence} is not in the tail read back")),
        }
    }
    Ok(Replaced::Written)
}

/// A transactional producer registered as the cluster's only writer (`init_transactions`), retried while
/// Kafka is unreachable: a standby taking over during a broker outage, or a producer replaced after one, must
/// wait for the broker rather than exit.
async fn register(cfg: &PublisherConfig) -> LogProducer {
    let mut backoff = Duration::from_millis(500);
    loop {
        let attempt = async {
            let p = LogProducer::transactional(
                &cfg.kafka,
                &cfg.topic,
                cfg.encode.max_frame_bytes,
                &cfg.cluster_id,
            )?;
            p.init_transactions().await?;
            Ok::<_, ec_kafka::KafkaIoError>(p)
        };
        match attempt.await {
            Ok(p) => return p,
            Err(e) => {
                error!(error = %e, "cannot register as the cluster's writer yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// `work`, unless `shutdown` resolves first: then `None`, and `work` is dropped where it stands. That is safe
/// at any point, as a crash is: records go to Kafka in transactions, so a transaction cut short is either
/// committed or aborted (by the next publisher's registration at the latest), and a restart learns which from
/// the log's tail. It keeps the stop prompt (ECS sends SIGKILL 30 s after SIGTERM) when the client or Kafka
/// is slow to answer: a commit may wait 30 s for the broker.
async fn until_stopped<T>(
    work: impl std::future::Future<Output = T>,
    shutdown: &mut std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> Option<T> {
    tokio::select! {
        done = work => Some(done),
        _ = shutdown.as_mut() => {
            info!("publisher stopping: the block or heartbeat being written is left to the log's transaction");
            None
        }
    }
}

/// Which state-diff trace the client serves. Prefers the prestate tracer: on clients that serve both,
/// parity's stateDiff cannot express a deleted account (anvil omits it), while prestate diffs show
/// deletions as absence from `post`. A client that cannot be reached (a node restarting under a starting
/// publisher) is waited for: only a client that answers, and refuses both, has neither.
async fn detect_trace_mode(rpc: &RpcClient, head: u64) -> Result<TraceMode, PublisherError> {
    let prestate =
        until_reachable("debug_traceBlockByNumber", || rpc.prestate_diff(BlockId::Number(head))).await;
    if prestate.is_ok() {
        return Ok(TraceMode::Prestate);
    }
    match until_reachable("trace_replayBlockTransactions", || rpc.state_diff(head)).await {
        Ok(_) => Ok(TraceMode::StateDiff),
        Err(e) => Err(PublisherError::NoTracer(format!(
            "prestate: {}; stateDiff: {e}",
            prestate.err().map(|e| e.to_string()).unwrap_or_default()
        ))),
    }
}

/// `call`'s answer once the client can be reached: while it refuses connections (restarting, not up yet),
/// the call is retried with a growing pause (at most 5 s) and a warning, never reported as the client's
/// answer.
async fn until_reachable<T, F, Fut>(method: &str, mut call: F) -> Result<T, RpcError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, RpcError>>,
{
    let mut pause = Duration::from_millis(200);
    loop {
        match call().await {
            Err(e) if e.is_unreachable() => {
                warn!(method, error = %e, retry_in = ?pause, "the execution client cannot be reached; waiting for it");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(5));
            }
            answered => return answered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Which errors the publisher retries: a client's answer that does not fit the block (a proof for another
    /// state among them), not a verified difference from the record.
    #[test]
    fn what_is_retried() {
        use crate::verify::Mismatch;
        use alloy_primitives::{Address, B256};
        let address = Address::repeat_byte(6);
        let mismatch = |mismatch| PublisherError::Fetch(FetchError::StateMismatch { number: 23, mismatch });
        let cases = [
            (
                "a proof of another state",
                mismatch(Mismatch::BadProof { address, root: B256::ZERO, reason: "root".into() }),
                true,
            ),
            (
                "a verified proof that differs from the record",
                mismatch(Mismatch::Differs {
                    address,
                    what: "the balance".into(),
                    record: "1".into(),
                    chain: "2".into(),
                }),
                false,
            ),
            (
                "a block that changed under the fetch",
                PublisherError::Fetch(FetchError::Inconsistent { number: 1, reason: "hash".into() }),
                true,
            ),
        ];
        for (what, error, retried) in cases {
            assert_eq!(error.is_transient(), retried, "{what}");
        }
    }

    fn tail(next: u64, crcs: &[(u64, u32)]) -> tail::Published {
        tail::Published { next_sequence: next, crcs: crcs.iter().copied().collect(), ..Default::default() }
    }

    #[test]
    fn a_failed_write_is_judged_by_the_records_the_log_holds() {
        let ours = [0xa, 0xb];
        let cases: Vec<(&str, tail::Published, Option<bool>)> = vec![
            ("nothing of ours: write again", tail(10, &[(9, 1)]), Some(false)),
            ("ours, committed before the failure", tail(12, &[(10, 0xa), (11, 0xb)]), Some(true)),
            ("a rival wrote as many records as ours", tail(12, &[(10, 0xa), (11, 0xc)]), None),
            ("a rival wrote different records at our sequences", tail(12, &[(10, 0xd), (11, 0xe)]), None),
            ("a rival wrote more", tail(13, &[(10, 0xa), (11, 0xb), (12, 0xf)]), None),
            ("a rival wrote fewer", tail(11, &[(10, 0xa)]), None),
            ("the tail does not reach back to ours", tail(12, &[(11, 0xb)]), None),
        ];
        for (what, t, want) in cases {
            let got = match records_in_log(&t, 10, &ours) {
                Ok(Replaced::Written) => Some(true),
                Ok(Replaced::Retry) => Some(false),
                Err(_) => None,
            };
            assert_eq!(got, want, "{what}");
        }
    }
}
