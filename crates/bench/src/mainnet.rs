//! `ec-bench mainnet`: replay of mainnet-shaped blocks into a database larger than the block cache, next to
//! RocksDB's raw write rate for the same bytes.
//!
//! 1. **Prefill**: `--accounts` accounts and `--slots` storage slots (hot contracts with many slots, a long
//!    tail with few), written as sorted SST files and ingested, as `import-state` does.
//! 2. **Replay**: `--blocks` blocks shaped like mainnet's (about 300 transactions, 1,200 changed accounts,
//!    4,500 changed slots of which a third new and a tenth cleared, 600 logs, 16 withdrawals), one atomic
//!    batch per block. Blocks are generated and encoded (as the publisher would) in chunks outside the clock,
//!    then decoded and applied inside it, as a replica does; the chunks alternate between applying one record
//!    at a time (`Store::apply`) and the replica's `ec_store::Pipeline`.
//! 3. **Raw**: the same number of batches, puts and bytes written to a fresh RocksDB with the same options,
//!    with random keys (sorted within each batch, as the store hands its batches over) and no reads: the
//!    floor any replica pays.
//!
//! With `--direct-io` (the default) reads bypass the page cache, so the database is served from the block
//! cache (`--block-cache-mb`) or the disk, however much memory the machine has.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use alloy_primitives::{keccak256, Address, Bytes, B256, KECCAK256_EMPTY, U256};
use anyhow::Context;
use ec_import::SortedSst;
use ec_log::{
    AccountChange, AccountPrior, AccountState, Assembled, Block, Envelope, Genesis, Log, Receipt, Record,
    StorageSlot, Transaction, Withdrawal, FORMAT_VERSION,
};
use ec_store::{
    tables::{Accounts, Code, Storage, StoredAccount, Table, Value},
    Reads, Store, StoreOptions, Tuning,
};
use rand::{rngs::StdRng, Rng, SeedableRng};

#[derive(clap::Args)]
pub struct Args {
    /// Accounts in the prefilled state.
    #[arg(long, default_value_t = 20_000_000)]
    accounts: u64,
    /// Storage slots in the prefilled state.
    #[arg(long, default_value_t = 60_000_000)]
    slots: u64,
    /// Contracts among the accounts (the first ones); the first 100 are hot and hold a quarter of the slots.
    #[arg(long, default_value_t = 200_000)]
    contracts: u64,
    /// Blocks to replay.
    #[arg(long, default_value_t = 2_000)]
    blocks: u64,
    /// RocksDB options: `replica` (what the replica runs), `replica-lz4-everywhere` (the same with every level
    /// compressed) or `rocksdb-defaults` (the baseline).
    #[arg(long, default_value = "replica")]
    tuning: String,
    #[arg(long, default_value_t = 256)]
    block_cache_mb: usize,
    /// Bypass the page cache (O_DIRECT reads and compaction): `true` or `false`.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    direct_io: bool,
    /// Where the databases go (they need about 10 GB for the defaults); a temporary directory by default.
    #[arg(long)]
    dir: Option<PathBuf>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The state trie: `on` (its nodes built after the prefill, kept per block, the root computed and, the
    /// generated headers carrying no real root, compared with nothing) or `off`.
    #[arg(long, default_value = "on", value_parser = ["on", "off"])]
    state_trie: String,
    /// Blocks the pipelined chunks group under one write batch and, with the trie on, one root (the
    /// replica's default: `ec_store::DEFAULT_GROUP_BLOCKS`). A chunk's end ends a group.
    #[arg(long, default_value_t = ec_store::DEFAULT_GROUP_BLOCKS)]
    group_blocks: usize,
    /// Blocks generated at a time, outside the clock, and applied in one mode: the chunks alternate between
    /// one record at a time and the pipeline. Longer chunks let the pipeline run as a replica catching up
    /// does, group after group, each written while the next is gathered.
    #[arg(long, default_value_t = 50, value_parser = clap::value_parser!(u64).range(1..))]
    chunk_blocks: u64,
    /// Write the pipelined chunks (catching up) without RocksDB's write-ahead log, with atomic flushes and
    /// 256 MiB memtables, as `--catch-up-without-wal` makes a replica do.
    #[arg(long)]
    catch_up_without_wal: bool,
    /// The trie's recent past kept for proofs below the head, in MiB (the replica's --proof-history-mb;
    /// 0: none, every proof below the head walks).
    #[arg(long, default_value_t = ec_store::DEFAULT_PROOF_HISTORY_BYTES >> 20)]
    proof_history_mb: usize,
}

const HOT: u64 = 100;
const CODES: u64 = 64;

pub fn run(args: Args) -> anyhow::Result<()> {
    anyhow::ensure!(
        args.contracts > HOT && args.accounts > args.contracts,
        "need accounts > contracts > {HOT}"
    );
    let mut tuning = tuning(&args.tuning, args.block_cache_mb)?;
    tuning.direct_io = args.direct_io;
    if args.catch_up_without_wal {
        tuning.memtable_bytes = ec_store::CATCH_UP_WITHOUT_WAL_MEMTABLE_BYTES;
    }
    let tmp;
    let root = match &args.dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir_in(".")?;
            tmp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&root)?;
    let db_path = root.join("store");
    anyhow::ensure!(!db_path.exists(), "{} exists: give an empty --dir", db_path.display());
    // Generated headers commit to no real state root: the trie runs unchecked (its cost is measured).
    let state_trie =
        if args.state_trie == "off" { ec_store::TrieMode::Off } else { ec_store::TrieMode::Unchecked };
    let opts = StoreOptions {
        tuning,
        state_trie,
        catch_up_wal: !args.catch_up_without_wal,
        proof_history_bytes: args.proof_history_mb << 20,
        ..StoreOptions::default()
    };

