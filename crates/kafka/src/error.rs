use rdkafka::error::KafkaError;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum KafkaIoError {
    #[error("kafka client for {brokers}: {source}")]
    Client { brokers: String, source: KafkaError },
    #[error("kafka client for {brokers}: authentication: {message}")]
    Auth { brokers: String, message: String },
    #[error("topic {topic}: reading watermarks: {source}")]
    Watermarks { topic: String, source: KafkaError },
    #[error("topic {topic}: assigning partition 0 at offset {offset}: {source}")]
    Assign { topic: String, offset: i64, source: KafkaError },
    #[error("topic {topic}: fetching: {source}")]
    Fetch { topic: String, source: KafkaError },
    #[error("topic {topic}: message at offset {offset} has no value")]
    EmptyMessage { topic: String, offset: i64 },
    #[error("topic {topic}: producing frame {index} of record {sequence}: {source}")]
    Produce { topic: String, sequence: u64, index: usize, source: KafkaError },
    #[error("the log's transaction ({what}): {source}")]
    Transaction { what: &'static str, source: KafkaError },
    #[error("topic {topic}: admin request ({what}) failed: {detail}")]
    Admin { topic: String, what: &'static str, detail: String },
    #[error("topic {topic}: frame {index} of record {sequence} went to partition {partition}, not 0")]
    WrongPartition { topic: String, sequence: u64, index: usize, partition: i32 },
}
