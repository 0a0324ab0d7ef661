//! The walk's cursors over the database: stored nodes of one trie, and its leaves with a set of new values
//! laid over them (a block not yet committed, or an older block's values for a proof at that block).

use std::{collections::BTreeMap, ops::Bound};

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

impl DbNodes<'_> {
    fn key(&self, path: &Nibbles) -> Vec<u8> {
        let mut key = self.prefix.clone();
        key.extend_from_slice(&path.to_vec());
        key
    }

    /// The node stored at `path`, if any.
    pub(crate) fn at(&mut self, path: &Nibbles) -> Result<Option<TrieNode>> {
        let key = self.key(path);
        match self.store.db.get_pinned_cf_opt(self.store.cf(self.table), &key, &self.get_opts)? {
            Some(value) => self.decode(&key, &value).map(|(_, node)| Some(node)),
            None => Ok(None),
        }
    }

    /// The first node stored at or after `path` (in the trie's order), anywhere in this trie.
    pub(crate) fn first_from(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>> {
        self.it.seek(self.key(path));
        let found = match (self.it.key(), self.it.value()) {
            (Some(k), Some(v)) if k.starts_with(&self.prefix) => Some(self.decode(k, v)?),
            _ => None,
        };
        self.it.status()?;
        Ok(found)
    }
}

impl NodeCursor for DbNodes<'_> {
    fn seek_under(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>> {
        let key = self.key(path);
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

/// New leaf values laid over a trie's stored leaves: a block's change in memory, or an older block's
/// values read from history as the cursor reaches them ([`super::history`]).
pub(crate) trait Overlay {
    /// The first key from `from` on that the overlay has a value for.
    fn next_key(&self, from: Bound<B256>) -> Option<B256>;
    /// That key's leaf value (`None`: the leaf is gone).
    fn leaf(&self, key: &B256) -> Result<Option<Vec<u8>>>;
}

impl Overlay for BTreeMap<B256, Option<Vec<u8>>> {
    fn next_key(&self, from: Bound<B256>) -> Option<B256> {
        self.range((from, Bound::Unbounded)).next().map(|(k, _)| *k)
    }

    fn leaf(&self, key: &B256) -> Result<Option<Vec<u8>>> {
        Ok(self.get(key).cloned().flatten())
    }
}

/// The leaves of one trie: the entries of a state table under `prefix`, each key's value in `overlay`
/// replacing the stored one (`None`: the leaf is gone). Stored values are turned into leaf values by
/// `encode`; the overlay's already are leaf values.
pub(crate) struct DbLeaves<'a, E, O = BTreeMap<B256, Option<Vec<u8>>>> {
    it: rocksdb::DBRawIterator<'a>,
    table: &'static str,
    prefix: Vec<u8>,
    overlay: &'a O,
    encode: E,
    /// The stored entry the cursor is at (its key within the prefix).
    stored: Option<B256>,
    /// The overlay entry the cursor is at.
    laid: Option<B256>,
}

impl<'a, E: FnMut(&B256, &[u8]) -> Result<Vec<u8>>, O: Overlay> DbLeaves<'a, E, O> {
    pub(crate) fn new<T: Table>(source: &'a impl Source, prefix: &[u8], overlay: &'a O, encode: E) -> Self {
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

    fn laid_from(&self, key: Bound<B256>) -> Option<B256> {
        self.overlay.next_key(key)
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
                if let Some(value) = self.overlay.leaf(&next)? {
                    return Ok(Some((next, value)));
                }
                // Gone: on to the next leaf.
            }
        }
    }
}

impl<E: FnMut(&B256, &[u8]) -> Result<Vec<u8>>, O: Overlay> LeafCursor for DbLeaves<'_, E, O> {
    fn seek(&mut self, key: B256) -> Result<Option<(B256, Vec<u8>)>> {
        let mut at = self.prefix.clone();
        at.extend_from_slice(key.as_slice());
        self.it.seek(&at);
        self.stored = self.stored_key()?;
        self.laid = self.laid_from(Bound::Included(key));
        self.pull()
    }

    fn next(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
        self.pull()
    }
}
