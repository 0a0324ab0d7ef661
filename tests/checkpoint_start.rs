//! Starting a cluster at block N of a synced node (issue: checkpoint start): geth mines a chain with
//! traffic, is stopped at a finalized block N, its state is dumped (`geth snapshot dump`) and imported with
//! `ether-cattle import-state`; a publisher started with `--start-block N` and a replica on the imported
//! database then answer as geth does for every block from N to the head.

mod harness;

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Command, Output},
    time::Duration,
};

use alloy_primitives::{Address, B256};
use harness::{chain::*, *};
use serde_json::{json, Value};

const CLUSTER: &str = "checkpoint";
/// Storage contract runtime: `SSTORE(calldata[0..32], calldata[32..64])` and a log (see
/// tests/harness/script.rs).
const RUNTIME: &str = "368015602057600114602557602035806000526000358091905560206000a1005b600080fd5b33ff";
/// Constructor: slot 1 = 0x11, slot 2 = 0x22, then returns RUNTIME.
const INIT_PREFIX: &str = "601160015560226002556028601660003960286000f3";

fn store_slot(client: &Upstream, contract: Address, slot: u64, value: u64) {
    let data = format!("0x{slot:064x}{value:064x}");
    client.mined(client.send(json!({"from": DEV[0], "to": contract, "data": data, "gas": "0x30000"})));
}

fn import_state(data_dir: &Path, block: u64, rpc_url: &str, source: &[&str]) -> Output {
    Command::new(bin())
        .arg("import-state")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--block", &block.to_string(), "--rpc-url", rpc_url])
        .args(source)
        .env("RUST_LOG", "info")
        .output()
        .expect("import-state runs")
}

/// The digest of the state tables of a database (accounts, storage, code).
fn state_digest(dir: &Path) -> B256 {
    let store = ec_store::Store::open_read_only(dir).expect("imported database");
    store.checksum().expect("checksum").of_tables(&["accounts", "storage", "code"])
}

/// Converts `geth dump` output (addresses, plain slots, trimmed hex values) into a reth `init-state` file.
fn reth_init_state(trie_dump: &Path, out: &Path) {
    let text = std::fs::read_to_string(trie_dump).expect("trie dump");
    let mut lines = text.lines();
    let root: Value = serde_json::from_str(lines.next().expect("root line")).expect("json");
    let mut output = vec![json!({"root": root["root"]}).to_string()];
    for line in lines {
        let a: Value = serde_json::from_str(line).expect("account line");
        let address = a["address"].as_str().unwrap_or_else(|| panic!("geth knows no address for {line}"));
        let balance: alloy_primitives::U256 =
            a["balance"].as_str().expect("balance").parse().expect("decimal");
        let mut account =
            json!({"address": address, "balance": format!("{balance:#x}"), "nonce": a["nonce"]});
        if let Some(code) = a.get("code") {
            account["code"] = code.clone();
        }
        if let Some(storage) = a["storage"].as_object() {
            let slots: serde_json::Map<String, Value> = storage
                .iter()
                .map(|(slot, value)| {
                    (slot.clone(), json!(format!("0x{:0>64}", value.as_str().expect("hex"))))
                })
                .collect();
            account["storage"] = Value::Object(slots);
        }
        output.push(account.to_string());
    }
    std::fs::write(out, output.join("\n") + "\n").expect("writes");
}

/// Before N on geth on demand: a contract with slot 5 stored, then transfers to `first_address` and on
/// until the head is a multiple of 32, which geth --dev finalizes (its simulated beacon's epoch); waits for
/// that. Returns the contract, N, and the next unused transfer address.
fn chain_finalized_at_an_epoch(client: &Upstream, first_address: u64) -> (Address, u64, u64) {
    let deploy = client.mined(
        client.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"})),
    );
    let contract: Address = serde_json::from_value(deploy["contractAddress"].clone()).expect("created");
    store_slot(client, contract, 5, 0x77);
    let mut next_address = first_address;
    while !client.head().0.is_multiple_of(32) {
        client.transfers(DEV[1], next_address, 1);
        next_address += 1;
    }
    let n = client.head().0;
    wait_for("geth to finalize the head", Duration::from_secs(30), || {
        client.call("eth_getBlockByNumber", json!(["finalized", false]))["number"] == json!(format!("{n:#x}"))
    });
    (contract, n, next_address)
}

