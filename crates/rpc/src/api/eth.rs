//! The `eth` namespace: the chain, account state, blocks, transactions and receipts, fees, logs, the EVM
//! (`eth_call`, `eth_estimateGas`, `eth_createAccessList`), relaying raw transactions to the publisher, and
//! subscriptions.
//!
//! Point reads (state, blocks, fees) run in place on the server's workers; log scans and the EVM run in
//! place for a short budget and then on their own bounded pools ([`crate::ctx::Class`]).

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
};

use alloy_primitives::{Address, Bytes, B256, U256, U64};
use alloy_rpc_types_eth::{Block as RpcBlock, Log, Transaction as RpcTx, TransactionReceipt as RpcReceipt};
use ec_store::Reads;
use jsonrpsee::{core::SubscriptionResult, proc_macros::rpc, PendingSubscriptionSink};
use serde_json::Value;

use crate::proof::Source;
use crate::{
    block_id::BlockSpec,
    convert,
    ctx::{on_evm_pool, on_evm_thread, Class, Ctx, Req},
    error::{invalid_params, reverted, server_error, RpcResult},
    evm::{self, AccountOverride, BlockOverrides, CallRequest},
    fees, filters, logs,
    params::{BlockCount, Hash, Quantity, StorageKey},
    send_tx,
    simulate::{self, SimulatePayload},
    subscriptions,
};

/// Most storage keys one `eth_getStorageValues` request may ask for.
const MAX_STORAGE_VALUES: usize = 1024;

/// Most blocks one `eth_feeHistory` request covers (geth's cap).
const MAX_FEE_HISTORY_BLOCKS: u64 = 1024;

#[rpc(server, namespace = "eth")]
pub trait EthApi {
    // --- The chain.
    #[method(name = "chainId")]
    fn chain_id(&self) -> RpcResult<U64>;

    #[method(name = "blockNumber")]
    fn block_number(&self) -> RpcResult<U64>;

    /// Always `false`: a replica serves only once it has caught up with its topic.
    #[method(name = "syncing")]
    fn syncing(&self) -> RpcResult<bool>;

    /// What this replica holds: its head and, per resource, the oldest block it answers for.
    #[method(name = "capabilities")]
    fn capabilities(&self) -> RpcResult<Value>;

    /// EIP-7910, from the chain specification of the genesis record.
    #[method(name = "config")]
    fn config(&self) -> RpcResult<Value>;

