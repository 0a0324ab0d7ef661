//! Parity-style traces (`trace_*`), as reth and erigon answer them: revm-inspectors' parity builder over a
//! [`Replay`] of the block, the same re-execution the `debug_trace*` methods run.
//!
//! - [`block`]: every call of every transaction, flat, located (`trace_block`, `trace_filter`,
//!   `trace_transaction`), with the block and uncle rewards of a proof-of-work block after them.
//! - [`replay_block`] / [`replay_transaction`] / [`call`]: the requested `trace`, `vmTrace` and `stateDiff`
//!   of each transaction (`trace_replay*`, `trace_call`).

use alloy_eips::BlockNumHash;
use alloy_primitives::map::HashSet;
use alloy_primitives::U256;
use alloy_rpc_types_eth::TransactionInfo;
use alloy_rpc_types_trace::parity::{
    LocalizedTransactionTrace, RewardAction, RewardType, TraceResults, TraceResultsWithTransactionHash,
    TraceType,
};
use revm::{context::Context, primitives::hardfork::SpecId, InspectEvm, MainBuilder, MainContext};
use revm_inspectors::tracing::{TracingInspector, TracingInspectorConfig};

use crate::{
    evm,
    exec::Replay,
    geth_trace::{Guard, TraceError, TraceLimits},
};

/// Every transaction's calls, flat and located, and then the block's rewards when it has any.
pub fn block(replay: &mut Replay, limits: TraceLimits) -> Result<Vec<LocalizedTransactionTrace>, TraceError> {
    let mut guard = Guard::parity(false, limits);
    let mut traces = Vec::new();
    for _ in 0..replay.len() {
        traces.extend(next_located(replay, &mut guard)?);
    }
    traces.extend(rewards(replay)?);
    Ok(traces)
}

/// Transaction `index`'s calls, flat and located (the transactions before it run untraced).
pub fn transaction(
    replay: &mut Replay,
    index: usize,
    limits: TraceLimits,
) -> Result<Vec<LocalizedTransactionTrace>, TraceError> {
    replay.skip_to(index)?;
    next_located(replay, &mut Guard::parity(false, limits))
}

/// Each transaction's requested traces, with its hash.
pub fn replay_block(
    replay: &mut Replay,
    types: &HashSet<TraceType>,
    limits: TraceLimits,
) -> Result<Vec<TraceResultsWithTransactionHash>, TraceError> {
    let mut guard = Guard::parity(types.contains(&TraceType::VmTrace), limits);
    let mut out = Vec::with_capacity(replay.len());
    for _ in 0..replay.len() {
        let (full_trace, transaction_hash) = next_results(replay, types, &mut guard)?;
        out.push(TraceResultsWithTransactionHash { full_trace, transaction_hash });
    }
    Ok(out)
}

/// Transaction `index`'s requested traces.
pub fn replay_transaction(
    replay: &mut Replay,
    index: usize,
    types: &HashSet<TraceType>,
    limits: TraceLimits,
) -> Result<TraceResults, TraceError> {
    replay.skip_to(index)?;
    let mut guard = Guard::parity(types.contains(&TraceType::VmTrace), limits);
    next_results(replay, types, &mut guard).map(|(results, _)| results)
}

/// A call's requested traces, run as `eth_call` runs it ([`evm::prepare`]).
pub fn call(
    prepared: evm::Prepared,
    types: &HashSet<TraceType>,
    limits: TraceLimits,
) -> Result<TraceResults, TraceError> {
    let evm::Prepared { mut db, block_env, cfg, tx } = prepared;
    let mut guard = Guard::parity(types.contains(&TraceType::VmTrace), limits);
    let inspector = recording(TracingInspectorConfig::from_parity_config(types), &guard);
    let (result, (inspector, guard)) = {
        let mut evm = Context::mainnet()
            .with_db(&mut db)
            .with_block(block_env)
            .with_cfg(cfg)
            .build_mainnet_with_inspector((inspector, &mut guard));
        (evm.inspect_tx(tx), evm.inspector)
    };
    guard.record(inspector.recorded_bytes(), inspector.limit_exceeded());
    guard.check()?;
    let result = result.map_err(|e| TraceError::Failed(format!("tracing failed: {e:?}")))?;
    inspector
        .into_parity_builder()
        .into_trace_results_with_state(&result, types, &db)
        .map_err(|e| TraceError::Failed(e.to_string()))
}

