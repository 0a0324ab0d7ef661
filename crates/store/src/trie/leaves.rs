//! The walk's cursors over the database: stored nodes of one trie, and its leaves with a set of new values
//! laid over them (a block not yet committed, or an older block's values for a proof at that block).

use std::collections::BTreeMap;

use alloy_primitives::B256;
use alloy_trie::Nibbles;

use super::{
    path_of,
    walk::{LeafCursor, NodeCursor},
    TrieNode,
};
use crate::{
    batch::Source,
    error::{Result, StoreError},
    tables::{Table, Value},
    Store,
};

/// The stored nodes of one trie: table `T`, under `prefix` (a hashed address in the storage tries' table,
/// nothing in the account trie's).
pub(crate) struct DbNodes<'a> {
    store: &'a Store,
    /// For point reads (a view's snapshot, when read through one).
    get_opts: rocksdb::ReadOptions,
    it: rocksdb::DBRawIterator<'a>,
    table: &'static str,
    prefix: Vec<u8>,
}

impl<'a> DbNodes<'a> {
    pub(crate) fn new<T: Table>(source: &'a impl Source, prefix: &[u8]) -> Self {
        let store = source.store();
        let it = store.db.raw_iterator_cf_opt(store.cf(T::NAME), source.read_options());
        Self { store, get_opts: source.read_options(), it, table: T::NAME, prefix: prefix.to_vec() }
    }

    fn decode(&self, key: &[u8], value: &[u8]) -> Result<(Nibbles, TrieNode)> {
        let corrupt = |reason: String| StoreError::Corrupt { table: self.table, reason };
        let found = path_of(&key[self.prefix.len()..])
            .ok_or_else(|| corrupt(format!("key {key:02x?} is not a nibble path")))?;
        Ok((found, TrieNode::decode(value).map_err(corrupt)?))
    }
}

impl NodeCursor for DbNodes<'_> {
    fn seek_under(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(&path.to_vec());
        // Most stored nodes sit right at the path asked for (an extension in between is the exception): a
        // point read, which the bloom filters keep to one level of the tree, before a seek, which reads a
        // block of every level.
        let cf = self.store.cf(self.table);
        if let Some(value) = self.store.db.get_pinned_cf_opt(cf, &key, &self.get_opts)? {
            return self.decode(&key, &value).map(Some);
        }
        self.it.seek(&key);
        let found = match (self.it.key(), self.it.value()) {
            (Some(k), Some(v)) if k.starts_with(&key) => Some(self.decode(k, v)?),
            _ => None,
        };
        self.it.status()?;
        Ok(found)
    }
}

/// The leaves of one trie: the entries of a state table under `prefix`, each key's value in `overlay`
/// replacing the stored one (`None`: the leaf is gone). Stored values are turned into leaf values by
/// `encode`; the overlay's already are leaf values.
pub(crate) struct DbLeaves<'a, E> {
    it: rocksdb::DBRawIterator<'a>,
    table: &'static str,
    prefix: Vec<u8>,
    overlay: &'a BTreeMap<B256, Option<Vec<u8>>>,
    encode: E,
    /// The stored entry the cursor is at (its key within the prefix).
    stored: Option<B256>,
    /// The overlay entry the cursor is at.
    laid: Option<B256>,
}

impl<'a, E: FnMut(&B256, &[u8]) -> Result<Vec<u8>>> DbLeaves<'a, E> {
    pub(crate) fn new<T: Table>(
        source: &'a impl Source,
        prefix: &[u8],
        overlay: &'a BTreeMap<B256, Option<Vec<u8>>>,
        encode: E,
    ) -> Self {
        let store = source.store();
        let it = store.db.raw_iterator_cf_opt(store.cf(T::NAME), source.read_options());
        Self { it, table: T::NAME, prefix: prefix.to_vec(), overlay, encode, stored: None, laid: None }
    }

    /// The stored key the iterator is at, if still under the prefix.
    fn stored_key(&self) -> Result<Option<B256>> {
        match self.it.key() {
            Some(k) if k.starts_with(&self.prefix) => {
                let rest = &k[self.prefix.len()..];
                B256::try_from(rest).map(Some).map_err(|_| StoreError::Corrupt {
                    table: self.table,
                    reason: format!("key of {} bytes under a {}-byte prefix", k.len(), self.prefix.len()),
                })
            }
            _ => {
                self.it.status()?;
                Ok(None)
            }
        }
    }

    fn laid_from(&self, key: std::ops::Bound<B256>) -> Option<B256> {
        self.overlay.range((key, std::ops::Bound::Unbounded)).next().map(|(k, _)| *k)
    }

    /// The smaller of the two positions as the next leaf; moves past it.
    fn pull(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
        use std::ops::Bound::Excluded;
        loop {
            let next = match (self.stored, self.laid) {
                (None, None) => return Ok(None),
                (Some(s), Some(l)) => s.min(l),
                (Some(s), None) => s,
                (None, Some(l)) => l,
            };
            if self.stored == Some(next) {
                let value = if self.laid == Some(next) {
                    None
                } else {
                    let raw = self.it.value().unwrap_or_default();
                    Some((self.encode)(&next, raw)?)
                };
                self.it.next();
                self.stored = self.stored_key()?;
                if let Some(value) = value {
                    return Ok(Some((next, value)));
                }
            }
            if self.laid == Some(next) {
                self.laid = self.laid_from(Excluded(next));
                if let Some(Some(value)) = self.overlay.get(&next) {
                    return Ok(Some((next, value.clone())));
                }
                // Gone: on to the next leaf.
            }
        }
    }
}

impl<E: FnMut(&B256, &[u8]) -> Result<Vec<u8>>> LeafCursor for DbLeaves<'_, E> {
    fn seek(&mut self, key: B256) -> Result<Option<(B256, Vec<u8>)>> {
        let mut at = self.prefix.clone();
        at.extend_from_slice(key.as_slice());
        self.it.seek(&at);
        self.stored = self.stored_key()?;
        self.laid = self.laid_from(std::ops::Bound::Included(key));
        self.pull()
    }

    fn next(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
        self.pull()
    }
}
