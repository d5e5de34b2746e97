"""The settings reader: every setting declared once, read by one generic reader."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from core.kernel import config
from core.kernel.config import (
    CorsSettings,
    EmbedderSettings,
    Limits,
    McpSettings,
    RankingSettings,
    Rate,
    RateLimitSettings,
    Settings,
    SettingsError,
    SummarySettings,
    Var,
    from_env,
    settings_from_env,
)

ROOT = Path(__file__).resolve().parents[2]


def _declared() -> list[tuple[type, dataclasses.Field[Any], Var]]:
    """(group, field, declaration) of every configurable field, all groups included."""
    out: list[tuple[type, dataclasses.Field[Any], Var]] = []
    for cls in (Settings, *(f.default_factory for f in dataclasses.fields(Settings))):
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            continue
        for f in dataclasses.fields(cls):
            spec = f.metadata.get("mnemo.setting")
            if isinstance(spec, Var):
                out.append((cls, f, spec))
    return out


# --- defaults and emptiness ---------------------------------------------------------------------


def test_no_variables_give_the_dataclass_defaults() -> None:
    settings = settings_from_env({})
    for f in dataclasses.fields(Settings):
        if f.default_factory is not dataclasses.MISSING and f.name != "rules":
            assert getattr(settings, f.name) == f.default_factory(), f.name
    assert settings.rate_limits.rules == config.DEFAULT_RATES
    assert settings.log_level == "INFO" and settings.default_brain == "default"


def test_empty_variables_mean_unset(tmp_path: object) -> None:
    settings = settings_from_env(
        {
            "MNEMO_LOG_LEVEL": "",
            "MNEMO_DEFAULT_BRAIN": "  ",
            "MNEMO_API_KEY": "",
            "MNEMO_DATABASE_URL": "",
            "MNEMO_MAX_TAGS": " ",
            "MNEMO_SIGNUP_ENABLED": "",
            "MNEMO_RATE_LIMIT_LOGIN_IP": "",
        }
    )
    assert settings.log_level == "INFO"
    assert settings.default_brain == "default"
    assert settings.api_key is None
    assert settings.database_url.startswith("sqlite:///")
    assert settings.limits.tags == 64 and settings.auth.signup_enabled
    assert settings.rate_limits.rule("login.ip") == Rate(60, 300)


def test_lambda_defaults_to_tmp() -> None:
    settings = settings_from_env({"AWS_LAMBDA_FUNCTION_NAME": "mnemo-api"})
    assert settings.on_lambda
    assert settings.database_url == "sqlite:////tmp/mnemo/mnemo.db"
    assert settings.database.application_name == "mnemo-api"


def test_the_default_database_is_in_the_data_folder(tmp_path: Path) -> None:
    settings = settings_from_env({"MNEMO_DATA_DIR": str(tmp_path / "d")})
    assert settings.database_url == f"sqlite:///{tmp_path / 'd' / 'mnemo.db'}"
    assert settings_from_env({"MNEMO_DATABASE_URL": " sqlite:///x.db "}).database_url == (
        "sqlite:///x.db"
    )


# --- each type ----------------------------------------------------------------------------------


def test_each_type_is_parsed() -> None:
    settings = settings_from_env(
        {
            "MNEMO_MAX_TAGS": " 12 ",  # int
            "MNEMO_SEARCH_HALF_LIFE_DAYS": "2.5",  # float
            "MNEMO_SEARCH_LEXICAL_WEIGHT": "0.25",  # optional float
            "MNEMO_EMBEDDING_DIMS": "768",  # optional int
            "MNEMO_SIGNUP_ENABLED": "No",  # bool
            "MNEMO_INFERRED_LINKS": "on",
            "MNEMO_DEFAULT_BRAIN": " team ",  # str
            "MNEMO_WEBHOOK_ALLOWLIST": " Hooks.Internal , 10.1.0.0/16,,",  # lower-case list
            "MNEMO_MCP_ALLOWED_ORIGINS": "https://a.example/ ,*",  # origins
            "MNEMO_OPENAI_BASE_URL": "http://127.0.0.1:11434/v1/",  # URL
            "MNEMO_RATE_LIMIT_TOKEN_IP": "7/60s",  # rate
            "MNEMO_RATE_LIMIT_HOOK_IP": "off",
            "MNEMO_LOG_LEVEL": "debug",  # choice, case-insensitive
            "MNEMO_EMBEDDER": " MiniLM ",
        }
    )
    assert settings.limits.tags == 12
    assert settings.ranking.half_life_days == 2.5 and settings.ranking.lexical_weight == 0.25
    assert settings.embedder.dims == 768
    assert not settings.auth.signup_enabled and settings.links.inferred
    assert settings.default_brain == "team"
    assert settings.webhooks.allowlist == ("hooks.internal", "10.1.0.0/16")
    assert settings.mcp.allowed_origins == ("https://a.example", "*")
    assert settings.embedder.openai_base_url == "http://127.0.0.1:11434/v1"
    assert settings.rate_limits.rule("token.ip") == Rate(7, 60)
    assert settings.rate_limits.rule("hook.ip") is None
    assert settings.log_level == "DEBUG" and settings.embedder.kind == "minilm"


@pytest.mark.parametrize("raw", ["1", "true", "YES", "On"])
def test_true_spellings(raw: str) -> None:
    assert settings_from_env({"MNEMO_API_ALLOW_CREDENTIALS": raw}).cors.api_credentials


@pytest.mark.parametrize("raw", ["0", "false", "No", "OFF"])
def test_false_spellings(raw: str) -> None:
    assert not settings_from_env({"MNEMO_CONFLICTS_ON_WRITE": raw}).conflicts.on_write


def test_every_declared_field_reads_a_value_of_its_type() -> None:
    """Set every variable at once to a value its declaration allows: a field the reader cannot
    parse, or a declaration that does not fit its field, fails here and not in production."""
    env: dict[str, str] = {}
    for _, f, spec in _declared():
        if spec.family is not None:
            env.update({config.variable_of(spec, k): "3/30" for k in spec.family})
            continue
        kind = str(f.type).removesuffix(" | None")
        if spec.choices:
            env[spec.name] = spec.choices[-1]
        elif kind == "bool":
            env.setdefault(spec.name, "true")
        elif kind in ("int", "float"):
            env[spec.name] = "1"
        else:
            env.setdefault(spec.name, "x")
    env.pop("MNEMO_DATABASE_IAM_AUTH")  # not with a secret (tested below)
    settings = settings_from_env(env)
    assert settings.limits == Limits(1, 1, 1, 1, 1, 1)
    assert set(settings.rate_limits.rules.values()) == {Rate(3, 30)}
    assert settings.embedder.kind == "minilm" and settings.embedder.dims == 1
    assert settings.auth.open_registration_domains == ("x",)


# --- fallbacks, computed defaults and families ----------------------------------------------------


def test_llms_fall_back_to_the_embeddings_server_and_key() -> None:
    env = {"MNEMO_OPENAI_BASE_URL": "http://llm.local/v1/", "MNEMO_OPENAI_API_KEY": "sk-1"}
    settings = settings_from_env(env)
    assert settings.summaries.llm_base_url == "http://llm.local/v1"
    assert settings.extraction.api_key == "sk-1"
    own = settings_from_env({**env, "MNEMO_SUMMARY_LLM_BASE_URL": "http://other/v1"})
    assert own.summaries.llm_base_url == "http://other/v1"
    assert own.extraction.base_url == "http://llm.local/v1"


def test_database_region_falls_back_to_the_functions_region() -> None:
    assert settings_from_env({"AWS_REGION": "eu-west-1"}).database.region == "eu-west-1"
    both = {"AWS_REGION": "eu-west-1", "MNEMO_DATABASE_REGION": "us-east-2"}
    assert settings_from_env(both).database.region == "us-east-2"


def test_rate_limit_backend_follows_the_table_unless_chosen() -> None:
    assert from_env(RateLimitSettings, {}).backend == "sql"
    table = {"MNEMO_RATE_LIMIT_DYNAMODB_TABLE": "limits"}
    assert from_env(RateLimitSettings, table).backend == "dynamodb"
    chosen = {**table, "MNEMO_RATE_LIMIT_BACKEND": "SQL"}
    assert from_env(RateLimitSettings, chosen).backend == "sql"


def test_one_group_reads_alone() -> None:
    assert from_env(SummarySettings, {"MNEMO_SUMMARY_MAX_TOKENS": "9"}).max_tokens == 9
    assert from_env(EmbedderSettings, {}) == EmbedderSettings()


def test_secrets_stay_out_of_repr() -> None:
    settings = settings_from_env(
        {
            "MNEMO_API_KEY": "k-secret-1",
            "MNEMO_OPENAI_API_KEY": "k-secret-2",
            "MNEMO_OAUTH_REGISTRATION_TOKEN": "k-secret-3",
            "MNEMO_SUMMARY_LLM_API_KEY": "k-secret-4",
            "MNEMO_EXTRACTION_LLM_API_KEY": "k-secret-5",
        }
    )
    assert "k-secret" not in repr(settings)
    assert settings.api_key == "k-secret-1" and settings.extraction.api_key == "k-secret-5"


# --- bounds, choices, bad values and what the error says -----------------------------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("MNEMO_MAX_BODY_BYTES", "1MB", "MNEMO_MAX_BODY_BYTES must be a whole number, got '1MB'"),
        ("MNEMO_MAX_TAGS", "2.5", "MNEMO_MAX_TAGS must be a whole number, got '2.5'"),
        ("MNEMO_SCHEMA_PROBE_SECONDS", "x", "MNEMO_SCHEMA_PROBE_SECONDS must be a number, got 'x'"),
        (
            "MNEMO_SIGNUP_ENABLED",
            "maybe",
            "MNEMO_SIGNUP_ENABLED must be true or false (also 1/0, yes/no, on/off), got 'maybe'",
        ),
        (
            "MNEMO_LOG_LEVEL",
            "verbose",
            "MNEMO_LOG_LEVEL must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL, got 'verbose'",
        ),
        ("MNEMO_PGVECTOR", "on", "MNEMO_PGVECTOR must be one of auto, off, got 'on'"),
        ("MNEMO_MCP_PAGE_SIZE", "0", "MNEMO_MCP_PAGE_SIZE must be greater than zero, got '0'"),
        ("MNEMO_MAX_TAGS", "-1", "MNEMO_MAX_TAGS must be 0 or more, got '-1'"),
        (
            "MNEMO_SEARCH_RECENCY_WEIGHT",
            "1.5",
            "MNEMO_SEARCH_RECENCY_WEIGHT must be between 0 and 1, got '1.5'",
        ),
        (
            "MNEMO_WEBHOOK_BACKOFF_BASE_SECONDS",
            "-1",
            "MNEMO_WEBHOOK_BACKOFF_BASE_SECONDS must be 0 or more, got '-1'",
        ),
        (
            "MNEMO_RATE_LIMIT_LOGIN_IP",
            "lots",
            "MNEMO_RATE_LIMIT_LOGIN_IP must be COUNT/SECONDS with both above zero "
            "(e.g. 10/300), or off, got 'lots'",
        ),
        (
            "MNEMO_RATE_LIMIT_API_BRAIN",
            "0/60",
            "MNEMO_RATE_LIMIT_API_BRAIN must be COUNT/SECONDS with both above zero "
            "(e.g. 10/300), or off, got '0/60'",
        ),
    ],
)
def test_a_bad_value_names_the_variable_the_value_and_what_is_allowed(
    name: str, value: str, message: str
) -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_env({name: value})
    assert str(caught.value) == message
    assert caught.value.problems == (message,)
    assert isinstance(caught.value, ValueError)  # what callers have always caught


def test_every_bad_value_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as caught:
        settings_from_env(
            {
                "MNEMO_MAX_TAGS": "many",
                "MNEMO_EMBEDDER": "word2vec",
                "MNEMO_WEBHOOK_MAX_ATTEMPTS": "0",
                "MNEMO_DATABASE_CONNECT_TIMEOUT_SECONDS": "soon",
            }
        )
    problems = caught.value.problems
    assert len(problems) == 4
    assert str(caught.value).startswith("4 settings are invalid:\n- ")
    for name in (
        "MNEMO_MAX_TAGS",
        "MNEMO_EMBEDDER",
        "MNEMO_WEBHOOK_MAX_ATTEMPTS",
        "MNEMO_DATABASE_CONNECT_TIMEOUT_SECONDS",
    ):
        assert sum(p.startswith(name + " ") for p in problems) == 1, name


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MNEMO_API_ALLOWED_ORIGINS": "*", "MNEMO_API_ALLOW_CREDENTIALS": "true"},
            "MNEMO_API_ALLOW_CREDENTIALS cannot be combined with MNEMO_API_ALLOWED_ORIGINS=*",
        ),
        (
            {"MNEMO_RATE_LIMIT_BACKEND": "dynamodb"},
            "MNEMO_RATE_LIMIT_BACKEND=dynamodb needs MNEMO_RATE_LIMIT_DYNAMODB_TABLE",
        ),
        (
            {"MNEMO_DATABASE_SECRET_ARN": "arn:x", "MNEMO_DATABASE_IAM_AUTH": "1"},
            "set MNEMO_DATABASE_SECRET_ARN or MNEMO_DATABASE_IAM_AUTH, not both",
        ),
    ],
)
def test_settings_that_cannot_go_together_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)):
        settings_from_env(env)


def test_settings_built_in_code_skip_the_reader() -> None:
    """Tests and tools build settings directly; only the environment is checked."""
    assert CorsSettings(("*",), True).api_credentials
    assert RankingSettings(half_life_days=7).half_life_days == 7


# --- one declaration each, one reader, one reference ----------------------------------------------


def test_each_variable_is_documented_once() -> None:
    documented = [spec.name for _, _, spec in _declared() if spec.doc is not None]
    assert len(documented) == len(set(documented))
    undocumented = {spec.name for _, _, spec in _declared() if spec.doc is None}
    assert undocumented - {"MNEMO_RATE_LIMIT_"} <= set(documented)


def test_docs_settings_is_generated_from_the_declarations() -> None:
    on_disk = (ROOT / "docs" / "settings.md").read_text()
    assert on_disk == config.reference(), (
        "docs/settings.md is out of date: python -m core.kernel.config > docs/settings.md"
    )


def test_every_variable_the_docs_name_is_declared() -> None:
    declared = set(re.findall(r"`((?:MNEMO|AWS)_[A-Z0-9_]+)`", config.reference()))
    for path in [ROOT / "README.md", ROOT / "template.yaml", *(ROOT / "docs").glob("*.md")]:
        named = set(re.findall(r"\bMNEMO_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
        assert named <= declared, (path.name, named - declared)


def test_the_environment_is_read_only_in_the_config_module() -> None:
    reads = re.compile(r"os\.getenv\(|environ\.get\(|environ\[[^]]+\](?!\s*=)|getenv\b")
    offenders = []
    for package in ("core", "handlers"):
        for path in (ROOT / package).rglob("*.py"):
            if path == ROOT / "core" / "kernel" / "config.py":
                continue
            for number, line in enumerate(path.read_text().splitlines(), 1):
                if reads.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_the_reference_command_prints_the_reference() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "core.kernel.config"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    assert done.stdout == config.reference()


# --- each group as its feature reads it --------------------------------------------------------


def test_credentials_never_with_a_wildcard() -> None:
    APP = "https://app.example.com"
    with pytest.raises(ValueError, match="MNEMO_API_ALLOW_CREDENTIALS"):
        settings_from_env({"MNEMO_API_ALLOWED_ORIGINS": "*", "MNEMO_API_ALLOW_CREDENTIALS": "true"})
    parsed = settings_from_env(
        {
            "MNEMO_API_ALLOWED_ORIGINS": f" {APP}/ ,https://b.example",
            "MNEMO_API_ALLOW_CREDENTIALS": "1",
        }
    )
    assert parsed.cors == CorsSettings((APP, "https://b.example"), True, 600)


def test_embedder_settings_from_env() -> None:
    settings = settings_from_env(
        {
            "MNEMO_EMBEDDER": "OpenAI",
            "MNEMO_OPENAI_BASE_URL": "http://127.0.0.1:11434/v1/",
            "MNEMO_OPENAI_API_KEY": "sk-secret",
            "MNEMO_EMBEDDING_MODEL": "nomic-embed-text",
            "MNEMO_EMBEDDING_DIMS": "768",
            "MNEMO_EMBEDDING_BATCH_SIZE": "16",
            "MNEMO_EMBEDDING_TIMEOUT_SECONDS": "2.5",
            "MNEMO_EMBEDDING_MAX_RETRIES": "0",
            "MNEMO_SIMILARITY_FLOOR": "0.3",
            "MNEMO_SIMILARITY_STRONG": "0.7",
            "MNEMO_BEDROCK_REGION": "",
        }
    ).embedder
    assert settings.kind == "openai"
    assert settings.openai_base_url == "http://127.0.0.1:11434/v1"
    assert (settings.model, settings.dims, settings.batch_size) == ("nomic-embed-text", 768, 16)
    assert (settings.timeout_seconds, settings.max_retries) == (2.5, 0)
    assert (settings.similarity_floor, settings.similarity_strong) == (0.3, 0.7)
    assert settings.bedrock_region is None  # empty means unset
    assert "sk-secret" not in repr(settings)  # never in a log line


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("MNEMO_EMBEDDER", "word2vec"),
        ("MNEMO_EMBEDDING_DIMS", "many"),
        ("MNEMO_EMBEDDING_DIMS", "0"),
        ("MNEMO_BUILTIN_DIMS", "-1"),
        ("MNEMO_EMBEDDING_BATCH_SIZE", "0"),
        ("MNEMO_EMBEDDING_TIMEOUT_SECONDS", "soon"),
        ("MNEMO_EMBEDDING_MAX_RETRIES", "-1"),
        ("MNEMO_SIMILARITY_FLOOR", "low"),
    ],
)
def test_bad_embedder_settings_say_what_to_fix(name: str, value: str) -> None:
    with pytest.raises(ValueError, match=name):
        settings_from_env({name: value})


def test_mcp_settings_from_the_environment() -> None:
    env = {
        "MNEMO_MCP_ALLOWED_ORIGINS": " https://a.example/ , https://b.example:8443,",
        "MNEMO_MCP_PAGE_SIZE": "7",
    }
    assert settings_from_env(env).mcp == McpSettings(
        allowed_origins=("https://a.example", "https://b.example:8443"), page_size=7
    )
    assert settings_from_env({}).mcp == McpSettings(allowed_origins=(), page_size=50)
    with pytest.raises(ValueError, match="MNEMO_MCP_PAGE_SIZE"):
        settings_from_env({"MNEMO_MCP_PAGE_SIZE": "0"})


def test_summary_settings_from_the_environment() -> None:
    default = settings_from_env({}).summaries
    assert (default.max_tokens, default.user_interval, default.summarizer) == (
        200,
        30,
        "extractive",
    )
    s = settings_from_env(
        {
            "MNEMO_SUMMARY_MAX_TOKENS": "120",
            "MNEMO_USER_SUMMARY_INTERVAL": "10",
            "MNEMO_SUMMARIZER": "OpenAI",
            "MNEMO_SUMMARY_LLM_MODEL": "llama3",
            "MNEMO_OPENAI_BASE_URL": "http://localhost:11434/v1/",
            "MNEMO_OPENAI_API_KEY": "sk-secret",
        }
    ).summaries
    assert (s.max_tokens, s.user_interval, s.summarizer, s.llm_model) == (
        120,
        10,
        "openai",
        "llama3",
    )
    assert s.llm_base_url == "http://localhost:11434/v1" and s.llm_api_key == "sk-secret"
    assert "sk-secret" not in repr(s)
    for bad in (
        {"MNEMO_SUMMARIZER": "gpt"},
        {"MNEMO_USER_SUMMARY_INTERVAL": "0"},
        {"MNEMO_SUMMARY_MAX_TOKENS": "x"},
    ):
        with pytest.raises(ValueError):
            settings_from_env(bad)


def test_auth_settings_are_read_from_the_environment() -> None:
    from core.kernel.config import settings_from_env

    s = settings_from_env(
        {
            "MNEMO_PASSWORD_ITERATIONS": "700000",
            "MNEMO_ACCESS_TOKEN_TTL_SECONDS": "900",
            "MNEMO_PUBLIC_URL": "https://memory.example.org/",
            "MNEMO_OAUTH_OPEN_REGISTRATION_DOMAINS": "claude.ai, *.example.com",
            "MNEMO_OAUTH_REGISTRATION_TOKEN": "secret",
            "MNEMO_SIGNUP_ENABLED": "false",
        }
    ).auth
    assert s.password_iterations == 700_000 and s.access_token_seconds == 900
    assert s.public_url == "https://memory.example.org"
    assert s.open_registration_domains == ("claude.ai", "*.example.com")
    assert s.registration_token == "secret" and "secret" not in repr(s)
    assert not s.signup_enabled
    assert settings_from_env({}).auth.password_iterations == 600_000
    with pytest.raises(ValueError, match="MNEMO_PASSWORD_ITERATIONS"):
        settings_from_env({"MNEMO_PASSWORD_ITERATIONS": "0"})
    with pytest.raises(ValueError, match="MNEMO_SIGNUP_ENABLED"):
        settings_from_env({"MNEMO_SIGNUP_ENABLED": "maybe"})


def test_the_pgvector_setting() -> None:
    from core.kernel.config import settings_from_env

    assert settings_from_env({}).vector_search.pgvector == "auto"
    assert settings_from_env({"MNEMO_PGVECTOR": " OFF "}).vector_search.pgvector == "off"
    with pytest.raises(ValueError, match="MNEMO_PGVECTOR"):
        settings_from_env({"MNEMO_PGVECTOR": "on"})


def test_rate_limits_are_read_from_the_environment() -> None:
    from core.kernel.config import from_env

    s = from_env(
        RateLimitSettings,
        {"MNEMO_RATE_LIMIT_LOGIN_IP": "7/60", "MNEMO_RATE_LIMIT_SIGNUP_IP": "off"},
    )
    assert s.rule("login.ip") == Rate(7, 60)
    assert s.rule("signup.ip") is None
    assert s.rule("api.brain") is None and s.backend == "sql"
    d = from_env(RateLimitSettings, {"MNEMO_RATE_LIMIT_DYNAMODB_TABLE": "limits"})
    assert d.backend == "dynamodb" and d.dynamodb_table == "limits"
    with pytest.raises(ValueError, match="MNEMO_RATE_LIMIT_LOGIN_IP"):
        from_env(RateLimitSettings, {"MNEMO_RATE_LIMIT_LOGIN_IP": "lots"})
