//! `eth_call`, `eth_estimateGas` and `eth_createAccessList`: revm over the replica's state as of a block,
//! under the chain's rules at that block (`ec-chainspec`), stopped by a deadline checked inside the EVM.

use std::{sync::Arc, time::Instant};

use alloy_consensus::Header;
use alloy_primitives::{Address, Bytes, TxKind, B256, U256};
use ec_store::{Reads, StoreView};
use revm::{
    bytecode::Bytecode,
    context::{result::ExecutionResult, BlockEnv, CfgEnv, Context, TxEnv},
    context_interface::{block::BlobExcessGasAndPrice, ContextTr},
    database::CacheDB,
    database_interface::{DBErrorMarker, Database, DatabaseRef},
    interpreter::{interpreter::EthInterpreter, InstructionResult, Interpreter},
    primitives::hardfork::SpecId,
    state::AccountInfo,
    InspectEvm, Inspector, MainBuilder, MainContext,
};
use serde::Deserialize;

/// Store errors as revm wants them.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct DbError(pub String);

impl DBErrorMarker for DbError {}

/// One view of the store, read as of the end of block `number`.
pub struct StateAt<'a> {
    pub store: &'a StoreView<'a>,
    pub number: u64,
}

impl DatabaseRef for StateAt<'_> {
    type Error = DbError;

    fn basic_ref(&self, address: Address) -> Result<Option<AccountInfo>, DbError> {
        let Some(a) = self.store.account_at(&address, self.number).map_err(|e| DbError(e.to_string()))?
        else {
            return Ok(None);
        };
        Ok(Some(AccountInfo {
            balance: a.balance,
            nonce: a.nonce,
            code_hash: a.code_hash,
            code: None,
            ..Default::default()
        }))
    }

    fn code_by_hash_ref(&self, hash: B256) -> Result<Bytecode, DbError> {
        let code = self.store.code(&hash).map_err(|e| DbError(e.to_string()))?.unwrap_or_default();
        Ok(Bytecode::new_raw(code))
    }

    fn storage_ref(&self, address: Address, index: U256) -> Result<U256, DbError> {
        let v = self
            .store
            .storage_at(&address, &B256::from(index), self.number)
            .map_err(|e| DbError(e.to_string()))?;
        Ok(U256::from_be_bytes(v.0))
    }

    fn block_hash_ref(&self, number: u64) -> Result<B256, DbError> {
        Ok(self.store.canonical_hash(number).map_err(|e| DbError(e.to_string()))?.unwrap_or_default())
    }
}

/// The call object of `eth_call` / `eth_estimateGas` (and each call of `eth_simulateV1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRequest {
    pub from: Option<Address>,
    pub to: Option<Address>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub gas: Option<alloy_primitives::U64>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub gas_price: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub max_fee_per_gas: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub max_priority_fee_per_gas: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub value: Option<U256>,
    pub data: Option<Bytes>,
    pub input: Option<Bytes>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub nonce: Option<alloy_primitives::U64>,
    pub access_list: Option<alloy_eips::eip2930::AccessList>,
    // Read by `eth_simulateV1` (its transaction type and hash); `eth_call` and friends ignore them, as they
    // ignored them before they were named here.
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub chain_id: Option<alloy_primitives::U64>,
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub max_fee_per_blob_gas: Option<U256>,
    pub blob_versioned_hashes: Option<Vec<B256>>,
    pub authorization_list: Option<Vec<alloy_eips::eip7702::SignedAuthorization>>,
}

/// One account's override for a call (the `eth_call` state override set).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountOverride {
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub balance: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub nonce: Option<alloy_primitives::U64>,
    pub code: Option<Bytes>,
    /// Replaces the whole storage.
    pub state: Option<std::collections::HashMap<B256, B256>>,
    /// Changes only these slots.
    pub state_diff: Option<std::collections::HashMap<B256, B256>>,
    /// Moves the precompile at this address to another (`eth_simulateV1` only).
    pub move_precompile_to_address: Option<Address>,
}

/// The block override set of `eth_call`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlockOverrides {
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub number: Option<U256>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub time: Option<alloy_primitives::U64>,
    #[serde(default, deserialize_with = "crate::params::strict_u64")]
    pub gas_limit: Option<alloy_primitives::U64>,
    #[serde(alias = "coinbase")]
    pub fee_recipient: Option<Address>,
    #[serde(alias = "baseFeePerGas")]
    #[serde(default, deserialize_with = "crate::params::strict_u256")]
    pub base_fee: Option<U256>,
    #[serde(alias = "random")]
    pub prev_randao: Option<B256>,
}

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub state: Option<std::collections::HashMap<Address, AccountOverride>>,
    pub block: Option<BlockOverrides>,
}

