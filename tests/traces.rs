//! The replica's traces (`debug_trace*`) against geth's on the same chain: the scripted chain
//! (`harness::script::run_script`: legacy, EIP-2930, EIP-1559 and EIP-7702 transactions, a contract creation,
//! storage writes with logs, a revert, self-destructs, a block of hundreds of transfers) is mined by geth on
//! Prague's rules (the EIP-4788 and EIP-2935 system calls, the request queues), after blocks on Cancun's (a
//! creation and a call reverting with a custom error), published, and replayed by a replica; then every block, transaction and a call on the head are traced by both, for each tracer and option set
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

/// A JSON-RPC response's result, or the whole response when it is an error (a difference then).
fn answer(response: Value) -> Value {
    response.get("result").cloned().unwrap_or(response)
}

/// The traced chain and a replica of it: geth's developer chain on Cancun's rules for its first blocks,
/// then the scripted chain on Prague's, published and replayed to its head.
struct Traced {
    c: Cluster,
    touched: std::collections::BTreeMap<alloy_primitives::Address, Vec<u64>>,
    head: u64,
    port: u16,
    _replica: harness::Killed,
}

fn traced_chain() -> Traced {
    let prague = prague_in(8);
    let c = Cluster::on(Upstream::geth_cancun_then_prague(prague));
    let touched = run_cancun_then_script(&c.client, prague);
    let (head, _) = c.client.head();
    let (replica, port) = c.rpc_replica(&[]);
    wait_rpc_head(port, head);
    Traced { c, touched, head, port, _replica: replica }
}

/// The replica and geth asked the same questions: the paths where their answers differ, labelled, and how
/// many answers were compared.
struct Comparison<'a> {
    port: u16,
    geth: &'a Upstream,
    diffs: Vec<String>,
    compared: usize,
}

impl Comparison<'_> {
    fn ask(&mut self, method: &'static str, params: Value, label: impl std::fmt::Display) {
        let ours = answer(rpc_call(self.port, method, params.clone()));
        let geth = self.geth.call(method, params);
        let mut here = Vec::new();
        differences("", &ours, &geth, &mut here);
        self.diffs.extend(here.into_iter().take(5).map(|d| format!("{label}: {d}")));
        self.compared += 1;
    }
}

#[test]
fn every_block_and_transaction_traces_as_geth_traces_it_with_every_tracer() {
    let Traced { c, touched, head, port, _replica } = traced_chain();
    let mut check = Comparison { port, geth: &c.client, diffs: Vec::new(), compared: 0 };
    for n in 1..=head {
        let block = c.client.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]));
        for opts in &tracer_options() {
            check.ask(
                "debug_traceBlockByNumber",
                json!([format!("{n:#x}"), opts]),
                format!("block {n} {opts}"),
            );
        }
        // Each transaction alone (the ones before it run untraced).
        for hash in block["transactions"].as_array().into_iter().flatten().take(3) {
            for opts in [
                json!({}),
                json!({"tracer": "callTracer", "tracerConfig": {"withLog": true}}),
                json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}}),
                json!({"tracer": "flatCallTracer", "tracerConfig": {"convertParityErrors": true}}),
            ] {
                check.ask("debug_traceTransaction", json!([hash, opts]), format!("tx {hash} {opts}"));
            }
        }
    }
    let contract =
        touched.iter().find(|(_, slots)| slots.first() == Some(&1)).map(|(a, _)| *a).expect("the contract");
    let call = json!({"from": DEV[1], "to": contract, "data": call_data(5, 0x44), "gas": "0x30000"});
    // The same call inside each block that follows the contract's creation, before its second transaction
    // (geth's `txIndex`).
    let mut with_index = 0;
    for n in 4..=head {
        let block = c.client.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]));
        if block["transactions"].as_array().map_or(0, Vec::len) < 2 {
            continue;
        }
        for tracer in ["prestateTracer", "callTracer"] {
            let opts = json!({"tracer": tracer, "txIndex": "0x1"});
            let label = format!("traceCall block {n} txIndex 1 {tracer}");
            check.ask("debug_traceCall", json!([call, format!("{n:#x}"), opts]), label);
            with_index += 1;
        }
    }
    assert!(with_index >= 4, "too few calls traced inside blocks: {with_index}");
    // A call on top of the head, with each tracer: the contract's storage write and log.
    for opts in &tracer_options() {
        check.ask("debug_traceCall", json!([call, "latest", opts]), format!("traceCall {opts}"));
    }
    let Comparison { diffs, compared, .. } = check;
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
    // The trace namespace: what it does not hold is null (as reth answers), a replay of it an error.
    let future = ask("trace_block", json!([format!("{:#x}", head + 10)]));
    assert_eq!(future["result"], Value::Null, "{future}");
    let genesis = ask("trace_block", json!(["0x0"]));
    assert_eq!(genesis["result"], json!([]), "{genesis}");
    let unknown = ask("trace_transaction", json!([format!("0x{}", "11".repeat(32))]));
    assert_eq!(unknown["result"], Value::Null, "{unknown}");
    let unknown = ask("trace_replayTransaction", json!([format!("0x{}", "11".repeat(32)), ["trace"]]));
    assert_eq!(unknown["error"]["code"], -32000, "{unknown}");
    let bad_type = ask("trace_replayTransaction", json!([tx, ["everything"]]));
    assert_eq!(bad_type["error"]["code"], -32602, "{bad_type}");
    // A vmTrace of the looping call is past the size cap too.
    let vm = ask("trace_replayTransaction", json!([spin, ["vmTrace"]]));
    assert!(vm["error"]["message"].as_str().is_some_and(|m| m.contains("size cap")), "{vm}");
    let flat = ask("trace_transaction", json!([spin]));
    assert_eq!(flat["result"][0]["error"], "Out of gas", "{flat}");
}

