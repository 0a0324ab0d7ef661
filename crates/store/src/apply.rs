//! Applying records: each one becomes exactly one atomic write batch holding its effects, its Kafka offset
//! and its sequence number.
//!
//! A block record carries the value before the block of everything it changes, so applying it writes
//! history and undo entries without reading the database per key. Reads that remain (a wiped account's old
//! storage, `--verify-priors`) see the database as it was before the record: the batch is not visible until
//! it commits.

use std::collections::{BTreeMap, BTreeSet};

use alloy_primitives::{keccak256, Address, Bytes, B256, KECCAK256_EMPTY};
use ec_log::{
    state_root_of_header, AccountChange, AccountPrior, Assembled, Block, BlockRef, Checkpoint, Genesis,
    Heartbeat, Record, Revert,
};

use crate::{
    batch::{Batch, Sealed, Source},
    error::{Result, StoreError},
    read::Reads,
    tables::{
        AccountHistory, Accounts, BlockChanges, BlockExtras, BlockHead, BlockHeads, BlockTx, BlockTxs,
        Canonical, ChainInfo, ChangeSet, Code, ImportedState, LegacyBlocks, LogAddresses, LogTopics, Meta,
        MetaKey, PriorAccount, RevertedBlocks, Storage, StorageHistory, StoredAccount, StoredExtras, TxIndex,
        TxLocation, Value,
    },
    trie::{
        history::{Recorded, TrieChange, TrieUnit},
        update::{AccountDelta, StateDelta},
        TrieHead,
    },
    Store, StoreOptions, TrieMode,
};

/// What [`Store::apply`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApplyOutcome {
    Applied,
    /// The record's sequence was already applied (a publisher re-sent it after a crash): nothing written.
    Duplicate {
        applied: u64,
    },
}

/// What the database will hold once a batch being written commits, as far as preparing the next record needs
/// it ([`Store::prepare`]). Only a block or a heartbeat is ever in flight while the next record is prepared
/// ([`may_prepare_during`]).
#[derive(Debug, Clone)]
pub(crate) struct After {
    sequence: u64,
    record_crc: u32,
    /// The head it sets: `None` for a heartbeat, which leaves the database's head as it is.
    head: Option<BlockRef>,
    /// Code it stores for the first time: the next block must not store it again (nor claim it as new in
    /// its undo entry).
    new_code: BTreeSet<B256>,
    /// A block or heartbeat: the only records after which the next one may be prepared early.
    simple: bool,
}

/// A record checked and made ready to commit ([`Store::prepare`]).
pub(crate) enum Prepared {
    /// Already applied: nothing to write.
    Duplicate {
        applied: u64,
    },
    Ready(Ready),
}

/// A record's batch in RocksDB's form and what committing it changes.
pub(crate) struct Ready {
    pub(crate) sealed: Sealed,
    pub(crate) after: After,
    /// Raised once the batch has committed (a genesis or checkpoint sets where state starts).
    pub(crate) first_state_block: Option<u64>,
}

/// A record checked and its batch built, not sealed ([`Store::prepare_batch`]). (One lives per record, moved
/// once: the size difference between the variants costs nothing worth a box.)
#[allow(clippy::large_enum_variant)]
pub(crate) enum Staged {
    Duplicate {
        applied: u64,
    },
    Ready {
        batch: Batch,
        after: After,
        first_state_block: Option<u64>,
        /// A block's state change, when its root check is left to its group.
        deferred: Option<Deferred>,
    },
}

/// A block whose state root is checked with its group's: its change, and what the group needs of it as its
/// first block (its parent) or its last (its header).
#[derive(Debug, Clone)]
pub(crate) struct Deferred {
    pub(crate) delta: StateDelta,
    pub(crate) head: GroupEnd,
    pub(crate) parent_hash: B256,
}

/// Code the batch in flight stores: the record prepared after it must not store it again.
fn code_in_flight(in_flight: Option<&After>) -> &BTreeSet<B256> {
    static NONE: BTreeSet<B256> = BTreeSet::new();
    in_flight.map_or(&NONE, |f| &f.new_code)
}

/// What staging one record leaves beside its batch ([`Store::prepare_batch`]).
#[derive(Default)]
struct StagedRecord {
    /// Code the record stores for the first time.
    new_code: BTreeSet<B256>,
    /// A block's state change, when its root check is left to its group.
    deferred: Option<Deferred>,
    /// The history floor a block raised.
    history_floor: Option<u64>,
}

/// The block a group ends at, as far as its root check needs it.
#[derive(Debug, Clone)]
pub(crate) struct GroupEnd {
    pub(crate) block: BlockRef,
    pub(crate) header: Bytes,
}

impl After {
    pub(crate) fn sequence(&self) -> u64 {
        self.sequence
    }

    /// What the database holds after `self` and then `next` commit together: `next`'s sequence, the head
    /// either set last, the code both store.
    pub(crate) fn then(&self, next: After) -> After {
        let mut new_code = self.new_code.clone();
        new_code.extend(next.new_code);
        After { head: next.head.or(self.head), new_code, simple: self.simple && next.simple, ..next }
    }
}

/// Whether `next` may join a group of records applied as one batch with one root check (catching up
/// with the trie on), after the records whose combined [`After`] is `group` and whose first block is
/// `first_block`. The same reads as [`may_prepare_during`] rule a record out (a wipe, `--verify-priors`),
/// and a block whose history pruning reads the undo entry of a block in the group.
pub(crate) fn may_group(group: &After, first_block: u64, next: &Record, opts: &StoreOptions) -> bool {
    if opts.state_trie == TrieMode::Off || opts.verify_priors || !group.simple {
        return false;
    }
    match next {
        Record::Heartbeat(_) => true,
        Record::Block(b) => {
            let wipes = b.state.iter().any(|c| c.storage_wiped || c.account.is_none());
            let prunes_in_group = match opts.history_blocks {
                Some(k) => b.number.checked_sub(k).is_some_and(|pruned| pruned >= first_block),
                None => false,
            };
            !wipes && !prunes_in_group
        }
        Record::Genesis(_) | Record::Checkpoint(_) | Record::Revert(_) => false,
    }
}

