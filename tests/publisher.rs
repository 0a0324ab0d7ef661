//! The publisher against anvil and geth and a real broker: the log it writes must rebuild the client's chain
//! and state exactly, through reorgs (anvil) and kills. (A replica's JSON-RPC answers are tests/rpc.rs.)

mod harness;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use alloy_primitives::{hex, keccak256, B256, U256};
use ec_testkit::MockBroker;
use harness::{chain::*, cluster::*, script::*, *};
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

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
        assert_trie_root_is_the_heads(a, &dir, head);

        a.call("anvil_rollback", json!([depth]));
        for i in 0..depth + 1 {
            a.send(json!({"from": DEV[2], "to": format!("0x{:040x}", 0xe000 + i), "value": "0x3", "gas": "0x5208"}));
        }
        let (dir, log) = c.replay(&format!("after-rollback-{depth}"));
        let (head, _) = a.head();
        assert_replica_equals_upstream(a, &dir, head, &touched(&log));
        assert_trie_root_is_the_heads(a, &dir, head);
    }
    let log = read_log(&c.brokers(), "log");
    let reverts = log.iter().filter(|r| matches!(r.record, ec_log::Record::Revert(_))).count();
    assert!(reverts >= 2 * (1 + 3 + 20), "expected a revert per abandoned block, got {reverts}");
}

