//! The replay loop itself: Kafka messages in, whole records assembled, records through the store's
//! [`Pipeline`], and what each commit changes announced ([`Replay::on_committed`]).
//!
//! [`Replay::start`] decides where to read from; [`Replay::run`] waits on the next message, the progress
//! timer, the watermark refresh and the shutdown signal, and hands each to one named step.

// A `ReplicaError` ends the replica (it is returned once, by `run`): its size costs nothing.
#![allow(clippy::result_large_err)]

use std::{future::Future, sync::Arc, time::Duration};

use ec_kafka::{is_offset_out_of_range, Fetched, PartitionConsumer};
use ec_log::{Assembled, Assembler, Record};
use ec_store::{tables::StoredBlock, Pipeline, Position, Reads, Store, StoreError};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::{readiness, startup, ChainEvent, Progress, ReplicaConfig, ReplicaError, StartError, Status};

/// What a step of the loop tells it.
enum Next {
    /// Carry on with the next message.
    Continue,
    /// Caught up, and asked to stop there.
    Done,
}

pub(crate) struct Replay {
    cfg: ReplicaConfig,
    store: Arc<Store>,
    status: watch::Sender<Status>,
    consumer: PartitionConsumer,
    assembler: Assembler,
    pipeline: Pipeline,
    progress: Progress,
    /// The database's position when the replica started.
    stored: Option<Position>,
    /// The offset the replay started from.
    start: i64,
    /// The offset of the first message read, until the first whole record's sequence is checked against it.
    first_offset: Option<i64>,
    first_checked: bool,
    /// The next offset to read.
    next_offset: i64,
}

impl Replay {
    /// Checks that the database can continue from this topic, sets the status from what it holds, and
    /// assigns the partition at the offset to resume from.
    pub(crate) fn start(
        cfg: ReplicaConfig,
        store: Arc<Store>,
        status: watch::Sender<Status>,
    ) -> Result<Self, ReplicaError> {
        let stored = store.position().map_err(ReplicaError::Open)?;
        let last_heartbeat = store.last_heartbeat().map_err(ReplicaError::Open)?;
        if let Some(hb) = &last_heartbeat {
            let undo_window = store.options().undo_window;
            if hb.reorg_window > undo_window {
                return Err(ReplicaError::UndoWindowTooSmall { reorg_window: hb.reorg_window, undo_window });
            }
        }
        let chain_max_head_age = store
            .chain()
            .map_err(ReplicaError::Open)?
            .and_then(|c| readiness::chain_default_max_head_age(&c.spec));
        let consumer = PartitionConsumer::new(&cfg.kafka, &cfg.topic)?;
        let (earliest, high) = consumer.watermarks(Duration::from_secs(10))?;
        let start = startup::start_offset(&cfg.topic, stored, earliest, high)?;
        info!(
            topic = %cfg.topic,
            stored_offset = ?stored.map(|p| p.kafka_offset),
            stored_sequence = ?stored.map(|p| p.sequence),
            earliest, high, start,
            "replica starting: {} messages to replay", high - start
        );
        status.send_modify(|s| {
            s.position = stored;
            let head = store.head().ok().flatten();
            s.head_block = head.map(|h| h.number);
            s.head_hash = head.map(|h| h.hash);
            s.head_timestamp =
                head.and_then(|h| store.block_head(&h.hash).ok().flatten()).map(|b| b.timestamp);
            s.publisher = last_heartbeat.as_ref().map(|h| h.state.clone());
            s.client_head = last_heartbeat.as_ref().and_then(|h| h.client_head);
            s.chain_max_head_age = chain_max_head_age;
            s.high_watermark = Some(high);
            s.next_offset = start;
        });
        consumer.assign(start)?;
        let pipeline = Pipeline::new(store.clone())
            .map_err(ReplicaError::Open)?
            .hand_over_from(cfg.pipeline_from_writes);
        Ok(Self {
            cfg,
            store,
            status,
            consumer,
            assembler: Assembler::new(),
            pipeline,
            progress: Progress::default(),
            stored,
            start,
            first_offset: None,
            first_checked: false,
            next_offset: start,
        })
    }

