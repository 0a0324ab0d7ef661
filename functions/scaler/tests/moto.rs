//! The scaler against a moto server with the real AWS SDK clients: the replica and snapshot-source Auto
//! Scaling groups on a launch-template version number (as CloudFormation sets them), the shared serving target
//! group and the cluster's own, `RequestCountPerTarget` in CloudWatch where the ALB writes it. The
//! handler is invoked with the events EventBridge sends: an EBS snapshot notification, a schedule tick within
//! the cool-down, and the load alarm entering ALARM.

use aws_sdk_autoscaling::types::LaunchTemplateSpecification;
use aws_sdk_cloudwatch::{
    primitives::DateTime,
    types::{Dimension, MetricDatum, StandardUnit},
};
use aws_sdk_ec2::types::{
    InstanceType, LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};
use aws_sdk_elasticloadbalancingv2::types::TargetDescription;
use ec_functions::{tags, testing::tagged_snapshot, Env};
use ec_scaler::fleet::SCALED_AT_TAG;
use ec_testkit::MotoServer;
use serde_json::json;

const CLUSTER: &str = "c1";

fn mapping(
    device: &str,
    snapshot: Option<&str>,
    size: Option<i32>,
) -> LaunchTemplateBlockDeviceMappingRequest {
    let ebs = LaunchTemplateEbsBlockDeviceRequest::builder()
        .set_snapshot_id(snapshot.map(String::from))
        .set_volume_size(size)
        .build();
    LaunchTemplateBlockDeviceMappingRequest::builder().device_name(device).ebs(ebs).build()
}

async fn put_load(cw: &aws_sdk_cloudwatch::Client, dimension: &str, per_target: f64, ago: i64) {
    let datum = MetricDatum::builder()
        .metric_name("RequestCountPerTarget")
        .dimensions(Dimension::builder().name("TargetGroup").value(dimension).build())
        .timestamp(DateTime::from_secs(ec_functions::unix_now() - ago))
        .unit(StandardUnit::Count)
        .value(per_target)
        .build();
    cw.put_metric_data()
        .namespace("AWS/ApplicationELB")
        .metric_data(datum)
        .send()
        .await
        .expect("PutMetricData");
}

/// (snapshot on /dev/sdf, root volume size) of the template's default version (the scaler makes each new
/// version the default).
async fn default_mappings(ec2: &aws_sdk_ec2::Client, lt: &str) -> (Option<String>, Option<i32>) {
    let v = ec2.describe_launch_template_versions().launch_template_id(lt).versions("$Default").send().await;
    let v = v.expect("DescribeLaunchTemplateVersions");
    let data = v.launch_template_versions()[0].launch_template_data().expect("data");
    let find = |d: &str| {
        data.block_device_mappings().iter().find(|m| m.device_name() == Some(d)).and_then(|m| m.ebs())
    };
    (
        find("/dev/sdf").and_then(|e| e.snapshot_id()).map(String::from),
        find("/dev/xvda").and_then(|e| e.volume_size()),
    )
}

async fn group(asg: &aws_sdk_autoscaling::Client) -> aws_sdk_autoscaling::types::AutoScalingGroup {
    let g = asg.describe_auto_scaling_groups().auto_scaling_group_names("c1-replicas").send().await;
    g.expect("DescribeAutoScalingGroups").auto_scaling_groups()[0].clone()
}

/// The groups that launch from the template: the replicas and the snapshot source.
const GROUPS: [&str; 2] = ["c1-replicas", "c1-snapshot-source"];

/// Sets both groups on launch-template version `version`, as a stack update does.
async fn move_groups(asg: &aws_sdk_autoscaling::Client, lt: &str, version: &str) {
    for name in GROUPS {
        asg.update_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                LaunchTemplateSpecification::builder().launch_template_id(lt).version(version).build(),
            )
            .send()
            .await
            .expect("UpdateAutoScalingGroup");
    }
}

