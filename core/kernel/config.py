"""Every environment variable Mnemo reads, in one place.

Settings are read once per process (`get_settings`) and passed down explicitly, so tests and
tools can build their own without touching the environment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, got {raw!r}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number, got {raw!r}") from None


_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _log_level(env: Mapping[str, str]) -> str:
    level = (env.get("MNEMO_LOG_LEVEL") or "INFO").strip().upper()
    if level not in _LOG_LEVELS:
        raise ValueError(f"MNEMO_LOG_LEVEL must be one of {', '.join(_LOG_LEVELS)}, got {level!r}")
    return level


def running_on_lambda(env: Mapping[str, str]) -> bool:
    return "AWS_LAMBDA_FUNCTION_NAME" in env


def default_database_url(env: Mapping[str, str]) -> str:
    """A SQLite file in the data folder; on Lambda only /tmp is writable."""
    if running_on_lambda(env):
        return "sqlite:////tmp/mnemo/mnemo.db"
    data_dir = Path(env.get("MNEMO_DATA_DIR", "data")).resolve()
    return f"sqlite:///{data_dir / 'mnemo.db'}"


@dataclass(frozen=True)
class Rate:
    """At most `count` hits per `seconds` (a fixed window)."""

    count: int
    seconds: int


# (action, subject) -> default rule. "account" is the email for signup, login and the authorize
# form, and the client_id at the token endpoint; registration has no account, only an IP.
# Login and the authorize form count *failed* sign-ins per account (core/identity/throttle.py):
# `account_source` pauses one address on one account, `account` is the line past which every
# address that failed on the account is paused (one that did not still signs in).
DEFAULT_RATES: dict[str, Rate | None] = {
    "signup.ip": Rate(20, 3600),
    "signup.account": Rate(5, 3600),
    "login.ip": Rate(60, 300),
    "login.account_source": Rate(5, 900),
    "login.account": Rate(50, 3600),
    "authorize.ip": Rate(60, 300),
    "authorize.account_source": Rate(5, 900),
    "authorize.account": Rate(50, 3600),
    "token.ip": Rate(120, 60),
    "token.account": Rate(60, 60),
    "register.ip": Rate(20, 3600),
    # Inbound hooks (POST /v1/hooks/{source}): per address before the signature is checked,
    # per source after it.
    "hook.ip": Rate(600, 60),
    "hook.source": Rate(600, 60),
    # Per-brain API request quota: off unless configured, since on SQLite it costs a write
    # on every request.
    "api.brain": None,
}


@dataclass(frozen=True)
class RateLimitSettings:
    backend: str = "sql"  # "sql" (the rate_limits table) or "dynamodb"
    dynamodb_table: str | None = None
    dynamodb_region: str | None = None
    rules: dict[str, Rate | None] = field(default_factory=lambda: dict(DEFAULT_RATES))

    def rule(self, name: str) -> Rate | None:
        return self.rules.get(name)


@dataclass(frozen=True)
class AuthSettings:
    # OWASP 2023 for PBKDF2-HMAC-SHA256. Hashes with fewer iterations are upgraded at login.
    password_iterations: int = 600_000
    access_token_seconds: int = 3600
    refresh_token_days: int = 30
    code_seconds: int = 600
    # The URL clients reach Mnemo at (issuer, resource, metadata). Unset: taken from the
    # request's scheme and Host, which is fine behind API Gateway but should be pinned in
    # production so a forged Host header cannot change what the metadata says.
    public_url: str | None = None
    # Redirect-URI hosts that may register OAuth clients without the registration token.
    # "*.example.com" matches subdomains; "*" opens registration to every host.
    open_registration_domains: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
    registration_token: str | None = field(default=None, repr=False)
    signup_enabled: bool = True


def _rate(env: Mapping[str, str], name: str, default: Rate | None) -> Rate | None:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("off", "0", "none"):
        return None
    count, _, seconds = raw.partition("/")
    try:
        rate = Rate(int(count), int(seconds.rstrip("s")))
    except ValueError:
        raise ValueError(
            f"{name} must look like COUNT/SECONDS (e.g. 10/300) or 'off', got {raw!r}"
        ) from None
    if rate.count <= 0 or rate.seconds <= 0:
        raise ValueError(f"{name} needs a positive count and window, got {raw!r}")
    return rate


def rate_limit_settings_from_env(env: Mapping[str, str]) -> RateLimitSettings:
    """MNEMO_RATE_LIMIT_<ACTION>_<SUBJECT>=COUNT/SECONDS, e.g. MNEMO_RATE_LIMIT_LOGIN_IP=60/300."""
    rules = {
        name: _rate(env, "MNEMO_RATE_LIMIT_" + name.replace(".", "_").upper(), default)
        for name, default in DEFAULT_RATES.items()
    }
    table = env.get("MNEMO_RATE_LIMIT_DYNAMODB_TABLE") or None
    backend = (env.get("MNEMO_RATE_LIMIT_BACKEND") or ("dynamodb" if table else "sql")).lower()
    if backend not in ("sql", "dynamodb"):
        raise ValueError(f"MNEMO_RATE_LIMIT_BACKEND must be sql or dynamodb, got {backend!r}")
    if backend == "dynamodb" and not table:
        raise ValueError("MNEMO_RATE_LIMIT_BACKEND=dynamodb needs MNEMO_RATE_LIMIT_DYNAMODB_TABLE")
    return RateLimitSettings(
        backend=backend,
        dynamodb_table=table,
        dynamodb_region=env.get("MNEMO_RATE_LIMIT_DYNAMODB_REGION") or None,
        rules=rules,
    )


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = (env.get(name) or "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"{name} must be true or false, got {raw!r}")


def auth_settings_from_env(env: Mapping[str, str]) -> AuthSettings:
    default = AuthSettings()
    domains = env.get("MNEMO_OAUTH_OPEN_REGISTRATION_DOMAINS")
    settings = AuthSettings(
        password_iterations=_int(env, "MNEMO_PASSWORD_ITERATIONS", default.password_iterations),
        access_token_seconds=_int(
            env, "MNEMO_ACCESS_TOKEN_TTL_SECONDS", default.access_token_seconds
        ),
        refresh_token_days=_int(env, "MNEMO_REFRESH_TOKEN_TTL_DAYS", default.refresh_token_days),
        code_seconds=_int(env, "MNEMO_OAUTH_CODE_TTL_SECONDS", default.code_seconds),
        public_url=(env.get("MNEMO_PUBLIC_URL") or "").strip().rstrip("/") or None,
        open_registration_domains=default.open_registration_domains
        if domains is None or domains.strip() == ""
        else tuple(d.strip().lower() for d in domains.split(",") if d.strip()),
        registration_token=env.get("MNEMO_OAUTH_REGISTRATION_TOKEN") or None,
        signup_enabled=_bool(env, "MNEMO_SIGNUP_ENABLED", default.signup_enabled),
    )
    for name, value in (
        ("MNEMO_PASSWORD_ITERATIONS", settings.password_iterations),
        ("MNEMO_ACCESS_TOKEN_TTL_SECONDS", settings.access_token_seconds),
        ("MNEMO_REFRESH_TOKEN_TTL_DAYS", settings.refresh_token_days),
        ("MNEMO_OAUTH_CODE_TTL_SECONDS", settings.code_seconds),
    ):
        if value <= 0:
            raise ValueError(f"{name} must be greater than zero, got {value}")
    return settings


@dataclass(frozen=True)
class McpSettings:
    """The /mcp endpoint (handlers/routes/mcp.py)."""

    # Browser origins allowed besides the service's own origin and loopback pages (Streamable
    # HTTP: servers must validate Origin against DNS rebinding). "*" allows every origin.
    allowed_origins: tuple[str, ...] = ()
    # Tools per tools/list page; clients follow nextCursor for the rest.
    page_size: int = 50


def mcp_settings_from_env(env: Mapping[str, str]) -> McpSettings:
    settings = McpSettings(
        allowed_origins=_origins(env, "MNEMO_MCP_ALLOWED_ORIGINS"),
        page_size=_int(env, "MNEMO_MCP_PAGE_SIZE", McpSettings.page_size),
    )
    _positive("MNEMO_MCP_PAGE_SIZE", settings.page_size)
    return settings


@dataclass(frozen=True)
class CorsSettings:
    """Which browser origins may call the REST API (/v1 and the OpenMemory routes)
    cross-origin. /mcp takes its list from McpSettings.allowed_origins; the OAuth token,
    registration and revocation endpoints allow the union of both lists."""

    # Exact origins ("https://app.example.com"); "*" allows every origin.
    api_origins: tuple[str, ...] = ()
    # Let those origins send the console's session cookie (Access-Control-Allow-Credentials).
    # Off: cross-origin callers authenticate with a bearer token, which no other site can
    # attach for them. Never allowed together with "*" (browsers refuse it, and it would let
    # any site act as a signed-in user).
    api_credentials: bool = False
    # How long a browser may cache a preflight answer (Chromium caps it at 7,200).
    max_age_seconds: int = 600


def _origins(env: Mapping[str, str], name: str) -> tuple[str, ...]:
    raw = env.get(name) or ""
    return tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())


def cors_settings_from_env(env: Mapping[str, str]) -> CorsSettings:
    settings = CorsSettings(
        api_origins=_origins(env, "MNEMO_API_ALLOWED_ORIGINS"),
        api_credentials=_bool(env, "MNEMO_API_ALLOW_CREDENTIALS", False),
        max_age_seconds=_int(env, "MNEMO_CORS_MAX_AGE_SECONDS", CorsSettings.max_age_seconds),
    )
    if settings.api_credentials and "*" in settings.api_origins:
        raise ValueError(
            "MNEMO_API_ALLOW_CREDENTIALS cannot be combined with MNEMO_API_ALLOWED_ORIGINS=*: "
            "list the origins that may send the session cookie"
        )
    if settings.max_age_seconds < 0:
        raise ValueError("MNEMO_CORS_MAX_AGE_SECONDS must be zero or more")
    return settings


@dataclass(frozen=True)
class RankingSettings:
    """How search weighs its evidence (core/retrieval/ranking.py explains each)."""

    # Weight of the lexical z-score against the semantic one in hybrid mode. None: the
    # embedder's own default (a weak builtin embedder gets less say than a real model).
    lexical_weight: float | None = None
    # Shares of the previous and the next memory's evidence a memory borrows. None: the
    # embedder's own (core/retrieval/search.py `context_shares`).
    context_before: float | None = None
    context_after: float | None = None
    squash: float = 4.0  # evidence at which relevance reaches 1 - 1/e
    prior_weight: float = 10.0
    recency_weight: float = 0.1
    half_life_days: float = 30.0
    superseded_factor: float = 0.5
    # Query words the index does not hold are also matched as the indexed words nearest in
    # spelling ("penauts" -> peanuts): core/retrieval/near_words.py.
    near_words: bool = True


@dataclass(frozen=True)
class Limits:
    content_bytes: int = 64 * 1024
    tags: int = 64
    tag_chars: int = 64
    metadata_bytes: int = 16 * 1024
    batch_items: int = 500
    page_size: int = 500


_EMBEDDERS = ("builtin", "openai", "bedrock", "local", "minilm")


@dataclass(frozen=True)
class EmbedderSettings:
    """Which embedding model turns memories into vectors, and how to reach it.

    `model` and `dims` apply to the remote backends (openai, bedrock); each backend has its own
    default model. None means "the backend's default" so one variable serves every backend.
    """

    kind: str = "builtin"
    model: str | None = None
    dims: int | None = None
    # 256: exact search reads every vector of the scope per query, so this sets the cost of a
    # search at 100,000 memories (memory-bound: ~100 MB per query at 256, ~200 MB at 512); on
    # LoCoMo hybrid hit@10 is the same at 256 and 512 (0.736); semantic alone 0.559 -> 0.517.
    builtin_dims: int = 256
    openai_base_url: str = "https://api.openai.com/v1"
    # Kept out of repr so the key never lands in a log line or a traceback.
    openai_api_key: str | None = field(default=None, repr=False)
    bedrock_region: str | None = None
    local_model_path: str | None = None
    batch_size: int = 64
    timeout_seconds: float = 10.0
    max_retries: int = 3
    # Remote APIs reject over-long inputs (OpenAI ~8k tokens); cut before sending, not after a 400.
    max_chars: int = 8000
    # Override the measured cosine calibration, e.g. for a model nobody measured here.
    similarity_floor: float | None = None
    similarity_strong: float | None = None


def _optional_int(env: Mapping[str, str], name: str) -> int | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _int(env, name, 0)


def _optional_float(env: Mapping[str, str], name: str) -> float | None:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return None
    return _float(env, name, 0.0)


def _positive(name: str, value: int | float) -> None:
    if value <= 0:
        raise ValueError(f"{name} must be greater than zero, got {value}")


def embedder_settings_from_env(env: Mapping[str, str]) -> EmbedderSettings:
    kind = (env.get("MNEMO_EMBEDDER") or "builtin").strip().lower()
    if kind not in _EMBEDDERS:
        raise ValueError(f"MNEMO_EMBEDDER must be one of {', '.join(_EMBEDDERS)}, got {kind!r}")
    default = EmbedderSettings()
    settings = EmbedderSettings(
        kind=kind,
        model=(env.get("MNEMO_EMBEDDING_MODEL") or "").strip() or None,
        dims=_optional_int(env, "MNEMO_EMBEDDING_DIMS"),
        builtin_dims=_int(env, "MNEMO_BUILTIN_DIMS", default.builtin_dims),
        openai_base_url=(env.get("MNEMO_OPENAI_BASE_URL") or default.openai_base_url).rstrip("/"),
        openai_api_key=env.get("MNEMO_OPENAI_API_KEY") or None,
        bedrock_region=env.get("MNEMO_BEDROCK_REGION") or None,
        local_model_path=env.get("MNEMO_LOCAL_MODEL_PATH") or None,
        batch_size=_int(env, "MNEMO_EMBEDDING_BATCH_SIZE", default.batch_size),
        timeout_seconds=_float(env, "MNEMO_EMBEDDING_TIMEOUT_SECONDS", default.timeout_seconds),
        max_retries=_int(env, "MNEMO_EMBEDDING_MAX_RETRIES", default.max_retries),
        max_chars=_int(env, "MNEMO_EMBEDDING_MAX_CHARS", default.max_chars),
        similarity_floor=_optional_float(env, "MNEMO_SIMILARITY_FLOOR"),
        similarity_strong=_optional_float(env, "MNEMO_SIMILARITY_STRONG"),
    )
    if settings.dims is not None:
        _positive("MNEMO_EMBEDDING_DIMS", settings.dims)
    _positive("MNEMO_BUILTIN_DIMS", settings.builtin_dims)
    _positive("MNEMO_EMBEDDING_BATCH_SIZE", settings.batch_size)
    _positive("MNEMO_EMBEDDING_TIMEOUT_SECONDS", settings.timeout_seconds)
    _positive("MNEMO_EMBEDDING_MAX_CHARS", settings.max_chars)
    if settings.max_retries < 0:
        raise ValueError(
            f"MNEMO_EMBEDDING_MAX_RETRIES must be 0 or more, got {settings.max_retries}"
        )
    return settings


@dataclass(frozen=True)
class VectorSearchSettings:
    # MNEMO_PGVECTOR: auto uses PostgreSQL's pgvector extension (HNSW) for vector search when
    # it is installed or installable (core/retrieval/pgvector.py); off keeps the numpy path.
    pgvector: str = "auto"


def vector_search_settings_from_env(env: Mapping[str, str]) -> VectorSearchSettings:
    mode = (env.get("MNEMO_PGVECTOR") or "auto").strip().lower()
    if mode not in ("auto", "off"):
        raise ValueError(f"MNEMO_PGVECTOR must be auto or off, got {mode!r}")
    return VectorSearchSettings(pgvector=mode)


_SUMMARIZERS = ("extractive", "openai", "bedrock")


@dataclass(frozen=True)
class SummarySettings:
    """User summaries and the brain digest (core/curation/summaries).

    The extractive summariser needs no model and is the default; `openai` (any OpenAI-compatible
    chat endpoint) or `bedrock` (the Converse API) write the summary instead when chosen, and
    the extractive one stands in whenever they fail.
    """

    max_tokens: int = 200
    # A user's summary is refreshed once this many memories were added since the last one.
    user_interval: int = 30
    # The newest this-many active memories of a user (or brain, for the digest) are summarised:
    # bounds the time and memory one summary takes however much a user has stored.
    max_memories: int = 2000
    summarizer: str = "extractive"
    llm_model: str | None = None
    llm_base_url: str = "https://api.openai.com/v1"
    # Kept out of repr so the key never lands in a log line or a traceback.
    llm_api_key: str | None = field(default=None, repr=False)
    llm_timeout_seconds: float = 10.0
    bedrock_region: str | None = None


def summary_settings_from_env(env: Mapping[str, str]) -> SummarySettings:
    default = SummarySettings()
    kind = (env.get("MNEMO_SUMMARIZER") or default.summarizer).strip().lower()
    if kind not in _SUMMARIZERS:
        raise ValueError(f"MNEMO_SUMMARIZER must be one of {', '.join(_SUMMARIZERS)}, got {kind!r}")
    settings = SummarySettings(
        max_tokens=_int(env, "MNEMO_SUMMARY_MAX_TOKENS", default.max_tokens),
        user_interval=_int(env, "MNEMO_USER_SUMMARY_INTERVAL", default.user_interval),
        max_memories=_int(env, "MNEMO_SUMMARY_MAX_MEMORIES", default.max_memories),
        summarizer=kind,
        llm_model=(env.get("MNEMO_SUMMARY_LLM_MODEL") or "").strip() or None,
        # The chat endpoint defaults to the embeddings' OpenAI-compatible server and key.
        llm_base_url=(
            env.get("MNEMO_SUMMARY_LLM_BASE_URL")
            or env.get("MNEMO_OPENAI_BASE_URL")
            or default.llm_base_url
        ).rstrip("/"),
        llm_api_key=env.get("MNEMO_SUMMARY_LLM_API_KEY") or env.get("MNEMO_OPENAI_API_KEY") or None,
        llm_timeout_seconds=_float(
            env, "MNEMO_SUMMARY_LLM_TIMEOUT_SECONDS", default.llm_timeout_seconds
        ),
        bedrock_region=env.get("MNEMO_BEDROCK_REGION") or None,
    )
    _positive("MNEMO_SUMMARY_MAX_TOKENS", settings.max_tokens)
    _positive("MNEMO_USER_SUMMARY_INTERVAL", settings.user_interval)
    _positive("MNEMO_SUMMARY_MAX_MEMORIES", settings.max_memories)
    _positive("MNEMO_SUMMARY_LLM_TIMEOUT_SECONDS", settings.llm_timeout_seconds)
    return settings


_EXTRACTORS = ("off", "openai", "bedrock")


@dataclass(frozen=True)
class ExtractionSettings:
    """The LLM that draws facts from conversations (core/app/extraction.py), mem0's `infer`.

    `off` (the default): each selected turn of a conversation is stored as it is. `openai` (any
    OpenAI-compatible chat endpoint) or `bedrock` (the Converse API): facts are extracted and
    reconciled with the user's memories. Unlike a summary there is no fallback: a failed
    extraction changes nothing and says why.
    """

    llm: str = "off"
    model: str | None = None
    base_url: str = "https://api.openai.com/v1"
    # Kept out of repr so the key never lands in a log line or a traceback.
    api_key: str | None = field(default=None, repr=False)
    timeout_seconds: float = 30.0
    bedrock_region: str | None = None
    # How many similar memories of the user each extracted fact is compared with.
    neighbours: int = 5
    max_facts: int = 50


def extraction_settings_from_env(env: Mapping[str, str]) -> ExtractionSettings:
    default = ExtractionSettings()
    kind = (env.get("MNEMO_EXTRACTION_LLM") or default.llm).strip().lower()
    if kind not in _EXTRACTORS:
        raise ValueError(
            f"MNEMO_EXTRACTION_LLM must be one of {', '.join(_EXTRACTORS)}, got {kind!r}"
        )
    settings = ExtractionSettings(
        llm=kind,
        model=(env.get("MNEMO_EXTRACTION_LLM_MODEL") or "").strip() or None,
        # The chat endpoint defaults to the embeddings' OpenAI-compatible server and key.
        base_url=(
            env.get("MNEMO_EXTRACTION_LLM_BASE_URL")
            or env.get("MNEMO_OPENAI_BASE_URL")
            or default.base_url
        ).rstrip("/"),
        api_key=env.get("MNEMO_EXTRACTION_LLM_API_KEY") or env.get("MNEMO_OPENAI_API_KEY") or None,
        timeout_seconds=_float(
            env, "MNEMO_EXTRACTION_LLM_TIMEOUT_SECONDS", default.timeout_seconds
        ),
        bedrock_region=env.get("MNEMO_BEDROCK_REGION") or None,
        neighbours=_int(env, "MNEMO_EXTRACTION_NEIGHBOURS", default.neighbours),
        max_facts=_int(env, "MNEMO_EXTRACTION_MAX_FACTS", default.max_facts),
    )
    _positive("MNEMO_EXTRACTION_LLM_TIMEOUT_SECONDS", settings.timeout_seconds)
    _positive("MNEMO_EXTRACTION_NEIGHBOURS", settings.neighbours)
    _positive("MNEMO_EXTRACTION_MAX_FACTS", settings.max_facts)
    return settings


@dataclass(frozen=True)
class MaintenanceSettings:
    """Memory hygiene and the maintenance run (core/curation/hygiene.py,
    core/app/maintenance.py)."""

    # Rows one statement of a maintenance task reads or writes; each batch is its own
    # transaction, so a run over a large brain never holds a long lock.
    batch_size: int = 500
    # How long a run's per-brain lease holds; a crashed run's lease lapses after it.
    lease_seconds: int = 600
    # Of the MaintenanceFunction's 300 s (summaries take up to 120, webhooks 60): what the
    # hygiene tasks may take before the run stops visiting brains (the ones left over go first
    # next time: a run visits the least recently maintained first).
    budget_seconds: float = 90.0
    # Most memories one forget call may archive or purge (a dry run reports the same bound).
    forget_max: int = 1000


def maintenance_settings_from_env(env: Mapping[str, str]) -> MaintenanceSettings:
    default = MaintenanceSettings()
    settings = MaintenanceSettings(
        batch_size=_int(env, "MNEMO_MAINTENANCE_BATCH_SIZE", default.batch_size),
        lease_seconds=_int(env, "MNEMO_MAINTENANCE_LEASE_SECONDS", default.lease_seconds),
        budget_seconds=_float(env, "MNEMO_MAINTENANCE_BUDGET_SECONDS", default.budget_seconds),
        forget_max=_int(env, "MNEMO_FORGET_MAX", default.forget_max),
    )
    _positive("MNEMO_MAINTENANCE_BATCH_SIZE", settings.batch_size)
    _positive("MNEMO_MAINTENANCE_LEASE_SECONDS", settings.lease_seconds)
    _positive("MNEMO_MAINTENANCE_BUDGET_SECONDS", settings.budget_seconds)
    _positive("MNEMO_FORGET_MAX", settings.forget_max)
    return settings


@dataclass(frozen=True)
class WebhookSettings:
    """Watches' outbound webhooks and inbound hooks (core/webhooks, core/webhooks/watches.py,
    core/webhooks/hooks.py)."""

    # http:// URLs, and loopback addresses, are refused unless this is on (local development
    # and tests: a receiver on 127.0.0.1). Never needed in production.
    allow_http_loopback: bool = False
    # Hosts ("hooks.internal.example") or networks ("10.1.0.0/16") a webhook may reach even
    # though they are private; everything else must resolve to public addresses only.
    allowlist: tuple[str, ...] = ()
    timeout_seconds: float = 10.0
    # Attempts per delivery before it is marked failed; retries wait a random time in
    # [0, min(backoff_max, backoff_base * 2**attempt)] ("full jitter").
    max_attempts: int = 8
    backoff_base_seconds: float = 30.0
    backoff_max_seconds: float = 3600.0
    # How long a drainer's claim on a delivery holds before another drainer may retry it.
    lease_seconds: int = 60
    # Deliveries sent at once by one drainer.
    concurrency: int = 8
    # The SQS queue the DeliveryFunction drains from; the API sends a message to it after a
    # commit that wrote deliveries. Unset: drained by `mnemo serve`/`mnemo deliver` and the
    # maintenance schedule.
    queue_url: str | None = None
    # Inbound hooks: how old a signed timestamp may be (seconds), either way.
    inbound_tolerance_seconds: int = 300


def webhook_settings_from_env(env: Mapping[str, str]) -> WebhookSettings:
    default = WebhookSettings()
    allowlist = env.get("MNEMO_WEBHOOK_ALLOWLIST") or ""
    settings = WebhookSettings(
        allow_http_loopback=_bool(env, "MNEMO_WEBHOOK_ALLOW_HTTP_LOOPBACK", False),
        allowlist=tuple(a.strip().lower() for a in allowlist.split(",") if a.strip()),
        timeout_seconds=_float(env, "MNEMO_WEBHOOK_TIMEOUT_SECONDS", default.timeout_seconds),
        max_attempts=_int(env, "MNEMO_WEBHOOK_MAX_ATTEMPTS", default.max_attempts),
        backoff_base_seconds=_float(
            env, "MNEMO_WEBHOOK_BACKOFF_BASE_SECONDS", default.backoff_base_seconds
        ),
        backoff_max_seconds=_float(
            env, "MNEMO_WEBHOOK_BACKOFF_MAX_SECONDS", default.backoff_max_seconds
        ),
        lease_seconds=_int(env, "MNEMO_WEBHOOK_LEASE_SECONDS", default.lease_seconds),
        concurrency=_int(env, "MNEMO_WEBHOOK_CONCURRENCY", default.concurrency),
        queue_url=(env.get("MNEMO_DELIVERY_QUEUE_URL") or "").strip() or None,
        inbound_tolerance_seconds=_int(
            env, "MNEMO_HOOK_TOLERANCE_SECONDS", default.inbound_tolerance_seconds
        ),
    )
    _positive("MNEMO_WEBHOOK_TIMEOUT_SECONDS", settings.timeout_seconds)
    _positive("MNEMO_WEBHOOK_MAX_ATTEMPTS", settings.max_attempts)
    _positive("MNEMO_WEBHOOK_LEASE_SECONDS", settings.lease_seconds)
    _positive("MNEMO_WEBHOOK_CONCURRENCY", settings.concurrency)
    _positive("MNEMO_HOOK_TOLERANCE_SECONDS", settings.inbound_tolerance_seconds)
    if settings.backoff_base_seconds < 0 or settings.backoff_max_seconds < 0:
        raise ValueError("MNEMO_WEBHOOK_BACKOFF_BASE/MAX_SECONDS must be 0 or more")
    return settings


@dataclass(frozen=True)
class LinkSettings:
    """Links and the graph (core/graph/links.py, core/graph/traversal.py). Per-brain caps (hops,
    nodes, how many inferred links and above what similarity) are the brain policy's
    (core/memory/policy.py)."""

    # Waypoints: a new memory is linked (`related`, origin `inferred`, weight = cosine) to its
    # most similar memories. Off by default: it costs a vector scan on every add.
    inferred: bool = False
    # Graph stats read at most this many links (beyond it the figures cover a sample).
    stats_max_links: int = 100_000


def link_settings_from_env(env: Mapping[str, str]) -> LinkSettings:
    settings = LinkSettings(
        inferred=_bool(env, "MNEMO_INFERRED_LINKS", LinkSettings.inferred),
        stats_max_links=_int(env, "MNEMO_GRAPH_STATS_MAX_LINKS", LinkSettings.stats_max_links),
    )
    _positive("MNEMO_GRAPH_STATS_MAX_LINKS", settings.stats_max_links)
    return settings


@dataclass(frozen=True)
class ConflictSettings:
    """Conflicts, merge and consolidation (core/curation/conflicts.py, core/curation/merge.py)."""

    # Memories one detection pass reads (maintenance runs one pass per brain and run).
    detect_batch: int = 200
    # The most similar memories each one is compared with by the number/date/negation rule.
    neighbours: int = 8
    # (The cosine at which two memories count as near-duplicates is the brain policy's
    # consolidate_threshold: core/memory/policy.py.)
    # Memories one consolidation call compares (the next call goes on from its cursor).
    consolidate_max_scan: int = 2000
    # A new note or fact is compared with its neighbours as it is saved, and a disagreement
    # recorded at once (core/curation/on_write.py); off leaves it to detection and maintenance.
    on_write: bool = True


def conflict_settings_from_env(env: Mapping[str, str]) -> ConflictSettings:
    default = ConflictSettings()
    settings = ConflictSettings(
        detect_batch=_int(env, "MNEMO_CONFLICT_DETECT_BATCH", default.detect_batch),
        neighbours=_int(env, "MNEMO_CONFLICT_NEIGHBOURS", default.neighbours),
        consolidate_max_scan=_int(env, "MNEMO_CONSOLIDATE_MAX_SCAN", default.consolidate_max_scan),
        on_write=_bool(env, "MNEMO_CONFLICTS_ON_WRITE", default.on_write),
    )
    _positive("MNEMO_CONFLICT_DETECT_BATCH", settings.detect_batch)
    _positive("MNEMO_CONFLICT_NEIGHBOURS", settings.neighbours)
    _positive("MNEMO_CONSOLIDATE_MAX_SCAN", settings.consolidate_max_scan)
    return settings


@dataclass(frozen=True)
class SnapshotSettings:
    """Where snapshot payloads live (core/transfer/snapshots.py): in the database unless a bucket is
    set. How many a brain keeps is its policy's snapshot_retention (core/memory/policy.py)."""

    bucket: str | None = None
    prefix: str = "snapshots/"
    region: str | None = None
    # An S3-compatible endpoint (MinIO, LocalStack); unset means AWS.
    endpoint_url: str | None = None


