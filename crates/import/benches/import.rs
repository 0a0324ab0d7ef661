//! The state import (`ether-cattle import-state`) on a generated geth dump, next to RocksDB's raw ingest of
//! the same entries, in one run. A `cargo bench` target (harness = false) so that it runs optimised and
//! builds only this crate's dependencies:
//!
//! ```text
//! CARGO_TARGET_DIR=~/.cache/ec-target cargo bench -p ec-import --bench import
//! EC_BENCH_ACCOUNTS=2500000 EC_BENCH_SLOTS=12 EC_BENCH_DIR=/data/bench cargo bench -p ec-import --bench import
//! ```
//!
//! The import row is the whole command's work: parsing the JSONL dump, hashing, writing sorted SST files,
//! ingesting them, and computing the state root from the stored tables (the check against the header). The
//! raw row writes the same key/value pairs (read back from the imported database beforehand, untimed) into
//! SST files and ingests them into an empty RocksDB: the floor any import could reach on this disk.

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use ec_store::{Store, StoreOptions};

type BoxError = Box<dyn std::error::Error>;

struct Args {
    /// Accounts in the generated dump; one in four is a contract with storage (`EC_BENCH_ACCOUNTS`).
    accounts: u64,
    /// Non-zero slots per contract (`EC_BENCH_SLOTS`).
    slots_per_contract: u64,
    /// Where the dump and databases go (`EC_BENCH_DIR`; default: a temporary directory, removed afterwards).
    dir: Option<PathBuf>,
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() -> Result<(), BoxError> {
    // 2.5M accounts, a quarter of them contracts with 12 slots: 10M entries.
    run(Args {
        accounts: env("EC_BENCH_ACCOUNTS", 2_500_000),
        slots_per_contract: env("EC_BENCH_SLOTS", 12),
        dir: std::env::var_os("EC_BENCH_DIR").map(PathBuf::from),
    })
}

fn run(args: Args) -> Result<(), BoxError> {
    let tmp = tempfile::tempdir()?;
    let dir = args.dir.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&dir)?;
    let dump = dir.join("dump.jsonl");

    let started = Instant::now();
    let generated = ec_import::generate_dump(&dump, args.accounts, args.slots_per_contract, 7)?;
    let entries = generated.accounts + generated.slots;
    println!(
        "generated {} accounts + {} slots = {entries} entries, {:.0} MB of JSON, in {:.1}s",
        generated.accounts,
        generated.slots,
        generated.bytes as f64 / 1e6,
        started.elapsed().as_secs_f64()
    );

    // The import, root included.
    let db = dir.join("imported");
    let store = Store::open(&db, StoreOptions::default())?;
    let started = Instant::now();
    let summary = ec_import::import(ec_import::Source::GethDump(dump.clone()), &store, &dir.join("work"))?;
    let import = started.elapsed();
    if summary.state_root != generated.state_root {
        return Err(format!(
            "imported root {} differs from the generated {}",
            summary.state_root, generated.state_root
        )
        .into());
    }
    let started = Instant::now();
    let root = store.state_root()?;
    let root_only = started.elapsed();
    if root != generated.state_root {
        return Err("recomputed root differs".into());
    }
    drop(store);

    // RocksDB's raw ingest of the same key/value pairs.
    let pairs = read_tables(&db)?;
    let raw_bytes: usize = pairs.iter().flat_map(|(_, kv)| kv.iter().map(|(k, v)| k.len() + v.len())).sum();
    let raw = raw_ingest(&dir.join("raw"), &pairs)?;

    let rate = |d: Duration| entries as f64 / d.as_secs_f64();
    let mbs = |bytes: u64, d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!();
    println!("| row | time | entries/s | MB/s | vs raw |");
    println!("|---|---|---|---|---|");
    println!(
        "| import-state (parse, hash, SST, ingest, root) | {:.1}s | {:.0} | {:.1} (dump) | {:.2}x |",
        import.as_secs_f64(),
        rate(import),
        mbs(generated.bytes, import),
        raw.as_secs_f64() / import.as_secs_f64()
    );
    println!(
        "| of which: the state root over the stored tables | {:.1}s | {:.0} | | |",
        root_only.as_secs_f64(),
        rate(root_only)
    );
    println!(
        "| RocksDB raw: SST write + ingest of the same pairs | {:.1}s | {:.0} | {:.1} (key+value) | 1.00x |",
        raw.as_secs_f64(),
        rate(raw),
        mbs(raw_bytes as u64, raw)
    );
    Ok(())
}

type Pairs = Vec<(&'static str, Vec<(Vec<u8>, Vec<u8>)>)>;

/// Every pair of the state tables, in key order.
fn read_tables(db: &Path) -> Result<Pairs, BoxError> {
    let names = ec_store::tables::ALL_TABLES;
    let db =
        rocksdb::DB::open_cf_for_read_only(&rocksdb::Options::default(), db, names.iter().copied(), false)?;
    let mut out = Vec::new();
    for name in ["accounts", "storage", "code"] {
        let cf = db.cf_handle(name).ok_or("state table")?;
        let mut it = db.raw_iterator_cf(cf);
        it.seek_to_first();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            pairs.push((k.to_vec(), v.to_vec()));
            it.next();
        }
        it.status()?;
        out.push((name, pairs));
    }
    Ok(out)
}

fn raw_ingest(dir: &Path, pairs: &Pairs) -> Result<Duration, BoxError> {
    std::fs::create_dir_all(dir)?;
    let mut opts = rocksdb::Options::default();
    opts.create_if_missing(true);
    opts.create_missing_column_families(true);
    opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
    let names: Vec<&str> = pairs.iter().map(|(n, _)| *n).collect();
    let db = rocksdb::DB::open_cf(&opts, dir.join("db"), &names)?;
    let started = Instant::now();
    for (name, kv) in pairs {
        let file = dir.join(format!("{name}.sst"));
        let mut writer = rocksdb::SstFileWriter::create(&opts);
        writer.open(&file)?;
        for (k, v) in kv {
            writer.put(k, v)?;
        }
        if kv.is_empty() {
            continue;
        }
        writer.finish()?;
        let mut ingest = rocksdb::IngestExternalFileOptions::default();
        ingest.set_move_files(true);
        db.ingest_external_file_cf_opts(db.cf_handle(name).ok_or("cf")?, &ingest, vec![file])?;
    }
    Ok(started.elapsed())
}
