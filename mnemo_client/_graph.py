"""What the links and graph calls send, shared by the sync and the async client."""

from __future__ import annotations

from collections.abc import Sequence

from mnemo_client import _api
from mnemo_client._api import Call, segment


def _relations(relation: str | Sequence[str] | None) -> str | None:
    if relation is None or isinstance(relation, str):
        return relation
    return ",".join(relation)


def create_link(
    from_id: str,
    to_id: str,
    relation: str,
    label: str | None,
    weight: float | None,
    actor_id: str | None,
) -> Call:
    body = {"from_id": from_id, "to_id": to_id, "relation": relation}
    for name, value in (("label", label), ("weight", weight), ("actor_id", actor_id)):
        if value is not None:
            body[name] = value  # type: ignore[assignment]
    return Call("POST", "/v1/links", json=body)


def get_link(link_id: str) -> Call:
    return Call("GET", f"/v1/links/{segment(link_id)}")


def delete_link(link_id: str) -> Call:
    return Call("DELETE", f"/v1/links/{segment(link_id)}")


def links(
    memory_id: str,
    direction: str | None,
    relation: str | Sequence[str] | None,
    limit: int | None,
    cursor: str | None,
) -> Call:
    params = _api.query(
        {
            "direction": direction,
            "relation": _relations(relation),
            "limit": limit,
            "cursor": cursor,
        }
    )
    return Call("GET", f"/v1/memories/{segment(memory_id)}/links", params)


def neighbors(
    memory_id: str,
    direction: str | None,
    relation: str | Sequence[str] | None,
    limit: int | None,
    include_archived: bool | None,
) -> Call:
    params = _api.query(
        {
            "direction": direction,
            "relation": _relations(relation),
            "limit": limit,
            "include_archived": include_archived,
        }
    )
    return Call("GET", f"/v1/memories/{segment(memory_id)}/neighbors", params)


def suggestions(memory_id: str, limit: int | None, min_score: float | None) -> Call:
    params = _api.query({"limit": limit, "min_score": min_score})
    return Call("GET", f"/v1/memories/{segment(memory_id)}/suggestions", params)


def subgraph(
    memory_id: str | None,
    query: str | None,
    radius: int | None,
    limit: int | None,
    relation: str | Sequence[str] | None,
    seeds: int | None,
    user_id: str | None,
    include_archived: bool | None,
) -> Call:
    params = _api.query(
        {
            "memory_id": memory_id,
            "query": query,
            "radius": radius,
            "limit": limit,
            "relation": _relations(relation),
            "seeds": seeds,
            "user_id": user_id,
            "include_archived": include_archived,
        }
    )
    return Call("GET", "/v1/graph/subgraph", params)


def path(
    from_id: str,
    to_id: str,
    max_hops: int | None,
    relation: str | Sequence[str] | None,
    include_archived: bool | None,
) -> Call:
    params = _api.query(
        {
            "from_id": from_id,
            "to_id": to_id,
            "max_hops": max_hops,
            "relation": _relations(relation),
            "include_archived": include_archived,
        }
    )
    return Call("GET", "/v1/graph/path", params)


def graph_stats(user_id: str | None, top: int | None) -> Call:
    return Call("GET", "/v1/graph/stats", _api.query({"user_id": user_id, "top": top}))