def snapshot_settings_from_env(env: Mapping[str, str]) -> SnapshotSettings:
    prefix = env.get("MNEMO_SNAPSHOT_PREFIX")
    return SnapshotSettings(
        bucket=(env.get("MNEMO_SNAPSHOT_BUCKET") or "").strip() or None,
        prefix=SnapshotSettings.prefix if prefix is None else prefix.strip(),
        region=(env.get("MNEMO_SNAPSHOT_REGION") or "").strip() or None,
        endpoint_url=(env.get("MNEMO_SNAPSHOT_S3_ENDPOINT") or "").strip() or None,
    )


@dataclass(frozen=True)
class DatabaseSettings:
    """How a PostgreSQL store is reached when its password is not in the URL (on AWS it never
    is: template.yaml puts only the host, port and database in MNEMO_DATABASE_URL)."""

    # A Secrets Manager secret holding `username` and `password` (and, when the URL leaves
    # them out, `host`, `port`, `dbname`): read at the first connection, kept for the
    # process, read again once when the database refuses it (the secret was rotated).
    secret_arn: str | None = None
    # Sign an RDS IAM authentication token locally instead (boto3, no network call); the
    # URL then names the database user.
    iam_auth: bool = False
    region: str | None = None
    # Shown in pg_stat_activity: on Lambda, the function's name.
    application_name: str = "mnemo"
    # An Aurora Serverless v2 instance paused at 0 ACU takes up to ~15 s to resume on the
    # first connection; longer than this and the request fails instead of hanging.
    connect_timeout_seconds: int = 20


