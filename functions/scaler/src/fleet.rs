//! The replicas as a fleet the scaler steers, behind [`ReplicaFleet`], and the load it reads, behind
//! [`LoadSource`].
//!
//! Deployed shape (docs/aws-contract.md): an EC2 Auto Scaling group launching from a launch template whose
//! data-volume mapping names the snapshot ([`AsgFleet`]). The trait is also what an ECS service would
//! implement: `state` from `DescribeServices` (desiredCount, the service's
//! `volumeConfigurations[].managedEBSVolume.snapshotId`, a `ether-cattle:scaled-at` service tag),
//! `point_at` as `UpdateService` with a new `volumeConfigurations` (new tasks get volumes from the snapshot)
//! and `set_desired` as `UpdateService` with `desiredCount`. It is not built: nothing deploys it, and the ECS
//! SDK is minutes of compile time.

use std::{
    collections::hash_map::DefaultHasher,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
};

use aws_sdk_autoscaling::types::{
    InstanceRefreshStatus, LaunchTemplateSpecification, LifecycleState, RefreshPreferences, Tag as AsgTag,
};
use aws_sdk_cloudwatch::types::{Dimension, Statistic};
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMapping, LaunchTemplateBlockDeviceMappingRequest,
    LaunchTemplateEbsBlockDeviceRequest, RequestLaunchTemplateData, ResponseLaunchTemplateData,
};
use aws_sdk_elasticloadbalancingv2::types::TargetHealthStateEnum;
use ec_functions::AwsError;

use crate::roll::LaunchConfig;

/// ASG tag: when the scaler last changed the desired count (RFC 3339), for the cool-down.
pub const SCALED_AT_TAG: &str = "ether-cattle:scaled-at";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetState {
    pub desired: u32,
    /// The snapshot new replicas start from now.
    pub snapshot_id: Option<String>,
    pub last_change_at: Option<i64>,
}

/// What a group launches now and what its in-service instances were launched with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupConfigs {
    pub group: LaunchConfig,
    pub instances: Vec<Option<LaunchConfig>>,
}

#[async_trait::async_trait]
pub trait ReplicaFleet: Send + Sync {
    async fn state(&self) -> Result<FleetState, AwsError>;
    /// Makes new replicas start from `snapshot_id`; returns what was changed, for the log.
    async fn point_at(&self, snapshot_id: &str) -> Result<String, AwsError>;
    async fn set_desired(&self, desired: u32, now: i64) -> Result<(), AwsError>;
    /// The groups whose instances are rolled when their launch configuration changes.
    fn roll_groups(&self) -> Vec<String>;
    async fn launch_configs(&self, group: &str) -> Result<GroupConfigs, AwsError>;
    async fn refresh_in_progress(&self, group: &str) -> Result<bool, AwsError>;
    /// Replaces the group's instances that do not match its launch configuration, each replacement ready
    /// before the instance it replaces goes; returns what was started, for the log.
    async fn start_refresh(&self, group: &str) -> Result<String, AwsError>;
}

#[async_trait::async_trait]
pub trait LoadSource: Send + Sync {
    /// Replicas the load balancer reports healthy.
    async fn ready(&self) -> Result<u32, AwsError>;
    /// Requests per minute per healthy target of the serving group, latest minute; `None` without data
    /// points.
    async fn requests_per_target_per_min(&self, now: i64) -> Result<Option<f64>, AwsError>;
}

/// The replica Auto Scaling group, the snapshot-source group sharing its launch template, and the template.
pub struct AsgFleet {
    pub asg: aws_sdk_autoscaling::Client,
    pub ec2: aws_sdk_ec2::Client,
    pub asg_name: String,
    /// The one-instance snapshot-source group: moved to every new version with the replica group, so a
    /// replaced source starts from the newest snapshot too.
    pub snapshot_source_asg_name: Option<String>,
    pub launch_template_id: String,
    /// The data volume's device in the launch template (`/dev/sdf`).
    pub device_name: String,
}

impl AsgFleet {
    async fn group(&self, name: &str) -> Result<aws_sdk_autoscaling::types::AutoScalingGroup, AwsError> {
        let out = self
            .asg
            .describe_auto_scaling_groups()
            .auto_scaling_group_names(name)
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeAutoScalingGroups", name, e))?;
        out.auto_scaling_groups()
            .first()
            .cloned()
            .ok_or_else(|| AwsError::malformed("DescribeAutoScalingGroups", name, "no such group"))
    }

