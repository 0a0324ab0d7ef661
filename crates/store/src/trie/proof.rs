//! Merkle proofs of accounts and slots (`eth_getProof`, EIP-1186) from the stored trie: at the head by
//! walking the stored nodes down to the targets; at an older block the same way over the nodes as they were
//! then, when the trie's recent past holds every block since ([`super::history`]), and otherwise by laying
//! that block's values over every key changed since (the same walk a block's root check does).

use std::collections::BTreeMap;

use alloy_primitives::{keccak256, Address, Bytes, B256};
use alloy_trie::{Nibbles, EMPTY_ROOT_HASH};

use super::{
    account_leaf,
    history::{walk_accounts_at, walk_storage_at, Past},
    update::{AccountDelta, StateDelta, TrieWalks},
    walk::Walked,
};
use crate::{
    cores::{self, on_every_core},
    error::{Result, StoreError},
    read::Reads,
    tables::StoredAccount,
};

/// An account's proof and its slots' proofs, at one block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountProof {
    pub address: Address,
    /// The account (`None`: it does not exist, and the proof shows its absence).
    pub account: Option<StoredAccount>,
    pub storage_root: B256,
    /// The nodes from the state root down to the account's leaf (or to where its path ends).
    pub proof: Vec<Bytes>,
    pub storage: Vec<SlotProof>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotProof {
    /// The slot as asked for (not hashed).
    pub slot: B256,
    pub value: B256,
    pub proof: Vec<Bytes>,
}

/// An account as a simulation left it, laid over a stored state by [`Proofs::state_root_with`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OverlayAccount {
    pub address: Address,
    /// Its value (`None`: it does not exist).
    pub account: Option<StoredAccount>,
    /// Whether its stored storage is all gone (a full `state` override, a self-destruct): only `slots` hold.
    pub storage_cleared: bool,
    /// Slots (not hashed) and their new values (zero: gone).
    pub slots: BTreeMap<B256, B256>,
}

/// Proofs, over a store or a view of it (one instant: the trie and the state agree).
pub trait Proofs: Reads + Sized + Sync {
    /// The proof of `address` and its `slots` in the state after block `number`, which must be the head or
    /// a block whose changes since are still held (the undo window). The state root the proof leads to is
    /// returned beside it: block `number`'s.
    fn proof(&self, address: &Address, slots: &[B256], number: u64) -> Result<(B256, AccountProof)> {
        let trie = self.trie_head()?.ok_or(StoreError::Config {
            reason: "the state trie is off on this replica (--state-trie off): it serves no proofs".into(),
        })?;
        if number < trie.number {
            if let Some(found) = from_recent_past(self, address, slots, number, trie.number)? {
                return Ok(found);
            }
            self.store().trie_history.count_proof(false);
        }
        self.proof_by_walking(address, slots, number, trie.number)
    }

    /// [`Proofs::proof`] at a block below the trie's head, from the trie's recent past alone (about as fast
    /// as at the head): `None` when the store does not hold every block since `number`, or the walk over them
    /// disagreed with the root they recorded, where [`Proofs::proof`] walks every key changed since.
    fn proof_from_recent_past(
        &self,
        address: &Address,
        slots: &[B256],
        number: u64,
    ) -> Result<Option<(B256, AccountProof)>> {
        let Some(trie) = self.trie_head()? else { return Ok(None) };
        from_recent_past(self, address, slots, number, trie.number)
    }