/// Whether `rec` may start a group (see [`may_group`]): a block, with nothing in flight before it.
pub(crate) fn may_start_group(rec: &Record, opts: &StoreOptions) -> bool {
    let fresh = After { sequence: 0, record_crc: 0, head: None, new_code: BTreeSet::new(), simple: true };
    matches!(rec, Record::Block(_)) && may_group(&fresh, 0, rec, opts)
}

/// One account's change as written: its hashed address, each changed (hashed) slot's value before and after,
/// and the account after.
struct AccountWritten {
    key: B256,
    slots: BTreeMap<B256, (B256, B256)>,
    account: Option<StoredAccount>,
}

/// Whether `next` may be prepared while the batch of the record before it (`after`) is still being written,
/// reading the database as it was before that batch. Safe when nothing `next` reads is something the batch in
/// flight writes, other than what [`After`] carries (sequence, head, new code):
/// - the record in flight is a block or heartbeat (a genesis, checkpoint or revert changes what a block is
///   checked against);
/// - `next` is a block or heartbeat: a revert reads the head block's undo entries, which may be in flight;
/// - the block wipes no account: a wipe lists the account's stored slots, which the block in flight may
///   have written;
/// - its history pruning does not read the undo entry of the block in flight (a history window of 1 block);
/// - `--verify-priors` is off: it reads every prior, which the block in flight may have written.
pub(crate) fn may_prepare_during(after: &After, next: &Record, opts: &StoreOptions) -> bool {
    if opts.verify_priors || !after.simple {
        return false;
    }
    // A block updates the trie the next block walks (and the trie head it starts from).
    if opts.state_trie != TrieMode::Off && after.head.is_some() && matches!(next, Record::Block(_)) {
        return false;
    }
    match next {
        Record::Heartbeat(_) => true,
        Record::Block(b) => {
            let wipes = b.state.iter().any(|c| c.storage_wiped || c.account.is_none());
            let prunes_in_flight = match (opts.history_blocks, after.head) {
                (Some(k), Some(head)) => b.number.checked_sub(k) == Some(head.number),
                _ => false,
            };
            !wipes && !prunes_in_flight
        }
        Record::Genesis(_) | Record::Checkpoint(_) | Record::Revert(_) => false,
    }
}

impl Store {
    /// Applies one complete record, or rejects it and leaves the database untouched.
    pub fn apply(&self, rec: &Assembled) -> Result<ApplyOutcome> {
        let prepared = self.prepare(rec, None)?;
        self.finish(prepared)
    }

    /// Writes a prepared record (see [`Store::prepare`]).
    pub(crate) fn finish(&self, prepared: Prepared) -> Result<ApplyOutcome> {
        match prepared {
            Prepared::Duplicate { applied } => Ok(ApplyOutcome::Duplicate { applied }),
            Prepared::Ready(ready) => {
                self.write_sealed(ready.sealed)?;
                self.committed(ready.first_state_block);
                Ok(ApplyOutcome::Applied)
            }
        }
    }

    /// What follows a record's commit in memory.
    pub(crate) fn committed(&self, first_state_block: Option<u64>) {
        if let Some(first) = first_state_block {
            self.set_first_state_block(first);
        }
    }

    /// Checks one record and builds its batch, writing nothing. `in_flight` is the batch of the record before
    /// it when that is still being written ([`crate::Pipeline`]): its sequence, head and new code are taken
    /// from there, and everything else is read from the database, which [`may_prepare_during`] makes sure
    /// the batch in flight does not change.
    pub(crate) fn prepare(&self, rec: &Assembled, in_flight: Option<&After>) -> Result<Prepared> {
        Ok(match self.prepare_batch(rec, in_flight, false)? {
            Staged::Duplicate { applied } => Prepared::Duplicate { applied },
            Staged::Ready { batch, after, first_state_block, .. } => {
                Prepared::Ready(Ready { sealed: self.seal(batch), after, first_state_block })
            }
        })
    }

    /// [`Store::prepare`] without sealing; with `defer_trie`, a block's state change is returned for a
    /// group's one root check ([`Store::seal_group`]) instead of being checked here.
    ///
    /// In four steps: the record's place in the log (a duplicate stops here), its cluster, its own writes
    /// (by kind), then the position it leaves the database at.
    pub(crate) fn prepare_batch(
        &self,
        rec: &Assembled,
        in_flight: Option<&After>,
        defer_trie: bool,
    ) -> Result<Staged> {
        if let Some(applied) = self.check_sequence(rec, in_flight)? {
            return Ok(Staged::Duplicate { applied });
        }
        self.check_cluster(rec)?;
        let sequence = rec.envelope.sequence;
        let mut batch = Batch::default();
        let mut staged = StagedRecord::default();
        match &rec.record {
            Record::Genesis(g) => {
                staged.new_code = self.stage_genesis(&mut batch, sequence, g, code_in_flight(in_flight))?;
                self.put_chain_info(
                    &mut batch,
                    ChainInfo {
                        cluster_id: rec.envelope.cluster_id.clone(),
                        chain_id: g.chain_id,
                        genesis_hash: g.block.hash,
                        genesis_timestamp: g.block.timestamp,
                        spec: g.spec.clone(),
                        first_block: 0,
                    },
                );
            }
            Record::Checkpoint(c) => {
                self.write_checkpoint(&mut batch, sequence, c)?;
                self.put_chain_info(
                    &mut batch,
                    ChainInfo {
                        cluster_id: rec.envelope.cluster_id.clone(),
                        chain_id: c.chain_id,
                        genesis_hash: c.genesis_hash,
                        genesis_timestamp: c.genesis_timestamp,
                        spec: c.spec.clone(),
                        first_block: c.block.number,
                    },
                );
            }
            Record::Block(b) => {
                staged = self.stage_block(&mut batch, sequence, b, in_flight, defer_trie)?;
            }
            Record::Revert(r) => self.write_revert(&mut batch, sequence, r)?,
            Record::Heartbeat(h) => self.stage_heartbeat(&mut batch, sequence, h)?,
        }
        self.stage_position(&mut batch, rec, staged.history_floor);
        let first_state_block = match &rec.record {
            Record::Genesis(Genesis { block, .. }) | Record::Checkpoint(Checkpoint { block, .. }) => {
                Some(block.number)
            }
            _ => None,
        };
        let after = After {
            sequence,
            record_crc: rec.record_crc,
            head: match &rec.record {
                Record::Block(b) => Some(BlockRef { number: b.number, hash: b.hash }),
                _ => None,
            },
            new_code: staged.new_code,
            simple: matches!(rec.record, Record::Block(_) | Record::Heartbeat(_)),
        };
        Ok(Staged::Ready { batch, after, first_state_block, deferred: staged.deferred })
    }

