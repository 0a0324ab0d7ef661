//! One canonical block from the client, as a log [`Block`]: header RLP, transactions, receipts, withdrawals
//! and the complete state change (traces, plus what no trace shows).

use std::time::{Duration, Instant};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{address, keccak256, Address, B256};
use alloy_rpc_types_trace::{common::TraceResult, geth::PreStateFrame};
use ec_log::{Block, Log, Receipt, Transaction, Withdrawal};
use thiserror::Error;

use crate::{
    diff::{self, Partials},
    rpc::{BlockId, RpcClient, RpcError},
};

/// How the block's state change is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// geth's `debug_traceBlockByNumber` with `prestateTracer` in diff mode: exact, including deletions.
    Prestate,
    /// parity's `trace_replayBlockTransactions` with `stateDiff`: linear and fast where served; unchanged
    /// fields are read from the client.
    StateDiff,
}

/// EIP-2935: every block writes its parent's hash into this contract; no transaction trace shows it.
pub const HISTORY_STORAGE: Address = address!("0000F90827F1C53a10cb7A02335B175320002935");
const HISTORY_SERVE_WINDOW: u64 = 8191;
/// EIP-4788: the beacon block root, written by a system call before the transactions.
pub const BEACON_ROOTS: Address = address!("000F3df6D732807Ef1319fB7B8bB8522d0Beac02");
const BEACON_ROOTS_BUFFER: u64 = 8191;
/// EIP-7002 and EIP-7251 request queues, dequeued by system calls after the transactions.
pub const WITHDRAWAL_REQUESTS: Address = address!("00000961Ef480Eb55e80D19ad83579A64c007002");
pub const CONSOLIDATION_REQUESTS: Address = address!("0000BBdDc7CE488642fb579F8B00f3a590007251");

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("block {number}: the header the client returned hashes to {computed}, not {claimed}")]
    HeaderHash { number: u64, computed: B256, claimed: B256 },
    #[error("block {number}: {reason}")]
    Inconsistent { number: u64, reason: String },
    #[error("block {number}: tracing transaction {tx:?} failed: {error}")]
    Trace { number: u64, tx: Option<B256>, error: String },
}

/// Time spent per phase, for metrics and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub fetch: Duration,
    pub trace: Duration,
}