/// A parity trace entry as geth's `flatCallTracer` writes it where the two overlap: the top-level call's
/// `gas` and `gasUsed` left out (parity, and reth and erigon after it, count the gas the execution had and
/// used, without the intrinsic cost; geth the transaction's gas limit and receipt gas), a failed call's
/// `result: null` (geth omits it) dropped.
fn overlap(trace: &Value) -> Value {
    let mut t = trace.clone();
    if let Some(fields) = t.as_object_mut() {
        if fields.get("result").is_some_and(Value::is_null) {
            fields.remove("result");
        }
        let top = fields.get("traceAddress").and_then(Value::as_array).is_some_and(Vec::is_empty);
        if top {
            if let Some(result) = fields.get_mut("result").and_then(Value::as_object_mut) {
                result.remove("gasUsed");
            }
            if let Some(action) = fields.get_mut("action").and_then(Value::as_object_mut) {
                action.remove("gas");
            }
        }
    }
    t
}

#[test]
fn parity_traces_match_geths_flat_call_tracer() {
    let Traced { c, touched, head, port, _replica } = traced_chain();
    let mut diffs = Vec::new();
    let mut compared = 0;
    let mut all = Vec::new();
    for n in 1..=head {
        let tag = format!("{n:#x}");
        let ours = answer(rpc_call(port, "trace_block", json!([tag])));
        let flat = json!({"tracer": "flatCallTracer", "tracerConfig": {"convertParityErrors": true}});
        let geth = c.client.call("debug_traceBlockByNumber", json!([tag, flat]));
        let geth: Vec<Value> = geth
            .as_array()
            .expect("geth's block trace")
            .iter()
            .flat_map(|tx| tx["result"].as_array().cloned().unwrap_or_default())
            .collect();
        let ours = ours.as_array().cloned().unwrap_or_else(|| panic!("trace_block {n}: {ours}"));
        let (o, g): (Vec<Value>, Vec<Value>) =
            (ours.iter().map(overlap).collect(), geth.iter().map(overlap).collect());
        let mut here = Vec::new();
        differences("", &Value::Array(o), &Value::Array(g), &mut here);
        diffs.extend(here.into_iter().take(5).map(|d| format!("trace_block {n}: {d}")));
        compared += ours.len();
        all.extend(ours.clone());

        // The same calls from the per-transaction methods.
        let replayed = answer(rpc_call(port, "trace_replayBlockTransactions", json!([tag, ["trace"]])));
        let replayed = replayed.as_array().cloned().unwrap_or_else(|| panic!("replay {n}: {replayed}"));
        let block = c.client.call("eth_getBlockByNumber", json!([tag, false]));
        let hashes = block["transactions"].as_array().cloned().unwrap_or_default();
        assert_eq!(replayed.len(), hashes.len(), "block {n}: one replay per transaction");
        for (i, (replay, hash)) in replayed.iter().zip(&hashes).enumerate().take(4) {
            assert_eq!(&replay["transactionHash"], hash, "block {n} tx {i}");
            let located = answer(rpc_call(port, "trace_transaction", json!([hash])));
            let located = located.as_array().cloned().unwrap_or_default();
            let unlocated: Vec<Value> = located
                .iter()
                .map(|t| {
                    let mut t = t.clone();
                    for k in ["blockHash", "blockNumber", "transactionHash", "transactionPosition"] {
                        t.as_object_mut().map(|o| o.remove(k));
                    }
                    t
                })
                .collect();
            assert_eq!(
                replay["trace"],
                Value::Array(unlocated),
                "block {n} tx {i}: replay vs trace_transaction"
            );
            let first = answer(rpc_call(port, "trace_get", json!([hash, ["0x0"]])));
            assert_eq!(first, located[0], "trace_get of {hash}");
        }
    }
    // trace_filter: the calls to the scripted contract and its creation (a creation's recipient is the
    // address it creates, as reth matches), and paging through them.
    let contract =
        touched.iter().find(|(_, slots)| slots.first() == Some(&1)).map(|(a, _)| *a).expect("the contract");
    let is_contract = |v: &Value| v.as_str().is_some_and(|a| a.eq_ignore_ascii_case(&contract.to_string()));
    let to_contract: Vec<Value> = all
        .iter()
        .filter(|t| is_contract(&t["action"]["to"]) || is_contract(&t["result"]["address"]))
        .cloned()
        .collect();
    assert!(to_contract.len() >= 5, "the script calls its contract: {}", to_contract.len());
    let filter = json!({"fromBlock": "0x1", "toBlock": format!("{head:#x}"), "toAddress": [contract]});
    let filtered = answer(rpc_call(port, "trace_filter", json!([filter])));
    assert_eq!(filtered, Value::Array(to_contract.clone()), "trace_filter by recipient");
    let mut page = filter.clone();
    page["after"] = json!(1);
    page["count"] = json!(2);
    let paged = answer(rpc_call(port, "trace_filter", json!([page])));
    assert_eq!(paged, Value::Array(to_contract[1..3].to_vec()), "trace_filter after 1, count 2");
    let too_wide =
        rpc_call(port, "trace_filter", json!([{"fromBlock": "0x0", "toBlock": format!("{head:#x}")}]));
    assert!(too_wide.get("result").is_some(), "a range inside the limit is served: {too_wide}");
    let reversed = rpc_call(port, "trace_filter", json!([{"fromBlock": "0x3", "toBlock": "0x2"}]));
    assert_eq!(reversed["error"]["code"], -32602, "{reversed}");

    // trace_call: the contract's storage write, as geth's flat call tracer sees the same call.
    let call = json!({"from": DEV[1], "to": contract, "data": call_data(5, 0x44), "gas": "0x30000"});
    let ours = answer(rpc_call(port, "trace_call", json!([call, ["trace", "stateDiff"], "latest"])));
    let flat = json!({"tracer": "flatCallTracer", "tracerConfig": {"convertParityErrors": true}});
    let geth = c.client.call("debug_traceCall", json!([call, "latest", flat]));
    let strip = |t: &Value| {
        let mut t = overlap(t);
        for k in ["blockHash", "blockNumber", "transactionHash", "transactionPosition"] {
            t.as_object_mut().map(|o| o.remove(k));
        }
        t
    };
    let o: Vec<Value> = ours["trace"].as_array().cloned().unwrap_or_default().iter().map(strip).collect();
    let g: Vec<Value> = geth.as_array().cloned().unwrap_or_default().iter().map(strip).collect();
    let mut here = Vec::new();
    differences("", &Value::Array(o), &Value::Array(g), &mut here);
    diffs.extend(here.into_iter().map(|d| format!("trace_call: {d}")));
    let slot = format!("0x{}", word(5));
    assert_eq!(
        ours["stateDiff"][contract.to_string().to_lowercase()]["storage"][&slot]["*"]["to"],
        format!("0x{}", word(0x44)),
        "trace_call's state diff: {}",
        ours["stateDiff"]
    );
    eprintln!("{compared} parity traces compared over {head} blocks, {} differences", diffs.len());
    assert!(compared > 25, "too few traces compared: {compared}");
    assert!(diffs.is_empty(), "{} differences from geth:\n{}", diffs.len(), diffs.join("\n"));
}

