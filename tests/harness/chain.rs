//! anvil as the execution client of the tests, and the helpers that script a chain on it and compare a
//! replica's state with anvil's, block by block.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use alloy_primitives::{Address, Bytes, B256, U256};
use ec_publisher::rpc::RpcClient;
use ec_store::Store;
use serde_json::{json, Value};

pub const DEV: [&str; 6] = [
    "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266",
    "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
    "0x3C44CdDdB6a900fa2b585dd299e03d12FA4293BC",
    "0x90F79bf6EB2c4f870365E785982E1f101E93b906",
    "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65",
    "0x9965507D1a55bcC2695C58ba16FB37d819B0A4dc",
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

pub fn genesis_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../config/genesis-local.json")
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// anvil on 127.0.0.1 from the project's genesis file; killed on drop.
pub struct Anvil {
    child: Child,
    pub port: u16,
    pub rt: tokio::runtime::Runtime,
    pub rpc: RpcClient,
}

impl Anvil {
    pub fn start(extra: &[&str]) -> Anvil {
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
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let rpc =
            RpcClient::new(&format!("http://127.0.0.1:{port}"), Duration::from_secs(300)).expect("client");
        let anvil = Anvil { child, port, rt, rpc };
        let deadline = Instant::now() + Duration::from_secs(20);
        while anvil.rt.block_on(anvil.rpc.block_number()).is_err() {
            assert!(Instant::now() < deadline, "anvil did not answer in 20s");
            std::thread::sleep(Duration::from_millis(50));
        }
        anvil
    }

    pub fn http_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://127.0.0.1:{}", self.port)
    }

    pub fn call(&self, method: &'static str, params: Value) -> Value {
        self.rt
            .block_on(self.rpc.call::<Value>(method, params.clone()))
            .unwrap_or_else(|e| panic!("{method} {params}: {e}"))
    }

    pub fn head(&self) -> (u64, B256) {
        self.rt
            .block_on(self.rpc.block_hash(ec_publisher::rpc::BlockId::Latest))
            .expect("head")
            .expect("a head")
    }

    pub fn hash_at(&self, n: u64) -> Option<B256> {
        self.rt
            .block_on(self.rpc.block_hash(ec_publisher::rpc::BlockId::Number(n)))
            .expect("block")
            .map(|b| b.1)
    }

    /// Sends a transaction from an unlocked dev account; returns its hash.
    pub fn send(&self, tx: Value) -> B256 {
        serde_json::from_value(self.call("eth_sendTransaction", json!([tx]))).expect("tx hash")
    }

    pub fn receipt(&self, hash: B256) -> Value {
        self.call("eth_getTransactionReceipt", json!([hash]))
    }

    pub fn mine(&self) {
        self.call("evm_mine", json!([]));
    }
}

impl Drop for Anvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
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

/// Asserts that the replica database at `dir` holds anvil's canonical chain for every block up to `head`,
/// and for every block the same balance, nonce, code and storage of every touched account and slot.
/// Returns how many values were compared.
pub fn assert_replica_equals_anvil(
    anvil: &Anvil,
    dir: &Path,
    head: u64,
    touched: &BTreeMap<Address, BTreeSet<B256>>,
) -> usize {
    let store = Store::open_read_only(dir).expect("replica database");
    let mut compared = 0;
    for n in 0..=head {
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
