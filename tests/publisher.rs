//! The publisher against anvil and geth and a real broker: the log it writes must rebuild the client's chain
//! and state exactly, through reorgs (anvil) and kills.

mod harness;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy_primitives::{hex, keccak256, Address, B256, U256};
use ec_testkit::MockBroker;
use harness::{chain::*, *};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Storage contract runtime: 1-byte calldata self-destructs to the caller; empty calldata reverts; otherwise
/// `SSTORE(calldata[0..32], calldata[32..64])` and `LOG1(topic = slot, data = value)`.
const RUNTIME: &str = "368015602057600114602557602035806000526000358091905560206000a1005b600080fd5b33ff";
/// Constructor: slot 1 = 0x11, slot 2 = 0x22, then returns RUNTIME.
const INIT_PREFIX: &str = "601160015560226002556028601660003960286000f3";
/// A constructor that writes a slot and self-destructs: created and destroyed in one transaction.
const CREATE_AND_DESTROY: &str = "600760035533ff";
/// anvil's dev account 5 (mnemonic "test test ... junk"), the EIP-7702 authority.
const KEY_5: &str = "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";

struct Cluster {
    broker: MockBroker,
    client: Upstream,
    publisher: Option<Killed>,
    tmp: tempfile::TempDir,
    /// The publisher's JSON-RPC endpoint when not the client itself (a proxy), and more flags.
    rpc_url: Option<String>,
    publisher_args: Vec<String>,
}

impl Cluster {
    /// anvil with `anvil_args`, the broker and a publisher.
    fn start(anvil_args: &[&str]) -> Cluster {
        Cluster::on(Upstream::anvil(anvil_args))
    }

    /// The broker and a publisher following `client`.
    fn on(client: Upstream) -> Cluster {
        let broker = MockBroker::start(&["log", "log-tx"]).expect("mock broker");
        let mut c = Cluster::idle(client, broker);
        c.start_publisher();
        c
    }

    /// The broker and `client`, no publisher yet.
    fn idle(client: Upstream, broker: MockBroker) -> Cluster {
        Cluster { broker, client, publisher: None, tmp: tempdir(), rpc_url: None, publisher_args: Vec::new() }
    }

    fn publisher_cmd(&self) -> Command {
        let mut cmd = Command::new(bin());
        cmd.args([
            "publisher",
            "--topic",
            "log",
            "--cluster-id",
            CLUSTER,
            "--brokers",
            &self.broker.bootstrap_servers(),
        ])
        .args(["--rpc-url", &self.rpc_url.clone().unwrap_or_else(|| self.client.http_url())])
        .args(["--ws-url", &self.client.ws_url()])
        .args(["--heartbeat-interval-ms", "500", "--poll-interval-ms", "100", "--reorg-window", "32"])
        .args(&self.publisher_args)
        .arg("--genesis")
        .arg(self.client.genesis())
        .env("RUST_LOG", "info,rdkafka=warn");
        cmd
    }

