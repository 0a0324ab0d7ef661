//! The state after block N, read from a live node over JSON-RPC (geth's `debug_` namespace).
//!
//! - Accounts: `debug_accountRange(N, start, 256, nocode=false, nostorage=true, incompletes=true)`, paged by
//!   its `next` key. geth walks the account trie, so pages come in hashed-address order; every account
//!   carries its hashed address (`key`), and its `address` only where the node has the preimage. `next` is
//!   a Go `[]byte`, which encoding/json writes as **base64**, while `start` is read as hex.
//! - Storage: `debug_storageRangeAt(hash of block N+1, 0, address, start, 1024)`, paged by `nextKey`, keyed
//!   by hashed slot. geth serves the state *before* transaction `txIndex` of the given block, built from the
//!   parent's state: no index of block N itself gives the state after all of N (its withdrawals and the
//!   fee recipient's payment come after its last transaction), so the state after N is read at transaction
//!   0 of block N+1, which must therefore exist. It needs the address, so an account with storage but no
//!   known preimage cannot be read this way (an error names it).
//! - Each account's slots are hashed as they arrive and must give the storage root `debug_accountRange`
//!   reported: a node that serves another state for some account (a path-scheme node may for accounts that
//!   block N+1 changed) is caught there, naming the account, rather than only by the final state root.

use std::{
    str::FromStr,
    time::{Duration, Instant},
};

use alloy_primitives::{hex, Address, Bytes, B256, U256};
use alloy_trie::{HashBuilder, Nibbles, EMPTY_ROOT_HASH, KECCAK_EMPTY};
use base64::Engine;
use ec_store::tables::StoredAccount;
use serde::{de::DeserializeOwned, Deserialize};
use serde_json::{json, Value};

use crate::{
    error::{ImportError, Result},
    writer::code_hash,
    StateSink,
};

/// geth's cap on `debug_accountRange` results (`AccountRangeMaxResults`).
const ACCOUNTS_PER_PAGE: u64 = 256;
const SLOTS_PER_PAGE: u64 = 1024;
const ATTEMPTS: u32 = 5;

struct Client {
    http: reqwest::Client,
    url: String,
}

#[derive(Deserialize)]
struct Response<T> {
    result: Option<T>,
    error: Option<RpcError>,
}

#[derive(Deserialize)]
struct RpcError {
    code: i64,
    message: String,
}

