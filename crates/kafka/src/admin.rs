//! Topic administration through the Kafka admin API: create a cluster's topics (idempotently) and delete
//! records below an offset. The publisher, the local cluster and the tests use it instead of broker-specific
//! command-line tools, so the same code works on MSK, Apache Kafka and any other Kafka-protocol broker.

use std::time::Duration;

use rdkafka::{
    admin::{
        AdminClient, AdminOptions, AlterConfig, ConfigSource, NewTopic, ResourceSpecifier, TopicReplication,
    },
    types::RDKafkaErrorCode,
    Offset, TopicPartitionList,
};

use crate::{KafkaConfig, KafkaContext, KafkaIoError, PARTITION};

/// How long an admin request may take before it is reported as failed.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(30);

/// An admin client for `cfg`, with its OAUTHBEARER token already set when it needs one
/// ([`crate::context::prime`]): every admin client of the project is made here.
pub fn admin_client(cfg: &KafkaConfig) -> Result<AdminClient<KafkaContext>, KafkaIoError> {
    let admin: AdminClient<KafkaContext> = cfg
        .client_config()
        .create_with_context(KafkaContext)
        .map_err(|source| KafkaIoError::Client { brokers: cfg.brokers.clone(), source })?;
    crate::context::prime(admin.inner(), cfg)?;
    Ok(admin)
}

fn options() -> AdminOptions {
    AdminOptions::new().request_timeout(Some(ADMIN_TIMEOUT)).operation_timeout(Some(ADMIN_TIMEOUT))
}

/// Creates a one-partition topic with `configs` (e.g. `("retention.ms", "3000")`). A topic that already
/// exists is left as it is and is not an error: creation is a start-up step that may run many times.
///
/// `replication` is the replication factor; `None` lets the broker choose its default (MSK: 3).
pub async fn create_topic(
    cfg: &KafkaConfig,
    topic: &str,
    replication: Option<i32>,
    configs: &[(&str, &str)],
) -> Result<(), KafkaIoError> {
    let admin = admin_client(cfg)?;
    let replication = TopicReplication::Fixed(replication.unwrap_or(-1));
    let mut new = NewTopic::new(topic, 1, replication);
    for (k, v) in configs {
        new = new.set(k, v);
    }
    let admin_error = |detail: String| KafkaIoError::Admin { topic: topic.into(), what: "create", detail };
    let results = admin.create_topics([&new], &options()).await.map_err(|e| admin_error(e.to_string()))?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((_, code)) => return Err(admin_error(code.to_string())),
        }
    }
    Ok(())
}

/// Deletes every record of the topic's partition below `offset` (Kafka's DeleteRecords): the earliest
/// offset becomes `offset`. Returns the new earliest offset the broker reports.
pub async fn delete_records_before(cfg: &KafkaConfig, topic: &str, offset: i64) -> Result<i64, KafkaIoError> {
    let admin = admin_client(cfg)?;
    let admin_error =
        |detail: String| KafkaIoError::Admin { topic: topic.into(), what: "delete records", detail };
    let mut list = TopicPartitionList::new();
    list.add_partition_offset(topic, PARTITION, Offset::Offset(offset))
        .map_err(|e| admin_error(e.to_string()))?;
    let result = admin.delete_records(&list, &options()).await.map_err(|e| admin_error(e.to_string()))?;
    let elem = result
        .find_partition(topic, PARTITION)
        .ok_or_else(|| admin_error("no answer for partition 0".into()))?;
    elem.error().map_err(|e| admin_error(e.to_string()))?;
    match elem.offset() {
        Offset::Offset(low) => Ok(low),
        other => Err(admin_error(format!("unexpected low watermark {other:?}"))),
    }
}

/// Sets `changes` on a topic's configuration, keeping its other topic-level settings. Kafka's AlterConfigs
/// replaces a topic's whole dynamic configuration, so the current one is read first and sent back with the
/// changes applied. Returns the topic's settings as sent.
pub async fn alter_topic_config(
    cfg: &KafkaConfig,
    topic: &str,
    changes: &[(&str, &str)],
) -> Result<Vec<(String, String)>, KafkaIoError> {
    let admin = admin_client(cfg)?;
    let admin_error = |what, detail: String| KafkaIoError::Admin { topic: topic.into(), what, detail };
    let resource = ResourceSpecifier::Topic(topic);
    let described = admin
        .describe_configs([&resource], &options())
        .await
        .map_err(|e| admin_error("describe configs", e.to_string()))?;
    let current = described
        .into_iter()
        .next()
        .ok_or_else(|| admin_error("describe configs", "no answer".into()))?
        .map_err(|code| admin_error("describe configs", code.to_string()))?;
    let mut settings: Vec<(String, String)> = current
        .entries
        .iter()
        .filter(|e| e.source == ConfigSource::DynamicTopic)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    for (k, v) in changes {
        settings.retain(|(name, _)| name != k);
        settings.push((k.to_string(), v.to_string()));
    }
    let mut alter = AlterConfig::new(resource);
    for (k, v) in &settings {
        alter = alter.set(k, v);
    }
    let results = admin
        .alter_configs([&alter], &options())
        .await
        .map_err(|e| admin_error("alter configs", e.to_string()))?;
    for result in results {
        result.map_err(|(_, code)| admin_error("alter configs", code.to_string()))?;
    }
    settings.sort();
    Ok(settings)
}

/// Deletes topics; a topic that does not exist is not an error (a retired cluster's clean-up may run twice).
pub async fn delete_topics(cfg: &KafkaConfig, topics: &[&str]) -> Result<(), KafkaIoError> {
    let admin = admin_client(cfg)?;
    let results = admin.delete_topics(topics, &options()).await.map_err(|e| KafkaIoError::Admin {
        topic: topics.join(","),
        what: "delete topics",
        detail: e.to_string(),
    })?;
    for result in results {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                return Err(KafkaIoError::Admin { topic, what: "delete topics", detail: code.to_string() })
            }
        }
    }
    Ok(())
}