def database_settings_from_env(env: Mapping[str, str]) -> DatabaseSettings:
    default = DatabaseSettings()
    settings = DatabaseSettings(
        secret_arn=(env.get("MNEMO_DATABASE_SECRET_ARN") or "").strip() or None,
        iam_auth=_bool(env, "MNEMO_DATABASE_IAM_AUTH", False),
        region=(env.get("MNEMO_DATABASE_REGION") or env.get("AWS_REGION") or "").strip() or None,
        application_name=(env.get("AWS_LAMBDA_FUNCTION_NAME") or default.application_name)[:63],
        connect_timeout_seconds=_int(
            env, "MNEMO_DATABASE_CONNECT_TIMEOUT_SECONDS", default.connect_timeout_seconds
        ),
    )
    _positive("MNEMO_DATABASE_CONNECT_TIMEOUT_SECONDS", settings.connect_timeout_seconds)
    if settings.secret_arn and settings.iam_auth:
        raise ValueError(
            "set MNEMO_DATABASE_SECRET_ARN or MNEMO_DATABASE_IAM_AUTH, not both: the first reads "
            "the password from Secrets Manager, the second signs an IAM token instead"
        )
    return settings


@dataclass(frozen=True)
class Settings:
    database_url: str
    api_key: str | None = field(default=None, repr=False)
    # Single-key mode with the key in Secrets Manager (template.yaml's SingleApiKey): read at
    # the first request that presents a key, never put in an environment variable.
    api_key_secret_arn: str | None = None
    default_brain: str = "default"
    max_body_bytes: int = 1024 * 1024
    schema_probe_seconds: float = 5.0
    sqlite_busy_timeout_ms: int = 30_000
    log_level: str = "INFO"
    on_lambda: bool = False
    # Lambda SnapStart initialises once and snapshots the process: whatever init imports is
    # free at every restore, so the app loads its route modules up front there.
    snap_start: bool = False
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


