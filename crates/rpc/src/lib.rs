//! The replica's Ethereum JSON-RPC server, answering from its own store.
//!
//! Served so far: chain identity (`eth_chainId`, `net_version`, `web3_clientVersion`, `eth_blockNumber`,
//! `eth_syncing`, `net_listening`, `net_peerCount`) and account state at any block the replica holds
//! (`eth_getBalance`, `eth_getTransactionCount`, `eth_getCode`, `eth_getStorageAt`) with every block tag,
//! numbers and EIP-1898 objects. Unknown methods answer "method not found" (-32601). The port opens only
//! once the replica has caught up with its topic.

pub mod block_id;
pub mod convert;
pub mod evm;
pub mod fees;
pub mod logs;
pub mod metrics;
pub mod raw;
pub mod send_tx;
pub mod subscriptions;

use std::{net::SocketAddr, sync::Arc};

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::{Block as RpcBlock, Transaction as RpcTx, TransactionReceipt as RpcReceipt};
use block_id::BlockSpec;
use ec_store::{Reads, Store, StoreView};
use jsonrpsee::{
    server::{Server, ServerHandle},
    types::{ErrorObject, ErrorObjectOwned, Params},
    RpcModule,
};
use serde_json::Value;

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
}

/// Heavy methods (log scans, the EVM) that outrun their short in-place budget run on tokio's blocking
/// threads, never longer than that budget on the async workers that serve connections (and, in the replica,
/// never on the runtime of replay and `/health`), at most `n` at a time per [`Class`]: a flood of heavy
/// requests waits for permits of its own class, while cheap reads, replay and health keep running.
pub struct Pools {
    logs: tokio::sync::Semaphore,
    evm: tokio::sync::Semaphore,
}

impl Pools {
    pub fn new(limits: &Limits) -> Self {
        let permits = |n: usize| tokio::sync::Semaphore::new(n.max(1));
        Self { logs: permits(limits.logs_concurrency), evm: permits(limits.evm_concurrency) }
    }

    /// The semaphore of a class that runs on blocking threads.
    fn of(&self, class: Class) -> Option<&tokio::sync::Semaphore> {
        match class {
            Class::Read => None,
            Class::Logs => Some(&self.logs),
            Class::Evm => Some(&self.evm),
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
        }
    }
}

type RpcResult<T> = Result<T, ErrorObjectOwned>;

/// Most storage keys one `eth_getStorageValues` request may ask for.
const MAX_STORAGE_VALUES: usize = 1024;

/// A storage key: hex of at most 32 bytes (shorter is left-padded), as geth takes it.
fn storage_key(v: Option<&Value>) -> RpcResult<B256> {
    let Some(Value::String(s)) = v else { return Err(invalid_params("missing storage key")) };
    let digits =
        s.strip_prefix("0x").ok_or_else(|| invalid_params(format!("storage key without 0x: {s:?}")))?;
    if digits.len() > 64 {
        return Err(ErrorObject::owned(
            -32602,
            format!("storage key too long (want at most 32 bytes): {s:?}"),
            None::<()>,
        ));
    }
    let value = U256::from_str_radix(if digits.is_empty() { "0" } else { digits }, 16)
        .map_err(|e| invalid_params(format!("storage key {s:?}: {e}")))?;
    Ok(B256::from(value))
}

/// -32602, with a message and no `data` field (as the execution APIs specify).
pub(crate) fn invalid_params(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObject::owned(-32602, format!("invalid params: {msg}"), None::<()>)
}

/// -32000: the request is fine but the replica cannot answer it (unknown block, storage failure).
pub(crate) fn server_error(msg: impl std::fmt::Display) -> ErrorObjectOwned {
    ErrorObject::owned(-32000, msg.to_string(), None::<()>)
}

pub(crate) fn positional(params: &Params) -> RpcResult<Vec<Value>> {
    let v: Option<Vec<Value>> = params.parse().map_err(|e| invalid_params(e.message()))?;
    Ok(v.unwrap_or_default())
}

