//! One simulated block on the request's shared state, in geth's order: the header from its parent and its
//! overrides, the state overrides, the pre-block system calls, the calls, the post-block system calls and
//! withdrawals (or the miner's reward before the merge), then the block assembled: its state root from the
//! stored trie with the changed accounts laid over it, its transaction, receipt and withdrawal roots, its
//! hash and size, and its JSON.

use std::collections::BTreeSet;

use alloy_consensus::{
    proofs::{calculate_withdrawals_root, ordered_trie_root_with_encoder},
    Header, Receipt, ReceiptEnvelope, ReceiptWithBloom, TxReceipt, EMPTY_OMMER_ROOT_HASH,
};
use alloy_eips::{eip2718::Encodable2718, eip7685::Requests, eip7840::BlobParams};
use alloy_primitives::{Address, Bloom, Bytes, B256, U256};
use alloy_rlp::Encodable;
use ec_store::{tables::StoredAccount, OverlayAccount, Proofs, StoreView};
use revm::{
    context::{result::ExecutionResult, BlockEnv, CfgEnv, Context, Evm},
    context_interface::block::BlobExcessGasAndPrice,
    database::CacheDB,
    database_interface::{Database, DatabaseCommit},
    handler::{instructions::EthInstructions, SystemCallEvm},
    primitives::hardfork::SpecId,
    state::EvmState,
    InspectEvm, MainBuilder, MainContext,
};
use serde_json::{json, Value};

use super::{
    calls::{self, Limits, Ready, TxPlace},
    logs::{Numbered, SimInspector},
    plan::Planned,
    precompiles::SimPrecompiles,
    BlockStateCall, SimError, SimulatePayload,
};
use crate::evm::{self, CallEnv, StateAt};

/// Gas a blob takes (EIP-4844).
const GAS_PER_BLOB: u64 = 131_072;

/// The simulated chain so far: the shared state and the last block's final header.
pub struct SimChain<'a> {
    view: &'a StoreView<'a>,
    base_number: u64,
    payload: &'a SimulatePayload,
    env: &'a CallEnv,
    db: CacheDB<StateAt<'a>>,
    /// Every account an override, a call or a system call changed (the state root is computed from them).
    dirty: BTreeSet<Address>,
    /// The request-wide gas budget left (geth's RPC gas cap spent across all calls).
    budget: u64,
    parent: Header,
    parent_hash: B256,
    /// The base block's state as seen from the trie's head, computed at the first root and kept for the rest.
    rollback: Option<ec_store::StateDelta>,
}

/// One call that ran: what the block and the answer need of it.
struct Ran {
    ready: Ready,
    result: ExecutionResult,
    logs: Vec<Numbered>,
}

impl<'a> SimChain<'a> {
    pub fn new(
        view: &'a StoreView<'a>,
        base: &Header,
        base_hash: B256,
        payload: &'a SimulatePayload,
        env: &'a CallEnv,
    ) -> Self {
        SimChain {
            view,
            base_number: base.number,
            payload,
            env,
            db: CacheDB::new(StateAt { store: view, number: base.number }),
            dirty: BTreeSet::new(),
            budget: if env.gas_cap == 0 { u64::MAX } else { env.gas_cap },
            parent: base.clone(),
            parent_hash: base_hash,
            rollback: None,
        }
    }

    /// Runs block `p` (what `asked` asks of it) and answers its JSON.
    pub fn run_block(&mut self, p: Planned, asked: &BlockStateCall) -> Result<Value, SimError> {
        let spec = &self.env.spec;
        let spec_id = spec.spec_id(p.number, p.time).map_err(SimError::server)?;
        let mut header = self.header(p, asked, spec_id)?;
        let mut precompiles = SimPrecompiles::new(spec_id);
        self.apply_state_overrides(asked, &mut precompiles)?;
        let (block_env, cfg) = self.environment(&header, asked, spec_id)?;
        self.pre_block_calls(&header, &block_env, &cfg, spec_id)?;
        let ran = self.run_calls(asked, &header, &block_env, &cfg, &mut precompiles)?;
        let requests = self.post_block_calls(&block_env, &cfg, spec_id)?;
        let withdrawals = self.finalize(&header, asked, spec_id)?;
        let root = self.state_root(spec_id)?;
        let (hash, size) = assemble(&mut header, &ran, requests, withdrawals.as_deref(), root, spec_id);
        self.db.cache.block_hashes.insert(U256::from(header.number), hash);
        let out = block_json(
            &header,
            hash,
            size,
            &ran,
            withdrawals.as_deref(),
            self.payload.return_full_transactions,
        );
        self.parent = header;
        self.parent_hash = hash;
        Ok(out)
    }