    fn start_publisher(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.tmp.path().join("publisher.log"))
            .expect("log file");
        let child = self
            .publisher_cmd()
            .stdout(std::process::Stdio::from(log.try_clone().expect("log")))
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("publisher starts");
        self.publisher = Some(Killed(child));
    }

    fn publisher_log(&self) -> String {
        std::fs::read_to_string(self.tmp.path().join("publisher.log")).unwrap_or_default()
    }

    /// A replica following the topic with JSON-RPC on a free port (and `extra` flags); killed on drop.
    fn rpc_replica(&self, extra: &[&str]) -> (Killed, u16) {
        let port = free_port();
        let data = self.tmp.path().join(format!("rpc-replica-{port}"));
        let mut cmd = replica_follow_cmd(&data, &self.brokers(), "log");
        cmd.args(["--rpc-addr", &format!("127.0.0.1:{port}")]).args(extra);
        (spawn_quiet(cmd), port)
    }

    fn brokers(&self) -> String {
        self.broker.bootstrap_servers()
    }

    /// Waits until the log's head is anvil's head, then replays it into a fresh replica; returns the replica
    /// directory and the log.
    fn replay(&self, name: &str) -> (std::path::PathBuf, Vec<ec_log::Assembled>) {
        let wait = std::env::var("EC_TEST_WAIT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(300);
        let deadline = Instant::now() + Duration::from_secs(wait);
        loop {
            // anvil answers eth_sendTransaction before it mines: wait until nothing is pending, then compare
            // with its head as of now.
            let pool = self.client.call("txpool_status", json!([]));
            if pool["pending"].as_str().is_some_and(|p| p != "0x0")
                || pool["pending"].as_u64().is_some_and(|p| p > 0)
            {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            let (head, hash) = self.client.head();
            if published_head(&read_log(&self.brokers(), "log")) == Some((head, hash)) {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the log did not reach anvil's head {head} in {wait}s; publisher log:\n{}",
                self.publisher_log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        let dir = self.tmp.path().join(name);
        run_replica_ok(&dir, &self.brokers(), "log");
        (dir, read_log(&self.brokers(), "log"))
    }
}

/// The head block of a log, following blocks and reverts (skipping duplicate sequences).
fn published_head(log: &[ec_log::Assembled]) -> Option<(u64, B256)> {
    let mut chain: Vec<(u64, B256)> = Vec::new();
    let mut next = 0;
    for r in log {
        if r.envelope.sequence < next {
            continue;
        }
        next = r.envelope.sequence + 1;
        match &r.record {
            ec_log::Record::Genesis(g) => chain.push((0, g.block.hash)),
            ec_log::Record::Checkpoint(c) => chain.push((c.block.number, c.block.hash)),
            ec_log::Record::Block(b) => chain.push((b.number, b.hash)),
            ec_log::Record::Revert(_) => {
                chain.pop();
            }
            ec_log::Record::Heartbeat(_) => {}
        }
    }
    chain.last().copied()
}

fn addr(s: &str) -> Address {
    s.parse().expect("address")
}

fn word(v: u64) -> String {
    format!("{:064x}", v)
}

fn call_data(slot: u64, value: u64) -> String {
    format!("0x{}{}", word(slot), word(value))
}

/// The receipt, once the transaction is mined (anvil answers eth_sendTransaction before it mines).
fn mined(anvil: &Upstream, tx: B256) -> Value {
    anvil.mined(tx)
}

fn contract_address(anvil: &Upstream, tx: B256) -> Address {
    let r = mined(anvil, tx);
    serde_json::from_value(r["contractAddress"].clone()).expect("contract address")
}

fn status(anvil: &Upstream, tx: B256) -> u64 {
    let r = mined(anvil, tx);
    u64::from_str_radix(r["status"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(9)
}

/// Signs an EIP-7702 authorization with a raw key.
fn sign_authorization(key_hex: &str, chain_id: u64, delegate: Address, nonce: u64) -> (Value, Address) {
    use k256::ecdsa::SigningKey;
    let key = SigningKey::from_slice(&hex::decode(key_hex).expect("hex")).expect("key");
    let point = key.verifying_key().to_encoded_point(false);
    let authority = Address::from_slice(&keccak256(&point.as_bytes()[1..])[12..]);
    let auth =
        alloy_eips::eip7702::Authorization { chain_id: U256::from(chain_id), address: delegate, nonce };
    let (sig, recid) = key.sign_prehash_recoverable(auth.signature_hash().as_slice()).expect("signs");
    let bytes = sig.to_bytes();
    let signed = alloy_eips::eip7702::SignedAuthorization::new_unchecked(
        auth,
        recid.to_byte(),
        U256::from_be_slice(&bytes[..32]),
        U256::from_be_slice(&bytes[32..]),
    );
    (serde_json::to_value(&signed).expect("json"), authority)
}

/// The scripted chain: every transaction type the client takes, contract creation, storage writes,
/// overwrites and writes to zero, logs, a revert, a self-destruct, a create-and-destroy in one transaction, an
/// EIP-7702 delegation, and a block of 500 transactions. Returns the accounts and slots the script touched
/// (compared whatever the traces said).
fn run_script(a: &Upstream) -> std::collections::BTreeMap<Address, Vec<u64>> {
    let (d0, d1, d2) = (DEV[0], DEV[1], DEV[2]);

    // Plain transfers: legacy, EIP-1559 and EIP-2930.
    a.send(json!({"from": d0, "to": d1, "value": "0x1000", "gasPrice": "0x77359400"}));
    a.send(json!({"from": d0, "to": "0x000000000000000000000000000000000000cafe", "value": "0x2000",
                  "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1"}));
    // Contract creation: constructor writes slots 1 and 2.
    let deploy = a.send(json!({"from": d0, "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(a, deploy);
    a.send(json!({"from": d1, "to": contract, "gasPrice": "0x77359400", "gas": "0x20000",
                  "accessList": [{"address": contract, "storageKeys": [format!("0x{}", word(5))]}],
                  "data": call_data(5, 0x42)}));
    // Overwrite, write to zero, a log with each.
    a.send(json!({"from": d1, "to": contract, "data": call_data(5, 0x43), "gas": "0x20000"}));
    a.send(json!({"from": d1, "to": contract, "data": call_data(1, 0), "gas": "0x20000"}));
    // A revert inside a transaction.
    let reverted = a.send(json!({"from": d2, "to": contract, "data": "0x", "gas": "0x20000"}));
    assert_eq!(status(a, reverted), 0, "the call must revert");
    // Fund the contract, then self-destruct it (post-Cancun: its balance moves, the account stays).
    a.send(json!({"from": d2, "to": contract, "value": "0x5555", "data": call_data(7, 7), "gas": "0x20000"}));
    a.send(json!({"from": d2, "to": contract, "data": "0x01", "gas": "0x20000"}));
    // Created and destroyed inside one transaction, with value.
    let cd = a.send(
        json!({"from": d2, "data": format!("0x{CREATE_AND_DESTROY}"), "value": "0x100", "gas": "0x100000"}),
    );
    assert_eq!(status(a, cd), 1);
    // EIP-7702: account 5 delegates to the contract; a call to it writes storage in account 5.
    let (auth, authority) = sign_authorization(KEY_5, a.chain_id, contract, 0);
    assert_eq!(authority, addr(DEV[5]), "the dev key must belong to dev account 5");
    let t7702 = a.send(json!({"from": d0, "to": authority, "data": call_data(9, 0x99), "gas": "0x40000",
                              "authorizationList": [auth]}));
    assert_eq!(status(a, t7702), 1, "the 7702 transaction must succeed");
    // A block of 500 transactions.
    let transfer = |i: u64| {
        json!({"from": DEV[1 + (i % 4) as usize], "to": format!("0x{:040x}", 0xb000 + i % 50), "value": "0x1",
               "gas": "0x5208"})
    };
    let last = if a.is_geth() {
        // geth mines on its clock: sign all 500 first, then send them in one JSON-RPC batch between blocks.
        let mut nonces: Vec<u64> = (1..5)
            .map(|d| {
                let n = a.call("eth_getTransactionCount", json!([DEV[d], "pending"]));
                u64::from_str_radix(n.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).expect("nonce")
            })
            .collect();
        let batch: Vec<Value> = (0..500u64)
            .map(|i| {
                let d = (i % 4) as usize;
                let raw = a.sign(transfer(i), Some(nonces[d]));
                nonces[d] += 1;
                json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [raw]})
            })
            .collect();
        let answers = http_post_json(a.port, &Value::Array(batch)).expect("the batch is answered");
        let hashes: Vec<B256> = answers
            .as_array()
            .expect("a batch answer")
            .iter()
            .map(|r| serde_json::from_value(r["result"].clone()).unwrap_or_else(|_| panic!("sent: {r}")))
            .collect();
        *hashes.last().expect("500 hashes")
    } else {
        a.call("evm_setAutomine", json!([false]));
        let mut last = B256::ZERO;
        for i in 0..500u64 {
            last = a.send(transfer(i));
        }
        a.mine();
        a.call("evm_setAutomine", json!([true]));
        last
    };
    let r = mined(a, last);
    let n = r["blockNumber"].clone();
    let big: Value = a.call("eth_getBlockByNumber", json!([n, false]));
    // anvil mines all 500 in one block; geth's clock may cut the batch in two.
    let want = if a.is_geth() { 250 } else { 500 };
    assert!(
        big["transactions"].as_array().map_or(0, Vec::len) >= want,
        "block {n} must hold at least {want} of the 500 transactions"
    );
    let head = a.head().0;
    let mut touched = std::collections::BTreeMap::new();
    touched.insert(contract, vec![1u64, 2, 5, 7, 9]);
    touched.insert(authority, vec![9]);
    touched.insert(
        addr("0x0000F90827F1C53a10cb7A02335B175320002935"),
        (0..=head).map(|n| n.saturating_sub(1) % 8191).collect(),
    );
    for d in DEV {
        touched.insert(addr(d), Vec::new());
    }
    touched
}

/// Runs the script on `c`'s client, replays the log into a fresh replica and compares it with the client at
/// every block.
fn scripted_chain_is_rebuilt_on(c: Cluster) {
    let extra = run_script(&c.client);
    let (dir, log) = c.replay("replica");
    // geth keeps mining: compare up to the head the replica holds.
    let (head, _) = published_head(&log).expect("a published head");
    let mut touched = touched(&log);
    for (a, slots) in extra {
        touched.entry(a).or_default().extend(slots.into_iter().map(|s| B256::from(U256::from(s))));
    }
    let compared = assert_replica_equals_upstream(&c.client, &dir, head, &touched);
    eprintln!("{compared} values compared over {} blocks", head + 1);
    assert!(compared > 1000);
}

#[test]
fn scripted_chain_is_rebuilt_exactly_by_a_replica() {
    scripted_chain_is_rebuilt_on(Cluster::start(&[]));
}

/// The same script on geth (`--dev`, archive state): the publisher's prestate-tracer path on the most
/// deployed client, unchanged.
#[test]
fn scripted_chain_on_geth_is_rebuilt_exactly_by_a_replica() {
    scripted_chain_is_rebuilt_on(Cluster::on(Upstream::geth()));
}

/// Reorgs made with anvil_reorg and anvil_rollback, of depth 1, 3 and 20.
#[test]
fn reorgs_and_rollbacks_are_followed() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    let tx = |i: u64| json!([{"from": DEV[0], "to": format!("0x{:040x}", 0xd000 + i), "value": "0x7"}, 0]);
    for i in 0..30 {
        a.send(json!({"from": DEV[1], "to": format!("0x{:040x}", 0xc000 + i % 5), "value": "0x9", "gas": "0x5208"}));
    }
    for depth in [1u64, 3, 20] {
        // Let the publisher see the old branch first, then replace it with a branch of the same length.
        c.replay(&format!("before-reorg-{depth}"));
        let txs: Vec<Value> = (0..depth).map(|i| tx(depth * 100 + i)).collect();
        a.call("anvil_reorg", json!([depth, txs]));
        let (dir, log) = c.replay(&format!("after-reorg-{depth}"));
        let (head, _) = a.head();
        assert_replica_equals_upstream(a, &dir, head, &touched(&log));

        a.call("anvil_rollback", json!([depth]));
        for i in 0..depth + 1 {
            a.send(json!({"from": DEV[2], "to": format!("0x{:040x}", 0xe000 + i), "value": "0x3", "gas": "0x5208"}));
        }
        let (dir, log) = c.replay(&format!("after-rollback-{depth}"));
        let (head, _) = a.head();
        assert_replica_equals_upstream(a, &dir, head, &touched(&log));
    }
    let log = read_log(&c.brokers(), "log");
    let reverts = log.iter().filter(|r| matches!(r.record, ec_log::Record::Revert(_))).count();
    assert!(reverts >= 2 * (1 + 3 + 20), "expected a revert per abandoned block, got {reverts}");
}

/// Kill -9 the publisher at random moments while anvil mines: no gap, no duplicate block, equal state.
#[test]
fn killed_publisher_leaves_no_gap_and_no_duplicate() {
    let mut c = Cluster::start(&[]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(42);
    let mut i = 0u64;
    for _kill in 0..10 {
        let until = Instant::now() + Duration::from_millis(rng.random_range(300..1500));
        while Instant::now() < until {
            c.client.send(json!({"from": DEV[(i % 4) as usize], "to": format!("0x{:040x}", 0xf000 + i % 7), "value": "0x1", "gas": "0x5208"}));
            i += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(5..60)));
        }
        if let Some(mut p) = c.publisher.take() {
            p.0.kill().expect("SIGKILL");
            let _ = p.0.wait();
        }
        c.start_publisher();
    }
    let (dir, log) = c.replay("replica");
    // The log read as a replica reads it: every sequence once, each block on top of the last.
    let mut next = 0u64;
    let mut chain: Vec<(u64, B256)> = Vec::new();
    let mut duplicates = 0;
    for r in &log {
        if r.envelope.sequence < next {
            duplicates += 1;
            continue;
        }
        assert_eq!(r.envelope.sequence, next, "gap in the log");
        next += 1;
        match &r.record {
            ec_log::Record::Genesis(g) => chain.push((0, g.block.hash)),
            ec_log::Record::Checkpoint(c) => chain.push((c.block.number, c.block.hash)),
            ec_log::Record::Block(b) => {
                let top = chain.last().copied().expect("genesis first");
                assert_eq!((b.number, b.parent_hash), (top.0 + 1, top.1), "block {} out of place", b.number);
                chain.push((b.number, b.hash));
            }
            ec_log::Record::Revert(_) => {
                chain.pop();
            }
            ec_log::Record::Heartbeat(_) => {}
        }
    }
    eprintln!("{} records, {duplicates} re-sent duplicates skipped, head {:?}", log.len(), chain.last());
    let (head, _) = c.client.head();
    assert!(head >= 10, "anvil must have mined during the kills");
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
}

/// A raw transaction written to the tx topic is relayed to the client and mined.
#[test]
fn raw_transaction_on_the_tx_topic_is_mined() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    let raw: String = serde_json::from_value(a.call(
        "eth_signTransaction",
        json!([{"from": DEV[3], "to": "0x000000000000000000000000000000000000beef", "value": "0x123",
                "gas": "0x5208", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1", "nonce": "0x0"}]),
    ))
    .expect("signed raw tx");
    let raw = hex::decode(raw.trim_start_matches("0x")).expect("hex");
    let hash = keccak256(&raw);
    runtime().block_on(async {
        use rdkafka::producer::{FutureProducer, FutureRecord};
        let p: FutureProducer =
            ec_kafka::KafkaConfig::plaintext(c.brokers()).client_config().create().expect("producer");
        p.send(FutureRecord::<(), _>::to("log-tx").payload(&raw), Duration::from_secs(10))
            .await
            .expect("produced");
    });
    wait_for("the relayed transaction to be mined", Duration::from_secs(60), || !a.receipt(hash).is_null());
    assert_eq!(status(a, hash), 1);
}

/// A genesis file that disagrees with the client's block 0 is refused before anything is written.
#[test]
fn genesis_mismatch_is_refused() {
    let broker = MockBroker::start(&["log"]).expect("mock broker");
    let anvil = Upstream::anvil(&[]);
    let tmp = tempdir();
    let mut genesis: Value =
        serde_json::from_str(&std::fs::read_to_string(genesis_file()).expect("genesis")).expect("json");
    let alloc = genesis["alloc"].as_object_mut().expect("alloc");
    let (first, _) = alloc.iter().next().map(|(k, v)| (k.clone(), v.clone())).expect("an account");
    alloc.get_mut(&first).expect("account")["balance"] = json!("0x1");
    let path = tmp.path().join("genesis.json");
    std::fs::write(&path, serde_json::to_string(&genesis).expect("json")).expect("write");
    let out = Command::new(bin())
        .args([
            "publisher",
            "--topic",
            "log",
            "--cluster-id",
            CLUSTER,
            "--brokers",
            &broker.bootstrap_servers(),
        ])
        .args(["--rpc-url", &anvil.http_url(), "--tx-topic", "none"])
        .arg("--genesis")
        .arg(&path)
        .output()
        .expect("publisher runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a wrong genesis must be refused: {stderr}");
    assert!(stderr.contains("differs from the genesis file") && stderr.contains("balance"), "{stderr}");
    assert!(read_log(&broker.bootstrap_servers(), "log").is_empty(), "nothing may be written");
}

/// A reorg deeper than the window stops the publisher loudly; metrics are served while it runs.
#[test]
fn reorg_deeper_than_the_window_stops_the_publisher() {
    let broker = MockBroker::start(&["log"]).expect("mock broker");
    let anvil = Upstream::anvil(&[]);
    let metrics_port = free_port();
    let tmp = tempdir();
    let log_path = tmp.path().join("publisher.log");
    let log = std::fs::File::create(&log_path).expect("log");
    let mut child = Killed(
        Command::new(bin())
            .args([
                "publisher",
                "--topic",
                "log",
                "--cluster-id",
                CLUSTER,
                "--brokers",
                &broker.bootstrap_servers(),
            ])
            .args(["--rpc-url", &anvil.http_url(), "--tx-topic", "none", "--reorg-window", "2"])
            .args(["--poll-interval-ms", "100", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .arg("--genesis")
            .arg(genesis_file())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::from(log))
            .spawn()
            .expect("publisher starts"),
    );
    for i in 0..6u64 {
        let tx = anvil.send(
            json!({"from": DEV[0], "to": format!("0x{:040x}", 0xaa00 + i), "value": "0x1", "gas": "0x5208"}),
        );
        mined(&anvil, tx);
    }
    let (head, _) = anvil.head();
    let metrics = || {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", metrics_port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        Some(body)
    };
    let want = format!("ether_cattle_publisher_head_published {head}");
    wait_for("the metrics to show the head", Duration::from_secs(60), || {
        metrics().is_some_and(|m| m.contains(&want))
    });
    anvil.call("anvil_reorg", json!([5, []]));
    let deadline = Instant::now() + Duration::from_secs(60);
    while child.0.try_wait().expect("status").is_none() {
        assert!(
            Instant::now() < deadline,
            "the publisher did not stop: {}",
            std::fs::read_to_string(&log_path).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let status = child.0.wait().expect("status");
    let stderr = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(!status.success(), "the publisher must fail: {stderr}");
    assert!(stderr.contains("reorg deeper than the window"), "{stderr}");
}

/// The broker goes away while anvil mines: the publisher stops progressing, says so, and when the broker
/// is back continues with no gap and nothing skipped.
#[test]
fn broker_outage_skips_nothing() {
    let c = Cluster::start(&[]);
    let send = |i: u64| {
        let tx = c.client.send(
            json!({"from": DEV[1], "to": format!("0x{:040x}", 0xab00 + i), "value": "0x1", "gas": "0x5208"}),
        );
        mined(&c.client, tx);
    };
    for i in 0..5 {
        send(i);
    }
    c.replay("before");
    c.broker.set_down(true).expect("broker down");
    for i in 5..15 {
        send(i);
        std::thread::sleep(Duration::from_millis(200));
    }
    c.broker.set_down(false).expect("broker up");
    let (dir, log) = c.replay("after");
    let mut next = 0;
    for r in &log {
        if r.envelope.sequence < next {
            continue;
        }
        assert_eq!(r.envelope.sequence, next, "gap in the log");
        next += 1;
    }
    let (head, _) = c.client.head();
    assert!(head >= 15);
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
    let said = c.publisher_log();
    assert!(
        said.contains("127.0.0.1") && said.to_lowercase().contains("fail"),
        "the outage went unreported:\n{said}"
    );
}

/// Readiness for the ALB: 503 while replaying, 200 once caught up, 503 within the configured time after the
/// publisher goes quiet, 200 again by itself when it is back; the admin endpoint reports the position.
#[test]
fn readiness_follows_the_publisher() {
    let mut c = Cluster::start(&[]);
    for i in 0..3u64 {
        let tx =
            c.client.send(json!({"from": DEV[0], "to": format!("0x{:040x}", 0xac00 + i), "value": "0x1"}));
        mined(&c.client, tx);
    }
    c.replay("seed");
    let port = free_port();
    let dir = c.tmp.path().join("follower");
    let mut cmd = replica_follow_cmd(&dir, &c.brokers(), "log");
    cmd.args(["--max-silence-secs", "2", "--health-addr", &format!("127.0.0.1:{port}")]);
    let _replica = spawn_quiet(cmd);
    let ready = |want: u16| move || http_get(port, "/health/ready").is_some_and(|(code, _)| code == want);
    wait_for("the replica to be ready", Duration::from_secs(60), ready(200));
    assert_eq!(http_get(port, "/health/live").map(|r| r.0), Some(200));
    let (_, position) = http_get(port, "/admin/position").expect("admin endpoint");
    let position: Value = serde_json::from_str(&position).expect("json");
    assert_eq!(position["topic"], "log");
    assert!(position["kafka_offset"].as_i64().is_some_and(|o| o > 0), "{position}");
    assert!(position["block_number"].as_u64().is_some_and(|n| n >= 3), "{position}");
    let (_, metrics) = http_get(port, "/metrics").expect("metrics");
    assert!(metrics.contains("ether_cattle_replica_ready 1"), "{metrics}");
    assert!(metrics.contains("ether_cattle_replica_head_age_seconds "), "{metrics}");
    assert!(metrics.contains("ether_cattle_replica_records_prepared_early_total "), "{metrics}");

    if let Some(mut p) = c.publisher.take() {
        p.0.kill().expect("SIGKILL");
        let _ = p.0.wait();
    }
    wait_for("readiness to turn 503 with the publisher gone", Duration::from_secs(30), ready(503));
    let (_, body) = http_get(port, "/health/ready").expect("ready endpoint");
    assert!(body.contains("publisher silent"), "{body}");

    c.start_publisher();
    wait_for("readiness to return to 200", Duration::from_secs(60), ready(200));
}

/// The replica's JSON-RPC state methods answer exactly what anvil answers, for every block, every touched
/// account and slot, with numbers, tags and EIP-1898 block hashes; errors have the specified codes.
#[test]
fn rpc_state_methods_equal_anvil() {
    let c = Cluster::start(&["--slots-in-an-epoch", "1"]);
    let a = &c.client;
    let deploy =
        a.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(a, deploy);
    for (slot, value) in [(5u64, 0x42u64), (5, 0x43), (1, 0), (8, 1)] {
        let tx =
            a.send(json!({"from": DEV[1], "to": contract, "data": call_data(slot, value), "gas": "0x20000"}));
        mined(a, tx);
    }
    let sd =
        a.send(json!({"from": DEV[2], "to": contract, "value": "0x99", "data": "0x01", "gas": "0x20000"}));
    mined(a, sd);
    let (_, log) = c.replay("seed");
    let health = free_port();
    let health_addr = format!("127.0.0.1:{health}");
    let (_replica, port) = c.rpc_replica(&["--max-log-block-range", "2", "--health-addr", &health_addr]);
    let (head, head_hash) = a.head();
    let ours = |method: &str, params: Value| rpc_call(port, method, params);
    wait_rpc_head(port, head);
    let theirs = |method: &'static str, params: Value| -> Value { a.call(method, params) };
    // Safe and finalized come with heartbeats (every 500 ms here): wait for one written after the last block.
    wait_for("a heartbeat naming anvil's safe block", Duration::from_secs(30), || {
        let p = json!([DEV[0], "safe"]);
        ours("eth_getTransactionCount", p.clone())["result"] == theirs("eth_getTransactionCount", p)
            && ours("eth_getBalance", json!([DEV[1], "finalized"]))["result"]
                == theirs("eth_getBalance", json!([DEV[1], "finalized"]))
    });

    for m in ["eth_chainId", "net_version", "eth_blockNumber"] {
        assert_eq!(ours(m, json!([]))["result"], theirs(m, json!([])), "{m}");
    }
    let mut touched = touched(&log);
    touched.entry(contract).or_default().extend([1u64, 2, 5, 8, 9].map(|s| B256::from(U256::from(s))));
    let mut compared = 0;
    let mut blocks: Vec<Value> = (0..=head).map(|n| json!(format!("{n:#x}"))).collect();
    blocks.extend([json!("latest"), json!("earliest"), json!("pending"), json!("safe"), json!("finalized")]);
    blocks.push(json!({"blockHash": head_hash, "requireCanonical": true}));
    for block in &blocks {
        for (address, slots) in &touched {
            for m in ["eth_getBalance", "eth_getTransactionCount", "eth_getCode"] {
                let p = json!([address, block]);
                assert_eq!(ours(m, p.clone())["result"], theirs(m, p), "{m} {address} at {block}");
                compared += 1;
            }
            for slot in slots {
                let p = json!([address, slot, block]);
                assert_eq!(
                    ours("eth_getStorageAt", p.clone())["result"],
                    theirs("eth_getStorageAt", p),
                    "{address} {slot} at {block}"
                );
                compared += 1;
            }
        }
    }
    eprintln!("{compared} answers equal to anvil's");
    assert!(compared > 500);

    let unknown = ours("admin_peers", json!([]));
    assert_eq!(unknown["error"]["code"], -32601, "{unknown}");
    let bad = ours("eth_getBalance", json!(["not an address", "latest"]));
    assert_eq!(bad["error"]["code"], -32602, "{bad}");
    assert!(bad["error"].get("data").is_none(), "invalid params must carry no data: {bad}");
    // Batches: answered call by call; over the limit refused as a whole.
    let batch: Vec<Value> = (0..3)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []}))
        .collect();
    let answers = http_post_json(port, &json!(batch)).expect("batch answer");
    assert_eq!(answers.as_array().map(Vec::len), Some(3), "{answers}");
    assert!(
        answers.as_array().into_iter().flatten().all(|a| a["result"] == json!(format!("{head:#x}"))),
        "{answers}"
    );
    let huge: Vec<Value> = (0..101)
        .map(|i| json!({"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber", "params": []}))
        .collect();
    let refused = http_post_json(port, &json!(huge)).expect("an answer");
    assert!(refused.to_string().contains("error"), "a batch over the limit must be refused: {refused}");
    let wide = ours("eth_getLogs", json!([{"fromBlock": "0x0", "toBlock": "latest"}]));
    assert_eq!(wide["error"]["code"], -32005, "{wide}");
    assert!(wide["error"]["message"].as_str().is_some_and(|m| m.contains("the limit is 2")), "{wide}");
    let future = ours("eth_getBalance", json!([DEV[0], format!("{:#x}", head + 100)]));
    // Per-method counts on the health port; unknown method names share one series.
    let (_, metrics) = http_get(health, "/metrics").expect("metrics");
    let line = metrics
        .lines()
        .find(|l| l.starts_with("ether_cattle_replica_rpc_requests_total{method=\"eth_getBalance\"}"))
        .unwrap_or_else(|| panic!("no eth_getBalance series: {metrics}"));
    assert!(
        line.split_whitespace().last().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n > 100),
        "{line}"
    );
    assert!(metrics.contains("ether_cattle_replica_rpc_requests_total{method=\"other\"}"), "{metrics}");
    assert!(!metrics.contains("admin_peers"), "unknown method names must not become series");
    assert!(future["error"]["code"].is_i64(), "a block beyond the head is an error: {future}");
}

/// The first place two JSON values differ, as a path, or `None` when equal, once both are cleared of the
/// fields where anvil departs from geth and the execution-apis suite (which the replica follows, see
/// docs/conformance.md): receipts' `blockTimestamp`, blocks' `totalDifficulty`, and blocks' `size` (anvil
/// leaves the withdrawals list out of it; the conformance suite checks the replica's).
fn json_diff(path: &str, a: &Value, b: &Value) -> Option<String> {
    let (mut a, mut b) = (a.clone(), b.clone());
    without_anvil_conventions(&mut a);
    without_anvil_conventions(&mut b);
    json_diff_exact(path, &a, &b)
}

fn without_anvil_conventions(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.contains_key("cumulativeGasUsed") {
                m.remove("blockTimestamp");
            }
            if m.contains_key("stateRoot") && m.contains_key("transactions") {
                m.remove("totalDifficulty");
                m.remove("size");
            }
            m.values_mut().for_each(without_anvil_conventions);
        }
        Value::Array(xs) => xs.iter_mut().for_each(without_anvil_conventions),
        _ => {}
    }
}

fn json_diff_exact(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                json_diff_exact(
                    &format!("{path}.{k}"),
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                )
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            x.iter().zip(y).enumerate().find_map(|(i, (a, b))| json_diff_exact(&format!("{path}[{i}]"), a, b))
        }
        // 0 and 0.0 are the same ratio (geth writes whole floats without a fraction).
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        _ if a == b => None,
        _ => Some(format!("{path}: ours {a}, anvil {b}")),
    }
}

/// Blocks, transactions and receipts from the replica's JSON-RPC equal anvil's, field for field.
#[test]
fn rpc_blocks_transactions_and_receipts_equal_anvil() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    let mut txs = Vec::new();
    txs.push(a.send(json!({"from": DEV[0], "to": DEV[1], "value": "0x1000", "gasPrice": "0x77359400"})));
    let deploy =
        a.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    txs.push(deploy);
    let contract = contract_address(a, deploy);
    txs.push(a.send(json!({"from": DEV[1], "to": contract, "gasPrice": "0x77359400", "gas": "0x20000",
                           "accessList": [{"address": contract, "storageKeys": [format!("0x{}", word(5))]}],
                           "data": call_data(5, 0x42)})));
    txs.push(a.send(json!({"from": DEV[1], "to": contract, "data": call_data(6, 0x43), "gas": "0x20000"})));
    txs.push(a.send(json!({"from": DEV[2], "to": contract, "data": "0x", "gas": "0x20000"})));
    let (auth, authority) = sign_authorization(KEY_5, 31337, contract, 0);
    txs.push(a.send(json!({"from": DEV[0], "to": authority, "data": call_data(9, 0x99), "gas": "0x40000",
                           "authorizationList": [auth]})));
    // Several transactions in one block, with logs from more than one of them (log indexes run across).
    a.call("evm_setAutomine", json!([false]));
    for i in 0..4u64 {
        txs.push(a.send(
            json!({"from": DEV[3], "to": contract, "data": call_data(20 + i, i + 1), "gas": "0x20000"}),
        ));
    }
    a.mine();
    a.call("evm_setAutomine", json!([true]));
    for tx in &txs {
        mined(a, *tx);
    }
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    let (head, _) = a.head();
    let ours = |method: &str, params: Value| rpc_call(port, method, params)["result"].clone();
    wait_rpc_head(port, head);
    let mut compared = 0;
    let mut check = |method: &'static str, params: Value| {
        let (mine, theirs) = (ours(method, params.clone()), a.call(method, params.clone()));
        if let Some(d) = json_diff("", &mine, &theirs) {
            panic!("{method} {params}: {d}");
        }
        compared += 1;
    };
    // Beyond the head the spec answers null; anvil does too for blocks (its counts answer an error instead).
    check("eth_getBlockByNumber", json!([format!("{:#x}", head + 1), false]));
    for n in 0..=head {
        let num = json!(format!("{n:#x}"));
        for full in [false, true] {
            check("eth_getBlockByNumber", json!([num, full]));
        }
        check("eth_getBlockTransactionCountByNumber", json!([num]));
        check("eth_getUncleCountByBlockNumber", json!([num]));
        check("eth_getBlockReceipts", json!([num]));
        let Some(hash) = a.hash_at(n) else { continue };
        check("eth_getBlockByHash", json!([hash, true]));
        check("eth_getBlockTransactionCountByHash", json!([hash]));
        check("eth_getTransactionByBlockHashAndIndex", json!([hash, "0x0"]));
        check("eth_getTransactionByBlockNumberAndIndex", json!([num, "0x1"]));
    }
    for tx in &txs {
        check("eth_getTransactionByHash", json!([tx]));
        check("eth_getTransactionReceipt", json!([tx]));
    }
    let topic5 = B256::from(U256::from(20u64));
    for filter in [
        json!({"fromBlock": "0x0", "toBlock": "latest"}),
        json!({"fromBlock": "earliest", "address": contract}),
        json!({"fromBlock": "0x0", "address": [contract, authority]}),
        json!({"fromBlock": "0x0", "topics": [topic5]}),
        json!({"fromBlock": "0x0", "topics": [[topic5, B256::from(U256::from(21u64))]]}),
        json!({"fromBlock": "0x0", "address": DEV[0]}),
        json!({"blockHash": a.hash_at(head).expect("head hash")}),
    ] {
        check("eth_getLogs", json!([filter]));
    }
    check("eth_getTransactionByHash", json!([B256::repeat_byte(7)]));
    check("eth_getBlockByHash", json!([B256::repeat_byte(7), false]));
    eprintln!("{compared} answers equal to anvil's");
}

