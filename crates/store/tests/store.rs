//! The store's contract: reverts restore exactly, history reads answer for any block held, and every
//! rejected record leaves the database as it was.

use std::collections::HashMap;

use alloy_primitives::{keccak256, Address, B256, U256};
use ec_log::{Assembled, Envelope, Record, RecordKind, Revert, FORMAT_VERSION};
use ec_store::{ApplyOutcome, Reads, Store, StoreError, StoreOptions, TrieMode};
use ec_testkit::{GenOptions, LogGenerator};

const CLUSTER: &str = "c";

/// The tables that hold chain state: everything but the bookkeeping in `meta` and the undo index
/// (`block_changes`), whose window slides forward with the highest block seen, so after a reorg it reaches
/// less far back than it did when the same block was first the head.
const STATE_TABLES: &[&str] = &[
    "canonical",
    "blocks",
    "block_heads",
    "block_txs",
    "accounts",
    "storage",
    "code",
    "account_history",
    "storage_history",
    "tx_index",
    "log_addresses",
    "log_topics",
];

fn assembled(sequence: u64, record: Record) -> Assembled {
    Assembled {
        envelope: Envelope {
            version: FORMAT_VERSION,
            kind: record.kind(),
            cluster_id: CLUSTER.into(),
            sequence,
        },
        record,
        first_offset: sequence as i64,
        last_offset: sequence as i64,
        payload_len: 0,
        record_crc: 0,
    }
}

fn open(dir: &tempfile::TempDir, undo_window: u64) -> Store {
    Store::open(dir.path(), StoreOptions { undo_window, ..StoreOptions::default() }).expect("store opens")
}

/// [`open`] with the trie off, for the tests whose hand-made headers commit to no real state root.
fn open_trieless(dir: &tempfile::TempDir, undo_window: u64) -> Store {
    let opts = StoreOptions { undo_window, state_trie: TrieMode::Off, ..StoreOptions::default() };
    Store::open(dir.path(), opts).expect("store opens")
}

fn state_digest(store: &Store) -> B256 {
    store.checksum().expect("checksum").of_tables(STATE_TABLES)
}

fn addresses(opts: &GenOptions) -> Vec<Address> {
    (0..opts.accounts as u64).map(|i| Address::left_padding_from(&(i + 0x1000).to_be_bytes())).collect()
}

#[test]
fn every_revert_restores_the_exact_state_of_its_parent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, 100);
    let opts = GenOptions { reorg_chance: 0.1, max_reorg_depth: 6, ..GenOptions::default() };
    let mut gen = LogGenerator::new(opts);
    // State digest at the moment each block became the head, by number (rewritten on a reorg).
    let mut digest_at: HashMap<u64, B256> = HashMap::new();
    let mut reverts = 0;
    for _ in 0..600 {
        let (seq, record) = gen.next_record();
        let reverted = match &record {
            Record::Revert(r) => Some(r.number),
            _ => None,
        };
        assert_eq!(store.apply(&assembled(seq, record)).expect("applies"), ApplyOutcome::Applied);
        let head = store.head().expect("head").expect("has a head");
        assert_eq!(Some(head), gen.head(), "store head follows the generator's chain");
        match reverted {
            Some(n) => {
                reverts += 1;
                assert_eq!(head.number, n - 1);
                assert_eq!(
                    Some(&state_digest(&store)),
                    digest_at.get(&head.number),
                    "revert of {n} is not exact"
                );
            }
            None => {
                digest_at.insert(head.number, state_digest(&store));
            }
        }
    }
    assert!(reverts > 40, "the log must exercise reverts, had {reverts}");
}

/// A reverted block stays readable by (number, hash), logs and all, as long as the undo window (a polling
/// log filter reports its logs as removed from it), and is pruned with the history of its height.
#[test]
fn reverted_blocks_are_kept_for_the_undo_window() {
    let dir = tempfile::tempdir().expect("tempdir");
    let window = 16;
    let store = open(&dir, window);
    let opts = GenOptions { reorg_chance: 0.1, max_reorg_depth: 3, ..GenOptions::default() };
    let mut gen = LogGenerator::new(opts);
    let mut reverted: Vec<(u64, B256)> = Vec::new();
    let mut pruned = 0;
    for _ in 0..600 {
        let (seq, record) = gen.next_record();
        let revert = match &record {
            Record::Revert(r) => Some((r.number, r.hash, store.block_by_hash(&r.hash).expect("reads"))),
            _ => None,
        };
        store.apply(&assembled(seq, record)).expect("applies");
        if let Some((number, hash, before)) = revert {
            let kept = store.reverted_block(number, &hash).expect("reads").expect("kept once reverted");
            assert_eq!(Some(kept), before, "the reverted block as it was");
            reverted.push((number, hash));
        }
        let head = store.head().expect("head").expect("a head").number;
        for (number, hash) in &reverted {
            if head >= number + 2 * window + 2 {
                assert!(store.reverted_block(*number, hash).expect("reads").is_none(), "{number} pruned");
                pruned += 1;
            }
        }
        reverted.retain(|(number, _)| head < number + 2 * window + 2);
    }
    assert!(pruned > 10, "the log must revert and then prune blocks, pruned {pruned}");
}

/// An account and its slots as one block left them.
type Seen = (Option<ec_store::tables::StoredAccount>, Vec<B256>);

/// A store, the generator's accounts and slots, and the generator (8 slots per account).
fn state_fixture(dir: &tempfile::TempDir) -> (Store, Vec<Address>, Vec<B256>, LogGenerator) {
    let opts = GenOptions { slots: 8, ..GenOptions::default() };
    let addrs = addresses(&opts);
    let slots = (0..opts.slots).map(|s| B256::from(U256::from(s))).collect();
    (open(dir, 100), addrs, slots, LogGenerator::new(opts))
}

