"""The contradiction corpus (tests/fixtures/contradictions.txt): pairs a detector must flag
and pairs it must leave alone, read for the tests and for bench.contradictions."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "fixtures" / "contradictions.txt"


@dataclass(frozen=True)
class Pair:
    first: str
    second: str
    flag: bool  # must be flagged
    kind: str  # the section: negation, number, paraphrase, ...


def load(path: Path = CORPUS) -> list[Pair]:
    pairs: list[Pair] = []
    flag, kind = False, ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("## "):
            verdict, _, kind = line[3:].partition(" ")
            if verdict not in ("flag", "pass"):
                raise ValueError(f"{path.name}: a section is 'flag' or 'pass', not {verdict!r}")
            flag = verdict == "flag"
        elif line and not line.startswith("#"):
            first, sep, second = line.partition(" || ")
            if not sep or not kind:
                raise ValueError(f"{path.name}: not a pair in a section: {line!r}")
            pairs.append(Pair(first.strip(), second.strip(), flag, kind))
    return pairs
