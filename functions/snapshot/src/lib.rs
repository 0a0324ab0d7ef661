//! The snapshot function: on a schedule, snapshot the cluster's snapshot-source replica volume and tag the
//! snapshot with the replica's position; check earlier snapshots (state, EBS direct APIs); prune by policy.
//!
//! `main.rs` is the `lambda_runtime` entrypoint; [`handler::run`] is the logic over the traits of [`ports`];
//! [`prune`] is the pure pruning policy, [`source`] the pure check that the source may be snapshotted.

pub mod adapters;
pub mod handler;
pub mod ports;
pub mod prune;
pub mod source;

pub use handler::{Config, Lambda};
