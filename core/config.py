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
class Limits:
    content_bytes: int = 64 * 1024
    tags: int = 64
    tag_chars: int = 64
    metadata_bytes: int = 16 * 1024
    batch_items: int = 500
    page_size: int = 500


@dataclass(frozen=True)
class Settings:
    database_url: str
    api_key: str | None = None
    default_brain: str = "default"
    max_body_bytes: int = 1024 * 1024
    schema_probe_seconds: float = 5.0
    sqlite_busy_timeout_ms: int = 30_000
    log_level: str = "INFO"
    on_lambda: bool = False
    limits: Limits = field(default_factory=Limits)

    def with_(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]

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
        default_brain=env.get("MNEMO_DEFAULT_BRAIN") or "default",
        max_body_bytes=_int(env, "MNEMO_MAX_BODY_BYTES", 1024 * 1024),
        schema_probe_seconds=_float(env, "MNEMO_SCHEMA_PROBE_SECONDS", 5.0),
        sqlite_busy_timeout_ms=_int(env, "MNEMO_SQLITE_BUSY_TIMEOUT_MS", 30_000),
        log_level=_log_level(env),
        on_lambda=running_on_lambda(env),
        limits=limits,
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return settings_from_env()
