//! One simulated call: its defaults as geth fills them, the unsigned transaction it becomes (whose hash,
//! encoding and JSON the block carries), the EVM's refusal as geth's error code, and its result object.

use alloy_consensus::{SignableTransaction, TxEip1559, TxEip4844, TxEip7702, TxEnvelope, TxLegacy, TxType};
use alloy_eips::eip2718::Encodable2718;
use alloy_evm::FromRecoveredTx;
use alloy_primitives::{keccak256, Address, Bytes, Signature, TxKind, B256, U256};
use alloy_rlp::Encodable;
use revm::context::{
    result::{EVMError, ExecutionResult, HaltReason, InvalidTransaction, OutOfGasError},
    TxEnv,
};
use serde_json::{json, Value};

use super::SimError;
use crate::evm::CallRequest;

/// A call made ready to run.
pub struct Ready {
    pub from: Address,
    pub tx_env: TxEnv,
    /// The unsigned transaction (zero signature), as the block holds it.
    pub envelope: TxEnvelope,
    /// Its consensus encoding (EIP-2718; a legacy one with v, r and s zero, as geth encodes it).
    pub encoded: Vec<u8>,
    pub hash: B256,
    pub tx_type: TxType,
    /// Whether the request-wide gas budget lowered the call's gas.
    pub gas_capped: bool,
    /// Whether it pays nothing for gas (then the base fee is not checked without validation).
    pub pays_nothing: bool,
}

/// What a call may spend and where it runs.
pub struct Limits {
    /// The block's gas not yet used.
    pub block_gas_left: u64,
    /// The request-wide gas budget left (the RPC gas cap less what earlier calls used).
    pub budget_left: u64,
    /// The block's base fee (`None` before London).
    pub base_fee: Option<u64>,
    pub chain_id: u64,
}

/// Fills `call`'s defaults (nonce from `state_nonce`, gas from the block and the budget, zero fees) and
/// builds its transaction, as geth's `sanitizeCall` and `ToTransaction` do.
pub fn ready(call: &CallRequest, state_nonce: u64, limits: &Limits) -> Result<Ready, SimError> {
    let from = call.from.unwrap_or_default();
    let nonce = call.nonce.map_or(state_nonce, |n| n.to());
    let asked_gas = call.gas.map_or(limits.block_gas_left, |g| g.to());
    if limits.block_gas_left < asked_gas {
        let msg =
            format!("block gas limit reached: remaining: {}, required: {asked_gas}", limits.block_gas_left);
        return Err(SimError::new(-38015, msg));
    }
    let gas = asked_gas.min(limits.budget_left);
    if call.gas_price.is_some() && (call.max_fee_per_gas.is_some() || call.max_priority_fee_per_gas.is_some())
    {
        return Err(SimError::server("both gasPrice and (maxFeePerGas or maxPriorityFeePerGas) specified"));
    }
    if let Some(asked) = call.chain_id.map(|c| c.to::<u64>()).filter(|c| *c != limits.chain_id) {
        let msg = format!("chainId does not match node's (have={asked}, want={})", limits.chain_id);
        return Err(SimError::server(msg));
    }
    // Before London a call without fees is priced at zero in a legacy transaction; after, with zero caps.
    let gas_price = match (call.gas_price, limits.base_fee) {
        (Some(p), _) => Some(p),
        (None, None) => Some(U256::ZERO),
        (None, Some(_)) => None,
    };
    let max_fee = call.max_fee_per_gas.unwrap_or_default();
    let tip = call.max_priority_fee_per_gas.unwrap_or_default();
    let input = call.input.clone().or_else(|| call.data.clone()).unwrap_or_default();
    let value = call.value.unwrap_or_default();
    let access_list = call.access_list.clone().unwrap_or_default();
    let to = call.to;
    let chain_id = limits.chain_id;
    let u128_of = |v: U256| v.saturating_to::<u128>();

    let envelope = if let Some(price) = gas_price {
        let tx = TxLegacy {
            chain_id: None,
            nonce,
            gas_price: u128_of(price),
            gas_limit: gas,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value,
            input,
        };
        TxEnvelope::Legacy(tx.into_signed(zero_signature()))
    } else if let Some(authorizations) = &call.authorization_list {
        let to =
            to.ok_or_else(|| SimError::server("EIP-7702 transaction cannot be used to create contract"))?;
        let tx = TxEip7702 {
            chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: u128_of(max_fee),
            max_priority_fee_per_gas: u128_of(tip),
            to,
            value,
            access_list,
            authorization_list: authorizations.clone(),
            input,
        };
        TxEnvelope::Eip7702(tx.into_signed(zero_signature()))
    } else if let Some(hashes) = &call.blob_versioned_hashes {
        let to = to.ok_or_else(|| SimError::server("blob transaction of type create"))?;
        let tx = TxEip4844 {
            chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: u128_of(max_fee),
            max_priority_fee_per_gas: u128_of(tip),
            to,
            value,
            access_list,
            blob_versioned_hashes: hashes.clone(),
            max_fee_per_blob_gas: u128_of(call.max_fee_per_blob_gas.unwrap_or_default()),
            input,
        };
        TxEnvelope::Eip4844(tx.into_signed(zero_signature()).into())
    } else {
        let tx = TxEip1559 {
            chain_id,
            nonce,
            gas_limit: gas,
            max_fee_per_gas: u128_of(max_fee),
            max_priority_fee_per_gas: u128_of(tip),
            to: to.map_or(TxKind::Create, TxKind::Call),
            value,
            access_list,
            input,
        };
        TxEnvelope::Eip1559(tx.into_signed(zero_signature()))
    };
    let (encoded, hash) = match &envelope {
        TxEnvelope::Legacy(signed) => {
            let encoded = legacy_unsigned(signed.tx());
            let hash = keccak256(&encoded);
            (encoded, hash)
        }
        other => (other.encoded_2718(), *other.tx_hash()),
    };
    let mut tx_env = TxEnv::from_recovered_tx(&envelope, from);
    tx_env.nonce = nonce;
    let pays_nothing =
        gas_price.is_some_and(|p| p.is_zero()) || (gas_price.is_none() && max_fee.is_zero() && tip.is_zero());
    Ok(Ready {
        from,
        tx_type: envelope.tx_type(),
        tx_env,
        envelope,
        encoded,
        hash,
        gas_capped: gas < asked_gas,
        pays_nothing,
    })
}

