//! A manual measurement at benchmark scale (ignored by default):
//! `EC_IMPORT_ACCOUNTS=1000000 EC_IMPORT_SLOTS=100 cargo test -p ec-import --test large_generated_import -- --ignored --nocapture`

use std::time::Instant;

use ec_import::{generate_dump, import, Source};
use ec_store::{Store, StoreOptions};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
#[ignore = "minutes of work; run by hand to measure"]
fn a_large_generated_dump_imports_to_its_root() {
    let (accounts, slots) = (env("EC_IMPORT_ACCOUNTS", 1_000_000), env("EC_IMPORT_SLOTS", 40));
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("large.jsonl");
    let t = Instant::now();
    let generated = generate_dump(&path, accounts, slots, 1).expect("generate");
    eprintln!("generated {generated:?} in {:?}", t.elapsed());

    let store = Store::open(&dir.path().join("db"), StoreOptions::default()).expect("open");
    let summary = import(Source::GethDump(path), &store, dir.path()).expect("import");
    let entries = summary.accounts + summary.slots + summary.codes;
    eprintln!(
        "imported {summary:?}: {:.0} entries/s, {:.1} MB/s of dump",
        entries as f64 / summary.elapsed.as_secs_f64(),
        generated.bytes as f64 / 1e6 / summary.elapsed.as_secs_f64()
    );
    assert_eq!(summary.state_root, generated.state_root);
}
