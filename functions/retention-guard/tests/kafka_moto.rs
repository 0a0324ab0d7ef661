//! The retention guard against real services: the Kafka side against an Apache Kafka broker started here (topic
//! configuration over `DescribeConfigs`, watermarks, the oldest record), snapshots and metrics against a
//! moto server with the real AWS SDK clients. The MSK API calls go through the `ClusterRetention` test double:
//! moto's answers to them do not parse (DescribeCluster) or do not exist (DescribeConfigurationRevision).

use std::time::Duration;

use ec_functions::{testing::tagged_snapshot, Ec2, Env, Publisher};
use ec_kafka::KafkaConfig;
use ec_retention_guard::{
    handler::{run, Deps},
    retention::{Limit, Retention, Status, UNLIMITED_MARGIN_SECS},
    sources::{broker_retention, ClusterRetention, Fixed, KafkaAdmin, Msk, RetentionSource},
};
use ec_testkit::{KafkaBroker, MotoServer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::json;

const CLUSTER: &str = "c1";

fn produce(brokers: &str, topic: &str, n: usize) {
    let producer: BaseProducer = KafkaConfig::plaintext(brokers).client_config().create().expect("producer");
    for i in 0..n {
        let payload = format!("record {i}");
        producer.send(BaseRecord::<(), _>::to(topic).payload(&payload)).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// `n` records stamped `age_secs` in the past (CreateTime set by the producer, as a publisher's records
/// are stamped when it writes them).
fn produce_aged(brokers: &str, topic: &str, n: usize, age_secs: i64) {
    let producer: BaseProducer = KafkaConfig::plaintext(brokers).client_config().create().expect("producer");
    let ts = (ec_functions::unix_now() - age_secs) * 1000;
    for i in 0..n {
        let payload = format!("aged record {i}");
        producer.send(BaseRecord::<(), _>::to(topic).payload(&payload).timestamp(ts)).expect("send");
        producer.poll(Duration::ZERO);
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn env(brokers: &str, topic: &str) -> Env {
    Env::from_pairs([("CLUSTER_ID", CLUSTER), ("TOPIC", topic), ("KAFKA_BROKERS", brokers)])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_guard_on_kafka_and_moto() {
    let broker = KafkaBroker::start().expect("Apache Kafka broker (see docs/testing.md)");
    let brokers = broker.bootstrap_servers();
    let moto = MotoServer::start().expect("moto server must start (scripts/setup.sh installs it)");
    let sdk = ec_functions::emulator_sdk_config(&moto.endpoint()).await;
    let ec2 = aws_sdk_ec2::Client::new(&sdk);
    let cw = aws_sdk_cloudwatch::Client::new(&sdk);
    let scheduled = json!({"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}});

    // A topic with a 6 s retention and 50 records; the newest snapshot is at offset 20.
    broker.create_topic("short", &["cleanup.policy=delete", "retention.ms=6000"]).expect("topic");
    produce(&brokers, "short", 50);
    tagged_snapshot(&ec2, CLUSTER, "short", 20).await;

    // Fresh: the topic's own retention, read over the Kafka protocol; 6 s left is under the allowance.
    let lambda = ec_retention_guard::Lambda::new(&env(&brokers, "short"), &sdk).expect("config");
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    eprintln!("fresh: {r:#}");
    assert_eq!(r["status"], "warning", "{r:#}");
    assert_eq!(r["retention"]["ms"], json!({"Value": 6000}));
    assert_eq!(r["partition"]["earliest"], 0);
    assert_eq!(r["partition"]["high"], 50);
    assert!(r["partition"]["oldest_record_ms"].as_i64().is_some());
    let margin = r["margin_secs"].as_i64().expect("margin");
    assert!((1..=6).contains(&margin), "margin {margin}");
    assert_eq!(ec_functions::testing::metric_max(&cw, "RetentionStatus", CLUSTER).await, Some(1.0));

    // Retention deletes the records once they are 6 s old (the broker checks every second): the snapshot's
    // next offset is gone, the partition is empty at 50..50.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let r = loop {
        let r = lambda.handle(scheduled.clone()).await.expect("run");
        if r["partition"]["earliest"].as_i64() == Some(50) {
            break r;
        }
        assert!(std::time::Instant::now() < deadline, "retention did not delete the records in 60 s: {r:#}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    eprintln!("emptied: {r:#}");
    assert_eq!(r["status"], "critical", "{r:#}");
    assert_eq!(r["partition"]["high"].as_i64(), Some(50), "{r:#}");
    produce(&brokers, "short", 5);
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    eprintln!("after the gap: {r:#}");
    assert_eq!(r["status"], "critical", "{r:#}");
    assert_eq!((r["partition"]["earliest"].as_i64(), r["partition"]["high"].as_i64()), (Some(50), Some(55)));
    assert_eq!(r["margin_secs"], 0);
    assert_eq!(ec_functions::testing::metric_max(&cw, "RetentionStatus", CLUSTER).await, Some(2.0));

    // Unlimited retention on another cluster's topic: ok, and the unlimited margin published.
    broker.create_topic("forever", &["retention.ms=-1"]).expect("topic");
    produce(&brokers, "forever", 3);
    let kafka = KafkaAdmin { config: KafkaConfig::plaintext(&brokers) };
    let forever = kafka.topic_retention("forever").await.expect("DescribeConfigs");
    assert_eq!(forever.ms, Limit::Unlimited, "{forever:?}");

    // MSK fallback when the topic's configuration cannot be read: the real snapshot listing (moto), the real
    // partition (Kafka), the cluster configuration from the test double, metrics to moto.
    let publisher = Publisher::cloudwatch("EtherCattle", "c2", cw.clone());
    let denied: Fixed<Retention> = Fixed(Err("DescribeConfigs: TOPIC_AUTHORIZATION_FAILED".into()));
    let msk = Fixed(Ok(broker_retention("log.retention.hours=48\n", "MSK configuration (double)".into())));
    let cfg = ec_retention_guard::Config::from_env(&Env::from_pairs([
        ("CLUSTER_ID", "c2"),
        ("TOPIC", "forever"),
        ("KAFKA_BROKERS", brokers.as_str()),
        ("MSK_CLUSTER_ARN", "arn:aws:kafka:us-east-1:123456789012:cluster/c2/x"),
    ]))
    .expect("config");
    let ec2_catalog = Ec2(ec2.clone());
    // c2's snapshot: a fresh one of "forever" at offset 2.
    tagged_snapshot(&ec2, "c2", "forever", 2).await;
    let deps =
        Deps { snapshots: &ec2_catalog, topic: &denied, msk: &msk, partition: &kafka, metrics: &publisher };
    let report = run(&cfg, &deps, ec_functions::unix_now()).await.expect("run");
    assert_eq!(report.retention.source, "MSK configuration (double)");
    assert_eq!(report.assessment.status, Status::Ok, "{report:?}");
    let m = report.assessment.margin_secs.expect("margin");
    assert!((48 * 3600 - 5..=48 * 3600).contains(&m), "{m}");
    assert!(report.problems.iter().any(|p| p.contains("TOPIC_AUTHORIZATION_FAILED")));

    // The topic's own unlimited retention: ok, unlimited margin published.
    let deps =
        Deps { snapshots: &ec2_catalog, topic: &kafka, msk: &msk, partition: &kafka, metrics: &publisher };
    let report = run(&cfg, &deps, ec_functions::unix_now()).await.expect("run");
    assert_eq!((report.assessment.status, report.assessment.margin_secs), (Status::Ok, None), "{report:?}");
    let published = ec_functions::testing::metric_max(&cw, "RetentionMarginSeconds", "c2").await;
    assert_eq!(published, Some(UNLIMITED_MARGIN_SECS as f64));
    assert!(report.partition.is_some_and(|p| p.earliest == 0 && p.high == 3));

    // A stuck snapshot source: its snapshot is minutes old, but the record it resumes at was written 6.5 days
    // ago in a 7-day topic. Measured from the snapshot's creation this would look like 7 days of margin; from
    // the record it is half a day, under the one-day allowance: a warning while there is still time to act,
    // not critical.
    broker.create_topic("stuck", &[&format!("retention.ms={}", 7 * 86_400_000)]).expect("topic");
    produce_aged(&brokers, "stuck", 10, 6 * 86_400 + 43_200);
    produce(&brokers, "stuck", 10);
    tagged_snapshot(&ec2, "c3", "stuck", 5).await;
    let cfg = ec_retention_guard::Config::from_env(&Env::from_pairs([
        ("CLUSTER_ID", "c3"),
        ("TOPIC", "stuck"),
        ("KAFKA_BROKERS", brokers.as_str()),
    ]))
    .expect("config");
    let publisher = Publisher::cloudwatch("EtherCattle", "c3", cw.clone());
    let deps =
        Deps { snapshots: &ec2_catalog, topic: &kafka, msk: &msk, partition: &kafka, metrics: &publisher };
    let report = run(&cfg, &deps, ec_functions::unix_now()).await.expect("run");
    eprintln!("stuck source: {report:?}");
    assert_eq!(report.assessment.status, Status::Warning, "{report:?}");
    let m = report.assessment.margin_secs.expect("margin");
    assert!((43_200 - 60..=43_200).contains(&m), "margin {m}");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(ec_functions::testing::metric_max(&cw, "RetentionStatus", "c3").await, Some(1.0));
    let age =
        ec_functions::testing::metric_max(&cw, "SnapshotAgeSeconds", "c3").await.expect("age published");
    assert!(age < 600.0, "the snapshot itself is fresh: {age}");

    // SCRAM credentials from the secret the instances read (Secrets Manager in moto), read once per container.
    let secrets = aws_sdk_secretsmanager::Client::new(&sdk);
    let secret = secrets
        .create_secret()
        .name("AmazonMSK_ether-cattle")
        .secret_string(r#"{"username":"guard","password":"s3cret"}"#)
        .send()
        .await
        .expect("CreateSecret");
    let arn = secret.arn().expect("secret arn").to_string();
    let with_secret = |arn: &str| {
        Env::from_pairs([
            ("CLUSTER_ID", CLUSTER),
            ("TOPIC", "short"),
            ("KAFKA_BROKERS", brokers.as_str()),
            ("KAFKA_SASL_SECRET_ARN", arn),
        ])
    };
    let lambda = ec_retention_guard::Lambda::new(&with_secret(&arn), &sdk).expect("config");
    let kafka = lambda.kafka_config().await.expect("secret read");
    assert_eq!(
        (kafka.sasl_mechanism.as_deref(), kafka.sasl_username.as_deref(), kafka.sasl_password.as_deref()),
        (Some("SCRAM-SHA-512"), Some("guard"), Some("s3cret"))
    );
    // A secret that cannot be read: the run still publishes a status, and says why Kafka was not authenticated.
    let missing = arn.replace("AmazonMSK_ether-cattle", "AmazonMSK_missing");
    let lambda = ec_retention_guard::Lambda::new(&with_secret(&missing), &sdk).expect("config");
    let r = lambda.handle(scheduled.clone()).await.expect("run");
    let first = r["problems"][0].as_str().unwrap_or_default();
    assert!(first.contains("GetSecretValue") && first.contains("AmazonMSK_missing"), "{r:#}");
    assert!(r["status"].is_string(), "{r:#}");

    // The real MSK adapter against moto: moto's DescribeCluster answer has a creation time without a zone
    // (and a placeholder configuration ARN), which the SDK rejects; what matters here is that the failure
    // names the call and the cluster, as the fallback's problems report it.
    let kafka_api = aws_sdk_kafka::Client::new(&sdk);
    let created = kafka_api
        .create_cluster()
        .cluster_name("c2")
        .kafka_version("3.6.0")
        .number_of_broker_nodes(3)
        .broker_node_group_info(
            aws_sdk_kafka::types::BrokerNodeGroupInfo::builder()
                .instance_type("kafka.m5.large")
                .client_subnets("subnet-1")
                .build(),
        )
        .send()
        .await
        .expect("CreateCluster");
    let arn = created.cluster_arn().expect("arn");
    let err = Msk(kafka_api).cluster_retention(arn).await.expect_err("moto's DescribeCluster does not parse");
    assert!(err.to_string().contains(&format!("AWS DescribeCluster on {arn} failed")), "{err}");
}
