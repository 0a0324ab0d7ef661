//! Where the retention guard's inputs come from, behind traits: the topic's retention (Kafka `DescribeConfigs`,
//! falling back to the MSK cluster configuration) and the partition's earliest offset and oldest record.

use std::time::Duration;

use aws_sdk_kafka::primitives::Blob;
use ec_functions::AwsError;
use ec_kafka::{KafkaConfig, KafkaContext, PARTITION};
use rdkafka::{
    admin::{AdminOptions, ResourceSpecifier},
    consumer::{Consumer, StreamConsumer},
    error::{KafkaError, RDKafkaErrorCode},
    Message, Offset, TopicPartitionList,
};

use crate::retention::{Limit, PartitionState, Retention};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("Kafka {call} on topic {topic} ({brokers}) failed: {message}")]
    Kafka { call: &'static str, topic: String, brokers: String, message: String },
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("{0}")]
    Other(String),
}

/// The topic's retention as configured on the brokers.
#[async_trait::async_trait]
pub trait RetentionSource: Send + Sync {
    async fn topic_retention(&self, topic: &str) -> Result<Retention, SourceError>;
}

/// The MSK cluster's configuration (the brokers' defaults), for when the topic's own cannot be read.
#[async_trait::async_trait]
pub trait ClusterRetention: Send + Sync {
    async fn cluster_retention(&self, cluster_arn: &str) -> Result<Retention, SourceError>;
}

/// The partition's state.
#[async_trait::async_trait]
pub trait Partition: Send + Sync {
    async fn state(&self, topic: &str) -> Result<PartitionState, SourceError>;
    /// The timestamp (ms) of the record at `offset`, or of the first one after it (a transaction marker
    /// takes an offset but is no record); `None` when there is none up to the end.
    async fn record_time(&self, topic: &str, offset: i64) -> Result<Option<i64>, SourceError>;
}

const TIMEOUT: Duration = Duration::from_secs(10);

/// Kafka's `log.retention.hours` default, 168 hours.
pub const KAFKA_DEFAULT_RETENTION_MS: i64 = 168 * 3_600_000;

/// Kafka over its own protocol, with the project's connection settings.
pub struct KafkaAdmin {
    pub config: KafkaConfig,
}

impl KafkaAdmin {
    fn err(&self, call: &'static str, topic: &str, e: impl std::fmt::Display) -> SourceError {
        SourceError::Kafka {
            call,
            topic: topic.into(),
            brokers: self.config.brokers.clone(),
            message: e.to_string(),
        }
    }

    fn consumer(&self, topic: &str) -> Result<StreamConsumer<KafkaContext>, SourceError> {
        let mut c = self.config.client_config_with(&[("fetch.wait.max.ms", "100")]);
        // A group id librdkafka insists on; nothing is committed to it.
        c.set("group.id", "ether-cattle-retention-guard");
        c.set("enable.auto.commit", "false");
        c.set("enable.partition.eof", "true");
        // An offset that fell out of the topic is reported, never silently replaced.
        c.set("auto.offset.reset", "error");
        let consumer: StreamConsumer<KafkaContext> =
            c.create_with_context(KafkaContext).map_err(|e| self.err("create consumer", topic, e))?;
        // The first call is the watermarks, before any poll: the OAUTHBEARER token (MSK IAM) must be set now.
        ec_kafka::context::prime(consumer.client(), &self.config)
            .map_err(|e| self.err("sign in", topic, e))?;
        Ok(consumer)
    }

    fn watermarks(
        &self,
        consumer: &StreamConsumer<KafkaContext>,
        topic: &str,
    ) -> Result<(i64, i64), SourceError> {
        consumer.fetch_watermarks(topic, PARTITION, TIMEOUT).map_err(|e| self.err("ListOffsets", topic, e))
    }

