//! `eth_simulateV1`: a chain of blocks simulated on top of a stored block, with state and block overrides,
//! as geth 1.17 simulates it (and as the execution-apis suite checks it).
//!
//! - [`plan`]: the blocks' numbers and times, the gaps filled, the limits (pure, table-tested).
//! - [`block`]: one block run on the shared state: its header from its parent and overrides, the state
//!   overrides (precompile moves included), the pre-block system calls, each call, the post-block system
//!   calls and withdrawals, then the block assembled with its roots and hash.
//! - [`calls`]: one call: its defaults, its unsigned transaction, its run, its result object.
//! - [`logs`]: the inspector that collects logs and transfer logs.
//! - [`precompiles`]: the per-block precompile set with moves and disabled addresses.
//!
//! The state root of every simulated block is exact: the changed accounts are laid over the stored trie
//! ([`ec_store::Proofs::state_root_with`]), so block hashes, parent hashes and every log's `blockHash` are
//! geth's. A replica without the state trie refuses the method rather than answer other hashes.

pub mod block;
pub mod calls;
pub mod logs;
pub mod plan;
pub mod precompiles;

use std::collections::HashMap;

use alloy_consensus::Header;
use alloy_primitives::{Address, B256, U256, U64};
use ec_store::StoreView;
use jsonrpsee::types::ErrorObjectOwned;
use serde::Deserialize;
use serde_json::Value;

use crate::evm::{AccountOverride, CallEnv, CallRequest};

/// At most this many blocks, counted from the base block (gaps included).
pub const MAX_BLOCKS: u64 = 256;
pub const MAX_CALLS_PER_BLOCK: usize = 5000;
pub const MAX_CALLS: usize = 10_000;

/// The first parameter of `eth_simulateV1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimulatePayload {
    #[serde(default)]
    pub block_state_calls: Vec<BlockStateCall>,
    #[serde(default)]
    pub trace_transfers: bool,
    #[serde(default)]
    pub validation: bool,
    #[serde(default)]
    pub return_full_transactions: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockStateCall {
    pub block_overrides: Option<SimBlockOverrides>,
    pub state_overrides: Option<HashMap<Address, AccountOverride>>,
    #[serde(default)]
    /// Each call is geth's transaction arguments, the call object `eth_call` takes.
    pub calls: Vec<CallRequest>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SimBlockOverrides {
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub number: Option<U64>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub difficulty: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub time: Option<U64>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub gas_limit: Option<U64>,
    pub fee_recipient: Option<Address>,
    pub prev_randao: Option<B256>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub base_fee_per_gas: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub blob_base_fee: Option<U256>,
    pub beacon_root: Option<B256>,
    pub withdrawals: Option<Vec<alloy_eips::eip4895::Withdrawal>>,
}

/// A whole-request error: geth's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub code: i32,
    pub message: String,
}

impl SimError {
    pub fn new(code: i32, message: impl Into<String>) -> Self {
        SimError { code, message: message.into() }
    }

    /// -32000: what geth answers for plain errors (overrides, defaults, storage).
    pub fn server(message: impl std::fmt::Display) -> Self {
        SimError::new(-32000, message.to_string())
    }
}

impl From<SimError> for ErrorObjectOwned {
    fn from(e: SimError) -> Self {
        ErrorObjectOwned::owned(e.code, e.message, None::<()>)
    }
}

/// Simulates `payload` on top of block `base` (its header), in `view`: one JSON object per simulated block.
pub fn simulate(
    view: &StoreView<'_>,
    base: &Header,
    base_hash: B256,
    payload: &SimulatePayload,
    env: &CallEnv,
) -> Result<Vec<Value>, SimError> {
    let asked: Vec<plan::Asked> = payload
        .block_state_calls
        .iter()
        .map(|b| plan::Asked {
            number: b.block_overrides.as_ref().and_then(|o| o.number).map(|n| n.to()),
            time: b.block_overrides.as_ref().and_then(|o| o.time).map(|t| t.to()),
            calls: b.calls.len(),
        })
        .collect();
    let planned = plan::plan(base.number, base.timestamp, &asked)?;
    let mut chain = block::SimChain::new(view, base, base_hash, payload, env);
    let empty = BlockStateCall::default();
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        let asked = p.request.map_or(&empty, |i| &payload.block_state_calls[i]);
        out.push(chain.run_block(p, asked)?);
    }
    Ok(out)
}
