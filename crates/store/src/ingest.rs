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
use alloy_trie::{BranchNodeCompact, HashBuilder, Nibbles, TrieAccount, EMPTY_ROOT_HASH};
use rocksdb::{IngestExternalFileOptions, Options, ReadOptions};

use crate::{
    error::{Result, StoreError},
    tables::{AccountTrie, Accounts, Storage, StorageRoots, StorageTrie, StoredAccount, Table, Value},
    trie::{leaf_hashes::LeafParents, TriePath},
    Store,
};

/// Options for `rocksdb::SstFileWriter` when writing files for [`Store::ingest_sst_files`].
///
/// The tables' own options ([`crate::table_options`]: comparator, compression), so that ingested files look
/// like the ones the store writes itself. Static because `SstFileWriter` borrows its options for its whole
/// life, and a writer that lives in a struct cannot borrow from a sibling field.
pub fn sst_options() -> &'static Options {
    static OPTS: OnceLock<Options> = OnceLock::new();
    OPTS.get_or_init(|| crate::table_options(&crate::Tuning::replica(0), None))
}

/// Ranges of hashed addresses the storage roots are computed in (see [`Store::state_root`]).
const STORAGE_RANGES: usize = 64;
/// Storage roots a worker may compute ahead of the account trie, per range. The channels allocate this
/// up front, so it is kept small: 64 ranges of 512 roots are a few megabytes.
const RANGE_AHEAD: usize = 512;

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
    /// The account keys are the trie paths in trie order, and each account's slots sit together where its key
    /// sorts in `storage`, so both tables are walked once, in order, and memory stays at one trie path per
    /// walk whatever the size of the state. Storage roots (most of the work on any real state) are computed
    /// on worker threads, by ranges of hashed addresses, while this thread builds the account trie and takes
    /// each account's storage root from the channel of its range, in order.
    pub fn state_root(&self) -> Result<B256> {
        self.compute_root(false)
    }

    /// [`Self::state_root`], keeping the trie's nodes ([`crate::trie`]): every branch node the hash builders
    /// store goes into the trie tables, and every storage root into `storage_roots`, written in batches as
    /// the pass goes (no second pass, memory bounded). The trie tables are emptied first. Records nothing
    /// about which block the state is: the caller does ([`Store::mark_imported`], or the rebuild at open).
    pub fn build_trie(&self) -> Result<B256> {
        // The range deletes below go through the write-ahead log: nothing written without it may precede them
        // unflushed (see [`Store::persist`]).
        self.persist()?;
        self.trie_history.record(crate::trie::history::TrieChange::Reset);
        for name in crate::tables::TRIE_TABLES {
            let cf = self.cf_or_corrupt(name)?;
            // Whole-table range deletes; the rebuild then writes every key anew.
            self.db.delete_range_cf(cf, [0u8].as_slice(), [0xffu8; 100].as_slice())?;
        }
        let root = self.compute_root(true)?;
        *self.built_root.lock().unwrap_or_else(|p| p.into_inner()) = Some(root);
        Ok(root)
    }

    fn compute_root(&self, keep_nodes: bool) -> Result<B256> {
        let accounts_cf = self.cf_or_corrupt(Accounts::NAME)?;
        let workers = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(1, 4);
        // Range i holds the accounts whose first key byte is in [bounds[i], bounds[i + 1]). Many small ranges,
        // dealt to the workers in turn: each worker then hashes at most a few ranges ahead of this thread
        // (a range's channel is bounded), so all of them keep busy from the start to the end.
        let bounds: Vec<u16> = (0..=STORAGE_RANGES).map(|i| (i * 256 / STORAGE_RANGES) as u16).collect();
        let mut senders = Vec::with_capacity(STORAGE_RANGES);
        let mut ranges = Vec::with_capacity(STORAGE_RANGES);
        for _ in 0..STORAGE_RANGES {
            let (tx, rx) = std::sync::mpsc::sync_channel(RANGE_AHEAD);
            senders.push(Some(tx));
            ranges.push(rx.into_iter().peekable());
        }
        std::thread::scope(move |scope| {
            for worker in 0..workers {
                let mine: Vec<(u16, u16, std::sync::mpsc::SyncSender<Result<StorageRoot>>)> = (worker
                    ..STORAGE_RANGES)
                    .step_by(workers)
                    .filter_map(|r| senders[r].take().map(|tx| (bounds[r], bounds[r + 1], tx)))
                    .collect();
                scope.spawn(move || {
                    for (lo, hi, tx) in mine {
                        // An error ends the range: it is the last item the receiver sees.
                        if let Err(e) = self.storage_roots(lo, hi, &tx, keep_nodes) {
                            let _ = tx.send(Err(e));
                            return;
                        }
                    }
                });
            }
            let root = self.account_trie(accounts_cf, &bounds, &mut ranges, keep_nodes);
            // Before the scope joins the workers: a worker blocked on a full channel (this thread returned
            // early, on an error) wakes up to a closed channel and exits.
            drop(ranges);
            root
        })
    }

    /// The account trie over the `accounts` table, with storage roots from `ranges` (see [`Self::state_root`]).
    fn account_trie(
        &self,
        accounts_cf: &rocksdb::ColumnFamily,
        bounds: &[u16],
        ranges: &mut [std::iter::Peekable<std::sync::mpsc::IntoIter<Result<StorageRoot>>>],
        keep_nodes: bool,
    ) -> Result<B256> {
        let corrupt = |table: &'static str, reason: String| StoreError::Corrupt { table, reason };
        let orphan =
            |account: B256| corrupt(Storage::NAME, format!("slots of account {account} that does not exist"));
        let mut acc_it = self.db.raw_iterator_cf_opt(accounts_cf, scan_options());
        acc_it.seek_to_first();
        let mut state = HashBuilder::default().with_updates(keep_nodes);
        let mut parents = LeafParents::default();
        let mut nodes = NodeWriter::default();
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
            let range = bounds.partition_point(|b| *b <= u16::from(hashed_address[0])) - 1;
            let mut storage_root = EMPTY_ROOT_HASH;
            // The range's next storage root belongs to this account, to a later one, or (an error) to an
            // account that does not exist: its slots would silently drop out of the trie.
            while let Some(next) = ranges[range].peek() {
                match next {
                    Err(_) => {
                        if let Some(Err(e)) = ranges[range].next() {
                            return Err(e);
                        }
                    }
                    Ok(root) if root.account < hashed_address => return Err(orphan(root.account)),
                    Ok(root) if root.account == hashed_address => {
                        storage_root = root.root;
                        slots += root.slots;
                        ranges[range].next();
                    }
                    Ok(_) => break,
                }
            }
            leaf.clear();
            trie_account(&account, storage_root).encode(&mut leaf);
            let key = Nibbles::unpack(hashed_address);
            state.add_leaf(key, &leaf);
            if keep_nodes {
                parents.leaf(key, leaf.clone());
            }
            accounts += 1;
            acc_it.next();
            if let Some(updates) = state.updated_branch_nodes.as_mut().filter(|u| u.len() >= NODES_PER_BATCH)
            {
                nodes.account_nodes(self, &mut parents, updates.drain())?;
            }

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
        for range in ranges.iter_mut() {
            match range.next() {
                Some(Ok(root)) => return Err(orphan(root.account)),
                Some(Err(e)) => return Err(e),
                None => {}
            }
        }
        let root = state.root();
        parents.finish();
        let (_, updates) = state.split();
        nodes.account_nodes(self, &mut parents, updates)?;
        nodes.finish(self)?;
        tracing::info!(accounts, slots, %root, elapsed_s = started.elapsed().as_secs(), "state root computed");
        Ok(root)
    }

    /// The storage root of every account with slots whose first key byte is in `lo..hi`, in key order.
    fn storage_roots(
        &self,
        lo: u16,
        hi: u16,
        out: &std::sync::mpsc::SyncSender<Result<StorageRoot>>,
        keep_nodes: bool,
    ) -> Result<()> {
        let corrupt = |reason: String| StoreError::Corrupt { table: Storage::NAME, reason };
        let nodes = std::cell::RefCell::new(NodeWriter::default());
        let storage_cf = self.cf_or_corrupt(Storage::NAME)?;
        let mut it = self.db.raw_iterator_cf_opt(storage_cf, scan_options());
        it.seek([lo as u8]);
        let mut leaf = Vec::with_capacity(40);
        let mut current: Option<(B256, HashBuilder, LeafParents, u64)> = None;
        // The receiver only hangs up after an error of its own: stop quietly then.
        let emit = |done: Option<(B256, HashBuilder, LeafParents, u64)>| -> Result<bool> {
            let Some((account, mut trie, mut parents, slots)) = done else { return Ok(true) };
            let root = trie.root();
            if keep_nodes {
                let mut nodes = nodes.borrow_mut();
                parents.finish();
                let (_, updates) = trie.split();
                self.put::<StorageRoots>(&mut nodes.batch, &account, &root);
                nodes.pending += 1;
                nodes.storage_nodes(self, account, &mut parents, updates)?;
            }
            Ok(out.send(Ok(StorageRoot { account, root, slots })).is_ok())
        };
        while let (Some(key), Some(value)) = (it.key(), it.value()) {
            if key.len() != 64 {
                return Err(corrupt(format!("key of {} bytes, expected 64", key.len())));
            }
            if u16::from(key[0]) >= hi {
                break;
            }
            let value = B256::try_from(value)
                .map_err(|_| corrupt(format!("value of {} bytes, expected 32", value.len())))?;
            let account = B256::from_slice(&key[..32]);
            if value.is_zero() {
                // A zero slot is an absent slot in the trie; storing one is a writer's bug.
                return Err(corrupt(format!("zero value stored for {account}")));
            }
            if current.as_ref().is_none_or(|(a, ..)| *a != account) && !emit(current.take())? {
                return Ok(());
            }
            let (_, trie, parents, slots) = current.get_or_insert_with(|| {
                (account, HashBuilder::default().with_updates(keep_nodes), LeafParents::default(), 0)
            });
            leaf.clear();
            U256::from_be_bytes(value.0).encode(&mut leaf);
            let slot = Nibbles::unpack(&key[32..]);
            trie.add_leaf(slot, &leaf);
            if keep_nodes {
                parents.leaf(slot, leaf.clone());
            }
            *slots += 1;
            // A contract with millions of slots: its finished nodes go out as the pass goes, not at its end.
            if let Some(updates) = trie.updated_branch_nodes.as_mut().filter(|u| u.len() >= NODES_PER_BATCH) {
                nodes.borrow_mut().storage_nodes(self, account, parents, updates.drain())?;
            }
            it.next();
        }
        it.status()?;
        emit(current.take())?;
        nodes.into_inner().finish(self)
    }
}