#[test]
fn state_at_any_block_equals_the_state_when_that_block_was_head() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, addrs, slots, mut gen) = state_fixture(&dir);
    let mut seen: HashMap<u64, Vec<Seen>> = HashMap::new();
    for _ in 0..600 {
        let (seq, record) = gen.next_record();
        let is_block = matches!(record, Record::Block(_) | Record::Genesis(_));
        store.apply(&assembled(seq, record)).expect("applies");
        if is_block {
            let head = store.head().expect("head").expect("head").number;
            let now = addrs
                .iter()
                .map(|a| {
                    let account = store.account(a).expect("reads");
                    let values = slots.iter().map(|s| store.storage(a, s).expect("reads")).collect();
                    (account, values)
                })
                .collect();
            seen.insert(head, now);
        }
    }
    let head = store.head().expect("head").expect("head").number;
    let mut checked = 0;
    for number in 0..=head {
        let then = &seen[&number];
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(store.account_at(a, number).expect("reads"), then[i].0, "{a} at block {number}");
            for (j, s) in slots.iter().enumerate() {
                assert_eq!(
                    store.storage_at(a, s, number).expect("reads"),
                    then[i].1[j],
                    "{a} slot {s} at {number}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 10_000);
}

/// A view (what one RPC request reads) answers as of the instant it was taken, whatever is applied and
/// reverted after it; the store itself moves on.
#[test]
fn a_view_answers_as_of_its_instant_while_records_are_applied() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, addrs, slots, mut gen) = state_fixture(&dir);
    let snapshot = |r: &dyn Fn(&Address) -> Seen| addrs.iter().map(r).collect::<Vec<Seen>>();
    let mut views_checked = 0;
    for round in 0..40 {
        for _ in 0..10 {
            let (seq, record) = gen.next_record();
            store.apply(&assembled(seq, record)).expect("applies");
        }
        let view = store.view();
        let head = view.head().expect("head");
        let Some(head) = head else { continue };
        let state = |a: &Address| -> Seen {
            (
                view.account(a).expect("reads"),
                slots.iter().map(|s| view.storage(a, s).expect("reads")).collect(),
            )
        };
        let before = snapshot(&state);
        let body = view.block_by_hash(&head.hash).expect("reads").expect("the head's body");
        // Records applied after the view: blocks, reverts (which delete the head's body) and heartbeats.
        for _ in 0..(5 + round % 7) {
            let (seq, record) = gen.next_record();
            store.apply(&assembled(seq, record)).expect("applies");
        }
        assert_eq!(view.head().expect("head"), Some(head), "round {round}: the view's head moved");
        assert_eq!(snapshot(&state), before, "round {round}: the view's state moved");
        assert_eq!(view.block_by_hash(&head.hash).expect("reads"), Some(body), "round {round}: body");
        assert_eq!(view.canonical_hash(head.number).expect("reads"), Some(head.hash));
        for (i, a) in addrs.iter().enumerate() {
            assert_eq!(
                view.account_at(a, head.number).expect("reads"),
                before[i].0,
                "{a} at the view's head"
            );
        }
        if store.head().expect("head") != Some(head) {
            views_checked += 1;
        }
    }
    assert!(views_checked > 30, "the store moved past only {views_checked} views");
}

/// Applies `record` expecting `check` to accept the error, then proves the database did not change.
fn rejected(store: &Store, seq: u64, record: Record, check: impl Fn(&StoreError) -> bool) {
    let before = store.checksum().expect("checksum");
    let position = store.position().expect("position");
    let err = store.apply(&assembled(seq, record)).expect_err("must be rejected");
    assert!(check(&err), "unexpected error: {err}");
    assert_eq!(store.checksum().expect("checksum"), before, "rejected record changed the database: {err}");
    assert_eq!(store.position().expect("position"), position);
}

/// The tracer-blind-spot case: a record that leaves out one account's change, or one slot's, or misstates a
/// balance, is refused by the block's state root, naming the block, and nothing of it is written; the block
/// as it should be then applies.
#[test]
fn a_record_that_leaves_out_a_change_is_refused_by_the_state_root() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, 16);
    let gen = GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() };
    let records = LogGenerator::records(gen, 40);
    let (at, whole) = records
        .iter()
        .enumerate()
        .skip(5)
        .find_map(|(i, (_, r))| match r {
            Record::Block(b) if b.state.len() >= 2 && b.state.iter().any(|c| !c.storage.is_empty()) => {
                Some((i, b.clone()))
            }
            _ => None,
        })
        .expect("a block changing two accounts and a slot");
    for (seq, rec) in &records[..at] {
        store.apply(&assembled(*seq, rec.clone())).expect("applies");
    }
    let seq = records[at].0;
    let mut no_account = whole.clone();
    no_account.state.remove(0);
    let mut no_slot = whole.clone();
    let with_slots = no_slot.state.iter().position(|c| !c.storage.is_empty()).expect("a slot");
    no_slot.state[with_slots].storage.remove(0);
    let mut wrong_balance = whole.clone();
    if let Some(account) = wrong_balance.state.iter_mut().find_map(|c| c.account.as_mut()) {
        account.balance += U256::from(1);
    }
    for (name, bad) in
        [("an account left out", no_account), ("a slot left out", no_slot), ("a balance", wrong_balance)]
    {
        rejected(&store, seq, Record::Block(bad), |e| {
            let named = e.to_string().contains(&format!("block {}", whole.number));
            matches!(e, StoreError::StateRootMismatch { number, .. } if *number == whole.number) && named
        });
        assert_eq!(store.head().expect("head").map(|h| h.number), Some(whole.number - 1), "{name}");
    }
    store.apply(&assembled(seq, Record::Block(whole))).expect("the whole record applies");
}

