#!/usr/bin/env bash
# Runs one genuine Apache Kafka broker (4.x, KRaft: broker and controller in one process, no ZooKeeper) on
# 127.0.0.1, in the foreground, from the jars scripts/setup.sh resolved from Maven Central. The tests
# (crates/testkit/src/kafka.rs), the local cluster and the image test all start Kafka through this script,
# so there is one broker configuration.
#
#   scripts/kafka-broker.sh DIR PORT CONTROLLER_PORT [key=value ...]
#
# DIR holds the configuration, the data and the logs; it is formatted on first use and reused after, so
# running the script again over the same DIR is a broker restart. Extra `key=value` arguments are server
# properties that override the defaults below (e.g. log.retention.check.interval.ms=500).
set -euo pipefail

if [ "$#" -lt 3 ]; then
  echo "usage: $0 DIR PORT CONTROLLER_PORT [key=value ...]" >&2
  exit 64
fi
DIR="$1" PORT="$2" CPORT="$3"
shift 3

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
LIBS="${KAFKA_LIBS:-$HOME/.cache/kafka/$KAFKA_VERSION/libs}"
JAVA="java"
if [ -n "${JAVA_HOME:-}" ]; then JAVA="$JAVA_HOME/bin/java"; fi
if ! [ -f "$LIBS/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  echo "kafka-broker: no Kafka $KAFKA_VERSION jars in $LIBS (run scripts/setup.sh, or set KAFKA_LIBS)" >&2
  exit 69
fi

mkdir -p "$DIR"
DIR="$(cd "$DIR" && pwd)"
# Written every time, so a restart with other arguments takes them.
{
  echo "process.roles=broker,controller"
  echo "node.id=1"
  echo "controller.quorum.voters=1@127.0.0.1:$CPORT"
  echo "listeners=PLAINTEXT://127.0.0.1:$PORT,CONTROLLER://127.0.0.1:$CPORT"
  echo "advertised.listeners=PLAINTEXT://127.0.0.1:$PORT"
  echo "controller.listener.names=CONTROLLER"
  echo "inter.broker.listener.name=PLAINTEXT"
  echo "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT"
  echo "log.dirs=$DIR/data"
  # One broker: every internal topic with one replica.
  echo "offsets.topic.replication.factor=1"
  echo "transaction.state.log.replication.factor=1"
  echo "transaction.state.log.min.isr=1"
  echo "share.coordinator.state.topic.replication.factor=1"
  echo "share.coordinator.state.topic.min.isr=1"
  echo "group.initial.rebalance.delay.ms=0"
  # Retention is checked every second from the start (defaults: 5 minutes, after a 30 s delay), so a test's
  # short retention.ms really deletes segments while it waits.
  echo "log.retention.check.interval.ms=1000"
  echo "log.initial.task.delay.ms=0"
  echo "log.segment.delete.delay.ms=0"
  # Records up to 8 MiB (the log's chunking keeps frames below 1 MiB by default).
  echo "message.max.bytes=8388608"
  for kv in "$@"; do echo "$kv"; done
} > "$DIR/server.properties"

cat > "$DIR/log4j2.properties" <<'LOG'
status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = warn
rootLogger.appenderRef.out.ref = OUT
logger.server.name = kafka.server.KafkaRaftServer
logger.server.level = info
LOG

JVM_OPTS=(-Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true
  "-Dlog4j2.configurationFile=$DIR/log4j2.properties")
if ! [ -f "$DIR/data/meta.properties" ]; then
  # A fixed cluster id: every broker here is a single-node cluster of its own.
  "$JAVA" "${JVM_OPTS[@]}" -cp "$LIBS/*" kafka.tools.StorageTool format \
    -t ZXRoZXJjYXR0bGVicm9rZQ -c "$DIR/server.properties" >/dev/null
fi
exec "$JAVA" "${JVM_OPTS[@]}" -cp "$LIBS/*" kafka.Kafka "$DIR/server.properties"
