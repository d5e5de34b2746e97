"""The process's store engine, from its settings: the URL, plus for PostgreSQL where the
credentials come from (core/kernel/db/credentials.py) and, on Lambda, one connection per
instance named after the function."""

from __future__ import annotations

from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from core.kernel.config import Settings
from core.kernel.db.credentials import CredentialSource, IamTokenSource, SecretsManagerSource
from core.kernel.db.engine import PostgresOptions, get_engine


def engine_for(settings: Settings) -> Engine:
    return get_engine(
        settings.database_url,
        busy_timeout_ms=settings.sqlite_busy_timeout_ms,
        on_lambda=settings.on_lambda,
        postgres=postgres_options(settings),
    )


def postgres_options(settings: Settings) -> PostgresOptions | None:
    if settings.store_kind != "postgresql":
        return None
    db = settings.database
    source: CredentialSource | None = None
    if db.secret_arn:
        source = SecretsManagerSource(db.secret_arn, db.region)
    elif db.iam_auth:
        url = make_url(settings.database_url)
        if not url.host or not url.username:
            raise ValueError(
                "MNEMO_DATABASE_IAM_AUTH needs the host and the database user in "
                "MNEMO_DATABASE_URL (postgresql+psycopg://user@host:5432/db)"
            )
        source = IamTokenSource(url.host, url.port or 5432, url.username, db.region)
    if source is None and not settings.on_lambda:
        return None  # a plain URL off Lambda: the engine as it always was
    return PostgresOptions(
        credentials=source,
        application_name=db.application_name,
        connect_timeout_seconds=db.connect_timeout_seconds,
        one_connection=settings.on_lambda,
    )
