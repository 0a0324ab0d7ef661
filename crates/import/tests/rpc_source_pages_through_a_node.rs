//! The RPC source against a mock node that answers like geth: small pages, `next` in base64, storage keyed
//! by hashed slot, the root without `0x`. The import must reach the reference root.

mod common;

use std::{net::SocketAddr, sync::Arc};

use alloy_primitives::{hex, keccak256, B256};
use axum::{extract::State, routing::post, Json, Router};
use base64::Engine;
use common::*;
use ec_import::{import, ImportError, Source};
use serde_json::{json, Value};

const BLOCK: u64 = 100;
const NEXT_HASH: B256 = B256::repeat_byte(0x77);

struct Node {
    state: Vec<Account>,
    /// Serve this account's storage without its last slot, as a node serving another state would.
    drop_a_slot_of: Option<B256>,
}

fn hex_start(v: &Value) -> Vec<u8> {
    hex::decode(v.as_str().unwrap_or("0x")).unwrap_or_default()
}

async fn rpc(State(node): State<Arc<Node>>, Json(req): Json<Value>) -> Json<Value> {
    let params = req["params"].clone();
    let result = match req["method"].as_str().unwrap_or("") {
        "eth_getBlockByNumber" if params[0] == json!(format!("{:#x}", BLOCK + 1)) => {
            json!({ "hash": NEXT_HASH })
        }
        "eth_getBlockByNumber" => Value::Null,
        "debug_accountRange" => {
            assert_eq!(params[0], json!(format!("{BLOCK:#x}")));
            assert_eq!(
                (params[3].clone(), params[4].clone(), params[5].clone()),
                (json!(false), json!(true), json!(true))
            );
            let start = hex_start(&params[1]);
            let mut sorted: Vec<&Account> = node.state.iter().collect();
            sorted.sort_by_key(|a| keccak256(a.address));
            let rest: Vec<&Account> =
                sorted.into_iter().filter(|a| keccak256(a.address).as_slice() >= start.as_slice()).collect();
            let page = 2;
            let mut accounts = serde_json::Map::new();
            for a in rest.iter().take(page) {
                let mut entry = json!({
                    "balance": a.balance.to_string(),
                    "nonce": a.nonce,
                    "root": a.storage_root(),
                    "codeHash": a.code_hash(),
                    "address": a.address,
                    "key": keccak256(a.address),
                });
                if let Some(code) = &a.code {
                    entry["code"] = json!(code);
                }
                accounts.insert(a.address.to_checksum(None), entry);
            }
            let mut out = json!({ "root": hex::encode(reference_root(&node.state)), "accounts": accounts });
            if let Some(next) = rest.get(page) {
                out["next"] =
                    json!(base64::engine::general_purpose::STANDARD.encode(keccak256(next.address)));
            }
            out
        }
        "debug_storageRangeAt" => {
            assert_eq!((params[0].clone(), params[1].clone()), (json!(NEXT_HASH), json!(0)));
            let address: alloy_primitives::Address =
                serde_json::from_value(params[2].clone()).expect("address");
            let start = hex_start(&params[3]);
            let account = node.state.iter().find(|a| a.address == address).expect("known account");
            let mut slots: Vec<(B256, B256, B256)> = account
                .storage
                .iter()
                .filter(|(_, v)| !v.is_zero())
                .map(|(k, v)| (keccak256(k), *k, *v))
                .collect();
            slots.sort();
            if node.drop_a_slot_of == Some(keccak256(address)) {
                slots.pop();
            }
            let rest: Vec<_> =
                slots.into_iter().filter(|(h, _, _)| h.as_slice() >= start.as_slice()).collect();
            let page = 3;
            let mut storage = serde_json::Map::new();
            for (hashed, key, value) in rest.iter().take(page) {
                storage.insert(hashed.to_string(), json!({ "key": key, "value": value }));
            }
            json!({ "storage": storage, "nextKey": rest.get(page).map(|(h, _, _)| *h) })
        }
        other => panic!("unexpected method {other}"),
    };
    Json(json!({ "jsonrpc": "2.0", "id": req["id"], "result": result }))
}

/// Serves `node` on a runtime of its own; the import runs on the test's thread, as the CLI would run it.
fn serve(node: Node) -> (tokio::runtime::Runtime, SocketAddr) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let listener = runtime.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new().route("/", post(rpc)).with_state(Arc::new(node));
    runtime.spawn(async move { axum::serve(listener, app).await });
    (runtime, addr)
}

#[test]
fn the_rpc_source_reaches_the_reference_root() {
    let state = random_state(9, 8, 5);
    let expected = reference_root(&state);
    let (_runtime, addr) = serve(Node { state, drop_a_slot_of: None });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir.path().join("db"));
    let summary = import(Source::Rpc { url: format!("http://{addr}/"), block: BLOCK }, &store, dir.path())
        .expect("import");
    assert_eq!(summary.state_root, expected);
    assert_eq!(summary.declared_root, Some(expected));
    assert_eq!(summary.accounts, 9);
    assert!(summary.slots > 3, "storage spans several pages: {}", summary.slots);
}

#[test]
fn storage_that_does_not_match_the_account_root_names_the_account() {
    let state = random_state(9, 8, 5);
    let victim =
        state.iter().find(|a| a.storage.values().filter(|v| !v.is_zero()).count() > 1).expect("contract");
    let (victim_address, victim_hash) = (victim.address, keccak256(victim.address));
    let (_runtime, addr) = serve(Node { state: state.clone(), drop_a_slot_of: Some(victim_hash) });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir.path().join("db"));
    let result = import(Source::Rpc { url: format!("http://{addr}/"), block: BLOCK }, &store, dir.path());
    match result {
        Err(ImportError::BadAccount { account, reason }) => {
            assert_eq!(account, victim_address.to_checksum(None));
            assert!(reason.contains("storage root"), "{reason}");
        }
        other => panic!("expected a storage root mismatch, got {other:?}"),
    }
}

#[test]
fn a_block_without_a_successor_is_refused() {
    let (_runtime, addr) = serve(Node { state: tiny_state(), drop_a_slot_of: None });
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir.path().join("db"));
    let result = import(Source::Rpc { url: format!("http://{addr}/"), block: BLOCK + 5 }, &store, dir.path());
    assert!(matches!(result, Err(ImportError::Rpc { method: "eth_getBlockByNumber", .. })), "{result:?}");
}
