//! `Store::ingest_sst_files` and `Store::state_root` on hand-written SST files.

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_trie::{root::state_root_unhashed, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use ec_store::{
    tables::{StoredAccount, Value},
    Store, StoreError, StoreOptions,
};

fn sst(dir: &std::path::Path, name: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> std::path::PathBuf {
    let path = dir.join(name);
    let mut writer = rocksdb::SstFileWriter::create(ec_store::sst_options());
    writer.open(&path).expect("open sst");
    for (k, v) in entries {
        writer.put(k, v).expect("put");
    }
    writer.finish().expect("finish");
    path
}

#[test]
fn an_empty_store_has_the_empty_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    assert_eq!(store.state_root().expect("root"), EMPTY_ROOT_HASH);
    assert!(store.table_is_empty("accounts").expect("empty"));
}

#[test]
fn ingested_accounts_give_the_reference_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    let accounts: Vec<(Address, StoredAccount)> = (1..=3u8)
        .map(|i| {
            let a = StoredAccount { balance: U256::from(i) << 70, nonce: i as u64, code_hash: KECCAK_EMPTY };
            (Address::repeat_byte(i), a)
        })
        .collect();
    let mut rows: Vec<(Vec<u8>, Vec<u8>)> =
        accounts.iter().map(|(a, acc)| (keccak256(a).to_vec(), acc.encode())).collect();
    rows.sort();
    let file = sst(dir.path(), "accounts.sst", &rows);
    store.ingest_sst_files("accounts", std::slice::from_ref(&file)).expect("ingest");
    assert!(!file.exists(), "ingestion moves the file into the database");

    let expected = state_root_unhashed(accounts.iter().map(|(a, acc)| {
        (
            *a,
            TrieAccount {
                nonce: acc.nonce,
                balance: acc.balance,
                storage_root: EMPTY_ROOT_HASH,
                code_hash: acc.code_hash,
            },
        )
    }));
    assert_eq!(store.state_root().expect("root"), expected);
}

#[test]
fn a_slot_without_its_account_is_corruption() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    let key = [B256::repeat_byte(9).as_slice(), B256::repeat_byte(1).as_slice()].concat();
    let file = sst(dir.path(), "storage.sst", &[(key, B256::with_last_byte(1).to_vec())]);
    store.ingest_sst_files("storage", &[file]).expect("ingest");
    let result = store.state_root();
    assert!(matches!(result, Err(StoreError::Corrupt { table: "storage", .. })), "{result:?}");
}
