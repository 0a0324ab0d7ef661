"""Every IAM policy in the templates through an IAM policy linter (Duo Labs' parliament): malformed policies,
actions that do not exist, resources whose ARN cannot match the action, conditions on keys the action does not
know, and `*` where the action supports resource-level permissions.

Templates hold intrinsics (!Ref, !Sub, !GetAtt, ...): each is rendered with an example value of the right
shape (a parameter's example ARN, a resource's ARN from its type), so the linter sees concrete policies.
The few findings that are deliberate are listed in ALLOWED with the reason; any other fails the test.
"""

import json
import re

import parliament  # noqa: F401  (scripts/setup.sh installs it; without it the test fails here, loudly)
import pytest
from cfnlint.decode import decode

from test_template import INFRA

import parliament  # noqa: F401  (installed by scripts/setup.sh; a missing linter fails here, loudly)

ACCOUNT, REGION = "123456789012", "us-east-1"
PSEUDO = {
    "AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": "stack",
    "AWS::URLSuffix": "amazonaws.com",
}
# Example values of the parameters that policies name (the rest render as their lower-cased name).
PARAMETERS = {
    "MskClusterArn": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/ether-cattle/0123abcd-4567-89ab-cdef-0123456789ab-1",
    "KafkaSaslSecretArn": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ether-cattle-kafka-AbCdEf",
    "KafkaSaslSecretKmsKeyArn": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0123abcd-4567-89ab-cdef-0123456789ab",
    "FilterTableArn": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/ether-cattle-filters",
    "GenesisS3Uri": "s3://ether-cattle-config/genesis.json",
    "StartStateS3Uri": "s3://ether-cattle-dumps/state-21000000.jsonl",
    "LambdaCodeBucket": "ether-cattle-code",
    "AlarmTopicArn": f"arn:aws:sns:{REGION}:{ACCOUNT}:ether-cattle-alarms",
    "ServingTargetGroupArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/serving/0123456789abcdef",
    "ListenerArn": f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:listener/app/alb/0123456789abcdef/0123456789abcdef",
}
# The ARN of a resource of each type, as !Ref / !GetAtt name it in a policy.
ARN_OF_TYPE = {
    "AWS::DynamoDB::Table": f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/{{n}}",
    "AWS::SecretsManager::Secret": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:{{n}}-AbCdEf",
    "AWS::KMS::Key": f"arn:aws:kms:{REGION}:{ACCOUNT}:key/0123abcd-4567-89ab-cdef-0123456789ab",
    "AWS::IAM::Role": f"arn:aws:iam::{ACCOUNT}:role/{{n}}",
    "AWS::IAM::InstanceProfile": f"arn:aws:iam::{ACCOUNT}:instance-profile/{{n}}",
    "AWS::Lambda::Function": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{{n}}",
    "AWS::Logs::LogGroup": f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:{{n}}:*",
    "AWS::MSK::Cluster": f"arn:aws:kafka:{REGION}:{ACCOUNT}:cluster/{{n}}/0123abcd-4567-89ab-cdef-0123456789ab-1",
    "AWS::SNS::Topic": f"arn:aws:sns:{REGION}:{ACCOUNT}:{{n}}",
    "AWS::ElasticLoadBalancingV2::TargetGroup":
        f"arn:aws:elasticloadbalancing:{REGION}:{ACCOUNT}:targetgroup/{{n}}/0123456789abcdef",
}
# !Ref of these types names an id, not an ARN.
ID_OF_TYPE = {"AWS::EC2::LaunchTemplate": "lt-0123456789abcdef0", "AWS::EC2::SecurityGroup": "sg-0123456789abcdef0"}

NO_VALUE = object()

# (template, resource, issue, action or string): why the finding stands.
ALLOWED = {
    ("cluster.yaml", "SnapshotRole", "RESOURCE_MISMATCH", "ec2:CreateSnapshot"):
        "CreateSnapshot authorizes two resources (the volume and the new snapshot); the role grants each in a "
        "statement of its own with that resource's conditions (the volume's cluster tag, the tags the snapshot "
        "is created with), which the linter reads as two incomplete statements",
    ("cluster.yaml", "ScalerRole", "RESOURCE_STAR", "ec2:RunInstances"):
        "RunInstances authorizes every resource a launch touches (instance, volumes, network interface, subnet, "
        "security groups, image); the grant is bound to the replicas' launch template by the ec2:LaunchTemplate "
        "condition instead",
}


