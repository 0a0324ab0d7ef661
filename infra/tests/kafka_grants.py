"""Kafka ACLs from the kafka-cluster grants of infra/cluster.yaml, created on a broker that enforces them.

tests/kafka_grants.rs runs this against a genuine Apache Kafka broker (OAUTHBEARER with the unsecured
validator, the standard ACL authorizer), then runs each role's real process under its principal: a grant the
template lacks is a denial there, as it would be on MSK with IAM access control.

Each MSK IAM action becomes the Kafka ACL operation AWS documents for it ("IAM access control" in the MSK
developer guide); kafka-cluster:Connect has no ACL (signing in is the connection). Resource ARNs become Kafka
resources: cluster/... the cluster, topic/<cluster>/<uuid>/<name> a topic, group/... a group,
transactional-id/... a transactional id; a trailing * a prefix.

    python3 infra/tests/kafka_grants.py --bootstrap 127.0.0.1:9092 --topic log --cluster-id c1 \
        [--principal-suffix -cut] [--without ReplicaKafkaPolicy:ReplicaGroup:kafka-cluster:DescribeGroup]

prints the ACLs it created, one per line, as JSON.
"""

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_iam_lint  # noqa: E402  (the template's intrinsics rendered with example values)
from test_template import as_list, load  # noqa: E402

# The IAM policy of each role in the template, and the principal its process signs in as here.
PRINCIPALS = {
    "PublisherKafkaPolicy": "publisher",
    "ReplicaKafkaPolicy": "replica",
    "RetentionGuardKafkaPolicy": "retention-guard",
}
# MSK IAM action -> (Kafka resource kind, ACL operation).
OPERATIONS = {
    "kafka-cluster:DescribeCluster": ("cluster", "DESCRIBE"),
    "kafka-cluster:AlterCluster": ("cluster", "ALTER"),
    "kafka-cluster:DescribeClusterDynamicConfiguration": ("cluster", "DESCRIBE_CONFIGS"),
    "kafka-cluster:AlterClusterDynamicConfiguration": ("cluster", "ALTER_CONFIGS"),
    "kafka-cluster:WriteDataIdempotently": ("cluster", "IDEMPOTENT_WRITE"),
    "kafka-cluster:CreateTopic": ("topic", "CREATE"),
    "kafka-cluster:DescribeTopic": ("topic", "DESCRIBE"),
    "kafka-cluster:AlterTopic": ("topic", "ALTER"),
    "kafka-cluster:DeleteTopic": ("topic", "DELETE"),
    "kafka-cluster:DescribeTopicDynamicConfiguration": ("topic", "DESCRIBE_CONFIGS"),
    "kafka-cluster:AlterTopicDynamicConfiguration": ("topic", "ALTER_CONFIGS"),
    "kafka-cluster:ReadData": ("topic", "READ"),
    "kafka-cluster:WriteData": ("topic", "WRITE"),
    "kafka-cluster:DescribeGroup": ("group", "DESCRIBE"),
    "kafka-cluster:AlterGroup": ("group", "READ"),
    "kafka-cluster:DeleteGroup": ("group", "DELETE"),
    "kafka-cluster:DescribeTransactionalId": ("transactional-id", "DESCRIBE"),
    "kafka-cluster:AlterTransactionalId": ("transactional-id", "WRITE"),
}


def resource(arn):
    """(kind, name, pattern) of an MSK resource ARN."""
    path = arn.split(":", 5)[5]
    kind, rest = path.split("/", 1)
    if kind == "cluster":
        return "cluster", "kafka-cluster", "LITERAL"
    name = rest.split("/", 2)[2]  # <cluster name>/<cluster uuid>/<name>
    if name.endswith("*"):
        return kind, name[:-1], "PREFIXED"
    return kind, name, "LITERAL"


def grants(topic, cluster_id, suffix="", without=(), template=None):
    """Every (principal, kind, name, pattern, operation) the template grants, less `without`
    (`Policy:Sid:Action` entries)."""
    test_iam_lint.PARAMETERS.update({"Topic": topic, "ClusterId": cluster_id})
    template = template or load("cluster.yaml")
    out = set()
    for name, principal in PRINCIPALS.items():
        document = test_iam_lint.render(template["Resources"][name]["Properties"]["PolicyDocument"], template)
        for statement in document["Statement"]:
            assert statement["Effect"] == "Allow", statement
            arns = as_list(statement["Resource"])
            for action in as_list(statement["Action"]):
                if action == "kafka-cluster:Connect" or f"{name}:{statement['Sid']}:{action}" in without:
                    continue
                kind, operation = OPERATIONS[action]
                for arn in arns:
                    rkind, rname, pattern = resource(arn)
                    assert rkind == kind, f"{name} {statement['Sid']}: {action} on {arn}"
                    out.add((f"User:{principal}{suffix}", kind, rname, pattern, operation))
    return sorted(out)


def create(bootstrap, acls):
    from confluent_kafka.admin import (  # scripts/setup.sh installs it
        AclBinding, AclOperation, AclPermissionType, AdminClient, ResourcePatternType, ResourceType)

    kinds = {"cluster": ResourceType.BROKER, "topic": ResourceType.TOPIC, "group": ResourceType.GROUP,
             "transactional-id": ResourceType.TRANSACTIONAL_ID}
    bindings = [
        AclBinding(kinds[kind], name, ResourcePatternType[pattern], principal, "*", AclOperation[operation],
                   AclPermissionType.ALLOW)
        for principal, kind, name, pattern, operation in acls
    ]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_acls(bindings, request_timeout=60).values():
        future.result()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bootstrap", required=True, help="a listener whose clients are super users")
    p.add_argument("--topic", required=True)
    p.add_argument("--cluster-id", required=True)
    p.add_argument("--principal-suffix", default="")
    p.add_argument("--without", action="append", default=[], help="Policy:Sid:Action to leave out")
    a = p.parse_args()
    template = load("cluster.yaml")
    acls = grants(a.topic, a.cluster_id, a.principal_suffix, set(a.without), template)
    known = {f"{n}:{s}:{x}" for n, s, x in statements(template)}
    missing = [w for w in a.without if w not in known]
    if missing:
        sys.exit(f"--without names no grant of the template: {missing}")
    create(a.bootstrap, acls)
    for acl in acls:
        print(json.dumps(acl))


def statements(template=None):
    """(Policy, Sid, Action) of every kafka-cluster grant."""
    template = template or load("cluster.yaml")
    for name in PRINCIPALS:
        for s in template["Resources"][name]["Properties"]["PolicyDocument"]["Statement"]:
            for action in as_list(s["Action"]):
                yield name, s["Sid"], action


if __name__ == "__main__":
    main()
