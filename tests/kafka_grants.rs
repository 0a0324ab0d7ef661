//! The Kafka grants of `infra/cluster.yaml` against a broker that enforces them (issue 27, item 2): a genuine
//! Apache Kafka broker signing clients in over SASL/OAUTHBEARER (its unsecured validator: each client's
//! principal is its token's subject) with the standard ACL authorizer, and ACLs generated from each role's
//! `kafka-cluster:*` statements (`infra/tests/kafka_grants.py`). Each role's real process runs under its
//! principal, and every one of them asks for watermarks before it polls: the admin command, the active and the
//! standby publisher (with its transaction relay), a replica replaying and relaying a transaction, and the
//! retention guard. A grant missing from the template is a denial here, as on MSK with IAM access control.

mod harness;

use std::{
    path::PathBuf,
    process::{Command, Output},
    time::Duration,
};

use ec_retention_guard::sources::{KafkaAdmin, Partition, RetentionSource};
use ec_testkit::KafkaBroker;
use harness::{chain::*, cluster::published_head, *};
use serde_json::json;

/// Creates the ACLs the template grants, for principals named `<role><suffix>`, less `without`
/// (`Policy:Sid:Action`).
fn grant(broker: &KafkaBroker, suffix: &str, without: &[&str]) {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../infra/tests/kafka_grants.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script).args([
        "--bootstrap",
        &broker.bootstrap_servers(),
        "--topic",
        "log",
        "--cluster-id",
        CLUSTER,
    ]);
    cmd.arg(format!("--principal-suffix={suffix}"));
    for w in without {
        cmd.args(["--without", w]);
    }
    let out = cmd.output().expect("python3 runs (scripts/setup.sh installs confluent-kafka)");
    assert!(out.status.success(), "kafka_grants.py failed:\n{}", output_text(&out));
}

/// The flags that sign a process in as `principal` over SASL/OAUTHBEARER (its `--brokers` names the
/// broker's OAUTHBEARER listener).
fn signed_in(cmd: &mut Command, principal: &str) {
    cmd.args(["--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-mechanism", "OAUTHBEARER"])
        .args(["--kafka-oauth-unsecured-principal", principal]);
}

fn publisher(client: &Upstream, sasl: &str, principal: &str, extra: &[&str]) -> Command {
    let mut cmd = publisher_cmd(sasl, &client.http_url(), client.genesis());
    cmd.args(["--heartbeat-interval-ms", "300", "--poll-interval-ms", "100", "--takeover-after-secs", "3"])
        .args(extra)
        .env("RUST_LOG", "info,rdkafka=warn");
    signed_in(&mut cmd, principal);
    cmd
}