/// A 32-byte hash parameter, `0x`-prefixed as the execution APIs require (geth refuses it without).
pub(crate) fn hash_arg(args: &[Value], i: usize, name: &str) -> RpcResult<B256> {
    match args.get(i) {
        Some(Value::String(s)) if !s.starts_with("0x") => {
            Err(invalid_params(format!("{name}: hex string without 0x prefix")))
        }
        _ => arg(args, i, name),
    }
}

pub(crate) fn arg<T: serde::de::DeserializeOwned>(args: &[Value], i: usize, name: &str) -> RpcResult<T> {
    let v = args.get(i).ok_or_else(|| invalid_params(format!("missing {name}")))?;
    serde_json::from_value(v.clone()).map_err(|e| invalid_params(format!("{name}: {e}")))
}

impl Ctx {
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
    fn find_block(&self, spec: BlockSpec) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
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
                return self.canonical_block(n);
            }
        };
        self.block(&hash)
    }

    /// The canonical block at height `n`, already resolved (at most the head): its hash, then its body.
    pub(crate) fn canonical_block(&self, n: u64) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
        match self.view.canonical_hash(n).map_err(server_error)? {
            Some(hash) => self.block(&hash),
            None => Ok(None),
        }
    }

    fn block_arg(
        &self,
        params: &Params,
    ) -> RpcResult<(Option<Arc<ec_store::tables::StoredBlock>>, Vec<Value>)> {
        let args = positional(params)?;
        let spec = block_id::parse(args.first()).map_err(invalid_params)?;
        Ok((self.find_block(spec)?, args))
    }

    /// A canonical transaction by hash with its receipt and place: from the block cache when its block is
    /// there, else its own entry in the store (not its whole block).
    fn tx_by_hash(&self, hash: &B256) -> RpcResult<Option<ec_store::tables::BlockTransaction>> {
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

    fn account_args(&self, params: &Params, block_at: usize) -> RpcResult<(Address, u64, Vec<Value>)> {
        let args = positional(params)?;
        let address: Address = arg(&args, 0, "address")?;
        let spec = block_id::parse(args.get(block_at)).map_err(invalid_params)?;
        Ok((address, self.resolve(spec)?, args))
    }
}

