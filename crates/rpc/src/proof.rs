//! `eth_getProof` (EIP-1186) as geth answers it, from the store's trie ([`ec_store::Proofs`]).

use alloy_primitives::{Address, B256, U256};
use ec_store::{Proofs, StoreError};
use serde_json::{json, Value};

use crate::{
    block_id::BlockSpec,
    ctx::Req,
    error::{invalid_params, server_error, RpcResult},
};

/// Most storage keys one request may ask for (geth's `maxGetProofKeys`).
const MAX_KEYS: usize = 1024;

/// How a proof may be made: [`Source::Fast`] only at the head or from the trie's recent past (under a
/// millisecond: fine on the server's own workers), else `None`; [`Source::Any`] walks every key changed since
/// the block when it must (seconds).
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Source {
    Fast,
    Any,
}

pub(crate) fn get_proof(
    r: &Req<'_>,
    window: u64,
    address: Address,
    keys: &[String],
    block: Option<BlockSpec>,
    source: Source,
) -> RpcResult<Option<Value>> {
    if keys.len() > MAX_KEYS {
        return Err(invalid_params(format!(
            "too many storage keys requested (max {MAX_KEYS}, got {})",
            keys.len()
        )));
    }
    let keys = keys
        .iter()
        .map(|k| storage_key(k).map_err(|e| invalid_params(format!("{e}: {k:?}"))))
        .collect::<RpcResult<Vec<_>>>()?;
    let number = r.resolve(block.unwrap_or_default())?;
    let head = r.resolve(BlockSpec::Latest)?;
    if head.saturating_sub(number) > window {
        return Err(server_error(format!(
            "historical state unavailable: block {number} is more than {window} blocks behind the head {head} \
             (the proof window)"
        )));
    }
    let slots: Vec<B256> = keys.iter().map(|(k, _)| *k).collect();
    let proof = if number >= head || source == Source::Any {
        r.view.proof(&address, &slots, number).map(Some)
    } else {
        r.view.proof_from_recent_past(&address, &slots, number)
    };
    let Some((_, proof)) = proof.map_err(|e| match e {
        StoreError::StateUnavailable { .. } => server_error(format!("historical state unavailable: {e}")),
        other => server_error(other),
    })?
    else {
        return Ok(None);
    };
    let existing = proof.account.as_ref();
    // geth answers no proof at all for an account without storage.
    let empty = existing.is_none() || proof.storage_root == alloy_consensus::constants::EMPTY_ROOT_HASH;
    let storage_proof: Vec<Value> = proof
        .storage
        .iter()
        .zip(&keys)
        .map(|(slot, (key, spelled_len))| {
            // geth: a 32-byte key is answered as given; a shorter one as a quantity.
            let key = if *spelled_len == 32 { json!(key) } else { json!(U256::from_be_bytes(key.0)) };
            let proof_nodes = if empty { vec![] } else { slot.proof.clone() };
            json!({ "key": key, "value": U256::from_be_bytes(slot.value.0), "proof": proof_nodes })
        })
        .collect();
    Ok(Some(json!({
        "address": address,
        "accountProof": proof.proof,
        "balance": existing.map_or(U256::ZERO, |a| a.balance),
        // geth answers zero hashes for an account that does not exist.
        "codeHash": existing.map_or(B256::ZERO, |a| a.code_hash),
        "nonce": alloy_primitives::U64::from(existing.map_or(0, |a| a.nonce)),
        "storageHash": if existing.is_some() { proof.storage_root } else { B256::ZERO },
        "storageProof": storage_proof,
    })))
}

/// A storage key as geth reads it: hex of at most 32 bytes, `0x` optional, an odd digit count allowed;
/// with the byte length it was given in (geth echoes 32-byte keys as they are, shorter ones as quantities).
fn storage_key(s: &str) -> Result<(B256, usize), &'static str> {
    let digits = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let digits = if digits.len() % 2 == 1 { format!("0{digits}") } else { digits.to_string() };
    if digits.len() > 64 {
        return Err("storage key too long (want at most 32 bytes)");
    }
    let bytes = alloy_primitives::hex::decode(&digits).map_err(|_| "invalid hex in storage key")?;
    Ok((B256::left_padding_from(&bytes), bytes.len()))
}

#[cfg(test)]
mod tests {
    use super::*;

    type Case<'a> = (&'a str, Result<(B256, usize), &'a str>);

    #[test]
    fn storage_keys_are_read_as_geth_reads_them() {
        let word = format!("0x{}", "01".repeat(32));
        #[rustfmt::skip]
        let cases: Vec<Case> = vec![
            ("0x0",            Ok((B256::ZERO, 1))),
            ("0x1",            Ok((B256::with_last_byte(1), 1))),
            ("2",              Ok((B256::with_last_byte(2), 1))),
            ("0x0100",         Ok((B256::left_padding_from(&[1, 0]), 2))),
            (&word,            Ok((B256::repeat_byte(1), 32))),
            ("0xzz",           Err("invalid hex in storage key")),
        ];
        for (input, expected) in cases {
            assert_eq!(storage_key(input), expected, "{input}");
        }
        assert!(storage_key(&format!("0x{}", "1".repeat(65))).is_err());
    }
}
