//! Starting a cluster: the genesis record, from a geth-style `genesis.json` and the client's block 0.
//!
//! The file's allocations are the initial state; the client must agree with every one of them (balance,
//! nonce, code, each storage slot) at block 0, or the publisher refuses: a replica built from a record that
//! differs from the client would serve wrong answers from the first block on.

use std::path::Path;

use alloy_genesis::Genesis as GenesisFile;
use alloy_primitives::{keccak256, B256, U256};
use ec_chainspec::{ChainSpec, SpecError};
use ec_log::{AccountChange, AccountState, Block, Genesis, StorageSlot};
use thiserror::Error;

use crate::rpc::{BlockId, RpcClient, RpcError};

#[derive(Debug, Error)]
pub enum GenesisError {
    #[error("reading genesis file {path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("the client has no block 0")]
    NoBlockZero,
    #[error("the genesis file is for chain {file}, the client serves chain {client}")]
    ChainId { file: u64, client: u64 },
    #[error("the client's block 0 state differs from the genesis file in {count} place(s), first: {first}")]
    Mismatch { count: usize, first: String },
    #[error("the genesis file's chain specification: {0}")]
    Spec(#[from] SpecError),
}

pub fn load(path: &Path) -> Result<GenesisFile, GenesisError> {
    let err = |reason: String| GenesisError::File { path: path.display().to_string(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}

/// The rules of the file's chain: a network whose schedule the binary carries when the chain id is one
/// (mainnet, Sepolia, Holesky, Hoodi: their files from geth do not place the merge by block), otherwise the
/// file's own `config`.
pub fn chain_spec(file: &GenesisFile) -> Result<ChainSpec, GenesisError> {
    match ChainSpec::for_chain_id(file.config.chain_id) {
        Some(named) => {
            // A file from a newer client may schedule a fork this binary's table does not have yet.
            named.check_covers(&file.config)?;
            Ok(named)
        }
        None => Ok(ChainSpec::from_config(file.config.clone())?),
    }
}

/// The genesis record, after checking the client against the file.
pub async fn genesis_record(
    rpc: &RpcClient,
    file: &GenesisFile,
    spec: &ChainSpec,
) -> Result<Genesis, GenesisError> {
    let client_chain = rpc.chain_id().await?;
    if file.config.chain_id != client_chain {
        return Err(GenesisError::ChainId { file: file.config.chain_id, client: client_chain });
    }
    let block0 = rpc.block(BlockId::Number(0)).await?.ok_or(GenesisError::NoBlockZero)?;
    spec.check_supported(0, block0.header.inner.timestamp)?;
    let header_rlp = alloy_rlp::encode(&block0.header.inner);
    let mut mismatches = Vec::new();
    let mut state = Vec::with_capacity(file.alloc.len());
    for (address, acct) in &file.alloc {
        let nonce = acct.nonce.unwrap_or(0);
        let code = acct.code.clone().filter(|c| !c.is_empty());
        let storage: Vec<StorageSlot> = acct
            .storage
            .iter()
            .flatten()
            .filter(|(_, v)| !v.is_zero())
            .map(|(slot, value)| StorageSlot { slot: *slot, prior: B256::ZERO, value: *value })
            .collect();
        let (balance, client_nonce, client_code) =
            (rpc.balance(*address, 0).await?, rpc.nonce(*address, 0).await?, rpc.code(*address, 0).await?);
        if balance != acct.balance {
            mismatches.push(format!("{address} balance: file {}, client {balance}", acct.balance));
        }
        if client_nonce != nonce {
            mismatches.push(format!("{address} nonce: file {nonce}, client {client_nonce}"));
        }
        if client_code.as_ref() != code.as_ref().map_or(&[][..], |c| c.as_ref()) {
            mismatches.push(format!(
                "{address} code: file {} bytes, client {} bytes",
                code.as_ref().map_or(0, |c| c.len()),
                client_code.len()
            ));
        }
        for s in &storage {
            let v = rpc.storage(*address, s.slot, 0).await?;
            if v != s.value {
                mismatches.push(format!("{address} slot {}: file {}, client {v}", s.slot, s.value));
            }
        }
        state.push(AccountChange {
            address: *address,
            storage_wiped: false,
            prior: None,
            account: Some(AccountState { balance: U256::from(acct.balance), nonce, code }),
            storage,
        });
    }
    if let Some(first) = mismatches.first() {
        return Err(GenesisError::Mismatch { count: mismatches.len(), first: first.clone() });
    }
    let hash: B256 = keccak256(&header_rlp);
    Ok(Genesis {
        chain_id: client_chain,
        spec: spec.source(),
        block: Block {
            number: 0,
            hash,
            parent_hash: block0.header.inner.parent_hash,
            timestamp: block0.header.inner.timestamp,
            header: header_rlp.into(),
            transactions: Vec::new(),
            receipts: Vec::new(),
            withdrawals: block0.withdrawals.as_ref().map(|_| Vec::new()),
            state,
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        },
    })
}
