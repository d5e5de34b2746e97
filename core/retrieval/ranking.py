"""Fusion and ranking: evidence on one scale, then the memory's own qualities.

Raw BM25 and raw cosine live on different, query-dependent scales, so neither is added to the
other as is (MemoryVault's cosine term swamps its lexical one; RRF throws the margins away).
Each is standardised against its own distribution over the memories in scope for this query
(a z-score), with a prior of `prior_weight` pseudo-memories that do not match, so a scope of one
or two memories still gives a real match a positive score. The weighted sum of the two z-scores
is the fused evidence. A memory also borrows a share of the evidence of the memories saved near
it in the same thread (same brain and user: the two before and the two after, the farther ones
lending half as much; what each has over the median memory in scope), because a conversation
is stored turn by turn and the answer is often the turn after the one that matches the words
of the question, or the same speaker's next turn, two places on. The result is mapped onto
[0, 1) by a monotone squash, then scaled by importance, confidence, source trust and recency,
each a factor in (0, 1], and superseded memories are halved: a fact replaced by a newer one, a
merged memory's sources, and the loser of a resolved conflict (core/curation/conflicts.py sets
its `superseded_by`, so no extra read). `explain` reports every factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, overload

import numpy as np

from core.kernel.config import RankingSettings


@dataclass(frozen=True)
class Standardiser:
    mean: float
    std: float

    @overload
    def z(self, value: float) -> float: ...
    @overload
    def z(self, value: np.ndarray) -> np.ndarray: ...
    def z(self, value: Any) -> Any:
        return (value - self.mean) / self.std


def standardiser(
    values: np.ndarray, population: int, *, prior: float, prior_value: float, min_std: float
) -> Standardiser:
    """Mean and spread of a score over `population` memories, of which `values` are the ones
    that have a score (the rest count as `prior_value`), shrunk toward `prior` pseudo-memories
    at `prior_value`."""
    values = np.asarray(values, dtype=np.float64)
    rest = max(population - len(values), 0) + prior
    count = len(values) + rest
    mean = (values.sum() + rest * prior_value) / count
    second = (np.square(values).sum() + rest * prior_value**2) / count
    std = math.sqrt(max(second - mean**2, 0.0))
    return Standardiser(float(mean), max(std, min_std))


def typical(values: np.ndarray, population: int, *, prior: float) -> float:
    """The score of the median memory in scope, of `population` memories of which `values`
    are the ones that have a score (the rest, and `prior` pseudo-memories, score 0): 0 unless
    more than half of them have one. What a neighbour lends is measured from it: where every
    memory matches a word of the query (a user's name in each of their notes), matching that
    word alone is unremarkable."""
    count = population + prior
    if len(values) <= count / 2:
        return 0.0
    ordered = np.sort(np.asarray(values, dtype=np.float64))[::-1]
    return float(ordered[int(count // 2)])


@dataclass(frozen=True)
class Factors:
    lexical: float
    semantic: float
    context: float
    relevance: float
    importance: float
    confidence: float
    trust: float
    recency: float
    superseded: bool
    score: float


@dataclass(frozen=True)
class Candidates:
    """What ranking knows of each candidate, one array entry per memory, in the same order.
    `lexical` and `semantic` are the weighted z-scores, `context` what the neighbours add."""

    lexical: np.ndarray
    semantic: np.ndarray
    context: np.ndarray
    importance: np.ndarray
    confidence: np.ndarray
    trust: np.ndarray
    age_days: np.ndarray
    superseded: np.ndarray  # bool


@dataclass(frozen=True)
class Ranked:
    """Scores of every candidate, computed together (one numpy pass instead of a Python call
    per candidate: a search ranks a few hundred), with the factors on demand for `explain`."""

    candidates: Candidates
    relevance: np.ndarray
    recency: np.ndarray
    scores: np.ndarray

    def factors(self, i: int) -> Factors:
        c = self.candidates
        return Factors(
            lexical=round(float(c.lexical[i]), 6),
            semantic=round(float(c.semantic[i]), 6),
            context=round(float(c.context[i]), 6),
            relevance=round(float(self.relevance[i]), 6),
            importance=float(c.importance[i]),
            confidence=float(c.confidence[i]),
            trust=float(c.trust[i]),
            recency=round(float(self.recency[i]), 6),
            superseded=bool(c.superseded[i]),
            score=float(self.scores[i]),
        )


# Borrowed evidence stops this far under the lender's own (z-score units, ~1-10 for a match).
_UNDER_LENDER = 1e-3
# Neighbours less relevant than an unremarkable memory lend less than nothing, but take at most
# this share of a memory's own evidence: a match saved among unrelated memories (a small brain,
# four neighbours each under the average) stays a match.
_MOST_TAKEN = 0.5


def thread_context(
    fused: np.ndarray,
    sides: list[tuple[np.ndarray, float]],
    background: float,
) -> np.ndarray:
    """What each memory borrows from the memories saved near it: `sides` holds, for each
    neighbour position (just before, just after, two before...), that neighbour's fused
    evidence (`background` where there is none) and the share of it borrowed, beyond what an
    unremarkable neighbour would lend. A memory may rise to just under its strongest neighbour
    on borrowed evidence, never past it: the turn after a match climbs to the match, but a
    loose mention saved after an exact match does not outrank it. Quiet neighbours take at most
    `_MOST_TAKEN` of a memory's own evidence."""
    context = np.zeros_like(fused)
    lender = np.full_like(fused, -np.inf)
    for evidence, share in sides:
        if share <= 0:
            continue
        context = context + share * (evidence - background)
        lender = np.maximum(lender, evidence)
    room = np.maximum(lender - fused - _UNDER_LENDER, 0.0)
    capped = np.where(lender > fused, np.minimum(context, room), context)
    floor = np.where(fused > 0, -_MOST_TAKEN * fused, -np.inf)
    kept: np.ndarray = np.maximum(capped, floor)
    return kept


def rank(candidates: Candidates, settings: RankingSettings) -> Ranked:
    c = candidates
    evidence = np.maximum(c.lexical + c.semantic + c.context, 0.0)
    relevance = 1.0 - np.exp(-evidence / settings.squash)
    recency = (
        1
        - settings.recency_weight
        + settings.recency_weight
        * np.power(0.5, np.maximum(c.age_days, 0.0) / settings.half_life_days)
    )
    quality = (0.8 + 0.2 * c.importance) * (0.9 + 0.1 * c.confidence) * (0.8 + 0.2 * c.trust)
    final = relevance * quality * recency * np.where(c.superseded, settings.superseded_factor, 1.0)
    return Ranked(c, relevance, recency, np.round(np.clip(final, 0.0, 1.0), 6))
