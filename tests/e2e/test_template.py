"""Offline checks of template.yaml: the SAM transform accepts it, cfn-lint passes it (before and
after the transform), and every handler it names imports to a callable. No network, no AWS
credentials: the region is given explicitly and the managed-policy lookup is a stub."""

from __future__ import annotations

import copy
import importlib
import json
import re
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import lint
from samtranslator.public.parser import Parser
from samtranslator.public.translator import Translator

from core.kernel.config import settings_from_env
from scripts import package

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
REGION = "us-east-1"
# Mainstream regions with everything the template uses (arm64, python3.12, Function URLs).
LINT_REGIONS = ["us-east-1", "us-west-2", "eu-west-1", "eu-central-1", "ap-southeast-2"]
PACKAGED_CODE = "s3://mnemo-artifacts/mnemo.zip"
SAM_FUNCTION = "AWS::Serverless::Function"


class _CfnLoader(yaml.SafeLoader):
    """A SafeLoader that reads CloudFormation short forms (!Ref, !Sub, !GetAtt ...) as the long
    forms, without registering anything on yaml.SafeLoader itself as samtranslator's helper
    does."""


def _intrinsic(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "" if tag_suffix in ("Ref", "Condition") else "Fn::"
    value: Any
    if tag_suffix == "GetAtt" and isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node).split(".", 1)
    elif isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        assert isinstance(node, yaml.MappingNode)
        value = loader.construct_mapping(node, deep=True)
    return {name + tag_suffix: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict[str, Any]:
    loaded = yaml.load(TEMPLATE.read_text(), Loader=_CfnLoader)  # noqa: S506 (a SafeLoader)
    assert isinstance(loaded, dict)
    return loaded


def packaged(template: dict[str, Any]) -> dict[str, Any]:
    """What `sam package` hands to CloudFormation: local CodeUris replaced by S3 URIs."""
    out = copy.deepcopy(template)
    sections = [out.get("Globals", {}).get("Function", {})]
    sections += [r["Properties"] for r in out["Resources"].values() if r["Type"] == SAM_FUNCTION]
    for props in sections:
        code = props.get("CodeUri")
        if isinstance(code, str) and not code.startswith("s3://"):
            props["CodeUri"] = PACKAGED_CODE
    return out


def sam_transform(template: dict[str, Any]) -> dict[str, Any]:
    translator = Translator(None, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    # The managed-policy map is only consulted for policies named by name; none are.
    return translator.translate(copy.deepcopy(template), {}, get_managed_policy_map=dict)


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def transformed(template: dict[str, Any]) -> dict[str, Any]:
    return sam_transform(packaged(template))


def functions(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each SAM function's properties with the Globals merged in (shallowly, as SAM does for
    scalar properties)."""
    defaults = template.get("Globals", {}).get("Function", {})
    return {
        name: {**defaults, **res.get("Properties", {})}
        for name, res in template["Resources"].items()
        if res["Type"] == SAM_FUNCTION
    }


def resources_of(cfn: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in cfn["Resources"].items() if v["Type"] == type_}


# --- the template under a set of parameters ---------------------------------------------


def parameter_values(cfn: dict[str, Any], **overrides: str) -> dict[str, str]:
    values = {name: str(p.get("Default", "")) for name, p in cfn["Parameters"].items()}
    unknown = set(overrides) - set(values)
    assert not unknown, unknown
    return {**values, **overrides}


def _value(expr: Any, params: dict[str, str]) -> Any:
    if isinstance(expr, dict) and set(expr) == {"Ref"} and expr["Ref"] in params:
        return params[expr["Ref"]]
    if isinstance(expr, dict) and "Fn::Join" in expr:
        sep, parts = expr["Fn::Join"]
        parts = _value(parts, params)
        parts = parts.split(",") if isinstance(parts, str) else parts
        return sep.join(str(_value(p, params)) for p in parts)
    return expr


def _condition(expr: Any, cfn: dict[str, Any], params: dict[str, str]) -> bool:
    (name, arg), *_ = expr.items()
    if name == "Condition":
        return _condition(cfn["Conditions"][arg], cfn, params)
    if name == "Fn::Equals":
        return bool(_value(arg[0], params) == _value(arg[1], params))
    if name == "Fn::Not":
        return not _condition(arg[0], cfn, params)
    if name == "Fn::And":
        return all(_condition(a, cfn, params) for a in arg)
    if name == "Fn::Or":
        return any(_condition(a, cfn, params) for a in arg)
    raise AssertionError(f"condition function {name} not handled")


_NO_VALUE = object()


def resolve(cfn: dict[str, Any], **overrides: str) -> dict[str, Any]:
    """The template as CloudFormation would create it with these parameters: resources and
    outputs whose condition is false dropped, every Fn::If decided, AWS::NoValue removed,
    parameter Refs replaced by their values."""
    params = parameter_values(cfn, **overrides)
    holds = {name: _condition(c, cfn, params) for name, c in cfn.get("Conditions", {}).items()}

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"}:
                name, yes, no = node["Fn::If"]
                return walk(yes if holds[name] else no)
            if node == {"Ref": "AWS::NoValue"}:
                return _NO_VALUE
            if set(node) == {"Ref"} and node["Ref"] in params:
                return params[node["Ref"]]
            out = {k: walk(v) for k, v in node.items()}
            return {k: v for k, v in out.items() if v is not _NO_VALUE}
        if isinstance(node, list):
            return [v for v in (walk(x) for x in node) if v is not _NO_VALUE]
        return node

    out = copy.deepcopy(cfn)
    for section in ("Resources", "Outputs"):
        out[section] = {
            k: walk(v)
            for k, v in cfn.get(section, {}).items()
            if "Condition" not in v or holds[v["Condition"]]
        }
    return out


def strings(node: Any) -> list[str]:
    if isinstance(node, str):
        return [node]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in [k, *strings(v)]]
    if isinstance(node, list):
        return [s for v in node for s in strings(v)]
    return []


STORE_MODES = ["aurora", "existing", "ephemeral-demo"]
EXISTING = {
    "StoreMode": "existing",
    "ExistingDatabaseSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf",
    "ExistingDatabaseHost": "db.internal.example",
    "ExistingSecurityGroupId": "sg-0123456789abcdef0",
    "PrivateSubnetIds": "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb",
}


def mode_parameters(mode: str) -> dict[str, str]:
    return EXISTING if mode == "existing" else {"StoreMode": mode}


@pytest.fixture(scope="module")
def deployed(transformed: dict[str, Any]) -> dict[str, Any]:
    """Every default parameter: what `sam deploy` creates when asked nothing."""
    return resolve(transformed)


# --- the SAM transform --------------------------------------------------------------------

FUNCTION_NAMES = {"ApiFunction", "MaintenanceFunction", "DeliveryFunction", "IngestFunction"}


def test_transform_functions(transformed: dict[str, Any]) -> None:
    lambdas = resources_of(transformed, "AWS::Lambda::Function")
    assert set(lambdas) == FUNCTION_NAMES
    for name, res in lambdas.items():
        props = res["Properties"]
        assert props["Handler"] == "handlers.api.handler", name
        assert props["Runtime"] in ("python3.12", "python3.13"), name
        assert props["Architectures"] == ["arm64"], name
        assert props["MemorySize"] == 512, name
        assert props["Code"] == {"S3Bucket": "mnemo-artifacts", "S3Key": "mnemo.zip"}, name
        # sam build runs the Makefile for it: the code and its wheels, nothing else.
        assert res["Metadata"]["BuildMethod"] == "makefile", name
    assert lambdas["ApiFunction"]["Properties"]["Timeout"] == 30
    # Snapshot payloads in S3: the API function's role may use the bucket when one is given.
    role = resources_of(transformed, "AWS::IAM::Role")["ApiFunctionRole"]["Properties"]
    conditional = [p["Fn::If"][0] for p in role["Policies"] if "Fn::If" in p]
    assert "HasSnapshotBucket" in conditional


def test_one_store_for_all_functions(deployed: dict[str, Any]) -> None:
    """Default parameters: one Aurora cluster, and every function is told the same URL (no
    password in it) and the same secret."""
    (cluster,) = resources_of(deployed, "AWS::RDS::DBCluster")
    envs = [
        res["Properties"]["Environment"]["Variables"]
        for res in resources_of(deployed, "AWS::Lambda::Function").values()
    ]
    assert len(envs) == len(FUNCTION_NAMES)
    for env in envs[1:]:
        assert env["MNEMO_DATABASE_URL"] == envs[0]["MNEMO_DATABASE_URL"]
        assert env["MNEMO_DATABASE_SECRET_ARN"] == envs[0]["MNEMO_DATABASE_SECRET_ARN"]
    url = envs[0]["MNEMO_DATABASE_URL"]["Fn::Sub"]
    assert url.startswith(f"postgresql+psycopg://${{{cluster}.Endpoint.Address}}:")
    assert url.endswith("?sslmode=require")
    assert "@" not in url
    assert envs[0]["MNEMO_DATABASE_SECRET_ARN"] == {
        "Fn::GetAtt": [cluster, "MasterUserSecret.SecretArn"]
    }
    # Each function may read that secret, and only the functions may.
    for name in FUNCTION_NAMES:
        role = deployed["Resources"][f"{name}Role"]["Properties"]
        readable = [
            # SAM's policy templates wrap the ARN in a Fn::Sub; IngestFunctionRole names it.
            st["Resource"]["Fn::Sub"][1]["secretArn"]
            if "Fn::Sub" in st["Resource"]
            else st["Resource"]
            for p in role["Policies"]
            for st in p["PolicyDocument"]["Statement"]
            if st["Action"] in (["secretsmanager:GetSecretValue"], "secretsmanager:GetSecretValue")
        ]
        assert {"Fn::GetAtt": [cluster, "MasterUserSecret.SecretArn"]} in readable, name


def test_aurora_serverless_v2_scales_to_zero(deployed: dict[str, Any]) -> None:
    (cluster,) = resources_of(deployed, "AWS::RDS::DBCluster").values()
    props = cluster["Properties"]
    assert props["Engine"] == "aurora-postgresql"
    # 0 ACU needs 13.15, 14.12, 15.7, 16.3 or later; all of them have pgvector.
    major, minor = (int(x) for x in props["EngineVersion"].split("."))
    assert (major, minor) >= {13: (13, 15), 14: (14, 12), 15: (15, 7)}.get(major, (16, 3))
    scaling = props["ServerlessV2ScalingConfiguration"]
    assert scaling["MinCapacity"] == 0
    assert 300 <= int(scaling["SecondsUntilAutoPause"]) <= 86400
    assert int(scaling["MaxCapacity"]) >= 1
    # The password: generated by RDS into Secrets Manager, never in the template.
    assert props["ManageMasterUserPassword"] is True
    assert "MasterUserPassword" not in props
    assert props["StorageEncrypted"] is True
    assert cluster["DeletionPolicy"] == "Snapshot"
    (instance,) = resources_of(deployed, "AWS::RDS::DBInstance").values()
    assert instance["Properties"]["DBInstanceClass"] == "db.serverless"
    assert instance["Properties"]["PubliclyAccessible"] is False
    # TLS only: the cluster refuses unencrypted connections.
    (group,) = resources_of(deployed, "AWS::RDS::DBClusterParameterGroup").values()
    assert group["Properties"]["Parameters"]["rds.force_ssl"] == "1"
    sep, (prefix, major_of) = group["Properties"]["Family"]["Fn::Join"]
    assert (sep, prefix) == ("", "aurora-postgresql")
    assert major_of == {"Fn::Select": [0, {"Fn::Split": [".", props["EngineVersion"]]}]}
    # No RDS Proxy: it would keep the cluster from ever pausing (docs/deploy.md).
    assert not resources_of(deployed, "AWS::RDS::DBProxy")


@pytest.mark.parametrize("mode", STORE_MODES)
def test_no_plaintext_secret_anywhere(transformed: dict[str, Any], mode: str) -> None:
    cfn = resolve(transformed, **mode_parameters(mode))
    # No parameter takes a secret (NoEcho would only hide it from the console).
    assert not [n for n, p in transformed["Parameters"].items() if p.get("NoEcho")]
    for name, res in resources_of(cfn, "AWS::Lambda::Function").items():
        env = res["Properties"]["Environment"]["Variables"]
        for var in env:
            assert not var.endswith(("PASSWORD", "_TOKEN", "API_KEY", "_SECRET")), (name, var)
        for text in strings(env):
            assert "password" not in text.lower(), (name, text)
    # No URL with user info anywhere, no password property, no inline secret string.
    userinfo = re.compile(r"[a-z+]+://[^/@\s:]*:[^/@\s]+@")
    assert not [t for t in strings(cfn) if userinfo.search(t)]
    for res in cfn["Resources"].values():
        assert "MasterUserPassword" not in res.get("Properties", {})
        if res["Type"] == "AWS::SecretsManager::Secret":
            assert "SecretString" not in res["Properties"]
            assert "GenerateSecretString" in res["Properties"]


@pytest.mark.parametrize("mode", ["aurora", "existing"])
def test_functions_reach_the_database_in_the_vpc(transformed: dict[str, Any], mode: str) -> None:
    cfn = resolve(transformed, **mode_parameters(mode))
    configs = [
        res["Properties"].get("VpcConfig")
        for res in resources_of(cfn, "AWS::Lambda::Function").values()
    ]
    assert all(configs) and all(c == configs[0] for c in configs)
    if mode == "existing":
        assert configs[0]["SecurityGroupIds"] == [EXISTING["ExistingSecurityGroupId"]]
        assert configs[0]["SubnetIds"] == EXISTING["PrivateSubnetIds"]
        assert not resources_of(cfn, "AWS::RDS::DBCluster")
        env = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
        assert env["MNEMO_DATABASE_SECRET_ARN"] == EXISTING["ExistingDatabaseSecretArn"]
        return
    assert configs[0] == {
        "SecurityGroupIds": [{"Ref": "FunctionSecurityGroup"}],
        "SubnetIds": [{"Ref": "PrivateSubnetA"}, {"Ref": "PrivateSubnetB"}],
    }
    subnets = resources_of(cfn, "AWS::EC2::Subnet")
    zones = [
        subnets[s]["Properties"]["AvailabilityZone"] for s in ("PrivateSubnetA", "PrivateSubnetB")
    ]
    assert zones == [
        {"Fn::Select": [0, {"Fn::GetAZs": ""}]},
        {"Fn::Select": [1, {"Fn::GetAZs": ""}]},
    ]
    assert "MapPublicIpOnLaunch" not in subnets["PrivateSubnetA"]["Properties"]
    # The database admits PostgreSQL from the functions' security group and nothing else.
    (ingress,) = cfn["Resources"]["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert (ingress["FromPort"], ingress["ToPort"]) == (5432, 5432)
    assert ingress["SourceSecurityGroupId"] == {"Ref": "FunctionSecurityGroup"}
    (group,) = resources_of(cfn, "AWS::RDS::DBSubnetGroup").values()
    assert group["Properties"]["SubnetIds"] == configs[0]["SubnetIds"]
    # Outbound (webhooks, remote embedders, AWS APIs): the private subnets route to a NAT.
    routes = resources_of(cfn, "AWS::EC2::Route")
    assert routes["PrivateDefaultRoute"]["Properties"]["NatGatewayId"] == {"Ref": "NatGateway"}
    assert len(resources_of(cfn, "AWS::EC2::NatGateway")) == 1


def test_an_operator_named_vpc(transformed: dict[str, Any]) -> None:
    subnets = "subnet-0aaaaaaaaaaaaaaaa,subnet-0bbbbbbbbbbbbbbbb"
    cfn = resolve(transformed, VpcId="vpc-0123456789abcdef0", PrivateSubnetIds=subnets)
    assert not resources_of(cfn, "AWS::EC2::VPC")
    assert not resources_of(cfn, "AWS::EC2::NatGateway")
    api = cfn["Resources"]["ApiFunction"]["Properties"]
    assert api["VpcConfig"]["SubnetIds"] == subnets
    assert cfn["Resources"]["FunctionSecurityGroup"]["Properties"]["VpcId"] == (
        "vpc-0123456789abcdef0"
    )
    assert resources_of(cfn, "AWS::RDS::DBCluster")


def test_ephemeral_demo_only_when_chosen(transformed: dict[str, Any]) -> None:
    cfn = resolve(transformed, StoreMode="ephemeral-demo")
    assert not resources_of(cfn, "AWS::RDS::DBCluster")
    assert not resources_of(cfn, "AWS::EC2::VPC")
    for res in resources_of(cfn, "AWS::Lambda::Function").values():
        assert "VpcConfig" not in res["Properties"]
        assert res["Properties"]["Environment"]["Variables"]["MNEMO_DATABASE_URL"] == ""
    assert "NOT durable" in cfn["Outputs"]["StoreMode"]["Value"]
    assert transformed["Parameters"]["StoreMode"]["Default"] == "aurora"


def test_alarms(deployed: dict[str, Any]) -> None:
    alarms = resources_of(deployed, "AWS::CloudWatch::Alarm")
    assert len(alarms) >= 4

    def watched(alarm: dict[str, Any]) -> set[str]:
        props = alarm["Properties"]
        if "MetricName" in props:
            return {props["MetricName"]}
        return {
            m["MetricStat"]["Metric"]["MetricName"] for m in props["Metrics"] if "MetricStat" in m
        }

    metrics = [watched(a) for a in alarms.values()]
    for wanted in ("5xx", "Errors", "Throttles", "ServerlessDatabaseCapacity"):
        assert any(wanted in m for m in metrics), wanted
    queues = {
        d["Value"]["Fn::GetAtt"][0]
        for a in alarms.values()
        for d in a["Properties"].get("Dimensions", [])
        if d["Name"] == "QueueName"
    }
    assert queues == {
        "DeliveryDeadLetterQueue",
        "EventsDeadLetterQueue",
        "IngestDeadLetterQueue",
        "IngestQueue",  # its backlog: a job waiting an hour is reported abandoned
    }
    assert any("ApproximateAgeOfOldestMessage" in m for m in metrics)
    for name, alarm in alarms.items():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": "AlarmTopic"}], name
    # Every function is in the error and throttle sums.
    errors = next(a for a in alarms.values() if watched(a) == {"Errors"})
    counted = {
        m["MetricStat"]["Metric"]["Dimensions"][0]["Value"]["Ref"]
        for m in errors["Properties"]["Metrics"]
        if "MetricStat" in m
    }
    assert counted == FUNCTION_NAMES


def test_log_retention(deployed: dict[str, Any]) -> None:
    assert deployed["Parameters"]["LogRetentionDays"]["Default"] == 30
    groups = resources_of(deployed, "AWS::Logs::LogGroup")
    assert all(g["Properties"]["RetentionInDays"] == "30" for g in groups.values())
    for name, res in resources_of(deployed, "AWS::Lambda::Function").items():
        group = res["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert group in groups, name
    stage = next(iter(resources_of(deployed, "AWS::ApiGatewayV2::Stage").values()))
    assert stage["Properties"]["AccessLogSettings"]["DestinationArn"] == {
        "Fn::GetAtt": ["HttpApiLogGroup", "Arn"]
    }


def test_transform_http_api(deployed: dict[str, Any]) -> None:
    apis = resources_of(deployed, "AWS::ApiGatewayV2::Api")
    assert set(apis) == {"HttpApi"}
    paths = apis["HttpApi"]["Properties"]["Body"]["paths"]
    assert set(paths) == {"/", "/{proxy+}"}
    for path, item in paths.items():
        integration = item["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", path
        assert integration["payloadFormatVersion"] == "2.0", path
        # The published SnapStart version, through its alias: never $LATEST.
        assert "${ApiFunctionAliaslive}" in integration["uri"]["Fn::Sub"], path
    stages = resources_of(deployed, "AWS::ApiGatewayV2::Stage")
    assert [s["Properties"]["StageName"] for s in stages.values()] == ["$default"]
    stage = next(iter(stages.values()))["Properties"]
    assert stage["AutoDeploy"]
    # Throttled before it reaches the function (and the database).
    assert stage["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": "50",
        "ThrottlingBurstLimit": "100",
    }
    permissions = resources_of(deployed, "AWS::Lambda::Permission").values()
    apigw = [p for p in permissions if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert len(apigw) == 2
    assert all(p["Properties"]["FunctionName"] == {"Ref": "ApiFunctionAliaslive"} for p in apigw)


def test_api_function_restores_from_a_snapstart_snapshot(transformed: dict[str, Any]) -> None:
    function = resources_of(transformed, "AWS::Lambda::Function")["ApiFunction"]
    assert function["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    aliases = resources_of(transformed, "AWS::Lambda::Alias")
    assert [a["Properties"]["Name"] for a in aliases.values()] == ["live"]
    assert resources_of(transformed, "AWS::Lambda::Version")


def test_function_url_is_off_unless_asked_and_never_public(transformed: dict[str, Any]) -> None:
    deployed = resolve(transformed)
    assert not resources_of(deployed, "AWS::Lambda::Url")
    assert "FunctionUrl" not in deployed["Outputs"]
    on = resolve(transformed, FunctionUrl="iam")
    (url,) = resources_of(on, "AWS::Lambda::Url").values()
    assert url["Properties"]["AuthType"] == "AWS_IAM"
    assert url["Properties"]["TargetFunctionArn"] == {"Ref": "ApiFunctionAliaslive"}
    assert transformed["Parameters"]["FunctionUrl"]["AllowedValues"] == ["off", "iam"]
    for cfn in (deployed, on):
        public = [
            p
            for p in resources_of(cfn, "AWS::Lambda::Permission").values()
            if p["Properties"]["Principal"] == "*"
        ]
        assert public == []


def test_transform_schedule(deployed: dict[str, Any]) -> None:
    rules = [
        r
        for r in resources_of(deployed, "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["MaintenanceFunction", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}}
    events_permissions = [
        p
        for p in resources_of(deployed, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert sorted(p["Properties"]["FunctionName"]["Ref"] for p in events_permissions) == [
        "DeliveryFunction",
        "MaintenanceFunction",
    ]


def test_no_event_is_lost(deployed: dict[str, Any]) -> None:
    """SQS drains dead-letter after 5 receives; EventBridge events dead-letter when they cannot
    be delivered (the target's DLQ) and when the function raised on them (Lambda's
    asynchronous retries, then OnFailure); the memory rule takes Mnemo's own sources only."""
    queues = resources_of(deployed, "AWS::SQS::Queue")
    assert set(queues) == {
        "DeliveryQueue",
        "DeliveryDeadLetterQueue",
        "EventsDeadLetterQueue",
        "IngestQueue",
        "IngestDeadLetterQueue",
    }
    lambdas = resources_of(deployed, "AWS::Lambda::Function")
    mappings = {
        m["Properties"]["FunctionName"]["Ref"]: m["Properties"]
        for m in resources_of(deployed, "AWS::Lambda::EventSourceMapping").values()
    }
    assert set(mappings) == {"DeliveryFunction", "IngestFunction"}
    for queue, function in (
        ("DeliveryQueue", "DeliveryFunction"),
        ("IngestQueue", "IngestFunction"),
    ):
        props = queues[queue]["Properties"]
        redrive = props["RedrivePolicy"]
        dead = queue.replace("Queue", "DeadLetterQueue")
        assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": [dead, "Arn"]}, queue
        assert redrive["maxReceiveCount"] >= 1
        assert props["VisibilityTimeout"] >= lambdas[function]["Properties"]["Timeout"], queue
        assert mappings[function]["EventSourceArn"] == {"Fn::GetAtt": [queue, "Arn"]}
        assert mappings[function]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]

    (memory_rule,) = [
        r["Properties"]
        for r in resources_of(deployed, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    assert memory_rule["EventPattern"] == {
        "source": [{"prefix": "mnemo."}],
        "detail-type": ["Mnemo Memory"],
    }
    (target,) = memory_rule["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["DeliveryFunction", "Arn"]}
    dlq = {"Fn::GetAtt": ["EventsDeadLetterQueue", "Arn"]}
    assert target["DeadLetterConfig"] == {"Arn": dlq}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    # The sample event is one the rule accepts.
    sample = json.loads((ROOT / "events" / "eventbridge.json").read_text())
    assert sample["source"].startswith("mnemo.")
    assert sample["detail-type"] == "Mnemo Memory"
    configs = resources_of(deployed, "AWS::Lambda::EventInvokeConfig")
    for name in ("DeliveryFunction", "MaintenanceFunction"):
        (config,) = [c for c in configs.values() if c["Properties"]["FunctionName"]["Ref"] == name]
        assert config["Properties"]["DestinationConfig"]["OnFailure"]["Destination"] == dlq
    # EventBridge may send to the queue for this stack's two rules only.
    (policy,) = resources_of(deployed, "AWS::SQS::QueuePolicy").values()
    (statement,) = policy["Properties"]["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(
        a["Fn::GetAtt"][0] for a in statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    ) == [
        "DeliveryFunctionMemoryEvents",
        "MaintenanceFunctionHourly",
    ]


def test_async_jobs_leave_the_api_at_once(deployed: dict[str, Any]) -> None:
    """async_mode: only the API function starts jobs (it alone is told the queue and may send
    to it); the IngestFunction runs them outside API Gateway's 30 s, with a role that reaches
    only its own queue; and the job lease (core/app/jobs.py) fits the queue's timings."""
    from core.app import jobs

    lambdas = resources_of(deployed, "AWS::Lambda::Function")
    told = {
        name
        for name, res in lambdas.items()
        if "MNEMO_INGEST_QUEUE_URL" in res["Properties"]["Environment"]["Variables"]
    }
    assert told == {"ApiFunction"}
    env = lambdas["ApiFunction"]["Properties"]["Environment"]["Variables"]
    assert env["MNEMO_INGEST_QUEUE_URL"] == {"Ref": "IngestQueue"}

    def statements(role: str) -> list[dict[str, Any]]:
        policies = deployed["Resources"][role]["Properties"]["Policies"]
        return [st for p in policies for st in p["PolicyDocument"]["Statement"]]

    def on_ingest_queue(statement: dict[str, Any]) -> bool:
        return "IngestQueue" in json.dumps(statement["Resource"])

    senders = {
        name
        for name in FUNCTION_NAMES
        for st in statements(f"{name}Role")
        if on_ingest_queue(st) and "sqs:SendMessage" in json.dumps(st["Action"])
    }
    assert senders == {"ApiFunction"}
    worker = lambdas["IngestFunction"]["Properties"]
    assert worker["Role"] == {"Fn::GetAtt": ["IngestFunctionRole", "Arn"]}
    own = statements("IngestFunctionRole")
    assert all(st["Resource"] != "*" for st in own)
    (taking,) = [st for st in own if on_ingest_queue(st)]
    assert "sqs:SendMessage" not in taking["Action"]
    assert "sqs:ReceiveMessage" in taking["Action"] and "sqs:DeleteMessage" in taking["Action"]
    role = deployed["Resources"]["IngestFunctionRole"]["Properties"]
    assert "AWSLambdaSQSQueueExecutionRole" not in json.dumps(role.get("ManagedPolicyArns", []))

    timeout = worker["Timeout"]
    queue = resources_of(deployed, "AWS::SQS::Queue")["IngestQueue"]["Properties"]
    visibility, receives = queue["VisibilityTimeout"], queue["RedrivePolicy"]["maxReceiveCount"]
    assert timeout > lambdas["ApiFunction"]["Properties"]["Timeout"]
    # A live runner keeps its lease; a redelivered message finds a dead runner's lapsed.
    assert timeout * 1000 < jobs.LEASE_MS < visibility * 1000
    # A job is reported abandoned only once no delivery of its message can still come.
    assert receives * visibility * 1000 < jobs.ABANDONED_MS
    (mapping,) = [
        m["Properties"]
        for m in resources_of(deployed, "AWS::Lambda::EventSourceMapping").values()
        if m["Properties"]["FunctionName"] == {"Ref": "IngestFunction"}
    ]
    assert mapping["BatchSize"] == 1
    assert mapping["ScalingConfig"]["MaximumConcurrency"] >= 2


def test_outputs(transformed: dict[str, Any], deployed: dict[str, Any]) -> None:
    outputs = deployed["Outputs"]
    assert "${HttpApi}.execute-api." in outputs["HttpApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["McpUrl"]["Value"]["Fn::Sub"].endswith("/mcp")
    assert outputs["ConsoleUrl"]["Value"]["Fn::Sub"].endswith("/console")
    assert outputs["DatabaseSecretArn"]["Value"] == {
        "Fn::GetAtt": ["DatabaseCluster", "MasterUserSecret.SecretArn"]
    }
    assert outputs["ApiKeySecretArn"]["Value"] == {"Ref": "ApiKeySecret"}
    assert outputs["StoreMode"]["Value"].startswith("aurora")
    pinned = resolve(transformed, PublicUrl="https://mnemo.example.com")["Outputs"]
    assert pinned["McpUrl"]["Value"] == {"Fn::Sub": "${PublicUrl}/mcp"}


_RESOLVED = {
    "DatabaseCluster.Endpoint.Address": "mnemo.cluster-c1.us-east-1.rds.amazonaws.com",
    "DatabaseCluster.Endpoint.Port": "5432",
}


def _sub(value: Any, params: dict[str, str]) -> str:
    if isinstance(value, str):
        return value
    if "Fn::Sub" in value:
        text = value["Fn::Sub"]
        return re.sub(r"\$\{([^}]+)\}", lambda m: _RESOLVED.get(m[1]) or params[m[1]], text)
    if "Fn::GetAtt" in value:
        return "arn:aws:secretsmanager:us-east-1:123456789012:secret:rds!cluster-1-AbCdEf"
    assert set(value) == {"Ref"}, value
    return {
        "DeliveryQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/mnemo-DeliveryQueue",
        "IngestQueue": "https://sqs.us-east-1.amazonaws.com/123456789012/mnemo-IngestQueue",
        "ApiKeySecret": "arn:aws:secretsmanager:us-east-1:123456789012:secret:ApiKey-AbCdEf",
    }[value["Ref"]]


def test_default_parameters_give_settings_for_the_durable_store(
    transformed: dict[str, Any],
) -> None:
    """Deployed with every default, the environment reads as: PostgreSQL over TLS, the password
    from the secret, the single key from its own secret, OAuth open to the big clients."""
    params = parameter_values(transformed)
    variables = resolve(transformed)["Resources"]["ApiFunction"]["Properties"]["Environment"]
    env = {name: _sub(value, params) for name, value in variables["Variables"].items()}
    env["AWS_LAMBDA_FUNCTION_NAME"] = "mnemo-ApiFunction-AbC"  # Lambda sets these
    env["AWS_REGION"] = REGION
    settings = settings_from_env(env)
    assert settings.store_kind == "postgresql"
    assert settings.database_url == (
        "postgresql+psycopg://mnemo.cluster-c1.us-east-1.rds.amazonaws.com:5432/mnemo"
        "?sslmode=require"
    )
    assert (
        settings.database.secret_arn is not None and "rds!cluster" in settings.database.secret_arn
    )
    assert settings.database.region == REGION
    assert settings.api_key is None and settings.api_key_secret_arn is not None
    assert settings.single_key_mode
    assert settings.auth.public_url is None
    for client in ("claude.ai", "chatgpt.com", "vscode.dev", "cursor:", "127.0.0.1"):
        assert client in settings.auth.open_registration_domains, client
    assert settings.log_level == "INFO"
    assert settings.max_body_bytes == 1048576
    assert settings.snapshots.bucket is None
    assert settings.webhooks.queue_url is not None
    assert settings.extraction.queue_url is not None
    # The semantic model the package ships (scripts/package.py packs it into minilm/).
    assert settings.embedder.kind == "minilm"
    assert settings.embedder.local_model_path == f"/var/task/{package.MODEL_DIR}"
    assert env["OPENBLAS_NUM_THREADS"] == "1"


@pytest.mark.parametrize("embedder", ["minilm", "builtin"])
def test_every_function_embeds_with_the_chosen_embedder(
    transformed: dict[str, Any], embedder: str
) -> None:
    """Every function embeds (writes, maintenance, EventBridge memories) and must agree,
    or one would write vectors the others cannot search."""
    assert transformed["Parameters"]["Embedder"]["Default"] == "minilm"
    assert transformed["Parameters"]["Embedder"]["AllowedValues"] == ["minilm", "builtin"]
    params = parameter_values(transformed, Embedder=embedder)
    cfn = resolve(transformed, Embedder=embedder)
    chosen = set()
    for res in resources_of(cfn, "AWS::Lambda::Function").values():
        variables = res["Properties"]["Environment"]["Variables"]
        env = {name: _sub(value, params) for name, value in variables.items()}
        settings = settings_from_env({**env, "AWS_LAMBDA_FUNCTION_NAME": "mnemo-f"})
        chosen.add((settings.embedder.kind, settings.embedder.local_model_path))
    expected = "/var/task/minilm" if embedder == "minilm" else None
    assert chosen == {(embedder, expected)}


def test_ephemeral_demo_settings(transformed: dict[str, Any]) -> None:
    params = parameter_values(transformed, StoreMode="ephemeral-demo")
    cfn = resolve(transformed, StoreMode="ephemeral-demo")
    variables = cfn["Resources"]["ApiFunction"]["Properties"]["Environment"]["Variables"]
    env = {name: _sub(value, params) for name, value in variables.items()}
    env["AWS_LAMBDA_FUNCTION_NAME"] = "mnemo-ApiFunction"
    settings = settings_from_env(env)
    assert settings.database_url == "sqlite:////tmp/mnemo/mnemo.db"
    assert settings.database.secret_arn is None


# --- cfn-lint -----------------------------------------------------------------------------


def _problems(matches: list[Any]) -> list[str]:
    """Errors and warnings; informational matches (I...) are not failures."""
    return [str(m) for m in matches if not m.rule.id.startswith("I")]


def test_cfn_lint_transformed(transformed: dict[str, Any]) -> None:
    assert _problems(lint(json.dumps(transformed), regions=LINT_REGIONS)) == []


def test_cfn_lint_sam_template() -> None:
    # cfn-lint also validates the SAM template itself against the SAM resource schemas.
    assert _problems(lint(TEMPLATE.read_text(), regions=LINT_REGIONS)) == []


# --- handlers -----------------------------------------------------------------------------


def test_every_function_has_a_handler(template: dict[str, Any]) -> None:
    found = functions(template)
    assert set(found) == FUNCTION_NAMES
    assert all(isinstance(props.get("Handler"), str) for props in found.values())


@pytest.mark.parametrize("function", sorted(FUNCTION_NAMES))
def test_handler_imports_to_a_callable(template: dict[str, Any], function: str) -> None:
    handler = functions(template)[function]["Handler"]
    module_name, _, attribute = handler.rpartition(".")
    assert module_name and attribute, handler
    # The module sits where CodeUri points: the repository root.
    code_uri = functions(template)[function]["CodeUri"]
    assert (ROOT / code_uri / Path(*module_name.split("."))).with_suffix(".py").is_file()
    target = getattr(importlib.import_module(module_name), attribute)
    assert callable(target), handler


def test_cfn_lint_would_catch_a_broken_template(template: dict[str, Any]) -> None:
    """The two checks above are not vacuous: a bad value in Globals is reported. (On the
    template's Globals and one function only: linting the whole stack again costs seconds.)"""
    broken = copy.deepcopy(template)
    broken["Globals"]["Function"]["MemorySize"] = 99999
    for dropped in ("VpcConfig", "Environment"):  # they name the stack's other resources
        del broken["Globals"]["Function"][dropped]
    function = broken["Resources"]["MaintenanceFunction"]
    function["Properties"] = {"Description": "broken", "Timeout": 300}
    broken["Resources"] = {"MaintenanceFunction": function}
    broken.pop("Outputs")
    problems = _problems(lint(json.dumps(sam_transform(packaged(broken))), regions=[REGION]))
    assert any("E3034" in p for p in problems), problems