#[test]
fn every_role_works_with_exactly_the_template_grants() {
    let (broker, sasl) = KafkaBroker::start_with_acls().expect("Apache Kafka broker (see docs/testing.md)");
    grant(&broker, "", &[]);
    let tmp = tempdir();
    let client = Upstream::anvil(&[]);

    // The runbook's topic creation runs in the publisher's container, under its role.
    let mut create = Command::new(bin());
    create.args(["create-topics", "--topic", "log", "--brokers", &sasl]);
    signed_in(&mut create, "publisher");
    let out = create.output().expect("create-topics runs");
    assert!(
        out.status.success(),
        "create-topics as the publisher:\n{}\nbroker:\n{}",
        output_text(&out),
        broker.log()
    );

    // The active publisher: registers its transactional id, reads the tail, writes, relays the tx topic.
    let _active = spawn_logged(publisher(&client, &sasl, "publisher", &[]), &tmp.path().join("active.log"));
    let log_of =
        |name: &str| std::fs::read_to_string(tmp.path().join(format!("{name}.log"))).unwrap_or_default();
    client.transfers(DEV[1], 0xa00, 2);
    wait_for("the publisher to write the client's head", Duration::from_secs(90), || {
        published_head(&read_log(&broker.bootstrap_servers(), "log")) == Some(client.head())
    });
    // A standby: reads the log's end and waits behind the active one.
    let mut standby =
        spawn_logged(publisher(&client, &sasl, "publisher", &["--standby"]), &tmp.path().join("standby.log"));
    wait_for("the standby to wait", Duration::from_secs(30), || {
        log_of("standby").contains("waiting for the active publisher")
    });

    // A replica replays the log (watermarks first), then one follows it and relays a transaction.
    let mut replay = replica_cmd(&tmp.path().join("replay"), &sasl, "log");
    signed_in(&mut replay, "replica");
    let out = replay.output().expect("replica runs");
    assert!(out.status.success(), "replica as the replica role:\n{}", output_text(&out));
    let port = free_port();
    let mut follow = replica_follow_cmd(&tmp.path().join("follow"), &sasl, "log");
    follow.args(["--rpc-addr", &format!("127.0.0.1:{port}")]);
    signed_in(&mut follow, "replica");
    let _follow = spawn_logged(follow, &tmp.path().join("replica.log"));
    wait_rpc_head(port, client.head().0);
    let raw = client.sign(json!({"from": DEV[3], "to": "0x000000000000000000000000000000000000beef", "value": "0x5", "gas": "0x5208"}), None);
    let hash = alloy_primitives::keccak256(alloy_primitives::hex::decode(&raw).expect("hex"));
    let sent = rpc_call(port, "eth_sendRawTransaction", json!([raw]));
    assert_eq!(sent["result"], json!(hash), "the replica accepts the transaction: {sent}");
    wait_for("the relayed transaction to be mined", Duration::from_secs(60), || {
        !client.receipt(hash).is_null()
    });

    // The retention guard (in this process, as the Lambda runs it).
    ec_kafka::unsecured::UnsecuredJwt::install("retention-guard");
    let guard = KafkaAdmin {
        config: ec_kafka::KafkaConfig {
            security_protocol: Some("SASL_PLAINTEXT".into()),
            sasl_mechanism: Some("OAUTHBEARER".into()),
            ..ec_kafka::KafkaConfig::plaintext(&sasl)
        },
    };
    runtime().block_on(async {
        let retention = guard.topic_retention("log").await.expect("the guard reads the log's retention");
        let state = guard.state("log").await.expect("the guard reads the partition");
        assert!(state.high > 0 && state.oldest_record_ms.is_some(), "{state:?} {retention:?}");
    });

    assert!(standby.0.try_wait().ok().flatten().is_none(), "the standby exited:\n{}", log_of("standby"));
    for name in ["active", "standby", "replica"] {
        let log = log_of(name).to_lowercase();
        assert!(!log.contains("authorization failed") && !log.contains("not authorized"), "{name}:\n{log}");
    }
}

/// The same replica under principals granted all but one statement of the template: its group's
/// DescribeGroup (librdkafka looks the coordinator up even for an assign-only consumer). It fails, naming
/// the denial.
#[test]
fn a_grant_removed_from_the_template_is_a_denial() {
    let (broker, sasl) = KafkaBroker::start_with_acls().expect("Apache Kafka broker (see docs/testing.md)");
    grant(&broker, "-cut", &["ReplicaKafkaPolicy:ReplicaGroup:kafka-cluster:DescribeGroup"]);
    let client = Upstream::anvil(&[]);
    let tmp = tempdir();
    let mut create = Command::new(bin());
    create.args(["create-topics", "--topic", "log", "--brokers", &sasl]);
    signed_in(&mut create, "publisher-cut");
    assert!(create.output().expect("runs").status.success());
    let _active =
        spawn_logged(publisher(&client, &sasl, "publisher-cut", &[]), &tmp.path().join("active.log"));
    wait_for("the genesis record", Duration::from_secs(90), || {
        published_head(&read_log(&broker.bootstrap_servers(), "log")).is_some()
    });
    let mut replay = replica_cmd(&tmp.path().join("replay"), &sasl, "log");
    signed_in(&mut replay, "replica-cut");
    let out = run_with_timeout(replay, Duration::from_secs(90));
    assert!(
        !out.status.success(),
        "a replica without its group's DescribeGroup must fail:\n{}",
        output_text(&out)
    );
    let said = output_text(&out).to_lowercase();
    assert!(said.contains("group authorization failed"), "the failure names the group's denial:\n{said}");
}

/// Runs `cmd`, killed after `limit` if it has not exited by then.
fn run_with_timeout(mut cmd: Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawns");
    let deadline = std::time::Instant::now() + limit;
    while child.try_wait().ok().flatten().is_none() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    child.wait_with_output().expect("waits")
}
