"""Linking two memories by hand: the link, and for a `contradicts` link the conflict it declares.

The graph package writes links and knows nothing of conflicts; curation records conflicts and
knows nothing of how a link is written. A `contradicts` link is both at once, so the use case
lives here, above both, and runs in the caller's one transaction.
"""

from __future__ import annotations

from sqlalchemy import Connection

from core.curation import conflicts
from core.graph import links
from core.graph.models import LinkIn, SavedLinkRecord
from core.kernel.scope import Scope


def create_link(conn: Connection, scope: Scope, data: LinkIn) -> SavedLinkRecord:
    link = links.create(conn, scope, data)
    if data.relation == "contradicts" and not link["deduplicated"]:
        conflicts.on_contradicts_link(conn, scope, data.from_id, data.to_id)
    return link
