//! What every namespace shares: the server's state ([`Ctx`]: the store, the limits, the pools, caches), one
//! request's view of the store ([`Req`]), and where work of each cost runs ([`Class`], [`Pools`], the EVM's
//! in-place budget).

use std::sync::Arc;

use alloy_primitives::B256;
use ec_store::{Reads, Store, StoreView};

use crate::{
    block_id::BlockSpec,
    error::{server_error, RpcResult},
    evm, fees,
};

/// The state every method reads.
pub struct Ctx {
    pub store: Arc<Store>,
    /// Where accepted raw transactions go (the cluster's tx topic); `None` refuses `eth_sendRawTransaction`.
    pub tx_producer: Option<ec_kafka::TxProducer>,
    pub limits: Limits,
    /// The replay's progress, for `eth_subscribe("newHeads")`; `None` serves no subscriptions.
    pub status: Option<tokio::sync::watch::Receiver<ec_replica::Status>>,
    /// Blocks applied and reverted, for `eth_subscribe("logs")`.
    pub events: Option<tokio::sync::broadcast::Sender<ec_replica::ChainEvent>>,
    /// The chain's rules, resolved from the genesis record on first use (the store has none before it).
    pub spec: std::sync::OnceLock<Arc<ec_chainspec::ChainSpec>>,
    /// The tip oracle's last answer and the head it was for (geth reuses it for empty blocks).
    pub last_tip: std::sync::Mutex<Option<(B256, u128)>>,
    /// Where store-reading work runs ([`Class`]).
    pub pools: Pools,
    /// Recently read block bodies, decoded.
    pub blocks: BlockCache,
    /// Polling filters (`eth_newFilter` and the rest); `None`: refused.
    pub filters: Option<crate::filters::methods::Filters>,
}

/// The bodies of the blocks read most recently, decoded, by hash. A body is the same for ever under its hash
/// (the canonical checks happen before a body is looked up), and most requests name recent blocks: a
/// transaction or receipt by hash then costs no decode of the whole block (a mainnet body is about 200 KB).
#[derive(Default)]
pub struct BlockCache(std::sync::Mutex<std::collections::VecDeque<Arc<ec_store::tables::StoredBlock>>>);

impl BlockCache {
    const CAPACITY: usize = 64;

    fn get(&self, hash: &B256) -> Option<Arc<ec_store::tables::StoredBlock>> {
        let cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        cache.iter().find(|b| b.hash == *hash).cloned()
    }

    fn insert(&self, block: Arc<ec_store::tables::StoredBlock>) {
        let mut cache = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= Self::CAPACITY {
            cache.pop_front();
        }
        cache.push_back(block);
    }
}

/// What a method costs, which decides where its work runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// A few point reads (state, blocks, transactions, receipts, fees): run in place, on the RPC server's own
    /// async workers. Handing each to a blocking thread halved their throughput (33,000 against 72,000
    /// requests/s, docs/benchmarks.md); the replica runs the server on a runtime of its own
    /// (`--rpc-threads`), so these never hold up replay or `/health`.
    Read,
    /// `eth_getLogs`: index scans over up to `max_log_block_range` blocks.
    Logs,
    /// The EVM: `eth_call`, `eth_estimateGas`, `eth_createAccessList`.
    ///
    /// Both heavy classes first run in place for a short budget (`INLINE_BUDGET`), since most of their
    /// requests are small, and only when that runs out again from the start on their pool.
    Evm,
    /// Re-executions of whole blocks or transactions for traces (`debug_trace*`, each bounded by the trace
    /// deadline and response size cap), and `eth_getProof` below the head (a walk over every key changed
    /// since): always on their own pool.
    Trace,
}

/// Heavy methods (log scans, the EVM) that outrun their short in-place budget run on tokio's blocking
/// threads, never longer than that budget on the async workers that serve connections (and, in the replica,
/// never on the runtime of replay and `/health`), at most `n` at a time per [`Class`]: a flood of heavy
/// requests waits for permits of its own class, while cheap reads, replay and health keep running.
pub struct Pools {
    logs: tokio::sync::Semaphore,
    evm: tokio::sync::Semaphore,
    trace: tokio::sync::Semaphore,
}

impl Pools {
    pub fn new(limits: &Limits) -> Self {
        let permits = |n: usize| tokio::sync::Semaphore::new(n.max(1));
        Self {
            logs: permits(limits.logs_concurrency),
            evm: permits(limits.evm_concurrency),
            trace: permits(limits.trace_concurrency),
        }
    }

    /// The semaphore of a class that runs on blocking threads.
    fn of(&self, class: Class) -> Option<&tokio::sync::Semaphore> {
        match class {
            Class::Read => None,
            Class::Logs => Some(&self.logs),
            Class::Evm => Some(&self.evm),
            Class::Trace => Some(&self.trace),
        }
    }
}