    /// The block's header before execution: number and time from the plan; fee recipient and gas limit
    /// carried from the parent unless overridden; difficulty zero after the merge; PREVRANDAO and the beacon
    /// root zero unless given; the base fee from the parent with validation, zero without (unless given);
    /// the excess blob gas from the parent.
    fn header(&self, p: Planned, asked: &BlockStateCall, spec_id: SpecId) -> Result<Header, SimError> {
        let o = asked.block_overrides.clone().unwrap_or_default();
        let parent = &self.parent;
        let spec = &self.env.spec;
        let merged = spec_id.is_enabled_in(SpecId::MERGE);
        let difficulty = match o.difficulty {
            Some(_) if merged => {
                let msg = format!("block {}: difficulty override is not allowed after the merge", p.number);
                return Err(SimError::new(-32602, msg));
            }
            Some(d) => d,
            None if merged => U256::ZERO,
            None => parent.difficulty,
        };
        let base_fee_per_gas = if spec.is_london(p.number) {
            Some(match o.base_fee_per_gas {
                Some(f) => f.saturating_to(),
                None if !self.payload.validation => 0,
                None if !spec.is_london(parent.number) => alloy_eips::eip1559::INITIAL_BASE_FEE,
                None => parent.next_block_base_fee(spec.base_fee_params()).unwrap_or_default(),
            })
        } else {
            None
        };
        let cancun = spec_id.is_enabled_in(SpecId::CANCUN);
        let excess_blob_gas = cancun.then(|| match (parent.excess_blob_gas, spec.blob_params(p.time)) {
            (Some(excess), Some(params)) => next_excess(&params, parent, excess),
            _ => 0,
        });
        Ok(Header {
            parent_hash: self.parent_hash,
            ommers_hash: EMPTY_OMMER_ROOT_HASH,
            beneficiary: o.fee_recipient.unwrap_or(parent.beneficiary),
            difficulty,
            number: p.number,
            gas_limit: o.gas_limit.map_or(parent.gas_limit, |g| g.to()),
            timestamp: p.time,
            mix_hash: o.prev_randao.unwrap_or_default(),
            base_fee_per_gas,
            withdrawals_root: spec_id.is_enabled_in(SpecId::SHANGHAI).then_some(B256::ZERO),
            blob_gas_used: cancun.then_some(0),
            excess_blob_gas,
            parent_beacon_block_root: cancun.then(|| o.beacon_root.unwrap_or_default()),
            ..Default::default()
        })
    }

    /// The block's state overrides, by address order, on the shared state; an override of a precompile's
    /// address takes it out of this block's precompiles, `movePrecompileToAddress` puts it elsewhere.
    fn apply_state_overrides(
        &mut self,
        asked: &BlockStateCall,
        precompiles: &mut SimPrecompiles,
    ) -> Result<(), SimError> {
        let Some(overrides) = &asked.state_overrides else { return Ok(()) };
        let mut sorted: Vec<_> = overrides.iter().collect();
        sorted.sort_by_key(|(address, _)| **address);
        for (address, o) in sorted {
            let is_precompile = precompiles.is_precompile(address);
            if let Some(to) = o.move_precompile_to_address {
                if !is_precompile {
                    return Err(SimError::server(format!(
                        "account {} is not a precompile",
                        address.to_checksum(None)
                    )));
                }
                if overrides.contains_key(&to) {
                    return Err(SimError::server(format!(
                        "account {} is already overridden",
                        to.to_checksum(None)
                    )));
                }
                precompiles.move_to(*address, to);
            }
            if is_precompile {
                precompiles.disable(*address);
            }
            if o.state.is_some() && o.state_diff.is_some() {
                let msg = format!("account {} has both 'state' and 'stateDiff'", address.to_checksum(None));
                return Err(SimError::server(msg));
            }
            evm::apply_account_override(&mut self.db, *address, o).map_err(SimError::server)?;
            self.dirty.insert(*address);
        }
        Ok(())
    }

