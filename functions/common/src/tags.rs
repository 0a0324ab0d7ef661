//! Tag keys shared with the CloudFormation template (`docs/aws-contract.md`, "Tags").

pub const CLUSTER: &str = "ether-cattle:cluster";
pub const ROLE: &str = "ether-cattle:role";
pub const TOPIC: &str = "ether-cattle:topic";
pub const KAFKA_OFFSET: &str = "ether-cattle:kafka-offset";
pub const SEQUENCE: &str = "ether-cattle:sequence";
pub const BLOCK_NUMBER: &str = "ether-cattle:block-number";
pub const BLOCK_HASH: &str = "ether-cattle:block-hash";
pub const TAKEN_AT: &str = "ether-cattle:taken-at";

/// `ether-cattle:role` of the volume the snapshot function snapshots.
pub const ROLE_SNAPSHOT_SOURCE: &str = "snapshot-source";
/// `ether-cattle:role` of a serving replica's data volume.
pub const ROLE_REPLICA: &str = "replica";

/// The CloudWatch dimension every metric carries.
pub const DIMENSION_CLUSTER: &str = "Cluster";
