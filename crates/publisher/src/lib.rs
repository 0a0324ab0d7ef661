//! The publisher ("master" in the original design): follows one execution client over JSON-RPC and writes
//! the cluster's log — genesis, every canonical block with its complete state change, reverts for reorgs,
//! heartbeats — and relays transactions from the tx topic to the client.
//!
//! - [`rpc`]: the JSON-RPC calls; [`fetch`]: one block as a log record; [`diff`]: trace merging (pure);
//! - [`genesis`]: the initial-state record; [`checkpoint`]: the record that starts a cluster at block N; [`tail`]: recovering the position from the topic;
//! - [`invisible`]: accounts the tracer's diffs cannot show (pure);
//! - [`verify`]: records checked against `eth_getProof` proofs of the state root (pure);
//! - [`publisher`]: the loop; [`relay`]: the tx topic; [`metrics`]: Prometheus text.

pub mod checkpoint;
pub mod diff;
pub mod fetch;
pub mod genesis;
pub mod invisible;
pub mod metrics;
pub mod publisher;
pub mod relay;
pub mod rpc;
pub mod tail;
pub mod verify;
mod wake;

pub use fetch::TraceMode;
pub use metrics::Metrics;
pub use publisher::{Publisher, PublisherConfig, PublisherError};
