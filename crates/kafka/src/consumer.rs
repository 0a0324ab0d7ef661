//! The partition consumer: assigned, never subscribed; positioned by the caller.

use std::time::Duration;

use rdkafka::{
    consumer::{Consumer, StreamConsumer},
    error::KafkaError,
    message::Message,
    types::RDKafkaErrorCode,
    Offset, TopicPartitionList,
};

use crate::{config::KafkaConfig, context::KafkaContext, error::KafkaIoError, PARTITION};

/// What one fetch gave.
#[derive(Debug)]
pub enum Fetched {
    Message {
        offset: i64,
        payload: Vec<u8>,
    },
    /// The consumer has read everything up to the high watermark it last saw.
    EndOfPartition {
        next_offset: i64,
    },
}

pub struct PartitionConsumer {
    consumer: StreamConsumer<KafkaContext>,
    topic: String,
}

impl PartitionConsumer {
    pub fn new(cfg: &KafkaConfig, topic: &str) -> Result<Self, KafkaIoError> {
        let consumer: StreamConsumer<KafkaContext> = Self::config(cfg, topic)
            .create_with_context(KafkaContext)
            .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
        crate::context::prime(consumer.client(), cfg)?;
        Ok(Self { consumer, topic: topic.to_owned() })
    }

    /// The consumer's settings: the operator's `extra` properties tune anything but what replay's
    /// correctness rests on, set after them.
    fn config(cfg: &KafkaConfig, topic: &str) -> rdkafka::ClientConfig {
        let group = format!("ether-cattle-replica-{topic}");
        let mut c = cfg.client_config_with(&[("fetch.wait.max.ms", "50")]);
        // No group: librdkafka still wants an id, but nothing is ever committed to it.
        c.set("group.id", group);
        c.set("enable.auto.commit", "false");
        c.set("enable.auto.offset.store", "false");
        c.set("enable.partition.eof", "true");
        // An offset that fell out of the topic must be an error the replica reports, never a silent jump.
        c.set("auto.offset.reset", "error");
        // The publisher writes in transactions: a fenced or aborted one must never be replayed.
        c.set("isolation.level", "read_committed");
        c
    }

    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// `(earliest, high watermark)`: the first offset still held, and the offset the next record will get.
    pub fn watermarks(&self, timeout: Duration) -> Result<(i64, i64), KafkaIoError> {
        self.consumer
            .fetch_watermarks(&self.topic, PARTITION, timeout)
            .map_err(|source| KafkaIoError::Watermarks { topic: self.topic.clone(), source })
    }

    /// Starts reading at `offset`.
    pub fn assign(&self, offset: i64) -> Result<(), KafkaIoError> {
        let mut tpl = TopicPartitionList::new();
        let assign_err = |source| KafkaIoError::Assign { topic: self.topic.clone(), offset, source };
        tpl.add_partition_offset(&self.topic, PARTITION, Offset::Offset(offset)).map_err(assign_err)?;
        self.consumer.assign(&tpl).map_err(assign_err)
    }

    /// The next message, or the news that the partition's end was reached.
    ///
    /// Broker outages (a restart, a rolling MSK update, a network blip) are waited out here: librdkafka
    /// reconnects by itself, and the caller's readiness turns 503 on its own once records stop arriving.
    pub async fn next(&self) -> Result<Fetched, KafkaIoError> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => {
                    let payload = m
                        .payload()
                        .ok_or(KafkaIoError::EmptyMessage { topic: self.topic.clone(), offset: m.offset() })?
                        .to_vec();
                    return Ok(Fetched::Message { offset: m.offset(), payload });
                }
                Err(KafkaError::PartitionEOF(_)) => {
                    let next_offset = self.position().unwrap_or(-1);
                    return Ok(Fetched::EndOfPartition { next_offset });
                }
                Err(source) if is_transient(&source) => {
                    tracing::warn!(topic = %self.topic, error = %source, "broker unreachable; librdkafka reconnects");
                }
                Err(source) => return Err(KafkaIoError::Fetch { topic: self.topic.clone(), source }),
            }
        }
    }

    fn position(&self) -> Option<i64> {
        let tpl = self.consumer.position().ok()?;
        tpl.find_partition(&self.topic, PARTITION)?.offset().to_raw()
    }
}

