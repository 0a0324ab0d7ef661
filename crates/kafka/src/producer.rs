//! The log producer: idempotent, `acks=all`, one partition.

use std::time::Duration;

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::{config::KafkaConfig, context::KafkaContext, error::KafkaIoError, PARTITION};

pub struct LogProducer {
    producer: FutureProducer<KafkaContext>,
    topic: String,
}

impl LogProducer {
    /// `max_message_bytes` must be at least the largest frame the caller will send.
    pub fn new(cfg: &KafkaConfig, topic: &str, max_message_bytes: usize) -> Result<Self, KafkaIoError> {
        let max = (max_message_bytes + 4096).to_string();
        let mut c = cfg.client_config_with(&[
            ("message.max.bytes", &max),
            // Frames are already zstd-compressed by the log codec.
            ("compression.type", "none"),
            ("linger.ms", "5"),
        ]);
        // Not overridable. Idempotence implies acks=all and at most 5 requests in flight, which librdkafka
        // keeps in order: a retried batch can neither duplicate nor reorder frames.
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        let producer = c
            .create_with_context(KafkaContext)
            .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
        Ok(Self { producer, topic: topic.to_owned() })
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Produces one record's frames in order and waits until the broker has acknowledged all of them.
    /// Returns the offset of each frame. On error some frames may be written: the record is then incomplete,
    /// and the publisher must write it again from its first chunk (the consumer discards the fragment).
    pub async fn send_frames(&self, sequence: u64, frames: &[Vec<u8>]) -> Result<Vec<i64>, KafkaIoError> {
        self.enqueue(sequence, frames)?.wait().await
    }

    /// Queues one record's frames without waiting, so that many records can be in flight; they are
    /// written in the order they are queued. Await [`PendingRecord::wait`] to learn their offsets.
    pub fn enqueue(&self, sequence: u64, frames: &[Vec<u8>]) -> Result<PendingRecord, KafkaIoError> {
        let mut deliveries = Vec::with_capacity(frames.len());
        for (index, frame) in frames.iter().enumerate() {
            let key = sequence.to_be_bytes();
            let record = FutureRecord::to(&self.topic).partition(PARTITION).key(&key[..]).payload(&frame[..]);
            let fut = self.producer.send_result(record).map_err(|(source, _)| KafkaIoError::Produce {
                topic: self.topic.clone(),
                sequence,
                index,
                source,
            })?;
            deliveries.push(fut);
        }
        Ok(PendingRecord { topic: self.topic.clone(), sequence, deliveries })
    }

    /// The producer's fatal error, if it has one: an idempotent producer that hits one (e.g. out-of-order
    /// sequence) can write nothing more, and must be replaced by a new one (a restart).
    pub fn fatal_error(&self) -> Option<String> {
        use rdkafka::producer::Producer;
        self.producer.client().fatal_error().map(|(code, reason)| format!("{code:?}: {reason}"))
    }

    /// Waits for everything queued to be delivered.
    pub fn flush(&self, timeout: Duration) -> Result<(), KafkaIoError> {
        use rdkafka::producer::Producer;
        self.producer.flush(timeout).map_err(|source| KafkaIoError::Produce {
            topic: self.topic.clone(),
            sequence: 0,
            index: 0,
            source,
        })
    }
}

/// A record's frames queued in the producer, not yet known to be acknowledged.
pub struct PendingRecord {
    topic: String,
    sequence: u64,
    deliveries: Vec<DeliveryFuture>,
}

impl PendingRecord {
    /// Waits for every frame's acknowledgement; returns their offsets.
    pub async fn wait(self) -> Result<Vec<i64>, KafkaIoError> {
        let mut offsets = Vec::with_capacity(self.deliveries.len());
        for (index, fut) in self.deliveries.into_iter().enumerate() {
            let produce_err = |source| KafkaIoError::Produce {
                topic: self.topic.clone(),
                sequence: self.sequence,
                index,
                source,
            };
            let delivery = match fut.await {
                Ok(Ok(d)) => d,
                Ok(Err((e, _))) => return Err(produce_err(e)),
                Err(_canceled) => return Err(produce_err(rdkafka::error::KafkaError::Canceled)),
            };
            if delivery.partition != PARTITION {
                return Err(KafkaIoError::WrongPartition {
                    topic: self.topic.clone(),
                    sequence: self.sequence,
                    index,
                    partition: delivery.partition,
                });
            }
            offsets.push(delivery.offset);
        }
        Ok(offsets)
    }
}

/// The replicas' producer of raw transactions for the tx topic (idempotent, `acks=all`).
pub struct TxProducer {
    producer: FutureProducer<KafkaContext>,
    topic: String,
}

impl TxProducer {
    pub fn new(cfg: &KafkaConfig, topic: &str) -> Result<Self, KafkaIoError> {
        let mut c = cfg.client_config_with(&[("linger.ms", "0")]);
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        let producer = c
            .create_with_context(KafkaContext)
            .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
        Ok(Self { producer, topic: topic.to_owned() })
    }

    /// Writes one raw transaction and waits for the broker's acknowledgement.
    pub async fn send(&self, raw: &[u8]) -> Result<(), KafkaIoError> {
        let record = FutureRecord::<(), _>::to(&self.topic).payload(raw);
        let err = |source| KafkaIoError::Produce { topic: self.topic.clone(), sequence: 0, index: 0, source };
        match self.producer.send(record, std::time::Duration::from_secs(10)).await {
            Ok(_) => Ok(()),
            Err((e, _)) => Err(err(e)),
        }
    }
}
