//! `ether-cattle create-topics`: create a cluster's two topics (the log and its tx topic) through the Kafka
//! admin API. Idempotent, so start-up scripts can run it every time. The log topic must have exactly one
//! partition (offsets totally order it); both are created with one.

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