#[test]
fn rejected_records_leave_the_database_unchanged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, 3);
    let records = LogGenerator::records(
        GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() },
        12,
    );

    // Nothing but genesis may come first.
    rejected(&store, 0, records[1].1.clone(), |e| matches!(e, StoreError::MissingGenesis { .. }));
    for (seq, rec) in &records[..10] {
        store.apply(&assembled(*seq, rec.clone())).expect("applies");
    }
    let Record::Block(next) = records[10].1.clone() else { panic!("block expected") };

    rejected(&store, 12, Record::Block(next.clone()), |e| {
        matches!(e, StoreError::SequenceGap { applied: Some(9), expected: 10, found: 12 })
    });
    let mut wrong_parent = next.clone();
    wrong_parent.parent_hash = B256::repeat_byte(1);
    rejected(&store, 10, Record::Block(wrong_parent), |e| matches!(e, StoreError::NotNextBlock { .. }));
    let mut wrong_hash = next.clone();
    wrong_hash.hash = keccak256(b"not the header");
    rejected(&store, 10, Record::Block(wrong_hash), |e| matches!(e, StoreError::BadBlock { .. }));
    let mut skipped = next.clone();
    skipped.number += 1;
    rejected(&store, 10, Record::Block(skipped), |e| matches!(e, StoreError::NotNextBlock { .. }));
    rejected(&store, 10, records[0].1.clone(), |e| matches!(e, StoreError::UnexpectedGenesis { .. }));
    let head = store.head().expect("head").expect("head");
    rejected(&store, 10, Record::Revert(Revert { number: head.number, hash: B256::ZERO }), |e| {
        matches!(e, StoreError::RevertNotHead { .. })
    });
    let mut other = assembled(10, Record::Block(next.clone()));
    other.envelope.cluster_id = "other".into();
    let before = store.checksum().expect("checksum");
    assert!(matches!(store.apply(&other), Err(StoreError::WrongCluster { .. })));
    assert_eq!(store.checksum().expect("checksum"), before);

    // A duplicate is skipped, not an error, and writes nothing.
    let before = store.checksum().expect("checksum");
    assert_eq!(
        store.apply(&assembled(5, records[5].1.clone())).expect("skipped"),
        ApplyOutcome::Duplicate { applied: 9 }
    );
    assert_eq!(store.checksum().expect("checksum"), before);
    // The same sequence as the last applied record but other contents: the log has diverged.
    let mut conflicting = assembled(9, records[9].1.clone());
    conflicting.record_crc = 7;
    assert!(matches!(store.apply(&conflicting), Err(StoreError::ConflictingDuplicate { sequence: 9 })));
    assert_eq!(store.checksum().expect("checksum"), before);
    assert_eq!(RecordKind::Block, Record::Block(next).kind());
}

/// Every prior value the generator writes (reorgs, wipes, deletions, re-creations included) is the value the
/// database held: `--verify-priors` accepts the whole log.
#[test]
fn verify_priors_accepts_a_log_whose_priors_are_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions { undo_window: 100, verify_priors: true, ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).expect("opens");
    let gen = GenOptions { reorg_chance: 0.1, max_reorg_depth: 6, ..GenOptions::default() };
    let mut checked_slots = 0;
    for (seq, record) in LogGenerator::records(gen, 800) {
        if let Record::Block(b) = &record {
            checked_slots +=
                b.state.iter().filter(|c| !c.storage_wiped).map(|c| c.storage.len()).sum::<usize>();
        }
        store.apply(&assembled(seq, record)).expect("priors match the database");
    }
    assert!(checked_slots > 500, "only {checked_slots} slot priors checked");
}

/// A block whose priors disagree with the database: `--verify-priors` refuses it, naming the value and both
/// sides, and writes nothing. Without verification the store takes the record's word (it reads nothing per
/// key): a revert then restores the record's prior.
#[test]
fn a_wrong_prior_is_refused_when_verified_and_believed_otherwise() {
    let gen = GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() };
    let records = LogGenerator::records(gen, 12);
    let Record::Block(next) = records[10].1.clone() else { panic!("block expected") };
    let i = next.state.iter().position(|c| c.account.is_some() && !c.storage_wiped).expect("a live account");
    let address = next.state[i].address;

    let mut wrong_account = next.clone();
    let mut prior = wrong_account.state[i].prior.unwrap_or(ec_log::AccountPrior {
        balance: U256::ZERO,
        nonce: 0,
        code_hash: alloy_primitives::KECCAK256_EMPTY,
    });
    prior.balance += U256::from(1);
    wrong_account.state[i].prior = Some(prior);
    let mut wrong_slot = next.clone();
    let j = wrong_slot.state.iter().position(|c| !c.storage_wiped && !c.storage.is_empty()).expect("a slot");
    wrong_slot.state[j].storage[0].prior = B256::repeat_byte(0x5a);

    let dir = tempfile::tempdir().expect("tempdir");
    let opts = StoreOptions { undo_window: 16, verify_priors: true, ..StoreOptions::default() };
    let store = Store::open(dir.path(), opts).expect("opens");
    for (seq, rec) in &records[..10] {
        store.apply(&assembled(*seq, rec.clone())).expect("applies");
    }
    rejected(&store, 10, Record::Block(wrong_account.clone()), |e| {
        matches!(e, StoreError::PriorMismatch { number, what, .. }
            if *number == next.number && *what == format!("account {address}"))
    });
    rejected(&store, 10, Record::Block(wrong_slot), |e| {
        matches!(e, StoreError::PriorMismatch { what, record, .. }
            if what.starts_with("slot ") && record.contains("5a5a5a"))
    });
    drop(store);

    // Unverified, the block applies: a prior is history, not state, so the block's root still holds. Its
    // revert restores the wrong prior, which the trie catches: the parent's root no longer comes out.
    let store = open(&dir, 16);
    store.apply(&assembled(10, Record::Block(wrong_account.clone()))).expect("believed without verification");
    let revert = Record::Revert(Revert { number: next.number, hash: next.hash });
    rejected(
        &store,
        11,
        revert.clone(),
        |e| matches!(e, StoreError::StateRootMismatch { number, .. } if *number == next.number),
    );
    drop(store);
    // Without the trie, nothing notices: the revert restores what the record said.
    let store = open_trieless(&dir, 16);
    store.apply(&assembled(11, revert)).expect("reverts");
    assert_eq!(store.account(&address).expect("reads").map(|a| a.balance), Some(prior.balance));
}

#[test]
fn reverts_deeper_than_the_undo_window_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, 3);
    let records = LogGenerator::records(
        GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() },
        10,
    );
    for (seq, rec) in &records {
        store.apply(&assembled(*seq, rec.clone())).expect("applies");
    }
    // Blocks 7, 8 and 9 are inside the window of 3; block 6 is not.
    let mut seq = 10;
    for n in (7..=9).rev() {
        let hash = store.canonical_hash(n).expect("reads").expect("canonical");
        store.apply(&assembled(seq, Record::Revert(Revert { number: n, hash }))).expect("inside the window");
        seq += 1;
    }
    let hash = store.canonical_hash(6).expect("reads").expect("canonical");
    rejected(&store, seq, Record::Revert(Revert { number: 6, hash }), |e| {
        matches!(e, StoreError::RevertOutsideWindow { number: 6, window: 3, .. })
    });
}