    // 1. Prefill, and the trie built over it.
    let shape = Shape::new(&args);
    let store = std::sync::Arc::new(prefilled(&args, &shape, &db_path, &root, &opts)?);
    let db_before = dir_bytes(&db_path);

    // 2. Replay.
    let io_before = process_write_bytes();
    let mut gen = BlockGen::new(shape, args.seed);
    let replayed = replay(&store, &mut gen, &args)?;
    store.flush()?;
    let physical = process_write_bytes().saturating_sub(io_before);
    let db_after = dir_bytes(&db_path);
    let reads = read_rates(&store, &gen, replayed.applied, args.seed)?;
    let proofs = if state_trie == ec_store::TrieMode::Off { Vec::new() } else { proof_times(&store, &gen)? };
    drop(store);

    // 3. The same batches, puts and bytes, raw.
    let raw_time = raw_writes(&root.join("raw"), &opts, &replayed.per_batch)?;

    println!(
        "tuning {} (block cache {} MiB, bloom filters {}, {} background jobs, {} MiB memtables, direct I/O {}, levels 0-1 uncompressed {}): database {:.1}x the block cache",
        args.tuning,
        args.block_cache_mb,
        tuning.bloom_filters,
        tuning.background_jobs,
        tuning.memtable_bytes >> 20,
        tuning.direct_io,
        tuning.uncompressed_top_levels,
        db_before as f64 / (args.block_cache_mb as f64 * 1048576.0)
    );
    replayed.report(physical, db_before, db_after);
    for (what, micros) in reads {
        println!("reads: {what}: {micros:.1} µs each");
    }
    for (back, millis, walked) in proofs {
        println!(
            "proofs: a contract and one of its slots, {back} blocks before the head: {millis:.2} ms each{}",
            walked.map(|w| format!(" (walked over every key changed since: {w:.1} ms)")).unwrap_or_default()
        );
    }
    let secs = replayed.time().as_secs_f64();
    println!(
        "rocksdb raw, same batches and bytes: {:.1} s = {:.1} blocks/s; replay is {:.2}x the raw rate",
        raw_time.as_secs_f64(),
        replayed.applied as f64 / raw_time.as_secs_f64(),
        raw_time.as_secs_f64() / secs
    );
    Ok(())
}

/// The prefilled database, with the trie built over it when it is on: both timed and reported.
fn prefilled(
    args: &Args,
    shape: &Shape,
    db_path: &Path,
    root: &Path,
    opts: &StoreOptions,
) -> anyhow::Result<Store> {
    let started = Instant::now();
    let store = Store::open(db_path, opts.clone())?;
    prefill(&store, shape, &root.join("sst"))?;
    store.flush()?;
    let prefill_time = started.elapsed();
    let db_state = dir_bytes(db_path);
    println!(
        "prefill: {} accounts, {} slots, {} contracts ({HOT} hot), {CODES} codes: {:.2} GB on disk in {:.0} s",
        args.accounts,
        shape.total_slots(),
        args.contracts,
        db_state as f64 / 1e9,
        prefill_time.as_secs_f64()
    );
    if opts.state_trie != ec_store::TrieMode::Off {
        // What import-state does after ingesting: one pass over the sorted state, keeping the trie's nodes.
        let started = Instant::now();
        store.build_trie()?;
        store.flush()?;
        let secs = started.elapsed().as_secs_f64();
        let entries = args.accounts + shape.total_slots();
        let trie_bytes = dir_bytes(db_path).saturating_sub(db_state);
        println!(
            "trie built: {entries} entries in {secs:.0} s = {:.0} entries/s; {:.2} GB of nodes",
            entries as f64 / secs,
            trie_bytes as f64 / 1e9
        );
    }
    Ok(store)
}

