//! The `debug_getRaw*` methods: a block's consensus encodings, from what the store holds.
//!
//! The store keeps each block's header RLP and each transaction's EIP-2718 encoding as the client produced
//! them, so those answer byte for byte (`debug_getRawTransaction` is the stored encoding itself, read in
//! `lib.rs`). A block's encoding also needs its ommers, which the log does not carry: a proof-of-work block
//! with uncles is refused with a clear error rather than answered wrong.

use alloy_consensus::{Block as ConsensusBlock, BlockBody, Header, TxEnvelope, EMPTY_OMMER_ROOT_HASH};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::Bytes;
use alloy_rlp::Decodable;
use ec_store::tables::StoredBlock;

/// `debug_getRawHeader`: the header's RLP.
pub fn header(b: &StoredBlock) -> Bytes {
    b.header.clone()
}

/// `debug_getRawBlock`: `rlp([header, transactions, ommers, withdrawals?])`.
pub fn block(b: &StoredBlock) -> Result<Bytes, String> {
    let header =
        Header::decode(&mut &b.header[..]).map_err(|e| format!("block {}: stored header: {e}", b.number))?;
    if header.ommers_hash != EMPTY_OMMER_ROOT_HASH {
        return Err(format!("block {} has uncles, which this replica does not hold", b.number));
    }
    let transactions = b
        .transactions
        .iter()
        .map(|t| TxEnvelope::decode_2718(&mut &t.encoded[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("block {}: stored transaction: {e}", b.number))?;
    let withdrawals = crate::convert::withdrawals(b);
    let block = ConsensusBlock { header, body: BlockBody { transactions, ommers: Vec::new(), withdrawals } };
    Ok(alloy_rlp::encode(&block).into())
}