/// How a call ended.
pub enum CallOutcome {
    /// `gas_spent` is the gas used before the refund (what the call needed at its peak).
    Success {
        output: Bytes,
        gas_used: u64,
        gas_spent: u64,
    },
    Revert {
        output: Bytes,
        gas_used: u64,
    },
    Halt {
        reason: String,
        gas_used: u64,
    },
}

/// What every call runs under: the chain's rules, the RPC gas cap, and the moment it must stop by.
#[derive(Clone)]
pub struct CallEnv {
    pub spec: Arc<ec_chainspec::ChainSpec>,
    pub gas_cap: u64,
    pub deadline: Instant,
    /// The configured timeout, for the error message.
    pub timeout: std::time::Duration,
}

impl CallEnv {
    fn timed_out(&self) -> String {
        format!("execution aborted (timeout = {:?})", self.timeout)
    }
}

/// Stops the EVM at the deadline: checked every [`DeadlineInspector::EVERY`] instructions; once past it,
/// every frame halts at its next instruction, so the whole call unwinds within microseconds. (Only waiting
/// for the result would leave the EVM thread running a long loop to its gas limit.)
pub(crate) struct DeadlineInspector {
    deadline: Instant,
    steps: u32,
    pub(crate) expired: bool,
}

impl DeadlineInspector {
    const EVERY: u32 = 4096;

    pub(crate) fn new(deadline: Instant) -> Self {
        DeadlineInspector { deadline, steps: 0, expired: false }
    }
}

impl<CTX: ContextTr> Inspector<CTX, EthInterpreter> for DeadlineInspector {
    fn step(&mut self, interp: &mut Interpreter<EthInterpreter>, _context: &mut CTX) {
        if !self.expired {
            self.steps = self.steps.wrapping_add(1);
            if !self.steps.is_multiple_of(Self::EVERY) || Instant::now() < self.deadline {
                return;
            }
            self.expired = true;
        }
        // Out of gas, not FatalExternalError (which revm treats as an internal bug and panics on): the
        // result is discarded for the timeout error anyway.
        interp.halt(InstructionResult::OutOfGas);
    }
}

/// Runs `req` on top of the block with header `h` (the block environment; the state after it), spending at
/// most the gas cap.
pub fn call(
    store: &StoreView<'_>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
) -> Result<CallOutcome, String> {
    execute(store, h, req, env, overrides, &mut None)
}

/// Why an estimate has no answer.
pub enum EstimateError {
    /// The call reverts whatever its gas: code 3 with the revert data.
    Reverted(Bytes),
    /// Anything else, with geth's message.
    Failed(String),
}