    /// Replays until `shutdown` resolves, an error stops it, or (with `exit_when_caught_up`) it has
    /// caught up.
    pub(crate) async fn run(mut self, shutdown: impl Future<Output = ()>) -> Result<Progress, ReplicaError> {
        let mut watermarks = tokio::time::interval(Duration::from_secs(1));
        let mut tick = tokio::time::interval(self.cfg.progress_interval);
        tick.tick().await;
        tokio::pin!(shutdown);
        loop {
            let fetched = tokio::select! {
                _ = &mut shutdown => {
                    // The batch being written is kept: the database ends at a whole record either way.
                    self.flush().map_err(ReplicaError::Write)?;
                    info!("shutdown requested: {}", self.progress.report(self.next_offset, None));
                    return Ok(self.progress);
                }
                _ = tick.tick() => {
                    let high = self.status.borrow().high_watermark;
                    info!("replay: {}", self.progress.report(self.next_offset, high));
                    continue;
                }
                _ = watermarks.tick() => {
                    self.refresh_high_watermark();
                    continue;
                }
                fetched = self.consumer.next() => fetched,
            };
            let next = match fetched {
                Ok(Fetched::Message { offset, payload }) => self.on_message(offset, &payload),
                Ok(Fetched::EndOfPartition { next_offset }) => self.on_end_of_partition(next_offset),
                Err(e) if is_offset_out_of_range(&e) => self.overtaken_by_retention().and_then(Err),
                Err(e) => Err(e.into()),
            };
            if let Next::Done = next.inspect_err(|_| self.keep_what_committed())? {
                return Ok(self.progress);
            }
        }
    }

    /// The replay stops on an error: what it committed before (caught up, maybe, without the write-ahead log)
    /// is made durable, so that a restart resumes after it rather than replaying it.
    fn keep_what_committed(&self) {
        if let Err(e) = self.store.persist() {
            warn!("could not flush what was caught up before the error (a restart replays it): {e}");
        }
    }

    /// The partition's high watermark, asked for once a second.
    fn refresh_high_watermark(&self) {
        // A blocking call of a few milliseconds; block_in_place keeps the runtime's other tasks (health
        // endpoints) running meanwhile.
        let high = tokio::task::block_in_place(|| {
            self.consumer.watermarks(Duration::from_secs(2)).ok().map(|w| w.1)
        });
        if high.is_some() {
            self.status.send_modify(|s| s.high_watermark = high);
        }
    }

    /// Nothing more to read for now: what was read is written, then the replica is caught up.
    fn on_end_of_partition(&mut self, position: i64) -> Result<Next, ReplicaError> {
        if self.assembler.pending().is_some() {
            // The publisher is between chunks of one record: not caught up until it is whole.
            return Ok(Next::Continue);
        }
        // Caught up means written (and durable): the last record's batch commits before anyone is told.
        self.flush().map_err(ReplicaError::Write)?;
        // The consumer's position is past the last transaction's commit marker, which is no message:
        // counting from it, a caught-up replica is 0 messages behind, not 1.
        self.next_offset = self.next_offset.max(position);
        let next_offset = self.next_offset;
        if !self.status.borrow().caught_up {
            info!("caught up: {}", self.progress.report(next_offset, Some(next_offset)));
        }
        self.status.send_modify(|s| {
            s.caught_up = true;
            s.next_offset = next_offset;
            s.high_watermark = Some(s.high_watermark.unwrap_or(next_offset).max(next_offset));
        });
        Ok(if self.cfg.exit_when_caught_up { Next::Done } else { Next::Continue })
    }

    /// Retention overtook the replica while it was reading: the error that says so.
    fn overtaken_by_retention(&self) -> Result<ReplicaError, ReplicaError> {
        let (earliest, _) = self.consumer.watermarks(Duration::from_secs(10))?;
        let stored = self.store.position().map_err(ReplicaError::Open)?;
        Ok(StartError::RetentionExceeded {
            topic: self.cfg.topic.clone(),
            stored: stored.map(|p| p.kafka_offset),
            needed: self.next_offset,
            earliest,
        }
        .into())
    }

