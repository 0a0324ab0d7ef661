//! `ec_store::Pipeline`: applying records while the one before is written gives exactly the database that
//! applying them one by one gives, with reorgs, wipes, code shared between neighbouring blocks, history
//! windows, duplicates and refused records.

use alloy_primitives::{keccak256, Address, Bytes, B256, U256};
use ec_log::{AccountChange, AccountState, Block, Record, Revert};
use ec_store::{Pipeline, Reads, Store, StoreError, StoreOptions, TrieMode};

use ec_testkit::{GenOptions, LogGenerator};
use std::sync::Arc;

mod common;
use common::assembled;

fn open(dir: &tempfile::TempDir, opts: &StoreOptions) -> Arc<Store> {
    Arc::new(Store::open(dir.path(), opts.clone()).expect("store opens"))
}

/// Applies `records` one by one into one store and through a pipeline into another; returns both.
fn both(
    opts: &StoreOptions,
    records: &[(u64, Record)],
) -> (Arc<Store>, Arc<Store>, u64, [tempfile::TempDir; 2]) {
    let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
    let (one_by_one, piped) = (open(&dirs[0], opts), open(&dirs[1], opts));
    for (seq, record) in records {
        one_by_one.apply(&assembled(*seq, record.clone())).expect("applies");
    }
    let mut pipeline = Pipeline::new(piped.clone()).expect("pipeline starts").hand_over_from(0);
    let mut committed = Vec::new();
    for (seq, record) in records {
        let step = pipeline.submit(assembled(*seq, record.clone())).expect("applies");
        assert_eq!(step.duplicate, None);
        committed.extend(step.committed.into_iter().map(|r| r.envelope.sequence));
    }
    committed.extend(pipeline.flush().expect("last batch").into_iter().map(|r| r.envelope.sequence));
    let expected: Vec<u64> = records.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(committed, expected, "every record reported committed, once, in order");
    let early = pipeline.prepared_early();
    (one_by_one, piped, early, dirs)
}

#[test]
fn a_pipelined_replay_writes_what_applying_one_by_one_writes() {
    let gen = GenOptions { reorg_chance: 0.05, max_reorg_depth: 5, ..GenOptions::default() };
    let records = LogGenerator::records(gen.clone(), 1_500);
    let wipes = records
        .iter()
        .filter(|(_, r)| matches!(r, Record::Block(b) if b.state.iter().any(|c| c.storage_wiped || c.account.is_none())))
        .count();
    assert!(wipes > 10, "the log wipes accounts ({wipes} blocks)");
    // The trie off: with it on, every block walks the trie the block in flight updates, so it waits.
    let off = StoreOptions { state_trie: TrieMode::Off, ..StoreOptions::default() };
    let windows = [
        StoreOptions { undo_window: 10, ..off.clone() },
        // A history window: each block prunes the history of the block `k` behind it.
        StoreOptions { undo_window: 10, history_blocks: Some(12), ..off.clone() },
        // One block: each block prunes the undo entry of the block in flight, so it must wait for it.
        StoreOptions { undo_window: 1, history_blocks: Some(1), ..off.clone() },
        // The trie on: blocks are grouped, a group gathered while the one before it is written, and the
        // trie tables come out the same.
        StoreOptions { undo_window: 10, ..StoreOptions::default() },
        // The same with a history window: a block that prunes a block of the group in flight waits for it.
        StoreOptions { undo_window: 10, history_blocks: Some(12), ..StoreOptions::default() },
    ];
    for opts in windows {
        let records: Vec<_> = match opts.undo_window {
            // No reverts: a window of one block cannot undo the generator's reorgs.
            1 => LogGenerator::records(
                GenOptions { reorg_chance: 0.0, max_reorg_depth: 1, ..gen.clone() },
                1_500,
            ),
            _ => records.clone(),
        };
        let (one_by_one, piped, early, _dirs) = both(&opts, &records);
        assert_eq!(
            piped.checksum().expect("checksum"),
            one_by_one.checksum().expect("checksum"),
            "with {opts:?}"
        );
        assert_eq!(piped.first_state_block(), one_by_one.first_state_block());
        if opts.state_trie != TrieMode::Off {
            // The trie tables 1,500 blocks of updates (reorgs and wipes among them) leave are the ones a build
            // from the state tables writes, byte for byte: the leaf hashes the nodes keep included.
            let trie = ["account_trie", "storage_trie", "storage_roots"];
            let sum = piped.checksum().expect("checksum");
            for table in trie {
                assert!(
                    sum.tables.iter().any(|(name, entries, _)| *name == table && *entries > 0),
                    "{table}"
                );
            }
            let replayed = sum.of_tables(&trie);
            piped.build_trie().expect("builds");
            assert_eq!(piped.checksum().expect("checksum").of_tables(&trie), replayed, "trie tables");
        }
        // Each block waits for the one before where it prunes the undo entry in flight (a window of 1). With
        // the trie on, the records prepared early are the first blocks of groups (of 16 blocks at most,
        // cut short by reorgs and wipes).
        let least = match (opts.history_blocks, opts.state_trie) {
            (Some(1), _) => 0,
            (_, TrieMode::Off) => records.len() as u64 / 2,
            _ => records.len() as u64 / 100,
        };
        assert!(early >= least, "only {early} of {} records prepared early with {opts:?}", records.len());
    }
}

