//! The retention guard: compares the topic's effective retention and earliest offset with the newest completed
//! snapshot, and publishes how long that snapshot can still resume (`RetentionMarginSeconds`) and a status
//! (`RetentionStatus`: ok, warning, critical, unknown).
//!
//! [`retention`] is the pure decision; [`sources`] the Kafka/MSK adapters and their test doubles;
//! [`credentials`] the SCRAM secret; [`handler`] one run.

pub mod credentials;
pub mod handler;
pub mod retention;
pub mod sources;

pub use handler::{Config, Lambda};
