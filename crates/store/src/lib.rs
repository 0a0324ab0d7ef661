//! The replica store: a RocksDB database of typed tables (see [`tables`]).
//!
//! The one rule everything else leans on: applying a record writes its effects, its Kafka offset and its
//! sequence number in **one atomic write batch** ([`Store::apply`]). A crash at any moment, or a
//! crash-consistent disk snapshot, therefore leaves a database whose stored offset says exactly which records
//! it holds. Every check happens before the batch is written, so a rejected record leaves no trace.

mod apply;
mod batch;
mod checksum;
mod cores;
mod error;
mod ingest;
mod pipeline;
mod read;
pub mod tables;
pub mod trie;

use std::{
    path::Path,
    sync::atomic::{AtomicU64, Ordering},
};

use batch::Source;
use rocksdb::{ColumnFamilyDescriptor, Options, DB};

pub use apply::ApplyOutcome;
pub use checksum::Checksum;
pub use error::{Result, StoreError};
pub use ingest::sst_options;
pub use pipeline::{Pipeline, Submitted, DEFAULT_GROUP_BLOCKS, HAND_OVER_FROM};
pub use read::{Position, Reads};
pub use trie::history::TrieHistoryStats;
pub use trie::proof::{AccountProof, OverlayAccount, Proofs, SlotProof};
pub use trie::update::StateDelta;

/// The on-disk layout this build reads and writes. 1: state keyed by address (before 2026-12-01, no layout
/// key); 2: state keyed by `keccak256(address)` and `keccak256(slot)`, a checkpoint's first block, the
/// history window; 3: block bodies split into a head and one entry per transaction
/// ([`tables::BlockHeads`], [`tables::BlockTxs`]).
pub const LAYOUT_VERSION: u32 = 3;

/// The oldest layout this build opens: a database of layout 2 is upgraded in place when opened for writing
/// (it gains the two block tables; the bodies it holds stay in [`tables::LegacyBlocks`] and are read there).
pub const OLDEST_UPGRADABLE_LAYOUT: u32 = 2;

/// How many blocks back a revert can reach by default. Deep enough for any reorg seen on a post-merge
/// chain by orders of magnitude; the undo index costs a few hundred bytes per block.
pub const DEFAULT_UNDO_WINDOW: u64 = 10_000;

#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Blocks whose undo index is kept; a revert deeper than this is refused.
    pub undo_window: u64,
    /// fsync the WAL on every write. Not needed for crash safety of the process (the OS keeps the WAL), and
    /// an EBS snapshot is crash-consistent either way; on costs throughput, off may lose the last records on a
    /// power loss, which are then simply replayed from Kafka.
    pub sync_writes: bool,
    /// Keep account and storage history for the newest K blocks only (`None`: all). Each block applied
    /// drops the history of the block K behind it, so the history tables stop growing; state reads older
    /// than the window answer [`StoreError::StateUnavailable`]. Must be at least `undo_window` (a revert
    /// needs the history of the block it undoes); reverts then reach K blocks back.
    pub history_blocks: Option<u64>,
    /// Compare every prior value a block record carries with this database's own value before applying it
    /// (one read per changed account and slot), and refuse the block on a difference
    /// ([`StoreError::PriorMismatch`]). Off, applying a block reads nothing per key.
    pub verify_priors: bool,
    /// Keep the state trie's nodes and check every block's state root against its header
    /// ([`TrieMode::Check`], the default); see [`trie`].
    pub state_trie: TrieMode,
    /// RocksDB's configuration: [`Tuning::replica`] unless measuring.
    pub tuning: Tuning,
    /// Write the batches a [`Pipeline`] catches up ([`Pipeline::set_catching_up`]) through RocksDB's
    /// write-ahead log, as every other write (the default). Off, those batches skip it, and a crash then loses
    /// what was written since the last flush of the memtables, which the replica replays from Kafka (see
    /// [`Store::persist`]); the database is then opened with `atomic_flush`, which that needs. Measured
    /// (`docs/benchmarks.md`, session 14): with [`CATCH_UP_WITHOUT_WAL_MEMTABLE_BYTES`], 10-14% faster
    /// catching up on a 2M-account state, but no faster, maybe slower, on a 20M-account one, so it is not
    /// the default. `sync_writes` keeps the log for every batch.
    pub catch_up_wal: bool,
    /// While catching up without the log, flush the memtables at least this often, bounding what a crash
    /// replays (RocksDB flushes on its own whenever a memtable fills, every 10-20 seconds catching up mainnet blocks).
    pub catch_up_flush_interval: std::time::Duration,
    /// Proofs reach this many blocks below the head from the trie's recent past kept in memory
    /// ([`trie::history`]): each block applied on its own keeps what its trie update replaced (`0`: none
    /// kept; older proofs then walk every key changed since). The replica sets it to its `--proof-window`.
    pub proof_history_blocks: u64,
    /// The most memory that recent past may take (the oldest blocks are dropped first).
    pub proof_history_bytes: usize,
}