/// eth_sendRawTransaction on a replica: checked against the replica's state, queued on the tx topic,
/// relayed by the publisher, mined by anvil. A stale nonce is refused at the replica.
#[test]
fn raw_transaction_through_a_replica_is_mined() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    let send = |raw: &str| {
        http_post_json(
            port,
            &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": [raw]}),
        )
    };
    wait_for("the replica's RPC", Duration::from_secs(60), || {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .is_some()
    });
    let sign = |nonce: u64| -> String {
        serde_json::from_value(a.call(
            "eth_signTransaction",
            json!([{"from": DEV[4], "to": "0x000000000000000000000000000000000000dead", "value": "0x77",
                    "gas": "0x5208", "maxFeePerGas": "0x77359400", "maxPriorityFeePerGas": "0x1",
                    "nonce": format!("{nonce:#x}")}]),
        ))
        .expect("signed raw tx")
    };
    let raw = sign(0);
    let answer = send(&raw).expect("an answer");
    let hash: B256 = serde_json::from_value(answer["result"].clone()).unwrap_or_else(|_| panic!("{answer}"));
    assert_eq!(hash, keccak256(hex::decode(raw.trim_start_matches("0x")).expect("hex")));
    assert_eq!(status(a, hash), 1, "relayed and mined");

    // Once the replica has seen that block, nonce 0 is stale.
    wait_for("the replica to see the nonce move", Duration::from_secs(60), || {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getTransactionCount", "params": [DEV[4], "latest"]}))
            .is_some_and(|v| v["result"] == json!("0x1"))
    });
    let refused = send(&sign(0)).expect("an answer");
    assert_eq!(refused["error"]["code"], -32000, "{refused}");
    assert!(refused["error"]["message"].as_str().is_some_and(|m| m.contains("nonce too low")), "{refused}");
    let garbage = send("0x1234").expect("an answer");
    assert!(
        garbage["error"]["message"].as_str().is_some_and(|m| m.contains("invalid transaction")),
        "{garbage}"
    );
}

