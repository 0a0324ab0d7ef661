//! Fee methods, from the stored headers and receipts: `eth_feeHistory` as the execution APIs define it, and
//! `eth_gasPrice` / `eth_maxPriorityFeePerGas` from a fixed suggested tip (anvil's convention; a percentile
//! oracle over recent blocks would follow geth instead).

use alloy_consensus::Header;
use alloy_eips::{eip1559::BaseFeeParams, eip4844::calc_blob_gasprice};
use alloy_primitives::U256;
use alloy_rlp::Decodable;
use ec_store::tables::StoredBlock;
use serde::Serialize;

/// The tip the replica suggests: 1 gwei.
pub const SUGGESTED_TIP: u128 = 1_000_000_000;

pub fn header(b: &StoredBlock) -> Result<Header, String> {
    Header::decode(&mut &b.header[..]).map_err(|e| format!("block {}: {e}", b.number))
}

/// The base fee of the block after `h` (EIP-1559).
pub fn next_base_fee(h: &Header) -> u128 {
    h.next_block_base_fee(BaseFeeParams::ethereum()).unwrap_or_default() as u128
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeHistory {
    pub oldest_block: alloy_primitives::U64,
    pub base_fee_per_gas: Vec<U256>,
    pub gas_used_ratio: Vec<f64>,
    pub base_fee_per_blob_gas: Vec<U256>,
    pub blob_gas_used_ratio: Vec<f64>,
    /// Empty when no percentiles were asked for (as anvil answers; geth leaves the field out).
    pub reward: Vec<Vec<U256>>,
}

/// Priority fees paid in `b` at each percentile of the block's gas (transactions sorted by tip).
fn rewards(b: &StoredBlock, h: &Header, percentiles: &[f64]) -> Vec<U256> {
    let base = h.base_fee_per_gas.unwrap_or_default() as u128;
    let mut tips: Vec<(u128, u64)> =
        b.receipts.iter().map(|r| (r.effective_gas_price.saturating_sub(base), r.gas_used)).collect();
    if tips.is_empty() {
        return vec![U256::ZERO; percentiles.len()];
    }
    tips.sort_unstable();
    let total: u64 = tips.iter().map(|t| t.1).sum();
    percentiles
        .iter()
        .map(|p| {
            let threshold = (total as f64 * p / 100.0) as u64;
            let mut cumulative = 0u64;
            let mut pick = tips[tips.len() - 1].0;
            for (tip, gas) in &tips {
                cumulative += gas;
                if cumulative >= threshold {
                    pick = *tip;
                    break;
                }
            }
            U256::from(pick)
        })
        .collect()
}

/// `blocks` oldest first; the last is the newest block of the history.
pub fn fee_history(blocks: &[StoredBlock], percentiles: Option<&[f64]>) -> Result<FeeHistory, String> {
    let mut out = FeeHistory {
        oldest_block: alloy_primitives::U64::from(blocks.first().map_or(0, |b| b.number)),
        base_fee_per_gas: Vec::new(),
        gas_used_ratio: Vec::new(),
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        reward: Vec::new(),
    };
    let mut last = None;
    for b in blocks {
        let h = header(b)?;
        out.base_fee_per_gas.push(U256::from(h.base_fee_per_gas.unwrap_or_default()));
        out.gas_used_ratio.push(if h.gas_limit == 0 { 0.0 } else { h.gas_used as f64 / h.gas_limit as f64 });
        out.base_fee_per_blob_gas.push(U256::from(calc_blob_gasprice(h.excess_blob_gas.unwrap_or_default())));
        out.blob_gas_used_ratio
            .push(h.blob_gas_used.unwrap_or_default() as f64 / MAX_BLOB_GAS_PER_BLOCK as f64);
        if let Some(p) = percentiles {
            out.reward.push(rewards(b, &h, p));
        }
        last = Some(h);
    }
    if let Some(h) = last {
        out.base_fee_per_gas.push(U256::from(next_base_fee(&h)));
        // The next block's blob base fee needs its excess blob gas, which follows from this block's.
        let next_excess = (h.excess_blob_gas.unwrap_or_default() + h.blob_gas_used.unwrap_or_default())
            .saturating_sub(TARGET_BLOB_GAS_PER_BLOCK);
        out.base_fee_per_blob_gas.push(U256::from(calc_blob_gasprice(next_excess)));
    }
    Ok(out)
}

/// Cancun's blob limits (EIP-4844); later forks raise them (EIP-7691, BPO forks).
const TARGET_BLOB_GAS_PER_BLOCK: u64 = 393_216;
const MAX_BLOB_GAS_PER_BLOCK: u64 = 786_432;
