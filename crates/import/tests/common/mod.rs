//! A small state written by hand in both dump formats, and its root computed by alloy-trie's reference
//! functions (not by the store's iterator).
#![allow(dead_code)]

use std::{collections::BTreeMap, io::Write, path::Path};

use alloy_primitives::{hex, keccak256, Address, Bytes, B256, U256};
use alloy_trie::{
    root::{state_root_unhashed, storage_root_unhashed},
    TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY,
};
use ec_store::{Store, StoreOptions};

#[derive(Clone, Debug)]
pub struct Account {
    pub address: Address,
    pub balance: U256,
    pub nonce: u64,
    pub code: Option<Bytes>,
    /// Plain slot → value; zero values are written to the files and must be skipped by the importer.
    pub storage: BTreeMap<B256, B256>,
}

impl Account {
    pub fn code_hash(&self) -> B256 {
        self.code.as_ref().map_or(KECCAK_EMPTY, keccak256)
    }

    pub fn storage_root(&self) -> B256 {
        let slots: Vec<(B256, U256)> = self
            .storage
            .iter()
            .filter(|(_, v)| !v.is_zero())
            .map(|(k, v)| (*k, U256::from_be_bytes(v.0)))
            .collect();
        if slots.is_empty() {
            EMPTY_ROOT_HASH
        } else {
            storage_root_unhashed(slots)
        }
    }
}

/// Two EOAs and a contract with code and storage, including values that need every RLP form.
pub fn tiny_state() -> Vec<Account> {
    let mut storage = BTreeMap::new();
    storage.insert(B256::ZERO, B256::with_last_byte(0x2a));
    storage.insert(B256::with_last_byte(1), B256::with_last_byte(0x80));
    storage.insert(B256::with_last_byte(2), B256::repeat_byte(0xff));
    storage.insert(B256::with_last_byte(3), B256::ZERO);
    storage.insert(B256::repeat_byte(0x11), B256::from(U256::from(0x1234_5678u64)));
    vec![
        Account {
            address: Address::repeat_byte(0xaa),
            balance: U256::from(10u64).pow(U256::from(18)),
            nonce: 5,
            code: None,
            storage: BTreeMap::new(),
        },
        Account {
            address: Address::repeat_byte(0xbb),
            balance: U256::ZERO,
            nonce: 1,
            code: Some(Bytes::from_static(&[0x60, 0x2a, 0x60, 0x00, 0x55, 0x00])),
            storage,
        },
        Account {
            address: Address::repeat_byte(0xcc),
            balance: U256::MAX,
            nonce: 0,
            code: None,
            storage: BTreeMap::new(),
        },
    ]
}

/// A larger random state: `n` accounts, one in three a contract with up to `max_slots` slots.
pub fn random_state(n: u64, max_slots: u64, seed: u64) -> Vec<Account> {
    let mut x = seed;
    let mut next = move || {
        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        x >> 11
    };
    (0..n)
        .map(|i| {
            let address = Address::from_slice(&keccak256(i.to_be_bytes()).0[..20]);
            let contract = i % 3 == 0;
            let mut storage = BTreeMap::new();
            if contract {
                for _ in 0..next() % (max_slots + 1) {
                    let slot = B256::from(U256::from(next()));
                    let value = B256::from(U256::from(next()) << (next() % 190) as usize);
                    storage.insert(slot, value);
                }
            }
            Account {
                address,
                balance: U256::from(next()),
                nonce: next() % 100,
                // Few distinct blobs: several contracts share code, as on mainnet.
                code: contract.then(|| Bytes::from(vec![0x60, (i % 5) as u8, 0x00])),
                storage,
            }
        })
        .collect()
}

pub fn reference_root(state: &[Account]) -> B256 {
    state_root_unhashed(state.iter().map(|a| {
        (
            a.address,
            TrieAccount {
                nonce: a.nonce,
                balance: a.balance,
                storage_root: a.storage_root(),
                code_hash: a.code_hash(),
            },
        )
    }))
}

fn minimal(value: &B256) -> &[u8] {
    let first = value.iter().position(|b| *b != 0).unwrap_or(32);
    &value[first..]
}

/// The state as `geth snapshot dump` writes it: sorted by hashed address, storage keyed by hashed slot and
/// sorted, values RLP-encoded without `0x`, `key` after `storage`. Zero slots are not in a snapshot.
pub fn write_geth_dump(path: &Path, state: &[Account], declared_root: B256) {
    let mut accounts: Vec<&Account> = state.iter().collect();
    accounts.sort_by_key(|a| keccak256(a.address));
    let mut out = std::fs::File::create(path).expect("create dump");
    writeln!(out, "{{\"root\":\"{declared_root}\"}}").expect("write");
    for a in accounts {
        let mut line = format!(
            "{{\"balance\":\"{}\",\"nonce\":{},\"root\":\"{}\",\"codeHash\":\"{}\"",
            a.balance,
            a.nonce,
            a.storage_root(),
            a.code_hash()
        );
        if let Some(code) = &a.code {
            line += &format!(",\"code\":\"{code}\"");
        }
        let mut slots: Vec<(B256, &B256)> =
            a.storage.iter().filter(|(_, v)| !v.is_zero()).map(|(k, v)| (keccak256(k), v)).collect();
        slots.sort();
        if !slots.is_empty() {
            let entries: Vec<String> = slots
                .iter()
                .map(|(k, v)| format!("\"{k}\":\"{}\"", hex::encode(alloy_rlp::encode(minimal(v)))))
                .collect();
            line += &format!(",\"storage\":{{{}}}", entries.join(","));
        }
        line += &format!(",\"address\":\"{}\",\"key\":\"{}\"}}", a.address, keccak256(a.address));
        writeln!(out, "{line}").expect("write");
    }
}

/// The state as `reth init-state` reads it: plain addresses and slots, hex balance, accounts in the given
/// order (callers shuffle), zero slots included.
pub fn write_reth_dump(path: &Path, state: &[Account], declared_root: B256) {
    let mut out = std::fs::File::create(path).expect("create dump");
    writeln!(out, "{{\"root\":\"{declared_root}\"}}").expect("write");
    for a in state {
        let mut line = format!("{{\"balance\":\"{:#x}\",\"nonce\":{}", a.balance, a.nonce);
        if let Some(code) = &a.code {
            line += &format!(",\"code\":\"{code}\"");
        }
        if !a.storage.is_empty() {
            let entries: Vec<String> = a
                .storage
                .iter()
                .map(|(k, v)| format!("\"{}\":\"0x{}\"", k, hex::encode(minimal(v))))
                .collect();
            line += &format!(",\"storage\":{{{}}}", entries.join(","));
        }
        line += &format!(",\"address\":\"{}\"}}", a.address);
        writeln!(out, "{line}").expect("write");
    }
}

pub fn open_store(dir: &Path) -> Store {
    Store::open(dir, StoreOptions::default()).expect("open store")
}

pub type Rows = Vec<(Vec<u8>, Vec<u8>)>;

/// Every key and value of the state tables, read straight from RocksDB.
pub fn state_tables(db_dir: &Path) -> Vec<(&'static str, Rows)> {
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        db_dir,
        ec_store::tables::ALL_TABLES.iter().copied(),
        false,
    )
    .expect("open read-only");
    ["accounts", "storage", "code"]
        .into_iter()
        .map(|name| {
            let cf = db.cf_handle(name).expect("table");
            let entries = db
                .iterator_cf(cf, rocksdb::IteratorMode::Start)
                .map(|e| e.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read"))
                .collect();
            (name, entries)
        })
        .collect()
}
