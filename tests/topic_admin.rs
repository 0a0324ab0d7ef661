//! The runbook's topic commands (`docs/operations.md`) as written, with the real `ether-cattle` binary against
//! a genuine Apache Kafka broker: create a cluster's topics, change the log topic's retention without losing its
//! other settings, and delete a retired cluster's topics (twice: clean-up may run again).

use std::process::{Command, Output};

use ec_testkit::KafkaBroker;

fn ether_cattle(brokers: &str, args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_ether-cattle"))
        .args(args)
        .env("EC_KAFKA_BROKERS", brokers)
        .output()
        .expect("run ether-cattle");
    assert!(
        out.status.success(),
        "ether-cattle {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn stdout_lines(out: &Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stdout).lines().map(str::to_string).collect()
}

#[test]
fn topics_are_created_altered_and_deleted_with_the_binary() {
    let broker = KafkaBroker::start().expect("Apache Kafka broker (see docs/testing.md)");
    let brokers = broker.bootstrap_servers();

    let created = ether_cattle(
        &brokers,
        &[
            "create-topics",
            "--topic",
            "mainnet-a",
            "--config",
            "retention.ms=315360000000",
            "--config",
            "min.insync.replicas=1",
        ],
    );
    assert_eq!(stdout_lines(&created), ["topic mainnet-a ready", "topic mainnet-a-tx ready"]);

    // 1.4: lower the retention to the operating value; min.insync.replicas stays.
    let altered = stdout_lines(&ether_cattle(
        &brokers,
        &["alter-topic", "--topic", "mainnet-a", "--config", "retention.ms=604800000"],
    ));
    for want in ["mainnet-a: retention.ms=604800000", "mainnet-a: min.insync.replicas=1"] {
        assert!(altered.iter().any(|l| l == want), "{want} not in {altered:?}");
    }
    // A second change reads the first back from the broker.
    let again = stdout_lines(&ether_cattle(
        &brokers,
        &["alter-topic", "--topic", "mainnet-a", "--config", "max.message.bytes=8388608"],
    ));
    for want in [
        "mainnet-a: retention.ms=604800000",
        "mainnet-a: min.insync.replicas=1",
        "mainnet-a: max.message.bytes=8388608",
    ] {
        assert!(again.iter().any(|l| l == want), "{want} not in {again:?}");
    }

    // 4: a retired cluster's topics go; running it again is not an error.
    for _ in 0..2 {
        let deleted = ether_cattle(&brokers, &["delete-topics", "--topic", "mainnet-a"]);
        assert_eq!(stdout_lines(&deleted), ["topics mainnet-a and mainnet-a-tx deleted"]);
    }
}