/// The default [`StoreOptions::proof_history_blocks`]: geth's path scheme keeps 128 layers.
pub const DEFAULT_PROOF_HISTORY_BLOCKS: u64 = 128;

/// The default [`StoreOptions::proof_history_bytes`]: 2 GiB (the 20M-account benchmark state keeps ~8 MB a
/// block: 128 blocks take ~1 GB).
pub const DEFAULT_PROOF_HISTORY_BYTES: usize = 2 << 30;

/// The memtables to pair with catching up without the write-ahead log ([`StoreOptions::catch_up_wal`] off):
/// with `atomic_flush` the first table to fill its memtable makes every table write a level-0 file, and with
/// hashed keys each level-0 compaction rewrites the whole of level 1, so fewer, larger flushes win back most
/// of what atomic flushes cost (`docs/benchmarks.md`, session 14).
pub const CATCH_UP_WITHOUT_WAL_MEMTABLE_BYTES: usize = 256 << 20;

/// The default [`StoreOptions::catch_up_flush_interval`]: one minute.
pub const DEFAULT_CATCH_UP_FLUSH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// What the store does with the state trie.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrieMode {
    /// Keep the trie's nodes, compute each block's state root, and refuse a block whose root differs from
    /// its header's ([`StoreError::StateRootMismatch`]).
    #[default]
    Check,
    /// Keep nothing, check nothing (faster; the trie tables go stale and are rebuilt when turned back on).
    Off,
    /// Keep the nodes and compute the roots, but compare them with nothing: for benchmarks over generated
    /// blocks whose headers carry no real state root. Never a cluster setting.
    Unchecked,
}

/// Every RocksDB option the store sets, in one place. The measurements that chose them are in
/// `docs/benchmarks.md` ("Mainnet-shaped replay"); `ec-bench mainnet --tuning` compares them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Block cache shared by every table (data, index and filter blocks), in bytes. The OS page cache
    /// holds more of the database unless `direct_io` is on.
    pub block_cache_bytes: usize,
    /// Bloom filters (10 bits per key, about 1% false positives): a point read of a key that is not in an
    /// SST file skips the file without reading a block of it.
    pub bloom_filters: bool,
    /// Background flush and compaction threads (RocksDB's default is 2).
    pub background_jobs: i32,
    /// Each table's memtable, in bytes (RocksDB's `write_buffer_size`). Memory: the fullest table's memtable
    /// and the one being flushed, at most twice this, plus the other tables' smaller ones.
    pub memtable_bytes: usize,
    /// Read and compact with O_DIRECT, bypassing the page cache: reads are then served from the block cache
    /// or the disk only (the benchmark uses it to measure a database larger than memory).
    pub direct_io: bool,
    /// Write levels 0 and 1 uncompressed, LZ4 below. Flushes and the first compactions, which rewrite the
    /// newest data most often, then spend no CPU on compression (the keys are hashes, which do not compress
    /// anyway); the bulk of the data, in the lower levels, stays compressed.
    pub uncompressed_top_levels: bool,
}

impl Tuning {
    /// RocksDB's defaults (plus LZ4 and a 64 MiB memtable, which the store always had): the baseline the
    /// benchmark compares against.
    pub fn rocksdb_defaults() -> Self {
        Self {
            block_cache_bytes: 32 << 20,
            bloom_filters: false,
            background_jobs: 2,
            memtable_bytes: 64 << 20,
            direct_io: false,
            uncompressed_top_levels: false,
        }
    }

