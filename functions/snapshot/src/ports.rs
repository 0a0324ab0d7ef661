//! The outside world of the snapshot function, behind traits: EC2 (volumes, snapshots, launch templates), the
//! EBS direct APIs, and the replica's private HTTP port (admin position, readiness). AWS/HTTP adapters are in `adapters`; the in-memory ones
//! here serve the handler tests.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use ec_functions::{tags, AwsError, MemorySnapshots, SnapshotCatalog, SnapshotRecord, SnapshotState};
use serde::Deserialize;

use crate::source::SourceHealth;

/// A volume tagged as the cluster's snapshot source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceVolume {
    pub volume_id: String,
    /// The instance it is attached to, if attached.
    pub instance_id: Option<String>,
    /// That instance's private IP, where its admin endpoint listens.
    pub private_ip: Option<String>,
}

#[async_trait::async_trait]
pub trait Volumes: SnapshotCatalog {
    /// Volumes tagged `ether-cattle:cluster` = `cluster` and `ether-cattle:role` = `snapshot-source`.
    async fn source_volumes(&self, cluster: &str) -> Result<Vec<SourceVolume>, AwsError>;
    /// Creates a snapshot of `volume_id` carrying `tags` from the start (no untagged window).
    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &[(&'static str, String)],
    ) -> Result<String, AwsError>;
    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), AwsError>;
    /// Of `candidates`, the ids a volume was created from or a cluster launch template names.
    async fn snapshots_in_use(
        &self,
        cluster: &str,
        candidates: &[String],
    ) -> Result<BTreeSet<String>, AwsError>;
}

/// What the EBS direct APIs tell about a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockSummary {
    pub blocks: u64,
    pub block_size: u64,
}

#[async_trait::async_trait]
pub trait BlockCheck: Send + Sync {
    /// `ListSnapshotBlocks`: the snapshot's written blocks.
    async fn snapshot_blocks(&self, snapshot_id: &str) -> Result<BlockSummary, AwsError>;
    /// `ListChangedBlocks`: bytes in blocks that differ between `first` and `second`.
    async fn changed_bytes(&self, first: &str, second: &str) -> Result<u64, AwsError>;
}

/// `GET /admin/position` of the replica (`docs/aws-contract.md`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AdminPosition {
    pub topic: String,
    pub kafka_offset: i64,
    pub sequence: u64,
    pub block_number: Option<u64>,
    pub block_hash: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum PositionError {
    #[error("GET {url} failed: {message}")]
    Http { url: String, message: String },
    #[error("GET {url} answered {status}: {body}")]
    Status { url: String, status: u16, body: String },
}

#[async_trait::async_trait]
pub trait ReplicaPosition: Send + Sync {
    /// The position of the replica serving `volume` (its admin URL is derived from the instance IP unless
    /// overridden).
    async fn position(&self, volume: &SourceVolume) -> Result<AdminPosition, PositionError>;
    /// Its readiness and lag (`GET /health/ready` on the same port).
    async fn health(&self, volume: &SourceVolume) -> Result<SourceHealth, PositionError>;
}

/// In-memory EC2: snapshots, source volumes and names in use.
#[derive(Debug, Clone, Default)]
pub struct MemoryEc2 {
    pub snapshots: MemorySnapshots,
    pub sources: Vec<SourceVolume>,
    pub in_use: Arc<Mutex<BTreeSet<String>>>,
    /// Makes `snapshots_in_use` fail, as an unreadable launch template would.
    pub in_use_fails: bool,
    pub now: i64,
}

#[async_trait::async_trait]
impl SnapshotCatalog for MemoryEc2 {
    async fn list_snapshots(&self, cluster: &str) -> Result<Vec<SnapshotRecord>, AwsError> {
        self.snapshots.list_snapshots(cluster).await
    }
}

#[async_trait::async_trait]
impl Volumes for MemoryEc2 {
    async fn source_volumes(&self, _cluster: &str) -> Result<Vec<SourceVolume>, AwsError> {
        Ok(self.sources.clone())
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        _description: &str,
        t: &[(&'static str, String)],
    ) -> Result<String, AwsError> {
        let mut all = self.snapshots.0.lock().unwrap_or_else(|e| e.into_inner());
        let id = format!("snap-mem{}", all.len());
        all.push(SnapshotRecord {
            id: id.clone(),
            state: SnapshotState::Pending,
            started_at: self.now,
            volume_id: Some(volume_id.into()),
            tags: t.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        });
        Ok(id)
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), AwsError> {
        self.snapshots.0.lock().unwrap_or_else(|e| e.into_inner()).retain(|s| s.id != snapshot_id);
        Ok(())
    }

    async fn snapshots_in_use(
        &self,
        cluster: &str,
        candidates: &[String],
    ) -> Result<BTreeSet<String>, AwsError> {
        if self.in_use_fails {
            return Err(AwsError::malformed("DescribeLaunchTemplateVersions", cluster, "injected failure"));
        }
        let used = self.in_use.lock().unwrap_or_else(|e| e.into_inner());
        Ok(candidates.iter().filter(|c| used.contains(*c)).cloned().collect())
    }
}

/// In-memory EBS direct APIs: blocks per snapshot as (index → content tag).
#[derive(Debug, Clone, Default)]
pub struct MemoryBlocks(pub BTreeMap<String, BTreeMap<u64, u64>>);

const MEMORY_BLOCK_SIZE: u64 = 512 * 1024;

#[async_trait::async_trait]
impl BlockCheck for MemoryBlocks {
    async fn snapshot_blocks(&self, id: &str) -> Result<BlockSummary, AwsError> {
        let b = self.0.get(id).ok_or_else(|| AwsError::malformed("ListSnapshotBlocks", id, "unknown"))?;
        Ok(BlockSummary { blocks: b.len() as u64, block_size: MEMORY_BLOCK_SIZE })
    }

    async fn changed_bytes(&self, first: &str, second: &str) -> Result<u64, AwsError> {
        let a =
            self.0.get(first).ok_or_else(|| AwsError::malformed("ListChangedBlocks", first, "unknown"))?;
        let b =
            self.0.get(second).ok_or_else(|| AwsError::malformed("ListChangedBlocks", second, "unknown"))?;
        let idx: BTreeSet<&u64> = a.keys().chain(b.keys()).collect();
        Ok(idx.into_iter().filter(|i| a.get(i) != b.get(i)).count() as u64 * MEMORY_BLOCK_SIZE)
    }
}

/// Fixed answers from the admin endpoint: the position (`None`: an empty database) and the health.
#[derive(Debug, Clone)]
pub struct FixedPosition(pub Option<AdminPosition>, pub SourceHealth);

#[async_trait::async_trait]
impl ReplicaPosition for FixedPosition {
    async fn position(&self, _volume: &SourceVolume) -> Result<AdminPosition, PositionError> {
        self.0.clone().ok_or_else(|| PositionError::Status {
            url: "memory".into(),
            status: 503,
            body: "empty database".into(),
        })
    }

    async fn health(&self, _volume: &SourceVolume) -> Result<SourceHealth, PositionError> {
        Ok(self.1.clone())
    }
}

/// The tags of a source volume (for the in-memory fixtures and docs).
pub fn source_tags(cluster: &str) -> [(&'static str, String); 2] {
    [(tags::CLUSTER, cluster.to_string()), (tags::ROLE, tags::ROLE_SNAPSHOT_SOURCE.to_string())]
}