    // --- Account state at any block the replica holds.
    #[method(name = "getBalance")]
    fn get_balance(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<U256>;

    #[method(name = "getTransactionCount")]
    fn get_transaction_count(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<U64>;

    #[method(name = "getCode")]
    fn get_code(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<Bytes>;

    #[method(name = "getStorageAt")]
    fn get_storage_at(&self, address: Address, slot: StorageKey, block: Option<BlockSpec>)
        -> RpcResult<B256>;

    /// EIP-1186: the account's and the slots' Merkle proofs at a block within the proof window.
    #[method(name = "getProof")]
    async fn get_proof(
        &self,
        address: Address,
        keys: Vec<String>,
        block: Option<BlockSpec>,
    ) -> RpcResult<Value>;

    /// Many slots of many accounts at one block; the answer is keyed by the addresses as the request spells
    /// them.
    #[method(name = "getStorageValues")]
    fn get_storage_values(
        &self,
        request: BTreeMap<String, Vec<StorageKey>>,
        block: Option<BlockSpec>,
    ) -> RpcResult<BTreeMap<String, Vec<B256>>>;

    // --- Blocks.
    #[method(name = "getBlockByNumber")]
    fn get_block_by_number(
        &self,
        block: Option<BlockSpec>,
        full: Option<bool>,
    ) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "getBlockByHash")]
    fn get_block_by_hash(&self, block: Option<BlockSpec>, full: Option<bool>) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "getBlockTransactionCountByNumber")]
    fn get_block_transaction_count_by_number(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>>;

    #[method(name = "getBlockTransactionCountByHash")]
    fn get_block_transaction_count_by_hash(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>>;

    /// The log carries no ommers: post-merge blocks have none.
    #[method(name = "getUncleCountByBlockNumber")]
    fn get_uncle_count_by_block_number(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>>;

    #[method(name = "getUncleCountByBlockHash")]
    fn get_uncle_count_by_block_hash(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>>;

    #[method(name = "getUncleByBlockNumberAndIndex")]
    fn get_uncle_by_block_number_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "getUncleByBlockHashAndIndex")]
    fn get_uncle_by_block_hash_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcBlock>>;

    #[method(name = "getBlockReceipts")]
    fn get_block_receipts(&self, block: Option<BlockSpec>) -> RpcResult<Option<Vec<RpcReceipt>>>;

    // --- Transactions and receipts.
    #[method(name = "getTransactionByBlockNumberAndIndex")]
    fn get_transaction_by_block_number_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcTx>>;

    #[method(name = "getTransactionByBlockHashAndIndex")]
    fn get_transaction_by_block_hash_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcTx>>;

    #[method(name = "getTransactionByHash")]
    fn get_transaction_by_hash(&self, hash: Hash) -> RpcResult<Option<RpcTx>>;

    #[method(name = "getTransactionReceipt")]
    fn get_transaction_receipt(&self, hash: Hash) -> RpcResult<Option<RpcReceipt>>;

    // --- Fees.
    /// The suggested tip: geth's oracle over the newest blocks (up to twice its 20, see fees::TipOracle).
    #[method(name = "maxPriorityFeePerGas")]
    fn max_priority_fee_per_gas(&self) -> RpcResult<U256>;

    /// The suggested tip plus the head's base fee, as geth answers.
    #[method(name = "gasPrice")]
    fn gas_price(&self) -> RpcResult<U256>;

    /// The next block's base fee (none before London).
    #[method(name = "baseFee")]
    fn base_fee(&self) -> RpcResult<Option<U256>>;

    /// The head's blob base fee under the head's blob parameters, as geth answers.
    #[method(name = "blobBaseFee")]
    fn blob_base_fee(&self) -> RpcResult<U256>;

    #[method(name = "feeHistory")]
    fn fee_history(
        &self,
        count: BlockCount,
        newest: Option<BlockSpec>,
        percentiles: Option<Vec<f64>>,
    ) -> RpcResult<fees::FeeHistory>;

    // --- Logs.
    #[method(name = "getLogs")]
    async fn get_logs(&self, filter: logs::Filter) -> RpcResult<Vec<Log>>;

    // --- Polling filters (crate::filters): a cursor in a store every replica shares.
    #[method(name = "newFilter")]
    async fn new_filter(&self, criteria: Value) -> RpcResult<String>;

    #[method(name = "newBlockFilter")]
    async fn new_block_filter(&self) -> RpcResult<String>;

    /// A real filter whose changes are always empty: pending transactions live in the upstream's pool.
    #[method(name = "newPendingTransactionFilter")]
    async fn new_pending_transaction_filter(&self) -> RpcResult<String>;

    #[method(name = "getFilterChanges")]
    async fn get_filter_changes(&self, id: String) -> RpcResult<Value>;

    #[method(name = "getFilterLogs")]
    async fn get_filter_logs(&self, id: String) -> RpcResult<Vec<Log>>;

    #[method(name = "uninstallFilter")]
    async fn uninstall_filter(&self, id: String) -> RpcResult<bool>;

    /// `newHeads`, or `logs` with an optional filter.
    #[subscription(name = "subscribe" => "subscription", unsubscribe = "unsubscribe", item = Value)]
    async fn subscribe(&self, kind: String, filter: Option<Value>) -> SubscriptionResult;

    // --- The EVM.
    #[method(name = "call")]
    async fn call(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<Bytes>;

    #[method(name = "estimateGas")]
    async fn estimate_gas(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<U64>;

    #[method(name = "createAccessList")]
    async fn create_access_list(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<Value>;

    /// A chain of blocks simulated on top of `block` (`crate::simulate`).
    #[method(name = "simulateV1")]
    async fn simulate_v1(&self, payload: SimulatePayload, block: Option<BlockSpec>) -> RpcResult<Vec<Value>>;

    // --- Relaying.
    /// Checked against the replica's state, then queued on the cluster's transaction topic for the
    /// publisher to hand to its client.
    #[method(name = "sendRawTransaction")]
    async fn send_raw_transaction(&self, raw: Bytes) -> RpcResult<B256>;

    /// EIP-7966: relayed as `eth_sendRawTransaction`, then its receipt once this replica holds the block
    /// that mined it, or code 4 (with the hash) when the timeout passes first.
    #[method(name = "sendRawTransactionSync")]
    async fn send_raw_transaction_sync(
        &self,
        raw: Bytes,
        timeout_ms: Option<BlockCount>,
    ) -> RpcResult<RpcReceipt>;
}

pub struct Eth(pub Arc<Ctx>);

/// How often `eth_sendRawTransactionSync` looks for its receipt.
const TX_SYNC_POLL: std::time::Duration = std::time::Duration::from_millis(50);

impl Eth {
    /// Decodes and checks a raw transaction against the replica's state (nonce, funds, intrinsic gas, a blob
    /// transaction's sidecar under the head's blob schedule), then queues it, unchanged, on the cluster's
    /// transaction topic for the publisher to hand to its client. Its hash.
    async fn relay(&self, raw: Bytes) -> RpcResult<B256> {
        let c = &self.0;
        let decoded = send_tx::decode(&raw, c.chain_id()?).map_err(server_error)?;
        let spec = c.chain_spec()?;
        let sender = decoded.sender;
        // The head's time only for a blob transaction (its blob schedule): other relays read no block.
        let blobs = decoded.tx.is_eip4844();
        let (account, head_time) = c
            .on_pool(Class::Read, move |r| {
                let account = r.view.account(&sender).map_err(server_error)?;
                let head_time = if blobs { Some(Self::latest_header(r)?.timestamp) } else { None };
                Ok((account, head_time))
            })
            .await?;
        if let Some(time) = head_time {
            let max_blobs = spec.blob_params(time).map(|p| p.max_blobs_per_tx.min(p.max_blob_count));
            send_tx::check_blobs(&decoded.tx, max_blobs).map_err(server_error)?;
        }
        let (nonce, balance) = account.map_or((0, U256::ZERO), |a| (a.nonce, a.balance));
        send_tx::check(&decoded, nonce, balance).map_err(server_error)?;
        let producer =
            c.tx_producer.as_ref().ok_or_else(|| server_error("this replica relays no transactions"))?;
        producer.send(&raw).await.map_err(|e| server_error(format!("cannot queue the transaction: {e}")))?;
        tracing::info!(hash = %decoded.hash, sender = %decoded.sender, "transaction queued for the publisher");
        Ok(decoded.hash)
    }

    /// One request's view of the store.
    fn req(&self) -> Req<'_> {
        Req::new(&self.0)
    }

    /// The block number a block parameter names, and the view it was resolved in.
    fn at(&self, block: Option<BlockSpec>) -> RpcResult<(Req<'_>, u64)> {
        let r = self.req();
        let n = r.resolve(block.unwrap_or_default())?;
        Ok((r, n))
    }

    fn block(&self, block: Option<BlockSpec>) -> RpcResult<Option<Arc<ec_store::tables::StoredBlock>>> {
        self.req().find_block(block.unwrap_or_default())
    }

    fn transaction_by_block_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcTx>> {
        let Some(b) = self.block(block)? else { return Ok(None) };
        convert::transaction(&b, index.0 as usize).map_err(server_error)
    }

    /// Block `b`'s uncle headers (RLP), from log format 6: none for a block without uncles; an error for a
    /// block with uncles whose log predates them (rather than a wrong "none").
    fn uncles(&self, b: &ec_store::tables::StoredBlock) -> RpcResult<Vec<Bytes>> {
        let header = fees::header(b).map_err(server_error)?;
        if header.ommers_hash == alloy_consensus::EMPTY_OMMER_ROOT_HASH {
            return Ok(Vec::new());
        }
        let ommers = self.req().extras(&b.hash)?.ommers;
        if ommers.is_empty() {
            return Err(server_error(format!(
                "block {} has uncles, which this replica does not hold",
                b.number
            )));
        }
        Ok(ommers)
    }

    fn latest_header(r: &Req) -> RpcResult<alloy_consensus::Header> {
        let n = r.resolve(BlockSpec::Latest)?;
        let b = r.canonical_block(n)?.ok_or_else(|| server_error("no blocks yet"))?;
        fees::header(&b).map_err(server_error)
    }

    /// geth's tip oracle over the newest blocks, reused while the head is the same.
    fn suggested_tip(r: &Req) -> RpcResult<u128> {
        let head = r.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        let last = *r.last_tip.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, price)) = last.filter(|(hash, _)| *hash == head.hash) {
            return Ok(price);
        }
        let mut blocks = Vec::new();
        for n in (1..=head.number).rev().take(fees::TipOracle::BLOCKS * 2) {
            blocks.extend(r.canonical_block(n)?);
        }
        let last_price = last.map_or(fees::TipOracle::START_PRICE, |(_, p)| p);
        let price = fees::TipOracle::suggest(&blocks, last_price).map_err(server_error)?;
        *r.last_tip.lock().unwrap_or_else(|e| e.into_inner()) = Some((head.hash, price));
        Ok(price)
    }
}

/// The state and block overrides of a call.
fn overrides(
    state: Option<HashMap<Address, AccountOverride>>,
    block: Option<BlockOverrides>,
) -> evm::Overrides {
    evm::Overrides { state, block }
}

#[jsonrpsee::core::async_trait]
impl EthApiServer for Eth {
    fn chain_id(&self) -> RpcResult<U64> {
        self.0.chain_id().map(U64::from)
    }

    fn block_number(&self) -> RpcResult<U64> {
        self.req().resolve(BlockSpec::Latest).map(U64::from)
    }

    fn syncing(&self) -> RpcResult<bool> {
        Ok(false)
    }

    /// Blocks, transactions, receipts and logs from the first block (0, or the checkpoint the cluster
    /// started at; nothing is pruned after it); state from the oldest block the history window keeps; proofs
    /// within the proof window of the head, when the replica keeps the state trie.
    fn capabilities(&self) -> RpcResult<Value> {
        let r = self.req();
        let head = r.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        let first = r.first_block()?;
        let state = self.0.store.first_state_block().max(first);
        let held = |oldest: u64| serde_json::json!({"disabled": false, "oldestBlock": U64::from(oldest)});
        let proofs = match r.view.trie_head().map_err(server_error)? {
            Some(_) => held(state.max(head.number.saturating_sub(self.0.limits.proof_window))),
            None => serde_json::json!({"disabled": true}),
        };
        Ok(serde_json::json!({
            "head": {"number": U64::from(head.number), "hash": head.hash},
            "state": held(state),
            "tx": held(first),
            "logs": held(first),
            "receipts": held(first),
            "blocks": held(first),
            "stateproofs": proofs,
        }))
    }

    fn config(&self) -> RpcResult<Value> {
        let r = self.req();
        let spec = r.chain_spec()?;
        let chain = r.view.chain().map_err(server_error)?.ok_or_else(|| server_error("no genesis yet"))?;
        Ok(spec.eth_config(chain.genesis_hash, chain.genesis_timestamp, Self::latest_header(&r)?.timestamp))
    }

    fn get_balance(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<U256> {
        let (r, n) = self.at(block)?;
        Ok(r.view.account_at(&address, n).map_err(server_error)?.map_or(U256::ZERO, |a| a.balance))
    }

    fn get_transaction_count(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<U64> {
        let (r, n) = self.at(block)?;
        Ok(U64::from(r.view.account_at(&address, n).map_err(server_error)?.map_or(0, |a| a.nonce)))
    }

    fn get_code(&self, address: Address, block: Option<BlockSpec>) -> RpcResult<Bytes> {
        let (r, n) = self.at(block)?;
        let Some(account) = r.view.account_at(&address, n).map_err(server_error)? else {
            return Ok(Bytes::new());
        };
        Ok(r.view.code(&account.code_hash).map_err(server_error)?.unwrap_or_default())
    }

    fn get_storage_at(
        &self,
        address: Address,
        slot: StorageKey,
        block: Option<BlockSpec>,
    ) -> RpcResult<B256> {
        let (r, n) = self.at(block)?;
        r.view.storage_at(&address, &slot.0, n).map_err(server_error)
    }

    /// At the head a proof is a walk down the stored nodes (well under a millisecond): in place. Below it,
    /// from the trie's recent past when the store holds the blocks since (about as fast): in place too.
    /// Else it is walked over every key changed since laid at its value then, which grows with the blocks
    /// between (6 s at head-100 on the mainnet-shaped state, docs/benchmarks.md): on the trace pool, so that
    /// a few such requests wait their turn instead of holding the server's workers.
    async fn get_proof(
        &self,
        address: Address,
        keys: Vec<String>,
        block: Option<BlockSpec>,
    ) -> RpcResult<Value> {
        let window = self.0.limits.proof_window;
        let r = self.req();
        let number = r.resolve(block.unwrap_or_default())?;
        let at = Some(BlockSpec::Number(number));
        if let Some(found) = crate::proof::get_proof(&r, window, address, &keys, at, Source::Fast)? {
            return Ok(found);
        }
        drop(r);
        let walked = self
            .0
            .on_pool(Class::Trace, move |r| {
                crate::proof::get_proof(r, window, address, &keys, at, Source::Any)
            })
            .await?;
        walked.ok_or_else(|| server_error("no proof"))
    }

    fn get_storage_values(
        &self,
        request: BTreeMap<String, Vec<StorageKey>>,
        block: Option<BlockSpec>,
    ) -> RpcResult<BTreeMap<String, Vec<B256>>> {
        if request.is_empty() {
            return Err(invalid_params("empty request"));
        }
        let keys: usize = request.values().map(Vec::len).sum();
        if keys > MAX_STORAGE_VALUES {
            return Err(invalid_params(format!(
                "too many storage keys: {keys}, at most {MAX_STORAGE_VALUES}"
            )));
        }
        let (r, n) = self.at(block)?;
        let mut out = BTreeMap::new();
        for (spelled, slots) in request {
            let address: Address =
                spelled.parse().map_err(|e| invalid_params(format!("address {spelled}: {e}")))?;
            let values = slots
                .iter()
                .map(|slot| r.view.storage_at(&address, &slot.0, n).map_err(server_error))
                .collect::<RpcResult<Vec<_>>>()?;
            out.insert(spelled, values);
        }
        Ok(out)
    }

    fn get_block_by_number(
        &self,
        block: Option<BlockSpec>,
        full: Option<bool>,
    ) -> RpcResult<Option<RpcBlock>> {
        let Some(b) = self.block(block)? else { return Ok(None) };
        let ommers = self.req().extras(&b.hash)?.ommers;
        convert::block(&b, full.unwrap_or(false), &ommers).map(Some).map_err(server_error)
    }

    fn get_block_by_hash(&self, block: Option<BlockSpec>, full: Option<bool>) -> RpcResult<Option<RpcBlock>> {
        self.get_block_by_number(block, full)
    }

    fn get_block_transaction_count_by_number(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>> {
        Ok(self.block(block)?.map(|b| U64::from(b.transactions.len())))
    }

    fn get_block_transaction_count_by_hash(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>> {
        self.get_block_transaction_count_by_number(block)
    }

    /// From the uncle headers the log carried (format 6); a proof-of-work block with uncles whose log predates
    /// them answers an error rather than a wrong zero.
    fn get_uncle_count_by_block_number(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>> {
        let Some(b) = self.block(block)? else { return Ok(None) };
        Ok(Some(U64::from(self.uncles(&b)?.len())))
    }

    fn get_uncle_count_by_block_hash(&self, block: Option<BlockSpec>) -> RpcResult<Option<U64>> {
        self.get_uncle_count_by_block_number(block)
    }

    /// From the uncle headers the log carried (format 6), as the count above.
    fn get_uncle_by_block_number_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcBlock>> {
        let Some(b) = self.block(block)? else { return Ok(None) };
        convert::uncle(&self.uncles(&b)?, index.0 as usize).map_err(server_error)
    }

    fn get_uncle_by_block_hash_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcBlock>> {
        self.get_uncle_by_block_number_and_index(block, index)
    }

    fn get_block_receipts(&self, block: Option<BlockSpec>) -> RpcResult<Option<Vec<RpcReceipt>>> {
        let Some(b) = self.block(block)? else { return Ok(None) };
        let roots = self.req().extras(&b.hash)?.receipt_roots;
        convert::receipts(&b, &roots).map(Some).map_err(server_error)
    }

    fn get_transaction_by_block_number_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcTx>> {
        self.transaction_by_block_and_index(block, index)
    }

    fn get_transaction_by_block_hash_and_index(
        &self,
        block: Option<BlockSpec>,
        index: Quantity,
    ) -> RpcResult<Option<RpcTx>> {
        self.transaction_by_block_and_index(block, index)
    }

    fn get_transaction_by_hash(&self, hash: Hash) -> RpcResult<Option<RpcTx>> {
        let Some(t) = self.req().tx_by_hash(&hash.0)? else { return Ok(None) };
        convert::transaction_of(&t).map(Some).map_err(server_error)
    }

    fn get_transaction_receipt(&self, hash: Hash) -> RpcResult<Option<RpcReceipt>> {
        let r = self.req();
        let Some(t) = r.tx_by_hash(&hash.0)? else { return Ok(None) };
        let root = r.extras(&t.hash)?.receipt_roots.get(t.index).copied();
        convert::receipt_of(&t, root).map(Some).map_err(server_error)
    }

    fn max_priority_fee_per_gas(&self) -> RpcResult<U256> {
        Ok(U256::from(Self::suggested_tip(&self.req())?))
    }

    fn gas_price(&self) -> RpcResult<U256> {
        let r = self.req();
        let base = Self::latest_header(&r)?.base_fee_per_gas.unwrap_or_default() as u128;
        Ok(U256::from(Self::suggested_tip(&r)? + base))
    }

    fn base_fee(&self) -> RpcResult<Option<U256>> {
        let r = self.req();
        let (h, spec) = (Self::latest_header(&r)?, r.chain_spec()?);
        Ok(h.base_fee_per_gas.map(|_| U256::from(fees::next_base_fee(&spec, &h))))
    }

    fn blob_base_fee(&self) -> RpcResult<U256> {
        let r = self.req();
        let h = Self::latest_header(&r)?;
        let fee = fees::blob_base_fee(r.chain_spec()?.as_ref(), &h)
            .ok_or_else(|| server_error("blob base fee is not available before Cancun"))?;
        Ok(U256::from(fee))
    }

    fn fee_history(
        &self,
        count: BlockCount,
        newest: Option<BlockSpec>,
        percentiles: Option<Vec<f64>>,
    ) -> RpcResult<fees::FeeHistory> {
        let count = count.0.min(MAX_FEE_HISTORY_BLOCKS);
        let (r, newest) = self.at(newest)?;
        // geth's checks and words (-32000), each percentile in 0..=100 and above the one before.
        for (i, p) in percentiles.iter().flatten().enumerate() {
            if !(0.0..=100.0).contains(p) {
                return Err(server_error(format!("invalid reward percentile: {p:.6}")));
            }
            if let Some(before) = i.checked_sub(1).and_then(|b| percentiles.as_ref().map(|ps| ps[b])) {
                if *p <= before {
                    let msg = format!("invalid reward percentile: #{}:{before:.6} >= #{i}:{p:.6}", i - 1);
                    return Err(server_error(msg));
                }
            }
        }
        let oldest = (newest + 1).saturating_sub(count);
        let mut blocks = Vec::new();
        for n in oldest..=newest {
            blocks.extend(r.canonical_block(n)?);
        }
        fees::fee_history(r.chain_spec()?.as_ref(), &blocks, percentiles.as_deref()).map_err(server_error)
    }

    async fn get_logs(&self, filter: logs::Filter) -> RpcResult<Vec<Log>> {
        // As the EVM: in place for a short budget (most filtered queries), else again on the logs pool.
        let budget = std::time::Instant::now() + crate::ctx::INLINE_BUDGET;
        if let Some(found) = logs::get_logs(&self.req(), &filter, Some(budget))? {
            return Ok(found);
        }
        self.0
            .on_pool(Class::Logs, move |r| logs::get_logs(r, &filter, None).map(Option::unwrap_or_default))
            .await
    }

    async fn new_filter(&self, criteria: Value) -> RpcResult<String> {
        filters::methods::install(&self.0, filters::Kind::Logs(criteria)).await
    }

    async fn new_block_filter(&self) -> RpcResult<String> {
        filters::methods::install(&self.0, filters::Kind::Blocks).await
    }

    async fn new_pending_transaction_filter(&self) -> RpcResult<String> {
        filters::methods::install(&self.0, filters::Kind::PendingTransactions).await
    }

    async fn get_filter_changes(&self, id: String) -> RpcResult<Value> {
        filters::methods::changes(&self.0, id).await
    }

    async fn get_filter_logs(&self, id: String) -> RpcResult<Vec<Log>> {
        filters::methods::all_logs(&self.0, id).await
    }

    async fn uninstall_filter(&self, id: String) -> RpcResult<bool> {
        filters::methods::uninstall(&self.0, id).await
    }

    async fn subscribe(
        &self,
        pending: PendingSubscriptionSink,
        kind: String,
        filter: Option<Value>,
    ) -> SubscriptionResult {
        subscriptions::subscribe(&self.0, pending, kind, filter).await
    }

    async fn call(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<Bytes> {
        let o = overrides(state, block_overrides);
        let outcome = on_evm_thread(&self.0, block.unwrap_or_default(), move |view, h, env| {
            evm::call(view, h, &request, env, &o)
        })
        .await?;
        match outcome {
            evm::CallOutcome::Success { output, .. } => Ok(output),
            evm::CallOutcome::Revert { output, .. } => Err(reverted(output)),
            evm::CallOutcome::Halt { reason, .. } => Err(server_error(format!("execution halted: {reason}"))),
        }
    }

    async fn estimate_gas(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<U64> {
        let o = overrides(state, block_overrides);
        let outcome = on_evm_thread(&self.0, block.unwrap_or_default(), move |view, h, env| {
            Ok(evm::estimate_gas(view, h, &request, env, &o))
        })
        .await?;
        match outcome {
            Ok(gas) => Ok(U64::from(gas)),
            Err(evm::EstimateError::Reverted(output)) => Err(reverted(output)),
            Err(evm::EstimateError::Failed(message)) => Err(server_error(message)),
        }
    }

    async fn create_access_list(
        &self,
        request: CallRequest,
        block: Option<BlockSpec>,
        state: Option<HashMap<Address, AccountOverride>>,
        block_overrides: Option<BlockOverrides>,
    ) -> RpcResult<Value> {
        let o = overrides(state, block_overrides);
        let (outcome, list) = on_evm_thread(&self.0, block.unwrap_or_default(), move |view, h, env| {
            evm::access_list(view, h, &request, env, &o)
        })
        .await?;
        match outcome {
            evm::CallOutcome::Success { gas_used, .. } => {
                Ok(serde_json::json!({"accessList": list, "gasUsed": U64::from(gas_used)}))
            }
            // As geth: the slots the call touched before it reverted, and the failure in `error`.
            evm::CallOutcome::Revert { gas_used, .. } => Ok(serde_json::json!({
                "accessList": list, "error": "execution reverted", "gasUsed": U64::from(gas_used)
            })),
            evm::CallOutcome::Halt { reason, .. } => Err(server_error(format!("execution halted: {reason}"))),
        }
    }

    async fn simulate_v1(&self, payload: SimulatePayload, block: Option<BlockSpec>) -> RpcResult<Vec<Value>> {
        let payload = std::sync::Arc::new(payload);
        let answer = on_evm_pool(&self.0, block.unwrap_or_default(), move |view, h, env| {
            Ok(simulate::simulate(view, h, h.hash_slow(), &payload, env))
        })
        .await?;
        answer.map_err(Into::into)
    }

    async fn send_raw_transaction(&self, raw: Bytes) -> RpcResult<B256> {
        self.relay(raw).await
    }

    async fn send_raw_transaction_sync(
        &self,
        raw: Bytes,
        timeout_ms: Option<BlockCount>,
    ) -> RpcResult<RpcReceipt> {
        let limits = &self.0.limits;
        // geth's rule: the default when none (or zero) is asked for, never more than the maximum.
        let timeout = match timeout_ms.map(|t| t.0).filter(|t| *t > 0) {
            Some(ms) => std::time::Duration::from_millis(ms).min(limits.tx_sync_max_timeout),
            None => limits.tx_sync_default_timeout,
        };
        let deadline = tokio::time::Instant::now() + timeout;
        let hash = self.relay(raw).await?;
        loop {
            let r = self.req();
            if let Some(t) = r.tx_by_hash(&hash)? {
                let root = r.extras(&t.hash)?.receipt_roots.get(t.index).copied();
                return convert::receipt_of(&t, root).map_err(server_error);
            }
            if tokio::time::Instant::now() >= deadline {
                let msg = format!(
                    "The transaction was added to the transaction pool but wasn't processed in {timeout:?}"
                );
                return Err(jsonrpsee::types::ErrorObject::owned(4, msg, Some(hash)));
            }
            tokio::time::sleep(TX_SYNC_POLL).await;
        }
    }
}