    /// The number and block device mappings of the launch-template version the replica group launches now:
    /// the number CloudFormation set (`LatestVersionNumber`, so a stack update's changes are in it), or what
    /// `$Latest` / `$Default` resolve to for a group set up by hand.
    async fn running_version(
        &self,
        group: &aws_sdk_autoscaling::types::AutoScalingGroup,
    ) -> Result<(i64, Vec<LaunchTemplateBlockDeviceMapping>), AwsError> {
        let lt = &self.launch_template_id;
        let version = group_version(group).unwrap_or("$Default");
        let out = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(lt)
            .versions(version)
            .send()
            .await
            .map_err(|e| {
                AwsError::new("DescribeLaunchTemplateVersions", format!("{lt} version {version}"), e)
            })?;
        let v = out.launch_template_versions().first().ok_or_else(|| {
            AwsError::malformed("DescribeLaunchTemplateVersions", lt, format!("no version {version}"))
        })?;
        let number = v
            .version_number()
            .ok_or_else(|| AwsError::malformed("DescribeLaunchTemplateVersions", lt, "no VersionNumber"))?;
        let mappings =
            v.launch_template_data().map(|d| d.block_device_mappings().to_vec()).unwrap_or_default();
        Ok((number, mappings))
    }

    /// The template's newest version's number, if its description is `description`.
    async fn latest_version_described(&self, description: &str) -> Result<Option<i64>, AwsError> {
        let lt = &self.launch_template_id;
        let out = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(lt)
            .versions("$Latest")
            .send()
            .await
            .map_err(|e| {
                AwsError::new("DescribeLaunchTemplateVersions", format!("{lt} version $Latest"), e)
            })?;
        Ok(out
            .launch_template_versions()
            .first()
            .filter(|v| v.version_description() == Some(description))
            .and_then(|v| v.version_number()))
    }

    /// A new version: `source` with the block device list `requests` (SourceVersion: everything else of the
    /// version the group runs carries over, image and user data as the last stack update deployed them; AWS
    /// replaces the block device list as a whole, hence the full list).
    async fn create_version(
        &self,
        source: i64,
        requests: Vec<LaunchTemplateBlockDeviceMappingRequest>,
        description: &str,
    ) -> Result<i64, AwsError> {
        let lt = &self.launch_template_id;
        let data = RequestLaunchTemplateData::builder().set_block_device_mappings(Some(requests)).build();
        let created = self
            .ec2
            .create_launch_template_version()
            .launch_template_id(lt)
            .source_version(source.to_string())
            .version_description(description)
            .launch_template_data(data)
            .send()
            .await
            .map_err(|e| AwsError::new("CreateLaunchTemplateVersion", lt, e))?;
        created
            .launch_template_version()
            .and_then(|v| v.version_number())
            .ok_or_else(|| AwsError::malformed("CreateLaunchTemplateVersion", lt, "no VersionNumber"))
    }

    /// The replica group, then the snapshot-source group: the groups that launch from the template.
    fn group_names(&self) -> impl Iterator<Item = &String> {
        std::iter::once(&self.asg_name).chain(self.snapshot_source_asg_name.as_ref())
    }

    /// Sets `version` on group `name` (as described in `g`) if it names a version number (a group on
    /// `$Latest` or `$Default` follows by itself once the new version is the latest and the default).
    async fn move_group(
        &self,
        name: &str,
        g: &aws_sdk_autoscaling::types::AutoScalingGroup,
        version: i64,
    ) -> Result<bool, AwsError> {
        if group_version(g).is_some_and(|v| v.starts_with('$')) {
            return Ok(false);
        }
        let spec = LaunchTemplateSpecification::builder()
            .launch_template_id(&self.launch_template_id)
            .version(version.to_string())
            .build();
        self.asg
            .update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(spec)
            .send()
            .await
            .map_err(|e| AwsError::new("UpdateAutoScalingGroup", name, e))?;
        Ok(true)
    }
}

/// The launch-template version a group names (`"7"`, `"$Latest"`, `"$Default"`), if it launches from one.
fn group_version(g: &aws_sdk_autoscaling::types::AutoScalingGroup) -> Option<&str> {
    g.launch_template().and_then(|t| t.version())
}

