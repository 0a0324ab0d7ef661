//! The test bed: a deterministic synthetic log, real Kafka brokers on 127.0.0.1 (genuine Apache Kafka, and
//! librdkafka's mock cluster for fault injection), geth as an Ethereum upstream, and a moto server (AWS API
//! emulator) for the Lambda functions.
//!
//! Shared by the integration tests, the benchmark and the local demo, so all three exercise the same
//! records.

pub mod broker;
pub mod gen;
pub mod geth;
pub mod kafka;
pub mod moto;

pub use broker::MockBroker;
pub use gen::{GenOptions, LogGenerator};
pub use geth::{Geth, GethError};
pub use kafka::{KafkaBroker, KafkaBrokerError};
pub use moto::{MotoError, MotoServer};

/// A port on 127.0.0.1 that the OS reports free; the server started next binds it.
pub fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