    /// Where `rec` falls in the log: `Some(applied)` for a record already applied (the same one: a
    /// different record under an applied sequence is refused), `None` for the next one; a gap is an error.
    fn check_sequence(&self, rec: &Assembled, in_flight: Option<&After>) -> Result<Option<u64>> {
        let sequence = rec.envelope.sequence;
        let applied = match in_flight {
            Some(f) => Some(f.sequence),
            None => self.position()?.map(|p| p.sequence),
        };
        if let Some(applied) = applied {
            if sequence == applied {
                let stored = match in_flight {
                    Some(f) => Some(f.record_crc.to_be_bytes().to_vec().into()),
                    None => self.get::<Meta>(&MetaKey::SequenceCrc)?,
                };
                if stored.is_some_and(|c: Bytes| c.as_ref() != rec.record_crc.to_be_bytes()) {
                    return Err(StoreError::ConflictingDuplicate { sequence });
                }
            }
            if sequence <= applied {
                return Ok(Some(applied));
            }
        }
        let expected = applied.map_or(0, |s| s + 1);
        if sequence != expected {
            return Err(StoreError::SequenceGap { applied, expected, found: sequence });
        }
        Ok(None)
    }

    /// The record belongs to this database's cluster, and starts it (a genesis or checkpoint) exactly when
    /// the database has none.
    fn check_cluster(&self, rec: &Assembled) -> Result<()> {
        let sequence = rec.envelope.sequence;
        match (self.chain()?, &rec.record) {
            (Some(c), _) if c.cluster_id != rec.envelope.cluster_id => Err(StoreError::WrongCluster {
                sequence,
                expected: c.cluster_id,
                found: rec.envelope.cluster_id.clone(),
            }),
            (Some(_), Record::Genesis(_) | Record::Checkpoint(_)) => {
                Err(StoreError::UnexpectedGenesis { sequence })
            }
            (None, Record::Genesis(_) | Record::Checkpoint(_)) | (Some(_), _) => Ok(()),
            (None, other) => Err(StoreError::MissingGenesis { sequence, kind: other.kind().name() }),
        }
    }

    /// A genesis record's writes: its block, and its root checked (or the chain marked as one whose
    /// headers do not commit to its state). Returns the code it stores.
    fn stage_genesis(
        &self,
        batch: &mut Batch,
        sequence: u64,
        g: &Genesis,
        in_flight_code: &BTreeSet<B256>,
    ) -> Result<BTreeSet<B256>> {
        if g.block.number != 0 {
            return Err(bad_block(sequence, &g.block, "a genesis block must be block 0".into()));
        }
        if let Some(imported) = self.imported()? {
            return Err(StoreError::ImportedButGenesis { sequence, number: imported.number });
        }
        if self.import_started()? {
            return Err(StoreError::ImportUnfinished { sequence });
        }
        let (new_code, delta) = self.write_block(batch, sequence, &g.block, false, in_flight_code)?;
        self.check_genesis_root(batch, sequence, &g.block, &delta)?;
        Ok(new_code)
    }

    fn put_chain_info(&self, batch: &mut Batch, info: ChainInfo) {
        self.put::<Meta>(batch, &MetaKey::Chain, &info.encode().into());
    }

    /// A block's writes: the block on top of the head (the one in flight, if any), its state root checked
    /// or deferred to its group, and the undo and history windows moved along.
    fn stage_block(
        &self,
        batch: &mut Batch,
        sequence: u64,
        b: &Block,
        in_flight: Option<&After>,
        defer_trie: bool,
    ) -> Result<StagedRecord> {
        let head = match in_flight.and_then(|f| f.head) {
            Some(head) => head,
            None => self.head()?.ok_or(StoreError::MissingGenesis { sequence, kind: "block" })?,
        };
        let not_next = |reason: String| StoreError::NotNextBlock {
            sequence,
            number: b.number,
            head_number: head.number,
            head_hash: head.hash,
            reason,
        };
        if b.number != head.number + 1 {
            return Err(not_next(format!("expected block {}", head.number + 1)));
        }
        if b.parent_hash != head.hash {
            return Err(not_next(format!("its parent is {}", b.parent_hash)));
        }
        let (new_code, delta) = self.write_block(batch, sequence, b, true, code_in_flight(in_flight))?;
        let deferred = if defer_trie {
            Some(Deferred {
                delta,
                head: GroupEnd {
                    block: BlockRef { number: b.number, hash: b.hash },
                    header: b.header.clone(),
                },
                parent_hash: b.parent_hash,
            })
        } else {
            self.check_state_root(batch, sequence, b, &delta)?;
            None
        };
        let history_floor = self.move_windows(batch, b.number)?;
        Ok(StagedRecord { new_code, deferred, history_floor })
    }

    /// Prunes what block `number` pushes out of the undo window and the history window. Returns the new
    /// history floor when it rises.
    fn move_windows(&self, batch: &mut Batch, number: u64) -> Result<Option<u64>> {
        // Keep the undo index for the newest `undo_window` blocks only. The head only ever grows one block
        // at a time, so dropping the one entry that just left the window prunes every older one too. (Not a
        // range delete: RocksDB re-fragments every range tombstone in the memtable on each read, which made
        // replay twenty times slower.)
        if let Some(expired) = number.checked_sub(self.opts.undo_window) {
            self.prune_reverted(batch, expired)?;
        }
        match self.opts.history_blocks {
            None => {
                if let Some(expired) = number.checked_sub(self.opts.undo_window) {
                    self.delete::<BlockChanges>(batch, &expired);
                }
                Ok(None)
            }
            Some(k) => {
                let Some(expired) = number.checked_sub(k) else { return Ok(None) };
                self.prune_history(batch, expired)?;
                // The floor only rises: after a reorg (or with a larger K since a restart) the block leaving
                // the window can be below it, and its history is long gone.
                Ok((expired > self.first_state_block()).then_some(expired))
            }
        }
    }

