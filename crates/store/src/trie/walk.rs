//! One root computation over stored branch nodes and leaves (reth's walker and node iterator, as one
//! recursive walk).
//!
//! The walk visits stored nodes from the top down. A child whose subtree no key of the [`PrefixSet`]
//! falls in, and whose hash the parent keeps (a hashed *branch* child: its hash does not depend on where it
//! sits, so it stays right even when the trie around it changes shape), goes to the [`HashBuilder`] as that
//! hash. Every other child is descended into when a node is stored below it, and otherwise left to the
//! leaves. Leaves fill every gap between the hashes given, in key order, from a [`LeafCursor`] that already
//! shows the new values. The hash builder rebuilds the nodes along the changed paths; its updates replace
//! them, and the visited nodes it did not rebuild are gone from the trie.
//!
//! A stored node also keeps its leaf children's hashes ([`super::leaf_hashes`]). An unchanged leaf child
//! goes to the hash builder as its kept hash where the node keeps its shape (no key below it is deleted),
//! and the leaves given to the hash builder have their hashes kept in the nodes it hands back.

use alloy_primitives::{map::HashMap, B256};
use alloy_trie::{proof::ProofRetainer, HashBuilder, Nibbles};

use super::{leaf_hashes::LeafParents, lowest_key, PrefixSet, TrieNode};
use crate::error::{Result, StoreError};

/// Stored branch nodes of one trie.
pub(crate) trait NodeCursor {
    /// The first stored node at or after `path` whose path starts with `path`.
    fn seek_under(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>>;
}

/// Leaves of one trie, with their new values, in key order.
pub(crate) trait LeafCursor {
    /// The first leaf at or after `key`: its key and its value's RLP.
    fn seek(&mut self, key: B256) -> Result<Option<(B256, Vec<u8>)>>;
    /// The leaf after the one the last call returned.
    fn next(&mut self) -> Result<Option<(B256, Vec<u8>)>>;
}

/// What a walk found: the root, and how the stored nodes change.
#[derive(Debug, Default)]
pub(crate) struct Walked {
    pub root: B256,
    /// Nodes to store (new or changed), by path.
    pub updated: HashMap<Nibbles, TrieNode>,
    /// Stored nodes that are no longer in the trie.
    pub removed: Vec<Nibbles>,
    /// Proof nodes, when a retainer was given.
    pub proof: alloy_trie::proof::ProofNodes,
    /// The stored nodes the walk visited, as they were before it, in path order: every node it updated
    /// that was stored before, and every node it removed (what the trie's recent past keeps:
    /// [`super::history`]).
    pub visited: Vec<(Nibbles, TrieNode)>,
    /// Leaves read from the leaf cursor, and leaves given as the hash their parent keeps.
    pub leaves_read: usize,
    pub leaf_hashes_given: usize,
}

pub(crate) struct Walk<'p, N, L> {
    nodes: N,
    leaves: L,
    changed: &'p PrefixSet,
    /// The changed keys whose leaves are gone: a node above one may change shape.
    deleted: &'p PrefixSet,
    hb: HashBuilder,
    parents: LeafParents,
    /// In the order the walk came to them, which is path order (a node before the nodes below it); each
    /// node is put in its place once the walk is done with it.
    visited: Vec<(Nibbles, Option<TrieNode>)>,
    /// Every leaf below this key has been given to the hash builder; `None`: every leaf has.
    leaves_from: Option<B256>,
    /// The leaf cursor's position: `None` before its first seek.
    leaf: Option<Option<(B256, Vec<u8>)>>,
    leaves_read: usize,
    leaf_hashes_given: usize,
    /// The subtree walked (empty: the whole trie). The hash builder sees the paths below it, so that its
    /// root is the subtree's hash: see [`Walk::subtree`].
    top: Nibbles,
}

