//! Both file formats of one hand-made state import to the root alloy-trie's reference functions compute.

mod common;

use alloy_primitives::{B256, U256};
use common::*;
use ec_import::{import, Source};

fn import_file(
    source: impl FnOnce(&std::path::Path) -> Source,
) -> (ec_import::ImportSummary, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_store(&dir.path().join("db"));
    let summary = import(source(dir.path()), &store, &dir.path().join("work")).expect("import");
    (summary, dir)
}

#[test]
fn geth_and_reth_dumps_of_one_state_give_the_reference_root() {
    let state = tiny_state();
    let expected = reference_root(&state);
    let declared = B256::repeat_byte(0x42);

    let (geth, _g) = import_file(|dir| {
        let path = dir.join("geth.jsonl");
        write_geth_dump(&path, &state, declared);
        Source::GethDump(path)
    });
    let (reth, _r) = import_file(|dir| {
        let path = dir.join("reth.jsonl");
        let mut shuffled = state.clone();
        shuffled.reverse();
        write_reth_dump(&path, &shuffled, declared);
        Source::RethInitState(path)
    });

    assert_eq!(geth.state_root, expected);
    assert_eq!(reth.state_root, expected);
    assert_eq!(geth.declared_root, Some(declared));
    assert_eq!((geth.accounts, geth.slots, geth.codes), (3, 4, 1), "the zero slot is not stored");
    assert_eq!((reth.accounts, reth.slots, reth.codes), (3, 4, 1));
}

#[test]
fn an_altered_balance_changes_the_root() {
    let state = tiny_state();
    let mut altered = state.clone();
    altered[1].balance += U256::from(1);
    assert_ne!(reference_root(&state), reference_root(&altered));

    let (summary, _d) = import_file(|dir| {
        let path = dir.join("geth.jsonl");
        write_geth_dump(&path, &altered, B256::ZERO);
        Source::GethDump(path)
    });
    assert_eq!(summary.state_root, reference_root(&altered));
    assert_ne!(summary.state_root, reference_root(&state));
}

#[test]
fn a_larger_random_state_gives_the_reference_root() {
    let state = random_state(500, 40, 7);
    let (summary, _d) = import_file(|dir| {
        let path = dir.join("geth.jsonl");
        write_geth_dump(&path, &state, B256::ZERO);
        Source::GethDump(path)
    });
    assert_eq!(summary.state_root, reference_root(&state));
}
