//! The replica's traces (`debug_trace*`) against geth's on the same chain: the scripted chain
//! (`harness::script::run_script`: legacy, EIP-2930, EIP-1559 and EIP-7702 transactions, a contract creation,
//! storage writes with logs, a revert, self-destructs, a block of hundreds of transfers) is mined by geth
//! (Prague rules, so every block runs the EIP-4788 and EIP-2935 system calls), published, and replayed by a
//! replica; then every block, transaction and a call on the head are traced by both, for each tracer and option set
//! listed in [`tracer_options`], and the answers must be JSON-equal. Errors (genesis, unknown transactions, JavaScript
//! tracers, parameters) and the answer-size cap are checked apart.

mod harness;

use harness::{chain::*, cluster::*, script::*, *};
use serde_json::{json, Value};

/// Each tracer and option set compared: every native tracer geth has, with the options that change its
/// answer. The replica reshapes revm-inspectors' answers into geth's (`crates/rpc/src/geth_shape.rs`); what
/// it still cannot match is listed in docs/rpc-compatibility.md.
fn tracer_options() -> Vec<Value> {
    vec![
        json!({}),
        json!({"disableStack": true, "disableStorage": true}),
        json!({"enableMemory": true, "enableReturnData": true}),
        json!({"limit": 5}),
        json!({"tracer": "callTracer"}),
        json!({"tracer": "callTracer", "tracerConfig": {"onlyTopCall": true}}),
        json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}}),
        json!({"tracer": "prestateTracer"}),
        json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}),
        json!({"tracer": "4byteTracer"}),
        json!({"tracer": "flatCallTracer"}),
        json!({"tracer": "muxTracer", "tracerConfig": {"callTracer": {"withLog": true}, "prestateTracer": {"diffMode": true}, "4byteTracer": {}}}),
        json!({"tracer": "noopTracer"}),
    ]
}

/// The paths where `got` differs from `want`.
fn differences(path: &str, got: &Value, want: &Value, out: &mut Vec<String>) {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => differences(&format!("{path}.{k}"), gv, wv, out),
                    None => out.push(format!("{path}.{k}: missing (want {wv})")),
                }
            }
            for k in g.keys().filter(|k| !w.contains_key(*k)) {
                out.push(format!("{path}.{k}: extra ({})", g[k]));
            }
        }
        (Value::Array(g), Value::Array(w)) if g.len() == w.len() => {
            for (i, (gv, wv)) in g.iter().zip(w).enumerate() {
                differences(&format!("{path}[{i}]"), gv, wv, out);
            }
        }
        _ if got == want => {}
        _ => {
            let short = |v: &Value| v.to_string().chars().take(200).collect::<String>();
            out.push(format!("{path}: got {}, want {}", short(got), short(want)));
        }
    }
}

/// A JSON-RPC response's result, or the whole response when it is an error (a difference then).
fn answer(response: Value) -> Value {
    response.get("result").cloned().unwrap_or(response)
}

