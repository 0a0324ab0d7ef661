//! Typed access to the tables: reads straight from the database, writes into one [`Batch`].

use std::time::Instant;

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::{
    error::{Result, StoreError},
    tables::{Key, Table, Value},
    trie::history::TrieChange,
    Store,
};

/// Where reads come from: the database as it is now ([`Store`]) or as it was at one instant
/// ([`crate::StoreView`]). Sealed: the typed primitives below are the crate's own; other crates read
/// through [`crate::Reads`].
pub trait Source {
    fn store(&self) -> &Store;

    /// Options every read takes (a view's snapshot).
    fn read_options(&self) -> ReadOptions;

    /// Whether every read sees one instant (a [`crate::StoreView`]).
    fn is_view(&self) -> bool {
        false
    }

    fn get<T: Table>(&self, key: &T::Key) -> Result<Option<T::Value>> {
        match self.store().db.get_pinned_cf_opt(
            self.store().cf(T::NAME),
            key.encode(),
            &self.read_options(),
        )? {
            None => Ok(None),
            Some(bytes) => T::Value::decode(&bytes)
                .map(Some)
                .map_err(|reason| StoreError::Corrupt { table: T::NAME, reason }),
        }
    }

    /// Every `(key bytes, value)` whose key starts with `prefix`, in key order.
    fn scan_prefix<T: Table>(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, T::Value)>> {
        let mut out = Vec::new();
        let mut it = self.store().db.raw_iterator_cf_opt(self.store().cf(T::NAME), self.read_options());
        it.seek(prefix);
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            if !k.starts_with(prefix) {
                break;
            }
            let value =
                T::Value::decode(v).map_err(|reason| StoreError::Corrupt { table: T::NAME, reason })?;
            out.push((k.to_vec(), value));
            it.next();
        }
        it.status()?;
        Ok(out)
    }

    /// Keys from `start` on while they start with `prefix`, in key order.
    fn scan_keys_from<T: Table>(
        &self,
        prefix: &[u8],
        start: &T::Key,
    ) -> impl Iterator<Item = Result<Vec<u8>>> + '_ {
        let mut it = self.store().db.raw_iterator_cf_opt(self.store().cf(T::NAME), self.read_options());
        it.seek(start.encode());
        let prefix = prefix.to_vec();
        let mut done = false;
        std::iter::from_fn(move || {
            if done {
                return None;
            }
            match it.key() {
                Some(k) if k.starts_with(&prefix) => {
                    let k = k.to_vec();
                    it.next();
                    Some(Ok(k))
                }
                _ => {
                    done = true;
                    it.status().err().map(|e| Err(e.into()))
                }
            }
        })
    }

    /// The first entry at or after `from` that still starts with `prefix`.
    fn seek_in_prefix<T: Table>(&self, prefix: &[u8], from: &T::Key) -> Result<Option<T::Value>> {
        let mut it = self.store().db.raw_iterator_cf_opt(self.store().cf(T::NAME), self.read_options());
        it.seek(from.encode());
        let found = match (it.key(), it.value()) {
            (Some(k), Some(v)) if k.starts_with(prefix) => {
                Some(T::Value::decode(v).map_err(|reason| StoreError::Corrupt { table: T::NAME, reason })?)
            }
            _ => None,
        };
        it.status()?;
        Ok(found)
    }
}

impl Source for Store {
    fn store(&self) -> &Store {
        self
    }

    fn read_options(&self) -> ReadOptions {
        ReadOptions::default()
    }
}

/// A write batch with typed puts and deletes. Nothing reaches the database until [`Store::commit`].
///
/// The writes are kept as they come and handed to RocksDB sorted by table and key. A block's keys are hashes,
/// so in arrival order each lands at a random place in the memtable's skiplist and every insert searches it
/// from the top; in key order each insert starts from where the previous one ended (RocksDB keeps that
/// "splice"). Raw RocksDB wrote mainnet-sized batches of random keys 2.2x as fast sorted; the store's
/// replay gained about 10% (docs/benchmarks.md).
#[derive(Default)]
pub(crate) struct Batch {
    ops: Vec<Op>,
    /// What the batch does to the trie, told to the store's [`crate::trie::history::TrieHistory`] once it commits.
    trie: Option<TrieChange>,
}