    /// A heartbeat's write: itself, once its reorg window is known to fit in the undo window.
    fn stage_heartbeat(&self, batch: &mut Batch, sequence: u64, h: &Heartbeat) -> Result<()> {
        if h.reorg_window > self.opts.undo_window {
            return Err(StoreError::UndoWindowTooSmall {
                sequence,
                reorg_window: h.reorg_window,
                undo_window: self.opts.undo_window,
            });
        }
        let bytes = postcard::to_stdvec(h).unwrap_or_default();
        self.put::<Meta>(batch, &MetaKey::Heartbeat, &bytes.into());
        Ok(())
    }

    /// The position the record leaves the database at (offset, sequence, checksum), committed with it, and
    /// the history floor a block raised.
    fn stage_position(&self, batch: &mut Batch, rec: &Assembled, history_floor: Option<u64>) {
        let sequence = rec.envelope.sequence;
        self.put::<Meta>(batch, &MetaKey::KafkaOffset, &rec.last_offset.to_be_bytes().to_vec().into());
        self.put::<Meta>(batch, &MetaKey::Sequence, &sequence.to_be_bytes().to_vec().into());
        self.put::<Meta>(batch, &MetaKey::SequenceCrc, &rec.record_crc.to_be_bytes().to_vec().into());
        if let Some(floor) = history_floor {
            self.put::<Meta>(batch, &MetaKey::HistoryFloor, &floor.to_be_bytes().to_vec().into());
            // Raised before the pruning commits: a read that checks the floor after its lookup (see
            // `Store::account_at`) then never returns a value the pruning took away under it.
            self.set_first_state_block(floor);
        }
    }

    /// Drops the history entries block `number` wrote, and its undo index: after this no read at or after
    /// `number` needs them (a read at block M uses the entries of blocks after M), and the block cannot be
    /// reverted any more. Blocks applied under an older or no window may have left nothing: skipped.
    fn prune_history(&self, batch: &mut Batch, number: u64) -> Result<()> {
        let Some(changes) = self.get::<BlockChanges>(&number)? else { return Ok(()) };
        for (account, slots) in &changes.accounts {
            self.delete::<AccountHistory>(batch, &(*account, number));
            for slot in slots {
                self.delete::<StorageHistory>(batch, &(*account, *slot, number));
            }
        }
        self.delete::<BlockChanges>(batch, &number);
        Ok(())
    }

    /// Drops the reverted blocks of height `number` (it left the undo window: no revert reaches it, and no
    /// filter cursor older than that is continued).
    fn prune_reverted(&self, batch: &mut Batch, number: u64) -> Result<()> {
        for (_, block) in self.scan_prefix::<RevertedBlocks>(&number.to_be_bytes())? {
            self.delete::<RevertedBlocks>(batch, &(number, block.hash));
        }
        Ok(())
    }

    /// Opens the log on a database seeded by `import-state`: block N's body, the hashes before it, and
    /// nothing else (the state is already there, and was checked against N's state root at import).
    fn write_checkpoint(&self, batch: &mut Batch, sequence: u64, c: &Checkpoint) -> Result<()> {
        let b = &c.block;
        let root = c
            .state_root()
            .map_err(|e| bad_block(sequence, b, format!("header does not decode to a state root: {e}")))?;
        let imported =
            self.imported()?.ok_or(StoreError::NotImported { sequence, number: b.number, hash: b.hash })?;
        if (imported.number, imported.hash, imported.state_root) != (b.number, b.hash, root) {
            return Err(StoreError::CheckpointMismatch {
                sequence,
                topic: Box::new(ImportedState { number: b.number, hash: b.hash, state_root: root }),
                db: Box::new(imported),
            });
        }
        if !b.state.is_empty() {
            return Err(bad_block(sequence, b, "a checkpoint carries no state change".into()));
        }
        // The state (and its trie) is the imported one from here on: no node before it holds.
        batch.set_trie_change(TrieChange::Reset);
        let expected_ancestors = b.number.min(256);
        if c.ancestors.len() as u64 != expected_ancestors {
            let reason = format!("{} ancestor hashes, expected {expected_ancestors}", c.ancestors.len());
            return Err(bad_block(sequence, b, reason));
        }
        if b.number <= 256 && c.ancestors.first().is_some_and(|first| *first != c.genesis_hash) {
            return Err(bad_block(sequence, b, "the first ancestor is not the genesis block".into()));
        }
        if c.ancestors.last().is_some_and(|parent| *parent != b.parent_hash) {
            return Err(bad_block(sequence, b, "the last ancestor is not the block's parent".into()));
        }
        if self.opts.state_trie != TrieMode::Off {
            let built = TrieHead { number: b.number, hash: b.hash, root };
            let trie = self.trie_head()?;
            if trie != Some(built) {
                return Err(StoreError::Corrupt {
                    table: "meta",
                    reason: format!(
                        "the state trie describes {trie:?}, not the imported block {} ({}): restart the replica \
                         to rebuild it",
                        b.number, b.hash
                    ),
                });
            }
        }
        self.write_block(batch, sequence, b, false, &BTreeSet::new())?;
        // The ancestors go into the canonical index without bodies: the EVM's BLOCKHASH finds them there,
        // and the block methods answer `null` for a number whose body is missing.
        let first = b.number - expected_ancestors;
        for (i, hash) in c.ancestors.iter().enumerate() {
            self.put::<Canonical>(batch, &(first + i as u64), hash);
        }
        Ok(())
    }

