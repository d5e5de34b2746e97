"""Measures an embedder's similarity scale: where unrelated text sits and where clear matches do.

Cosine means different things per model (the builtin embedder's unrelated texts sit near 0.0,
MiniLM's near 0.1), so search cannot compare raw cosines across models or against BM25. Given
groups of (queries, documents) that belong together (one conversation, one user's memories):

- floor  = a high percentile (95th) of cosine between queries and documents of *other* groups:
           95% of unrelated pairs score below it, so under it a match is noise;
- strong = a high percentile (99th) of cosine between queries and documents of *their own*
           group: about the few best documents of each query, i.e. what a clear match scores.

Run on LoCoMo (read at run time, never copied):
    python -m core.embeddings.calibrate ../shared/bench/locomo-dev.json
with MNEMO_EMBEDDER and friends set for the model to measure; put the figures on the class, or
in MNEMO_SIMILARITY_FLOOR / MNEMO_SIMILARITY_STRONG for a deployment.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.embeddings.base import Embedder

__all__ = ["Calibration", "calibrate", "locomo_groups"]


@dataclass(frozen=True)
class Calibration:
    floor: float
    strong: float
    unrelated_median: float
    related_median: float
    pairs_unrelated: int
    pairs_related: int


def calibrate(
    embedder: Embedder,
    groups: Sequence[tuple[Sequence[str], Sequence[str]]],
    *,
    floor_percentile: float = 95.0,
    strong_percentile: float = 99.0,
    max_documents: int = 400,
    seed: int = 0,
) -> Calibration:
    """Percentiles of query-document cosine across groups (floor) and within groups (strong)."""
    if len(groups) < 2:
        raise ValueError("calibration needs at least two groups, to have unrelated pairs")
    rng = random.Random(seed)
    embedded = []
    for queries, documents in groups:
        docs = list(documents)
        if len(docs) > max_documents:  # a fixed sample keeps the run short and repeatable
            docs = rng.sample(docs, max_documents)
        embedded.append(
            (embedder.embed(list(queries), kind="query"), embedder.embed(docs, kind="document"))
        )
    related: list[np.ndarray] = []
    unrelated: list[np.ndarray] = []
    for i, (query_vectors, document_vectors) in enumerate(embedded):
        related.append((query_vectors @ document_vectors.T).ravel())
        for j, (_, others) in enumerate(embedded):
            if i != j:
                unrelated.append((query_vectors @ others.T).ravel())
    within = np.concatenate(related)
    across = np.concatenate(unrelated)
    return Calibration(
        floor=float(np.percentile(across, floor_percentile)),
        strong=float(np.percentile(within, strong_percentile)),
        unrelated_median=float(np.median(across)),
        related_median=float(np.median(within)),
        pairs_unrelated=len(across),
        pairs_related=len(within),
    )


def locomo_groups(path: Path) -> list[tuple[list[str], list[str]]]:
    """LoCoMo conversations as (questions, "speaker: turn" texts), adversarial ones left out."""
    groups = []
    for sample in json.loads(path.read_text()):
        conversation = sample["conversation"]
        turns = [
            f"{turn['speaker']}: {turn['text']}"
            for key, session in conversation.items()
            if re.fullmatch(r"session_\d+", key)
            for turn in session
        ]
        questions = [qa["question"] for qa in sample["qa"] if qa.get("category") != 5]
        groups.append((questions, turns))
    return groups


def main(argv: Sequence[str] | None = None) -> None:
    from core.embeddings import build_embedder
    from core.kernel.config import settings_from_env

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("locomo", type=Path, help="path to a LoCoMo json file")
    args = parser.parse_args(argv)
    embedder = build_embedder(settings_from_env().embedder)
    result = calibrate(embedder, locomo_groups(args.locomo))
    print(f"{embedder.name} (dims {embedder.dims}): {result}")


if __name__ == "__main__":
    main()
