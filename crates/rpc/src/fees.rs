//! Fee methods, from the stored headers and receipts under the chain's rules (`ec-chainspec`):
//! `eth_feeHistory` as the execution APIs define it, the blob fees of EIP-4844/7691/7892/7918, and
//! `eth_gasPrice` / `eth_maxPriorityFeePerGas` from geth's gas price oracle ([`TipOracle`]).

use std::borrow::Borrow;

use alloy_consensus::Header;
use alloy_eips::eip7840::BlobParams;
use alloy_primitives::U256;
use alloy_rlp::Decodable;
use ec_chainspec::ChainSpec;
use ec_store::tables::StoredBlock;
use serde::Serialize;

pub fn header(b: &StoredBlock) -> Result<Header, String> {
    Header::decode(&mut &b.header[..]).map_err(|e| format!("block {}: {e}", b.number))
}

/// The base fee of the block after `h` (EIP-1559).
pub fn next_base_fee(spec: &ChainSpec, h: &Header) -> u128 {
    h.next_block_base_fee(spec.base_fee_params()).unwrap_or_default() as u128
}

/// The blob base fee of block `h` (what `BLOBBASEFEE` reads in it, and `eth_blobBaseFee` answers for the
/// head, as geth does); `None` before Cancun.
pub fn blob_base_fee(spec: &ChainSpec, h: &Header) -> Option<u128> {
    let params = spec.blob_params(h.timestamp)?;
    Some(params.calc_blob_fee(h.excess_blob_gas.unwrap_or_default()))
}

/// The blob base fee the block after `h` would have, priced under `h`'s blob parameters (geth's fee history
/// does the same: a fork boundary between the two is not looked ahead).
fn next_blob_base_fee(params: &BlobParams, h: &Header) -> u128 {
    let excess = params.next_block_excess_blob_gas_osaka(
        h.excess_blob_gas.unwrap_or_default(),
        h.blob_gas_used.unwrap_or_default(),
        h.base_fee_per_gas.unwrap_or_default(),
    );
    params.calc_blob_fee(excess)
}

/// geth's gas price oracle (`eth/gasprice`, with geth's defaults): the three lowest effective tips of each of
/// the newest 20 blocks (tips below 2 wei and the fee recipient's own transactions ignored; an empty block
/// counts the previous suggestion once, and a block with a single sample lets the search reach one block
/// further back), the 60th percentile of those, at most 500 gwei. The previous suggestion is kept per head,
/// as geth keeps it (`Ctx::suggested_tip`).
pub struct TipOracle;

impl TipOracle {
    pub const BLOCKS: usize = 20;
    pub const SAMPLES_PER_BLOCK: usize = 3;
    pub const PERCENTILE: usize = 60;
    pub const IGNORE_BELOW: u128 = 2;
    pub const MAX_PRICE: u128 = 500_000_000_000;
    /// The suggestion before any block has a sample: geth's default miner gas price (1 mwei).
    pub const START_PRICE: u128 = 1_000_000;

    /// The lowest tips of one block, as geth samples them.
    fn samples(b: &StoredBlock) -> Result<Vec<u128>, String> {
        let h = header(b)?;
        let base = h.base_fee_per_gas.unwrap_or_default() as u128;
        let mut tips: Vec<(u128, alloy_primitives::Address)> = b
            .receipts
            .iter()
            .zip(&b.transactions)
            .map(|(r, t)| (r.effective_gas_price.saturating_sub(base), t.sender))
            .collect();
        tips.sort_by_key(|t| t.0);
        Ok(tips
            .into_iter()
            .filter(|(tip, sender)| *tip >= Self::IGNORE_BELOW && *sender != h.beneficiary)
            .map(|(tip, _)| tip)
            .take(Self::SAMPLES_PER_BLOCK)
            .collect())
    }

