//! Polling filters (`eth_newFilter`, `eth_newBlockFilter`, `eth_newPendingTransactionFilter`,
//! `eth_getFilterChanges`, `eth_getFilterLogs`, `eth_uninstallFilter`) that work behind a load balancer.
//!
//! A node keeps a filter in memory and queues what it missed since the last poll. Behind the ALB each poll
//! may land on another replica, so a filter here is not a queue but a **cursor**: the last block delivered
//! (number, hash, and how far along the cluster's log the replica that delivered it was). Any replica answers
//! a poll by walking from the cursor to its own head ([`poll::plan`]: back through reverted blocks first,
//! whose logs come again with `removed: true`), then moves the cursor with a conditional write
//! ([`FilterStore::advance`]): of two replicas answering polls of one filter at once, one moves it and
//! answers, the other starts again from the moved cursor, so no block is delivered twice.
//!
//! The filters live in a store every replica shares: DynamoDB in AWS ([`dynamodb::DynamoFilters`]), or the
//! replica's memory ([`memory::MemoryFilters`]) for a replica that serves alone.

pub mod dynamodb;
pub mod memory;
pub mod methods;
pub mod poll;

use std::sync::atomic::AtomicU64;

use alloy_primitives::B256;
use serde_json::Value;

/// What the filter methods did since the process started (rendered on `/metrics`).
#[derive(Default)]
pub struct Counts {
    pub installed: AtomicU64,
    /// Polls answered (with changes or none).
    pub delivered: AtomicU64,
    /// Poll attempts that lost the race for the cursor to another poll of the same filter, and started again.
    pub raced: AtomicU64,
    /// Polls whose cursor block this replica does not know ("filter not found": the client re-creates it).
    pub unknown_cursor: AtomicU64,
    pub store_errors: AtomicU64,
}

pub static COUNTS: Counts = Counts {
    installed: AtomicU64::new(0),
    delivered: AtomicU64::new(0),
    raced: AtomicU64::new(0),
    unknown_cursor: AtomicU64::new(0),
    store_errors: AtomicU64::new(0),
};

impl Counts {
    /// Prometheus text for the counts.
    pub fn render(&self) -> String {
        let get = |c: &AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
        format!(
            "# HELP ether_cattle_replica_filters_installed_total Polling filters created through this replica.\n\
             # TYPE ether_cattle_replica_filters_installed_total counter\n\
             ether_cattle_replica_filters_installed_total {}\n\
             # HELP ether_cattle_replica_filter_polls_total eth_getFilterChanges attempts by outcome.\n\
             # TYPE ether_cattle_replica_filter_polls_total counter\n\
             ether_cattle_replica_filter_polls_total{{outcome=\"delivered\"}} {}\n\
             ether_cattle_replica_filter_polls_total{{outcome=\"raced\"}} {}\n\
             ether_cattle_replica_filter_polls_total{{outcome=\"unknown_cursor\"}} {}\n\
             # HELP ether_cattle_replica_filter_store_errors_total Failed calls to the filter store.\n\
             # TYPE ether_cattle_replica_filter_store_errors_total counter\n\
             ether_cattle_replica_filter_store_errors_total {}\n",
            get(&self.installed),
            get(&self.delivered),
            get(&self.raced),
            get(&self.unknown_cursor),
            get(&self.store_errors),
        )
    }
}

/// geth's idle expiry: a filter not polled for this long is gone.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);

/// What a filter reports.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Logs matching the criteria (the `eth_newFilter` object as the client sent it, parsed at each poll).
    Logs(Value),
    /// Hashes of new canonical blocks.
    Blocks,
    /// Always empty: transactions wait in the upstream client's pool, which a replica does not see.
    PendingTransactions,
}

impl Kind {
    pub fn name(&self) -> &'static str {
        match self {
            Kind::Logs(_) => "logs",
            Kind::Blocks => "blocks",
            Kind::PendingTransactions => "pending",
        }
    }
}

/// The last block a filter delivered, and the position in the cluster's log of the replica that delivered
/// it: a replica that has not applied that far yet answers "no changes" rather than "filter not found".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    pub number: u64,
    pub hash: B256,
    pub sequence: u64,
}

impl Cursor {
    /// `number:hash:sequence`: one attribute, compared whole by the conditional write.
    pub fn encode(&self) -> String {
        format!("{}:{}:{}", self.number, self.hash, self.sequence)
    }

    pub fn decode(s: &str) -> Result<Self, FilterStoreError> {
        let bad = || FilterStoreError::Corrupt(format!("cursor {s:?} is not number:hash:sequence"));
        let mut parts = s.split(':');
        let (Some(n), Some(h), Some(q), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        Ok(Cursor {
            number: n.parse().map_err(|_| bad())?,
            hash: h.parse().map_err(|_| bad())?,
            sequence: q.parse().map_err(|_| bad())?,
        })
    }
}

/// One installed filter.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredFilter {
    pub kind: Kind,
    /// The cluster whose log the cursor's sequence counts in (a replica of another cluster ignores it).
    pub cluster: String,
    pub cursor: Cursor,
    /// Unix seconds after which the filter is gone (extended by every poll).
    pub expires_at: u64,
}

impl StoredFilter {
    pub fn expired(&self, now: u64) -> bool {
        now >= self.expires_at
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FilterStoreError {
    #[error("filter store: {0}")]
    Unavailable(String),
    #[error("filter store holds a damaged filter: {0}")]
    Corrupt(String),
}

/// Where filters live. Every method is one request to the store; [`FilterStore::advance`] is the only
/// conditional one.
#[async_trait::async_trait]
pub trait FilterStore: Send + Sync + 'static {
    /// Stores a new filter under a fresh id.
    async fn insert(&self, id: &str, filter: &StoredFilter) -> Result<(), FilterStoreError>;

    /// The filter, read consistently (a poll just answered by another replica is seen), expired or not.
    async fn get(&self, id: &str) -> Result<Option<StoredFilter>, FilterStoreError>;

    /// Moves the cursor from `from` to `to` and the expiry to `expires_at`, only if the cursor is still
    /// `from`. `false`: another poll moved it first (or the filter is gone); nothing was written.
    async fn advance(
        &self,
        id: &str,
        from: &Cursor,
        to: &Cursor,
        expires_at: u64,
    ) -> Result<bool, FilterStoreError>;

    /// Removes the filter; `false` if there was none.
    async fn remove(&self, id: &str) -> Result<bool, FilterStoreError>;
}

/// Filter ids as geth spells them: `0x` and 16 random bytes in hex, leading zeros dropped.
pub fn new_id() -> String {
    let hex = crate::subscriptions::random_hex_128();
    let trimmed = hex.trim_start_matches('0');
    format!("0x{}", if trimmed.is_empty() { "0" } else { trimmed })
}

pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_damaged_ones_are_refused() {
        let c = Cursor { number: 7, hash: B256::repeat_byte(0xab), sequence: 42 };
        assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        for bad in ["", "7", "7:0x00:1", "x:0xab:1", "1:2:3:4"] {
            assert!(Cursor::decode(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_have_the_shape_geth_gives_them() {
        for _ in 0..100 {
            let id = new_id();
            assert!(id.starts_with("0x") && id.len() <= 34 && id.len() > 2, "{id}");
            assert!(!id[2..].starts_with('0') || id == "0x0", "{id}");
            assert!(id[2..].chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{id}");
        }
        assert_ne!(new_id(), new_id());
    }
}
