//! One canonical block from the client, as a log [`Block`]: header RLP, transactions, receipts, withdrawals
//! and the complete state change (traces, plus what no trace shows).

use std::time::{Duration, Instant};

use alloy_eips::eip2718::Encodable2718;
use alloy_primitives::{address, keccak256, Address, B256, U256};
use alloy_rpc_types_trace::{
    common::TraceResult,
    geth::{PreStateFrame, PreStateMode},
};
use ec_log::{Block, Log, Receipt, Transaction, Withdrawal};
use thiserror::Error;

use crate::{
    diff, invisible,
    rpc::{BlockId, RpcClient, RpcError},
};

/// How the block's state change is obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceMode {
    /// geth's `debug_traceBlockByNumber` with `prestateTracer` in diff mode: exact, including deletions.
    Prestate,
    /// parity's `trace_replayBlockTransactions` with `stateDiff`: linear and fast where served; unchanged
    /// fields are read from the client.
    StateDiff,
}

/// EIP-2935: every block writes its parent's hash into this contract; no transaction trace shows it.
pub const HISTORY_STORAGE: Address = address!("0000F90827F1C53a10cb7A02335B175320002935");
const HISTORY_SERVE_WINDOW: u64 = 8191;
/// EIP-4788: the beacon block root, written by a system call before the transactions.
pub const BEACON_ROOTS: Address = address!("000F3df6D732807Ef1319fB7B8bB8522d0Beac02");
const BEACON_ROOTS_BUFFER: u64 = 8191;
/// EIP-7002 and EIP-7251 request queues, dequeued by system calls after the transactions.
pub const WITHDRAWAL_REQUESTS: Address = address!("00000961Ef480Eb55e80D19ad83579A64c007002");
pub const CONSOLIDATION_REQUESTS: Address = address!("0000BBdDc7CE488642fb579F8B00f3a590007251");

#[derive(Debug, Error)]
pub enum FetchError {
    #[error(transparent)]
    Rpc(#[from] RpcError),
    #[error("block {number}: the header the client returned hashes to {computed}, not {claimed}")]
    HeaderHash { number: u64, computed: B256, claimed: B256 },
    #[error("block {number}: {reason}")]
    Inconsistent { number: u64, reason: String },
    #[error("block {number}: tracing transaction {tx:?} failed: {error}")]
    Trace { number: u64, tx: Option<B256>, error: String },
    #[error(
        "block {number}: the client's {method} answer does not decode ({reason}); an unknown transaction type or \
         a client this build cannot read: the block is not published"
    )]
    Undecodable { number: u64, method: &'static str, reason: String },
    #[error("the state verifier needs eth_getProof, which the client does not serve ({reason}); run with --verify-rate 0")]
    NoProofs { reason: String },
    #[error("block {number} is not published: its record disagrees with the chain's state root: {mismatch}")]
    StateMismatch { number: u64, mismatch: crate::verify::Mismatch },
}

/// Time spent per phase, and what the checks found, for metrics and the benchmark.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    pub fetch: Duration,
    pub trace: Duration,
    pub verify: Duration,
    /// Accounts checked against a proof.
    pub verified_accounts: u64,
    /// Deletions the tracer reported and the client contradicted.
    pub disagreements: u64,
}

/// What the publisher checks while fetching a block.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchOptions {
    /// Fraction of each block's changed accounts checked against `eth_getProof` (0: none, 1: all).
    pub verify_rate: f64,
}

/// A block without its state change: what the client's block and receipts say.
pub struct Body {
    /// The log block with an empty `state`.
    pub block: Block,
    pub rpc: alloy_rpc_types_eth::Block,
    pub header: alloy_consensus::Header,
}

