//! The state verifier: checks what a block record says against the chain's own commitment, the state root in
//! the block's header, through `eth_getProof` Merkle proofs. Pure: the proofs come from the caller.
//!
//! Why: the record is derived from the client's tracer, and tracers have had bugs exactly here (geth's
//! prestate tracer before v1.16.6 reported post-Cancun SELFDESTRUCT callers as deleted). A proof that
//! verifies against the header's root is the chain's state, whatever any tracer said; a record that differs
//! from it must never reach the log.

use alloy_primitives::{keccak256, Address, B256, U256};
use alloy_rlp::Encodable;
use alloy_rpc_types_eth::EIP1186AccountProofResponse;
use alloy_trie::{proof::verify_proof, Nibbles, TrieAccount, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use ec_log::AccountChange;
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Mismatch {
    #[error("account {address}: the client's proof does not verify against the state root {root}: {reason}")]
    BadProof { address: Address, root: B256, reason: String },
    #[error(
        "account {address}: the record says {what} is {record}, the chain (a verified proof) says {chain}"
    )]
    Differs { address: Address, what: String, record: String, chain: String },
}

/// Whether `address` is in the sample verified at block `number`: a fraction `rate` of the accounts, chosen
/// by hash so every block checks different ones (1.0: all of them; 0: none).
pub fn sampled(address: &Address, number: u64, rate: f64) -> bool {
    if rate >= 1.0 {
        return true;
    }
    if rate <= 0.0 {
        return false;
    }
    let mut key = [0u8; 28];
    key[..20].copy_from_slice(address.as_slice());
    key[20..].copy_from_slice(&number.to_be_bytes());
    let h = keccak256(key);
    let x = u64::from_be_bytes(h[..8].try_into().unwrap_or_default());
    (x as f64) < rate * u64::MAX as f64
}

/// Checks one account's change against a proof at the block: first that the proof verifies against
/// `state_root` (so its values are the chain's), then that the record agrees with it. The proof must hold
/// every slot the change writes.
pub fn check_account(
    state_root: B256,
    change: &AccountChange,
    proof: &EIP1186AccountProofResponse,
) -> Result<(), Mismatch> {
    let address = change.address;
    let bad = |reason: String| Mismatch::BadProof { address, root: state_root, reason };
    // An absent account: clients answer zeros (geth: a zero code hash and storage root, others the empty
    // ones); its proof is a proof of exclusion.
    let empty = proof.nonce == 0
        && proof.balance.is_zero()
        && (proof.code_hash == KECCAK_EMPTY || proof.code_hash.is_zero())
        && (proof.storage_hash == EMPTY_ROOT_HASH || proof.storage_hash.is_zero());
    let expected = (!empty).then(|| {
        let account = TrieAccount::new(proof.nonce, proof.balance, proof.storage_hash, proof.code_hash);
        let mut out = Vec::new();
        account.encode(&mut out);
        out
    });
    verify_proof(state_root, Nibbles::unpack(keccak256(address)), expected, &proof.account_proof)
        .map_err(|e| bad(format!("account proof: {e}")))?;

    let differs = |what: &str, record: String, chain: String| Mismatch::Differs {
        address,
        what: what.to_owned(),
        record,
        chain,
    };
    let Some(account) = &change.account else {
        if !empty {
            return Err(differs(
                "existence",
                "deleted".into(),
                format!("balance {}, nonce {}, code hash {}", proof.balance, proof.nonce, proof.code_hash),
            ));
        }
        return Ok(());
    };
    if account.balance != proof.balance {
        return Err(differs("the balance", account.balance.to_string(), proof.balance.to_string()));
    }
    if account.nonce != proof.nonce {
        return Err(differs("the nonce", account.nonce.to_string(), proof.nonce.to_string()));
    }
    // The code the replica will hold: new code, else the code before the block, which a wipe (or an
    // account that did not exist) leaves empty.
    let hash = match &account.code {
        Some(code) if code.is_empty() => KECCAK_EMPTY,
        Some(code) => keccak256(code),
        None => match &change.prior {
            Some(p) if !change.storage_wiped => p.code_hash,
            _ => KECCAK_EMPTY,
        },
    };
    let chain = if proof.code_hash.is_zero() { KECCAK_EMPTY } else { proof.code_hash };
    if hash != chain {
        return Err(differs("the code hash", hash.to_string(), chain.to_string()));
    }
    if change.storage_wiped {
        // After a wipe the record lists the account's whole storage: its root must be the chain's.
        let root = storage_root(change.storage.iter().map(|s| (s.slot, U256::from_be_bytes(s.value.0))));
        let chain = if proof.storage_hash.is_zero() { EMPTY_ROOT_HASH } else { proof.storage_hash };
        if root != chain {
            return Err(differs("the storage root after the wipe", root.to_string(), chain.to_string()));
        }
    }
    for slot in &change.storage {
        let value = proven_slot(state_root, address, proof, slot.slot)?;
        let recorded = U256::from_be_bytes(slot.value.0);
        if recorded != value {
            return Err(differs(&format!("slot {}", slot.slot), recorded.to_string(), value.to_string()));
        }
    }
    Ok(())
}