    /// The suggested tip, from `blocks` newest first (up to twice [`Self::BLOCKS`] of them, for the
    /// single-sample extension), given the previous suggestion ([`Self::START_PRICE`] before any).
    pub fn suggest<B: Borrow<StoredBlock>>(blocks: &[B], last_price: u128) -> Result<u128, String> {
        let mut results = Vec::new();
        let mut taken = 0;
        let mut budget = Self::BLOCKS.min(blocks.len());
        while taken < budget {
            let mut values = Self::samples(blocks[taken].borrow())?;
            taken += 1;
            if values.is_empty() {
                values.push(last_price);
            }
            // geth fetches one more block for each block that gave a single sample, while the samples stay
            // under twice the block count.
            if values.len() == 1
                && results.len() + 1 + (budget - taken) < Self::BLOCKS * 2
                && budget < blocks.len()
            {
                budget += 1;
            }
            results.extend(values);
        }
        if results.is_empty() {
            return Ok(last_price);
        }
        results.sort_unstable();
        Ok(results[(results.len() - 1) * Self::PERCENTILE / 100].min(Self::MAX_PRICE))
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct FeeHistory {
    pub oldest_block: alloy_primitives::U64,
    pub base_fee_per_gas: Vec<U256>,
    #[serde(serialize_with = "go_floats")]
    pub gas_used_ratio: Vec<f64>,
    pub base_fee_per_blob_gas: Vec<U256>,
    #[serde(serialize_with = "go_floats")]
    pub blob_gas_used_ratio: Vec<f64>,
    /// Left out when no percentiles were asked for, or an empty list (as geth; anvil answers `[]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reward: Option<Vec<Vec<U256>>>,
}

/// Ratios as geth writes them (Go's encoding/json): a whole number without a fraction (`0`, `1`), where
/// serde_json would write `0.0`; a client reads both as the same number, but answers compare equal to geth's.
fn go_floats<S: serde::Serializer>(values: &[f64], s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeSeq;
    let mut seq = s.serialize_seq(Some(values.len()))?;
    for v in values {
        if v.fract() == 0.0 && v.abs() < 1e15 {
            seq.serialize_element(&(*v as i64))?;
        } else {
            seq.serialize_element(v)?;
        }
    }
    seq.end()
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
pub fn fee_history<B: Borrow<StoredBlock>>(
    spec: &ChainSpec,
    blocks: &[B],
    percentiles: Option<&[f64]>,
) -> Result<FeeHistory, String> {
    let mut out = FeeHistory {
        oldest_block: alloy_primitives::U64::from(blocks.first().map_or(0, |b| b.borrow().number)),
        base_fee_per_gas: Vec::new(),
        gas_used_ratio: Vec::new(),
        base_fee_per_blob_gas: Vec::new(),
        blob_gas_used_ratio: Vec::new(),
        reward: percentiles.filter(|p| !p.is_empty()).map(|_| Vec::new()),
    };
    let mut last = None;
    for b in blocks {
        let b: &StoredBlock = b.borrow();
        let h = header(b)?;
        out.base_fee_per_gas.push(U256::from(h.base_fee_per_gas.unwrap_or_default()));
        out.gas_used_ratio.push(if h.gas_limit == 0 { 0.0 } else { h.gas_used as f64 / h.gas_limit as f64 });
        // Before Cancun: zero fee and ratio, as geth answers.
        let params = spec.blob_params(h.timestamp);
        let fee = params.map_or(0, |p| p.calc_blob_fee(h.excess_blob_gas.unwrap_or_default()));
        out.base_fee_per_blob_gas.push(U256::from(fee));
        let max = params.map_or(0, |p| p.max_blob_gas_per_block());
        let used = h.blob_gas_used.unwrap_or_default();
        out.blob_gas_used_ratio.push(if max == 0 { 0.0 } else { used as f64 / max as f64 });
        if let (Some(p), Some(reward)) = (percentiles, out.reward.as_mut()) {
            reward.push(rewards(b, &h, p));
        }
        last = Some(h);
    }
    if let Some(h) = last {
        // The next block's base fee (none before London: geth answers 0).
        let next = if h.base_fee_per_gas.is_some() { next_base_fee(spec, &h) } else { 0 };
        out.base_fee_per_gas.push(U256::from(next));
        let next_blob = spec.blob_params(h.timestamp).map_or(0, |p| next_blob_base_fee(&p, &h));
        out.base_fee_per_blob_gas.push(U256::from(next_blob));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::Address;

    const MINER: Address = Address::repeat_byte(0xfe);
    const USER: Address = Address::repeat_byte(0x01);
    const GWEI: u128 = 1_000_000_000;

    #[test]
    fn ratios_are_written_as_go_writes_them() {
        let history = FeeHistory {
            oldest_block: alloy_primitives::U64::from(1),
            base_fee_per_gas: vec![],
            gas_used_ratio: vec![0.0, 1.0, 0.5, 0.0001, 1e-7],
            base_fee_per_blob_gas: vec![],
            blob_gas_used_ratio: vec![0.0],
            reward: None,
        };
        let json = serde_json::to_string(&history).expect("serializes");
        assert!(json.contains(r#""gasUsedRatio":[0,1,0.5,0.0001,1e-7]"#), "{json}");
        assert!(json.contains(r#""blobGasUsedRatio":[0]"#), "{json}");
    }

    /// A block with base fee 10 gwei whose transactions pay these tips (in wei), from these senders.
    fn block(number: u64, tips: &[(u128, Address)]) -> StoredBlock {
        let h = Header {
            number,
            base_fee_per_gas: Some(10 * GWEI as u64),
            beneficiary: MINER,
            ..Default::default()
        };
        let receipt = |tip: u128| ec_log::Receipt {
            success: true,
            cumulative_gas_used: 21_000,
            gas_used: 21_000,
            effective_gas_price: 10 * GWEI + tip,
            blob_gas_used: None,
            blob_gas_price: None,
            contract_address: None,
            logs: vec![],
        };
        StoredBlock {
            number,
            hash: Default::default(),
            parent_hash: Default::default(),
            timestamp: 0,
            header: alloy_rlp::encode(&h).into(),
            transactions: tips
                .iter()
                .map(|(_, s)| ec_log::Transaction { sender: *s, encoded: Default::default() })
                .collect(),
            receipts: tips.iter().map(|(t, _)| receipt(*t)).collect(),
            withdrawals: None,
        }
    }

    #[test]
    fn the_tip_oracle_answers_as_geths() {
        let u = |gwei: u128| (gwei * GWEI, USER);
        // (case, blocks newest first, suggestion)
        let cases: Vec<(&str, Vec<StoredBlock>, u128)> = vec![
            ("no blocks: the start price", vec![], TipOracle::START_PRICE),
            (
                "empty blocks count the start price",
                vec![block(2, &[]), block(1, &[])],
                TipOracle::START_PRICE,
            ),
            (
                // Samples 1,2,3 and 4,5,6 (the 3 lowest of each): the 60th percentile of six is index 3.
                "three lowest tips of each block, 60th percentile",
                vec![block(2, &[u(9), u(3), u(1), u(2)]), block(1, &[u(6), u(5), u(4)])],
                4 * GWEI,
            ),
            (
                "tips under 2 wei and the fee recipient's own are ignored",
                vec![block(1, &[(1, USER), (100 * GWEI, MINER), u(7)])],
                7 * GWEI,
            ),
            ("capped at 500 gwei", vec![block(1, &[u(900)])], TipOracle::MAX_PRICE),
        ];
        for (case, blocks, want) in cases {
            assert_eq!(TipOracle::suggest(&blocks, TipOracle::START_PRICE).unwrap(), want, "{case}");
        }
    }

    /// The blob base fee of a header under the parameters of its own time: the same excess prices
    /// differently under Cancun, Prague, BPO1 and BPO2 on mainnet (values from the EIP-4844 formula).
    #[test]
    fn blob_fees_follow_each_forks_update_fraction() {
        let mainnet = ChainSpec::named("mainnet").unwrap();
        let cases = [
            (1_710_338_134, 10_000_000, None), // before Cancun: no blob fee
            (1_710_338_135, 10_000_000, Some(19)),
            (1_746_612_311, 10_000_000, Some(7)),
            (1_765_290_071, 10_000_000, Some(3)),
            (1_767_747_671, 10_000_000, Some(2)),
            (1_710_338_135, 50_000_000, Some(3_194_333)),
            (1_767_747_671, 50_000_000, Some(72)),
        ];
        for (timestamp, excess, want) in cases {
            let h = Header { timestamp, excess_blob_gas: Some(excess), ..Default::default() };
            assert_eq!(blob_base_fee(&mainnet, &h), want, "at {timestamp}, excess {excess}");
        }
    }

    #[test]
    fn only_the_newest_blocks_are_sampled() {
        // 20 blocks of three 1 gwei tips, then older blocks of 100 gwei: the older ones are not read.
        let one = [(GWEI, USER); 3];
        let mut blocks: Vec<StoredBlock> = (0..20).map(|i| block(100 - i, &one)).collect();
        blocks.extend((0..20).map(|i| block(80 - i, &[(100 * GWEI, USER)])));
        assert_eq!(TipOracle::suggest(&blocks, TipOracle::START_PRICE).unwrap(), GWEI);
        // A block with a single sample lets the search read one block further back (geth's rule while the
        // samples stay under twice the block count): 20 single samples of 1 gwei pull in 20 older blocks.
        let mut blocks: Vec<StoredBlock> = (0..20).map(|i| block(100 - i, &[(GWEI, USER)])).collect();
        blocks.extend((0..20).map(|i| block(80 - i, &[(100 * GWEI, USER)])));
        assert_eq!(TipOracle::suggest(&blocks, TipOracle::START_PRICE).unwrap(), 100 * GWEI);
    }
}
