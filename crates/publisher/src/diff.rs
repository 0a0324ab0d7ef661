//! Turning per-transaction state diffs into one block's [`AccountChange`] list. Pure: the inputs are the
//! client's trace results, the output is what the log records.
//!
//! Two sources, one result:
//! - geth's prestate tracer in diff mode (`pre`/`post` per transaction): `pre` holds each modified account's
//!   full prior state and the prior non-zero values of the slots that changed; `post` only what changed, and
//!   only non-zero slots. An account in `pre` but not in `post` was deleted. An account created and destroyed
//!   inside one transaction appears in neither, which is right: it exists neither before nor after.
//! - parity's `stateDiff` (`=`, `+`, `-`, `*` per field): `=` carries no value, so an account whose balance or
//!   nonce did not change in any transaction has to be read from the client ([`Partial::needs_account`]).
//!
//! Prior values (the state before the block, which the record carries) come from the first transaction that
//! names an account or slot: prestate's `pre`, stateDiff's `from`. What no trace shows is read from the
//! client at the parent block by the caller ([`Partial::prior`] still `None`, slots missing from
//! [`Partial::slot_priors`]).

use std::collections::BTreeMap;

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_trace::{
    geth::DiffMode,
    parity::{AccountDiff, Delta},
};
use ec_log::{AccountChange, AccountPrior, AccountState, StorageSlot};

/// One account's change so far within a block.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Partial {
    /// The account does not exist at this point of the block.
    pub deleted: bool,
    /// The account was destroyed at some point of the block: its storage before the block is gone.
    pub wiped: bool,
    pub balance: Option<U256>,
    pub nonce: Option<u64>,
    /// New code set in this block.
    pub code: Option<Bytes>,
    pub storage: BTreeMap<B256, B256>,
    /// The tracer cannot say whether the code changed: read it from the client at the block. (An EIP-7702
    /// delegation cleared to nothing leaves empty code, which diff mode omits from `post` exactly like
    /// unchanged code.)
    pub recheck_code: bool,
    /// Every slot of this account any transaction's trace named (before or after), kept through a deletion:
    /// if the client contradicts a deletion, these are the slots to read back.
    pub touched: std::collections::BTreeSet<B256>,
    /// The account before the block: `None` while unknown, `Some(None)` when it did not exist.
    pub prior: Option<Option<AccountPrior>>,
    /// Slot values before the block, where known.
    pub slot_priors: BTreeMap<B256, B256>,
    /// A trace marked the account deleted and a later transaction found it alive: the deletion was the
    /// tracer's (geth marks every SELFDESTRUCT it runs, one EIP-6780 leaves alive or whose frame reverted
    /// included), and what the block did to the account must be read back from the client.
    pub false_deletion: bool,
    /// `wiped` before the last deletion, restored when that deletion proves false.
    pub(crate) wiped_before_deletion: bool,
}

impl Partial {
    /// Balance or nonce unknown: read them from the client at the block.
    pub fn needs_account(&self) -> bool {
        !self.deleted && (self.balance.is_none() || self.nonce.is_none())
    }

    fn delete(&mut self) {
        let touched = std::mem::take(&mut self.touched);
        let slot_priors = std::mem::take(&mut self.slot_priors);
        *self = Partial {
            deleted: true,
            wiped: true,
            touched,
            prior: self.prior,
            slot_priors,
            false_deletion: self.false_deletion,
            wiped_before_deletion: self.wiped,
            ..Partial::default()
        };
    }

    /// Slots the record will list whose value before the block is not known yet. A wiped account needs
    /// none: its old storage is dropped by the replica, which holds it.
    pub fn unknown_slot_priors(&self) -> Vec<B256> {
        if self.wiped || self.deleted {
            return Vec::new();
        }
        self.storage.keys().filter(|s| !self.slot_priors.contains_key(*s)).copied().collect()
    }

    fn revive(&mut self) {
        if self.deleted {
            // Re-created after a deletion earlier in the block: it starts empty.
            self.deleted = false;
            self.balance = Some(U256::ZERO);
            self.nonce = Some(0);
        }
    }
}

pub type Partials = BTreeMap<Address, Partial>;