    /// What a replica runs with: a block cache of `block_cache_bytes`, bloom filters, one background job per
    /// core (at least 2) so that compaction keeps up with a write-heavy replay, 64 MiB memtables, and levels
    /// 0-1 uncompressed.
    pub fn replica(block_cache_bytes: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as i32;
        Self {
            block_cache_bytes,
            bloom_filters: true,
            background_jobs: cores.max(2),
            memtable_bytes: 64 << 20,
            direct_io: false,
            uncompressed_top_levels: true,
        }
    }
}

/// The default block cache: 512 MiB.
pub const DEFAULT_BLOCK_CACHE_BYTES: usize = 512 << 20;

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            undo_window: DEFAULT_UNDO_WINDOW,
            sync_writes: false,
            history_blocks: None,
            verify_priors: false,
            state_trie: TrieMode::Check,
            tuning: Tuning::replica(DEFAULT_BLOCK_CACHE_BYTES),
            catch_up_wal: true,
            catch_up_flush_interval: DEFAULT_CATCH_UP_FLUSH_INTERVAL,
            proof_history_blocks: DEFAULT_PROOF_HISTORY_BLOCKS,
            proof_history_bytes: DEFAULT_PROOF_HISTORY_BYTES,
        }
    }
}

/// Every table's column-family options: also the options of the SST files an import writes
/// ([`sst_options`], without a cache), so that ingested files are like the ones the store writes itself
/// (filters are written into the files).
pub(crate) fn table_options(tuning: &Tuning, cache: Option<&rocksdb::Cache>) -> Options {
    let mut opts = Options::default();
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let mut table = rocksdb::BlockBasedOptions::default();
    if let Some(cache) = cache {
        table.set_block_cache(cache);
    }
    if tuning.bloom_filters {
        table.set_bloom_filter(10.0, false);
        // Index and filter blocks live in the block cache, so their memory stays bounded on a database of
        // hundreds of gigabytes. Partitioned, so that a read loads one 4 KiB partition of a file's filter and
        // index rather than the whole of them (whole filters thrashed a small cache: reads were 10x slower
        // than without filters); the top level of each is pinned.
        table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
        table.set_partition_filters(true);
        table.set_metadata_block_size(4096);
        table.set_cache_index_and_filter_blocks(true);
        table.set_cache_index_and_filter_blocks_with_high_priority(true);
        table.set_pin_top_level_index_and_filter(true);
        table.set_pin_l0_filter_and_index_blocks_in_cache(true);
    }
    opts.set_block_based_table_factory(&table);
    opts.set_write_buffer_size(tuning.memtable_bytes);
    if tuning.uncompressed_top_levels {
        use rocksdb::DBCompressionType::{Lz4, None as Uncompressed};
        opts.set_compression_per_level(&[Uncompressed, Uncompressed, Lz4, Lz4, Lz4, Lz4, Lz4]);
    }
    opts
}

/// The database-wide options (also what the benchmark's raw RocksDB rows open with).
pub fn db_options(tuning: &Tuning) -> Options {
    let mut opts = Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    // Replay is write-heavy: a larger memtable means fewer flushes (each table sets its own, the same).
    opts.set_write_buffer_size(tuning.memtable_bytes);
    opts.set_max_background_jobs(tuning.background_jobs);
    if tuning.direct_io {
        opts.set_use_direct_reads(true);
        opts.set_use_direct_io_for_flush_and_compaction(true);
    }
    opts
}

/// The store as it was at one instant (a RocksDB snapshot): every read through it sees the same applied
/// records, whatever replay commits meanwhile. What one RPC request reads, so that its answer never mixes
/// block N and N+1, nor a head and a body a reorg removed in between. Cheap to take; hold it for one
/// request, not longer (RocksDB keeps what a live snapshot sees from compaction).
pub struct StoreView<'a> {
    store: &'a Store,
    snapshot: rocksdb::SnapshotWithThreadMode<'a, DB>,
}

impl batch::Source for StoreView<'_> {
    fn store(&self) -> &Store {
        self.store
    }

    fn read_options(&self) -> rocksdb::ReadOptions {
        let mut opts = rocksdb::ReadOptions::default();
        opts.set_snapshot(&self.snapshot);
        opts
    }

    fn is_view(&self) -> bool {
        true
    }
}