    /// Writes a block's body, indexes and state change; returns the code it stores for the first time and the
    /// state change as the trie takes it.
    /// `undoable` is false only for genesis, which is never reverted and so needs no history. `in_flight_code`
    /// is code a batch still being written stores (see [`Store::prepare`]).
    fn write_block(
        &self,
        batch: &mut Batch,
        sequence: u64,
        b: &Block,
        undoable: bool,
        in_flight_code: &BTreeSet<B256>,
    ) -> Result<(BTreeSet<B256>, StateDelta)> {
        if !b.hash_matches_header() {
            return Err(bad_block(sequence, b, format!("hash {} is not keccak256 of its header", b.hash)));
        }
        if b.receipts.len() != b.transactions.len() {
            let reason = format!("{} transactions but {} receipts", b.transactions.len(), b.receipts.len());
            return Err(bad_block(sequence, b, reason));
        }
        // The batch is invisible to reads, so an address (or slot) listed twice would be applied against a
        // stale prior value: the format forbids it, and the store refuses it.
        for pair in b.state.windows(2) {
            if pair[0].address >= pair[1].address {
                let reason = format!("state not sorted by address or {} listed twice", pair[1].address);
                return Err(bad_block(sequence, b, reason));
            }
        }
        for c in &b.state {
            if c.account.is_none() && !c.storage.is_empty() {
                return Err(bad_block(
                    sequence,
                    b,
                    format!("deleted account {} with storage writes", c.address),
                ));
            }
            if c.storage.windows(2).any(|w| w[0].slot >= w[1].slot) {
                return Err(bad_block(
                    sequence,
                    b,
                    format!("storage of {} not sorted or a slot twice", c.address),
                ));
            }
        }
        let mut changes = ChangeSet::default();
        let mut delta = StateDelta::default();
        let mut new_code = BTreeSet::new();
        for change in &b.state {
            let AccountWritten { key, slots, account } = self.write_account(
                batch,
                (sequence, b.number),
                change,
                undoable,
                (in_flight_code, &mut new_code),
            )?;
            changes.accounts.push((key, slots.keys().copied().collect()));
            let slots = slots.into_iter().map(|(slot, (_, after))| (slot, after)).collect();
            delta.accounts.insert(key, AccountDelta { account, slots });
        }
        // Sorted by hashed address, as every state table is.
        changes.accounts.sort_unstable_by_key(|(key, _)| *key);
        changes.new_code = new_code.iter().copied().collect();
        if undoable {
            self.put::<BlockChanges>(batch, &b.number, &changes);
        }
        for (index, tx) in b.transactions.iter().enumerate() {
            let location = TxLocation { block_number: b.number, index: index as u32 };
            self.put::<TxIndex>(batch, &tx.hash(), &location);
        }
        for log in b.receipts.iter().flat_map(|r| &r.logs) {
            self.put::<LogAddresses>(batch, &(log.address, b.number), &Bytes::new());
            for topic in &log.topics {
                self.put::<LogTopics>(batch, &(*topic, b.number), &Bytes::new());
            }
        }
        self.write_body(batch, b);
        self.put::<Canonical>(batch, &b.number, &b.hash);
        self.put_head(batch, BlockRef { number: b.number, hash: b.hash });
        Ok((new_code, delta))
    }

    /// The block's head and each transaction with its receipt, each its own entry, so that one transaction
    /// is read without the rest.
    fn write_body(&self, batch: &mut Batch, b: &Block) {
        let head = BlockHead {
            number: b.number,
            hash: b.hash,
            parent_hash: b.parent_hash,
            timestamp: b.timestamp,
            header: b.header.clone(),
            withdrawals: b.withdrawals.clone(),
            transactions: b.transactions.len() as u64,
        };
        self.put::<BlockHeads>(batch, &b.hash, &head);
        let mut first_log_index = 0;
        for (index, (transaction, receipt)) in b.transactions.iter().zip(&b.receipts).enumerate() {
            let tx = BlockTx { transaction: transaction.clone(), receipt: receipt.clone(), first_log_index };
            first_log_index += receipt.logs.len() as u64;
            self.put::<BlockTxs>(batch, &(b.hash, index as u64), &tx);
        }
        if !b.receipt_roots.is_empty() || !b.ommers.is_empty() {
            let extras = StoredExtras { receipt_roots: b.receipt_roots.clone(), ommers: b.ommers.clone() };
            self.put::<BlockExtras>(batch, &b.hash, &extras);
        }
    }

    /// Applies one account's change; returns its hashed address, every (hashed) slot it changed with its
    /// value before and after, and the account after.
    ///
    /// The history entries come from the record's prior values, so this reads nothing per key, except the
    /// old storage of a wiped account (which must be deleted, so it has to be listed) and whether new code is
    /// already stored. With [`crate::StoreOptions::verify_priors`] it also reads and compares every prior.
    fn write_account(
        &self,
        batch: &mut Batch,
        (sequence, number): (u64, u64),
        change: &AccountChange,
        undoable: bool,
        (in_flight_code, new_code): (&BTreeSet<B256>, &mut BTreeSet<B256>),
    ) -> Result<AccountWritten> {
        let account_key = keccak256(change.address);
        let prior = change.prior.map(|p| StoredAccount {
            balance: p.balance,
            nonce: p.nonce,
            code_hash: p.code_hash,
        });
        let verify = self.opts.verify_priors && undoable;
        if verify {
            self.verify_account_prior(sequence, number, account_key, change)?;
        }
        // A destroyed account has no storage; so does one that no longer exists at all.
        let wipe = change.storage_wiped || change.account.is_none();

        // hashed slot -> (value before the block, value after). A wipe's scan reads the prior values of
        // everything the account held (the record's slot priors mean nothing there); otherwise they are the
        // record's.
        let mut slots: BTreeMap<B256, (B256, B256)> = BTreeMap::new();
        if wipe {
            for (key, before) in self.scan_prefix::<Storage>(account_key.as_slice())? {
                slots.insert(slot_of(&key, change.address)?, (before, B256::ZERO));
            }
        }
        for s in &change.storage {
            let slot_key = keccak256(s.slot);
            let before = if wipe { B256::ZERO } else { s.prior };
            slots.entry(slot_key).and_modify(|e| e.1 = s.value).or_insert((before, s.value));
            if verify && !wipe {
                let db = self.get::<Storage>(&(account_key, slot_key))?.unwrap_or_default();
                if db != s.prior {
                    let what = format!("slot {} of {}", s.slot, change.address);
                    return Err(prior_mismatch(sequence, number, what, s.prior, db));
                }
            }
        }
        for (slot, (before, value)) in &slots {
            if undoable {
                self.put::<StorageHistory>(batch, &(account_key, *slot, number), before);
            }
            if value.is_zero() {
                self.delete::<Storage>(batch, &(account_key, *slot));
            } else {
                self.put::<Storage>(batch, &(account_key, *slot), value);
            }
        }

        if undoable {
            self.put::<AccountHistory>(batch, &(account_key, number), &PriorAccount(prior.clone()));
        }
        let after = match &change.account {
            None => {
                self.delete::<Accounts>(batch, &account_key);
                None
            }
            Some(state) => {
                let code_hash = match &state.code {
                    Some(code) if code.is_empty() => KECCAK256_EMPTY,
                    Some(code) => {
                        let hash = keccak256(code);
                        let stored = new_code.contains(&hash) || in_flight_code.contains(&hash);
                        if !stored && self.get::<Code>(&hash)?.is_none() {
                            self.put::<Code>(batch, &hash, code);
                            new_code.insert(hash);
                        }
                        hash
                    }
                    // "Unchanged" code of an account that was destroyed or did not exist is no code.
                    None => match &prior {
                        Some(p) if !change.storage_wiped => p.code_hash,
                        _ => KECCAK256_EMPTY,
                    },
                };
                let account = StoredAccount { balance: state.balance, nonce: state.nonce, code_hash };
                self.put::<Accounts>(batch, &account_key, &account);
                Some(account)
            }
        };
        Ok(AccountWritten { key: account_key, slots, account: after })
    }

