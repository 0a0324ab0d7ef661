//! The snapshot function against a moto server with the real AWS SDK clients: volumes and snapshots are
//! created, tagged, listed, checked with the EBS direct APIs and pruned; metrics land in CloudWatch. The admin
//! endpoint is the real replica's (`ec_replica::health::router`) serving a replica status on 127.0.0.1.
//!
//! moto's EBS direct APIs: `StartSnapshot`/`PutSnapshotBlock`/`CompleteSnapshot` work (the earlier snapshots
//! are seeded that way), but its `ListSnapshotBlocks`/`ListChangedBlocks` answers carry block indexes as
//! strings, which the SDK rejects, and it knows no snapshot made by EC2 `CreateSnapshot`. So the first run uses
//! the `BlockCheck` test double (and checks the real adapter's error); the second runs the whole function.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use aws_sdk_ebs::{primitives::ByteStream, types::ChecksumAlgorithm};
use aws_sdk_ec2::types::{
    LaunchTemplateBlockDeviceMappingRequest, LaunchTemplateEbsBlockDeviceRequest, Placement,
    RequestLaunchTemplateData, ResourceType, Tag, TagSpecification,
};
use ec_functions::{snapshots::tag_filter, tags, Ec2, Env, Publisher, SnapshotPosition};
use ec_snapshot::{
    adapters::{Ebs, Fleet, HttpPosition},
    handler::{run, Config, Deps},
    ports::{BlockCheck, MemoryBlocks},
};
use ec_testkit::MotoServer;
use serde_json::json;

const CLUSTER: &str = "c1";
/// One block of the in-memory EBS double.
const CHANGED: u64 = 512 * 1024;

fn tag_spec(kind: ResourceType, pairs: &[(&str, &str)]) -> TagSpecification {
    let tags = pairs.iter().map(|(k, v)| Tag::builder().key(*k).value(*v).build()).collect();
    TagSpecification::builder().resource_type(kind).set_tags(Some(tags)).build()
}

/// An earlier snapshot made through the EBS direct APIs: tagged with a position, holding `blocks`.
async fn seed_snapshot(
    ebs: &aws_sdk_ebs::Client,
    offset: i64,
    age_secs: i64,
    blocks: &[(i32, u8)],
) -> String {
    let pos = SnapshotPosition::synthetic("blocks", offset, ec_functions::unix_now() - age_secs);
    let tags: Vec<_> = pos
        .to_tags(CLUSTER)
        .into_iter()
        .map(|(k, v)| aws_sdk_ebs::types::Tag::builder().key(k).value(v).build())
        .collect();
    let started =
        ebs.start_snapshot().volume_size(1).set_tags(Some(tags)).send().await.expect("StartSnapshot");
    let id = started.snapshot_id().expect("snapshot id").to_string();
    for (index, fill) in blocks {
        let data = vec![*fill; 512];
        ebs.put_snapshot_block()
            .snapshot_id(&id)
            .block_index(*index)
            .block_data(ByteStream::from(data))
            .data_length(512)
            .checksum("unchecked-by-moto")
            .checksum_algorithm(ChecksumAlgorithm::ChecksumAlgorithmSha256)
            .send()
            .await
            .expect("PutSnapshotBlock");
    }
    ebs.complete_snapshot()
        .snapshot_id(&id)
        .changed_blocks_count(blocks.len() as i32)
        .send()
        .await
        .expect("CompleteSnapshot");
    id
}

