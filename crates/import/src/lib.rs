//! State import: starts a replica database at block N of a synced node from a dump of its state.
//!
//! Three sources ([`Source`]): a `geth snapshot dump` file, a `reth init-state` file, or a live node over
//! JSON-RPC (`debug_accountRange` and `debug_storageRangeAt`). Each streams accounts and slots into a
//! [`StateSink`]; the importer's sink writes the `accounts`, `storage` and `code` tables as sorted SST files
//! in the work directory, and the store ingests them whole ([`ec_store::Store::ingest_sst_files`]), never
//! through the memtable. Finally the store computes the state root from what it holds
//! ([`ec_store::Store::state_root`]); the caller compares it with block N's header and refuses a mismatch.
//!
//! **Restart.** An import writes nothing into the database until all files are written, then ingests them
//! table by table. A crashed or interrupted import is restarted from scratch: delete the database directory
//! (it may hold some of the tables) and run it again; the work directory's leftovers are cleared at start.

mod dump;
mod error;
mod generate;
mod pipeline;
mod progress;
mod rpc;
mod writer;

use std::{
    fs::File,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy_primitives::{Bytes, B256};
use ec_store::{
    tables::{Accounts, Code, Storage, StoredAccount, Table},
    Store,
};

pub use dump::{read_dump, DumpFormat, DEFAULT_PENDING_SLOTS};
pub use error::{ImportError, Result};
pub use generate::{generate_dump, GeneratedDump};
pub use writer::SortedSst;

use crate::{
    error::io,
    progress::{CountingReader, Progress},
    writer::StateWriter,
};

/// Receives the state, entry by entry, from a source.
pub trait StateSink {
    /// An account, keyed by keccak256(address). `code` is its code when it has any, and its hash is
    /// `account.code_hash`.
    fn account(&mut self, hashed_address: B256, account: StoredAccount, code: Option<Bytes>) -> Result<()>;
    /// A storage slot of the account keyed `hashed_address`, keyed by keccak256(slot). Zero means absent.
    fn slot(&mut self, hashed_address: B256, hashed_slot: B256, value: B256) -> Result<()>;
}

/// Where the state comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A `geth snapshot dump` JSONL file (sorted by hashed key).
    GethDump(PathBuf),
    /// A `reth init-state` JSONL file (plain addresses and slots, any order).
    RethInitState(PathBuf),
    /// A live node's state after block `block`, over JSON-RPC (geth's `debug_` namespace; see [`rpc`]).
    Rpc { url: String, block: u64 },
}

/// Tuning; the defaults suit a mainnet import on a small machine.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Memory for sorting an unsorted source's entries before a chunk goes to disk.
    pub sort_chunk_bytes: usize,
    /// Storage slots held in memory while their account's key is not yet known (geth writes it last).
    pub pending_slots: usize,
}

impl Default for ImportOptions {
    fn default() -> Self {
        Self { sort_chunk_bytes: 512 << 20, pending_slots: DEFAULT_PENDING_SLOTS }
    }
}

/// What an import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    pub accounts: u64,
    /// Non-zero storage slots.
    pub slots: u64,
    /// Distinct code blobs.
    pub codes: u64,
    /// Key and value bytes written into the tables.
    pub bytes: u64,
    /// The root of the state the store now holds, computed from the store.
    pub state_root: B256,
    /// The root the source declares (a dump's first line, the node's answer), if any. Not checked here:
    /// the caller compares [`Self::state_root`] with block N's header, the only root that counts.
    pub declared_root: Option<B256>,
    pub elapsed: Duration,
}

/// Imports `source` into `store`, which must not hold any state yet, using `work_dir` for the SST files
/// and sort runs (it needs about the size of the state in free space, on the database's file system so
/// that ingestion links files rather than copying them).
///
/// Blocking; for [`Source::Rpc`] it runs its own single-threaded Tokio runtime, so from async code call it
/// inside `tokio::task::spawn_blocking`.
pub fn import(source: Source, store: &Store, work_dir: &Path) -> Result<ImportSummary> {
    import_with(source, store, work_dir, &ImportOptions::default())
}

/// [`import`] with explicit [`ImportOptions`].
pub fn import_with(
    source: Source,
    store: &Store,
    work_dir: &Path,
    opts: &ImportOptions,
) -> Result<ImportSummary> {
    let started = Instant::now();
    for table in [Accounts::NAME, Storage::NAME, Code::NAME] {
        if !store.table_is_empty(table)? {
            return Err(ImportError::NotEmpty { table });
        }
    }
    // From here on the database holds a half-finished import until the caller marks it imported.
    store.begin_import()?;
    // Leftovers of an interrupted run are partial files: start from nothing.
    let scratch = work_dir.join("ec-import");
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    }
    std::fs::create_dir_all(&scratch).map_err(io(&scratch))?;

    tracing::info!(?source, work_dir = %scratch.display(), "state import started");
    let (writer, declared_root) = match &source {
        Source::GethDump(path) => read_file(DumpFormat::GethSnapshot, path, &scratch, opts)?,
        Source::RethInitState(path) => read_file(DumpFormat::RethInitState, path, &scratch, opts)?,
        Source::Rpc { url, block } => {
            // The node walks accounts and slots in hashed order, so the RPC source is sorted too.
            let mut writer = StateWriter::new(&scratch, true, opts.sort_chunk_bytes, Progress::new(None));
            let runtime =
                tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(io(&scratch))?;
            let root = runtime.block_on(rpc::fetch_state(url, *block, &mut writer))?;
            (writer, Some(root))
        }
    };
    let counts = writer.counts;
    tracing::info!(
        accounts = counts.accounts,
        slots = counts.slots,
        codes = counts.codes,
        elapsed_s = started.elapsed().as_secs(),
        "state read; finishing SST files"
    );
    let files = writer.finish()?;
    // Code and storage before accounts: a database that has accounts has all of its state.
    store.ingest_sst_files(Code::NAME, &files.code)?;
    store.ingest_sst_files(Storage::NAME, &files.storage)?;
    store.ingest_sst_files(Accounts::NAME, &files.accounts)?;
    tracing::info!(
        files = files.code.len() + files.storage.len() + files.accounts.len(),
        "SST files ingested; computing the state root"
    );
    // With the trie on, the same single pass keeps the trie's nodes (the replica then checks every block's
    // root from the first one on); `mark_imported` records them as built once the caller checked the root.
    let state_root = match store.options().state_trie {
        ec_store::TrieMode::Off => store.state_root()?,
        _ => store.build_trie()?,
    };
    std::fs::remove_dir_all(&scratch).map_err(io(&scratch))?;
    let summary = ImportSummary {
        accounts: counts.accounts,
        slots: counts.slots,
        codes: counts.codes,
        bytes: counts.bytes,
        state_root,
        declared_root,
        elapsed: started.elapsed(),
    };
    tracing::info!(?summary, "state import done");
    Ok(summary)
}

fn read_file(
    format: DumpFormat,
    path: &Path,
    scratch: &Path,
    opts: &ImportOptions,
) -> Result<(StateWriter, Option<B256>)> {
    let file = File::open(path).map_err(io(path))?;
    let total = file.metadata().map_err(io(path))?.len();
    let (reader, read) = CountingReader::new(file);
    let sorted = format == DumpFormat::GethSnapshot;
    let mut writer =
        StateWriter::new(scratch, sorted, opts.sort_chunk_bytes, Progress::new(Some((read, total))));
    let root = pipeline::run(&mut writer, |sink| {
        dump::read_dump_from(format, reader, path, sink, scratch, opts.pending_slots)
    })?;
    Ok((writer, root))
}