    /// `--verify-priors`: the record's account before the block against this database's.
    fn verify_account_prior(
        &self,
        sequence: u64,
        number: u64,
        account_key: B256,
        change: &AccountChange,
    ) -> Result<()> {
        let db = self
            .get::<Accounts>(&account_key)?
            .and_then(|a| AccountPrior::existing(a.balance, a.nonce, a.code_hash));
        if db != change.prior {
            let show = |p: Option<AccountPrior>| match p {
                None => "absent".to_string(),
                Some(p) => format!("balance {}, nonce {}, code {}", p.balance, p.nonce, p.code_hash),
            };
            let what = format!("account {}", change.address);
            return Err(prior_mismatch(sequence, number, what, show(change.prior), show(db)));
        }
        Ok(())
    }

    /// Undoes the head block from its undo index and history entries.
    fn write_revert(&self, batch: &mut Batch, sequence: u64, r: &Revert) -> Result<()> {
        let head = self.head()?.ok_or(StoreError::MissingGenesis { sequence, kind: "revert" })?;
        if head.number != r.number || head.hash != r.hash {
            return Err(StoreError::RevertNotHead {
                sequence,
                number: r.number,
                hash: r.hash,
                head_number: head.number,
                head_hash: head.hash,
            });
        }
        let outside =
            || StoreError::RevertOutsideWindow { sequence, number: r.number, window: self.opts.undo_window };
        if r.number == 0 {
            return Err(outside());
        }
        let changes = self.get::<BlockChanges>(&r.number)?.ok_or_else(outside)?;
        let missing = |what: String| StoreError::Corrupt {
            table: "history",
            reason: format!("undo of block {}: no {what}", r.number),
        };
        let mut delta = StateDelta::default();
        for (address, slots) in &changes.accounts {
            let prior = self
                .get::<AccountHistory>(&(*address, r.number))?
                .ok_or_else(|| missing(format!("prior account {address} (hashed)")))?;
            match &prior.0 {
                Some(account) => self.put::<Accounts>(batch, address, account),
                None => self.delete::<Accounts>(batch, address),
            }
            let restored = delta.accounts.entry(*address).or_default();
            restored.account = prior.0;
            self.delete::<AccountHistory>(batch, &(*address, r.number));
            for slot in slots {
                let key = (*address, *slot, r.number);
                let before = self
                    .get::<StorageHistory>(&key)?
                    .ok_or_else(|| missing(format!("prior value of {address} slot {slot} (hashed)")))?;
                if before.is_zero() {
                    self.delete::<Storage>(batch, &(*address, *slot));
                } else {
                    self.put::<Storage>(batch, &(*address, *slot), &before);
                }
                self.delete::<StorageHistory>(batch, &key);
                restored.slots.insert(*slot, before);
            }
        }
        for hash in &changes.new_code {
            self.delete::<Code>(batch, hash);
        }
        let block = self.block_by_hash(&r.hash)?.ok_or_else(|| missing(format!("body {}", r.hash)))?;
        for tx in &block.transactions {
            self.delete::<TxIndex>(batch, &tx.hash());
        }
        for log in block.receipts.iter().flat_map(|r| &r.logs) {
            self.delete::<LogAddresses>(batch, &(log.address, r.number));
            for topic in &log.topics {
                self.delete::<LogTopics>(batch, &(*topic, r.number));
            }
        }
        if self.get::<BlockHeads>(&r.hash)?.is_some() {
            self.delete::<BlockHeads>(batch, &r.hash);
            for index in 0..block.transactions.len() {
                self.delete::<BlockTxs>(batch, &(r.hash, index as u64));
            }
        } else {
            self.delete::<LegacyBlocks>(batch, &r.hash);
        }
        self.delete::<Canonical>(batch, &r.number);
        self.delete::<BlockChanges>(batch, &r.number);
        self.put::<RevertedBlocks>(batch, &(r.number, r.hash), &block);
        let parent = r.number - 1;
        let parent_hash =
            self.canonical_hash(parent)?.ok_or_else(|| missing(format!("canonical block {parent}")))?;
        if self.opts.state_trie != TrieMode::Off {
            let parent_head =
                self.block_head(&parent_hash)?.ok_or_else(|| missing(format!("body of block {parent}")))?;
            let expected = state_root_of_header(&parent_head.header).map_err(|e| StoreError::Corrupt {
                table: "block_heads",
                reason: format!("header of block {parent} has no state root: {e}"),
            })?;
            let trie_parent = BlockRef { number: parent, hash: parent_hash };
            let expected = self.roots_checked().then_some(expected);
            self.check_trie_root(batch, sequence, (r.number, r.hash), trie_parent, expected, &delta)?;
        }
        self.put_head(batch, BlockRef { number: parent, hash: parent_hash });
        Ok(())
    }