/// The least gas with which the call succeeds, searched as geth does (`eth/gasestimator`): the upper bound
/// is the call's gas or the block's gas limit, capped by EIP-7825 from Osaka, by what the sender's balance
/// pays at the given fee cap, and by the RPC gas cap; one run at the bound (a failure there is final), an
/// optimistic run at (peak gas + call stipend) × 64/63, then bisection skewed low until within 1.5%. Every
/// run shares the one deadline of `env`.
pub fn estimate_gas(
    store: &StoreView<'_>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
) -> Result<u64, EstimateError> {
    const TX_GAS: u64 = 21_000;
    const CALL_STIPEND: u64 = 2_300;
    const ERROR_RATIO: f64 = 0.015;
    let failed = EstimateError::Failed;
    let timestamp = overrides.block.as_ref().and_then(|b| b.time).map_or(h.timestamp, |t| t.to::<u64>());
    let mut hi = match req.gas.map(|g| g.to::<u64>()) {
        Some(g) if g >= TX_GAS => g,
        _ => overrides.block.as_ref().and_then(|b| b.gas_limit).map_or(h.gas_limit, |g| g.to()),
    };
    if let Some(cap) = env.spec.tx_gas_limit_cap(timestamp) {
        hi = hi.min(cap);
    }
    let fee_cap = req.max_fee_per_gas.or(req.gas_price).unwrap_or_default();
    if !fee_cap.is_zero() {
        let from = req.from.unwrap_or_default();
        let overridden = overrides.state.as_ref().and_then(|s| s.get(&from)).and_then(|o| o.balance);
        let balance = match overridden {
            Some(b) => b,
            None => store
                .account_at(&from, h.number)
                .map_err(|e| failed(e.to_string()))?
                .map_or(U256::ZERO, |a| a.balance),
        };
        let value = req.value.unwrap_or_default();
        if value >= balance && !value.is_zero() {
            return Err(failed("insufficient funds for transfer".into()));
        }
        let allowance = (balance - value.min(balance)) / fee_cap;
        if allowance < U256::from(hi) {
            hi = allowance.to();
        }
    }
    hi = hi.min(env.gas_cap);
    // A limit below the intrinsic gas (or EIP-7623's calldata floor) is refused before execution; geth's
    // search counts that as "needs more gas", as it does an out-of-gas halt.
    let run = |gas: u64| {
        let with = CallRequest { gas: Some(alloy_primitives::U64::from(gas)), ..req.clone() };
        match execute(store, h, &with, env, overrides, &mut None) {
            Err(e) if e.contains("GasCostMoreThanGasLimit") || e.contains("GasFloorMoreThanGasLimit") => {
                Ok(CallOutcome::Halt { reason: format!("OutOfGas ({e})"), gas_used: gas })
            }
            other => other,
        }
    };
    let ok = |o: &CallOutcome| matches!(o, CallOutcome::Success { .. });
    // A plain transfer to an account without code costs exactly what one run at 21000 uses.
    let data = req.input.as_ref().or(req.data.as_ref());
    if data.is_none_or(|d| d.is_empty()) {
        if let Some(to) = req.to {
            let code = store.account_at(&to, h.number).map_err(|e| failed(e.to_string()))?;
            let overridden = overrides.state.as_ref().and_then(|s| s.get(&to)).and_then(|o| o.code.as_ref());
            let has_code = overridden.is_some_and(|c| !c.is_empty())
                || code.is_some_and(|a| a.code_hash != alloy_primitives::KECCAK256_EMPTY);
            if !has_code {
                if let Ok(CallOutcome::Success { gas_used, .. }) = run(TX_GAS) {
                    return Ok(gas_used);
                }
            }
        }
    }
    let (used, spent) = match run(hi).map_err(failed)? {
        CallOutcome::Success { gas_used, gas_spent, .. } => (gas_used, gas_spent),
        CallOutcome::Revert { output, .. } => return Err(EstimateError::Reverted(output)),
        CallOutcome::Halt { reason, .. } if reason.contains("OutOfGas") => {
            return Err(failed(format!("gas required exceeds allowance ({hi})")))
        }
        CallOutcome::Halt { reason, .. } => return Err(failed(reason)),
    };
    let mut lo = used.saturating_sub(1);
    let optimistic = (spent + CALL_STIPEND) * 64 / 63;
    if optimistic < hi {
        if ok(&run(optimistic).map_err(failed)?) {
            hi = optimistic;
        } else {
            lo = optimistic;
        }
    }
    while lo + 1 < hi {
        if ((hi - lo) as f64) / (hi as f64) < ERROR_RATIO {
            break;
        }
        let mut mid = lo + (hi - lo) / 2;
        if mid > lo.saturating_mul(2) {
            mid = lo * 2;
        }
        if ok(&run(mid).map_err(failed)?) {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    Ok(hi)
}

/// The access list a call needs (`eth_createAccessList`): what it touched, and the gas it uses with that
/// list applied.
pub fn access_list(
    store: &StoreView<'_>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
) -> Result<(CallOutcome, alloy_eips::eip2930::AccessList), String> {
    let mut touched = None;
    let first = execute(store, h, req, env, overrides, &mut touched)?;
    if !matches!(first, CallOutcome::Success { .. }) {
        return Ok((first, Default::default()));
    }
    let mut items = touched.unwrap_or_default();
    items.sort_by_key(|i| i.address);
    let list = alloy_eips::eip2930::AccessList(items);
    let with_list = CallRequest { access_list: Some(list.clone()), ..req.clone() };
    Ok((execute(store, h, &with_list, env, overrides, &mut None)?, list))
}

/// The block environment a header gives (before the fork's rules are applied: [`fork_rules`]).
pub(crate) fn header_block_env(h: &Header) -> BlockEnv {
    BlockEnv {
        number: U256::from(h.number),
        beneficiary: h.beneficiary,
        timestamp: U256::from(h.timestamp),
        gas_limit: h.gas_limit,
        basefee: h.base_fee_per_gas.unwrap_or_default(),
        difficulty: h.difficulty,
        prevrandao: Some(h.mix_hash),
        ..Default::default()
    }
}

/// The fork that rules a block environment's number and time, applied to it: the difficulty, not
/// PREVRANDAO, before the merge; the blob price under that fork's parameters (none before Cancun), from the
/// excess blob gas of `h`.
pub(crate) fn fork_rules(
    block_env: &mut BlockEnv,
    h: &Header,
    spec: &ec_chainspec::ChainSpec,
) -> Result<SpecId, String> {
    let (number, time) =
        (block_env.number.saturating_to::<u64>(), block_env.timestamp.saturating_to::<u64>());
    let spec_id = spec.spec_id(number, time).map_err(|e| e.to_string())?;
    if !spec_id.is_enabled_in(SpecId::MERGE) {
        block_env.prevrandao = None;
    }
    block_env.blob_excess_gas_and_price = spec
        .blob_params(time)
        .map(|p| BlobExcessGasAndPrice::new(h.excess_blob_gas.unwrap_or_default(), p.update_fraction as u64));
    Ok(spec_id)
}

/// A call ready to run: the state (with the overrides in its cache), the block and configuration (the
/// overrides', the fork's and a call's relaxed rules), and the transaction.
pub struct Prepared<'a> {
    pub db: CacheDB<StateAt<'a>>,
    pub block_env: BlockEnv,
    pub cfg: CfgEnv,
    pub tx: TxEnv,
}

/// Prepares `req` to run on top of the block with header `h`, as `eth_call` runs it (also what
/// `debug_traceCall` traces).
pub fn prepare<'a>(
    store: &'a StoreView<'a>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
) -> Result<Prepared<'a>, String> {
    prepare_on(CacheDB::new(StateAt { store, number: h.number }), h, req, env, overrides)
}

