//! Stored blocks as the JSON the execution APIs return, built with alloy's RPC types so that the shape is the
//! one alloy-based clients (anvil, reth) produce.

use alloy_consensus::{
    Block as ConsensusBlock, BlockBody, Eip658Value, Header, Receipt, ReceiptEnvelope, ReceiptWithBloom,
    Transaction as _, TxEnvelope, TxType,
};
use alloy_eips::{
    eip2718::{Decodable2718, Typed2718},
    eip4895::{Withdrawal, Withdrawals},
};
use alloy_primitives::{keccak256, Address, Bloom, Bytes, Log as PrimLog, LogData, B256, U256};
use alloy_rlp::{Decodable, Encodable};
use alloy_rpc_types_eth::{
    Block, BlockTransactions, Header as RpcHeader, Log, Transaction, TransactionReceipt,
};
use ec_store::tables::{BlockTransaction, StoredBlock};

fn header(b: &StoredBlock) -> Result<Header, String> {
    decode_header(&b.header, b.number)
}

fn decode_header(rlp: &[u8], number: u64) -> Result<Header, String> {
    Header::decode(&mut &rlp[..]).map_err(|e| format!("block {number}: stored header: {e}"))
}

/// Which block a transaction or log belongs to, as its JSON names it.
#[derive(Debug, Clone, Copy)]
struct Place {
    hash: B256,
    number: u64,
    timestamp: u64,
}

impl Place {
    fn of(b: &StoredBlock) -> Self {
        Place { hash: b.hash, number: b.number, timestamp: b.timestamp }
    }

    fn of_tx(t: &BlockTransaction) -> Self {
        Place { hash: t.hash, number: t.number, timestamp: t.timestamp }
    }
}

fn envelopes(b: &StoredBlock) -> Result<Vec<TxEnvelope>, String> {
    b.transactions
        .iter()
        .map(|t| {
            TxEnvelope::decode_2718(&mut &t.encoded[..])
                .map_err(|e| format!("block {}: stored tx: {e}", b.number))
        })
        .collect()
}

pub(crate) fn withdrawals(b: &StoredBlock) -> Option<Withdrawals> {
    b.withdrawals.as_ref().map(|ws| {
        Withdrawals::new(
            ws.iter()
                .map(|w| Withdrawal {
                    index: w.index,
                    validator_index: w.validator_index,
                    address: w.address,
                    amount: w.amount_gwei,
                })
                .collect(),
        )
    })
}

/// One transaction of a stored block, as `eth_getTransactionByBlock*AndIndex` returns it.
pub fn transaction(b: &StoredBlock, index: usize) -> Result<Option<Transaction>, String> {
    let Some(stored) = b.transactions.get(index) else { return Ok(None) };
    one_transaction(stored, &b.header, Place::of(b), index).map(Some)
}

/// One transaction read alone, as `eth_getTransactionByHash` returns it.
pub fn transaction_of(t: &BlockTransaction) -> Result<Transaction, String> {
    one_transaction(&t.tx.transaction, &t.header, Place::of_tx(t), t.index)
}

/// Transaction `index` of the block at `at` (whose header RLP gives the base fee), as the RPC returns it.
fn one_transaction(
    stored: &ec_log::Transaction,
    header_rlp: &[u8],
    at: Place,
    index: usize,
) -> Result<Transaction, String> {
    let h = decode_header(header_rlp, at.number)?;
    let tx = TxEnvelope::decode_2718(&mut &stored.encoded[..]).map_err(|e| e.to_string())?;
    Ok(rpc_tx(tx, stored.sender, at, &h, index))
}

fn rpc_tx(
    tx: TxEnvelope,
    sender: alloy_primitives::Address,
    at: Place,
    h: &Header,
    index: usize,
) -> Transaction {
    let info = alloy_consensus::transaction::TransactionInfo {
        hash: Some(*tx.tx_hash()),
        index: Some(index as u64),
        block_hash: Some(at.hash),
        block_number: Some(at.number),
        base_fee: h.base_fee_per_gas,
        block_timestamp: Some(at.timestamp),
    };
    Transaction::from_transaction(alloy_consensus::transaction::Recovered::new_unchecked(tx, sender), info)
}