    /// The genesis state enters the trie, and its root is compared with the genesis header's to learn whether
    /// this chain's headers commit to its state at all. Every real client's do (the genesis root is the
    /// alloc's); anvil's do not (its `--init` genesis reports the empty root, and its storage roots keep
    /// cleared slots), and on such a chain roots are computed and kept but never compared
    /// ([`MetaKey::RootsUnchecked`], logged at every start).
    fn check_genesis_root(
        &self,
        batch: &mut Batch,
        sequence: u64,
        b: &Block,
        delta: &StateDelta,
    ) -> Result<()> {
        if self.opts.state_trie == TrieMode::Off {
            return Ok(());
        }
        let header_root = state_root_of_header(&b.header).ok();
        let block = BlockRef { number: b.number, hash: b.hash };
        let computed =
            self.check_trie_root(batch, sequence, (b.number, b.parent_hash), block, None, delta)?;
        if header_root.is_some_and(|r| r != computed) {
            // A client whose genesis header does not commit to its alloc (anvil: the empty root) does not
            // commit its later headers to its state either (anvil keeps cleared slots in its storage roots):
            // no root of this chain can be compared. Said once, kept with the chain.
            let reason = format!(
                "the genesis header's state root {} is not the root of the genesis state {computed}",
                header_root.unwrap_or_default()
            );
            tracing::warn!(%reason, "state roots of this chain are computed, never compared");
            self.put::<Meta>(batch, &MetaKey::RootsUnchecked, &reason.into_bytes().into());
            self.set_roots_unchecked();
        }
        Ok(())
    }

    /// A group's batch sealed after its one state root check: `delta` is every change of the group's blocks
    /// (later ones over earlier ones), applied to the trie that describes the state before the first block
    /// (`from`: its number and parent hash); the root must be the one the last block's header commits to.
    pub(crate) fn seal_group(
        &self,
        mut batch: Batch,
        sequence: u64,
        from: (u64, B256),
        last: &GroupEnd,
        delta: &StateDelta,
    ) -> Result<Sealed> {
        let expected = self.expected_root(sequence, last.block.number, &last.header)?;
        self.check_trie_root(&mut batch, sequence, from, last.block, expected, delta)?;
        Ok(self.seal(batch))
    }

    /// The root a block's header commits to, when this store compares roots: not with the trie unchecked
    /// (benchmarks over generated headers) nor on a chain whose headers commit to no state.
    fn expected_root(&self, sequence: u64, number: u64, header: &[u8]) -> Result<Option<B256>> {
        if !self.roots_checked() {
            return Ok(None);
        }
        state_root_of_header(header).map(Some).map_err(|e| StoreError::BadBlock {
            sequence,
            number,
            reason: format!("header does not decode to a state root: {e}"),
        })
    }

    /// With the trie on: updates it with a block's change, and refuses the block unless the new root is the
    /// one its header commits to.
    fn check_state_root(
        &self,
        batch: &mut Batch,
        sequence: u64,
        b: &Block,
        delta: &StateDelta,
    ) -> Result<()> {
        if self.opts.state_trie == TrieMode::Off {
            return Ok(());
        }
        let expected = self.expected_root(sequence, b.number, &b.header)?;
        let block = BlockRef { number: b.number, hash: b.hash };
        self.check_trie_root(batch, sequence, (b.number, b.parent_hash), block, expected, delta)?;
        Ok(())
    }

    /// Applies `delta` to the trie, which must describe the state `from` names (a block's number and its
    /// parent's hash; a revert's block and its own hash), compares the root with `expected` (if any) and
    /// records that the trie now describes `to`. A forward change keeps what it replaced for proofs below the
    /// head ([`crate::trie::history`]), unless catching up at start-up.
    fn check_trie_root(
        &self,
        batch: &mut Batch,
        sequence: u64,
        (number, from): (u64, B256),
        to: BlockRef,
        expected: Option<B256>,
        delta: &StateDelta,
    ) -> Result<B256> {
        let trie = self.trie_head()?;
        // What the update replaces, kept for proofs at the block before it ([`crate::trie::history`]); a
        // revert undoes what was kept instead.
        let record = self.trie_history.enabled() && to.number >= number;
        let (computed, recorded) = match trie {
            // Genesis: an empty state and no trie yet.
            None if number == 0 && to.number == 0 => (self.update_trie(batch, delta, false)?.0, None),
            Some(t) if t.hash == from && delta.accounts.is_empty() => {
                (t.root, record.then(Recorded::default))
            }
            Some(t) if t.hash == from => self.update_trie(batch, delta, record)?,
            _ => {
                return Err(StoreError::Corrupt {
                    table: "meta",
                    reason: format!(
                        "the state trie describes {:?}, not the state block {number} applies to ({from}); \
                         restart the replica to rebuild it",
                        trie.map(|t| (t.number, t.hash))
                    ),
                })
            }
        };
        if let Some(expected) = expected.filter(|e| *e != computed) {
            return Err(StoreError::StateRootMismatch {
                sequence,
                number,
                expected,
                computed,
                changed: delta.accounts.len(),
            });
        }
        let head = TrieHead { number: to.number, hash: to.hash, root: computed };
        self.put::<Meta>(batch, &MetaKey::Trie, &head.encode().into());
        if to.number < number {
            batch.set_trie_change(TrieChange::Revert { to: to.number });
        } else if let (Some(before), Some(recorded)) = (trie, recorded) {
            let unit = TrieUnit::new((number, to.number), before.root, recorded);
            batch.set_trie_change(TrieChange::Block(Box::new(unit)));
        }
        Ok(computed)
    }

    fn put_head(&self, batch: &mut Batch, head: BlockRef) {
        let bytes = postcard::to_stdvec(&head).unwrap_or_default();
        self.put::<Meta>(batch, &MetaKey::Head, &bytes.into());
    }
}