/// What the replay measured.
struct Replayed {
    /// Blocks a chunk holds (`--chunk-blocks`).
    chunk_blocks: u64,
    applied: u64,
    /// Changed keys (accounts and slots), over every block.
    keys: u64,
    /// [one by one, pipelined]: blocks and time.
    modes: [(u64, Duration); 2],
    /// Leaves the trie updates read, and leaf hashes they took from stored nodes, by mode.
    trie_walked: [(u64, u64); 2],
    /// Each block's writes and bytes (a chunk's spread evenly over its blocks).
    per_batch: Vec<(u64, u64)>,
    wire_bytes: usize,
    /// Decoding's share, timed in the one-at-a-time chunks (in the pipelined ones it overlaps the write).
    decode_time: Duration,
}

/// Replays `args.blocks` generated blocks, in chunks that alternate between one record at a time
/// (`Store::apply`) and the replica's pipeline (`ec_store::Pipeline`: the next block prepared while the one
/// before is written), so that both meet the same database and machine.
fn replay(store: &std::sync::Arc<Store>, gen: &mut BlockGen, args: &Args) -> anyhow::Result<Replayed> {
    let mut pipeline = ec_store::Pipeline::new(store.clone())?.group_blocks(args.group_blocks);
    store.apply(&assembled(0, gen.genesis()))?;
    let mut out = Replayed {
        chunk_blocks: args.chunk_blocks,
        applied: 0,
        keys: 0,
        modes: [(0, Duration::ZERO); 2],
        trie_walked: [(0, 0); 2],
        per_batch: Vec::new(),
        wire_bytes: 0,
        decode_time: Duration::ZERO,
    };
    let mut chunk_index = 0;
    let mut assembler = ec_log::Assembler::new();
    let mut offset = 1i64;
    while out.applied < args.blocks {
        // Generated and encoded as the publisher would (postcard, zstd, frames) outside the clock; decoded
        // inside it, as the replica does.
        let mut chunk = Vec::new();
        for i in 0..args.chunk_blocks.min(args.blocks - out.applied) {
            let record = gen.next_block();
            if let Record::Block(b) = &record {
                out.keys +=
                    b.state.len() as u64 + b.state.iter().map(|c| c.storage.len() as u64).sum::<u64>();
            }
            let frames = ec_log::encode_record(
                "bench",
                out.applied + i + 1,
                &record,
                ec_log::EncodeOptions::default(),
            )?;
            out.wire_bytes += frames.iter().map(Vec::len).sum::<usize>();
            chunk.push(frames);
        }
        let n = chunk.len() as u64;
        let pipelined = chunk_index % 2 == 1;
        // The pipelined chunks catch up as a replica does at start-up (no write-ahead log with
        // --catch-up-without-wal, no trie history kept); the others are blocks at the tip.
        pipeline.set_catching_up(pipelined);
        let before = store.write_stats();
        let t = Instant::now();
        for frames in chunk {
            for frame in frames {
                let decoding = Instant::now();
                let assembled = assembler.push(offset, &frame)?;
                if !pipelined {
                    out.decode_time += decoding.elapsed();
                }
                offset += 1;
                let Some(rec) = assembled else { continue };
                if pipelined {
                    pipeline.submit(rec)?;
                } else {
                    store.apply(&rec)?;
                }
            }
        }
        pipeline.flush()?;
        // Made durable within the clock, as a replica does once caught up (`Store::persist`): the chunk's
        // batches skipped the write-ahead log.
        store.persist()?;
        let mode = &mut out.modes[usize::from(pipelined)];
        mode.0 += n;
        mode.1 += t.elapsed();
        // The chunk's blocks are alike: its writes, spread evenly, stand for each block's batch.
        let after = store.write_stats();
        let walked = &mut out.trie_walked[usize::from(pipelined)];
        walked.0 += after.trie_leaves_read - before.trie_leaves_read;
        walked.1 += after.trie_leaf_hashes_given - before.trie_leaf_hashes_given;
        out.per_batch
            .extend((0..n).map(|_| ((after.ops - before.ops) / n, (after.bytes - before.bytes) / n)));
        out.applied += n;
        chunk_index += 1;
    }
    Ok(out)
}

