"""Fusion and ranking: evidence on one scale, then the memory's own qualities.

Raw BM25 and raw cosine live on different, query-dependent scales, so neither is added to the
other as is (MemoryVault's cosine term swamps its lexical one; RRF throws the margins away).
Each is standardised against its own distribution over the memories in scope for this query
(a z-score), with a prior of `prior_weight` pseudo-memories that do not match, so a scope of one
or two memories still gives a real match a positive score. The weighted sum of the two z-scores
is the fused evidence. A memory also borrows a share of the evidence of the memories saved just
before and after it in the same thread (same brain and user), because a conversation is stored
turn by turn and the answer is often the turn after the one that matches the words of the
question. The result is mapped onto [0, 1) by a monotone squash, then scaled by importance,
confidence, source trust and recency, each a factor in (0, 1], and superseded memories are
halved. `explain` reports every factor.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RankingSettings:
    # Weight of the lexical z-score against the semantic one in hybrid mode. None: the
    # embedder's own default (a weak builtin embedder gets less say than a real model).
    lexical_weight: float | None = None
    context_before: float = 0.5  # share of the previous memory's evidence
    context_after: float = 0.25  # share of the next memory's evidence
    squash: float = 4.0  # evidence at which relevance reaches 1 - 1/e
    prior_weight: float = 10.0
    recency_weight: float = 0.1
    half_life_days: float = 30.0
    superseded_factor: float = 0.5


@dataclass(frozen=True)
class Standardiser:
    mean: float
    std: float

    def z(self, value: float) -> float:
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


def squash(evidence: float, scale: float) -> float:
    return 1.0 - math.exp(-max(evidence, 0.0) / scale)


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


def score(
    *,
    lexical: float,
    semantic: float,
    context: float,
    importance: float,
    confidence: float,
    trust: float,
    age_days: float,
    superseded: bool,
    settings: RankingSettings,
) -> Factors:
    """`lexical` and `semantic` are the weighted z-scores, `context` what the neighbours add."""
    relevance = squash(lexical + semantic + context, settings.squash)
    recency = (
        1
        - settings.recency_weight
        + settings.recency_weight * math.pow(0.5, max(age_days, 0.0) / settings.half_life_days)
    )
    quality = (0.8 + 0.2 * importance) * (0.9 + 0.1 * confidence) * (0.8 + 0.2 * trust)
    final = relevance * quality * recency * (settings.superseded_factor if superseded else 1.0)
    return Factors(
        lexical=round(lexical, 6),
        semantic=round(semantic, 6),
        context=round(context, 6),
        relevance=round(relevance, 6),
        importance=importance,
        confidence=confidence,
        trust=trust,
        recency=round(recency, 6),
        superseded=superseded,
        score=round(max(0.0, min(1.0, final)), 6),
    )
