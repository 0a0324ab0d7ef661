//! Blocks caught up are written without RocksDB's write-ahead log when `StoreOptions::catch_up_wal` is off
//! (`--catch-up-without-wal`): what a crash leaves is the last flush, whole groups only,
//! its offset with it, and never a logged write laid over a state missing the unlogged ones before it.
//!
//! A crash is a child process: this test binary runs itself again with `EC_CRASH_CHILD` set, the child
//! applies records and ends with `std::process::exit`, which runs no destructor (RocksDB's close would
//! flush the memtables). The OS keeps what the child wrote to its files, as after a kill -9.

use std::{path::Path, process::Command, sync::Arc};

use ec_log::Record;
use ec_store::{Pipeline, Reads, Store, StoreOptions};
use ec_testkit::{GenOptions, LogGenerator};

mod common;
use common::assembled;

/// No reorgs: a revert is applied alone, through the log, and would flush the groups before it.
fn records() -> Vec<(u64, Record)> {
    LogGenerator::records(GenOptions { reorg_chance: 0.0, ..GenOptions::default() }, 260)
}

/// Never flushed by time within the test: only what the test asks for is durable.
fn options() -> StoreOptions {
    StoreOptions {
        catch_up_wal: false,
        catch_up_flush_interval: std::time::Duration::from_secs(3600),
        ..StoreOptions::default()
    }
}

/// Records applied one by one, through the log, into a fresh store: the database a crash must leave.
fn clean_checksum(records: &[(u64, Record)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path(), options()).expect("store opens");
    for (seq, record) in records {
        store.apply(&assembled(*seq, record.clone())).expect("applies");
    }
    store.checksum().expect("checksum").to_string()
}

fn sequence(store: &Store) -> u64 {
    store.position().expect("reads").map_or(0, |p| p.sequence)
}

/// Catches `records` up through a pipeline (groups of 16 blocks, a block that wipes storage alone) and writes
/// the last batch.
fn catch_up(store: &Arc<Store>, records: &[(u64, Record)]) {
    let mut pipeline = Pipeline::new(store.clone()).expect("pipeline starts").hand_over_from(0);
    pipeline.set_catching_up(true);
    for (seq, record) in records {
        pipeline.submit(assembled(*seq, record.clone())).expect("applies");
    }
    pipeline.flush().expect("last group");
}

/// Runs this test again in a child process, which does `scenario`'s part and "crashes"; returns its output
/// lines.
fn crash_child(test: &str, scenario: &str, dir: &Path) -> Vec<String> {
    let out = Command::new(std::env::current_exe().expect("test binary"))
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("EC_CRASH_CHILD", scenario)
        .env("EC_CRASH_DIR", dir)
        .output()
        .expect("child runs");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "child failed: {stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    // libtest prints "test <name> ... " before the child's first line, on the same line.
    stdout.lines().filter_map(|l| l.find("child ").map(|at| l[at..].to_string())).collect()
}

/// The value of `key` on the child's line `child <key> <value>`.
fn child_value(lines: &[String], key: &str) -> u64 {
    lines
        .iter()
        .find_map(|l| l.strip_prefix(&format!("child {key} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("the child printed no {key}: {lines:?}"))
}

/// The child's side: applies records as `scenario` says, prints what it did, and ends without closing the
/// database. `None` when this process is not a child.
fn run_child() -> Option<()> {
    let scenario = std::env::var("EC_CRASH_CHILD").ok()?;
    let dir = std::env::var("EC_CRASH_DIR").expect("EC_CRASH_DIR");
    let store = Arc::new(Store::open(Path::new(&dir), options()).expect("store opens"));
    let records = records();
    match scenario.as_str() {
        "rollback" => {
            // Durable up to here...
            catch_up(&store, &records[..100]);
            store.persist().expect("persists");
            println!("child durable {}", sequence(&store));
            // ...and these only in the memtables.
            let before = store.write_stats();
            catch_up(&store, &records[100..]);
            let after = store.write_stats();
            println!("child written {}", sequence(&store));
            println!("child unlogged {}", after.unlogged_batches - before.unlogged_batches);
            println!("child flushes {}", after.persists - before.persists);
        }
        "logged_after_unlogged" => {
            catch_up(&store, &records[..records.len() - 1]);
            println!("child unlogged {}", store.write_stats().unlogged_batches);
            let (seq, last) = records.last().expect("records");
            store.apply(&assembled(*seq, last.clone())).expect("applies through the log");
            println!("child written {}", sequence(&store));
        }
        other => panic!("unknown scenario {other}"),
    }
    // No destructor runs: the store is not closed, its memtables not flushed.
    std::process::exit(0)
}

#[test]
fn a_crash_while_catching_up_leaves_the_last_flush_and_a_replay_ends_equal() {
    if run_child().is_some() {
        return;
    }
    let records = records();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = crash_child(
        "a_crash_while_catching_up_leaves_the_last_flush_and_a_replay_ends_equal",
        "rollback",
        dir.path(),
    );
    let (durable, written) = (child_value(&lines, "durable"), child_value(&lines, "written"));
    assert!(child_value(&lines, "unlogged") >= 5, "the groups after the flush skipped the log: {lines:?}");
    assert_eq!(child_value(&lines, "flushes"), 0, "nothing flushed them: {lines:?}");
    assert!(written > durable + 100, "{lines:?}");

    let store = Store::open(dir.path(), options()).expect("store reopens");
    assert_eq!(sequence(&store), durable, "the crash rolled the database back to its last flush");
    let upto = records.iter().position(|(seq, _)| *seq == durable).expect("durable record") + 1;
    assert_eq!(
        store.checksum().expect("checksum").to_string(),
        clean_checksum(&records[..upto]),
        "the database after the crash is the records up to the flush, whole"
    );
    // The replay resumes after the stored position, as a replica's does from Kafka.
    for (seq, record) in &records[upto..] {
        store.apply(&assembled(*seq, record.clone())).expect("applies");
    }
    assert_eq!(store.checksum().expect("checksum").to_string(), clean_checksum(&records));
}

#[test]
fn a_logged_write_after_unlogged_groups_flushes_them_first() {
    if run_child().is_some() {
        return;
    }
    let records = records();
    let dir = tempfile::tempdir().expect("tempdir");
    let lines = crash_child(
        "a_logged_write_after_unlogged_groups_flushes_them_first",
        "logged_after_unlogged",
        dir.path(),
    );
    assert!(child_value(&lines, "unlogged") >= 5, "{lines:?}");
    let last = records.last().expect("records").0;
    assert_eq!(child_value(&lines, "written"), last);

    let store = Store::open(dir.path(), options()).expect("store reopens");
    assert_eq!(sequence(&store), last, "the logged record survived the crash, and the groups before it");
    assert_eq!(store.checksum().expect("checksum").to_string(), clean_checksum(&records));
}
