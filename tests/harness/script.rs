//! The pieces the publisher and RPC tests script their chains with: a storage contract, its calldata,
//! receipts read once mined, and signed EIP-7702 authorizations.

use alloy_primitives::{hex, keccak256, Address, B256, U256};
use serde_json::Value;

use super::chain::Upstream;

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