    /// The record at `offset` (or the first after it), `Ok(None)` at the end, `Err(None)` if out of range.
    async fn first_from(
        &self,
        consumer: &StreamConsumer<KafkaContext>,
        topic: &str,
        offset: i64,
    ) -> Result<Option<(i64, Option<i64>)>, Option<SourceError>> {
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(topic, PARTITION, Offset::Offset(offset))
            .and_then(|_| consumer.assign(&tpl))
            .map_err(|e| Some(self.err("assign", topic, e)))?;
        match tokio::time::timeout(TIMEOUT, consumer.recv()).await {
            Err(_) => {
                Err(Some(self.err("Fetch", topic, format!("no answer from offset {offset} in {TIMEOUT:?}"))))
            }
            Ok(Ok(m)) => Ok(Some((m.offset(), m.timestamp().to_millis()))),
            Ok(Err(KafkaError::PartitionEOF(_))) => Ok(None),
            Ok(Err(e))
                if matches!(
                    e.rdkafka_error_code(),
                    Some(RDKafkaErrorCode::OffsetOutOfRange | RDKafkaErrorCode::AutoOffsetReset)
                ) =>
            {
                Err(None)
            }
            Ok(Err(e)) => Err(Some(self.err("Fetch", topic, e))),
        }
    }
}

#[async_trait::async_trait]
impl RetentionSource for KafkaAdmin {
    async fn topic_retention(&self, topic: &str) -> Result<Retention, SourceError> {
        let admin = ec_kafka::admin::admin_client(&self.config)
            .map_err(|e| self.err("create admin client", topic, e))?;
        let opts = AdminOptions::new().request_timeout(Some(TIMEOUT));
        let results = admin
            .describe_configs(&[ResourceSpecifier::Topic(topic)], &opts)
            .await
            .map_err(|e| self.err("DescribeConfigs", topic, e))?;
        let Some(result) = results.into_iter().next() else {
            return Err(self.err("DescribeConfigs", topic, "no result"));
        };
        let resource = result.map_err(|code| self.err("DescribeConfigs", topic, code))?;
        // Apache Kafka reports every topic config with its effective value (topic, broker or default). Some
        // brokers (tansu) report only what was set on the topic: a key missing altogether is then the broker's
        // built-in default, Kafka's. A key reported without a usable value stays unknown.
        let mut defaulted = Vec::new();
        let mut limit = |name: &'static str, default: Limit| match resource.get(name) {
            Some(entry) => Limit::parse(entry.value.as_deref()),
            None => {
                defaulted.push(name);
                default
            }
        };
        let ms = limit("retention.ms", Limit::Value(KAFKA_DEFAULT_RETENTION_MS));
        let bytes = limit("retention.bytes", Limit::Unlimited);
        let mut source = format!("topic {topic} (DescribeConfigs)");
        if !defaulted.is_empty() {
            source.push_str(&format!("; not reported, Kafka's default: {}", defaulted.join(", ")));
        }
        Ok(Retention { ms, bytes, source })
    }
}

#[async_trait::async_trait]
impl Partition for KafkaAdmin {
    /// The watermarks, and the first record actually fetched from the low one: some brokers (tansu) report
    /// an earliest offset of 0 for a partition retention emptied, so only a fetched record proves what is
    /// held. Nothing fetched means nothing before the high watermark is held.
    async fn state(&self, topic: &str) -> Result<PartitionState, SourceError> {
        let consumer = self.consumer(topic)?;
        for _attempt in 0..2 {
            let (low, high) = self.watermarks(&consumer, topic)?;
            if high <= low {
                return Ok(PartitionState { earliest: high, high, oldest_record_ms: None });
            }
            match self.first_from(&consumer, topic, low).await {
                Ok(Some((offset, ts))) => {
                    return Ok(PartitionState { earliest: offset, high, oldest_record_ms: ts });
                }
                Ok(None) => return Ok(PartitionState { earliest: high, high, oldest_record_ms: None }),
                // Retention moved the low watermark between the two calls: look again.
                Err(None) => continue,
                Err(Some(e)) => return Err(e),
            }
        }
        Err(self.err("Fetch", topic, "the low watermark kept moving out of range"))
    }

    async fn record_time(&self, topic: &str, offset: i64) -> Result<Option<i64>, SourceError> {
        let consumer = self.consumer(topic)?;
        match self.first_from(&consumer, topic, offset).await {
            Ok(Some((_, ts))) => Ok(ts),
            Ok(None) => Ok(None),
            Err(None) => Err(self.err("Fetch", topic, format!("offset {offset} is out of range"))),
            Err(Some(e)) => Err(e),
        }
    }
}

/// The MSK API: the cluster's current configuration revision, parsed for the broker retention defaults.
pub struct Msk(pub aws_sdk_kafka::Client);