impl<'p, N: NodeCursor, L: LeafCursor> Walk<'p, N, L> {
    /// A walk down the `changed` keys' paths, of which the `deleted` ones have no leaf any more.
    pub(crate) fn new(nodes: N, leaves: L, changed: &'p PrefixSet, deleted: &'p PrefixSet) -> Self {
        Self {
            nodes,
            leaves,
            changed,
            deleted,
            hb: HashBuilder::default().with_updates(true),
            parents: LeafParents::default(),
            visited: Vec::new(),
            leaves_from: Some(B256::ZERO),
            leaf: None,
            leaves_read: 0,
            leaf_hashes_given: 0,
            top: Nibbles::default(),
        }
    }

    /// Walks only the subtree at `top` (the changed keys outside it are not looked at). The walk's root is
    /// then the hash of the node at `top` as its parent sees it, and the nodes it updates keep their full
    /// paths. Only a branch at `top` is a subtree whose hash its parent keeps as it is: the caller checks
    /// that the walk updated a node at `top` ([`Walked::updated`]) before it uses the hash.
    pub(crate) fn subtree(mut self, top: Nibbles) -> Self {
        self.leaves_from = Some(lowest_key(&top));
        self.top = top;
        self
    }

    /// A path as the hash builder sees it: below the subtree walked.
    fn below_top(&self, path: &Nibbles) -> Nibbles {
        path.slice(self.top.len()..)
    }

    /// Keeps the proof nodes of `targets` (hashed keys), which must also be in the prefix set.
    pub(crate) fn with_proof(mut self, targets: &[B256]) -> Self {
        if targets.is_empty() {
            return self;
        }
        let targets = targets.iter().map(Nibbles::unpack).collect();
        self.hb = HashBuilder::default().with_updates(true).with_proof_retainer(ProofRetainer::new(targets));
        self
    }

    pub(crate) fn run(mut self) -> Result<Walked> {
        if let Some((path, node)) = self.nodes.seek_under(&self.top)? {
            self.visit(path, node)?;
        }
        // To the end of the subtree (of the trie, for the whole trie).
        let end = if self.top.is_empty() { None } else { self.top.increment().map(|next| lowest_key(&next)) };
        self.leaves_before(end)?;
        self.parents.finish();
        let root = self.hb.root();
        let proof = self.hb.take_proof_nodes();
        let (_, built) = self.hb.split();
        let top = self.top;
        let updated: HashMap<Nibbles, TrieNode> = built
            .into_iter()
            .map(|(below, branch)| {
                let mut node = self.parents.node(&below, branch);
                if !top.is_empty() {
                    // The hash builder's root is the subtree's top, which is not the trie's root.
                    node.branch.root_hash = None;
                }
                (top.join(&below), node)
            })
            .collect();
        let removed = self.visited.iter().map(|(p, _)| *p).filter(|p| !updated.contains_key(p)).collect();
        let visited = self.visited.into_iter().filter_map(|(p, node)| node.map(|n| (p, n))).collect();
        let (leaves_read, leaf_hashes_given) = (self.leaves_read, self.leaf_hashes_given);
        Ok(Walked { root, updated, removed, proof, visited, leaves_read, leaf_hashes_given })
    }

