//! Applying a stream of records on two threads: the next record is checked and its batch built while the
//! one before it is being written.
//!
//! A mainnet-sized block spends about a third of its apply time building its batch (hashing keys, encoding
//! values, sorting) and two thirds in RocksDB's write (memtable inserts). Catching up, the two overlap: the
//! caller's thread prepares record N+1 while a writer thread commits record N. Each record is still exactly
//! one atomic batch with its own offset, written in order, so a crash leaves the database at the end of some
//! record as before.
//!
//! Preparing reads the database as it was before the batch in flight. That is only done where nothing the
//! record reads can be in that batch ([`crate::apply::may_prepare_during`]); otherwise the pipeline waits for
//! the write first. At most one batch is in flight.
//!
//! With the state trie on, a block cannot be prepared while the one before it is written (its root walk
//! reads the trie nodes that block writes). Catching up, blocks are grouped instead: up to
//! [`DEFAULT_GROUP_BLOCKS`] consecutive blocks (and heartbeats) become **one** write batch with the last
//! one's offset, and the trie is updated and the root checked once, over the union of their changes, against
//! the last block's header. A crash leaves the database at the end of some group, as before at the end of
//! some record. When a group's root differs, its blocks are applied again one by one, each checked, so that
//! the error names the block and every good block before it is kept. [`Pipeline::flush`] closes the group:
//! at the tip (the replica flushes after each record there) every block is its own group.
//!
//! A closed group's batch goes to the writer thread like a record's, and the next group is gathered while it
//! is written: its blocks are prepared without the trie, on the terms a block joins a group on
//! ([`crate::apply::may_group`]: no wipes, no pruning of a block the batch in flight holds). Its root walk,
//! when it closes, waits for that write first.
//!
//! Catching up ([`Pipeline::set_catching_up`]) with [`crate::StoreOptions::catch_up_wal`] off, batches are
//! written without RocksDB's write-ahead log: every group's tens of megabytes would otherwise be written
//! twice, and Kafka is the log a replica replays anyway. A crash then rolls the database back to its last flush, whole
//! groups only, its offset with it ([`Store::persist`] says why that is safe and what keeps it so).

use std::{
    sync::{mpsc, Arc},
    thread,
};

use ec_log::Assembled;

use alloy_primitives::B256;

use crate::{
    apply::{may_group, may_prepare_during, may_start_group, After, GroupEnd, Prepared, Ready, Staged},
    batch::{Batch, Sealed},
    error::{Result, StoreError},
    trie::update::StateDelta,
    Store,
};

/// The fewest writes a batch has for the writer thread to write it; smaller ones are written in place. Handing
/// a batch over costs two thread wake-ups (tens of microseconds on a busy machine), which the overlap only
/// repays when the write itself takes a millisecond or more: a mainnet block is about 13,000 writes (25-30
/// ms), a record of the generated test log about 50. Handing those over made the small-record replay 1.5x
/// slower (docs/benchmarks.md).
pub const HAND_OVER_FROM: usize = 1_000;

/// Blocks one group holds at most (see the module's comment): a mainnet block is ~13,000 writes, so a group
/// is a batch of about 200,000 writes (tens of megabytes) and one root walk instead of sixteen.
pub const DEFAULT_GROUP_BLOCKS: usize = 16;

/// Applies records in order, preparing each while the one before it is written. Dropping it waits for the
/// batch in flight.
pub struct Pipeline {
    store: Arc<Store>,
    writer: Option<Writer>,
    /// The record whose batch the writer has.
    in_flight: Option<InFlight>,
    /// Records prepared while the batch before them was being written.
    early: u64,
    /// Groups written.
    groups: u64,
    /// See [`HAND_OVER_FROM`].
    hand_over_from: usize,
    /// The blocks being grouped (see the module's comment).
    group: Option<Group>,
    /// See [`DEFAULT_GROUP_BLOCKS`]; 1: no grouping.
    group_blocks: usize,
    /// Batches are written without the write-ahead log ([`Pipeline::set_catching_up`]).
    catching_up: bool,
}

