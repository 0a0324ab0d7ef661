//! `eth_sendRawTransaction`: the checks a node makes before accepting a transaction into its pool, done
//! against the replica's own state, so that obviously bad transactions are refused at the edge instead of
//! travelling to the publisher. Pure: the caller reads the sender's account.

use alloy_consensus::{transaction::SignerRecoverable, Transaction, TxEnvelope};
use alloy_eips::eip2718::Decodable2718;
use alloy_primitives::{Address, B256, U256};

/// A decoded, signature-checked transaction.
pub struct Decoded {
    pub tx: TxEnvelope,
    pub hash: B256,
    pub sender: Address,
}

pub fn decode(raw: &[u8], chain_id: u64) -> Result<Decoded, String> {
    let tx =
        TxEnvelope::decode_2718(&mut &raw[..]).map_err(|e| format!("invalid transaction encoding: {e}"))?;
    let sender =
        tx.recover_signer().map_err(|_| "invalid sender: the signature does not recover".to_string())?;
    match tx.chain_id() {
        Some(id) if id == chain_id => {}
        Some(id) => {
            return Err(format!("invalid chain id: transaction is for chain {id}, this is chain {chain_id}"))
        }
        None => return Err("only replay-protected (EIP-155) transactions are accepted".into()),
    }
    Ok(Decoded { hash: *tx.tx_hash(), tx, sender })
}

/// A blob transaction's sidecar checked against the transaction, as a pool checks it before the KZG proofs: it
/// is there (the network form; the consensus form cannot be mined), one blob per versioned hash, each hash
/// that of its commitment, the proofs counted for the sidecar's kind (EIP-4844: one per blob; EIP-7594: one
/// per cell), and at most `max_blobs` blobs (the head's blob schedule). Other transactions pass.
pub fn check_blobs(tx: &TxEnvelope, max_blobs: Option<u64>) -> Result<(), String> {
    use alloy_consensus::TxEip4844Variant;
    use alloy_eips::eip7594::{BlobTransactionSidecarVariant as Sidecar, CELLS_PER_EXT_BLOB};
    let TxEnvelope::Eip4844(signed) = tx else { return Ok(()) };
    let sidecar = match signed.tx() {
        TxEip4844Variant::TxEip4844WithSidecar(t) => &t.sidecar,
        TxEip4844Variant::TxEip4844(_) => {
            return Err("blob transaction without its sidecar: send it in its network form (blobs, \
                        commitments and proofs)"
                .into())
        }
    };
    let hashes = &signed.tx().tx().blob_versioned_hashes;
    let blobs = sidecar.blobs().len();
    if hashes.is_empty() {
        return Err("blob transaction with no blob hashes".into());
    }
    if blobs != hashes.len() || sidecar.commitments().len() != blobs {
        return Err(format!(
            "invalid blob sidecar: {} versioned hashes, {blobs} blobs, {} commitments",
            hashes.len(),
            sidecar.commitments().len()
        ));
    }
    let (proofs, want) = match sidecar {
        Sidecar::Eip4844(s) => (s.proofs.len(), blobs),
        Sidecar::Eip7594(s) => (s.cell_proofs.len(), blobs * CELLS_PER_EXT_BLOB),
    };
    if proofs != want {
        return Err(format!("invalid blob sidecar: {proofs} proofs for {blobs} blobs, want {want}"));
    }
    for (i, (want, got)) in hashes.iter().zip(sidecar.versioned_hashes()).enumerate() {
        if *want != got {
            return Err(format!("blob {i}: versioned hash {want} is not its commitment's ({got})"));
        }
    }
    if let Some(max) = max_blobs.filter(|max| blobs as u64 > *max) {
        return Err(format!("too many blobs in transaction: have {blobs}, permitted {max}"));
    }
    Ok(())
}

