//! What revm-inspectors answers, reshaped into what geth 1.17 answers: pure functions over the JSON of one
//! transaction's trace, each tested by a table here and against geth itself by `tests/traces.rs`.
//!
//! | tracer | revm-inspectors | geth (what these functions make) |
//! |---|---|---|
//! | struct logger | no `refund`; zero refunds, empty memory, return data and storage written; `limit` counts steps; an error on every failed step, in revm's names | `refund` when non-zero ([`struct_logs`], from [`crate::tracers`]' recorder); `limit` is a size in bytes; errors only where the step fails before it runs, in geth's words ([`step_error`]) |
//! | `callTracer` + `withLog` | a log's `index` counts within the transaction | within the block ([`call_logs`]) |
//! | `prestateTracer` | no `codeHash`; accounts empty before the transaction listed | `codeHash` beside the code, empty accounts left out ([`prestate`]) |
//! | `flatCallTracer` | parity's words and gas | built from geth's own call frame ([`flat_from_call`]) |
//! | `callTracer`, `flatCallTracer` | "precompiled failed" for every precompile error | the precompile's own words where the input's length decides them ([`precompile_errors`]) |

use alloy_primitives::{Address, B256};
use serde_json::{Map, Value};

/// What geth's struct logger shows of each step that revm-inspectors does not record (`crate::tracers`).
#[derive(Debug, Clone, Copy, Default)]
pub struct StepFacts<'a> {
    /// The transaction's refund counter at each recorded step.
    pub refunds: &'a [u64],
    /// The stack's depth at each recorded step.
    pub stack_lens: &'a [u16],
}

/// geth's struct-logger steps from revm-inspectors' `structLogs`: the per-step refund counter, fields geth
/// leaves out when empty removed, errors as geth's logger shows them, and geth's `limit`: steps are kept
/// while the answer so far is at most `limit` bytes (0: no limit).
pub fn struct_logs(frame: &mut Value, facts: Option<StepFacts>, limit: u64) {
    let Some(steps) = frame.get_mut("structLogs").and_then(Value::as_array_mut) else { return };
    let mut size = 0u64;
    let mut keep = steps.len();
    for (i, step) in steps.iter_mut().enumerate() {
        if limit != 0 && size > limit {
            keep = i;
            break;
        }
        let Some(fields) = step.as_object_mut() else { continue };
        fields.remove("refund");
        if let Some(refund) = facts.and_then(|f| f.refunds.get(i)).filter(|r| **r != 0) {
            fields.insert("refund".into(), (*refund).into());
        }
        for name in ["returnData", "memory", "storage"] {
            if fields.get(name).is_some_and(is_empty) {
                fields.remove(name);
            }
        }
        let stack_len = facts
            .and_then(|f| f.stack_lens.get(i).copied())
            .or_else(|| fields.get("stack").and_then(Value::as_array).map(|s| s.len() as u16));
        let op = fields.get("op").and_then(Value::as_str).unwrap_or_default().to_owned();
        match fields.get("error").and_then(Value::as_str).and_then(|e| step_error(e, &op, stack_len)) {
            Some(words) => fields.insert("error".into(), words.into()),
            None => fields.remove("error"),
        };
        if limit != 0 {
            size += step.to_string().len() as u64;
        }
    }
    steps.truncate(keep);
}

/// A failed step's error as geth's struct logger shows it, or none. geth logs a step's error only when the
/// step fails before it runs (its stack or its gas); a failure while it runs (an invalid opcode or jump,
/// a write in a static call, return data out of bounds, a revert) reaches the tracer's fault hook, which the
/// struct logger does not have: the step shows no error.
pub fn step_error(revm: &str, op: &str, stack_len: Option<u16>) -> Option<String> {
    let name = revm.trim_start_matches("Some(").trim_end_matches(')');
    let opcode = || (0u8..=255).filter_map(revm::bytecode::opcode::OpCode::new).find(|o| o.as_str() == op);
    match name {
        "OutOfGas" | "MemoryOOG" | "MemoryLimitOOG" | "PrecompileOOG" | "InvalidOperandOOG" => {
            Some("out of gas".into())
        }
        "StackUnderflow" => {
            let required = opcode().map_or(0, |o| o.inputs());
            Some(format!("stack underflow ({} <=> {required})", stack_len.unwrap_or_default()))
        }
        "StackOverflow" => {
            let limit = opcode().map_or(1023, |o| 1024 + i32::from(o.inputs()) - i32::from(o.outputs()));
            Some(format!("stack limit reached {} ({limit})", stack_len.unwrap_or(1024)))
        }
        _ => None,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.is_empty() || s == "0x",
        Value::Array(a) => a.is_empty(),
        Value::Object(o) => o.is_empty(),
        _ => false,
    }
}

