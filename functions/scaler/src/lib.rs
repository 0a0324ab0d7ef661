//! The scaler: points new replicas at the newest usable snapshot and sets the replica count from
//! [`scale::decide`]. Invoked by EventBridge on a schedule (which picks up completed snapshots) and on the load alarm's
//! state changes.
//!
//! [`roll`] decides whether running instances are replaced after a stack update changed what they launch with.
//!
//! [`fleet`] holds the traits over the deployment (ASG + launch template; ECS designed for) and the load
//! (ALB target health, `RequestCountPerTarget`), their AWS adapters and an in-memory double.

pub mod fleet;
pub mod handler;
pub mod roll;
pub mod scale;

pub use handler::{Config, Lambda};