pub struct Store {
    db: DB,
    opts: StoreOptions,
    /// The oldest block whose state reads answer (the block the cluster started at); cached because every
    /// state read checks it.
    first_state_block: AtomicU64,
    written: WriteCounters,
    /// The root [`Store::build_trie`] computed, for [`Store::mark_imported`] to record the trie as built.
    built_root: std::sync::Mutex<Option<alloy_primitives::B256>>,
    /// This chain's headers do not commit to its state ([`tables::MetaKey::RootsUnchecked`]).
    roots_unchecked: std::sync::atomic::AtomicBool,
    /// When the first batch written without the write-ahead log since the last flush was written (`None`:
    /// every write so far is durable). See [`Store::persist`].
    unlogged_since: std::sync::Mutex<Option<std::time::Instant>>,
    /// The trie's recent past, for proofs below the head ([`trie::history`]).
    trie_history: trie::history::TrieHistory,
}

/// What the store has committed since it was opened (for the benchmark's write amplification).
#[derive(Debug, Default)]
struct WriteCounters {
    batches: AtomicU64,
    ops: AtomicU64,
    bytes: AtomicU64,
    trie_leaves_read: AtomicU64,
    trie_leaf_hashes_given: AtomicU64,
    unlogged_batches: AtomicU64,
    persists: AtomicU64,
}

/// Totals of the write batches committed since the store was opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteStats {
    pub batches: u64,
    /// Puts and deletes.
    pub ops: u64,
    /// The batches' serialized size: keys, values and RocksDB's per-entry framing.
    pub bytes: u64,
    /// Leaves the trie updates read (the changed ones and those beside them no stored node kept a hash
    /// of), and leaves they took as the hash their parent node keeps.
    pub trie_leaves_read: u64,
    pub trie_leaf_hashes_given: u64,
    /// Batches written without the write-ahead log ([`StoreOptions::catch_up_wal`]), and the flushes that
    /// made them durable ([`Store::persist`]; RocksDB's own flushes of full memtables are not counted).
    pub unlogged_batches: u64,
    pub persists: u64,
}

