"""The SQL a block of code sends to a store, for tests that assert on the statements."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event


@dataclass
class Sent:
    """Each statement sent, in order, and its parameters at the same index."""

    statements: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)


@contextmanager
def statements_sent(engine: Engine) -> Iterator[Sent]:
    """Every statement `engine` sends inside the block, as the driver receives it."""
    sent = Sent()

    def keep(_conn: Any, _cursor: Any, statement: str, params: Any, *_: Any) -> None:
        sent.statements.append(statement)
        sent.params.append(params)

    event.listen(engine, "before_cursor_execute", keep)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", keep)