#[test]
fn every_block_and_transaction_traces_as_geth_traces_it_with_every_tracer() {
    let c = Cluster::on(Upstream::geth());
    let touched = run_script(&c.client);
    let (head, _) = c.client.head();
    let (_replica, port) = c.rpc_replica(&[]);
    wait_rpc_head(port, head);
    let mut diffs = Vec::new();
    let mut compared = 0;
    for n in 1..=head {
        let block = c.client.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]));
        for opts in &tracer_options() {
            let params = json!([format!("{n:#x}"), opts]);
            let ours = answer(rpc_call(port, "debug_traceBlockByNumber", params.clone()));
            let geth = c.client.call("debug_traceBlockByNumber", params);
            let mut here = Vec::new();
            differences("", &ours, &geth, &mut here);
            diffs.extend(here.into_iter().take(5).map(|d| format!("block {n} {opts}: {d}")));
            compared += 1;
        }
        // Each transaction alone (the ones before it run untraced).
        for hash in block["transactions"].as_array().into_iter().flatten().take(3) {
            for opts in [
                json!({}),
                json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}}),
                json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}),
                json!({"tracer": "flatCallTracer", "tracerConfig": {"convertParityErrors": true}}),
            ] {
                let params = json!([hash, opts]);
                let ours = answer(rpc_call(port, "debug_traceTransaction", params.clone()));
                let geth = c.client.call("debug_traceTransaction", params);
                let mut here = Vec::new();
                differences("", &ours, &geth, &mut here);
                diffs.extend(here.into_iter().take(5).map(|d| format!("tx {hash} {opts}: {d}")));
                compared += 1;
            }
        }
    }
    // A call on top of the head, with each tracer: the contract's storage write and log.
    let contract = touched.iter().find(|(_, slots)| slots.len() == 5).map(|(a, _)| *a).expect("the contract");
    let call = json!({"from": DEV[1], "to": contract, "data": call_data(5, 0x44), "gas": "0x30000"});
    for opts in &tracer_options() {
        let params = json!([call, "latest", opts]);
        let ours = answer(rpc_call(port, "debug_traceCall", params.clone()));
        let geth = c.client.call("debug_traceCall", params);
        let mut here = Vec::new();
        differences("", &ours, &geth, &mut here);
        diffs.extend(here.into_iter().take(5).map(|d| format!("traceCall {opts}: {d}")));
        compared += 1;
    }
    eprintln!("{compared} traces compared over {head} blocks, {} differences", diffs.len());
    assert!(compared > 25, "too few traces compared: {compared}");
    assert!(
        diffs.is_empty(),
        "{} differences from geth:\n{}",
        diffs.len(),
        diffs.iter().take(60).cloned().collect::<Vec<_>>().join("\n")
    );
}

#[test]
fn trace_errors_are_geths() {
    let c = Cluster::on(Upstream::geth_on_demand());
    let tx = c.client.send(json!({"from": DEV[0], "to": DEV[1], "value": "0x1"}));
    mined(&c.client, tx);
    // A contract that loops until its gas runs out (JUMPDEST PUSH1 0 JUMP), called with 3M gas: about
    // 250,000 struct-logger steps, far past a 1 MB answer.
    let deploy = c.client.send(json!({"from": DEV[0], "data": "0x6004600c60003960046000f35b600056"}));
    let looping = contract_address(&c.client, deploy);
    let spin = c.client.send(json!({"from": DEV[0], "to": looping, "gas": "0x2dc6c0"}));
    mined(&c.client, spin);
    let (head, _) = c.client.head();
    let (_replica, port) = c.rpc_replica(&["--rpc-max-trace-mb", "1"]);
    wait_rpc_head(port, head);
    let ask = |method: &str, params: Value| {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}))
            .expect("an answer")
    };
    let genesis = ask("debug_traceBlockByNumber", json!(["0x0"]));
    assert_eq!(genesis["error"]["message"], "genesis is not traceable", "{genesis}");
    let unknown = ask("debug_traceTransaction", json!([format!("0x{}", "11".repeat(32))]));
    assert_eq!(unknown["error"]["code"], -32000, "{unknown}");
    let js = ask(
        "debug_traceTransaction",
        json!([tx, {"tracer": "{step: function() {}, result: function() {}}"}]),
    );
    assert!(js["error"]["message"].as_str().is_some_and(|m| m.contains("tracer not found")), "{js}");
    let bad_number = ask("debug_traceBlockByNumber", json!(["3"]));
    assert_eq!(bad_number["error"]["code"], -32602, "{bad_number}");
    assert!(bad_number["error"].get("data").is_none(), "{bad_number}");
    let ok = ask("debug_traceTransaction", json!([tx, {"tracer": "callTracer"}]));
    assert_eq!(ok["result"]["type"], "CALL", "{ok}");
    // Past the size cap: the cap's error, not a truncated trace; the call tracer's answer of it is small.
    let big = ask("debug_traceTransaction", json!([spin]));
    assert!(big["error"]["message"].as_str().is_some_and(|m| m.contains("size cap")), "{big}");
    let small = ask("debug_traceTransaction", json!([spin, {"tracer": "callTracer"}]));
    assert_eq!(small["result"]["error"], "out of gas", "{small}");
}
