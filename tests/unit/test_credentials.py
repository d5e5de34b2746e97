"""Database credentials off the URL: settings, the Secrets Manager source (moto), RDS IAM
tokens (signed locally by boto3), and what counts as a refused login. The whole path against
a real server, with a rotation, is tests/e2e/test_rehearsal.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from types import SimpleNamespace

import boto3
import pytest
from moto import mock_aws

from core.kernel import secrets
from core.kernel.config import settings_from_env
from core.kernel.db import credentials
from core.kernel.db.connect import postgres_options
from core.kernel.db.credentials import (
    Credentials,
    CredentialsError,
    IamTokenSource,
    SecretsManagerSource,
    is_auth_failure,
)

PG = "postgresql+psycopg://db.internal:5432/mnemo?sslmode=require"


@pytest.fixture(autouse=True)
def _fresh_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    credentials.forget()
    yield
    credentials.forget()


def test_settings_name_the_source_and_never_both() -> None:
    env = {
        "MNEMO_DATABASE_URL": PG,
        "MNEMO_DATABASE_SECRET_ARN": "arn:x",
        "AWS_REGION": "eu-west-1",
    }
    db = settings_from_env(env).database
    assert (db.secret_arn, db.iam_auth, db.region) == ("arn:x", False, "eu-west-1")
    with pytest.raises(ValueError, match="not both"):
        settings_from_env({**env, "MNEMO_DATABASE_IAM_AUTH": "true"})
    on_lambda = settings_from_env({**env, "AWS_LAMBDA_FUNCTION_NAME": "stack-ApiFunction-X"})
    assert on_lambda.database.application_name == "stack-ApiFunction-X"


def test_postgres_options_follow_the_settings() -> None:
    assert postgres_options(settings_from_env({})) is None  # SQLite
    assert postgres_options(settings_from_env({"MNEMO_DATABASE_URL": PG})) is None
    lam = settings_from_env(
        {
            "MNEMO_DATABASE_URL": PG,
            "MNEMO_DATABASE_SECRET_ARN": "arn:s",
            "AWS_LAMBDA_FUNCTION_NAME": "f",
        }
    )
    options = postgres_options(lam)
    assert options is not None
    assert options.one_connection and options.application_name == "f"
    assert options.credentials == SecretsManagerSource("arn:s", None)
    iam = settings_from_env(
        {
            "MNEMO_DATABASE_URL": "postgresql+psycopg://mnemo_iam@db.internal:5432/mnemo",
            "MNEMO_DATABASE_IAM_AUTH": "1",
        }
    )
    found = postgres_options(iam)
    assert found is not None
    assert found.credentials == IamTokenSource("db.internal", 5432, "mnemo_iam", None)
    assert not found.one_connection  # not on Lambda
    with pytest.raises(ValueError, match="database user"):
        postgres_options(
            settings_from_env({"MNEMO_DATABASE_URL": PG, "MNEMO_DATABASE_IAM_AUTH": "1"})
        )


@mock_aws
def test_the_secret_is_read_once_and_again_only_when_asked() -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(
        Name="db", SecretString=json.dumps({"username": "app", "password": "one", "port": "5432"})
    )["ARN"]
    source = SecretsManagerSource(arn, "us-east-1")
    first = source.current()
    assert (first.username, first.password, first.port, first.host) == ("app", "one", 5432, None)
    client.put_secret_value(
        SecretId=arn, SecretString=json.dumps({"username": "app", "password": "two"})
    )
    assert source.current().password == "one"  # cached for the instance
    assert source.fresh().password == "two"  # after the database refused "one"
    assert source.current().password == "two"
    credentials.forget()  # SnapStart's before-snapshot hook
    assert secrets._values == {}


@mock_aws
@pytest.mark.parametrize(
    "value", ["not json", json.dumps({"username": "app"}), json.dumps(["app", "pw"])]
)
def test_a_secret_without_credentials_says_what_it_needs(value: str) -> None:
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="bad", SecretString=value)["ARN"]
    with pytest.raises(CredentialsError, match="bad"):
        SecretsManagerSource(arn, "us-east-1").current()


@mock_aws
def test_a_missing_secret_is_an_error_naming_it() -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-AbCdEf"
    with pytest.raises(secrets.SecretError, match="nope"):
        SecretsManagerSource(arn, "us-east-1").current()


def test_credentials_never_show_the_password() -> None:
    shown = repr(Credentials("app", "hunter2-secret", host="db"))
    assert "hunter2" not in shown and "app" in shown


def test_an_iam_token_is_signed_locally_and_renewed(monkeypatch: pytest.MonkeyPatch) -> None:
    source = IamTokenSource(
        "db.cluster-x.us-east-1.rds.amazonaws.com", 5432, "mnemo_iam", "us-east-1"
    )
    token = source.current()
    assert token.username == "mnemo_iam"
    assert token.password is not None
    assert token.password.startswith("db.cluster-x.us-east-1.rds.amazonaws.com:5432/?")
    assert "Action=connect" in token.password and "DBUser=mnemo_iam" in token.password
    assert "X-Amz-Signature=" in token.password
    assert source.current() is token  # kept while young
    monkeypatch.setattr(credentials, "_TOKEN_SECONDS", 0)
    assert source.current() is not token  # signed anew before it could lapse


def test_what_counts_as_a_refused_login() -> None:
    assert is_auth_failure(SimpleNamespace(sqlstate="28P01"))  # type: ignore[arg-type]
    refused = Exception('FATAL:  password authentication failed for user "app"')
    assert is_auth_failure(refused)
    assert not is_auth_failure(Exception("connection refused: is the server running?"))
    assert not is_auth_failure(Exception("timeout expired"))


@mock_aws
def test_a_secret_with_a_max_age_is_read_again_when_older() -> None:
    """The single API key: a rotation must reach warm instances without a redeploy."""
    client = boto3.client("secretsmanager", region_name="us-east-1")
    arn = client.create_secret(Name="key", SecretString="sk-old")["ARN"]
    assert secrets.secret_string(arn, max_age=300) == "sk-old"
    client.put_secret_value(SecretId=arn, SecretString="sk-new")
    assert secrets.secret_string(arn, max_age=300) == "sk-old"
    assert secrets.secret_string(arn, max_age=0) == "sk-new"