    /// [`Proofs::proof`] over every key changed after block `number` up to the trie's head `head`, with its
    /// value then (read from history).
    fn proof_by_walking(
        &self,
        address: &Address,
        slots: &[B256],
        number: u64,
        head: u64,
    ) -> Result<(B256, AccountProof)> {
        let delta = self.values_since(number, head)?;
        let key = keccak256(address);

        // The account's storage trie, at `number`.
        let changed_slots = delta.accounts.get(&key).map(|d| d.slots.clone()).unwrap_or_default();
        let slot_keys: Vec<B256> = slots.iter().map(keccak256).collect();
        let storage = self.walk_storage(&key, &changed_slots, &slot_keys)?;
        let account = match delta.accounts.get(&key) {
            Some(d) => d.account.clone(),
            None => self.get::<crate::tables::Accounts>(&key)?,
        };
        let storage_root = if account.is_some() { storage.root } else { EMPTY_ROOT_HASH };

        // The account trie, at `number`: every account changed since with its value then (and, for this
        // account, the storage root just computed; for the others, the one each had then).
        let roots = self.each_storage_trie(&delta, |k, d| {
            Ok(if *k == key { storage_root } else { self.storage_root_after(k, d)?.0 })
        })?;
        let mut overlay = BTreeMap::new();
        for ((k, d), root) in delta.accounts.iter().zip(roots) {
            overlay.insert(*k, d.account.as_ref().map(|a| account_leaf(a, root)));
        }
        let accounts = self.walk_accounts(&overlay, delta.accounts.keys(), &[key])?;
        let found = Walks { address, key, account, storage, accounts };
        found.proof(slots, &slot_keys, |slot_key| match changed_slots.get(slot_key) {
            Some(v) => Ok(*v),
            None => Ok(self.get::<crate::tables::Storage>(&(key, *slot_key))?.unwrap_or_default()),
        })
    }

    /// Block `number`'s state as seen from the trie's head: every key changed since, with its value at
    /// `number` (what [`Proofs::state_root_with`] lays changes over; computed once for many roots).
    fn rollback_to(&self, number: u64) -> Result<StateDelta> {
        let trie = self.trie_head()?.ok_or(StoreError::Config {
            reason: "the state trie is off on this replica (--state-trie off): it computes no state roots"
                .into(),
        })?;
        self.values_since(number, trie.number)
    }

    /// The state root of a block's state (`rollback`, from [`Proofs::rollback_to`]) with `changes` laid
    /// over it (`eth_simulateV1`'s blocks): the same walk as a proof at that block, with the changed
    /// accounts' leaves and slots on top.
    fn state_root_with(&self, rollback: &StateDelta, changes: &[OverlayAccount]) -> Result<B256> {
        let mut delta = rollback.clone();
        let mut cleared = std::collections::BTreeSet::new();
        for change in changes {
            let key = keccak256(change.address);
            let entry = delta.accounts.entry(key).or_default();
            entry.account = change.account.clone();
            if change.storage_cleared {
                cleared.insert(key);
                entry.slots.clear();
            }
            entry.slots.extend(change.slots.iter().map(|(slot, value)| (keccak256(slot), *value)));
        }
        let roots = self.each_storage_trie(&delta, |key, d| {
            if !cleared.contains(key) {
                return Ok(self.storage_root_after(key, d)?.0);
            }
            // Nothing of the stored storage is left: the root of the new slots alone.
            let mut hb = alloy_trie::HashBuilder::default();
            for (slot, value) in d.slots.iter().filter(|(_, v)| !v.is_zero()) {
                hb.add_leaf(Nibbles::unpack(slot), &super::slot_leaf(value));
            }
            Ok(hb.root())
        })?;
        let mut overlay = BTreeMap::new();
        for ((key, d), root) in delta.accounts.iter().zip(roots) {
            overlay.insert(*key, d.account.as_ref().map(|a| account_leaf(a, root)));
        }
        Ok(self.walk_accounts(&overlay, delta.accounts.keys(), &[])?.root)
    }

