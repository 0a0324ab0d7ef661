//! Bulk loading of state from externally written SST files, and the state root of what the store holds.
//!
//! A state import (crate `ec-import`) writes the `accounts`, `storage` and `code` tables as sorted SST files
//! and hands them to [`Store::ingest_sst_files`]: RocksDB links them into the tree as they are, without the
//! write-ahead log, the memtable or a compaction, which is what makes loading hundreds of gigabytes feasible.
//!
//! The state tables are keyed like geth's snapshot: `accounts` by keccak256(address), `storage` by
//! keccak256(address) ++ keccak256(slot), `code` by code hash. Because the keys are the trie paths, one pass
//! over both tables in key order feeds a [`HashBuilder`] directly, and [`Store::state_root`] computes the
//! root from what the database really holds rather than from what the importer believes it wrote.

use std::{
    path::PathBuf,
    sync::OnceLock,
    time::{Duration, Instant},
};

use alloy_primitives::{B256, U256};
use alloy_rlp::Encodable;
use alloy_trie::{HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};
use rocksdb::{IngestExternalFileOptions, Options, ReadOptions};

use crate::{
    error::{Result, StoreError},
    tables::{Accounts, Storage, StoredAccount, Table, Value},
    Store,
};

/// Options for `rocksdb::SstFileWriter` when writing files for [`Store::ingest_sst_files`].
///
/// They must agree with the column families' options in [`Store::open`] where it matters for the files'
/// content: the comparator (the default bytewise one) and the compression (LZ4), so that ingested files look
/// like the ones the store writes itself. Static because `SstFileWriter` borrows its options for its whole
/// life, and a writer that lives in a struct cannot borrow from a sibling field.
pub fn sst_options() -> &'static Options {
    static OPTS: OnceLock<Options> = OnceLock::new();
    OPTS.get_or_init(|| {
        let mut opts = Options::default();
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        opts
    })
}

/// How often the state root computation reports progress.
const PROGRESS_EVERY: Duration = Duration::from_secs(5);

impl Store {
    fn cf_or_corrupt(&self, name: &'static str) -> Result<&rocksdb::ColumnFamily> {
        // Every table is created in `Store::open`; a missing one means a database of another layout.
        self.db
            .cf_handle(name)
            .ok_or(StoreError::Corrupt { table: name, reason: "no such column family".into() })
    }

    /// Moves the given SST files (written with [`sst_options`]) into table `table`.
    ///
    /// The files are hard-linked into the database and unlinked from where they were (RocksDB falls back to
    /// a copy across file systems). Files whose key ranges overlap each other are accepted by RocksDB, the
    /// later file winning on equal keys, but land in level 0 and cost a compaction: the importer writes
    /// non-overlapping files, which go straight to the bottom level of an empty table.
    pub fn ingest_sst_files(&self, table: &'static str, files: &[PathBuf]) -> Result<()> {
        if files.is_empty() {
            return Ok(());
        }
        let cf = self.cf_or_corrupt(table)?;
        let mut opts = IngestExternalFileOptions::default();
        opts.set_move_files(true);
        self.db.ingest_external_file_cf_opts(cf, &opts, files.to_vec())?;
        Ok(())
    }

    /// True if table `table` holds no key at all.
    pub fn table_is_empty(&self, table: &'static str) -> Result<bool> {
        let mut it = self.db.raw_iterator_cf(self.cf_or_corrupt(table)?);
        it.seek_to_first();
        let empty = !it.valid();
        it.status()?;
        Ok(empty)
    }

