"""Tests on the CloudFormation templates (scripts/test.sh runs them with pytest).

The templates are loaded with cfn-lint's decoder, which understands the short intrinsic tags (!Ref, !Sub, ...).
"""

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parents[1]
ROOT = INFRA.parent
DOCS = [INFRA / "README.md", ROOT / "docs" / "operations.md"]

# What each function's code calls (functions/README.md); the template grants exactly these.
FUNCTION_ACTIONS = {
    "SnapshotRole": {
        "ec2:DescribeVolumes", "ec2:DescribeInstances", "ec2:CreateSnapshot", "ec2:CreateTags",
        "ec2:DescribeSnapshots", "ec2:DeleteSnapshot", "ec2:DescribeLaunchTemplates",
        "ec2:DescribeLaunchTemplateVersions", "ebs:ListSnapshotBlocks", "ebs:ListChangedBlocks",
        "cloudwatch:PutMetricData",
        # The launch template versions the cluster's groups launch from: never pruned.
        "autoscaling:DescribeAutoScalingGroups",
        # Encrypted snapshots in the EBS direct APIs, through EBS only (kms:ViaService).
        "kms:Decrypt", "kms:DescribeKey",
    },
    "RetentionGuardRole": {
        "ec2:DescribeSnapshots", "kafka:DescribeCluster", "kafka:DescribeConfigurationRevision",
        "cloudwatch:PutMetricData",
        # SCRAM: the secret and its key; MSK IAM: its topic (each only with that mechanism).
        "secretsmanager:GetSecretValue", "kms:Decrypt",
        "kafka-cluster:Connect", "kafka-cluster:DescribeTopic", "kafka-cluster:DescribeTopicDynamicConfiguration",
        "kafka-cluster:ReadData", "kafka-cluster:DescribeGroup",
    },
    "ScalerRole": {
        "ec2:DescribeSnapshots", "ec2:DescribeLaunchTemplateVersions", "ec2:CreateLaunchTemplateVersion",
        "ec2:ModifyLaunchTemplate", "autoscaling:DescribeAutoScalingGroups", "autoscaling:SetDesiredCapacity",
        "autoscaling:CreateOrUpdateTags", "autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh",
        "autoscaling:DescribeInstanceRefreshes", "elasticloadbalancing:DescribeTargetHealth", "cloudwatch:GetMetricStatistics", "cloudwatch:PutMetricData",
        # UpdateAutoScalingGroup onto a launch template: AWS checks the caller may launch it, and tag what it
        # launches (the template's TagSpecifications).
        "ec2:RunInstances", "iam:PassRole", "ec2:CreateTags",
    },
}
# Actions without resource-level permissions in their service: the only ones allowed on "*".
UNSCOPABLE = {
    "ec2:DescribeVolumes", "ec2:DescribeInstances", "ec2:DescribeSnapshots", "ec2:DescribeLaunchTemplates",
    "ec2:DescribeLaunchTemplateVersions",
    "ec2:DescribeTags", "autoscaling:DescribeAutoScalingGroups", "autoscaling:DescribeInstanceRefreshes",
    "elasticloadbalancing:DescribeTargetHealth",
    "cloudwatch:GetMetricStatistics", "cloudwatch:PutMetricData",
}
CLUSTER_TAG = "ether-cattle:cluster"

# docs/aws-contract.md: function environments.
CONTRACT_ENV = {
    "SnapshotFunction": {
        "CLUSTER_ID", "METRICS_NAMESPACE", "ADMIN_PORT", "KEEP_NEWEST", "KEEP_DAILY_DAYS", "MAX_SOURCE_LAG_RECORDS",
    },
    "RetentionGuardFunction": {
        "CLUSTER_ID", "METRICS_NAMESPACE", "TOPIC", "KAFKA_BROKERS", "KAFKA_SECURITY_PROTOCOL", "MSK_CLUSTER_ARN",
        "TROUBLESHOOT_ALLOWANCE_SECS", "KAFKA_SASL_SECRET_ARN", "KAFKA_SASL_MECHANISM",
    },
    "ScalerFunction": {
        "CLUSTER_ID", "METRICS_NAMESPACE", "ASG_NAME", "SNAPSHOT_SOURCE_ASG_NAME", "LAUNCH_TEMPLATE_ID",
        "SERVING_TARGET_GROUP_ARN", "TARGET_GROUP_ARN", "MIN_REPLICAS", "MAX_REPLICAS",
        "TARGET_REQUESTS_PER_REPLICA_PER_MIN", "COOLDOWN_SECS", "DATA_DEVICE_NAME", "REPLICAS_NEED_SNAPSHOT",
    },
}


def load(name):
    template, matches = decode(str(INFRA / name))
    assert not matches, f"{name} does not parse: {matches}"
    return template


@pytest.fixture(scope="module")
def cluster():
    return load("cluster.yaml")


@pytest.fixture(scope="module")
def shared():
    return load("shared.yaml")


def resources(t, kind):
    return {k: v for k, v in t["Resources"].items() if v["Type"] == kind}


def as_list(v):
    return v if isinstance(v, list) else [v]


def statements_of_role(t, role):
    """Every inline statement that applies to `role`: its own Policies and AWS::IAM::Policy resources on it."""
    out = []
    for p in t["Resources"][role]["Properties"].get("Policies", []):
        out += p["PolicyDocument"]["Statement"]
    for p in resources(t, "AWS::IAM::Policy").values():
        if {"Ref": role} in p["Properties"]["Roles"]:
            out += p["Properties"]["PolicyDocument"]["Statement"]
    return out


def ref_name(v):
    return v.get("Ref") if isinstance(v, dict) else None


# ---------------------------------------------------------------- resources


def test_cluster_resources_present(cluster):
    want = {
        "ReplicaLaunchTemplate": "AWS::EC2::LaunchTemplate",
        "ReplicaGroup": "AWS::AutoScaling::AutoScalingGroup",
        "SnapshotSourceGroup": "AWS::AutoScaling::AutoScalingGroup",
        "PublisherGroup": "AWS::AutoScaling::AutoScalingGroup",
        "PublisherLaunchTemplate": "AWS::EC2::LaunchTemplate",
        "ClusterTargetGroup": "AWS::ElasticLoadBalancingV2::TargetGroup",
        "ClusterListenerRule": "AWS::ElasticLoadBalancingV2::ListenerRule",
        "SnapshotFunction": "AWS::Lambda::Function",
        "RetentionGuardFunction": "AWS::Lambda::Function",
        "ScalerFunction": "AWS::Lambda::Function",
        "SnapshotAgeAlarm": "AWS::CloudWatch::Alarm",
        "RetentionWarningAlarm": "AWS::CloudWatch::Alarm",
        "RetentionCriticalAlarm": "AWS::CloudWatch::Alarm",
        "ReadyReplicasLowAlarm": "AWS::CloudWatch::Alarm",
        "ReplicaLagAlarm": "AWS::CloudWatch::Alarm",
        "PublisherHeartbeatAlarm": "AWS::CloudWatch::Alarm",
    }
    for name, kind in want.items():
        assert cluster["Resources"].get(name, {}).get("Type") == kind, name


