//! Shared parts of the Ether Cattle Lambda functions (`functions/snapshot`, `functions/retention-guard`,
//! `functions/scaler`): configuration from the environment, the tag names of `docs/aws-contract.md`, the
//! snapshot catalogue, metrics (embedded metric format lines plus CloudWatch `PutMetricData`), JSON logs, AWS
//! client construction and error wrapping, and the EventBridge events the functions react to.
//!
//! Each function is a thin `lambda_runtime` entrypoint over pure policy code and adapters behind traits: an
//! AWS adapter and an in-memory one, so policies and handlers are tested without AWS.

pub mod aws;
pub mod config;
pub mod event;
pub mod logging;
pub mod metrics;
pub mod snapshots;
pub mod tags;

pub use aws::{emulator_sdk_config, load_sdk_config, AwsError};
pub use config::{ConfigError, Env};
pub use event::Trigger;
pub use metrics::{CloudWatchMetrics, MemoryMetrics, Metric, Metrics, Publisher, Unit};
pub use snapshots::{
    newest_completed, Ec2, MemorySnapshots, SnapshotCatalog, SnapshotPosition, SnapshotRecord, SnapshotState,
};

/// Seconds since the Unix epoch, now. Policies take `now` as an argument; only handlers call this.
pub fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The Lambda entrypoint shared by the functions: JSON logs, then `handle` for every event. An `Err` is logged
/// with its whole chain and fails the invocation (so Lambda's `Errors` metric counts it).
pub async fn serve<F, Fut>(handle: F) -> Result<(), lambda_runtime::Error>
where
    F: Fn(serde_json::Value) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<serde_json::Value>>,
{
    let handle = &handle;
    lambda_runtime::run(lambda_runtime::service_fn(
        move |ev: lambda_runtime::LambdaEvent<serde_json::Value>| async move {
            handle(ev.payload).await.map_err(|e| {
                tracing::error!(error = format!("{e:#}"), "run failed");
                lambda_runtime::Error::from(format!("{e:#}"))
            })
        },
    ))
    .await
}

pub mod testing {
    //! Helpers for the functions' integration tests against a CloudWatch emulator.

    use aws_sdk_cloudwatch::{
        primitives::DateTime,
        types::{Dimension, Statistic},
    };

    /// A completed (in moto, at once) snapshot of a fresh volume, tagged as `cluster`'s at `offset` of
    /// `topic`, taken now.
    pub async fn tagged_snapshot(
        ec2: &aws_sdk_ec2::Client,
        cluster: &str,
        topic: &str,
        offset: i64,
    ) -> String {
        use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};
        let vol = ec2.create_volume().availability_zone("us-east-1a").size(8).send().await;
        let vol = vol.expect("CreateVolume").volume_id().expect("volume id").to_string();
        let pos = crate::SnapshotPosition::synthetic(topic, offset, crate::unix_now());
        let t =
            pos.to_tags(cluster).into_iter().map(|(k, v)| Tag::builder().key(k).value(v).build()).collect();
        let spec =
            TagSpecification::builder().resource_type(ResourceType::Snapshot).set_tags(Some(t)).build();
        let s = ec2.create_snapshot().volume_id(vol).tag_specifications(spec).send().await;
        s.expect("CreateSnapshot").snapshot_id().expect("snapshot id").to_string()
    }

    /// The maximum of `name` (namespace `EtherCattle`, dimension `Cluster`) over the last hour.
    pub async fn metric_max(cw: &aws_sdk_cloudwatch::Client, name: &str, cluster: &str) -> Option<f64> {
        let now = crate::unix_now();
        let out = cw
            .get_metric_statistics()
            .namespace("EtherCattle")
            .metric_name(name)
            .dimensions(Dimension::builder().name(crate::tags::DIMENSION_CLUSTER).value(cluster).build())
            .start_time(DateTime::from_secs(now - 3600))
            .end_time(DateTime::from_secs(now + 60))
            .period(3600)
            .statistics(Statistic::Maximum)
            .send()
            .await
            .ok()?;
        out.datapoints().iter().filter_map(|d| d.maximum()).reduce(f64::max)
    }
}