impl Batch {
    /// Appends `later`'s writes: where both write a key, `later`'s wins.
    pub(crate) fn extend(&mut self, later: Batch) {
        self.ops.extend(later.ops);
        if later.trie.is_some() {
            self.trie = later.trie;
        }
    }

    pub(crate) fn set_trie_change(&mut self, change: TrieChange) {
        self.trie = Some(change);
    }
}

/// A batch in RocksDB's form, ready to write ([`Store::seal`]).
pub(crate) struct Sealed {
    inner: WriteBatch,
    /// Written without the write-ahead log ([`Sealed::catching_up`]).
    unlogged: bool,
    trie: Option<TrieChange>,
}

impl Sealed {
    /// Puts and deletes.
    pub(crate) fn writes(&self) -> usize {
        self.inner.len()
    }

    /// Marks a batch caught up ([`crate::Pipeline::set_catching_up`]) to be written without RocksDB's
    /// write-ahead log, unless the store's options keep it ([`crate::StoreOptions::catch_up_wal`],
    /// `sync_writes`). See [`Store::persist`] for what keeps that crash-safe.
    pub(crate) fn catching_up(mut self, opts: &crate::StoreOptions) -> Self {
        self.unlogged = !opts.catch_up_wal && !opts.sync_writes;
        self
    }
}

/// From this many writes on, a batch's tables are sorted on every core: a group of blocks caught up at once
/// is about 300,000 writes, sealed on one thread while the other core waits (sorted on two, 23-31 ms for
/// 330,000 writes on the 2-core bench machine). A block at the tip, about 26,000, is sorted in place.
const PARALLEL_SORT_FROM: usize = 32_768;

/// Sorts each table's writes by key. Stable: two writes of one key keep their order, so the later one wins
/// as it would unsorted.
fn sort_tables(by_table: &mut [Vec<Op>], writes: usize) {
    let sort = |ops: &mut Vec<Op>| ops.sort_by(|a, b| a.key.cmp(&b.key));
    let workers = crate::cores::available();
    if writes < PARALLEL_SORT_FROM || workers < 2 {
        by_table.iter_mut().for_each(sort);
        return;
    }
    // The largest tables first, each worker taking the next when it is done.
    let mut tables: Vec<&mut Vec<Op>> = by_table.iter_mut().collect();
    tables.sort_by_key(|ops| std::cmp::Reverse(ops.len()));
    let cells: Vec<std::sync::Mutex<&mut Vec<Op>>> = tables.into_iter().map(std::sync::Mutex::new).collect();
    crate::cores::on_every_core(&cells, workers, |cell| {
        // A poisoned lock means a sort panicked; on_every_core hands that panic on.
        if let Ok(mut ops) = cell.lock() {
            sort(&mut ops);
        }
    });
}

/// One write: a put (`Some` value) or a delete, in table [`Table::INDEX`].
struct Op {
    table: usize,
    key: Vec<u8>,
    value: Option<Vec<u8>>,
}

