"""Deploy both templates into moto (an in-process AWS emulation): the shared stack, then two clusters on it.

moto's CloudFormation skips the types it does not emulate (MSK and CloudWatch alarms, with a warning): those are
covered by the static tests (test_template.py) only. Everything else is created and inspected here: IAM roles
and policies, security groups, the ALB, listener, rules and target groups, launch templates (with a real
snapshot), Auto Scaling groups, Lambda functions from S3 zips, EventBridge rules and permissions.
"""

import ast
import io
import json
import zipfile
from urllib.parse import unquote
from pathlib import Path

import boto3
import pytest
from cfnlint.decode import decode
from moto import mock_aws

from cfn_rules import violations

INFRA = Path(__file__).resolve().parents[1]
REGION = "us-east-1"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def outputs(cfn, stack):
    s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert s["StackStatus"] == "CREATE_COMPLETE", s.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}


def params(d):
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in d.items()]


def document(p):
    """A policy document as moto returns it: a dict, URL-encoded JSON, or (from CloudFormation) a Python repr."""
    if not isinstance(p, str):
        return p
    try:
        return json.loads(unquote(p))
    except json.JSONDecodeError:
        return ast.literal_eval(p)


def create(cfn, name, template, values, **kw):
    """create_stack, after checking that real CloudFormation would accept `values`: moto skips parameter
    constraints and the template's Rules, so a deploy test could pass with values a real account refuses."""
    decoded, matches = decode(str(INFRA / template))
    assert decoded is not None, matches
    assert violations(decoded, values) == [], f"{name}: CloudFormation would refuse these parameters"
    cfn.create_stack(StackName=name, TemplateBody=(INFRA / template).read_text(), Parameters=params(values), **kw)


@pytest.fixture(scope="module")
def deployed():
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")
                   ["Subnet"]["SubnetId"] for i, z in enumerate("abc")]
        cert = boto3.client("acm", region_name=REGION).request_certificate(DomainName="rpc.example.com")
        cfn = boto3.client("cloudformation", region_name=REGION)
        create(cfn, "ether-cattle-shared", "shared.yaml",
               {"VpcId": vpc, "AlbSubnetIds": ",".join(subnets), "CertificateArn": cert["CertificateArn"],
                "MskSubnetIds": ",".join(subnets)})
        shared = outputs(cfn, "ether-cattle-shared")

        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="artifacts")
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as z:
            z.writestr("bootstrap", "#!/bin/sh\n")
        for f in ("snapshot", "retention-guard", "scaler"):
            s3.put_object(Bucket="artifacts", Key=f"ether-cattle/functions/{f}/bootstrap.zip", Body=buf.getvalue())

        # The snapshot that seeds mainnet-a's replicas (mainnet-b starts empty: its own lineage).
        volume = ec2.create_volume(AvailabilityZone=f"{REGION}a", Size=10)["VolumeId"]
        snapshot = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{
            "ResourceType": "snapshot", "Tags": [{"Key": "ether-cattle:cluster", "Value": "mainnet-a"}]}])["SnapshotId"]

        # mainnet-a: MSK IAM (the default; it needs the cluster's ARN, which moto's skipped MSK cannot give),
        # replicas from a snapshot. mainnet-b: SCRAM (its secret and key), a new network started at a block from
        # a state dump in S3: its own lineage, no snapshot yet.
        kms = boto3.client("kms", region_name=REGION).create_key()["KeyMetadata"]["Arn"]
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="AmazonMSK_ether-cattle", KmsKeyId=kms, SecretString='{"username": "u", "password": "p"}')["ARN"]
        per_cluster = {
            "mainnet-a": {"ListenerRulePriority": "10", "DataVolumeSnapshotId": snapshot,
                          "MskClusterArn": f"arn:aws:kafka:{REGION}:123456789012:cluster/ether-cattle/0123abcd-1"},
            "mainnet-b": {"ListenerRulePriority": "20", "KafkaSaslMechanism": "SCRAM-SHA-512",
                          "KafkaSaslSecretArn": secret, "KafkaSaslSecretKmsKeyArn": kms,
                          "StartBlock": "21000000", "StartStateS3Uri": "s3://artifacts/state-21000000.jsonl"},
        }
        clusters = {}
        for cluster, extra in per_cluster.items():
            create(cfn, f"ether-cattle-{cluster}", "cluster.yaml", {
                "ClusterId": cluster, "Topic": cluster, "KafkaBrokers": "b-1.kafka:9098,b-2.kafka:9098",
                "VpcId": vpc, "SubnetIds": ",".join(subnets), "ListenerArn": shared["ListenerArn"],
                "ServingTargetGroupArn": shared["ServingTargetGroupArn"], "FilterTableArn": shared["FilterTableArn"],
                "AlbSecurityGroupId": shared["AlbSecurityGroupId"],
                "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ether-cattle:abc",
                "ExecutionClientRpcUrl": "http://10.0.1.10:8545", "LambdaCodeBucket": "artifacts", **extra,
            }, Capabilities=["CAPABILITY_IAM"])
            clusters[cluster] = outputs(cfn, f"ether-cattle-{cluster}")
        yield {"shared": shared, "clusters": clusters, "snapshot": snapshot}