/// [`prepare`] on a given state: `db` is what the call sees before its overrides (the state after the block
/// with header `h`, or within it: `debug_traceCall`'s `txIndex`).
pub fn prepare_on<'a>(
    mut db: CacheDB<StateAt<'a>>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
) -> Result<Prepared<'a>, String> {
    let chain_id = env.spec.chain_id();
    // As geth: the call's gas, or the RPC gas cap when it gives none; never above the cap.
    let gas_limit = req.gas.map_or(env.gas_cap, |g| g.to::<u64>().min(env.gas_cap));
    let mut block_env = header_block_env(h);
    if let Some(b) = &overrides.block {
        if let Some(n) = b.number {
            block_env.number = n;
        }
        if let Some(t) = b.time {
            block_env.timestamp = U256::from(t.to::<u64>());
        }
        if let Some(g) = b.gas_limit {
            block_env.gas_limit = g.to();
        }
        if let Some(c) = b.fee_recipient {
            block_env.beneficiary = c;
        }
        if let Some(f) = b.base_fee {
            block_env.basefee = f.saturating_to();
        }
        if let Some(r) = b.prev_randao {
            block_env.prevrandao = Some(r);
        }
    }
    for (address, o) in overrides.state.iter().flatten() {
        if o.move_precompile_to_address.is_some() {
            return Err("movePrecompileToAddress is served by eth_simulateV1 only".into());
        }
        apply_account_override(&mut db, *address, o)?;
    }
    // The rules of the (possibly overridden) block.
    let spec_id = fork_rules(&mut block_env, h, &env.spec)?;
    let mut cfg = CfgEnv::new_with_spec(spec_id);
    cfg.chain_id = chain_id;
    // As nodes do for eth_call: no base-fee floor, no nonce check; gas is charged only if a price is given.
    cfg.disable_base_fee = true;
    cfg.disable_nonce_check = true;
    // eth_call may come "from" a contract address, and may use more gas than a block holds (the RPC gas cap
    // is the limit).
    cfg.disable_eip3607 = true;
    cfg.disable_block_gas_limit = true;
    cfg.tx_gas_limit_cap = Some(u64::MAX);
    let price = req.max_fee_per_gas.or(req.gas_price).unwrap_or_default();
    if price.is_zero() {
        // As geth: a call that pays nothing runs with BASEFEE 0 (no fee can be below it then).
        block_env.basefee = 0;
    }
    let tx = TxEnv::builder()
        .caller(req.from.unwrap_or_default())
        .kind(req.to.map_or(TxKind::Create, TxKind::Call))
        .gas_limit(gas_limit)
        .gas_price(price.saturating_to())
        .gas_priority_fee(req.max_priority_fee_per_gas.map(|p| p.saturating_to()))
        .value(req.value.unwrap_or_default())
        .data(req.input.clone().or_else(|| req.data.clone()).unwrap_or_default())
        .chain_id(Some(chain_id))
        .access_list(req.access_list.clone().unwrap_or_default())
        .build_fill();
    Ok(Prepared { db, block_env, cfg, tx })
}