/// Subscribes with `eth_subscribe(params)` at `url` and returns the next `n` notification results.
async fn notifications(
    url: String,
    params: Value,
    n: usize,
    ready: tokio::sync::oneshot::Sender<()>,
) -> Vec<Value> {
    use futures_util::{SinkExt, StreamExt};
    let (mut ws, _) = tokio_tungstenite::connect_async(url.as_str()).await.expect("websocket");
    let req = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_subscribe", "params": params});
    ws.send(tokio_tungstenite::tungstenite::Message::text(req.to_string())).await.expect("subscribe");
    let mut out = Vec::new();
    let mut ready = Some(ready);
    while out.len() < n {
        let msg = ws.next().await.expect("a message").expect("websocket message");
        let Ok(text) = msg.into_text() else { continue };
        let v: Value = serde_json::from_str(&text).expect("json");
        if v.get("id").is_some() {
            assert!(v["result"].as_str().is_some_and(|id| id.starts_with("0x")), "subscription refused: {v}");
            if let Some(r) = ready.take() {
                let _ = r.send(());
            }
        } else {
            out.push(v["params"]["result"].clone());
        }
    }
    out
}

/// eth_subscribe("newHeads") on a replica sends the same heads as anvil does.
#[test]
fn new_heads_subscription_equals_anvil() {
    let c = Cluster::start(&[]);
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    wait_for("the replica's RPC", Duration::from_secs(60), || {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .is_some()
    });
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (ours_ready, ours_rx) = tokio::sync::oneshot::channel();
    let (theirs_ready, theirs_rx) = tokio::sync::oneshot::channel();
    let ours = rt.spawn(notifications(format!("ws://127.0.0.1:{port}"), json!(["newHeads"]), 3, ours_ready));
    let theirs = rt.spawn(notifications(c.client.ws_url(), json!(["newHeads"]), 3, theirs_ready));
    rt.block_on(async {
        ours_rx.await.expect("replica subscribed");
        theirs_rx.await.expect("anvil subscribed");
    });
    for i in 0..3u64 {
        let tx =
            c.client.send(json!({"from": DEV[0], "to": format!("0x{:040x}", 0xae00 + i), "value": "0x1"}));
        mined(&c.client, tx);
    }
    let (ours, theirs) = rt.block_on(async {
        let o = tokio::time::timeout(Duration::from_secs(60), ours)
            .await
            .expect("replica heads in time")
            .expect("task");
        let t = tokio::time::timeout(Duration::from_secs(60), theirs)
            .await
            .expect("anvil heads in time")
            .expect("task");
        (o, t)
    });
    let numbers =
        |v: &[Value]| v.iter().map(|h| h["number"].as_str().unwrap_or("?").to_string()).collect::<Vec<_>>();
    assert_eq!(numbers(&ours), numbers(&theirs), "the same heads in the same order");
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        if let Some(d) = json_diff("", o, t) {
            panic!("head {i}: {d}");
        }
    }
}

/// anvil bisects `eth_estimateGas` to the exact minimum; the replica stops as geth's estimator does, within
/// 1.5% above it (exact equality with geth: `rpc_fees_and_estimates_equal_geth`).
fn assert_estimate_near_anvils(ours: &Value, anvil: &Value, what: impl std::fmt::Display) {
    let (ours, anvil) = (quantity(ours), quantity(anvil));
    assert!(
        ours >= anvil && ours as f64 <= anvil as f64 * 1.016,
        "{what}: ours {ours}, anvil's minimum {anvil}"
    );
}