/// The undo window is stored with the database: reopened with a smaller one, the undo data beyond it is gone
/// at once (a revert that deep is refused, not half applied); reopened with a larger one, reverts still stop
/// where the undo data ends.
#[test]
fn an_undo_window_changed_across_restarts_is_never_silently_wrong() {
    let dir = tempfile::tempdir().expect("tempdir");
    let records = LogGenerator::records(
        GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() },
        20,
    );
    {
        let store = open(&dir, 10);
        for (seq, rec) in &records {
            store.apply(&assembled(*seq, rec.clone())).expect("applies");
        }
    }
    // Head 19, window 10 held undo data for blocks 10..=19. Reopened with 3: only 17..=19 remain.
    let store = open(&dir, 3);
    let revert = |store: &Store, seq: u64, n: u64| {
        let hash = store.canonical_hash(n).expect("reads").expect("canonical");
        store.apply(&assembled(seq, Record::Revert(Revert { number: n, hash })))
    };
    for (i, n) in (17..=19).rev().enumerate() {
        revert(&store, 20 + i as u64, n).expect("inside the new window");
    }
    let err = revert(&store, 23, 16).expect_err("block 16's undo data was dropped with the smaller window");
    assert!(matches!(err, StoreError::RevertOutsideWindow { number: 16, window: 3, .. }), "{err}");
    drop(store);
    // Reopened with 50: the data for 16 is still gone, so the revert is still refused.
    let store = open(&dir, 50);
    let err = revert(&store, 23, 16).expect_err("no undo data for block 16");
    assert!(matches!(err, StoreError::RevertOutsideWindow { number: 16, .. }), "{err}");
}

/// A publisher that follows reorgs deeper than this database can undo is refused at its heartbeat, with
/// both numbers named.
#[test]
fn a_reorg_window_deeper_than_the_undo_window_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open(&dir, 16);
    let records = LogGenerator::records(
        GenOptions { reorg_chance: 0.0, heartbeat_chance: 0.0, ..GenOptions::default() },
        3,
    );
    for (seq, rec) in &records {
        store.apply(&assembled(*seq, rec.clone())).expect("applies");
    }
    let head = store.head().expect("reads").expect("a head");
    let heartbeat = |reorg_window| {
        Record::Heartbeat(ec_log::Heartbeat {
            time_ms: 1,
            head,
            safe: None,
            finalized: None,
            client_head: None,
            state: ec_log::PublisherState::Following,
            reorg_window,
        })
    };
    store.apply(&assembled(3, heartbeat(16))).expect("a window equal to the undo window is fine");
    let err = store.apply(&assembled(4, heartbeat(64))).expect_err("deeper than the undo window");
    assert!(matches!(err, StoreError::UndoWindowTooSmall { reorg_window: 64, undo_window: 16, .. }), "{err}");
    assert!(err.to_string().contains("--undo-window 64"), "{err}");
}

/// A block with a real RLP header (the checkpoint's state root is read from it).
fn header_block(number: u64, parent_hash: B256, state_root: B256) -> ec_log::Block {
    let header = alloy_consensus::Header { number, parent_hash, state_root, ..Default::default() };
    let rlp = alloy_rlp::encode(&header);
    ec_log::Block {
        number,
        hash: keccak256(&rlp),
        parent_hash,
        timestamp: 0,
        header: rlp.into(),
        transactions: vec![],
        receipts: vec![],
        withdrawals: None,
        state: vec![],
        receipt_roots: Vec::new(),
        ommers: Vec::new(),
    }
}

fn checkpoint(number: u64, state_root: B256) -> ec_log::Checkpoint {
    let ancestors: Vec<B256> = (number - 256..number).map(|n| keccak256(n.to_be_bytes())).collect();
    let block = header_block(number, *ancestors.last().expect("256 ancestors"), state_root);
    ec_log::Checkpoint {
        chain_id: 31337,
        spec: ec_log::ChainSpecSource::Config(r#"{"chainId":31337,"londonBlock":0}"#.into()),
        genesis_hash: B256::repeat_byte(0x99),
        genesis_timestamp: 0,
        block,
        ancestors,
    }
}

/// issue 26, item 8: an import that never finished (interrupted, or its root refused) leaves state tables
/// that are no chain's state: a genesis record is refused on them, naming the way out; the checksum does not
/// see the marker.
#[test]
fn a_half_finished_import_never_takes_a_genesis_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_trieless(&dir, 100);
    let before = store.checksum().unwrap();
    store.begin_import().unwrap();
    assert_eq!(store.checksum().unwrap(), before, "the marker is local");
    let genesis = LogGenerator::records(GenOptions::default(), 1).remove(0).1;
    let err = store.apply(&assembled(0, genesis.clone())).unwrap_err();
    assert!(matches!(err, StoreError::ImportUnfinished { sequence: 0 }), "{err}");
    assert!(err.to_string().contains("half-finished import"), "{err}");
    assert_eq!(store.position().unwrap(), None, "a refused genesis writes nothing");
    // An empty database takes it.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_trieless(&dir, 100);
    assert_eq!(store.apply(&assembled(0, genesis)).unwrap(), ApplyOutcome::Applied);
}

