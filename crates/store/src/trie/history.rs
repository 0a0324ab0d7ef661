//! The trie's recent past, in memory: what each of the last blocks changed in the stored trie, so that a
//! proof at a block inside the proof window reads the nodes as they were then instead of walking every key
//! changed since (as geth's path scheme reads its in-memory diff layers).
//!
//! Each block applied on its own (at the tip: a group caught up under one root is not a block's state)
//! leaves a [`TrieUnit`]: the nodes its trie update replaced or removed, as they were before it (a node it
//! created: absent), the keys it changed, and the root before it. The units of consecutive blocks are kept
//! in order, the oldest dropped once it falls out of the window or the memory bound. The state after block
//! F is then the stored trie with, for each node, the value the first unit after F recorded for it, if
//! any: [`Past`]. Its leaves are the stored ones with the keys changed since F read from the state history
//! as the walk reaches them ([`AccountsAt`], [`SlotsAt`]); the walk down to a proof's targets then reads
//! what a proof at the head reads.
//!
//! Nothing of it is on disk: a restarted replica, or one that caught up in groups, starts it again with its
//! next block, and proofs at blocks it does not cover walk every key changed since, as before
//! ([`super::proof`]). A walk over the past gives the root the unit recorded, or its answer is not used.

use std::{
    collections::{BTreeMap, VecDeque},
    ops::Bound,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, RwLock,
    },
};

use alloy_primitives::B256;
use alloy_trie::{Nibbles, EMPTY_ROOT_HASH};

use super::{
    account_leaf,
    leaves::{DbLeaves, DbNodes, Overlay},
    slot_leaf,
    update::{stored_account_leaf, stored_slot_leaf, StateDelta},
    walk::{NodeCursor, Walk, Walked},
    PrefixSet, TrieNode,
};
use crate::{
    error::{Result, StoreError},
    read::Reads,
    tables::{AccountTrie, Accounts, Storage, StorageTrie, Value},
};

/// A node as it was before a block: its encoding, or `None` where there was none.
type Prior = Option<Box<[u8]>>;

/// What one block's trie update replaced, as it was before the block.
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    account_nodes: BTreeMap<Nibbles, Prior>,
    storage_nodes: BTreeMap<(B256, Nibbles), Prior>,
    /// The accounts the block changed, with their changed slots (sorted).
    changed: BTreeMap<B256, Vec<B256>>,
}

impl Recorded {
    /// The keys `delta` changes.
    pub(crate) fn new(delta: &StateDelta) -> Self {
        let changed = delta.accounts.iter().map(|(k, d)| (*k, d.slots.keys().copied().collect())).collect();
        Self { changed, ..Self::default() }
    }

    /// A walk of the account trie: the nodes it visited as they were, and the ones it created as absent.
    pub(crate) fn account_walk(&mut self, walked: &Walked) {
        priors(walked, |path, prior| {
            self.account_nodes.insert(path, prior);
        });
    }

    /// A walk of `account`'s storage trie.
    pub(crate) fn storage_walk(&mut self, account: B256, walked: &Walked) {
        priors(walked, |path, prior| {
            self.storage_nodes.insert((account, path), prior);
        });
    }

    /// About what it takes in memory.
    fn bytes(&self) -> usize {
        const ENTRY: usize = 64;
        let prior = |p: &Prior| ENTRY + p.as_ref().map_or(0, |b| b.len());
        self.account_nodes.values().map(prior).sum::<usize>()
            + self.storage_nodes.values().map(|p| prior(p) + 32).sum::<usize>()
            + self.changed.values().map(|slots| ENTRY + 32 * (1 + slots.len())).sum::<usize>()
    }
}

