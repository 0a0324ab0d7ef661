//! `eth_subscribe("newHeads")`: one notification per block that becomes the replica's head, in order, with
//! the header fields and transaction hashes (the shape `eth_getBlockByNumber(n, false)` has). After a reorg the
//! new branch's blocks are sent from the fork on.

use std::sync::Arc;

use jsonrpsee::{core::SubscriptionError, PendingSubscriptionSink, SubscriptionMessage, SubscriptionSink};
use tokio::sync::watch;

use crate::{
    convert,
    ctx::{Ctx, Req},
    error::{invalid_params, server_error},
    logs,
};
use ec_store::Reads;

/// `eth_subscribe`: `newHeads`, or `logs` with an optional filter (address, topics).
pub async fn subscribe(
    c: &Arc<Ctx>,
    pending: PendingSubscriptionSink,
    kind: String,
    filter: Option<serde_json::Value>,
) -> Result<(), SubscriptionError> {
    match kind.as_str() {
        "newHeads" => {
            let Some(status) = c.status.clone() else {
                pending.reject(server_error("this replica serves no subscriptions")).await;
                return Ok(());
            };
            let sink = pending.accept().await?;
            new_heads(c, status, sink).await
        }
        "logs" => {
            let filter = match filter.as_ref().map_or(Ok(logs::Filter::any()), logs::parse_filter) {
                Ok(f) => f,
                Err(e) => {
                    pending.reject(invalid_params(e)).await;
                    return Ok(());
                }
            };
            let Some(events) = c.events.as_ref().map(|e| e.subscribe()) else {
                pending.reject(server_error("this replica serves no log subscriptions")).await;
                return Ok(());
            };
            let sink = pending.accept().await?;
            logs_subscription(c, filter, events, sink).await
        }
        other => {
            let msg = format!("unsupported subscription {other:?} (newHeads and logs are served)");
            pending.reject(invalid_params(msg)).await;
            Ok(())
        }
    }
}

async fn new_heads(
    c: &Ctx,
    mut status: watch::Receiver<ec_replica::Status>,
    sink: SubscriptionSink,
) -> Result<(), SubscriptionError> {
    let head_of = |s: &ec_replica::Status| s.head_block.zip(s.head_hash);
    let mut last = head_of(&status.borrow());
    loop {
        tokio::select! {
            _ = sink.closed() => return Ok(()),
            changed = status.changed() => if changed.is_err() { return Ok(()) },
        }
        // The status changes on every record (heartbeats too); only a new head is news.
        let head = head_of(&status.borrow_and_update());
        if head == last {
            continue;
        }
        let (Some((number, _)), Some((prev, _))) = (head, last) else {
            last = head;
            continue;
        };
        // Forward: every block after the last one sent. Backward or sideways (a reorg): the new head only.
        let from = if number > prev { prev + 1 } else { number };
        // One view for the blocks sent for this head, so that each number's hash and body agree; dropped before
        // sending, so that a slow subscriber holds no snapshot.
        let mut headers = Vec::new();
        {
            let r = Req::new(c);
            for n in from..=number {
                let Some(block) = r.canonical_block(n).map_err(|e| e.message().to_string())? else {
                    continue;
                };
                let ommers = r.extras(&block.hash).map_err(|e| e.message().to_string())?.ommers;
                headers.push(convert::block(&block, false, &ommers)?);
            }
        }
        for json in headers {
            let msg = SubscriptionMessage::new("eth_subscription", sink.subscription_id(), &json)
                .map_err(|e| e.to_string())?;
            if sink.send(msg).await.is_err() {
                return Ok(());
            }
        }
        last = head;
    }
}

/// `eth_subscribe("logs", filter)`: every matching log of each block that becomes canonical, in order; when a
/// reorg removes a block, its matching logs again with `removed: true`.
async fn logs_subscription(
    c: &Ctx,
    filter: logs::Filter,
    mut events: tokio::sync::broadcast::Receiver<ec_replica::ChainEvent>,
    sink: SubscriptionSink,
) -> Result<(), SubscriptionError> {
    use ec_replica::ChainEvent;
    loop {
        let event = tokio::select! {
            _ = sink.closed() => return Ok(()),
            e = events.recv() => e,
        };
        let (block, removed) = match event {
            Ok(ChainEvent::Applied { hash }) => {
                match c.store.block_by_hash(&hash).map_err(|e| e.to_string())? {
                    Some(b) => (b, false),
                    None => continue, // reverted again meanwhile
                }
            }
            Ok(ChainEvent::Reverted(b)) => (*b, true),
            // Too slow to keep up: the subscriber missed logs; end the subscription rather than hide it.
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                return Err(format!("subscription fell {n} blocks behind and was closed").into())
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
        };
        for mut log in convert::logs_where(&block, |address, topics| logs::matches(&filter, address, topics))
        {
            log.removed = removed;
            let msg = SubscriptionMessage::new("eth_subscription", sink.subscription_id(), &log)
                .map_err(|e| e.to_string())?;
            if sink.send(msg).await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Subscription ids as Ethereum clients spell them: `0x` and 32 hex digits, unpredictable.
#[derive(Debug, Default)]
pub struct HexIdProvider;

impl jsonrpsee::server::IdProvider for HexIdProvider {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        jsonrpsee::types::SubscriptionId::Str(format!("0x{}", random_hex_128()).into())
    }
}

/// 32 unpredictable hex digits (subscription and filter ids).
pub fn random_hex_128() -> String {
    use std::hash::{BuildHasher, Hasher};
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // RandomState is seeded per instance from the OS: enough to make ids unguessable across connections.
    let mut words = [0u64; 2];
    for (i, w) in words.iter_mut().enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(n);
        h.write_usize(i);
        *w = h.finish();
    }
    format!("{:016x}{:016x}", words[0], words[1])
}
