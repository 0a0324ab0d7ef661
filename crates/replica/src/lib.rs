//! The replica's replay loop: from the offset stored in its own database, through Kafka, into the store.
//!
//! Start-up ([`startup`]) refuses a database the topic can no longer continue (the snapshot is older than
//! retention). Then the loop replays to the high watermark, reports ready, and keeps consuming. Any record
//! that is malformed, out of sequence or inconsistent with the chain stops the replica: the store has not
//! been touched by it, so a fixed build resumes from the same place.
//!
//! Records go through an [`ec_store::Pipeline`]: while catching up, the next record is decoded and its batch
//! built while the one before it is written. At the tip (the last known high watermark), at the end of the
//! partition and on shutdown, the batch in flight is written before anything is reported, so status, health
//! and RPC only ever describe committed records.

pub mod health;
mod progress;
pub mod readiness;
mod replay;
pub mod snapshot;
pub mod startup;

use std::{future::Future, path::PathBuf, time::Duration};

use ec_kafka::{KafkaConfig, KafkaIoError};
use ec_log::LogError;
use ec_store::{Position, Store, StoreError, StoreOptions};
use thiserror::Error;
use tokio::sync::watch;

pub use progress::Progress;
pub use startup::StartError;

#[derive(Debug, Clone)]
pub struct ReplicaConfig {
    pub data_dir: PathBuf,
    pub kafka: KafkaConfig,
    pub topic: String,
    pub store: StoreOptions,
    /// Stop once caught up instead of following the topic (seeding a volume, tests, benchmarks).
    pub exit_when_caught_up: bool,
    pub progress_interval: Duration,
    /// Where to announce blocks applied and reverted (log subscriptions); `None` announces nothing.
    pub events: Option<tokio::sync::broadcast::Sender<ChainEvent>>,
    /// Records whose batch has at least this many writes are written on the store's writer thread while the
    /// next one is prepared ([`ec_store::HAND_OVER_FROM`] by default).
    pub pipeline_from_writes: usize,
}

/// A change of the canonical chain, announced after it is committed.
#[derive(Debug, Clone)]
pub enum ChainEvent {
    /// Block `hash` is now canonical; read it from the store.
    Applied { hash: alloy_primitives::B256 },
    /// This block left the canonical chain (a reorg); it is gone from the store, so it travels here.
    Reverted(Box<ec_store::tables::StoredBlock>),
}

/// What the rest of the process (health endpoints, RPC) can see of the replay.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Replayed to the high watermark at least once since start. Stays true while following.
    pub caught_up: bool,
    pub position: Option<Position>,
    pub head_block: Option<u64>,
    pub head_hash: Option<alloy_primitives::B256>,
    /// Timestamp of the head block (seconds since the epoch), for the lag-in-seconds metric.
    pub head_timestamp: Option<u64>,
    /// The partition's high watermark, refreshed every second.
    pub high_watermark: Option<i64>,
    /// The next offset the replica will read.
    pub next_offset: i64,
    /// When the last complete record arrived (applied or skipped as a duplicate).
    pub last_record_at: Option<std::time::Instant>,
    pub records_applied: u64,
    /// Of those, records decoded and prepared while the record before them was being written
    /// ([`ec_store::Pipeline`]).
    pub records_prepared_early: u64,
    /// Asked to stop: readiness turns 503 while in-flight requests finish.
    pub draining: bool,
    /// JSON-RPC is configured and not open yet.
    pub rpc_pending: bool,
    /// What the last heartbeat said of the publisher; `None` before the first one.
    pub publisher: Option<ec_log::PublisherState>,
    /// The client's head as the last heartbeat reported it.
    pub client_head: Option<ec_log::ClientHead>,
    /// The chain's default head-age limit, once the chain is known.
    pub chain_max_head_age: Option<Duration>,
}

impl Status {
    /// The facts readiness is decided on, as of `now` (and `wall`, the same instant on the wall clock, which
    /// block timestamps and the publisher's reports are measured in).
    pub fn observed(&self, now: std::time::Instant, wall: std::time::SystemTime) -> readiness::Observed {
        let wall_ms = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        readiness::Observed {
            caught_up: self.caught_up,
            lag_records: self.high_watermark.map(|h| (h - self.next_offset).max(0)),
            silence: self.last_record_at.map(|t| now.saturating_duration_since(t)),
            draining: self.draining,
            rpc_pending: self.rpc_pending,
            head_age: self.head_age(wall),
            chain_max_head_age: self.chain_max_head_age,
            publisher: self.publisher.clone(),
            publisher_trouble_for: self
                .publisher
                .as_ref()
                .and_then(|p| p.since_ms())
                .map(|since| Duration::from_millis(wall_ms.saturating_sub(since))),
            behind_client: self
                .client_head
                .zip(self.head_block)
                .map(|(client, head)| client.number.saturating_sub(head)),
        }
    }

    /// Wall-clock age of the head block; zero for a timestamp in the future (dev chains run ahead).
    pub fn head_age(&self, wall: std::time::SystemTime) -> Option<Duration> {
        let ts = self.head_timestamp?;
        let now = wall.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Some(Duration::from_secs(now.saturating_sub(ts)))
    }
}

#[derive(Debug, Error)]
pub enum ReplicaError {
    #[error(transparent)]
    Start(#[from] StartError),
    #[error(transparent)]
    Kafka(#[from] KafkaIoError),
    #[error("opening the store: {0}")]
    Open(StoreError),
    #[error("writing to the store: {0}")]
    Write(StoreError),
    #[error("bad record in topic {topic} at offset {offset}: {source}")]
    Log { topic: String, offset: i64, source: LogError },
    #[error("cannot apply the record ending at offset {offset} of topic {topic}: {source}")]
    Apply { topic: String, offset: i64, source: StoreError },
    #[error(
        "the publisher follows reorgs up to {reorg_window} blocks deep (its last heartbeat says), but this \
         replica keeps undo data for {undo_window} blocks only: restart it with --undo-window {reorg_window} \
         or more"
    )]
    UndoWindowTooSmall { reorg_window: u64, undo_window: u64 },
}

impl ReplicaError {
    /// Process exit code: 2 when the database cannot continue from this topic (take a newer snapshot),
    /// 3 when the log itself is bad (a publisher or format bug), 1 otherwise (I/O, configuration).
    pub fn exit_code(&self) -> i32 {
        match self {
            ReplicaError::Start(_) => 2,
            ReplicaError::Log { .. } | ReplicaError::Apply { .. } => 3,
            ReplicaError::Kafka(_)
            | ReplicaError::Open(_)
            | ReplicaError::Write(_)
            | ReplicaError::UndoWindowTooSmall { .. } => 1,
        }
    }
}

/// Runs a replica until `shutdown` resolves, an error stops it, or (with `exit_when_caught_up`) it has
/// caught up. Status updates go to `status`.
pub async fn run(
    cfg: ReplicaConfig,
    status: watch::Sender<Status>,
    shutdown: impl Future<Output = ()>,
) -> Result<Progress, ReplicaError> {
    let store = Store::open(&cfg.data_dir, cfg.store.clone()).map_err(ReplicaError::Open)?;
    run_with_store(cfg, std::sync::Arc::new(store), status, shutdown).await
}

/// [`run`] on a store the caller opened and shares (the RPC server reads it while the replay writes it).
pub async fn run_with_store(
    cfg: ReplicaConfig,
    store: std::sync::Arc<Store>,
    status: watch::Sender<Status>,
    shutdown: impl Future<Output = ()>,
) -> Result<Progress, ReplicaError> {
    replay::Replay::start(cfg, store, status)?.run(shutdown).await
}
