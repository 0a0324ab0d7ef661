//! The six filter methods over a [`FilterStore`]: parsing and the store's calls here, what a poll delivers in
//! [`super::poll`].

use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::Duration,
};

use alloy_primitives::B256;
use alloy_rpc_types_eth::Log;
use ec_store::Reads;
use jsonrpsee::types::ErrorObjectOwned;
use serde_json::Value;

use super::{
    new_id,
    poll::{self, ChainView, Plan},
    unix_now, Cursor, FilterStore, Kind, StoredFilter,
};
use crate::{
    block_id::BlockSpec,
    convert,
    ctx::{Class, Ctx, Req},
    error::{invalid_params, server_error, RpcResult},
    logs,
};

/// How often a poll that lost the race for a cursor starts again from the moved one before it answers "no
/// changes" (the winner delivered them).
const ATTEMPTS: usize = 8;

/// The filters a replica serves: where they live and how long an idle one lasts.
#[derive(Clone)]
pub struct Filters {
    pub store: Arc<dyn FilterStore>,
    pub timeout: Duration,
}

fn not_found() -> ErrorObjectOwned {
    server_error("filter not found")
}

fn unavailable(e: super::FilterStoreError) -> ErrorObjectOwned {
    tracing::warn!(error = %e, "filter store");
    super::COUNTS.store_errors.fetch_add(1, Relaxed);
    server_error(e)
}

fn filters(c: &Ctx) -> RpcResult<&Filters> {
    c.filters.as_ref().ok_or_else(|| server_error("this replica serves no filters"))
}

/// `eth_newFilter`, `eth_newBlockFilter`, `eth_newPendingTransactionFilter`: a fresh id, the cursor at the
/// head (only blocks after it are reported, as a node does).
pub async fn install(c: &Arc<Ctx>, kind: Kind) -> RpcResult<String> {
    let filters = filters(c)?;
    if let Kind::Logs(criteria) = &kind {
        check_criteria(criteria)?;
    }
    let (cursor, cluster) = {
        let r = Req::new(c);
        let head = r.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        let cluster = r.view.chain().map_err(server_error)?.map(|c| c.cluster_id).unwrap_or_default();
        let sequence = r.sequence()?;
        (Cursor { number: head.number, hash: head.hash, sequence }, cluster)
    };
    let id = new_id();
    let filter = StoredFilter { kind, cluster, cursor, expires_at: expiry(filters) };
    filters.store.insert(&id, &filter).await.map_err(unavailable)?;
    super::COUNTS.installed.fetch_add(1, Relaxed);
    Ok(id)
}

/// geth's rules for a live log filter: the range bounds which new blocks' logs are reported, so it must be
/// numbers, `earliest` (0) or `latest`, in order; geth's -32602 and words when it is not.
fn check_criteria(criteria: &Value) -> RpcResult<logs::Filter> {
    let f = logs::parse_filter(criteria).map_err(invalid_params)?;
    let refuse = |msg: &str| Err(ErrorObjectOwned::owned(-32602, msg.to_string(), None::<()>));
    let logs::Range::Blocks { from, to } = f.range else { return Ok(f) };
    if from == BlockSpec::Pending || to == BlockSpec::Pending {
        return refuse("pending logs are not supported");
    }
    let in_order = match (from, to) {
        (BlockSpec::Latest, BlockSpec::Latest) => true,
        (from, BlockSpec::Latest) => number(from).is_some(),
        (from, to) => number(from).zip(number(to)).is_some_and(|(a, b)| a <= b),
    };
    if !in_order {
        return refuse("invalid block range params");
    }
    Ok(f)
}

fn number(s: BlockSpec) -> Option<u64> {
    match s {
        BlockSpec::Number(n) => Some(n),
        BlockSpec::Earliest => Some(0),
        _ => None,
    }
}

/// When a filter polled now expires: rounded up to the second (the store's unit), so never early.
fn expiry(filters: &Filters) -> u64 {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    (now + filters.timeout).as_secs_f64().ceil() as u64
}

/// `eth_getFilterChanges`: what happened since the last poll, from whichever replica answers.
pub async fn changes(c: &Arc<Ctx>, id: String) -> RpcResult<Value> {
    let filters = filters(c)?.clone();
    for _ in 0..ATTEMPTS {
        let f = live_filter(&filters, &id).await?;
        let polled = f.clone();
        let (answer, cursor) =
            c.on_pool(Class::Logs, move |r| delivery(r, &polled)).await?.ok_or_else(|| {
                super::COUNTS.unknown_cursor.fetch_add(1, Relaxed);
                not_found()
            })?;
        if filters.store.advance(&id, &f.cursor, &cursor, expiry(&filters)).await.map_err(unavailable)? {
            super::COUNTS.delivered.fetch_add(1, Relaxed);
            return Ok(answer);
        }
        super::COUNTS.raced.fetch_add(1, Relaxed);
    }
    // Every attempt lost to another poll of the same filter: they delivered what there was.
    Ok(Value::Array(Vec::new()))
}

/// The filter, unless it is missing or idle past its expiry (then it is removed, as a node would).
async fn live_filter(filters: &Filters, id: &str) -> RpcResult<StoredFilter> {
    let f = filters.store.get(id).await.map_err(unavailable)?.ok_or_else(not_found)?;
    if f.expired(unix_now()) {
        filters.store.remove(id).await.map_err(unavailable)?;
        return Err(not_found());
    }
    Ok(f)
}