/// The storage root of exactly these slots (zeros are absent from a trie).
pub fn storage_root(slots: impl Iterator<Item = (B256, U256)>) -> B256 {
    let mut leaves: Vec<(Nibbles, Vec<u8>)> = slots
        .filter(|(_, v)| !v.is_zero())
        .map(|(s, v)| (Nibbles::unpack(keccak256(s)), alloy_rlp::encode(v)))
        .collect();
    leaves.sort_by_key(|a| a.0);
    let mut hb = alloy_trie::HashBuilder::default();
    for (k, v) in &leaves {
        hb.add_leaf(*k, v);
    }
    hb.root()
}

/// Checks the values a record gives for before the block (what a replica restores when it undoes the
/// block) against a proof at the parent: the account prior (existence, balance, nonce, code hash) and,
/// unless the account was wiped, every slot's prior. The proof is verified against `parent_root` when there
/// is one; without it (a genesis block whose header a dev client fills with no real root: anvil's) the
/// proof's values are taken as the client states them.
pub fn check_prior(
    parent_root: Option<B256>,
    change: &AccountChange,
    proof: &EIP1186AccountProofResponse,
) -> Result<(), Mismatch> {
    let address = change.address;
    let differs = |what: &str, record: String, chain: String| Mismatch::Differs {
        address,
        what: format!("{what} before the block"),
        record,
        chain,
    };
    let chain = match parent_root {
        Some(root) => proven_account(root, address, proof)?.map(|a| (a.balance, a.nonce, a.code_hash)),
        None => Some((proof.balance, proof.nonce, proof.code_hash)),
    };
    let chain = chain
        .and_then(|(balance, nonce, code_hash)| ec_log::AccountPrior::existing(balance, nonce, code_hash));
    if change.prior != chain {
        return Err(differs("the account", format!("{:?}", change.prior), format!("{chain:?}")));
    }
    if change.storage_wiped {
        return Ok(());
    }
    for slot in &change.storage {
        let value = match parent_root {
            Some(root) => proven_slot(root, address, proof, slot.slot)?,
            None => proof
                .storage_proof
                .iter()
                .find(|p| p.key.as_b256() == slot.slot)
                .map_or(U256::ZERO, |p| p.value),
        };
        let recorded = U256::from_be_bytes(slot.prior.0);
        if recorded != value {
            return Err(differs(&format!("slot {}", slot.slot), recorded.to_string(), value.to_string()));
        }
    }
    Ok(())
}

/// The account a proof shows at the block, once the proof verifies against `state_root`: `None` when it
/// proves the account absent. (Unlike [`check_account`] this tells an existing empty account, which only a
/// pre-EIP-158 chain holds, from an absent one: inclusion is tried first.)
pub fn proven_account(
    state_root: B256,
    address: Address,
    proof: &EIP1186AccountProofResponse,
) -> Result<Option<TrieAccount>, Mismatch> {
    let code_hash = if proof.code_hash.is_zero() { KECCAK_EMPTY } else { proof.code_hash };
    let storage_root = if proof.storage_hash.is_zero() { EMPTY_ROOT_HASH } else { proof.storage_hash };
    let account = TrieAccount::new(proof.nonce, proof.balance, storage_root, code_hash);
    let key = Nibbles::unpack(keccak256(address));
    let mut encoded = Vec::new();
    account.encode(&mut encoded);
    if verify_proof(state_root, key, Some(encoded), &proof.account_proof).is_ok() {
        return Ok(Some(account));
    }
    verify_proof(state_root, key, None, &proof.account_proof).map_err(|e| Mismatch::BadProof {
        address,
        root: state_root,
        reason: format!("the account proof shows neither {account:?} nor its absence: {e}"),
    })?;
    Ok(None)
}