/// Folds the prestate tracer's per-transaction diffs, in transaction order.
pub fn merge_prestate<'a>(txs: impl IntoIterator<Item = &'a DiffMode>) -> Partials {
    let mut out = Partials::new();
    for tx in txs {
        let addresses: std::collections::BTreeSet<&Address> = tx.pre.keys().chain(tx.post.keys()).collect();
        for address in addresses {
            let acc = out.entry(*address).or_default();
            let pre = tx.pre.get(address);
            if acc.prior.is_none() {
                // First sight in the block: `pre` is the account before the block (absent: it did not exist).
                acc.prior = Some(pre.and_then(|p| {
                    let code_hash = p
                        .code
                        .as_ref()
                        .map_or(alloy_primitives::KECCAK256_EMPTY, alloy_primitives::keccak256);
                    AccountPrior::existing(
                        p.balance.unwrap_or_default(),
                        p.nonce.unwrap_or_default(),
                        code_hash,
                    )
                }));
            }
            let named = pre.into_iter().chain(tx.post.get(address)).flat_map(|a| a.storage.keys());
            for slot in named {
                acc.touched.insert(*slot);
                // The first transaction to name a slot is the first to change it: its `pre` holds the value
                // before the block (diff mode omits zeros).
                let before = pre.and_then(|p| p.storage.get(slot)).copied().unwrap_or_default();
                acc.slot_priors.entry(*slot).or_insert(before);
            }
            let Some(post) = tx.post.get(address) else {
                acc.delete();
                continue;
            };
            // Alive before this transaction after a deletion earlier in the block: the deletion was false.
            // Nothing was wiped; the caller reads the account back (what the earlier transactions wrote went
            // with the false deletion).
            if acc.deleted && pre.is_some_and(exists) {
                acc.deleted = false;
                acc.wiped = acc.wiped_before_deletion;
                acc.false_deletion = true;
            }
            // Re-created after a deletion earlier in this block: its prior state is "empty", not `pre`.
            let pre = if acc.deleted { None } else { pre };
            acc.revive();
            // Fields absent from `post` did not change in this transaction: take them from earlier
            // transactions of the block, else from `pre` (the full prior account), else they are zero.
            acc.balance = post.balance.or(acc.balance).or(pre.and_then(|p| p.balance)).or(Some(U256::ZERO));
            acc.nonce = post.nonce.or(acc.nonce).or(pre.and_then(|p| p.nonce)).or(Some(0));
            if let Some(code) = &post.code {
                acc.code = Some(code.clone());
            } else if pre.and_then(|p| p.code.as_ref()).is_some_and(|c| c.starts_with(&[0xef, 0x01, 0x00])) {
                acc.recheck_code = true;
            }
            let slots = pre.into_iter().flat_map(|p| p.storage.keys()).chain(post.storage.keys());
            for slot in slots {
                acc.storage.insert(*slot, post.storage.get(slot).copied().unwrap_or_default());
            }
        }
    }
    out
}

/// Whether a prestate account shows anything: a nonce, a balance, code or storage.
fn exists(a: &alloy_rpc_types_trace::geth::AccountState) -> bool {
    has_fields(a) || !a.storage.is_empty()
}

/// Whether a prestate account shows a nonce, a balance or code (its storage aside).
pub(crate) fn has_fields(a: &alloy_rpc_types_trace::geth::AccountState) -> bool {
    a.nonce.is_some_and(|n| n > 0)
        || a.balance.is_some_and(|b| !b.is_zero())
        || a.code.as_ref().is_some_and(|c| !c.is_empty())
}

/// Folds parity `stateDiff`s, in transaction order.
pub fn merge_state_diff<'a>(txs: impl IntoIterator<Item = &'a BTreeMap<Address, AccountDiff>>) -> Partials {
    let mut out = Partials::new();
    for tx in txs {
        for (address, d) in tx {
            let acc = out.entry(*address).or_default();
            acc.touched.extend(d.storage.keys());
            if acc.prior.is_none() {
                acc.prior = state_diff_prior(d);
            }
            for (slot, delta) in &d.storage {
                let before = match delta {
                    Delta::Added(_) => Some(B256::ZERO),
                    Delta::Changed(c) => Some(c.from),
                    Delta::Removed(v) => Some(*v),
                    Delta::Unchanged => None,
                };
                if let Some(before) = before {
                    acc.slot_priors.entry(*slot).or_insert(before);
                }
            }
            let removed = matches!(d.balance, Delta::Removed(_)) && matches!(d.nonce, Delta::Removed(_));
            if removed {
                acc.delete();
                continue;
            }
            acc.revive();
            if let Some(v) = new_value(&d.balance) {
                acc.balance = Some(v);
            }
            if let Some(v) = new_value(&d.nonce) {
                acc.nonce = Some(v.saturating_to());
            }
            if let Some(code) = new_value(&d.code) {
                acc.code = Some(code);
            }
            for (slot, delta) in &d.storage {
                match delta {
                    Delta::Removed(_) => {
                        acc.storage.insert(*slot, B256::ZERO);
                    }
                    other => {
                        if let Some(v) = new_value(other) {
                            acc.storage.insert(*slot, v);
                        }
                    }
                }
            }
        }
    }
    out
}

