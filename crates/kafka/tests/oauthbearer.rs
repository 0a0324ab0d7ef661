//! SASL/OAUTHBEARER end to end against a genuine Apache Kafka broker: every client kind of ec-kafka (admin,
//! producer, consumer) gets its token from the process's token source through [`KafkaContext`], as MSK IAM
//! does. The broker validates with Kafka's unsecured JWT validator, so the token here is an unsigned JWT;
//! MSK IAM's token (a presigned SigV4 URL) is checked for shape in `msk_iam`'s unit tests.

use std::{
    error::Error,
    sync::{
        atomic::{AtomicU32, Ordering},
        Arc,
    },
    time::Duration,
};

use ec_kafka::{
    context::{install_token_source, TokenSource},
    unsecured::UnsecuredJwt,
    Fetched, KafkaConfig, LogProducer, PartitionConsumer,
};
use ec_testkit::KafkaBroker;
use rdkafka::client::OAuthToken;

/// Unsigned JWTs (`alg: none`) for one subject ([`UnsecuredJwt`]), counting how often librdkafka asked.
struct UnsecuredJwtCounted {
    inner: UnsecuredJwt,
    asked: AtomicU32,
}

impl TokenSource for UnsecuredJwtCounted {
    fn token(&self) -> Result<OAuthToken, Box<dyn Error>> {
        self.asked.fetch_add(1, Ordering::SeqCst);
        self.inner.token()
    }
}

/// The process's token source, one for every test here (they run at once, and the source is process-wide).
fn installed_source() -> Arc<UnsecuredJwtCounted> {
    static SOURCE: std::sync::OnceLock<Arc<UnsecuredJwtCounted>> = std::sync::OnceLock::new();
    SOURCE
        .get_or_init(|| {
            let source = Arc::new(UnsecuredJwtCounted {
                inner: UnsecuredJwt::new("ether-cattle-test"),
                asked: AtomicU32::new(0),
            });
            install_token_source(source.clone());
            source
        })
        .clone()
}

/// An Apache Kafka broker that takes only OAUTHBEARER sign-ins, a client configuration for it (the token
/// source installed by the caller), and `topic` created through it.
async fn broker_with_topic(topic: &str) -> (KafkaBroker, KafkaConfig) {
    let (broker, sasl) =
        KafkaBroker::start_with_oauthbearer().expect("Apache Kafka broker (see docs/testing.md)");
    let cfg = KafkaConfig {
        security_protocol: Some("SASL_PLAINTEXT".into()),
        sasl_mechanism: Some("OAUTHBEARER".into()),
        ..KafkaConfig::plaintext(&sasl)
    };
    ec_kafka::admin::create_topic(&cfg, topic, None, &[])
        .await
        .unwrap_or_else(|e| panic!("admin over OAUTHBEARER: {e}\nbroker log:\n{}", broker.log()));
    (broker, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_client_authenticates_with_the_installed_token_source() {
    let source = installed_source();
    let (_broker, cfg) = broker_with_topic("oauth").await;
    let producer = LogProducer::new(&cfg, "oauth", 1 << 20).expect("producer");
    let offsets =
        tokio::time::timeout(Duration::from_secs(60), producer.send_frames(0, &[b"frame".to_vec()]))
            .await
            .expect("produce within 60 s")
            .expect("produce over OAUTHBEARER");
    assert_eq!(offsets, vec![0]);

    let consumer = PartitionConsumer::new(&cfg, "oauth").expect("consumer");
    consumer.assign(0).expect("assign at 0");
    let fetched =
        tokio::time::timeout(Duration::from_secs(60), consumer.next()).await.expect("fetch within 60 s");
    match fetched.expect("fetch over OAUTHBEARER") {
        Fetched::Message { offset, payload } => assert_eq!((offset, payload.as_slice()), (0, &b"frame"[..])),
        other => panic!("expected the record, got {other:?}"),
    }
    // Each client asked for its own token.
    assert!(source.asked.load(Ordering::SeqCst) >= 3, "asked {} times", source.asked.load(Ordering::SeqCst));
}

/// A consumer's first call is the high watermark, before any poll (the replica at start-up, the publisher's
/// tail reader, the retention guard): it signs in with the token primed when the consumer was made, instead
/// of waiting for a refresh event nothing polls for yet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_reads_watermarks_before_its_first_poll() {
    installed_source();
    let (broker, cfg) = broker_with_topic("first-call").await;
    let producer = LogProducer::new(&cfg, "first-call", 1 << 20).expect("producer");
    tokio::time::timeout(
        Duration::from_secs(60),
        producer.send_frames(0, &[b"one".to_vec(), b"two".to_vec()]),
    )
    .await
    .expect("produce within 60 s")
    .expect("produce over OAUTHBEARER");
    let consumer = PartitionConsumer::new(&cfg, "first-call").expect("consumer");
    let marks = tokio::task::spawn_blocking(move || consumer.watermarks(Duration::from_secs(20)))
        .await
        .expect("joins")
        .unwrap_or_else(|e| panic!("watermarks before any poll: {e}\nbroker log:\n{}", broker.log()));
    assert_eq!(marks, (0, 2));
}
