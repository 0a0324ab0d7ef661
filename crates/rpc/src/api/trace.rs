//! The `trace` namespace: parity-style traces of stored blocks, transactions and calls, re-executed on the
//! replica's own state ([`crate::exec`], [`crate::parity_trace`]), in the shapes reth and erigon answer.

use std::{collections::HashMap, sync::Arc};

use alloy_primitives::{map::HashSet, Address, U64};
use alloy_rpc_types_trace::{
    filter::TraceFilter,
    parity::{LocalizedTransactionTrace, TraceResults, TraceResultsWithTransactionHash, TraceType},
};
use ec_store::Reads;
use jsonrpsee::proc_macros::rpc;

use super::replayed::{self, trace_error};
use crate::{
    block_id::BlockSpec,
    ctx::Ctx,
    error::{invalid_params, server_error, RpcResult},
    evm::{self, AccountOverride, BlockOverrides, CallRequest},
    params::Hash,
    parity_trace,
};

#[rpc(server, namespace = "trace")]
pub trait TraceApi {
    /// Every call of every transaction in a block, flat, then the block's rewards (proof-of-work blocks).
    #[method(name = "block")]
    async fn block(&self, block: BlockSpec) -> RpcResult<Option<Vec<LocalizedTransactionTrace>>>;

    /// Every call of one transaction, flat.
    #[method(name = "transaction")]
    async fn transaction(&self, hash: Hash) -> RpcResult<Option<Vec<LocalizedTransactionTrace>>>;

    /// One trace of a transaction, by its position in `trace_transaction`'s answer (one index only, as
    /// OpenEthereum served it).
    #[method(name = "get")]
    async fn get(&self, hash: Hash, indices: Vec<U64>) -> RpcResult<Option<LocalizedTransactionTrace>>;

    /// Each transaction of a block with the requested `trace`, `vmTrace` and `stateDiff`.
    #[method(name = "replayBlockTransactions")]
    async fn replay_block_transactions(
        &self,
        block: BlockSpec,
        types: HashSet<TraceType>,
    ) -> RpcResult<Option<Vec<TraceResultsWithTransactionHash>>>;

    /// One transaction with the requested traces.
    #[method(name = "replayTransaction")]
    async fn replay_transaction(&self, hash: Hash, types: HashSet<TraceType>) -> RpcResult<TraceResults>;

