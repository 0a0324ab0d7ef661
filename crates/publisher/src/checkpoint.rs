//! Starting a cluster at block N of a synced node: the checkpoint record.
//!
//! The record carries block N (header, transactions, receipts, withdrawals) and the hashes of the 256 blocks
//! before it, but not its state: that reaches replicas as a database built by `ether-cattle import-state` at
//! the same block, checked against the header's state root. Block N must be finalized (unless the operator
//! says otherwise): a checkpoint cannot be reverted, so a reorg below it would stop the cluster.

use alloy_primitives::B256;
use ec_chainspec::{ChainSpec, SpecError};
use ec_log::Checkpoint;
use thiserror::Error;

use crate::{
    fetch::{self, FetchError},
    rpc::{BlockId, RpcClient, RpcError},
};

/// How many ancestor hashes a checkpoint carries: the EVM's `BLOCKHASH` reaches 256 blocks back.
pub const ANCESTORS: u64 = 256;

#[derive(Debug, Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("the client has no block {0}")]
    NoBlock(u64),
    #[error(
        "block {number} is not finalized (the client's finalized block is {finalized:?}): a checkpoint cannot be \
         reverted, so a reorg below it would stop the cluster. Pick a finalized block, or pass \
         --allow-unfinalized-start on a chain that cannot reorg"
    )]
    NotFinalized { number: u64, finalized: Option<u64> },
    #[error(
        "block {number}'s ancestors changed while they were read (block {at} is not the parent of the next)"
    )]
    Ancestors { number: u64, at: u64 },
    #[error("the chain specification is for chain {spec}, the client serves chain {client}")]
    ChainId { spec: u64, client: u64 },
    #[error("block {number} is under rules this build does not implement: {source}")]
    Spec { number: u64, source: SpecError },
}

/// The checkpoint record of the client's block `number`.
pub async fn checkpoint_record(
    rpc: &RpcClient,
    spec: &ChainSpec,
    number: u64,
    allow_unfinalized: bool,
) -> Result<Checkpoint, CheckpointError> {
    let chain_id = rpc.chain_id().await?;
    if chain_id != spec.chain_id() {
        return Err(CheckpointError::ChainId { spec: spec.chain_id(), client: chain_id });
    }
    if !allow_unfinalized {
        let finalized = rpc.block_hash(BlockId::Finalized).await?.map(|(n, _)| n);
        if finalized.is_none_or(|f| f < number) {
            return Err(CheckpointError::NotFinalized { number, finalized });
        }
    }
    let body = fetch::fetch_body(rpc, number).await?.ok_or(CheckpointError::NoBlock(number))?;
    spec.check_supported(number, body.block.timestamp)
        .map_err(|source| CheckpointError::Spec { number, source })?;
    let (_, genesis_hash, genesis_timestamp) =
        rpc.block_summary(BlockId::Number(0)).await?.ok_or(CheckpointError::NoBlock(0))?;
    let ancestors = ancestors(rpc, number, body.block.parent_hash).await?;
    Ok(Checkpoint {
        chain_id,
        spec: spec.source(),
        genesis_hash,
        genesis_timestamp,
        block: body.block,
        ancestors,
    })
}

/// The hashes of the blocks before `number`, oldest first, checked to chain up to `parent`.
async fn ancestors(rpc: &RpcClient, number: u64, parent: B256) -> Result<Vec<B256>, CheckpointError> {
    let first = number.saturating_sub(ANCESTORS);
    let calls: Vec<(&'static str, serde_json::Value)> = (first..number)
        .map(|n| ("eth_getBlockByNumber", serde_json::json!([BlockId::Number(n).to_json(), false])))
        .collect();
    let mut hashes = Vec::with_capacity(calls.len());
    let mut parents = Vec::with_capacity(calls.len());
    // Batches of 100: some clients and providers cap a batch there (bor's default).
    let mut answers = Vec::with_capacity(calls.len());
    for chunk in calls.chunks(100) {
        answers.extend(rpc.batch(chunk).await?);
    }
    for (answer, n) in answers.into_iter().zip(first..number) {
        let block = answer?.as_object().cloned().ok_or(CheckpointError::NoBlock(n))?;
        let field = |name: &str| -> Result<B256, CheckpointError> {
            block.get(name).and_then(|v| serde_json::from_value(v.clone()).ok()).ok_or_else(|| {
                RpcError::Decode { method: "eth_getBlockByNumber", reason: format!("block {n}: no {name}") }
                    .into()
            })
        };
        hashes.push(field("hash")?);
        parents.push(field("parentHash")?);
    }
    // Each block's parent is the one before it, and the newest is block N's parent: one chain, read whole.
    for (i, pair) in hashes.windows(2).enumerate() {
        if parents[i + 1] != pair[0] {
            return Err(CheckpointError::Ancestors { number, at: first + i as u64 });
        }
    }
    if hashes.last().is_some_and(|h| *h != parent) {
        return Err(CheckpointError::Ancestors { number, at: number - 1 });
    }
    Ok(hashes)
}