/// The replica's own health router, serving a replica at `offset` that is `lag` messages behind the topic and
/// hears its publisher (a record every second).
async fn admin_endpoint(offset: i64, lag: i64) -> String {
    let status = ec_replica::Status {
        caught_up: true,
        position: Some(ec_store::Position { kafka_offset: offset, sequence: offset as u64 }),
        head_block: Some(offset as u64),
        head_hash: Some(alloy_primitives::B256::repeat_byte(0xab)),
        next_offset: offset + 1,
        high_watermark: Some(offset + 1 + lag),
        last_record_at: Some(std::time::Instant::now()),
        ..Default::default()
    };
    let (tx, rx) = tokio::sync::watch::channel(status);
    tokio::spawn(async move {
        while !tx.is_closed() {
            tx.send_modify(|s| s.last_record_at = Some(std::time::Instant::now()));
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    let router = ec_replica::health::router(rx, Default::default(), "blocks".into(), Arc::default(), None);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}/admin/position")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_function_on_moto() {
    let moto = MotoServer::start().expect("moto server must start (scripts/setup.sh installs it)");
    let sdk = ec_functions::emulator_sdk_config(&moto.endpoint()).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let ebs = aws_sdk_ebs::Client::new(&sdk);

    // The snapshot-source replica: an instance with its data volume attached, tagged per the contract.
    let images = ec2.describe_images().send().await.expect("DescribeImages");
    let image = images.images().first().and_then(|i| i.image_id()).expect("moto ships AMIs").to_string();
    let placement = Placement::builder().availability_zone("us-east-1a").build();
    let launched =
        ec2.run_instances().image_id(&image).min_count(1).max_count(1).placement(placement).send().await;
    let instance =
        launched.expect("RunInstances").instances()[0].instance_id().expect("instance id").to_string();
    let source = ec2
        .create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .tag_specifications(tag_spec(
            ResourceType::Volume,
            &[(tags::CLUSTER, CLUSTER), (tags::ROLE, tags::ROLE_SNAPSHOT_SOURCE)],
        ))
        .send()
        .await
        .expect("CreateVolume");
    let source = source.volume_id().expect("volume id").to_string();
    ec2.attach_volume()
        .volume_id(&source)
        .instance_id(&instance)
        .device("/dev/sdf")
        .send()
        .await
        .expect("AttachVolume");
    // Another cluster's source volume must be ignored.
    ec2.create_volume()
        .availability_zone("us-east-1a")
        .size(8)
        .tag_specifications(tag_spec(
            ResourceType::Volume,
            &[(tags::CLUSTER, "other"), (tags::ROLE, tags::ROLE_SNAPSHOT_SOURCE)],
        ))
        .send()
        .await
        .expect("CreateVolume other");

    // Three earlier snapshots; s3 differs from s2 in one block. s1 is named by the cluster's launch template.
    let s1 = seed_snapshot(&ebs, 10, 3 * 86_400, &[(0, 1)]).await;
    let s2 = seed_snapshot(&ebs, 20, 7200, &[(0, 1), (1, 1), (2, 1)]).await;
    let s3 = seed_snapshot(&ebs, 30, 3600, &[(0, 1), (1, 2), (2, 1)]).await;
    let mapping = LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name("/dev/sdf")
        .ebs(LaunchTemplateEbsBlockDeviceRequest::builder().snapshot_id(&s1).build())
        .build();
    let lt = ec2
        .create_launch_template()
        .launch_template_name("c1-replicas")
        .launch_template_data(
            RequestLaunchTemplateData::builder().image_id(&image).block_device_mappings(mapping).build(),
        )
        .tag_specifications(tag_spec(ResourceType::LaunchTemplate, &[(tags::CLUSTER, CLUSTER)]))
        .send()
        .await
        .expect("CreateLaunchTemplate");
    let lt = lt.launch_template().and_then(|l| l.launch_template_id()).expect("template id").to_string();
    // Version 2 (the default and the latest) names s3; s1 is named only by version 1, which the cluster's
    // group still launches from (a version the scaler reused): pinned, so not pruned.
    let s3_mapping = LaunchTemplateBlockDeviceMappingRequest::builder()
        .device_name("/dev/sdf")
        .ebs(LaunchTemplateEbsBlockDeviceRequest::builder().snapshot_id(&s3).build())
        .build();
    ec2.create_launch_template_version()
        .launch_template_id(&lt)
        .launch_template_data(
            RequestLaunchTemplateData::builder().image_id(&image).block_device_mappings(s3_mapping).build(),
        )
        .send()
        .await
        .expect("CreateLaunchTemplateVersion");
    ec2.modify_launch_template()
        .launch_template_id(&lt)
        .default_version("2")
        .send()
        .await
        .expect("ModifyLaunchTemplate");
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("c1-replicas")
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_id(&lt)
                .version("1")
                .build(),
        )
        .min_size(0)
        .max_size(4)
        .desired_capacity(0)
        .availability_zones("us-east-1a")
        .tags(
            aws_sdk_autoscaling::types::Tag::builder()
                .key(tags::CLUSTER)
                .value(CLUSTER)
                .propagate_at_launch(true)
                .build(),
        )
        .send()
        .await
        .expect("CreateAutoScalingGroup");
    let fleet = Fleet { ec2: Ec2(ec2.clone()), groups: autoscaling.clone() };

    // moto answers ListSnapshotBlocks/ListChangedBlocks with string block indexes, which the SDK rejects: the
    // real EBS adapter's error names the call and the snapshot; the run itself uses the in-memory blocks.
    let err = Ebs(ebs.clone()).snapshot_blocks(&s3).await.expect_err("moto's EBS list answers do not parse");
    assert!(err.to_string().contains(&format!("AWS ListSnapshotBlocks on {s3} failed")), "{err}");
    let blocks = MemoryBlocks(BTreeMap::from([
        (s2.clone(), BTreeMap::from([(0, 1), (1, 1), (2, 1)])),
        (s3.clone(), BTreeMap::from([(0, 1), (1, 2), (2, 1)])),
    ]));

    let admin = admin_endpoint(45, 0).await;
    let env = Env::from_pairs([
        ("CLUSTER_ID", CLUSTER),
        ("KEEP_NEWEST", "2"),
        ("KEEP_DAILY_DAYS", "0"),
        ("ADMIN_URL", admin.as_str()),
    ]);
    let cfg = Config::from_env(&env).expect("config");
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let publisher = Publisher::cloudwatch(&cfg.namespace, CLUSTER, cw.clone());
    let position = HttpPosition::new(cfg.admin_port, cfg.admin_url.clone());
    let deps = Deps { ec2: &fleet, ebs: &blocks, position: &position, metrics: &publisher };
    let report = run(&cfg, &deps, ec_functions::unix_now()).await.expect("snapshot run");
    let report = serde_json::to_value(report).expect("json");
    eprintln!("report: {report:#}");
    assert_eq!(report["problems"], json!([]));

    // The new snapshot: of the source volume, with the replica's position in its tags.
    let created = report["created"].as_str().expect("created").to_string();
    let described = ec2.describe_snapshots().snapshot_ids(&created).send().await.expect("DescribeSnapshots");
    let snap = &described.snapshots()[0];
    assert_eq!(snap.volume_id(), Some(source.as_str()));
    let t = ec_functions::snapshots::tag_map(snap.tags());
    let pos = SnapshotPosition::from_tags(&t).expect("position tags");
    assert_eq!(
        (pos.topic.as_str(), pos.kafka_offset, pos.sequence, pos.block_number),
        ("blocks", 45, 45, 45)
    );
    assert_eq!(pos.block_hash, format!("0x{}", "ab".repeat(32)));
    assert_eq!(t[tags::CLUSTER], CLUSTER);

    // Checked: s3 is the newest completed before the run; one block changed since s2.
    assert_eq!(report["newest_completed"], json!(s3));
    assert_eq!(report["newest_blocks"], json!(3));
    assert_eq!(report["changed_bytes"], json!(CHANGED));

    // Pruned: keep the newest two completed (new, s3) and s1 (its launch template version is the group's);
    // s2 goes.
    assert_eq!(report["pruned"], json!([s2]));
    let left = ec2
        .describe_snapshots()
        .owner_ids("self")
        .filters(tag_filter(tags::CLUSTER, CLUSTER))
        .send()
        .await
        .expect("DescribeSnapshots");
    let mut ids: Vec<&str> = left.snapshots().iter().filter_map(|s| s.snapshot_id()).collect();
    ids.sort();
    let mut want = vec![s1.as_str(), s3.as_str(), created.as_str()];
    want.sort();
    assert_eq!(ids, want);

    // Metrics in CloudWatch (PutMetricData for the gauges).
    let listed = cw.list_metrics().namespace("EtherCattle").send().await.expect("ListMetrics");
    let names: Vec<&str> = listed.metrics().iter().filter_map(|m| m.metric_name()).collect();
    for n in ["SnapshotAgeSeconds", "SnapshotChangedBytes"] {
        assert!(names.contains(&n), "{n} not in {names:?}");
    }
    let stats = ec_functions::testing::metric_max(&cw, "SnapshotChangedBytes", CLUSTER).await;
    assert_eq!(stats, Some(CHANGED as f64));
    let age = ec_functions::testing::metric_max(&cw, "SnapshotAgeSeconds", CLUSTER).await.expect("age");
    assert!((3590.0..3700.0).contains(&age), "age {age}");

    // A source 500 messages behind (say, a stuck consumer): no snapshot, and the run fails saying why, with
    // the real HTTP adapter reading the replica's 503 body.
    let lagging = admin_endpoint(46, 500).await;
    let cfg = Config::from_env(&Env::from_pairs([("CLUSTER_ID", CLUSTER), ("ADMIN_URL", lagging.as_str())]))
        .expect("config");
    let position = HttpPosition::new(cfg.admin_port, cfg.admin_url.clone());
    let deps = Deps { ec2: &fleet, ebs: &blocks, position: &position, metrics: &publisher };
    let err = run(&cfg, &deps, ec_functions::unix_now()).await.expect_err("a lagging source is refused");
    assert!(err.to_string().contains("500 messages behind"), "{err:#}");
    let now_there =
        ec2.describe_snapshots().owner_ids("self").filters(tag_filter(tags::CLUSTER, CLUSTER)).send().await;
    assert_eq!(now_there.expect("DescribeSnapshots").snapshots().len(), want.len(), "nothing created");

    // The whole function (all real adapters) with a replica that cannot answer: no snapshot, and the run
    // fails saying why.
    let env = Env::from_pairs([("CLUSTER_ID", CLUSTER), ("ADMIN_URL", "http://127.0.0.1:9/admin/position")]);
    let lambda = ec_snapshot::Lambda::new(&env, &sdk).expect("config");
    let before = left.snapshots().len();
    let scheduled = json!({"version": "0", "id": "1", "detail-type": "Scheduled Event", "source": "aws.events",
        "account": "123456789012", "time": "2026-01-01T00:00:00Z", "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/snapshot"], "detail": {}});
    let err = lambda.handle(scheduled).await.expect_err("no admin endpoint");
    assert!(err.to_string().contains("127.0.0.1:9"), "{err:#}");
    tokio::time::sleep(Duration::from_millis(10)).await;
    let after =
        ec2.describe_snapshots().owner_ids("self").filters(tag_filter(tags::CLUSTER, CLUSTER)).send().await;
    assert_eq!(after.expect("DescribeSnapshots").snapshots().len(), before, "nothing created or pruned");
}