/// Gas a transaction costs before executing anything (EIP-2028 calldata, EIP-2930 access lists, EIP-3860
/// init code, EIP-7702 authorizations).
pub fn intrinsic_gas(tx: &TxEnvelope) -> u64 {
    let input = tx.input();
    let create = tx.kind().is_create();
    let mut gas: u64 = if create { 53_000 } else { 21_000 };
    let zeros = input.iter().filter(|b| **b == 0).count() as u64;
    gas += zeros * 4 + (input.len() as u64 - zeros) * 16;
    if create {
        gas += 2 * (input.len() as u64).div_ceil(32);
    }
    if let Some(list) = tx.access_list() {
        gas += list.0.iter().map(|item| 2_400 + 1_900 * item.storage_keys.len() as u64).sum::<u64>();
    }
    if let Some(auths) = tx.authorization_list() {
        gas += 25_000 * auths.len() as u64;
    }
    gas
}

/// Checks a decoded transaction against its sender's current nonce and balance.
pub fn check(d: &Decoded, nonce: u64, balance: U256) -> Result<(), String> {
    let tx = &d.tx;
    if tx.nonce() < nonce {
        return Err(format!("nonce too low: next nonce {nonce}, tx nonce {}", tx.nonce()));
    }
    let intrinsic = intrinsic_gas(tx);
    if tx.gas_limit() < intrinsic {
        return Err(format!("intrinsic gas too low: have {}, want {intrinsic}", tx.gas_limit()));
    }
    let gas_cost = U256::from(tx.gas_limit()) * U256::from(tx.max_fee_per_gas());
    let blob_cost =
        U256::from(tx.blob_gas_used().unwrap_or(0)) * U256::from(tx.max_fee_per_blob_gas().unwrap_or(0));
    let cost = gas_cost + blob_cost + tx.value();
    if balance < cost {
        return Err(format!("insufficient funds for gas * price + value: balance {balance}, tx cost {cost}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloy_consensus::{Signed, TxEip1559, TxLegacy};
    use alloy_primitives::{Bytes, Signature, TxKind};

    fn legacy(input: &[u8], to: Option<Address>) -> TxEnvelope {
        let tx = TxLegacy {
            chain_id: Some(1),
            nonce: 0,
            gas_price: 1,
            gas_limit: 100_000,
            to: to.map_or(TxKind::Create, TxKind::Call),
            value: U256::ZERO,
            input: Bytes::copy_from_slice(input),
        };
        TxEnvelope::Legacy(Signed::new_unchecked(tx, Signature::test_signature(), B256::ZERO))
    }

    #[test]
    fn intrinsic_gas_table() {
        let to = Some(Address::repeat_byte(1));
        let cases = [
            ("plain transfer", legacy(&[], to), 21_000),
            ("calldata: 2 zero, 2 non-zero bytes", legacy(&[0, 0, 1, 2], to), 21_000 + 8 + 32),
            ("create with 33 bytes of init code", legacy(&[1; 33], None), 53_000 + 33 * 16 + 2 * 2),
        ];
        for (name, tx, want) in cases {
            assert_eq!(intrinsic_gas(&tx), want, "{name}");
        }
    }

    #[test]
    fn check_table() {
        let tx = TxEip1559 {
            chain_id: 1,
            nonce: 5,
            gas_limit: 21_000,
            max_fee_per_gas: 10,
            max_priority_fee_per_gas: 1,
            to: TxKind::Call(Address::repeat_byte(2)),
            value: U256::from(1_000),
            ..Default::default()
        };
        let d = Decoded {
            tx: TxEnvelope::Eip1559(Signed::new_unchecked(tx, Signature::test_signature(), B256::ZERO)),
            hash: B256::ZERO,
            sender: Address::ZERO,
        };
        let cost = U256::from(21_000 * 10 + 1_000);
        assert_eq!(check(&d, 5, cost), Ok(()));
        assert_eq!(check(&d, 4, cost), Ok(()), "a future nonce is the pool's business, not an error");
        assert!(check(&d, 6, cost).is_err_and(|e| e.contains("nonce too low")));
        assert!(check(&d, 5, cost - U256::from(1)).is_err_and(|e| e.contains("insufficient funds")));
    }
}
