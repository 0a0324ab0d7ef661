//! Accounts a block changed that geth's prestate tracer in diff mode does not show (issue 26, item 1).
//!
//! Diff mode marks an account deleted when a SELFDESTRUCT runs in it and never unmarks it when that frame
//! reverts. A contract created in the transaction is empty in `pre`, so the deleted mark drops it from both
//! halves of the diff: the record would never name a contract that lives, and a later transaction that
//! touches it would make its `pre` the account's state *before the block* (it did not exist then). Before
//! EIP-158 a creation that leaves an empty account is left out the same way.
//!
//! Every such account was created in the block, and every creation raises its creator's nonce. So a block
//! whose diffs show a nonce raised by more than the transactions its account sent (or a deletion, or a
//! top-level creation no diff names) is traced once more in the tracer's default mode with `includeEmpty`:
//! that lists every account and slot each transaction accessed with its value before the transaction.
//! An account first seen empty there, that the diffs leave out or say existed before the block, is a
//! candidate; its state at the block is then read as a proof verified against the header's state root.
//!
//! Pure: the traces and proofs come from the caller ([`crate::fetch`]).

use std::collections::{BTreeMap, BTreeSet};

use crate::diff::{Partial, Partials};
use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_trace::geth::PreStateMode;

/// Whether the block needs the extra trace: something in the diffs can hide a creation.
///
/// - an account's nonce rose by more than the transactions it sent (a CREATE or CREATE2 ran in it; a
///   contract created in the block starts at nonce 1; EIP-7702 authorities count here too, a harmless extra
///   trace);
/// - a deletion (a deleted creator's nonce is not in the diffs);
/// - a successful top-level creation whose account no diff names (`created`).
pub fn needs_access_trace(partials: &Partials, senders: &[Address], created: &[Address]) -> bool {
    if created.iter().any(|a| !partials.contains_key(a)) {
        return true;
    }
    let mut sent: BTreeMap<Address, u64> = BTreeMap::new();
    for s in senders {
        *sent.entry(*s).or_default() += 1;
    }
    partials.iter().any(|(address, p)| {
        if p.deleted || p.wiped || p.false_deletion {
            return true;
        }
        let Some(after) = p.nonce else { return false };
        let before = match p.prior {
            Some(Some(prior)) => prior.nonce,
            // Did not exist: a contract created here starts at 1 (EIP-161); an account that only received
            // value stays at 0.
            Some(None) => u64::from(p.code.as_ref().is_some_and(|c| !c.is_empty())),
            None => return false,
        };
        after > before.saturating_add(sent.get(address).copied().unwrap_or(0))
    })
}

/// An account the diffs cannot describe: its state before the block (first seen in the access trace) and
/// every slot any transaction accessed, with its value before the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub address: Address,
    pub slots: BTreeMap<B256, B256>,
}

/// Candidates from the access trace (one [`PreStateMode`] per transaction, in order): accounts first seen
/// empty that the diffs leave out, or that the diffs say existed before the block.
pub fn candidates(partials: &Partials, accessed: &[PreStateMode]) -> Vec<Candidate> {
    let mut first: BTreeMap<Address, bool> = BTreeMap::new();
    let mut slots: BTreeMap<Address, BTreeMap<B256, B256>> = BTreeMap::new();
    for tx in accessed {
        for (address, state) in &tx.0 {
            // Existed before the block: a nonce, a balance or code. The access trace also lists the slots an
            // empty account's creation wrote, with their zero values before: they do not make it exist.
            first.entry(*address).or_insert_with(|| crate::diff::has_fields(state));
            let known = slots.entry(*address).or_default();
            for (slot, value) in &state.storage {
                // The first transaction to access a slot saw its value before the block.
                known.entry(*slot).or_insert(*value);
            }
        }
    }
    first
        .into_iter()
        .filter(|(_, existed)| !existed)
        .filter(|(address, _)| match partials.get(address) {
            None => true,
            Some(p) => matches!(p.prior, Some(Some(_))),
        })
        .map(|(address, _)| Candidate { address, slots: slots.remove(&address).unwrap_or_default() })
        .collect()
}

