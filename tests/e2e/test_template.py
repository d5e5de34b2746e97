"""Offline checks of template.yaml: the SAM transform accepts it, cfn-lint passes it (before and
after the transform), and every handler it names imports to a callable. No network, no AWS
credentials: the region is given explicitly and the managed-policy lookup is a stub."""

from __future__ import annotations

import copy
import importlib
import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from cfnlint.api import lint
from samtranslator.public.parser import Parser
from samtranslator.public.translator import Translator

from core.kernel.config import settings_from_env

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


# --- the SAM transform --------------------------------------------------------------------


def test_transform_functions(transformed: dict[str, Any]) -> None:
    lambdas = resources_of(transformed, "AWS::Lambda::Function")
    assert set(lambdas) == {"ApiFunction", "MaintenanceFunction", "DeliveryFunction"}
    for name, res in lambdas.items():
        props = res["Properties"]
        assert props["Handler"] == "handlers.api.handler", name
        assert props["Runtime"] in ("python3.12", "python3.13"), name
        assert props["Architectures"] == ["arm64"], name
        assert props["MemorySize"] == 512, name
        assert props["Code"] == {"S3Bucket": "mnemo-artifacts", "S3Key": "mnemo.zip"}, name
        assert props["Environment"]["Variables"] == {
            "MNEMO_DATABASE_URL": {"Ref": "DatabaseUrl"},
            "MNEMO_API_KEY": {"Ref": "ApiKey"},
            "MNEMO_LOG_LEVEL": {"Ref": "LogLevel"},
            "MNEMO_MAX_BODY_BYTES": {"Ref": "MaxBodyBytes"},
            "MNEMO_SNAPSHOT_BUCKET": {"Ref": "SnapshotBucket"},
            "OPENBLAS_NUM_THREADS": "1",
            # Every function may send the webhook drain queue a message.
            "MNEMO_DELIVERY_QUEUE_URL": {"Ref": "DeliveryQueue"},
        }, name
    assert lambdas["ApiFunction"]["Properties"]["Timeout"] == 30
    # Snapshot payloads in S3: the API function's role may use the bucket when one is given.
    role = resources_of(transformed, "AWS::IAM::Role")["ApiFunctionRole"]["Properties"]
    snapshot_policy = [p for p in role["Policies"] if "Fn::If" in p]
    assert snapshot_policy[0]["Fn::If"][0] == "HasSnapshotBucket"


def test_transform_http_api(transformed: dict[str, Any]) -> None:
    apis = resources_of(transformed, "AWS::ApiGatewayV2::Api")
    assert set(apis) == {"HttpApi"}
    paths = apis["HttpApi"]["Properties"]["Body"]["paths"]
    assert set(paths) == {"/", "/{proxy+}"}
    for path, item in paths.items():
        integration = item["x-amazon-apigateway-any-method"]["x-amazon-apigateway-integration"]
        assert integration["type"] == "aws_proxy", path
        assert integration["payloadFormatVersion"] == "2.0", path
        # The published SnapStart version, through its alias: never $LATEST.
        assert "${ApiFunctionAliaslive}" in integration["uri"]["Fn::Sub"], path
    stages = resources_of(transformed, "AWS::ApiGatewayV2::Stage")
    assert [s["Properties"]["StageName"] for s in stages.values()] == ["$default"]
    assert all(s["Properties"]["AutoDeploy"] for s in stages.values())
    # API Gateway may invoke the function, on both routes.
    permissions = resources_of(transformed, "AWS::Lambda::Permission").values()
    apigw = [p for p in permissions if p["Properties"]["Principal"] == "apigateway.amazonaws.com"]
    assert len(apigw) == 2
    assert all(p["Properties"]["FunctionName"] == {"Ref": "ApiFunctionAliaslive"} for p in apigw)


def test_api_function_restores_from_a_snapstart_snapshot(transformed: dict[str, Any]) -> None:
    function = resources_of(transformed, "AWS::Lambda::Function")["ApiFunction"]
    assert function["Properties"]["SnapStart"] == {"ApplyOn": "PublishedVersions"}
    aliases = resources_of(transformed, "AWS::Lambda::Alias")
    assert [a["Properties"]["Name"] for a in aliases.values()] == ["live"]
    assert resources_of(transformed, "AWS::Lambda::Version")