fn zero_signature() -> Signature {
    Signature::new(U256::ZERO, U256::ZERO, false)
}

/// A legacy transaction with v, r and s zero: `rlp([nonce, gasPrice, gas, to, value, data, 0, 0, 0])`.
fn legacy_unsigned(tx: &TxLegacy) -> Vec<u8> {
    let mut payload = Vec::new();
    tx.nonce.encode(&mut payload);
    tx.gas_price.encode(&mut payload);
    tx.gas_limit.encode(&mut payload);
    tx.to.encode(&mut payload);
    tx.value.encode(&mut payload);
    tx.input.encode(&mut payload);
    for _ in 0..3 {
        0u8.encode(&mut payload);
    }
    let mut out = Vec::with_capacity(payload.len() + 4);
    alloy_rlp::Header { list: true, payload_length: payload.len() }.encode(&mut out);
    out.extend_from_slice(&payload);
    out
}

/// The EVM's refusal of a call as geth's whole-request error (`err: ... (supplied gas N)`).
pub fn refusal<DB: std::fmt::Display>(e: &EVMError<DB>, gas: u64) -> SimError {
    use InvalidTransaction as I;
    let code = match e {
        EVMError::Transaction(t) => match t {
            I::NonceTooLow { .. } => -38010,
            I::NonceTooHigh { .. } => -38011,
            I::GasPriceLessThanBasefee => -38012,
            I::CallGasCostMoreThanGasLimit { .. } | I::GasFloorMoreThanGasLimit { .. } => -38013,
            I::LackOfFundForMaxFee { .. } | I::OverflowPaymentInTransaction => -38014,
            I::CreateInitCodeSizeLimit => -38025,
            I::PriorityFeeGreaterThanMaxFee => -32602,
            _ => -32603,
        },
        _ => -32603,
    };
    SimError::new(code, format!("err: {e} (supplied gas {gas})"))
}

