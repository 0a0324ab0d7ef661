//! A cluster's topics through the Kafka admin API, with the same connection settings (TLS, SCRAM, MSK IAM) as
//! the publisher and the replicas, so the runbook needs no other Kafka tools:
//! - `ether-cattle create-topics`: the log and its tx topic. Idempotent, so start-up scripts can run it every
//!   time. The log topic must have exactly one partition (offsets totally order it); both are created with one.
//! - `ether-cattle alter-topic`: change topic settings (e.g. `retention.ms`), keeping the others.
//! - `ether-cattle delete-topics`: a retired cluster's log and tx topics.

use crate::kafka_args::{parse_key_value, KafkaArgs};

#[derive(clap::Args)]
pub struct CreateTopicsArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The cluster's log topic; its tx topic is `<topic>-tx` unless `--tx-topic` says otherwise.
    #[arg(long, env = "EC_TOPIC")]
    topic: String,
    /// The tx topic's name; `none` creates only the log topic.
    #[arg(long, env = "EC_TX_TOPIC")]
    tx_topic: Option<String>,
    /// Replication factor; the broker's default when unset (MSK: 3).
    #[arg(long)]
    replication_factor: Option<i32>,
    /// A topic configuration of the log topic, `key=value` (e.g. `retention.ms=604800000`); repeatable.
    #[arg(long = "config", value_parser = parse_key_value)]
    configs: Vec<(String, String)>,
}

pub async fn run(args: CreateTopicsArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.connect().await?;
    let configs: Vec<(&str, &str)> = args.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    ec_kafka::admin::create_topic(&kafka, &args.topic, args.replication_factor, &configs).await?;
    println!("topic {} ready", args.topic);
    let tx_topic = match args.tx_topic.as_deref() {
        Some("none") => None,
        Some(t) => Some(t.to_owned()),
        None => Some(format!("{}-tx", args.topic)),
    };
    if let Some(tx) = tx_topic {
        ec_kafka::admin::create_topic(&kafka, &tx, args.replication_factor, &[]).await?;
        println!("topic {tx} ready");
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct AlterTopicArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    #[arg(long, env = "EC_TOPIC")]
    topic: String,
    /// A setting, `key=value` (e.g. `retention.ms=604800000`); repeatable. The topic's other settings stay.
    #[arg(long = "config", value_parser = parse_key_value, required = true)]
    configs: Vec<(String, String)>,
}

pub async fn alter(args: AlterTopicArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.connect().await?;
    let changes: Vec<(&str, &str)> = args.configs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let settings = ec_kafka::admin::alter_topic_config(&kafka, &args.topic, &changes).await?;
    for (k, v) in settings {
        println!("{}: {k}={v}", args.topic);
    }
    Ok(())
}

#[derive(clap::Args)]
pub struct DeleteTopicsArgs {
    #[command(flatten)]
    kafka: KafkaArgs,
    /// The retired cluster's log topic; its tx topic `<topic>-tx` goes with it.
    #[arg(long)]
    topic: String,
}

pub async fn delete(args: DeleteTopicsArgs) -> anyhow::Result<()> {
    let kafka = args.kafka.connect().await?;
    let tx = format!("{}-tx", args.topic);
    ec_kafka::admin::delete_topics(&kafka, &[&args.topic, &tx]).await?;
    println!("topics {} and {tx} deleted", args.topic);
    Ok(())
}