/// Records applied as one batch with one state root check.
struct Group {
    batch: Batch,
    delta: StateDelta,
    /// What the database holds once the group commits.
    after: After,
    recs: Vec<Assembled>,
    /// The state the group starts from: its first block's number and parent hash.
    from: (u64, B256),
    /// The group's last block (its root is the one checked).
    last: GroupEnd,
    blocks: usize,
}

struct InFlight {
    /// One record, or a group's.
    recs: Vec<Assembled>,
    /// What the database holds once it commits.
    after: After,
    first_state_block: Option<u64>,
    /// A group's first block: the next group may be gathered while it is written ([`may_group`]).
    group_from: Option<u64>,
}

/// What one [`Pipeline::submit`] did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Records whose batches committed during the call, oldest first: the batch in flight (a record's, or a
    /// group's) and any written in place.
    pub committed: Vec<Assembled>,
    /// The submitted record was already applied (its sequence is at or below this one): nothing is written
    /// for it, and it is not returned as committed.
    pub duplicate: Option<u64>,
}

struct Writer {
    jobs: mpsc::SyncSender<Sealed>,
    done: mpsc::Receiver<Result<()>>,
    thread: thread::JoinHandle<()>,
}

impl Pipeline {
    pub fn new(store: Arc<Store>) -> Result<Self> {
        // Capacity 1: the writer holds one batch; the caller never queues a second (it waits first).
        let (jobs, rx) = mpsc::sync_channel::<Sealed>(1);
        let (tx, done) = mpsc::channel();
        let writer_store = store.clone();
        let thread = thread::Builder::new()
            .name("ec-store-writer".into())
            .spawn(move || {
                for sealed in rx {
                    if tx.send(writer_store.write_sealed(sealed)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|e| StoreError::Config {
                reason: format!("cannot start the store's writer thread: {e}"),
            })?;
        Ok(Self {
            store,
            writer: Some(Writer { jobs, done, thread }),
            in_flight: None,
            early: 0,
            groups: 0,
            hand_over_from: HAND_OVER_FROM,
            group: None,
            group_blocks: DEFAULT_GROUP_BLOCKS,
            catching_up: false,
        })
    }

    /// Whether the records submitted from now on are being caught up (the caller is behind the log's end): their
    /// batches are then written without RocksDB's write-ahead log (see the module's comment), unless the
    /// store's options keep it. Off (the default), as at the tip, every batch goes through the log, and the
    /// first one flushes what was written without it.
    pub fn set_catching_up(&mut self, behind: bool) {
        self.catching_up = behind;
        // Nothing is served while catching up at start-up: no proof asks for the trie's recent past.
        self.store.trie_history.pause(behind);
    }

    /// Groups up to `blocks` blocks per batch and root check (default [`DEFAULT_GROUP_BLOCKS`]; 1: none).
    pub fn group_blocks(mut self, blocks: usize) -> Self {
        self.group_blocks = blocks.max(1);
        self
    }

    /// Hands batches of at least `writes` writes to the writer thread (default [`HAND_OVER_FROM`]; 0: all of
    /// them, as the tests do to exercise the overlap with small records).
    pub fn hand_over_from(mut self, writes: usize) -> Self {
        self.hand_over_from = writes;
        self
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// How many records were prepared while the batch before them was being written (the rest waited for
    /// it: see [`crate::apply::may_prepare_during`]).
    pub fn prepared_early(&self) -> u64 {
        self.early
    }

    /// Whether a batch is being written.
    pub fn in_flight(&self) -> bool {
        self.in_flight.is_some()
    }

    /// Checks `rec` and hands its batch to the writer, once the batch before it has committed. On an error
    /// (the record is refused, or the batch in flight failed to write) nothing of `rec` is written, and the
    /// batch in flight has been waited for.
    pub fn submit(&mut self, rec: Assembled) -> Result<Submitted> {
        let mut out = Submitted::default();
        let opts = self.store.options();
        if self.group_blocks > 1 {
            match &self.group {
                Some(g)
                    if g.blocks < self.group_blocks
                        && may_group(&g.after, self.unwritten_from(g), &rec.record, opts) =>
                {
                    return self.join_group(rec, out);
                }
                Some(_) => out.committed.extend(self.close_group()?),
                None if may_start_group(&rec.record, opts) => {
                    // A group's blocks are prepared without the trie (it is walked once, when the group
                    // closes, after the batch in flight is written): the next group may be gathered while
                    // the one before it is written, on the terms a block joins a group on.
                    let joins_in_flight = self.in_flight.as_ref().is_some_and(|f| {
                        f.group_from.is_some_and(|from| may_group(&f.after, from, &rec.record, opts))
                    });
                    if joins_in_flight {
                        self.early += 1;
                    } else {
                        out.committed.extend(self.flush()?);
                    }
                    return self.join_group(rec, out);
                }
                None => {}
            }
        }
        let early = self
            .in_flight
            .as_ref()
            .is_some_and(|f| may_prepare_during(&f.after, &rec.record, self.store.options()));
        if early {
            self.early += 1;
        } else {
            out.committed.extend(self.flush()?);
        }
        let prepared = match self.store.prepare(&rec, self.in_flight.as_ref().map(|f| &f.after)) {
            Ok(p) => p,
            Err(e) => {
                self.flush()?;
                return Err(e);
            }
        };
        out.committed.extend(self.flush_in_flight()?);
        match prepared {
            Prepared::Duplicate { applied } => out.duplicate = Some(applied),
            Prepared::Ready(Ready { sealed, after, first_state_block }) => {
                let f = InFlight { recs: vec![rec], after, first_state_block, group_from: None };
                out.committed.extend(self.write(sealed, f)?);
            }
        }
        Ok(out)
    }

    /// The first block whose batch may not be written yet while group `g` is gathered: the first of the group
    /// in flight (while a group is gathered, what is in flight can only be the group before it), else its
    /// own first. A block joins only if it prunes no history from there on ([`may_group`]), since pruning
    /// reads the pruned block's undo entries.
    fn unwritten_from(&self, g: &Group) -> u64 {
        self.in_flight.as_ref().and_then(|f| f.group_from).unwrap_or(g.from.0)
    }

    /// Hands a batch to the writer thread (nothing may be in flight), or writes it in place when it is small
    /// ([`HAND_OVER_FROM`]); returns its records if it was written in place.
    fn write(&mut self, sealed: Sealed, f: InFlight) -> Result<Vec<Assembled>> {
        debug_assert!(self.in_flight.is_none());
        let sealed = if self.catching_up { sealed.catching_up(self.store.options()) } else { sealed };
        if sealed.writes() < self.hand_over_from {
            self.store.write_sealed(sealed)?;
            self.store.committed(f.first_state_block);
            return Ok(f.recs);
        }
        let writer = self.writer.as_ref().ok_or(StoreError::WriterStopped)?;
        writer.jobs.send(sealed).map_err(|_| StoreError::WriterStopped)?;
        self.in_flight = Some(f);
        Ok(Vec::new())
    }

    /// Adds `rec` to the group (starting one), and closes the group once it is full.
    fn join_group(&mut self, rec: Assembled, mut out: Submitted) -> Result<Submitted> {
        // Prepared on top of the group and of the group in flight before it ([`Pipeline::unwritten_from`]):
        // the code it stores is not in the database yet, and a block
        // storing the same code must not store it again nor claim it as new in its undo entry.
        let both;
        let before = match (&self.group, &self.in_flight) {
            (Some(g), Some(f)) => {
                both = f.after.then(g.after.clone());
                Some(&both)
            }
            (Some(g), None) => Some(&g.after),
            (None, f) => f.as_ref().map(|f| &f.after),
        };
        let staged = match self.store.prepare_batch(&rec, before, true) {
            Ok(staged) => staged,
            Err(e) => {
                // What the group holds is good: it is written before the error is returned.
                self.flush()?;
                return Err(e);
            }
        };
        let (batch, after, deferred) = match staged {
            Staged::Duplicate { applied } => {
                out.duplicate = Some(applied);
                return Ok(out);
            }
            Staged::Ready { batch, after, deferred, .. } => (batch, after, deferred),
        };
        match (&mut self.group, deferred) {
            (Some(g), deferred) => {
                g.batch.extend(batch);
                g.after = g.after.then(after);
                if let Some(d) = deferred {
                    g.delta.extend(d.delta);
                    g.last = d.head;
                    g.blocks += 1;
                }
                g.recs.push(rec);
            }
            (None, Some(d)) => {
                self.group = Some(Group {
                    batch,
                    delta: d.delta,
                    after,
                    recs: vec![rec],
                    from: (d.head.block.number, d.parent_hash),
                    last: d.head,
                    blocks: 1,
                });
            }
            (None, None) => return Err(StoreError::Config { reason: "a group starts with a block".into() }),
        }
        if self.group.as_ref().is_some_and(|g| g.blocks >= self.group_blocks) {
            out.committed.extend(self.close_group()?);
        }
        Ok(out)
    }

    /// Checks the group's root and hands its batch to the writer; returns the records committed meanwhile
    /// (the batch in flight before it). On a root mismatch of a group of several blocks, applies them one by
    /// one, each checked: the good ones are written, the bad one's error returned.
    fn close_group(&mut self) -> Result<Vec<Assembled>> {
        let Some(g) = self.group.take() else { return Ok(Vec::new()) };
        // The root walk reads the trie, which the batch in flight (the group before) writes.
        let mut done = self.flush_in_flight()?;
        match self.store.seal_group(g.batch, g.after.sequence(), g.from, &g.last, &g.delta) {
            Ok(sealed) => {
                self.groups += 1;
                let f = InFlight {
                    recs: g.recs,
                    after: g.after,
                    first_state_block: None,
                    group_from: Some(g.from.0),
                };
                done.extend(self.write(sealed, f)?);
                Ok(done)
            }
            Err(StoreError::StateRootMismatch { .. }) if g.blocks > 1 => {
                tracing::warn!(
                    blocks = g.blocks,
                    "a group's state root differs: applying its blocks one by one"
                );
                for rec in g.recs {
                    if self.store.apply(&rec)? == crate::ApplyOutcome::Applied {
                        done.push(rec);
                    }
                }
                Ok(done)
            }
            Err(e) => Err(e),
        }
    }

    /// How many groups have been written (see the module's comment).
    pub fn groups_written(&self) -> u64 {
        self.groups
    }

    /// Writes the group being gathered and waits for the batch in flight; returns their records once
    /// committed, oldest first.
    pub fn flush(&mut self) -> Result<Vec<Assembled>> {
        let mut done = self.close_group()?;
        done.extend(self.flush_in_flight()?);
        Ok(done)
    }

    /// Waits for the batch in flight; returns its records once committed.
    fn flush_in_flight(&mut self) -> Result<Vec<Assembled>> {
        let Some(f) = self.in_flight.take() else { return Ok(Vec::new()) };
        let writer = self.writer.as_ref().ok_or(StoreError::WriterStopped)?;
        let written = writer.done.recv().map_err(|_| StoreError::WriterStopped)?;
        if let Err(e) = written {
            // The batch holds its last record's offset: that is the write that failed.
            let (sequence, offset) = f.recs.last().map_or((0, 0), |r| (r.envelope.sequence, r.last_offset));
            return Err(StoreError::Write { sequence, offset, source: Box::new(e) });
        }
        self.store.committed(f.first_state_block);
        Ok(f.recs)
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        if let Some(Writer { jobs, done, thread }) = self.writer.take() {
            // Closing the queue ends the writer once it has written the batch it holds.
            drop(jobs);
            let _ = thread.join();
            drop(done);
        }
    }
}
