//! The unsorted path (reth's plain keys, external merge sort in small chunks) writes exactly the database
//! the sorted path (geth's hashed, sorted dump, straight to SST) writes.

mod common;

use alloy_primitives::B256;
use common::*;
use ec_import::{import_with, ImportOptions, Source};

#[test]
fn reth_dump_sorted_in_many_chunks_yields_the_same_tables_as_geth_dump() {
    let state = random_state(400, 60, 11);
    let dir = tempfile::tempdir().expect("tempdir");

    let geth_path = dir.path().join("geth.jsonl");
    write_geth_dump(&geth_path, &state, B256::ZERO);
    let geth_db = dir.path().join("geth-db");
    let geth = {
        let store = open_store(&geth_db);
        import_with(Source::GethDump(geth_path), &store, &dir.path().join("w1"), &ImportOptions::default())
            .expect("geth import")
    };

    let reth_path = dir.path().join("reth.jsonl");
    let mut shuffled = state.clone();
    // Interleave the ends so that neither addresses nor hashes arrive in order.
    shuffled.sort_by_key(|a| a.address.0[7] ^ a.address.0[3]);
    write_reth_dump(&reth_path, &shuffled, B256::ZERO);
    let reth_db = dir.path().join("reth-db");
    let opts = ImportOptions {
        // A few kilobytes per chunk: dozens of runs to merge, and repeated code across runs.
        sort_chunk_bytes: 4096,
        // Slots wait for the address (written last) mostly on disk.
        pending_slots: 3,
    };
    let reth = {
        let store = open_store(&reth_db);
        import_with(Source::RethInitState(reth_path), &store, &dir.path().join("w2"), &opts)
            .expect("reth import")
    };

    assert_eq!(geth.state_root, reference_root(&state));
    assert_eq!(reth.state_root, geth.state_root);
    assert_eq!((reth.accounts, reth.slots, reth.codes), (geth.accounts, geth.slots, geth.codes));
    assert!(geth.slots > 1000, "the state must be big enough to need many chunks: {}", geth.slots);
    let (a, b) = (state_tables(&geth_db), state_tables(&reth_db));
    for ((name, geth_rows), (_, reth_rows)) in a.iter().zip(&b) {
        assert!(!geth_rows.is_empty(), "{name} is empty");
        assert!(geth_rows == reth_rows, "table {name} differs");
    }
    assert!(!dir.path().join("w2/ec-import").exists(), "the work directory is cleaned up");
}

#[test]
fn a_store_with_state_is_refused() {
    let state = tiny_state();
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("geth.jsonl");
    write_geth_dump(&path, &state, B256::ZERO);
    let store = open_store(&dir.path().join("db"));
    ec_import::import(Source::GethDump(path.clone()), &store, dir.path()).expect("first import");
    let again = ec_import::import(Source::GethDump(path), &store, dir.path());
    assert!(matches!(again, Err(ec_import::ImportError::NotEmpty { .. })), "{again:?}");
}