pub async fn fetch_block(
    rpc: &RpcClient,
    number: u64,
    mode: TraceMode,
) -> Result<Option<(Block, Timings)>, FetchError> {
    let started = Instant::now();
    let Some(rpc_block) = rpc.block(BlockId::Number(number)).await? else { return Ok(None) };
    let inconsistent = |reason: String| FetchError::Inconsistent { number, reason };
    let header = rpc_block.header.inner.clone();
    let header_rlp = alloy_rlp::encode(&header);
    let computed = keccak256(&header_rlp);
    if computed != rpc_block.header.hash {
        return Err(FetchError::HeaderHash { number, computed, claimed: rpc_block.header.hash });
    }
    let mut transactions = Vec::new();
    for tx in rpc_block.transactions.clone().into_transactions() {
        transactions
            .push(Transaction { sender: tx.inner.signer(), encoded: tx.inner.inner().encoded_2718().into() });
    }
    let receipts = match rpc.block_receipts(number).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(inconsistent("eth_getBlockReceipts has no receipts for it".into())),
        // Clients without eth_getBlockReceipts: one call per transaction.
        Err(e) if e.is_unsupported() => {
            let mut out = Vec::with_capacity(transactions.len());
            for tx in &transactions {
                let r = rpc.transaction_receipt(tx.hash()).await?;
                out.push(r.ok_or_else(|| inconsistent(format!("no receipt for {}", tx.hash())))?);
            }
            out
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(r) = receipts.iter().find(|r| r.block_hash.is_some_and(|h| h != rpc_block.header.hash)) {
        // The chain changed between the two calls: receipts of another fork.
        return Err(inconsistent(format!(
            "a receipt belongs to block {:?}, not {}",
            r.block_hash, rpc_block.header.hash
        )));
    }
    if receipts.len() != transactions.len() {
        return Err(inconsistent(format!(
            "{} transactions but {} receipts",
            transactions.len(),
            receipts.len()
        )));
    }
    let receipts = receipts
        .iter()
        .map(|r| Receipt {
            success: r.inner.status(),
            cumulative_gas_used: r.inner.cumulative_gas_used(),
            gas_used: r.gas_used,
            effective_gas_price: r.effective_gas_price,
            blob_gas_used: r.blob_gas_used,
            blob_gas_price: r.blob_gas_price,
            contract_address: r.contract_address,
            logs: r
                .inner
                .logs()
                .iter()
                .map(|l| Log {
                    address: l.address(),
                    topics: l.topics().to_vec(),
                    data: l.data().data.clone(),
                })
                .collect(),
        })
        .collect();
    let withdrawals = rpc_block.withdrawals.as_ref().map(|ws| {
        ws.iter()
            .map(|w| Withdrawal {
                index: w.index,
                validator_index: w.validator_index,
                address: w.address,
                amount_gwei: w.amount,
            })
            .collect::<Vec<_>>()
    });
    let fetch = started.elapsed();

    let started = Instant::now();
    let mut partials = match mode {
        TraceMode::Prestate => {
            let results = rpc.prestate_diff(number).await?;
            let mut diffs = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    TraceResult::Success { result: PreStateFrame::Diff(d), .. } => diffs.push(d),
                    TraceResult::Success { tx_hash, .. } => {
                        return Err(FetchError::Trace {
                            number,
                            tx: tx_hash,
                            error: "not a diff-mode frame".into(),
                        })
                    }
                    TraceResult::Error { error, tx_hash } => {
                        return Err(FetchError::Trace { number, tx: tx_hash, error })
                    }
                }
            }
            if diffs.len() != transactions.len() {
                return Err(inconsistent(format!(
                    "{} traces for {} transactions",
                    diffs.len(),
                    transactions.len()
                )));
            }
            diff::merge_prestate(&diffs)
        }
        TraceMode::StateDiff => {
            let results = rpc.state_diff(number).await?;
            if results.len() != transactions.len() {
                return Err(inconsistent(format!(
                    "{} traces for {} transactions",
                    results.len(),
                    transactions.len()
                )));
            }
            let diffs: Vec<_> =
                results.iter().filter_map(|r| r.full_trace.state_diff.as_ref().map(|d| &d.0)).collect();
            diff::merge_state_diff(diffs)
        }
    };
    let trace = started.elapsed();

    // What no transaction trace shows: read the post-block values from the client.
    let started = Instant::now();
    let mut extra: Vec<(Address, Vec<B256>)> = Vec::new();
    for w in withdrawals.iter().flatten() {
        extra.push((w.address, Vec::new()));
    }
    if !header.difficulty.is_zero() {
        // Proof of work: block and uncle rewards.
        extra.push((header.beneficiary, Vec::new()));
        for index in 0..rpc_block.uncles.len() {
            if let Some(miner) = rpc.uncle_miner(number, index as u64).await? {
                extra.push((miner, Vec::new()));
            }
        }
    }
    if number > 0 && has_code(rpc, HISTORY_STORAGE, number).await? {
        extra.push((
            HISTORY_STORAGE,
            vec![B256::from(alloy_primitives::U256::from((number - 1) % HISTORY_SERVE_WINDOW))],
        ));
    }
    if has_code(rpc, BEACON_ROOTS, number).await? {
        let i = header.timestamp % BEACON_ROOTS_BUFFER;
        extra.push((BEACON_ROOTS, vec![slot(i), slot(i + BEACON_ROOTS_BUFFER)]));
    }
    for queue in [WITHDRAWAL_REQUESTS, CONSOLIDATION_REQUESTS] {
        if has_code(rpc, queue, number).await? {
            extra.push((queue, (0..4).map(slot).collect()));
        }
    }
    for (address, slots) in extra {
        let p = partials.entry(address).or_default();
        p.deleted = false;
        p.balance = Some(rpc.balance(address, number).await?);
        p.nonce = Some(rpc.nonce(address, number).await?);
        for s in slots {
            p.storage.insert(s, rpc.storage(address, s, number).await?);
        }
    }
    fill_unknown_accounts(rpc, number, &mut partials).await?;
    for (address, p) in partials.iter_mut() {
        if p.recheck_code && !p.deleted {
            p.code = Some(rpc.code(*address, number).await?);
        }
    }
    let fetch = fetch + started.elapsed();

    let block = Block {
        number,
        hash: rpc_block.header.hash,
        parent_hash: header.parent_hash,
        timestamp: header.timestamp,
        header: header_rlp.into(),
        transactions,
        receipts,
        withdrawals,
        state: diff::finish(partials),
    };
    Ok(Some((block, Timings { fetch, trace })))
}

fn slot(i: u64) -> B256 {
    B256::from(alloy_primitives::U256::from(i))
}

async fn has_code(rpc: &RpcClient, address: Address, number: u64) -> Result<bool, RpcError> {
    Ok(!rpc.code(address, number).await?.is_empty())
}

/// `stateDiff` leaves unchanged balances and nonces unsaid: read them at the block.
async fn fill_unknown_accounts(
    rpc: &RpcClient,
    number: u64,
    partials: &mut Partials,
) -> Result<(), RpcError> {
    for (address, p) in partials.iter_mut() {
        if p.needs_account() {
            if p.balance.is_none() {
                p.balance = Some(rpc.balance(*address, number).await?);
            }
            if p.nonce.is_none() {
                p.nonce = Some(rpc.nonce(*address, number).await?);
            }
        }
    }
    Ok(())
}