/// Runs and commits the next transaction; its calls, flat and located.
fn next_located(
    replay: &mut Replay,
    guard: &mut Guard,
) -> Result<Vec<LocalizedTransactionTrace>, TraceError> {
    let inspector = recording(TracingInspectorConfig::default_parity(), guard);
    let (executed, (inspector, guard)) = replay.execute((inspector, guard))?;
    guard.record(inspector.recorded_bytes(), inspector.limit_exceeded());
    guard.check()?;
    let info = transaction_info(replay);
    replay.commit(executed);
    Ok(inspector.into_parity_builder().into_localized_transaction_traces(info))
}

/// Runs and commits the next transaction; its requested traces (the state diff against the state before it).
fn next_results(
    replay: &mut Replay,
    types: &HashSet<TraceType>,
    guard: &mut Guard,
) -> Result<(TraceResults, alloy_primitives::B256), TraceError> {
    let inspector = recording(TracingInspectorConfig::from_parity_config(types), guard);
    let (executed, (inspector, guard)) = replay.execute((inspector, guard))?;
    guard.record(inspector.recorded_bytes(), inspector.limit_exceeded());
    guard.check()?;
    let results = inspector
        .into_parity_builder()
        .into_trace_results_with_state(&executed.result, types, replay.db())
        .map_err(|e| TraceError::Failed(e.to_string()))?;
    let hash = executed.hash;
    replay.commit(executed);
    Ok((results, hash))
}

/// A recording inspector whose call inputs, memory and return data may take what the request's size cap
/// has left (past it, it records no more and says so).
fn recording(config: TracingInspectorConfig, guard: &Guard) -> TracingInspector {
    let budget =
        revm_inspectors::tracing::TraceLimits::default().set_max_recorded_bytes(Some(guard.remaining()));
    TracingInspector::new(config).with_limits(budget)
}

/// Where the transaction just run sits, as a located trace names it.
fn transaction_info(replay: &Replay) -> TransactionInfo {
    let place = replay.place();
    TransactionInfo {
        hash: place.tx_hash,
        index: Some(place.tx_index),
        block_hash: place.block_hash,
        block_number: Some(place.block_number),
        base_fee: replay.header.base_fee_per_gas,
        block_timestamp: Some(replay.header.timestamp),
    }
}

/// A proof-of-work block's reward to its miner (parity's `reward` trace; none from the merge on).
fn rewards(replay: &Replay) -> Result<Vec<LocalizedTransactionTrace>, TraceError> {
    let Some(base) = base_block_reward(replay.spec_id) else { return Ok(Vec::new()) };
    if replay.header.ommers_hash != alloy_consensus::EMPTY_OMMER_ROOT_HASH {
        // The reward grows by 1/32 per uncle and each uncle's miner has a trace of its own: both need the
        // uncle headers, which the log does not carry yet.
        return Err(TraceError::Failed(format!(
            "block {} has uncles, whose headers this replica does not record: its reward traces cannot be built",
            replay.block.number
        )));
    }
    let action =
        RewardAction { author: replay.header.beneficiary, reward_type: RewardType::Block, value: base };
    let at = BlockNumHash { number: replay.block.number, hash: replay.block.hash };
    Ok(vec![action.into_localized_trace(at)])
}

/// The proof-of-work block reward under `spec` (EIP-649 and EIP-1234 lowered it); none from the merge on.
pub fn base_block_reward(spec: SpecId) -> Option<U256> {
    const ETH: u128 = 1_000_000_000_000_000_000;
    let eth = if spec.is_enabled_in(SpecId::MERGE) {
        return None;
    } else if spec.is_enabled_in(SpecId::PETERSBURG) {
        2
    } else if spec.is_enabled_in(SpecId::BYZANTIUM) {
        3
    } else {
        5
    };
    Some(U256::from(eth * ETH))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_reward_table() {
        let eth = |n: u64| Some(U256::from(n) * U256::from(10u64).pow(U256::from(18)));
        for (spec, want) in [
            (SpecId::FRONTIER, eth(5)),
            (SpecId::HOMESTEAD, eth(5)),
            (SpecId::BYZANTIUM, eth(3)),
            (SpecId::PETERSBURG, eth(2)),
            (SpecId::LONDON, eth(2)),
            (SpecId::MERGE, None),
            (SpecId::PRAGUE, None),
        ] {
            assert_eq!(base_block_reward(spec), want, "{spec:?}");
        }
    }
}
