//! The state trie: its branch nodes kept in the store, so that a block's state root is recomputed from
//! what the block changed rather than from the whole state, and proofs are read rather than rebuilt.
//!
//! The layout follows reth's: every branch node that has a hashed branch child (or a stored descendant) is
//! kept as a [`BranchNodeCompact`] under its nibble path, the account trie's in [`AccountTrie`], each
//! storage trie's in [`StorageTrie`] under its hashed address. Leaves are not stored twice: they are the
//! `accounts` and `storage` tables themselves, keyed by the trie paths. Each account's storage root is
//! kept in [`StorageRoots`], so an account leaf is encoded without touching its storage trie.
//!
//! A root is computed by [`walk::Walk`]: it walks the stored nodes down the paths the block changed (the
//! [`PrefixSet`]), takes every untouched subtree's hash from its parent node as it is, and hashes only
//! the leaves around the changes. The same walk, with target keys in the prefix set and a proof retainer,
//! answers `eth_getProof`.

pub mod history;
pub(crate) mod leaf_hashes;
pub(crate) mod leaves;
pub mod proof;
pub mod update;
pub(crate) mod walk;

use alloy_primitives::{B256, U256};
use alloy_rlp::Encodable;
use alloy_trie::{BranchNodeCompact, Nibbles, TrieAccount, TrieMask};
use serde::{Deserialize, Serialize};

use crate::tables::{Key, StoredAccount, Value};

/// A nibble path in a trie, stored one nibble per byte so that RocksDB's byte order is the trie's order
/// (a path sorts before every path it prefixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TriePath(pub Nibbles);

impl Key for TriePath {
    fn encode(&self) -> Vec<u8> {
        self.0.to_vec()
    }
}

impl Key for (B256, TriePath) {
    fn encode(&self) -> Vec<u8> {
        let mut key = Vec::with_capacity(32 + self.1 .0.len());
        key.extend_from_slice(self.0.as_slice());
        key.extend_from_slice(&self.1 .0.to_vec());
        key
    }
}

/// The path a stored key (nibble bytes) spells; `None` if a byte is not a nibble or it is too long.
pub(crate) fn path_of(bytes: &[u8]) -> Option<Nibbles> {
    (bytes.len() <= 64 && bytes.iter().all(|b| *b < 16)).then(|| Nibbles::from_nibbles_unchecked(bytes))
}

/// A stored branch node: reth's [`BranchNodeCompact`] (its masks, the root hash at the root, the hashes of
/// its hashed *branch* children), plus the hashes of its *leaf* children (`leaf_mask`, hashes in nibble
/// order; a leaf whose node is under 32 bytes is embedded in its parent, has no hash, and is not among
/// them). With them, a walk past an unchanged leaf reads neither the leaf nor (in the account trie) its
/// storage root: see [`leaf_hashes`].
///
/// Encoded as the three masks, a flags byte (1: a root hash follows, 2: a leaf mask follows), the root
/// hash, the leaf mask, the branch hashes (as many as the hash mask has bits), then the leaf hashes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrieNode {
    pub branch: BranchNodeCompact,
    pub leaf_mask: TrieMask,
    pub leaf_hashes: Vec<B256>,
}

impl From<BranchNodeCompact> for TrieNode {
    fn from(branch: BranchNodeCompact) -> Self {
        Self { branch, leaf_mask: TrieMask::default(), leaf_hashes: Vec::new() }
    }
}

impl TrieNode {
    /// The hash of the leaf child at `nibble`, if this node keeps it.
    pub fn leaf_hash(&self, nibble: u8) -> Option<B256> {
        if !self.leaf_mask.is_bit_set(nibble) {
            return None;
        }
        let below = (self.leaf_mask.get() & ((1u16 << nibble) - 1)).count_ones() as usize;
        self.leaf_hashes.get(below).copied()
    }
}

const ROOT_FLAG: u8 = 1;
const LEAVES_FLAG: u8 = 2;

impl TrieNode {
    /// The length of its encoding.
    pub(crate) fn encoded_len(&self) -> usize {
        let n = &self.branch;
        7 + n.root_hash.map_or(0, |_| 32)
            + if self.leaf_mask.is_empty() { 0 } else { 2 }
            + 32 * (n.hashes.len() + self.leaf_hashes.len())
    }