/// Every method, on one module.
pub fn module(
    store: Arc<Store>,
    tx_producer: Option<ec_kafka::TxProducer>,
    limits: Limits,
    status: Option<tokio::sync::watch::Receiver<ec_replica::Status>>,
    events: Option<tokio::sync::broadcast::Sender<ec_replica::ChainEvent>>,
) -> RpcModule<Ctx> {
    let mut m = RpcModule::new(Ctx {
        store,
        tx_producer,
        limits,
        status,
        events,
        spec: Default::default(),
        last_tip: Default::default(),
        pools: Pools::new(&limits),
        blocks: Default::default(),
    });
    let chain_id = |c: &Ctx| -> RpcResult<u64> {
        Ok(c.store.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?.chain_id)
    };
    // Registering a name twice is a programming error caught by the first test run, not a runtime input.
    let reg = "method names are unique";
    read_method(&mut m, "eth_chainId", Class::Read, move |_, c| chain_id(c).map(U64::from));
    read_method(&mut m, "net_version", Class::Read, move |_, c| chain_id(c).map(|id| id.to_string()));
    m.register_method("web3_clientVersion", |_, _, _| format!("ether-cattle/{}", env!("CARGO_PKG_VERSION")))
        .expect(reg);
    m.register_method("eth_syncing", |_, _, _| false).expect(reg);
    m.register_method("net_listening", |_, _, _| true).expect(reg);
    m.register_method("net_peerCount", |_, _, _| -> RpcResult<U64> { Ok(U64::ZERO) }).expect(reg);
    read_method(&mut m, "eth_blockNumber", Class::Read, |_, c| c.resolve(BlockSpec::Latest).map(U64::from));
    read_method(&mut m, "eth_getBalance", Class::Read, |p, c| -> RpcResult<U256> {
        let (a, n, _) = c.account_args(&p, 1)?;
        Ok(c.view.account_at(&a, n).map_err(server_error)?.map_or(U256::ZERO, |acc| acc.balance))
    });
    read_method(&mut m, "eth_getTransactionCount", Class::Read, |p, c| -> RpcResult<U64> {
        let (a, n, _) = c.account_args(&p, 1)?;
        Ok(U64::from(c.view.account_at(&a, n).map_err(server_error)?.map_or(0, |acc| acc.nonce)))
    });
    read_method(&mut m, "eth_getCode", Class::Read, |p, c| -> RpcResult<Bytes> {
        let (a, n, _) = c.account_args(&p, 1)?;
        let Some(acc) = c.view.account_at(&a, n).map_err(server_error)? else { return Ok(Bytes::new()) };
        Ok(c.view.code(&acc.code_hash).map_err(server_error)?.unwrap_or_default())
    });
    read_method(&mut m, "eth_getStorageAt", Class::Read, |p, c| -> RpcResult<B256> {
        let (a, n, args) = c.account_args(&p, 2)?;
        let slot = storage_key(args.get(1))?;
        c.view.storage_at(&a, &slot, n).map_err(server_error)
    });
    read_method(
        &mut m,
        "eth_getStorageValues",
        Class::Read,
        |p, c| -> RpcResult<serde_json::Map<String, Value>> {
            let args = positional(&p)?;
            let Some(Value::Object(request)) = args.first() else {
                return Err(invalid_params("expected a map of address to storage keys"));
            };
            if request.is_empty() {
                return Err(invalid_params("empty request"));
            }
            let keys: usize = request.values().map(|v| v.as_array().map_or(0, Vec::len)).sum();
            if keys > MAX_STORAGE_VALUES {
                return Err(invalid_params(format!(
                    "too many storage keys: {keys}, at most {MAX_STORAGE_VALUES}"
                )));
            }
            let n = c.resolve(block_id::parse(args.get(1)).map_err(invalid_params)?)?;
            let mut out = serde_json::Map::new();
            for (address, slots) in request {
                let a: Address = serde_json::from_value(Value::String(address.clone()))
                    .map_err(|e| invalid_params(format!("address {address}: {e}")))?;
                let slots =
                    slots.as_array().ok_or_else(|| invalid_params(format!("{address}: expected a list")))?;
                let mut values = Vec::with_capacity(slots.len());
                for s in slots {
                    let v = c.view.storage_at(&a, &storage_key(Some(s))?, n).map_err(server_error)?;
                    values.push(Value::String(v.to_string()));
                }
                out.insert(address.clone(), Value::Array(values));
            }
            Ok(out)
        },
    );
    read_method(&mut m, "debug_getRawHeader", Class::Read, |p, c| -> RpcResult<Option<Bytes>> {
        Ok(c.block_arg(&p)?.0.map(|b| raw::header(&b)))
    });
    read_method(&mut m, "debug_getRawBlock", Class::Read, |p, c| -> RpcResult<Option<Bytes>> {
        c.block_arg(&p)?.0.map(|b| raw::block(&b).map_err(server_error)).transpose()
    });
    read_method(&mut m, "debug_getRawTransaction", Class::Read, |p, c| -> RpcResult<Option<Bytes>> {
        let hash = hash_arg(&positional(&p)?, 0, "transaction hash")?;
        Ok(c.tx_by_hash(&hash)?.map(|t| t.tx.transaction.encoded))
    });
    for name in ["eth_getBlockByNumber", "eth_getBlockByHash"] {
        read_method(&mut m, name, Class::Read, |p, c| -> RpcResult<Option<RpcBlock>> {
            let (b, args) = c.block_arg(&p)?;
            let full: bool = if args.len() > 1 { arg(&args, 1, "full transactions flag")? } else { false };
            b.map(|b| convert::block(&b, full).map_err(server_error)).transpose()
        });
    }
    for name in ["eth_getBlockTransactionCountByNumber", "eth_getBlockTransactionCountByHash"] {
        read_method(&mut m, name, Class::Read, |p, c| -> RpcResult<Option<U64>> {
            Ok(c.block_arg(&p)?.0.map(|b| U64::from(b.transactions.len())))
        });
    }
    for name in ["eth_getUncleCountByBlockNumber", "eth_getUncleCountByBlockHash"] {
        // The log carries no ommers: post-merge blocks have none.
        read_method(&mut m, name, Class::Read, |p, c| -> RpcResult<Option<U64>> {
            Ok(c.block_arg(&p)?.0.map(|_| U64::ZERO))
        });
    }
    for name in ["eth_getTransactionByBlockNumberAndIndex", "eth_getTransactionByBlockHashAndIndex"] {
        read_method(&mut m, name, Class::Read, |p, c| -> RpcResult<Option<RpcTx>> {
            let (b, args) = c.block_arg(&p)?;
            let index: U64 = arg(&args, 1, "index")?;
            let Some(b) = b else { return Ok(None) };
            convert::transaction(&b, index.to::<usize>()).map_err(server_error)
        });
    }
    read_method(&mut m, "eth_getTransactionByHash", Class::Read, |p, c| -> RpcResult<Option<RpcTx>> {
        let hash = hash_arg(&positional(&p)?, 0, "transaction hash")?;
        let Some(t) = c.tx_by_hash(&hash)? else { return Ok(None) };
        convert::transaction_of(&t).map(Some).map_err(server_error)
    });
    read_method(&mut m, "eth_getTransactionReceipt", Class::Read, |p, c| -> RpcResult<Option<RpcReceipt>> {
        let hash = hash_arg(&positional(&p)?, 0, "transaction hash")?;
        let Some(t) = c.tx_by_hash(&hash)? else { return Ok(None) };
        convert::receipt_of(&t).map(Some).map_err(server_error)
    });
    read_method(&mut m, "eth_getBlockReceipts", Class::Read, |p, c| -> RpcResult<Option<Vec<RpcReceipt>>> {
        let Some(b) = c.block_arg(&p)?.0 else { return Ok(None) };
        convert::receipts(&b).map(Some).map_err(server_error)
    });
    let latest_header = |c: &Req| -> RpcResult<alloy_consensus::Header> {
        let n = c.resolve(BlockSpec::Latest)?;
        let b = c.canonical_block(n)?.ok_or_else(|| server_error("no blocks yet"))?;
        fees::header(&b).map_err(server_error)
    };
    // The suggested tip: geth's oracle over the newest blocks (up to twice its 20, see fees::TipOracle).
    let suggested_tip = |c: &Req| -> RpcResult<u128> {
        let head = c.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        let last = *c.last_tip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, price)) = last.filter(|(hash, _)| *hash == head.hash) {
            return Ok(price);
        }
        let mut blocks = Vec::new();
        for n in (1..=head.number).rev().take(fees::TipOracle::BLOCKS * 2) {
            blocks.extend(c.canonical_block(n)?);
        }
        let last_price = last.map_or(fees::TipOracle::START_PRICE, |(_, p)| p);
        let price = fees::TipOracle::suggest(&blocks, last_price).map_err(server_error)?;
        *c.last_tip.lock().unwrap_or_else(|e| e.into_inner()) = Some((head.hash, price));
        Ok(price)
    };
    read_method(&mut m, "eth_maxPriorityFeePerGas", Class::Read, move |_, c| -> RpcResult<U256> {
        Ok(U256::from(suggested_tip(c)?))
    });
    read_method(&mut m, "eth_gasPrice", Class::Read, move |_, c| -> RpcResult<U256> {
        // As geth: the suggested tip plus the head's base fee.
        let base = latest_header(c)?.base_fee_per_gas.unwrap_or_default() as u128;
        Ok(U256::from(suggested_tip(c)? + base))
    });
    read_method(&mut m, "eth_baseFee", Class::Read, move |_, c| -> RpcResult<Option<U256>> {
        // The next block's base fee (none before London).
        let (h, spec) = (latest_header(c)?, c.chain_spec()?);
        Ok(h.base_fee_per_gas.map(|_| U256::from(fees::next_base_fee(&spec, &h))))
    });
    read_method(&mut m, "eth_blobBaseFee", Class::Read, move |_, c| -> RpcResult<U256> {
        // The head's blob base fee under the head's blob parameters, as geth answers.
        let h = latest_header(c)?;
        let fee = fees::blob_base_fee(c.chain_spec()?.as_ref(), &h)
            .ok_or_else(|| server_error("blob base fee is not available before Cancun"))?;
        Ok(U256::from(fee))
    });
    read_method(&mut m, "eth_config", Class::Read, move |_, c| -> RpcResult<Value> {
        // EIP-7910, from the chain specification of the genesis record (`ChainSpec::eth_config`).
        let spec = c.chain_spec()?;
        let chain = c.view.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?;
        Ok(spec.eth_config(chain.genesis_hash, chain.genesis_timestamp, latest_header(c)?.timestamp))
    });
    read_method(&mut m, "eth_feeHistory", Class::Read, |p, c| -> RpcResult<fees::FeeHistory> {
        let args = positional(&p)?;
        let count: u64 = match args.first() {
            Some(Value::Number(n)) => n.as_u64().ok_or_else(|| invalid_params("blockCount"))?,
            Some(v) => serde_json::from_value::<U64>(v.clone())
                .map_err(|e| invalid_params(format!("blockCount: {e}")))?
                .to(),
            None => return Err(invalid_params("missing blockCount")),
        };
        let count = count.min(1024);
        let newest = c.resolve(block_id::parse(args.get(1)).map_err(invalid_params)?)?;
        let percentiles: Option<Vec<f64>> = match args.get(2) {
            None | Some(Value::Null) => None,
            Some(v) => Some(
                serde_json::from_value(v.clone()).map_err(|e| invalid_params(format!("percentiles: {e}")))?,
            ),
        };
        if let Some(p) = &percentiles {
            if p.iter().any(|x| !(0.0..=100.0).contains(x)) || p.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid_params("reward percentiles must ascend within 0..=100"));
            }
        }
        let oldest = (newest + 1).saturating_sub(count);
        let mut blocks = Vec::new();
        for n in oldest..=newest {
            blocks.extend(c.canonical_block(n)?);
        }
        fees::fee_history(c.chain_spec()?.as_ref(), &blocks, percentiles.as_deref()).map_err(server_error)
    });
    m.register_async_method("eth_getLogs", |p, c, _| async move {
        let filter: Value = arg(&positional(&p)?, 0, "filter")?;
        let f = logs::parse_filter(&filter).map_err(invalid_params)?;
        // As the EVM: in place for a short budget (most filtered queries), else again on the logs pool.
        let budget = std::time::Instant::now() + INLINE_BUDGET;
        if let Some(found) = logs::get_logs(&Req::new(&c), &f, Some(budget))? {
            return Ok(found);
        }
        c.on_pool(Class::Logs, move |r| logs::get_logs(r, &f, None).map(Option::unwrap_or_default)).await
    })
    .expect(reg);
    m.register_subscription("eth_subscribe", "eth_subscription", "eth_unsubscribe", |p, pending, c, _| {
        subscriptions::subscribe(p, pending, c)
    })
    .expect(reg);
    m.register_async_method("eth_call", |p, c, _| async move {
        let (req, spec, overrides) = call_args(&p)?;
        match run_call(&c, req, spec, overrides).await? {
            evm::CallOutcome::Success { output, .. } => Ok(output),
            evm::CallOutcome::Revert { output, .. } => Err(reverted(output)),
            evm::CallOutcome::Halt { reason, .. } => Err(server_error(format!("execution halted: {reason}"))),
        }
    })
    .expect(reg);
    m.register_async_method("eth_createAccessList", |p, c, _| async move {
        let (req, spec, overrides) = call_args(&p)?;
        let (outcome, list) =
            on_evm_thread(&c, spec, move |view, h, env| evm::access_list(view, h, &req, env, &overrides))
                .await?;
        match outcome {
            evm::CallOutcome::Success { gas_used, .. } => {
                Ok(serde_json::json!({"accessList": list, "gasUsed": U64::from(gas_used)}))
            }
            // As geth: the slots the call touched before it reverted, and the failure in `error`.
            evm::CallOutcome::Revert { gas_used, .. } => Ok(serde_json::json!({
                "accessList": list, "error": "execution reverted", "gasUsed": U64::from(gas_used)
            })),
            evm::CallOutcome::Halt { reason, .. } => Err(server_error(format!("execution halted: {reason}"))),
        }
    })
    .expect(reg);
    m.register_async_method("eth_estimateGas", |p, c, _| async move {
        let (req, spec, overrides) = call_args(&p)?;
        estimate_gas(&c, req, spec, overrides).await.map(U64::from)
    })
    .expect(reg);
    m.register_async_method("eth_sendRawTransaction", |p, c, _| async move {
        let raw: Bytes = arg(&positional(&p)?, 0, "raw transaction")?;
        let chain_id = c.store.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?.chain_id;
        let decoded = send_tx::decode(&raw, chain_id).map_err(server_error)?;
        let sender = decoded.sender;
        let account = c.on_pool(Class::Read, move |c| c.view.account(&sender).map_err(server_error)).await?;
        let (nonce, balance) = account.map_or((0, U256::ZERO), |a| (a.nonce, a.balance));
        send_tx::check(&decoded, nonce, balance).map_err(server_error)?;
        let producer = c.tx_producer.as_ref().ok_or_else(|| server_error("this replica relays no transactions"))?;
        producer.send(&raw).await.map_err(|e| server_error(format!("cannot queue the transaction: {e}")))?;
        tracing::info!(hash = %decoded.hash, sender = %decoded.sender, "transaction queued for the publisher");
        RpcResult::Ok(decoded.hash)
    })
    .expect(reg);
    m
}