    /// The children of the stored node at `path`, in order: a hash where it holds, else a walk below.
    fn visit(&mut self, path: Nibbles, stored: TrieNode) -> Result<()> {
        let at = self.visited.len();
        self.visited.push((path, None));
        // A kept leaf hash holds while the leaf stays where it is: while no key below this node is deleted.
        let keeps_shape = !self.deleted.contains(&path);
        let node = &stored.branch;
        let mut hashes = node.hashes.iter();
        for nibble in 0..16u8 {
            let hash = if node.hash_mask.is_bit_set(nibble) { hashes.next().copied() } else { None };
            let mut child = path;
            child.push(nibble);
            if !node.state_mask.is_bit_set(nibble) {
                // The stored trie has no leaf under an absent child; a new one would be a changed key.
                if !self.changed.contains(&child) {
                    self.skip_empty(&child);
                }
                continue;
            }
            let stored_below = node.tree_mask.is_bit_set(nibble);
            let unchanged = !self.changed.contains(&child);
            if let Some(leaf) = stored.leaf_hash(nibble).filter(|_| unchanged && keeps_shape) {
                self.leaf(path, nibble, leaf)?;
                continue;
            }
            match hash {
                Some(hash) if unchanged => self.branch(child, hash, stored_below)?,
                _ if stored_below => {
                    let (below, node) =
                        self.nodes.seek_under(&child)?.ok_or_else(|| StoreError::Corrupt {
                            table: "trie",
                            reason: format!("node {path:?} says a node is stored below {child:?}; none is"),
                        })?;
                    self.visit(below, node)?;
                }
                // A leaf, or a small subtree no node is stored for: the leaves cover it.
                _ => {}
            }
        }
        // Kept (not cloned: the walk is done with it) as it was before the walk, where the walk came to it.
        self.visited[at].1 = Some(stored);
        Ok(())
    }

    /// Gives the hash builder the subtree at `path` as `hash`, after the leaves before it.
    fn branch(&mut self, path: Nibbles, hash: B256, stored_below: bool) -> Result<()> {
        self.leaves_before(Some(lowest_key(&path)))?;
        let below = self.below_top(&path);
        self.hb.add_branch(below, hash, stored_below);
        self.parents.subtree(below);
        // The subtree's own leaves are in the hash: carry on after it (nothing is after the last path).
        self.leaves_from = path.increment().map(|next| lowest_key(&next));
        Ok(())
    }

    /// Gives the hash builder the leaf child `nibble` of the node at `parent` as its kept hash, after the
    /// leaves before it. (The hash builder takes it for a branch's hash; [`LeafParents::node`] moves it back.)
    fn leaf(&mut self, parent: Nibbles, nibble: u8, hash: B256) -> Result<()> {
        let mut path = parent;
        path.push(nibble);
        self.leaves_before(Some(lowest_key(&path)))?;
        self.hb.add_branch(self.below_top(&path), hash, false);
        self.parents.given_leaf(self.below_top(&parent), nibble, hash);
        self.leaf_hashes_given += 1;
        self.leaves_from = path.increment().map(|next| lowest_key(&next));
        Ok(())
    }

    /// Moves past the subtree at `path`, which holds no leaf, when the leaves given so far end right before
    /// it: the next read then starts after it, or is not needed at all (a seek saved per gap).
    fn skip_empty(&mut self, path: &Nibbles) {
        if self.leaves_from == Some(lowest_key(path)) {
            self.leaves_from = path.increment().map(|next| lowest_key(&next));
        }
    }

    /// Gives the hash builder every leaf from `leaves_from` up to `bound` (`None`: to the end).
    fn leaves_before(&mut self, bound: Option<B256>) -> Result<()> {
        let Some(from) = self.leaves_from else { return Ok(()) };
        if bound == Some(from) {
            // Nothing between two adjacent subtrees: no seek.
            return Ok(());
        }
        let mut leaf = match self.leaf.take() {
            Some(Some((key, value))) if key >= from => Some((key, value)),
            Some(None) => None,
            _ => self.leaves.seek(from)?,
        };
        while let Some((key, value)) = leaf.take() {
            if bound.is_some_and(|b| key >= b) {
                leaf = Some((key, value));
                break;
            }
            let key = self.below_top(&Nibbles::unpack(key));
            self.hb.add_leaf(key, &value);
            self.parents.leaf(key, value);
            self.leaves_read += 1;
            leaf = self.leaves.next()?;
        }
        self.leaf = Some(leaf);
        self.leaves_from = bound;
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::collections::BTreeMap;

    use rand::{rngs::StdRng, Rng, SeedableRng};

    use super::*;

    /// Stored nodes in memory.
    #[derive(Default, Clone)]
    pub(crate) struct MemNodes(pub BTreeMap<Nibbles, TrieNode>);

    impl NodeCursor for &MemNodes {
        fn seek_under(&mut self, path: &Nibbles) -> Result<Option<(Nibbles, TrieNode)>> {
            Ok(self
                .0
                .range(*path..)
                .next()
                .filter(|(p, _)| p.starts_with(path))
                .map(|(p, n)| (*p, n.clone())))
        }
    }

    /// Leaves in memory.
    pub(crate) struct MemLeaves<'a> {
        leaves: &'a BTreeMap<B256, Vec<u8>>,
        at: Option<B256>,
    }