/// Every node `walked` visited, as it was, then every one it created (as absent).
fn priors(walked: &Walked, mut keep: impl FnMut(Nibbles, Prior)) {
    for (path, node) in &walked.visited {
        keep(*path, Some(node.encode().into_boxed_slice()));
    }
    let visited: std::collections::HashSet<&Nibbles> = walked.visited.iter().map(|(p, _)| p).collect();
    for path in walked.updated.keys().filter(|p| !visited.contains(p)) {
        keep(*path, None);
    }
}

/// One block's trie update, undone.
#[derive(Debug)]
pub(crate) struct TrieUnit {
    /// The block.
    number: u64,
    /// The state root before it (its parent's).
    root_before: B256,
    recorded: Recorded,
    bytes: usize,
}

impl TrieUnit {
    pub(crate) fn new(number: u64, root_before: B256, recorded: Recorded) -> Self {
        let bytes = recorded.bytes();
        Self { number, root_before, recorded, bytes }
    }
}

/// What a committed batch did to the trie, for [`TrieHistory::record`].
#[derive(Debug)]
pub(crate) enum TrieChange {
    /// A block applied on its own.
    Block(TrieUnit),
    /// Blocks after `to` reverted.
    Revert { to: u64 },
    /// The trie rebuilt, or replaced by a checkpoint's: nothing before holds.
    Reset,
}

/// The units of the last blocks, oldest first, each the block after the one before.
#[derive(Debug)]
pub struct TrieHistory {
    units: RwLock<VecDeque<Arc<TrieUnit>>>,
    /// How many blocks back a proof may ask for (`0`: nothing is kept).
    window: u64,
    /// The most memory the units may take, about.
    max_bytes: usize,
    /// Proofs below the head answered from the units, and walked over every key changed since instead.
    read: AtomicU64,
    walked: AtomicU64,
}

/// How much of the trie's past a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrieHistoryStats {
    /// Consecutive blocks whose updates are held: proofs at the block before the first of them and later
    /// read nodes as they were.
    pub blocks: u64,
    pub bytes: u64,
    /// Proofs below the head answered from the held blocks, and walked over every key changed since (a
    /// block not held, or a walk whose root disagreed: see [`super::proof`]).
    pub proofs_read: u64,
    pub proofs_walked: u64,
}

impl TrieHistory {
    pub(crate) fn new(window: u64, max_bytes: usize) -> Self {
        Self {
            units: RwLock::new(VecDeque::new()),
            window,
            max_bytes,
            read: AtomicU64::new(0),
            walked: AtomicU64::new(0),
        }
    }

    /// Whether blocks are recorded at all.
    pub(crate) fn enabled(&self) -> bool {
        self.window > 0 && self.max_bytes > 0
    }

    pub(crate) fn record(&self, change: TrieChange) {
        let mut units = self.units.write().unwrap_or_else(|p| p.into_inner());
        match change {
            TrieChange::Block(unit) => {
                if units.back().is_some_and(|last| last.number + 1 != unit.number) {
                    // A gap (a group caught up under one root, a revert that went further back): the units
                    // held no longer lead to the trie as it is.
                    units.clear();
                }
                let head = unit.number;
                units.push_back(Arc::new(unit));
                // A proof reaches `window` blocks back: at block head - window it needs the units after it.
                while units.front().is_some_and(|u| u.number + self.window <= head) {
                    units.pop_front();
                }
                while units.iter().map(|u| u.bytes).sum::<usize>() > self.max_bytes {
                    units.pop_front();
                }
            }
            TrieChange::Revert { to } => {
                while units.back().is_some_and(|u| u.number > to) {
                    units.pop_back();
                }
            }
            TrieChange::Reset => units.clear(),
        }
    }

    /// The units after block `number` up to at least `head`, if every one of them is held.
    pub(crate) fn since(&self, number: u64, head: u64) -> Option<Vec<Arc<TrieUnit>>> {
        let units = self.units.read().unwrap_or_else(|p| p.into_inner());
        let first = units.iter().position(|u| u.number == number + 1)?;
        let after: Vec<Arc<TrieUnit>> = units.range(first..).cloned().collect();
        // Consecutive by construction ([`TrieHistory::record`]); they must reach the state read.
        after.last().is_some_and(|u| u.number >= head).then_some(after)
    }

