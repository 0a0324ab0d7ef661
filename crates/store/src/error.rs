use alloy_primitives::B256;
use thiserror::Error;

/// Why a record could not be applied, or the database could not be read.
///
/// Every apply error is raised *before* the write batch is committed, so the database is exactly as it was
/// before the offending record: the replica can stop, and a fixed build can carry on from the same place.
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("rocksdb at {path}: {source}")]
    Open { path: String, source: rocksdb::Error },
    #[error("{path} is not a replica database (no RocksDB CURRENT file)")]
    NotADatabase { path: String },
    #[error("rocksdb: {0}")]
    Db(#[from] rocksdb::Error),
    #[error("table {table}: stored value does not decode: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("sequence gap: the database has applied record {applied:?} and expects {expected}, but the log holds {found} next")]
    SequenceGap { applied: Option<u64>, expected: u64, found: u64 },
    #[error(
        "record {sequence} appears twice in the log with different contents: two publishers wrote this \
         cluster's topic, or a publisher restarted without seeing its own last write; the log has diverged"
    )]
    ConflictingDuplicate { sequence: u64 },
    #[error("record {sequence} belongs to cluster {found:?}, this database to cluster {expected:?}")]
    WrongCluster { sequence: u64, expected: String, found: String },
    #[error(
        "record {sequence}: a genesis or checkpoint record is only valid as record 0 of an empty database"
    )]
    UnexpectedGenesis { sequence: u64 },
    #[error("record {sequence} ({kind}) arrived before the genesis record: an empty database must start at record 0")]
    MissingGenesis { sequence: u64, kind: &'static str },
    #[error(
        "record {sequence}: block {number} does not follow the head {head_number} ({head_hash}): {reason}"
    )]
    NotNextBlock { sequence: u64, number: u64, head_number: u64, head_hash: B256, reason: String },
    #[error("record {sequence}: block {number} is malformed: {reason}")]
    BadBlock { sequence: u64, number: u64, reason: String },
    #[error("record {sequence}: revert of block {number} ({hash}) does not match the head {head_number} ({head_hash})")]
    RevertNotHead { sequence: u64, number: u64, hash: B256, head_number: u64, head_hash: B256 },
    #[error("record {sequence}: cannot revert block {number}: its undo data is gone (older than the undo window of {window} blocks or the history window, or the genesis or checkpoint block)")]
    RevertOutsideWindow { sequence: u64, number: u64, window: u64 },
    #[error(
        "record {sequence}: the publisher follows reorgs up to {reorg_window} blocks deep, but this database \
         keeps undo data for {undo_window} blocks only: a deep reorg would stop it. Restart it with \
         --undo-window {reorg_window} or more (or lower the publisher's --reorg-window)"
    )]
    UndoWindowTooSmall { sequence: u64, reorg_window: u64, undo_window: u64 },
    #[error(
        "record {sequence}: the topic starts at a checkpoint of block {number} ({hash}), but this database \
         holds no imported state: build it with `ether-cattle import-state` at that block"
    )]
    NotImported { sequence: u64, number: u64, hash: B256 },
    #[error(
        "record {sequence}: the topic's checkpoint is block {} ({}, state root {}), but this database was \
         imported at block {} ({}, state root {})",
        topic.number, topic.hash, topic.state_root, db.number, db.hash, db.state_root
    )]
    CheckpointMismatch {
        sequence: u64,
        topic: Box<crate::tables::ImportedState>,
        db: Box<crate::tables::ImportedState>,
    },
    #[error(
        "record {sequence}: this database was imported at block {number}, but the topic starts with a genesis \
         record: start it from an empty database, or point it at the checkpoint's topic"
    )]
    ImportedButGenesis { sequence: u64, number: u64 },
    #[error(
        "record {sequence} is a genesis record, but this database holds a half-finished import-state (it was \
         interrupted or its root was refused): delete the database and import again, or start from an empty one"
    )]
    ImportUnfinished { sequence: u64 },
    #[error(
        "{path} holds a database of layout {found}, this build reads layout {supported} (state under hashed \
         keys): rebuild it (a new snapshot lineage, or import-state) with this version"
    )]
    Layout { path: String, found: u32, supported: u32 },
    #[error(
        "{path} holds a database of layout {found}, which this build upgrades to layout {supported} in place when \
         it opens it for writing: start the replica on it once with this version (read-only tools cannot)"
    )]
    LayoutNeedsUpgrade { path: String, found: u32, supported: u32 },
    #[error("store configuration: {reason}")]
    Config { reason: String },
    #[error("cannot mark the database as imported: {reason}")]
    Import { reason: String },
    /// Asked for state older than the database holds: below the block the cluster started at, or older than
    /// the history window.
    #[error("historical state unavailable: block {number} is older than block {first}, the oldest whose state this replica keeps")]
    StateUnavailable { number: u64, first: u64 },
    /// `--verify-priors`: a block's record says a value was one thing before the block, this database holds
    /// another. The publisher or this replica has gone wrong; nothing of the block is written.
    #[error(
        "record {sequence}: block {number} says {what} was {record} before the block, this database holds \
         {db}: the publisher or this replica has gone wrong (replace the replica from a snapshot, and check \
         the publisher's client)"
    )]
    PriorMismatch { sequence: u64, number: u64, what: String, record: String, db: String },
    /// The state root computed from the stored state after a block differs from the one its header
    /// commits to: the record left out or misstated a change (or this replica's state is wrong). Nothing of
    /// the block is written.
    #[error(
        "record {sequence}: block {number}'s state root is {expected}, but the state after applying its record \
         hashes to {computed}: the record does not carry the block's whole state change (a tracer blind spot \
         in the publisher's client?) or this replica's state is wrong; nothing of the block is written \
         ({changed} accounts changed)"
    )]
    StateRootMismatch { sequence: u64, number: u64, expected: B256, computed: B256, changed: usize },
    /// The stored state does not hash to the state root of the block it claims to be (found when building
    /// the trie tables, or by `verify-root`).
    #[error(
        "the stored state of block {number} hashes to {computed}, its header's state root is {expected}"
    )]
    StoredStateRoot { number: u64, expected: B256, computed: B256 },
    /// The write of a record handed to the store's writer thread ([`crate::Pipeline`]) failed; found when the
    /// pipeline next waited for it, so it names that record, not the one being submitted.
    #[error("writing record {sequence} (ending at offset {offset}): {source}")]
    Write { sequence: u64, offset: i64, source: Box<StoreError> },
    #[error("the store's writer thread stopped")]
    WriterStopped,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;
