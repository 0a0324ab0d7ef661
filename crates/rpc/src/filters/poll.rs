//! What one poll delivers, decided from the cursor and this replica's chain alone (pure: the chain is a
//! trait, so the rules are tested on a hand-made chain).
//!
//! - The cursor's block is canonical here: the blocks after it, up to the head (at most `max_blocks`).
//! - It was reverted here: walk back through the reverted blocks (each parent hash in turn) to the first
//!   canonical one, the common ancestor; those blocks' logs come again as removed, newest first, then the
//!   new branch's blocks from the ancestor on.
//! - This replica has not applied the record the cursor was written after (same cluster, later position),
//!   or its head is below the cursor: it is behind. Nothing to deliver; the cursor stays.
//! - Otherwise the block is unknown here (another cluster's side block, or older than the undo window): the
//!   filter cannot be continued exactly, and the client is told "filter not found" so that it re-creates it.

use alloy_primitives::B256;

use super::Cursor;

/// The chain as one view of this replica's store shows it.
pub trait ChainView {
    type Error;
    /// The head: (number, hash).
    fn head(&self) -> Result<(u64, B256), Self::Error>;
    /// How far along its cluster's log this replica has applied (the sequence of its last record).
    fn sequence(&self) -> Result<u64, Self::Error>;
    fn canonical_hash(&self, number: u64) -> Result<Option<B256>, Self::Error>;
    /// The parent hash of a block a revert took off the chain, while it is kept.
    fn reverted_parent(&self, number: u64, hash: &B256) -> Result<Option<B256>, Self::Error>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    Behind,
    Unknown,
    Deliver {
        /// Reverted blocks (number, hash), newest first.
        removed: Vec<(u64, B256)>,
        /// Canonical blocks after the common ancestor, oldest first (may be empty).
        added: std::ops::Range<u64>,
        /// Where the cursor goes if everything is delivered: the last added block, else the ancestor.
        ancestor: (u64, B256),
    },
}

