//! What the `debug` and `trace` namespaces share: the trace limits a request runs under, the trace pool,
//! and the stored block (and transaction) a request names, re-executed there ([`crate::exec::Replay`]).

use std::sync::Arc;

use alloy_primitives::B256;
use ec_store::{tables::StoredBlock, Reads};

use crate::{
    block_id::BlockSpec,
    ctx::{Class, Ctx, Req},
    error::{server_error, RpcResult},
    evm,
    exec::Replay,
    geth_trace::{self, TraceError, TraceLimits},
};

/// The bounds a trace runs under: `timeout_option` (geth's `timeout`) capped by the replica's own. Waiting
/// for a permit counts against the deadline: a flood of traces is answered with timeouts, not queued
/// without bound.
pub(crate) fn limits(ctx: &Ctx, timeout_option: Option<&str>) -> RpcResult<TraceLimits> {
    let limits = &ctx.limits;
    let timeout = geth_trace::timeout(timeout_option, limits.trace_timeout).map_err(trace_error)?;
    let deadline = std::time::Instant::now() + timeout;
    Ok(TraceLimits { deadline, timeout, max_bytes: limits.max_trace_bytes })
}

/// The environment a traced call runs in (`debug_traceCall`, `trace_call`): the chain's rules, the gas cap,
/// and the trace's deadline.
pub(crate) fn call_env(ctx: &Ctx, limits: TraceLimits) -> RpcResult<evm::CallEnv> {
    Ok(evm::CallEnv {
        spec: ctx.chain_spec()?,
        gas_cap: ctx.limits.gas_cap,
        deadline: limits.deadline,
        timeout: limits.timeout,
    })
}

/// The canonical block a traced call runs on, and its header; geth's "header not found" when there is none.
pub(crate) fn call_block(r: &Req, spec: BlockSpec) -> RpcResult<(Arc<StoredBlock>, alloy_consensus::Header)> {
    let n = r.resolve(spec)?;
    let block = r.canonical_block(n)?.ok_or_else(|| server_error("header not found"))?;
    let header = crate::fees::header(&block).map_err(server_error)?;
    Ok((block, header))
}

/// Runs `work` on the trace pool, in one view of the store.
pub(crate) async fn on_trace_pool<T: Send + 'static>(
    ctx: &Arc<Ctx>,
    limits: TraceLimits,
    work: impl FnOnce(&Req) -> RpcResult<T> + Send + 'static,
) -> RpcResult<T> {
    let work = ctx.on_pool(Class::Trace, work);
    // The work stops itself at the deadline; this wait is only a backstop (a slow disk).
    tokio::time::timeout(limits.timeout * 2, work).await.map_err(|_| server_error("execution timeout"))?
}

/// Block `block` started for re-execution under `limits` (its pre-block system calls run).
pub(crate) fn start<'a>(
    r: &'a Req,
    block: Arc<StoredBlock>,
    limits: TraceLimits,
) -> Result<Replay<'a>, TraceError> {
    let spec = r.chain_spec().map_err(|e| TraceError::Failed(e.message().to_owned()))?;
    let mut replay = Replay::start(&r.view, &spec, block)?;
    replay.set_deadline(limits.deadline, limits.timeout);
    Ok(replay)
}

pub(crate) fn trace_error(e: TraceError) -> jsonrpsee::types::ErrorObjectOwned {
    server_error(e)
}

/// The canonical block a block parameter names; `None` when the replica has no such block.
pub(crate) fn block_at(r: &Req, spec: BlockSpec) -> RpcResult<Option<Arc<StoredBlock>>> {
    match spec {
        BlockSpec::Hash { hash, .. } => r.block(&hash),
        BlockSpec::Number(n) => {
            let head = r.view.head().map_err(server_error)?.map_or(0, |h| h.number);
            if n > head {
                return Ok(None);
            }
            r.canonical_block(n)
        }
        other => {
            let n = r.resolve(other)?;
            r.canonical_block(n)
        }
    }
}

/// geth's words for a block it does not have.
pub(crate) fn block_not_found(spec: BlockSpec) -> jsonrpsee::types::ErrorObjectOwned {
    let what = match spec {
        BlockSpec::Hash { hash, .. } => hash.to_string(),
        BlockSpec::Number(n) => format!("#{n}"),
        other => format!("{other:?}"),
    };
    server_error(format!("block {what} not found"))
}

/// The canonical block holding transaction `hash`, and the transaction's index in it.
pub(crate) fn transaction_at(r: &Req, hash: &B256) -> RpcResult<Option<(Arc<StoredBlock>, usize)>> {
    let Some(loc) = r.view.tx_location(hash).map_err(server_error)? else { return Ok(None) };
    let Some(block_hash) = r.view.canonical_hash(loc.block_number).map_err(server_error)? else {
        return Ok(None);
    };
    Ok(r.block(&block_hash)?.map(|b| (b, loc.index as usize)))
}
