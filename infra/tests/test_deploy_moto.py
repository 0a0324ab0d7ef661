"""Deploy both templates into moto (an in-process AWS emulation): the shared stack, then two clusters on it.

moto's CloudFormation skips the types it does not emulate (MSK and CloudWatch alarms, with a warning): those are
covered by the static tests (test_template.py) only. Everything else is created and inspected here: IAM roles
and policies, security groups, the ALB, listener, rules and target groups, launch templates (with a real
snapshot), Auto Scaling groups, Lambda functions from S3 zips, EventBridge rules and permissions.
"""

import io
import zipfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

INFRA = Path(__file__).resolve().parents[1]
REGION = "us-east-1"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def outputs(cfn, stack):
    s = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    assert s["StackStatus"] == "CREATE_COMPLETE", s.get("StackStatusReason")
    return {o["OutputKey"]: o["OutputValue"] for o in s.get("Outputs", [])}


def params(d):
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in d.items()]


@pytest.fixture(scope="module")
def deployed():
    with mock_aws():
        ec2 = boto3.client("ec2", region_name=REGION)
        vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        subnets = [ec2.create_subnet(VpcId=vpc, CidrBlock=f"10.0.{i}.0/24", AvailabilityZone=f"{REGION}{z}")
                   ["Subnet"]["SubnetId"] for i, z in enumerate("abc")]
        cert = boto3.client("acm", region_name=REGION).request_certificate(DomainName="rpc.example.com")
        cfn = boto3.client("cloudformation", region_name=REGION)
        cfn.create_stack(StackName="ether-cattle-shared", TemplateBody=(INFRA / "shared.yaml").read_text(),
                         Parameters=params({"VpcId": vpc, "AlbSubnetIds": ",".join(subnets),
                                            "CertificateArn": cert["CertificateArn"],
                                            "MskSubnetIds": ",".join(subnets)}))
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

        clusters = {}
        for cluster, priority in (("mainnet-a", "10"), ("mainnet-b", "20")):
            cfn.create_stack(
                StackName=f"ether-cattle-{cluster}", TemplateBody=(INFRA / "cluster.yaml").read_text(),
                Capabilities=["CAPABILITY_IAM"],
                Parameters=params({
                    "ClusterId": cluster, "Topic": cluster, "KafkaBrokers": "b-1.kafka:9094,b-2.kafka:9094",
                    "VpcId": vpc, "SubnetIds": ",".join(subnets), "ListenerArn": shared["ListenerArn"],
                    "ServingTargetGroupArn": shared["ServingTargetGroupArn"], "FilterTableArn": shared["FilterTableArn"],
                    "AlbSecurityGroupId": shared["AlbSecurityGroupId"], "ListenerRulePriority": priority,
                    "ImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ether-cattle:abc",
                    "ExecutionClientRpcUrl": "http://10.0.1.10:8545", "LambdaCodeBucket": "artifacts",
                    "DataVolumeSnapshotId": snapshot if cluster == "mainnet-a" else "",
                }))
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

    schedules = {r["ScheduleExpression"] for r in events.list_rules()["Rules"] if "ScheduleExpression" in r}
    assert {"rate(6 hours)", "rate(15 minutes)", "rate(1 minute)"} <= schedules