impl Replayed {
    fn time(&self) -> Duration {
        self.modes[0].1 + self.modes[1].1
    }

    /// Prints the replay's rates, records, writes, disk and trie work; `physical`: bytes the process wrote.
    fn report(&self, physical: u64, db_before: u64, db_after: u64) {
        let (applied, keys, modes) = (self.applied, self.keys, &self.modes);
        let secs = self.time().as_secs_f64();
        let (ops, logical) = self.per_batch.iter().fold((0, 0), |(o, b), (ops, bytes)| (o + ops, b + bytes));
        let rate = |(blocks, time): (u64, Duration)| blocks as f64 / time.as_secs_f64().max(1e-9);
        println!(
            "replay: {applied} blocks in {secs:.1} s = {:.1} blocks/s; {:.0} changed keys per block, {:.2} µs per changed key",
            applied as f64 / secs,
            keys as f64 / applied as f64,
            secs * 1e6 / keys as f64
        );
        println!(
            "replay by mode (alternating chunks of {} blocks): one record at a time {:.1} blocks/s, pipelined {:.1} \
             blocks/s = {:.2}x",
            self.chunk_blocks,
            rate(modes[0]),
            rate(modes[1]),
            rate(modes[1]) / rate(modes[0])
        );
        println!(
            "records: {:.0} KB per block on the wire (postcard, zstd), decoded inside the clock in both modes: {:.1} ms \
             per block (one record at a time)",
            self.wire_bytes as f64 / applied as f64 / 1e3,
            self.decode_time.as_secs_f64() * 1e3 / modes[0].0.max(1) as f64
        );
        println!(
            "writes: {:.0} puts/deletes per block, {:.2} MB logical per block; {:.2} GB written to disk during replay and \
             flush = {:.1}x write amplification (compaction still owed is not counted)",
            ops as f64 / applied as f64,
            logical as f64 / applied as f64 / 1e6,
            physical as f64 / 1e9,
            physical as f64 / logical as f64
        );
        println!(
            "database: {:.2} GB -> {:.2} GB, {:.0} KB per block",
            db_before as f64 / 1e9,
            db_after as f64 / 1e9,
            db_after.saturating_sub(db_before) as f64 / applied as f64 / 1e3
        );
        if self.trie_walked.iter().any(|w| w.0 + w.1 > 0) {
            let per_key =
                |n: u64, mode: usize| n as f64 / (modes[mode].0.max(1) as f64 * keys as f64 / applied as f64);
            println!(
                "trie: per changed key, {:.1} leaves read and {:.1} leaf hashes taken from stored nodes (one record at a \
                 time), {:.1} and {:.1} (pipelined)",
                per_key(self.trie_walked[0].0, 0),
                per_key(self.trie_walked[0].1, 0),
                per_key(self.trie_walked[1].0, 1),
                per_key(self.trie_walked[1].1, 1)
            );
        }
    }
}

/// `eth_getProof`'s work in the store (`Proofs::proof`: a hot contract and one of its slots) at the head and
/// at blocks before it, in ms each, and below the head also walked over every key changed since (what a
/// proof at a block the trie's recent past does not hold costs, growing with the blocks between). The
/// recent past holds the blocks applied one at a time since the last group: run an odd number of chunks
/// (`--blocks` = 3 x `--chunk-blocks`) for the last chunk to be those.
fn proof_times(store: &Store, gen: &BlockGen) -> anyhow::Result<Vec<(u64, f64, Option<f64>)>> {
    use ec_store::Proofs;
    let mut out = Vec::new();
    let held = store.trie_history();
    println!(
        "proofs: the trie's recent past holds {} blocks ({:.1} MB)",
        held.blocks,
        held.bytes as f64 / 1e6
    );
    for (back, times) in [(0u64, 200u32), (1, 20), (10, 5), (100, 5)] {
        let Some(number) = gen.number.checked_sub(back) else { continue };
        let time = |walk: bool, times: u32| -> anyhow::Result<f64> {
            let started = Instant::now();
            for i in 0..times {
                let (contract, slots) = (address(u64::from(i) % HOT), [slot(u64::from(i))]);
                match walk {
                    false => std::hint::black_box(store.proof(&contract, &slots, number)?),
                    true => {
                        std::hint::black_box(store.proof_by_walking(&contract, &slots, number, gen.number)?)
                    }
                };
            }
            Ok(started.elapsed().as_secs_f64() * 1e3 / f64::from(times))
        };
        let walked = if back == 0 { None } else { Some(time(true, 2)?) };
        out.push((back, time(false, times)?, walked));
    }
    Ok(out)
}

