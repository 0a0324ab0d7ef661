//! The test bed: a deterministic synthetic log, and real Kafka-protocol brokers on 127.0.0.1.
//!
//! Shared by the integration tests, the benchmark and the local demo, so all three exercise the same
//! records.

pub mod broker;
pub mod gen;
pub mod tansu;

pub use broker::MockBroker;
pub use gen::{GenOptions, LogGenerator};
pub use tansu::{TansuBroker, TansuError};