/// Registers a method whose work reads the store: it runs on the pool of its class ([`Pools`]).
fn read_method<R, F>(m: &mut RpcModule<Ctx>, name: &'static str, class: Class, f: F)
where
    R: serde::Serialize + Clone + Send + 'static,
    F: Fn(Params<'static>, &Req) -> RpcResult<R> + Clone + Send + Sync + 'static,
{
    m.register_async_method(name, move |p, c, _| {
        let f = f.clone();
        async move { c.on_pool(class, move |c| f(p, c)).await }
    })
    // Registering a name twice is a programming error caught by the first test run, not a runtime input.
    .expect("method names are unique");
}

/// Code 3 with the revert data, as the execution APIs specify for a reverted call.
fn reverted(output: Bytes) -> ErrorObjectOwned {
    ErrorObject::owned(3, "execution reverted", Some(output))
}

/// The call, the block it runs on (resolved on the EVM thread, in the view the call reads) and the overrides.
fn call_args(p: &Params) -> RpcResult<(evm::CallRequest, BlockSpec, evm::Overrides)> {
    let args = positional(p)?;
    let req: evm::CallRequest = arg(&args, 0, "call object")?;
    let spec = block_id::parse(args.get(1)).map_err(invalid_params)?;
    fn optional<T: serde::de::DeserializeOwned>(
        args: &[Value],
        i: usize,
        name: &str,
    ) -> RpcResult<Option<T>> {
        match args.get(i) {
            None | Some(Value::Null) => Ok(None),
            Some(_) => arg(args, i, name).map(Some),
        }
    }
    let overrides = evm::Overrides {
        state: optional(&args, 2, "state overrides")?,
        block: optional(&args, 3, "block overrides")?,
    };
    Ok((req, spec, overrides))
}

/// Runs one call on a blocking thread, bounded by the gas cap and the timeout.
async fn run_call(
    c: &Arc<Ctx>,
    req: evm::CallRequest,
    spec: BlockSpec,
    overrides: evm::Overrides,
) -> RpcResult<evm::CallOutcome> {
    on_evm_thread(c, spec, move |view, h, env| evm::call(view, h, &req, env, &overrides)).await
}

/// Runs EVM work, in place for a short budget and otherwise on a blocking thread, given one view of the
/// store, the header of the block `spec` names in it (the body from the block cache when recent: a mainnet
/// body is not decoded per call), and the call environment (the chain's rules, the gas cap, one deadline for
/// all the work). The EVM stops itself at the deadline; the wait here is only a backstop for work stuck
/// outside it (a slow disk).
async fn on_evm_thread<T: Send + 'static>(
    c: &Arc<Ctx>,
    spec: BlockSpec,
    work: impl Fn(&StoreView, &alloy_consensus::Header, &evm::CallEnv) -> Result<T, String>
        + Send
        + Sync
        + 'static,
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
    let budget =
        evm::CallEnv { deadline: env.deadline.min(std::time::Instant::now() + INLINE_BUDGET), ..env.clone() };
    let result = run_evm(&Req::new(c), spec, &budget, &work);
    // A result reached before the budget ran out is the answer; after it, it may be the budget's doing.
    if std::time::Instant::now() < budget.deadline || budget.deadline == env.deadline {
        return result;
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
const INLINE_BUDGET: std::time::Duration = std::time::Duration::from_millis(2);

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

/// The least gas limit with which the call succeeds (`evm::estimate_gas`), on one EVM thread and deadline.
async fn estimate_gas(
    c: &Arc<Ctx>,
    req: evm::CallRequest,
    spec: BlockSpec,
    overrides: evm::Overrides,
) -> RpcResult<u64> {
    let outcome =
        on_evm_thread(c, spec, move |view, h, env| Ok(evm::estimate_gas(view, h, &req, env, &overrides)))
            .await?;
    match outcome {
        Ok(gas) => Ok(gas),
        Err(evm::EstimateError::Reverted(output)) => Err(reverted(output)),
        Err(evm::EstimateError::Failed(message)) => Err(server_error(message)),
    }
}

/// Most calls in one batch request.
pub const MAX_BATCH: u32 = 100;

/// Serves JSON-RPC (HTTP and websocket on one port) on `addr`.
pub async fn serve(
    addr: SocketAddr,
    store: Arc<Store>,
    tx_producer: Option<ec_kafka::TxProducer>,
    limits: Limits,
    status: Option<tokio::sync::watch::Receiver<ec_replica::Status>>,
    events: Option<tokio::sync::broadcast::Sender<ec_replica::ChainEvent>>,
) -> std::io::Result<(ServerHandle, Arc<metrics::RpcMetrics>)> {
    // Bounded requests and responses: no input can make the server allocate without limit.
    let config = jsonrpsee::server::ServerConfig::builder()
        .max_request_body_size(5 << 20)
        .max_response_body_size(64 << 20)
        .set_batch_request_config(jsonrpsee::server::BatchRequestConfig::Limit(MAX_BATCH))
        .set_id_provider(subscriptions::HexIdProvider::default())
        .build();
    let module = module(store, tx_producer, limits, status, events);
    let rpc_metrics = Arc::new(metrics::RpcMetrics::new(module.method_names().map(str::to_owned)));
    let m = rpc_metrics.clone();
    let middleware = jsonrpsee::server::middleware::rpc::RpcServiceBuilder::new()
        .layer_fn(move |inner| metrics::Counting { inner, metrics: m.clone() });
    let server = Server::builder().set_config(config).set_rpc_middleware(middleware).build(addr).await?;
    Ok((server.start(module), rpc_metrics))
}
