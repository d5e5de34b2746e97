"""Contradiction detection quality: precision and recall on the corpus, false alarms on LoCoMo.

- The corpus (tests/fixtures/contradictions.txt): pairs to flag and pairs to leave alone, each
  compared both ways (a pair counts as flagged only when both orders flag it), by section.
- LoCoMo dev (../shared/bench, read at run time): each dialog turn against its 8 nearest turns
  of the same conversation by shared content words, the pairs a save compares; nearly all are
  not contradictions, so what is flagged there estimates the false alarms of real phrasing.

    .venv/bin/python -m bench.contradictions
"""

from __future__ import annotations

import json
import time
from collections import Counter

from bench.locomo import DATA
from core.curation.contradiction import compare, read
from tests.contradiction_corpus import load


def _flags(first: str, second: str) -> bool:
    return compare(first, second) is not None and compare(second, first) is not None


def corpus() -> None:
    pairs = load()
    by_kind: dict[tuple[bool, str], Counter[bool]] = {}
    for pair in pairs:
        by_kind.setdefault((pair.flag, pair.kind), Counter())[_flags(pair.first, pair.second)] += 1
    must = sum(sum(c.values()) for (flag, _), c in by_kind.items() if flag)
    must_not = sum(sum(c.values()) for (flag, _), c in by_kind.items() if not flag)
    hits = sum(c[True] for (flag, _), c in by_kind.items() if flag)
    false_alarms = sum(c[True] for (flag, _), c in by_kind.items() if not flag)
    print(f"Corpus: {must} pairs to flag, {must_not} to leave alone")
    print("| section | pairs | flagged |")
    print("|---|---|---|")
    for (flag, kind), counted in sorted(by_kind.items(), key=lambda kv: (not kv[0][0], kv[0][1])):
        print(
            f"| {'flag' if flag else 'pass'} {kind} | {sum(counted.values())} | {counted[True]} |"
        )
    precision = hits / (hits + false_alarms) if hits + false_alarms else 1.0
    print(f"\nrecall {hits / must:.3f}, precision {precision:.3f}")


def locomo(neighbours: int = 8) -> None:
    samples = json.loads(DATA.read_text())
    pairs = flagged = 0
    examples = []
    seconds = 0.0
    for sample in samples:
        conversation = sample["conversation"]
        texts = []
        n = 1
        while f"session_{n}" in conversation:
            texts += [f"{t['speaker']}: {t['text']}" for t in conversation[f"session_{n}"]]
            n += 1
        words = [read(t).words for t in texts]
        for i in range(len(texts)):
            near = sorted(
                (
                    (len(words[i] & words[j]) / max(1, len(words[i] | words[j])), j)
                    for j in range(len(texts))
                    if j != i
                ),
                reverse=True,
            )[:neighbours]
            for _, j in near:
                if j < i:
                    continue
                pairs += 1
                started = time.perf_counter()
                found = _flags(texts[i], texts[j])
                seconds += time.perf_counter() - started
                if found:
                    flagged += 1
                    if len(examples) < 5:
                        examples.append(f"{texts[i][:80]} || {texts[j][:80]}")
    print(
        f"\nLoCoMo dev: {pairs} nearest-turn pairs compared, {flagged} flagged "
        f"({1000 * flagged / pairs:.2f} per 1,000), "
        f"{1e6 * seconds / pairs:.1f} us a pair (both orders)"
    )
    for example in examples:
        print(f"- {example}")


if __name__ == "__main__":
    corpus()
    locomo()