#[test]
fn a_checkpoint_opens_the_log_only_on_a_database_imported_at_its_block() {
    let root = B256::repeat_byte(0x42);
    let cp = checkpoint(1_000, root);
    let imported = ec_store::tables::ImportedState { number: 1_000, hash: cp.block.hash, state_root: root };

    // No imported state: refused, naming the block to import at.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_trieless(&dir, 100);
    let err = store.apply(&assembled(0, Record::Checkpoint(cp.clone()))).unwrap_err();
    assert!(matches!(err, StoreError::NotImported { number: 1_000, .. }), "{err}");
    assert!(err.to_string().contains("import-state"), "{err}");

    // Imported at another state root: refused, naming both.
    let other = B256::repeat_byte(0x43);
    store.mark_imported(&ec_store::tables::ImportedState { state_root: other, ..imported.clone() }).unwrap();
    let err = store.apply(&assembled(0, Record::Checkpoint(cp.clone()))).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, StoreError::CheckpointMismatch { .. }), "{err}");
    assert!(msg.contains(&root.to_string()) && msg.contains(&other.to_string()), "{msg}");
    assert_eq!(store.position().unwrap(), None, "a refused checkpoint writes nothing");

    // Imported at the checkpoint's block: it applies, and the chain goes on from there.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = open_trieless(&dir, 100);
    store.mark_imported(&imported).unwrap();
    let genesis = LogGenerator::records(GenOptions::default(), 1).remove(0).1;
    let err = store.apply(&assembled(0, genesis)).unwrap_err();
    assert!(matches!(err, StoreError::ImportedButGenesis { number: 1_000, .. }), "{err}");
    assert_eq!(store.apply(&assembled(0, Record::Checkpoint(cp.clone()))).unwrap(), ApplyOutcome::Applied);
    assert_eq!(store.chain().unwrap().expect("chain").first_block, 1_000);
    assert_eq!(store.canonical_hash(999).unwrap(), Some(cp.block.parent_hash));
    assert_eq!(store.canonical_hash(744).unwrap(), Some(cp.ancestors[0]));
    assert_eq!(store.canonical_hash(743).unwrap(), None);
    assert!(store.block_by_hash(&cp.block.hash).unwrap().is_some());

    let address = Address::repeat_byte(0xaa);
    let mut next = header_block(1_001, cp.block.hash, B256::repeat_byte(0x44));
    next.state = vec![ec_log::AccountChange {
        address,
        storage_wiped: false,
        prior: None,
        account: Some(ec_log::AccountState { balance: U256::from(7), nonce: 1, code: None }),
        storage: vec![ec_log::StorageSlot {
            slot: B256::with_last_byte(1),
            prior: B256::ZERO,
            value: B256::with_last_byte(2),
        }],
    }];
    assert_eq!(store.apply(&assembled(1, Record::Block(next))).unwrap(), ApplyOutcome::Applied);
    assert_eq!(store.account_at(&address, 1_001).unwrap().map(|a| a.balance), Some(U256::from(7)));
    assert_eq!(store.account_at(&address, 1_000).unwrap(), None);
    assert_eq!(store.storage_at(&address, &B256::with_last_byte(1), 1_001).unwrap(), B256::with_last_byte(2));
    // Below the checkpoint there is no history: an error, never the newer value.
    for err in [
        store.account_at(&address, 999).unwrap_err(),
        store.storage_at(&address, &B256::with_last_byte(1), 999).unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::StateUnavailable { number: 999, first: 1_000 }), "{err}");
    }
    // A reopened database still knows where its state starts.
    drop(store);
    let store = open_trieless(&dir, 100);
    assert_eq!(store.first_state_block(), 1_000);
    // The checkpoint block itself cannot be reverted: it has no undo data.
    let revert = Revert { number: 1_001, hash: store.head().unwrap().unwrap().hash };
    store.apply(&assembled(2, Record::Revert(revert))).unwrap();
    let cp_ref = store.head().unwrap().unwrap();
    let err = store.apply(&assembled(3, Record::Revert(Revert { number: cp_ref.number, hash: cp_ref.hash })));
    assert!(matches!(err, Err(StoreError::RevertOutsideWindow { number: 1_000, .. })), "{err:?}");
}

/// Entries in the two history tables.
fn history_entries(store: &Store) -> u64 {
    let sum = store.checksum().expect("checksum");
    sum.tables.iter().filter(|(name, _, _)| name.ends_with("_history")).map(|(_, n, _)| n).sum()
}

#[test]
fn a_history_window_bounds_the_history_and_answers_inside_it() {
    let k = 50;
    let opts = GenOptions { slots: 8, ..GenOptions::default() };
    let addrs = addresses(&opts);
    let slots: Vec<B256> = (0..opts.slots).map(|s| B256::from(U256::from(s))).collect();
    let (full_dir, windowed_dir) =
        (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let full = open_trieless(&full_dir, 10);
    let windowed_opts = StoreOptions {
        undo_window: 10,
        history_blocks: Some(k),
        state_trie: TrieMode::Off,
        ..StoreOptions::default()
    };
    let windowed = Store::open(windowed_dir.path(), windowed_opts.clone()).expect("opens");
    let too_small = StoreOptions { undo_window: 100, history_blocks: Some(k), ..StoreOptions::default() };
    let err = Store::open(tempfile::tempdir().expect("tempdir").path(), too_small).err().expect("refused");
    assert!(err.to_string().contains("undo window"), "{err}");

    // Growth: the full store's history grows with the chain; the windowed one's levels off.
    let mut gen = LogGenerator::new(opts);
    let mut samples = Vec::new();
    for i in 0..1_500 {
        let (seq, record) = gen.next_record();
        full.apply(&assembled(seq, record.clone())).expect("applies");
        windowed.apply(&assembled(seq, record)).expect("applies with a window");
        if i % 300 == 299 {
            samples.push((history_entries(&full), history_entries(&windowed)));
        }
    }
    let (first, last) = (samples[0], samples[samples.len() - 1]);
    assert!(last.0 > first.0 * 3, "full history grows: {samples:?}");
    assert!(last.1 < first.1 * 3 / 2, "windowed history levels off: {samples:?}");
    assert!(last.1 * 5 < last.0, "the window keeps a fraction of the history: {samples:?}");

    // Inside the window: the same answers as the full store; below it: the documented error.
    let head = windowed.head().expect("head").expect("head").number;
    let floor = head - k;
    assert_eq!(windowed.first_state_block(), floor);
    for number in floor..=head {
        for a in &addrs {
            assert_eq!(
                windowed.account_at(a, number).unwrap(),
                full.account_at(a, number).unwrap(),
                "{a} at {number}"
            );
            for s in &slots {
                assert_eq!(
                    windowed.storage_at(a, s, number).unwrap(),
                    full.storage_at(a, s, number).unwrap()
                );
            }
        }
    }
    let err = windowed.account_at(&addrs[0], floor - 1).unwrap_err();
    assert!(matches!(err, StoreError::StateUnavailable { first, .. } if first == floor), "{err}");
    assert!(err.to_string().contains("historical state unavailable"), "{err}");
    // The floor survives a restart, and the checksum of the non-history tables matches the full store's.
    drop(windowed);
    let windowed = Store::open(windowed_dir.path(), windowed_opts.clone()).expect("reopens");
    assert_eq!(windowed.first_state_block(), floor);
    let same: Vec<&str> = STATE_TABLES
        .iter()
        .copied()
        .filter(|t| !["account_history", "storage_history"].contains(t))
        .collect();
    assert_eq!(
        windowed.checksum().unwrap().of_tables(&same),
        full.checksum().unwrap().of_tables(&same),
        "the window prunes history only"
    );

    // A reorg of two blocks, then one new block: the block leaving the window is below the floor now, whose
    // history is gone. The floor must not go down, in memory or across a restart.
    let mut sequence = windowed.position().unwrap().expect("position").sequence;
    for _ in 0..2 {
        let head = windowed.head().unwrap().expect("head");
        sequence += 1;
        windowed
            .apply(&assembled(sequence, Record::Revert(Revert { number: head.number, hash: head.hash })))
            .unwrap();
    }
    let parent = windowed.head().unwrap().expect("head");
    sequence += 1;
    let block = header_block(parent.number + 1, parent.hash, B256::repeat_byte(0x55));
    windowed.apply(&assembled(sequence, Record::Block(block))).unwrap();
    assert_eq!(windowed.first_state_block(), floor);
    drop(windowed);
    let windowed = Store::open(windowed_dir.path(), windowed_opts).expect("reopens");
    assert_eq!(windowed.first_state_block(), floor, "the stored floor never goes down");
    assert!(windowed.account_at(&addrs[0], floor - 1).is_err());
}

#[test]
fn a_database_of_the_address_keyed_layout_is_refused_naming_both_layouts() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = open(&dir, 100);
        let genesis = LogGenerator::records(GenOptions::default(), 1).remove(0).1;
        store.apply(&assembled(0, genesis)).expect("applies");
    }
    // What a database of the first layout looks like: records applied, no layout key.
    {
        let db = rocksdb::DB::open_cf(&rocksdb::Options::default(), dir.path(), ec_store::tables::ALL_TABLES)
            .expect("opens raw");
        db.delete_cf(db.cf_handle("meta").expect("meta"), b"layout").expect("deletes");
    }
    for err in [
        Store::open(dir.path(), StoreOptions::default()).err().expect("refused"),
        Store::open_read_only(dir.path()).err().expect("refused read-only"),
    ] {
        assert!(matches!(err, StoreError::Layout { found: 1, supported: 3, .. }), "{err}");
        assert!(err.to_string().contains("rebuild"), "{err}");
    }
    // A new database is stamped and reopens.
    let fresh = tempfile::tempdir().expect("tempdir");
    drop(open(&fresh, 100));
    assert!(Store::open_read_only(fresh.path()).is_ok());
}

