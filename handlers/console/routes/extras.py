"""Sections of the memory page that belong to other features (links)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from core.scope import Scope
from handlers.console.html import Html
from handlers.console.session import InBrain


def links_section(conn: Connection, scope: Scope, memory_id: str) -> Html:
    return Html("")


def link_form(view: InBrain, memory: dict[str, Any], links: Html) -> Html:
    return links