/// Caps that keep one request from costing without bound.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Widest block range `eth_getLogs` serves.
    pub max_log_block_range: u64,
    /// Most logs one `eth_getLogs` answer holds.
    pub max_logs: usize,
    /// Most gas one `eth_call` / `eth_estimateGas` may spend.
    pub gas_cap: u64,
    /// Longest one `eth_call` / `eth_estimateGas` may run.
    pub call_timeout: std::time::Duration,
    /// Heavy requests of each [`Class`] that run at once; the rest wait their turn.
    pub logs_concurrency: usize,
    pub evm_concurrency: usize,
    pub trace_concurrency: usize,
    /// Longest one trace may run (geth's `timeout` option may ask for less, never more).
    pub trace_timeout: std::time::Duration,
    /// Largest answer one trace may build (estimated while it records; the server's response cap is above it).
    pub max_trace_bytes: usize,
    /// Widest block range one `trace_filter` re-executes.
    pub max_trace_filter_blocks: u64,
    /// How far behind the head `eth_getProof` answers (geth's path scheme keeps 128 blocks).
    pub proof_window: u64,
    /// How long `eth_sendRawTransactionSync` waits for a receipt when the request names no timeout, and the
    /// most it waits whatever the request asks (below the load balancer's idle timeout).
    pub tx_sync_default_timeout: std::time::Duration,
    pub tx_sync_max_timeout: std::time::Duration,
}

/// The machine's cores (at least 1).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_log_block_range: 10_000,
            max_logs: 10_000,
            gas_cap: 50_000_000,
            call_timeout: std::time::Duration::from_secs(5),
            // Log scans and the EVM are CPU-bound: one per core, so that together they leave replay a share.
            logs_concurrency: cores(),
            evm_concurrency: cores(),
            // Traces replay whole blocks: half the cores, so that replay and cheap reads keep the rest.
            trace_concurrency: cores().div_ceil(2),
            // geth's default trace timeout.
            trace_timeout: std::time::Duration::from_secs(5),
            max_trace_bytes: 60 << 20,
            // reth's default.
            max_trace_filter_blocks: 100,
            proof_window: 128,
            // geth's defaults; the maximum is half the ALB's idle timeout (120 s in infra/shared.yaml).
            tx_sync_default_timeout: std::time::Duration::from_secs(20),
            tx_sync_max_timeout: std::time::Duration::from_secs(60),
        }
    }
}

impl Ctx {
    pub fn new(
        store: Arc<Store>,
        tx_producer: Option<ec_kafka::TxProducer>,
        limits: Limits,
        status: Option<tokio::sync::watch::Receiver<ec_replica::Status>>,
        events: Option<tokio::sync::broadcast::Sender<ec_replica::ChainEvent>>,
    ) -> Self {
        Ctx {
            store,
            tx_producer,
            limits,
            status,
            events,
            spec: Default::default(),
            last_tip: Default::default(),
            pools: Pools::new(&limits),
            blocks: Default::default(),
            filters: None,
        }
    }

    /// Runs `work` where its class runs: in place, or on a blocking thread once the class has a free
    /// permit ([`Pools`]).
    pub(crate) async fn on_pool<T: Send + 'static>(
        self: &Arc<Self>,
        class: Class,
        work: impl FnOnce(&Req) -> RpcResult<T> + Send + 'static,
    ) -> RpcResult<T> {
        let Some(pool) = self.pools.of(class) else { return work(&Req::new(self)) };
        let _permit = pool.acquire().await.map_err(|_| server_error("the server is stopping"))?;
        let c = self.clone();
        tokio::task::spawn_blocking(move || work(&Req::new(&c)))
            .await
            .map_err(|e| server_error(format!("request failed: {e}")))?
    }

    /// The chain id of the genesis record.
    pub(crate) fn chain_id(&self) -> RpcResult<u64> {
        Ok(self.store.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?.chain_id)
    }

    /// The chain's rules, as the genesis record names them.
    pub(crate) fn chain_spec(&self) -> RpcResult<Arc<ec_chainspec::ChainSpec>> {
        if let Some(spec) = self.spec.get() {
            return Ok(spec.clone());
        }
        let chain =
            self.store.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?;
        let spec = ec_chainspec::ChainSpec::from_source(&chain.spec, chain.chain_id)
            .map_err(|e| server_error(format!("the chain's specification: {e}")))?;
        Ok(self.spec.get_or_init(|| Arc::new(spec)).clone())
    }

    /// The oldest block this replica holds: 0, or the block of the checkpoint its cluster started at. `earliest`
    /// names it; older blocks answer `null`, older state an error.
    pub(crate) fn first_block(&self) -> RpcResult<u64> {
        Ok(self.store.chain().map_err(server_error)?.map_or(0, |c| c.first_block))
    }
}