/// Adds `amount` to an account's balance on `db` (a withdrawal, a miner's reward), creating it if need be.
pub(crate) fn credit(db: &mut CacheDB<StateAt<'_>>, address: Address, amount: U256) -> Result<(), DbError> {
    let mut info = db.basic(address)?.unwrap_or_default();
    info.balance = info.balance.saturating_add(amount);
    db.insert_account_info(address, info);
    Ok(())
}

/// One account's override laid on `db`: its balance, nonce and code, then its whole storage (`state`) or the
/// slots it names (`stateDiff`). Shared by `eth_call` and `eth_simulateV1`.
pub(crate) fn apply_account_override<'a>(
    db: &mut CacheDB<StateAt<'a>>,
    address: Address,
    o: &AccountOverride,
) -> Result<(), String> {
    let mut info = db.basic(address).map_err(|e| e.to_string())?.unwrap_or_default();
    if let Some(b) = o.balance {
        info.balance = b;
    }
    if let Some(n) = o.nonce {
        info.nonce = n.to();
    }
    if let Some(code) = &o.code {
        let bytecode = Bytecode::new_raw(code.clone());
        info.code_hash = bytecode.hash_slow();
        info.code = Some(bytecode);
    }
    db.insert_account_info(address, info);
    let slot = |(k, v): (&B256, &B256)| (U256::from_be_bytes(k.0), U256::from_be_bytes(v.0));
    if let Some(state) = &o.state {
        db.replace_account_storage(address, state.iter().map(slot).collect()).map_err(|e| e.to_string())?;
    }
    for (k, v) in o.state_diff.iter().flatten().map(slot) {
        db.insert_account_storage(address, k, v).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Runs `req` on top of the canonical block with header `h` (read once by the caller: an estimate runs the
/// same block a dozen times).
fn execute(
    store: &StoreView<'_>,
    h: &Header,
    req: &CallRequest,
    env: &CallEnv,
    overrides: &Overrides,
    touched_out: &mut Option<Vec<alloy_eips::eip2930::AccessListItem>>,
) -> Result<CallOutcome, String> {
    if Instant::now() >= env.deadline {
        return Err(env.timed_out());
    }
    let Prepared { db, block_env, cfg, tx } = prepare(store, h, req, env, overrides)?;
    let beneficiary = block_env.beneficiary;
    let inspector = DeadlineInspector::new(env.deadline);
    let mut evm = Context::mainnet()
        .with_db(db)
        .with_block(block_env)
        .with_cfg(cfg)
        .build_mainnet_with_inspector(inspector);
    let result = evm.inspect_tx(tx);
    if evm.inspector.expired {
        return Err(env.timed_out());
    }
    let result = result.map_err(|e| format!("{e:?}"))?;
    // What the call touched, as an access list: every account it loaded with the slots it read or wrote,
    // except the sender, precompiles and the fee recipient; the callee only when it touched storage.
    let touched = result
        .state
        .iter()
        .filter(|(a, acc)| {
            let precompile =
                a.0[..18].iter().all(|b| *b == 0) && u16::from_be_bytes([a.0[18], a.0[19]]) <= 0x100;
            **a != req.from.unwrap_or_default()
                && **a != beneficiary
                && !precompile
                && (Some(**a) != req.to || !acc.storage.is_empty())
        })
        .map(|(a, acc)| {
            let mut keys: Vec<B256> = acc.storage.keys().map(|k| B256::from(*k)).collect();
            keys.sort();
            alloy_eips::eip2930::AccessListItem { address: *a, storage_keys: keys }
        })
        .collect::<Vec<_>>();
    *touched_out = Some(touched);
    Ok(match result.result {
        ExecutionResult::Success { output, gas, .. } => CallOutcome::Success {
            output: output.into_data(),
            gas_used: gas.tx_gas_used(),
            gas_spent: gas.total_gas_spent(),
        },
        ExecutionResult::Revert { output, gas, .. } => {
            CallOutcome::Revert { output, gas_used: gas.tx_gas_used() }
        }
        ExecutionResult::Halt { reason, gas, .. } => {
            CallOutcome::Halt { reason: format!("{reason:?}"), gas_used: gas.tx_gas_used() }
        }
    })
}