fn prior_mismatch(
    sequence: u64,
    number: u64,
    what: String,
    record: impl ToString,
    db: impl ToString,
) -> StoreError {
    StoreError::PriorMismatch { sequence, number, what, record: record.to_string(), db: db.to_string() }
}

fn bad_block(sequence: u64, b: &Block, reason: String) -> StoreError {
    StoreError::BadBlock { sequence, number: b.number, reason }
}

/// The (hashed) slot part of a [`Storage`] key.
fn slot_of(key: &[u8], address: Address) -> Result<B256> {
    key.get(32..64).and_then(|s| B256::try_from(s).ok()).ok_or_else(|| StoreError::Corrupt {
        table: "storage",
        reason: format!("key of {address} is {} bytes, expected 64", key.len()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ec_log::{AccountState, Heartbeat, PublisherState};

    fn block(number: u64, wipe: bool, destroy: bool) -> Record {
        let change = AccountChange {
            address: Address::repeat_byte(1),
            storage_wiped: wipe,
            prior: None,
            account: (!destroy).then(|| AccountState { balance: Default::default(), nonce: 1, code: None }),
            storage: vec![],
        };
        Record::Block(Block {
            number,
            hash: B256::ZERO,
            parent_hash: B256::ZERO,
            timestamp: 0,
            header: Bytes::new(),
            transactions: vec![],
            receipts: vec![],
            withdrawals: None,
            state: vec![change],
            receipt_roots: Vec::new(),
            ommers: Vec::new(),
        })
    }

    fn heartbeat() -> Record {
        let head = BlockRef { number: 0, hash: B256::ZERO };
        Record::Heartbeat(Heartbeat {
            time_ms: 0,
            head,
            safe: None,
            finalized: None,
            client_head: None,
            state: PublisherState::Following,
            reorg_window: 0,
        })
    }

    fn in_flight(head: Option<u64>, simple: bool) -> After {
        After {
            sequence: 0,
            record_crc: 0,
            head: head.map(|number| BlockRef { number, hash: B256::ZERO }),
            new_code: BTreeSet::new(),
            simple,
        }
    }

    #[test]
    fn what_may_be_prepared_while_the_record_before_is_written() {
        let plain = StoreOptions { state_trie: TrieMode::Off, ..StoreOptions::default() };
        let trie = StoreOptions::default();
        let verify = StoreOptions { verify_priors: true, ..plain.clone() };
        let window = |k| StoreOptions { undo_window: 1, history_blocks: Some(k), ..plain.clone() };
        let revert = Record::Revert(Revert { number: 10, hash: B256::ZERO });
        #[rustfmt::skip]
        let cases: Vec<(&str, After, Record, StoreOptions, bool)> = vec![
            ("block after block",                  in_flight(Some(10), true), block(11, false, false), plain.clone(), true),
            ("heartbeat after block",              in_flight(Some(10), true), heartbeat(),             plain.clone(), true),
            ("block after heartbeat",              in_flight(None, true),     block(11, false, false), plain.clone(), true),
            ("a wipe lists stored slots",          in_flight(Some(10), true), block(11, true, false),  plain.clone(), false),
            ("a deletion lists stored slots",      in_flight(Some(10), true), block(11, false, true),  plain.clone(), false),
            ("a revert reads the undo entries",    in_flight(Some(10), true), revert,                  plain.clone(), false),
            ("after a genesis, revert, checkpoint", in_flight(Some(10), false), block(11, false, false), plain.clone(), false),
            ("verifying priors reads them all",    in_flight(Some(10), true), block(11, false, false), verify,        false),
            ("pruning a block long written",       in_flight(Some(10), true), block(11, false, false), window(2),     true),
            ("pruning the block in flight",        in_flight(Some(10), true), block(11, false, false), window(1),     false),
            ("the trie a block updates",           in_flight(Some(10), true), block(11, false, false), trie.clone(),  false),
            ("the trie after a heartbeat",         in_flight(None, true),     block(11, false, false), trie.clone(),  true),
            ("a heartbeat beside the trie",        in_flight(Some(10), true), heartbeat(),             trie,          true),
        ];
        for (name, after, next, opts, expected) in cases {
            assert_eq!(may_prepare_during(&after, &next, &opts), expected, "{name}");
        }
    }

    #[test]
    fn what_may_join_a_group_of_blocks_under_one_root() {
        let trie = StoreOptions::default();
        let off = StoreOptions { state_trie: TrieMode::Off, ..StoreOptions::default() };
        let verify = StoreOptions { verify_priors: true, ..StoreOptions::default() };
        let window = |k| StoreOptions { undo_window: 1, history_blocks: Some(k), ..StoreOptions::default() };
        let revert = Record::Revert(Revert { number: 10, hash: B256::ZERO });
        // The group's first block is 8; it ends at block 10.
        #[rustfmt::skip]
        let cases: Vec<(&str, After, Record, StoreOptions, bool)> = vec![
            ("a block",                          in_flight(Some(10), true), block(11, false, false), trie.clone(),  true),
            ("a heartbeat",                      in_flight(Some(10), true), heartbeat(),             trie.clone(),  true),
            ("no trie, no groups",               in_flight(Some(10), true), block(11, false, false), off,           false),
            ("a wipe lists stored slots",        in_flight(Some(10), true), block(11, true, false),  trie.clone(),  false),
            ("a deletion lists stored slots",    in_flight(Some(10), true), block(11, false, true),  trie.clone(),  false),
            ("a revert ends the group",          in_flight(Some(10), true), revert,                  trie.clone(),  false),
            ("verifying priors reads them all",  in_flight(Some(10), true), block(11, false, false), verify,        false),
            ("pruning a block before the group", in_flight(Some(10), true), block(11, false, false), window(4),     true),
            ("pruning a block in the group",     in_flight(Some(10), true), block(11, false, false), window(3),     false),
            ("after a genesis",                  in_flight(Some(10), false), block(11, false, false), trie,         false),
        ];
        for (name, after, next, opts, expected) in cases {
            assert_eq!(may_group(&after, 8, &next, &opts), expected, "{name}");
        }
    }
}