    /// One message: a chunk of a record, applied once the record is whole.
    fn on_message(&mut self, offset: i64, payload: &[u8]) -> Result<Next, ReplicaError> {
        self.first_offset.get_or_insert(offset);
        self.next_offset = offset + 1;
        let topic = &self.cfg.topic;
        let assembled = self.assembler.push(offset, payload).map_err(|source| ReplicaError::Log {
            topic: topic.clone(),
            offset,
            source,
        })?;
        let Some(rec) = assembled else { return Ok(Next::Continue) };
        if let Some(got) = self.first_offset.filter(|_| !self.first_checked) {
            startup::check_first_record(topic, self.stored, self.start, got, rec.envelope.sequence)?;
            self.first_checked = true;
        }
        let next_offset = self.next_offset;
        self.status.send_modify(|s| s.next_offset = next_offset);
        if matches!(rec.record, Record::Revert(_)) {
            self.apply_revert(rec, offset)?;
        } else {
            self.apply(rec, offset)?;
        }
        Ok(Next::Continue)
    }

    /// A record other than a revert: submitted to the pipeline, and written at once at the tip.
    fn apply(&mut self, rec: Assembled, offset: i64) -> Result<(), ReplicaError> {
        let (sequence, last_offset) = (rec.envelope.sequence, rec.last_offset);
        // Behind the high watermark the next record is prepared while this one is written; at the tip (as far
        // as the last watermark knows) it is written now, so that status and RPC see it at once.
        let at_tip = self.at_tip(last_offset);
        self.pipeline.set_catching_up(self.catching_up(at_tip));
        let step = self.pipeline.submit(rec).map_err(|e| self.apply_error(offset, e))?;
        self.progress.prepared_early = self.pipeline.prepared_early();
        self.progress.groups = self.pipeline.groups_written();
        self.committed(&step.committed, None);
        if let Some(applied) = step.duplicate {
            warn!(sequence, applied, offset, "skipping a record already applied");
            self.progress.duplicates += 1;
        }
        if at_tip {
            self.flush().map_err(|e| self.apply_error(offset, e))?;
        }
        Ok(())
    }

    /// A revert deletes the block: it is read first, to announce its logs as removed. A revert is never
    /// prepared early (it reads what the batch before it writes), so it is written right here.
    fn apply_revert(&mut self, rec: Assembled, offset: i64) -> Result<(), ReplicaError> {
        let Record::Revert(ec_log::Revert { hash, .. }) = rec.record else { return Ok(()) };
        let sequence = rec.envelope.sequence;
        self.flush().map_err(|e| self.apply_error(offset, e))?;
        self.pipeline.set_catching_up(self.catching_up(self.at_tip(rec.last_offset)));
        let reverted = match &self.cfg.events {
            Some(_) => self.store.block_by_hash(&hash).ok().flatten(),
            None => None,
        };
        let step = self.pipeline.submit(rec).map_err(|e| self.apply_error(offset, e))?;
        let flushed = self.pipeline.flush().map_err(|e| self.apply_error(offset, e))?;
        self.committed(&step.committed, reverted.clone());
        self.committed(&flushed, reverted);
        if let Some(applied) = step.duplicate {
            warn!(sequence, applied, offset, "skipping a revert already applied");
            self.progress.duplicates += 1;
        }
        Ok(())
    }

    /// Whether the record ending at `last_offset` is the last one the log holds, as far as the last high
    /// watermark knows.
    fn at_tip(&self, last_offset: i64) -> bool {
        self.status.borrow().high_watermark.is_none_or(|high| last_offset + 1 >= high)
    }

    /// Whether records are written without the write-ahead log (see `ec_store::Pipeline::set_catching_up`):
    /// only behind the log's end and before the replica first caught up, the start-up replay. Once it has
    /// caught up (and may serve), every record goes through the log even when a burst puts it behind: what
    /// it serves, and what `/admin/position` tells the snapshot function, is then always on its volume.
    fn catching_up(&self, at_tip: bool) -> bool {
        !at_tip && !self.status.borrow().caught_up
    }