/// A stored block as `eth_getBlockBy*` returns it, with full transactions or their hashes. Typed, not a
/// `serde_json::Value`: the server serializes it once, with no tree of maps built and dropped per answer.
/// `ommers`: the block's uncle headers (RLP) as the log carried them (format 6; proof of work only): their
/// hashes are its `uncles`, and they count in its size.
pub fn block(b: &StoredBlock, full: bool, ommers: &[Bytes]) -> Result<Block, String> {
    let h = header(b)?;
    let txs = envelopes(b)?;
    let ws = withdrawals(b);
    let uncles: Vec<B256> = ommers.iter().map(keccak256).collect();
    let ommers = ommers
        .iter()
        .map(|o| Header::decode(&mut &o[..]))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("block {}: stored uncle header: {e}", b.number))?;
    // The block's size is the length of its RLP encoding, withdrawals list included, as geth and the
    // execution-apis conformance suite count it (anvil leaves the withdrawals out).
    let size = ConsensusBlock {
        header: h.clone(),
        body: BlockBody { transactions: txs.clone(), ommers, withdrawals: ws.clone() },
    }
    .length();
    let transactions = if full {
        BlockTransactions::Full(
            txs.into_iter()
                .zip(&b.transactions)
                .enumerate()
                .map(|(i, (tx, stored))| rpc_tx(tx, stored.sender, Place::of(b), &h, i))
                .collect(),
        )
    } else {
        BlockTransactions::Hashes(b.transactions.iter().map(|t| t.hash()).collect())
    };
    // No totalDifficulty: geth dropped the field after the merge, and the conformance suite expects none.
    Ok(Block {
        header: RpcHeader { hash: b.hash, inner: h, total_difficulty: None, size: Some(U256::from(size)) },
        uncles,
        transactions,
        withdrawals: ws,
    })
}

/// Uncle `index` of a block as `eth_getUncleBy*` returns it: the uncle's header as a block of its own, with no
/// transactions, uncles or withdrawals (as geth answers it); `None` past the last.
pub fn uncle(ommers: &[Bytes], index: usize) -> Result<Option<Block>, String> {
    let Some(rlp) = ommers.get(index) else { return Ok(None) };
    let h = Header::decode(&mut &rlp[..]).map_err(|e| format!("stored uncle header: {e}"))?;
    let size = ConsensusBlock::<TxEnvelope> {
        header: h.clone(),
        body: BlockBody { transactions: Vec::new(), ommers: Vec::new(), withdrawals: None },
    }
    .length();
    Ok(Some(Block {
        header: RpcHeader {
            hash: keccak256(rlp),
            inner: h,
            total_difficulty: None,
            size: Some(U256::from(size)),
        },
        uncles: Vec::new(),
        // No `transactions` field at all, as geth answers an uncle.
        transactions: BlockTransactions::Uncle,
        withdrawals: None,
    }))
}

/// The logs of a stored block that `keep` accepts (given each log's address and topics), in order, with
/// their positions in the block, as `eth_getLogs` returns them. Only the logs kept are built, and a
/// transaction's hash (a keccak256 of the whole transaction) is computed only for a transaction with a log
/// kept: a filtered scan of many blocks costs little for the blocks with nothing it wants.
pub fn logs_where(b: &StoredBlock, keep: impl Fn(&Address, &[B256]) -> bool) -> Vec<Log> {
    let mut log_index = 0u64;
    let mut out = Vec::new();
    for (i, (stored, r)) in b.transactions.iter().zip(&b.receipts).enumerate() {
        let mut hash = None;
        for l in &r.logs {
            if keep(&l.address, &l.topics) {
                let tx_hash = *hash.get_or_insert_with(|| stored.hash());
                out.push(rpc_log(Place::of(b), l, tx_hash, i, log_index));
            }
            log_index += 1;
        }
    }
    out
}