/// A version's launch configuration without the snapshot of the data device: what decides whether a running
/// instance is outdated. User data (which the SDK's Debug output redacts) enters as a hash.
fn launch_config(d: &ResponseLaunchTemplateData, data_device: &str) -> LaunchConfig {
    let volumes: Vec<String> = d
        .block_device_mappings()
        .iter()
        .map(|m| {
            let mut m = m.clone();
            if m.device_name.as_deref() == Some(data_device) {
                if let Some(ebs) = m.ebs.as_mut() {
                    ebs.snapshot_id = None;
                }
            }
            format!("{m:?}")
        })
        .collect();
    let mut user_data = DefaultHasher::new();
    d.user_data().hash(&mut user_data);
    LaunchConfig(format!(
        "image {:?} type {:?} profile {:?} security groups {:?} user data {:x} volumes {volumes:?}",
        d.image_id(),
        d.instance_type(),
        d.iam_instance_profile(),
        d.security_group_ids(),
        user_data.finish()
    ))
}

/// Instance refresh states during which another must not be started.
fn refresh_running(s: &InstanceRefreshStatus) -> bool {
    matches!(
        s,
        InstanceRefreshStatus::Pending
            | InstanceRefreshStatus::InProgress
            | InstanceRefreshStatus::Cancelling
            | InstanceRefreshStatus::RollbackInProgress
            | InstanceRefreshStatus::Baking
    )
}

/// The request form of a mapping, with the data device's snapshot replaced (other fields kept, so size,
/// type and encryption stay as the template had them).
fn remap(
    m: &LaunchTemplateBlockDeviceMapping,
    device: &str,
    snapshot_id: &str,
) -> LaunchTemplateBlockDeviceMappingRequest {
    let ebs = m.ebs().map(|e| {
        let snap = if m.device_name() == Some(device) { Some(snapshot_id) } else { e.snapshot_id() };
        LaunchTemplateEbsBlockDeviceRequest::builder()
            .set_encrypted(e.encrypted())
            .set_delete_on_termination(e.delete_on_termination())
            .set_iops(e.iops())
            .set_kms_key_id(e.kms_key_id().map(str::to_string))
            .set_snapshot_id(snap.map(str::to_string))
            .set_volume_size(e.volume_size())
            .set_volume_type(e.volume_type().cloned())
            .set_throughput(e.throughput())
            .set_volume_initialization_rate(e.volume_initialization_rate())
            .build()
    });
    LaunchTemplateBlockDeviceMappingRequest::builder()
        .set_device_name(m.device_name().map(str::to_string))
        .set_virtual_name(m.virtual_name().map(str::to_string))
        .set_no_device(m.no_device().map(str::to_string))
        .set_ebs(ebs)
        .build()
}

