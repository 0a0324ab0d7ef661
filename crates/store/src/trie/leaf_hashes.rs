//! The hashes of leaf children, kept in their parent's stored node.
//!
//! reth stores the hashes of a branch node's *branch* children only: a walk past an unchanged leaf reads
//! it from the state tables (and, in the account trie, the account's storage root) and hashes it again.
//! On a mainnet-sized state most changed keys sit beside a dozen such leaves, so those reads were most of
//! a block's trie update. A stored node therefore also keeps its leaf children's hashes ([`TrieNode`]).
//!
//! A leaf's hash depends on where it sits (its node holds the key's remaining nibbles), so the walk gives a
//! kept leaf hash only where the node cannot change shape: no key below the node is deleted (only a
//! deletion can take a branch down to one child and move a leaf up). Where one is, the node's leaves are
//! read as before. The nodes stored are the ones reth stores; what they keep is a function of the state
//! alone (every leaf child hashed at most 32 bytes long), so a walk and a full build store the same
//! nodes, byte for byte.
//!
//! [`LeafParents`] follows the items a [`alloy_trie::HashBuilder`] is given, in order, and learns from
//! their neighbours under which branch each leaf hangs: a leaf's parent branch is as deep as the longer of
//! its common prefixes with the item before and the item after it. When the hash builder hands over a
//! node, [`LeafParents::node`] adds the hashes of the leaves found under it.

use alloy_primitives::{map::HashMap, B256};
use alloy_trie::{nodes::LeafNodeRef, BranchNodeCompact, Nibbles, TrieMask};

use super::TrieNode;

/// A leaf child of a branch node, as the walk met it.
enum Child {
    /// Its hash, kept in the stored node and given to the hash builder as it is.
    Given(B256),
    /// A leaf given to the hash builder: hashed only if its parent turns out to be stored.
    Leaf { key: Nibbles, value: Vec<u8> },
}

/// A leaf whose parent is not known yet: the item after it decides.
struct Waiting {
    key: Nibbles,
    value: Vec<u8>,
    /// Common prefix length with the item before it.
    before: usize,
}

#[derive(Default)]
pub(crate) struct LeafParents {
    /// The path of the item given last: a leaf's key, or the path of a subtree given as a hash.
    last: Option<Nibbles>,
    waiting: Option<Waiting>,
    /// Leaf children found so far, by their parent's path.
    found: HashMap<Nibbles, Vec<(u8, Child)>>,
}

impl LeafParents {
    /// The hash builder was given a leaf.
    pub(crate) fn leaf(&mut self, key: Nibbles, value: Vec<u8>) {
        let before = self.next_item(&key);
        self.waiting = Some(Waiting { key, value, before });
        self.last = Some(key);
    }

    /// The hash builder was given the subtree at `path` as a hash (a branch's, or a kept leaf hash).
    pub(crate) fn subtree(&mut self, path: Nibbles) {
        self.next_item(&path);
        self.last = Some(path);
    }

    /// The hash builder was given the kept hash of the leaf child `nibble` of the stored node at `parent`.
    pub(crate) fn given_leaf(&mut self, parent: Nibbles, nibble: u8, hash: B256) {
        let mut path = parent;
        path.push(nibble);
        self.subtree(path);
        self.found.entry(parent).or_default().push((nibble, Child::Given(hash)));
    }

    /// Every item has been given: the last leaf's parent is as deep as its prefix with the one before.
    pub(crate) fn finish(&mut self) {
        self.settle(0);
    }

    /// Forgets the leaves of nodes the hash builder has finished with (none is below the last item): for a
    /// pass that hands nodes over as it goes, so that memory stays bounded.
    pub(crate) fn forget_finished(&mut self) {
        let Some(last) = self.last else { return };
        self.found.retain(|parent, _| last.starts_with(parent));
    }

    /// The stored form of the node at `path` the hash builder handed over: kept leaf hashes moved out of
    /// its branch hashes (the hash builder took them for branches), the leaves found under it hashed.
    pub(crate) fn node(&mut self, path: &Nibbles, mut branch: BranchNodeCompact) -> TrieNode {
        let Some(mut children) = self.found.remove(path) else { return branch.into() };
        children.sort_unstable_by_key(|(nibble, _)| *nibble);
        let given = children
            .iter()
            .filter(|(_, child)| matches!(child, Child::Given(_)))
            .fold(TrieMask::default(), |mask, (nibble, _)| TrieMask::new(mask.get() | 1 << nibble));
        if !given.is_empty() {
            let mut hashes = branch.hashes.iter();
            let kept: Vec<B256> = branch
                .hash_mask
                .iter()
                .filter_map(|nibble| hashes.next().filter(|_| !given.is_bit_set(nibble)).copied())
                .collect();
            branch.hash_mask = TrieMask::new(branch.hash_mask.get() & !given.get());
            branch.hashes = kept.into();
        }
        let mut node = TrieNode::from(branch);
        let mut rlp = Vec::with_capacity(128);
        for (nibble, child) in children {
            let hash = match child {
                Child::Given(hash) => Some(hash),
                Child::Leaf { key, value } => {
                    rlp.clear();
                    LeafNodeRef::new(&key.slice(path.len() + 1..), &value).rlp(&mut rlp).as_hash()
                }
            };
            // A leaf under 32 bytes is embedded in its parent: no hash to keep.
            if let Some(hash) = hash {
                node.leaf_mask.set_bit(nibble);
                node.leaf_hashes.push(hash);
            }
        }
        node
    }

    /// A new item at `path`: settles the waiting leaf; returns the common prefix with the item before.
    fn next_item(&mut self, path: &Nibbles) -> usize {
        let common = self.last.map_or(0, |last| last.common_prefix_length(path));
        self.settle(common);
        common
    }

    /// The waiting leaf's parent, now that its common prefix with the item after it (`after`) is known.
    fn settle(&mut self, after: usize) {
        let Some(Waiting { key, value, before }) = self.waiting.take() else { return };
        let depth = before.max(after);
        // A lone leaf (the whole trie) has no parent; it is never found under a stored node.
        if depth < key.len() {
            let nibble = key.get_unchecked(depth);
            self.found.entry(key.slice(..depth)).or_default().push((nibble, Child::Leaf { key, value }));
        }
    }
}
