"""Knowledge that changes, through the API on both stores (issue 18): a new diet or partner
named in plain notes is caught as a conflict when it is saved, the newer value ranks first now
and the older one as of a date when it held; and a user's own notes, which all name them, do
not outrank the one that answers by lending each other evidence."""

from __future__ import annotations

from typing import Any

from tests.lambda_client import LambdaClient


def _add(client: LambdaClient, content: str, valid_from: str) -> dict[str, Any]:
    reply = client.post(
        "/v1/memories", json_body={"content": content, "user_id": "sam", "valid_from": valid_from}
    )
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.json()
    return body


def _first(client: LambdaClient, query: str, **extra: Any) -> str:
    reply = client.post("/v1/search", json_body={"query": query, "user_id": "sam", **extra})
    assert reply.status == 200, reply.body
    content: str = reply.json()["results"][0]["memory"]["content"]
    return content


def test_a_changed_diet_is_a_conflict_at_once_and_ranks_by_when(client: LambdaClient) -> None:
    old = _add(client, "Sam follows a vegetarian diet", "2023-01-10")
    assert not old.get("conflicts")
    new = _add(client, "Sam follows a vegan diet now", "2025-03-01")
    (conflict,) = new["conflicts"]
    assert conflict["with_id"] == old["id"] and conflict["reason"] == "diet_differs"
    # Both stay (nothing says which is right), the one true more recently first.
    question = "what diet does Sam follow"
    assert _first(client, question) == "Sam follows a vegan diet now"
    assert _first(client, question, as_of="2024-06-01") == "Sam follows a vegetarian diet"
    # A restriction that goes with any diet is one more thing, not a change.
    assert not _add(client, "Sam follows a gluten-free diet", "2025-05-01").get("conflicts")
    listed = client.get("/v1/conflicts", query={"status": "needs_review"})
    assert listed.status == 200, listed.body
    assert [c["reason"] for c in listed.json()["results"]] == ["diet_differs"]


def test_a_new_partner_is_a_conflict_however_it_is_worded(client: LambdaClient) -> None:
    old = _add(client, "Sam's partner is Jo", "2021-05-01")
    new = _add(client, "Sam is dating Kim", "2024-02-01")
    (conflict,) = new["conflicts"]
    assert conflict["with_id"] == old["id"] and conflict["reason"] == "partner_differs"
    assert not _add(client, "Sam's business partner is Lee", "2024-03-01").get("conflicts")


def test_notes_that_all_name_their_user_do_not_outrank_the_answer(client: LambdaClient) -> None:
    # Sam's notes all name Sam, and were saved in one batch: before, each lent its neighbours
    # what it had over a memory that matches nothing, and together they outranked the note
    # that answers. Others' homes and employers make "lives" and "works" the commoner words.
    things = ("bread", "kite", "quilt", "fence", "canoe", "teapot", "lantern", "poster", "scarf")
    notes = [
        {"content": f"Sam {verb} a {thing} last weekend", "user_id": "sam"}
        for verb in ("painted", "fixed", "bought")
        for thing in things
    ]
    others = ("Ava", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jade", "Kai")
    for n, name in enumerate(others):
        for year, city, firm in (
            (2019, "Lyon", "Acme"),
            (2021, "Oslo", "Hooli"),
            (2023, "Cork", "Wonka"),
        ):
            notes += [
                {
                    "content": f"{name} lives in {city}",
                    "user_id": name.lower(),
                    "valid_from": f"{year}-0{n % 9 + 1}-01",
                },
                {
                    "content": f"{name} works at {firm}",
                    "user_id": name.lower(),
                    "valid_from": f"{year}-0{n % 9 + 1}-20",
                },
            ]
    reply = client.post("/v1/memories/batch", json_body={"memories": notes})
    assert reply.status == 201, reply.body
    _add(client, "Sam lives in Lisbon", "2020-04-01")
    _add(client, "Sam works at Globex", "2021-09-01")
    assert _first(client, "where does Sam live") == "Sam lives in Lisbon"
    assert _first(client, "where does Sam work") == "Sam works at Globex"