/// A slot's value from a proof, once its storage proof verifies against the proof's storage root (the
/// caller has verified the account proof).
pub fn proven_slot(
    state_root: B256,
    address: Address,
    proof: &EIP1186AccountProofResponse,
    slot: B256,
) -> Result<U256, Mismatch> {
    let bad = |reason: String| Mismatch::BadProof { address, root: state_root, reason };
    let Some(p) = proof.storage_proof.iter().find(|p| p.key.as_b256() == slot) else {
        return Err(bad(format!("no storage proof for slot {slot}")));
    };
    let encoded = (!p.value.is_zero()).then(|| alloy_rlp::encode(p.value));
    let root = if proof.storage_hash.is_zero() { EMPTY_ROOT_HASH } else { proof.storage_hash };
    let key = Nibbles::unpack(keccak256(slot));
    verify_proof(root, key, encoded.clone(), &p.proof)
        .or_else(|e| match encoded {
            // anvil keeps zeroed slots in its trie (its roots are not canonical): a zero proven by
            // inclusion is still a zero.
            None => verify_proof(root, key, Some(alloy_rlp::encode(U256::ZERO)), &p.proof).map_err(|_| e),
            Some(_) => Err(e),
        })
        .map_err(|e| bad(format!("storage proof of slot {slot}: {e}")))?;
    Ok(p.value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_primitives::{address, Bytes};
    use alloy_trie::{proof::ProofRetainer, HashBuilder};
    use ec_log::{AccountState, StorageSlot};

    /// A one-account state trie holding `account` at `address`, and the proof of it.
    fn state_with(address: Address, account: Option<TrieAccount>) -> (B256, Vec<Bytes>) {
        let key = Nibbles::unpack(keccak256(address));
        let other = Nibbles::unpack(keccak256(address!("00000000000000000000000000000000000000ff")));
        let mut leaves = vec![(other, {
            let mut v = Vec::new();
            TrieAccount::new(1, U256::from(5), EMPTY_ROOT_HASH, KECCAK_EMPTY).encode(&mut v);
            v
        })];
        if let Some(a) = account {
            let mut v = Vec::new();
            a.encode(&mut v);
            leaves.push((key, v));
        }
        leaves.sort_by_key(|a| a.0);
        let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::from_iter([key]));
        for (k, v) in &leaves {
            hb.add_leaf(*k, v);
        }
        let root = hb.root();
        let proof = hb.take_proof_nodes().into_nodes_sorted().into_iter().map(|(_, n)| n).collect();
        (root, proof)
    }

    fn response(
        address: Address,
        account: Option<TrieAccount>,
        proof: Vec<Bytes>,
    ) -> EIP1186AccountProofResponse {
        let a = account.unwrap_or(TrieAccount::new(0, U256::ZERO, B256::ZERO, B256::ZERO));
        EIP1186AccountProofResponse {
            address,
            balance: a.balance,
            code_hash: a.code_hash,
            nonce: a.nonce,
            storage_hash: a.storage_root,
            account_proof: proof,
            storage_proof: vec![],
        }
    }

    fn change(address: Address, account: Option<(u64, u64)>) -> AccountChange {
        AccountChange {
            address,
            storage_wiped: false,
            prior: None,
            account: account.map(|(balance, nonce)| AccountState {
                balance: U256::from(balance),
                nonce,
                code: None,
            }),
            storage: vec![],
        }
    }

    #[test]
    fn records_are_checked_against_verified_proofs() {
        let a = address!("00000000000000000000000000000000000000a1");
        let live = TrieAccount::new(3, U256::from(100), EMPTY_ROOT_HASH, KECCAK_EMPTY);
        let (root, proof) = state_with(a, Some(live));
        let r = response(a, Some(live), proof.clone());
        assert_eq!(check_account(root, &change(a, Some((100, 3))), &r), Ok(()));
        // A falsified balance in the record.
        let err = check_account(root, &change(a, Some((101, 3))), &r).unwrap_err();
        assert_eq!(
            err,
            Mismatch::Differs {
                address: a,
                what: "the balance".into(),
                record: "101".into(),
                chain: "100".into()
            }
        );
        // A false deletion (the tracer bug): the chain still holds the account.
        let err = check_account(root, &change(a, None), &r).unwrap_err();
        assert!(matches!(&err, Mismatch::Differs { what, .. } if what == "existence"), "{err}");
        // A client that lies in its answer: the values do not match the proof.
        let lying = EIP1186AccountProofResponse { balance: U256::from(101), ..r.clone() };
        assert!(matches!(
            check_account(root, &change(a, Some((101, 3))), &lying),
            Err(Mismatch::BadProof { .. })
        ));
        // A real deletion: a proof of exclusion.
        let (root, proof) = state_with(a, None);
        assert_eq!(check_account(root, &change(a, None), &response(a, None, proof)), Ok(()));
    }

    /// The storage proof of `slot` in a trie holding `slots` (slot, value).
    fn slot_proof(slots: &[(u8, u64)], slot: u8) -> alloy_rpc_types_eth::EIP1186StorageProof {
        let key = |s: u8| Nibbles::unpack(keccak256(B256::with_last_byte(s)));
        let mut leaves: Vec<(Nibbles, Vec<u8>)> =
            slots.iter().map(|(s, v)| (key(*s), alloy_rlp::encode(U256::from(*v)))).collect();
        leaves.sort_by_key(|l| l.0);
        let mut hb = HashBuilder::default().with_proof_retainer(ProofRetainer::from_iter([key(slot)]));
        for (k, v) in &leaves {
            hb.add_leaf(*k, v);
        }
        hb.root();
        let value = slots.iter().find(|(s, _)| *s == slot).map_or(U256::ZERO, |(_, v)| U256::from(*v));
        alloy_rpc_types_eth::EIP1186StorageProof {
            key: B256::with_last_byte(slot).into(),
            value,
            proof: hb.take_proof_nodes().into_nodes_sorted().into_iter().map(|(_, n)| n).collect(),
        }
    }

    #[test]
    fn the_code_and_storage_the_replica_will_hold_are_checked() {
        let a = address!("00000000000000000000000000000000000000a1");
        let code_hash = keccak256([0x60, 0x00]);
        // The chain: code unchanged from before the block, one slot left after a wipe.
        let kept = storage_root([(B256::with_last_byte(1), U256::from(5))].into_iter());
        let live = TrieAccount::new(1, U256::from(9), kept, code_hash);
        let (root, proof) = state_with(a, Some(live));
        let r = response(a, Some(live), proof);
        let prior = ec_log::AccountPrior::existing(U256::from(9), 1, code_hash);
        let slot = |v: u8| StorageSlot {
            slot: B256::with_last_byte(1),
            prior: B256::ZERO,
            value: B256::with_last_byte(v),
        };
        // "Unchanged" code is the code before the block.
        let mut r = r;
        r.storage_proof = vec![slot_proof(&[(1, 5)], 1)];
        let mut c = change(a, Some((9, 1)));
        c.prior = prior;
        c.storage = vec![slot(5)];
        assert_eq!(check_account(root, &c, &r), Ok(()));
        // After a wipe, "unchanged" code is no code: the chain still has code.
        c.storage_wiped = true;
        let err = check_account(root, &c, &r).unwrap_err();
        assert!(matches!(&err, Mismatch::Differs { what, .. } if what == "the code hash"), "{err}");
        // A wiped account's listed storage must be all of it: a slot the chain kept is missing.
        c.account = Some(AccountState {
            balance: U256::from(9),
            nonce: 1,
            code: Some(Bytes::from_static(&[0x60, 0x00])),
        });
        c.storage = vec![];
        let err = check_account(root, &c, &r).unwrap_err();
        assert!(matches!(&err, Mismatch::Differs { what, .. } if what.contains("storage root")), "{err}");
        c.storage = vec![slot(5)];
        assert_eq!(check_account(root, &c, &r), Ok(()));
    }

    #[test]
    fn priors_are_checked_against_the_parent() {
        let a = address!("00000000000000000000000000000000000000a1");
        let before = TrieAccount::new(3, U256::from(100), EMPTY_ROOT_HASH, KECCAK_EMPTY);
        let (root, proof) = state_with(a, Some(before));
        let r = response(a, Some(before), proof);
        let mut c = change(a, Some((50, 4)));
        c.prior = ec_log::AccountPrior::existing(U256::from(100), 3, KECCAK_EMPTY);
        assert_eq!(check_prior(Some(root), &c, &r), Ok(()));
        c.prior = ec_log::AccountPrior::existing(U256::from(99), 3, KECCAK_EMPTY);
        assert!(matches!(check_prior(Some(root), &c, &r), Err(Mismatch::Differs { .. })));
        // "Did not exist" against an account that did.
        c.prior = None;
        assert!(matches!(check_prior(Some(root), &c, &r), Err(Mismatch::Differs { .. })));
        // And against a proof of absence.
        let (root, proof) = state_with(a, None);
        assert_eq!(check_prior(Some(root), &c, &response(a, None, proof)), Ok(()));
    }

    #[test]
    fn a_slot_the_proof_does_not_cover_is_a_bad_proof() {
        let a = address!("00000000000000000000000000000000000000a1");
        let live = TrieAccount::new(0, U256::from(1), EMPTY_ROOT_HASH, KECCAK_EMPTY);
        let (root, proof) = state_with(a, Some(live));
        let mut c = change(a, Some((1, 0)));
        c.storage = vec![StorageSlot {
            slot: B256::with_last_byte(1),
            prior: B256::ZERO,
            value: B256::with_last_byte(2),
        }];
        let err = check_account(root, &c, &response(a, Some(live), proof)).unwrap_err();
        assert!(err.to_string().contains("no storage proof"), "{err}");
    }

    #[test]
    fn sampling_is_a_fraction() {
        let hits = (0..1000u64)
            .filter(|n| sampled(&address!("00000000000000000000000000000000000000a1"), *n, 0.25))
            .count();
        assert!((150..350).contains(&hits), "{hits}");
        assert!(sampled(&Address::ZERO, 1, 1.0) && !sampled(&Address::ZERO, 1, 0.0));
    }
}
