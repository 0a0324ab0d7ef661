//! The cluster's snapshots as the functions see them: state, start time, and the replica position recorded in
//! their tags (`docs/aws-contract.md`).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use aws_sdk_ec2::types::{Filter, SnapshotState as Ec2State};

use crate::{aws::AwsError, tags};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotState {
    Pending,
    Completed,
    Error,
    /// A state this code does not know (EC2 added `recoverable`/`recovering` for archive tiers).
    Other,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotRecord {
    pub id: String,
    pub state: SnapshotState,
    /// EC2's start time, seconds since the epoch.
    pub started_at: i64,
    pub volume_id: Option<String>,
    pub tags: BTreeMap<String, String>,
}

impl SnapshotRecord {
    /// The replica position in the tags, if all of it is there and parses.
    pub fn position(&self) -> Option<SnapshotPosition> {
        SnapshotPosition::from_tags(&self.tags)
    }
}

/// Where the replica was when its volume was snapshotted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotPosition {
    pub topic: String,
    /// The last applied Kafka offset: a replica from this snapshot resumes at `kafka_offset + 1`.
    pub kafka_offset: i64,
    pub sequence: u64,
    pub block_number: u64,
    pub block_hash: String,
    /// When the position was read, seconds since the epoch.
    pub taken_at: i64,
}

impl SnapshotPosition {
    pub fn from_tags(t: &BTreeMap<String, String>) -> Option<Self> {
        let taken_at = chrono::DateTime::parse_from_rfc3339(t.get(tags::TAKEN_AT)?).ok()?.timestamp();
        Some(Self {
            topic: t.get(tags::TOPIC)?.clone(),
            kafka_offset: t.get(tags::KAFKA_OFFSET)?.parse().ok()?,
            sequence: t.get(tags::SEQUENCE)?.parse().ok()?,
            block_number: t.get(tags::BLOCK_NUMBER)?.parse().ok()?,
            block_hash: t.get(tags::BLOCK_HASH)?.clone(),
            taken_at,
        })
    }

    /// A position for fixtures: sequence and block number equal to the offset, a hash derived from it.
    pub fn synthetic(topic: &str, offset: i64, taken_at: i64) -> Self {
        Self {
            topic: topic.into(),
            kafka_offset: offset,
            sequence: offset as u64,
            block_number: offset as u64,
            block_hash: format!("0x{offset:064x}"),
            taken_at,
        }
    }

