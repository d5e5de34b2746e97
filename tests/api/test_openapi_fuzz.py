"""Schemathesis over /openapi.json on both stores: every operation, fed generated requests,
answers without a server error and with a body the document describes."""

from __future__ import annotations

import os
import time
import uuid

import schemathesis
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.kernel.config import Settings
from handlers.api import create_app

KEY = f"fuzz-owner-{uuid.uuid4().hex}"
CHECKS = [
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
    content_type_conformance,
]
EXAMPLES = int(os.environ.get("MNEMO_FUZZ_EXAMPLES", "10"))
# /v1/import takes JSON Lines: sent as the text it is.
schemathesis.serializer.alias("application/x-ndjson", "text/plain")


def test_every_operation(settings: Settings, engine: object) -> None:
    app = create_app(settings.with_(api_key=KEY, default_brain=f"fz-{uuid.uuid4().hex[:8]}"))
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    failures: list[str] = []
    for result in schema.get_all_operations():
        operation = result.ok()
        started = time.monotonic()

        @given(
            case=st.one_of(
                operation.as_strategy(GenerationMode.POSITIVE),
                operation.as_strategy(GenerationMode.NEGATIVE),
            )
        )
        @hypothesis_settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(headers={"authorization": f"Bearer {KEY}"}, checks=CHECKS)

        try:
            run()
        except (Exception, BaseExceptionGroup) as exc:
            failures.append(f"{operation.label}: {exc}")
        print(operation.label, round(time.monotonic() - started, 2))
    assert not failures, "\n\n".join(failures)