impl Store {
    /// Opens (or creates) the database at `path` with every table.
    pub fn open(path: &Path, opts: StoreOptions) -> Result<Self> {
        if opts.history_blocks == Some(0) {
            return Err(StoreError::Config { reason: "a history window must keep at least 1 block".into() });
        }
        if let Some(k) = opts.history_blocks.filter(|k| *k < opts.undo_window) {
            return Err(StoreError::Config {
                reason: format!(
                    "a history window of {k} blocks is smaller than the undo window of {} blocks: a revert needs \
                     the history of the block it undoes (lower --undo-window, or raise --history-blocks)",
                    opts.undo_window
                ),
            });
        }
        let cache = rocksdb::Cache::new_lru_cache(opts.tuning.block_cache_bytes);
        let cfs = tables::ALL_TABLES
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(*name, table_options(&opts.tuning, Some(&cache))));
        let mut db_opts = db_options(&opts.tuning);
        if !opts.catch_up_wal {
            // Every flush, RocksDB's own included, flushes all the tables together: batches written without the
            // write-ahead log then survive a crash whole or not at all (see [`Store::persist`]).
            db_opts.set_atomic_flush(true);
        }
        let db = DB::open_cf_descriptors(&db_opts, path, cfs)
            .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
        let trie_history =
            trie::history::TrieHistory::new(opts.proof_history_blocks, opts.proof_history_bytes);
        let store = Store {
            db,
            trie_history,
            opts,
            first_state_block: AtomicU64::new(0),
            written: Default::default(),
            built_root: Default::default(),
            roots_unchecked: Default::default(),
            unlogged_since: Default::default(),
        };
        store.check_layout(path, true)?;
        store.load_first_state_block()?;
        store.adopt_undo_window()?;
        store.reconcile_trie()?;
        Ok(store)
    }

    /// Reconciles the configured undo window with the one the database was last opened with, so that a
    /// change across restarts is never silently wrong:
    /// - larger: accepted. Blocks applied under the old window have no undo entry beyond it, and a revert
    ///   that would need one is refused by the missing entry ([`StoreError::RevertOutsideWindow`]); the full
    ///   depth is reached once the new window's worth of blocks has been applied.
    /// - smaller: the entries that fell out of the new window are deleted now (apply only ever drops the one
    ///   entry that leaves the window, so they would otherwise stay for ever).
    fn adopt_undo_window(&self) -> Result<()> {
        use tables::{BlockChanges, Meta, MetaKey, Table};
        let configured = self.opts.undo_window;
        let stored = match self.get::<Meta>(&MetaKey::UndoWindow)? {
            Some(b) => Some(u64::from_be_bytes(b.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                table: Meta::NAME,
                reason: format!("undo_window is {} bytes, expected 8", b.len()),
            })?)),
            None => None,
        };
        if stored == Some(configured) {
            return Ok(());
        }
        let mut batch = batch::Batch::default();
        if let (Some(old), Some(head)) = (stored, self.head()?) {
            // With a history window the undo index lives as long as the history (pruned together).
            if configured < old && self.opts.history_blocks.is_none() {
                let keep_from = head.number.saturating_sub(configured) + 1;
                let drop_from = head.number.saturating_sub(old) + 1;
                for number in drop_from..keep_from {
                    self.delete::<BlockChanges>(&mut batch, &number);
                }
                tracing::warn!(
                    old,
                    new = configured,
                    "undo window shrunk: reverts now reach {configured} blocks back"
                );
            } else {
                tracing::warn!(
                    old,
                    new = configured,
                    "undo window grown: reverts reach {old} blocks back now, {configured} once that many more blocks are applied"
                );
            }
        }
        self.put::<Meta>(&mut batch, &MetaKey::UndoWindow, &configured.to_be_bytes().to_vec().into());
        self.commit(batch)
    }

    /// Opens an existing database read-only, beside a replica that may be writing it (for the checksum
    /// command and inspection). Sees the data as of the moment it opens, as a crash would leave it: of a
    /// replica catching up, its last flush ([`Store::persist`]).
    pub fn open_read_only(path: &Path) -> Result<Self> {
        if !path.join("CURRENT").exists() {
            return Err(StoreError::NotADatabase { path: path.display().to_string() });
        }
        let open_err = |source| StoreError::Open { path: path.display().to_string(), source };
        // Only the tables the database has: one of an older layout lacks the newer ones, and is then refused
        // by the layout check below, naming both layouts, rather than by RocksDB.
        let existing = DB::list_cf(&Options::default(), path).map_err(open_err)?;
        let (present, missing): (Vec<&'static str>, Vec<&'static str>) =
            tables::ALL_TABLES.iter().partition(|t| existing.iter().any(|e| e == *t));
        let db = DB::open_cf_for_read_only(&Options::default(), path, &present, false).map_err(open_err)?;
        let store = Store::read_only(db);
        if present.contains(&<tables::Meta as tables::Table>::NAME) {
            store.check_layout(path, false)?;
        }
        // Any other table missing: a database its writer is still creating (tables are created one by one),
        // or not a replica's. Nothing may read through a missing table.
        // The trie tables and the reverted blocks are newer than layout 3: a database without them is read
        // without them.
        if let Some(table) = missing.iter().find(|t| !tables::OPTIONAL_TABLES.contains(t)) {
            return Err(StoreError::Corrupt {
                table,
                reason: format!("{} has no such table (a database still being created?)", path.display()),
            });
        }
        // Read-only: the history window is whatever the writer left (its floor is stored).
        store.load_first_state_block()?;
        Ok(store)
    }

    /// A store over a database opened read-only (default options: nothing is written through it).
    fn read_only(db: DB) -> Store {
        Store {
            db,
            opts: StoreOptions::default(),
            first_state_block: AtomicU64::new(0),
            written: Default::default(),
            built_root: Default::default(),
            roots_unchecked: Default::default(),
            unlogged_since: Default::default(),
            trie_history: trie::history::TrieHistory::new(0, 0),
        }
    }

    /// Where the database at `path` stands (its position and head), read-only, for a database of this layout or
    /// of one a writable open upgrades in place (a snapshot an older build took): both reads touch the meta
    /// table only, whose layout has not changed.
    pub fn position_and_head(path: &Path) -> Result<(Option<Position>, Option<ec_log::BlockRef>)> {
        let store = match Self::open_read_only(path) {
            Ok(store) => store,
            Err(StoreError::LayoutNeedsUpgrade { .. }) => {
                let meta = <tables::Meta as tables::Table>::NAME;
                let db = DB::open_cf_for_read_only(&Options::default(), path, [meta], false)
                    .map_err(|source| StoreError::Open { path: path.display().to_string(), source })?;
                Store::read_only(db)
            }
            Err(e) => return Err(e),
        };
        Ok((store.position()?, store.head()?))
    }

    /// Refuses a database of another layout before anything decodes its tables; stamps a new one.
    fn check_layout(&self, path: &Path, writable: bool) -> Result<()> {
        use tables::{Meta, MetaKey};
        let found = match self.get::<Meta>(&MetaKey::Layout)? {
            Some(b) => u32::from_be_bytes(b.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                table: "meta",
                reason: format!("layout is {} bytes, expected 4", b.len()),
            })?),
            // Databases of the first layout carry no layout key, but they have applied records.
            None if self.get::<Meta>(&MetaKey::Sequence)?.is_some() => 1,
            None if writable => {
                let mut batch = batch::Batch::default();
                self.put::<Meta>(&mut batch, &MetaKey::Layout, &LAYOUT_VERSION.to_be_bytes().to_vec().into());
                return self.commit(batch);
            }
            None => return Ok(()),
        };
        if found == OLDEST_UPGRADABLE_LAYOUT && writable {
            // Nothing to rewrite: new blocks go to the new tables, and reads fall back to the old one.
            let mut batch = batch::Batch::default();
            self.put::<Meta>(&mut batch, &MetaKey::Layout, &LAYOUT_VERSION.to_be_bytes().to_vec().into());
            self.commit(batch)?;
            tracing::info!(from = found, to = LAYOUT_VERSION, "database layout upgraded in place");
            return Ok(());
        }
        if found == OLDEST_UPGRADABLE_LAYOUT {
            return Err(StoreError::LayoutNeedsUpgrade {
                path: path.display().to_string(),
                found,
                supported: LAYOUT_VERSION,
            });
        }
        if found != LAYOUT_VERSION {
            return Err(StoreError::Layout {
                path: path.display().to_string(),
                found,
                supported: LAYOUT_VERSION,
            });
        }
        Ok(())
    }

    /// A meta entry as text (for tools).
    pub fn get_meta(&self, key: tables::MetaKey) -> Result<Option<String>> {
        Ok(self.get::<tables::Meta>(&key)?.map(|b| String::from_utf8_lossy(&b).into_owned()))
    }

    /// Whether this chain's roots are compared with its headers (see [`tables::MetaKey::RootsUnchecked`]).
    pub fn roots_checked(&self) -> bool {
        self.opts.state_trie == TrieMode::Check && !self.roots_unchecked.load(Ordering::SeqCst)
    }

    pub(crate) fn set_roots_unchecked(&self) {
        self.roots_unchecked.store(true, Ordering::SeqCst);
    }

    fn load_first_state_block(&self) -> Result<()> {
        if let Some(reason) = self.get::<tables::Meta>(&tables::MetaKey::RootsUnchecked)? {
            self.set_roots_unchecked();
            tracing::warn!(
                reason = %String::from_utf8_lossy(&reason),
                "this chain's headers do not commit to its state: state roots are computed, never compared"
            );
        }
        let first = match self.chain()? {
            Some(chain) => chain.first_block,
            None => self.imported()?.map_or(0, |i| i.number),
        };
        self.set_first_state_block(first.max(self.history_floor()?.unwrap_or(0)));
        Ok(())
    }

    /// Raises the oldest block whose state reads answer (never lowers it: pruned history does not come back).
    pub(crate) fn set_first_state_block(&self, number: u64) {
        self.first_state_block.fetch_max(number, Ordering::SeqCst);
    }

    /// The oldest block whose state this database answers for.
    pub fn first_state_block(&self) -> u64 {
        self.first_state_block.load(Ordering::SeqCst)
    }

    /// Marks the database as the target of an import before anything is written to it: until
    /// [`Store::mark_imported`] it holds a half-finished import, which no genesis record may start a chain on.
    pub fn begin_import(&self) -> Result<()> {
        use tables::{Meta, MetaKey};
        if let Some(position) = self.position()? {
            return Err(StoreError::Import {
                reason: format!("the database has already applied records up to {}", position.sequence),
            });
        }
        let mut batch = batch::Batch::default();
        self.put::<Meta>(&mut batch, &MetaKey::ImportStarted, &Vec::new().into());
        self.commit(batch)
    }

    /// Whether an import wrote to this database ([`Store::begin_import`]), finished or not.
    pub fn import_started(&self) -> Result<bool> {
        Ok(self.get::<tables::Meta>(&tables::MetaKey::ImportStarted)?.is_some())
    }

    /// Records that the state tables hold block `imported.number`'s state, checked against its state root by
    /// the caller (`ether-cattle import-state`). Only on a database that has applied no record: the topic's
    /// checkpoint record is then the first one it applies.
    pub fn mark_imported(&self, imported: &tables::ImportedState) -> Result<()> {
        use tables::{Meta, MetaKey, Value};
        if let Some(position) = self.position()? {
            return Err(StoreError::Import {
                reason: format!("the database has already applied records up to {}", position.sequence),
            });
        }
        let mut batch = batch::Batch::default();
        self.put::<Meta>(&mut batch, &MetaKey::Imported, &imported.encode().into());
        // The trie tables describe the imported state if `build_trie` computed the root the caller checked.
        let built = *self.built_root.lock().unwrap_or_else(|p| p.into_inner());
        if built == Some(imported.state_root) {
            let head =
                trie::TrieHead { number: imported.number, hash: imported.hash, root: imported.state_root };
            self.put::<Meta>(&mut batch, &MetaKey::Trie, &head.encode().into());
        }
        self.commit(batch)?;
        self.set_first_state_block(imported.number);
        Ok(())
    }

    /// Brings the trie tables in line with the trie mode: off, they are marked stale; on, they are built
    /// from the state tables if they do not describe the head (an older database, or one run with the trie
    /// off), and the root checked against the head's header.
    fn reconcile_trie(&self) -> Result<()> {
        use tables::{Meta, MetaKey};
        let trie_head = self.trie_head()?;
        if self.opts.state_trie == TrieMode::Off {
            if trie_head.is_some() {
                let mut batch = batch::Batch::default();
                self.delete::<Meta>(&mut batch, &MetaKey::Trie);
                self.commit(batch)?;
                tracing::warn!(
                    "state trie off: its tables go stale, and are rebuilt when it is turned on again"
                );
            }
            return Ok(());
        }
        // Nothing applied yet: the genesis record builds the trie.
        let Some((ec_log::BlockRef { number, hash }, expected)) = self.state_block()? else { return Ok(()) };
        if trie_head.is_some_and(|t| t.hash == hash) {
            return Ok(());
        }
        tracing::info!(block = number, "building the state trie from the state tables (once)");
        let computed = self.build_trie()?;
        if computed != expected && self.roots_checked() {
            return Err(StoreError::StoredStateRoot { number, expected, computed });
        }
        let mut batch = batch::Batch::default();
        let head = trie::TrieHead { number, hash, root: computed };
        self.put::<Meta>(&mut batch, &MetaKey::Trie, &tables::Value::encode(&head).into());
        self.delete::<Meta>(&mut batch, &MetaKey::LegacyTrie);
        self.commit(batch)?;
        tracing::info!(block = number, root = %computed, "state trie built");
        Ok(())
    }

    /// The store as it is now, for a set of reads that must agree ([`StoreView`]).
    pub fn view(&self) -> StoreView<'_> {
        StoreView { store: self, snapshot: self.db.snapshot() }
    }

    pub fn options(&self) -> &StoreOptions {
        &self.opts
    }

    /// Makes a consistent on-disk copy (a RocksDB checkpoint: hard links where possible) at `dest`, which
    /// must not exist. The copy holds the same records and the same offset as this database at one instant.
    pub fn checkpoint(&self, dest: &Path) -> Result<()> {
        // A checkpoint links the SST files: what only the memtables hold goes into them first.
        self.persist()?;
        let cp = rocksdb::checkpoint::Checkpoint::new(&self.db)?;
        cp.create_checkpoint(dest)?;
        Ok(())
    }
}
