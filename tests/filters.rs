//! Polling filters (`eth_newFilter` and the rest) behind the local balancer: two replicas sharing their
//! filters through DynamoDB (moto's), polls alternating between them while anvil reorganises its chain;
//! two clients polling one filter at once; ethers v6 and viem watching events through the balancer across a
//! reorg; idle expiry; and every method's answer against geth's.

mod harness;

use std::{
    collections::{BTreeMap, BTreeSet},
    io::Read,
    path::Path,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use harness::{chain::*, cluster::*, *};
use serde_json::{json, Value};

/// A contract whose every call emits one log: topic 0 the caller, data the call data
/// (`CALLDATACOPY; LOG1(0, CALLDATASIZE, CALLER)`).
const LOGGER_INIT: &str = "0x68365f5f3733365fa1005f5260096017f3";

/// A contract whose every call emits `Ping(address indexed from, uint256 value)`: the caller and the call
/// data's first word (`mstore(0, calldataload(0)); log2(0, 32, sig, caller)`), for clients that decode events
/// by ABI.
fn ping_init_code() -> String {
    let sig = alloy_primitives::keccak256("Ping(address,uint256)");
    let runtime = format!("5f355f52337f{}60205fa200", alloy_primitives::hex::encode(sig));
    // CODECOPY the runtime (after these 9 bytes) to memory 0 and return it.
    format!("0x602b8060095f395ff3{runtime}")
}

/// A replica of the cluster's log with JSON-RPC and health on free ports, its filters in `filter_flags`'
/// store; killed on drop.
struct Served {
    _proc: Killed,
    rpc: u16,
    health: u16,
    /// Its output, which failure messages quote.
    log: std::path::PathBuf,
}

fn replica(c: &Cluster, name: &str, filter_flags: &[&str], env: &[(&str, String)]) -> Served {
    let (rpc, health) = (free_port(), free_port());
    let mut cmd = replica_follow_cmd(&c.tmp.path().join(name), &c.brokers(), "log");
    cmd.args(["--rpc-addr", &format!("127.0.0.1:{rpc}"), "--health-addr", &format!("127.0.0.1:{health}")])
        .args(["--max-silence-secs", "30"])
        .args(filter_flags);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let log = c.tmp.path().join(format!("{name}.log"));
    let proc = spawn_logged(cmd, &log);
    Served { _proc: proc, rpc, health, log }
}

/// The AWS SDK pointed at moto (any credentials do).
fn moto_env(moto: &ec_testkit::MotoServer) -> Vec<(&'static str, String)> {
    vec![
        ("AWS_ENDPOINT_URL", moto.endpoint()),
        ("AWS_ACCESS_KEY_ID", "test".into()),
        ("AWS_SECRET_ACCESS_KEY", "test".into()),
        ("AWS_REGION", "us-east-1".into()),
    ]
}

/// anvil, the broker and a publisher (the cluster), a contract deployed from an init code, and two replicas
/// at anvil's head sharing their filters through moto's DynamoDB API. Dropped replicas first, moto last.
struct SharedFilters {
    r1: Served,
    r2: Served,
    contract: String,
    cluster: Cluster,
    _moto: ec_testkit::MotoServer,
}

impl SharedFilters {
    fn start(init_code: impl std::fmt::Display) -> Self {
        let moto = ec_testkit::MotoServer::start().expect("moto server");
        let cluster = Cluster::start(&[]);
        let a = &cluster.client;
        let deploy = a.send(json!({"from": DEV[0], "data": init_code.to_string(), "gas": "0x100000"}));
        let contract = a.mined(deploy)["contractAddress"].as_str().expect("a contract").to_string();
        let flags = ["--filter-store", "dynamodb", "--filter-table", "filters", "--filter-create-table"];
        let r1 = replica(&cluster, "r1", &flags, &moto_env(&moto));
        let r2 = replica(&cluster, "r2", &flags, &moto_env(&moto));
        wait_same_head(&r1, a);
        wait_same_head(&r2, a);
        SharedFilters { r1, r2, contract, cluster, _moto: moto }
    }
}

fn balancer(dir: &Path, replicas: &[&Served]) -> (Killed, u16) {
    let port = free_port();
    let backends: Vec<(u16, u16)> = replicas.iter().map(|r| (r.rpc, r.health)).collect();
    let p = spawn_logged(balancer_cmd(port, &backends), &dir.join("balancer.log"));
    wait_for("the balancer to route to both replicas", Duration::from_secs(60), || {
        http_get(port, "/balancer/status")
            .is_some_and(|(_, body)| body.matches("\"ready\":true").count() >= 2)
    });
    (p, port)
}

/// The result of a call that must succeed.
fn ok(port: u16, method: &str, params: Value) -> Value {
    let answer = rpc_call(port, method, params.clone());
    result(method, &params, answer)
}

fn result(method: &str, params: &Value, answer: Value) -> Value {
    assert!(
        answer.get("error").is_none() && (!answer["result"].is_null() || answer["result"] == json!(false)),
        "{method} {params}: {answer}"
    );
    answer["result"].clone()
}

/// [`ok`] through the balancer: while both replicas are out of it (readiness drops while one catches up
/// with a deep reorg), the balancer answers "no ready replica" itself; the client asks again, as one would.
fn ok_lb(lb: u16, method: &str, params: Value) -> Value {
    for _ in 0..300 {
        let answer = rpc_call(lb, method, params.clone());
        if answer["error"]["message"] != json!("no ready replica behind the balancer") {
            return result(method, &params, answer);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("no replica became ready again within 30 s");
}

/// Waits until the replica's head is the upstream's head (number and hash: after a reorg the number alone
/// says nothing). The upstream's head is read again on every poll: geth's on-demand mining now and then seals
/// an empty block after the transaction's, which the replica then follows past a head read once.
fn wait_same_head(r: &Served, upstream: &Upstream) {
    let start = Instant::now();
    loop {
        let (number, hash) = upstream.head();
        let ours = rpc_call(r.rpc, "eth_getBlockByNumber", json!(["latest", false]));
        if ours["result"]["hash"] == json!(hash) {
            return;
        }
        if start.elapsed() > Duration::from_secs(90) {
            let log = std::fs::read_to_string(&r.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            panic!(
                "after 90 s the replica's head is {} {}, the upstream's {number} {hash}; the replica's log ends:\n{}",
                ours["result"]["number"],
                ours["result"]["hash"],
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// How many polls the replica with health port `health` answered, from its `/metrics`.
fn polls_delivered(health: u16) -> u64 {
    metric(health, "ether_cattle_replica_filter_polls_total{outcome=\"delivered\"}")
}

/// A counter's value on the replica's `/metrics`.
fn metric(health: u16, series: &str) -> u64 {
    let (_, text) = http_get(health, "/metrics").expect("metrics");
    let line = text
        .lines()
        .find(|l| l.strip_prefix(series).is_some_and(|rest| rest.starts_with(' ')))
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"));
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}

/// A log's identity: block hash, log index (and its transaction, for the message).
fn key(log: &Value) -> (String, u64, String) {
    (
        log["blockHash"].as_str().unwrap_or_default().to_string(),
        quantity(&log["logIndex"]),
        log["transactionHash"].as_str().unwrap_or_default().to_string(),
    )
}

/// What a log filter's polls delivered: each log added, and each removed (which must have been added).
#[derive(Default)]
struct Delivered {
    added: BTreeMap<(String, u64, String), Value>,
    removed: BTreeSet<(String, u64, String)>,
}

impl Delivered {
    fn take(&mut self, changes: &Value) {
        for log in changes.as_array().unwrap_or_else(|| panic!("an array of logs: {changes}")) {
            let k = key(log);
            if log["removed"] == json!(true) {
                assert!(self.added.contains_key(&k), "removed {k:?} was never added");
                assert!(self.removed.insert(k.clone()), "removed {k:?} twice");
            } else {
                assert!(!self.added.contains_key(&k), "added {k:?} twice");
                self.added.insert(k, log.clone());
            }
        }
    }

    fn standing(&self) -> BTreeSet<(String, u64, String)> {
        self.added.keys().filter(|k| !self.removed.contains(*k)).cloned().collect()
    }
}

#[test]
fn polls_through_the_balancer_add_up_to_get_logs_across_reorgs() {
    let bed = SharedFilters::start(LOGGER_INIT);
    let (c, a, r1, r2) = (&bed.cluster, &bed.cluster.client, &bed.r1, &bed.r2);
    let logger = bed.contract.clone();
    let (_balancer, lb) = balancer(c.tmp.path(), &[r1, r2]);
    let (start, _) = a.head();

    let logs_filter = ok_lb(lb, "eth_newFilter", json!([{"address": logger}]));
    let by_topic =
        ok_lb(lb, "eth_newFilter", json!([{"topics": [format!("0x{:0>64}", &DEV[1][2..].to_lowercase())]}]));
    let blocks_filter = ok_lb(lb, "eth_newBlockFilter", json!([]));
    let logs = std::cell::RefCell::new(Delivered::default());
    let mut topic_logs = Delivered::default();
    let mut hashes: Vec<String> = Vec::new();
    // Polls through the balancer alternate between the two replicas (round robin over ready backends).
    let mut poll = |rounds: usize| {
        for _ in 0..rounds {
            logs.borrow_mut().take(&ok_lb(lb, "eth_getFilterChanges", json!([logs_filter])));
            topic_logs.take(&ok_lb(lb, "eth_getFilterChanges", json!([by_topic])));
            for h in ok_lb(lb, "eth_getFilterChanges", json!([blocks_filter])).as_array().expect("hashes") {
                hashes.push(h.as_str().expect("a hash").to_string());
            }
        }
    };
    let call = |from: &str, data: u64| json!({"from": from, "to": logger, "data": format!("{data:#066x}"), "gas": "0x20000"});
    let mut n = 0u64;
    for depth in [1u64, 3, 20] {
        // Enough blocks with logs for the reorg to take some back, each seen by the filter before it does.
        for _ in 0..depth + 2 {
            n += 1;
            let tx = a.send(call(DEV[(n % 2) as usize], n));
            a.mined(tx);
            poll(1);
        }
        wait_same_head(r1, a);
        wait_same_head(r2, a);
        poll(2);
        // The new branch: logs from other senders in some of its blocks.
        let txs: Vec<Value> =
            (0..depth.min(3)).map(|i| json!([call(DEV[2 + (i % 2) as usize], 1000 + n + i), i])).collect();
        a.call("anvil_reorg", json!([depth, txs]));
        poll(1);
        n += 1;
        let tx = a.send(call(DEV[1], n));
        a.mined(tx);
        poll(1);
    }
    // A rollback: the chain gets shorter than the cursor's block, the removed logs come all the same.
    for _ in 0..2 {
        n += 1;
        let tx = a.send(call(DEV[0], n));
        a.mined(tx);
    }
    wait_same_head(r1, a);
    wait_same_head(r2, a);
    poll(2);
    let removed_before = logs.borrow().removed.len();
    // (The publisher reverts once the client's chain moves on from the rollback: here one block, one below
    // the cursor's.)
    a.call("anvil_rollback", json!([2]));
    n += 1;
    let tx = a.send(call(DEV[1], n));
    a.mined(tx);
    wait_same_head(r1, a);
    wait_same_head(r2, a);
    poll(2);
    let removed = logs.borrow().removed.len();
    assert_eq!(removed, removed_before + 2, "the rolled-back blocks' logs, removed");
    wait_same_head(r1, a);
    wait_same_head(r2, a);
    poll(3);

    let (head, _) = a.head();
    let range = |extra: Value| {
        let mut f = json!({"fromBlock": format!("{:#x}", start + 1), "toBlock": format!("{head:#x}")});
        f.as_object_mut().expect("object").extend(extra.as_object().expect("object").clone());
        f
    };
    let expected = |port: u16, f: Value| -> BTreeSet<_> {
        ok(port, "eth_getLogs", json!([f])).as_array().expect("logs").iter().map(key).collect()
    };
    let logs = logs.into_inner();
    let want = expected(a.port, range(json!({"address": logger})));
    assert!(want.len() > 10, "the scripted run made {} logs", want.len());
    assert!(!logs.removed.is_empty(), "the reorgs took back logs the filter had delivered");
    assert_eq!(logs.standing(), want, "added minus removed equals eth_getLogs over the final chain");
    // Each standing log as the chain has it (removed: false, the same fields eth_getLogs gives).
    let full: Vec<Value> = ok(a.port, "eth_getLogs", json!([range(json!({"address": logger}))]))
        .as_array()
        .cloned()
        .unwrap_or_default();
    for log in full {
        assert_eq!(logs.added[&key(&log)], log);
    }
    let want_topic =
        expected(a.port, range(json!({"topics": [format!("0x{:0>64}", &DEV[1][2..].to_lowercase())]})));
    assert!(!want_topic.is_empty());
    assert_eq!(topic_logs.standing(), want_topic);

    // Both replicas answered polls (the balancer alternates), each from the cursor the other left.
    for r in [r1, r2] {
        let delivered = polls_delivered(r.health);
        assert!(delivered > 10, "replica on {} answered {delivered} polls", r.rpc);
    }
    // Block filters: every canonical block after the filter's creation exactly once (a node reports new
    // blocks, never removed ones).
    let unique: BTreeSet<&String> = hashes.iter().collect();
    assert_eq!(unique.len(), hashes.len(), "a block hash delivered twice");
    for number in start + 1..=head {
        let hash = a.hash_at(number).expect("canonical block");
        assert!(unique.contains(&format!("{hash:#x}")), "block {number} {hash} never delivered");
    }
}

/// The applications users point at the balancer: ethers v6 (`contract.on`) and viem (`watchContractEvent`)
/// over HTTP, each watching with a polling filter (tests/clients/watch.mjs) while the chain gets events, a
/// reorg of depth 3 and more events. Each receives every event of the final chain exactly once (events of the
/// reverted blocks again as removed).
#[test]
fn ethers_and_viem_receive_every_event_once_across_a_reorg() {
    let bed = SharedFilters::start(ping_init_code());
    let (c, a, r1, r2) = (&bed.cluster, &bed.cluster.client, &bed.r1, &bed.r2);
    let contract = bed.contract.clone();
    let (_balancer, lb) = balancer(c.tmp.path(), &[r1, r2]);
    let (start, _) = a.head();
    let installed = || {
        let series = "ether_cattle_replica_filters_installed_total";
        metric(r1.health, series) + metric(r2.health, series)
    };
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/clients/watch.mjs");
    let libraries = ["ethers", "viem"];
    let mut clients: Vec<(&str, Killed)> = libraries
        .into_iter()
        .map(|library| {
            let mut cmd = Command::new("node");
            let progress = c.tmp.path().join(format!("{library}.progress"));
            cmd.args([
                script,
                library,
                &format!("http://127.0.0.1:{lb}"),
                &contract,
                &progress.display().to_string(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(
                std::fs::File::create(c.tmp.path().join(format!("{library}.log"))).expect("log file"),
            ));
            (library, Killed(cmd.spawn().expect("node runs (scripts/setup.sh installs it)")))
        })
        .collect();
    // How many added events each library has delivered (its progress file).
    let delivered = |library: &str| -> usize {
        let progress = std::fs::read_to_string(c.tmp.path().join(format!("{library}.progress")));
        progress.ok().and_then(|n| n.trim().parse().ok()).unwrap_or(0)
    };
    // For a timeout's message: what the libraries delivered and wrote to their standard error, and the heads.
    let explain = || {
        let log = |library: &str| std::fs::read_to_string(c.tmp.path().join(format!("{library}.log")));
        libraries
            .map(|library| {
                format!("{library} (delivered {}): {}", delivered(library), log(library).unwrap_or_default())
            })
            .join("\n")
            + &format!(
                "\nheads: r1 {}, r2 {}, through the balancer {} {} {}",
                rpc_call(r1.rpc, "eth_blockNumber", json!([])),
                rpc_call(r2.rpc, "eth_blockNumber", json!([])),
                rpc_call(lb, "eth_blockNumber", json!([])),
                rpc_call(lb, "eth_blockNumber", json!([])),
                rpc_call(lb, "eth_blockNumber", json!([]))
            )
    };
    let wait = |what: &str, cond: &dyn Fn() -> bool| {
        wait_for_or_explain(what, Duration::from_secs(60), cond, explain)
    };
    // Each library installs its filter once it has seen the chain's head; an event sent before the server
    // answered its eth_newFilter is not the filter's, and one mined before ethers' block poller took its first
    // head is only asked for at the next block (the chain here stops): nothing is sent before both libraries
    // are watching (watch.mjs writes the filter's id then).
    let filter_of =
        |library: &str| std::fs::read_to_string(c.tmp.path().join(format!("{library}.progress.filter")));
    wait("ethers and viem to install their filters", &|| libraries.iter().all(|l| filter_of(l).is_ok()));
    assert!(installed() >= 2, "both filters are counted by the replicas' metrics");

    let ping = |from: &str, value: u64| json!({"from": from, "to": contract, "data": format!("{value:#066x}"), "gas": "0x20000"});
    // Until both libraries have delivered `events` added events (their progress files): on a loaded machine a
    // client's 200 ms polls can lag by seconds, and a reorg before they saw the events it removes would leave
    // nothing to report as removed.
    let settle = |events: usize| {
        wait_same_head(r1, a);
        wait_same_head(r2, a);
        wait(&format!("ethers and viem to deliver {events} events"), &|| {
            libraries.iter().all(|library| delivered(library) >= events)
        });
    };
    for i in 0..6u64 {
        let tx = a.send(ping(DEV[(i % 2) as usize], i));
        a.mined(tx);
    }
    settle(6);
    a.call("anvil_reorg", json!([3, [[ping(DEV[2], 100), 0], [ping(DEV[3], 101), 2]]]));
    for i in 0..3u64 {
        let tx = a.send(ping(DEV[1], 200 + i));
        a.mined(tx);
    }
    // The 6 first events, then the reorg's 2 and the 3 after it.
    settle(11);

    let (head, _) = a.head();
    let want: BTreeSet<(String, u64, String)> = ok(
        a.port,
        "eth_getLogs",
        json!([{"address": contract, "fromBlock": format!("{:#x}", start + 1), "toBlock": format!("{head:#x}")}]),
    )
    .as_array()
    .expect("logs")
    .iter()
    .map(key)
    .collect();
    assert_eq!(want.len(), 6 - 3 + 2 + 3, "the scripted events of the final chain");
    for (library, Killed(child)) in &mut clients {
        drop(child.stdin.take()); // the script prints what it received and exits
        let mut out = String::new();
        child.stdout.take().expect("stdout").read_to_string(&mut out).expect("reads");
        let status = child.wait().expect("waits");
        let log = std::fs::read_to_string(c.tmp.path().join(format!("{library}.log"))).unwrap_or_default();
        assert!(status.success(), "{library} exited {status}: {log}");
        let mut delivered = Delivered::default();
        for line in out.lines() {
            let e: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{library}: {line}: {e}"));
            let log = json!({"blockHash": e["blockHash"], "logIndex": format!("{:#x}", e["logIndex"].as_u64().unwrap_or(0)),
                             "transactionHash": e["transactionHash"], "removed": e["removed"]});
            delivered.take(&json!([log]));
        }
        assert!(!delivered.removed.is_empty(), "{library} was told of the reverted events: {out}\n{log}");
        assert_eq!(delivered.standing(), want, "{library}: every event of the final chain, once\n{log}");
    }
}

/// Two clients polling one filter at the same moment, one on each replica: what they receive is disjoint,
/// and together it is every log.
#[test]
fn two_clients_polling_one_filter_receive_disjoint_results() {
    let bed = SharedFilters::start(LOGGER_INIT);
    let (a, r1, r2) = (&bed.cluster.client, &bed.r1, &bed.r2);
    let logger = bed.contract.clone();
    let (start, _) = a.head();
    let id = ok(r1.rpc, "eth_newFilter", json!([{"address": logger}]));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let pollers: Vec<_> = [r1.rpc, r2.rpc]
        .into_iter()
        .map(|port| {
            let (id, stop) = (id.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut got = Vec::new();
                loop {
                    let done = stop.load(std::sync::atomic::Ordering::SeqCst);
                    let changes = ok(port, "eth_getFilterChanges", json!([id]));
                    got.extend(changes.as_array().expect("logs").iter().map(key));
                    if done {
                        return got;
                    }
                }
            })
        })
        .collect();
    for i in 0..30u64 {
        let tx = a.send(json!({"from": DEV[(i % 3) as usize], "to": logger, "data": format!("{i:#066x}"), "gas": "0x20000"}));
        a.mined(tx);
    }
    wait_same_head(r1, a);
    wait_same_head(r2, a);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let got: Vec<Vec<_>> = pollers.into_iter().map(|p| p.join().expect("poller")).collect();
    let (one, two): (BTreeSet<_>, BTreeSet<_>) =
        (got[0].iter().cloned().collect(), got[1].iter().cloned().collect());
    assert_eq!(one.len(), got[0].len(), "a client received a log twice");
    assert_eq!(two.len(), got[1].len(), "a client received a log twice");
    assert!(one.is_disjoint(&two), "both clients received {:?}", one.intersection(&two).collect::<Vec<_>>());
    // Which client gets which blocks is timing (under load one may win every race); that the two polled the
    // same cursor at once shows in the races the replicas counted.
    let raced = "ether_cattle_replica_filter_polls_total{outcome=\"raced\"}";
    assert!(metric(r1.health, raced) + metric(r2.health, raced) > 0, "no poll ever lost a race");
    let (head, _) = a.head();
    let want: BTreeSet<_> = ok(a.port, "eth_getLogs", json!([{"address": logger, "fromBlock": format!("{:#x}", start + 1), "toBlock": format!("{head:#x}")}]))
        .as_array().expect("logs").iter().map(key).collect();
    assert_eq!(one.union(&two).cloned().collect::<BTreeSet<_>>(), want);
}

/// A filter not polled for its timeout is gone: geth's "filter not found" (its 5 minutes shortened here).
#[test]
fn an_idle_filter_expires() {
    let c = Cluster::start(&[]);
    let r = replica(&c, "r", &["--filter-timeout-secs", "2"], &[]);
    wait_same_head(&r, &c.client);
    let id = ok(r.rpc, "eth_newBlockFilter", json!([]));
    for _ in 0..3 {
        // Each poll extends the filter's life.
        std::thread::sleep(Duration::from_millis(1200));
        ok(r.rpc, "eth_getFilterChanges", json!([id]));
    }
    std::thread::sleep(Duration::from_millis(3500));
    let answer = rpc_call(r.rpc, "eth_getFilterChanges", json!([id]));
    assert_eq!(answer["error"], json!({"code": -32000, "message": "filter not found"}), "{answer}");
}

/// Every filter method answers as geth does: ids of its shape, the same logs and hashes for the same blocks,
/// the same errors.
#[test]
fn filter_answers_equal_geths() {
    let c = Cluster::on(Upstream::geth_on_demand());
    let g = &c.client;
    let deploy = g.send(json!({"from": DEV[0], "data": LOGGER_INIT, "gas": "0x100000"}));
    let logger = g.mined(deploy)["contractAddress"].as_str().expect("a contract").to_string();
    let r = replica(&c, "r", &[], &[]);
    wait_same_head(&r, g);
    let both = |method: &str, params: Value| {
        (rpc_call(r.rpc, method, params.clone()), rpc_call(g.port, method, params))
    };
    let id_shape = |v: &Value| {
        let s = v["result"].as_str().unwrap_or_else(|| panic!("an id: {v}"));
        assert!(s.starts_with("0x") && s.len() <= 34 && s[2..].chars().all(|c| c.is_ascii_hexdigit()), "{s}");
        s.to_string()
    };
    let criteria = json!({"address": logger, "fromBlock": "latest"});
    let (ours, theirs) = both("eth_newFilter", json!([criteria]));
    let (log_ours, log_theirs) = (id_shape(&ours), id_shape(&theirs));
    let (ours, theirs) = both("eth_newBlockFilter", json!([]));
    let (block_ours, block_theirs) = (id_shape(&ours), id_shape(&theirs));
    let (ours, theirs) = both("eth_newPendingTransactionFilter", json!([]));
    let (pending_ours, pending_theirs) = (id_shape(&ours), id_shape(&theirs));
    // Nothing yet: empty arrays.
    for (o, t) in [(&log_ours, &log_theirs), (&block_ours, &block_theirs), (&pending_ours, &pending_theirs)] {
        assert_eq!(rpc_call(r.rpc, "eth_getFilterChanges", json!([o]))["result"], json!([]));
        assert_eq!(rpc_call(g.port, "eth_getFilterChanges", json!([t]))["result"], json!([]));
    }
    for i in 0..3u64 {
        let tx =
            g.send(json!({"from": DEV[1], "to": logger, "data": format!("{i:#066x}"), "gas": "0x20000"}));
        g.mined(tx);
    }
    wait_same_head(&r, g);
    let changes = |port: u16, id: &str| rpc_call(port, "eth_getFilterChanges", json!([id]));
    let (o, t) = (changes(r.rpc, &log_ours), changes(g.port, &log_theirs));
    assert_eq!(o["result"].as_array().map(Vec::len), Some(3), "{o}");
    assert_eq!(o, t, "log filter changes");
    let (o, t) = (changes(r.rpc, &block_ours), changes(g.port, &block_theirs));
    // (geth's on-demand mining now and then seals an empty block beside a transaction's: at least 3.)
    assert!(o["result"].as_array().is_some_and(|b| b.len() >= 3), "{o}");
    assert_eq!(o, t, "block filter changes");
    // A second poll: nothing new.
    assert_eq!(changes(r.rpc, &log_ours), changes(g.port, &log_theirs));
    // geth's pool saw the transactions; a replica has no pool: an empty list, the same shape.
    assert_eq!(changes(r.rpc, &pending_ours)["result"], json!([]));
    assert!(changes(g.port, &pending_theirs)["result"].is_array());
    let all = |port: u16, id: &str| rpc_call(port, "eth_getFilterLogs", json!([id]));
    assert_eq!(all(r.rpc, &log_ours), all(g.port, &log_theirs), "eth_getFilterLogs");
    // A block filter has no logs; an unknown id is not found; uninstalling answers whether there was one.
    assert_eq!(all(r.rpc, &block_ours)["error"], all(g.port, &block_theirs)["error"]);
    let unknown = "0x1234567890abcdef1234567890abcdef";
    for m in ["eth_getFilterChanges", "eth_getFilterLogs", "eth_uninstallFilter"] {
        let (o, t) = both(m, json!([unknown]));
        assert_eq!(o, t, "{m} of an unknown filter");
    }
    for (o, t) in [(&log_ours, &log_theirs), (&block_ours, &block_theirs), (&pending_ours, &pending_theirs)] {
        assert_eq!(
            rpc_call(r.rpc, "eth_uninstallFilter", json!([o])),
            rpc_call(g.port, "eth_uninstallFilter", json!([t]))
        );
        assert_eq!(
            rpc_call(r.rpc, "eth_uninstallFilter", json!([o])),
            rpc_call(g.port, "eth_uninstallFilter", json!([t]))
        );
        let (o, t) = (changes(r.rpc, o), changes(g.port, t));
        assert_eq!(o["error"], t["error"], "changes of an uninstalled filter");
    }
    // Criteria geth refuses, refused alike.
    for bad in [
        json!({"fromBlock": "0x5", "toBlock": "0x2"}),
        json!({"fromBlock": "pending"}),
        json!({"fromBlock": "latest", "toBlock": "0x2"}),
        json!({"fromBlock": "finalized"}),
        json!({"toBlock": "pending"}),
    ] {
        let (o, t) = both("eth_newFilter", json!([bad]));
        assert!(t.get("error").is_some(), "geth accepts {bad}: {t}");
        assert_eq!(o["error"], t["error"], "eth_newFilter {bad}");
    }
}
