//! AWS and HTTP adapters for the snapshot function's traits.

use std::{collections::BTreeSet, time::Duration};

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification, VolumeAttachmentState};
use ec_functions::{
    snapshots::{tag_filter, Ec2},
    tags, AwsError, SnapshotCatalog, SnapshotRecord,
};

use crate::{
    ports::{AdminPosition, BlockCheck, BlockSummary, PositionError, ReplicaPosition, SourceVolume, Volumes},
    source::SourceHealth,
};

/// EC2 and Auto Scaling: the snapshot function's view of the cluster's volumes, snapshots and what launches
/// from them.
pub struct Fleet {
    pub ec2: Ec2,
    pub groups: aws_sdk_autoscaling::Client,
}

#[async_trait::async_trait]
impl SnapshotCatalog for Fleet {
    async fn list_snapshots(&self, cluster: &str) -> Result<Vec<SnapshotRecord>, AwsError> {
        self.ec2.list_snapshots(cluster).await
    }
}

impl Fleet {
    /// The launch template versions the cluster's Auto Scaling groups launch from, and those their
    /// instances were launched from (an instance refresh leaves both for a while): `(template id, version)`.
    async fn group_versions(&self, cluster: &str) -> Result<BTreeSet<(String, String)>, AwsError> {
        let resource = format!("Auto Scaling groups of cluster {cluster}");
        let mut versions = BTreeSet::new();
        let mut token = None;
        loop {
            let page = self
                .groups
                .describe_auto_scaling_groups()
                .filters(
                    aws_sdk_autoscaling::types::Filter::builder()
                        .name(format!("tag:{}", tags::CLUSTER))
                        .values(cluster)
                        .build(),
                )
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::new("DescribeAutoScalingGroups", &resource, e))?;
            for g in page.auto_scaling_groups() {
                let specs = g
                    .launch_template()
                    .into_iter()
                    .chain(
                        g.mixed_instances_policy()
                            .and_then(|m| m.launch_template())
                            .and_then(|l| l.launch_template_specification()),
                    )
                    .chain(g.instances().iter().filter_map(|i| i.launch_template()));
                for spec in specs {
                    if let (Some(id), Some(version)) = (spec.launch_template_id(), spec.version()) {
                        versions.insert((id.to_string(), version.to_string()));
                    }
                }
            }
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(versions);
            }
        }
    }
}

#[async_trait::async_trait]
impl Volumes for Fleet {
    async fn source_volumes(&self, cluster: &str) -> Result<Vec<SourceVolume>, AwsError> {
        let resource = format!("volumes of cluster {cluster} with role {}", tags::ROLE_SNAPSHOT_SOURCE);
        let out = self
            .ec2
            .0
            .describe_volumes()
            .filters(tag_filter(tags::CLUSTER, cluster))
            .filters(tag_filter(tags::ROLE, tags::ROLE_SNAPSHOT_SOURCE))
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeVolumes", &resource, e))?;
        let mut found = Vec::new();
        for v in out.volumes() {
            let Some(volume_id) = v.volume_id() else {
                return Err(AwsError::malformed("DescribeVolumes", &resource, "a volume without an id"));
            };
            let instance_id = v
                .attachments()
                .iter()
                .find(|a| a.state() == Some(&VolumeAttachmentState::Attached))
                .and_then(|a| a.instance_id())
                .map(str::to_string);
            let private_ip = match &instance_id {
                Some(id) => private_ip(&self.ec2.0, id).await?,
                None => None,
            };
            found.push(SourceVolume { volume_id: volume_id.to_string(), instance_id, private_ip });
        }
        Ok(found)
    }