    /// Appends the node's encoding (see [`TrieNode`]) to `out`.
    pub(crate) fn encode_to(&self, out: &mut Vec<u8>) {
        let n = &self.branch;
        for mask in [n.state_mask, n.tree_mask, n.hash_mask] {
            out.extend_from_slice(&mask.get().to_be_bytes());
        }
        let leaves = !self.leaf_mask.is_empty();
        out.push(if n.root_hash.is_some() { ROOT_FLAG } else { 0 } | if leaves { LEAVES_FLAG } else { 0 });
        if let Some(root) = n.root_hash {
            out.extend_from_slice(root.as_slice());
        }
        if leaves {
            out.extend_from_slice(&self.leaf_mask.get().to_be_bytes());
        }
        for hash in n.hashes.iter().chain(&self.leaf_hashes) {
            out.extend_from_slice(hash.as_slice());
        }
    }
}

impl Value for TrieNode {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.encoded_len());
        self.encode_to(&mut out);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self, String> {
        if bytes.len() < 7 {
            return Err(format!("trie node of {} bytes", bytes.len()));
        }
        let mask = |i: usize| TrieMask::new(u16::from_be_bytes([bytes[2 * i], bytes[2 * i + 1]]));
        let (state_mask, tree_mask, hash_mask) = (mask(0), mask(1), mask(2));
        let flags = bytes[6];
        if flags & !(ROOT_FLAG | LEAVES_FLAG) != 0 {
            return Err(format!("trie node flags {flags} in {} bytes", bytes.len()));
        }
        let mut rest = &bytes[7..];
        let mut take = |n: usize| -> Result<&[u8], String> {
            let (head, tail) =
                rest.split_at_checked(n).ok_or_else(|| format!("trie node of {} bytes", bytes.len()))?;
            rest = tail;
            Ok(head)
        };
        let root_hash = if flags & ROOT_FLAG != 0 { Some(B256::from_slice(take(32)?)) } else { None };
        let leaf_mask = if flags & LEAVES_FLAG != 0 {
            let m = take(2)?;
            TrieMask::new(u16::from_be_bytes([m[0], m[1]]))
        } else {
            TrieMask::default()
        };
        let leaf_children = TrieMask::new(leaf_mask.get() & (hash_mask.get() | tree_mask.get()));
        if !tree_mask.is_subset_of(state_mask)
            || !hash_mask.is_subset_of(state_mask)
            || !leaf_mask.is_subset_of(state_mask)
            || !leaf_children.is_empty()
        {
            return Err(format!(
                "trie node masks {state_mask:?} {tree_mask:?} {hash_mask:?} {leaf_mask:?} disagree"
            ));
        }
        let branch_hashes = hash_mask.count_bits() as usize;
        let leaf_hashes = leaf_mask.count_bits() as usize;
        if rest.len() != 32 * (branch_hashes + leaf_hashes) {
            return Err(format!(
                "{} bytes of hashes for hash mask {hash_mask:?} and leaf mask {leaf_mask:?}",
                rest.len()
            ));
        }
        let mut hashes = rest.chunks_exact(32).map(B256::from_slice);
        let branch_hashes: Vec<B256> = hashes.by_ref().take(branch_hashes).collect();
        Ok(TrieNode {
            branch: BranchNodeCompact {
                state_mask,
                tree_mask,
                hash_mask,
                hashes: branch_hashes.into(),
                root_hash,
            },
            leaf_mask,
            leaf_hashes: hashes.collect(),
        })
    }
}

/// Where the stored trie stands: the block whose state its nodes describe, and that state's root. Absent
/// when the nodes are not complete (never built, or blocks were applied with the trie off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrieHead {
    pub number: u64,
    pub hash: B256,
    pub root: B256,
}

/// The keys (full 64-nibble paths) a computation must not take from stored nodes: the changed ones, and
/// the targets of a proof. Sorted; asks "does any key start with this path?".
#[derive(Debug, Clone, Default)]
pub struct PrefixSet {
    keys: Vec<Nibbles>,
}

impl PrefixSet {
    pub fn new(keys: impl IntoIterator<Item = B256>) -> Self {
        let mut keys: Vec<Nibbles> = keys.into_iter().map(Nibbles::unpack).collect();
        keys.sort_unstable();
        keys.dedup();
        Self { keys }
    }

    /// Whether some key starts with `path`.
    pub fn contains(&self, path: &Nibbles) -> bool {
        let i = self.keys.partition_point(|k| k < path);
        self.keys.get(i).is_some_and(|k| k.starts_with(path))
    }
}

/// A storage slot's leaf value: the value's RLP (as an integer, leading zeros dropped).
pub(crate) fn slot_leaf(value: &B256) -> Vec<u8> {
    let mut leaf = Vec::with_capacity(33);
    U256::from_be_bytes(value.0).encode(&mut leaf);
    leaf
}