/// eth_call and eth_estimateGas over the replica's state equal anvil's: a read (the EIP-2935 history
/// contract), a storage write, a transfer, a revert (code 3 with the revert data), at latest and older blocks.
#[test]
fn rpc_call_and_estimate_equal_anvil() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    let deploy =
        a.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(a, deploy);
    for i in 0..3u64 {
        let tx =
            a.send(json!({"from": DEV[1], "to": contract, "data": call_data(5, 0x40 + i), "gas": "0x20000"}));
        mined(a, tx);
    }
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    let (head, _) = a.head();
    let ours = |method: &str, params: Value| rpc_call(port, method, params);
    wait_rpc_head(port, head);
    let theirs = |method: &str, params: Value| -> Value {
        let body = json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
        http_post_json(a.port, &body).unwrap_or(Value::Null)
    };
    let history = "0x0000F90827F1C53a10cb7A02335B175320002935";
    let calls = [
        json!({"from": DEV[2], "to": history, "data": format!("0x{}", word(head - 1))}),
        json!({"from": DEV[2], "to": contract, "data": call_data(9, 0x99)}),
        json!({"from": DEV[2], "to": DEV[3], "value": "0x10"}),
        json!({"from": DEV[2], "to": contract, "data": "0x"}),
    ];
    let mut compared = 0;
    for call in &calls {
        for block in [json!("latest"), json!(format!("{:#x}", head - 1))] {
            for method in ["eth_call", "eth_estimateGas"] {
                let (o, t) = (ours(method, json!([call, block])), theirs(method, json!([call, block])));
                // Results must be equal; errors must have the same code (and data for reverts).
                if t.get("error").is_some() {
                    assert_eq!(
                        o["error"]["code"], t["error"]["code"],
                        "{method} {call} at {block}: {o} vs {t}"
                    );
                    assert_eq!(o["error"].get("data"), t["error"].get("data"), "{method} {call}: {o} vs {t}");
                } else if method == "eth_estimateGas" {
                    assert_estimate_near_anvils(
                        &o["result"],
                        &t["result"],
                        format!("{method} {call} at {block}"),
                    );
                } else {
                    assert_eq!(o["result"], t["result"], "{method} {call} at {block}: {o} vs {t}");
                }
                compared += 1;
            }
        }
    }
    assert_eq!(compared, 16);

    // eth_createAccessList: a storage write, a history-contract read, a transfer, a revert.
    for call in &calls {
        for block in [json!("latest"), json!(format!("{:#x}", head - 1))] {
            let params = json!([call, block]);
            let (o, t) = (
                ours("eth_createAccessList", params.clone()),
                theirs("eth_createAccessList", params.clone()),
            );
            if t["error"]["message"] == "execution reverted" {
                // anvil answers a reverting call with an error; geth (and the conformance suite) with the
                // list and the failure in `error`, as the replica does.
                assert_eq!(o["result"]["error"], "execution reverted", "eth_createAccessList {params}: {o}");
                assert!(o["result"]["accessList"].is_array(), "eth_createAccessList {params}: {o}");
            } else if t.get("error").is_some() {
                assert_eq!(
                    o["error"]["code"], t["error"]["code"],
                    "eth_createAccessList {params}: {o} vs {t}"
                );
            } else {
                assert_eq!(o["result"], t["result"], "eth_createAccessList {params}: {o} vs {t}");
            }
        }
    }

    // State and block overrides: code that returns SLOAD(0), NUMBER and TIMESTAMP, put on an empty address.
    let probe = "0x00000000000000000000000000000000000c0de0";
    let sload = "0x60005460005260206000f3";
    let number = "0x4360005260206000f3";
    let time = "0x4260005260206000f3";
    for (code, state, block) in [
        (sload, json!({"stateDiff": {format!("0x{}", word(0)): format!("0x{}", word(0x2a))}}), Value::Null),
        (
            sload,
            json!({"state": {format!("0x{}", word(0)): format!("0x{}", word(7))}, "balance": "0x1"}),
            Value::Null,
        ),
        (number, json!({}), json!({"number": "0x1234"})),
        (time, json!({}), json!({"time": "0x99999"})),
    ] {
        let mut overrides = json!({probe: {"code": code}});
        if let Value::Object(extra) = state {
            for (k, v) in extra {
                overrides[probe][k] = v;
            }
        }
        let params = json!([{"to": probe}, "latest", overrides, block]);
        let (o, t) = (ours("eth_call", params.clone()), theirs("eth_call", params.clone()));
        assert_eq!(o["result"], t["result"], "eth_call {params}: {o} vs {t}");
        assert!(o["result"].as_str().is_some_and(|r| r.len() == 66), "{o}");
    }
}

/// Fee methods equal anvil's: eth_feeHistory (with and without percentiles), eth_blobBaseFee. (The suggested
/// tip and gas price follow geth's oracle: rpc_fees_and_estimates_equal_geth.)
#[test]
fn rpc_fees_equal_anvil() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    for i in 0..6u64 {
        let tx = a.send(json!({"from": DEV[(i % 3) as usize], "to": DEV[4], "value": "0x1",
                               "maxPriorityFeePerGas": format!("{:#x}", 1 + i * 7), "maxFeePerGas": "0x77359400"}));
        mined(a, tx);
    }
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    let (head, _) = a.head();
    let ours = |method: &str, params: Value| rpc_call(port, method, params)["result"].clone();
    wait_rpc_head(port, head);
    for (method, params) in [
        ("eth_blobBaseFee", json!([])),
        ("eth_feeHistory", json!(["0x4", "latest", [10, 50, 90]])),
        // (Ending before the head, anvil's last base fee is the one after its head, not after the range's end
        // as the execution APIs say; the replica follows the APIs, so that case is left out here.)
        ("eth_feeHistory", json!(["0x2", "latest"])),
    ] {
        let (o, t) = (ours(method, params.clone()), a.call(method, params.clone()));
        if let Some(d) = json_diff("", &o, &t) {
            panic!("{method} {params}: {d}");
        }
    }
}

/// On geth: the tip oracle (eth_maxPriorityFeePerGas, eth_gasPrice), the fee history, the blob base fee, and
/// eth_estimateGas (geth's search, with its 1.5% stop and EIP-7825 bound) equal geth's own answers, for a chain
/// of transactions paying different tips from several senders.
#[test]
fn rpc_fees_and_estimates_equal_geth() {
    // On demand: a block per transaction and none in between, so geth's head holds still while both answer.
    let c = Cluster::on(Upstream::geth_on_demand());
    let g = &c.client;
    for i in 0..12u64 {
        let tip = format!("{:#x}", 1_000_000 + i * 37_000_000);
        let tx = g.send(json!({"from": DEV[(i % 4) as usize], "to": DEV[5], "value": "0x1",
                               "maxPriorityFeePerGas": tip, "maxFeePerGas": "0xe8d4a51000"}));
        mined(g, tx);
    }
    // A contract whose calls cost different gas: stores its calldata's first word at slot 0.
    let deploy = g.send(json!({"from": DEV[0], "data": "0x600a600c600039600a6000f3600035600055"}));
    // Blob traffic (type-3 transactions of all-zero blobs), 6 and 3 blobs a block: blob gas used ratios
    // against each fork's maximum (9 here; Cancun's 6 would give other ratios). On demand geth seals a block
    // per transaction, so blocks stay at or under the target and the excess (and the blob fee, at its 1 wei
    // floor) rarely moves: pricing above the floor per fork is fees.rs's blob_fees_follow_each_forks_update_fraction.
    for _ in 0..3 {
        let a = g.send_zero_blobs(DEV[3], DEV[5], 6);
        let b = g.send_zero_blobs(DEV[4], DEV[5], 3);
        mined(g, a);
        mined(g, b);
    }
    let contract = contract_address(g, deploy);
    let (head, _) = g.head();
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    // At or past `head`: geth may seal a block after the last transaction's (a loaded machine shows it).
    wait_for("the replica's RPC to reach geth's head", Duration::from_secs(60), || {
        let r = rpc_call(port, "eth_blockNumber", json!([]));
        r["result"].is_string() && quantity(&r["result"]) >= head
    });
    let ours = |method: &str, params: Value| rpc_call(port, method, params);
    let mut compared = 0;
    for (method, params) in [
        ("eth_gasPrice", json!([])),
        ("eth_maxPriorityFeePerGas", json!([])),
        ("eth_blobBaseFee", json!([])),
        ("eth_feeHistory", json!(["0x5", "latest", [10, 50, 90]])),
        ("eth_feeHistory", json!(["0xa", "latest", [25, 75]])),
        // BLOBBASEFEE inside the EVM (init code returning it): the block's blob fee under its parameters.
        ("eth_call", json!([{"from": DEV[1], "data": "0x4a60005260206000f3"}, "latest"])),
        ("eth_estimateGas", json!([{"from": DEV[1], "to": contract, "data": format!("0x{}", word(7))}])),
        ("eth_estimateGas", json!([{"from": DEV[1], "to": contract, "data": format!("0x{}", word(0))}])),
        ("eth_estimateGas", json!([{"from": DEV[1], "to": DEV[2], "value": "0x5"}])),
        ("eth_estimateGas", json!([{"from": DEV[1], "data": "0x600a600c600039600a6000f3600035600055"}])),
    ] {
        // Answers about "latest" are compared with both at the same head: a difference while the heads differ
        // is retried (up to 10 s); one at the same head fails the test.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let (o, t) = (ours(method, params.clone()), g.call(method, params.clone()));
            // (json_diff_exact: numbers compare by value, so geth's 0 equals the replica's 0.0.)
            let Some(d) = json_diff_exact("", &o["result"], &t) else { break };
            let same_head = quantity(&ours("eth_blockNumber", json!([]))["result"]) == g.head().0;
            assert!(!same_head && Instant::now() < deadline, "{method} {params}: ours {o}, geth {t}: {d}");
            std::thread::sleep(Duration::from_millis(100));
        }
        compared += 1;
    }
    assert_eq!(compared, 10);
    // The blob traffic is in the compared blocks (else the blob fields above compared only zeros).
    let latest = g.call("eth_getBlockByNumber", json!(["latest", false]));
    assert_eq!(latest["blobGasUsed"], "0x60000", "the head holds the 3-blob transaction: {latest}");
}

/// Blob traffic above the target on geth (a block a second; 6 + 3 blobs sent together land in one block, over
/// the target of 6): the excess blob gas moves, and the replica's fee history (blob fees and ratios) and
/// `BLOBBASEFEE` inside `eth_call` equal geth's at the blocks after.
#[test]
fn blob_fees_above_the_target_equal_geth() {
    let c = Cluster::on(Upstream::geth());
    let g = &c.client;
    let mut packed = Vec::new();
    for _ in 0..6 {
        let a = g.send_zero_blobs(DEV[3], DEV[5], 6);
        let b = g.send_zero_blobs(DEV[4], DEV[5], 3);
        let (ra, rb) = (mined(g, a), mined(g, b));
        if ra["blockNumber"] == rb["blockNumber"] {
            packed.push(quantity(&ra["blockNumber"]));
        }
    }
    assert!(!packed.is_empty(), "no block held both blob transactions");
    let after = packed[0] + 1;
    let block = g.call("eth_getBlockByNumber", json!([format!("{after:#x}"), false]));
    assert_ne!(block["excessBlobGas"], "0x0", "a block over the blob target raised no excess: {block}");
    let (head, _) = g.head();
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    // geth keeps mining: wait until the replica holds the traffic, not for an exact head.
    wait_for("the replica to hold the blob traffic", Duration::from_secs(60), || {
        // (No answer yet while the replica starts: keep waiting.)
        let r = rpc_call(port, "eth_blockNumber", json!([]));
        r["result"].is_string() && quantity(&r["result"]) >= head
    });
    let at = json!(format!("{after:#x}"));
    let mut compared = 0;
    for (method, params) in [
        ("eth_feeHistory", json!(["0xc", at, [50]])),
        ("eth_call", json!([{"from": DEV[1], "data": "0x4a60005260206000f3"}, at])),
        ("eth_getBlockByNumber", json!([at, false])),
    ] {
        let (o, t) = (rpc_call(port, method, params.clone()), g.call(method, params.clone()));
        if let Some(d) = json_diff("", &o["result"], &t) {
            panic!("{method} {params}: {d}");
        }
        compared += 1;
    }
    assert_eq!(compared, 3);
}

