//! `eth_simulateV1` on a replica against geth on the same chain: geth mines a small chain on demand (a
//! storage contract that logs, transfers), a replica replays it, and 20 generated payloads (several blocks
//! with gaps, state and block overrides, a moved precompile, validation on and off, transfers traced, full
//! transactions) must answer JSON-equal to geth's, hashes and state roots included. The suite's own 91 cases
//! run in `tests/conformance.rs`.

mod harness;

use harness::{chain::*, cluster::*, script::*, *};
use serde_json::{json, Value};

/// A small deterministic generator (xorshift), so a failing payload can be rebuilt from its number.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const SENDER: &str = "0xc000000000000000000000000000000000000000";
const OTHER: &str = "0xc100000000000000000000000000000000000000";
const OVERRIDDEN: &str = "0xc200000000000000000000000000000000000000";
/// Where sha256 (0x02) is moved to in the blocks that move it.
const MOVED_SHA256: &str = "0x0000000000000000000000000000000000123456";

/// Payload `n`: its shape follows from `n` and a generator seeded with it.
fn payload(n: u64, contract: &str) -> Value {
    let mut g = Gen(0x9e37_79b9_7f4a_7c15 ^ (n + 1).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let validation = n % 3 == 1;
    let fees = |call: &mut Value| {
        if validation {
            call["maxFeePerGas"] = json!("0x174876e800"); // 100 gwei
            call["maxPriorityFeePerGas"] = json!("0x3b9aca00");
        }
    };
    let blocks = 1 + n % 4;
    let mut block_state_calls = Vec::new();
    for b in 0..blocks {
        let mut overrides = json!({});
        if g.below(3) == 0 {
            // A gap of one or two empty blocks before this one (numbers are relative: the test adds the
            // head when it sends the payload).
            overrides["number"] = json!(format!("+{}", 2 + g.below(2)));
        }
        if g.below(4) == 0 {
            overrides["feeRecipient"] = json!(OTHER);
        }
        if g.below(4) == 0 {
            overrides["prevRandao"] = json!(format!("0x{:064x}", g.next()));
        }
        if g.below(5) == 0 {
            overrides["gasLimit"] = json!("0x1c9c380");
        }
        if n % 7 == 3 && b == 0 {
            overrides["withdrawals"] = json!([{"index": "0x0", "validatorIndex": "0x1", "address": OTHER,
                                                "amount": "0x3e8"}]);
        }
        let mut state = json!({});
        if b == 0 {
            state[SENDER] = json!({"balance": "0x3635c9adc5dea00000"}); // 1000 ether
        }
        if g.below(3) == 0 {
            // The storage contract's code at another address, with a slot set.
            state[OVERRIDDEN] = json!({"code": format!("0x{RUNTIME}"),
                                       "stateDiff": {format!("0x{}", word(3)): format!("0x{}", word(0x33))}});
        }
        let move_sha = g.below(4) == 0;
        if move_sha {
            state["0x0000000000000000000000000000000000000002"] =
                json!({"movePrecompileToAddress": MOVED_SHA256});
        }
        let mut calls = Vec::new();
        for _ in 0..1 + g.below(4) {
            let mut call = match g.below(6) {
                0 => json!({"from": SENDER, "to": OTHER, "value": format!("{:#x}", 1 + g.below(1000))}),
                1 => json!({"from": SENDER, "to": contract, "input": call_data(1 + g.below(5), g.below(3)),
                            "value": format!("{:#x}", g.below(2))}),
                2 => json!({"from": SENDER, "to": contract, "input": "0x"}), // reverts
                3 if move_sha => json!({"from": SENDER, "to": MOVED_SHA256, "input": "0x1234"}),
                3 => {
                    json!({"from": SENDER, "to": "0x0000000000000000000000000000000000000002", "input": "0x1234"})
                }
                4 => json!({"from": SENDER, "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "value": "0x7"}),
                _ => json!({"from": SENDER, "to": OVERRIDDEN, "input": call_data(3, 0x44)}),
            };
            fees(&mut call);
            calls.push(call);
        }
        block_state_calls.push(json!({"blockOverrides": overrides, "stateOverrides": state, "calls": calls}));
    }
    json!({"blockStateCalls": block_state_calls, "validation": validation, "traceTransfers": n.is_multiple_of(2),
           "returnFullTransactions": n.is_multiple_of(5)})
}

/// Relative block numbers ("+k": k past the block before) made absolute on top of `head`.
fn absolute(mut payload: Value, head: u64) -> Value {
    let mut prev = head;
    for b in payload["blockStateCalls"].as_array_mut().into_iter().flatten() {
        let relative =
            b["blockOverrides"]["number"].as_str().and_then(|s| s.strip_prefix('+')).map(String::from);
        match relative {
            Some(k) => {
                prev += k.parse::<u64>().expect("a step");
                b["blockOverrides"]["number"] = json!(format!("{prev:#x}"));
            }
            None => prev += 1,
        }
    }
    payload
}

/// A response as compared: an error by its code (the words are each node's own), a result whole.
fn comparable(mut response: Value) -> Value {
    if let Some(e) = response.get_mut("error") {
        *e = json!({"code": e["code"]});
    }
    response
}

#[test]
fn generated_simulations_answer_as_geth_answers_them() {
    let c = Cluster::on(Upstream::geth_on_demand());
    let deploy = c.client.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}")}));
    let contract = format!("{:#x}", contract_address(&c.client, deploy));
    let write =
        c.client.send(json!({"from": DEV[0], "to": contract, "data": call_data(2, 9), "gas": "0x20000"}));
    mined(&c.client, write);
    c.client.transfers(DEV[1], 0xd000, 3);
    let (head, _) = c.client.head();
    let (_replica, port) = c.rpc_replica(&[]);
    wait_rpc_head(port, head);

    let mut diffs = Vec::new();
    let (mut blocks, mut errors) = (0, 0);
    for n in 0..20 {
        // On the head read above by number: geth on demand may seal an empty block after it.
        let request = json!([absolute(payload(n, &contract), head), format!("{head:#x}")]);
        let ours = comparable(rpc_call(port, "eth_simulateV1", request.clone()));
        let geth = comparable(rpc_call(c.client.port, "eth_simulateV1", request.clone()));
        let mut here = Vec::new();
        differences("", &ours, &geth, &mut here);
        if !here.is_empty() {
            diffs.push(format!(
                "payload {n} {request}:\n  {}",
                here.into_iter().take(8).collect::<Vec<_>>().join("\n  ")
            ));
        }
        match geth["result"].as_array() {
            Some(b) => blocks += b.len(),
            None => errors += 1,
        }
    }
    eprintln!("20 payloads compared: {blocks} simulated blocks, {errors} refused by both");
    assert!(
        blocks >= 30 && errors <= 4,
        "the payloads must mostly simulate: {blocks} blocks, {errors} errors"
    );
    assert!(diffs.is_empty(), "{} payloads differ from geth:\n{}", diffs.len(), diffs.join("\n"));
}