/// Rewrites a database of this build as layout 2 left it: each body whole in `blocks`, no per-transaction
/// tables, layout 2 stamped.
fn downgrade_to_layout_2(path: &std::path::Path) {
    use ec_store::tables::{BlockHead, BlockTx, StoredBlock, Value};
    let mut db = rocksdb::DB::open_cf(&rocksdb::Options::default(), path, ec_store::tables::ALL_TABLES)
        .expect("opens raw");
    let (heads, txs) = (db.cf_handle("block_heads").expect("heads"), db.cf_handle("block_txs").expect("txs"));
    let mut bodies = Vec::new();
    for entry in db.iterator_cf(heads, rocksdb::IteratorMode::Start) {
        let (key, value) = entry.expect("reads");
        let head = BlockHead::decode(&value).expect("a head");
        let entries: Vec<BlockTx> = db
            .prefix_iterator_cf(txs, &key)
            .map(|e| e.expect("reads"))
            .take_while(|(k, _)| k.starts_with(&key))
            .map(|(_, v)| BlockTx::decode(&v).expect("a transaction"))
            .collect();
        bodies.push((key, StoredBlock::from_parts(head, entries).expect("whole")));
    }
    assert!(!bodies.is_empty());
    let blocks = db.cf_handle("blocks").expect("blocks");
    for (key, body) in &bodies {
        db.put_cf(blocks, key, body.encode()).expect("writes");
    }
    db.put_cf(db.cf_handle("meta").expect("meta"), b"layout", 2u32.to_be_bytes()).expect("writes");
    db.drop_cf("block_heads").expect("drops");
    db.drop_cf("block_txs").expect("drops");
}

/// Keys of one table, read raw.
fn raw_keys(path: &std::path::Path, table: &str) -> Vec<Vec<u8>> {
    let db = rocksdb::DB::open_cf_for_read_only(
        &rocksdb::Options::default(),
        path,
        ec_store::tables::ALL_TABLES,
        false,
    )
    .expect("opens raw");
    let cf = db.cf_handle(table).expect("table");
    db.iterator_cf(cf, rocksdb::IteratorMode::Start).map(|e| e.expect("reads").0.to_vec()).collect()
}