    /// The EVM's block and configuration for this block: the header's values under its fork's rules, the
    /// blob base fee override (the EVM's only: the header keeps its excess blob gas); no EIP-3607 and no
    /// per-transaction gas cap (geth skips both in simulation); nonces checked only with validation.
    fn environment(
        &self,
        header: &Header,
        asked: &BlockStateCall,
        spec_id: SpecId,
    ) -> Result<(BlockEnv, CfgEnv), SimError> {
        let mut block_env = evm::header_block_env(header);
        evm::fork_rules(&mut block_env, header, &self.env.spec).map_err(SimError::server)?;
        if let Some(fee) = asked.block_overrides.as_ref().and_then(|o| o.blob_base_fee) {
            block_env.blob_excess_gas_and_price = Some(BlobExcessGasAndPrice {
                excess_blob_gas: header.excess_blob_gas.unwrap_or_default(),
                blob_gasprice: fee.saturating_to(),
            });
        }
        let mut cfg = CfgEnv::new_with_spec(spec_id);
        cfg.chain_id = self.env.spec.chain_id();
        cfg.disable_eip3607 = true;
        cfg.tx_gas_limit_cap = Some(u64::MAX);
        cfg.disable_nonce_check = !self.payload.validation;
        Ok((block_env, cfg))
    }

    /// EIP-4788's beacon root (from Cancun) and EIP-2935's parent hash (from Prague).
    fn pre_block_calls(
        &mut self,
        header: &Header,
        block_env: &BlockEnv,
        cfg: &CfgEnv,
        spec_id: SpecId,
    ) -> Result<(), SimError> {
        if let Some(root) = header.parent_beacon_block_root {
            self.system_call(block_env, cfg, alloy_eips::eip4788::BEACON_ROOTS_ADDRESS, root.0.into())?;
        }
        if spec_id.is_enabled_in(SpecId::PRAGUE) {
            let to = alloy_eips::eip2935::HISTORY_STORAGE_ADDRESS;
            self.system_call(block_env, cfg, to, header.parent_hash.0.into())?;
        }
        Ok(())
    }

    /// EIP-7002's and EIP-7251's queues (from Prague): the block's requests.
    fn post_block_calls(
        &mut self,
        block_env: &BlockEnv,
        cfg: &CfgEnv,
        spec_id: SpecId,
    ) -> Result<Option<Requests>, SimError> {
        if !spec_id.is_enabled_in(SpecId::PRAGUE) {
            return Ok(None);
        }
        let mut requests = Requests::default();
        for (kind, address) in [
            (1u8, alloy_eips::eip7002::WITHDRAWAL_REQUEST_PREDEPLOY_ADDRESS),
            (2u8, alloy_eips::eip7251::CONSOLIDATION_REQUEST_PREDEPLOY_ADDRESS),
        ] {
            let out = self.system_call(block_env, cfg, address, Bytes::new())?;
            if !out.is_empty() {
                requests.push_request_with_type(kind, out);
            }
        }
        Ok(Some(requests))
    }

    /// One system call, committed; its output.
    fn system_call(
        &mut self,
        block_env: &BlockEnv,
        cfg: &CfgEnv,
        to: Address,
        data: Bytes,
    ) -> Result<Bytes, SimError> {
        let mut evm = Context::mainnet()
            .with_db(&mut self.db)
            .with_block(block_env.clone())
            .with_cfg(cfg.clone())
            .build_mainnet();
        let done =
            evm.system_call(to, data).map_err(|e| SimError::server(format!("system call to {to}: {e:?}")))?;
        drop(evm);
        let output = done.result.output().cloned().unwrap_or_default();
        self.commit(done.state);
        Ok(output)
    }

