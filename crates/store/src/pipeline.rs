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

use std::{
    sync::{mpsc, Arc},
    thread,
};

use ec_log::Assembled;

use crate::{
    apply::{may_prepare_during, After, Prepared, Ready},
    batch::Sealed,
    error::{Result, StoreError},
    Store,
};

/// The fewest writes a batch has for the writer thread to write it; smaller ones are written in place. Handing
/// a batch over costs two thread wake-ups (tens of microseconds on a busy machine), which the overlap only
/// repays when the write itself takes a millisecond or more: a mainnet block is about 13,000 writes (25-30
/// ms), a record of the generated test log about 50. Handing those over made the small-record replay 1.5x
/// slower (docs/benchmarks.md).
pub const HAND_OVER_FROM: usize = 1_000;

/// Applies records in order, preparing each while the one before it is written. Dropping it waits for the
/// batch in flight.
pub struct Pipeline {
    store: Arc<Store>,
    writer: Option<Writer>,
    /// The record whose batch the writer has.
    in_flight: Option<InFlight>,
    /// Records prepared while the batch before them was being written.
    early: u64,
    /// See [`HAND_OVER_FROM`].
    hand_over_from: usize,
}

struct InFlight {
    rec: Assembled,
    /// What the database holds once it commits.
    after: After,
    first_state_block: Option<u64>,
}

/// What one [`Pipeline::submit`] did.
#[derive(Debug, Default)]
pub struct Submitted {
    /// Records whose batches committed during the call, oldest first: the one that was in flight.
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
            hand_over_from: HAND_OVER_FROM,
        })
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
        out.committed.extend(self.flush()?);
        match prepared {
            Prepared::Duplicate { applied } => out.duplicate = Some(applied),
            Prepared::Ready(Ready { sealed, first_state_block, .. })
                if sealed.writes() < self.hand_over_from =>
            {
                self.store.write_sealed(sealed)?;
                self.store.committed(first_state_block);
                out.committed.push(rec);
            }
            Prepared::Ready(Ready { sealed, after, first_state_block }) => {
                let writer = self.writer.as_ref().ok_or(StoreError::WriterStopped)?;
                writer.jobs.send(sealed).map_err(|_| StoreError::WriterStopped)?;
                self.in_flight = Some(InFlight { rec, after, first_state_block });
            }
        }
        Ok(out)
    }

    /// Waits for the batch in flight; returns its record once committed.
    pub fn flush(&mut self) -> Result<Option<Assembled>> {
        let Some(f) = self.in_flight.take() else { return Ok(None) };
        let writer = self.writer.as_ref().ok_or(StoreError::WriterStopped)?;
        let written = writer.done.recv().map_err(|_| StoreError::WriterStopped)?;
        written.map_err(|e| StoreError::Write {
            sequence: f.rec.envelope.sequence,
            offset: f.rec.last_offset,
            source: Box::new(e),
        })?;
        self.store.committed(f.first_state_block);
        Ok(Some(f.rec))
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