def test_transform_function_url(transformed: dict[str, Any]) -> None:
    urls = resources_of(transformed, "AWS::Lambda::Url")
    assert list(urls) == ["ApiFunctionUrl"]
    props = urls["ApiFunctionUrl"]["Properties"]
    assert props["AuthType"] == "NONE"
    assert props["TargetFunctionArn"] == {"Ref": "ApiFunctionAliaslive"}
    # A public URL needs both permissions: InvokeFunctionUrl, and InvokeFunction via the URL.
    public = {
        p["Properties"]["Action"]: p["Properties"]
        for p in resources_of(transformed, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "*"
    }
    assert public["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert public["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True


def test_transform_schedule(transformed: dict[str, Any]) -> None:
    rules = [
        r
        for r in resources_of(transformed, "AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    assert len(rules) == 1
    (rule,) = rules
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": ["MaintenanceFunction", "Arn"]}
    events_permissions = [
        p
        for p in resources_of(transformed, "AWS::Lambda::Permission").values()
        if p["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    assert sorted(p["Properties"]["FunctionName"]["Ref"] for p in events_permissions) == [
        "DeliveryFunction",
        "MaintenanceFunction",
    ]


def test_transform_delivery_queue(transformed: dict[str, Any]) -> None:
    """The DeliveryFunction drains from SQS, with a dead-letter queue behind it; the memory
    events rule routes 'Mnemo Memory' EventBridge events to it."""
    queues = resources_of(transformed, "AWS::SQS::Queue")
    assert set(queues) == {"DeliveryQueue", "DeliveryDeadLetterQueue"}
    redrive = queues["DeliveryQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeliveryDeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] >= 1
    lambdas = resources_of(transformed, "AWS::Lambda::Function")
    visibility = queues["DeliveryQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= lambdas["DeliveryFunction"]["Properties"]["Timeout"]
    (mapping,) = resources_of(transformed, "AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["DeliveryQueue", "Arn"]}
    assert props["FunctionName"] == {"Ref": "DeliveryFunction"}
    memory_rules = [
        r["Properties"]
        for r in resources_of(transformed, "AWS::Events::Rule").values()
        if "EventPattern" in r["Properties"]
    ]
    assert [r["EventPattern"] for r in memory_rules] == [{"detail-type": ["Mnemo Memory"]}]
    assert memory_rules[0]["Targets"][0]["Arn"] == {"Fn::GetAtt": ["DeliveryFunction", "Arn"]}


def test_transform_outputs(transformed: dict[str, Any]) -> None:
    outputs = transformed["Outputs"]
    assert "${HttpApi}.execute-api." in outputs["HttpApiUrl"]["Value"]["Fn::Sub"]
    assert outputs["FunctionUrl"]["Value"] == {"Fn::GetAtt": ["ApiFunctionUrl", "FunctionUrl"]}


def test_parameters(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert set(params) == {"DatabaseUrl", "ApiKey", "LogLevel", "MaxBodyBytes", "SnapshotBucket"}
    for secret in ("DatabaseUrl", "ApiKey"):
        assert params[secret]["NoEcho"] is True
        assert params[secret]["Default"] == ""
    assert params["LogLevel"]["Default"] == "INFO"
    assert int(params["MaxBodyBytes"]["Default"]) == 1048576


def test_default_parameters_give_default_settings(template: dict[str, Any]) -> None:
    """Deployed with every default, the environment the template sets reads as 'unset': SQLite
    in /tmp, no env API key, INFO logs, a 1 MiB body limit."""
    params = template["Parameters"]
    variables = template["Globals"]["Function"]["Environment"]["Variables"]
    env = {
        name: value if isinstance(value, str) else str(params[value["Ref"]]["Default"])
        for name, value in variables.items()
    }
    env["AWS_LAMBDA_FUNCTION_NAME"] = "mnemo-ApiFunction"  # Lambda sets it
    settings = settings_from_env(env)
    assert settings.database_url == "sqlite:////tmp/mnemo/mnemo.db"
    assert settings.on_lambda
    assert settings.api_key is None
    assert settings.log_level == "INFO"
    assert settings.max_body_bytes == 1048576
    assert settings.snapshots.bucket is None


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
    assert set(found) == {"ApiFunction", "MaintenanceFunction", "DeliveryFunction"}
    assert all(isinstance(props.get("Handler"), str) for props in found.values())


@pytest.mark.parametrize("function", ["ApiFunction", "MaintenanceFunction", "DeliveryFunction"])
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
    """The two checks above are not vacuous: a bad value in Globals is reported."""
    broken = copy.deepcopy(template)
    broken["Globals"]["Function"]["MemorySize"] = 99999
    problems = _problems(lint(json.dumps(sam_transform(packaged(broken))), regions=[REGION]))
    assert any("E3034" in p for p in problems), problems