def test_shared_resources_present(shared):
    kinds = {v["Type"] for v in shared["Resources"].values()}
    for kind in ["AWS::ElasticLoadBalancingV2::LoadBalancer", "AWS::ElasticLoadBalancingV2::Listener",
                 "AWS::ElasticLoadBalancingV2::TargetGroup", "AWS::MSK::Cluster", "AWS::MSK::Configuration"]:
        assert kind in kinds, kind
    assert shared["Resources"]["MskCluster"]["Condition"] == "MakeMsk"


def test_filter_table_shared_with_ttl_and_replicas_granted_only_its_items(cluster, shared):
    table = shared["Resources"]["FilterTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert shared["Outputs"]["FilterTableArn"]["Value"] == {"Fn::GetAtt": ["FilterTable", "Arn"]}
    policy = cluster["Resources"]["ReplicaFilterTablePolicy"]
    assert policy["Condition"] == "HasFilterTable"
    assert policy["Properties"]["Roles"] == [{"Ref": "InstanceRole"}]
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    # Exactly what ec_rpc::filters::dynamodb calls (CreateTable and UpdateTimeToLive are for local clusters).
    assert set(statement["Action"]) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem",
                                        "dynamodb:DeleteItem"}
    assert statement["Resource"] == {"Ref": "FilterTableArn"}
    script = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    assert "-e EC_FILTER_STORE=${FilterStore} -e EC_FILTER_TABLE=${FilterTableName}" in script[0]
    assert script[1]["FilterStore"] == {"Fn::If": ["HasFilterTable", "dynamodb", "off"]}


def test_serving_alarms(shared):
    """Healthy hosts, 5xx and p99 latency of the serving target group, where every user request goes."""
    want = {"ServingHealthyHostsAlarm": ("HealthyHostCount", "LessThanThreshold", {"Ref": "MinHealthyReplicas"}),
            "Serving5xxAlarm": ("HTTPCode_Target_5XX_Count", "GreaterThanThreshold", {"Ref": "Max5xxPerMinute"}),
            "ServingLatencyAlarm": ("TargetResponseTime", "GreaterThanThreshold", {"Ref": "MaxP99LatencySecs"})}
    for name, (metric, comparison, threshold) in want.items():
        p = shared["Resources"][name]["Properties"]
        assert (p["Namespace"], p["MetricName"]) == ("AWS/ApplicationELB", metric), name
        assert (p["ComparisonOperator"], p["Threshold"]) == (comparison, threshold), name
        dims = {d["Name"]: d["Value"]["Fn::GetAtt"] for d in p["Dimensions"]}
        assert dims == {"TargetGroup": ["ServingTargetGroup", "TargetGroupFullName"],
                        "LoadBalancer": ["LoadBalancer", "LoadBalancerFullName"]}, name
    assert shared["Resources"]["ServingLatencyAlarm"]["Properties"]["ExtendedStatistic"] == "p99"


def test_data_volume_from_snapshot_per_contract(cluster):
    data = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    sdf = [m for m in data["BlockDeviceMappings"] if m["DeviceName"] == "/dev/sdf"]
    assert len(sdf) == 1
    ebs = sdf[0]["Ebs"]
    assert ebs["SnapshotId"] == {"Fn::If": ["HasSnapshot", {"Ref": "DataVolumeSnapshotId"}, {"Ref": "AWS::NoValue"}]}
    assert ebs["Encrypted"] is True
    user_data = str(data["UserData"])
    assert "/data" in user_data and "nvme-Amazon_Elastic_Block_Store_" in user_data
    assert "EC_HEALTH_ADDR=0.0.0.0:8081" in user_data and "EC_RPC_ADDR=0.0.0.0:8545" in user_data
    volume_tags = [s for s in data["TagSpecifications"] if s["ResourceType"] == "volume"][0]["Tags"]
    assert {"Key": CLUSTER_TAG, "Value": {"Ref": "ClusterId"}} in volume_tags