/// Whether a consumer error only reports a broker connection problem that librdkafka recovers from by
/// itself (it surfaces them as errors, but keeps reconnecting and fetching).
pub fn is_transient(err: &KafkaError) -> bool {
    use RDKafkaErrorCode::*;
    matches!(
        err.rdkafka_error_code(),
        Some(
            AllBrokersDown
                | BrokerTransportFailure
                | Resolve
                | OperationTimedOut
                | RequestTimedOut
                | NetworkException
                | BrokerNotAvailable
                | LeaderNotAvailable
                | NotLeaderForPartition
                | CoordinatorNotAvailable
                | NotCoordinator
        )
    )
}

/// Whether a fetch error means "the offset is no longer in the topic".
pub fn is_offset_out_of_range(err: &KafkaIoError) -> bool {
    matches!(
        err,
        KafkaIoError::Fetch { source, .. }
            if source.rdkafka_error_code() == Some(RDKafkaErrorCode::OffsetOutOfRange)
            || source.rdkafka_error_code() == Some(RDKafkaErrorCode::AutoOffsetReset)
    )
}

/// A message of the transaction topic.
#[derive(Debug)]
pub struct TxMessage {
    pub offset: i64,
    pub payload: Vec<u8>,
}

/// The publisher's consumer of the transaction topic: a consumer group (one publisher per cluster, but a
/// restarted one resumes where the last committed), committed by hand after each transaction is handled.
pub struct TxConsumer {
    consumer: StreamConsumer<KafkaContext>,
    topic: String,
}

impl TxConsumer {
    pub fn new(cfg: &KafkaConfig, group: &str, topic: &str) -> Result<Self, KafkaIoError> {
        let mut c = cfg.client_config();
        c.set("group.id", group);
        c.set("enable.auto.commit", "false");
        c.set("auto.offset.reset", "earliest");
        c.set("isolation.level", "read_committed");
        let consumer: StreamConsumer<KafkaContext> = c
            .create_with_context(KafkaContext)
            .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
        crate::context::prime(consumer.client(), cfg)?;
        consumer.subscribe(&[topic]).map_err(|source| KafkaIoError::Assign {
            topic: topic.to_owned(),
            offset: -1,
            source,
        })?;
        Ok(Self { consumer, topic: topic.to_owned() })
    }

    pub async fn next(&self) -> Result<TxMessage, KafkaIoError> {
        loop {
            match self.consumer.recv().await {
                Ok(m) => {
                    let payload = m.payload().unwrap_or_default().to_vec();
                    return Ok(TxMessage { offset: m.offset(), payload });
                }
                Err(KafkaError::PartitionEOF(_)) => continue,
                Err(source) if is_transient(&source) => {
                    tracing::warn!(topic = %self.topic, error = %source, "broker unreachable; librdkafka reconnects");
                }
                Err(source) => return Err(KafkaIoError::Fetch { topic: self.topic.clone(), source }),
            }
        }
    }

    /// Marks everything up to and including `offset` as handled.
    pub fn commit(&self, offset: i64) -> Result<(), KafkaIoError> {
        let mut tpl = TopicPartitionList::new();
        let err = |source| KafkaIoError::Fetch { topic: self.topic.clone(), source };
        tpl.add_partition_offset(&self.topic, PARTITION, Offset::Offset(offset + 1)).map_err(err)?;
        self.consumer.commit(&tpl, rdkafka::consumer::CommitMode::Sync).map_err(err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_cannot_make_replay_read_aborted_records() {
        let cfg = KafkaConfig {
            extra: vec![
                ("isolation.level".into(), "read_uncommitted".into()),
                ("fetch.wait.max.ms".into(), "10".into()),
            ],
            ..KafkaConfig::plaintext("127.0.0.1:9092")
        };
        let c = PartitionConsumer::config(&cfg, "log");
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("auto.offset.reset"), Some("error"));
        // What replay's correctness does not rest on stays the operator's.
        assert_eq!(c.get("fetch.wait.max.ms"), Some("10"));
    }
}
