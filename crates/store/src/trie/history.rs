//! The trie's recent past, in memory: what each of the last trie updates changed in the stored trie, so
//! that a proof at a block inside the proof window reads the nodes as they were then instead of walking
//! every key changed since (as geth's path scheme reads its in-memory diff layers).
//!
//! Each trie update after the replica first caught up (a block, or a group of blocks a serving replica
//! that fell behind applied under one root) leaves a [`TrieUnit`]: the nodes it replaced or removed, as
//! they were before it (a node it created: absent), the keys it changed, and the root before it. The units
//! of consecutive updates are kept in order, the oldest dropped once it falls out of the window or the
//! memory bound. The state after block F is then the stored trie with, for each node, the value the first
//! unit after F recorded for it, if any: [`Past`]. Its leaves are the stored ones with the keys changed
//! since F read from the state history as the walk reaches them ([`AccountsAt`], [`SlotsAt`]); the walk
//! down to a proof's targets then reads what a proof at the head reads.
//!
//! Nothing of it is on disk, and the start-up catch-up keeps nothing: a started replica holds it from its
//! first block after it caught up, and proofs at blocks it does not cover walk every key changed since, as
//! before ([`super::proof`]). A walk over the past must give the root the unit recorded, or its answer is
//! not used.

use std::{
    collections::VecDeque,
    ops::Bound,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex, RwLock,
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

/// Nodes as they were before an update, by key: a sorted index into one buffer of their encodings (a few
/// allocations per block, not one per node: some 20,000 nodes a block, kept for 128 blocks).
#[derive(Debug)]
struct Priors<K> {
    /// Key, then where its encoding starts in `bytes` and how long it is ([`ABSENT`]: there was no node).
    index: Vec<(K, u32, u32)>,
    bytes: Vec<u8>,
}

/// The length of a node that was not there.
const ABSENT: u32 = u32::MAX;

/// Two sorted lists with no key in both, as one.
fn merge<T: Copy, K: Ord + Copy>(a: Vec<(K, T, T)>, b: Vec<(K, T, T)>) -> Vec<(K, T, T)> {
    let mut out = Vec::with_capacity(a.len() + b.len());
    let (mut a, mut b) = (a.into_iter().peekable(), b.into_iter().peekable());
    loop {
        let next = match (a.peek(), b.peek()) {
            (Some(x), Some(y)) if x.0 < y.0 => a.next(),
            (Some(_), Some(_)) => b.next(),
            (Some(_), None) => a.next(),
            (None, Some(_)) => b.next(),
            (None, None) => return out,
        };
        out.extend(next);
    }
}

impl<K: Ord + Copy> Priors<K> {
    /// From walks: each node visited, as it was, and each path updated; a path both visited and updated
    /// keeps its visit, one updated only was absent. `key` makes the `i`th walk's path a key; the walks
    /// come in key order, and each visits in path order, so the visits need no sort: only the few paths
    /// created are sorted in.
    fn new(walks: &[&WalkNodes], key: impl Fn(usize, Nibbles) -> K) -> Self {
        let entries: usize = walks.iter().map(|w| w.visited.len()).sum();
        let bytes: usize = walks.iter().flat_map(|w| w.visited.iter().map(|(_, n)| n.encoded_len())).sum();
        let mut priors = Self { index: Vec::with_capacity(entries), bytes: Vec::with_capacity(bytes) };
        for (i, walk) in walks.iter().enumerate() {
            for (path, node) in &walk.visited {
                let start = priors.bytes.len();
                node.encode_to(&mut priors.bytes);
                priors.index.push((key(i, *path), start as u32, (priors.bytes.len() - start) as u32));
            }
        }
        if !priors.index.windows(2).all(|w| w[0].0 < w[1].0) {
            // (Not expected: the walks' order is the keys'. Correct either way.)
            priors.index.sort_by_key(|e| e.0);
            priors.index.dedup_by(|later, first| later.0 == first.0);
        }
        let mut created: Vec<(K, u32, u32)> = Vec::new();
        for (i, walk) in walks.iter().enumerate() {
            for path in &walk.updated {
                let k = key(i, *path);
                if priors.index.binary_search_by(|e| e.0.cmp(&k)).is_err() {
                    created.push((k, 0, ABSENT));
                }
            }
        }
        if !created.is_empty() {
            created.sort_unstable_by_key(|e| e.0);
            created.dedup_by(|later, first| later.0 == first.0);
            let visits = std::mem::take(&mut priors.index);
            priors.index = merge(visits, created);
        }
        priors
    }

    /// The node at `key` then, if the update changed it (`Some(None)`: there was none).
    fn get(&self, key: &K) -> Option<Option<&[u8]>> {
        let i = self.index.binary_search_by(|e| e.0.cmp(key)).ok()?;
        let (_, start, len) = self.index[i];
        Some((len != ABSENT).then(|| &self.bytes[start as usize..start as usize + len as usize]))
    }

    /// The first key from `from` on that the update changed.
    fn first_from(&self, from: &K) -> Option<K> {
        let i = self.index.partition_point(|e| e.0 < *from);
        self.index.get(i).map(|e| e.0)
    }
}

/// One walk as the apply hands it over: the nodes it visited, as they were (moved out of the walk, not
/// copied), and the paths it updated.
#[derive(Debug, Default)]
struct WalkNodes {
    visited: Vec<(Nibbles, TrieNode)>,
    updated: Vec<Nibbles>,
}

impl WalkNodes {
    fn take(walked: &mut Walked) -> Self {
        Self {
            visited: std::mem::take(&mut walked.visited),
            updated: walked.updated.keys().copied().collect(),
        }
    }

    /// About what its [`Priors`] entries take.
    fn bytes(&self, key_bytes: usize) -> usize {
        let entry = key_bytes + 8;
        entry * (self.visited.len() + self.updated.len())
            + self.visited.iter().map(|(_, n)| n.encoded_len()).sum::<usize>()
    }
}

/// What one update replaced, as the apply hands it over: its walks as they are, and the keys it changed.
/// Turned into lookups ([`Lookups`]) off the apply's thread: see [`TrieHistory`].
#[derive(Debug, Default)]
pub(crate) struct Recorded {
    account: WalkNodes,
    storage: Vec<(B256, WalkNodes)>,
    accounts: Vec<B256>,
    slots: Vec<(B256, B256)>,
}

impl Recorded {
    /// The keys `delta` changes.
    pub(crate) fn new(delta: &StateDelta) -> Self {
        // (The delta's maps are in key order: so are these.)
        let accounts = delta.accounts.keys().copied().collect();
        let slots = delta.accounts.iter().flat_map(|(a, d)| d.slots.keys().map(|s| (*a, *s))).collect();
        Self { accounts, slots, ..Self::default() }
    }

    /// The account trie's walk (its visited nodes are moved here).
    pub(crate) fn account_walk(&mut self, walked: &mut Walked) {
        self.account = WalkNodes::take(walked);
    }

    /// `account`'s storage trie's walk (its visited nodes are moved here).
    pub(crate) fn storage_walk(&mut self, account: B256, walked: &mut Walked) {
        self.storage.push((account, WalkNodes::take(walked)));
    }

    /// About what its lookups take.
    fn bytes(&self) -> usize {
        self.account.bytes(40)
            + self.storage.iter().map(|(_, w)| w.bytes(72)).sum::<usize>()
            + 32 * self.accounts.len()
            + 64 * self.slots.len()
    }

    fn lookups(self) -> Lookups {
        let account_nodes = Priors::new(&[&self.account], |_, path| path);
        let walks: Vec<&WalkNodes> = self.storage.iter().map(|(_, w)| w).collect();
        let storage_nodes = Priors::new(&walks, |i, path| (self.storage[i].0, path));
        Lookups { account_nodes, storage_nodes, accounts: self.accounts, slots: self.slots }
    }
}

/// What one update replaced, sorted for a proof's lookups.
#[derive(Debug)]
struct Lookups {
    account_nodes: Priors<Nibbles>,
    storage_nodes: Priors<(B256, Nibbles)>,
    /// The accounts the update changed, and their changed slots (both sorted).
    accounts: Vec<B256>,
    slots: Vec<(B256, B256)>,
}

/// One trie update, undone: a block's, or a group's (blocks a replica that fell behind applied under one
/// root: a proof may ask for the state before the group, not for one inside it).
#[derive(Debug)]
pub(crate) struct TrieUnit {
    /// The first block and the last.
    first: u64,
    last: u64,
    /// The state root before it (the first block's parent's).
    root_before: B256,
    /// As handed over, until [`TrieUnit::lookups`] sorts it.
    recorded: std::sync::Mutex<Option<Recorded>>,
    lookups: std::sync::OnceLock<Lookups>,
    bytes: usize,
}

impl TrieUnit {
    pub(crate) fn new((first, last): (u64, u64), root_before: B256, recorded: Recorded) -> Self {
        let bytes = recorded.bytes();
        let recorded = std::sync::Mutex::new(Some(recorded));
        Self { first, last, root_before, recorded, lookups: Default::default(), bytes }
    }

    /// Its lookups, built on first use (by the history's keeper thread, right after the commit; a proof
    /// that comes first builds them itself, or waits for the keeper).
    fn lookups(&self) -> &Lookups {
        self.lookups.get_or_init(|| {
            let recorded = self.recorded.lock().unwrap_or_else(|p| p.into_inner()).take();
            recorded.unwrap_or_default().lookups()
        })
    }
}

/// A unit to sort, and units to drop.
type Job = (Option<Arc<TrieUnit>>, Vec<Arc<TrieUnit>>);

/// The thread that sorts new units and drops old ones ([`TrieHistory`]).
#[derive(Debug)]
struct Keeper {
    /// `None` once dropped: the thread ends when its channel closes.
    jobs: Option<mpsc::Sender<Job>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Keeper {
    fn start() -> Option<Self> {
        let (jobs, rx) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new().name("ec-trie-history".into()).spawn(move || {
            for (new, gone) in rx {
                if let Some(unit) = new {
                    unit.lookups();
                }
                drop(gone);
            }
        });
        match thread {
            Ok(thread) => Some(Self { jobs: Some(jobs), thread: Some(thread) }),
            Err(e) => {
                tracing::warn!(error = %e, "no thread for the trie's recent past: proofs sort it as they read it");
                None
            }
        }
    }
}

impl Drop for Keeper {
    fn drop(&mut self) {
        // Closing the channel ends the thread once it has done what it was given.
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// What a committed batch did to the trie, for [`TrieHistory::record`].
#[derive(Debug)]
pub(crate) enum TrieChange {
    /// A block or a group applied (boxed: a batch carries this beside its writes).
    Block(Box<TrieUnit>),
    /// Blocks after `to` reverted.
    Revert { to: u64 },
    /// The trie rebuilt, or replaced by a checkpoint's: nothing before holds.
    Reset,
}

/// The units of the last blocks, oldest first, each starting at the block after the one before ends.
///
/// The apply's thread only moves what its walks visited into a unit ([`Recorded`]); a keeper thread then
/// sorts it into lookups and drops the units that leave. Done on the apply's thread, the sorting, the
/// encoding and the freeing cost a block at the tip about a tenth of its time (`docs/benchmarks.md`).
#[derive(Debug)]
pub struct TrieHistory {
    units: RwLock<VecDeque<Arc<TrieUnit>>>,
    keeper: Mutex<Option<Keeper>>,
    paused: AtomicBool,
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
    /// (the blocks inside a group excepted) read nodes as they were.
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
            keeper: Mutex::new(None),
            paused: AtomicBool::new(false),
        }
    }

    /// Hands units to the keeper: the new one to sort, the ones gone to drop. Without a keeper thread (it
    /// could not start) the first proof that needs a unit sorts it, and the units gone are dropped here.
    fn hand_over(&self, new: Option<Arc<TrieUnit>>, gone: Vec<Arc<TrieUnit>>) {
        if new.is_none() && gone.is_empty() {
            // (A reset of an empty history, as every trie rebuild at open: no thread for that.)
            return;
        }
        let mut keeper = self.keeper.lock().unwrap_or_else(|p| p.into_inner());
        if keeper.is_none() {
            *keeper = Keeper::start();
        }
        if let Some(jobs) = keeper.as_ref().and_then(|k| k.jobs.as_ref()) {
            // (A keeper that is gone leaves the work to the readers and this thread.)
            let _ = jobs.send((new, gone));
        }
    }

    /// Whether updates are recorded (not at all, or not while catching up at start-up).
    pub(crate) fn enabled(&self) -> bool {
        self.window > 0 && self.max_bytes > 0 && !self.paused.load(Ordering::Relaxed)
    }

    /// Stops recording (while catching up at start-up: [`crate::Pipeline::set_catching_up`]), or goes on.
    pub(crate) fn pause(&self, paused: bool) {
        self.paused.store(paused, Ordering::Relaxed);
    }

    pub(crate) fn record(&self, change: TrieChange) {
        let mut units = self.units.write().unwrap_or_else(|p| p.into_inner());
        let (mut new, mut gone) = (None, Vec::new());
        match change {
            TrieChange::Block(unit) => {
                if units.back().is_some_and(|before| before.last + 1 != unit.first) {
                    // A gap (blocks caught up at start-up, a revert that went further back): the units held no
                    // longer lead to the trie as it is.
                    gone.extend(units.drain(..));
                }
                let head = unit.last;
                let unit: Arc<TrieUnit> = Arc::from(unit);
                units.push_back(unit.clone());
                new = Some(unit);
                // A proof reaches `window` blocks back: at block head - window it needs the units after it.
                let mut held: usize = units.iter().map(|u| u.bytes).sum();
                while let Some(oldest) = units.front() {
                    if oldest.first + self.window > head && held <= self.max_bytes {
                        break;
                    }
                    held -= oldest.bytes;
                    gone.extend(units.pop_front());
                }
            }
            TrieChange::Revert { to } => {
                // (A group the revert reaches into goes whole: the units then end before `to`, and the next
                // one starts them again.)
                while units.back().is_some_and(|u| u.last > to) {
                    gone.extend(units.pop_back());
                }
            }
            TrieChange::Reset => gone.extend(units.drain(..)),
        }
        drop(units);
        self.hand_over(new, gone);
    }

    /// The units after block `number` up to at least `head`, if every one of them is held.
    pub(crate) fn since(&self, number: u64, head: u64) -> Option<Vec<Arc<TrieUnit>>> {
        let units = self.units.read().unwrap_or_else(|p| p.into_inner());
        let first = units.iter().position(|u| u.first == number + 1)?;
        let after: Vec<Arc<TrieUnit>> = units.range(first..).cloned().collect();
        // Consecutive by construction ([`TrieHistory::record`]); they must reach the state read.
        after.last().is_some_and(|u| u.last >= head).then_some(after)
    }

    pub fn stats(&self) -> TrieHistoryStats {
        let units = self.units.read().unwrap_or_else(|p| p.into_inner());
        TrieHistoryStats {
            blocks: units.iter().map(|u| u.last + 1 - u.first).sum(),
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

    /// The node at `path` then, when a block since changed it (`None`: no block did, the stored one holds;
    /// `Some(None)`: there was none).
    fn node(&self, account: Option<&B256>, path: &Nibbles) -> Option<Option<&[u8]>> {
        self.units.iter().find_map(|u| match account {
            None => u.lookups().account_nodes.get(path),
            Some(a) => u.lookups().storage_nodes.get(&(*a, *path)),
        })
    }

    /// The first path from `from` on that a block since changed.
    fn next_node(&self, account: Option<&B256>, from: &Nibbles) -> Option<Nibbles> {
        self.units
            .iter()
            .filter_map(|u| match account {
                None => u.lookups().account_nodes.first_from(from),
                Some(a) => {
                    u.lookups().storage_nodes.first_from(&(*a, *from)).filter(|(k, _)| k == a).map(|(_, p)| p)
                }
            })
            .min()
    }

    fn next_changed_account(&self, from: Bound<B256>) -> Option<B256> {
        self.units.iter().filter_map(|u| first_from(&u.lookups().accounts, from)).min()
    }

    fn next_changed_slot(&self, account: &B256, from: Bound<B256>) -> Option<B256> {
        // The account's slots are the keys from (account, the zero slot) on that carry it.
        let from = match from {
            Bound::Included(k) => Bound::Included((*account, k)),
            Bound::Excluded(k) => Bound::Excluded((*account, k)),
            Bound::Unbounded => Bound::Included((*account, B256::ZERO)),
        };
        let next = |u: &Arc<TrieUnit>| first_from(&u.lookups().slots, from).filter(|(a, _)| a == account);
        self.units.iter().filter_map(next).map(|(_, s)| s).min()
    }
}

/// The first of the sorted `keys` within `from`.
fn first_from<K: Ord + Copy>(keys: &[K], from: Bound<K>) -> Option<K> {
    let i = match from {
        Bound::Included(k) => keys.partition_point(|e| *e < k),
        Bound::Excluded(k) => keys.partition_point(|e| *e <= k),
        Bound::Unbounded => 0,
    };
    keys.get(i).copied()
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
        blocks(number, number)
    }

    fn blocks(first: u64, last: u64) -> TrieChange {
        let unit = TrieUnit::new((first, last), B256::with_last_byte(first as u8), Recorded::default());
        TrieChange::Block(Box::new(unit))
    }

    /// Which blocks a history holds after a sequence of changes, and which proofs it answers.
    #[test]
    fn the_history_holds_consecutive_blocks_within_the_window() {
        let held = |changes: Vec<TrieChange>| {
            let history = TrieHistory::new(4, usize::MAX);
            for change in changes {
                history.record(change);
            }
            let held = history.units.read().expect("lock").iter().map(|u| u.last).collect::<Vec<_>>();
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
            ("a group is one unit",         vec![block(1), blocks(2, 3), block(4)],                    vec![1, 3, 4]),
            ("a revert into a group drops it", vec![block(1), blocks(2, 4), TrieChange::Revert { to: 3 }, block(4)], vec![4]),
            ("a group past the window goes", vec![blocks(1, 3), block(4), block(5), block(6), block(7)], vec![4, 5, 6, 7]),
        ];
        for (name, changes, expected) in cases {
            assert_eq!(held(changes).1, expected, "{name}");
        }

        let (history, _) = held((1..=7).map(block).collect());
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
            // One node of 16 hashes: 519 bytes encoded, 48 for its key.
            let node = TrieNode {
                branch: alloy_trie::BranchNodeCompact::new(
                    alloy_trie::TrieMask::new(u16::MAX),
                    alloy_trie::TrieMask::new(0),
                    alloy_trie::TrieMask::new(u16::MAX),
                    vec![B256::ZERO; 16],
                    None,
                ),
                leaf_mask: alloy_trie::TrieMask::new(0),
                leaf_hashes: Vec::new(),
            };
            recorded.account.visited.push((Nibbles::from_nibbles([1, 2]), node));
            TrieChange::Block(Box::new(TrieUnit::new((number, number), B256::ZERO, recorded)))
        };
        let history = TrieHistory::new(128, 1200);
        for n in 1..=5 {
            history.record(unit(n));
        }
        let stats = history.stats();
        assert_eq!(stats.blocks, 2);
        assert!(stats.bytes <= 1200 && stats.bytes > 1000, "{stats:?}");
        assert!(history.since(3, 5).is_some() && history.since(2, 5).is_none());
    }
}