    /// A refused record names this record's offset; a failed write of the record before it names its own.
    fn apply_error(&self, offset: i64, source: StoreError) -> ReplicaError {
        match source {
            StoreError::Write { .. } | StoreError::WriterStopped => ReplicaError::Write(source),
            source => ReplicaError::Apply { topic: self.cfg.topic.clone(), offset, source },
        }
    }

    /// Writes the batch in flight, makes it durable, and announces what committed. Called where the replay
    /// stops catching up (at the tip, caught up, before a revert, at shutdown): what was caught up without
    /// the write-ahead log is flushed there, once ([`Store::persist`]: a no-op when there is nothing unlogged),
    /// so that what the replica serves is what a crash or a snapshot of its volume keeps.
    fn flush(&mut self) -> Result<(), StoreError> {
        let done = self.pipeline.flush()?;
        self.store.persist()?;
        self.committed(&done, None);
        Ok(())
    }

    fn committed(&mut self, done: &[Assembled], reverted: Option<StoredBlock>) {
        for rec in done {
            self.on_committed(rec, reverted.clone());
        }
    }

    /// Once a record's batch has committed: progress, the chain events, and the status the health endpoints
    /// and RPC see. `reverted` is the block a revert removed (read before it was applied).
    fn on_committed(&mut self, rec: &Assembled, reverted: Option<StoredBlock>) {
        let (store, status, events, progress) =
            (&self.store, &self.status, self.cfg.events.as_ref(), &mut self.progress);
        progress.records += 1;
        progress.bytes += rec.payload_len as u64;
        match &rec.record {
            Record::Block(_) | Record::Genesis(_) | Record::Checkpoint(_) => progress.blocks += 1,
            Record::Revert(_) => progress.reverts += 1,
            Record::Heartbeat(_) => {}
        }
        if let Some(events) = events {
            // No subscriber is not an error: send fails only when nobody listens.
            let _ = match &rec.record {
                Record::Block(b) => events.send(ChainEvent::Applied { hash: b.hash }),
                Record::Revert(_) => match reverted {
                    Some(b) => events.send(ChainEvent::Reverted(Box::new(b))),
                    None => Ok(0),
                },
                _ => Ok(0),
            };
        }
        let position = Position { kafka_offset: rec.last_offset, sequence: rec.envelope.sequence };
        // The new head and its timestamp come with the record; only a revert has to read its parent.
        let head = match &rec.record {
            Record::Block(b)
            | Record::Genesis(ec_log::Genesis { block: b, .. })
            | Record::Checkpoint(ec_log::Checkpoint { block: b, .. }) => {
                Some((ec_log::BlockRef { number: b.number, hash: b.hash }, Some(b.timestamp)))
            }
            Record::Revert(_) => store
                .head()
                .ok()
                .flatten()
                .map(|h| (h, store.block_head(&h.hash).ok().flatten().map(|b| b.timestamp))),
            Record::Heartbeat(_) => None,
        };
        status.send_modify(|s| {
            // Only records that move the database count as "heard from the publisher": a stream of
            // duplicates (a publisher replaying an old log) must not keep a stale replica ready.
            s.last_record_at = Some(std::time::Instant::now());
            s.position = Some(position);
            s.records_applied += 1;
            s.records_prepared_early = progress.prepared_early;
            if let Some((h, timestamp)) = head {
                s.head_block = Some(h.number);
                s.head_hash = Some(h.hash);
                s.head_timestamp = timestamp;
            }
            match &rec.record {
                Record::Heartbeat(hb) => {
                    s.publisher = Some(hb.state.clone());
                    s.client_head = hb.client_head;
                }
                Record::Genesis(ec_log::Genesis { spec, .. })
                | Record::Checkpoint(ec_log::Checkpoint { spec, .. }) => {
                    s.chain_max_head_age = readiness::chain_default_max_head_age(spec)
                }
                _ => {}
            }
        });
    }
}