    fn commit(&mut self, state: EvmState) {
        self.dirty.extend(state.iter().filter(|(_, a)| a.is_touched()).map(|(address, _)| *address));
        self.db.commit(state);
    }

    /// The block's calls, each on the state the one before left.
    fn run_calls(
        &mut self,
        asked: &BlockStateCall,
        header: &Header,
        block_env: &BlockEnv,
        cfg: &CfgEnv,
        precompiles: &mut SimPrecompiles,
    ) -> Result<Vec<Ran>, SimError> {
        let mut ran: Vec<Ran> = Vec::with_capacity(asked.calls.len());
        let (mut gas_used, mut next_log) = (0u64, 0u64);
        for call in &asked.calls {
            if std::time::Instant::now() >= self.env.deadline {
                return Err(self.timed_out());
            }
            let from = call.from.unwrap_or_default();
            let nonce = self.db.basic(from).map_err(SimError::server)?.map_or(0, |a| a.nonce);
            if self.payload.validation && nonce == u64::MAX {
                // geth checks this before the fees (the EVM would report the base fee first).
                let msg =
                    format!("err: nonce has max value: address {}, nonce: {nonce}", from.to_checksum(None));
                return Err(SimError::new(-32603, msg));
            }
            let limits = Limits {
                block_gas_left: header.gas_limit.saturating_sub(gas_used),
                budget_left: self.budget,
                base_fee: header.base_fee_per_gas,
                chain_id: self.env.spec.chain_id(),
            };
            let ready = calls::ready(call, nonce, &limits)?;
            let (result, logs, next) = self.run_call(&ready, nonce, block_env, cfg, precompiles, next_log)?;
            next_log = next;
            let used = result.tx_gas_used();
            gas_used += used;
            self.budget = self.budget.saturating_sub(used);
            ran.push(Ran { ready, result, logs });
        }
        Ok(ran)
    }

    /// One call run and committed: its result, its kept logs, and the block's next log number.
    fn run_call(
        &mut self,
        ready: &Ready,
        state_nonce: u64,
        block_env: &BlockEnv,
        cfg: &CfgEnv,
        precompiles: &mut SimPrecompiles,
        next_log: u64,
    ) -> Result<(ExecutionResult, Vec<Numbered>, u64), SimError> {
        let mut cfg = cfg.clone();
        // Without validation a call that pays nothing is not held to the base fee (geth's NoBaseFee).
        cfg.disable_base_fee = !self.payload.validation && ready.pays_nothing;
        // A sender at the largest nonce wraps to zero without validation, as the execution-apis fixtures
        // expect (geth 1.17.5 did; 1.17.10 refuses): revm refuses a transaction nonce of u64::MAX and
        // saturates the account's, so the call runs at transaction nonce 0 (nothing checks it here) and the
        // account's nonce is wrapped after it.
        let wraps = !self.payload.validation && state_nonce == u64::MAX;
        let mut tx_env = ready.tx_env.clone();
        if wraps && tx_env.nonce == u64::MAX {
            tx_env.nonce = 0;
        }
        let inspector = SimInspector::new(self.payload.trace_transfers, next_log, self.env.deadline);
        let spec_id = cfg.spec;
        let ctx = Context::mainnet().with_db(&mut self.db).with_block(block_env.clone()).with_cfg(cfg);
        let instructions = EthInstructions::new_mainnet_with_spec(spec_id);
        let mut vm = Evm::new_with_inspector(ctx, inspector, instructions, &mut *precompiles);
        let result = vm.inspect_tx(tx_env);
        let inspector = vm.inspector;
        if inspector.deadline.expired {
            return Err(self.timed_out());
        }
        let done = result.map_err(|e| calls::refusal(&e, ready.tx_env.gas_limit))?;
        self.commit(done.state);
        if wraps {
            let from = ready.from;
            let mut info = self.db.basic(from).map_err(SimError::server)?.unwrap_or_default();
            if info.nonce == u64::MAX {
                info.nonce = 0;
                self.db.insert_account_info(from, info);
            }
        }
        let logs = if done.result.is_success() { inspector.logs } else { Vec::new() };
        Ok((done.result, logs, inspector.next_index))
    }