#[async_trait::async_trait]
impl ReplicaFleet for AsgFleet {
    async fn state(&self) -> Result<FleetState, AwsError> {
        let g = self.group(&self.asg_name).await?;
        let desired = g.desired_capacity().and_then(|d| u32::try_from(d).ok()).ok_or_else(|| {
            AwsError::malformed("DescribeAutoScalingGroups", &self.asg_name, "no DesiredCapacity")
        })?;
        let last_change_at = g
            .tags()
            .iter()
            .find(|t| t.key() == Some(SCALED_AT_TAG))
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t.value()?).ok())
            .map(|t| t.timestamp());
        let (_, mappings) = self.running_version(&g).await?;
        let snapshot_id = mappings
            .iter()
            .find(|m| m.device_name() == Some(self.device_name.as_str()))
            .and_then(|m| m.ebs()?.snapshot_id())
            .map(str::to_string);
        Ok(FleetState { desired, snapshot_id, last_change_at })
    }

    async fn point_at(&self, snapshot_id: &str) -> Result<String, AwsError> {
        let lt = &self.launch_template_id;
        let replicas = self.group(&self.asg_name).await?;
        let (source, mappings) = self.running_version(&replicas).await?;
        let mut requests: Vec<_> =
            mappings.iter().map(|m| remap(m, &self.device_name, snapshot_id)).collect();
        if !mappings.iter().any(|m| m.device_name() == Some(self.device_name.as_str())) {
            let ebs = LaunchTemplateEbsBlockDeviceRequest::builder().snapshot_id(snapshot_id).build();
            requests.push(
                LaunchTemplateBlockDeviceMappingRequest::builder()
                    .device_name(&self.device_name)
                    .ebs(ebs)
                    .build(),
            );
        }
        // The description names what the version is made of, so that a run finds the version an earlier run
        // made for the same snapshot and source (one that could not move the groups: denied, throttled) and
        // reuses it, instead of adding a version per run (a template holds 10,000 at most).
        let description = format!("ether-cattle: data volume from {snapshot_id} on version {source}");
        let number = match self.latest_version_described(&description).await? {
            Some(number) => number,
            None => self.create_version(source, requests, &description).await?,
        };
        // The default too, for groups and people that launch `$Default`.
        self.ec2
            .modify_launch_template()
            .launch_template_id(lt)
            .default_version(number.to_string())
            .send()
            .await
            .map_err(|e| AwsError::new("ModifyLaunchTemplate", lt, e))?;
        let mut moved = Vec::new();
        for name in self.group_names() {
            // The replica group was described above; only the snapshot-source group is read here.
            let g = if *name == self.asg_name { replicas.clone() } else { self.group(name).await? };
            if self.move_group(name, &g, number).await? {
                moved.push(name.as_str());
            }
        }
        Ok(format!(
            "launch template {lt} version {number} (from version {source}, which {} ran) is the default; groups moved to it: {moved:?}",
            self.asg_name
        ))
    }

    async fn set_desired(&self, desired: u32, now: i64) -> Result<(), AwsError> {
        self.asg
            .set_desired_capacity()
            .auto_scaling_group_name(&self.asg_name)
            .desired_capacity(desired as i32)
            .honor_cooldown(false)
            .send()
            .await
            .map_err(|e| AwsError::new("SetDesiredCapacity", &self.asg_name, e))?;
        let at = chrono::DateTime::from_timestamp(now, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default();
        let tag = AsgTag::builder()
            .resource_id(&self.asg_name)
            .resource_type("auto-scaling-group")
            .key(SCALED_AT_TAG)
            .value(at)
            .propagate_at_launch(false)
            .build();
        self.asg
            .create_or_update_tags()
            .tags(tag)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AwsError::new("CreateOrUpdateTags", &self.asg_name, e))
    }

    fn roll_groups(&self) -> Vec<String> {
        self.group_names().cloned().collect()
    }

    async fn launch_configs(&self, name: &str) -> Result<GroupConfigs, AwsError> {
        let lt = &self.launch_template_id;
        let g = self.group(name).await?;
        let group_version = group_version(&g).unwrap_or("$Default").to_string();
        let instance_versions: Vec<Option<String>> = g
            .instances()
            .iter()
            .filter(|i| i.lifecycle_state() == Some(&LifecycleState::InService))
            .map(|i| {
                i.launch_template()
                    .filter(|t| t.launch_template_id() == Some(lt.as_str()))
                    .and_then(|t| t.version())
                    .map(str::to_string)
            })
            .collect();
        let mut wanted: Vec<String> = instance_versions.iter().flatten().cloned().collect();
        wanted.push(group_version.clone());
        wanted.sort();
        wanted.dedup();
        let out = self
            .ec2
            .describe_launch_template_versions()
            .launch_template_id(lt)
            .set_versions(Some(wanted.clone()))
            .send()
            .await
            .map_err(|e| {
                AwsError::new("DescribeLaunchTemplateVersions", format!("{lt} versions {wanted:?}"), e)
            })?;
        // By number; `$Latest`/`$Default` (a group set up by hand) by what they resolve to now.
        let versions = out.launch_template_versions();
        let config_of = |version: &str| -> Option<LaunchConfig> {
            let v = match version {
                "$Latest" => versions.iter().max_by_key(|v| v.version_number()),
                "$Default" => versions.iter().find(|v| v.default_version() == Some(true)),
                n => {
                    versions.iter().find(|v| v.version_number().map(|x| x.to_string()).as_deref() == Some(n))
                }
            };
            v.and_then(|v| v.launch_template_data()).map(|d| launch_config(d, &self.device_name))
        };
        let group = config_of(&group_version).ok_or_else(|| {
            AwsError::malformed("DescribeLaunchTemplateVersions", lt, format!("no version {group_version}"))
        })?;
        let instances = instance_versions.iter().map(|v| v.as_deref().and_then(config_of)).collect();
        Ok(GroupConfigs { group, instances })
    }

    async fn refresh_in_progress(&self, name: &str) -> Result<bool, AwsError> {
        let out = self
            .asg
            .describe_instance_refreshes()
            .auto_scaling_group_name(name)
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeInstanceRefreshes", name, e))?;
        Ok(out.instance_refreshes().iter().any(|r| r.status().is_some_and(refresh_running)))
    }

    async fn start_refresh(&self, name: &str) -> Result<String, AwsError> {
        // Replacements first (up to twice the group), every ready instance kept until its replacement is in
        // service (the launch hook: ready), instances already on the group's configuration left alone.
        // The warm-up after a replacement is in service: its catch-up is already over (the launch hook
        // completes on readiness), what is left is the ALB's two 10 s health checks. Unset, AWS would take
        // the group's health-check grace period (ReplicaCatchUpSecs, an hour by default) per replacement.
        let preferences = RefreshPreferences::builder()
            .min_healthy_percentage(100)
            .max_healthy_percentage(200)
            .skip_matching(true)
            .instance_warmup(REFRESH_WARMUP_SECS)
            .build();
        let out = self
            .asg
            .start_instance_refresh()
            .auto_scaling_group_name(name)
            .preferences(preferences)
            .send()
            .await
            .map_err(|e| AwsError::new("StartInstanceRefresh", name, e))?;
        Ok(format!("instance refresh {} of {name} started", out.instance_refresh_id().unwrap_or("(no id)")))
    }
}