/// The RocksDB options a `--tuning` names, with a block cache of `cache_mb`.
pub fn tuning(name: &str, cache_mb: usize) -> anyhow::Result<Tuning> {
    Ok(match name {
        "replica" => Tuning::replica(cache_mb << 20),
        "rocksdb-defaults" => Tuning { block_cache_bytes: cache_mb << 20, ..Tuning::rocksdb_defaults() },
        "replica-lz4-everywhere" => {
            Tuning { uncompressed_top_levels: false, ..Tuning::replica(cache_mb << 20) }
        }
        other => {
            anyhow::bail!("unknown --tuning {other:?}: replica, replica-lz4-everywhere or rocksdb-defaults")
        }
    })
}

/// Where the prefilled state's slots are: a quarter in the hot contracts, the rest spread over the others.
#[derive(Clone)]
struct Shape {
    accounts: u64,
    contracts: u64,
    hot_slots: u64,
    tail_slots: u64,
}

impl Shape {
    fn new(args: &Args) -> Self {
        let hot_slots = args.slots / 4 / HOT;
        let tail_slots = (args.slots - hot_slots * HOT) / (args.contracts - HOT);
        Self { accounts: args.accounts, contracts: args.contracts, hot_slots, tail_slots }
    }
    fn slots_of(&self, contract: u64) -> u64 {
        if contract < HOT {
            self.hot_slots
        } else {
            self.tail_slots
        }
    }
    fn total_slots(&self) -> u64 {
        self.hot_slots * HOT + self.tail_slots * (self.contracts - HOT)
    }
}

fn address(i: u64) -> Address {
    Address::left_padding_from(&(i + 0x10_0000).to_be_bytes())
}

fn slot(i: u64) -> B256 {
    B256::from(U256::from(i))
}

fn code(i: u64) -> Bytes {
    // Sizes from 1 to 24 KB, distinct contents.
    let len = 1024 * (1 + (i as usize * 7) % 24);
    (0..len).map(|j| (j as u64 ^ i.wrapping_mul(31)) as u8).collect::<Vec<u8>>().into()
}

/// The prefilled value of every slot of contract `i`.
fn slot_value(i: u64) -> B256 {
    B256::from(U256::from(i + 1))
}

/// The prefilled balance and nonce of account `i`.
fn balance_and_nonce(i: u64) -> (U256, u64) {
    (U256::from(10u64.pow(18) + i), i % 1000)
}

fn account_value(i: u64, shape: &Shape) -> StoredAccount {
    let code_hash = if i < shape.contracts { keccak256(code(i % CODES)) } else { KECCAK256_EMPTY };
    let (balance, nonce) = balance_and_nonce(i);
    StoredAccount { balance, nonce, code_hash }
}

/// Writes the state as sorted SST files and ingests them.
fn prefill(store: &Store, shape: &Shape, dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    let mut codes: Vec<(B256, Bytes)> = (0..CODES).map(|i| (keccak256(code(i)), code(i))).collect();
    codes.sort();
    let mut w = SortedSst::new(Code::NAME, dir);
    for (hash, code) in &codes {
        w.put(hash.as_slice(), code)?;
    }
    store.ingest_sst_files(Code::NAME, &w.finish()?)?;

    let mut order: Vec<(B256, u64)> = (0..shape.accounts).map(|i| (keccak256(address(i)), i)).collect();
    order.sort_unstable();
    let mut w = SortedSst::new(Accounts::NAME, dir);
    for (hash, i) in &order {
        w.put(hash.as_slice(), &account_value(*i, shape).encode())?;
    }
    store.ingest_sst_files(Accounts::NAME, &w.finish()?)?;

    let mut w = SortedSst::new(Storage::NAME, dir);
    let mut key = [0u8; 64];
    for (hash, i) in order.iter().filter(|(_, i)| *i < shape.contracts) {
        let mut slots: Vec<B256> = (0..shape.slots_of(*i)).map(|s| keccak256(slot(s))).collect();
        slots.sort_unstable();
        key[..32].copy_from_slice(hash.as_slice());
        for s in slots {
            key[32..].copy_from_slice(s.as_slice());
            w.put(&key, slot_value(*i).as_slice())?;
        }
    }
    store.ingest_sst_files(Storage::NAME, &w.finish()?)?;
    Ok(())
}