    /// Every key changed after block `number` up to the head `head`, with its value at `number`.
    fn values_since(&self, number: u64, head: u64) -> Result<StateDelta> {
        let mut delta = StateDelta::default();
        if number > head {
            return Err(StoreError::Config { reason: format!("block {number} is past the head {head}") });
        }
        let mut keys: BTreeMap<B256, Vec<B256>> = BTreeMap::new();
        for n in number + 1..=head {
            // The undo index of every block since is needed; the oldest provable block is the last one
            // whose later undo entries are all still held.
            let changes = self.block_changes(n)?.ok_or(StoreError::StateUnavailable { number, first: n })?;
            for (account, slots) in changes.accounts {
                keys.entry(account).or_default().extend(slots);
            }
        }
        // Each key's value then is a history read, independent of the others: on every core.
        let keys: Vec<(B256, Vec<B256>)> = keys.into_iter().collect();
        let values = on_every_core(&keys, cores::available(), |(account, slots)| -> Result<AccountDelta> {
            let mut d = AccountDelta { account: self.account_at_key(account, number)?, ..Default::default() };
            for slot in slots {
                d.slots.insert(*slot, self.storage_at_keys(account, slot, number)?);
            }
            Ok(d)
        });
        for ((account, _), d) in keys.into_iter().zip(values) {
            delta.accounts.insert(account, d?);
        }
        Ok(delta)
    }
}

impl<S: Reads + Sync> Proofs for S {}

/// [`Proofs::proof_from_recent_past`] with the trie at block `head`.
fn from_recent_past<S: Proofs>(
    source: &S,
    address: &Address,
    slots: &[B256],
    number: u64,
    head: u64,
) -> Result<Option<(B256, AccountProof)>> {
    let history = &source.store().trie_history;
    let Some(units) = history.since(number, head) else { return Ok(None) };
    let found = proof_from_past(source, address, slots, &Past::new(number, &units))?;
    if found.is_some() {
        history.count_proof(true);
    }
    Ok(found)
}

/// [`Proofs::proof`] over the nodes as they were after the past's block; `None` when the walk does not
/// come out at the root the trie had then (a reorg between the view's instant and the units read: the caller
/// walks instead).
fn proof_from_past<S: Reads>(
    source: &S,
    address: &Address,
    slots: &[B256],
    past: &Past<'_>,
) -> Result<Option<(B256, AccountProof)>> {
    let key = keccak256(address);
    let slot_keys: Vec<B256> = slots.iter().map(keccak256).collect();
    let storage = walk_storage_at(source, past, &key, &slot_keys)?;
    let account = source.account_at_key(&key, past.number)?;
    let accounts = walk_accounts_at(source, past, &[key])?;
    if accounts.root != past.root() {
        tracing::warn!(
            number = past.number,
            computed = %accounts.root,
            expected = %past.root(),
            "a proof over the trie's recent past did not come out at that block's root; walking instead"
        );
        return Ok(None);
    }
    let found = Walks { address, key, account, storage, accounts };
    found.proof(slots, &slot_keys, |slot_key| source.storage_at_keys(&key, slot_key, past.number)).map(Some)
}

/// What a proof's two walks found: the account (at the block asked for), its storage trie walked down to
/// the slots asked for, and the account trie walked down to the account.
struct Walks<'a> {
    address: &'a Address,
    key: B256,
    account: Option<StoredAccount>,
    storage: Walked,
    accounts: Walked,
}

impl Walks<'_> {
    /// The proof, each slot's value from `value` (by hashed slot); an account that does not exist has the
    /// empty storage root and zero slots.
    fn proof(
        self,
        slots: &[B256],
        slot_keys: &[B256],
        mut value: impl FnMut(&B256) -> Result<B256>,
    ) -> Result<(B256, AccountProof)> {
        let exists = self.account.is_some();
        let storage = slots
            .iter()
            .zip(slot_keys)
            .map(|(slot, slot_key)| {
                let value = if exists { value(slot_key)? } else { B256::ZERO };
                Ok(SlotProof { slot: *slot, value, proof: nodes_to(&self.storage, slot_key) })
            })
            .collect::<Result<Vec<_>>>()?;
        let storage_root = if exists { self.storage.root } else { EMPTY_ROOT_HASH };
        let proof = nodes_to(&self.accounts, &self.key);
        let (address, account) = (*self.address, self.account);
        Ok((self.accounts.root, AccountProof { address, account, storage_root, proof, storage }))
    }
}

/// The proof nodes on the path to `key`, root first.
fn nodes_to(walked: &Walked, key: &B256) -> Vec<Bytes> {
    walked.proof.matching_nodes_sorted(&Nibbles::unpack(key)).into_iter().map(|(_, node)| node).collect()
}