/// Every receipt of a stored block, as `eth_getBlockReceipts` returns them; `roots`: the block's receipt
/// roots before Byzantium (empty after), answered in place of a status as the chain has them.
pub fn receipts(b: &StoredBlock, roots: &[B256]) -> Result<Vec<TransactionReceipt>, String> {
    let mut out = Vec::with_capacity(b.transactions.len());
    let mut first_log_index = 0u64;
    for (i, stored) in b.transactions.iter().enumerate() {
        let r =
            b.receipts.get(i).ok_or_else(|| format!("block {}: no receipt for transaction {i}", b.number))?;
        out.push(receipt_json(Place::of(b), stored, r, i, first_log_index, roots.get(i).copied())?);
        first_log_index += r.logs.len() as u64;
    }
    Ok(out)
}

/// The receipt of one transaction read alone, as `eth_getTransactionReceipt` returns it (`root`: its state
/// root before Byzantium).
pub fn receipt_of(t: &BlockTransaction, root: Option<B256>) -> Result<TransactionReceipt, String> {
    receipt_json(Place::of_tx(t), &t.tx.transaction, &t.tx.receipt, t.index, t.tx.first_log_index, root)
}

/// One stored log as the RPC returns it, with its place: transaction `tx_index` (hash `tx_hash`) of block `at`,
/// `log_index` in the block.
fn rpc_log(at: Place, l: &ec_log::Log, tx_hash: B256, tx_index: usize, log_index: u64) -> Log {
    Log {
        inner: PrimLog { address: l.address, data: LogData::new_unchecked(l.topics.clone(), l.data.clone()) },
        block_hash: Some(at.hash),
        block_number: Some(at.number),
        block_timestamp: Some(at.timestamp),
        transaction_hash: Some(tx_hash),
        transaction_index: Some(tx_index as u64),
        log_index: Some(log_index),
        removed: false,
    }
}

fn receipt_json(
    at: Place,
    stored: &ec_log::Transaction,
    r: &ec_log::Receipt,
    i: usize,
    first_log_index: u64,
    root: Option<B256>,
) -> Result<TransactionReceipt, String> {
    let tx = TxEnvelope::decode_2718(&mut &stored.encoded[..])
        .map_err(|e| format!("block {}: stored tx: {e}", at.number))?;
    let hash = *tx.tx_hash();
    let logs: Vec<Log> =
        r.logs.iter().enumerate().map(|(k, l)| rpc_log(at, l, hash, i, first_log_index + k as u64)).collect();
    let mut bloom = Bloom::default();
    for l in &r.logs {
        bloom.accrue_raw_log(l.address, &l.topics);
    }
    let inner = ReceiptWithBloom {
        receipt: Receipt {
            status: root.map_or(Eip658Value::Eip658(r.success), Eip658Value::PostState),
            cumulative_gas_used: r.cumulative_gas_used,
            logs,
        },
        logs_bloom: bloom,
    };
    let envelope = match TxType::try_from(tx.ty()).unwrap_or(TxType::Legacy) {
        TxType::Legacy => ReceiptEnvelope::Legacy(inner),
        TxType::Eip2930 => ReceiptEnvelope::Eip2930(inner),
        TxType::Eip1559 => ReceiptEnvelope::Eip1559(inner),
        TxType::Eip4844 => ReceiptEnvelope::Eip4844(inner),
        TxType::Eip7702 => ReceiptEnvelope::Eip7702(inner),
    };
    let receipt = TransactionReceipt {
        inner: envelope,
        transaction_hash: hash,
        transaction_index: Some(i as u64),
        block_hash: Some(at.hash),
        block_number: Some(at.number),
        gas_used: r.gas_used,
        effective_gas_price: r.effective_gas_price,
        blob_gas_used: r.blob_gas_used,
        blob_gas_price: r.blob_gas_price,
        from: stored.sender,
        to: tx.to(),
        contract_address: r.contract_address,
    };
    // Without the block's timestamp, which clients built on alloy (anvil, reth) add and geth and the
    // conformance suite do not.
    Ok(receipt)
}