    fn timed_out(&self) -> SimError {
        SimError::new(-32603, format!("execution aborted (timeout = {:?})", self.env.timeout))
    }

    /// After the calls: the withdrawals' credits (from Shanghai, after the merge) or the miner's reward
    /// (before it). Returns the block's withdrawals list (from Shanghai).
    fn finalize(
        &mut self,
        header: &Header,
        asked: &BlockStateCall,
        spec_id: SpecId,
    ) -> Result<Option<Vec<alloy_eips::eip4895::Withdrawal>>, SimError> {
        let credit = |db: &mut CacheDB<StateAt<'a>>, address, amount| {
            evm::credit(db, address, amount).map_err(SimError::server)
        };
        if let Some(reward) = crate::parity_trace::base_block_reward(spec_id) {
            credit(&mut self.db, header.beneficiary, reward)?;
            self.dirty.insert(header.beneficiary);
        }
        if !spec_id.is_enabled_in(SpecId::SHANGHAI) {
            return Ok(None);
        }
        let withdrawals =
            asked.block_overrides.as_ref().and_then(|o| o.withdrawals.clone()).unwrap_or_default();
        for w in &withdrawals {
            credit(&mut self.db, w.address, U256::from(w.amount) * U256::from(1_000_000_000u64))?;
            self.dirty.insert(w.address);
        }
        Ok(Some(withdrawals))
    }

    /// The state root after this block: every changed account as the shared state holds it, laid over the
    /// base block's state in the stored trie. An account left empty is gone (EIP-161, from Spurious Dragon).
    fn state_root(&mut self, spec_id: SpecId) -> Result<B256, SimError> {
        let clears_empty = spec_id.is_enabled_in(SpecId::SPURIOUS_DRAGON);
        let overlay: Vec<OverlayAccount> = self
            .dirty
            .iter()
            .filter_map(|address| {
                let cached = self.db.cache.accounts.get(address)?;
                let account = cached
                    .info()
                    .filter(|i| !(clears_empty && i.is_empty()))
                    .map(|i| StoredAccount { balance: i.balance, nonce: i.nonce, code_hash: i.code_hash });
                let storage_cleared = matches!(
                    cached.account_state,
                    revm::database::AccountState::StorageCleared | revm::database::AccountState::NotExisting
                );
                let slots = cached.storage.iter().map(|(k, v)| (B256::from(*k), B256::from(*v))).collect();
                Some(OverlayAccount { address: *address, account, storage_cleared, slots })
            })
            .collect();
        let rollback = match self.rollback.take() {
            Some(r) => r,
            None => self.view.rollback_to(self.base_number).map_err(SimError::server)?,
        };
        let root = self.view.state_root_with(&rollback, &overlay);
        self.rollback = Some(rollback);
        root.map_err(SimError::server)
    }
}

/// The excess blob gas after `parent` (EIP-4844, with EIP-7918's reserve price where the parameters have
/// a blob base cost).
fn next_excess(params: &BlobParams, parent: &Header, excess: u64) -> u64 {
    params.next_block_excess_blob_gas_osaka(
        excess,
        parent.blob_gas_used.unwrap_or_default(),
        parent.base_fee_per_gas.unwrap_or_default(),
    )
}

