//! The log producer: idempotent, `acks=all`, one partition.

use std::time::Duration;

use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use crate::{config::KafkaConfig, context::KafkaContext, error::KafkaIoError, PARTITION};

pub struct LogProducer {
    producer: FutureProducer<KafkaContext>,
    topic: String,
}

/// How long a transaction may stay open before the broker aborts it, and (librdkafka caps it so) how long a
/// message may wait for a broker. A killed publisher's open transaction holds back every consumer (they read
/// committed records only) until it ends: by the next publisher's `init_transactions` (a restart, a standby
/// taking over), or by this timeout. Long enough to ride out a broker restart without failing the
/// transaction; a failed one is recovered anyway (the publisher replaces its producer).
const TRANSACTION_TIMEOUT_MS: &str = "60000";
/// The transaction timeout a producer of `cfg` runs with: ours, unless `--kafka-option` overrides it.
pub fn transaction_timeout(cfg: &KafkaConfig) -> Duration {
    let ms = cfg
        .extra
        .iter()
        .rev()
        .find(|(k, _)| k == "transaction.timeout.ms")
        .map_or(TRANSACTION_TIMEOUT_MS, |(_, v)| v.as_str());
    Duration::from_millis(ms.parse().unwrap_or(60_000))
}

/// How long the blocking transaction calls (init, commit, abort) may wait for the broker.
const TRANSACTION_CALL_TIMEOUT: Duration = Duration::from_secs(30);

impl LogProducer {
    /// An idempotent producer, for tools that write a log outside a cluster's publisher (synthetic logs,
    /// benchmarks). `max_message_bytes` must be at least the largest frame the caller will send.
    pub fn new(cfg: &KafkaConfig, topic: &str, max_message_bytes: usize) -> Result<Self, KafkaIoError> {
        Self::create(cfg, topic, max_message_bytes, None)
    }

    /// A transactional producer with `transactional.id` = `transactional_id` (the cluster id): the
    /// publisher's. Exactly one producer of an id can write: [`LogProducer::init_transactions`] fences every
    /// older one (its next write fails with a fatal "fenced" error) and aborts whatever it left open, and
    /// consumers read committed records only. Call `init_transactions` before the first write.
    pub fn transactional(
        cfg: &KafkaConfig,
        topic: &str,
        max_message_bytes: usize,
        transactional_id: &str,
    ) -> Result<Self, KafkaIoError> {
        Self::create(cfg, topic, max_message_bytes, Some(transactional_id))
    }

    fn create(
        cfg: &KafkaConfig,
        topic: &str,
        max_message_bytes: usize,
        transactional_id: Option<&str>,
    ) -> Result<Self, KafkaIoError> {
        let max = (max_message_bytes + 4096).to_string();
        let mut c = cfg.client_config_with(&[
            ("message.max.bytes", &max),
            // Frames are already zstd-compressed by the log codec.
            ("compression.type", "none"),
            ("linger.ms", "5"),
            ("transaction.timeout.ms", TRANSACTION_TIMEOUT_MS),
        ]);
        // Not overridable. Idempotence implies acks=all and at most 5 requests in flight, which librdkafka
        // keeps in order: a retried batch can neither duplicate nor reorder frames.
        c.set("enable.idempotence", "true");
        c.set("acks", "all");
        if let Some(id) = transactional_id {
            c.set("transactional.id", id);
        }
        let producer = c
            .create_with_context(KafkaContext)
            .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
        crate::context::prime(rdkafka::producer::Producer::client(&producer), cfg)?;
        Ok(Self { producer, topic: topic.to_owned() })
    }

    /// Registers this producer as the only writer of its transactional id: fences older producers of the
    /// id and aborts their open transaction. Blocks (off the async workers) until the broker answers.
    pub async fn init_transactions(&self) -> Result<(), KafkaIoError> {
        use rdkafka::producer::Producer;
        let producer = self.producer.clone();
        self.blocking("init_transactions", move || producer.init_transactions(TRANSACTION_CALL_TIMEOUT)).await
    }

    /// Writes several records (each a list of frames) as one transaction, in order, and returns once the
    /// transaction is committed: either all of them are visible to consumers or none is. On error the
    /// transaction is aborted (when it can be) and nothing was written; [`LogProducer::fatal_error`] tells
    /// whether this producer can write again (it cannot once fenced).
    pub async fn send_transaction(&self, records: &[(u64, Vec<Vec<u8>>)]) -> Result<(), KafkaIoError> {
        use rdkafka::producer::Producer;
        let Some(&(first, _)) = records.first() else { return Ok(()) };
        let txn_err =
            |source| KafkaIoError::Produce { topic: self.topic.clone(), sequence: first, index: 0, source };
        let result = async {
            self.producer.begin_transaction().map_err(txn_err)?;
            let mut pending = Vec::with_capacity(records.len());
            for (sequence, frames) in records {
                pending.push(self.enqueue(*sequence, frames)?);
            }
            for p in pending {
                p.wait().await?;
            }
            let producer = self.producer.clone();
            self.blocking("commit_transaction", move || producer.commit_transaction(TRANSACTION_CALL_TIMEOUT))
                .await
        }
        .await;
        if result.is_err() && self.fatal_error().is_none() {
            // Abortable (a timeout, a broker gone mid-transaction, or one left in that state by an earlier
            // failed abort, which makes `begin` fail): end it so the next one can begin.
            let producer = self.producer.clone();
            if let Err(e) = self
                .blocking("abort_transaction", move || producer.abort_transaction(TRANSACTION_CALL_TIMEOUT))
                .await
            {
                tracing::warn!(error = %e, "aborting the failed transaction failed too");
            }
        }
        result
    }

    async fn blocking(
        &self,
        what: &'static str,
        call: impl FnOnce() -> rdkafka::error::KafkaResult<()> + Send + 'static,
    ) -> Result<(), KafkaIoError> {
        let topic = self.topic.clone();
        match tokio::task::spawn_blocking(call).await {
            Ok(r) => r.map_err(|source| KafkaIoError::Transaction { what, source }),
            Err(e) => Err(KafkaIoError::Admin { topic, what, detail: e.to_string() }),
        }
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
        crate::context::prime(rdkafka::producer::Producer::client(&producer), cfg)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_transaction_timeout_is_ours_unless_an_option_overrides_it() {
        let mut cfg = KafkaConfig::plaintext("127.0.0.1:9092");
        assert_eq!(transaction_timeout(&cfg), Duration::from_secs(60));
        cfg.extra.push(("transaction.timeout.ms".into(), "2000".into()));
        assert_eq!(transaction_timeout(&cfg), Duration::from_secs(2));
    }
}
