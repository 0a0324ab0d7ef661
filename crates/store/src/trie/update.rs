//! A state change applied to the stored trie: the changed storage tries first, then the account trie,
//! each node change into the caller's write batch; returns the new state root.

use std::collections::BTreeMap;

use alloy_primitives::B256;
use alloy_trie::{HashBuilder, Nibbles, EMPTY_ROOT_HASH};

use super::{
    account_leaf,
    history::Recorded,
    leaves::{DbLeaves, DbNodes},
    slot_leaf,
    walk::{Walk, Walked},
    PrefixSet, TriePath,
};
use crate::{
    batch::{Batch, Source},
    cores::on_every_core,
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
    /// delta's leaves too, which the walk takes from `delta` instead). With `record`, also what it replaced,
    /// as it was ([`super::history`]).
    pub(crate) fn update_trie(
        &self,
        batch: &mut Batch,
        delta: &StateDelta,
        record: bool,
    ) -> Result<(B256, Option<Recorded>)> {
        let mut recorded = record.then(|| Recorded::new(delta));
        let mut overlay = BTreeMap::new();
        let storage = self.storage_roots_after(delta)?;
        for ((key, change), (storage_root, walked)) in delta.accounts.iter().zip(storage) {
            if let Some(mut walked) = walked {
                self.count_walk(&walked);
                if let Some(r) = recorded.as_mut() {
                    r.storage_walk(*key, &mut walked);
                }
                for path in &walked.removed {
                    self.delete::<StorageTrie>(batch, &(*key, TriePath(*path)));
                }
                for (path, node) in walked.updated {
                    self.put::<StorageTrie>(batch, &(*key, TriePath(path)), &node);
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
        let mut walked = match self.walk_accounts_in_parallel(&overlay)? {
            Some(walked) => walked,
            None => self.walk_accounts(&overlay, delta.accounts.keys(), &[])?,
        };
        self.count_walk(&walked);
        if let Some(r) = recorded.as_mut() {
            r.account_walk(&mut walked);
        }
        for path in &walked.removed {
            self.delete::<AccountTrie>(batch, &TriePath(*path));
        }
        for (path, node) in walked.updated {
            self.put::<AccountTrie>(batch, &TriePath(path), &node);
        }
        Ok((walked.root, recorded))
    }
}

/// Below this many changed slots in a state change, its storage tries are walked on the calling thread: a
/// thread costs more than it saves.
const PARALLEL_MIN_SLOTS: usize = 256;

/// An account's storage root after a change, with the walk that computed it (none when no slot changed).
type StorageAfter = (B256, Option<Walked>);

impl Store {
    /// Each changed account's storage root after `delta`, in the delta's order, with the walk that computed
    /// it. The storage tries are independent of each other, and walking them (reading the leaves around each
    /// change and hashing) is about a third of a block's trie update, so they are walked on every core
    /// ([`TrieWalks::each_storage_trie`]).
    fn storage_roots_after(&self, delta: &StateDelta) -> Result<Vec<StorageAfter>> {
        self.each_storage_trie(delta, |key, change| self.storage_root_after(key, change))
    }
}

/// Below this many changed accounts, the account trie is walked whole on the calling thread.
const PARALLEL_MIN_ACCOUNTS: usize = 256;

impl Store {
    /// The account trie's walk split by the changed keys' first nibble, the subtrees walked on every core
    /// and their hashes then put together under the root: the same root and nodes as one walk
    /// ([`TrieWalks::walk_accounts`]). Only where the stored root's 16 children are all hashed branches (a
    /// mainnet-sized state) and each changed one still is afterwards; `None` otherwise, and the caller walks
    /// the whole trie.
    fn walk_accounts_in_parallel(&self, overlay: &BTreeMap<B256, Option<Vec<u8>>>) -> Result<Option<Walked>> {
        let workers = crate::cores::available();
        if workers < 2 || overlay.len() < PARALLEL_MIN_ACCOUNTS {
            return Ok(None);
        }
        let Some(stored_root) = self.get::<AccountTrie>(&TriePath(Nibbles::default()))? else {
            return Ok(None);
        };
        let root = stored_root.branch.clone();
        if root.state_mask.get() != u16::MAX || root.hash_mask != root.state_mask {
            return Ok(None);
        }
        let mut tops: Vec<u8> = overlay.keys().map(|key| key[0] >> 4).collect();
        tops.dedup();
        let changed = PrefixSet::new(overlay.keys().copied());
        let deleted = PrefixSet::new(gone(overlay));
        let walk = |&top: &u8| {
            let nodes = DbNodes::new::<AccountTrie>(self, &[]);
            let leaves =
                DbLeaves::new::<Accounts>(self, &[], overlay, |key, raw| stored_account_leaf(self, key, raw));
            Walk::new(nodes, leaves, &changed, &deleted).subtree(Nibbles::from_nibbles_unchecked([top])).run()
        };
        let done = on_every_core(&tops, workers, walk);
        let mut subtrees: [Option<Walked>; 16] = Default::default();
        for (top, walked) in tops.into_iter().zip(done) {
            let walked = walked?;
            // A subtree whose top is no longer a stored branch: its hash is not what the root keeps.
            if !walked.updated.contains_key(&Nibbles::from_nibbles_unchecked([top])) {
                return Ok(None);
            }
            subtrees[usize::from(top)] = Some(walked);
        }

        let mut hb = HashBuilder::default().with_updates(true);
        let mut all = Walked { visited: vec![(Nibbles::default(), stored_root)], ..Walked::default() };
        for (nibble, old) in (0..16u8).zip(root.hashes.iter()) {
            let path = Nibbles::from_nibbles_unchecked([nibble]);
            match subtrees[usize::from(nibble)].take() {
                Some(walked) => {
                    hb.add_branch(path, walked.root, true);
                    all.updated.extend(walked.updated);
                    all.removed.extend(walked.removed);
                    all.visited.extend(walked.visited);
                    all.leaves_read += walked.leaves_read;
                    all.leaf_hashes_given += walked.leaf_hashes_given;
                }
                None => hb.add_branch(path, *old, root.tree_mask.is_bit_set(nibble)),
            }
        }
        all.root = hb.root();
        let (_, top) = hb.split();
        all.updated.extend(top.into_iter().map(|(path, node)| (path, node.into())));
        Ok(Some(all))
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
        let deleted = PrefixSet::new(gone(&overlay));
        let nodes = DbNodes::new::<StorageTrie>(self, account.as_slice());
        let leaves =
            DbLeaves::new::<Storage>(self, account.as_slice(), &overlay, |_, raw| stored_slot_leaf(raw));
        Walk::new(nodes, leaves, &changed, &deleted).with_proof(targets).run()
    }

    /// An account's storage root after `change`: the stored one when no slot changes, else the walk over the
    /// changed slots (returned too, with the nodes it changed).
    fn storage_root_after(&self, account: &B256, change: &AccountDelta) -> Result<StorageAfter> {
        if change.slots.is_empty() {
            return Ok((stored_storage_root(self, account)?, None));
        }
        let walked = self.walk_storage(account, &change.slots, &[])?;
        Ok((walked.root, Some(walked)))
    }

    /// `work` for each account of `delta`, the results in the delta's order. When the change names
    /// [`PARALLEL_MIN_SLOTS`] slots or more, on every core: the largest storage trie first, each worker
    /// taking the next when it is done (the accounts are independent of each other).
    fn each_storage_trie<R: Send>(
        &self,
        delta: &StateDelta,
        work: impl Fn(&B256, &AccountDelta) -> Result<R> + Sync,
    ) -> Result<Vec<R>>
    where
        Self: Sync,
    {
        let items: Vec<(&B256, &AccountDelta)> = delta.accounts.iter().collect();
        let slots: usize = items.iter().map(|(_, c)| c.slots.len()).sum();
        let tries = items.iter().filter(|(_, c)| !c.slots.is_empty()).count();
        let workers = crate::cores::available().min(tries);
        if workers < 2 || slots < PARALLEL_MIN_SLOTS {
            return items.iter().map(|(key, change)| work(key, change)).collect();
        }
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(items[i].1.slots.len()));
        let done = on_every_core(&order, workers, |&i| work(items[i].0, items[i].1));
        // Back in the delta's order.
        let mut out: Vec<Option<R>> = (0..items.len()).map(|_| None).collect();
        for (i, result) in order.into_iter().zip(done) {
            out[i] = Some(result?);
        }
        debug_assert!(out.iter().all(Option::is_some));
        Ok(out.into_iter().flatten().collect())
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
        let deleted = PrefixSet::new(gone(overlay));
        let nodes = DbNodes::new::<AccountTrie>(self, &[]);
        let leaves =
            DbLeaves::new::<Accounts>(self, &[], overlay, |key, raw| stored_account_leaf(self, key, raw));
        Walk::new(nodes, leaves, &changed, &deleted).with_proof(targets).run()
    }
}

impl<S: Source> TrieWalks for S {}

/// The keys an overlay removes (or keeps absent).
fn gone(overlay: &BTreeMap<B256, Option<Vec<u8>>>) -> impl Iterator<Item = B256> + '_ {
    overlay.iter().filter(|(_, value)| value.is_none()).map(|(key, _)| *key)
}

#[cfg(test)]
mod tests {
    use alloy_primitives::{keccak256, U256};
    use alloy_trie::KECCAK_EMPTY;
    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;
    use crate::StoreOptions;

    /// Enough changed slots over enough accounts that the storage tries are walked on every core (slots set,
    /// changed and cleared, some accounts without storage changes): round after round the updated trie's root
    /// equals a rebuild of the whole state from its tables.
    #[test]
    fn storage_tries_walked_in_parallel_give_the_rebuilt_root() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("opens");
        let mut rng = StdRng::seed_from_u64(3);
        let accounts: Vec<B256> = (0u8..12).map(|i| keccak256([i])).collect();
        let mut held: BTreeMap<B256, Vec<B256>> = BTreeMap::new();
        for round in 0u64..4 {
            let (mut batch, mut delta) = (Batch::default(), StateDelta::default());
            for (i, key) in accounts.iter().enumerate() {
                let account = StoredAccount { nonce: round, balance: U256::from(i), code_hash: KECCAK_EMPTY };
                let mut slots = BTreeMap::new();
                for _ in 0..(i as u64 * 25 + round * 7) {
                    let existing = held.get(key).filter(|h| !h.is_empty() && rng.random_bool(0.3));
                    let slot = match existing {
                        Some(h) => h[rng.random_range(0..h.len())],
                        None => B256::from(rng.random::<[u8; 32]>()),
                    };
                    let value = if rng.random_bool(0.2) {
                        B256::ZERO
                    } else {
                        B256::from(U256::from(rng.random::<u64>() | 1))
                    };
                    slots.insert(slot, value);
                }
                store.put::<Accounts>(&mut batch, key, &account);
                let h = held.entry(*key).or_default();
                for (slot, value) in &slots {
                    h.retain(|s| s != slot);
                    if value.is_zero() {
                        store.delete::<Storage>(&mut batch, &(*key, *slot));
                    } else {
                        store.put::<Storage>(&mut batch, &(*key, *slot), value);
                        h.push(*slot);
                    }
                }
                delta.accounts.insert(*key, AccountDelta { account: Some(account), slots });
            }
            let changed: usize = delta.accounts.values().map(|c| c.slots.len()).sum();
            assert!(changed >= PARALLEL_MIN_SLOTS, "round {round}: {changed} slots");
            let (root, _) = store.update_trie(&mut batch, &delta, false).expect("updates");
            store.commit(batch).expect("commits");
            assert_eq!(root, store.state_root().expect("rebuilds"), "round {round}");
        }
    }

    /// Enough changed accounts that the account trie is walked as 16 subtrees on every core: round after
    /// round (accounts changed, created and deleted) the subtrees give what one walk gives (root, nodes
    /// written and removed), the root equals a rebuild's and the trie tables a build's.
    #[test]
    fn the_account_trie_walked_as_subtrees_gives_what_one_walk_gives() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("opens");
        let mut rng = StdRng::seed_from_u64(5);
        let account = |rng: &mut StdRng| StoredAccount {
            nonce: rng.random_range(0..100),
            balance: U256::from(rng.random::<u64>()),
            code_hash: KECCAK_EMPTY,
        };
        // Hundreds of accounts under every first nibble: the root's children are all hashed branches.
        let mut held: Vec<B256> = (0u32..4_000).map(|i| keccak256(i.to_be_bytes())).collect();
        let mut batch = Batch::default();
        for key in &held {
            store.put::<Accounts>(&mut batch, key, &account(&mut rng));
        }
        store.commit(batch).expect("commits");
        store.build_trie().expect("builds");
        let trie_tables = || store.checksum().expect("checksum").of_tables(crate::tables::TRIE_TABLES);

        for round in 0u32..4 {
            let (mut batch, mut delta) = (Batch::default(), StateDelta::default());
            for i in 0..400u32 {
                let (key, value) = match i % 10 {
                    // Deleted.
                    0 => (held.swap_remove(rng.random_range(0..held.len())), None),
                    // Created.
                    1 => {
                        (keccak256([round.to_be_bytes(), i.to_be_bytes()].concat()), Some(account(&mut rng)))
                    }
                    _ => (held[rng.random_range(0..held.len())], Some(account(&mut rng))),
                };
                match &value {
                    Some(a) => store.put::<Accounts>(&mut batch, &key, a),
                    None => store.delete::<Accounts>(&mut batch, &key),
                }
                delta.accounts.insert(key, AccountDelta { account: value, slots: BTreeMap::new() });
            }
            let created: Vec<B256> = delta
                .accounts
                .iter()
                .filter(|(key, change)| change.account.is_some() && !held.contains(key))
                .map(|(key, _)| *key)
                .collect();
            held.extend(created);

            let overlay: BTreeMap<B256, Option<Vec<u8>>> = delta
                .accounts
                .iter()
                .map(|(key, change)| {
                    (*key, change.account.as_ref().map(|a| account_leaf(a, EMPTY_ROOT_HASH)))
                })
                .collect();
            let split =
                store.walk_accounts_in_parallel(&overlay).expect("walks").expect("walked as subtrees");
            let whole = store.walk_accounts(&overlay, overlay.keys(), &[]).expect("walks");
            assert_eq!(split.root, whole.root, "round {round}");
            assert_eq!(split.updated, whole.updated, "round {round}: nodes written");
            let sorted = |mut v: Vec<Nibbles>| {
                v.sort();
                v
            };
            assert_eq!(sorted(split.removed), sorted(whole.removed), "round {round}: nodes removed");

            let (root, _) = store.update_trie(&mut batch, &delta, false).expect("updates");
            store.commit(batch).expect("commits");
            assert_eq!(root, store.state_root().expect("rebuilds"), "round {round}");
            let updated = trie_tables();
            store.build_trie().expect("builds");
            assert_eq!(trie_tables(), updated, "round {round}: trie tables");
        }
    }

    /// A full build over tables large enough that its hash builders hand nodes over as they go (60,000
    /// accounts, and one account with 60,000 slots) keeps every leaf hash a build at once keeps: the
    /// nodes written, byte for byte, equal the ones one walk over the same leaves builds in memory.
    #[test]
    fn a_full_build_that_writes_nodes_as_it_goes_keeps_every_leaf_hash() {
        use crate::trie::{walk::tests::built, TrieNode};
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path(), StoreOptions::default()).expect("opens");
        let mut rng = StdRng::seed_from_u64(9);
        let big = keccak256([0u8]);
        let (mut accounts, mut slots) = (BTreeMap::new(), BTreeMap::new());
        let mut batch = Batch::default();
        for i in 0u32..60_000 {
            let key = if i == 0 { big } else { keccak256(i.to_be_bytes()) };
            let slot = keccak256([i.to_be_bytes(), [7; 4]].concat());
            let value = B256::from(U256::from(rng.random::<u64>() | 1));
            store.put::<Storage>(&mut batch, &(big, slot), &value);
            slots.insert(slot, slot_leaf(&value));
            let account = StoredAccount { nonce: 1, balance: U256::from(i), code_hash: KECCAK_EMPTY };
            store.put::<Accounts>(&mut batch, &key, &account);
            accounts.insert(key, account);
        }
        store.commit(batch).expect("commits");
        store.build_trie().expect("builds");

        let storage_nodes = built(&slots);
        assert!(storage_nodes.len() > crate::ingest::NODES_PER_BATCH, "{} nodes", storage_nodes.len());
        let storage_root = store.get::<StorageRoots>(&big).expect("reads").expect("a storage root");
        let account_leaves: BTreeMap<B256, Vec<u8>> = accounts
            .iter()
            .map(|(key, a)| (*key, account_leaf(a, if *key == big { storage_root } else { EMPTY_ROOT_HASH })))
            .collect();
        let account_nodes = built(&account_leaves);
        assert!(account_nodes.len() > crate::ingest::NODES_PER_BATCH, "{} nodes", account_nodes.len());

        let stored = |table: &'static str, prefix: &[u8]| -> BTreeMap<Nibbles, TrieNode> {
            let mut it = store.raw_iter(table);
            let mut nodes = BTreeMap::new();
            while let (Some(k), Some(v)) = (it.key(), it.value()) {
                if let Some(rest) = k.strip_prefix(prefix) {
                    let path = crate::trie::path_of(rest).expect("a nibble path");
                    nodes.insert(path, TrieNode::decode(v).expect("decodes"));
                }
                it.next();
            }
            nodes
        };
        assert_eq!(stored(AccountTrie::NAME, &[]), account_nodes, "account trie");
        assert_eq!(stored(StorageTrie::NAME, big.as_slice()), storage_nodes, "storage trie");
        assert!(account_nodes.values().any(|n| !n.leaf_hashes.is_empty()), "leaf hashes kept");
    }
}
