//! A state change applied to the stored trie: the changed storage tries first, then the account trie,
//! each node change into the caller's write batch; returns the new state root.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use alloy_trie::EMPTY_ROOT_HASH;

use super::{
    account_leaf,
    leaves::{DbLeaves, DbNodes},
    slot_leaf,
    walk::{Walk, Walked},
    PrefixSet, TrieNode, TriePath,
};
use crate::{
    batch::{Batch, Source},
    error::{Result, StoreError},
    tables::{AccountTrie, Accounts, Storage, StorageRoots, StorageTrie, StoredAccount, Table, Value},
    Store,
};

/// What a block (or a revert, or an older block's state seen from the head) changes, by hashed address: the
/// account's new value (`None`: gone) and the new value of each changed slot (zero: gone).
#[derive(Debug, Default, Clone)]
pub struct StateDelta {
    pub accounts: BTreeMap<B256, AccountDelta>,
}

#[derive(Debug, Default, Clone)]
pub struct AccountDelta {
    pub account: Option<StoredAccount>,
    pub slots: BTreeMap<B256, B256>,
}

impl StateDelta {
    /// Adds a later block's change: its account values and slot values replace these.
    pub fn extend(&mut self, later: StateDelta) {
        for (key, change) in later.accounts {
            let entry = self.accounts.entry(key).or_default();
            entry.account = change.account;
            entry.slots.extend(change.slots);
        }
    }
}

/// The storage root of an account the delta does not change: its [`StorageRoots`] entry.
pub(crate) fn stored_storage_root(source: &impl Source, account: &B256) -> Result<B256> {
    Ok(source.get::<StorageRoots>(account)?.unwrap_or(EMPTY_ROOT_HASH))
}

/// An account table entry as a leaf (with its stored storage root).
pub(crate) fn stored_account_leaf(source: &impl Source, key: &B256, raw: &[u8]) -> Result<Vec<u8>> {
    let account = StoredAccount::decode(raw).map_err(|reason| StoreError::Corrupt {
        table: Accounts::NAME,
        reason: format!("{key}: {reason}"),
    })?;
    Ok(account_leaf(&account, stored_storage_root(source, key)?))
}

/// A storage table entry as a leaf.
pub(crate) fn stored_slot_leaf(raw: &[u8]) -> Result<Vec<u8>> {
    let value = B256::try_from(raw).map_err(|_| StoreError::Corrupt {
        table: Storage::NAME,
        reason: format!("value of {} bytes, expected 32", raw.len()),
    })?;
    Ok(slot_leaf(&value))
}

impl Store {
    /// Applies `delta` to the stored trie: writes the changed nodes and storage roots into `batch` and
    /// returns the new state root. Reads the database as it is before the batch (the batch holds the
    /// delta's leaves too, which the walk takes from `delta` instead).
    pub(crate) fn update_trie(&self, batch: &mut Batch, delta: &StateDelta) -> Result<B256> {
        let mut overlay = BTreeMap::new();
        for (key, change) in &delta.accounts {
            let (storage_root, walked) = self.storage_root_after(key, change)?;
            if let Some(walked) = walked {
                for path in &walked.removed {
                    self.delete::<StorageTrie>(batch, &(*key, TriePath(*path)));
                }
                for (path, node) in walked.updated {
                    self.put::<StorageTrie>(batch, &(*key, TriePath(path)), &TrieNode(node));
                }
            }
            match &change.account {
                Some(_) if storage_root != EMPTY_ROOT_HASH => {
                    self.put::<StorageRoots>(batch, key, &storage_root)
                }
                _ => self.delete::<StorageRoots>(batch, key),
            }
            overlay.insert(*key, change.account.as_ref().map(|a| account_leaf(a, storage_root)));
        }
        let walked = self.walk_accounts(&overlay, delta.accounts.keys(), &[])?;
        for path in &walked.removed {
            self.delete::<AccountTrie>(batch, &TriePath(*path));
        }
        for (path, node) in walked.updated {
            self.put::<AccountTrie>(batch, &TriePath(path), &TrieNode(node));
        }
        Ok(walked.root)
    }
}

/// The walks over one source (the database now, or a view of it), shared by the apply path and proofs.
pub(crate) trait TrieWalks: Source + Sized {
    /// One account's storage trie with `slots` (hashed slot -> new value, zero: gone) laid over it; keeps the
    /// proofs of `targets`.
    fn walk_storage(&self, account: &B256, slots: &BTreeMap<B256, B256>, targets: &[B256]) -> Result<Walked> {
        let overlay: BTreeMap<B256, Option<Vec<u8>>> =
            slots.iter().map(|(k, v)| (*k, (!v.is_zero()).then(|| slot_leaf(v)))).collect();
        let changed = PrefixSet::new(slots.keys().chain(targets).copied());
        let nodes = DbNodes::new::<StorageTrie>(self, account.as_slice());
        let leaves =
            DbLeaves::new::<Storage>(self, account.as_slice(), &overlay, |_, raw| stored_slot_leaf(raw));
        Walk::new(nodes, leaves, &changed).with_proof(targets).run()
    }

    /// An account's storage root after `change`: the stored one when no slot changes, else the walk over the
    /// changed slots (returned too, with the nodes it changed).
    fn storage_root_after(&self, account: &B256, change: &AccountDelta) -> Result<(B256, Option<Walked>)> {
        if change.slots.is_empty() {
            return Ok((stored_storage_root(self, account)?, None));
        }
        let walked = self.walk_storage(account, &change.slots, &[])?;
        Ok((walked.root, Some(walked)))
    }

    /// The account trie with `overlay` (hashed address -> new leaf value, `None`: gone) laid over it, the
    /// `changed` accounts' paths walked down; keeps the proofs of `targets`.
    fn walk_accounts<'k>(
        &self,
        overlay: &BTreeMap<B256, Option<Vec<u8>>>,
        changed: impl IntoIterator<Item = &'k B256>,
        targets: &[B256],
    ) -> Result<Walked> {
        let changed = PrefixSet::new(changed.into_iter().copied().chain(targets.iter().copied()));
        let nodes = DbNodes::new::<AccountTrie>(self, &[]);
        let leaves =
            DbLeaves::new::<Accounts>(self, &[], overlay, |key, raw| stored_account_leaf(self, key, raw));
        Walk::new(nodes, leaves, &changed).with_proof(targets).run()
    }
}

impl<S: Source> TrieWalks for S {}