/// A call frame's logs (and its sub-calls'), numbered within the block: revm-inspectors numbers them from 0
/// in each transaction, geth from the block's first log; `offset` is the number of logs the block's earlier
/// transactions emitted.
pub fn call_logs(frame: &mut Value, offset: u64) {
    if offset == 0 {
        return;
    }
    if let Some(logs) = frame.get_mut("logs").and_then(Value::as_array_mut) {
        for log in logs {
            if let Some(index) = log.get("index").and_then(quantity) {
                log["index"] = hex(index + offset);
            }
        }
    }
    if let Some(calls) = frame.get_mut("calls").and_then(Value::as_array_mut) {
        for call in calls {
            call_logs(call, offset);
        }
    }
}

/// Call frames that failed in a precompile, with geth's words where the input's length decides them:
/// revm-inspectors says "precompiled failed" for every precompile error, geth the precompile's own, and geth
/// charges a precompile's gas before it looks at the input (revm checks some inputs first). `top_available` is
/// the gas the transaction's own call had (its gas limit less the intrinsic gas); a sub-call's is its `gas`.
pub fn precompile_errors(frame: &mut Value, top_available: u64) {
    fix_precompile_errors(frame, Some(top_available));
}

fn fix_precompile_errors(frame: &mut Value, available: Option<u64>) {
    if frame.get("error").and_then(Value::as_str) == Some("precompiled failed") {
        let to = frame.get("to").and_then(Value::as_str).and_then(|t| t.parse::<Address>().ok());
        let input = frame.get("input").and_then(Value::as_str).unwrap_or("0x");
        let input = alloy_primitives::hex::decode(input).unwrap_or_default();
        let available = available.or_else(|| frame.get("gas").and_then(quantity));
        if let Some(words) = to.zip(available).and_then(|(to, gas)| precompile_error(&to, &input, gas)) {
            frame["error"] = words.into();
        }
    }
    for call in frame.get_mut("calls").and_then(Value::as_array_mut).into_iter().flatten() {
        fix_precompile_errors(call, None);
    }
}

/// geth's error for a failed call to precompile `to` with `input` and `gas`, when the input's length alone
/// decides it (core/vm/contracts.go: the gas first, then the input); `None` for the rest, which keep
/// revm-inspectors' words.
pub fn precompile_error(to: &Address, input: &[u8], gas: u64) -> Option<&'static str> {
    if to.0[..19].iter().any(|b| *b != 0) {
        return None;
    }
    let n = input.len() as u64;
    let (required, valid) = match to.0[19] {
        0x08 => (45_000 + 34_000 * (n / 192), n.is_multiple_of(192)),
        0x09 if n != 213 => (0, false),
        0x09 => (u64::from(u32::from_be_bytes([input[0], input[1], input[2], input[3]])), input[212] <= 1),
        0x0a => (50_000, n == 192),
        0x0b => (375, n == 256),
        0x0c if n < 160 => (0, false),
        0x0d => (600, n == 512),
        0x0e if n < 288 => (0, false),
        0x0f => (37_700 + 32_600 * (n / 384), n > 0 && n.is_multiple_of(384)),
        0x10 => (5_500, n == 64),
        0x11 => (23_800, n == 128),
        _ => return None,
    };
    if gas < required {
        return Some("out of gas");
    }
    match to.0[19] {
        _ if valid => None,
        0x08 => Some("bad elliptic curve pairing size"),
        0x09 if n == 213 => Some("invalid final flag"),
        _ => Some("invalid input length"),
    }
}

/// An account's state as the prestate tracer needs it, before and after the transaction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AccountFacts {
    /// No nonce, no balance and no code before the transaction (geth leaves such accounts out of `pre`).
    pub empty_before: bool,
    /// Its code hash before the transaction, when it had code.
    pub code_hash_before: Option<B256>,
    /// Its code hash after the transaction, when the transaction changed the account (None: unchanged).
    pub code_hash_after: Option<B256>,
}

