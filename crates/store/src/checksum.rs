//! A digest of the database's logical content, to show that two replicas fed the same log hold the same
//! data.
//!
//! Every table is walked in key order and hashed with keccak256 over length-prefixed keys and values. The
//! Kafka offset is left out on purpose: it names a place in one particular topic, and the same log copied to
//! another topic (or replayed from another cluster's broker) must give the same digest. So are the undo
//! window the database was opened with and the history window's floor: configuration of one replica, not
//! content of the log. (History tables pruned by a history window do differ, as they should.)

use std::fmt;

use alloy_primitives::{Keccak256, B256};

use crate::{
    error::Result,
    tables::{Key, Meta, MetaKey, Table, ALL_TABLES},
    Store,
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checksum {
    pub total: B256,
    /// `(table, entries, digest)` in walk order.
    pub tables: Vec<(&'static str, u64, B256)>,
}

impl Checksum {
    /// The digest of the given tables only (for tests that compare state but not bookkeeping).
    pub fn of_tables(&self, names: &[&str]) -> B256 {
        let mut h = Keccak256::new();
        for (name, entries, digest) in &self.tables {
            if names.contains(name) {
                h.update(name.as_bytes());
                h.update(entries.to_be_bytes());
                h.update(digest);
            }
        }
        h.finalize()
    }
}

impl fmt::Display for Checksum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "checksum {}", self.total)?;
        for (name, entries, digest) in &self.tables {
            writeln!(f, "  {name:<16} {entries:>10} entries  {digest}")?;
        }
        Ok(())
    }
}

impl Store {
    pub fn checksum(&self) -> Result<Checksum> {
        // The Kafka offset names a place in one topic; the undo window is this replica's configuration.
        let skip = [
            MetaKey::KafkaOffset.encode(),
            MetaKey::UndoWindow.encode(),
            MetaKey::HistoryFloor.encode(),
            MetaKey::ImportStarted.encode(),
        ];
        let mut total = Keccak256::new();
        let mut tables = Vec::with_capacity(ALL_TABLES.len());
        // A database opened read-only may lack the (derived) trie tables: see `Store::open_read_only`.
        for &name in ALL_TABLES.iter().filter(|t| self.db.cf_handle(t).is_some()) {
            let mut h = Keccak256::new();
            let mut entries = 0u64;
            let mut it = self.raw_iter(name);
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if !(name == Meta::NAME && skip.iter().any(|s| k == s.as_slice())) {
                    h.update((k.len() as u64).to_be_bytes());
                    h.update(k);
                    h.update((v.len() as u64).to_be_bytes());
                    h.update(v);
                    entries += 1;
                }
                it.next();
            }
            it.status()?;
            let digest = h.finalize();
            total.update(name.as_bytes());
            total.update(entries.to_be_bytes());
            total.update(digest);
            tables.push((name, entries, digest));
        }
        Ok(Checksum { total: total.finalize(), tables })
    }
}