/// The launch-template version each group launches, in [`GROUPS`] order.
async fn group_versions(asg: &aws_sdk_autoscaling::Client) -> Vec<Option<String>> {
    let mut out = Vec::new();
    for name in GROUPS {
        let g = asg.describe_auto_scaling_groups().auto_scaling_group_names(name).send().await;
        let g = g.expect("DescribeAutoScalingGroups").auto_scaling_groups()[0].clone();
        out.push(g.launch_template().and_then(|t| t.version()).map(String::from));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaler_on_moto() {
    let moto = MotoServer::start().expect("moto server must start (scripts/setup.sh installs it)");
    let sdk = ec_functions::emulator_sdk_config(&moto.endpoint()).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let asg = aws_sdk_autoscaling::Client::new(&sdk);
    let elb = aws_sdk_elasticloadbalancingv2::Client::new(&sdk);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);

    let old = tagged_snapshot(&ec2, CLUSTER, "blocks", 10).await;
    let new = tagged_snapshot(&ec2, CLUSTER, "blocks", 20).await;
    let images = ec2.describe_images().send().await.expect("DescribeImages");
    let image = images.images().first().and_then(|i| i.image_id()).expect("moto ships AMIs").to_string();
    let data = RequestLaunchTemplateData::builder()
        .image_id(&image)
        .block_device_mappings(mapping("/dev/xvda", None, Some(16)))
        .block_device_mappings(mapping("/dev/sdf", Some(&old), None))
        .build();
    let lt = ec2
        .create_launch_template()
        .launch_template_name("c1-replicas")
        .launch_template_data(data)
        .tag_specifications(
            TagSpecification::builder()
                .resource_type(ResourceType::LaunchTemplate)
                .tags(Tag::builder().key(tags::CLUSTER).value(CLUSTER).build())
                .build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let lt = lt.launch_template().and_then(|t| t.launch_template_id()).expect("lt id").to_string();
    // A stack update made version 2 (a bigger root volume) and set it on both groups by number, as
    // CloudFormation's LatestVersionNumber does; the default stays 1 (CloudFormation never moves it).
    let update = RequestLaunchTemplateData::builder()
        .image_id(&image)
        .block_device_mappings(mapping("/dev/xvda", None, Some(24)))
        .block_device_mappings(mapping("/dev/sdf", Some(&old), None))
        .build();
    ec2.create_launch_template_version()
        .launch_template_id(&lt)
        .launch_template_data(update)
        .send()
        .await
        .expect("CreateLaunchTemplateVersion");
    for (name, desired) in [("c1-replicas", 2), ("c1-snapshot-source", 1)] {
        asg.create_auto_scaling_group()
            .auto_scaling_group_name(name)
            .launch_template(
                LaunchTemplateSpecification::builder().launch_template_id(&lt).version("2").build(),
            )
            .min_size(0)
            .max_size(10)
            .desired_capacity(desired)
            .availability_zones("us-east-1a")
            .send()
            .await
            .expect("CreateAutoScalingGroup");
    }

    let vpc = ec2.create_vpc().cidr_block("10.0.0.0/16").send().await.expect("CreateVpc");
    let vpc = vpc.vpc().and_then(|v| v.vpc_id()).expect("vpc id").to_string();
    // The shared serving group (all clusters' replicas, all user traffic) and this cluster's own group.
    let mut groups = Vec::new();
    for name in ["shared-rpc", "c1-rpc"] {
        let tg =
            elb.create_target_group().name(name).protocol("HTTP".into()).port(8545).vpc_id(&vpc).send().await;
        groups.push(
            tg.expect("CreateTargetGroup").target_groups()[0].target_group_arn().expect("arn").to_string(),
        );
    }
    let (serving, tg) = (groups[0].clone(), groups[1].clone());
    let targets: Vec<TargetDescription> = group(&asg)
        .await
        .instances()
        .iter()
        .filter_map(|i| i.instance_id())
        .map(|id| TargetDescription::builder().id(id).port(8545).build())
        .collect();
    assert_eq!(targets.len(), 2);
    for arn in [&serving, &tg] {
        elb.register_targets()
            .target_group_arn(arn)
            .set_targets(Some(targets.clone()))
            .send()
            .await
            .expect("RegisterTargets");
    }

    let env = Env::from_pairs([
        ("CLUSTER_ID", CLUSTER),
        ("ASG_NAME", "c1-replicas"),
        ("SNAPSHOT_SOURCE_ASG_NAME", "c1-snapshot-source"),
        ("LAUNCH_TEMPLATE_ID", lt.as_str()),
        ("TARGET_GROUP_ARN", tg.as_str()),
        ("SERVING_TARGET_GROUP_ARN", serving.as_str()),
        ("MIN_REPLICAS", "1"),
        ("MAX_REPLICAS", "5"),
        ("TARGET_REQUESTS_PER_REPLICA_PER_MIN", "300"),
        ("COOLDOWN_SECS", "600"),
    ]);
    let lambda = ec_scaler::Lambda::new(&env, &sdk).expect("config");
    let dimension = lambda.load.dimension();
    assert!(dimension.starts_with("targetgroup/shared-rpc/"), "{dimension}");
    // Header-routed operator requests on the cluster's own group: not the load.
    let own = format!("targetgroup/{}", tg.split_once(":targetgroup/").expect("tg arn").1);
    put_load(&cw, &own, 9000.0, 120).await;

    // A snapshot completed: new replicas start from it; 2 ready × 600 req/min per serving target at 300 each
    // needs 4.
    put_load(&cw, &dimension, 600.0, 120).await;
    let created = json!({"version": "0", "detail-type": "EBS Snapshot Notification", "source": "aws.ec2",
        "region": "us-east-1", "resources": [format!("arn:aws:ec2::us-east-1:snapshot/{new}")],
        "detail": {"event": "createSnapshot", "result": "succeeded", "cause": "",
            "snapshot_id": format!("arn:aws:ec2::us-east-1:snapshot/{new}"), "source": "arn:aws:ec2::us-east-1:volume/vol-1"}});
    let r = lambda.handle(created).await.expect("run");
    eprintln!("snapshot event: {r:#}");
    assert_eq!(r["snapshot"], json!(new));
    assert_eq!(
        default_mappings(&ec2, &lt).await,
        (Some(new.clone()), Some(24)),
        "data volume swapped; the rest from version 2, the one the group ran, not the old default"
    );
    assert_eq!(
        group_versions(&asg).await,
        [Some("3".into()), Some("3".into())],
        "both moved to the new version"
    );
    // Only the snapshot changed: nothing to roll in either group.
    let rolls: Vec<&str> =
        r["rolls"].as_array().expect("rolls").iter().filter_map(|x| x["decision"]["roll"].as_str()).collect();
    assert_eq!(rolls, ["keep", "keep"], "{r:#}");
    let g = group(&asg).await;
    assert_eq!(g.desired_capacity(), Some(4));
    assert!(g.tags().iter().any(|t| t.key() == Some(SCALED_AT_TAG)), "cool-down start recorded");
    assert_eq!((r["ready"].as_u64(), r["decision"]["change"].as_str()), (Some(2), Some("out")));
    assert_eq!(ec_functions::testing::metric_max(&cw, "DesiredReplicas", CLUSTER).await, Some(4.0));
    assert_eq!(ec_functions::testing::metric_max(&cw, "ReadyReplicas", CLUSTER).await, Some(2.0));

    // More load on the next schedule tick, within the cool-down: no change, and nothing re-pointed.
    put_load(&cw, &dimension, 900.0, 60).await;
    let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    eprintln!("schedule: {r:#}");
    assert_eq!(
        (r["decision"]["desired"].as_u64(), r["decision"]["change"].as_str()),
        (Some(4), Some("none"))
    );
    assert_eq!(r["snapshot_change"], serde_json::Value::Null);
    assert_eq!(group(&asg).await.desired_capacity(), Some(4));

    // A stack update changes the instance type: CloudFormation makes version 4 (moto, unlike EC2, does not
    // merge a new version's data with its source, so version 4 has no data volume mapping: as a stack update
    // with a stale or empty DataVolumeSnapshotId would) and sets it on both groups. The next run moves them to
    // a version derived from 4 with the newest snapshot.
    let update = RequestLaunchTemplateData::builder().instance_type(InstanceType::T3Small).build();
    ec2.create_launch_template_version()
        .launch_template_id(&lt)
        .source_version("3")
        .launch_template_data(update)
        .send()
        .await
        .expect("CreateLaunchTemplateVersion");
    move_groups(&asg, &lt, "4").await;
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    eprintln!("after a stack update: {r:#}");
    let change = r["snapshot_change"].as_str().expect("re-pointed");
    assert!(change.contains("version 5 (from version 4, which c1-replicas ran)"), "{change}");
    // Version 5's source is version 4 (EC2 carries the instance type over from it; moto does not emulate
    // SourceVersion, so only the source's number is checked), with the newest snapshot, on both groups.
    assert_eq!(default_mappings(&ec2, &lt).await.0, Some(new.clone()), "the newest snapshot again");
    assert_eq!(group_versions(&asg).await, [Some("5".into()), Some("5".into())]);
    // A run whose move of the groups did not take (denied, throttled) leaves them on version 4: the next
    // run reuses version 5, made for the same snapshot from the same version, instead of adding one.
    move_groups(&asg, &lt, "4").await;
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    let change = r["snapshot_change"].as_str().expect("re-pointed");
    assert!(change.contains("version 5 (from version 4, which c1-replicas ran)"), "{change}");
    let versions = ec2.describe_launch_template_versions().launch_template_id(&lt).send().await;
    let newest = versions
        .expect("DescribeLaunchTemplateVersions")
        .launch_template_versions()
        .iter()
        .filter_map(|v| v.version_number())
        .max();
    assert_eq!(newest, Some(5), "no version added for a snapshot and source that have one");
    assert_eq!(group_versions(&asg).await, [Some("5".into()), Some("5".into())], "both moved again");
    // moto reports every instance as launched from the group's current version, so it cannot show outdated
    // instances; the roll decision and its wiring are tested on the in-memory fleet (handler tests) and the
    // launch-configuration comparison in fleet.rs.
    assert_eq!(r["rolls"].as_array().map(Vec::len), Some(2), "{r:#}");

    // The load alarm fires: the cool-down is skipped for scaling out, capped at MAX_REPLICAS.
    let alarm = json!({"version": "0", "detail-type": "CloudWatch Alarm State Change", "source": "aws.cloudwatch",
        "detail": {"alarmName": "c1-rpc-load", "state": {"value": "ALARM", "reason": "threshold crossed"},
            "previousState": {"value": "OK"}}});
    let r = lambda.handle(alarm).await.expect("run");
    eprintln!("alarm: {r:#}");
    assert_eq!(group(&asg).await.desired_capacity(), Some(5));
    assert_eq!(r["decision"]["change"], "out");
}