impl Store {
    pub(crate) fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        // Every table is created in `Store::open`; a missing handle is a bug in this crate, not bad input.
        self.db.cf_handle(name).expect("column family created at open")
    }

    pub(crate) fn put<T: Table>(&self, batch: &mut Batch, key: &T::Key, value: &T::Value) {
        batch.ops.push(Op { table: T::INDEX, key: key.encode(), value: Some(value.encode()) });
    }

    pub(crate) fn delete<T: Table>(&self, batch: &mut Batch, key: &T::Key) {
        batch.ops.push(Op { table: T::INDEX, key: key.encode(), value: None });
    }

    /// Writes the batch atomically, in table and key order (see [`Batch`]), each key once.
    pub(crate) fn commit(&self, batch: Batch) -> Result<()> {
        self.write_sealed(self.seal(batch))
    }

    /// Turns a batch into RocksDB's form, in table and key order, each key once: the CPU half of a commit,
    /// which [`crate::Pipeline`] does for one record while the previous one is being written.
    pub(crate) fn seal(&self, batch: Batch) -> Sealed {
        let mut by_table: Vec<Vec<Op>> = crate::tables::ALL_TABLES.iter().map(|_| Vec::new()).collect();
        let writes = batch.ops.len();
        let trie = batch.trie;
        for op in batch.ops {
            by_table[op.table].push(op);
        }
        sort_tables(&mut by_table, writes);
        let mut inner = WriteBatch::default();
        for (name, ops) in crate::tables::ALL_TABLES.iter().zip(by_table) {
            let table = self.cf(name);
            let mut ops = ops.into_iter().peekable();
            while let Some(op) = ops.next() {
                // Only the last write of a key in one atomic batch is ever seen, so the earlier ones are not
                // written at all: a block's logs put the same (topic, block) index key once per log (a
                // Transfer event's topic hundreds of times on mainnet).
                if ops.peek().is_some_and(|next| next.key == op.key) {
                    continue;
                }
                match op.value {
                    Some(value) => inner.put_cf(table, op.key, value),
                    None => inner.delete_cf(table, op.key),
                }
            }
        }
        Sealed { inner, unlogged: false, trie }
    }

    /// Writes a sealed batch atomically: through the write-ahead log, or without it when it was caught up
    /// ([`Sealed::catching_up`]). A logged write never follows unlogged ones that are not flushed yet: they
    /// are flushed first (see [`Store::persist`]).
    pub(crate) fn write_sealed(&self, Sealed { inner, unlogged, trie }: Sealed) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.opts.sync_writes);
        let (ops, bytes) = (inner.len() as u64, inner.size_in_bytes() as u64);
        if unlogged {
            // Marked and written under one lock: a flush ([`Store::persist`], from another thread: a snapshot)
            // then either covers this write or leaves its mark for the next flush.
            let mut since = self.unlogged_since.lock().unwrap_or_else(|p| p.into_inner());
            let first = *since.get_or_insert_with(Instant::now);
            wo.disable_wal(true);
            self.db.write_opt(inner, &wo)?;
            drop(since);
            self.written.unlogged_batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            // A bound on what a crash can lose while catching up: RocksDB flushes on its own whenever a
            // memtable fills (every ten groups or so of mainnet blocks), this when the blocks are small or few.
            if first.elapsed() >= self.opts.catch_up_flush_interval {
                self.persist()?;
            }
        } else {
            self.persist()?;
            self.db.write_opt(inner, &wo)?;
        }
        if let Some(change) = trie {
            self.trie_history.record(change);
        }
        self.written.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.written.ops.fetch_add(ops, std::sync::atomic::Ordering::Relaxed);
        self.written.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// Makes every write so far durable: when batches were written without the write-ahead log since the last
    /// flush, flushes the memtables of every table, together (one atomic flush: a store that writes without
    /// the log opens with `atomic_flush`, so a crash never leaves one table's half of a batch without the
    /// other's). Cheap when there is nothing unlogged.
    ///
    /// Why that is crash-safe: the offset a batch carries is in the batch, so whatever state a crash leaves
    /// (the last flush plus the logged writes after it) names the records it holds, and the replica replays
    /// the rest from Kafka. The one thing that must never happen is a logged write after unlogged ones that
    /// are not flushed: the log replayed after a crash would lay it over a state missing them. Hence every
    /// logged write calls this first.
    pub fn persist(&self) -> Result<()> {
        let mut since = self.unlogged_since.lock().unwrap_or_else(|p| p.into_inner());
        if since.is_some() {
            self.flush_all_tables()?;
            self.written.persists.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            *since = None;
        }
        Ok(())
    }

    /// One atomic flush of every table's memtable, waited for.
    fn flush_all_tables(&self) -> Result<()> {
        let cfs: Vec<_> = crate::tables::ALL_TABLES.iter().map(|name| self.cf(name)).collect();
        let mut opts = rocksdb::FlushOptions::default();
        opts.set_wait(true);
        self.db.flush_cfs_opt(&cfs, &opts)?;
        Ok(())
    }

    /// Counts a trie update's walk ([`crate::WriteStats::trie_leaves_read`]).
    pub(crate) fn count_walk(&self, walked: &crate::trie::walk::Walked) {
        use std::sync::atomic::Ordering::Relaxed;
        self.written.trie_leaves_read.fetch_add(walked.leaves_read as u64, Relaxed);
        self.written.trie_leaf_hashes_given.fetch_add(walked.leaf_hashes_given as u64, Relaxed);
    }

    /// What this store has committed since it was opened.
    pub fn write_stats(&self) -> crate::WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        crate::WriteStats {
            batches: self.written.batches.load(Relaxed),
            ops: self.written.ops.load(Relaxed),
            bytes: self.written.bytes.load(Relaxed),
            trie_leaves_read: self.written.trie_leaves_read.load(Relaxed),
            trie_leaf_hashes_given: self.written.trie_leaf_hashes_given.load(Relaxed),
            unlogged_batches: self.written.unlogged_batches.load(Relaxed),
            persists: self.written.persists.load(Relaxed),
        }
    }

    /// Flushes every memtable to SST files, all tables at once (the benchmark measures the size on disk
    /// after it).
    pub fn flush(&self) -> Result<()> {
        let mut since = self.unlogged_since.lock().unwrap_or_else(|p| p.into_inner());
        self.flush_all_tables()?;
        *since = None;
        Ok(())
    }

    /// Iterates a whole table by name, raw, in key order (for the checksum).
    pub(crate) fn raw_iter(&self, name: &'static str) -> rocksdb::DBRawIterator<'_> {
        let mut it = self.db.raw_iterator_cf(self.cf(name));
        it.seek_to_first();
        it
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tables::{Canonical, Meta, MetaKey};
    use alloy_primitives::{B256, U256};

    /// The batch is sorted before it is written: two writes of one key must still end as the later one, which
    /// is the only one written.
    #[test]
    fn the_last_write_of_a_key_wins_and_alone_is_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::StoreOptions::default()).expect("opens");
        let hash = |n: u8| B256::repeat_byte(n);
        let mut batch = Batch::default();
        // Key order differs from arrival order, across two tables.
        store.put::<Canonical>(&mut batch, &9, &hash(1));
        store.put::<Meta>(&mut batch, &MetaKey::Heartbeat, &vec![1].into());
        store.put::<Canonical>(&mut batch, &3, &hash(2));
        store.delete::<Canonical>(&mut batch, &9);
        store.put::<Canonical>(&mut batch, &5, &hash(3));
        store.put::<Canonical>(&mut batch, &9, &hash(4));
        store.put::<Canonical>(&mut batch, &3, &hash(5));
        store.delete::<Canonical>(&mut batch, &5);
        let before = store.write_stats().ops;
        store.commit(batch).expect("commits");
        assert_eq!(store.write_stats().ops - before, 4, "one write per key");
        assert_eq!(store.get::<Canonical>(&9).expect("reads"), Some(hash(4)));
        assert_eq!(store.get::<Canonical>(&3).expect("reads"), Some(hash(5)));
        assert_eq!(store.get::<Canonical>(&5).expect("reads"), None);
        assert_eq!(store.get::<Meta>(&MetaKey::Heartbeat).expect("reads"), Some(vec![1].into()));
    }

    /// A batch large enough that its tables are sorted on every core: still each key once, the later write
    /// winning, across tables.
    #[test]
    fn a_large_batch_sorted_on_every_core_keeps_the_last_write_of_each_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), crate::StoreOptions::default()).expect("opens");
        let keys = 20_000u64;
        let mut batch = Batch::default();
        // Every key three times in a scattered order (the last round deleting every fifth), and a second table.
        for round in 0..3u64 {
            for i in 0..keys {
                let key = (i * 7_919) % keys;
                match round {
                    2 if key.is_multiple_of(5) => store.delete::<Canonical>(&mut batch, &key),
                    _ => {
                        store.put::<Canonical>(&mut batch, &key, &B256::from(U256::from(round * keys + key)))
                    }
                }
            }
        }
        store.put::<Meta>(&mut batch, &MetaKey::Heartbeat, &vec![7].into());
        assert!(batch.ops.len() >= PARALLEL_SORT_FROM, "{} writes", batch.ops.len());
        let before = store.write_stats().ops;
        store.commit(batch).expect("commits");
        assert_eq!(store.write_stats().ops - before, keys + 1, "one write per key");
        for key in 0..keys {
            let want = (!key.is_multiple_of(5)).then(|| B256::from(U256::from(2 * keys + key)));
            assert_eq!(store.get::<Canonical>(&key).expect("reads"), want, "key {key}");
        }
        assert_eq!(store.get::<Meta>(&MetaKey::Heartbeat).expect("reads"), Some(vec![7].into()));
    }
}