/// Mainnet-shaped blocks on top of the prefilled state.
struct BlockGen {
    rng: StdRng,
    shape: Shape,
    /// Slots each contract holds (new slots are appended).
    slot_counts: Vec<u64>,
    /// What the replayed blocks wrote so far, so that each record's prior values are the state's, as a
    /// publisher's are: slots by (address, slot), accounts' balance and nonce by address.
    slots_written: std::collections::HashMap<(Address, B256), B256>,
    accounts_written: std::collections::HashMap<Address, (U256, u64)>,
    next_account: u64,
    parent: B256,
    number: u64,
}

impl BlockGen {
    fn new(shape: Shape, seed: u64) -> Self {
        let slot_counts = (0..shape.contracts).map(|c| shape.slots_of(c)).collect();
        let next_account = shape.accounts;
        Self {
            rng: StdRng::seed_from_u64(seed),
            shape,
            slot_counts,
            slots_written: Default::default(),
            accounts_written: Default::default(),
            next_account,
            parent: B256::ZERO,
            number: 0,
        }
    }

    fn header(&mut self) -> (Bytes, B256) {
        let mut header = vec![0u8; 540];
        self.rng.fill(&mut header[..]);
        header[..32].copy_from_slice(self.parent.as_slice());
        let header: Bytes = header.into();
        let hash = keccak256(&header);
        (header, hash)
    }

    fn genesis(&mut self) -> Record {
        let (header, hash) = self.header();
        self.parent = hash;
        let block = Block {
            number: 0,
            hash,
            parent_hash: B256::ZERO,
            timestamp: 1_700_000_000,
            header,
            transactions: vec![],
            receipts: vec![],
            withdrawals: Some(vec![]),
            state: vec![],
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        };
        let spec = ec_log::ChainSpecSource::Named("mainnet".into());
        Record::Genesis(Genesis { chain_id: 1, spec, block })
    }

    /// Account `i`'s balance and nonce before the block being generated.
    fn account_before(&self, i: u64) -> (U256, u64) {
        self.accounts_written.get(&address(i)).copied().unwrap_or_else(|| balance_and_nonce(i))
    }

    /// Keeps what a generated block writes, for the priors of the blocks after it. (A slot listed twice in a
    /// block keeps its first write, as the record does.)
    fn remember(&mut self, state: &std::collections::BTreeMap<Address, AccountChange>) {
        for (address, change) in state {
            if let Some(account) = &change.account {
                self.accounts_written.insert(*address, (account.balance, account.nonce));
            }
            for s in &change.storage {
                self.slots_written.insert((*address, s.slot), s.value);
            }
        }
    }

    /// A contract: 60% of picks among the hot ones.
    fn contract(&mut self) -> u64 {
        if self.rng.random_bool(0.6) {
            self.rng.random_range(0..HOT)
        } else {
            self.rng.random_range(HOT..self.shape.contracts)
        }
    }

    /// An event signature (a log's first topic): half the logs one (Transfer), the rest spread over 31 more.
    fn event_signature(&mut self) -> B256 {
        let n: u8 = if self.rng.random_bool(0.5) { 0 } else { self.rng.random_range(1..32) };
        keccak256([n])
    }