#[test]
fn a_cluster_started_at_a_checkpoint_answers_like_geth() {
    let mut client = Upstream::geth_on_demand();
    let (contract, n, next_address) = chain_finalized_at_an_epoch(&client, 0x5000);

    // Stopped cleanly at N, dumped, and started again.
    let tmp = tempdir();
    let dump = tmp.path().join("state.jsonl");
    client.geth_mut().stop().expect("geth stops");
    client.geth_mut().snapshot_dump(&dump).expect("geth snapshot dump");
    let trie_dump = tmp.path().join("trie.jsonl");
    client.geth_mut().trie_dump(n, &trie_dump).expect("geth dump");
    client.geth_mut().restart().expect("geth restarts");
    // The client's pooled connection to the old process fails once: retry until the new one answers.
    wait_for("geth to answer after its restart", Duration::from_secs(30), || {
        client.rt.block_on(client.rpc.block_number()).is_ok()
    });
    assert_eq!(client.head().0, n, "geth restarts at N");

    // The dump imports, and its root is block N's.
    let data = tmp.path().join("replica");
    let out = import_state(&data, n, &client.http_url(), &["--geth-dump", dump.to_str().expect("utf-8")]);
    assert!(out.status.success(), "import-state failed:\n{}", output_text(&out));
    let imported_state = state_digest(&data);

    // The same state as a reth init-state file (plain addresses and slots) imports to the same tables.
    let reth_file = tmp.path().join("reth.jsonl");
    reth_init_state(&trie_dump, &reth_file);
    let reth_data = tmp.path().join("reth");
    let out = import_state(
        &reth_data,
        n,
        &client.http_url(),
        &["--reth-state", reth_file.to_str().expect("utf-8")],
    );
    assert!(out.status.success(), "import-state --reth-state failed:\n{}", output_text(&out));
    assert_eq!(state_digest(&reth_data), imported_state, "reth-format import");

    // An altered balance is refused by the root check, naming both roots.
    let altered = tmp.path().join("altered.jsonl");
    let original = std::fs::read_to_string(&dump).expect("dump");
    let header_root: B256 = serde_json::from_value(
        client.call("eth_getBlockByNumber", json!([format!("{n:#x}"), false]))["stateRoot"].clone(),
    )
    .expect("state root");
    let mut changed = false;
    let lines: Vec<String> = original
        .lines()
        .map(|line| {
            if !changed && line.contains("\"balance\":\"") && !line.contains("\"balance\":\"0\"") {
                changed = true;
                line.replacen("\"balance\":\"", "\"balance\":\"1", 1)
            } else {
                line.to_owned()
            }
        })
        .collect();
    assert!(changed, "the dump has an account with a balance");
    std::fs::write(&altered, lines.join("\n") + "\n").expect("writes");
    let bad_data = tmp.path().join("bad");
    let out =
        import_state(&bad_data, n, &client.http_url(), &["--geth-dump", altered.to_str().expect("utf-8")]);
    let msg = output_text(&out);
    assert!(!out.status.success(), "an altered dump must be refused:\n{msg}");
    assert!(msg.contains(&header_root.to_string()), "the refusal names the header's root:\n{msg}");
    assert!(msg.contains("the imported state's root is 0x"), "the refusal names the imported root:\n{msg}");

    // The publisher starts the log at N; traffic after N.
    let broker = ec_testkit::KafkaBroker::start().expect("Apache Kafka broker");
    for topic in ["log", "log-tx"] {
        broker.create_topic(topic, &[]).expect("topic");
    }
    let publisher_log = tmp.path().join("publisher.log");
    let mut publisher = publisher_cmd(&broker.bootstrap_servers(), &client.http_url(), client.genesis());
    publisher
        .args(["--start-block", &n.to_string()])
        .args(["--poll-interval-ms", "50", "--heartbeat-interval-ms", "500", "--verify-rate", "1"])
        .env("RUST_LOG", "info,rdkafka=warn");
    let _publisher = spawn_logged(publisher, &publisher_log);
    store_slot(&client, contract, 1, 0);
    store_slot(&client, contract, 6, 0x66);
    client.transfers(DEV[2], next_address, 3);
    let head = client.head().0;

    // Over JSON-RPC from geth itself (its debug_ namespace; block N+1 exists now, which geth's
    // debug_storageRangeAt needs to show the state after N).
    let rpc_data = tmp.path().join("rpc");
    let out = import_state(&rpc_data, n, &client.http_url(), &["--from-rpc"]);
    assert!(out.status.success(), "import-state --from-rpc failed:\n{}", output_text(&out));
    assert_eq!(state_digest(&rpc_data), imported_state, "RPC import");

    wait_for("the log to reach geth's head", Duration::from_secs(120), || {
        read_log(&broker.bootstrap_servers(), "log")
            .iter()
            .any(|r| matches!(&r.record, ec_log::Record::Block(b) if b.number == head))
    });
    let log = read_log(&broker.bootstrap_servers(), "log");
    assert!(
        matches!(&log[0].record, ec_log::Record::Checkpoint(c) if c.block.number == n),
        "the log opens with the checkpoint of block {n}; publisher log:\n{}",
        std::fs::read_to_string(&publisher_log).unwrap_or_default()
    );

    // The replica applies the checkpoint onto the imported state and follows.
    run_replica_ok(&data, &broker.bootstrap_servers(), "log");
    let mut touched: BTreeMap<Address, BTreeSet<B256>> = touched(&log);
    touched
        .entry(contract)
        .or_default()
        .extend([1u64, 2, 5, 6].map(|s| B256::from(alloy_primitives::U256::from(s))));
    for dev in &DEV[..3] {
        touched.entry(dev.parse().expect("address")).or_default();
    }
    let compared = assert_replica_equals_upstream_from(&client, &data, n, head, &touched);
    assert!(compared > 50, "compared {compared} values");
    eprintln!("checkpoint at block {n}, head {head}: {compared} values equal to geth's");

    // Over JSON-RPC: nothing below N, `earliest` is N, BLOCKHASH reaches before N.
    let port = free_port();
    let mut follow = replica_follow_cmd(&data, &broker.bootstrap_servers(), "log");
    follow.args(["--rpc-addr", &format!("127.0.0.1:{port}")]);
    let _replica = spawn_logged(follow, &tmp.path().join("replica.log"));
    wait_rpc_head(port, head);
    let earliest = rpc_call(port, "eth_getBlockByNumber", json!(["earliest", false]));
    assert_eq!(earliest["result"]["number"], json!(format!("{n:#x}")), "{earliest}");
    // Below N: pruned history (4444, as geth answers it), naming N; for blocks and for logs, so an indexer
    // never reads an empty answer as "no events".
    let names_n = |answer: &Value| {
        answer["error"]["code"] == json!(4444)
            && answer["error"]["message"].as_str().is_some_and(|m| m.contains(&format!("from {n} on")))
    };
    let below = rpc_call(port, "eth_getBlockByNumber", json!([format!("{:#x}", n - 1), false]));
    assert!(names_n(&below), "{below}");
    let logs = rpc_call(port, "eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}]));
    assert!(names_n(&logs), "{logs}");
    let from_earliest =
        rpc_call(port, "eth_getLogs", json!([{"fromBlock": "earliest", "toBlock": "latest"}]));
    assert!(from_earliest["result"].is_array(), "{from_earliest}");
    let capabilities = rpc_call(port, "eth_capabilities", json!([]));
    for resource in ["blocks", "tx", "logs", "receipts", "state"] {
        assert_eq!(
            capabilities["result"][resource]["oldestBlock"],
            json!(format!("{n:#x}")),
            "{capabilities}"
        );
    }
    assert_eq!(capabilities["result"]["head"]["number"], json!(format!("{head:#x}")), "{capabilities}");
    let state_below = rpc_call(port, "eth_getBalance", json!([DEV[0], format!("{:#x}", n - 1)]));
    assert!(
        state_below["error"]["message"].as_str().is_some_and(|m| m.contains("historical state")),
        "{state_below}"
    );
    for number in [n, head] {
        let ours = rpc_call(port, "eth_getBlockByNumber", json!([format!("{number:#x}"), true]));
        let theirs = client.call("eth_getBlockByNumber", json!([format!("{number:#x}"), true]));
        for field in ["hash", "stateRoot", "transactions", "withdrawals"] {
            assert_eq!(ours["result"][field], theirs[field], "block {number} {field}");
        }
    }
    for target in [head - 1, n - 1, n - 10] {
        // Init code of an eth_call without `to`: returns BLOCKHASH(target).
        let code = format!("0x62{target:06x}4060005260206000f3");
        let ours = rpc_call(port, "eth_call", json!([{"data": code}, "latest"]));
        let theirs = client.call("eth_call", json!([{"data": code}, "latest"]));
        assert_eq!(ours["result"], theirs, "BLOCKHASH({target}) with N = {n}: {ours}");
        assert_ne!(theirs, json!(format!("0x{}", "0".repeat(64))), "block {target} has a hash");
    }
}

/// Issue 26, item 8: `import-state --from-rpc` on a geth run as operators run it (the path scheme, geth's
/// default) cannot read block N's storage of the system contracts block N+1 writes, on any Cancun chain.
/// It is refused at once, before any state is read, with the flags the node needs; and the half-finished
/// database it leaves never takes a genesis record (a replica refuses it, naming why).
#[test]
fn import_from_a_path_scheme_node_is_refused_with_the_flags_it_needs() {
    let geth = ec_testkit::Geth::dev_path_scheme(&DEV, 1).expect("geth with the path scheme starts");
    let url = format!("http://127.0.0.1:{}", geth.http_port());
    wait_for("geth to seal 4 blocks", Duration::from_secs(30), || {
        quantity(&rpc_call(geth.http_port(), "eth_blockNumber", json!([]))["result"]) >= 4
    });
    let tmp = tempdir();
    let data = tmp.path().join("db");
    let out = import_state(&data, 2, &url, &["--from-rpc"]);
    let said = output_text(&out);
    assert!(!out.status.success(), "a path-scheme node must be refused:\n{said}");
    assert!(
        said.contains("--state.scheme=hash") && said.contains("0x000F3df6D732807Ef1319fB7B8bB8522d0Beac02"),
        "{said}"
    );

    // The refused import left a database behind: a genesis record is refused on it.
    let broker = ec_testkit::MockBroker::start(&["log"]).expect("mock broker");
    let records = ec_testkit::LogGenerator::records(ec_testkit::GenOptions::default(), 1);
    produce(&broker.bootstrap_servers(), "log", &records, ec_log::EncodeOptions::default());
    let out = run_replica(&data, &broker.bootstrap_servers(), "log");
    assert!(!out.status.success(), "a genesis record on a half-finished import must be refused");
    assert!(String::from_utf8_lossy(&out.stderr).contains("half-finished import"), "{}", output_text(&out));
}

/// Issue 27, item 5: the runbook's start of a real network as one scripted path (`scripts/start-at-block.sh`)
/// in the local cluster's terms: the state imported from geth at a finalized block N, the lineage's first
/// snapshot, the publisher at N, and two replicas each started from a copy of that snapshot. Both answer like
/// geth for blocks after N.
#[test]
fn the_runbook_starts_a_network_at_block_n_with_one_script() {
    let client = Upstream::geth_on_demand();
    let (contract, n, next_address) = chain_finalized_at_an_epoch(&client, 0x6000);
    // Block N+1, where geth's debug_storageRangeAt shows the state after N.
    client.transfers(DEV[2], next_address, 1);

    let broker = ec_testkit::KafkaBroker::start().expect("Apache Kafka broker");
    let tmp = tempdir();
    let data = tmp.path().join("network");
    let replicas: Vec<(u16, u16)> = (0..2).map(|_| (free_port(), free_port())).collect();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../scripts/start-at-block.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .args(["--rpc-url", &client.http_url(), "--block", &n.to_string()])
        .args(["--brokers", &broker.bootstrap_servers(), "--topic", "net", "--cluster-id", CLUSTER])
        .arg("--data")
        .arg(&data)
        .arg("--from-rpc")
        .arg("--genesis")
        .arg(client.genesis())
        .env("BIN", bin())
        .env("RUST_LOG", "info,rdkafka=warn");
    for (rpc, health) in &replicas {
        cmd.args(["--replica", &format!("{rpc}:{health}")]);
    }
    let _stop = StopPids(data.join("pids"));
    let out = cmd.output().expect("the script runs");
    assert!(out.status.success(), "start-at-block.sh failed:\n{}", output_text(&out));

    // Traffic after N; both replicas follow and answer as geth does.
    store_slot(&client, contract, 6, 0x66);
    client.transfers(DEV[3], next_address + 1, 2);
    let head = client.head().0;
    for (rpc, _) in &replicas {
        wait_rpc_head(*rpc, head);
        let earliest = rpc_call(*rpc, "eth_getBlockByNumber", json!(["earliest", false]));
        assert_eq!(earliest["result"]["number"], json!(format!("{n:#x}")), "{earliest}");
        for (method, params) in [
            ("eth_getStorageAt", json!([contract, "0x6", format!("{head:#x}")])),
            ("eth_getStorageAt", json!([contract, "0x5", format!("{n:#x}")])),
            ("eth_getBalance", json!([DEV[3], format!("{head:#x}")])),
            ("eth_getBlockByNumber", json!([format!("{head:#x}"), false])),
        ] {
            let ours = rpc_call(*rpc, method, params.clone());
            assert_eq!(ours["result"], client.call(method, params.clone()), "{method} {params} on {rpc}");
        }
    }
    let pids = std::fs::read_to_string(data.join("pids")).expect("the script wrote its pids");
    assert_eq!(pids.lines().count(), 3, "a publisher and two replicas: {pids}");
}

/// Kills (SIGKILL: a replica drains for a while on SIGTERM) the processes a script left running, their pids one
/// per line in the file, when the test ends.
struct StopPids(PathBuf);

impl Drop for StopPids {
    fn drop(&mut self) {
        for pid in std::fs::read_to_string(&self.0).unwrap_or_default().lines() {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
        }
    }
}