/// A candidate's state at the block, from a proof verified against the header's root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtBlock {
    pub balance: U256,
    pub nonce: u64,
    pub code: Bytes,
    /// Every slot of [`Candidate::slots`], its value at the block.
    pub storage: BTreeMap<B256, B256>,
}

/// Writes what the client proved into the block's partial changes: an account alive at the block gets its
/// whole state, and, whether alive or not, its prior is "did not exist" with the priors of its slots from
/// the access trace. A candidate gone at the block that the diffs never named changed nothing.
pub fn apply(partials: &mut Partials, candidate: Candidate, at_block: Option<AtBlock>) {
    let Candidate { address, slots } = candidate;
    let Some(at) = at_block else {
        if let Some(p) = partials.get_mut(&address) {
            // Created and gone within the block: it did not exist before it either.
            p.prior = Some(None);
            p.slot_priors = slots;
        }
        return;
    };
    let touched: BTreeSet<B256> = slots.keys().copied().collect();
    let storage: BTreeMap<B256, B256> =
        at.storage.into_iter().filter(|(s, v)| slots.get(s) != Some(v)).collect();
    partials.insert(
        address,
        Partial {
            balance: Some(at.balance),
            nonce: Some(at.nonce),
            code: Some(at.code),
            storage,
            touched,
            prior: Some(None),
            slot_priors: slots,
            ..Partial::default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_rpc_types_trace::geth::AccountState;
    use ec_log::AccountPrior;

    fn addr(b: u8) -> Address {
        Address::repeat_byte(b)
    }
    fn slot(b: u8) -> B256 {
        B256::with_last_byte(b)
    }
    fn partial(prior: Option<Option<(u64, u64)>>, nonce: Option<u64>, code: Option<&[u8]>) -> Partial {
        Partial {
            prior: prior.map(|p| {
                p.and_then(|(b, n)| {
                    AccountPrior::existing(U256::from(b), n, alloy_primitives::KECCAK256_EMPTY)
                })
            }),
            nonce,
            balance: Some(U256::ZERO),
            code: code.map(Bytes::copy_from_slice),
            ..Partial::default()
        }
    }
    fn state(balance: u64, nonce: u64, storage: &[(u8, u8)]) -> AccountState {
        AccountState {
            balance: Some(U256::from(balance)),
            nonce: (nonce > 0).then_some(nonce),
            code: None,
            storage: storage.iter().map(|(s, v)| (slot(*s), slot(*v))).collect(),
        }
    }

    #[test]
    fn the_access_trace_is_asked_for_only_where_a_creation_can_hide() {
        let sender = addr(1);
        type Case = (&'static str, Partials, Vec<Address>, Vec<Address>, bool);
        let cases: Vec<Case> = vec![
            (
                "a sender's nonce, one per transaction",
                [(sender, partial(Some(Some((9, 4))), Some(6), None))].into(),
                vec![sender, sender],
                vec![],
                false,
            ),
            (
                "a contract's nonce raised: it created",
                [(addr(2), partial(Some(Some((0, 1))), Some(2), None))].into(),
                vec![],
                vec![],
                true,
            ),
            (
                "a contract created here starts at 1",
                [(addr(3), partial(Some(None), Some(1), Some(&[0x60])))].into(),
                vec![],
                vec![],
                false,
            ),
            (
                "a contract created here that created",
                [(addr(3), partial(Some(None), Some(2), Some(&[0x60])))].into(),
                vec![],
                vec![],
                true,
            ),
            (
                "an account that only received value",
                [(addr(4), partial(Some(None), Some(0), None))].into(),
                vec![],
                vec![],
                false,
            ),
            (
                "a deletion",
                [(addr(5), Partial { deleted: true, ..Partial::default() })].into(),
                vec![],
                vec![],
                true,
            ),
            ("a top-level creation no diff names", Partials::new(), vec![], vec![addr(6)], true),
            (
                "a top-level creation the diffs name",
                [(addr(6), partial(Some(None), Some(1), Some(&[0x60])))].into(),
                vec![],
                vec![addr(6)],
                false,
            ),
            ("a prior nobody gave", [(addr(7), partial(None, Some(5), None))].into(), vec![], vec![], false),
        ];
        for (what, partials, senders, created, want) in cases {
            assert_eq!(needs_access_trace(&partials, &senders, &created), want, "{what}");
        }
    }

    #[test]
    fn candidates_are_accounts_first_seen_empty_the_diffs_miss_or_misdate() {
        let trace = |accounts: Vec<(u8, AccountState)>| {
            PreStateMode(accounts.into_iter().map(|(a, s)| (addr(a), s)).collect())
        };
        // tx 0: 0x0a created (empty), 0x0b read while empty, 0x0c alive; tx 1: 0x0a alive now, 0x0d
        // created (empty) and named by the diffs as created.
        let accessed = vec![
            trace(vec![(0x0a, state(0, 0, &[(1, 0)])), (0x0b, state(0, 0, &[])), (0x0c, state(5, 1, &[]))]),
            trace(vec![(0x0a, state(7, 1, &[(1, 0x11), (5, 0)])), (0x0d, state(0, 0, &[]))]),
        ];
        let partials: Partials = [
            // The later transaction's pre made 0x0a look alive before the block.
            (addr(0x0a), partial(Some(Some((7, 1))), Some(1), None)),
            (addr(0x0c), partial(Some(Some((5, 1))), Some(2), None)),
            (addr(0x0d), partial(Some(None), Some(1), Some(&[0x60]))),
        ]
        .into();
        let found = candidates(&partials, &accessed);
        assert_eq!(
            found,
            vec![
                Candidate {
                    address: addr(0x0a),
                    slots: [(slot(1), B256::ZERO), (slot(5), B256::ZERO)].into()
                },
                Candidate { address: addr(0x0b), slots: BTreeMap::new() },
            ]
        );
    }

    #[test]
    fn a_proven_account_is_written_whole_and_dated_from_nothing() {
        let mut partials: Partials = [(addr(0x0a), partial(Some(Some((7, 1))), Some(1), None))].into();
        let candidate =
            Candidate { address: addr(0x0a), slots: [(slot(1), B256::ZERO), (slot(2), B256::ZERO)].into() };
        let at = AtBlock {
            balance: U256::from(7),
            nonce: 1,
            code: Bytes::from_static(&[0x60]),
            storage: [(slot(1), slot(0x11)), (slot(2), B256::ZERO)].into(),
        };
        apply(&mut partials, candidate, Some(at));
        let p = &partials[&addr(0x0a)];
        assert_eq!(p.prior, Some(None));
        assert_eq!((p.balance, p.nonce), (Some(U256::from(7)), Some(1)));
        assert_eq!(p.code, Some(Bytes::from_static(&[0x60])));
        // Slot 2 never changed: not written.
        assert_eq!(p.storage, [(slot(1), slot(0x11))].into());
        assert!(!p.needs_account() && !p.deleted && !p.wiped);

        // Gone at the block: nothing written for an account the diffs never named; a named one is
        // re-dated.
        let mut partials: Partials = [(
            addr(0x0b),
            Partial {
                deleted: true,
                prior: Some(Some(
                    AccountPrior::existing(U256::from(1), 0, alloy_primitives::KECCAK256_EMPTY).unwrap(),
                )),
                ..Partial::default()
            },
        )]
        .into();
        apply(&mut partials, Candidate { address: addr(0x0c), slots: BTreeMap::new() }, None);
        apply(&mut partials, Candidate { address: addr(0x0b), slots: BTreeMap::new() }, None);
        assert_eq!(partials.len(), 1);
        assert_eq!(partials[&addr(0x0b)].prior, Some(None));
    }
}
