//! Parsing on one thread, writing on another: a dump import is about half JSON parsing and hashing, half
//! SST encoding and compression, so two cores do it in little more than the time of the larger half.
//!
//! Entries cross in batches: a channel message per entry would cost more than the entry. The channel is
//! bounded, so a slow writer holds the parser back instead of letting batches pile up in memory.

use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use alloy_primitives::{Bytes, B256};
use ec_store::tables::StoredAccount;

use crate::{error::Result, ImportError, StateSink};

/// Entries per batch, and batches in flight.
const BATCH: usize = 4_096;
const IN_FLIGHT: usize = 2;

enum Entry {
    Account(B256, StoredAccount, Option<Bytes>),
    Slot(B256, B256, B256),
}

/// The parser's end: collects entries and hands full batches to the writer thread.
struct Sender {
    batch: Vec<Entry>,
    tx: SyncSender<Vec<Entry>>,
}

impl Sender {
    fn push(&mut self, entry: Entry) -> Result<()> {
        self.batch.push(entry);
        if self.batch.len() >= BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BATCH));
        // The writer only hangs up after an error of its own, which the caller reports instead of this one.
        self.tx.send(batch).map_err(|_| ImportError::Writer("stopped"))
    }
}

impl StateSink for Sender {
    fn account(&mut self, hashed_address: B256, account: StoredAccount, code: Option<Bytes>) -> Result<()> {
        self.push(Entry::Account(hashed_address, account, code))
    }

    fn slot(&mut self, hashed_address: B256, hashed_slot: B256, value: B256) -> Result<()> {
        self.push(Entry::Slot(hashed_address, hashed_slot, value))
    }
}

fn drain(rx: Receiver<Vec<Entry>>, sink: &mut dyn StateSink) -> Result<()> {
    for batch in rx {
        for entry in batch {
            match entry {
                Entry::Account(key, account, code) => sink.account(key, account, code)?,
                Entry::Slot(key, slot, value) => sink.slot(key, slot, value)?,
            }
        }
    }
    Ok(())
}

/// Runs `produce` (the parser) on this thread with a sink whose entries reach `sink` on a second thread,
/// in order. The writer's error wins over the parser's (a parser error caused by the writer stopping says
/// nothing useful).
pub(crate) fn run<S: StateSink + Send, T>(
    sink: &mut S,
    produce: impl FnOnce(&mut dyn StateSink) -> Result<T>,
) -> Result<T> {
    let (tx, rx) = sync_channel(IN_FLIGHT);
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || drain(rx, sink));
        let mut sender = Sender { batch: Vec::with_capacity(BATCH), tx };
        let produced = produce(&mut sender).and_then(|out| sender.flush().map(|()| out));
        drop(sender);
        let written = writer.join().unwrap_or(Err(ImportError::Writer("panicked")));
        written?;
        produced
    })
}
