//! The replication core, end to end: the real `ether-cattle` binary against a real Kafka-protocol broker
//! (librdkafka's mock cluster on 127.0.0.1, started by each test).

mod harness;

use std::{
    process::Command,
    time::{Duration, Instant},
};

use ec_log::{encode_record, EncodeOptions, Record};
use ec_testkit::{GenOptions, KafkaBroker, LogGenerator, MockBroker};
use harness::*;
use rand::{Rng, SeedableRng};

/// Small frames so that the generator's large blocks are split into several chunks.
fn chunky() -> EncodeOptions {
    EncodeOptions { max_frame_bytes: 32 * 1024, ..EncodeOptions::default() }
}

fn gen_opts(seed: u64) -> GenOptions {
    GenOptions { seed, big_block_chance: 0.006, big_block_bytes: 100_000, ..GenOptions::default() }
}

fn count(records: &[(u64, Record)], f: impl Fn(&Record) -> bool) -> usize {
    records.iter().filter(|(_, r)| f(r)).count()
}

#[test]
fn replicas_fed_the_same_log_hold_the_same_data() {
    let broker = MockBroker::start(&["log"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(7), 3000);
    let chunked = records
        .iter()
        .filter(|(s, r)| encode_record(CLUSTER, *s, r, chunky()).map(|f| f.len() > 1).unwrap_or(false))
        .count();
    assert!(chunked >= 5, "the log must contain chunked records, has {chunked}");
    assert!(count(&records, |r| matches!(r, Record::Revert(_))) >= 50, "the log must contain reverts");

    let tmp = tempdir();
    // Replica A follows the topic while the log is being written.
    let cmd_a = {
        let mut c = Command::new(harness::bin());
        c.args(["replica", "--topic", "log", "--brokers", &brokers, "--data-dir"]).arg(path(&tmp, "a"));
        c
    };
    let a = spawn_quiet(cmd_a);
    let last = *produce(&brokers, "log", &records, chunky()).last().expect("offsets");
    let last_seq = records.last().expect("records").0;
    wait_for("replica A to apply the whole log", Duration::from_secs(120), || {
        position(&path(&tmp, "a")).map(|p| p.sequence) == Some(last_seq)
    });
    drop(a);
    assert_eq!(position(&path(&tmp, "a")).map(|p| p.kafka_offset), Some(last));

    // Replica B replays the finished topic from the start.
    run_replica_ok(&path(&tmp, "b"), &brokers, "log");
    // C is built without Kafka at all, straight from the records.
    let c = apply_direct(&path(&tmp, "c"), &records, chunky());

    let a = checksum(&path(&tmp, "a"));
    let b = checksum(&path(&tmp, "b"));
    assert!(a.starts_with("checksum 0x"), "{a}");
    assert_eq!(a, b, "two replicas of the same topic differ");
    assert_eq!(a, c, "a replica differs from a clean replay of the records");
}

#[test]
fn kill_9_during_replay_loses_nothing_and_applies_nothing_twice() {
    let broker = MockBroker::start(&["log"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    // As many records as fit under the mock broker's 5 MiB cap: small blocks, no large ones.
    let opts = GenOptions { big_block_chance: 0.0, max_txs: 1, ..gen_opts(11) };
    let records = LogGenerator::records(opts, 8_000);
    // One record per Kafka batch, so that small fetches (below) really return few records.
    let frames: Vec<_> = records
        .iter()
        .map(|(s, r)| (*s, encode_record(CLUSTER, *s, r, chunky()).expect("encodes")))
        .collect();
    produce_frames_with(&brokers, "log", &frames, &[("linger.ms", "0"), ("batch.num.messages", "1")]);
    let last_seq = records.last().expect("records").0;
    let tmp = tempdir();

    let clean_dir = path(&tmp, "clean");
    let started = Instant::now();
    run_replica_ok(&clean_dir, &brokers, "log");
    let clean_time = started.elapsed();
    let clean = checksum(&clean_dir);
    assert_eq!(watermarks(&brokers, "log").0, 0, "the log must fit in the broker");
    eprintln!("clean replay of {} records: {clean_time:?}", records.len());

    // Stretch the replay out to seconds: one record per Kafka batch (above), small fetches, and a little
    // injected broker latency, so that there are many moments to kill it at and the test can see them.
    broker.set_round_trip_time(Duration::from_millis(1)).expect("latency injection");
    // Without --verify-priors, as production runs: catching up, blocks are grouped under one state root
    // per write batch, so the kills land inside and between groups. With --catch-up-without-wal the groups
    // skip the write-ahead log, so a kill also throws away what was caught up since the last flush of the
    // memtables: flushed every 20 ms here (a minute by default), so that the test sees the replica's
    // progress on disk and every kill lands with some of it unflushed.
    let slow_replica = |dir: &std::path::Path| {
        let mut cmd = replica_cmd_grouping(dir, &brokers, "log");
        cmd.args([
            "--kafka-option",
            "max.partition.fetch.bytes=16384",
            "--catch-up-without-wal",
            "--catch-up-flush-secs",
            "0.02",
        ]);
        cmd
    };

    let dir = path(&tmp, "killed");
    let mut rng = rand::rngs::StdRng::seed_from_u64(0xC0FFEE);
    // Each run is killed once it has applied a random number of records (at most its share of what is
    // left, so that twenty kills fit in the replay whatever this machine's speed). The test watches the
    // database from outside and sends SIGKILL the moment it sees the target, so the kill lands wherever the
    // replica happens to be: fetching, reassembling, applying or committing.
    let mut kills_mid_replay: u64 = 0;
    let mut attempts = 0;
    while kills_mid_replay < 20 {
        attempts += 1;
        assert!(attempts < 100, "could not land 20 kills mid-replay in 100 attempts");
        let before = position(&dir).map_or(0, |p| p.sequence);
        let share = (last_seq - before) / (20 - kills_mid_replay + 2);
        let target = before + rng.random_range(1..=share.max(1));
        let mut child = spawn_quiet(slow_replica(&dir));
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut finished = false;
        let (mut polls, mut polls_ok) = (0u32, 0u32);
        loop {
            if let Some(status) = child.0.try_wait().expect("child status") {
                assert!(status.success(), "replica failed on its own ({status}) before being killed");
                finished = true;
                break;
            }
            polls += 1;
            let seen = position(&dir);
            polls_ok += seen.is_some() as u32;
            if seen.is_some_and(|p| p.sequence >= target) {
                break;
            }
            assert!(Instant::now() < deadline, "replica made no progress to {target} in 60s");
            std::thread::sleep(Duration::from_millis(1));
        }
        eprintln!("kill attempt {attempts}: before {before}, target {target}, finished {finished}, polls ok {polls_ok}/{polls}");
        if finished {
            break; // nothing left to kill it at
        }
        child.0.kill().expect("SIGKILL");
        child.0.wait().expect("reaped");
        let after = position(&dir).map_or(0, |p| p.sequence);
        assert!(after >= target, "a killed replica lost applied records: {after} < {target}");
        if after < last_seq {
            kills_mid_replay += 1;
        }
    }
    assert!(kills_mid_replay >= 20, "only {kills_mid_replay} kills landed mid-replay");
    eprintln!("{kills_mid_replay} kills mid-replay in {attempts} attempts");
    run_replica_ok(&dir, &brokers, "log");
    assert_eq!(position(&dir).map(|p| p.sequence), Some(last_seq));
    assert_eq!(
        checksum(&dir),
        clean,
        "a replica killed {kills_mid_replay} times differs from a clean replay"
    );
    // The grouped replay, uninterrupted: it did group (its report counts the groups), and equals the clean
    // one-block-at-a-time replay, trie tables and trie root included.
    let grouped = path(&tmp, "grouped");
    let out = replica_cmd_grouping(&grouped, &brokers, "log").output().expect("replica runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let groups: u64 = stderr
        .rsplit(" block groups under one root")
        .nth(1)
        .and_then(|before| before.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("the replica reports its groups");
    assert!(groups > 10, "only {groups} groups in a catch-up of {} records", records.len());
    assert_eq!(checksum(&grouped), clean, "a grouped replay differs from a clean one");
}

/// Writes `good` records, replays them, then appends `bad` frames: the replica must stop with `expect` in
/// its error, a non-zero exit, and an unchanged database.
fn bad_log_case(topic: &str, bad: Vec<Vec<u8>>, expect: &str) {
    let broker = MockBroker::start(&[topic]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(3), 200);
    produce(&brokers, topic, &records, chunky());
    let tmp = tempdir();
    let dir = path(&tmp, "r");
    run_replica_ok(&dir, &brokers, topic);
    let before = checksum(&dir);
    let position_before = position(&dir);

    produce_frames(&brokers, topic, &[(200, bad)]);
    let out = run_replica(&dir, &brokers, topic);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{topic}: expected exit 3, stderr: {stderr}");
    assert!(stderr.contains(expect), "{topic}: error does not say {expect:?}: {stderr}");
    assert_eq!(checksum(&dir), before, "{topic}: a rejected record changed the database");
    assert_eq!(position(&dir), position_before);
}

fn next_record_frames(opts: EncodeOptions) -> Vec<Vec<u8>> {
    let mut g = LogGenerator::new(gen_opts(3));
    let mut rec = None;
    for _ in 0..=200 {
        rec = Some(g.next_record());
    }
    let (seq, rec) = rec.expect("record");
    encode_record(CLUSTER, seq, &rec, opts).expect("encodes")
}

#[test]
fn malformed_record_stops_the_replica_and_changes_nothing() {
    let mut frames = next_record_frames(EncodeOptions::default());
    let last = frames[0].len() - 1;
    frames[0][last] ^= 0xff; // payload byte: the CRC no longer matches
    bad_log_case("malformed", frames, "failed its CRC-32C check");
}

#[test]
fn unknown_version_stops_the_replica_and_changes_nothing() {
    let mut frames = next_record_frames(EncodeOptions::default());
    frames[0][2] = 9;
    bad_log_case("version", frames, "unknown log format version 9");
}

#[test]
fn truncated_chunk_stops_the_replica_and_changes_nothing() {
    // A record big enough for several chunks, the last one cut short.
    let mut g = LogGenerator::new(GenOptions { big_block_chance: 1.0, ..gen_opts(3) });
    let _ = (0..200).map(|_| g.next_record()).count();
    let mut rec = g.next_record();
    while !matches!(rec.1, Record::Block(_)) {
        rec = g.next_record();
    }
    let mut frames = encode_record(CLUSTER, 200, &rec.1, chunky()).expect("encodes");
    assert!(frames.len() >= 2, "record must be chunked");
    let last = frames.last_mut().expect("frames");
    last.truncate(last.len() / 2);
    bad_log_case("truncated", frames, "truncated");
}

/// A block record that leaves out one account's change (what a tracer blind spot in the publisher's client
/// would produce) is refused by the block's state root: the replica exits 3 naming the block and both
/// roots, and nothing of the block is written.
#[test]
fn a_record_that_leaves_out_a_change_stops_the_replica_naming_the_block() {
    let broker = MockBroker::start(&["omits"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(3), 300);
    let at = records
        .iter()
        .enumerate()
        .skip(150)
        .find(|(_, (_, r))| matches!(r, Record::Block(b) if b.state.len() >= 2))
        .map(|(i, _)| i)
        .expect("a block changing two accounts");
    produce(&brokers, "omits", &records[..at], chunky());
    let tmp = tempdir();
    let dir = path(&tmp, "r");
    run_replica_ok(&dir, &brokers, "omits");
    let (before, position_before) = (checksum(&dir), position(&dir));

    let (seq, Record::Block(mut block)) = records[at].clone() else { unreachable!("a block") };
    block.state.remove(0);
    let number = block.number;
    produce(&brokers, "omits", &[(seq, Record::Block(block))], chunky());
    let out = run_replica(&dir, &brokers, "omits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains(&format!("block {number}'s state root")), "{stderr}");
    assert_eq!(checksum(&dir), before, "the refused block changed the database");
    assert_eq!(position(&dir), position_before);
}

#[test]
fn sequence_gap_stops_the_replica_and_names_both_numbers() {
    let broker = MockBroker::start(&["gap"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(5), 60);
    produce(&brokers, "gap", &records[..50], chunky());
    produce(&brokers, "gap", &records[51..], chunky());
    let tmp = tempdir();
    let out = run_replica(&path(&tmp, "r"), &brokers, "gap");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("expects 50") && stderr.contains("holds 51"), "{stderr}");
    assert_eq!(position(&path(&tmp, "r")).map(|p| p.sequence), Some(49));
}

#[test]
fn duplicate_records_are_skipped() {
    let broker = MockBroker::start(&["dup"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(5), 80);
    // A publisher that crashed after writing 40..50 writes them again.
    produce(&brokers, "dup", &records[..50], chunky());
    produce(&brokers, "dup", &records[40..], chunky());
    let tmp = tempdir();
    run_replica_ok(&path(&tmp, "r"), &brokers, "dup");
    assert_eq!(checksum(&path(&tmp, "r")), apply_direct(&path(&tmp, "direct"), &records, chunky()));
}

#[test]
fn replica_older_than_retention_refuses_to_start() {
    let broker = MockBroker::start(&["ret"]).expect("mock broker");
    let brokers = broker.bootstrap_servers();
    let mut g = LogGenerator::new(GenOptions { big_block_chance: 0.0, ..gen_opts(9) });
    let head: Vec<_> = (0..100).map(|_| g.next_record()).collect();
    produce(&brokers, "ret", &head, chunky());
    let tmp = tempdir();
    let snapshot = path(&tmp, "snapshot");
    run_replica_ok(&snapshot, &brokers, "ret");
    let stored = position(&snapshot).expect("position").kafka_offset;

    // Write past the broker's per-partition cap (about 5 MiB): the oldest batches are dropped and the
    // topic's earliest offset really moves past the stored one.
    g.opts.big_block_chance = 0.5;
    g.opts.big_block_bytes = 200_000;
    let tail: Vec<_> = (0..150).map(|_| g.next_record()).collect();
    produce(&brokers, "ret", &tail, chunky());
    let (earliest, _) = watermarks(&brokers, "ret");
    assert!(earliest > stored + 1, "the earliest offset {earliest} did not move past the stored {stored}");

    let out = run_replica(&snapshot, &brokers, "ret");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for needle in
        ["topic ret", &format!("offset {stored}"), &format!("earliest offset available is {earliest}")]
    {
        assert!(stderr.contains(needle), "error does not say {needle:?}: {stderr}");
    }
    assert!(stderr.contains("older than"), "{stderr}");

    // An empty database needs the genesis record, which is gone too.
    let out = run_replica(&path(&tmp, "fresh"), &brokers, "ret");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

/// The same replica against genuine Apache Kafka (KRaft), in its own process.
#[test]
fn replica_on_apache_kafka_equals_a_clean_replay() {
    let broker = KafkaBroker::start().expect("Apache Kafka broker (see docs/testing.md)");
    broker.create_topic("log", &[]).expect("topic");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(gen_opts(21), 1500);
    produce(&brokers, "log", &records, chunky());
    let tmp = tempdir();
    run_replica_ok(&path(&tmp, "r"), &brokers, "log");
    assert_eq!(checksum(&path(&tmp, "r")), apply_direct(&path(&tmp, "direct"), &records, chunky()));
}

/// Real time-based retention on Apache Kafka: once records are older than `retention.ms`, the broker's
/// retention pass deletes their segments. A snapshot whose next record is gone refuses to start; a newer
/// snapshot, whose next record is written after the deletion, still resumes.
#[test]
fn kafka_retention_refuses_an_old_snapshot_and_resumes_a_newer_one() {
    let broker = KafkaBroker::start().expect("Apache Kafka broker (see docs/testing.md)");
    broker.create_topic("ret", &["cleanup.policy=delete", "retention.ms=8000"]).expect("topic");
    let brokers = broker.bootstrap_servers();
    let records = LogGenerator::records(GenOptions { big_block_chance: 0.0, ..gen_opts(23) }, 130);
    let tmp = tempdir();
    let (old, new) = (path(&tmp, "old"), path(&tmp, "new"));

    produce(&brokers, "ret", &records[..50], chunky());
    run_replica_ok(&old, &brokers, "ret");
    produce(&brokers, "ret", &records[50..100], chunky());
    run_replica_ok(&new, &brokers, "ret");
    let old_offset = position(&old).expect("old position").kafka_offset;
    let new_offset = position(&new).expect("new position").kafka_offset;

    // The broker checks retention every second: wait until it has deleted every record written so far.
    wait_for("Kafka's retention to delete the topic's records", Duration::from_secs(60), || {
        watermarks(&brokers, "ret").0 > new_offset
    });
    let refused = |phase: &str| {
        let (earliest, high) = watermarks(&brokers, "ret");
        eprintln!(
            "{phase}: earliest {earliest}, high {high}, old snapshot at {old_offset}, new at {new_offset}"
        );
        let out = run_replica(&old, &brokers, "ret");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{phase}: the old snapshot must be refused: {stderr}");
        assert!(stderr.contains("topic ret") && stderr.contains(&format!("offset {old_offset}")), "{stderr}");
        assert!(stderr.contains("retention"), "{stderr}");
        assert_eq!(position(&old).map(|p| p.kafka_offset), Some(old_offset), "refusal must not write");
    };
    // Emptied by retention: Kafka reports earliest = high = the next offset.
    refused("partition emptied");
    produce(&brokers, "ret", &records[100..], chunky());
    refused("new records after the gap");

    run_replica_ok(&new, &brokers, "ret");
    assert_eq!(position(&new).map(|p| p.sequence), Some(129));
    assert_eq!(checksum(&new), apply_direct(&path(&tmp, "direct"), &records, chunky()));

    // DeleteRecords, an operator's way to trim a topic, moves the earliest offset at once.
    let (_, high) = watermarks(&brokers, "ret");
    assert_eq!(broker.delete_records_before("ret", high - 10).expect("DeleteRecords"), high - 10);
    assert_eq!(watermarks(&brokers, "ret"), (high - 10, high));
}
