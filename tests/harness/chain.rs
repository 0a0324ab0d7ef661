//! The execution clients the tests follow (anvil, and geth through `ec_testkit::Geth`), and the helpers that
//! script a chain on them and compare a replica's state with the client's, block by block.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{hex, Address, Bytes, B256, U256};
use ec_publisher::rpc::RpcClient;
use ec_store::{Reads, Store};
use ec_testkit::Geth;
use serde_json::{json, Value};

/// The well-known dev accounts of the "test test ... junk" mnemonic: anvil's unlocked accounts, and the
/// accounts the tests fund on geth.
pub const DEV: [&str; 6] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
];

/// Their private keys (public test keys: never hold value with them).
pub const DEV_KEYS: [&str; 6] = [
    "ac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
];

pub fn anvil_binary() -> PathBuf {
    if let Some(p) = std::env::var_os("ANVIL_BIN") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let p = home.join(".cache/anvil/node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    assert!(p.is_file(), "anvil not found at {} (run scripts/setup.sh or set ANVIL_BIN)", p.display());
    p
}

/// The project's local chain (anvil's `--init`).
pub fn genesis_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/genesis-local.json")
}

/// A free port for a server the test starts next (outside the ephemeral range: `ec_testkit::free_port`).
pub fn free_port() -> u16 {
    ec_testkit::free_port().expect("free port")
}

enum Process {
    Anvil(Child),
    Geth(Box<Geth>),
}

/// An execution client on 127.0.0.1, killed on drop: anvil from the project's genesis file, or `geth --dev`.
pub struct Upstream {
    process: Process,
    pub port: u16,
    pub chain_id: u64,
    genesis: PathBuf,
    pub rt: tokio::runtime::Runtime,
    pub rpc: RpcClient,
}