    async fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        t: &[(&'static str, String)],
    ) -> Result<String, AwsError> {
        let spec = TagSpecification::builder()
            .resource_type(ResourceType::Snapshot)
            .set_tags(Some(t.iter().map(|(k, v)| Tag::builder().key(*k).value(v).build()).collect()))
            .build();
        let out = self
            .ec2
            .0
            .create_snapshot()
            .volume_id(volume_id)
            .description(description)
            .tag_specifications(spec)
            .send()
            .await
            .map_err(|e| AwsError::new("CreateSnapshot", volume_id, e))?;
        out.snapshot_id()
            .map(str::to_string)
            .ok_or_else(|| AwsError::malformed("CreateSnapshot", volume_id, "no SnapshotId in the answer"))
    }

    async fn delete_snapshot(&self, snapshot_id: &str) -> Result<(), AwsError> {
        self.ec2
            .0
            .delete_snapshot()
            .snapshot_id(snapshot_id)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::new("DeleteSnapshot", snapshot_id, e))
    }

    async fn snapshots_in_use(
        &self,
        cluster: &str,
        candidates: &[String],
    ) -> Result<BTreeSet<String>, AwsError> {
        let mut used = BTreeSet::new();
        // Any volume (of any cluster or none: ASG-created volumes may be untagged) made from a candidate.
        for chunk in candidates.chunks(100) {
            let mut token = None;
            loop {
                let page = self
                    .ec2
                    .0
                    .describe_volumes()
                    .filters(Filter::builder().name("snapshot-id").set_values(Some(chunk.to_vec())).build())
                    .set_next_token(token)
                    .send()
                    .await
                    .map_err(|e| AwsError::new("DescribeVolumes", format!("volumes from {chunk:?}"), e))?;
                used.extend(page.volumes().iter().filter_map(|v| v.snapshot_id()).map(str::to_string));
                token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
                if token.is_none() {
                    break;
                }
            }
        }
        // The versions the cluster's groups launch from (a version the scaler reused may be neither default
        // nor latest), and the default and latest versions of its launch templates: what launches next.
        for (id, version) in self.group_versions(cluster).await? {
            let versions = self
                .ec2
                .0
                .describe_launch_template_versions()
                .launch_template_id(&id)
                .versions(&version)
                .send()
                .await
                .map_err(|e| {
                    AwsError::new("DescribeLaunchTemplateVersions", format!("{id} version {version}"), e)
                })?;
            for v in versions.launch_template_versions() {
                let mappings =
                    v.launch_template_data().map(|d| d.block_device_mappings()).unwrap_or_default();
                used.extend(mappings.iter().filter_map(|m| m.ebs()?.snapshot_id()).map(str::to_string));
            }
        }
        // The default and latest versions of the cluster's launch templates: what the ASG launches next.
        let resource = format!("launch templates of cluster {cluster}");
        let lts = self
            .ec2
            .0
            .describe_launch_templates()
            .filters(tag_filter(tags::CLUSTER, cluster))
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeLaunchTemplates", &resource, e))?;
        for lt in lts.launch_templates() {
            let Some(id) = lt.launch_template_id() else {
                return Err(AwsError::malformed(
                    "DescribeLaunchTemplates",
                    &resource,
                    "a template without an id",
                ));
            };
            let versions = self
                .ec2
                .0
                .describe_launch_template_versions()
                .launch_template_id(id)
                .versions("$Default")
                .versions("$Latest")
                .send()
                .await
                .map_err(|e| AwsError::new("DescribeLaunchTemplateVersions", id, e))?;
            for v in versions.launch_template_versions() {
                let mappings =
                    v.launch_template_data().map(|d| d.block_device_mappings()).unwrap_or_default();
                used.extend(mappings.iter().filter_map(|m| m.ebs()?.snapshot_id()).map(str::to_string));
            }
        }
        Ok(used)
    }
}

/// The private IP of an instance: where its replica's admin endpoint listens.
async fn private_ip(ec2: &aws_sdk_ec2::Client, instance_id: &str) -> Result<Option<String>, AwsError> {
    let out = ec2
        .describe_instances()
        .instance_ids(instance_id)
        .send()
        .await
        .map_err(|e| AwsError::new("DescribeInstances", instance_id, e))?;
    Ok(out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .find_map(|i| i.private_ip_address())
        .map(str::to_string))
}