def settings_from_env(env: Mapping[str, str] | None = None) -> Settings:
    env = os.environ if env is None else env
    limits = Limits(
        content_bytes=_int(env, "MNEMO_MAX_CONTENT_BYTES", Limits.content_bytes),
        tags=_int(env, "MNEMO_MAX_TAGS", Limits.tags),
        tag_chars=_int(env, "MNEMO_MAX_TAG_CHARS", Limits.tag_chars),
        metadata_bytes=_int(env, "MNEMO_MAX_METADATA_BYTES", Limits.metadata_bytes),
        batch_items=_int(env, "MNEMO_MAX_BATCH_ITEMS", Limits.batch_items),
        page_size=_int(env, "MNEMO_MAX_PAGE_SIZE", Limits.page_size),
    )
    return Settings(
        database_url=env.get("MNEMO_DATABASE_URL") or default_database_url(env),
        api_key=env.get("MNEMO_API_KEY") or None,
        api_key_secret_arn=(env.get("MNEMO_API_KEY_SECRET_ARN") or "").strip() or None,
        default_brain=env.get("MNEMO_DEFAULT_BRAIN") or "default",
        max_body_bytes=_int(env, "MNEMO_MAX_BODY_BYTES", 1024 * 1024),
        schema_probe_seconds=_float(env, "MNEMO_SCHEMA_PROBE_SECONDS", 5.0),
        sqlite_busy_timeout_ms=_int(env, "MNEMO_SQLITE_BUSY_TIMEOUT_MS", 30_000),
        log_level=_log_level(env),
        on_lambda=running_on_lambda(env),
        snap_start=env.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start",
        auth=auth_settings_from_env(env),
        rate_limits=rate_limit_settings_from_env(env),
        mcp=mcp_settings_from_env(env),
        cors=cors_settings_from_env(env),
        limits=limits,
        embedder=embedder_settings_from_env(env),
        ranking=RankingSettings(
            lexical_weight=_optional_float(env, "MNEMO_SEARCH_LEXICAL_WEIGHT"),
            recency_weight=_float(
                env, "MNEMO_SEARCH_RECENCY_WEIGHT", RankingSettings.recency_weight
            ),
            half_life_days=_float(
                env, "MNEMO_SEARCH_HALF_LIFE_DAYS", RankingSettings.half_life_days
            ),
            near_words=_bool(env, "MNEMO_SEARCH_NEAR_WORDS", RankingSettings.near_words),
        ),
        summaries=summary_settings_from_env(env),
        extraction=extraction_settings_from_env(env),
        maintenance=maintenance_settings_from_env(env),
        webhooks=webhook_settings_from_env(env),
        links=link_settings_from_env(env),
        conflicts=conflict_settings_from_env(env),
        snapshots=snapshot_settings_from_env(env),
        vector_search=vector_search_settings_from_env(env),
        database=database_settings_from_env(env),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return settings_from_env()