/// One request's reads: the server's state and one view of the store ([`StoreView`]), so that every read the
/// request makes sees the same applied records (no answer mixes block N and N+1, and `latest` never names a
/// block a reorg has just removed).
pub(crate) struct Req<'a> {
    ctx: &'a Ctx,
    pub(crate) view: StoreView<'a>,
}

impl std::ops::Deref for Req<'_> {
    type Target = Ctx;

    fn deref(&self) -> &Ctx {
        self.ctx
    }
}

impl<'a> Req<'a> {
    pub(crate) fn new(ctx: &'a Ctx) -> Self {
        Self { ctx, view: ctx.store.view() }
    }

    /// A block body by hash, from the cache or the store.
    pub(crate) fn block(&self, hash: &B256) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
        if let Some(block) = self.blocks.get(hash) {
            return Ok(Some(block));
        }
        let Some(block) = self.view.block_by_hash(hash).map_err(server_error)? else { return Ok(None) };
        let block = Arc::new(block);
        self.blocks.insert(block.clone());
        Ok(Some(block))
    }

    /// The block number a block parameter names on this replica's canonical chain.
    pub(crate) fn resolve(&self, spec: BlockSpec) -> RpcResult<u64> {
        let head = self.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        let n = match spec {
            BlockSpec::Latest | BlockSpec::Pending => head.number,
            BlockSpec::Earliest => self.first_block()?,
            BlockSpec::Safe | BlockSpec::Finalized => {
                let hb = self.view.last_heartbeat().map_err(server_error)?;
                let tag = hb.and_then(|h| if spec == BlockSpec::Safe { h.safe } else { h.finalized });
                let name = if spec == BlockSpec::Safe { "safe" } else { "finalized" };
                tag.ok_or_else(|| server_error(format!("{name} block not found")))?.number
            }
            BlockSpec::Number(n) => n,
            BlockSpec::Hash { hash, require_canonical } => {
                let b = self.block(&hash)?;
                let b = b.ok_or_else(|| server_error(format!("block {hash} not found")))?;
                if require_canonical
                    && self.view.canonical_hash(b.number).map_err(server_error)? != Some(hash)
                {
                    return Err(server_error(format!("block {hash} is not canonical")));
                }
                b.number
            }
        };
        if n > head.number {
            return Err(server_error("header not found"));
        }
        Ok(n)
    }

    /// The canonical block a block parameter names, or `None` when the replica has no such block (the
    /// block methods answer `null` then, as the execution APIs specify).
    pub(crate) fn find_block(
        &self,
        spec: BlockSpec,
    ) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
        if matches!(spec, BlockSpec::Latest | BlockSpec::Pending) {
            // The head names its hash, and the view holds its body: a revert committed meanwhile is not seen.
            let Some(head) = self.view.head().map_err(server_error)? else { return Ok(None) };
            return self.block(&head.hash);
        }
        let hash = match spec {
            BlockSpec::Hash { hash, .. } => hash,
            other => {
                let head = self.view.head().map_err(server_error)?.map_or(0, |h| h.number);
                let n = match other {
                    BlockSpec::Number(n) if n > head => return Ok(None),
                    _ => match self.resolve(other) {
                        Ok(n) => n,
                        Err(_) => return Ok(None),
                    },
                };
                // Below the first block: pruned history, as geth answers it (not `null`, which says "no such
                // block").
                let first = self.first_block()?;
                if n < first {
                    return Err(crate::error::pruned_history(first));
                }
                return self.canonical_block(n);
            }
        };
        self.block(&hash)
    }

    /// Block `hash`'s receipt roots (before Byzantium) and uncle headers, as the log carried them; empty when
    /// it has none (or its log predates format 6).
    pub(crate) fn extras(&self, hash: &B256) -> RpcResult<ec_store::tables::StoredExtras> {
        Ok(self.view.block_extras(hash).map_err(server_error)?.unwrap_or_default())
    }

    /// The canonical block at height `n`, already resolved (at most the head): its hash, then its body.
    pub(crate) fn canonical_block(&self, n: u64) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
        match self.view.canonical_hash(n).map_err(server_error)? {
            Some(hash) => self.block(&hash),
            None => Ok(None),
        }
    }

    /// A canonical transaction by hash with its receipt and place: from the block cache when its block is
    /// there, else its own entry in the store (not its whole block).
    pub(crate) fn tx_by_hash(&self, hash: &B256) -> RpcResult<Option<ec_store::tables::BlockTransaction>> {
        let Some(loc) = self.view.tx_location(hash).map_err(server_error)? else { return Ok(None) };
        let Some(bh) = self.view.canonical_hash(loc.block_number).map_err(server_error)? else {
            return Ok(None);
        };
        let index = loc.index as usize;
        if let Some(block) = self.blocks.get(&bh) {
            return Ok(block.transaction(index));
        }
        self.view.block_transaction(&bh, index).map_err(server_error)
    }
}