def render(v, t):
    """A template value with its intrinsics replaced by example values; NO_VALUE for AWS::NoValue."""
    if isinstance(v, list):
        return [x for x in (render(x, t) for x in v) if x is not NO_VALUE]
    if not isinstance(v, dict):
        return v
    if len(v) == 1:
        ((k, a),) = v.items()
        if k == "Ref":
            if a == "AWS::NoValue":
                return NO_VALUE
            if a in PSEUDO:
                return PSEUDO[a]
            if a in t.get("Parameters", {}):
                return PARAMETERS.get(a, a.lower())
            kind = t["Resources"][a]["Type"]
            return ID_OF_TYPE.get(kind) or ARN_OF_TYPE.get(kind, "{n}").format(n=a.lower())
        if k == "Fn::GetAtt":
            name = a[0] if isinstance(a, list) else a.split(".")[0]
            return ARN_OF_TYPE.get(t["Resources"][name]["Type"], "{n}").format(n=name.lower())
        if k == "Fn::Sub":
            text, names = (a, {}) if isinstance(a, str) else (a[0], a[1])

            def one(m):
                n = m.group(1)
                if n in names:
                    return str(render(names[n], t))
                if "." in n:
                    return render({"Fn::GetAtt": n.split(".")}, t)
                return str(render({"Ref": n}, t))

            return re.sub(r"\$\{([^}!]+)\}", one, text)
        if k == "Fn::If":
            return render(a[1], t)
        if k == "Fn::Join":
            return a[0].join(str(render(x, t)) for x in render(a[1], t))
        if k == "Fn::Split":
            return str(render(a[1], t)).split(a[0])
        if k == "Fn::Select":
            return render(a[1], t)[int(render(a[0], t))]
        if k == "Fn::ImportValue":
            return f"arn:aws:dynamodb:{REGION}:{ACCOUNT}:table/imported"
    out = {}
    for kk, vv in v.items():
        r = render(vv, t)
        if r is not NO_VALUE:
            out[kk] = r
    return out


def policies(name):
    """(resource, policy document) of every identity policy in the template."""
    t, matches = decode(str(INFRA / name))
    assert not matches, matches
    for rname, r in t["Resources"].items():
        props = r.get("Properties", {})
        if r["Type"] == "AWS::IAM::Role":
            for p in props.get("Policies", []):
                yield rname, render(p["PolicyDocument"], t)
        elif r["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            yield rname, render(props["PolicyDocument"], t)


def subjects(detail):
    """The actions or strings a finding names."""
    if isinstance(detail, list):
        return {d.get("action") if isinstance(d, dict) else d for d in detail}
    return {detail}


def test_iam_policies_pass_the_linter():
    from parliament import analyze_policy_string

    linted, unexplained = 0, []
    for name in ["cluster.yaml", "shared.yaml"]:
        for resource, document in policies(name):
            linted += 1
            for f in analyze_policy_string(json.dumps(document)).findings:
                named = subjects(f.detail) | {(f.location or {}).get("string")}
                if any((name, resource, f.issue, s) in ALLOWED for s in named):
                    continue
                unexplained.append(f"{name} {resource}: {f.issue} {f.detail} {f.location}")
    # The cluster stack's roles and policies (the shared stack has none today).
    assert linted >= 10, f"only {linted} policies found"
    assert not unexplained, "\n".join(unexplained)


def test_the_linter_finds_what_it_should():
    """The linter, as wired here, reports a policy that is wrong (so a clean run above means something)."""
    from parliament import analyze_policy_string

    bad = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": "s3:GetObjectt", "Resource": "arn:aws:s3:::bucket/*"},
        {"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "arn:aws:s3:::bucket/*"},
    ]}
    issues = {f.issue for f in analyze_policy_string(json.dumps(bad)).findings}
    assert {"UNKNOWN_ACTION", "RESOURCE_MISMATCH"} <= issues, issues