/// Garbage, wrong types and oversized input get JSON-RPC errors, and the server keeps answering.
#[test]
fn rpc_survives_hostile_input() {
    let c = Cluster::start(&[]);
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    let alive = || {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .is_some_and(|v| v["result"] == json!("0x7a69"))
    };
    wait_for("the replica's RPC", Duration::from_secs(60), alive);
    let bodies: Vec<Vec<u8>> = vec![
        b"not json at all".to_vec(),
        b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x01],
        b"[]".to_vec(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBalance", "params": [12, {"x": []}]}).to_string().into_bytes(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getStorageAt", "params": [DEV[0], "0xzz", "latest"]}).to_string().into_bytes(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getBlockByNumber", "params": "latest"}).to_string().into_bytes(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{"topics": [[[]]]}]}).to_string().into_bytes(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_feeHistory", "params": ["0xffffffffffffffff", "latest", [101]]}).to_string().into_bytes(),
        json!({"jsonrpc": "2.0", "id": 1, "method": "eth_sendRawTransaction", "params": ["0x"]}).to_string().into_bytes(),
    ];
    // A call asking for all the gas there is runs under the gas cap instead (and succeeds).
    let capped = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_call",
                        "params": [{"to": DEV[0], "gas": "0xffffffffffffffff"}, "latest"]});
    assert_eq!(http_post_json(port, &capped).map(|v| v["result"].clone()), Some(json!("0x")));
    for body in &bodies {
        let answer = http_post_raw(port, body);
        let shown = String::from_utf8_lossy(&body[..body.len().min(80)]).into_owned();
        let (code, text) = answer.unwrap_or_else(|| panic!("no answer to {shown:?}"));
        assert!(code == 200 || code == 400 || code == 413, "{shown:?}: HTTP {code}");
        if code == 200 {
            assert!(text.contains("\"error\""), "{shown:?} must get a JSON-RPC error: {text}");
        }
        assert!(alive(), "the server must stay up after {shown:?}");
    }
    // Over the 5 MiB body limit: refused (413, or the connection closed mid-upload), and the server stays up.
    let huge = format!(
        "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"eth_chainId\",\"params\":[\"{}\"]}}",
        "a".repeat(6 << 20)
    );
    if let Some((code, _)) = http_post_raw(port, huge.as_bytes()) {
        assert_eq!(code, 413, "an oversized body must be refused");
    }
    assert!(alive(), "the server must stay up after an oversized body");
}

/// Issue 4's differential test: one chain with every transaction type, contracts with storage and events,
/// reverts and a reorg; then one corpus of requests (every method, every tag, historical blocks, error cases,
/// batches) sent to anvil and to the replica. Results must be equal; errors must carry the same code. Known
/// differences are in docs/rpc-compatibility.md and are not in the corpus.
#[test]
fn differential_corpus_equals_anvil() {
    let c = Cluster::start(&["--slots-in-an-epoch", "1"]);
    let a = &c.client;
    let deploy =
        a.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(a, deploy);
    let mut txs = vec![deploy];
    txs.push(a.send(json!({"from": DEV[0], "to": DEV[1], "value": "0x1000", "gasPrice": "0x77359400"})));
    txs.push(a.send(json!({"from": DEV[1], "to": contract, "gasPrice": "0x77359400", "gas": "0x20000",
                           "accessList": [{"address": contract, "storageKeys": [format!("0x{}", word(5))]}],
                           "data": call_data(5, 0x42)})));
    txs.push(a.send(
        json!({"from": DEV[1], "to": contract, "data": call_data(6, 7), "maxPriorityFeePerGas": "0x3"}),
    ));
    txs.push(a.send(json!({"from": DEV[2], "to": contract, "data": "0x", "gas": "0x20000"})));
    let (auth, authority) = sign_authorization(KEY_5, 31337, contract, 0);
    txs.push(a.send(json!({"from": DEV[0], "to": authority, "data": call_data(9, 0x99), "gas": "0x40000",
                           "authorizationList": [auth]})));
    for tx in &txs {
        mined(a, *tx);
    }
    for i in 0..3u64 {
        let tx = a.send(
            json!({"from": DEV[3], "to": contract, "data": call_data(30 + i, i + 1), "gas": "0x20000"}),
        );
        mined(a, tx);
    }
    c.replay("before-reorg");
    // A reorg of depth 2, with transactions in the new branch; then one more block.
    let reorg_tx = |i: u64| json!([{"from": DEV[4], "to": contract, "data": call_data(40 + i, 0x50 + i), "gas": "0x20000"}, i]);
    a.call("anvil_reorg", json!([2, [reorg_tx(0), reorg_tx(1)]]));
    let last = a.send(json!({"from": DEV[0], "to": DEV[2], "value": "0x5"}));
    mined(a, last);
    let (_, log) = c.replay("after-reorg");
    let (_replica, port) = c.rpc_replica(&[]);
    let (head, _) = a.head();
    let ours = |body: &Value| http_post_json(port, body).unwrap_or(Value::Null);
    let theirs = |body: &Value| http_post_json(a.port, body).unwrap_or(Value::Null);
    let req =
        |method: &str, params: Value| json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params});
    wait_for("the replica at anvil's head with its heartbeat tags", Duration::from_secs(60), || {
        let h = req("eth_getBlockByNumber", json!(["finalized", false]));
        ours(&req("eth_blockNumber", json!([])))["result"] == json!(format!("{head:#x}"))
            && json_diff("", &ours(&h), &theirs(&h)).is_none()
    });

    let mut corpus: Vec<Value> = Vec::new();
    for m in [
        "eth_chainId",
        "net_version",
        "eth_blockNumber",
        // (eth_gasPrice and eth_maxPriorityFeePerGas follow geth's oracle, not anvil's fixed tip:
        // rpc_fees_and_estimates_equal_geth.)
        "eth_blobBaseFee",
    ] {
        corpus.push(req(m, json!([])));
    }
    let mut tags: Vec<Value> =
        vec![json!("latest"), json!("earliest"), json!("pending"), json!("safe"), json!("finalized")];
    for n in 0..=head {
        let num = json!(format!("{n:#x}"));
        tags.push(num.clone());
        for full in [false, true] {
            corpus.push(req("eth_getBlockByNumber", json!([num, full])));
        }
        for m in
            ["eth_getBlockTransactionCountByNumber", "eth_getUncleCountByBlockNumber", "eth_getBlockReceipts"]
        {
            corpus.push(req(m, json!([num])));
        }
        corpus.push(req("eth_getTransactionByBlockNumberAndIndex", json!([num, "0x0"])));
        if let Some(hash) = a.hash_at(n) {
            corpus.push(req("eth_getBlockByHash", json!([hash, false])));
            corpus.push(req("eth_getBlockTransactionCountByHash", json!([hash])));
            corpus.push(req("eth_getTransactionByBlockHashAndIndex", json!([hash, "0x0"])));
        }
    }
    let touched = touched(&log);
    for tag in &tags {
        for (address, slots) in touched.iter().take(8) {
            for m in ["eth_getBalance", "eth_getTransactionCount", "eth_getCode"] {
                corpus.push(req(m, json!([address, tag])));
            }
            for slot in slots.iter().take(3) {
                corpus.push(req("eth_getStorageAt", json!([address, slot, tag])));
            }
        }
    }
    for r in &log {
        if let ec_log::Record::Block(b) = &r.record {
            for tx in &b.transactions {
                corpus.push(req("eth_getTransactionByHash", json!([tx.hash()])));
                corpus.push(req("eth_getTransactionReceipt", json!([tx.hash()])));
            }
        }
    }
    for filter in [
        json!({"fromBlock": "earliest", "toBlock": "latest"}),
        json!({"fromBlock": "0x0", "address": contract}),
        json!({"fromBlock": "0x0", "topics": [B256::from(U256::from(5u64))]}),
        json!({"fromBlock": "0x0", "address": [contract, authority], "topics": [null]}),
    ] {
        corpus.push(req("eth_getLogs", json!([filter])));
    }
    for n in [head, head - 2, 3] {
        let block = json!(format!("{n:#x}"));
        for call in [
            json!({"from": DEV[2], "to": contract, "data": call_data(9, 1)}),
            json!({"from": DEV[2], "to": contract, "data": "0x"}),
            json!({"from": DEV[2], "to": DEV[3], "value": "0x10"}),
        ] {
            corpus.push(req("eth_call", json!([call, block])));
            corpus.push(req("eth_estimateGas", json!([call, block])));
        }
    }
    corpus.push(req("eth_feeHistory", json!(["0x3", "latest", [25, 75]])));
    corpus.push(req(
        "eth_createAccessList",
        json!([{"from": DEV[2], "to": contract, "data": call_data(9, 1)}, "latest"]),
    ));
    corpus.push(req("eth_createAccessList", json!([{"from": DEV[2], "to": contract, "data": "0x"}, "0x3"])));
    // Error cases: unknown methods, unknown blocks and transactions, bad params.
    corpus.push(req("admin_nodeInfo", json!([])));
    corpus.push(req("eth_getBlockByHash", json!([B256::repeat_byte(9), false])));
    corpus.push(req("eth_getTransactionByHash", json!([B256::repeat_byte(9)])));
    corpus.push(req("eth_getTransactionReceipt", json!([B256::repeat_byte(9)])));
    corpus.push(req("eth_getBalance", json!(["0x1234", "latest"])));

    // Results equal (up to anvil's own conventions, see json_diff); errors with the same code. A reverting
    // eth_createAccessList is an error on anvil and the list with `error` on geth and the replica.
    let same = |body: &Value, o: &Value, t: &Value| {
        if body["method"] == "eth_createAccessList" && t["error"]["message"] == "execution reverted" {
            assert_eq!(o["result"]["error"], "execution reverted", "{body}: ours {o}");
        } else if body["method"] == "eth_estimateGas" && t.get("result").is_some() {
            assert_estimate_near_anvils(&o["result"], &t["result"], body);
        } else if t.get("error").is_some() {
            assert_eq!(o["error"]["code"], t["error"]["code"], "{body}: ours {o}, anvil {t}");
        } else if let Some(d) = json_diff("", &o["result"], &t["result"]) {
            panic!("{body}: {d}");
        }
    };
    let mut compared = 0;
    for body in &corpus {
        same(body, &ours(body), &theirs(body));
        compared += 1;
    }
    // The same requests in batches of 10: one answer per call, each equal.
    for chunk in corpus.chunks(10).take(10) {
        let batch: Vec<Value> = chunk
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut r = r.clone();
                r["id"] = json!(i);
                r
            })
            .collect();
        let (o, t) = (ours(&json!(batch)), theirs(&json!(batch)));
        let by_id = |v: &Value| -> Vec<Value> {
            let mut items = v.as_array().cloned().unwrap_or_default();
            items.sort_by_key(|i| i["id"].as_u64());
            items
        };
        let (o, t) = (by_id(&o), by_id(&t));
        assert_eq!((o.len(), t.len()), (chunk.len(), chunk.len()), "one answer per call: {chunk:?}");
        for ((body, o), t) in chunk.iter().zip(&o).zip(&t) {
            same(body, o, t);
        }
        compared += chunk.len();
    }
    eprintln!("{compared} requests answered like anvil");
    assert!(compared >= 300, "the corpus must hold at least 300 requests, has {compared}");
}