/// `prestateTracer`'s answer as geth gives it: accounts that were empty before the transaction left out of the
/// prestate (unless `includeEmpty`), `codeHash` beside each account's code, and in `diffMode` a `codeHash` in
/// `post` when the transaction changed it.
pub fn prestate(
    frame: &mut Value,
    diff_mode: bool,
    include_empty: bool,
    facts: impl Fn(&Address) -> AccountFacts,
) {
    let each = |accounts: &mut Map<String, Value>, post: bool| {
        accounts.retain(|address, account| {
            let Ok(address) = address.parse::<Address>() else { return true };
            let facts = facts(&address);
            if !post && facts.empty_before && !include_empty {
                return false;
            }
            let hash = if post {
                let before = facts.code_hash_before.unwrap_or(alloy_primitives::KECCAK256_EMPTY);
                facts.code_hash_after.filter(|after| *after != before)
            } else {
                facts.code_hash_before
            };
            if let (Some(hash), Some(fields)) = (hash, account.as_object_mut()) {
                fields.insert("codeHash".into(), hash.to_string().into());
            }
            true
        });
    };
    if diff_mode {
        if let Some(pre) = frame.get_mut("pre").and_then(Value::as_object_mut) {
            each(pre, false);
        }
        if let Some(post) = frame.get_mut("post").and_then(Value::as_object_mut) {
            each(post, true);
        }
    } else if let Some(pre) = frame.as_object_mut() {
        each(pre, false);
    }
}

/// Where a flat trace sits: geth's tracer context.
#[derive(Debug, Clone, Copy, Default)]
pub struct FlatContext {
    pub block_hash: Option<B256>,
    pub block_number: u64,
    pub tx_hash: Option<B256>,
    pub tx_index: u64,
}

/// `flatCallTracer`'s answer, built as geth builds it from its call tracer's frame (which the replica
/// answers exactly as geth): calls to precompiles dropped unless `include_precompiles`, every sub-call given
/// a value, one entry per frame in depth-first order with its trace address, parity's error words when
/// `parity_errors`, no `result` for a frame that failed other than by reverting.
pub fn flat_from_call(
    frame: &Value,
    at: FlatContext,
    parity_errors: bool,
    include_precompiles: bool,
    is_precompile: &dyn Fn(&Address) -> bool,
) -> Value {
    let mut out = Vec::new();
    flatten(frame, &mut Vec::new(), at, parity_errors, include_precompiles, is_precompile, &mut out);
    Value::Array(out)
}