#[test]
fn a_database_of_layout_2_is_upgraded_in_place_and_answers_as_a_new_one() {
    let opts = GenOptions { reorg_chance: 0.1, max_reorg_depth: 4, ..GenOptions::default() };
    let mut gen = LogGenerator::new(opts);
    let records: Vec<(u64, Record)> = (0..400).map(|_| gen.next_record()).collect();
    // Upgrade right before a revert, so that a block layout 2 stored is reverted by this build.
    let split = (100..records.len())
        .find(|&i| matches!(records[i].1, Record::Revert(_)))
        .expect("the log has a revert after record 100");
    let (full_dir, old_dir) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let full = open(&full_dir, 100);
    for (seq, record) in &records {
        full.apply(&assembled(*seq, record.clone())).expect("applies");
    }
    {
        let old = open(&old_dir, 100);
        for (seq, record) in &records[..split] {
            old.apply(&assembled(*seq, record.clone())).expect("applies");
        }
    }
    downgrade_to_layout_2(old_dir.path());
    let Record::Revert(reverted) = &records[split].1 else { unreachable!("split is a revert") };

    // Where it stands is readable without an upgrade (a snapshot's position, before it is restored).
    let (position, head) = Store::position_and_head(old_dir.path()).expect("meta reads any layout");
    assert_eq!(position.map(|p| p.sequence), Some(records[split - 1].0));
    assert_eq!(head.map(|h| h.hash), Some(reverted.hash), "the revert undoes the layout-2 head");
    let err = Store::open_read_only(old_dir.path()).err().expect("read-only tools cannot upgrade");
    assert!(matches!(err, StoreError::LayoutNeedsUpgrade { found: 2, supported: 3, .. }), "{err}");
    assert!(err.to_string().contains("start the replica"), "{err}");
    let upgraded = open(&old_dir, 100);
    for (seq, record) in &records[split..] {
        upgraded.apply(&assembled(*seq, record.clone())).expect("applies after the upgrade");
    }

    // The same chain, every block, transaction and receipt read alike, whichever table holds it.
    let head = full.head().unwrap().expect("head");
    assert_eq!(upgraded.head().unwrap(), Some(head));
    let mut transactions = 0;
    for n in 0..=head.number {
        let hash = full.canonical_hash(n).unwrap().expect("canonical");
        assert_eq!(upgraded.canonical_hash(n).unwrap(), Some(hash), "block {n}");
        let block = full.block_by_hash(&hash).unwrap().expect("body");
        assert_eq!(upgraded.block_by_hash(&hash).unwrap().as_ref(), Some(&block), "block {n}");
        assert_eq!(upgraded.block_head(&hash).unwrap(), Some(block.head()), "block {n}");
        for i in 0..=block.transactions.len() {
            let expected = block.transaction(i);
            assert_eq!(full.block_transaction(&hash, i).unwrap(), expected, "block {n} tx {i}");
            assert_eq!(upgraded.block_transaction(&hash, i).unwrap(), expected, "block {n} tx {i}");
        }
        for tx in &block.transactions {
            assert_eq!(upgraded.tx_location(&tx.hash()).unwrap(), full.tx_location(&tx.hash()).unwrap());
            transactions += 1;
        }
    }
    assert!(transactions > 100, "the chain must carry transactions, had {transactions}");
    assert_eq!(upgraded.block_by_hash(&reverted.hash).unwrap(), None, "the reverted layout-2 block is gone");
    let others: Vec<&str> = STATE_TABLES
        .iter()
        .copied()
        .filter(|t| !["blocks", "block_heads", "block_txs"].contains(t))
        .collect();
    assert_eq!(upgraded.checksum().unwrap().of_tables(&others), full.checksum().unwrap().of_tables(&others));
    drop(upgraded);

    // Old blocks stay where layout 2 put them, new ones are split, and a reverted old block left no body.
    let legacy = raw_keys(old_dir.path(), "blocks");
    assert!(!legacy.is_empty() && !raw_keys(old_dir.path(), "block_heads").is_empty());
    assert!(!legacy.contains(&reverted.hash.to_vec()), "the reverted body left in blocks");
    for key in legacy {
        let hash = B256::from_slice(&key);
        let block = full.block_by_hash(&hash).unwrap().expect("a legacy body is a block of the chain");
        assert_eq!(
            full.canonical_hash(block.number).unwrap(),
            Some(hash),
            "reverted body {hash} left behind"
        );
    }
    assert!(Store::open_read_only(old_dir.path()).is_ok(), "stamped layout 3");
}

/// Applies the generator's next `records` records; the state root each block's header carries, by number
/// (a reorged block's replacement last).
fn apply_recording_roots(store: &Store, gen: &mut LogGenerator, records: usize) -> HashMap<u64, B256> {
    let mut roots = HashMap::new();
    for _ in 0..records {
        let (seq, record) = gen.next_record();
        if let Record::Block(b) = &record {
            roots.insert(b.number, ec_log::state_root_of_header(&b.header).expect("a root"));
        }
        store.apply(&assembled(seq, record)).expect("applies");
    }
    roots
}

/// A state root with changes laid over a stored block's state (`eth_simulateV1`'s blocks): without changes
/// it is the block's own root at every height of the undo window, and with accounts changed, created,
/// deleted and their storage cleared it equals a rebuild of the whole state from scratch.
#[test]
fn a_state_root_with_changes_over_a_block_equals_a_full_rebuild() {
    use alloy_trie::{HashBuilder, Nibbles, TrieAccount};
    use ec_store::{tables::StoredAccount, OverlayAccount, Proofs};
    use std::collections::BTreeMap;

    let dir = tempfile::tempdir().expect("tempdir");
    let (store, addrs, slots, mut gen) = state_fixture(&dir);
    let roots = apply_recording_roots(&store, &mut gen, 300);
    let head = store.head().expect("head").expect("head").number;
    for n in head - 20..=head {
        let rollback = store.rollback_to(n).expect("held");
        assert_eq!(store.state_root_with(&rollback, &[]).expect("root"), roots[&n], "block {n}");
    }

    // The whole state at `base` (the generator touches only these accounts and slots), then the changes.
    let base = head - 3;
    let mut full: BTreeMap<Address, (Option<StoredAccount>, BTreeMap<B256, B256>)> = addrs
        .iter()
        .map(|a| {
            let values = slots.iter().map(|s| (*s, store.storage_at(a, s, base).expect("reads"))).collect();
            (*a, (store.account_at(a, base).expect("reads"), values))
        })
        .collect();
    let some = |balance: u64, nonce: u64| {
        Some(StoredAccount { balance: U256::from(balance), nonce, code_hash: alloy_trie::KECCAK_EMPTY })
    };
    let word = |v: u64| B256::from(U256::from(v));
    let changes = vec![
        // Changed: a new balance, one slot set, one cleared.
        OverlayAccount {
            address: addrs[0],
            account: some(77, 3),
            storage_cleared: false,
            slots: [(slots[1], word(0x77)), (slots[2], B256::ZERO)].into(),
        },
        // Created, with storage.
        OverlayAccount {
            address: Address::repeat_byte(0xbe),
            account: some(5, 1),
            storage_cleared: false,
            slots: [(word(5), word(5))].into(),
        },
        // Deleted.
        OverlayAccount { address: addrs[1], account: None, storage_cleared: true, slots: BTreeMap::new() },
        // Storage replaced by one slot.
        OverlayAccount {
            address: addrs[2],
            account: some(9, 9),
            storage_cleared: true,
            slots: [(slots[3], word(0x33))].into(),
        },
    ];
    for c in &changes {
        let entry = full.entry(c.address).or_default();
        entry.0 = c.account.clone();
        if c.storage_cleared {
            entry.1.clear();
        }
        entry.1.extend(c.slots.clone());
    }
    let mut accounts = BTreeMap::new();
    for (address, (account, values)) in &full {
        let Some(account) = account else { continue };
        let hashed: BTreeMap<B256, B256> =
            values.iter().filter(|(_, v)| !v.is_zero()).map(|(s, v)| (keccak256(s), *v)).collect();
        let mut storage = HashBuilder::default();
        for (slot, value) in hashed {
            storage.add_leaf(Nibbles::unpack(slot), &alloy_rlp::encode(U256::from_be_bytes(value.0)));
        }
        let leaf = TrieAccount {
            nonce: account.nonce,
            balance: account.balance,
            storage_root: storage.root(),
            code_hash: account.code_hash,
        };
        accounts.insert(keccak256(address), alloy_rlp::encode(leaf));
    }
    let mut state = HashBuilder::default();
    for (key, leaf) in accounts {
        state.add_leaf(Nibbles::unpack(key), &leaf);
    }
    let rollback = store.rollback_to(base).expect("held");
    assert_eq!(store.state_root_with(&rollback, &changes).expect("root"), state.root());
}