/// The EBS direct APIs.
pub struct Ebs(pub aws_sdk_ebs::Client);

#[async_trait::async_trait]
impl BlockCheck for Ebs {
    async fn snapshot_blocks(&self, snapshot_id: &str) -> Result<BlockSummary, AwsError> {
        let (mut blocks, mut block_size, mut token) = (0u64, 0u64, None);
        loop {
            let page = self
                .0
                .list_snapshot_blocks()
                .snapshot_id(snapshot_id)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::new("ListSnapshotBlocks", snapshot_id, e))?;
            blocks += page.blocks().len() as u64;
            block_size = page.block_size().map_or(block_size, |b| b as u64);
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(BlockSummary { blocks, block_size });
            }
        }
    }

    async fn changed_bytes(&self, first: &str, second: &str) -> Result<u64, AwsError> {
        let resource = format!("{first}..{second}");
        let (mut bytes, mut token) = (0u64, None);
        loop {
            let page = self
                .0
                .list_changed_blocks()
                .first_snapshot_id(first)
                .second_snapshot_id(second)
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| AwsError::new("ListChangedBlocks", &resource, e))?;
            let Some(size) = page.block_size() else {
                return Err(AwsError::malformed("ListChangedBlocks", &resource, "no BlockSize"));
            };
            bytes += page.changed_blocks().len() as u64 * size as u64;
            token = page.next_token().filter(|t| !t.is_empty()).map(str::to_string);
            if token.is_none() {
                return Ok(bytes);
            }
        }
    }
}

/// `GET http://<instance private IP>:<port>/admin/position`, or a fixed URL (`ADMIN_URL`).
pub struct HttpPosition {
    pub client: reqwest::Client,
    pub port: u16,
    pub url_override: Option<String>,
}

impl HttpPosition {
    pub fn new(port: u16, url_override: Option<String>) -> Self {
        // The admin endpoint answers from memory; a slow answer means a sick replica, not a busy one.
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build().unwrap_or_default();
        Self { client, port, url_override }
    }

    fn url(&self, volume: &SourceVolume) -> Result<String, PositionError> {
        if let Some(u) = &self.url_override {
            return Ok(u.clone());
        }
        match &volume.private_ip {
            Some(ip) => Ok(format!("http://{ip}:{}/admin/position", self.port)),
            None => Err(PositionError::Http {
                url: format!("(volume {} is not attached to a running instance)", volume.volume_id),
                message: "no instance IP to ask".into(),
            }),
        }
    }
}

#[async_trait::async_trait]
impl ReplicaPosition for HttpPosition {
    async fn position(&self, volume: &SourceVolume) -> Result<AdminPosition, PositionError> {
        let url = self.url(volume)?;
        let http = |e: reqwest::Error| PositionError::Http { url: url.clone(), message: e.to_string() };
        let resp = self.client.get(&url).send().await.map_err(http)?;
        let status = resp.status();
        if !status.is_success() {
            let body = resp.text().await.unwrap_or_default();
            return Err(PositionError::Status { url, status: status.as_u16(), body });
        }
        resp.json().await.map_err(http)
    }

    /// `/health/ready` beside `/admin/position`: 200 or 503 with the same JSON body, both answers.
    async fn health(&self, volume: &SourceVolume) -> Result<SourceHealth, PositionError> {
        let position_url = self.url(volume)?;
        let url = match position_url.strip_suffix("/admin/position") {
            Some(base) => format!("{base}/health/ready"),
            None => {
                return Err(PositionError::Http {
                    url: position_url,
                    message: "ADMIN_URL must end in /admin/position (the health URL is derived from it)"
                        .into(),
                })
            }
        };
        let http = |e: reqwest::Error| PositionError::Http { url: url.clone(), message: e.to_string() };
        let resp = self.client.get(&url).send().await.map_err(http)?;
        let status = resp.status().as_u16();
        let body = resp.text().await.map_err(http)?;
        serde_json::from_str(&body).map_err(|_| PositionError::Status { url, status, body })
    }
}