/// Completes `header` with what the block's execution gave; returns its hash and the block's size.
fn assemble(
    header: &mut Header,
    ran: &[Ran],
    requests: Option<Requests>,
    withdrawals: Option<&[alloy_eips::eip4895::Withdrawal]>,
    state_root: B256,
    spec_id: SpecId,
) -> (B256, u64) {
    let mut cumulative = 0u64;
    let receipts: Vec<ReceiptEnvelope> = ran
        .iter()
        .map(|r| {
            cumulative += r.result.tx_gas_used();
            let receipt = Receipt {
                status: r.result.is_success().into(),
                cumulative_gas_used: cumulative,
                logs: r.result.logs().to_vec(),
            };
            ReceiptEnvelope::from_typed(r.ready.tx_type, ReceiptWithBloom::from(receipt))
        })
        .collect();
    let mut bloom = Bloom::ZERO;
    for r in &receipts {
        bloom.accrue_bloom(&r.bloom());
    }
    header.gas_used = cumulative;
    header.logs_bloom = bloom;
    header.state_root = state_root;
    header.transactions_root =
        ordered_trie_root_with_encoder(ran, |r, buf| buf.extend_from_slice(&r.ready.encoded));
    header.receipts_root = ordered_trie_root_with_encoder(&receipts, |r, buf| r.encode_2718(buf));
    if spec_id.is_enabled_in(SpecId::CANCUN) {
        let blobs: usize = ran.iter().map(|r| r.ready.tx_env.blob_hashes.len()).sum();
        header.blob_gas_used = Some(blobs as u64 * GAS_PER_BLOB);
    }
    if let Some(w) = withdrawals {
        header.withdrawals_root = Some(calculate_withdrawals_root(w));
    }
    header.requests_hash = requests.map(|r| r.requests_hash());
    let hash = header.hash_slow();
    (hash, block_size(header, ran, withdrawals))
}

/// The length of the block's RLP: the header, the transactions (a typed one as a string of its
/// EIP-2718 bytes, a legacy one as its list), no uncles, the withdrawals where the block has them.
fn block_size(header: &Header, ran: &[Ran], withdrawals: Option<&[alloy_eips::eip4895::Withdrawal]>) -> u64 {
    let txs_payload: usize = ran
        .iter()
        .map(|r| {
            let n = r.ready.encoded.len();
            if r.ready.tx_type == alloy_consensus::TxType::Legacy {
                n
            } else {
                alloy_rlp::length_of_length(n) + n
            }
        })
        .sum();
    let list = |payload: usize| alloy_rlp::length_of_length(payload) + payload;
    let mut payload = header.length() + list(txs_payload) + list(0);
    if let Some(w) = withdrawals {
        payload += w.to_vec().length();
    }
    list(payload) as u64
}

/// The block as geth answers it: the header's fields, its transactions (hashes, or objects with
/// `returnFullTransactions`), no uncles, its withdrawals, and the calls' results.
fn block_json(
    header: &Header,
    hash: B256,
    size: u64,
    ran: &[Ran],
    withdrawals: Option<&[alloy_eips::eip4895::Withdrawal]>,
    full: bool,
) -> Value {
    let rpc_header = alloy_rpc_types_eth::Header {
        hash,
        inner: header.clone(),
        total_difficulty: None,
        size: Some(U256::from(size)),
    };
    let mut out = serde_json::to_value(rpc_header).unwrap_or(Value::Null);
    let place = |index: usize| TxPlace {
        block_hash: hash,
        block_number: header.number,
        timestamp: header.timestamp,
        index: index as u64,
        base_fee: header.base_fee_per_gas,
    };
    let transactions: Vec<Value> = ran
        .iter()
        .enumerate()
        .map(|(i, r)| if full { calls::transaction_json(&r.ready, place(i)) } else { json!(r.ready.hash) })
        .collect();
    let results: Vec<Value> = ran
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let logs = r.logs.iter().map(|l| log_json(l, r.ready.hash, place(i))).collect();
            calls::result_json(&r.result, logs, r.ready.gas_capped)
        })
        .collect();
    out["transactions"] = json!(transactions);
    out["uncles"] = json!([]);
    if let Some(w) = withdrawals {
        out["withdrawals"] = json!(w);
    }
    out["calls"] = json!(results);
    out
}

fn log_json(l: &Numbered, tx_hash: B256, place: TxPlace) -> Value {
    json!({
        "address": l.log.address,
        "topics": l.log.data.topics(),
        "data": l.log.data.data,
        "blockNumber": format!("{:#x}", place.block_number),
        "transactionHash": tx_hash,
        "transactionIndex": format!("{:#x}", place.index),
        "blockHash": place.block_hash,
        "blockTimestamp": format!("{:#x}", place.timestamp),
        "logIndex": format!("{:#x}", l.index),
        "removed": false,
    })
}