    /// The Merkle-Patricia root of the state in the `accounts` and `storage` tables (hashed keys).
    ///
    /// One sequential pass over both tables: the account keys are the trie paths in trie order, and each
    /// account's slots sit together right where its key sorts in `storage`, so the two iterators advance in
    /// step and memory stays at one trie path per table, whatever the size of the state.
    pub fn state_root(&self) -> Result<B256> {
        let accounts_cf = self.cf_or_corrupt(Accounts::NAME)?;
        let storage_cf = self.cf_or_corrupt(Storage::NAME)?;
        let mut acc_it = self.db.raw_iterator_cf_opt(accounts_cf, scan_options());
        let mut slot_it = self.db.raw_iterator_cf_opt(storage_cf, scan_options());
        acc_it.seek_to_first();
        slot_it.seek_to_first();

        let corrupt = |table: &'static str, reason: String| StoreError::Corrupt { table, reason };
        let mut state = HashBuilder::default();
        let mut leaf = Vec::with_capacity(128);
        let (mut accounts, mut slots) = (0u64, 0u64);
        let started = Instant::now();
        let mut logged = started;

        while let (Some(key), Some(value)) = (acc_it.key(), acc_it.value()) {
            let hashed_address = B256::try_from(key).map_err(|_| {
                corrupt(
                    Accounts::NAME,
                    format!("key of {} bytes, expected a 32-byte hashed address", key.len()),
                )
            })?;
            let account = StoredAccount::decode(value)
                .map_err(|reason| corrupt(Accounts::NAME, format!("{hashed_address}: {reason}")))?;

            let mut storage = HashBuilder::default();
            let mut has_storage = false;
            while let (Some(skey), Some(svalue)) = (slot_it.key(), slot_it.value()) {
                if skey.len() != 64 {
                    return Err(corrupt(Storage::NAME, format!("key of {} bytes, expected 64", skey.len())));
                }
                match skey[..32].cmp(hashed_address.as_slice()) {
                    std::cmp::Ordering::Greater => break,
                    std::cmp::Ordering::Less => {
                        // A slot sorting before the current account belongs to no account at all: the
                        // trie would silently drop it, so the database is not the state it claims to be.
                        return Err(corrupt(
                            Storage::NAME,
                            format!(
                                "slot {} of account {} that does not exist",
                                B256::from_slice(&skey[32..]),
                                B256::from_slice(&skey[..32])
                            ),
                        ));
                    }
                    std::cmp::Ordering::Equal => {}
                }
                let value = B256::try_from(svalue).map_err(|_| {
                    corrupt(Storage::NAME, format!("value of {} bytes, expected 32", svalue.len()))
                })?;
                if value.is_zero() {
                    // A zero slot is an absent slot in the trie; storing one is a writer's bug.
                    return Err(corrupt(Storage::NAME, format!("zero value stored for {hashed_address}")));
                }
                leaf.clear();
                U256::from_be_bytes(value.0).encode(&mut leaf);
                storage.add_leaf(Nibbles::unpack(&skey[32..]), &leaf);
                has_storage = true;
                slots += 1;
                slot_it.next();
            }
            slot_it.status()?;

            let storage_root = if has_storage { storage.root() } else { EMPTY_ROOT_HASH };
            leaf.clear();
            trie_account(&account, storage_root).encode(&mut leaf);
            state.add_leaf(Nibbles::unpack(hashed_address), &leaf);
            accounts += 1;
            acc_it.next();

            if accounts.is_multiple_of(1024) && logged.elapsed() >= PROGRESS_EVERY {
                logged = Instant::now();
                // Hashed keys are uniform, so the key's leading bytes say how far through the state we are.
                let h = hashed_address.0;
                let done = u32::from_be_bytes([h[0], h[1], h[2], h[3]]) as f64 / u32::MAX as f64;
                let elapsed = started.elapsed().as_secs_f64();
                let eta = if done > 0.0 { elapsed / done - elapsed } else { 0.0 };
                tracing::info!(
                    accounts,
                    slots,
                    percent = format!("{:.1}", done * 100.0),
                    eta_s = eta as u64,
                    "state root: hashing"
                );
            }
        }
        acc_it.status()?;
        if let Some(skey) = slot_it.key() {
            return Err(corrupt(
                Storage::NAME,
                format!(
                    "slots of account {} that does not exist",
                    B256::from_slice(&skey[..32.min(skey.len())])
                ),
            ));
        }
        slot_it.status()?;
        let root = state.root();
        tracing::info!(accounts, slots, %root, elapsed_s = started.elapsed().as_secs(), "state root computed");
        Ok(root)
    }
}

/// The account as the state trie encodes it.
fn trie_account(account: &StoredAccount, storage_root: B256) -> TrieAccount {
    TrieAccount { nonce: account.nonce, balance: account.balance, storage_root, code_hash: account.code_hash }
}

/// A whole-table scan: read ahead in large blocks, and keep the block cache for the replica's reads.
fn scan_options() -> ReadOptions {
    let mut opts = ReadOptions::default();
    opts.set_readahead_size(4 << 20);
    opts.fill_cache(false);
    opts
}
