//! `ether-cattle verify-blocks`: a replica checks its publisher's records by execution.
//!
//! Each block is re-executed on the state before it ([`Replay`], the same code the traces run: its
//! pre-block system calls, every transaction with its gas checked against its receipt, then
//! [`Replay::finish`]: withdrawals, the miner's reward before the merge, the request queues' system calls
//! from Prague). The state the execution ends with is then compared with what the store holds after the
//! block, both ways:
//!
//! - every account and slot the execution read or wrote has, in the store at the block, the value the
//!   execution left (balance, nonce, code hash; each slot's value);
//! - every account and slot the block's record changed (its undo entry, kept for the undo window) is one the
//!   execution wrote.
//!
//! The first difference names the block, the account (and slot) and the transaction that last wrote it.
//! What it cannot see: a slot the record should have wiped and left (a wiped account's slots that neither
//! the execution nor the record names); the state root (issue 29's trie) closes that gap.

use std::{collections::HashMap, sync::Arc};

use alloy_primitives::{keccak256, Address, B256, KECCAK256_EMPTY, U256};
use ec_store::{tables::StoredBlock, Reads, StoreView};
use revm::{database::AccountState, state::AccountInfo};

use crate::exec::{ExecError, Replay};

/// Why a block did not verify.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Exec(#[from] ExecError),
    #[error("block {number}: {key}: the store holds {stored}, execution wrote {executed} (last written by {writer})")]
    Differs { number: u64, key: String, stored: String, executed: String, writer: String },
    #[error("block {number}: {key}: the block's record changed it, execution did not write it")]
    Unwritten { number: u64, key: String },
    #[error("block {number}: reading the store: {reason}")]
    Store { number: u64, reason: String },
}

impl VerifyError {
    /// Whether the block disagrees with its execution (rather than the check not being able to run: state
    /// the database does not hold, a block it cannot re-execute, a read that failed).
    pub fn is_difference(&self) -> bool {
        match self {
            VerifyError::Exec(ExecError::GasMismatch { .. } | ExecError::Transaction { .. }) => true,
            VerifyError::Exec(_) | VerifyError::Store { .. } => false,
            VerifyError::Differs { .. } | VerifyError::Unwritten { .. } => true,
        }
    }
}

/// What one block's check compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Checked {
    pub accounts: usize,
    pub slots: usize,
    /// Whether the record's own list of changes was still held (the undo window) and checked too.
    pub record_checked: bool,
}

/// Who last wrote each account and slot during the block: a transaction's index, or none (a system call,
/// a withdrawal, the reward).
#[derive(Default)]
struct Writers(HashMap<(Address, Option<U256>), (usize, B256)>);

impl Writers {
    fn record(&mut self, index: usize, hash: B256, state: &revm::state::EvmState) {
        for (address, account) in state.iter().filter(|(_, a)| a.is_touched()) {
            self.0.insert((*address, None), (index, hash));
            for (slot, _) in account.storage.iter().filter(|(_, v)| v.is_changed()) {
                self.0.insert((*address, Some(*slot)), (index, hash));
            }
        }
    }

    fn name(&self, address: Address, slot: Option<U256>) -> String {
        match self.0.get(&(address, slot)).or_else(|| self.0.get(&(address, None))) {
            Some((index, hash)) => format!("transaction {index} ({hash})"),
            None => "no transaction: a system call, a withdrawal or the reward, or only read".into(),
        }
    }
}

/// Re-executes `block` and compares the state it writes with the store's after it.
pub fn verify_block(
    view: &StoreView<'_>,
    spec: &ec_chainspec::ChainSpec,
    block: Arc<StoredBlock>,
) -> Result<Checked, VerifyError> {
    let number = block.number;
    let mut replay = Replay::start(view, spec, block)?;
    let mut writers = Writers::default();
    while replay.next_index() < replay.len() {
        let (executed, _) = replay.execute(revm::inspector::NoOpInspector)?;
        writers.record(executed.index, executed.hash, &executed.result.state);
        replay.commit(executed);
    }
    replay.finish()?;
    let store_error = |e: ec_store::StoreError| VerifyError::Store { number, reason: e.to_string() };
    let mut checked = Checked::default();
    let accounts = &replay.db().cache.accounts;
    for (address, account) in accounts {
        let executed = match account.account_state {
            AccountState::NotExisting => None,
            _ => Some(&account.info),
        };
        let stored = view.account_at(address, number).map_err(store_error)?;
        let (executed, stored) =
            (summary(executed), stored.map(|a| (a.balance, a.nonce, a.code_hash)).filter(exists));
        if executed != stored {
            return Err(VerifyError::Differs {
                number,
                key: format!("account {address}"),
                stored: describe(stored),
                executed: describe(executed),
                writer: writers.name(*address, None),
            });
        }
        checked.accounts += 1;
        for (slot, value) in &account.storage {
            let stored = view.storage_at(address, &B256::from(*slot), number).map_err(store_error)?;
            if U256::from_be_bytes(stored.0) != *value {
                return Err(VerifyError::Differs {
                    number,
                    key: format!("account {address} slot {:#x}", slot),
                    stored: format!("{stored}"),
                    executed: format!("{}", B256::from(*value)),
                    writer: writers.name(*address, Some(*slot)),
                });
            }
            checked.slots += 1;
        }
    }
    checked.record_checked = check_record(view, number, accounts)?;
    Ok(checked)
}