/// Seconds an instance refresh waits after a replacement is in service: the ALB's two health checks at 10 s
/// and a margin (`infra/cluster.yaml`, the target groups' `HealthyThresholdCount` and interval).
pub const REFRESH_WARMUP_SECS: i32 = 30;

/// The load balancer's view: this cluster's healthy targets (its own target group), and CloudWatch's
/// `RequestCountPerTarget` of the shared serving target group, where every user request arrives (the cluster's
/// own group receives only header-routed operator requests).
pub struct AlbLoad {
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub cloudwatch: aws_sdk_cloudwatch::Client,
    /// This cluster's target group: its ready replicas.
    pub target_group_arn: String,
    /// The serving target group all clusters' replicas join: the load.
    pub serving_target_group_arn: String,
}

impl AlbLoad {
    /// The metric dimension of the serving group: the ARN's resource part, `targetgroup/<name>/<id>`.
    pub fn dimension(&self) -> String {
        match self.serving_target_group_arn.split_once(":targetgroup/") {
            Some((_, rest)) => format!("targetgroup/{rest}"),
            None => self.serving_target_group_arn.clone(),
        }
    }
}

#[async_trait::async_trait]
impl LoadSource for AlbLoad {
    async fn ready(&self) -> Result<u32, AwsError> {
        let out = self
            .elb
            .describe_target_health()
            .target_group_arn(&self.target_group_arn)
            .send()
            .await
            .map_err(|e| AwsError::new("DescribeTargetHealth", &self.target_group_arn, e))?;
        let healthy = out
            .target_health_descriptions()
            .iter()
            .filter(|d| d.target_health().and_then(|h| h.state()) == Some(&TargetHealthStateEnum::Healthy))
            .count();
        Ok(healthy as u32)
    }

    async fn requests_per_target_per_min(&self, now: i64) -> Result<Option<f64>, AwsError> {
        let dim = Dimension::builder().name("TargetGroup").value(self.dimension()).build();
        let out = self
            .cloudwatch
            .get_metric_statistics()
            .namespace("AWS/ApplicationELB")
            .metric_name("RequestCountPerTarget")
            .dimensions(dim)
            .start_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(now - 600))
            .end_time(aws_sdk_cloudwatch::primitives::DateTime::from_secs(now))
            .period(60)
            .statistics(Statistic::Sum)
            .send()
            .await
            .map_err(|e| {
                AwsError::new("GetMetricStatistics", format!("RequestCountPerTarget {}", self.dimension()), e)
            })?;
        let latest = out
            .datapoints()
            .iter()
            .filter(|d| d.timestamp().is_some())
            .max_by_key(|d| d.timestamp().map(|t| t.secs()));
        Ok(latest.and_then(|d| d.sum()))
    }
}

/// In-memory fleet and load, for handler tests: one group, `replicas`, whose launch configurations are
/// `configs` (none: nothing to roll).
#[derive(Debug, Clone, Default)]
pub struct MemoryFleet {
    pub state: Arc<Mutex<FleetState>>,
    pub ready: u32,
    pub per_target: Option<f64>,
    pub configs: Option<GroupConfigs>,
    pub refreshing: bool,
    /// Groups an instance refresh was started for.
    pub refreshes: Arc<Mutex<Vec<String>>>,
}

impl Default for FleetState {
    fn default() -> Self {
        Self { desired: 2, snapshot_id: None, last_change_at: None }
    }
}