    pub fn stats(&self) -> TrieHistoryStats {
        let units = self.units.read().unwrap_or_else(|p| p.into_inner());
        TrieHistoryStats {
            blocks: units.len() as u64,
            bytes: units.iter().map(|u| u.bytes as u64).sum(),
            proofs_read: self.read.load(Ordering::Relaxed),
            proofs_walked: self.walked.load(Ordering::Relaxed),
        }
    }

    /// Counts a proof below the head: answered from the units (`read`) or walked.
    pub(crate) fn count_proof(&self, read: bool) {
        let counter = if read { &self.read } else { &self.walked };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

impl crate::Store {
    /// How much of the trie's recent past this store holds, and how proofs below the head were answered.
    pub fn trie_history(&self) -> TrieHistoryStats {
        self.trie_history.stats()
    }
}

/// The trie after block `number`, seen through the units of the blocks since (oldest first).
pub(crate) struct Past<'u> {
    pub(crate) number: u64,
    units: &'u [Arc<TrieUnit>],
}

impl<'u> Past<'u> {
    pub(crate) fn new(number: u64, units: &'u [Arc<TrieUnit>]) -> Self {
        Self { number, units }
    }

    /// The state root after block `number`.
    pub(crate) fn root(&self) -> B256 {
        self.units.first().map_or(EMPTY_ROOT_HASH, |u| u.root_before)
    }

    /// The node at `path` then, when a block since changed it (`None`: no block did, the stored one holds).
    fn node(&self, account: Option<&B256>, path: &Nibbles) -> Option<&Prior> {
        self.units.iter().find_map(|u| match account {
            None => u.recorded.account_nodes.get(path),
            Some(a) => u.recorded.storage_nodes.get(&(*a, *path)),
        })
    }

    /// The first path from `from` on that a block since changed.
    fn next_node(&self, account: Option<&B256>, from: &Nibbles) -> Option<Nibbles> {
        self.units
            .iter()
            .filter_map(|u| match account {
                None => u.recorded.account_nodes.range(*from..).next().map(|(p, _)| *p),
                Some(a) => u
                    .recorded
                    .storage_nodes
                    .range((*a, *from)..)
                    .next()
                    .filter(|((k, _), _)| k == a)
                    .map(|((_, p), _)| *p),
            })
            .min()
    }

    pub(crate) fn account_changed(&self, key: &B256) -> bool {
        self.units.iter().any(|u| u.recorded.changed.contains_key(key))
    }

    pub(crate) fn slot_changed(&self, account: &B256, slot: &B256) -> bool {
        self.units
            .iter()
            .any(|u| u.recorded.changed.get(account).is_some_and(|s| s.binary_search(slot).is_ok()))
    }

    fn next_changed_account(&self, from: Bound<B256>) -> Option<B256> {
        self.units
            .iter()
            .filter_map(|u| u.recorded.changed.range((from, Bound::Unbounded)).next().map(|(k, _)| *k))
            .min()
    }