/// eth_subscribe("logs", filter): the same logs as anvil sends; after a reorg, the abandoned block's logs come
/// again with `removed: true`.
#[test]
fn logs_subscription_equals_anvil_and_reports_removed_logs() {
    let c = Cluster::start(&[]);
    let a = &c.client;
    let deploy =
        a.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(a, deploy);
    c.replay("seed");
    let (_replica, port) = c.rpc_replica(&[]);
    wait_for("the replica's RPC", Duration::from_secs(60), || {
        http_post_json(port, &json!({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}))
            .is_some()
    });
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let filter = json!(["logs", {"address": contract}]);
    let (ours_ready, ours_rx) = tokio::sync::oneshot::channel();
    let (theirs_ready, theirs_rx) = tokio::sync::oneshot::channel();
    // Ours: 3 logs, then the reverted one again (removed) and the new branch's log.
    let ours = rt.spawn(notifications(format!("ws://127.0.0.1:{port}"), filter.clone(), 5, ours_ready));
    let theirs = rt.spawn(notifications(a.ws_url(), filter, 3, theirs_ready));
    rt.block_on(async {
        ours_rx.await.expect("replica subscribed");
        theirs_rx.await.expect("anvil subscribed");
    });
    for i in 0..3u64 {
        let tx = a.send(
            json!({"from": DEV[1], "to": contract, "data": call_data(60 + i, i + 1), "gas": "0x20000"}),
        );
        mined(a, tx);
    }
    let theirs = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), theirs)
            .await
            .expect("anvil logs in time")
            .expect("task")
    });
    // Let the replica see the three blocks before the chain changes under it.
    c.replay("before-reorg");
    a.call(
        "anvil_reorg",
        json!([1, [[{"from": DEV[2], "to": contract, "data": call_data(70, 7), "gas": "0x20000"}, 0]]]),
    );
    let ours = rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(60), ours)
            .await
            .expect("replica logs in time")
            .expect("task")
    });
    for (i, (o, t)) in ours.iter().zip(&theirs).enumerate() {
        if let Some(d) = json_diff("", o, t) {
            panic!("log {i}: {d}");
        }
    }
    let removed = &ours[3];
    assert_eq!(removed["removed"], json!(true), "{removed}");
    assert_eq!(
        removed["transactionHash"], theirs[2]["transactionHash"],
        "the reverted block's log comes back removed"
    );
    assert_eq!(ours[4]["removed"], json!(false));
    assert_eq!(ours[4]["topics"][0], json!(format!("0x{}", word(70))), "then the new branch's log");
}

/// Issue 14, point 5: on a chain with a short epoch (safe and finalized move) and a reorg in its history, the
/// replica answers `safe` and `finalized` with the client's blocks, with and without a publisher restart.
#[test]
fn safe_and_finalized_follow_the_client_through_a_reorg() {
    let mut c = Cluster::start(&["--slots-in-an-epoch", "4"]);
    // As a new user would: the chain, with its reorg, exists before the publisher first starts.
    if let Some(mut p) = c.publisher.take() {
        p.0.kill().expect("SIGKILL");
        let _ = p.0.wait();
    }
    let a = &c.client;
    for i in 0..12u64 {
        a.send(
            json!({"from": DEV[1], "to": format!("0x{:040x}", 0xa000 + i), "value": "0x9", "gas": "0x5208"}),
        );
    }
    let txs: Vec<Value> = (0..5u64)
        .map(|i| json!([{"from": DEV[0], "to": format!("0x{:040x}", 0xb000 + i), "value": "0x7"}, 0]))
        .collect();
    a.call("anvil_reorg", json!([5, txs]));
    // The first answer must be right: a replica that has replayed the log answers the tags at once (the
    // publisher announces them right after catching up, not at its next heartbeat tick).
    let check = |c: &Cluster, when: &str| {
        c.replay(when);
        let (replica, port) = c.rpc_replica(&[]);
        let (head, _) = c.client.head();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = harness::rpc_call(port, "eth_blockNumber", json!([]));
            if got.get("result").and_then(Value::as_str) == Some(format!("{head:#x}").as_str()) {
                break;
            }
            assert!(Instant::now() < deadline, "{when}: the replica did not reach block {head}: {got}");
            std::thread::sleep(Duration::from_millis(50));
        }
        for tag in ["safe", "finalized"] {
            let want = c.client.call("eth_getBlockByNumber", json!([tag, false]));
            assert!(!want.is_null(), "anvil has a {tag} block");
            let got = harness::rpc_call(port, "eth_getBlockByNumber", json!([tag, false]));
            let heartbeats: Vec<String> = read_log(&c.brokers(), "log")
                .iter()
                .rev()
                .filter(|r| matches!(r.record, ec_log::Record::Heartbeat(_)))
                .take(1)
                .map(|r| format!("{:?}", r.record))
                .collect();
            assert_eq!(
                got.get("result").map(|r| &r["hash"]),
                Some(&want["hash"]),
                "{when}: the replica answers {tag} with {got}, anvil with {} {}; last heartbeat {heartbeats:?}",
                want["number"],
                want["hash"]
            );
        }
        drop(replica);
    };
    c.start_publisher();
    check(&c, "first-start");
    if let Some(mut p) = c.publisher.take() {
        p.0.kill().expect("SIGKILL");
        let _ = p.0.wait();
    }
    c.start_publisher();
    check(&c, "after-restart");
}

// ---------------------------------------------------------------------------------------------------------
// One trustworthy writer: stale heads, state checked against the chain, fenced publishers.

