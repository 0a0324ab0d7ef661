//! `eth_subscribe("newHeads")`: one notification per block that becomes the replica's head, in order, with
//! the header fields and transaction hashes (the shape `eth_getBlockByNumber(n, false)` has). After a reorg the
//! new branch's blocks are sent from the fork on.

use jsonrpsee::{core::SubscriptionError, SubscriptionMessage, SubscriptionSink};
use tokio::sync::watch;

use crate::{convert, Ctx};

pub async fn new_heads(
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
        for n in from..=number {
            let Some(hash) = c.store.canonical_hash(n).map_err(|e| e.to_string())? else { continue };
            let Some(block) = c.store.block_by_hash(&hash).map_err(|e| e.to_string())? else { continue };
            let json = convert::block(&block, false)?;
            let msg = SubscriptionMessage::new("eth_subscription", sink.subscription_id(), &json)
                .map_err(|e| e.to_string())?;
            if sink.send(msg).await.is_err() {
                return Ok(());
            }
        }
        last = head;
    }
}

/// Subscription ids as Ethereum clients spell them: `0x` and 32 hex digits, unpredictable.
#[derive(Debug, Default)]
pub struct HexIdProvider {
    counter: std::sync::atomic::AtomicU64,
}

impl jsonrpsee::server::IdProvider for HexIdProvider {
    fn next_id(&self) -> jsonrpsee::types::SubscriptionId<'static> {
        use std::hash::{BuildHasher, Hasher};
        let n = self.counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // RandomState is seeded per instance from the OS: enough to make ids unguessable across connections.
        let mut words = [0u64; 2];
        for (i, w) in words.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(n);
            h.write_usize(i);
            *w = h.finish();
        }
        jsonrpsee::types::SubscriptionId::Str(format!("0x{:016x}{:016x}", words[0], words[1]).into())
    }
}
