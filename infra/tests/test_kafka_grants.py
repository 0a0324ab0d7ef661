"""The template's kafka-cluster grants as Kafka ACLs (kafka_grants.py; tests/kafka_grants.rs runs them on a
broker that enforces them): every action maps to an ACL operation on the resource kind its ARN names."""

from kafka_grants import grants, statements


def test_every_kafka_grant_maps_to_acls():
    acls = grants("log", "c1")
    principals = {a[0] for a in acls}
    assert principals == {"User:publisher", "User:replica", "User:retention-guard"}
    # The publisher's transactions, its tail reader's and relay's groups, the replicas' tx topic writes.
    assert ("User:publisher", "transactional-id", "c1", "LITERAL", "WRITE") in acls
    assert ("User:publisher", "group", "ether-cattle-replica-log", "LITERAL", "DESCRIBE") in acls
    assert ("User:publisher", "group", "ether-cattle-publisher-c1", "LITERAL", "READ") in acls
    assert ("User:replica", "topic", "log-tx", "LITERAL", "WRITE") in acls
    assert ("User:retention-guard", "topic", "log", "LITERAL", "DESCRIBE_CONFIGS") in acls


def test_a_grant_left_out_is_missing_from_the_acls():
    cut = "ReplicaKafkaPolicy:ReplicaGroup:kafka-cluster:DescribeGroup"
    assert cut in {f"{p}:{s}:{a}" for p, s, a in statements()}
    acls = grants("log", "c1", "-cut", {cut})
    assert ("User:replica-cut", "group", "ether-cattle-replica-log", "LITERAL", "DESCRIBE") not in acls
    assert ("User:replica-cut", "topic", "log", "LITERAL", "READ") in acls
