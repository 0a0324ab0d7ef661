//! The `debug` namespace: raw (RLP) headers, blocks and transactions as the chain has them, and geth's
//! traces of stored blocks and transactions, re-executed on the replica's own state ([`crate::exec`],
//! [`crate::geth_trace`]).

use std::{collections::HashMap, sync::Arc};

use alloy_primitives::{Address, Bytes, B256};
use alloy_rlp::Decodable;
use alloy_rpc_types_trace::geth::GethDebugTracingOptions;
use ec_store::tables::StoredBlock;
use jsonrpsee::proc_macros::rpc;
use serde_json::Value;

use super::replayed::{self, trace_error};
use crate::{
    block_id::BlockSpec,
    ctx::{Ctx, Req},
    error::{server_error, RpcResult},
    evm::{self, AccountOverride, BlockOverrides, CallRequest},
    exec::Replay,
    geth_trace::{self, TraceError, TraceLimits},
    params::Hash,
    raw,
    tracers::{Place, Plan},
};

#[rpc(server, namespace = "debug")]
pub trait DebugApi {
    #[method(name = "getRawHeader")]
    fn get_raw_header(&self, block: Option<BlockSpec>) -> RpcResult<Option<Bytes>>;

    #[method(name = "getRawBlock")]
    fn get_raw_block(&self, block: Option<BlockSpec>) -> RpcResult<Option<Bytes>>;

    #[method(name = "getRawTransaction")]
    fn get_raw_transaction(&self, hash: Hash) -> RpcResult<Option<Bytes>>;

    #[method(name = "getRawReceipts")]
    fn get_raw_receipts(&self, block: BlockSpec) -> RpcResult<Vec<Bytes>>;

    /// One transaction, re-executed after the ones before it in its block.
    #[method(name = "traceTransaction")]
    async fn trace_transaction(&self, hash: Hash, opts: Option<GethDebugTracingOptions>) -> RpcResult<Value>;

    #[method(name = "traceBlockByNumber")]
    async fn trace_block_by_number(
        &self,
        block: BlockSpec,
        opts: Option<GethDebugTracingOptions>,
    ) -> RpcResult<Vec<Value>>;

    #[method(name = "traceBlockByHash")]
    async fn trace_block_by_hash(
        &self,
        hash: Hash,
        opts: Option<GethDebugTracingOptions>,
    ) -> RpcResult<Vec<Value>>;

    /// A call on top of a block, as `eth_call` runs it, with state and block overrides in the options.
    #[method(name = "traceCall")]
    async fn trace_call(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        opts: Option<TraceCallOptions>,
    ) -> RpcResult<Value>;

    /// A block given as RLP: traced when it is a block this replica holds (geth also traces blocks it has
    /// only the parent of; a replica re-executes only what its log recorded, receipts included).
    #[method(name = "traceBlock")]
    async fn trace_block(&self, rlp: Bytes, opts: Option<GethDebugTracingOptions>) -> RpcResult<Vec<Value>>;
}

/// `debug_traceCall`'s options: a tracer's, and the call's overrides (as `eth_call`'s third and fourth
/// parameters).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TraceCallOptions {
    #[serde(flatten)]
    pub tracing: GethDebugTracingOptions,
    pub state_overrides: Option<HashMap<Address, AccountOverride>>,
    pub block_overrides: Option<BlockOverrides>,
    /// Run the call on the block's state before its transaction at this index (geth's `txIndex`), in the
    /// block's own environment.
    pub tx_index: Option<alloy_primitives::U64>,
}

pub struct Debug(pub Arc<Ctx>);

impl Debug {
    /// Finds a block (and a transaction in it), then re-executes it on the trace pool under the limits of
    /// `opts`, after refusing a tracer no native one answers (before any permit is taken or block read).
    async fn trace<T: Send + 'static>(
        &self,
        opts: GethDebugTracingOptions,
        find: impl FnOnce(&Req) -> RpcResult<(Arc<StoredBlock>, Option<usize>)> + Send + 'static,
        run: impl FnOnce(
                &mut Replay,
                Option<usize>,
                &Plan,
                &GethDebugTracingOptions,
                TraceLimits,
            ) -> Result<T, TraceError>
            + Send
            + 'static,
    ) -> RpcResult<T> {
        let limits = replayed::limits(&self.0, opts.timeout.as_deref())?;
        let plan = Plan::new(&opts).map_err(trace_error)?;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let (block, index) = find(r)?;
            let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
            run(&mut replay, index, &plan, &opts, limits).map_err(trace_error)
        })
        .await
    }
}

/// The canonical block a block parameter names, or geth's "not found" error.
fn block_at(r: &Req, spec: BlockSpec) -> RpcResult<Arc<StoredBlock>> {
    replayed::block_at(r, spec)?.ok_or_else(|| replayed::block_not_found(spec))
}

#[jsonrpsee::core::async_trait]
impl DebugApiServer for Debug {
    fn get_raw_header(&self, block: Option<BlockSpec>) -> RpcResult<Option<Bytes>> {
        let r = Req::new(&self.0);
        Ok(r.find_block(block.unwrap_or_default())?.map(|b| raw::header(&b)))
    }