    fn next_block(&mut self) -> Record {
        self.number += 1;
        let (header, hash) = self.header();
        let mut state: std::collections::BTreeMap<Address, AccountChange> = Default::default();
        // About 150 contracts take the 4,500 slot writes.
        let mut slot_writes = 0;
        while slot_writes < 4_500 {
            let c = self.contract();
            let n = if c < HOT { 60 } else { 15 };
            let (balance, nonce) = self.account_before(c);
            let change = state.entry(address(c)).or_insert_with(|| AccountChange {
                address: address(c),
                storage_wiped: false,
                prior: Some(AccountPrior { balance, nonce, code_hash: keccak256(code(c % CODES)) }),
                account: Some(AccountState {
                    balance: U256::from(self.rng.random::<u64>()),
                    nonce: c % 1000,
                    code: None,
                }),
                storage: vec![],
            });
            for _ in 0..n {
                let count = &mut self.slot_counts[c as usize];
                let roll = self.rng.random_range(0..30);
                let (index, value) = if roll < 10 || *count == 0 {
                    *count += 1;
                    (*count - 1, B256::from(self.rng.random::<[u8; 32]>()))
                } else if roll < 13 {
                    (self.rng.random_range(0..*count), B256::ZERO)
                } else {
                    (self.rng.random_range(0..*count), B256::from(self.rng.random::<[u8; 32]>()))
                };
                let prior = match self.slots_written.get(&(address(c), slot(index))) {
                    Some(written) => *written,
                    None if index < self.shape.slots_of(c) => slot_value(c),
                    None => B256::ZERO,
                };
                change.storage.push(StorageSlot { slot: slot(index), prior, value });
            }
            slot_writes += n;
        }
        for change in state.values_mut() {
            change.storage.sort_by_key(|s| s.slot);
            change.storage.dedup_by_key(|s| s.slot);
        }
        // The rest of the 1,200 accounts: senders, recipients, fee recipients; one in twenty new.
        while state.len() < 1_200 {
            let new = self.rng.random_bool(0.05);
            let i = if new {
                self.next_account += 1;
                self.next_account - 1
            } else {
                self.rng.random_range(self.shape.contracts..self.shape.accounts)
            };
            let (balance, nonce) = self.account_before(i);
            let prior = (!new).then_some(AccountPrior { balance, nonce, code_hash: KECCAK256_EMPTY });
            state.insert(
                address(i),
                AccountChange {
                    address: address(i),
                    storage_wiped: false,
                    prior,
                    account: Some(AccountState {
                        balance: U256::from(self.rng.random::<u64>()),
                        nonce: self.rng.random_range(0..10_000),
                        code: None,
                    }),
                    storage: vec![],
                },
            );
        }
        let mut transactions = Vec::with_capacity(300);
        let mut receipts = Vec::with_capacity(300);
        for t in 0..300u64 {
            let mut encoded = vec![0u8; 150];
            self.rng.fill(&mut encoded[..]);
            transactions.push(Transaction {
                sender: address(self.rng.random_range(0..self.shape.accounts)),
                encoded: encoded.into(),
            });
            let logs = (0..2)
                .map(|_| Log {
                    address: address(self.contract()),
                    // As on mainnet: the first topic names the event (a few signatures, Transfer most of all),
                    // the next two are accounts (an ERC-20 transfer's sender and recipient).
                    topics: vec![
                        self.event_signature(),
                        address(self.rng.random_range(0..self.shape.accounts)).into_word(),
                        address(self.rng.random_range(0..self.shape.accounts)).into_word(),
                    ],
                    data: Bytes::from(vec![7u8; 64]),
                })
                .collect();
            receipts.push(Receipt {
                success: true,
                cumulative_gas_used: 50_000 * (t + 1),
                gas_used: 50_000,
                effective_gas_price: 10_000_000_000,
                blob_gas_used: None,
                blob_gas_price: None,
                contract_address: None,
                logs,
            });
        }
        let withdrawals = (0..16)
            .map(|k| Withdrawal {
                index: self.number * 16 + k,
                validator_index: k,
                address: address(self.shape.contracts + k),
                amount_gwei: 20_000,
            })
            .collect();
        self.remember(&state);
        let block = Block {
            number: self.number,
            hash,
            parent_hash: self.parent,
            timestamp: 1_700_000_000 + self.number * 12,
            header,
            transactions,
            receipts,
            withdrawals: Some(withdrawals),
            state: state.into_values().collect(),
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        };
        self.parent = hash;
        Record::Block(block)
    }
}

