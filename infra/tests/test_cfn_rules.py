"""The parameter check the deploy test relies on (cfn_rules.violations) refuses what CloudFormation refuses."""

from pathlib import Path

import pytest
from cfnlint.decode import decode

from cfn_rules import violations

INFRA = Path(__file__).resolve().parents[1]

GOOD = {
    "ClusterId": "mainnet-a", "Topic": "mainnet-a", "KafkaBrokers": "b-1:9098", "VpcId": "vpc-1",
    "SubnetIds": "subnet-1,subnet-2", "ListenerArn": "arn:l", "ServingTargetGroupArn": "arn:t",
    "AlbSecurityGroupId": "sg-1", "ListenerRulePriority": "10", "ImageUri": "r/ec:1",
    "ExecutionClientRpcUrl": "http://client:8545", "LambdaCodeBucket": "b",
    "MskClusterArn": "arn:aws:kafka:us-east-1:123456789012:cluster/c/abc-1",
}


@pytest.fixture(scope="module")
def cluster():
    t, matches = decode(str(INFRA / "cluster.yaml"))
    assert t is not None, matches
    return t


def test_accepted_values_pass(cluster):
    assert violations(cluster, GOOD) == []
    scram = {**GOOD, "MskClusterArn": "", "KafkaSaslMechanism": "SCRAM-SHA-512", "KafkaSaslSecretArn": "arn:s",
             "KafkaSaslSecretKmsKeyArn": "arn:k", "StartBlock": "100", "StartStateS3Uri": "s3://b/k"}
    assert violations(cluster, scram) == []


@pytest.mark.parametrize("change, refusal", [
    # The values the moto deploy used before this check: the default MSK IAM without the cluster's ARN.
    ({"MskClusterArn": ""}, "AWS_MSK_IAM needs MskClusterArn"),
    ({"MskClusterArn": "", "KafkaSaslMechanism": "SCRAM-SHA-512"}, "SASL_SSL needs KafkaSaslSecretArn"),
    ({"StartStateS3Uri": "s3://b/state.jsonl"}, "name the block too"),
    ({"StartStateS3Uri": "https://b/state.jsonl", "StartBlock": "1"}, "StartStateS3Uri"),
    ({"ClusterId": "Mainnet_A"}, "ClusterId"),
    ({"ReplicaCatchUpSecs": "9000"}, "above 7200"),
    ({"KafkaSecurityProtocol": "PLAINTEXT"}, "KafkaSecurityProtocol"),
    ({"Topic": None}, "Topic: no value and no default"),
])
def test_refused_values_are_refused(cluster, change, refusal):
    values = {k: v for k, v in {**GOOD, **change}.items() if v is not None}
    found = violations(cluster, values)
    assert any(refusal in v for v in found), found