/// Block `number`'s header (checked to hash to its hash), transactions, receipts and withdrawals.
pub async fn fetch_body(rpc: &RpcClient, number: u64) -> Result<Option<Body>, FetchError> {
    let rpc_block = rpc.block(BlockId::Number(number)).await.map_err(|e| match e {
        RpcError::Decode { method, reason } => FetchError::Undecodable { number, method, reason },
        other => other.into(),
    })?;
    let Some(rpc_block) = rpc_block else { return Ok(None) };
    let inconsistent = |reason: String| FetchError::Inconsistent { number, reason };
    let header = rpc_block.header.inner.clone();
    let header_rlp = alloy_rlp::encode(&header);
    let computed = keccak256(&header_rlp);
    if computed != rpc_block.header.hash {
        return Err(FetchError::HeaderHash { number, computed, claimed: rpc_block.header.hash });
    }
    let mut transactions = Vec::new();
    for tx in rpc_block.transactions.clone().into_transactions() {
        transactions
            .push(Transaction { sender: tx.inner.signer(), encoded: tx.inner.inner().encoded_2718().into() });
    }
    let receipts = match rpc.block_receipts(BlockId::Hash(rpc_block.header.hash)).await {
        Ok(Some(r)) => r,
        Ok(None) => return Err(inconsistent("eth_getBlockReceipts has no receipts for it".into())),
        // Clients without eth_getBlockReceipts: one call per transaction.
        Err(e) if e.is_unsupported() => {
            let mut out = Vec::with_capacity(transactions.len());
            for tx in &transactions {
                let r = rpc.transaction_receipt(tx.hash()).await?;
                out.push(r.ok_or_else(|| inconsistent(format!("no receipt for {}", tx.hash())))?);
            }
            out
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(r) = receipts.iter().find(|r| r.block_hash.is_some_and(|h| h != rpc_block.header.hash)) {
        // The chain changed between the two calls: receipts of another fork.
        return Err(inconsistent(format!(
            "a receipt belongs to block {:?}, not {}",
            r.block_hash, rpc_block.header.hash
        )));
    }
    if receipts.len() != transactions.len() {
        return Err(inconsistent(format!(
            "{} transactions but {} receipts",
            transactions.len(),
            receipts.len()
        )));
    }
    // Before Byzantium a receipt holds the state root after its transaction instead of a status: kept beside
    // the receipts, all or none (a block's receipts are all of one kind).
    let roots: Vec<B256> = receipts
        .iter()
        .filter_map(|r| match alloy_consensus::TxReceipt::status_or_post_state(&r.inner) {
            alloy_consensus::Eip658Value::PostState(root) => Some(root),
            alloy_consensus::Eip658Value::Eip658(_) => None,
        })
        .collect();
    if !roots.is_empty() && roots.len() != receipts.len() {
        return Err(inconsistent(format!(
            "{} of {} receipts hold a state root",
            roots.len(),
            receipts.len()
        )));
    }
    let receipts = receipts
        .iter()
        .map(|r| Receipt {
            success: r.inner.status(),
            cumulative_gas_used: r.inner.cumulative_gas_used(),
            gas_used: r.gas_used,
            effective_gas_price: r.effective_gas_price,
            blob_gas_used: r.blob_gas_used,
            blob_gas_price: r.blob_gas_price,
            contract_address: r.contract_address,
            logs: r
                .inner
                .logs()
                .iter()
                .map(|l| Log {
                    address: l.address(),
                    topics: l.topics().to_vec(),
                    data: l.data().data.clone(),
                })
                .collect(),
        })
        .collect();
    let withdrawals = rpc_block.withdrawals.as_ref().map(|ws| {
        ws.iter()
            .map(|w| Withdrawal {
                index: w.index,
                validator_index: w.validator_index,
                address: w.address,
                amount_gwei: w.amount,
            })
            .collect::<Vec<_>>()
    });
    let block = Block {
        number,
        hash: rpc_block.header.hash,
        parent_hash: header.parent_hash,
        timestamp: header.timestamp,
        header: header_rlp.into(),
        transactions,
        receipts,
        withdrawals,
        state: Vec::new(),
        receipt_roots: roots,
        ommers: Vec::new(),
    };
    Ok(Some(Body { block, rpc: rpc_block, header }))
}

/// Block `number` as a log record: its body ([`fetch_body`]), then everything else named by the body's hash
/// (EIP-1898), so a reorg while the block is fetched yields the record of one block, never a mix of two:
/// 1. [`trace_block`]: the per-transaction traces, merged;
/// 2. [`reveal_invisible`]: accounts the traces cannot show (issue 26, item 1);
/// 3. [`read_system_state`]: what no transaction trace shows (system contracts, withdrawals, rewards);
/// 4. [`read_unknowns`]: every value still unknown, deletions confirmed with the client;
/// 5. [`read_back_contradicted`]: accounts whose deletion the client contradicted, slot by slot;
/// 6. [`verify_state`]: a sample of the record against proofs of the header's state root.
pub async fn fetch_block(
    rpc: &RpcClient,
    number: u64,
    mode: TraceMode,
    opts: &FetchOptions,
) -> Result<Option<(Block, Timings)>, FetchError> {
    let started = Instant::now();
    let Some(body) = fetch_body(rpc, number).await? else {
        return Ok(None);
    };
    let fetch = started.elapsed();

    let started = Instant::now();
    let mut access = AccessTrace::default();
    let mut partials = trace_block(rpc, &body, mode).await?;
    let trace = started.elapsed();

    let started = Instant::now();
    reveal_invisible(rpc, &body, mode, &mut partials, &mut access).await?;
    let system = read_system_state(rpc, &body, &mut partials).await?;
    let contradicted = read_unknowns(rpc, &body, &mut partials, &system.slots).await?;
    read_back_contradicted(rpc, &body, mode, &mut partials, &contradicted, &mut access).await?;
    let fetch = fetch + started.elapsed();

    let state = diff::finish(partials);
    let started = Instant::now();
    let verified = verify_state(rpc, &body, &state, opts.verify_rate).await?;
    let verify = started.elapsed();

    let block = Block { state, ommers: system.ommers, ..body.block };
    let timings = Timings {
        fetch,
        trace,
        verify,
        verified_accounts: verified,
        disagreements: contradicted.len() as u64,
    };
    Ok(Some((block, timings)))
}

impl Body {
    /// The block, by hash: every read after the body names it so.
    fn at(&self) -> BlockId {
        BlockId::Hash(self.block.hash)
    }
    /// Its parent, by hash: where the values before the block are read.
    fn parent(&self) -> Result<BlockId, FetchError> {
        if self.block.number == 0 {
            return Err(FetchError::Inconsistent {
                number: 0,
                reason: "block 0 has no parent to read prior values at".into(),
            });
        }
        Ok(BlockId::Hash(self.block.parent_hash))
    }
    fn inconsistent(&self, reason: String) -> FetchError {
        FetchError::Inconsistent { number: self.block.number, reason }
    }
}

/// Step 1: the client's per-transaction traces of the block, checked to be the body's transactions (same
/// hashes, same order), merged into one change per account.
async fn trace_block(rpc: &RpcClient, body: &Body, mode: TraceMode) -> Result<diff::Partials, FetchError> {
    let number = body.block.number;
    let transactions = &body.block.transactions;
    let check_hashes = |traced: Vec<Option<B256>>| -> Result<(), FetchError> {
        if traced.len() != transactions.len() {
            return Err(body.inconsistent(format!(
                "{} traces for {} transactions",
                traced.len(),
                transactions.len()
            )));
        }
        for (i, (t, tx)) in traced.iter().zip(transactions).enumerate() {
            // A client may leave the hash out; when it gives one, it must be the body's.
            if t.is_some_and(|h| h != tx.hash()) {
                return Err(body.inconsistent(format!(
                    "trace {i} is of transaction {t:?}, the block's is {} (the chain changed under the fetch)",
                    tx.hash()
                )));
            }
        }
        Ok(())
    };
    match mode {
        TraceMode::Prestate => {
            let results = rpc.prestate_diff(body.at()).await?;
            let mut diffs = Vec::with_capacity(results.len());
            let mut hashes = Vec::with_capacity(results.len());
            for r in results {
                match r {
                    TraceResult::Success { result: PreStateFrame::Diff(d), tx_hash } => {
                        diffs.push(d);
                        hashes.push(tx_hash);
                    }
                    TraceResult::Success { tx_hash, .. } => {
                        return Err(FetchError::Trace {
                            number,
                            tx: tx_hash,
                            error: "not a diff-mode frame".into(),
                        })
                    }
                    TraceResult::Error { error, tx_hash } => {
                        return Err(FetchError::Trace { number, tx: tx_hash, error })
                    }
                }
            }
            check_hashes(hashes)?;
            Ok(diff::merge_prestate(&diffs))
        }
        TraceMode::StateDiff => {
            // Parity's replay takes a block number on some clients: the hashes tell whether it was ours.
            let results = rpc.state_diff(number).await?;
            check_hashes(
                results.iter().map(|r| Some(r.transaction_hash).filter(|h| !h.is_zero())).collect(),
            )?;
            let diffs: Vec<_> =
                results.iter().filter_map(|r| r.full_trace.state_diff.as_ref().map(|d| &d.0)).collect();
            Ok(diff::merge_state_diff(diffs))
        }
    }
}

/// The prestate tracer's default mode over the block ([`RpcClient::prestate_accessed`]), asked for at most
/// once per block and only when a step needs it.
#[derive(Default)]
struct AccessTrace(Option<Vec<PreStateMode>>);

impl AccessTrace {
    async fn get(&mut self, rpc: &RpcClient, body: &Body) -> Result<&[PreStateMode], FetchError> {
        if self.0.is_none() {
            let mut out = Vec::new();
            for r in rpc.prestate_accessed(body.at()).await? {
                match r {
                    TraceResult::Success { result: PreStateFrame::Default(accessed), .. } => {
                        out.push(accessed)
                    }
                    TraceResult::Success { tx_hash, .. } => {
                        return Err(FetchError::Trace {
                            number: body.block.number,
                            tx: tx_hash,
                            error: "not a default-mode prestate frame".into(),
                        })
                    }
                    TraceResult::Error { error, tx_hash } => {
                        return Err(FetchError::Trace { number: body.block.number, tx: tx_hash, error })
                    }
                }
            }
            if out.len() != body.block.transactions.len() {
                return Err(body.inconsistent(format!(
                    "{} access traces for {} transactions",
                    out.len(),
                    body.block.transactions.len()
                )));
            }
            self.0 = Some(out);
        }
        Ok(self.0.as_deref().unwrap_or_default())
    }
}

/// Step 2: accounts the traces cannot show ([`crate::invisible`]). With geth's prestate tracer: found in
/// the access trace of blocks where a creation may hide, their state at the block read as proofs verified
/// against the header's root. With parity's stateDiff: successful top-level creations no diff names (an
/// empty account created before EIP-158), asked the same way.
async fn reveal_invisible(
    rpc: &RpcClient,
    body: &Body,
    mode: TraceMode,
    partials: &mut diff::Partials,
    access: &mut AccessTrace,
) -> Result<(), FetchError> {
    let created: Vec<Address> =
        body.block.receipts.iter().filter(|r| r.success).filter_map(|r| r.contract_address).collect();
    let senders: Vec<Address> = body.block.transactions.iter().map(|t| t.sender).collect();
    let candidates = match mode {
        TraceMode::Prestate => {
            if !invisible::needs_access_trace(partials, &senders, &created) {
                return Ok(());
            }
            invisible::candidates(partials, access.get(rpc, body).await?)
        }
        TraceMode::StateDiff => created
            .into_iter()
            .filter(|a| !partials.contains_key(a))
            .map(|address| invisible::Candidate { address, slots: Default::default() })
            .collect(),
    };
    if candidates.is_empty() {
        return Ok(());
    }
    let mut reads = Reads::default();
    let asked: Vec<(usize, usize)> = candidates
        .iter()
        .map(|c| {
            let slots: Vec<B256> = c.slots.keys().copied().collect();
            let proof =
                reads.push("eth_getProof", serde_json::json!([c.address, slots, body.at().to_json()]));
            (proof, reads.code(c.address, body.at()))
        })
        .collect();
    let got = reads.run(rpc).await?;
    let root = body.header.state_root;
    let number = body.block.number;
    let mismatch = |mismatch| FetchError::StateMismatch { number, mismatch };
    for (candidate, (proof, code)) in candidates.into_iter().zip(asked) {
        let proof: alloy_rpc_types_eth::EIP1186AccountProofResponse = got.get(proof, "eth_getProof")?;
        let at_block = match crate::verify::proven_account(root, candidate.address, &proof)
            .map_err(mismatch)?
        {
            None => None,
            Some(account) => {
                let code: alloy_primitives::Bytes = got.get(code, "eth_getCode")?;
                let hash = if code.is_empty() { alloy_primitives::KECCAK256_EMPTY } else { keccak256(&code) };
                if hash != account.code_hash {
                    return Err(body.inconsistent(format!(
                        "{}: eth_getCode hashes to {hash}, its proof says {}",
                        candidate.address, account.code_hash
                    )));
                }
                let mut storage = std::collections::BTreeMap::new();
                for s in candidate.slots.keys() {
                    let v =
                        crate::verify::proven_slot(root, candidate.address, &proof, *s).map_err(mismatch)?;
                    storage.insert(*s, B256::from(v));
                }
                tracing::info!(block = number, address = %candidate.address, "an account no trace showed: written as its proof shows it");
                Some(invisible::AtBlock { balance: account.balance, nonce: account.nonce, code, storage })
            }
        };
        invisible::apply(partials, candidate, at_block);
    }
    Ok(())
}

/// What [`read_system_state`] found: slots to read at the block (and before it), and the uncle headers.
struct SystemState {
    slots: Vec<(Address, B256)>,
    ommers: Vec<alloy_primitives::Bytes>,
}

/// Step 3: what no transaction trace shows, probed in one batch: the system contracts' slots written before
/// and after the transactions (EIP-2935, EIP-4788, EIP-7002, EIP-7251), withdrawals, and proof-of-work
/// rewards with the uncle headers (each checked to hash to the block's entry). Those accounts' balance and
/// nonce are then read at the block by [`read_unknowns`].
async fn read_system_state(
    rpc: &RpcClient,
    body: &Body,
    partials: &mut diff::Partials,
) -> Result<SystemState, FetchError> {
    let (number, header, at) = (body.block.number, &body.header, body.at());
    let mut probe = Reads::default();
    let history = (number > 0).then(|| probe.code(HISTORY_STORAGE, at));
    let beacon = probe.code(BEACON_ROOTS, at);
    let queues = [WITHDRAWAL_REQUESTS, CONSOLIDATION_REQUESTS].map(|q| (q, probe.code(q, at)));
    let pow = !header.difficulty.is_zero();
    let uncles: Vec<usize> = if pow {
        (0..body.rpc.uncles.len())
            .map(|i| {
                probe.push(
                    "eth_getUncleByBlockHashAndIndex",
                    serde_json::json!([body.block.hash, format!("{i:#x}")]),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    let probed = probe.run(rpc).await?;
    let has_code = |i: usize| -> Result<bool, RpcError> {
        Ok(!probed.get::<alloy_primitives::Bytes>(i, "eth_getCode")?.is_empty())
    };

    let mut extra: Vec<(Address, Vec<B256>)> = Vec::new();
    for w in body.block.withdrawals.iter().flatten() {
        extra.push((w.address, Vec::new()));
    }
    let mut ommers = Vec::new();
    if pow {
        extra.push((header.beneficiary, Vec::new()));
        for (k, i) in uncles.into_iter().enumerate() {
            let uncle: Option<serde_json::Value> = probed.get(i, "eth_getUncleByBlockHashAndIndex")?;
            let uncle = uncle.ok_or_else(|| body.inconsistent(format!("uncle {k} is missing")))?;
            let parsed: alloy_rpc_types_eth::Header = serde_json::from_value(uncle)
                .map_err(|e| body.inconsistent(format!("uncle {k} does not decode: {e}")))?;
            let rlp = alloy_rlp::encode(&parsed.inner);
            let want = body.rpc.uncles.get(k).copied();
            if Some(keccak256(&rlp)) != want || want != Some(parsed.hash) {
                return Err(body.inconsistent(format!(
                    "uncle {k} hashes to {}, the block names {want:?}",
                    keccak256(&rlp)
                )));
            }
            extra.push((parsed.inner.beneficiary, Vec::new()));
            ommers.push(rlp.into());
        }
    }
    if let Some(i) = history {
        if has_code(i)? {
            extra.push((HISTORY_STORAGE, vec![slot((number - 1) % HISTORY_SERVE_WINDOW)]));
        }
    }
    if has_code(beacon)? {
        let i = header.timestamp % BEACON_ROOTS_BUFFER;
        extra.push((BEACON_ROOTS, vec![slot(i), slot(i + BEACON_ROOTS_BUFFER)]));
    }
    for (queue, i) in queues {
        if has_code(i)? {
            extra.push((queue, (0..4).map(slot).collect()));
        }
    }
    for (address, _) in &extra {
        let p = partials.entry(*address).or_default();
        p.deleted = false;
        p.balance = None;
        p.nonce = None;
    }
    let slots = extra.iter().flat_map(|(a, slots)| slots.iter().map(move |s| (*a, *s))).collect();
    Ok(SystemState { slots, ommers })
}

/// Step 4, one batch: every value still unknown, the code of accounts whose code may have changed, the
/// system slots, the values before the block no trace gave, and the state of every account a trace says was
/// deleted (confirmed with the client before it is written). Returns the accounts whose deletion proved
/// false (the client has them, or a later transaction found them alive).
async fn read_unknowns(
    rpc: &RpcClient,
    body: &Body,
    partials: &mut diff::Partials,
    extra_slots: &[(Address, B256)],
) -> Result<Vec<Address>, FetchError> {
    let (number, at) = (body.block.number, body.at());
    let mut reads = Reads::default();
    let mut wanted = Vec::new();
    for (address, p) in partials.iter() {
        // A deleted account is confirmed with the client; a falsely deleted one is read back whole.
        let whole = p.deleted || p.false_deletion;
        let account = p.needs_account() || whole;
        let balance = (account && (whole || p.balance.is_none())).then(|| reads.balance(*address, at));
        let nonce = (account && (whole || p.nonce.is_none())).then(|| reads.nonce(*address, at));
        let code = (p.recheck_code || whole).then(|| reads.code(*address, at));
        wanted.push((*address, balance, nonce, code));
    }
    let slot_reads: Vec<usize> = extra_slots.iter().map(|(a, s)| reads.storage(*a, *s, at)).collect();
    // The system contracts' slots are written before the first transaction, so a trace that names one saw
    // it after that write: their values before the block are always read, with every other prior no trace
    // gave, in this same batch.
    for (address, s) in extra_slots {
        if let Some(p) = partials.get_mut(address) {
            p.slot_priors.remove(s);
        }
    }
    let prior_reads = queue_prior_reads(partials, extra_slots, body.parent()?, &mut reads);
    let got = reads.run(rpc).await?;
    apply_prior_reads(partials, prior_reads, &got)?;
    let mut contradicted = Vec::new();
    for (address, balance, nonce, code) in wanted {
        let Some(p) = partials.get_mut(&address) else { continue };
        let balance: Option<U256> = balance.map(|i| got.get(i, "eth_getBalance")).transpose()?;
        let nonce: Option<U256> = nonce.map(|i| got.get(i, "eth_getTransactionCount")).transpose()?;
        let code: Option<alloy_primitives::Bytes> = code.map(|i| got.get(i, "eth_getCode")).transpose()?;
        if p.deleted {
            let exists = balance.is_some_and(|b| !b.is_zero())
                || nonce.is_some_and(|n| !n.is_zero())
                || code.as_ref().is_some_and(|c| !c.is_empty());
            if !exists {
                continue;
            }
            // The tracer says deleted, the client still has the account: write it as the client has it
            // (its storage was never wiped either), and count the disagreement.
            tracing::warn!(block = number, %address, "tracer reported a deletion the client contradicts; writing the client's state");
            p.deleted = false;
            p.wiped = false;
            p.storage.clear();
            p.code = code;
            contradicted.push(address);
        } else if p.false_deletion {
            // A later transaction found it alive: its storage as the client has it after the block, slot by
            // slot (what the transactions before the false deletion wrote went with it).
            tracing::warn!(block = number, %address, "tracer reported a deletion a later transaction contradicts; reading the account back");
            p.storage.clear();
            p.code = code;
            contradicted.push(address);
        } else if code.is_some() {
            p.code = code;
        }
        if let Some(b) = balance {
            p.balance = Some(b);
        }
        if let Some(n) = nonce {
            p.nonce = Some(n.saturating_to());
        }
    }
    for ((address, s), i) in extra_slots.iter().zip(slot_reads) {
        let value: B256 = got.get(i, "eth_getStorageAt")?;
        partials.entry(*address).or_default().storage.insert(*s, value);
    }
    Ok(contradicted)
}

/// Step 5: the storage of accounts whose deletion proved false, as the client has it after the block: every
/// slot any trace named, and with geth's tracer every slot the block accessed at all (diff mode's `pre`
/// omits slots that were zero before the block, and the false deletion took the account's `post` with it).
/// Then the values before the block of slots read back that no trace named.
async fn read_back_contradicted(
    rpc: &RpcClient,
    body: &Body,
    mode: TraceMode,
    partials: &mut diff::Partials,
    contradicted: &[Address],
    access: &mut AccessTrace,
) -> Result<(), FetchError> {
    if contradicted.is_empty() {
        return Ok(());
    }
    if mode == TraceMode::Prestate {
        for accessed in access.get(rpc, body).await? {
            for address in contradicted {
                if let (Some(p), Some(a)) = (partials.get_mut(address), accessed.0.get(address)) {
                    p.touched.extend(a.storage.keys());
                }
            }
        }
    }
    let mut reads = Reads::default();
    let mut slots = Vec::new();
    for address in contradicted {
        for s in partials.get(address).map(|p| p.touched.clone()).unwrap_or_default() {
            slots.push((*address, s, reads.storage(*address, s, body.at())));
        }
    }
    let got = reads.run(rpc).await?;
    for (address, s, i) in slots {
        let value: B256 = got.get(i, "eth_getStorageAt")?;
        partials.entry(address).or_default().storage.insert(s, value);
    }
    let mut reads = Reads::default();
    let leftover = queue_prior_reads(partials, &[], body.parent()?, &mut reads);
    if !leftover.is_empty() {
        apply_prior_reads(partials, leftover, &reads.run(rpc).await?)?;
    }
    Ok(())
}

/// Prior values to read from the client at the parent block: an account's (balance, nonce, code) and its
/// slots.
type PriorReads = Vec<(Address, Option<(usize, usize, usize)>, Vec<(B256, usize)>)>;

/// Queues, into `reads`, the reads at the parent block of every value before the block that no trace gave:
/// accounts only the client's reads showed (withdrawals, system contracts), stateDiff's `=` fields, the
/// slots in `extra_slots`, and slots no trace named.
fn queue_prior_reads(
    partials: &diff::Partials,
    extra_slots: &[(Address, B256)],
    parent: BlockId,
    reads: &mut Reads,
) -> PriorReads {
    let mut wanted = Vec::new();
    for (address, p) in partials.iter() {
        let account = p.prior.is_none().then(|| {
            (reads.balance(*address, parent), reads.nonce(*address, parent), reads.code(*address, parent))
        });
        let mut slots = p.unknown_slot_priors();
        for (a, s) in extra_slots {
            if a == address && !slots.contains(s) {
                slots.push(*s);
            }
        }
        let slots: Vec<(B256, usize)> =
            slots.into_iter().map(|s| (s, reads.storage(*address, s, parent))).collect();
        if account.is_some() || !slots.is_empty() {
            wanted.push((*address, account, slots));
        }
    }
    wanted
}

fn apply_prior_reads(
    partials: &mut diff::Partials,
    wanted: PriorReads,
    got: &Answers,
) -> Result<(), RpcError> {
    for (address, account, slots) in wanted {
        let Some(p) = partials.get_mut(&address) else { continue };
        if let Some((balance, nonce, code)) = account {
            let balance: U256 = got.get(balance, "eth_getBalance")?;
            let nonce: U256 = got.get(nonce, "eth_getTransactionCount")?;
            let code: alloy_primitives::Bytes = got.get(code, "eth_getCode")?;
            // keccak256 of no code is KECCAK256_EMPTY, which `existing` reads as "no code".
            let code_hash = alloy_primitives::keccak256(&code);
            p.prior = Some(ec_log::AccountPrior::existing(balance, nonce.saturating_to(), code_hash));
        }
        for (slot, i) in slots {
            p.slot_priors.insert(slot, got.get(i, "eth_getStorageAt")?);
        }
    }
    Ok(())
}

/// Step 6: checks the record against `eth_getProof` proofs verified against the header's state root
/// ([`crate::verify`]): a sample (`rate`) of the changed accounts, and every wipe and deletion at any rate
/// above 0 (the changes tracers have got wrong). The sampled accounts' values before the block are checked too,
/// against proofs at the parent: a replica restores them when it undoes the block. Returns how many
/// accounts were checked.
async fn verify_state(
    rpc: &RpcClient,
    body: &Body,
    state: &[ec_log::AccountChange],
    rate: f64,
) -> Result<u64, FetchError> {
    let number = body.block.number;
    let sampled = |c: &ec_log::AccountChange| crate::verify::sampled(&c.address, number, rate);
    // Rate 0 turns the verifier off (a client without eth_getProof), wipes and deletions included.
    let must = |c: &ec_log::AccountChange| rate > 0.0 && (c.storage_wiped || c.account.is_none());
    let chosen: Vec<&ec_log::AccountChange> = state.iter().filter(|c| sampled(c) || must(c)).collect();
    if chosen.is_empty() {
        return Ok(0);
    }
    let parent = (number > 0 && rate > 0.0).then_some(BlockId::Hash(body.block.parent_hash));
    let mut reads = Reads::default();
    let proof = |reads: &mut Reads, c: &ec_log::AccountChange, at: BlockId| {
        let slots: Vec<B256> = c.storage.iter().map(|s| s.slot).collect();
        reads.push("eth_getProof", serde_json::json!([c.address, slots, at.to_json()]))
    };
    let ids: Vec<(usize, Option<usize>)> = chosen
        .iter()
        .map(|c| {
            (proof(&mut reads, c, body.at()), parent.filter(|_| sampled(c)).map(|p| proof(&mut reads, c, p)))
        })
        .collect();
    let parent_header =
        parent.map(|_| reads.push("eth_getBlockByHash", serde_json::json!([body.block.parent_hash, false])));
    let got = reads.run(rpc).await?;
    let proof_at = |i: usize| -> Result<alloy_rpc_types_eth::EIP1186AccountProofResponse, FetchError> {
        got.get(i, "eth_getProof").map_err(|e| match e {
            // Retrying cannot help: the publisher would be stuck on this block for ever.
            e if e.is_unsupported() => FetchError::NoProofs { reason: e.to_string() },
            e => e.into(),
        })
    };
    let parent_root = match parent_header {
        Some(i) => {
            let header: Option<alloy_rpc_types_eth::Header> = got.get(i, "eth_getBlockByHash")?;
            let header = header
                .ok_or_else(|| body.inconsistent("the client no longer has the parent block".into()))?;
            // Block 0's root is checked only where the client computed it (anvil's --init genesis has none).
            (number > 1).then_some(header.inner.state_root)
        }
        None => None,
    };
    let mismatch = |mismatch| FetchError::StateMismatch { number, mismatch };
    for (change, (at, before)) in chosen.iter().zip(ids) {
        crate::verify::check_account(body.header.state_root, change, &proof_at(at)?).map_err(mismatch)?;
        if let Some(i) = before {
            crate::verify::check_prior(parent_root, change, &proof_at(i)?).map_err(mismatch)?;
        }
    }
    Ok(chosen.len() as u64)
}

/// Reads gathered for one JSON-RPC batch.
#[derive(Default)]
struct Reads {
    calls: Vec<(&'static str, serde_json::Value)>,
}

impl Reads {
    fn push(&mut self, method: &'static str, params: serde_json::Value) -> usize {
        self.calls.push((method, params));
        self.calls.len() - 1
    }
    fn code(&mut self, a: Address, at: BlockId) -> usize {
        self.push("eth_getCode", serde_json::json!([a, at.to_json()]))
    }
    fn balance(&mut self, a: Address, at: BlockId) -> usize {
        self.push("eth_getBalance", serde_json::json!([a, at.to_json()]))
    }
    fn nonce(&mut self, a: Address, at: BlockId) -> usize {
        self.push("eth_getTransactionCount", serde_json::json!([a, at.to_json()]))
    }
    fn storage(&mut self, a: Address, s: B256, at: BlockId) -> usize {
        self.push("eth_getStorageAt", serde_json::json!([a, s, at.to_json()]))
    }
    async fn run(self, rpc: &RpcClient) -> Result<Answers, RpcError> {
        Ok(Answers(rpc.batch(&self.calls).await?))
    }
}

struct Answers(Vec<Result<serde_json::Value, RpcError>>);

impl Answers {
    fn get<T: serde::de::DeserializeOwned>(&self, i: usize, method: &'static str) -> Result<T, RpcError> {
        match self.0.get(i) {
            Some(Ok(v)) => serde_json::from_value(v.clone())
                .map_err(|e| RpcError::Decode { method, reason: e.to_string() }),
            Some(Err(RpcError::Remote { code, message, .. })) => {
                Err(RpcError::Remote { method, code: *code, message: message.clone() })
            }
            Some(Err(e)) => Err(RpcError::Remote { method, code: 0, message: e.to_string() }),
            None => Err(RpcError::Decode { method, reason: "missing from the batch".into() }),
        }
    }
}

fn slot(i: u64) -> B256 {
    B256::from(alloy_primitives::U256::from(i))
}