    fn next_changed_slot(&self, account: &B256, from: Bound<B256>) -> Option<B256> {
        self.units
            .iter()
            .filter_map(|u| {
                let slots = u.recorded.changed.get(account)?;
                let i = match from {
                    Bound::Included(k) => slots.partition_point(|s| *s < k),
                    Bound::Excluded(k) => slots.partition_point(|s| *s <= k),
                    Bound::Unbounded => 0,
                };
                slots.get(i).copied()
            })
            .min()
    }
}

/// One trie's stored nodes as they were after the past's block.
struct NodesAt<'a, 'p> {
    db: DbNodes<'a>,
    past: &'p Past<'p>,
    /// The storage trie's account; `None`: the account trie.
    account: Option<B256>,
}

impl NodesAt<'_, '_> {
    fn decode(path: &Nibbles, bytes: &[u8]) -> Result<(Nibbles, TrieNode)> {
        let node = TrieNode::decode(bytes).map_err(|reason| StoreError::Corrupt {
            table: "trie history",
            reason: format!("{path:?}: {reason}"),
        })?;
        Ok((*path, node))
    }
}

impl NodeCursor for NodesAt<'_, '_> {
    fn seek_under(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>> {
        let account = self.account;
        // The node at the path itself, most often there.
        match self.past.node(account.as_ref(), path) {
            Some(Some(bytes)) => return Self::decode(path, bytes).map(Some),
            Some(None) => {}
            None => {
                if let Some(node) = self.db.at(path)? {
                    return Ok(Some((*path, node)));
                }
            }
        }
        // Below it (past an extension): the first path under it that held a node then, among the stored
        // ones and the ones the blocks since changed.
        let mut from = *path;
        from.push(0);
        loop {
            let stored = self.db.first_from(&from)?.filter(|(p, _)| p.starts_with(path));
            let changed = self.past.next_node(account.as_ref(), &from).filter(|p| p.starts_with(path));
            let next = match (stored.as_ref().map(|(p, _)| *p), changed) {
                (None, None) => return Ok(None),
                (Some(s), Some(c)) => s.min(c),
                (Some(s), None) => s,
                (None, Some(c)) => c,
            };
            match self.past.node(account.as_ref(), &next) {
                Some(Some(bytes)) => return Self::decode(&next, bytes).map(Some),
                // Created since: not there then.
                Some(None) => {}
                // Not changed since: the stored node, which `next` then is.
                None => return Ok(stored),
            }
            if next.len() >= 64 {
                return Ok(None);
            }
            from = next;
            from.push(0);
        }
    }
}

/// The account leaves changed since the past's block, with their values then.
struct AccountsAt<'s, 'p, S> {
    source: &'s S,
    past: &'p Past<'p>,
}

impl<S: Reads> Overlay for AccountsAt<'_, '_, S> {
    fn next_key(&self, from: Bound<B256>) -> Option<B256> {
        self.past.next_changed_account(from)
    }

    fn leaf(&self, key: &B256) -> Result<Option<Vec<u8>>> {
        let Some(account) = self.source.account_at_key(key, self.past.number)? else { return Ok(None) };
        let root = walk_storage_at(self.source, self.past, key, &[])?.root;
        Ok(Some(account_leaf(&account, root)))
    }
}

/// One account's slots changed since the past's block, with their values then.
struct SlotsAt<'s, 'p, S> {
    source: &'s S,
    past: &'p Past<'p>,
    account: B256,
}

impl<S: Reads> Overlay for SlotsAt<'_, '_, S> {
    fn next_key(&self, from: Bound<B256>) -> Option<B256> {
        self.past.next_changed_slot(&self.account, from)
    }

