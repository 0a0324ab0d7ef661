//! Kafka I/O for Ether Cattle.
//!
//! - [`KafkaConfig`]: brokers, TLS and SASL, so the same binary talks to a local broker or to MSK.
//! - [`LogProducer`]: idempotent, `acks=all`; writes a record's frames in order and waits for every ack.
//! - [`admin`]: topic creation and DeleteRecords through the admin API.
//! - [`context`]: the client context every client uses: errors to `tracing`, SASL/OAUTHBEARER tokens;
//!   [`msk_iam`] makes those tokens for Amazon MSK IAM access control, [`unsecured`] for a development
//!   broker's unsecured validator (a principal per client, for grant tests).
//! - [`PartitionConsumer`]: assigns the cluster's single partition directly, at an explicit offset. There is
//!   no consumer group: a replica's position lives in its own database, atomically with the data.

pub mod admin;
mod config;
mod consumer;
pub mod context;
mod error;
pub mod msk_iam;
mod producer;
pub mod unsecured;

pub use config::KafkaConfig;
pub use consumer::{is_offset_out_of_range, Fetched, PartitionConsumer, TxConsumer, TxMessage};
pub use context::KafkaContext;
pub use error::KafkaIoError;
pub use producer::{transaction_timeout, LogProducer, PendingRecord, TxProducer};

/// Every Ether Cattle topic has exactly one partition, so that offsets totally order the log.
pub const PARTITION: i32 = 0;