/// The account before the block from its first stateDiff: known only when the diff gives every field's old
/// value (`=` gives none; the caller reads the rest).
fn state_diff_prior(d: &AccountDiff) -> Option<Option<AccountPrior>> {
    if matches!(d.balance, Delta::Added(_)) {
        return Some(None);
    }
    let balance = old_value(&d.balance)?;
    let nonce = old_value(&d.nonce)?;
    let code = old_value(&d.code)?;
    Some(AccountPrior::existing(balance, nonce.saturating_to(), alloy_primitives::keccak256(&code)))
}

fn old_value<T: Clone>(d: &Delta<T>) -> Option<T> {
    match d {
        Delta::Changed(c) => Some(c.from.clone()),
        Delta::Removed(v) => Some(v.clone()),
        Delta::Added(_) | Delta::Unchanged => None,
    }
}

fn new_value<T: Clone>(d: &Delta<T>) -> Option<T> {
    match d {
        Delta::Added(v) => Some(v.clone()),
        Delta::Changed(c) => Some(c.to.clone()),
        Delta::Unchanged | Delta::Removed(_) => None,
    }
}

/// The record's state list: sorted by address and slot, each once. Accounts whose balance, nonce or prior
/// values are still unknown must have been filled in by the caller; any left get zero (the caller makes sure
/// none are left).
pub fn finish(partials: Partials) -> Vec<AccountChange> {
    partials
        .into_iter()
        .map(|(address, p)| {
            let wiped = p.wiped || p.deleted;
            AccountChange {
                address,
                storage_wiped: p.wiped,
                prior: p.prior.flatten(),
                account: (!p.deleted).then(|| AccountState {
                    balance: p.balance.unwrap_or_default(),
                    nonce: p.nonce.unwrap_or_default(),
                    code: p.code,
                }),
                storage: if p.deleted {
                    Vec::new()
                } else {
                    p.storage
                        .into_iter()
                        .map(|(slot, value)| {
                            let prior = if wiped {
                                B256::ZERO
                            } else {
                                p.slot_priors.get(&slot).copied().unwrap_or_default()
                            };
                            StorageSlot { slot, prior, value }
                        })
                        .collect()
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_rpc_types_trace::geth::AccountState as Geth;

    fn addr(b: u8) -> Address {
        Address::repeat_byte(b)
    }
    fn slot(b: u8) -> B256 {
        B256::with_last_byte(b)
    }
    fn acct(balance: Option<u64>, nonce: Option<u64>, storage: &[(u8, u8)]) -> Geth {
        Geth {
            balance: balance.map(U256::from),
            nonce,
            code: None,
            storage: storage.iter().map(|(s, v)| (slot(*s), slot(*v))).collect(),
        }
    }
    fn diff(pre: Vec<(u8, Geth)>, post: Vec<(u8, Geth)>) -> DiffMode {
        DiffMode {
            pre: pre.into_iter().map(|(a, s)| (addr(a), s)).collect(),
            post: post.into_iter().map(|(a, s)| (addr(a), s)).collect(),
        }
    }

    #[test]
    fn prestate_merge_table() {
        /// (address byte, Some((balance, nonce)) or None when deleted, storage wiped, [(slot, value)]).
        type Want = (u8, Option<(u64, u64)>, bool, Vec<(u8, u8)>);
        struct Case {
            name: &'static str,
            txs: Vec<DiffMode>,
            want: Vec<Want>,
        }
        let cases = vec![
            Case {
                name: "transfer: balance from post, nonce from pre",
                txs: vec![diff(
                    vec![(1, acct(Some(100), Some(3), &[]))],
                    vec![(1, acct(Some(90), None, &[]))],
                )],
                want: vec![(1, Some((90, 3)), false, vec![])],
            },
            Case {
                name: "zeroed slot: in pre, absent from post",
                txs: vec![diff(
                    vec![(1, acct(Some(5), Some(1), &[(1, 9)]))],
                    vec![(1, acct(None, None, &[]))],
                )],
                want: vec![(1, Some((5, 1)), false, vec![(1, 0)])],
            },
            Case {
                name: "new slot: only in post",
                txs: vec![diff(
                    vec![(1, acct(Some(5), Some(1), &[]))],
                    vec![(1, acct(None, None, &[(2, 7)]))],
                )],
                want: vec![(1, Some((5, 1)), false, vec![(2, 7)])],
            },
            Case {
                name: "deleted: in pre, not in post",
                txs: vec![diff(vec![(1, acct(Some(5), Some(1), &[(1, 1)]))], vec![])],
                want: vec![(1, None, true, vec![])],
            },
            Case {
                name: "deleted then re-created later in the block",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[(1, 1)]))], vec![]),
                    diff(vec![], vec![(1, acct(Some(2), Some(1), &[(3, 3)]))]),
                ],
                want: vec![(1, Some((2, 1)), true, vec![(3, 3)])],
            },
            Case {
                name: "slot set then cleared in the same block",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[]))], vec![(1, acct(None, None, &[(4, 1)]))]),
                    diff(vec![(1, acct(Some(5), Some(1), &[(4, 1)]))], vec![(1, acct(None, None, &[]))]),
                ],
                want: vec![(1, Some((5, 1)), false, vec![(4, 0)])],
            },
            Case {
                name: "a false deletion: a later transaction finds the account alive (nothing wiped)",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[(1, 1)]))], vec![]),
                    diff(vec![(1, acct(Some(5), Some(1), &[]))], vec![(1, acct(None, None, &[(3, 3)]))]),
                ],
                want: vec![(1, Some((5, 1)), false, vec![(3, 3)])],
            },
            Case {
                name: "created and destroyed in one tx: no trace, no change",
                txs: vec![diff(vec![], vec![])],
                want: vec![],
            },
        ];
        for c in cases {
            let got = finish(merge_prestate(&c.txs));
            let got: Vec<_> = got
                .iter()
                .map(|a| {
                    (
                        a.address,
                        a.account.as_ref().map(|s| (s.balance.saturating_to::<u64>(), s.nonce)),
                        a.storage_wiped,
                        a.storage.iter().map(|s| (s.slot, s.value)).collect::<Vec<_>>(),
                    )
                })
                .collect();
            let want: Vec<_> = c
                .want
                .iter()
                .map(|(a, s, w, st)| {
                    (
                        addr(*a),
                        *s,
                        *w,
                        st.iter()
                            .map(|(k, v)| (slot(*k), if *v == 0 { B256::ZERO } else { slot(*v) }))
                            .collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }

    /// Prior values: the first transaction naming an account or slot gives its value before the block.
    #[test]
    fn prestate_priors_table() {
        const E: B256 = alloy_primitives::KECCAK256_EMPTY;
        /// (address byte, prior (balance, nonce) or None, slot priors still unknown, [(slot, prior)]).
        type Want = (u8, Option<(u64, u64)>, Vec<u8>, Vec<(u8, u8)>);
        struct Case {
            name: &'static str,
            txs: Vec<DiffMode>,
            want: Vec<Want>,
        }
        let cases = vec![
            Case {
                name: "transfer: the prior is pre",
                txs: vec![diff(vec![(1, acct(Some(100), Some(3), &[]))], vec![(1, acct(Some(90), None, &[]))])],
                want: vec![(1, Some((100, 3)), vec![], vec![])],
            },
            Case {
                name: "new account: only in post, no prior",
                txs: vec![diff(vec![], vec![(1, acct(Some(5), None, &[(1, 1)]))])],
                want: vec![(1, None, vec![], vec![(1, 0)])],
            },
            Case {
                name: "fresh recipient shown as an empty pre: no prior",
                txs: vec![diff(vec![(1, acct(Some(0), None, &[]))], vec![(1, acct(Some(5), None, &[]))])],
                want: vec![(1, None, vec![], vec![])],
            },
            Case {
                name: "a slot changed twice: the first pre wins",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[(1, 9)]))], vec![(1, acct(None, None, &[(1, 8)]))]),
                    diff(vec![(1, acct(Some(5), Some(1), &[(1, 8)]))], vec![(1, acct(None, None, &[(1, 7)]))]),
                ],
                want: vec![(1, Some((5, 1)), vec![], vec![(1, 9)])],
            },
            Case {
                name: "a slot first named by a later transaction: its pre",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[]))], vec![(1, acct(Some(4), None, &[]))]),
                    diff(vec![(1, acct(Some(4), Some(1), &[(2, 6)]))], vec![(1, acct(None, None, &[]))]),
                ],
                want: vec![(1, Some((5, 1)), vec![], vec![(2, 6)])],
            },
            Case {
                name: "deleted and re-created: the account's first pre, slot priors zero (the replica reads them)",
                txs: vec![
                    diff(vec![(1, acct(Some(5), Some(1), &[(1, 1)]))], vec![]),
                    diff(vec![], vec![(1, acct(Some(2), Some(1), &[(3, 3)]))]),
                ],
                want: vec![(1, Some((5, 1)), vec![], vec![(3, 0)])],
            },
        ];
        for c in cases {
            let merged = merge_prestate(&c.txs);
            let unknown: Vec<Vec<B256>> = merged.values().map(|p| p.unknown_slot_priors()).collect();
            let got: Vec<_> = finish(merged)
                .into_iter()
                .zip(unknown)
                .map(|(a, unknown)| {
                    let prior = a.prior.map(|p| {
                        assert_eq!(p.code_hash, E, "{}", c.name);
                        (p.balance.saturating_to::<u64>(), p.nonce)
                    });
                    (
                        a.address,
                        prior,
                        unknown,
                        a.storage.iter().map(|s| (s.slot, s.prior)).collect::<Vec<_>>(),
                    )
                })
                .collect();
            let want: Vec<_> = c
                .want
                .iter()
                .map(|(a, p, unknown, st)| {
                    let value = |v: u8| if v == 0 { B256::ZERO } else { slot(v) };
                    (
                        addr(*a),
                        *p,
                        unknown.iter().map(|s| slot(*s)).collect::<Vec<_>>(),
                        st.iter().map(|(k, v)| (slot(*k), value(*v))).collect::<Vec<_>>(),
                    )
                })
                .collect();
            assert_eq!(got, want, "{}", c.name);
        }
    }

    #[test]
    fn state_diff_priors_come_from_the_first_diff_or_stay_unknown() {
        use alloy_primitives::U64;
        use alloy_rpc_types_trace::parity::ChangedType;
        let changed =
            |from: u64, to: u64| Delta::Changed(ChangedType { from: U256::from(from), to: U256::from(to) });
        let mut tx = BTreeMap::new();
        // Balance and nonce changed, code unchanged: the code hash is unknown, so the whole prior is.
        tx.insert(
            addr(1),
            AccountDiff {
                balance: changed(10, 9),
                nonce: Delta::Changed(ChangedType { from: U64::from(1), to: U64::from(2) }),
                code: Delta::Unchanged,
                storage: [(slot(1), Delta::Changed(ChangedType { from: slot(4), to: slot(5) }))]
                    .into_iter()
                    .collect(),
            },
        );
        // Created in the block: it did not exist before.
        tx.insert(
            addr(2),
            AccountDiff {
                balance: Delta::Added(U256::from(3)),
                nonce: Delta::Added(U64::ZERO),
                code: Delta::Added(Bytes::new()),
                storage: [(slot(2), Delta::Added(slot(6)))].into_iter().collect(),
            },
        );
        let merged = merge_state_diff([&tx]);
        assert_eq!(merged[&addr(1)].prior, None);
        assert_eq!(merged[&addr(1)].slot_priors[&slot(1)], slot(4));
        assert_eq!(merged[&addr(2)].prior, Some(None));
        assert_eq!(merged[&addr(2)].slot_priors[&slot(2)], B256::ZERO);
        assert!(merged[&addr(2)].unknown_slot_priors().is_empty());
    }

    #[test]
    fn state_diff_unchanged_fields_must_be_read() {
        let mut tx = BTreeMap::new();
        tx.insert(
            addr(1),
            AccountDiff {
                balance: Delta::Unchanged,
                nonce: Delta::Unchanged,
                code: Delta::Unchanged,
                storage: [(
                    slot(1),
                    Delta::Changed(alloy_rpc_types_trace::parity::ChangedType {
                        from: slot(1),
                        to: B256::ZERO,
                    }),
                )]
                .into_iter()
                .collect(),
            },
        );
        let merged = merge_state_diff([&tx]);
        assert!(merged[&addr(1)].needs_account());
        assert_eq!(merged[&addr(1)].storage[&slot(1)], B256::ZERO);
    }

    #[test]
    fn a_delegated_account_without_code_in_post_is_rechecked() {
        let mut pre = acct(Some(5), Some(1), &[]);
        pre.code = Some(Bytes::from_static(&[0xef, 0x01, 0x00, 0xaa]));
        let merged = merge_prestate(&[diff(vec![(1, pre)], vec![(1, acct(None, Some(2), &[]))])]);
        assert!(merged[&addr(1)].recheck_code);
        let plain = merge_prestate(&[diff(
            vec![(2, acct(Some(5), Some(1), &[]))],
            vec![(2, acct(Some(4), None, &[]))],
        )]);
        assert!(!plain[&addr(2)].recheck_code);
    }
}
