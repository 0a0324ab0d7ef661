//! Recovering the publisher's position from the topic itself: the last sequence written and the recent
//! canonical chain (to continue with no gap and no duplicate, and to detect reorgs against it).

use std::{collections::VecDeque, time::Duration};

use ec_kafka::{Fetched, KafkaConfig, PartitionConsumer};
use ec_log::{Assembler, BlockRef, Frame, Record};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum TailError {
    #[error(transparent)]
    Kafka(#[from] ec_kafka::KafkaIoError),
    #[error("topic {topic}: record at offset {offset} does not decode: {source}")]
    Log { topic: String, offset: i64, source: ec_log::LogError },
    #[error("topic {topic}: the last {messages} messages hold no block; read further back with a larger --tail-messages")]
    NoBlock { topic: String, messages: i64 },
    #[error(
        "topic {topic} held {high} messages and retention has emptied it: its log cannot be continued. Start the \
         cluster on a new topic (replicas from a new snapshot lineage)"
    )]
    Emptied { topic: String, high: i64 },
    #[error("topic {topic} belongs to cluster {found:?}, not {expected:?}")]
    WrongCluster { topic: String, expected: String, found: String },
}

/// What the log already holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Published {
    /// The sequence number the next record gets.
    pub next_sequence: u64,
    /// Recent canonical blocks, oldest first; the back is the head.
    pub chain: VecDeque<BlockRef>,
    /// The checkpoint block the log starts at, when the tail reached back to it: a reorg below it cannot be
    /// followed (a checkpoint has no undo data).
    pub checkpoint: Option<BlockRef>,
    /// The checksums of the records read from the tail, by sequence (what a publisher whose write failed
    /// compares its own records with: the same sequences written by a rival differ in content).
    pub crcs: std::collections::BTreeMap<u64, u32>,
}

impl Published {
    pub fn head(&self) -> Option<BlockRef> {
        self.chain.back().copied()
    }

    /// Follows one record; keeps at most `keep` blocks.
    pub fn follow(&mut self, sequence: u64, record: &Record, keep: usize) {
        self.next_sequence = sequence + 1;
        match record {
            Record::Genesis(g) => self.chain.push_back(BlockRef { number: 0, hash: g.block.hash }),
            Record::Block(b) => self.chain.push_back(BlockRef { number: b.number, hash: b.hash }),
            Record::Checkpoint(c) => {
                let block = BlockRef { number: c.block.number, hash: c.block.hash };
                self.checkpoint = Some(block);
                self.chain.push_back(block);
            }
            Record::Revert(_) => {
                self.chain.pop_back();
            }
            Record::Heartbeat(_) => {}
        }
        while self.chain.len() > keep {
            self.chain.pop_front();
        }
    }
}

/// For a standby publisher: returns once no record has arrived on the topic for `silence` (the active
/// publisher, whose heartbeats come every few seconds, is gone). The caller then takes over.
pub async fn wait_for_silence(kafka: &KafkaConfig, topic: &str, silence: Duration) -> Result<(), TailError> {
    let consumer = PartitionConsumer::new(kafka, topic)?;
    let (_, high) = consumer.watermarks(Duration::from_secs(10))?;
    consumer.assign(high)?;
    tracing::info!(
        topic,
        silence_secs = silence.as_secs_f64(),
        "standby: waiting for the active publisher to go silent"
    );
    let mut deadline = tokio::time::Instant::now() + silence;
    loop {
        match tokio::time::timeout_at(deadline, consumer.next()).await {
            Err(_elapsed) => {
                tracing::warn!(topic, "no record for {:.0}s: taking over", silence.as_secs_f64());
                return Ok(());
            }
            Ok(Ok(Fetched::Message { .. })) => deadline = tokio::time::Instant::now() + silence,
            Ok(Ok(Fetched::EndOfPartition { .. })) => {}
            Ok(Err(e)) => return Err(e.into()),
        }
    }
}

/// Reads the last `messages` messages of the topic. `None` when the topic is empty (a new cluster).
pub async fn read_tail(
    kafka: &KafkaConfig,
    topic: &str,
    cluster_id: &str,
    messages: i64,
    keep: usize,
) -> Result<Option<Published>, TailError> {
    let consumer = PartitionConsumer::new(kafka, topic)?;
    let (low, high) = consumer.watermarks(Duration::from_secs(10))?;
    if high <= low {
        if high > 0 {
            // Writing a new genesis here would hand caught-up replicas sequence numbers they already applied.
            return Err(TailError::Emptied { topic: topic.to_owned(), high });
        }
        return Ok(None);
    }
    let start = low.max(high - messages);
    consumer.assign(start)?;
    let mut assembler = Assembler::new();
    let mut published = Published::default();
    // The head named by the last heartbeat, if no block or revert came after it.
    let mut heartbeat_head = None;
    let mut offset = start;
    while offset < high {
        let (at, payload) = match consumer.next().await? {
            Fetched::Message { offset, payload } => (offset, payload),
            Fetched::EndOfPartition { .. } => break,
        };
        offset = at + 1;
        // The window may start inside a chunked record: skip to the first chunk 0.
        if assembler.pending().is_none() {
            match Frame::decode(&payload) {
                Ok(f) if f.header.chunk_index != 0 => continue,
                _ => {}
            }
        }
        let log_err = |source| TailError::Log { topic: topic.to_owned(), offset: at, source };
        let Some(rec) = assembler.push(at, &payload).map_err(log_err)? else { continue };
        if rec.envelope.cluster_id != cluster_id {
            return Err(TailError::WrongCluster {
                topic: topic.to_owned(),
                expected: cluster_id.to_owned(),
                found: rec.envelope.cluster_id,
            });
        }
        // A record written twice (a publisher that crashed before its ack) counts once.
        if published.next_sequence > 0 && rec.envelope.sequence < published.next_sequence {
            continue;
        }
        published.crcs.insert(rec.envelope.sequence, rec.record_crc);
        heartbeat_head = match &rec.record {
            Record::Heartbeat(h) => Some(h.head),
            _ => None,
        };
        published.follow(rec.envelope.sequence, &rec.record, keep);
    }
    // A record whose last chunks never arrived (a crash mid-record) is written again from its first chunk.
    if published.chain.is_empty() {
        // Only heartbeats in the window (an idle chain): each names the head, which is all that is needed to
        // continue; reorgs below it are then out of reach until new blocks arrive.
        match heartbeat_head {
            Some(head) => published.chain.push_back(head),
            None => return Err(TailError::NoBlock { topic: topic.to_owned(), messages }),
        }
    }
    Ok(Some(published))
}