/// The other way: everything the block's record changed is something the execution wrote (or read: a value
/// it left unchanged is compared above). `false` when the undo window no longer holds the record's list.
fn check_record(
    view: &StoreView<'_>,
    number: u64,
    accounts: &alloy_primitives::map::AddressMap<revm::database::DbAccount>,
) -> Result<bool, VerifyError> {
    let Some(changes) =
        view.block_changes(number).map_err(|e| VerifyError::Store { number, reason: e.to_string() })?
    else {
        return Ok(false);
    };
    let store_error = |e: ec_store::StoreError| VerifyError::Store { number, reason: e.to_string() };
    // A key the record wrote with the value it already had (the publisher rewrites the system contracts'
    // slots it reads back each block, whatever the fork) changed nothing: only a real change must be the
    // execution's.
    let parent = number.saturating_sub(1);
    let account_unchanged = |key: &B256| -> Result<bool, VerifyError> {
        let after = view.account_at_key(key, number).map_err(store_error)?;
        Ok(after == view.account_at_key(key, parent).map_err(store_error)?)
    };
    let slot_unchanged = |account: &B256, slot: &B256| -> Result<bool, VerifyError> {
        let after = view.storage_at_keys(account, slot, number).map_err(store_error)?;
        Ok(after == view.storage_at_keys(account, slot, parent).map_err(store_error)?)
    };
    let by_hash: HashMap<B256, &Address> = accounts.keys().map(|a| (keccak256(a), a)).collect();
    for (hashed, slots) in &changes.accounts {
        let executed = by_hash.get(hashed).and_then(|a| accounts.get(*a).map(|acc| (*a, acc)));
        let Some((address, account)) = executed else {
            if !account_unchanged(hashed)? {
                let key = format!("account with hashed address {hashed}");
                return Err(VerifyError::Unwritten { number, key });
            }
            for slot in slots {
                if !slot_unchanged(hashed, slot)? {
                    let key =
                        format!("slot with hashed key {slot} of the account with hashed address {hashed}");
                    return Err(VerifyError::Unwritten { number, key });
                }
            }
            continue;
        };
        // A wiped account's slots are all changed by the record and need not be in the execution's cache.
        let wiped = matches!(account.account_state, AccountState::NotExisting | AccountState::StorageCleared);
        let slots_by_hash: HashMap<B256, &U256> =
            account.storage.keys().map(|s| (keccak256(B256::from(*s)), s)).collect();
        for slot in slots.iter().filter(|s| !slots_by_hash.contains_key(*s)) {
            let key = || format!("account {address} slot with hashed key {slot}");
            if wiped {
                // The execution dropped the account's storage: the record may only have wiped it too.
                let after = view.storage_at_keys(hashed, slot, number).map_err(store_error)?;
                if !after.is_zero() {
                    let (stored, executed) =
                        (after.to_string(), "nothing (the account's storage was wiped)".into());
                    return Err(VerifyError::Differs {
                        number,
                        key: key(),
                        stored,
                        executed,
                        writer: "none".into(),
                    });
                }
            } else if !slot_unchanged(hashed, slot)? {
                return Err(VerifyError::Unwritten { number, key: key() });
            }
        }
    }
    Ok(true)
}

/// An account as the store compares it: absent when it does not exist or is empty (EIP-161).
fn summary(info: Option<&AccountInfo>) -> Option<(U256, u64, B256)> {
    info.map(|i| (i.balance, i.nonce, if i.code_hash == B256::ZERO { KECCAK256_EMPTY } else { i.code_hash }))
        .filter(exists)
}

fn exists(a: &(U256, u64, B256)) -> bool {
    !(a.0.is_zero() && a.1 == 0 && a.2 == KECCAK256_EMPTY)
}

fn describe(a: Option<(U256, u64, B256)>) -> String {
    match a {
        None => "no account".into(),
        Some((balance, nonce, code_hash)) => {
            format!("balance {balance}, nonce {nonce}, code hash {code_hash}")
        }
    }
}