/// A root or a proof at an older block lays every key changed since over the head's trie. With hundreds of
/// slots changed since, the storage tries are walked and the history read on every core: the roots still
/// equal the headers' at every block of the window, and so does the root each proof leads to.
#[test]
fn roots_and_proofs_at_older_blocks_with_hundreds_of_slots_changed_since_equal_the_headers() {
    use ec_store::Proofs;

    let dir = tempfile::tempdir().expect("tempdir");
    let opts = GenOptions { seed: 9, max_txs: 16, slots: 64, reorg_chance: 0.0, ..GenOptions::default() };
    let addrs = addresses(&opts);
    let mut gen = LogGenerator::new(opts);
    let store = open(&dir, 100);
    let roots = apply_recording_roots(&store, &mut gen, 200);
    let head = store.head().expect("head").expect("head").number;
    let mut widest = 0;
    for n in (head - 60..=head).step_by(6) {
        let rollback = store.rollback_to(n).expect("held");
        widest = widest.max(rollback.accounts.values().map(|d| d.slots.len()).sum::<usize>());
        assert_eq!(store.state_root_with(&rollback, &[]).expect("root"), roots[&n], "root at block {n}");
        let (root, proof) =
            store.proof(&addrs[0], &[B256::ZERO, B256::with_last_byte(1)], n).expect("proves");
        assert_eq!(root, roots[&n], "the root of the proof at block {n}");
        assert_eq!(proof.storage.len(), 2);
    }
    // The walks went on every core (ec-store walks the storage tries of a change of 256 slots or more so).
    assert!(widest >= 256, "at most {widest} slots changed since a block of the window");
}

/// Proofs below the head read the trie's recent past (what each block's update replaced, kept in memory)
/// and equal the proofs walked over every key changed since, at every block of the window and across
/// reorgs; each leads to the header's root. Older than the past held, and on a store that keeps none, they
/// are walked.
#[test]
fn proofs_from_the_tries_recent_past_equal_the_walked_ones_across_reorgs() {
    use ec_store::Proofs;

    let opts = GenOptions {
        seed: 11,
        max_txs: 16,
        slots: 64,
        reorg_chance: 0.08,
        max_reorg_depth: 5,
        ..GenOptions::default()
    };
    let addrs = addresses(&opts);
    let (kept_dir, walked_dir) =
        (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let window = 30;
    let kept = Store::open(
        kept_dir.path(),
        StoreOptions { undo_window: 100, proof_history_blocks: window, ..StoreOptions::default() },
    )
    .expect("store opens");
    let walked = Store::open(
        walked_dir.path(),
        StoreOptions { undo_window: 100, proof_history_blocks: 0, ..StoreOptions::default() },
    )
    .expect("store opens");
    let mut gen = LogGenerator::new(opts);
    let mut roots = HashMap::new();
    let mut reverts = 0;
    for _ in 0..400 {
        let (seq, record) = gen.next_record();
        match &record {
            Record::Block(b) => {
                roots.insert(b.number, ec_log::state_root_of_header(&b.header).expect("a root"));
            }
            Record::Revert(_) => reverts += 1,
            _ => {}
        }
        let rec = assembled(seq, record);
        kept.apply(&rec).expect("applies");
        walked.apply(&rec).expect("applies");
    }
    assert!(reverts >= 10, "only {reverts} reverts");
    let head = kept.head().expect("head").expect("head").number;
    let held = kept.trie_history().blocks;
    assert!(held > 0 && held <= window, "{held} blocks held of a window of {window}");
    let slots = [B256::ZERO, B256::with_last_byte(1), B256::with_last_byte(7), B256::with_last_byte(40)];
    let mut asked = 0;
    for n in head - 40..=head {
        for address in addrs.iter().take(8) {
            let (root, proof) = kept.proof(address, &slots, n).expect("proves");
            assert_eq!(root, roots[&n], "the root of the proof at block {n}");
            assert_eq!((root, proof), walked.proof(address, &slots, n).expect("proves"), "{address} at {n}");
        }
        asked += 8;
    }
    let (stats, oldest) = (kept.trie_history(), head - held);
    assert_eq!(stats.proofs_read, 8 * held, "every block from {oldest} on is read from the past held");
    assert_eq!(stats.proofs_read + stats.proofs_walked + 8, asked, "the rest walked (the head is neither)");
    let none = walked.trie_history();
    assert_eq!((none.blocks, none.proofs_read), (0, 0));
    // What the RPC tries in place first: the recent past alone, nothing for a block it does not hold.
    for n in head - 40..head {
        let fast = kept.proof_from_recent_past(&addrs[0], &slots, n).expect("reads");
        assert_eq!(fast.is_some(), n >= oldest, "block {n}, the oldest held {oldest}");
        if let Some(found) = fast {
            assert_eq!(found, walked.proof(&addrs[0], &slots, n).expect("proves"), "at {n}");
        }
    }
    assert_eq!(walked.proof_from_recent_past(&addrs[0], &slots, head - 1).expect("reads"), None);
}