    fn leaf(&self, key: &B256) -> Result<Option<Vec<u8>>> {
        let value = self.source.storage_at_keys(&self.account, key, self.past.number)?;
        Ok((!value.is_zero()).then(|| slot_leaf(&value)))
    }
}

/// `account`'s storage trie after the past's block, walked down to `targets` (their proofs kept).
pub(crate) fn walk_storage_at<S: Reads>(
    source: &S,
    past: &Past<'_>,
    account: &B256,
    targets: &[B256],
) -> Result<Walked> {
    let (changed, deleted) = (PrefixSet::new(targets.iter().copied()), PrefixSet::default());
    let nodes = NodesAt {
        db: DbNodes::new::<StorageTrie>(source, account.as_slice()),
        past,
        account: Some(*account),
    };
    let overlay = SlotsAt { source, past, account: *account };
    let leaves =
        DbLeaves::new::<Storage>(source, account.as_slice(), &overlay, |_, raw| stored_slot_leaf(raw));
    Walk::new(nodes, leaves, &changed, &deleted).with_proof(targets).run()
}

/// The account trie after the past's block, walked down to `targets` (their proofs kept).
pub(crate) fn walk_accounts_at<S: Reads>(source: &S, past: &Past<'_>, targets: &[B256]) -> Result<Walked> {
    let (changed, deleted) = (PrefixSet::new(targets.iter().copied()), PrefixSet::default());
    let nodes = NodesAt { db: DbNodes::new::<AccountTrie>(source, &[]), past, account: None };
    let overlay = AccountsAt { source, past };
    let leaves =
        DbLeaves::new::<Accounts>(source, &[], &overlay, |key, raw| stored_account_leaf(source, key, raw));
    Walk::new(nodes, leaves, &changed, &deleted).with_proof(targets).run()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(number: u64) -> TrieChange {
        TrieChange::Block(TrieUnit::new(number, B256::with_last_byte(number as u8), Recorded::default()))
    }

    /// Which blocks a history holds after a sequence of changes, and which proofs it answers.
    #[test]
    fn the_history_holds_consecutive_blocks_within_the_window() {
        let blocks = |changes: Vec<TrieChange>| {
            let history = TrieHistory::new(4, usize::MAX);
            for change in changes {
                history.record(change);
            }
            let held = history.units.read().expect("lock").iter().map(|u| u.number).collect::<Vec<_>>();
            (history, held)
        };
        #[rustfmt::skip]
        let cases: Vec<(&str, Vec<TrieChange>, Vec<u64>)> = vec![
            ("consecutive",                 vec![block(1), block(2), block(3)],                        vec![1, 2, 3]),
            ("the window keeps 4",          (1..=7).map(block).collect(),                              vec![4, 5, 6, 7]),
            ("a gap starts again",          vec![block(1), block(2), block(5), block(6)],              vec![5, 6]),
            ("a revert drops what it undoes", vec![block(1), block(2), block(3), TrieChange::Revert { to: 1 }], vec![1]),
            ("then the new branch",         vec![block(1), block(2), TrieChange::Revert { to: 1 }, block(2)], vec![1, 2]),
            ("a deeper revert empties it",  vec![block(3), block(4), TrieChange::Revert { to: 1 }, block(2)], vec![2]),
            ("a reset empties it",          vec![block(1), block(2), TrieChange::Reset, block(3)],     vec![3]),
        ];
        for (name, changes, expected) in cases {
            assert_eq!(blocks(changes).1, expected, "{name}");
        }

        let (history, _) = blocks((1..=7).map(block).collect());
        // At block 3 (the units of 4..=7 held) up to the head 7; not at 2, nor past what is held.
        assert_eq!(history.since(3, 7).map(|u| u.len()), Some(4));
        assert_eq!(history.since(5, 7).map(|u| u[0].root_before), Some(B256::with_last_byte(6)));
        assert!(history.since(2, 7).is_none());
        assert!(history.since(3, 8).is_none(), "a view past the last block held");
        assert_eq!(history.since(3, 6).map(|u| u.len()), Some(4), "a view older than the last block held");
    }

    #[test]
    fn the_oldest_blocks_go_when_the_memory_bound_is_reached() {
        let unit = |number: u64| {
            let mut recorded = Recorded::default();
            recorded
                .account_nodes
                .insert(Nibbles::from_nibbles([1, 2]), Some(vec![0u8; 1000].into_boxed_slice()));
            TrieChange::Block(TrieUnit::new(number, B256::ZERO, recorded))
        };
        let history = TrieHistory::new(128, 2500);
        for n in 1..=5 {
            history.record(unit(n));
        }
        let stats = history.stats();
        assert_eq!(stats.blocks, 2);
        assert!(stats.bytes <= 2500 && stats.bytes > 2000, "{stats:?}");
        assert!(history.since(3, 5).is_some() && history.since(2, 5).is_none());
    }
}