/// The replica checked every block's and every revert's state root as it applied them; its trie now
/// describes the upstream's head, with the head's root.
fn assert_trie_root_is_the_heads(a: &Upstream, dir: &std::path::Path, head: u64) {
    let store = ec_store::Store::open_read_only(dir).expect("the replica's database");
    let trie = ec_store::Reads::trie_head(&store).expect("reads").expect("the trie is built");
    let block = a.call("eth_getBlockByNumber", json!([format!("{head:#x}"), false]));
    assert_eq!((trie.number, json!(trie.root)), (head, block["stateRoot"].clone()));
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
    let out = publisher_cmd(&broker.bootstrap_servers(), &anvil.http_url(), &path)
        .args(["--tx-topic", "none"])
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
        publisher_cmd(&broker.bootstrap_servers(), &anvil.http_url(), &genesis_file())
            .args(["--tx-topic", "none", "--reorg-window", "2"])
            .args(["--poll-interval-ms", "100", "--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
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
    assert_no_gap(&log);
    let (head, _) = c.client.head();
    assert!(head >= 15);
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
    let said = c.publisher_log();
    assert!(
        said.contains("127.0.0.1") && said.to_lowercase().contains("fail"),
        "the outage went unreported:\n{said}"
    );
}

/// SIGTERM while a block's transaction waits for a broker that is gone: the publisher stops at once and
/// cleanly (exit 0), not after the commit's own 30 s (ECS kills a task 30 s after SIGTERM). What it was
/// writing is left to Kafka's transaction: once the broker is back, a new publisher continues the log with
/// no gap and nothing skipped.
#[test]
fn sigterm_while_kafka_is_down_stops_the_publisher_at_once() {
    let mut c = Cluster::start(&[]);
    let send = |c: &Cluster, i: u64| {
        let tx = c.client.send(
            json!({"from": DEV[1], "to": format!("0x{:040x}", 0xcd00 + i), "value": "0x1", "gas": "0x5208"}),
        );
        mined(&c.client, tx);
    };
    send(&c, 0);
    c.replay("before");
    c.broker.set_down(true).expect("broker down");
    send(&c, 1);
    // The publisher takes the block and waits on Kafka.
    std::thread::sleep(Duration::from_secs(2));
    let p = c.publisher.as_mut().expect("a publisher runs");
    let status = Command::new("kill").args(["-TERM", &p.0.id().to_string()]).status().expect("kill runs");
    assert!(status.success());
    let stopped = Instant::now();
    let said = wait_publisher_exit(&mut c, 10);
    let exit = c.publisher.as_mut().and_then(|p| p.0.try_wait().ok().flatten());
    assert_eq!(exit.and_then(|e| e.code()), Some(0), "a clean stop:\n{said}");
    assert!(stopped.elapsed() < Duration::from_secs(5), "stopped after {:?}:\n{said}", stopped.elapsed());
    assert!(said.contains("publisher stopping"), "{said}");

    c.broker.set_down(false).expect("broker up");
    c.start_publisher();
    send(&c, 2);
    let (dir, log) = c.replay("after");
    assert_no_gap(&log);
    let (head, _) = c.client.head();
    assert!(head >= 3);
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
}

/// Every sequence from 0 on is in the log, in order. (A record written again is a replica's to skip; a gap
/// would be a loss.)
fn assert_no_gap(log: &[ec_log::Assembled]) {
    let mut next = 0;
    for r in log {
        if r.envelope.sequence < next {
            continue;
        }
        assert_eq!(r.envelope.sequence, next, "gap in the log");
        next += 1;
    }
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
    let mut last = B256::ZERO;
    for i in 0..12u64 {
        last = a.send(
            json!({"from": DEV[1], "to": format!("0x{:040x}", 0xa000 + i), "value": "0x9", "gas": "0x5208"}),
        );
    }
    // anvil answers before it mines: the reorg needs the twelve blocks there.
    mined(a, last);
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
        if !method.starts_with("debug_traceBlockBy") {
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
        if !method.starts_with("debug_traceBlockBy") {
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
        let mut cmd = publisher_cmd(&brokers, &client.http_url(), client.genesis());
        cmd.args(["--tx-topic", "none"])
            .args([
                "--heartbeat-interval-ms",
                "300",
                "--poll-interval-ms",
                "100",
                "--takeover-after-secs",
                "2",
            ])
            .args(extra);
        spawn_logged(cmd, &tmp.path().join(format!("{name}.log")))
    };
    let log_of =
        |name: &str| std::fs::read_to_string(tmp.path().join(format!("{name}.log"))).unwrap_or_default();
    let traffic = |n: u64| client.transfers(DEV[2], 0xf00, n);
    // On a timeout, every publisher's log: which one held the log, which one stopped and why.
    let caught_up = |what: &str| {
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            wait_log_at_head(&brokers, &client, what)
        }));
        if let Err(cause) = waited {
            let logs: Vec<String> =
                ["a", "b", "a2", "b2"].iter().map(|n| format!("--- {n}:\n{}", log_of(n))).collect();
            let cause = cause.downcast_ref::<String>().cloned().unwrap_or_default();
            panic!("{cause}\n{}", logs.join("\n"));
        }
    };

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
    let mut cmd = publisher_cmd(&brokers, &client.http_url(), client.genesis());
    cmd.args(["--tx-topic", "none"])
        .args(["--heartbeat-interval-ms", "300", "--poll-interval-ms", "100"])
        .args(["--kafka-option", "transaction.timeout.ms=2000"]);
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

/// A client that cannot be reached while the publisher starts (a node restarting under it) is waited for:
/// the publisher neither exits nor takes it for a client without tracers, and publishes once it answers.
#[test]
fn a_starting_publisher_waits_for_a_client_that_is_not_up_yet() {
    let client = Upstream::geth();
    let tx = client.send(json!({"from": DEV[0], "to": format!("0x{:040x}", 0xc1), "value": "0x1"}));
    mined(&client, tx);
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    proxy.set_down(true);
    let mut c = Cluster::idle(client, MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.rpc_url = Some(proxy.url());
    c.start_publisher();
    std::thread::sleep(Duration::from_secs(3));
    let running = c.publisher.as_mut().map(|p| p.0.try_wait().expect("the publisher's status").is_none());
    assert_eq!(running, Some(true), "the publisher exited:\n{}", c.publisher_log());
    proxy.set_down(false);
    c.replay("after-the-wait");
    let log = c.publisher_log();
    assert!(log.contains("cannot be reached"), "the wait is logged:\n{log}");
    assert!(!log.contains("serves neither"), "{log}");
}

/// Issue 26's scenario on geth, where its prestate tracer (diff mode) is blind: a contract created in a
/// transaction whose SELFDESTRUCT ran in a frame that reverted appears in no diff, and one created by
/// CREATE2 at a pre-funded address is reported deleted. Each is touched again by a later transaction of the
/// same block. Also: a create-and-destroy in one transaction, an EIP-6780 survivor touched again in its
/// block, and an EIP-7702 delegation set and then cleared. The publisher checks every account of every record
/// against proofs (`--verify-rate 1`); every touched account's balance, nonce, code and storage on the replica
/// equal geth's at every block (and the replica checked every block's state root).
#[test]
fn self_destructs_creations_and_delegations_equal_geths_at_every_block() {
    use harness::evm;
    // Every account of every block checked against proofs (item 3): at the block, and before it at the parent.
    let mut c = Cluster::idle(Upstream::geth(), MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.publisher_args = vec!["--verify-rate".into(), "1".into()];
    c.start_publisher();
    let a = &c.client;
    let deploy = |from: &str, init: Vec<u8>| {
        contract_address(
            a,
            a.send(json!({"from": from, "data": format!("0x{}", hex::encode(init)), "gas": "0x200000"})),
        )
    };
    let wrapper = deploy(DEV[0], evm::deployable(&evm::wrapper_runtime()));
    let factory = deploy(DEV[0], evm::deployable(&evm::factory_runtime()));
    let survivor = deploy(DEV[0], hex::decode(format!("{INIT_PREFIX}{RUNTIME}")).expect("hex"));
    let funded = a.send(
        json!({"from": DEV[0], "to": survivor, "value": "0x5555", "data": call_data(7, 7), "gas": "0x30000"}),
    );
    assert_eq!(status(a, funded), 1);
    // The CREATE2 child's address holds value before the child exists.
    let pre_funded = evm::factory_child2(factory, 7);
    a.mined(a.send(json!({"from": DEV[0], "to": pre_funded, "value": "0x777", "gas": "0x5208"})));
    // The factory is a contract: its first CREATE uses nonce 1, its second nonce 2.
    let (invisible, destroyed) = (factory.create(1), factory.create(2));

    // Block 1: the invisible creation (its self-destruct reverted), touched again; the survivor's
    // self-destruct, touched again.
    let (txs, b1) = a.send_in_one_block(vec![
        json!({"from": DEV[1], "to": factory, "value": "0x1234", "data": evm::factory_call(0, wrapper, true), "gas": "0x200000"}),
        json!({"from": DEV[2], "to": invisible, "data": call_data(5, 0x42), "gas": "0x30000"}),
        json!({"from": DEV[3], "to": survivor, "data": "0x01", "gas": "0x30000"}),
        json!({"from": DEV[4], "to": survivor, "data": call_data(11, 0x77), "gas": "0x30000"}),
    ]);
    for tx in &txs {
        assert_eq!(status(a, *tx), 1, "{tx} in block {b1}");
    }
    // Block 2: CREATE2 at the pre-funded address, its self-destruct reverted (the tracer calls it deleted),
    // touched again; a child created and destroyed in one transaction.
    let (txs, b2) = a.send_in_one_block(vec![
        json!({"from": DEV[1], "to": factory, "value": "0x99", "data": evm::factory_call(7, wrapper, true), "gas": "0x200000"}),
        json!({"from": DEV[2], "to": pre_funded, "data": call_data(6, 0x66), "gas": "0x30000"}),
        json!({"from": DEV[3], "to": factory, "data": evm::factory_call(0, wrapper, false), "gas": "0x200000"}),
    ]);
    for tx in &txs {
        assert_eq!(status(a, *tx), 1, "{tx} in block {b2}");
    }
    // Blocks 3 and 4: account 5 delegates to the survivor and is called; then the delegation is cleared and
    // the account paid.
    let (set, authority) = sign_authorization(KEY_5, a.chain_id, survivor, 0);
    let (txs, _) = a.send_in_one_block(vec![
        json!({"from": DEV[0], "to": authority, "data": call_data(9, 0x99), "gas": "0x40000", "authorizationList": [set]}),
        json!({"from": DEV[1], "to": authority, "data": call_data(10, 0x10), "gas": "0x40000"}),
    ]);
    for tx in &txs {
        assert_eq!(status(a, *tx), 1);
    }
    let (clear, _) = sign_authorization(KEY_5, a.chain_id, alloy_primitives::Address::ZERO, 1);
    let (txs, _) = a.send_in_one_block(vec![
        json!({"from": DEV[0], "to": authority, "gas": "0x40000", "authorizationList": [clear]}),
        json!({"from": DEV[1], "to": authority, "value": "0x1", "gas": "0x40000"}),
    ]);
    for tx in &txs {
        assert_eq!(status(a, *tx), 1);
    }
    let code = |at: alloy_primitives::Address| a.call("eth_getCode", json!([at, "latest"]));
    assert_ne!(code(invisible), json!("0x"), "the invisible child lives on geth");
    assert_ne!(code(pre_funded), json!("0x"), "the CREATE2 child lives on geth");
    assert_eq!(code(destroyed), json!("0x"), "the destroyed child is gone on geth");
    assert_eq!(code(authority), json!("0x"), "the delegation is cleared");

    let (dir, log) = c.replay("replica");
    let (head, _) = published_head(&log).expect("a published head");
    let mut touched = touched(&log);
    let slots =
        |s: &[u64]| s.iter().map(|s| B256::from(U256::from(*s))).collect::<std::collections::BTreeSet<_>>();
    for (account, s) in [
        (factory, slots(&[0])),
        (invisible, slots(&[1, 2, 5])),
        (pre_funded, slots(&[1, 2, 6])),
        (destroyed, slots(&[1, 2])),
        (survivor, slots(&[1, 2, 7, 11])),
        (authority, slots(&[9, 10])),
        (wrapper, slots(&[])),
    ] {
        touched.entry(account).or_default().extend(s);
    }
    let compared = assert_replica_equals_upstream(a, &dir, head, &touched);
    eprintln!("{compared} values compared over {} blocks", head + 1);
    let log_text = c.publisher_log();
    assert!(
        log_text.contains("an account no trace showed") && log_text.contains(&format!("{invisible}")),
        "the publisher found the invisible child {invisible}:\n{log_text}"
    );
    assert!(
        log_text.contains("contradicts"),
        "the publisher saw the false deletion of {pre_funded}:\n{log_text}"
    );
}

/// Issue 26, item 5: a client that answers slowly (every answer held back 1.2 s by a proxy in front of geth,
/// so a block takes several seconds to fetch) for five times the takeover time. The active publisher keeps
/// writing heartbeats while it fetches: the standby never sees the silence it waits for, the log keeps one
/// writer, and it rebuilds geth's chain once the client is fast again.
#[test]
fn a_slow_client_does_not_let_a_standby_take_over() {
    let broker = ec_testkit::KafkaBroker::start().expect("kafka broker");
    broker.create_topic("log", &[]).expect("topic");
    let brokers = broker.bootstrap_servers();
    let client = Upstream::geth();
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let tmp = tempdir();
    let takeover_secs = 4u64;
    let publisher = |name: &str| {
        let mut cmd = publisher_cmd(&brokers, &proxy.url(), client.genesis());
        cmd.args(["--tx-topic", "none", "--standby"])
            .args(["--heartbeat-interval-ms", "300", "--poll-interval-ms", "100"])
            .args(["--takeover-after-secs", &takeover_secs.to_string()]);
        spawn_logged(cmd, &tmp.path().join(format!("{name}.log")))
    };
    let log_of =
        |name: &str| std::fs::read_to_string(tmp.path().join(format!("{name}.log"))).unwrap_or_default();
    let mut a = publisher("a");
    client.transfers(DEV[2], 0xf00, 3);
    wait_log_at_head(&brokers, &client, "publisher a to follow");
    let mut b = publisher("b");
    wait_for("b to stand by", Duration::from_secs(30), || {
        log_of("b").contains("waiting for the active publisher")
    });

    proxy.set_delay(Duration::from_millis(1200));
    let slow_from = now_ms();
    let until = Instant::now() + Duration::from_secs(5 * takeover_secs);
    while Instant::now() < until {
        client.send(
            json!({"from": DEV[3], "to": "0x000000000000000000000000000000000000f00d", "value": "0x1"}),
        );
        std::thread::sleep(Duration::from_secs(1));
        assert!(a.0.try_wait().ok().flatten().is_none(), "publisher a stopped:\n{}", log_of("a"));
    }
    let slow_to = now_ms();
    proxy.set_delay(Duration::ZERO);
    wait_log_at_head(&brokers, &client, "publisher a to catch up once the client is fast again");
    assert!(a.0.try_wait().ok().flatten().is_none(), "publisher a stopped:\n{}", log_of("a"));
    assert!(b.0.try_wait().ok().flatten().is_none(), "the standby exited:\n{}", log_of("b"));
    assert!(!log_of("b").contains("taking over"), "the standby took over:\n{}", log_of("b"));

    let log = read_log(&brokers, "log");
    assert_one_writer(&log);
    // While the client was slow, no silence near the takeover time.
    let beats: Vec<u64> = log
        .iter()
        .filter_map(|r| match &r.record {
            ec_log::Record::Heartbeat(h) if (slow_from..=slow_to).contains(&h.time_ms) => Some(h.time_ms),
            _ => None,
        })
        .collect();
    let widest = beats.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(u64::MAX);
    assert!(
        beats.len() > 10 && widest < takeover_secs * 1000 / 2,
        "{} heartbeats, widest gap {widest} ms",
        beats.len()
    );
    let dir = tmp.path().join("replica");
    run_replica_ok(&dir, &brokers, "log");
    let (head, _) = published_head(&log).expect("a head");
    assert_replica_equals_upstream(&client, &dir, head, &touched(&log));
    drop(b);
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Issue 26, item 4: anvil replaces the block being fetched (a reorg of depth 1) after its body and traces
/// were read and before its state reads and proofs. Everything after the body names the block by hash, so
/// the record is of one block or the fetch is retried: the publisher, checking every account against a
/// proof, never stops on a "state mismatch", and the log ends as anvil's new chain.
#[test]
fn a_reorg_while_a_block_is_fetched_is_a_retry() {
    use std::sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    };
    let client = Upstream::anvil(&[]);
    client.transfers(DEV[1], 0xa00, 3);
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let (armed, fired) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let (a, f, port) = (armed.clone(), fired.clone(), client.port);
    proxy.set_before(Some(Box::new(move |method, params| {
        let by_hash = params.as_array().and_then(|p| p.last()).is_some_and(|b| b.get("blockHash").is_some());
        if method == "eth_getCode" && by_hash && a.load(Ordering::SeqCst) && !f.swap(true, Ordering::SeqCst) {
            let tx =
                json!({"from": DEV[3], "to": "0x000000000000000000000000000000000000beef", "value": "0x5"});
            let reorg = json!({"jsonrpc": "2.0", "id": 1, "method": "anvil_reorg", "params": [1, [[tx, 0]]]});
            let answer = http_post_json(port, &reorg);
            assert!(answer.as_ref().is_some_and(|a| a.get("error").is_none()), "anvil_reorg: {answer:?}");
        }
    })));
    let mut c = Cluster::idle(client, MockBroker::start(&["log", "log-tx"]).expect("mock broker"));
    c.rpc_url = Some(proxy.url());
    c.publisher_args = vec!["--verify-rate".into(), "1".into(), "--pipeline-depth".into(), "1".into()];
    c.start_publisher();
    c.replay("before");
    armed.store(true, Ordering::SeqCst);
    let tx = c
        .client
        .send(json!({"from": DEV[2], "to": "0x000000000000000000000000000000000000cafe", "value": "0x9"}));
    c.client.mined(tx);
    wait_for("the reorg under the fetch", Duration::from_secs(60), || fired.load(Ordering::SeqCst));
    let (dir, log) = c.replay("after");
    assert!(
        c.publisher.as_mut().expect("publisher").0.try_wait().ok().flatten().is_none(),
        "the publisher stopped:\n{}",
        c.publisher_log()
    );
    assert!(!c.publisher_log().contains("disagrees with the chain's state root"), "{}", c.publisher_log());
    let (head, _) = c.client.head();
    assert_replica_equals_upstream(&c.client, &dir, head, &touched(&log));
}

/// Issue 26, item 7: a publisher that falls behind its client (geth behind a proxy holding every answer
/// back 400 ms: a block takes longer to publish than geth takes to seal one) takes the replicas out of the
/// balancer once the client's head, as its heartbeats report it, is more than `--max-behind-client-blocks`
/// past theirs; they return once it has caught up. On geth's developer chain: a genesis-file devnet.
#[test]
fn a_publisher_behind_its_client_takes_replicas_out() {
    let client = Upstream::geth();
    let proxy = harness::proxy::Proxy::start(format!("127.0.0.1:{}", client.port));
    let broker = MockBroker::start(&["log"]).expect("mock broker");
    let tmp = tempdir();
    let mut publisher = publisher_cmd(&broker.bootstrap_servers(), &proxy.url(), client.genesis());
    publisher.args(["--tx-topic", "none", "--pipeline-depth", "1"]).args([
        "--heartbeat-interval-ms",
        "2000",
        "--poll-interval-ms",
        "100",
    ]);
    let _publisher = spawn_logged(publisher, &tmp.path().join("publisher.log"));
    let port = free_port();
    let mut replica = replica_follow_cmd(&tmp.path().join("replica"), &broker.bootstrap_servers(), "log");
    replica.args(["--max-behind-client-blocks", "3", "--max-silence-secs", "20"]);
    replica.args(["--health-addr", &format!("127.0.0.1:{port}")]);
    let _replica = spawn_quiet(replica);
    wait_ready(port, 200, 90, "the replica to be ready");

    proxy.set_delay(Duration::from_millis(400));
    let body = wait_ready(port, 503, 90, "the replica to leave with the publisher behind its client");
    assert!(body.contains("behind"), "{body}");
    proxy.set_delay(Duration::ZERO);
    wait_ready(port, 200, 90, "the replica to return once the publisher caught up");
}