fn flatten(
    frame: &Value,
    address: &mut Vec<usize>,
    at: FlatContext,
    parity_errors: bool,
    include_precompiles: bool,
    is_precompile: &dyn Fn(&Address) -> bool,
    out: &mut Vec<Value>,
) {
    let field = |name: &str| frame.get(name).cloned();
    let kind = frame.get("type").and_then(Value::as_str).unwrap_or("CALL");
    let calls: Vec<&Value> = frame
        .get("calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(|c| include_precompiles || !is_precompile_call(c, is_precompile))
        .collect();
    let mut action = Map::new();
    let mut result = Map::new();
    let flat_type = match kind {
        "CREATE" | "CREATE2" => {
            action.insert("creationMethod".into(), kind.to_lowercase().into());
            insert(&mut action, "from", field("from"));
            insert(&mut action, "gas", field("gas"));
            insert(&mut action, "value", field("value"));
            action.insert("init".into(), field("input").unwrap_or_else(|| "0x".into()));
            insert(&mut result, "gasUsed", field("gasUsed"));
            insert(&mut result, "address", field("to"));
            result.insert("code".into(), field("output").unwrap_or_else(|| "0x".into()));
            "create"
        }
        "SELFDESTRUCT" => {
            insert(&mut action, "address", field("from"));
            insert(&mut action, "balance", field("value"));
            insert(&mut action, "refundAddress", field("to"));
            "suicide"
        }
        _ => {
            action.insert("callType".into(), kind.to_lowercase().into());
            insert(&mut action, "from", field("from"));
            insert(&mut action, "to", field("to"));
            insert(&mut action, "gas", field("gas"));
            // A sub-call always has a value in geth's flat trace (a STATICCALL's is zero).
            let value = field("value").or_else(|| (!address.is_empty()).then(|| "0x0".into()));
            insert(&mut action, "value", value);
            action.insert("input".into(), field("input").unwrap_or_else(|| "0x".into()));
            insert(&mut result, "gasUsed", field("gasUsed"));
            result.insert("output".into(), field("output").unwrap_or_else(|| "0x".into()));
            "call"
        }
    };
    let error = frame.get("error").and_then(Value::as_str).unwrap_or("");
    let mut entry = Map::new();
    entry.insert("action".into(), Value::Object(action));
    entry.insert("blockHash".into(), at.block_hash.map_or(Value::Null, |h| h.to_string().into()));
    entry.insert("blockNumber".into(), at.block_number.into());
    if !error.is_empty() {
        let words = if parity_errors { parity_error(error) } else { error.to_owned() };
        entry.insert("error".into(), words.into());
    }
    // A revert's output says why; any other failure's result is dropped.
    let keep_result = error.is_empty() || error == "execution reverted";
    if flat_type != "suicide" && keep_result {
        entry.insert("result".into(), Value::Object(result));
    }
    entry.insert("subtraces".into(), calls.len().into());
    entry.insert("traceAddress".into(), address.clone().into());
    entry.insert("transactionHash".into(), at.tx_hash.map_or(Value::Null, |h| h.to_string().into()));
    entry.insert("transactionPosition".into(), at.tx_index.into());
    entry.insert("type".into(), flat_type.into());
    out.push(Value::Object(entry));
    for (i, call) in calls.into_iter().enumerate() {
        address.push(i);
        flatten(call, address, at, parity_errors, include_precompiles, is_precompile, out);
        address.pop();
    }
}

fn insert(map: &mut Map<String, Value>, name: &str, value: Option<Value>) {
    if let Some(v) = value.filter(|v| !v.is_null()) {
        map.insert(name.into(), v);
    }
}

/// geth drops CALL and STATICCALL frames to precompiles from flat traces (parity never had them).
fn is_precompile_call(call: &Value, is_precompile: &dyn Fn(&Address) -> bool) -> bool {
    let kind = call.get("type").and_then(Value::as_str).unwrap_or("");
    let to = call.get("to").and_then(Value::as_str).and_then(|t| t.parse::<Address>().ok());
    matches!(kind, "CALL" | "STATICCALL") && to.is_some_and(|t| is_precompile(&t))
}

/// geth's `convertParityErrors` table (eth/tracers/native/call_flat.go).
pub fn parity_error(geth: &str) -> String {
    let exact = match geth {
        "contract creation code storage out of gas"
        | "out of gas"
        | "gas uint64 overflow"
        | "max code size exceeded" => Some("Out of gas"),
        "invalid jump destination" => Some("Bad jump destination"),
        "execution reverted" => Some("Reverted"),
        "return data out of bounds" => Some("Out of bounds"),
        "stack limit reached 1024 (1023)" => Some("Out of stack"),
        "precompiled failed" | "invalid input length" => Some("Built-in failed"),
        _ => None,
    };
    let prefixed = || {
        [
            ("out of gas:", "Out of gas"),
            ("invalid opcode:", "Bad instruction"),
            ("stack underflow", "Stack underflow"),
        ]
        .into_iter()
        .find(|(prefix, _)| geth.starts_with(prefix))
        .map(|(_, parity)| parity)
    };
    exact.or_else(prefixed).unwrap_or(geth).to_owned()
}

fn quantity(v: &Value) -> Option<u64> {
    match v {
        Value::String(s) => u64::from_str_radix(s.trim_start_matches("0x"), 16).ok(),
        Value::Number(n) => n.as_u64(),
        _ => None,
    }
}

fn hex(n: u64) -> Value {
    format!("{n:#x}").into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn struct_logs_table() {
        // (refunds, limit, steps in, steps out)
        let step = |pc: u64| {
            json!({"pc": pc, "op": "PUSH1", "gas": 10, "gasCost": 3, "depth": 1, "refund": 0,
                                    "memory": [], "returnData": "0x", "storage": {}})
        };
        let plain = |pc: u64| json!({"pc": pc, "op": "PUSH1", "gas": 10, "gasCost": 3, "depth": 1});
        type Case = (Option<Vec<u64>>, u64, Vec<Value>, Vec<Value>);
        let cases: Vec<Case> = vec![
            (None, 0, vec![step(0), step(2)], vec![plain(0), plain(2)]),
            (Some(vec![0, 4800]), 0, vec![step(0), step(2)], {
                let mut second = plain(2);
                second["refund"] = 4800.into();
                vec![plain(0), second]
            }),
            // geth keeps a step while the answer so far is at most `limit` bytes: the first always.
            (None, 5, vec![step(0), step(2), step(4)], vec![plain(0)]),
            (None, 60, vec![step(0), step(2), step(4)], vec![plain(0), plain(2)]),
        ];
        for (refunds, limit, input, want) in cases {
            let mut frame = json!({"gas": 1, "failed": false, "returnValue": "0x", "structLogs": input});
            let facts = refunds.as_deref().map(|refunds| StepFacts { refunds, stack_lens: &[] });
            struct_logs(&mut frame, facts, limit);
            assert_eq!(frame["structLogs"], Value::Array(want), "refunds {refunds:?} limit {limit}");
        }
    }

    #[test]
    fn step_errors_as_geths_logger_shows_them() {
        let cases = [
            ("OutOfGas", "SSTORE", Some(2), Some("out of gas")),
            ("Some(MemoryOOG)", "MSTORE", Some(2), Some("out of gas")),
            ("StackUnderflow", "ADD", Some(1), Some("stack underflow (1 <=> 2)")),
            ("StackUnderflow", "SWAP1", Some(0), Some("stack underflow (0 <=> 2)")),
            ("StackOverflow", "PUSH1", Some(1024), Some("stack limit reached 1024 (1023)")),
            // Failures while a step runs reach geth's fault hook, not its struct logger.
            ("InvalidJump", "JUMP", Some(1), None),
            ("InvalidFEOpcode", "INVALID", Some(0), None),
            ("Revert", "REVERT", Some(2), None),
            ("StateChangeDuringStaticCall", "SSTORE", Some(2), None),
        ];
        for (revm, op, stack, want) in cases {
            assert_eq!(step_error(revm, op, stack).as_deref(), want, "{revm} at {op}");
        }
    }

    #[test]
    fn precompile_errors_table() {
        let at = Address::with_last_byte;
        let plenty = 1_000_000;
        let cases: [(Address, Vec<u8>, u64, Option<&str>); 11] = [
            (at(0x09), vec![], 0, Some("invalid input length")),
            (at(0x09), vec![0; 213], plenty, None),
            (at(0x09), [vec![0; 212], vec![2]].concat(), plenty, Some("invalid final flag")),
            (at(0x08), vec![0; 100], plenty, Some("bad elliptic curve pairing size")),
            (at(0x08), vec![0; 100], 1000, Some("out of gas")),
            (at(0x0a), vec![], plenty, Some("invalid input length")),
            // geth charges first: an empty BLS pairing with no gas is out of gas, not of input.
            (at(0x0f), vec![], 0, Some("out of gas")),
            (at(0x0f), vec![], plenty, Some("invalid input length")),
            (at(0x0c), vec![0; 160], plenty, None),
            (at(0x11), vec![0; 127], plenty, Some("invalid input length")),
            (Address::repeat_byte(1), vec![], plenty, None),
        ];
        for (to, input, gas, want) in cases {
            assert_eq!(
                precompile_error(&to, &input, gas),
                want,
                "{to} with {} bytes, {gas} gas",
                input.len()
            );
        }
        let mut frame = json!({"gas": "0x5208", "calls": [
            {"to": at(0x09).to_string(), "input": "0x", "gas": "0x0", "error": "precompiled failed"}]});
        precompile_errors(&mut frame, 0);
        assert_eq!(frame["calls"][0]["error"], "invalid input length");
    }

    #[test]
    fn call_logs_are_numbered_in_the_block() {
        let mut frame = json!({"logs": [{"index": "0x0"}], "calls": [{"logs": [{"index": "0x1"}]}]});
        call_logs(&mut frame, 3);
        assert_eq!(frame, json!({"logs": [{"index": "0x3"}], "calls": [{"logs": [{"index": "0x4"}]}]}));
    }

    #[test]
    fn prestate_table() {
        let code = B256::repeat_byte(0xc0);
        let other = B256::repeat_byte(0xc1);
        let facts = move |a: &Address| match a.0[19] {
            1 => AccountFacts { empty_before: true, code_hash_before: None, code_hash_after: Some(code) },
            2 => AccountFacts { empty_before: false, code_hash_before: Some(code), code_hash_after: None },
            _ => AccountFacts {
                empty_before: false,
                code_hash_before: Some(code),
                code_hash_after: Some(other),
            },
        };
        let (a1, a2, a3) =
            (Address::with_last_byte(1), Address::with_last_byte(2), Address::with_last_byte(3));
        let mut plain =
            json!({a1.to_string(): {"balance": "0x0"}, a2.to_string(): {"balance": "0x1", "code": "0x00"}});
        prestate(&mut plain, false, false, facts);
        assert_eq!(
            plain,
            json!({a2.to_string(): {"balance": "0x1", "code": "0x00", "codeHash": code.to_string()}})
        );
        let mut with_empty = json!({a1.to_string(): {"balance": "0x0"}});
        prestate(&mut with_empty, false, true, facts);
        assert_eq!(with_empty, json!({a1.to_string(): {"balance": "0x0"}}));
        let mut diff = json!({
            "pre": {a1.to_string(): {"balance": "0x0"}, a3.to_string(): {"nonce": 1}},
            "post": {a1.to_string(): {"code": "0x00"}, a3.to_string(): {"code": "0x01"}},
        });
        prestate(&mut diff, true, false, facts);
        assert_eq!(
            diff,
            json!({
                "pre": {a3.to_string(): {"nonce": 1, "codeHash": code.to_string()}},
                "post": {a1.to_string(): {"code": "0x00", "codeHash": code.to_string()},
                         a3.to_string(): {"code": "0x01", "codeHash": other.to_string()}},
            })
        );
    }

    #[test]
    fn flat_from_call_table() {
        let ecrecover = Address::with_last_byte(1);
        let frame = json!({
            "type": "CALL", "from": "0x00000000000000000000000000000000000000aa",
            "to": "0x00000000000000000000000000000000000000bb", "value": "0x0", "gas": "0x100",
            "gasUsed": "0x50", "input": "0x", "output": "0x01",
            "calls": [
                {"type": "STATICCALL", "from": "0x00000000000000000000000000000000000000bb",
                 "to": ecrecover.to_string(), "gas": "0x10", "gasUsed": "0x1", "input": "0x"},
                {"type": "CREATE2", "from": "0x00000000000000000000000000000000000000bb",
                 "to": "0x00000000000000000000000000000000000000cc", "value": "0x1", "gas": "0x20",
                 "gasUsed": "0x20", "input": "0x60", "error": "out of gas"},
                {"type": "DELEGATECALL", "from": "0x00000000000000000000000000000000000000bb",
                 "to": "0x00000000000000000000000000000000000000dd", "gas": "0x10", "gasUsed": "0x2",
                 "input": "0x", "output": "0x08c379a0", "error": "execution reverted"},
            ]
        });
        let at = FlatContext { block_number: 7, tx_index: 2, ..Default::default() };
        let is_precompile = |a: &Address| *a == ecrecover;
        let flat = flat_from_call(&frame, at, true, false, &is_precompile);
        let flat = flat.as_array().expect("an array");
        assert_eq!(flat.len(), 3, "{flat:?}");
        assert_eq!(flat[0]["subtraces"], 2);
        assert_eq!(flat[0]["result"], json!({"gasUsed": "0x50", "output": "0x01"}));
        assert_eq!(flat[1]["type"], "create");
        assert_eq!(flat[1]["action"]["creationMethod"], "create2");
        assert_eq!(flat[1]["error"], "Out of gas");
        assert!(flat[1].get("result").is_none(), "a failed create has no result");
        assert_eq!(flat[1]["traceAddress"], json!([0]));
        assert_eq!(flat[2]["error"], "Reverted");
        assert_eq!(flat[2]["action"]["value"], "0x0", "a sub-call always has a value");
        assert_eq!(flat[2]["result"]["output"], "0x08c379a0", "a revert keeps its output");
        assert_eq!(flat[2]["transactionPosition"], 2);
        let with_precompiles = flat_from_call(&frame, at, false, true, &is_precompile);
        assert_eq!(with_precompiles.as_array().map(Vec::len), Some(4));
        assert_eq!(with_precompiles[2]["error"], "out of gas");
    }
}