impl Upstream {
    /// anvil with `extra` flags (automine unless told otherwise).
    ///
    /// The port is free when picked but may be taken before anvil binds it (tests run in parallel and start
    /// servers of their own): anvil then exits at once, while whatever took the port may answer in its place.
    /// So anvil must still be running once the port answers; otherwise it is started again on another port.
    pub fn anvil(extra: &[&str]) -> Upstream {
        for _attempt in 0..5 {
            let port = free_port();
            let child = Command::new(anvil_binary())
                .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--chain-id", "31337", "--silent"])
                .arg("--init")
                .arg(genesis_file())
                .args(extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("anvil starts");
            let mut up = Upstream::connect(Process::Anvil(child), port, 31337, genesis_file());
            std::thread::sleep(Duration::from_millis(200));
            if let Process::Anvil(c) = &mut up.process {
                if c.try_wait().ok().flatten().is_none() {
                    return up;
                }
            }
        }
        panic!("anvil exited right after start five times (its port taken each time?)");
    }

    /// `geth --dev`, a block a second, with the dev accounts funded (transactions signed here).
    pub fn geth() -> Upstream {
        let geth = Geth::dev(&DEV, 1).unwrap_or_else(|e| panic!("geth --dev must start: {e}"));
        let (port, chain_id, genesis) = (geth.http_port(), geth.chain_id(), geth.dev_genesis_path());
        Upstream::connect(Process::Geth(Box::new(geth)), port, chain_id, genesis)
    }

    /// `geth --dev`, a block a second, on Cancun's rules until `prague_time` (unix seconds) and Prague's
    /// after it.
    pub fn geth_cancun_then_prague(prague_time: u64) -> Upstream {
        let geth = Geth::dev_prague_at(&DEV, 1, prague_time)
            .unwrap_or_else(|e| panic!("geth --dev must start: {e}"));
        let (port, chain_id, genesis) = (geth.http_port(), geth.chain_id(), geth.dev_genesis_path());
        Upstream::connect(Process::Geth(Box::new(geth)), port, chain_id, genesis)
    }

    /// `geth --dev` on demand: a block per transaction, none in between, so the chain holds still between
    /// a test's transactions.
    pub fn geth_on_demand() -> Upstream {
        let geth = Geth::dev(&DEV, 0).unwrap_or_else(|e| panic!("geth --dev must start: {e}"));
        let (port, chain_id, genesis) = (geth.http_port(), geth.chain_id(), geth.dev_genesis_path());
        Upstream::connect(Process::Geth(Box::new(geth)), port, chain_id, genesis)
    }

    fn connect(process: Process, port: u16, chain_id: u64, genesis: PathBuf) -> Upstream {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let rpc =
            RpcClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(300)).expect("client");
        let up = Upstream { process, port, chain_id, genesis, rt, rpc };
        let deadline = Instant::now() + Duration::from_secs(20);
        while up.rt.block_on(up.rpc.block_number()).is_err() {
            assert!(Instant::now() < deadline, "the execution client did not answer in 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
        up
    }

    /// The geth process (to stop, dump and restart it); panics on anvil.
    pub fn geth_mut(&mut self) -> &mut Geth {
        match &mut self.process {
            Process::Geth(g) => g,
            Process::Anvil(_) => panic!("not geth"),
        }
    }

    pub fn is_geth(&self) -> bool {
        matches!(self.process, Process::Geth(_))
    }

    /// The genesis file of its chain (for the publisher's `--genesis`).
    pub fn genesis(&self) -> &Path {
        &self.genesis
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        match &self.process {
            Process::Anvil(_) => format!("ws://127.0.0.1:{}", self.port),
            Process::Geth(g) => g.ws_url(),
        }
    }

    pub fn call(&self, method: &'static str, params: Value) -> Value {
        self.rt.block_on(self.rpc.call::<Value>(method, params.clone())).unwrap_or_else(|e| {
            self.exited_panics();
            panic!("{method} {params}: {}", error_chain(&e))
        })
    }

    /// A read, asked again while the client cannot be reached (for 20 s at most). Under load a client's
    /// connection is now and then reset or refused for a moment (seen in CI with anvil beside four
    /// publishers); a read is safe to repeat, a send is not, so only reads go through here.
    fn read<T>(
        &self,
        what: &str,
        ask: impl Fn() -> Result<T, ec_publisher::rpc::RpcError>,
    ) -> Result<T, ec_publisher::rpc::RpcError> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match ask() {
                Err(e) if e.is_unreachable() && Instant::now() < deadline => {
                    eprintln!("{what}: {} (asking again)", error_chain(&e));
                    std::thread::sleep(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    pub fn head(&self) -> (u64, B256) {
        self.read("head", || self.rt.block_on(self.rpc.block_hash(ec_publisher::rpc::BlockId::Latest)))
            .unwrap_or_else(|e| panic!("head: {}", error_chain(&e)))
            .expect("a head")
    }

    pub fn hash_at(&self, n: u64) -> Option<B256> {
        self.read("block hash", || {
            self.rt.block_on(self.rpc.block_hash(ec_publisher::rpc::BlockId::Number(n)))
        })
        .unwrap_or_else(|e| panic!("block {n}: {}", error_chain(&e)))
        .map(|b| b.1)
    }

    /// Sends a transaction from a dev account; returns its hash. It is completed (nonce, gas, fees) and
    /// signed here with the account's key, for anvil as for geth, so its hash is known before it is sent and
    /// a send that met a reset connection can be made again without sending twice ([`Upstream::send_raw`]).
    pub fn send(&self, tx: Value) -> B256 {
        let (raw, hash) = self.signed(tx, None, None);
        self.send_raw(&raw, hash)
    }

    /// Sends a signed transaction whose hash is `hash`, asked again while the client cannot be reached (20 s
    /// at most; seen in CI: anvil resetting a connection under load). A repeat cannot send twice: the
    /// transaction is the same, so the client answers "already known" or "nonce too low" once the first one
    /// got through, and the transaction is then looked up by its hash.
    pub fn send_raw(&self, raw: &str, hash: B256) -> B256 {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut repeated = false;
        loop {
            let sent = self.rt.block_on(self.rpc.call::<B256>("eth_sendRawTransaction", json!([raw])));
            match sent {
                Ok(h) => return h,
                Err(e) if e.is_unreachable() && Instant::now() < deadline => {
                    eprintln!("eth_sendRawTransaction {hash}: {} (sending again)", error_chain(&e));
                    self.exited_panics();
                    repeated = true;
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) if repeated && self.knows(hash) => {
                    eprintln!("eth_sendRawTransaction {hash}: {e} (the first send got through)");
                    return hash;
                }
                Err(e) => {
                    self.exited_panics();
                    panic!("eth_sendRawTransaction {hash}: {}", error_chain(&e))
                }
            }
        }
    }

    /// Whether the client has the transaction, pending or mined.
    fn knows(&self, hash: B256) -> bool {
        let ask = || self.rt.block_on(self.rpc.call::<Value>("eth_getTransactionByHash", json!([hash])));
        self.read("eth_getTransactionByHash", ask).map(|t| !t.is_null()).unwrap_or(false)
    }

    /// Panics, naming its exit status, when anvil has exited (a failed call then says why at once).
    fn exited_panics(&self) {
        if let Process::Anvil(child) = &self.process {
            // `try_wait` needs `&mut`; /proc says as much without reaping.
            let alive = Path::new(&format!("/proc/{}", child.id())).exists()
                && !std::fs::read_to_string(format!("/proc/{}/stat", child.id()))
                    .is_ok_and(|s| s.split_whitespace().nth(2) == Some("Z"));
            assert!(alive, "anvil (pid {}) has exited", child.id());
        }
    }

    /// Sends a blob transaction (type 3) from a dev account to `to` carrying `blobs` all-zero blobs (geth
    /// only; signed here). An all-zero blob's KZG commitment and every cell proof are the point at
    /// infinity, so no KZG library is needed to make a sidecar geth accepts (EIP-7594 cell proofs, as Osaka
    /// requires). Returns the transaction hash.
    pub fn send_zero_blobs(&self, from: &str, to: &str, blobs: usize) -> B256 {
        let (raw, hash) = self.sign_zero_blobs(from, to, blobs, None);
        self.send_raw(&raw, hash)
    }

    /// The blob transaction of [`Upstream::send_zero_blobs`], signed (network form, with its sidecar), not
    /// sent: the raw transaction and its hash. `nonce` overrides the sender's pending nonce.
    pub fn sign_zero_blobs(&self, from: &str, to: &str, blobs: usize, nonce: Option<u64>) -> (String, B256) {
        use alloy_eips::{eip4844, eip7594};
        let mut infinity = [0u8; 48];
        infinity[0] = 0xc0;
        let commitment = alloy_primitives::FixedBytes::<48>::from(infinity);
        let sidecar = eip7594::BlobTransactionSidecarEip7594 {
            blobs: vec![eip4844::Blob::ZERO; blobs],
            commitments: vec![commitment; blobs],
            cell_proofs: vec![commitment; blobs * eip7594::CELLS_PER_EXT_BLOB],
        };
        let hashes = vec![eip4844::kzg_to_versioned_hash(infinity.as_slice()); blobs];
        let tx = json!({"from": from, "to": to, "value": "0x0", "gas": "0x5208",
                        "maxFeePerGas": "0x174876e800", "maxPriorityFeePerGas": "0x3b9aca00",
                        "maxFeePerBlobGas": "0x3b9aca00", "blobVersionedHashes": hashes});
        self.signed(tx, nonce, Some(eip7594::BlobTransactionSidecarVariant::Eip7594(sidecar)))
    }

    /// Signs `tx` (JSON in `eth_sendTransaction`'s shape) with its sender's dev key: the raw transaction.
    /// `nonce` overrides the sender's pending nonce (for several transactions sent at once).
    pub fn sign(&self, tx: Value, nonce: Option<u64>) -> String {
        self.signed(tx, nonce, None).0
    }

    /// Signs `tx` with its sender's dev key, with a blob sidecar if given: the raw transaction (network
    /// form) and its hash.
    fn signed(
        &self,
        mut tx: Value,
        nonce: Option<u64>,
        sidecar: Option<alloy_eips::eip7594::BlobTransactionSidecarVariant>,
    ) -> (String, B256) {
        use alloy_consensus::SignableTransaction;
        use k256::ecdsa::SigningKey;
        let from: Address = serde_json::from_value(tx["from"].clone()).expect("a from address");
        let key = DEV
            .iter()
            .position(|d| d.parse::<Address>().ok() == Some(from))
            .map(|i| DEV_KEYS[i])
            .unwrap_or_else(|| panic!("{from} is not a dev account"));
        let nonce = match nonce {
            Some(n) => n,
            None => {
                let n = self.call("eth_getTransactionCount", json!([from, "pending"]));
                u64::from_str_radix(n.as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).expect("nonce")
            }
        };
        tx["nonce"] = json!(format!("{nonce:#x}"));
        tx["chainId"] = json!(format!("{:#x}", self.chain_id));
        if tx.get("gasPrice").is_none() && tx.get("maxFeePerGas").is_none() {
            tx["maxFeePerGas"] = json!("0x174876e800"); // 100 gwei
            tx["maxPriorityFeePerGas"] = json!("0x3b9aca00"); // 1 gwei
        } else if tx.get("maxFeePerGas").is_some() && tx.get("maxPriorityFeePerGas").is_none() {
            tx["maxPriorityFeePerGas"] = json!("0x1");
        }
        if tx.get("gas").is_none() {
            let mut estimate = tx.clone();
            estimate.as_object_mut().map(|o| o.remove("nonce"));
            tx["gas"] = self.call("eth_estimateGas", json!([estimate]));
        }
        let mut request: alloy_rpc_types_eth::TransactionRequest =
            serde_json::from_value(tx.clone()).unwrap_or_else(|e| panic!("transaction {tx}: {e}"));
        request.sidecar = sidecar;
        // No `to`: a contract creation.
        request.to.get_or_insert(alloy_primitives::TxKind::Create);
        let unsigned = request.build_typed_tx().unwrap_or_else(|r| panic!("incomplete transaction {r:?}"));
        let signer = SigningKey::from_slice(&hex::decode(key).expect("hex")).expect("key");
        let (sig, recid) =
            signer.sign_prehash_recoverable(unsigned.signature_hash().as_slice()).expect("signs");
        let bytes = sig.to_bytes();
        let signature = alloy_primitives::Signature::new(
            U256::from_be_slice(&bytes[..32]),
            U256::from_be_slice(&bytes[32..]),
            recid.is_y_odd(),
        );
        let envelope = alloy_consensus::TxEnvelope::from(unsigned.into_signed(signature));
        (format!("0x{}", hex::encode(envelope.encoded_2718())), *envelope.tx_hash())
    }

    /// The receipt, or null while there is none. (A freshly started geth answers "transaction indexing is
    /// in progress" for a while: that is "none yet" too.)
    pub fn receipt(&self, hash: B256) -> Value {
        let params = json!([hash]);
        let ask = || self.rt.block_on(self.rpc.call::<Value>("eth_getTransactionReceipt", params.clone()));
        match self.read("eth_getTransactionReceipt", ask) {
            Ok(r) => r,
            Err(e) if e.to_string().contains("indexing is in progress") => Value::Null,
            Err(e) => panic!("eth_getTransactionReceipt {hash}: {}", error_chain(&e)),
        }
    }

    /// Mines a block now (anvil only: geth --dev mines on its own clock).
    /// Waits (30 s at most) for `tx`'s receipt.
    pub fn mined(&self, tx: B256) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let r = self.receipt(tx);
            if !r.is_null() {
                return r;
            }
            assert!(Instant::now() < deadline, "{tx} not mined in 30s");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// geth only: `txs` (each with its `gas`) signed, sent in one JSON-RPC batch right after a block is
    /// sealed, and mined; asserts they landed in one block and returns their hashes and that block's number.
    pub fn send_in_one_block(&self, txs: Vec<Value>) -> (Vec<B256>, u64) {
        assert!(self.is_geth(), "anvil mines each transaction at once");
        let raw = self.sign_batch(txs);
        // Right after a block: the whole period to take the batch in.
        let (start, _) = self.head();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.head().0 == start {
            assert!(Instant::now() < deadline, "geth sealed no block in 10 s");
            std::thread::sleep(Duration::from_millis(5));
        }
        let hashes = self.send_raw_batch(&raw);
        let blocks: BTreeSet<u64> =
            hashes.iter().map(|h| super::quantity(&self.mined(*h)["blockNumber"])).collect();
        assert_eq!(blocks.len(), 1, "the batch must land in one block, it landed in {blocks:?}");
        (hashes, blocks.into_iter().next().unwrap_or_default())
    }

    /// `txs` signed in order, each sender's nonces following its pending one. Each needs its `gas`: an estimate
    /// cannot see the batch's earlier transactions.
    pub fn sign_batch(&self, txs: Vec<Value>) -> Vec<String> {
        let mut nonces: BTreeMap<String, u64> = BTreeMap::new();
        txs.into_iter()
            .map(|tx| {
                assert!(tx.get("gas").is_some(), "a gas limit: {tx}");
                let from = tx["from"].as_str().expect("from").to_lowercase();
                let nonce = *nonces.entry(from.clone()).or_insert_with(|| {
                    super::quantity(&self.call("eth_getTransactionCount", json!([from, "pending"])))
                });
                nonces.insert(from, nonce + 1);
                self.sign(tx, Some(nonce))
            })
            .collect()
    }

    /// Raw transactions sent in one JSON-RPC batch (one request: they reach the pool together); their hashes.
    pub fn send_raw_batch(&self, raw: &[String]) -> Vec<B256> {
        let batch: Vec<Value> = raw
            .iter()
            .enumerate()
            .map(|(i, r)| json!({"jsonrpc": "2.0", "id": i, "method": "eth_sendRawTransaction", "params": [r]}))
            .collect();
        let answers = super::http_post_json(self.port, &Value::Array(batch)).expect("the batch is answered");
        answers
            .as_array()
            .expect("a batch answer")
            .iter()
            .map(|r| serde_json::from_value(r["result"].clone()).unwrap_or_else(|_| panic!("sent: {r}")))
            .collect()
    }

    /// `n` mined transfers from `from` to addresses `base..base + n`.
    pub fn transfers(&self, from: &str, base: u64, n: u64) {
        for i in 0..n {
            let tx = self.send(json!({"from": from, "to": format!("0x{:040x}", base + i), "value": "0x3"}));
            self.mined(tx);
        }
    }

    pub fn mine(&self) {
        assert!(!self.is_geth(), "geth --dev mines on its own clock");
        self.call("evm_mine", json!([]));
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        if let Process::Anvil(child) = &mut self.process {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// An error with every cause under it ("error sending request" alone does not say refused or reset).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Every account and slot any block record of the log touched.
pub fn touched(records: &[ec_log::Assembled]) -> BTreeMap<Address, BTreeSet<B256>> {
    let mut out: BTreeMap<Address, BTreeSet<B256>> = BTreeMap::new();
    for r in records {
        let state = match &r.record {
            ec_log::Record::Block(b) => &b.state,
            ec_log::Record::Genesis(g) => &g.block.state,
            _ => continue,
        };
        for c in state {
            out.entry(c.address).or_default().extend(c.storage.iter().map(|s| s.slot));
        }
    }
    out
}

/// Asserts that the replica database at `dir` holds the client's canonical chain for every block up to
/// `head`, and for every block the same balance, nonce, code and storage of every touched account and slot.
/// Returns how many values were compared.
pub fn assert_replica_equals_upstream(
    anvil: &Upstream,
    dir: &Path,
    head: u64,
    touched: &BTreeMap<Address, BTreeSet<B256>>,
) -> usize {
    assert_replica_equals_upstream_from(anvil, dir, 0, head, touched)
}

/// [`assert_replica_equals_upstream`] for the blocks `first..=head` (a cluster started at a checkpoint).
pub fn assert_replica_equals_upstream_from(
    anvil: &Upstream,
    dir: &Path,
    first: u64,
    head: u64,
    touched: &BTreeMap<Address, BTreeSet<B256>>,
) -> usize {
    let store = Store::open_read_only(dir).expect("replica database");
    let mut compared = 0;
    for n in first..=head {
        assert_eq!(store.canonical_hash(n).expect("reads"), anvil.hash_at(n), "canonical block {n}");
        for (address, slots) in touched {
            let ours = store.account_at(address, n).expect("reads");
            let (balance, nonce, code) = match &ours {
                Some(a) => (a.balance, a.nonce, store.code(&a.code_hash).expect("reads").unwrap_or_default()),
                None => (U256::ZERO, 0, Bytes::new()),
            };
            let rt = &anvil.rt;
            let rpc = &anvil.rpc;
            assert_eq!(
                balance,
                rt.block_on(rpc.balance(*address, n)).expect("balance"),
                "{address} balance at {n}"
            );
            assert_eq!(nonce, rt.block_on(rpc.nonce(*address, n)).expect("nonce"), "{address} nonce at {n}");
            assert_eq!(code, rt.block_on(rpc.code(*address, n)).expect("code"), "{address} code at {n}");
            for slot in slots {
                let theirs = rt.block_on(rpc.storage(*address, *slot, n)).expect("storage");
                assert_eq!(
                    store.storage_at(address, slot, n).expect("reads"),
                    theirs,
                    "{address} slot {slot} at {n}"
                );
            }
            compared += 3 + slots.len();
        }
    }
    compared
}
