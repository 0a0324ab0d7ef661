//! Format 5's records that differ from this format's: a block without its receipt roots and uncle headers,
//! and the genesis and checkpoint records that hold one. Read only: a format-5 frame decodes through these
//! and becomes this format's record with both lists empty (what a format-5 publisher knew of them).

use alloy_primitives::{Bytes, B256};
use serde::Deserialize;

use crate::record::{self, AccountChange, ChainSpecSource, Receipt, Transaction, Withdrawal};

#[derive(Deserialize)]
pub(crate) struct Block {
    number: u64,
    hash: B256,
    parent_hash: B256,
    timestamp: u64,
    header: Bytes,
    transactions: Vec<Transaction>,
    receipts: Vec<Receipt>,
    withdrawals: Option<Vec<Withdrawal>>,
    state: Vec<AccountChange>,
}

impl From<Block> for record::Block {
    fn from(b: Block) -> Self {
        record::Block {
            number: b.number,
            hash: b.hash,
            parent_hash: b.parent_hash,
            timestamp: b.timestamp,
            header: b.header,
            transactions: b.transactions,
            receipts: b.receipts,
            withdrawals: b.withdrawals,
            state: b.state,
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct Genesis {
    chain_id: u64,
    spec: ChainSpecSource,
    block: Block,
}

impl From<Genesis> for record::Genesis {
    fn from(g: Genesis) -> Self {
        record::Genesis { chain_id: g.chain_id, spec: g.spec, block: g.block.into() }
    }
}

#[derive(Deserialize)]
pub(crate) struct Checkpoint {
    chain_id: u64,
    spec: ChainSpecSource,
    genesis_hash: B256,
    genesis_timestamp: u64,
    block: Block,
    ancestors: Vec<B256>,
}

impl From<Checkpoint> for record::Checkpoint {
    fn from(c: Checkpoint) -> Self {
        record::Checkpoint {
            chain_id: c.chain_id,
            spec: c.spec,
            genesis_hash: c.genesis_hash,
            genesis_timestamp: c.genesis_timestamp,
            block: c.block.into(),
            ancestors: c.ancestors,
        }
    }
}
