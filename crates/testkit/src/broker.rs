//! Kafka-protocol brokers for tests, on 127.0.0.1, started and stopped by the test itself.

use rdkafka::{mocking::MockCluster, producer::DefaultProducerContext};

/// librdkafka's in-process mock cluster: a real Kafka-protocol server (produce, fetch, ListOffsets,
/// idempotent producers) that other processes reach over TCP, so a replica child process can use it too.
///
/// Its partitions keep about 5 MiB (or 100k batches); beyond that the oldest batches are dropped and the
/// earliest offset moves, which is how the retention tests make a stored offset fall out of the topic.
///
/// It lives as long as this value, in this process; it is not `Send`, so keep it on the test's thread.
pub struct MockBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl MockBroker {
    /// Starts a one-broker cluster and creates `topics` with one partition each.
    pub fn start(topics: &[&str]) -> Result<Self, rdkafka::error::KafkaError> {
        let cluster = MockCluster::new(1)?;
        for topic in topics {
            cluster.create_topic(topic, 1, 1)?;
        }
        Ok(Self { cluster })
    }

    pub fn create_topic(&self, topic: &str) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.create_topic(topic, 1, 1)
    }

    /// Delays every response of the (single) broker by `rtt`: a slow network, to stretch a replay out.
    pub fn set_round_trip_time(&self, rtt: std::time::Duration) -> Result<(), rdkafka::error::KafkaError> {
        self.cluster.broker_round_trip_time(1, rtt)
    }

    /// Takes the broker down (connections refused and closed) or brings it back up.
    pub fn set_down(&self, down: bool) -> Result<(), rdkafka::error::KafkaError> {
        if down {
            self.cluster.broker_down(1)
        } else {
            self.cluster.broker_up(1)
        }
    }

    /// `host:port` list for `bootstrap.servers`.
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }
}
