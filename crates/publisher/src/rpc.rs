//! A thin JSON-RPC client for the execution client: the dozen plain calls the publisher makes, with errors
//! that name the method.
//!
//! Not alloy-provider: the publisher needs request/response calls only, and every client's quirks (a trace
//! of a missing block answering `[]`, rollbacks without notifications) are handled by the caller anyway.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use alloy_primitives::{Address, Bytes, B256, U256};
use alloy_rpc_types_eth::{Block, TransactionReceipt};
use alloy_rpc_types_trace::{
    common::TraceResult, geth::PreStateFrame, parity::TraceResultsWithTransactionHash,
};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RpcError {
    #[error("{method} to {url}: {source}")]
    Transport { method: &'static str, url: String, source: reqwest::Error },
    #[error("{method}: the client answered error {code}: {message}")]
    Remote { method: &'static str, code: i64, message: String },
    #[error("{method}: unexpected answer: {reason}")]
    Decode { method: &'static str, reason: String },
}

impl RpcError {
    /// "Method not found" and friends: the client does not serve this call (used to detect trace support).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, RpcError::Remote { code: -32601 | -32600, .. })
            || matches!(self, RpcError::Remote { message, .. } if message.to_lowercase().contains("not found") || message.to_lowercase().contains("not supported"))
    }
}

/// A block number or tag, as JSON-RPC spells it.
#[derive(Debug, Clone, Copy)]
pub enum BlockId {
    Number(u64),
    Latest,
    Safe,
    Finalized,
}

impl BlockId {
    fn to_json(self) -> Value {
        match self {
            BlockId::Number(n) => json!(format!("{n:#x}")),
            BlockId::Latest => json!("latest"),
            BlockId::Safe => json!("safe"),
            BlockId::Finalized => json!("finalized"),
        }
    }
}

pub struct RpcClient {
    http: reqwest::Client,
    url: String,
    next_id: AtomicU64,
}

impl RpcClient {
    pub fn new(url: &str, timeout: Duration) -> Result<Self, RpcError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .map_err(|source| RpcError::Transport { method: "connect", url: url.to_owned(), source })?;
        Ok(Self { http, url: url.to_owned(), next_id: AtomicU64::new(1) })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub async fn call<T: DeserializeOwned>(
        &self,
        method: &'static str,
        params: Value,
    ) -> Result<T, RpcError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let body = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let transport = |source| RpcError::Transport { method, url: self.url.clone(), source };
        let resp: Value = self
            .http
            .post(&self.url)
            .json(&body)
            .send()
            .await
            .map_err(transport)?
            .json()
            .await
            .map_err(transport)?;
        if let Some(err) = resp.get("error") {
            return Err(RpcError::Remote {
                method,
                code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
                message: err.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
            });
        }
        let result = resp.get("result").cloned().unwrap_or(Value::Null);
        serde_json::from_value(result).map_err(|e| RpcError::Decode { method, reason: e.to_string() })
    }

    pub async fn chain_id(&self) -> Result<u64, RpcError> {
        let id: U256 = self.call("eth_chainId", json!([])).await?;
        Ok(id.saturating_to())
    }

    pub async fn block_number(&self) -> Result<u64, RpcError> {
        let n: U256 = self.call("eth_blockNumber", json!([])).await?;
        Ok(n.saturating_to())
    }

    /// The block with full transactions, or `None` when the client has no such block.
    pub async fn block(&self, id: BlockId) -> Result<Option<Block>, RpcError> {
        self.call("eth_getBlockByNumber", json!([id.to_json(), true])).await
    }

    /// Number and hash only (no transactions): cheap canonical-chain checks.
    pub async fn block_hash(&self, id: BlockId) -> Result<Option<(u64, B256)>, RpcError> {
        let b: Option<Value> = self.call("eth_getBlockByNumber", json!([id.to_json(), false])).await?;
        let Some(b) = b else { return Ok(None) };
        let decode =
            |what: &str| RpcError::Decode { method: "eth_getBlockByNumber", reason: format!("no {what}") };
        let number: U256 = serde_json::from_value(b.get("number").cloned().ok_or_else(|| decode("number"))?)
            .map_err(|e| RpcError::Decode { method: "eth_getBlockByNumber", reason: e.to_string() })?;
        let hash: B256 = serde_json::from_value(b.get("hash").cloned().ok_or_else(|| decode("hash"))?)
            .map_err(|e| RpcError::Decode { method: "eth_getBlockByNumber", reason: e.to_string() })?;
        Ok(Some((number.saturating_to(), hash)))
    }

    /// The beneficiary of an uncle (proof-of-work chains: uncle rewards).
    pub async fn uncle_miner(&self, number: u64, index: u64) -> Result<Option<Address>, RpcError> {
        let u: Option<Value> = self
            .call(
                "eth_getUncleByBlockNumberAndIndex",
                json!([BlockId::Number(number).to_json(), format!("{index:#x}")]),
            )
            .await?;
        Ok(u.and_then(|u| u.get("miner").cloned()).and_then(|m| serde_json::from_value(m).ok()))
    }

    pub async fn block_receipts(&self, number: u64) -> Result<Option<Vec<TransactionReceipt>>, RpcError> {
        self.call("eth_getBlockReceipts", json!([BlockId::Number(number).to_json()])).await
    }

    pub async fn transaction_receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, RpcError> {
        self.call("eth_getTransactionReceipt", json!([hash])).await
    }

    /// geth's prestate tracer in diff mode, one result per transaction.
    pub async fn prestate_diff(
        &self,
        number: u64,
    ) -> Result<Vec<TraceResult<PreStateFrame, String>>, RpcError> {
        let opts = json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}});
        self.call("debug_traceBlockByNumber", json!([BlockId::Number(number).to_json(), opts])).await
    }

    /// Parity's `stateDiff` replay, one result per transaction.
    pub async fn state_diff(&self, number: u64) -> Result<Vec<TraceResultsWithTransactionHash>, RpcError> {
        self.call("trace_replayBlockTransactions", json!([BlockId::Number(number).to_json(), ["stateDiff"]]))
            .await
    }

    pub async fn balance(&self, a: Address, n: u64) -> Result<U256, RpcError> {
        self.call("eth_getBalance", json!([a, BlockId::Number(n).to_json()])).await
    }

    pub async fn nonce(&self, a: Address, n: u64) -> Result<u64, RpcError> {
        let v: U256 = self.call("eth_getTransactionCount", json!([a, BlockId::Number(n).to_json()])).await?;
        Ok(v.saturating_to())
    }

    pub async fn code(&self, a: Address, n: u64) -> Result<Bytes, RpcError> {
        self.call("eth_getCode", json!([a, BlockId::Number(n).to_json()])).await
    }

    pub async fn storage(&self, a: Address, slot: B256, n: u64) -> Result<B256, RpcError> {
        self.call("eth_getStorageAt", json!([a, slot, BlockId::Number(n).to_json()])).await
    }

    pub async fn send_raw_transaction(&self, raw: &[u8]) -> Result<B256, RpcError> {
        self.call("eth_sendRawTransaction", json!([Bytes::copy_from_slice(raw)])).await
    }
}