/// Many clients tracing heavy blocks at once: traces run on their own bounded pool, so readiness answers
/// fast and replay keeps following the chain (geth mines a block a second throughout).
#[test]
fn a_flood_of_traces_keeps_readiness_fast_and_replay_moving() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::{Duration, Instant};
    let c = Cluster::on(Upstream::geth());
    // Heavy blocks: a contract that loops until its gas runs out, called with 3M gas three times.
    let deploy = c.client.send(json!({"from": DEV[0], "data": "0x6004600c60003960046000f35b600056"}));
    let looping = contract_address(&c.client, deploy);
    let spins: Vec<_> = (0..3)
        .map(|i| c.client.send(json!({"from": DEV[1 + i], "to": looping, "gas": "0x2dc6c0"})))
        .collect();
    let heavy: Vec<Value> = spins.iter().map(|t| mined(&c.client, *t)["blockNumber"].clone()).collect();
    let (head, _) = c.client.head();
    let health = harness::chain::free_port();
    let health_addr = format!("127.0.0.1:{health}");
    let (_replica, port) = c.rpc_replica(&["--health-addr", &health_addr]);
    wait_rpc_head(port, head);
    let replica_head = || {
        let (_, body) = http_get(health, "/admin/position").expect("the position");
        serde_json::from_str::<Value>(&body).ok().and_then(|p| p["block_number"].as_u64()).unwrap_or(0)
    };

    let stop = AtomicBool::new(false);
    let (answered, refused) = (AtomicUsize::new(0), AtomicUsize::new(0));
    let mut probes = Vec::new();
    let start_head = replica_head();
    std::thread::scope(|s| {
        for client in 0..12 {
            let (stop, answered, refused, heavy) = (&stop, &answered, &refused, &heavy);
            s.spawn(move || {
                let tracers = [json!({"tracer": "callTracer"}), json!({"tracer": "prestateTracer"})];
                let mut i = client;
                while !stop.load(Ordering::Relaxed) {
                    let block = &heavy[i % heavy.len()];
                    let r = rpc_call(port, "debug_traceBlockByNumber", json!([block, tracers[i % 2]]));
                    if r.get("result").is_some() {
                        answered.fetch_add(1, Ordering::Relaxed);
                    } else {
                        // Only the trace bounds may refuse: a timeout while waiting for the pool.
                        let message = r["error"]["message"].as_str().unwrap_or_default().to_owned();
                        assert!(message.contains("timeout"), "a trace failed otherwise: {r}");
                        refused.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        let until = Instant::now() + Duration::from_secs(8);
        while Instant::now() < until {
            let t = Instant::now();
            let (code, _) = http_get(health, "/health/ready").expect("readiness answers");
            probes.push((code, t.elapsed()));
            std::thread::sleep(Duration::from_millis(100));
        }
        stop.store(true, Ordering::Relaxed);
    });
    let end_head = replica_head();
    let mut times: Vec<Duration> = probes.iter().map(|(_, t)| *t).collect();
    times.sort();
    let (median, p95) = (times[times.len() / 2], times[times.len() * 95 / 100]);
    let max = *times.last().expect("probes");
    eprintln!(
        "{} traces answered, {} refused; readiness median {median:?}, p95 {p95:?}, max {max:?}; replica head {start_head} -> {end_head}",
        answered.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed)
    );
    assert!(answered.load(Ordering::Relaxed) > 0, "no trace answered under the flood");
    assert!(probes.iter().all(|(code, _)| *code == 200), "the replica left readiness: {probes:?}");
    assert!(p95 < Duration::from_millis(100), "readiness p95 {p95:?} (median {median:?}, max {max:?})");
    assert!(end_head >= start_head + 3, "replay stalled under the flood: head {start_head} -> {end_head}");
}