/// EVM work on one view: given the view, the header of the block the request names and the call
/// environment, its answer.
pub(crate) trait EvmWork<T>:
    Fn(&StoreView, &alloy_consensus::Header, &evm::CallEnv) -> Result<T, String> + Send + Sync + 'static
{
}

impl<T, F> EvmWork<T> for F where
    F: Fn(&StoreView, &alloy_consensus::Header, &evm::CallEnv) -> Result<T, String> + Send + Sync + 'static
{
}

/// Runs EVM work, in place for a short budget and otherwise on a blocking thread, given one view of the
/// store, the header of the block `spec` names in it (the body from the block cache when recent: a mainnet
/// body is not decoded per call), and the call environment (the chain's rules, the gas cap, one deadline for
/// all the work). The EVM stops itself at the deadline; the wait here is only a backstop for work stuck
/// outside it (a slow disk).
pub(crate) async fn on_evm_thread<T: Send + 'static>(
    c: &Arc<Ctx>,
    spec: BlockSpec,
    work: impl EvmWork<T>,
) -> RpcResult<T> {
    on_evm(c, spec, true, work).await
}

/// [`on_evm_thread`] without the attempt in place: for work that seldom fits the inline budget
/// (`eth_simulateV1` runs many blocks), whose first run would only be thrown away.
pub(crate) async fn on_evm_pool<T: Send + 'static>(
    c: &Arc<Ctx>,
    spec: BlockSpec,
    work: impl EvmWork<T>,
) -> RpcResult<T> {
    on_evm(c, spec, false, work).await
}

async fn on_evm<T: Send + 'static>(
    c: &Arc<Ctx>,
    spec: BlockSpec,
    inline: bool,
    work: impl EvmWork<T>,
) -> RpcResult<T> {
    let timeout = c.limits.call_timeout;
    let env = evm::CallEnv {
        spec: c.chain_spec()?,
        gas_cap: c.limits.gas_cap,
        deadline: std::time::Instant::now() + timeout,
        timeout,
    };
    // First in place, on this server worker, for at most INLINE_BUDGET: most calls (a balance, a view
    // function) finish well within it, and then cost no hand-over to a blocking thread and back (which
    // halved the rate of cheap reads when they took it). A call that needs longer is stopped at the budget
    // and run again from the start on the blocking pool, so a long call never holds a server worker for
    // longer than the budget; the EVM has no side effects, so the second run answers exactly as an only run
    // would. No permit is taken for the attempt: like a cheap read, its cost is bounded, and the permits
    // bound the long runs (taking one made every attempt queue behind them under load).
    if inline {
        let budget = evm::CallEnv {
            deadline: env.deadline.min(std::time::Instant::now() + INLINE_BUDGET),
            ..env.clone()
        };
        let result = run_evm(&Req::new(c), spec, &budget, &work);
        // A result reached before the budget ran out is the answer; after it, it may be the budget's doing.
        if std::time::Instant::now() < budget.deadline || budget.deadline == env.deadline {
            return result;
        }
    }
    // Waiting for a permit counts against the call's deadline: a flood of calls is answered with timeouts,
    // not queued without bound.
    let _permit = tokio::time::timeout(timeout, c.pools.evm.acquire())
        .await
        .map_err(|_| server_error(format!("execution aborted (timeout = {timeout:?}): the server is busy")))?
        .map_err(|_| server_error("the server is stopping"))?;
    let c = c.clone();
    let job = tokio::task::spawn_blocking(move || run_evm(&Req::new(&c), spec, &env, &work));
    match tokio::time::timeout(timeout * 2, job).await {
        Ok(Ok(result)) => result,
        Ok(Err(e)) => Err(server_error(format!("execution failed: {e}"))),
        Err(_) => Err(server_error(format!("execution aborted (timeout = {timeout:?})"))),
    }
}

/// How long EVM work or a log scan may run in place on a server worker before it is handed to the blocking
/// pool (and run again there from the start).
pub(crate) const INLINE_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

/// EVM work in one request's view, on the block `spec` names in it.
fn run_evm<T>(
    r: &Req,
    spec: BlockSpec,
    env: &evm::CallEnv,
    work: &impl Fn(&StoreView, &alloy_consensus::Header, &evm::CallEnv) -> Result<T, String>,
) -> RpcResult<T> {
    let n = r.resolve(spec)?;
    let block = r.canonical_block(n)?.ok_or_else(|| server_error("header not found"))?;
    let header = fees::header(&block).map_err(server_error)?;
    work(&r.view, &header, env).map_err(server_error)
}