/// One poll's answer and the cursor it leaves, read in one view; `None` when the cursor's block is unknown
/// here.
fn delivery(r: &Req, f: &StoredFilter) -> RpcResult<Option<(Value, Cursor)>> {
    let cluster = r.view.chain().map_err(server_error)?.map(|c| c.cluster_id).unwrap_or_default();
    let same_cluster = cluster == f.cluster && f.cursor.sequence != 0;
    // A replica of another cluster counts in another log: its position means nothing to this cluster's.
    let sequence = if cluster == f.cluster { r.sequence()? } else { 0 };
    let stay = |f: &StoredFilter| Ok(Some((Value::Array(Vec::new()), f.cursor)));
    let crit = match &f.kind {
        Kind::PendingTransactions => return stay(f),
        Kind::Logs(criteria) => Some(logs::parse_filter(criteria).map_err(server_error)?),
        Kind::Blocks => None,
    };
    let plan = poll::plan(r, &f.cursor, same_cluster, r.limits.max_log_block_range)?;
    let (removed, added, ancestor) = match plan {
        Plan::Behind => return stay(f),
        Plan::Unknown => return Ok(None),
        Plan::Deliver { removed, added, ancestor } => (removed, added, ancestor),
    };
    let mut cursor = Cursor { number: ancestor.0, hash: ancestor.1, sequence };
    let Some(crit) = crit else {
        // A block filter: the new canonical blocks' hashes (a node reports no removed blocks).
        let mut hashes = Vec::new();
        for n in added {
            let Some(hash) = r.view.canonical_hash(n).map_err(server_error)? else { break };
            hashes.push(hash);
            (cursor.number, cursor.hash) = (n, hash);
        }
        return Ok(Some((serde_json::to_value(hashes).map_err(server_error)?, cursor)));
    };
    let mut out: Vec<Log> = Vec::new();
    for (number, hash) in removed {
        let block = r.view.reverted_block(number, &hash).map_err(server_error)?;
        let block = block.ok_or_else(|| server_error(format!("reverted block {number} {hash} vanished")))?;
        out.extend(matching(&crit, &block, true));
    }
    for n in added {
        let Some(block) = r.canonical_block(n)? else { break };
        let logs = matching(&crit, &block, false);
        // Bounded work: stop before a block that would pass the log cap, once something was delivered; the
        // cursor stays on the last block delivered whole.
        if out.len() + logs.len() > r.limits.max_logs && cursor.number > ancestor.0 {
            break;
        }
        out.extend(logs);
        (cursor.number, cursor.hash) = (n, block.hash);
    }
    Ok(Some((serde_json::to_value(out).map_err(server_error)?, cursor)))
}

/// A block's logs the filter selects (address, topics, and its numeric range), marked removed or not.
fn matching(crit: &logs::Filter, block: &ec_store::tables::StoredBlock, removed: bool) -> Vec<Log> {
    if let logs::Range::Blocks { from, to } = crit.range {
        let after_from = number(from).is_none_or(|a| block.number >= a);
        let before_to = number(to).is_none_or(|b| block.number <= b);
        if !(after_from && before_to) {
            return Vec::new();
        }
    }
    let mut found = convert::logs_where(block, |address, topics| logs::matches(crit, address, topics));
    for log in &mut found {
        log.removed = removed;
    }
    found
}

/// `eth_getFilterLogs`: every log the filter's criteria select now (as `eth_getLogs` with them).
pub async fn all_logs(c: &Arc<Ctx>, id: String) -> RpcResult<Vec<Log>> {
    let filters = filters(c)?;
    let f = live_filter(filters, &id).await?;
    let Kind::Logs(criteria) = &f.kind else { return Err(not_found()) };
    let crit = logs::parse_filter(criteria).map_err(server_error)?;
    c.on_pool(Class::Logs, move |r| logs::get_logs(r, &crit, None).map(Option::unwrap_or_default)).await
}

/// `eth_uninstallFilter`.
pub async fn uninstall(c: &Arc<Ctx>, id: String) -> RpcResult<bool> {
    filters(c)?.store.remove(&id).await.map_err(unavailable)
}

impl Req<'_> {
    /// The sequence of the last record this view has applied.
    fn sequence(&self) -> RpcResult<u64> {
        Ok(self.view.position().map_err(server_error)?.map_or(0, |p| p.sequence))
    }
}

impl ChainView for Req<'_> {
    type Error = ErrorObjectOwned;

    fn head(&self) -> RpcResult<(u64, B256)> {
        let head = self.view.head().map_err(server_error)?.ok_or_else(|| server_error("no blocks yet"))?;
        Ok((head.number, head.hash))
    }

    fn sequence(&self) -> RpcResult<u64> {
        Req::sequence(self)
    }

    fn canonical_hash(&self, number: u64) -> RpcResult<Option<B256>> {
        self.view.canonical_hash(number).map_err(server_error)
    }

    fn reverted_parent(&self, number: u64, hash: &B256) -> RpcResult<Option<B256>> {
        Ok(self.view.reverted_block(number, hash).map_err(server_error)?.map(|b| b.parent_hash))
    }
}
