//! The pieces the publisher and RPC tests script their chains with: a storage contract, its calldata,
//! receipts read once mined, signed EIP-7702 authorizations, and the scripted chain ([`run_script`]) the
//! publisher and trace tests replay.

use alloy_primitives::{hex, keccak256, Address, B256, U256};
use serde_json::{json, Value};

use super::chain::*;

/// Storage contract runtime: 1-byte calldata self-destructs to the caller; empty calldata reverts; otherwise
/// `SSTORE(calldata[0..32], calldata[32..64])` and `LOG1(topic = slot, data = value)`.
pub const RUNTIME: &str = "368015602057600114602557602035806000526000358091905560206000a1005b600080fd5b33ff";
/// Constructor: slot 1 = 0x11, slot 2 = 0x22, then returns RUNTIME.
pub const INIT_PREFIX: &str = "601160015560226002556028601660003960286000f3";
/// anvil's dev account 5 (mnemonic "test test ... junk"), the EIP-7702 authority.
pub const KEY_5: &str = "8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba";

pub fn word(v: u64) -> String {
    format!("{:064x}", v)
}

pub fn call_data(slot: u64, value: u64) -> String {
    format!("0x{}{}", word(slot), word(value))
}

/// The receipt, once the transaction is mined (anvil answers eth_sendTransaction before it mines).
pub fn mined(anvil: &Upstream, tx: B256) -> Value {
    anvil.mined(tx)
}

pub fn contract_address(anvil: &Upstream, tx: B256) -> Address {
    let r = mined(anvil, tx);
    serde_json::from_value(r["contractAddress"].clone()).expect("contract address")
}

pub fn status(anvil: &Upstream, tx: B256) -> u64 {
    let r = mined(anvil, tx);
    u64::from_str_radix(r["status"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap_or(9)
}

/// Signs an EIP-7702 authorization with a raw key.
pub fn sign_authorization(key_hex: &str, chain_id: u64, delegate: Address, nonce: u64) -> (Value, Address) {
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

/// A contract whose every call reverts with a custom error: `Failed(uint256 42)`, selector 0xdeadbeef
/// (constructor: copy the 46-byte runtime and return it).
pub const CUSTOM_ERROR: &str = concat!(
    "602e600c600039602e6000f3",
    "7fdeadbeef00000000000000000000000000000000000000000000000000000000",
    "600052602a60045260246000fd"
);

/// A constructor that writes a slot and self-destructs: created and destroyed in one transaction.
pub const CREATE_AND_DESTROY: &str = "600760035533ff";

pub fn addr(s: &str) -> Address {
    s.parse().expect("address")
}

/// The scripted chain: every transaction type the client takes, contract creation, storage writes,
/// overwrites and writes to zero, logs, a revert, a self-destruct, a create-and-destroy in one transaction, an
/// EIP-7702 delegation, and a block of 500 transactions. Returns the accounts and slots the script touched
/// (compared whatever the traces said).
pub fn run_script(a: &Upstream) -> std::collections::BTreeMap<Address, Vec<u64>> {
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
    // An EIP-6780 survivor touched again right after (on geth, usually in the same block): it keeps its code
    // and storage.
    a.send(json!({"from": d1, "to": contract, "data": call_data(11, 0x77), "gas": "0x20000"}));
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
        let raw = a.sign_batch((0..500u64).map(transfer).collect());
        *a.send_raw_batch(&raw).last().expect("500 hashes")
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
    touched.insert(contract, vec![1u64, 2, 5, 7, 9, 11]);
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

/// A fork time `secs` seconds from now (unix seconds), for [`Upstream::geth_cancun_then_prague`].
pub fn prague_in(secs: u64) -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs() + secs
}

/// On a chain that turns Prague at `prague`: blocks on Cancun's rules first (a creation, a call that
/// reverts with a custom error, calls failing on a stack underflow and on INVALID), then, once Prague is active, the scripted chain ([`run_script`]); what it
/// returns.
pub fn run_cancun_then_script(a: &Upstream, prague: u64) -> std::collections::BTreeMap<Address, Vec<u64>> {
    let deploy = a.send(json!({"from": DEV[3], "data": format!("0x{CUSTOM_ERROR}")}));
    let failing = contract_address(a, deploy);
    let call = a.send(json!({"from": DEV[3], "to": failing, "data": "0x01", "gas": "0x20000"}));
    let receipt = mined(a, call);
    assert_eq!(receipt["status"], "0x0", "the call reverts");
    let time_of = |block: Value| {
        let b = a.call("eth_getBlockByNumber", json!([block, false]));
        u64::from_str_radix(b["timestamp"].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
            .unwrap_or(0)
    };
    // Steps that fail: before they run (ADD on an empty stack, a stack underflow) and while they run
    // (INVALID), which geth's struct logger shows differently.
    for runtime in ["01", "fe"] {
        let deploy = a.send(json!({"from": DEV[3], "data": format!("0x6001600c60003960016000f3{runtime}")}));
        let failing = contract_address(a, deploy);
        let call = a.send(json!({"from": DEV[3], "to": failing, "gas": "0x20000"}));
        assert_eq!(mined(a, call)["status"], "0x0", "the call to {runtime} fails");
    }
    let time = time_of(receipt["blockNumber"].clone());
    assert!(time < prague, "the revert must land before Prague (block time {time}, Prague at {prague})");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while time_of(json!("latest")) < prague {
        assert!(std::time::Instant::now() < deadline, "the chain did not reach Prague");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    run_script(a)
}