/// Everything a block changes, for one new account holding `code`.
/// (A stand-in header without the state root: the tests that use it run with the trie off.)
fn deploy(number: u64, parent_hash: B256, address: Address, code: &Bytes) -> Block {
    let header = alloy_consensus::Header { number, parent_hash, ..Default::default() };
    let rlp = alloy_rlp::encode(&header);
    Block {
        number,
        hash: keccak256(&rlp),
        parent_hash,
        timestamp: number,
        header: rlp.into(),
        transactions: vec![],
        receipts: vec![],
        withdrawals: None,
        state: vec![AccountChange {
            address,
            storage_wiped: false,
            prior: None,
            account: Some(AccountState { balance: U256::from(1), nonce: 1, code: Some(code.clone()) }),
            storage: vec![],
        }],
        receipt_roots: Vec::new(),
        ommers: Vec::new(),
    }
}

/// Block 2 deploys the code block 1 deployed, prepared while block 1 is still being written: it must not
/// claim the code as its own, or reverting it would delete code block 1's contract still runs.
#[test]
fn code_stored_by_the_block_in_flight_stays_when_the_next_block_is_reverted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, &StoreOptions { state_trie: TrieMode::Off, ..StoreOptions::default() });
    let mut pipeline = Pipeline::new(store.clone()).expect("pipeline starts").hand_over_from(0);
    let genesis = LogGenerator::records(GenOptions::default(), 1).remove(0).1;
    let Record::Genesis(g) = &genesis else { panic!("a genesis first") };
    let parent = g.block.hash;
    let code = Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]);
    let one = deploy(1, parent, Address::repeat_byte(1), &code);
    let two = deploy(2, one.hash, Address::repeat_byte(2), &code);
    let two_hash = two.hash;
    pipeline.submit(assembled(0, genesis)).expect("genesis");
    pipeline.submit(assembled(1, Record::Block(one))).expect("block 1");
    pipeline.submit(assembled(2, Record::Block(two))).expect("block 2");
    assert!(pipeline.prepared_early() >= 1, "block 2 was prepared while block 1 was written");
    pipeline.submit(assembled(3, Record::Revert(Revert { number: 2, hash: two_hash }))).expect("revert");
    pipeline.flush().expect("written");
    assert_eq!(store.code(&keccak256(&code)).expect("reads"), Some(code.clone()), "block 1's code stays");
    assert!(store.account(&Address::repeat_byte(1)).expect("reads").is_some());
    assert!(store.account(&Address::repeat_byte(2)).expect("reads").is_none());
}

/// The same with groups (the trie on, unchecked: the stand-in headers carry no root): a group that starts
/// while the group before it is written may deploy that group's new code again, in any of its blocks; it must
/// not claim it either. The write races the preparation, so the case is run many times.
#[test]
fn code_stored_by_the_group_in_flight_stays_when_a_block_of_the_next_group_is_reverted() {
    let opts = StoreOptions { state_trie: TrieMode::Unchecked, ..StoreOptions::default() };
    let code = Bytes::from_static(&[0x60, 0x00, 0x60, 0x00, 0xf3]);
    let other = |n: u8| Bytes::from(vec![0x60, n, 0x60, 0x00, 0xf3]);
    let genesis = LogGenerator::records(GenOptions::default(), 1).remove(0).1;
    let Record::Genesis(g) = &genesis else { panic!("a genesis first") };
    for round in 0..30 {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = open(&dir, &opts);
        let mut pipeline =
            Pipeline::new(store.clone()).expect("pipeline starts").hand_over_from(0).group_blocks(2);
        // Group 1: blocks 1-2, block 1 storing `code` first. Group 2: blocks 3-4, block 4 storing it again.
        let one = deploy(1, g.block.hash, Address::repeat_byte(1), &code);
        let two = deploy(2, one.hash, Address::repeat_byte(2), &other(2));
        let three = deploy(3, two.hash, Address::repeat_byte(3), &other(3));
        let four = deploy(4, three.hash, Address::repeat_byte(4), &code);
        let four_hash = four.hash;
        pipeline.submit(assembled(0, genesis.clone())).expect("genesis");
        for (seq, block) in [(1, one), (2, two), (3, three), (4, four)] {
            pipeline.submit(assembled(seq, Record::Block(block))).expect("block");
        }
        assert!(
            pipeline.prepared_early() >= 1,
            "round {round}: group 2 was gathered while group 1 was written"
        );
        pipeline.submit(assembled(5, Record::Revert(Revert { number: 4, hash: four_hash }))).expect("revert");
        pipeline.flush().expect("written");
        assert_eq!(
            store.code(&keccak256(&code)).expect("reads"),
            Some(code.clone()),
            "round {round}: block 1's code"
        );
        assert!(store.account(&Address::repeat_byte(4)).expect("reads").is_none());
    }
}