#[async_trait::async_trait]
impl ClusterRetention for Msk {
    async fn cluster_retention(&self, arn: &str) -> Result<Retention, SourceError> {
        let cluster = self
            .0
            .describe_cluster()
            .cluster_arn(arn)
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeCluster", arn, e))?;
        let info = cluster.cluster_info().and_then(|c| c.current_broker_software_info());
        let (Some(config_arn), Some(revision)) =
            (info.and_then(|i| i.configuration_arn()), info.and_then(|i| i.configuration_revision()))
        else {
            // No custom configuration: MSK's default, which is Kafka's (168 hours, no size limit).
            return Ok(broker_retention("", format!("MSK cluster {arn} (default configuration)")));
        };
        let rev = self
            .0
            .describe_configuration_revision()
            .arn(config_arn)
            .revision(revision)
            .send()
            .await
            .map_err(|e| {
                AwsError::new("DescribeConfigurationRevision", format!("{config_arn} revision {revision}"), e)
            })?;
        let props = rev.server_properties().map(Blob::as_ref).unwrap_or_default();
        Ok(broker_retention(
            &String::from_utf8_lossy(props),
            format!("MSK configuration {config_arn} revision {revision}"),
        ))
    }
}

/// The broker defaults from `server.properties` text: `log.retention.ms`, else `.minutes`, else `.hours`
/// (Kafka's precedence), default 168 hours; `log.retention.bytes`, default unlimited.
pub fn broker_retention(properties: &str, source: String) -> Retention {
    let get = |key: &str| {
        properties.lines().map(str::trim).filter(|l| !l.starts_with('#')).find_map(|l| {
            let (k, v) = l.split_once('=')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
    };
    let scaled = |key: &str, factor: i64| {
        get(key).map(|v| match Limit::parse(Some(&v)) {
            Limit::Value(n) => Limit::Value(n.saturating_mul(factor)),
            other => other,
        })
    };
    let ms = scaled("log.retention.ms", 1)
        .or_else(|| scaled("log.retention.minutes", 60_000))
        .or_else(|| scaled("log.retention.hours", 3_600_000))
        .unwrap_or(Limit::Value(KAFKA_DEFAULT_RETENTION_MS));
    let bytes = get("log.retention.bytes").map_or(Limit::Unlimited, |v| Limit::parse(Some(&v)));
    Retention { ms, bytes, source }
}

/// Fixed answers, for tests (and the MSK calls moto cannot answer).
pub struct Fixed<T>(pub Result<T, String>);

#[async_trait::async_trait]
impl RetentionSource for Fixed<Retention> {
    async fn topic_retention(&self, _topic: &str) -> Result<Retention, SourceError> {
        self.0.clone().map_err(SourceError::Other)
    }
}

#[async_trait::async_trait]
impl ClusterRetention for Fixed<Retention> {
    async fn cluster_retention(&self, _arn: &str) -> Result<Retention, SourceError> {
        self.0.clone().map_err(SourceError::Other)
    }
}

/// Any record's time is the partition's oldest record's.
#[async_trait::async_trait]
impl Partition for Fixed<PartitionState> {
    async fn state(&self, _topic: &str) -> Result<PartitionState, SourceError> {
        self.0.clone().map_err(SourceError::Other)
    }

    async fn record_time(&self, _topic: &str, _offset: i64) -> Result<Option<i64>, SourceError> {
        self.0.clone().map(|p| p.oldest_record_ms).map_err(SourceError::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_properties_follow_kafka_precedence() {
        let r = |p: &str| {
            let r = broker_retention(p, String::new());
            (r.ms, r.bytes)
        };
        assert_eq!(r(""), (Limit::Value(604_800_000), Limit::Unlimited));
        assert_eq!(r("log.retention.hours=24\n"), (Limit::Value(86_400_000), Limit::Unlimited));
        assert_eq!(
            r("log.retention.hours=24\nlog.retention.minutes=10"),
            (Limit::Value(600_000), Limit::Unlimited)
        );
        assert_eq!(
            r("log.retention.ms = -1\nlog.retention.hours=1\nlog.retention.bytes=1000"),
            (Limit::Unlimited, Limit::Value(1000))
        );
        assert_eq!(
            r("# log.retention.ms=5\nlog.retention.bytes=x"),
            (Limit::Value(604_800_000), Limit::Unknown)
        );
    }
}