    fn get_raw_block(&self, block: Option<BlockSpec>) -> RpcResult<Option<Bytes>> {
        let r = Req::new(&self.0);
        let Some(b) = r.find_block(block.unwrap_or_default())? else { return Ok(None) };
        raw::block(&b, &r.extras(&b.hash)?.ommers).map(Some).map_err(server_error)
    }

    fn get_raw_transaction(&self, hash: Hash) -> RpcResult<Option<Bytes>> {
        Ok(Req::new(&self.0).tx_by_hash(&hash.0)?.map(|t| t.tx.transaction.encoded))
    }

    fn get_raw_receipts(&self, block: BlockSpec) -> RpcResult<Vec<Bytes>> {
        let r = Req::new(&self.0);
        let b = block_at(&r, block)?;
        let spec_id = r.chain_spec()?.spec_id(b.number, b.timestamp).map_err(server_error)?;
        let byzantium = spec_id.is_enabled_in(revm::primitives::hardfork::SpecId::BYZANTIUM);
        raw::receipts(&b, byzantium, &r.extras(&b.hash)?.receipt_roots).map_err(server_error)
    }

    async fn trace_transaction(&self, hash: Hash, opts: Option<GethDebugTracingOptions>) -> RpcResult<Value> {
        let find = move |r: &Req| {
            let (block, index) =
                replayed::transaction_at(r, &hash.0)?.ok_or_else(|| server_error("transaction not found"))?;
            Ok((block, Some(index)))
        };
        self.trace(opts.unwrap_or_default(), find, |replay, index, plan, opts, limits| {
            geth_trace::transaction(replay, index.unwrap_or_default(), plan, opts, limits)
        })
        .await
    }

    async fn trace_block_by_number(
        &self,
        block: BlockSpec,
        opts: Option<GethDebugTracingOptions>,
    ) -> RpcResult<Vec<Value>> {
        self.trace(
            opts.unwrap_or_default(),
            move |r| Ok((block_at(r, block)?, None)),
            |replay, _, plan, opts, limits| geth_trace::block(replay, plan, opts, limits),
        )
        .await
    }

    async fn trace_block_by_hash(
        &self,
        hash: Hash,
        opts: Option<GethDebugTracingOptions>,
    ) -> RpcResult<Vec<Value>> {
        let spec = BlockSpec::Hash { hash: hash.0, require_canonical: false };
        self.trace_block_by_number(spec, opts).await
    }

    async fn trace_call(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        opts: Option<TraceCallOptions>,
    ) -> RpcResult<Value> {
        let opts = opts.unwrap_or_default();
        let c = &self.0;
        let limits = replayed::limits(c, opts.tracing.timeout.as_deref())?;
        let plan = Plan::new(&opts.tracing).map_err(trace_error)?;
        let call_env = replayed::call_env(c, limits)?;
        let overrides =
            evm::Overrides { state: opts.state_overrides.clone(), block: opts.block_overrides.clone() };
        let spec = block.unwrap_or_default();
        replayed::on_trace_pool(c, limits, move |r| {
            let (b, header) = replayed::call_block(r, spec)?;
            let prepared = match opts.tx_index.map(|i| i.to::<usize>()) {
                None => evm::prepare(&r.view, &header, &request, &call_env, &overrides),
                Some(index) => {
                    let mut replay = replayed::start(r, b.clone(), limits).map_err(trace_error)?;
                    // As geth: before the first transaction of an empty block is its state too.
                    if index >= replay.len() && !(index == 0 && replay.is_empty()) {
                        return Err(server_error(format!(
                            "transaction index {index} out of range for block {:#x}",
                            b.hash
                        )));
                    }
                    replay.skip_to(index).map_err(|e| trace_error(e.into()))?;
                    evm::prepare_on(replay.into_db(), &header, &request, &call_env, &overrides)
                }
            }
            .map_err(server_error)?;
            // As geth's traceCall: a context with no block or transaction named; logs numbered after those
            // of the transactions it runs after (with `txIndex`).
            let logs_before = match opts.tx_index {
                Some(i) => b.receipts.iter().take(i.to::<usize>()).map(|r| r.logs.len() as u64).sum(),
                None => 0,
            };
            let place = Place {
                block_hash: None,
                block_number: 0,
                tx_hash: None,
                tx_index: 0,
                logs_before,
                spec_id: prepared.cfg.spec,
                chain_id: prepared.cfg.chain_id,
            };
            geth_trace::call(prepared, &place, &plan, &opts.tracing, limits).map_err(trace_error)
        })
        .await
    }

    async fn trace_block(&self, rlp: Bytes, opts: Option<GethDebugTracingOptions>) -> RpcResult<Vec<Value>> {
        let block = alloy_consensus::Block::<alloy_consensus::TxEnvelope>::decode(&mut &rlp[..])
            .map_err(|e| server_error(format!("could not decode block: {e}")))?;
        let hash: B256 = block.header.hash_slow();
        let held = {
            let r = Req::new(&self.0);
            r.block(&hash)?.is_some()
        };
        if !held {
            return Err(server_error(format!(
                "block {hash} is not held by this replica (it traces the blocks of its own chain)"
            )));
        }
        self.trace_block_by_hash(Hash(hash), opts).await
    }
}
