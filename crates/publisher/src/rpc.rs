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
    /// The client could not be reached at all (refused, reset, timed out), as opposed to answering badly.
    pub fn is_unreachable(&self) -> bool {
        matches!(self, RpcError::Transport { source, .. } if !source.is_decode())
    }

    /// "Method not found" and friends: the client does not serve this call (used to detect trace support).
    pub fn is_unsupported(&self) -> bool {
        matches!(self, RpcError::Remote { code: -32601 | -32600, .. })
            || matches!(self, RpcError::Remote { message, .. } if message.to_lowercase().contains("not found") || message.to_lowercase().contains("not supported"))
    }
}

/// The `result` of one JSON-RPC answer, or its `error` as [`RpcError::Remote`].
fn answer(method: &'static str, resp: &Value) -> Result<Value, RpcError> {
    if let Some(err) = resp.get("error") {
        return Err(RpcError::Remote {
            method,
            code: err.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: err.get("message").and_then(Value::as_str).unwrap_or("").to_owned(),
        });
    }
    Ok(resp.get("result").cloned().unwrap_or(Value::Null))
}

/// A block number or tag, as JSON-RPC spells it.
#[derive(Debug, Clone, Copy)]
pub enum BlockId {
    Number(u64),
    /// A block named by its hash (EIP-1898): the answer is about that block even if a reorg replaced it.
    Hash(B256),
    Latest,
    Safe,
    Finalized,
}

impl BlockId {
    pub fn to_json(self) -> Value {
        match self {
            BlockId::Number(n) => json!(format!("{n:#x}")),
            BlockId::Hash(h) => json!({ "blockHash": h }),
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
        // An idle pooled connection is dropped after 20 s, before most servers close theirs (30 s and more is
        // common): a request sent on a connection the server is closing that moment fails with a reset.
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .pool_idle_timeout(Duration::from_secs(20))
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
        let result = answer(method, &self.post(method, &body).await?)?;
        serde_json::from_value(result).map_err(|e| RpcError::Decode { method, reason: e.to_string() })
    }

    /// One HTTP POST; the JSON body of the answer. (`method` names the call in errors.)
    async fn post(&self, method: &'static str, body: &Value) -> Result<Value, RpcError> {
        let transport = |source| RpcError::Transport { method, url: self.url.clone(), source };
        self.http.post(&self.url).json(body).send().await.map_err(transport)?.json().await.map_err(transport)
    }

    /// Several calls in one JSON-RPC batch (one HTTP round trip); the answers in the order of `calls`. A
    /// remote error in one answer is that call's error; a transport error fails them all.
    pub async fn batch(
        &self,
        calls: &[(&'static str, Value)],
    ) -> Result<Vec<Result<Value, RpcError>>, RpcError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let first = self.next_id.fetch_add(calls.len() as u64, Ordering::Relaxed);
        let body: Value = calls
            .iter()
            .enumerate()
            .map(|(i, (method, params))| {
                json!({"jsonrpc": "2.0", "id": first + i as u64, "method": method, "params": params})
            })
            .collect();
        let method = calls[0].0;
        let resp = self.post(method, &body).await?;
        let Value::Array(answers) = resp else {
            return Err(RpcError::Decode { method, reason: format!("a batch answered with {resp}") });
        };
        // Answers may come in any order: match them by id.
        let mut out: Vec<Option<Result<Value, RpcError>>> = (0..calls.len()).map(|_| None).collect();
        for a in answers {
            let Some(i) = a.get("id").and_then(Value::as_u64).and_then(|id| id.checked_sub(first)) else {
                continue;
            };
            let Some(slot) = out.get_mut(i as usize) else { continue };
            *slot = Some(answer(calls[i as usize].0, &a));
        }
        Ok(out
            .into_iter()
            .zip(calls)
            .map(|(a, (method, _))| {
                a.unwrap_or_else(|| Err(RpcError::Decode { method, reason: "no answer in the batch".into() }))
            })
            .collect())
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
        Ok(self.block_summary(id).await?.map(|(number, hash, _)| (number, hash)))
    }

    /// Number, hash and timestamp of a block (no transactions).
    pub async fn block_summary(&self, id: BlockId) -> Result<Option<(u64, B256, u64)>, RpcError> {
        let b: Option<Value> = self.call("eth_getBlockByNumber", json!([id.to_json(), false])).await?;
        let Some(b) = b else { return Ok(None) };
        fn field<T: DeserializeOwned>(b: &Value, name: &str) -> Result<T, RpcError> {
            let v = b.get(name).cloned().ok_or_else(|| RpcError::Decode {
                method: "eth_getBlockByNumber",
                reason: format!("no {name}"),
            })?;
            serde_json::from_value(v).map_err(|e| RpcError::Decode {
                method: "eth_getBlockByNumber",
                reason: format!("{name}: {e}"),
            })
        }
        let number: U256 = field(&b, "number")?;
        let timestamp: U256 = field(&b, "timestamp")?;
        Ok(Some((number.saturating_to(), field(&b, "hash")?, timestamp.saturating_to())))
    }

    pub async fn block_receipts(&self, id: BlockId) -> Result<Option<Vec<TransactionReceipt>>, RpcError> {
        let block = match id {
            // eth_getBlockReceipts takes a bare hash where state methods take EIP-1898's object.
            BlockId::Hash(h) => json!(h),
            other => other.to_json(),
        };
        self.call("eth_getBlockReceipts", json!([block])).await
    }

    pub async fn transaction_receipt(&self, hash: B256) -> Result<Option<TransactionReceipt>, RpcError> {
        self.call("eth_getTransactionReceipt", json!([hash])).await
    }

    /// geth's prestate tracer in diff mode, one result per transaction.
    pub async fn prestate_diff(
        &self,
        id: BlockId,
    ) -> Result<Vec<TraceResult<PreStateFrame, String>>, RpcError> {
        self.trace_block(id, json!({"tracer": "prestateTracer", "tracerConfig": {"diffMode": true}})).await
    }

    /// geth's prestate tracer in its default mode with `includeEmpty`: every account and slot each
    /// transaction accessed, with its value before the transaction (zero-valued slots and empty accounts
    /// included, unlike diff mode's `pre`).
    pub async fn prestate_accessed(
        &self,
        id: BlockId,
    ) -> Result<Vec<TraceResult<PreStateFrame, String>>, RpcError> {
        self.trace_block(id, json!({"tracer": "prestateTracer", "tracerConfig": {"includeEmpty": true}}))
            .await
    }

    /// `debug_traceBlockByHash` or `debug_traceBlockByNumber`, as `id` names the block.
    async fn trace_block<T: DeserializeOwned>(&self, id: BlockId, opts: Value) -> Result<T, RpcError> {
        match id {
            BlockId::Hash(h) => self.call("debug_traceBlockByHash", json!([h, opts])).await,
            other => self.call("debug_traceBlockByNumber", json!([other.to_json(), opts])).await,
        }
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
