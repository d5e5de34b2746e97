"""Metadata filters to SQL without a store (core/retrieval/filters.py): every value bound, every
name checked, every bound enforced with a message naming the field. What the SQL selects on
both stores: tests/api/test_column_filters.py and tests/api/test_search.py."""

from __future__ import annotations

from typing import Any

import pytest

from core.kernel.errors import InvalidInput
from core.retrieval.filters import MAX_IN_VALUES, MetadataFilter

HOSTILE = "x'); DROP TABLE memories; --"


def _sql(expression: Any, dialect: str = "sqlite") -> tuple[str, dict[str, Any]]:
    params: dict[str, Any] = {}
    return MetadataFilter(dialect, params).sql(expression), params


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_values_and_paths_are_bound_never_written_into_the_sql(dialect: str) -> None:
    sql, params = _sql(
        {
            "OR": [
                {"topic": HOSTILE},
                {"author.name": {"in": [HOSTILE, "Ada"]}},
                {"note": {"contains": HOSTILE}},
                {"$user_id": HOSTILE},
            ]
        },
        dialect,
    )
    assert "DROP" not in sql and "Ada" not in sql and "author" not in sql
    assert sum(HOSTILE in str(v) for v in params.values()) == 4
    assert sql.startswith("(") and sql.count(" OR ") >= 3


def test_operators_make_the_documented_conditions() -> None:
    sql, params = _sql({"score": {"gte": 3, "lt": 9}, "flag": True})
    assert sql == (
        "(json_extract(m.metadata, :md_0) >= :md_1 AND json_extract(m.metadata, :md_2) < :md_3"
        " AND json_extract(m.metadata, :md_4) = :md_5)"
    )
    assert params == {
        "md_0": '$."score"',
        "md_1": 3,
        "md_2": '$."score"',
        "md_3": 9,
        "md_4": '$."flag"',
        "md_5": 1,  # SQLite's json_extract gives 1 for true
    }
    absent, _ = _sql({"topic": {"ne": "work"}})
    assert absent.endswith("IS NULL)")  # a memory without the field is "not equal" too
    negated, _ = _sql({"NOT": {"topic": {"exists": True}}})
    assert negated == "NOT (json_extract(m.metadata, :md_0) IS NOT NULL)"


@pytest.mark.parametrize(
    ("expression", "field", "says"),
    [
        ({}, "filters.metadata", "non-empty JSON object"),
        ({"a b": 1}, "filters.metadata", "not a metadata field name"),
        ({"topic": {"like": "w%"}}, "filters.metadata.topic.like", "unknown operator 'like'"),
        ({"topic": {}}, "filters.metadata.topic", "at least one operator"),
        ({"topic": {"in": []}}, "filters.metadata.topic.in", "non-empty list"),
        ({"topic": ["a", "b"]}, "filters.metadata.topic", "string, number or boolean"),
        ({"n": 2**63}, "filters.metadata.n", "64 bits"),
        ({"note": {"contains": 5}}, "filters.metadata.note.contains", "contains takes a string"),
        ({"AND": []}, "filters.metadata.AND", "non-empty list of filters"),
        ({"OR": [{"a": 1}, {}]}, "filters.metadata.OR.1", "non-empty JSON object"),
        ({"$owner": "x"}, "filters.metadata.$owner", "not a memory column"),
        ({"$created_at": "yesterday"}, "filters.metadata.$created_at.eq", "ISO 8601"),
        ({"$user_id": 5}, "filters.metadata.$user_id.eq", "takes a string"),
    ],
)
def test_a_bad_filter_names_its_field_and_what_to_fix(
    expression: Any, field: str, says: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        _sql(expression)
    assert caught.value.details == {"field": field}
    assert says in caught.value.message


def test_filters_are_bounded_in_size() -> None:
    with pytest.raises(InvalidInput) as caught:
        _sql({"topic": {"in": list(range(MAX_IN_VALUES + 1))}})
    assert caught.value.code == "filter_too_large"
    assert caught.value.details == {"field": "filters.metadata.topic.in", "limit": MAX_IN_VALUES}
    _sql({"topic": {"in": list(range(MAX_IN_VALUES))}})  # the limit itself is fine
    with pytest.raises(InvalidInput, match="at most 64 conditions"):
        _sql({"AND": [{f"f{i}": i} for i in range(64)]})