/// A call's result object (`calls[i]`); `logs` are its kept logs, already as JSON.
pub fn result_json(result: &ExecutionResult, logs: Vec<Value>, gas_capped: bool) -> Value {
    let used = format!("{:#x}", result.tx_gas_used());
    // The peak gas before refunds, or EIP-7623's calldata floor where that is more (geth's MaxUsedGas): the
    // gas used is the larger of the refunded gas and the floor, so the larger of the two is the answer.
    let max_used = format!("{:#x}", result.gas().total_gas_spent().max(result.tx_gas_used()));
    match result {
        ExecutionResult::Success { output, .. } => json!({
            "returnData": output.data(), "logs": logs, "gasUsed": used, "maxUsedGas": max_used, "status": "0x1",
        }),
        ExecutionResult::Revert { output, .. } => json!({
            "returnData": "0x", "logs": [], "gasUsed": used, "maxUsedGas": max_used, "status": "0x0",
            "error": {"message": revert_message(output), "code": 3, "data": output},
        }),
        ExecutionResult::Halt { reason, .. } => {
            let mut message = halt_message(reason);
            if gas_capped {
                message.push_str(" (gas limit was capped by the RPC server's global gas cap)");
            }
            json!({
                "returnData": "0x", "logs": [], "gasUsed": used, "maxUsedGas": max_used, "status": "0x0",
                "error": {"message": message, "code": -32015},
            })
        }
    }
}

/// "execution reverted", with the reason when the data is an `Error(string)`.
fn revert_message(output: &Bytes) -> String {
    match error_string(output) {
        Some(reason) => format!("execution reverted: {reason}"),
        None => "execution reverted".to_string(),
    }
}

/// The message of revert data shaped as `Error(string)` (selector 0x08c379a0, then the ABI string).
fn error_string(output: &[u8]) -> Option<String> {
    let body = output.strip_prefix(&[0x08, 0xc3, 0x79, 0xa0][..])?;
    let word = |at: usize| -> Option<usize> {
        let w = body.get(at..at + 32)?;
        w[..24]
            .iter()
            .all(|b| *b == 0)
            .then(|| u64::from_be_bytes(w[24..].try_into().unwrap_or_default()) as usize)
    };
    let offset = word(0)?;
    let len = word(offset)?;
    let start = offset.checked_add(32)?;
    let bytes = body.get(start..start.checked_add(len)?)?;
    String::from_utf8(bytes.to_vec()).ok()
}

/// geth's words for the usual halts.
fn halt_message(reason: &HaltReason) -> String {
    match reason {
        HaltReason::OutOfGas(OutOfGasError::Basic | OutOfGasError::Memory | OutOfGasError::MemoryLimit) => {
            "out of gas".into()
        }
        HaltReason::OutOfGas(_) => "out of gas".into(),
        HaltReason::OpcodeNotFound | HaltReason::InvalidFEOpcode => "invalid opcode".into(),
        HaltReason::InvalidJump => "invalid jump destination".into(),
        HaltReason::StackUnderflow => "stack underflow".into(),
        HaltReason::StackOverflow => "stack limit reached 1024 (1023)".into(),
        HaltReason::StateChangeDuringStaticCall => "write protection".into(),
        HaltReason::CreateContractSizeLimit => "max code size exceeded".into(),
        HaltReason::PrecompileError | HaltReason::PrecompileErrorWithContext(_) => {
            "precompiled failed".into()
        }
        other => format!("{other:?}"),
    }
}

/// The JSON of a transaction the block holds (`returnFullTransactions`): alloy's RPC shape, with the
/// request's `from`; a legacy one as geth shows an unsigned legacy transaction (v zero, its chain id
/// derived from that v).
pub fn transaction_json(ready: &Ready, place: TxPlace) -> Value {
    let info = alloy_rpc_types_eth::TransactionInfo {
        hash: Some(ready.hash),
        index: Some(place.index),
        block_hash: Some(place.block_hash),
        block_number: Some(place.block_number),
        base_fee: place.base_fee,
        block_timestamp: Some(place.timestamp),
    };
    let recovered =
        alloy_consensus::transaction::Recovered::new_unchecked(ready.envelope.clone(), ready.from);
    let tx = alloy_rpc_types_eth::Transaction::from_transaction(recovered, info);
    let mut v = serde_json::to_value(tx).unwrap_or(Value::Null);
    if ready.tx_type == TxType::Legacy {
        v["v"] = json!("0x0");
        v["chainId"] = json!("0x7fffffffffffffee");
    }
    v
}

/// Where a transaction sits, for its JSON and its logs.
#[derive(Debug, Clone, Copy)]
pub struct TxPlace {
    pub block_hash: B256,
    pub block_number: u64,
    pub timestamp: u64,
    pub index: u64,
    pub base_fee: Option<u64>,
}