/// See the module's comment. `same_cluster`: the cursor's sequence counts in this replica's log.
pub fn plan<C: ChainView>(
    chain: &C,
    cursor: &Cursor,
    same_cluster: bool,
    max_blocks: u64,
) -> Result<Plan, C::Error> {
    if same_cluster && cursor.sequence > chain.sequence()? {
        return Ok(Plan::Behind);
    }
    let (head, _) = chain.head()?;
    let mut removed = Vec::new();
    let (mut number, mut hash) = (cursor.number, cursor.hash);
    loop {
        if chain.canonical_hash(number)? == Some(hash) {
            break;
        }
        match chain.reverted_parent(number, &hash)? {
            Some(parent) if number > 0 => {
                removed.push((number, hash));
                (number, hash) = (number - 1, parent);
            }
            // Never seen here: above the head, a block this replica has yet to apply (its position in the
            // log is unknown when another cluster wrote the cursor); below, one it will never hold.
            _ if removed.is_empty() && cursor.number > head => return Ok(Plan::Behind),
            _ => return Ok(Plan::Unknown),
        }
    }
    let last = head.min(number.saturating_add(max_blocks.max(1)));
    Ok(Plan::Deliver { removed, added: number + 1..last + 1, ancestor: (number, hash) })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    /// A chain of blocks named by a letter and a number (`a3`), with a sequence position.
    #[derive(Default)]
    struct Chain {
        canonical: BTreeMap<u64, B256>,
        reverted: BTreeMap<(u64, B256), B256>,
        sequence: u64,
    }

    fn h(branch: char, n: u64) -> B256 {
        let mut b = B256::ZERO;
        b[0] = branch as u8;
        b[31] = n as u8;
        b
    }

    impl Chain {
        /// Canonical `a0..=a{head}`, then the blocks of `side` (branch letter, from, to) reverted.
        fn new(head: u64, fork: Option<(char, u64, u64)>, sequence: u64) -> Self {
            let mut c = Chain { sequence, ..Default::default() };
            for n in 0..=head {
                c.canonical.insert(n, h('a', n));
            }
            if let Some((branch, from, to)) = fork {
                for n in from..=to {
                    let parent = if n == from { h('a', n - 1) } else { h(branch, n - 1) };
                    c.reverted.insert((n, h(branch, n)), parent);
                }
            }
            c
        }
    }

    impl ChainView for Chain {
        type Error = std::convert::Infallible;
        fn head(&self) -> Result<(u64, B256), Self::Error> {
            let (n, h) = self.canonical.last_key_value().expect("a chain");
            Ok((*n, *h))
        }
        fn sequence(&self) -> Result<u64, Self::Error> {
            Ok(self.sequence)
        }
        fn canonical_hash(&self, number: u64) -> Result<Option<B256>, Self::Error> {
            Ok(self.canonical.get(&number).copied())
        }
        fn reverted_parent(&self, number: u64, hash: &B256) -> Result<Option<B256>, Self::Error> {
            Ok(self.reverted.get(&(number, *hash)).copied())
        }
    }

    fn deliver(removed: &[(char, u64)], added: std::ops::Range<u64>, ancestor: (char, u64)) -> Plan {
        Plan::Deliver {
            removed: removed.iter().map(|(b, n)| (*n, h(*b, *n))).collect(),
            added,
            ancestor: (ancestor.1, h(ancestor.0, ancestor.1)),
        }
    }

    #[test]
    fn polls_are_planned_from_the_cursor_and_the_chain() {
        struct Case {
            what: &'static str,
            chain: Chain,
            cursor: (char, u64, u64),
            same_cluster: bool,
            max_blocks: u64,
            expect: Plan,
        }
        let cases = [
            Case {
                what: "no new block",
                chain: Chain::new(5, None, 10),
                cursor: ('a', 5, 10),
                same_cluster: true,
                max_blocks: 100,
                expect: deliver(&[], 6..6, ('a', 5)),
            },
            Case {
                what: "new blocks",
                chain: Chain::new(9, None, 14),
                cursor: ('a', 5, 10),
                same_cluster: true,
                max_blocks: 100,
                expect: deliver(&[], 6..10, ('a', 5)),
            },
            Case {
                what: "bounded by max_blocks",
                chain: Chain::new(90, None, 95),
                cursor: ('a', 5, 10),
                same_cluster: true,
                max_blocks: 10,
                expect: deliver(&[], 6..16, ('a', 5)),
            },
            Case {
                what: "cursor on a reverted branch of depth 3",
                chain: Chain::new(8, Some(('b', 4, 6)), 20),
                cursor: ('b', 6, 12),
                same_cluster: true,
                max_blocks: 100,
                expect: deliver(&[('b', 6), ('b', 5), ('b', 4)], 4..9, ('a', 3)),
            },
            Case {
                what: "cursor on a reverted block above the new, shorter branch's head",
                chain: Chain::new(4, Some(('b', 4, 6)), 20),
                cursor: ('b', 6, 12),
                same_cluster: true,
                max_blocks: 100,
                expect: deliver(&[('b', 6), ('b', 5), ('b', 4)], 4..5, ('a', 3)),
            },
            Case {
                what: "behind: this replica has not applied the cursor's record",
                chain: Chain::new(6, None, 11),
                cursor: ('b', 6, 12),
                same_cluster: true,
                max_blocks: 100,
                expect: Plan::Behind,
            },
            Case {
                what: "behind: head below the cursor",
                chain: Chain::new(4, None, 30),
                cursor: ('a', 5, 10),
                same_cluster: false,
                max_blocks: 100,
                expect: Plan::Behind,
            },
            Case {
                what: "another cluster's side block",
                chain: Chain::new(6, None, 11),
                cursor: ('z', 6, 12),
                same_cluster: false,
                max_blocks: 100,
                expect: Plan::Unknown,
            },
            Case {
                what: "another cluster's cursor on a block canonical here",
                chain: Chain::new(6, None, 3),
                cursor: ('a', 4, 99),
                same_cluster: false,
                max_blocks: 100,
                expect: deliver(&[], 5..7, ('a', 4)),
            },
            Case {
                what: "a reverted block no longer kept",
                chain: Chain::new(8, None, 20),
                cursor: ('b', 6, 12),
                same_cluster: true,
                max_blocks: 100,
                expect: Plan::Unknown,
            },
        ];
        for c in cases {
            let cursor = Cursor { number: c.cursor.1, hash: h(c.cursor.0, c.cursor.1), sequence: c.cursor.2 };
            let got = plan(&c.chain, &cursor, c.same_cluster, c.max_blocks).unwrap();
            assert_eq!(got, c.expect, "{}", c.what);
        }
    }
}