/// A record sent again is a duplicate whether its first copy is written or still in flight; a different
/// record under an applied sequence is refused; a refused record writes nothing, and the batch in flight
/// before it is written.
#[test]
fn duplicates_and_refused_records_in_a_pipeline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, &StoreOptions::default());
    let gen = GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() };
    let records = LogGenerator::records(gen, 6);
    // The writer thread's hand-over is the subject: no groups.
    let mut pipeline =
        Pipeline::new(store.clone()).expect("pipeline starts").hand_over_from(0).group_blocks(1);
    for (seq, record) in &records[..4] {
        pipeline.submit(assembled(*seq, record.clone())).expect("applies");
    }
    assert!(pipeline.in_flight());
    // Sequence 3 is in flight, 2 written.
    for seq in [2, 3] {
        let again = pipeline.submit(assembled(seq, records[seq as usize].1.clone())).expect("a duplicate");
        assert_eq!(again.duplicate, Some(3));
    }
    let mut conflicting = assembled(3, records[3].1.clone());
    conflicting.record_crc = 999;
    let err = pipeline.submit(conflicting).expect_err("a different record under sequence 3");
    assert!(matches!(err, StoreError::ConflictingDuplicate { sequence: 3 }), "{err}");
    assert!(!pipeline.in_flight(), "the batch in flight was written before the error returned");
    assert_eq!(store.position().expect("reads").map(|p| p.sequence), Some(3));
    let gap = pipeline.submit(assembled(5, records[5].1.clone())).expect_err("sequence 4 is missing");
    assert!(matches!(gap, StoreError::SequenceGap { expected: 4, found: 5, .. }), "{gap}");
    let before = store.checksum().expect("checksum");
    let err = pipeline.submit(assembled(4, records[5].1.clone())).expect_err("block 5 is not next");
    assert!(matches!(err, StoreError::NotNextBlock { .. }), "{err}");
    assert_eq!(store.checksum().expect("checksum"), before, "a refused record writes nothing");
    pipeline.submit(assembled(4, records[4].1.clone())).expect("the right record 4");
    drop(pipeline);
    assert_eq!(
        store.position().expect("reads").map(|p| p.sequence),
        Some(4),
        "dropping writes the batch in flight"
    );
}

/// With the default threshold a small record's batch is written in place (handing it to the writer thread
/// would cost more than the overlap saves), and the result is the same.
#[test]
fn small_batches_are_written_in_place() {
    let records = LogGenerator::records(GenOptions::default(), 300);
    let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
    let opts = StoreOptions::default();
    let (one_by_one, piped) = (open(&dirs[0], &opts), open(&dirs[1], &opts));
    let mut pipeline = Pipeline::new(piped.clone()).expect("pipeline starts").group_blocks(1);
    for (seq, record) in &records {
        one_by_one.apply(&assembled(*seq, record.clone())).expect("applies");
        let step = pipeline.submit(assembled(*seq, record.clone())).expect("applies");
        assert_eq!(step.committed.len(), 1, "written at once");
        assert!(!pipeline.in_flight());
    }
    assert_eq!(piped.checksum().expect("checksum"), one_by_one.checksum().expect("checksum"));
}