/// Trie nodes a full pass holds and writes per batch: a few megabytes (the import's memory bound).
pub(crate) const NODES_PER_BATCH: usize = 2_048;

/// The trie nodes of a full pass, written a batch at a time.
#[derive(Default)]
struct NodeWriter {
    batch: crate::batch::Batch,
    pending: usize,
}

impl NodeWriter {
    /// Puts the account trie's `nodes` (every node the hash builder has finished so far), with the hashes of
    /// their leaf children; commits once a batch's worth is pending.
    fn account_nodes(
        &mut self,
        store: &Store,
        parents: &mut LeafParents,
        nodes: impl IntoIterator<Item = (Nibbles, BranchNodeCompact)>,
    ) -> Result<()> {
        for (path, node) in nodes {
            store.put::<AccountTrie>(&mut self.batch, &TriePath(path), &parents.node(&path, node));
            self.pending += 1;
        }
        parents.forget_finished();
        self.commit_if_full(store)
    }

    /// Puts `account`'s storage trie `nodes` (every node its hash builder has finished so far), with the
    /// hashes of their leaf children; commits once a batch's worth is pending.
    fn storage_nodes(
        &mut self,
        store: &Store,
        account: B256,
        parents: &mut LeafParents,
        nodes: impl IntoIterator<Item = (Nibbles, BranchNodeCompact)>,
    ) -> Result<()> {
        for (path, node) in nodes {
            store.put::<StorageTrie>(&mut self.batch, &(account, TriePath(path)), &parents.node(&path, node));
            self.pending += 1;
        }
        parents.forget_finished();
        self.commit_if_full(store)
    }

    fn commit_if_full(&mut self, store: &Store) -> Result<()> {
        if self.pending >= NODES_PER_BATCH {
            store.commit(std::mem::take(&mut self.batch))?;
            self.pending = 0;
        }
        Ok(())
    }

    /// Commits what is pending.
    fn finish(self, store: &Store) -> Result<()> {
        if self.pending > 0 {
            store.commit(self.batch)?;
        }
        Ok(())
    }
}

/// One account's storage root, from a worker of [`Store::state_root`].
struct StorageRoot {
    account: B256,
    root: B256,
    slots: u64,
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