#[async_trait::async_trait]
impl ReplicaFleet for MemoryFleet {
    async fn state(&self) -> Result<FleetState, AwsError> {
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()).clone())
    }

    async fn point_at(&self, snapshot_id: &str) -> Result<String, AwsError> {
        self.state.lock().unwrap_or_else(|e| e.into_inner()).snapshot_id = Some(snapshot_id.into());
        Ok(format!("memory fleet now on {snapshot_id}"))
    }

    async fn set_desired(&self, desired: u32, now: i64) -> Result<(), AwsError> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.desired = desired;
        s.last_change_at = Some(now);
        Ok(())
    }

    fn roll_groups(&self) -> Vec<String> {
        self.configs.iter().map(|_| "replicas".to_string()).collect()
    }

    async fn launch_configs(&self, group: &str) -> Result<GroupConfigs, AwsError> {
        self.configs.clone().ok_or_else(|| AwsError::malformed("launch_configs", group, "no such group"))
    }

    async fn refresh_in_progress(&self, _group: &str) -> Result<bool, AwsError> {
        Ok(self.refreshing)
    }

    async fn start_refresh(&self, group: &str) -> Result<String, AwsError> {
        self.refreshes.lock().unwrap_or_else(|e| e.into_inner()).push(group.to_string());
        Ok(format!("memory refresh of {group}"))
    }
}

#[async_trait::async_trait]
impl LoadSource for MemoryFleet {
    async fn ready(&self) -> Result<u32, AwsError> {
        Ok(self.ready)
    }

    async fn requests_per_target_per_min(&self, _now: i64) -> Result<Option<f64>, AwsError> {
        Ok(self.per_target)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_ec2::types::{InstanceType, LaunchTemplateEbsBlockDevice};

    use super::*;

    fn data(image: &str, snapshot: &str, user_data: &str, size: i32) -> ResponseLaunchTemplateData {
        let ebs = |snapshot: Option<&str>| {
            LaunchTemplateEbsBlockDevice::builder()
                .set_snapshot_id(snapshot.map(String::from))
                .volume_size(size)
                .build()
        };
        ResponseLaunchTemplateData::builder()
            .image_id(image)
            .instance_type(InstanceType::M6iXlarge)
            .user_data(user_data)
            .block_device_mappings(
                LaunchTemplateBlockDeviceMapping::builder().device_name("/dev/xvda").ebs(ebs(None)).build(),
            )
            .block_device_mappings(
                LaunchTemplateBlockDeviceMapping::builder()
                    .device_name("/dev/sdf")
                    .ebs(ebs(Some(snapshot)))
                    .build(),
            )
            .build()
    }

    #[test]
    fn remapping_swaps_only_the_data_snapshot() {
        let ebs = LaunchTemplateEbsBlockDevice::builder()
            .snapshot_id("snap-old")
            .volume_size(500)
            .iops(6000)
            .throughput(500)
            .volume_initialization_rate(300)
            .encrypted(true)
            .build();
        let m = LaunchTemplateBlockDeviceMapping::builder().device_name("/dev/sdf").ebs(ebs).build();
        let r = remap(&m, "/dev/sdf", "snap-new");
        let e = r.ebs().expect("ebs");
        assert_eq!(e.snapshot_id(), Some("snap-new"));
        assert_eq!(
            (e.volume_size(), e.iops(), e.throughput(), e.volume_initialization_rate(), e.encrypted()),
            (Some(500), Some(6000), Some(500), Some(300), Some(true))
        );
        let root = remap(&m, "/dev/xvda", "snap-new");
        assert_eq!(
            root.ebs().and_then(|e| e.snapshot_id()),
            Some("snap-old"),
            "another device keeps its own"
        );
    }

    #[test]
    fn launch_configs_ignore_only_the_data_snapshot() {
        let base = launch_config(&data("ami-1", "snap-1", "#!/bin/bash\nrun v1", 500), "/dev/sdf");
        let cases = [
            ("another snapshot", data("ami-1", "snap-2", "#!/bin/bash\nrun v1", 500), true),
            ("another image", data("ami-2", "snap-1", "#!/bin/bash\nrun v1", 500), false),
            ("other user data", data("ami-1", "snap-1", "#!/bin/bash\nrun v2", 500), false),
            ("other volume size", data("ami-1", "snap-1", "#!/bin/bash\nrun v1", 600), false),
        ];
        for (name, d, same) in cases {
            assert_eq!(launch_config(&d, "/dev/sdf") == base, same, "{name}");
        }
        // The snapshot of another device than the data device counts.
        assert_ne!(
            launch_config(&data("ami-1", "snap-2", "x", 500), "/dev/xvdz"),
            launch_config(&data("ami-1", "snap-1", "x", 500), "/dev/xvdz")
        );
    }
}