/// An account's leaf value: the account with its storage root, RLP.
pub(crate) fn account_leaf(account: &StoredAccount, storage_root: B256) -> Vec<u8> {
    let mut leaf = Vec::with_capacity(110);
    TrieAccount {
        nonce: account.nonce,
        balance: account.balance,
        storage_root,
        code_hash: account.code_hash,
    }
    .encode(&mut leaf);
    leaf
}

/// The lowest 32-byte key under `path` (the path, zero-padded).
pub(crate) fn lowest_key(path: &Nibbles) -> B256 {
    let mut key = B256::ZERO;
    path.pack_to(key.as_mut_slice());
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trie_node_survives_its_encoding_and_bad_bytes_are_refused() {
        let node = BranchNodeCompact::new(
            TrieMask::new(0b1011),
            TrieMask::new(0b0010),
            TrieMask::new(0b1001),
            vec![B256::repeat_byte(1), B256::repeat_byte(2)],
            Some(B256::repeat_byte(9)),
        );
        let bytes = TrieNode::from(node.clone()).encode();
        assert_eq!(TrieNode::decode(&bytes).expect("decodes"), TrieNode::from(node.clone()));
        let rootless = TrieNode::from(BranchNodeCompact { root_hash: None, ..node.clone() });
        assert_eq!(TrieNode::decode(&rootless.encode()).expect("decodes"), rootless);
        // Leaf hashes for the children that are neither stored nor hashed branches (nibbles 2 and 0xc).
        let with_leaves = TrieNode {
            branch: BranchNodeCompact { state_mask: TrieMask::new(0b1_0000_0000_1111), ..node },
            leaf_mask: TrieMask::new(0b1_0000_0000_0100),
            leaf_hashes: vec![B256::repeat_byte(3), B256::repeat_byte(4)],
        };
        assert_eq!(TrieNode::decode(&with_leaves.encode()).expect("decodes"), with_leaves);
        assert_eq!(with_leaves.leaf_hash(2), Some(B256::repeat_byte(3)));
        assert_eq!(with_leaves.leaf_hash(12), Some(B256::repeat_byte(4)));
        assert_eq!(with_leaves.leaf_hash(0), None);
        let leaf_on_a_branch = TrieNode {
            leaf_mask: TrieMask::new(0b1000),
            leaf_hashes: vec![B256::ZERO],
            ..with_leaves.clone()
        };
        #[rustfmt::skip]
        let bad: Vec<(&str, Vec<u8>)> = vec![
            ("too short",                 vec![0; 5]),
            ("a hash missing",            bytes[..bytes.len() - 32].to_vec()),
            ("tree mask outside state",   [&[0, 1, 0, 2, 0, 0, 0][..]].concat()),
            ("unknown flag",              vec![0, 0, 0, 0, 0, 0, 4]),
            ("a leaf hash missing",       with_leaves.encode()[..with_leaves.encode().len() - 32].to_vec()),
            ("a leaf on a hashed branch", leaf_on_a_branch.encode()),
        ];
        for (name, bytes) in bad {
            assert!(TrieNode::decode(&bytes).is_err(), "{name}");
        }
    }

    #[test]
    fn a_prefix_set_says_whether_a_key_starts_with_a_path() {
        let set = PrefixSet::new([B256::repeat_byte(0x12), B256::repeat_byte(0x34)]);
        let p = |n: &[u8]| Nibbles::from_nibbles(n);
        #[rustfmt::skip]
        let cases: Vec<(Nibbles, bool)> = vec![
            (p(&[]),           true),
            (p(&[1]),          true),
            (p(&[1, 2, 1]),    true),
            (p(&[1, 2, 2]),    false),
            (p(&[2]),          false),
            (p(&[3, 4]),       true),
            (p(&[0xf]),        false),
        ];
        for (path, expected) in cases {
            assert_eq!(set.contains(&path), expected, "{path:?}");
        }
        assert!(!PrefixSet::default().contains(&p(&[])));
    }

    #[test]
    fn a_path_sorts_before_the_paths_it_prefixes() {
        let keys: Vec<Vec<u8>> = [&[1u8][..], &[1, 0], &[1, 15, 3], &[2]]
            .iter()
            .map(|n| TriePath(Nibbles::from_nibbles(n)).encode())
            .collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(lowest_key(&Nibbles::from_nibbles([1, 2, 3])).0[..3], [0x12, 0x30, 0]);
    }
}