/// Waits until the replica's readiness answers `want`; returns the body.
fn wait_ready(port: u16, want: u16, secs: u64, what: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let answer = http_get(port, "/health/ready");
        match answer {
            Some((code, body)) if code == want => return body,
            _ => assert!(Instant::now() < deadline, "timed out after {secs}s waiting for {what}: {answer:?}"),
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits until the log's head is the client's head.
fn wait_log_at_head(brokers: &str, client: &Upstream, what: &str) {
    wait_for(what, Duration::from_secs(120), || {
        published_head(&read_log(brokers, "log")) == Some(client.head())
    });
}

/// Every sequence from 0 to the last appears, and every copy of a sequence (a record written again after a
/// failure) has the same contents: the log had one writer at a time.
fn assert_one_writer(log: &[ec_log::Assembled]) {
    let mut seen: std::collections::BTreeMap<u64, u32> = Default::default();
    for r in log {
        let crc = *seen.entry(r.envelope.sequence).or_insert(r.record_crc);
        assert_eq!(crc, r.record_crc, "record {} written twice with different contents", r.envelope.sequence);
    }
    let max = *seen.keys().last().expect("records");
    assert_eq!(seen.len() as u64, max + 1, "sequences 0..={max} without a gap");
}

/// Waits for the publisher process to exit; returns its log.
fn wait_publisher_exit(c: &mut Cluster, secs: u64) -> String {
    let p = c.publisher.as_mut().expect("a publisher runs");
    wait_for("the publisher to stop", Duration::from_secs(secs), || p.0.try_wait().ok().flatten().is_some());
    c.publisher_log()
}

/// A replica turns 503 within its head-age limit when the client stalls (heartbeats still flowing), when
/// the client is unreachable, and at once when the publisher stops on an undecodable block; each time it
/// returns to 200 by itself once the cause is gone.
#[test]
fn stale_heads_take_replicas_out_and_back() {
    let client = Upstream::anvil(&["--block-time", "1"]);
    // Block times from the wall clock (anvil counts on from the genesis file's 2023 timestamp otherwise).
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs();
    client.call("evm_setNextBlockTimestamp", json!([now + 1]));
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let mut c = Cluster::idle(client, MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.rpc_url = Some(proxy.url());
    c.start_publisher();
    let health = free_port();
    let health_addr = format!("127.0.0.1:{health}");
    let _replica = c.rpc_replica(&[
        "--health-addr",
        &health_addr,
        "--max-head-age-secs",
        "4",
        "--publisher-grace-secs",
        "2",
    ]);
    wait_ready(health, 200, 120, "the replica to be ready");

    // 1. The client stops producing blocks; the publisher is healthy and keeps sending heartbeats.
    c.client.call("evm_setIntervalMining", json!([0]));
    let body = wait_ready(health, 503, 20, "503 with the client stalled");
    assert!(body.contains("stale head"), "{body}");
    c.client.call("evm_setIntervalMining", json!([1]));
    wait_ready(health, 200, 30, "200 once blocks flow again");

    // 2. The client is unreachable.
    proxy.set_down(true);
    let body = wait_ready(health, 503, 20, "503 with the client unreachable");
    let (_, metrics) = http_get(health, "/metrics").expect("metrics");
    proxy.set_down(false);
    assert!(body.contains("stale head") || body.contains("client unreachable"), "{body}");
    assert!(metrics.contains("ether_cattle_replica_publisher_state 1"), "{metrics}");
    wait_ready(health, 200, 30, "200 once the client answers again");

    // 3. A block whose transaction type this build cannot decode: the publisher stops, says so in a last
    //    heartbeat, and the replica leaves at once (without waiting for its head to age).
    proxy.set_rewrite(Some(Box::new(|method, params, result| {
        let full = method == "eth_getBlockByNumber" && params[1] == json!(true);
        match result.get_mut("transactions").and_then(|t| t.get_mut(0)) {
            Some(tx) if full && tx.is_object() => {
                tx["type"] = json!("0x7f");
                true
            }
            _ => false,
        }
    })));
    c.client.send(json!({"from": DEV[0], "to": format!("0x{:040x}", 0xde00), "value": "0x1"}));
    let log = wait_publisher_exit(&mut c, 60);
    assert!(log.contains("does not decode"), "{log}");
    let body = wait_ready(health, 503, 10, "503 with the publisher stopped");
    assert!(body.contains("publisher stopped"), "{body}");
    proxy.set_rewrite(None);
    c.start_publisher();
    wait_ready(health, 200, 60, "200 once a fixed publisher runs");
}

/// A tracer that reports a live contract as deleted (geth's prestate tracer did, for post-Cancun
/// SELFDESTRUCT callers): the publisher asks the client, writes the contract as the client has it, and
/// counts the disagreement; the replica equals anvil.
#[test]
fn a_false_deletion_is_written_as_the_client_has_it() {
    let client = Upstream::anvil(&[]);
    let deploy =
        client.send(json!({"from": DEV[0], "data": format!("0x{INIT_PREFIX}{RUNTIME}"), "gas": "0x100000"}));
    let contract = contract_address(&client, deploy);
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let key = format!("{contract:#x}");
    proxy.set_rewrite(Some(Box::new(move |method, _, result| {
        let mut changed = false;
        if method != "debug_traceBlockByNumber" {
            return false;
        }
        for tx in result.as_array_mut().into_iter().flatten() {
            let frame = &mut tx["result"];
            let known =
                |m: &Value| m.as_object().and_then(|o| o.keys().find(|k| k.to_lowercase() == key).cloned());
            if let (Some(_), Some(k)) = (known(&frame["pre"]), known(&frame["post"])) {
                frame["post"].as_object_mut().map(|o| o.remove(&k));
                changed = true;
            }
        }
        changed
    })));
    let metrics = free_port();
    let mut c = Cluster::idle(client, MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.rpc_url = Some(proxy.url());
    c.publisher_args = vec!["--metrics-addr".into(), format!("127.0.0.1:{metrics}")];
    c.start_publisher();
    for (slot, value) in [(5u64, 0x42u64), (1, 0), (5, 0x43)] {
        let tx = c.client.send(json!({"from": DEV[1], "to": contract, "data": call_data(slot, value)}));
        assert_eq!(status(&c.client, tx), 1);
    }
    let (dir, log) = c.replay("false-deletion");
    assert!(proxy.rewritten.load(std::sync::atomic::Ordering::Relaxed) >= 3, "the proxy rewrote the traces");
    let (_, text) = http_get(metrics, "/metrics").expect("publisher metrics");
    let count = text
        .lines()
        .find_map(|l| l.strip_prefix("ether_cattle_publisher_tracer_disagreements_total "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(count.is_some_and(|n| n >= 3), "{text}");
    let (head, _) = c.client.head();
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
}

/// With the verifier on for every account, a trace that falsifies a balance stops the publisher before
/// the block is written, naming the account and both values; true blocks before it pass the check.
#[test]
fn the_verifier_stops_a_falsified_balance_before_it_is_written() {
    let client = Upstream::anvil(&[]);
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let victim = format!("0x{:040x}", 0xbad0);
    let mut c = Cluster::idle(client, MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.rpc_url = Some(proxy.url());
    c.publisher_args = vec!["--verify-rate".into(), "1".into()];
    c.start_publisher();
    for i in 0..3u64 {
        let tx = c.client.send(json!({"from": DEV[0], "to": format!("0x{:040x}", 0xb0 + i), "value": "0x5"}));
        mined(&c.client, tx);
    }
    c.replay("verified");
    let needle = victim.clone();
    proxy.set_rewrite(Some(Box::new(move |method, _, result| {
        let mut changed = false;
        if method != "debug_traceBlockByNumber" {
            return false;
        }
        for tx in result.as_array_mut().into_iter().flatten() {
            let post = &mut tx["result"]["post"];
            let Some(k) =
                post.as_object().and_then(|o| o.keys().find(|k| k.to_lowercase() == needle).cloned())
            else {
                continue;
            };
            post[&k]["balance"] = json!("0x7");
            changed = true;
        }
        changed
    })));
    let tx = c.client.send(json!({"from": DEV[0], "to": victim, "value": "0x5"}));
    let block =
        mined(&c.client, tx)["blockNumber"].as_str().map(|n| u64::from_str_radix(&n[2..], 16).unwrap_or(0));
    let log = wait_publisher_exit(&mut c, 60);
    assert!(log.contains("disagrees with the chain's state root"), "{log}");
    assert!(
        log.to_lowercase().contains(&victim[2..])
            && log.contains("record says the balance is 7")
            && log.contains("says 5"),
        "{log}"
    );
    let written = read_log(&c.brokers(), "log");
    assert!(
        !written.iter().any(|r| matches!(&r.record, ec_log::Record::Block(b) if Some(b.number) == block)),
        "the falsified block {block:?} must not be in the log"
    );
}

/// Publishers of one cluster racing for its log (a second one started beside the first, kill -9, standbys
/// taking over, the broker stopped and restarted under them) never write a conflicting record, and a
/// replica of the log equals anvil. Needs a broker with transactions: genuine Apache Kafka.
#[test]
fn rival_publishers_never_write_a_conflicting_record() {
    let mut broker = ec_testkit::KafkaBroker::start().expect("kafka broker");
    broker.create_topic("log", &[]).expect("topic");
    let brokers = broker.bootstrap_servers();
    let client = Upstream::anvil(&[]);
    let tmp = tempdir();
    let publisher = |name: &str, extra: &[&str]| {
        let mut cmd = Command::new(bin());
        cmd.args(["publisher", "--topic", "log", "--cluster-id", CLUSTER, "--brokers", &brokers])
            .args(["--rpc-url", &client.http_url(), "--tx-topic", "none"])
            .args([
                "--heartbeat-interval-ms",
                "300",
                "--poll-interval-ms",
                "100",
                "--takeover-after-secs",
                "2",
            ])
            .args(extra)
            .arg("--genesis")
            .arg(client.genesis());
        spawn_logged(cmd, &tmp.path().join(format!("{name}.log")))
    };
    let log_of =
        |name: &str| std::fs::read_to_string(tmp.path().join(format!("{name}.log"))).unwrap_or_default();
    let traffic = |n: u64| client.transfers(DEV[2], 0xf00, n);
    let caught_up = |what: &str| wait_log_at_head(&brokers, &client, what);

    let mut a = publisher("a", &[]);
    traffic(4);
    caught_up("publisher a to follow");
    // A second active publisher fences the first: a stops, saying why; b carries on.
    let _b = publisher("b", &[]);
    wait_for("a to be fenced", Duration::from_secs(60), || a.0.try_wait().ok().flatten().is_some());
    assert!(log_of("a").contains("took over the log"), "{}", log_of("a"));
    traffic(4);
    caught_up("publisher b to follow");
    drop(_b); // kill -9
              // Standbys: the first takes over once the log is silent; the second waits behind it.
    let a2 = publisher("a2", &["--standby"]);
    traffic(3);
    caught_up("standby a2 to take over");
    let _b2 = publisher("b2", &["--standby"]);
    traffic(2);
    caught_up("a2 to follow with b2 waiting");
    // The broker goes away under them (a standby may take over meanwhile: still one writer).
    broker.stop();
    traffic(3);
    std::thread::sleep(Duration::from_secs(3));
    broker.start_again().expect("broker restarts");
    caught_up("the log to continue after the broker's restart");
    drop(a2); // kill -9: b2 (if not already active) takes over
    traffic(3);
    caught_up("b2 to take over");

    let log = read_log(&brokers, "log");
    assert_one_writer(&log);
    let dir = tmp.path().join("replica");
    run_replica_ok(&dir, &brokers, "log");
    let (head, _) = client.head();
    let compared = assert_replica_equals_upstream(&client, &dir, head, &touched(&log));
    assert!(compared > 0);
}

/// A broker outage longer than the publisher's transaction timeout fails the open transaction (and can leave
/// the producer unusable): the publisher recovers by itself, without a restart, a gap or a duplicate.
#[test]
fn a_transaction_that_outlives_a_broker_outage_is_recovered() {
    let mut broker = ec_testkit::KafkaBroker::start().expect("kafka broker");
    broker.create_topic("log", &[]).expect("topic");
    let brokers = broker.bootstrap_servers();
    let client = Upstream::anvil(&[]);
    let tmp = tempdir();
    let mut cmd = Command::new(bin());
    cmd.args(["publisher", "--topic", "log", "--cluster-id", CLUSTER, "--brokers", &brokers])
        .args(["--rpc-url", &client.http_url(), "--tx-topic", "none"])
        .args(["--heartbeat-interval-ms", "300", "--poll-interval-ms", "100"])
        .args(["--kafka-option", "transaction.timeout.ms=2000"])
        .arg("--genesis")
        .arg(client.genesis());
    let log_path = tmp.path().join("publisher.log");
    let mut publisher = spawn_logged(cmd, &log_path);
    let traffic = |n: u64| client.transfers(DEV[3], 0xe00, n);
    // On a timeout, say what the publisher was doing: this test has failed rarely, for a reason not yet known.
    let caught_up = |what: &str| {
        let start = std::time::Instant::now();
        while published_head(&read_log(&brokers, "log")) != Some(client.head()) {
            if start.elapsed() > Duration::from_secs(120) {
                let text = std::fs::read_to_string(&log_path).unwrap_or_default();
                let tail: Vec<&str> =
                    text.lines().rev().take(60).collect::<Vec<_>>().into_iter().rev().collect();
                panic!(
                    "timed out after 120 s waiting for {what}; publisher log (last 60 lines):\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    traffic(3);
    caught_up("the publisher to follow");
    broker.stop();
    traffic(3);
    std::thread::sleep(Duration::from_secs(8));
    broker.start_again().expect("broker restarts");
    traffic(2);
    caught_up("the log to continue after the outage");
    assert!(
        publisher.0.try_wait().ok().flatten().is_none(),
        "the publisher must still run:\n{}",
        std::fs::read_to_string(&log_path).unwrap_or_default()
    );
    let text = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(
        text.contains("refuses the records") || text.contains("replacing it"),
        "the outage must have failed a transaction:\n{text}"
    );
    eprintln!(
        "{}",
        text.lines()
            .filter(|l| l.contains("refuses") || l.contains("replacing"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let log = read_log(&brokers, "log");
    assert_one_writer(&log);
    let dir = tmp.path().join("replica");
    run_replica_ok(&dir, &brokers, "log");
    let (head, _) = client.head();
    assert_replica_equals_upstream(&client, &dir, head, &touched(&log));
}