    /// A call on top of a block, as `eth_call` runs it, with the requested traces.
    #[method(name = "call")]
    async fn call(
        &self,
        request: CallRequest,
        types: HashSet<TraceType>,
        block: Option<BlockSpec>,
        state_overrides: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<TraceResults>;

    /// The calls of a block range whose sender or recipient match, at most `--rpc-trace-filter-max-blocks`
    /// blocks (reth's 100 by default).
    #[method(name = "filter")]
    async fn filter(&self, filter: TraceFilter) -> RpcResult<Vec<LocalizedTransactionTrace>>;
}

pub struct Trace(pub Arc<Ctx>);

#[jsonrpsee::core::async_trait]
impl TraceApiServer for Trace {
    async fn block(&self, block: BlockSpec) -> RpcResult<Option<Vec<LocalizedTransactionTrace>>> {
        let limits = replayed::limits(&self.0, None)?;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let Some(block) = replayed::block_at(r, block)? else { return Ok(None) };
            if block.number == 0 {
                return Ok(Some(Vec::new()));
            }
            let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
            parity_trace::block(&mut replay, limits).map(Some).map_err(trace_error)
        })
        .await
    }

    async fn transaction(&self, hash: Hash) -> RpcResult<Option<Vec<LocalizedTransactionTrace>>> {
        let limits = replayed::limits(&self.0, None)?;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let Some((block, index)) = replayed::transaction_at(r, &hash.0)? else { return Ok(None) };
            let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
            parity_trace::transaction(&mut replay, index, limits).map(Some).map_err(trace_error)
        })
        .await
    }

    async fn get(&self, hash: Hash, indices: Vec<U64>) -> RpcResult<Option<LocalizedTransactionTrace>> {
        let [index] = indices[..] else { return Ok(None) };
        let traces = self.transaction(hash).await?;
        Ok(traces.and_then(|t| t.into_iter().nth(index.to::<usize>())))
    }

    async fn replay_block_transactions(
        &self,
        block: BlockSpec,
        types: HashSet<TraceType>,
    ) -> RpcResult<Option<Vec<TraceResultsWithTransactionHash>>> {
        let limits = replayed::limits(&self.0, None)?;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let Some(block) = replayed::block_at(r, block)? else { return Ok(None) };
            if block.number == 0 {
                return Ok(Some(Vec::new()));
            }
            let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
            parity_trace::replay_block(&mut replay, &types, limits).map(Some).map_err(trace_error)
        })
        .await
    }

    async fn replay_transaction(&self, hash: Hash, types: HashSet<TraceType>) -> RpcResult<TraceResults> {
        let limits = replayed::limits(&self.0, None)?;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let (block, index) =
                replayed::transaction_at(r, &hash.0)?.ok_or_else(|| server_error("transaction not found"))?;
            let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
            parity_trace::replay_transaction(&mut replay, index, &types, limits).map_err(trace_error)
        })
        .await
    }

    async fn call(
        &self,
        request: CallRequest,
        types: HashSet<TraceType>,
        block: Option<BlockSpec>,
        state_overrides: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<TraceResults> {
        let c = &self.0;
        let limits = replayed::limits(c, None)?;
        let call_env = replayed::call_env(c, limits)?;
        let overrides = evm::Overrides { state: state_overrides, block: block_overrides };
        let spec = block.unwrap_or_default();
        replayed::on_trace_pool(c, limits, move |r| {
            let (_, header) = replayed::call_block(r, spec)?;
            let prepared =
                evm::prepare(&r.view, &header, &request, &call_env, &overrides).map_err(server_error)?;
            parity_trace::call(prepared, &types, limits).map_err(trace_error)
        })
        .await
    }

    async fn filter(&self, filter: TraceFilter) -> RpcResult<Vec<LocalizedTransactionTrace>> {
        let limits = replayed::limits(&self.0, None)?;
        let max_blocks = self.0.limits.max_trace_filter_blocks;
        replayed::on_trace_pool(&self.0, limits, move |r| {
            let head = r.view.head().map_err(server_error)?.map_or(0, |h| h.number);
            let (from, to) = filter_range(&filter, head, max_blocks)?;
            let matcher = filter.matcher();
            let after = filter.after.unwrap_or(0) as usize;
            let count = filter.count.map_or(usize::MAX, |c| c as usize);
            let mut matched = Vec::new();
            for n in from.max(1)..=to {
                // The page is full: the blocks after it need not be re-executed.
                if matched.len() >= after.saturating_add(count) {
                    break;
                }
                let block =
                    r.canonical_block(n)?.ok_or_else(|| server_error(format!("block #{n} not found")))?;
                let mut replay = replayed::start(r, block, limits).map_err(trace_error)?;
                let traces = parity_trace::block(&mut replay, limits).map_err(trace_error)?;
                matched.extend(traces.into_iter().filter(|t| matcher.matches(&t.trace)));
            }
            Ok(matched.into_iter().skip(after).take(count).collect())
        })
        .await
    }
}

/// The block range a `trace_filter` asks for, as reth bounds it: `fromBlock` defaults to 0, `toBlock` to the
/// head; at most `max_blocks` blocks after the first.
fn filter_range(filter: &TraceFilter, head: u64, max_blocks: u64) -> RpcResult<(u64, u64)> {
    let from = filter.from_block.unwrap_or(0);
    let to = filter.to_block.unwrap_or(head);
    for n in [from, to] {
        if n > head {
            return Err(server_error(format!("block #{n} not found")));
        }
    }
    if from > to {
        return Err(invalid_params("invalid parameters: fromBlock cannot be greater than toBlock"));
    }
    // As reth: a range of `max_blocks` after its first block is the widest served.
    if to - from > max_blocks {
        return Err(invalid_params(format!(
            "Block range too large; currently limited to {max_blocks} blocks"
        )));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_range_table() {
        let f = |from: Option<u64>, to: Option<u64>| TraceFilter {
            from_block: from,
            to_block: to,
            ..Default::default()
        };
        let cases = [
            (f(Some(5), Some(10)), 50, Some((5, 10))),
            (f(None, None), 50, Some((0, 50))),
            (f(None, None), 500, None),
            (f(Some(10), Some(5)), 50, None),
            (f(Some(40), Some(60)), 50, None),
            (f(Some(0), Some(100)), 500, Some((0, 100))),
            (f(Some(0), Some(101)), 500, None),
            (f(Some(60), None), 50, None),
        ];
        for (filter, head, want) in cases {
            assert_eq!(filter_range(&filter, head, 100).ok(), want, "{filter:?} head {head}");
        }
    }
}