    impl<'a> MemLeaves<'a> {
        pub(crate) fn new(leaves: &'a BTreeMap<B256, Vec<u8>>) -> Self {
            Self { leaves, at: None }
        }
    }

    /// Every node of the trie over `leaves`, as one walk builds them (in memory, handed over at its end).
    pub(crate) fn built(leaves: &BTreeMap<B256, Vec<u8>>) -> BTreeMap<Nibbles, TrieNode> {
        let (everything, none) = (PrefixSet::new(leaves.keys().copied()), PrefixSet::default());
        let walked = Walk::new(&MemNodes::default(), MemLeaves::new(leaves), &everything, &none).run();
        walked.expect("walks").updated.into_iter().collect()
    }

    impl LeafCursor for MemLeaves<'_> {
        fn seek(&mut self, key: B256) -> Result<Option<(B256, Vec<u8>)>> {
            let found = self.leaves.range(key..).next().map(|(k, v)| (*k, v.clone()));
            self.at = found.as_ref().map(|(k, _)| *k);
            Ok(found)
        }
        fn next(&mut self) -> Result<Option<(B256, Vec<u8>)>> {
            use std::ops::Bound::{Excluded, Unbounded};
            let Some(at) = self.at else { return Ok(None) };
            let found = self.leaves.range((Excluded(at), Unbounded)).next().map(|(k, v)| (*k, v.clone()));
            self.at = found.as_ref().map(|(k, _)| *k);
            Ok(found)
        }
    }

    fn reference_root(leaves: &BTreeMap<B256, Vec<u8>>) -> B256 {
        let mut hb = HashBuilder::default();
        for (k, v) in leaves {
            hb.add_leaf(Nibbles::unpack(k), v);
        }
        hb.root()
    }

    /// Keys that share long prefixes, so the tries have extensions, deep branches and collapses.
    fn key(rng: &mut StdRng) -> B256 {
        let mut k = B256::ZERO;
        rng.fill(&mut k.0[..]);
        let shared = rng.random_range(0..4);
        for b in &mut k.0[..shared] {
            *b &= 0x11;
        }
        k
    }

    /// Random rounds of inserts, updates and deletes (some of them emptying the trie): the walk over the
    /// stored nodes agrees with a full rebuild every time, and the stored nodes it leaves behind are exactly
    /// the ones a full build stores.
    #[test]
    fn the_walk_over_stored_nodes_agrees_with_a_full_rebuild() {
        let mut rng = StdRng::seed_from_u64(7);
        let (mut given, mut read) = (0, 0);
        for trial in 0..60 {
            let mut leaves = BTreeMap::new();
            let mut nodes = MemNodes::default();
            let size = [1, 2, 5, 40, 300][trial % 5];
            for round in 0..8 {
                let (mut changed, mut deleted) = (Vec::new(), Vec::new());
                let edits = rng.random_range(1..=size.max(2));
                for _ in 0..edits {
                    let existing = leaves.keys().nth(rng.random_range(0..leaves.len().max(1))).copied();
                    let k = match existing {
                        Some(k) if rng.random_bool(0.5) => k,
                        _ => key(&mut rng),
                    };
                    if rng.random_bool(if round == 7 { 0.9 } else { 0.3 }) {
                        leaves.remove(&k);
                        deleted.push(k);
                    } else {
                        let len = rng.random_range(1..40);
                        leaves.insert(k, (0..len).map(|_| rng.random::<u8>() | 1).collect());
                    }
                    changed.push(k);
                }
                // A key deleted and set again in the same round is not deleted.
                deleted.retain(|k| !leaves.contains_key(k));
                let (set, deleted) = (PrefixSet::new(changed), PrefixSet::new(deleted));
                let mem = MemLeaves { leaves: &leaves, at: None };
                let walked = Walk::new(&nodes, mem, &set, &deleted).run().expect("walks");
                (given, read) = (given + walked.leaf_hashes_given, read + walked.leaves_read);
                assert_eq!(walked.root, reference_root(&leaves), "trial {trial} round {round}");
                for p in &walked.removed {
                    nodes.0.remove(p);
                }
                nodes.0.extend(walked.updated);

                let everything = PrefixSet::new(leaves.keys().copied());
                let mem = MemLeaves { leaves: &leaves, at: None };
                let none = PrefixSet::default();
                let full = Walk::new(&MemNodes::default(), mem, &everything, &none).run().expect("walks");
                let full: BTreeMap<_, _> = full.updated.into_iter().collect();
                assert_eq!(nodes.0, full, "trial {trial} round {round}: stored nodes");
            }
        }
        // The kept leaf hashes were used (deletions, which stop them, are frequent here: see the next test).
        assert!(given > 0, "{given} leaf hashes given, {read} leaves read");
    }

    /// Updates to a few keys of a large trie read the changed leaves and little else: their siblings'
    /// hashes are kept in the stored nodes. A deletion reads the leaves beside it again.
    #[test]
    fn kept_leaf_hashes_spare_reading_the_siblings_of_a_changed_leaf() {
        let mut rng = StdRng::seed_from_u64(11);
        let mut leaves: BTreeMap<B256, Vec<u8>> =
            (0..5_000).map(|_| (B256::from(rng.random::<[u8; 32]>()), vec![7u8; 40])).collect();
        let (everything, none) = (PrefixSet::new(leaves.keys().copied()), PrefixSet::default());
        let mem = MemLeaves { leaves: &leaves, at: None };
        let built = Walk::new(&MemNodes::default(), mem, &everything, &none).run().expect("walks");
        let nodes = MemNodes(built.updated.into_iter().collect());

        let keys: Vec<B256> = leaves.keys().step_by(500).copied().collect();
        for key in &keys {
            leaves.insert(*key, vec![8u8; 40]);
        }
        let changed = PrefixSet::new(keys.iter().copied());
        let mem = MemLeaves { leaves: &leaves, at: None };
        let walked = Walk::new(&nodes, mem, &changed, &none).run().expect("walks");
        assert_eq!(walked.root, reference_root(&leaves));
        // The same nodes as reth keeps them, without leaf hashes: every sibling leaf is read.
        let bare = MemNodes(nodes.0.iter().map(|(p, n)| (*p, TrieNode::from(n.branch.clone()))).collect());
        let mem = MemLeaves { leaves: &leaves, at: None };
        let walked_bare = Walk::new(&bare, mem, &changed, &none).run().expect("walks");
        assert_eq!(walked_bare.root, walked.root);
        assert!(
            walked.leaves_read * 2 < walked_bare.leaves_read,
            "{} leaves read, {} without leaf hashes",
            walked.leaves_read,
            walked_bare.leaves_read
        );

        leaves.remove(&keys[0]);
        let deleted = PrefixSet::new([keys[0]]);
        let mem = MemLeaves { leaves: &leaves, at: None };
        let walked_del = Walk::new(&nodes, mem, &changed, &deleted).run().expect("walks");
        assert_eq!(walked_del.root, reference_root(&leaves));
        assert!(walked_del.leaves_read > walked.leaves_read + 3, "{} leaves read", walked_del.leaves_read);
    }
}