def test_groups_and_roles(cluster):
    r = cluster["Resources"]
    replicas, source = r["ReplicaGroup"]["Properties"], r["SnapshotSourceGroup"]["Properties"]
    assert replicas["TargetGroupARNs"] == [{"Ref": "ServingTargetGroupArn"}, {"Ref": "ClusterTargetGroup"}]
    assert "TargetGroupARNs" not in source, "the snapshot source serves no traffic"
    assert source["MaxSize"] == "1" and source["MinSize"] == "1"
    # The scaler owns the replicas' size: no stack update resets it, and no deploy waits for a first replay
    # (CloudFormation waits for a new group's desired capacity; the scaler raises it to MinReplicas).
    assert "DesiredCapacity" not in replicas, "a stack update would reset a scaled-out fleet"
    assert replicas["MinSize"] == "0" and replicas["MaxSize"] == {"Ref": "MaxReplicas"}
    scaler = r["ScalerFunction"]["Properties"]["Environment"]["Variables"]
    assert scaler["MIN_REPLICAS"] == {"Ref": "MinReplicas"}
    assert scaler["REPLICAS_NEED_SNAPSHOT"] == {"Fn::If": ["HasStartBlock", "true", "false"]}
    for group, role in [(replicas, "replica"), (source, "snapshot-source")]:
        assert {"Key": "ether-cattle:role", "Value": role, "PropagateAtLaunch": True} in group["Tags"]
        assert {"Key": CLUSTER_TAG, "Value": {"Ref": "ClusterId"}, "PropagateAtLaunch": True} in group["Tags"]
        assert group["LaunchTemplate"]["LaunchTemplateId"] == {"Ref": "ReplicaLaunchTemplate"}
        # A stack update's new template version reaches the groups (DefaultVersionNumber never moves).
        assert group["LaunchTemplate"]["Version"] == {"Fn::GetAtt": ["ReplicaLaunchTemplate", "LatestVersionNumber"]}
        # Readiness is the ALB's business: an outage that makes every replica unready must not terminate them.
        assert group["HealthCheckType"] == "EC2"
        assert group["HealthCheckGracePeriod"] == {"Ref": "ReplicaCatchUpSecs"}
    (hook,) = replicas["LifecycleHookSpecificationList"]
    assert hook == {"LifecycleHookName": "ether-cattle-ready", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                    "HeartbeatTimeout": {"Ref": "ReplicaCatchUpSecs"}, "DefaultResult": "ABANDON"}
    # The source's hook covers its boot only: it continues before its import and first replay.
    (hook,) = source["LifecycleHookSpecificationList"]
    assert hook == {"LifecycleHookName": "ether-cattle-ready", "LifecycleTransition": "autoscaling:EC2_INSTANCE_LAUNCHING",
                    "HeartbeatTimeout": 900, "DefaultResult": "ABANDON"}
    assert int(cluster["Parameters"]["ReplicaCatchUpSecs"]["MaxValue"]) <= 7200, "the hook's timeout limit"
    publisher = r["PublisherGroup"]["Properties"]["LaunchTemplate"]["Version"]
    assert publisher == {"Fn::GetAtt": ["PublisherLaunchTemplate", "LatestVersionNumber"]}
    (hook,) = r["PublisherGroup"]["Properties"]["LifecycleHookSpecificationList"]
    assert (hook["LifecycleHookName"], hook["DefaultResult"]) == ("ether-cattle-ready", "ABANDON")
    script = r["PublisherLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert script.index("trap 'hook ABANDON' ERR") < script.index("create-topics")
    # In service only once a heartbeat is in the log, not on an open metrics port (a crash loop serves it).
    waits = script.index('until [ "$(beats)" -ge 1 ]')
    assert script.index('"${ImageUri}" publisher') < waits < script.index("hook CONTINUE")
    assert "ether_cattle_publisher_heartbeats_written_total" in script[script.index("beats()"):waits]


def test_start_block_reaches_the_publisher(cluster):
    """StartBlock (a real network's cluster starts at a finalized block) becomes the publisher's EC_START_BLOCK."""
    p = cluster["Parameters"]["StartBlock"]
    assert (p["Default"], p["AllowedPattern"]) == ("", "^[0-9]*$")
    r = cluster["Resources"]
    script = r["PublisherLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert 'START=(-e EC_START_BLOCK="${StartBlock}")' in script
    run = script[script.index("docker run -d --name ether-cattle-publisher"):script.index('"${ImageUri}" publisher')]
    assert '"${!START[@]}"' in run


def test_publisher_creates_topics_with_the_projects_image(cluster):
    """No image pulled from Docker Hub at boot: the topics come from `ether-cattle create-topics` (Kafka admin API)."""
    data = cluster["Resources"]["PublisherLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    script = data["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert '"${ImageUri}" create-topics --topic "${Topic}"' in script
    assert "docker.io" not in script and "kafka-topics.sh" not in script
    assert "KafkaToolsImage" not in cluster["Parameters"]
    assert script.index("docker login") < script.index("create-topics")


def test_user_data_completes_the_launch_hook(cluster):
    """The replica's user data abandons the launch on any failed step and continues it once /health/ready
    answers; the instance role may complete only its own cluster's hooks."""
    data = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    script = data["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    assert "--lifecycle-hook-name ether-cattle-ready" in script
    assert "trap 'hook ABANDON' ERR" in script
    ready = script.index("until curl -sf -o /dev/null http://127.0.0.1:8081/health/ready")
    # (A replica's; the snapshot source's earlier CONTINUE: test_the_snapshot_source_imports_...)
    assert script.index('"${ImageUri}" replica') < ready < script.rindex("hook CONTINUE")
    hooks = [s for s in statements_of_role(cluster, "InstanceRole")
             if "autoscaling:CompleteLifecycleAction" in as_list(s["Action"])]
    assert len(hooks) == 1 and hooks[0]["Resource"]["Fn::Sub"].endswith("autoScalingGroupName/ether-cattle-${ClusterId}-*")


def test_a_replaying_replica_renews_its_launch_hook_only_while_it_progresses(cluster, tmp_path):
    """The user data's wait for readiness, run in bash with the replica and the AWS CLI stood in for: each
    minute in which the Kafka offset moved renews the launch hook; a minute without progress does not (the
    hook's timeout then abandons a stuck replica); readiness ends the wait. `sleep` advances bash's clock."""
    data = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    script = data["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    start = script.index("offset() {")
    loop = script[start:script.index("hook CONTINUE", start)]
    # The replica's offset per minute: moving, moving, stuck for two minutes, moving; ready after 6 minutes.
    harness = f"""
set -euo pipefail
calls={tmp_path}/aws-calls
offsets=(100 250 400 400 400 700 900)
sleep() {{ SECONDS=$((SECONDS + $1)); }}
curl() {{
  case "$*" in
    *health/ready*) [ "$SECONDS" -ge 370 ] ;;
    *admin/position*) echo '{{"kafka_offset": '"${{offsets[$((SECONDS / 60))]}}"'}}' ;;
  esac
}}
aws() {{ echo "$*" >> "$calls"; }}
ASG=ether-cattle-c1-replicas IID=i-0123
touch "$calls"
{loop}
cat "$calls"
"""
    out = subprocess.run(["bash", "-c", harness], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    renewals = [line for line in out.stdout.splitlines() if "record-lifecycle-action-heartbeat" in line]
    # Minutes 1, 2 (moved), 3 and 4 (stuck: none), 5 and 6 (moved).
    assert len(renewals) == 4, out.stdout
    assert all("--auto-scaling-group-name ether-cattle-c1-replicas --instance-id i-0123" in r for r in renewals)
    hooks = [s for s in statements_of_role(cluster, "InstanceRole")
             if "autoscaling:RecordLifecycleActionHeartbeat" in as_list(s["Action"])]
    assert len(hooks) == 1 and hooks[0]["Resource"]["Fn::Sub"].endswith("autoScalingGroupName/ether-cattle-${ClusterId}-*")


def run_replica_user_data(cluster, tmp_path, *, role, fresh, params, import_rc=0, ready_after=120, refuse=None):
    """The replica launch template's user data, rendered as CloudFormation's Fn::Sub would with `params`, run
    in bash with the instance's world stood in for: the AWS CLI, docker, the block device, the instance
    metadata and the replica's health port. /data and /etc live under tmp_path. `import_rc` is the import's
    exit code, `ready_after` the seconds until the replica is ready, `refuse` words of an AWS CLI call that
    fails. Returns (exit code, the external calls in order, stderr)."""
    data = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    template, _ = data["UserData"]["Fn::Base64"]["Fn::Sub"]
    values = {"AWS::Region": "eu-west-1", "ClusterId": "c1", "Topic": "net", "KafkaBrokers": "b-1:9098",
              "KafkaSecurityProtocol": "SSL", "KafkaSaslMechanism": "AWS_MSK_IAM", "KafkaSaslSecretArn": "",
              "ImageUri": "123.dkr.ecr.eu-west-1.amazonaws.com/ec:1", "Registry": "123.dkr.ecr.eu-west-1.amazonaws.com",
              "FilterStore": "off", "FilterTableName": "", "ExecutionClientRpcUrl": "http://client:8545",
              "StartBlock": "", "StartStateS3Uri": "", "StartStateFormat": "geth-dump", **params}

    def sub(m):
        name = m.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        assert name in values, f"the test does not know parameter {name}"
        return values[name]

    script = re.sub(r"\$\{([^}]+)\}", sub, template)
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    script = script.replace("/etc/", f"{root}/etc/").replace("/data", f"{root}/data")
    calls = tmp_path / "calls"
    stubs = f"""
calls={calls}
log() {{ echo "$*" >> "$calls"; }}
dnf() {{ :; }}; systemctl() {{ :; }}; mount() {{ :; }}; chown() {{ :; }}
sleep() {{ SECONDS=$((SECONDS + $1)); }}
blkid() {{ {"return 1" if fresh else "return 0"}; }}
mkfs.xfs() {{ log mkfs.xfs "$@"; }}
function /opt/aws/amazon-cloudwatch-agent/bin/amazon-cloudwatch-agent-ctl {{ :; }}
curl() {{
  case "$*" in
    *api/token*) echo token ;;
    *meta-data/instance-id*) echo i-0123 ;;
    *health/ready*) [ "$SECONDS" -ge {ready_after} ] ;;
    *admin/position*) echo '{{"kafka_offset": '"$SECONDS"'}}' ;;
    *) return 1 ;;
  esac
}}
aws() {{
  case "$*" in
    *describe-tags*ether-cattle:role*) echo {role} ;;
    *describe-tags*aws:autoscaling:groupName*) echo ether-cattle-c1-group ;;
    *describe-instances*) echo vol-0abc ;;
    *get-login-password*) echo pw ;;
    {"*" + refuse.replace(" ", "*") + "*) log aws refused" + ' "$@"; return 255 ;;' if refuse else ""}
    *) log aws "$@" ;;
  esac
}}
docker() {{
  log docker "$@"
  case "$*" in *import-state*) return {import_rc} ;; esac
}}
"""
    out = subprocess.run(["bash", "-c", stubs + script], capture_output=True, text=True, timeout=60)
    lines = calls.read_text().splitlines() if calls.exists() else []
    return out.returncode, lines, out.stderr


def first(lines, needle):
    """The index of the first call containing `needle` (a failed assertion names the calls)."""
    for i, line in enumerate(lines):
        if needle in line:
            return i
    raise AssertionError(f"no call with {needle!r} in:\n" + "\n".join(lines))


def test_the_snapshot_source_imports_the_first_volume_at_the_start_block(cluster, tmp_path):
    """A new cluster that starts at block N: the snapshot source continues its launch hook at boot (no hook
    timeout may cut an import and first replay short), imports the dump at N from S3 into its empty volume,
    starts the replica on it and, once ready, asks the snapshot function for the lineage's first snapshot."""
    rc, calls, err = run_replica_user_data(
        cluster, tmp_path, role="snapshot-source", fresh=True,
        params={"StartBlock": "21000000", "StartStateS3Uri": "s3://dumps/state-21000000.jsonl"})
    assert rc == 0, err
    steps = [first(calls, "mkfs.xfs"),
             first(calls, "complete-lifecycle-action"),
             first(calls, "s3 cp --only-show-errors s3://dumps/state-21000000.jsonl"),
             first(calls, "import-state"),
             first(calls, "docker run -d --name ether-cattle"),
             first(calls, "lambda invoke --function-name ether-cattle-c1-snapshot")]
    assert steps == sorted(steps), calls
    assert "--lifecycle-action-result CONTINUE" in calls[steps[1]]
    imp = calls[steps[3]]
    assert "--block 21000000 --rpc-url http://client:8545 --geth-dump" in imp and "--work-dir" in imp, imp
    assert "awslogs-stream=i-0123-import" in imp, "the import's progress goes to the dashboard's log widget"
    assert not any("ABANDON" in c or "record-lifecycle-action-heartbeat" in c for c in calls), calls

    # Without a dump the state is read from the client itself.
    rc, calls, err = run_replica_user_data(cluster, tmp_path / "rpc", role="snapshot-source", fresh=True,
                                           params={"StartBlock": "5"})
    assert rc == 0, err
    assert "--block 5 --rpc-url http://client:8545 --from-rpc" in calls[first(calls, "import-state")]
    assert not any(" s3 " in c for c in calls)


def test_a_failed_import_has_the_source_replaced(cluster, tmp_path):
    """After the source continued its hook, a failed step marks it unhealthy (its group replaces it, with a new
    empty volume and a new import) and starts no replica."""
    rc, calls, _ = run_replica_user_data(cluster, tmp_path, role="snapshot-source", fresh=True,
                                         params={"StartBlock": "5"}, import_rc=1)
    assert rc != 0
    health = calls[first(calls, "set-instance-health")]
    assert "--instance-id i-0123 --health-status Unhealthy --no-should-respect-grace-period" in health
    assert not any("docker run -d" in c for c in calls), calls


def test_no_replica_on_an_empty_volume_of_a_cluster_that_starts_at_a_block(cluster, tmp_path):
    rc, calls, err = run_replica_user_data(cluster, tmp_path, role="replica", fresh=True, params={"StartBlock": "5"})
    assert rc == 1 and "starts at block 5" in err, err
    assert "--lifecycle-action-result ABANDON" in calls[first(calls, "complete-lifecycle-action")]
    assert not any(c.startswith("docker run") for c in calls), calls


def test_a_replica_from_a_snapshot_continues_once_ready(cluster, tmp_path):
    """The usual launch: a replica from a snapshot starts, renews its hook while its offset moves, continues
    it once ready; it neither imports nor asks for a snapshot. A source from a snapshot asks for none either."""
    rc, calls, err = run_replica_user_data(cluster, tmp_path, role="replica", fresh=False,
                                           params={"StartBlock": "5"}, ready_after=200)
    assert rc == 0, err
    assert first(calls, "docker run -d --name ether-cattle") < first(calls, "record-lifecycle-action-heartbeat")
    assert "--lifecycle-action-result CONTINUE" in calls[-1], calls
    assert not any(s in c for c in calls for s in ("mkfs", "import-state", "lambda invoke", "set-instance-health"))
    rc, calls, err = run_replica_user_data(cluster, tmp_path / "source", role="snapshot-source", fresh=False,
                                           params={"StartBlock": "5"})
    assert rc == 0, err
    assert not any(s in c for c in calls for s in ("import-state", "lambda invoke")), calls


def test_a_genesis_cluster_source_replays_and_asks_for_its_first_snapshot(cluster, tmp_path):
    rc, calls, err = run_replica_user_data(cluster, tmp_path, role="snapshot-source", fresh=True, params={})
    assert rc == 0, err
    assert not any("import-state" in c for c in calls)
    assert first(calls, "docker run -d --name ether-cattle") < first(calls, "lambda invoke")
    # A refused invocation does not fail the source (the schedule takes the snapshot).
    rc, calls, err = run_replica_user_data(cluster, tmp_path / "refused", role="snapshot-source", fresh=True,
                                           params={}, refuse="lambda invoke")
    assert rc == 0 and "could not ask for the first snapshot" in err, err
    assert not any("set-instance-health" in c for c in calls), calls


def test_health_checks_are_readiness(cluster, shared):
    groups = list(resources(cluster, "AWS::ElasticLoadBalancingV2::TargetGroup").values())
    groups += list(resources(shared, "AWS::ElasticLoadBalancingV2::TargetGroup").values())
    assert len(groups) == 2
    for g in groups:
        p = g["Properties"]
        assert (p["HealthCheckPath"], p["HealthCheckPort"], p["Port"]) == ("/health/ready", "8081", 8545)


# ---------------------------------------------------------------- IAM


@pytest.mark.parametrize("role", sorted(FUNCTION_ACTIONS))
def test_function_actions_exactly_what_the_code_calls(cluster, role):
    actions = set()
    for s in statements_of_role(cluster, role):
        assert s["Effect"] == "Allow"
        actions |= set(as_list(s["Action"]))
    assert actions == FUNCTION_ACTIONS[role]


def test_scaler_tags_only_what_it_launches(cluster):
    """Pointing a group at a template with TagSpecifications needs ec2:CreateTags, granted only as part of
    RunInstances (AWS's documented condition), on instances and volumes."""
    (tagging,) = [s for s in statements_of_role(cluster, "ScalerRole") if "ec2:CreateTags" in as_list(s["Action"])]
    assert tagging["Condition"] == {"StringEquals": {"ec2:CreateAction": "RunInstances",
                                                     "aws:RequestTag/" + CLUSTER_TAG: {"Ref": "ClusterId"}}}
    kinds = sorted(r["Fn::Sub"].rsplit(":", 1)[1] for r in tagging["Resource"])
    assert kinds == ["instance/*", "volume/*"]


def test_no_wildcard_actions_and_data_actions_scoped(cluster, shared):
    roles = list(resources(cluster, "AWS::IAM::Role")) + list(resources(shared, "AWS::IAM::Role"))
    assert {"InstanceRole", "SnapshotRole", "RetentionGuardRole", "ScalerRole"} <= set(roles)
    for t in (cluster, shared):
        for role in resources(t, "AWS::IAM::Role"):
            for s in statements_of_role(t, role):
                for a in as_list(s["Action"]):
                    assert "*" not in a, f"{role}: {a}"
                if s["Resource"] == "*" and as_list(s["Action"]) == ["ec2:RunInstances"]:
                    # Launching touches many resource types; scoped by the launch template instead.
                    assert list(s["Condition"]["ArnLike"]) == ["ec2:LaunchTemplate"], s
                elif s["Resource"] == "*":
                    extra = set(as_list(s["Action"])) - UNSCOPABLE
                    assert not extra, f"{role}: {extra} on every resource"
                if "cloudwatch:PutMetricData" in as_list(s["Action"]):
                    assert s["Condition"] == {"StringEquals": {"cloudwatch:namespace": "EtherCattle"}}


def test_logs_go_to_groups_with_retention(cluster):
    groups = resources(cluster, "AWS::Logs::LogGroup")
    names = {g["Properties"]["LogGroupName"]["Fn::Sub"]: n for n, g in groups.items()}
    for g in groups.values():
        assert g["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    for fn in resources(cluster, "AWS::Lambda::Function").values():
        assert fn["Properties"]["LoggingConfig"] == {"LogGroup": {"Ref": "FunctionLogGroup"}}
    # The containers log to the groups the stack made (awslogs driver), the agent's EMF lines to its group.
    for lt, group in [("ReplicaLaunchTemplate", "/ether-cattle/${ClusterId}/replicas"),
                      ("PublisherLaunchTemplate", "/ether-cattle/${ClusterId}/publisher")]:
        script = cluster["Resources"][lt]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
        assert f"--log-driver awslogs --log-opt awslogs-group={group}" in script, lt
        assert group in names and "/ether-cattle/${ClusterId}/prometheus" in script and "/ether-cattle/${ClusterId}/prometheus" in names
    # The groups whose instances write to them are made after them (CloudFormation orders by DependsOn).
    writers = {"ReplicaGroup": "/ether-cattle/${ClusterId}/replicas", "SnapshotSourceGroup": "/ether-cattle/${ClusterId}/replicas",
               "PublisherGroup": "/ether-cattle/${ClusterId}/publisher"}
    for group, log in writers.items():
        depends = set(as_list(cluster["Resources"][group].get("DependsOn", [])))
        assert {names[log], names["/ether-cattle/${ClusterId}/prometheus"]} <= depends, group


def test_data_disk_usage_is_shipped_and_alarmed(cluster):
    script = cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
    cw = script[script.index("cwagent.json <<'EOF'"):]
    assert '"disk": {"resources": ["/data"], "measurement": ["used_percent"]' in cw
    assert '"aggregation_dimensions": [["AutoScalingGroupName"]]' in cw
    alarm = cluster["Resources"]["DataDiskAlarm"]["Properties"]
    groups = {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Fn::Sub"] for m in alarm["Metrics"] if "MetricStat" in m}
    assert groups == {"ether-cattle-${ClusterId}-replicas", "ether-cattle-${ClusterId}-snapshot-source"}
    assert alarm["Threshold"] == {"Ref": "DataDiskAlarmPercent"}


def test_scram_secret_and_its_key_for_instances_and_guard(cluster):
    policy = cluster["Resources"]["KafkaCredentialsPolicy"]
    assert policy["Condition"] == "HasSaslSecret"
    assert policy["Properties"]["Roles"] == [
        {"Ref": "InstanceRole"}, {"Ref": "PublisherInstanceRole"}, {"Ref": "RetentionGuardRole"}]
    by_action = {s["Action"]: s for s in policy["Properties"]["PolicyDocument"]["Statement"]}
    assert by_action["secretsmanager:GetSecretValue"]["Resource"] == {"Ref": "KafkaSaslSecretArn"}
    assert by_action["kms:Decrypt"]["Resource"]["Fn::If"][:2] == ["HasSaslKey", {"Ref": "KafkaSaslSecretKmsKeyArn"}]
    assert "kms:ViaService" in by_action["kms:Decrypt"]["Condition"]["StringEquals"]
    env = cluster["Resources"]["RetentionGuardFunction"]["Properties"]["Environment"]["Variables"]
    assert env["KAFKA_SASL_SECRET_ARN"] == {"Fn::If": ["IsScram", {"Ref": "KafkaSaslSecretArn"}, ""]}
    assert env["KAFKA_SASL_MECHANISM"] == {"Fn::If": ["IsIam", "AWS_MSK_IAM", ""]}


def kafka_grants(cluster, policy):
    """{resource name (topic, group or the cluster): actions} of an MSK IAM policy."""
    grants = {}
    for st in cluster["Resources"][policy]["Properties"]["PolicyDocument"]["Statement"]:
        for r in as_list(st["Resource"]):
            if r == {"Ref": "MskClusterArn"}:
                name = "cluster"
            else:
                parts = r["Fn::Join"][1]
                kind = parts[1].strip(":/")
                name = kind + ":" + "".join(p if isinstance(p, str) else "{" + p["Ref"] + "}" for p in parts[3:]).lstrip("/")
            grants.setdefault(name, set()).update(as_list(st["Action"]))
    return grants


def test_msk_iam_least_privilege(cluster):
    """The publisher writes the log; replicas read it and write only the tx topic; the guard only reads."""
    assert cluster["Parameters"]["KafkaSaslMechanism"]["Default"] == "AWS_MSK_IAM"
    assert cluster["Parameters"]["KafkaSecurityProtocol"]["Default"] == "SASL_SSL"
    W, R, D = "kafka-cluster:WriteData", "kafka-cluster:ReadData", "kafka-cluster:DescribeTopic"
    publisher = kafka_grants(cluster, "PublisherKafkaPolicy")
    replica = kafka_grants(cluster, "ReplicaKafkaPolicy")
    guard = kafka_grants(cluster, "RetentionGuardKafkaPolicy")
    assert {W, R, D, "kafka-cluster:CreateTopic"} <= publisher["topic:{Topic}"]
    assert W in publisher["topic:{Topic}-tx"] and R in publisher["topic:{Topic}-tx"]
    assert replica["topic:{Topic}"] == {D, R}, "replicas never write the log"
    assert replica["topic:{Topic}-tx"] == {D, W}, "replicas only write transactions"
    assert W not in guard["topic:{Topic}"] and R in guard["topic:{Topic}"]
    assert set(guard) == {"cluster", "topic:{Topic}", "group:ether-cattle-retention-guard"}
    # Every consumer's group id is granted to the role that runs it (librdkafka looks the group's coordinator
    # up even for an assign-only consumer): the replicas' and the publisher's tail reader's (the same
    # consumer, crates/kafka/src/consumer.rs), the relay's.
    assert publisher["group:ether-cattle-replica-{Topic}"] == {"kafka-cluster:DescribeGroup"}
    assert replica["group:ether-cattle-replica-{Topic}"] == {"kafka-cluster:DescribeGroup"}
    assert "kafka-cluster:DescribeGroup" in publisher["group:ether-cattle-publisher-{ClusterId}"]
    for grants in (publisher, replica, guard):
        assert "kafka-cluster:Connect" in grants["cluster"]
        assert all("*" not in a for actions in grants.values() for a in actions)
    for name in ("PublisherKafkaPolicy", "ReplicaKafkaPolicy", "RetentionGuardKafkaPolicy"):
        assert cluster["Resources"][name]["Condition"] == "IsIamOnMsk"
    roles = {n: cluster["Resources"][n]["Properties"]["Roles"] for n in ("PublisherKafkaPolicy", "ReplicaKafkaPolicy")}
    assert roles == {"PublisherKafkaPolicy": [{"Ref": "PublisherInstanceRole"}], "ReplicaKafkaPolicy": [{"Ref": "InstanceRole"}]}
    publisher_lt = cluster["Resources"]["PublisherLaunchTemplate"]["Properties"]["LaunchTemplateData"]
    assert publisher_lt["IamInstanceProfile"]["Arn"] == {"Fn::GetAtt": ["PublisherInstanceProfile", "Arn"]}
    for lt in ("ReplicaLaunchTemplate", "PublisherLaunchTemplate"):
        script = cluster["Resources"][lt]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"][0]
        assert "EC_KAFKA_SASL_MECHANISM=AWS_MSK_IAM" in script, lt


def test_snapshot_tags_only_on_create(cluster):
    (tagging,) = [s for s in statements_of_role(cluster, "SnapshotRole") if "ec2:CreateTags" in as_list(s["Action"])]
    assert tagging["Condition"]["StringEquals"]["ec2:CreateAction"] == "CreateSnapshot"


def test_data_actions_carry_the_cluster_tag_condition(cluster):
    """Where the API supports tag conditions, the cluster's tag limits the function to its own resources."""
    tagged = {"ec2:DeleteSnapshot", "ebs:ListSnapshotBlocks", "ebs:ListChangedBlocks", "ec2:CreateTags",
              "ec2:CreateLaunchTemplateVersion", "ec2:ModifyLaunchTemplate", "autoscaling:SetDesiredCapacity",
              "autoscaling:CreateOrUpdateTags", "autoscaling:UpdateAutoScalingGroup", "autoscaling:StartInstanceRefresh"}
    seen = set()
    for role in FUNCTION_ACTIONS:
        for s in statements_of_role(cluster, role):
            acts = set(as_list(s["Action"]))
            if acts & tagged:
                cond = s["Condition"]["StringEquals"]
                keys = {k for k in cond if k.endswith("/" + CLUSTER_TAG)}
                assert keys and all(cond[k] == {"Ref": "ClusterId"} for k in keys), s
                seen |= acts & tagged
            if "ec2:CreateSnapshot" in acts and "volume/" in str(s["Resource"]):
                assert s["Condition"]["StringEquals"]["aws:ResourceTag/" + CLUSTER_TAG] == {"Ref": "ClusterId"}
                seen.add("ec2:CreateSnapshot")
    assert seen == tagged | {"ec2:CreateSnapshot"}


# ---------------------------------------------------------------- functions, schedules, events


def test_function_environment_matches_contract(cluster):
    for name, keys in CONTRACT_ENV.items():
        f = cluster["Resources"][name]["Properties"]
        assert set(f["Environment"]["Variables"]) == keys, name
        assert f["Environment"]["Variables"]["METRICS_NAMESPACE"] == "EtherCattle"
        assert f["Runtime"] == "provided.al2023" and f["Handler"] == "bootstrap"
        assert f["Code"]["S3Bucket"] == {"Ref": "LambdaCodeBucket"}


def targets_of(cluster, rule):
    return [t["Arn"]["Fn::GetAtt"][0] for t in cluster["Resources"][rule]["Properties"]["Targets"]]


def test_schedules(cluster):
    rules = resources(cluster, "AWS::Events::Rule")
    scheduled = {n: r for n, r in rules.items() if "ScheduleExpression" in r["Properties"]}
    by_function = {targets_of(cluster, n)[0]: r["Properties"]["ScheduleExpression"] for n, r in scheduled.items()}
    assert by_function == {
        "SnapshotFunction": {"Ref": "SnapshotSchedule"},
        "RetentionGuardFunction": {"Ref": "RetentionGuardSchedule"},
        "ScalerFunction": {"Ref": "ScalerSchedule"},
    }
    params = cluster["Parameters"]
    seconds = {}
    for p in ("SnapshotSchedule", "RetentionGuardSchedule", "ScalerSchedule"):
        m = re.fullmatch(r"rate\((\d+) (minute|minutes|hour|hours|day|days)\)", params[p]["Default"])
        assert m, params[p]["Default"]
        n, unit = int(m.group(1)), m.group(2).rstrip("s")
        seconds[p] = n * {"minute": 60, "hour": 3600, "day": 86400}[unit]
    # The seed's rule: snapshots much more often than retention, leaving the troubleshooting allowance.
    retention = int(params["TopicRetentionHours"]["Default"]) * 3600
    allowance = int(params["TroubleshootAllowanceSecs"]["Default"])
    assert seconds["SnapshotSchedule"] * 2 <= retention - allowance
    assert int(params["SnapshotMaxAgeSeconds"]["Default"]) < retention - allowance
    assert seconds["RetentionGuardSchedule"] < seconds["SnapshotSchedule"]


def test_event_rules_and_permissions(cluster):
    rules = resources(cluster, "AWS::Events::Rule")
    events = {n: r["Properties"]["EventPattern"] for n, r in rules.items() if "EventPattern" in r["Properties"]}
    # Every event rule is scoped to this cluster (its own alarms); nothing fires on other clusters' snapshots.
    for name, pattern in events.items():
        assert pattern["detail-type"] != ["EBS Snapshot Notification"], name
        assert "resources" in pattern, f"{name} is not scoped to this cluster's resources"
    for rule, alarm in [("ScalerOnReadyAlarmRule", "ReadyReplicasLowAlarm"),
                        ("SnapshotOnRetentionWarningRule", "RetentionWarningAlarm")]:
        name = cluster["Resources"][alarm]["Properties"]["AlarmName"]["Fn::Sub"]
        (arn,) = events[rule]["resources"]
        assert arn["Fn::Sub"].endswith(":alarm:" + name), (rule, arn)
    permissions = {(p["Properties"]["FunctionName"]["Ref"], p["Properties"]["SourceArn"]["Fn::GetAtt"][0])
                   for p in resources(cluster, "AWS::Lambda::Permission").values()}
    for rule in rules:
        for fn in targets_of(cluster, rule):
            assert (fn, rule) in permissions, f"{rule} cannot invoke {fn}"


def alarm_metric(p):
    """(namespace, metric, dimensions, statistic, period) of an alarm on one metric or on one metric's math."""
    if "MetricName" in p:
        return p["Namespace"], p["MetricName"], p["Dimensions"], p["Statistic"], p["Period"]
    (stat,) = [m["MetricStat"] for m in p["Metrics"] if "MetricStat" in m]
    m = stat["Metric"]
    return m["Namespace"], m["MetricName"], m["Dimensions"], stat["Stat"], stat["Period"]


CLUSTER_DIM = {"Name": "Cluster", "Value": {"Ref": "ClusterId"}}
SERVING_DIMS = [CLUSTER_DIM, {"Name": "Role", "Value": "replica"}]


def test_alarms(cluster):
    # name: (metric, dimensions, statistic, threshold, missing data)
    want = {
        "SnapshotAgeAlarm": ("SnapshotAgeSeconds", [CLUSTER_DIM], "Maximum", {"Ref": "SnapshotMaxAgeSeconds"}, "breaching"),
        "RetentionWarningAlarm": ("RetentionStatus", [CLUSTER_DIM], "Maximum", 1, "breaching"),
        "RetentionCriticalAlarm": ("RetentionStatus", [CLUSTER_DIM], "Maximum", 1, "notBreaching"),
        "ReadyReplicasLowAlarm": ("ReadyReplicas", [CLUSTER_DIM], "Minimum", {"Ref": "MinReplicas"}, "breaching"),
        "ReplicaLagAlarm": ("ether_cattle_replica_serving_lag_records", SERVING_DIMS, "Maximum",
                            {"Ref": "MaxReplicaLagRecords"}, "notBreaching"),
        "PublisherHeartbeatAlarm": ("ether_cattle_replica_seconds_since_last_record", SERVING_DIMS, "Maximum",
                                    {"Ref": "HeartbeatSilenceAlarmSecs"}, "breaching"),
        "ReplicaHeadAgeAlarm": ("ether_cattle_replica_head_age_seconds", SERVING_DIMS, "Minimum",
                                {"Ref": "MaxHeadAgeSecs"}, "breaching"),
        "PublisherLagAlarm": ("ether_cattle_publisher_lag_blocks", [CLUSTER_DIM], "Maximum",
                              {"Ref": "MaxPublisherLagBlocks"}, "breaching"),
        "PublisherProduceFailuresAlarm": ("ether_cattle_publisher_produce_failures_total", [CLUSTER_DIM], "Maximum",
                                          0, "notBreaching"),
    }
    alarms = {n: a for n, a in resources(cluster, "AWS::CloudWatch::Alarm").items() if n != "DataDiskAlarm"}
    assert set(alarms) == set(want)
    for name, (metric, dims, stat, threshold, missing) in want.items():
        p = alarms[name]["Properties"]
        namespace, got_metric, got_dims, got_stat, _ = alarm_metric(p)
        assert (namespace, got_metric, got_dims, got_stat) == ("EtherCattle", metric, dims, stat), name
        assert (p["Threshold"], p["TreatMissingData"]) == (threshold, missing), name
    # Critical is status 2 exactly: "unknown" (3) during a cluster's first hours is the warning's.
    critical = alarms["RetentionCriticalAlarm"]["Properties"]
    assert [m["Expression"] for m in critical["Metrics"] if m.get("ReturnData")] == ["IF(status == 2, 1, 0)"]
    # The snapshot age is written every guard run (15 minutes): a period shorter than that would flap.
    age = alarms["SnapshotAgeAlarm"]["Properties"]
    assert age["Period"] >= 1800 and age["DatapointsToAlarm"] == age["EvaluationPeriods"] == 2
    # The Prometheus metrics the alarms use are the ones the instances ship to CloudWatch, with the dimensions
    # the alarms ask for.
    replica_ud = str(cluster["Resources"]["ReplicaLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    publisher_ud = str(cluster["Resources"]["PublisherLaunchTemplate"]["Properties"]["LaunchTemplateData"]["UserData"])
    assert '"dimensions": [["Cluster"], ["Cluster", "Role"]]' in replica_ud
    for _, (metric, *_rest) in want.items():
        if metric.startswith("ether_cattle_replica_"):
            assert f"^{metric}$" in replica_ud, metric
        elif metric.startswith("ether_cattle_publisher_"):
            assert f"^{metric}$" in publisher_ud, metric


def test_dashboard_shows_the_alarmed_metrics(cluster):
    """One dashboard per cluster, valid JSON once rendered, charting the metrics the alarms watch."""
    body = cluster["Resources"]["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    rendered = json.loads(re.sub(r"\$\{[A-Za-z:]+\}", "x", body))
    charted = {m for w in rendered["widgets"] if w["type"] == "metric"
               for row in w["properties"]["metrics"] for m in row if isinstance(m, str)}
    for metric in ("ReadyReplicas", "ether_cattle_replica_head_age_seconds", "ether_cattle_replica_lag_records",
                   "ether_cattle_replica_seconds_since_last_record", "ether_cattle_publisher_lag_blocks",
                   "SnapshotAgeSeconds", "RetentionMarginSeconds", "RetentionStatus"):
        assert metric in charted, metric
    # A new lineage's first replay and import show progress: the source's lag, the import's log stream.
    source = [w for w in rendered["widgets"] if "snapshot-source" in json.dumps(w.get("properties", {}).get("metrics"))]
    assert source and source[0]["properties"]["metrics"][0][1] == "ether_cattle_replica_lag_records"
    (logs,) = [w for w in rendered["widgets"] if w["type"] == "log"]
    assert "/replicas'" in logs["properties"]["query"] and "-import$" in logs["properties"]["query"]


# ---------------------------------------------------------------- parameters documented


def documented_defaults():
    """Rows `| `Name` | default | ... |` of the parameter tables in infra/README.md and docs/operations.md."""
    rows = {}
    for path in DOCS:
        if not path.exists():
            continue
        for line in path.read_text().splitlines():
            m = re.match(r"^\|\s*`([A-Za-z0-9]+)`\s*\|\s*([^|]*?)\s*\|", line)
            if m:
                rows.setdefault(m.group(1), m.group(2))
    return rows


@pytest.mark.parametrize("name", ["cluster.yaml", "shared.yaml"])
def test_every_parameter_documented_with_its_default(name):
    template = load(name)
    docs = documented_defaults()
    for param, spec in template["Parameters"].items():
        assert param in docs, f"{name} parameter {param} is not in a parameter table of {DOCS}"
        cell = docs[param].strip("`")
        if "Default" in spec:
            default = str(spec["Default"])
            want = "(empty)" if default == "" else default
            assert cell == want, f"{param}: documented default {cell!r}, template {want!r}"
        else:
            assert cell == "(required)", f"{param} has no default: document it as (required), not {cell!r}"


# ---------------------------------------------------------------- guard rules bite


def cfn_guard():
    for c in (os.environ.get("CFN_GUARD"), shutil.which("cfn-guard"),
              str(Path.home() / ".cache/cfn-guard/bin/cfn-guard")):
        if c and Path(c).exists():
            return c
    pytest.fail("cfn-guard not found (scripts/setup.sh installs it into ~/.cache/cfn-guard)")


def test_guard_rules_fail_a_violating_template():
    out = subprocess.run(
        [cfn_guard(), "validate", "--rules", str(INFRA / "guard"), "--data", str(INFRA / "tests/fixtures/bad.yaml"),
         "--show-summary", "fail", "-o", "single-line-summary"],
        capture_output=True, text=True, check=False)
    assert out.returncode != 0
    rules = re.findall(r"^\S+\.guard/(\w+)\s+FAIL", out.stdout, re.M)
    assert set(rules) == {
        "msk_tls_in_transit", "listeners_https", "msk_encrypted_at_rest", "ebs_volumes_encrypted", "kms_rotation",
        "iam_no_wildcard_actions", "iam_policy_no_wildcard_actions", "iam_data_actions_scoped",
        "iam_policy_data_actions_scoped", "iam_metrics_namespace", "target_groups_check_readiness",
        "groups_health_is_ec2", "kafka_ingress_from_groups", "kafka_cidr_ingress_opt_in",
        "log_groups_have_retention", "functions_log_to_a_retained_group",
    }, out.stdout


def test_guard_rules_pass_the_templates():
    for name in ("cluster.yaml", "shared.yaml"):
        out = subprocess.run([cfn_guard(), "validate", "--rules", str(INFRA / "guard"), "--data", str(INFRA / name)],
                             capture_output=True, text=True, check=False)
        assert out.returncode == 0, out.stdout + out.stderr


# ---------------------------------------------------------------- user data is valid bash


def rendered_user_data(template, name):
    """The launch template's user data with every ${Param} replaced by a placeholder (and ${!x} by ${x})."""
    body, _ = template["Resources"][name]["Properties"]["LaunchTemplateData"]["UserData"]["Fn::Base64"]["Fn::Sub"]
    body = re.sub(r"\$\{(?!!)([A-Za-z0-9:]+)\}", lambda m: "placeholder-" + m.group(1).replace(":", "-"), body)
    return body.replace("${!", "${")


@pytest.mark.parametrize("name", ["ReplicaLaunchTemplate", "PublisherLaunchTemplate"])
def test_user_data_is_valid_bash(cluster, name):
    script = rendered_user_data(cluster, name)
    assert script.startswith("#!/bin/bash\n")
    out = subprocess.run(["bash", "-n"], input=script, capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stderr
    # The CloudWatch agent configuration it writes is valid JSON, in the contract's namespace.
    m = re.search(r"cat > /etc/ether-cattle/cwagent.json <<'EOF'\n(.*?)\nEOF\n", script, re.S)
    assert m, "no CloudWatch agent configuration"
    config = json.loads(m.group(1))
    assert config["logs"]["metrics_collected"]["prometheus"]["emf_processor"]["metric_namespace"] == "EtherCattle"