/// Catching up with the trie on, blocks are written in groups, one batch and one root check each: the
/// database is the one applying them one by one gives. A block in the middle of a group that leaves out a
/// change is still found and named (the group is applied again block by block), and every block before it
/// is kept.
#[test]
fn grouped_blocks_check_one_root_and_still_name_a_bad_block() {
    let gen = GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.1, ..GenOptions::default() };
    let records = LogGenerator::records(gen, 400);
    let opts = StoreOptions::default();
    let (one_by_one, piped, _, _dirs) = {
        let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
        let (a, b) = (open(&dirs[0], &opts), open(&dirs[1], &opts));
        for (seq, record) in &records {
            a.apply(&assembled(*seq, record.clone())).expect("applies");
        }
        let mut pipeline = Pipeline::new(b.clone()).expect("pipeline starts");
        let mut committed = 0;
        for (seq, record) in &records {
            committed += pipeline.submit(assembled(*seq, record.clone())).expect("applies").committed.len();
        }
        committed += pipeline.flush().expect("flushes").len();
        assert_eq!(committed, records.len(), "every record reported committed once");
        let groups = pipeline.groups_written();
        assert!(
            groups > 0 && groups < records.len() as u64 / 4,
            "{groups} groups for {} records",
            records.len()
        );
        (a, b, groups, dirs)
    };
    assert_eq!(piped.checksum().expect("checksum"), one_by_one.checksum().expect("checksum"));

    // Block `bad` leaves out an account's change: the blocks before it are written, it is refused by name.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, &opts);
    let bad = records
        .iter()
        .position(|(seq, r)| *seq > 40 && matches!(r, Record::Block(b) if b.state.len() >= 2 && !b.state.iter().any(|c| c.storage_wiped || c.account.is_none())))
        .expect("a block changing two accounts");
    let mut pipeline = Pipeline::new(store.clone()).expect("pipeline starts");
    let mut result = Ok(());
    for (i, (seq, record)) in records.iter().enumerate().take(bad + 5) {
        let mut record = record.clone();
        if i == bad {
            if let Record::Block(b) = &mut record {
                b.state.remove(0);
            }
        }
        if let Err(e) = pipeline.submit(assembled(*seq, record)) {
            result = Err(e);
            break;
        }
    }
    if result.is_ok() {
        result = pipeline.flush().map(|_| ());
    }
    let Record::Block(b) = &records[bad].1 else { unreachable!("a block") };
    let err = result.expect_err("the bad block is refused");
    assert!(matches!(err, StoreError::StateRootMismatch { number, .. } if number == b.number), "{err}");
    assert_eq!(
        store.head().expect("reads").map(|h| h.number),
        Some(b.number - 1),
        "the blocks before it stay"
    );
}

/// A serving replica that fell behind applies blocks in groups (not the start-up catch-up): each group is
/// one unit of the trie's recent past. A proof at a block between groups reads it, one inside a group walks
/// every key changed since, and both equal the walked proof and the one-by-one store's; the start-up
/// catch-up keeps nothing.
#[test]
fn groups_applied_while_serving_keep_the_tries_recent_past_between_them() {
    use ec_store::Proofs;

    let gen = GenOptions { seed: 5, max_txs: 8, reorg_chance: 0.0, ..GenOptions::default() };
    let records = LogGenerator::records(gen.clone(), 240);
    let opts = StoreOptions { undo_window: 200, ..StoreOptions::default() };
    let (one_by_one, piped, _, _dirs) = both(&opts, &records);
    let head = piped.head().expect("head").expect("a head").number;
    let held = piped.trie_history().blocks;
    assert!(held >= 60, "{held} blocks held");
    let addresses: Vec<Address> =
        (0..8u64).map(|i| Address::left_padding_from(&(i + 0x1000).to_be_bytes())).collect();
    let slots = [B256::ZERO, B256::with_last_byte(3)];
    for n in head - 60..head {
        for address in &addresses {
            let piped_proof = piped.proof(address, &slots, n).expect("proves");
            assert_eq!(piped_proof, piped.proof_by_walking(address, &slots, n, head).expect("walks"), "{n}");
            assert_eq!(piped_proof, one_by_one.proof(address, &slots, n).expect("proves"), "{n}");
        }
    }
    let stats = piped.trie_history();
    assert!(stats.proofs_read > 0 && stats.proofs_walked > 0, "groups between and around: {stats:?}");
    assert_eq!(one_by_one.trie_history().proofs_walked, 0, "one by one, every block is held");

    let dir = tempfile::tempdir().expect("tempdir");
    let caught_up = open(&dir, &opts);
    let mut pipeline = Pipeline::new(caught_up.clone()).expect("pipeline starts");
    pipeline.set_catching_up(true);
    for (seq, record) in &records {
        pipeline.submit(assembled(*seq, record.clone())).expect("applies");
    }
    pipeline.flush().expect("last batch");
    assert_eq!(caught_up.trie_history().blocks, 0, "the start-up catch-up keeps nothing");
}