/// Point reads a replica serves, at random over the whole database (one thread, µs each): the current
/// account, a contract's slot, an account as of 500 blocks before the head (a history seek), and a
/// transaction with its receipt from one of the `replayed` blocks, read alone and out of its whole block (the
/// head and all its entries, assembled: what layout 2's one whole body cost in bytes read, though not in
/// decoding the same encoding).
fn read_rates(
    store: &Store,
    gen: &BlockGen,
    replayed: u64,
    seed: u64,
) -> anyhow::Result<Vec<(&'static str, f64)>> {
    const N: u32 = 20_000;
    let mut rng = StdRng::seed_from_u64(seed + 1);
    let shape = &gen.shape;
    let old = gen.number.saturating_sub(500);
    let mut out = Vec::new();
    let started = Instant::now();
    for _ in 0..N {
        std::hint::black_box(store.account(&address(rng.random_range(0..shape.accounts)))?);
    }
    out.push(("account at the head", started.elapsed().as_secs_f64() * 1e6 / N as f64));
    let started = Instant::now();
    for _ in 0..N {
        let c = rng.random_range(0..shape.contracts);
        let s = rng.random_range(0..shape.slots_of(c));
        std::hint::black_box(store.storage_at(&address(c), &slot(s), gen.number)?);
    }
    out.push(("storage slot at the head", started.elapsed().as_secs_f64() * 1e6 / N as f64));
    let started = Instant::now();
    for _ in 0..N {
        std::hint::black_box(store.account_at(&address(rng.random_range(0..shape.accounts)), old)?);
    }
    out.push(("account 500 blocks back", started.elapsed().as_secs_f64() * 1e6 / N as f64));
    // What eth_getTransactionReceipt and eth_getTransactionByHash read for a block outside the RPC's cache.
    let replayed_block = |rng: &mut StdRng| -> anyhow::Result<B256> {
        let n = gen.number - rng.random_range(0..replayed.max(1));
        store.canonical_hash(n)?.with_context(|| format!("block {n}"))
    };
    let started = Instant::now();
    for _ in 0..N {
        let hash = replayed_block(&mut rng)?;
        let tx = store.block_transaction(&hash, rng.random_range(0..300))?;
        std::hint::black_box(tx.context("a transaction")?);
    }
    out.push(("transaction and receipt, its own entry", started.elapsed().as_secs_f64() * 1e6 / N as f64));
    const WHOLE: u32 = 1_000;
    let started = Instant::now();
    for _ in 0..WHOLE {
        let hash = replayed_block(&mut rng)?;
        let block = store.block_by_hash(&hash)?.context("a block")?;
        std::hint::black_box(block.transaction(rng.random_range(0..300)).context("a transaction")?);
    }
    out.push((
        "transaction and receipt, out of the whole block read and assembled",
        started.elapsed().as_secs_f64() * 1e6 / WHOLE as f64,
    ));
    Ok(out)
}

fn assembled(sequence: u64, record: Record) -> Assembled {
    let envelope =
        Envelope { version: FORMAT_VERSION, kind: record.kind(), cluster_id: "bench".into(), sequence };
    Assembled {
        envelope,
        record,
        first_offset: sequence as i64,
        last_offset: sequence as i64,
        payload_len: 0,
        record_crc: sequence as u32,
    }
}

/// `(puts, bytes)` per batch, written with random 32-byte keys (sorted within each batch) into one table of a
/// fresh database with the store's options.
fn raw_writes(path: &Path, opts: &StoreOptions, batches: &[(u64, u64)]) -> anyhow::Result<Duration> {
    let db_opts = ec_store::db_options(&opts.tuning);
    let db = rocksdb::DB::open_cf(&db_opts, path, [Storage::NAME]).context("raw database")?;
    let cf = db.cf_handle(Storage::NAME).context("storage table")?;
    let mut rng = StdRng::seed_from_u64(7);
    let mut prepared = Vec::with_capacity(batches.len());
    for (ops, bytes) in batches {
        let mut batch = rocksdb::WriteBatch::default();
        // RocksDB frames each put with a few bytes (type, column family, two varint lengths).
        let value_len = (bytes / (*ops).max(1)).saturating_sub(32 + 6) as usize;
        let value = vec![0x5au8; value_len];
        // In key order, as the store hands its batches to RocksDB (`ec_store`'s `Batch`): random keys in
        // arrival order cost RocksDB 2.2x as much, and the row is the floor, not a strawman.
        let mut keys: Vec<[u8; 32]> = (0..*ops).map(|_| rng.random::<[u8; 32]>()).collect();
        keys.sort_unstable();
        for key in keys {
            batch.put_cf(cf, key, &value);
        }
        prepared.push(batch);
    }
    // Timed like the replay: the writes, not the final flush.
    let started = Instant::now();
    for batch in prepared {
        db.write(batch)?;
    }
    Ok(started.elapsed())
}

/// Bytes this process has caused to be written to storage (`/proc/self/io`), 0 where unknown.
fn process_write_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/io")
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("write_bytes: ").and_then(|v| v.trim().parse().ok()))
        })
        .unwrap_or(0)
}

fn dir_bytes(path: &Path) -> u64 {
    std::fs::read_dir(path)
        .map(|entries| entries.flatten().filter_map(|e| e.metadata().ok()).map(|m| m.len()).sum())
        .unwrap_or(0)
}