    /// The tags for a snapshot of `cluster` at this position.
    pub fn to_tags(&self, cluster: &str) -> Vec<(&'static str, String)> {
        let taken_at = chrono::DateTime::from_timestamp(self.taken_at, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        vec![
            (tags::CLUSTER, cluster.to_string()),
            (tags::TOPIC, self.topic.clone()),
            (tags::KAFKA_OFFSET, self.kafka_offset.to_string()),
            (tags::SEQUENCE, self.sequence.to_string()),
            (tags::BLOCK_NUMBER, self.block_number.to_string()),
            (tags::BLOCK_HASH, self.block_hash.clone()),
            (tags::TAKEN_AT, taken_at),
        ]
    }
}

/// The newest completed snapshot whose tags carry a full position: the one new replicas should start from and
/// the one retention is measured against. Ties on start time go to the larger offset.
pub fn newest_completed(snaps: &[SnapshotRecord]) -> Option<(&SnapshotRecord, SnapshotPosition)> {
    snaps
        .iter()
        .filter(|s| s.state == SnapshotState::Completed)
        .filter_map(|s| s.position().map(|p| (s, p)))
        .max_by_key(|(s, p)| (s.started_at, p.kafka_offset))
}

/// Lists the cluster's snapshots (tag `ether-cattle:cluster`).
#[async_trait::async_trait]
pub trait SnapshotCatalog: Send + Sync {
    async fn list_snapshots(&self, cluster: &str) -> Result<Vec<SnapshotRecord>, AwsError>;
}

/// The EC2 client; each function adds its own traits to it.
#[derive(Clone)]
pub struct Ec2(pub aws_sdk_ec2::Client);

/// `tag:<key>` = `value`.
pub fn tag_filter(key: &str, value: &str) -> Filter {
    Filter::builder().name(format!("tag:{key}")).values(value).build()
}

pub fn tag_map(t: &[aws_sdk_ec2::types::Tag]) -> BTreeMap<String, String> {
    t.iter().filter_map(|t| Some((t.key()?.to_string(), t.value().unwrap_or_default().to_string()))).collect()
}

#[async_trait::async_trait]
impl SnapshotCatalog for Ec2 {
    async fn list_snapshots(&self, cluster: &str) -> Result<Vec<SnapshotRecord>, AwsError> {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let page = self
                .0
                .describe_snapshots()
                .owner_ids("self")
                .filters(tag_filter(tags::CLUSTER, cluster))
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::new("DescribeSnapshots", format!("cluster {cluster}"), e))?;
            for s in page.snapshots() {
                let Some(id) = s.snapshot_id() else {
                    return Err(AwsError::malformed(
                        "DescribeSnapshots",
                        cluster,
                        "a snapshot without an id",
                    ));
                };
                // A snapshot without a start time cannot be ordered; fail the listing rather than guess.
                let Some(started) = s.start_time() else {
                    return Err(AwsError::malformed("DescribeSnapshots", id, "no StartTime"));
                };
                out.push(SnapshotRecord {
                    id: id.to_string(),
                    state: match s.state() {
                        Some(Ec2State::Pending) => SnapshotState::Pending,
                        Some(Ec2State::Completed) => SnapshotState::Completed,
                        Some(Ec2State::Error) => SnapshotState::Error,
                        _ => SnapshotState::Other,
                    },
                    started_at: started.secs(),
                    volume_id: s.volume_id().map(str::to_string),
                    tags: tag_map(s.tags()),
                });
            }
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(out);
            }
        }
    }
}

/// In-memory snapshots, for tests of the handlers.
#[derive(Debug, Clone, Default)]
pub struct MemorySnapshots(pub Arc<Mutex<Vec<SnapshotRecord>>>);

impl MemorySnapshots {
    pub fn with(snaps: Vec<SnapshotRecord>) -> Self {
        Self(Arc::new(Mutex::new(snaps)))
    }

    pub fn all(&self) -> Vec<SnapshotRecord> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait::async_trait]
impl SnapshotCatalog for MemorySnapshots {
    async fn list_snapshots(&self, cluster: &str) -> Result<Vec<SnapshotRecord>, AwsError> {
        Ok(self
            .all()
            .into_iter()
            .filter(|s| s.tags.get(tags::CLUSTER).is_some_and(|c| c == cluster))
            .collect())
    }
}

/// A test/fixture record: a snapshot of `cluster` at `offset`, started (and positioned) at `at`.
pub fn record(id: &str, cluster: &str, state: SnapshotState, at: i64, offset: i64) -> SnapshotRecord {
    let pos = SnapshotPosition::synthetic("t", offset, at);
    SnapshotRecord {
        id: id.into(),
        state,
        started_at: at,
        volume_id: Some("vol-1".into()),
        tags: pos.to_tags(cluster).into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use SnapshotState::*;

    #[test]
    fn position_round_trips_through_tags() {
        let r = record("s", "c", Completed, 1_700_000_000, 42);
        let p = r.position().expect("position");
        assert_eq!(p.kafka_offset, 42);
        assert_eq!(p.taken_at, 1_700_000_000);
        assert_eq!(r.tags[tags::TAKEN_AT], "2023-11-14T22:13:20Z");
    }

    #[test]
    fn newest_completed_skips_pending_error_and_untagged() {
        let mut untagged = record("u", "c", Completed, 500, 9);
        untagged.tags.remove(tags::KAFKA_OFFSET);
        let snaps = vec![
            record("a", "c", Completed, 100, 1),
            record("b", "c", Completed, 200, 2),
            record("p", "c", Pending, 300, 3),
            record("e", "c", Error, 400, 4),
            untagged,
        ];
        assert_eq!(newest_completed(&snaps).map(|(s, _)| s.id.as_str()), Some("b"));
        assert!(newest_completed(&snaps[2..4]).is_none());
    }
}