impl Client {
    /// One call; transport failures are retried (an import over RPC runs for hours), node errors are not.
    async fn call<T: DeserializeOwned>(&self, method: &'static str, params: Value) -> Result<Option<T>> {
        let body = json!({ "jsonrpc": "2.0", "id": 1, "method": method, "params": params });
        let mut attempt = 0;
        loop {
            attempt += 1;
            let sent = self.http.post(&self.url).json(&body).send().await;
            let response = match sent {
                Ok(r) => r.error_for_status().map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            let reason = match response {
                Ok(r) => match r.json::<Response<T>>().await {
                    Ok(Response { error: Some(e), .. }) => {
                        return Err(ImportError::Rpc {
                            method,
                            reason: format!("{} (code {})", e.message, e.code),
                        })
                    }
                    Ok(Response { result, .. }) => return Ok(result),
                    Err(e) => e.to_string(),
                },
                Err(reason) => reason,
            };
            if attempt >= ATTEMPTS {
                return Err(ImportError::Rpc {
                    method,
                    reason: format!("{reason} (after {attempt} attempts)"),
                });
            }
            tracing::warn!(method, attempt, %reason, "rpc call failed; retrying");
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
    }

    async fn require<T: DeserializeOwned>(&self, method: &'static str, params: Value) -> Result<T> {
        self.call(method, params)
            .await?
            .ok_or_else(|| ImportError::Rpc { method, reason: "null result".into() })
    }
}

#[derive(Deserialize)]
struct BlockHeader {
    hash: B256,
}

#[derive(Deserialize)]
struct AccountPage {
    /// `%x` of the root: hex without `0x`.
    root: String,
    #[serde(default)]
    accounts: std::collections::HashMap<String, DumpAccount>,
    next: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DumpAccount {
    balance: String,
    nonce: u64,
    root: B256,
    code_hash: B256,
    code: Option<Bytes>,
    address: Option<Address>,
    key: Option<B256>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StoragePage {
    #[serde(default)]
    storage: std::collections::HashMap<B256, StorageEntry>,
    next_key: Option<B256>,
}

#[derive(Deserialize)]
struct StorageEntry {
    value: B256,
}

/// Streams the state after block `block` into `sink`, in hashed order. Returns the root the node reports.
pub(crate) async fn fetch_state(url: &str, block: u64, sink: &mut dyn StateSink) -> Result<B256> {
    let client = Client { http: reqwest::Client::new(), url: url.to_string() };
    let next_block: Option<BlockHeader> =
        client.call("eth_getBlockByNumber", json!([format!("{:#x}", block + 1), false])).await?;
    let Some(next_block) = next_block else {
        return Err(ImportError::Rpc {
            method: "eth_getBlockByNumber",
            reason: format!(
                "block {} not found: the state after block {block} is read at transaction 0 of the next block",
                block + 1
            ),
        });
    };

    probe_storage_ranges(&client, block, next_block.hash).await?;

    let started = Instant::now();
    let mut logged = started;
    let mut start: Vec<u8> = Vec::new();
    let mut root = None;
    let mut accounts = 0u64;
    loop {
        let page: AccountPage = client
            .require(
                "debug_accountRange",
                json!([
                    format!("{block:#x}"),
                    hex::encode_prefixed(&start),
                    ACCOUNTS_PER_PAGE,
                    false,
                    true,
                    true
                ]),
            )
            .await?;
        if root.is_none() {
            root = Some(B256::from_str(&page.root).map_err(|e| ImportError::Rpc {
                method: "debug_accountRange",
                reason: format!("root {:?}: {e}", page.root),
            })?);
        }
        // A JSON object has no order: restore the trie's.
        let mut page_accounts = Vec::with_capacity(page.accounts.len());
        for (name, account) in page.accounts {
            let hashed = match (account.key, account.address) {
                (Some(key), _) => key,
                (None, Some(address)) => alloy_primitives::keccak256(address),
                (None, None) => {
                    return Err(ImportError::BadAccount {
                        account: name,
                        reason: "no `key` and no `address`".into(),
                    })
                }
            };
            page_accounts.push((hashed, name, account));
        }
        page_accounts.sort_unstable_by_key(|(hashed, _, _)| *hashed);
        for (hashed, name, account) in page_accounts {
            write_account(&client, next_block.hash, hashed, name, account, sink).await?;
            accounts += 1;
        }
        let next = match page.next.as_deref() {
            None | Some("") => break,
            Some(next) => decode_next(next)?,
        };
        if logged.elapsed() >= Duration::from_secs(5) {
            logged = Instant::now();
            let done = next.get(..4).map_or(0.0, |b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as f64)
                / u32::MAX as f64;
            tracing::info!(accounts, percent = format!("{:.1}", done * 100.0), "reading state over rpc");
        }
        start = next;
    }
    root.ok_or_else(|| ImportError::Rpc { method: "debug_accountRange", reason: "no page returned".into() })
}

/// EIP-4788's and EIP-2935's contracts: every block from Cancun (and Prague) on writes their storage.
const SYSTEM_CONTRACTS: [Address; 2] = [
    alloy_primitives::address!("000F3df6D732807Ef1319fB7B8bB8522d0Beac02"),
    alloy_primitives::address!("0000F90827F1C53a10cb7A02335B175320002935"),
];

/// Reads, before anything else, the storage of the system contracts block N+1 writes, the accounts a node
/// that cannot serve N's storage gets wrong: geth with the path scheme (its default) answers
/// `debug_storageRangeAt` from its newest tries only, so on a Cancun chain the import would fail, maybe
/// hours in. Refused at once, saying how to run the node.
async fn probe_storage_ranges(client: &Client, block: u64, at_block: B256) -> Result<()> {
    struct Discard;
    impl StateSink for Discard {
        fn account(&mut self, _: B256, _: StoredAccount, _: Option<Bytes>) -> Result<()> {
            Ok(())
        }
        fn slot(&mut self, _: B256, _: B256, _: B256) -> Result<()> {
            Ok(())
        }
    }
    for address in SYSTEM_CONTRACTS {
        let hashed = alloy_primitives::keccak256(address);
        let page: AccountPage = client
            .require("debug_accountRange", json!([format!("{block:#x}"), hashed, 1, false, true, true]))
            .await?;
        let Some((name, account)) = page.accounts.into_iter().next() else { continue };
        let found = account
            .key
            .unwrap_or_else(|| account.address.map(alloy_primitives::keccak256).unwrap_or_default());
        if found != hashed || account.root == EMPTY_ROOT_HASH {
            continue; // not deployed on this chain, or nothing stored yet
        }
        if let Err(e) = write_account(client, at_block, hashed, name, account, &mut Discard).await {
            return Err(ImportError::Rpc {
                method: "debug_storageRangeAt",
                reason: format!(
                    "the node cannot serve block {block}'s storage of {address}, which block {} changes ({e}). \
                     A geth with the path scheme (its default) serves storage ranges from its newest state only: \
                     run the node with --state.scheme=hash --gcmode=archive, or import from a state dump \
                     (--geth-dump, --reth-state)",
                    block + 1
                ),
            });
        }
    }
    Ok(())
}

/// geth writes `next` as base64 (a Go `[]byte`); accept hex too, for nodes that follow the `start` format.
fn decode_next(next: &str) -> Result<Vec<u8>> {
    let decoded = match next.strip_prefix("0x") {
        Some(h) => hex::decode(h).map_err(|e| e.to_string()),
        None => base64::engine::general_purpose::STANDARD.decode(next).map_err(|e| e.to_string()),
    };
    decoded
        .map_err(|e| ImportError::Rpc { method: "debug_accountRange", reason: format!("next {next:?}: {e}") })
}

async fn write_account(
    client: &Client,
    at_block: B256,
    hashed: B256,
    name: String,
    account: DumpAccount,
    sink: &mut dyn StateSink,
) -> Result<()> {
    let bad = |reason: String| ImportError::BadAccount { account: name.clone(), reason };
    let balance =
        U256::from_str(&account.balance).map_err(|e| bad(format!("balance {:?}: {e}", account.balance)))?;
    let code = account.code.filter(|c| !c.is_empty());
    match &code {
        Some(code) if code_hash(code) != account.code_hash => {
            return Err(bad(format!("code does not hash to its codeHash {}", account.code_hash)))
        }
        None if account.code_hash != KECCAK_EMPTY => {
            return Err(bad(format!("codeHash {} but no code", account.code_hash)))
        }
        _ => {}
    }
    sink.account(
        hashed,
        StoredAccount { balance, nonce: account.nonce, code_hash: account.code_hash },
        code,
    )?;
    if account.root == EMPTY_ROOT_HASH {
        return Ok(());
    }
    let Some(address) = account.address else {
        return Err(bad("has storage but the node knows no preimage of its key, and debug_storageRangeAt needs the address".into()));
    };
    let mut trie = HashBuilder::default();
    let mut leaf = Vec::with_capacity(33);
    let mut start = B256::ZERO;
    let mut first = true;
    loop {
        let key_start = if first { "0x".to_string() } else { start.to_string() };
        first = false;
        let page: StoragePage = client
            .require("debug_storageRangeAt", json!([at_block, 0, address, key_start, SLOTS_PER_PAGE]))
            .await?;
        let mut slots: Vec<(B256, B256)> = page.storage.into_iter().map(|(k, e)| (k, e.value)).collect();
        slots.sort_unstable_by_key(|(k, _)| *k);
        for (hashed_slot, value) in slots {
            if value.is_zero() {
                continue;
            }
            leaf.clear();
            alloy_rlp::Encodable::encode(&U256::from_be_bytes(value.0), &mut leaf);
            trie.add_leaf(Nibbles::unpack(hashed_slot), &leaf);
            sink.slot(hashed, hashed_slot, value)?;
        }
        match page.next_key {
            Some(next) => start = next,
            None => break,
        }
    }
    let got = trie.root();
    if got != account.root {
        return Err(bad(format!(
            "debug_storageRangeAt at block {at_block} tx 0 gave storage with root {got}, but the account's \
             storage root after the block is {}: the node serves another state for this account",
            account.root
        )));
    }
    Ok(())
}