def test_two_clusters_on_one_shared_stack(deployed):
    assert set(deployed["clusters"]) == {"mainnet-a", "mainnet-b"}
    for cluster, out in deployed["clusters"].items():
        assert out["ReplicaGroupName"] == f"ether-cattle-{cluster}-replicas"
        assert out["SnapshotSourceGroupName"] == f"ether-cattle-{cluster}-snapshot-source"
        assert out["SnapshotFunctionName"] == f"ether-cattle-{cluster}-snapshot"


def test_deployed_resources(deployed):
    # The fixture's mock is still active (module scope inside `with mock_aws()`).
    asg = boto3.client("autoscaling", region_name=REGION)
    ec2 = boto3.client("ec2", region_name=REGION)
    elb = boto3.client("elbv2", region_name=REGION)
    lam = boto3.client("lambda", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    shared = deployed["shared"]
    a = deployed["clusters"]["mainnet-a"]

    groups = {g["AutoScalingGroupName"]: g for g in asg.describe_auto_scaling_groups()["AutoScalingGroups"]}
    replicas = groups["ether-cattle-mainnet-a-replicas"]
    assert set(replicas["TargetGroupARNs"]) == {shared["ServingTargetGroupArn"], a["ClusterTargetGroupArn"]}
    assert not groups["ether-cattle-mainnet-a-snapshot-source"]["TargetGroupARNs"]
    tags = {t["Key"]: t["Value"] for t in replicas["Tags"]}
    assert tags == {"ether-cattle:cluster": "mainnet-a", "ether-cattle:role": "replica"}

    version = ec2.describe_launch_template_versions(LaunchTemplateId=a["LaunchTemplateId"])["LaunchTemplateVersions"]
    data = version[0]["LaunchTemplateData"]
    sdf = [m for m in data["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"][0]["Ebs"]
    assert sdf["SnapshotId"] == deployed["snapshot"] and sdf["Encrypted"] is True

    tg = elb.describe_target_groups(TargetGroupArns=[a["ClusterTargetGroupArn"]])["TargetGroups"][0]
    assert (tg["HealthCheckPath"], tg["HealthCheckPort"]) == ("/health/ready", "8081")
    rules = elb.describe_rules(ListenerArn=shared["ListenerArn"])["Rules"]
    assert {r["Priority"] for r in rules} >= {"10", "20"}

    env = lam.get_function(FunctionName="ether-cattle-mainnet-a-scaler")["Configuration"]["Environment"]["Variables"]
    assert env["ASG_NAME"] == "ether-cattle-mainnet-a-replicas"
    assert env["LAUNCH_TEMPLATE_ID"] == a["LaunchTemplateId"]
    assert env["TARGET_GROUP_ARN"] == a["ClusterTargetGroupArn"]
    assert env["REPLICAS_NEED_SNAPSHOT"] == "false"

    # The cluster that starts at a block: no replica before its first snapshot (the scaler holds the group at
    # 0, which CloudFormation creates at 0: the deploy does not wait for a first replay), and its instances may
    # read the state dump.
    b_env = lam.get_function(FunctionName="ether-cattle-mainnet-b-scaler")["Configuration"]["Environment"]["Variables"]
    assert b_env["REPLICAS_NEED_SNAPSHOT"] == "true"
    b_replicas = groups["ether-cattle-mainnet-b-replicas"]
    assert (b_replicas["MinSize"], b_replicas["DesiredCapacity"]) == (0, 0)
    iam = boto3.client("iam")
    role = [r for r in iam.list_roles()["Roles"] if r["RoleName"].startswith("ether-cattle-mainnet-b-InstanceRole-")]
    assert len(role) == 1, [r["RoleName"] for r in iam.list_roles()["Roles"]]
    policies = [iam.get_role_policy(RoleName=role[0]["RoleName"], PolicyName=n)["PolicyDocument"]
                for n in iam.list_role_policies(RoleName=role[0]["RoleName"])["PolicyNames"]]
    policies = [document(p) for p in policies]
    statements = [st for p in policies for st in ([p["Statement"]] if isinstance(p["Statement"], dict) else p["Statement"])]
    grants = [st for st in statements if st.get("Sid") == "StartState"]
    assert grants and grants[0]["Resource"] == "arn:aws:s3:::artifacts/state-21000000.jsonl", policies

    schedules = {r["ScheduleExpression"] for r in events.list_rules()["Rules"] if "ScheduleExpression" in r}
    assert {"rate(6 hours)", "rate(15 minutes)", "rate(1 minute)"} <= schedules
