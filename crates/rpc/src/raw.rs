//! The `debug_getRaw*` methods: a block's consensus encodings, from what the store holds.
//!
//! The store keeps each block's header RLP and each transaction's EIP-2718 encoding as the client produced
//! them, so those answer byte for byte (`debug_getRawTransaction` is the stored encoding itself, read in
//! `lib.rs`). A block's encoding also needs its ommers, which the log does not carry: a proof-of-work block
//! with uncles is refused with a clear error rather than answered wrong. Receipts are encoded from the
//! stored ones (status, cumulative gas, logs, bloom, the transaction's type); a receipt before Byzantium
//! holds an intermediate state root instead of a status, which the log does not carry either, so such a
//! block is refused too.

use alloy_consensus::{
    Block as ConsensusBlock, BlockBody, Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom,
    TxEnvelope, TxType, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::eip2718::{Decodable2718, Encodable2718};
use alloy_primitives::{Bytes, Log, LogData, B256};
use alloy_rlp::Decodable;
use ec_store::tables::StoredBlock;

/// `debug_getRawHeader`: the header's RLP.
pub fn header(b: &StoredBlock) -> Bytes {
    b.header.clone()
}

/// `debug_getRawBlock`: `rlp([header, transactions, ommers, withdrawals?])`; `ommers`: the uncle headers the
/// log carried (format 6).
pub fn block(b: &StoredBlock, ommers: &[Bytes]) -> Result<Bytes, String> {
    let header =
        Header::decode(&mut &b.header[..]).map_err(|e| format!("block {}: stored header: {e}", b.number))?;
    if header.ommers_hash != EMPTY_OMMER_ROOT_HASH && ommers.is_empty() {
        return Err(format!("block {} has uncles, which this replica does not hold", b.number));
    }
    let ommers = ommers
        .iter()
        .map(|o| Header::decode(&mut &o[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("block {}: stored uncle header: {e}", b.number))?;
    let transactions = b
        .transactions
        .iter()
        .map(|t| TxEnvelope::decode_2718(&mut &t.encoded[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("block {}: stored transaction: {e}", b.number))?;
    let withdrawals = crate::convert::withdrawals(b);
    let block = ConsensusBlock { header, body: BlockBody { transactions, ommers, withdrawals } };
    Ok(alloy_rlp::encode(&block).into())
}

/// `debug_getRawReceipts`: each receipt's EIP-2718 encoding, in order. `byzantium`: whether the block's rules
/// are Byzantium's or later (receipts with a status); before, `roots` are the receipts' state roots.
pub fn receipts(b: &StoredBlock, byzantium: bool, roots: &[B256]) -> Result<Vec<Bytes>, String> {
    if !byzantium && roots.len() != b.receipts.len() {
        return Err(format!(
            "block {} is before Byzantium: its receipts hold intermediate state roots, which this replica does \
             not hold (its log predates format 6)",
            b.number
        ));
    }
    b.transactions
        .iter()
        .zip(&b.receipts)
        .enumerate()
        .map(|(i, (t, r))| {
            // A typed transaction's encoding starts with its type; a legacy one with an RLP list header.
            let ty = match t.encoded.first() {
                Some(&byte) if byte < 0x7f => TxType::try_from(byte)
                    .map_err(|e| format!("block {}: stored transaction type {byte}: {e}", b.number))?,
                _ => TxType::Legacy,
            };
            let logs = r
                .logs
                .iter()
                .map(|l| Log {
                    address: l.address,
                    data: LogData::new_unchecked(l.topics.clone(), l.data.clone()),
                })
                .collect();
            let status = match roots.get(i) {
                Some(root) if !byzantium => Eip658Value::PostState(*root),
                _ => Eip658Value::Eip658(r.success),
            };
            let receipt = Receipt { status, cumulative_gas_used: r.cumulative_gas_used, logs };
            Ok(ReceiptEnvelope::from_typed(ty, ReceiptWithBloom::from(receipt)).encoded_2718().into())
        })
        .collect()
}
