//! Typed access to the tables: reads straight from the database, writes into one [`Batch`].

use rocksdb::{ReadOptions, WriteBatch, WriteOptions};

use crate::{
    error::{Result, StoreError},
    tables::{Key, Table, Value},
    Store,
};

/// Where reads come from: the database as it is now ([`Store`]) or as it was at one instant
/// ([`crate::StoreView`]). Sealed: the typed primitives below are the crate's own; other crates read
/// through [`crate::Reads`].
pub trait Source {
    fn store(&self) -> &Store;

    /// Options every read takes (a view's snapshot).
    fn read_options(&self) -> ReadOptions;

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
#[derive(Default)]
pub(crate) struct Batch {
    pub(crate) inner: WriteBatch,
}

impl Store {
    pub(crate) fn cf(&self, name: &'static str) -> &rocksdb::ColumnFamily {
        // Every table is created in `Store::open`; a missing handle is a bug in this crate, not bad input.
        self.db.cf_handle(name).expect("column family created at open")
    }

    pub(crate) fn put<T: Table>(&self, batch: &mut Batch, key: &T::Key, value: &T::Value) {
        batch.inner.put_cf(self.cf(T::NAME), key.encode(), value.encode());
    }

    pub(crate) fn delete<T: Table>(&self, batch: &mut Batch, key: &T::Key) {
        batch.inner.delete_cf(self.cf(T::NAME), key.encode());
    }

    /// Writes the batch atomically.
    pub(crate) fn commit(&self, batch: Batch) -> Result<()> {
        let mut wo = WriteOptions::default();
        wo.set_sync(self.opts.sync_writes);
        let (ops, bytes) = (batch.inner.len() as u64, batch.inner.size_in_bytes() as u64);
        self.db.write_opt(batch.inner, &wo)?;
        self.written.batches.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.written.ops.fetch_add(ops, std::sync::atomic::Ordering::Relaxed);
        self.written.bytes.fetch_add(bytes, std::sync::atomic::Ordering::Relaxed);
        Ok(())
    }

    /// What this store has committed since it was opened.
    pub fn write_stats(&self) -> crate::WriteStats {
        use std::sync::atomic::Ordering::Relaxed;
        crate::WriteStats {
            batches: self.written.batches.load(Relaxed),
            ops: self.written.ops.load(Relaxed),
            bytes: self.written.bytes.load(Relaxed),
        }
    }

    /// Flushes every memtable to SST files (the benchmark measures the size on disk after it).
    pub fn flush(&self) -> Result<()> {
        for name in crate::tables::ALL_TABLES {
            self.db.flush_cf(self.cf(name))?;
        }
        Ok(())
    }

    /// Iterates a whole table by name, raw, in key order (for the checksum).
    pub(crate) fn raw_iter(&self, name: &'static str) -> rocksdb::DBRawIterator<'_> {
        let mut it = self.db.raw_iterator_cf(self.cf(name));
        it.seek_to_first();
        it
    }
}
