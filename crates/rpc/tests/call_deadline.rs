//! The call timeout stops the EVM itself: a call that would loop for minutes returns the timeout error, and
//! its thread is free again, within the deadline (plus a scheduling margin). And an estimate of a call that
//! never succeeds answers geth's error, with the bound EIP-7825 sets from Osaka.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy_consensus::Header;
use alloy_primitives::{address, bytes, keccak256, Address, U256};
use ec_chainspec::ChainSpec;
use ec_log::{AccountChange, AccountState, Assembled, Block, Envelope, Genesis, Record, FORMAT_VERSION};
use ec_rpc::evm::{self, CallEnv, CallRequest, EstimateError, Overrides};
use ec_store::{Store, StoreOptions};

/// JUMPDEST; PUSH1 0; JUMP: loops until the gas runs out (12 gas a turn).
const LOOP: Address = address!("000000000000000000000000000000000000c0de");

/// The genesis header the store below holds.
fn genesis_header() -> Header {
    Header { gas_limit: 30_000_000, base_fee_per_gas: Some(1), ..Default::default() }
}

fn store_with_a_looping_contract(dir: &tempfile::TempDir) -> Store {
    let header = alloy_rlp::encode(genesis_header());
    let spec = ChainSpec::dev(1337);
    let block = Block {
        number: 0,
        hash: keccak256(&header),
        parent_hash: Default::default(),
        timestamp: 0,
        header: header.into(),
        transactions: vec![],
        receipts: vec![],
        withdrawals: Some(vec![]),
        state: vec![AccountChange {
            address: LOOP,
            storage_wiped: false,
            prior: None,
            account: Some(AccountState { balance: U256::ZERO, nonce: 1, code: Some(bytes!("5b600056")) }),
            storage: vec![],
        }],
        receipt_roots: Vec::new(),
        ommers: Vec::new(),
    };
    let record = Record::Genesis(Genesis { chain_id: 1337, spec: spec.source(), block });
    // The hand-made header commits to no state root: the trie is not what this test is about.
    let opts =
        StoreOptions { undo_window: 64, state_trie: ec_store::TrieMode::Off, ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).expect("opens");
    let envelope =
        Envelope { version: FORMAT_VERSION, kind: record.kind(), cluster_id: "deadline".into(), sequence: 0 };
    let rec = Assembled { envelope, record, first_offset: 0, last_offset: 0, payload_len: 0, record_crc: 0 };
    store.apply(&rec).expect("genesis applies");
    store
}

fn env(timeout: Duration, gas_cap: u64) -> CallEnv {
    CallEnv { spec: Arc::new(ChainSpec::dev(1337)), gas_cap, deadline: Instant::now() + timeout, timeout }
}

#[test]
fn a_looping_call_stops_at_its_deadline() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_looping_contract(&dir);
    let req = CallRequest { to: Some(LOOP), ..Default::default() };
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    // A gas cap that lets the loop run for minutes: only the deadline can stop it.
    let outcome = evm::call(
        &store.view(),
        &genesis_header(),
        &req,
        &env(timeout, 1_000_000_000_000),
        &Overrides::default(),
    );
    let took = started.elapsed();
    match outcome {
        Err(e) => assert_eq!(e, "execution aborted (timeout = 300ms)"),
        Ok(_) => panic!("a loop with a trillion gas finished within {took:?}"),
    }
    assert!(took < timeout + Duration::from_secs(1), "the EVM ran {took:?} past a {timeout:?} deadline");
}

#[test]
fn an_estimate_that_never_succeeds_answers_geths_error_at_the_osaka_cap() {
    let dir = tempfile::tempdir().unwrap();
    let store = store_with_a_looping_contract(&dir);
    let req = CallRequest { to: Some(LOOP), ..Default::default() };
    let outcome = evm::estimate_gas(
        &store.view(),
        &genesis_header(),
        &req,
        &env(Duration::from_secs(60), 50_000_000),
        &Overrides::default(),
    );
    match outcome {
        // The block allows 30M and the RPC cap 50M, but from Osaka no transaction may use more than 2^24.
        Err(EstimateError::Failed(e)) => assert_eq!(e, "gas required exceeds allowance (16777216)"),
        Err(EstimateError::Reverted(_)) => panic!("the loop does not revert"),
        Ok(gas) => panic!("an endless loop was estimated at {gas} gas"),
    }
}
