//! The test bed: a deterministic synthetic log, real Kafka-protocol brokers on 127.0.0.1, and a moto server
//! (AWS API emulator) for the Lambda functions.
//!
//! Shared by the integration tests, the benchmark and the local demo, so all three exercise the same
//! records.

pub mod broker;
pub mod gen;
pub mod moto;
pub mod tansu;

pub use broker::MockBroker;
pub use gen::{GenOptions, LogGenerator};
pub use moto::{MotoError, MotoServer};
pub use tansu::{TansuBroker, TansuError};
