"""The extractive summariser: a summary made of the memories' own sentences, with no model.

1. Cluster the memories by their stored vectors (spherical k-means, k-means++ seeding from a
   fixed seed): each cluster is a theme.
2. Score every memory by how central it is to its theme and how much it matters: importance,
   confidence, recency (rank, so it does not depend on the clock), facts over notes, how often
   it was read back.
3. Fill the token budget theme by theme: every theme gets its best statement first, heaviest
   theme first, then the remaining room goes to the themes in proportion to their weight
   (D'Hondt), skipping any statement too close to one already taken.
4. Write one line per theme, heaviest first: "Label: statement. statement."

Only current memories are given to it (the caller reads active, never superseded, memories),
so a superseded fact cannot reach a summary. The same memories always give the same text:
inputs are put in id order, the seed is fixed, and ties break on the id.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from core.embeddings.text import STOPWORDS
from core.retrieval.context import estimate_tokens

F32 = npt.NDArray[np.float32]
F64 = npt.NDArray[np.float64]

# About 25 tokens a statement: more themes than the budget holds statements would only cut
# themes in two.
_TOKENS_PER_THEME = 25
_MAX_THEMES = 8
_KMEANS_ITERATIONS = 30
_KMEANS_RESTARTS = 4
_SEED = 20_240_601
# Clustering is quadratic in the memories it looks at: this many, the most salient, are
# clustered, and the others join the nearest theme.
_CORE = 200
_NEIGHBOURS = 7
_SUBSPACE_STEPS = 40
_ORTHONORMALISE_EVERY = 5
# Two statements this alike (cosine of their vectors, or share of their words) say the same.
_REDUNDANT_COSINE = 0.8
_REDUNDANT_WORDS = 0.6
# One statement is at most this long: a long memory contributes its opening, not all of it.
_STATEMENT_CHARS = 240
# Best statements kept per theme beyond those taken (an LLM prompt, the digest).
_RANKED_KEPT = 12
_SCAN_LIMIT = 24
_WORD = re.compile(r"[^\W\d_]{3,}")
_SENTENCE_END = re.compile(r"(?<=[.!?…])\s+")


@dataclass(frozen=True)
class Candidate:
    """One current memory, as much of it as the summariser reads."""

    id: str
    content: str
    type: str = "note"
    tags: tuple[str, ...] = ()
    importance: float = 0.5
    confidence: float = 0.7
    when: int = 0  # occurred_at, else created_at (ms)
    access_count: int = 0


@dataclass(frozen=True)
class Statement:
    id: str
    text: str
    score: float


@dataclass(frozen=True)
class Theme:
    label: str
    memory_count: int
    weight: float
    statements: tuple[Statement, ...]  # the ones in the summary text
    ranked: tuple[Statement, ...] = field(repr=False, default=())  # its best, taken or not
    member_ids: tuple[str, ...] = field(repr=False, default=())


@dataclass(frozen=True)
class Extract:
    text: str
    tokens: int
    themes: tuple[Theme, ...]
    considered: int


def statement_text(content: str, limit: int = _STATEMENT_CHARS) -> str:
    """The memory's opening sentences up to `limit` characters, ending in punctuation."""
    flat = " ".join(content.split())
    if not flat:
        return ""
    taken = ""
    for sentence in _SENTENCE_END.split(flat):
        candidate = f"{taken} {sentence}".strip()
        if len(candidate) > limit:
            break
        taken = candidate
    if not taken:  # the first sentence alone is over the limit: cut at a word
        cut = flat[: limit - 1].rsplit(" ", 1)[0] if " " in flat[: limit - 1] else flat[: limit - 1]
        return cut.rstrip(" ,;:-") + "…"
    return taken if taken[-1] in ".!?…" else taken + "."


def _salience(items: Sequence[Candidate]) -> F64:
    """How much each memory matters on its own, on [0, 1]."""
    n = len(items)
    importance = np.array([c.importance for c in items], dtype=np.float64)
    confidence = np.array([c.confidence for c in items], dtype=np.float64)
    fact = np.array([c.type == "fact" for c in items], dtype=np.float64)
    access = np.array([c.access_count for c in items], dtype=np.float64)
    order = sorted(range(n), key=lambda i: (items[i].when, items[i].id))
    recency = np.zeros(n)
    if n > 1:
        recency[order] = np.arange(n) / (n - 1)
    else:
        recency[:] = 1.0
    read_back = np.minimum(1.0, np.log1p(access) / math.log(10.0))
    return 0.4 * importance + 0.1 * confidence + 0.25 * recency + 0.15 * fact + 0.1 * read_back


def _kmeans(x: F32, k: int, seed: int) -> tuple[npt.NDArray[np.intp], float]:
    """Spherical k-means over unit rows: the cluster of each row, and how tight the clusters
    are (the sum of the lengths of each cluster's summed rows; higher is tighter)."""
    n = x.shape[0]
    if k <= 1 or n <= 1:
        return np.zeros(n, dtype=np.intp), float(np.linalg.norm(x.sum(axis=0)))
    rng = np.random.default_rng(seed)
    centres = [int(rng.integers(n))]
    # k-means++ on cosine distance: each next seed is drawn far from the seeds so far.
    distance = np.clip(1.0 - x @ x[centres[0]], 0.0, None).astype(np.float64)
    for _ in range(1, k):
        total = float(distance.sum())
        if total <= 1e-12:
            break
        pick = int(rng.choice(n, p=distance / total))
        centres.append(pick)
        distance = np.minimum(distance, np.clip(1.0 - x @ x[pick], 0.0, None))
    c = x[centres].astype(np.float32)
    labels = np.full(n, -1, dtype=np.intp)
    sums = np.zeros_like(c)
    for _ in range(_KMEANS_ITERATIONS):
        new = np.argmax(x @ c.T, axis=1)
        if np.array_equal(new, labels):
            break
        labels = new
        sums = np.zeros_like(c)
        np.add.at(sums, labels, x)
        norms = np.linalg.norm(sums, axis=1, keepdims=True)
        keep = norms[:, 0] > 0
        c = np.where(keep[:, None], sums / np.where(norms > 0, norms, 1.0), c).astype(np.float32)
    tightness = float(np.linalg.norm(sums, axis=1).sum())
    # Renumber so empty clusters leave no gaps.
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.intp), tightness


def _spectral(x: F32, k: int) -> F32:
    """Each row placed by the top-k eigenvectors of its nearest-neighbour graph.

    Short memories share few words, so hashed vectors put two memories of one theme only a
    little closer than two of different themes, and k-means on them mostly follows noise. Each
    memory's nearest neighbours are still mostly of its own theme, and the graph of those
    links separates the themes far better (on the summary test's fixture, 0.75 of memories end
    up with their theme's majority against 0.45). The eigenvectors come from a fixed number of
    subspace iterations from a fixed start: cheap at this size, and the same every time."""
    n = x.shape[0]
    m = min(_NEIGHBOURS, n - 1)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    near = np.argpartition(-sims, m - 1, axis=1)[:, :m]
    rows = np.arange(n)[:, None]
    graph = np.zeros((n, n), dtype=np.float32)
    # A small floor keeps a link to a neighbour even when the cosine is not positive.
    graph[rows, near] = np.maximum(sims[rows, near], 0.0) + 1e-3
    graph = np.maximum(graph, graph.T)
    scale = 1.0 / np.sqrt(graph.sum(axis=1))
    # Normalised affinity, shifted to [0, 1] so the largest eigenvalues are the largest in size.
    lazy = 0.5 * (scale[:, None] * graph * scale[None, :] + np.eye(n, dtype=np.float32))
    width = min(n, k + 4)
    v, _ = np.linalg.qr(np.random.default_rng(_SEED).standard_normal((n, width)))
    v = v.astype(np.float32)
    for step in range(1, _SUBSPACE_STEPS + 1):
        v = lazy @ v
        # Orthonormalising every few steps is enough to keep the columns apart, and a QR
        # costs thirty times the product.
        if step % _ORTHONORMALISE_EVERY == 0:
            v, _ = np.linalg.qr(v)
    values, vectors = np.linalg.eigh(v.T @ lazy @ v)
    top = v @ vectors[:, np.argsort(-values)[:k]]
    return _unit_rows(top)


def _cluster(x: F32, k: int) -> npt.NDArray[np.intp]:
    """Theme of each row of `x` (centred unit rows, most salient first): the first `_CORE`
    rows are clustered, every other row joins the theme whose centre it is closest to."""
    n = x.shape[0]
    if k <= 1 or n <= 2:
        return np.zeros(n, dtype=np.intp)
    core = x[: min(n, _CORE)]
    z = _spectral(core, k)
    runs = [_kmeans(z, k, _SEED + attempt) for attempt in range(_KMEANS_RESTARTS)]
    labels = max(runs, key=lambda run: run[1])[0]
    if n == core.shape[0]:
        return labels
    centres = np.zeros((int(labels.max()) + 1, x.shape[1]), dtype=np.float32)
    np.add.at(centres, labels, core)
    rest = np.argmax(x[core.shape[0] :] @ centres.T, axis=1)
    return np.concatenate([labels, rest]).astype(np.intp)


def _centred(x: F32) -> F32:
    """Rows minus their mean, unit length again. What every memory shares (the user's name,
    words of the tags every memory has) adds the same to every similarity and blurs the
    themes; without it the clusters follow what tells memories apart."""
    if x.shape[0] < 3:
        return x
    return _unit_rows(x - x.mean(axis=0, keepdims=True))


def _unit_rows(x: npt.NDArray[np.floating]) -> F32:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    out: F32 = (x / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    return out


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if w not in STOPWORDS}


# Words that say how or when, not what: no name for a theme.
# fmt: off
_VAGUE = frozenset({
    "also", "always", "another", "around", "back", "best", "better", "every", "everything",
    "get", "gets", "got", "like", "likes", "lot", "made", "make", "makes", "many", "much",
    "never", "new", "next", "last", "often", "one", "really", "since", "still", "thing",
    "things", "time", "times", "today", "two", "usually", "use", "used", "uses", "want",
    "wants", "week", "weeks", "year", "years",
})
# fmt: on


def _label(
    members: list[int],
    items: Sequence[Candidate],
    words: list[set[str]],
    document_freq: Counter[str],
) -> str:
    """A theme's name: the tag its memories share most, else its most telling word (one that
    several of them use and not every memory does); "" when nothing names it."""
    needed = 1 if len(members) == 1 else max(2, math.ceil(0.2 * len(members)))
    tags: Counter[str] = Counter(t for i in members for t in dict.fromkeys(items[i].tags))
    if tags:
        # max keeps the first of equals: the tag of the most salient memory.
        tag, count = max(tags.items(), key=lambda kv: kv[1])
        if count >= needed:
            return tag[:1].upper() + tag[1:]
    total = len(items)
    named = [
        (word, count)
        for word, count in Counter(w for i in members for w in words[i] if w not in _VAGUE).items()
        if count >= max(2, needed) and document_freq[word] < total
    ]
    if not named:
        return ""

    def telling(kv: tuple[str, int]) -> tuple[float, str]:
        word, count = kv
        return (-count * math.log(total / document_freq[word]), word)

    word = min(named, key=telling)[0]
    return word[:1].upper() + word[1:]


def _line(label: str, statements: Sequence[Statement]) -> str:
    body = " ".join(s.text for s in statements)
    return f"{label}: {body}" if label else body


def _render(chosen: list[tuple[str, list[Statement]]]) -> str:
    return "\n".join(_line(label, picks) for label, picks in chosen)


def extract(items: Sequence[Candidate], vectors: F32, max_tokens: int) -> Extract:
    """The summary of `items` (rows of `vectors` are theirs, unit length or zero)."""
    if len(items) != vectors.shape[0]:
        raise ValueError("one vector per memory")
    keep = sorted(
        (i for i in range(len(items)) if items[i].content.strip()), key=lambda i: items[i].id
    )
    items = [items[i] for i in keep]
    n = len(items)
    if n == 0:
        return Extract("", 0, (), 0)
    x = np.ascontiguousarray(vectors[keep], dtype=np.float32)

    salience = _salience(items)
    # Most salient first (the clustering core), ties by id; rounded so that float noise in the
    # last bits cannot reorder equal scores.
    rounded = np.round(salience, 6).tolist()
    by_salience = sorted(range(n), key=lambda i: (-rounded[i], items[i].id))
    items = [items[i] for i in by_salience]
    x, salience = x[by_salience], salience[by_salience]
    centred = _centred(x)
    words = [_words(c.content) for c in items]
    document_freq: Counter[str] = Counter(w for found in words for w in found)

    k = min(n, _MAX_THEMES, max(1, max_tokens // _TOKENS_PER_THEME), round(math.sqrt(n / 2)) or 1)
    labels = _cluster(centred, k)
    groups: list[list[int]] = [[] for _ in range(int(labels.max()) + 1)]
    for i, label in enumerate(labels.tolist()):
        groups[label].append(i)

    texts: dict[int, str] = {}

    def statement(i: int, score: float) -> Statement:
        if i not in texts:  # only the statements looked at are cut out of their memories
            texts[i] = statement_text(items[i].content)
        return Statement(items[i].id, texts[i], score)

    # (weight, label, [(memory, score)] best first, members)
    themes: list[tuple[float, str, list[tuple[int, float]], list[int]]] = []
    for members in groups:
        if not members:
            continue
        centre = centred[members].sum(axis=0)
        norm = float(np.linalg.norm(centre))
        closeness = centred[members] @ (centre / norm) if norm > 0 else np.zeros(len(members))
        low, high = float(closeness.min()), float(closeness.max())
        # On [0, 1] within the theme, like salience, so neither drowns the other.
        centrality = (closeness - low) / (high - low) if high > low else np.ones(len(members))
        scores = np.round(0.5 * centrality + 0.5 * salience[members], 6).tolist()
        ranked = sorted(zip(members, scores, strict=True), key=lambda m: (-m[1], items[m[0]].id))
        weight = round(float(salience[members].sum()), 6)
        label = _label(members, items, words, document_freq)
        themes.append((weight, label, ranked, members))
    themes.sort(key=lambda t: (-t[0], items[t[2][0][0]].id))

    taken: list[list[Statement]] = [[] for _ in themes]
    cursor = [0] * len(themes)
    picked: list[int] = []
    budget = max_tokens * 4  # estimate_tokens counts four bytes a token
    used = [0]

    def redundant(i: int) -> bool:
        if picked and float(np.max(x[picked] @ x[i])) >= _REDUNDANT_COSINE:
            return True
        for j in picked:
            union = len(words[i] | words[j])
            if union and len(words[i] & words[j]) / union >= _REDUNDANT_WORDS:
                return True
        return False

    def cost(t: int, s: Statement) -> int:
        """Bytes the text grows by with s on theme t's line."""
        if taken[t]:
            return 1 + len(s.text.encode())
        newline = 1 if used[0] else 0
        return newline + len(_line(themes[t][1], [s]).encode())

    def take_next(t: int) -> bool:
        """Add theme t's best remaining statement that fits and is new; False if none does."""
        ranked = themes[t][2]
        # Past this many misses in a row the theme has nothing left that fits: stop looking
        # rather than cut a statement out of every memory of a large theme.
        misses = 0
        while cursor[t] < len(ranked) and misses < _SCAN_LIMIT:
            misses += 1
            i, score = ranked[cursor[t]]
            cursor[t] += 1
            s = statement(i, score)
            if used[0] + cost(t, s) > budget:
                if picked:
                    continue
                # Not even one whole statement fits: take the start of the best one.
                shortened = _shortened(s, themes[t][1], max_tokens)
                if shortened is None:
                    return False
                s = shortened
            elif redundant(i):
                continue
            used[0] += cost(t, s)
            taken[t].append(s)
            picked.append(i)
            return True
        return False

    for t in range(len(themes)):
        take_next(t)
    open_themes = [t for t in range(len(themes)) if cursor[t] < len(themes[t][2])]
    while open_themes and used[0] < budget:
        # D'Hondt: the next statement goes to the theme with most weight per statement taken.
        t = min(open_themes, key=lambda j: (-themes[j][0] / (len(taken[j]) + 1), j))
        if not take_next(t):
            open_themes.remove(t)
        open_themes = [j for j in open_themes if cursor[j] < len(themes[j][2])]

    text = _render([(themes[t][1], taken[t]) for t in range(len(themes)) if taken[t]])
    out = tuple(
        Theme(
            label=label,
            memory_count=len(members),
            weight=weight,
            statements=tuple(taken[t]),
            ranked=tuple(statement(i, score) for i, score in ranked[:_RANKED_KEPT]),
            member_ids=tuple(items[i].id for i in members),
        )
        for t, (weight, label, ranked, members) in enumerate(themes)
    )
    return Extract(text, estimate_tokens(text) if text else 0, out, n)


def _shortened(s: Statement, label: str, max_tokens: int) -> Statement | None:
    """The start of a statement cut to what the budget holds beside its label."""
    room = max_tokens * 4 - len(_line(label, [Statement("", "", 0.0)]).encode()) - 3
    if room < 8:
        return None
    cut = s.text.encode()[:room].decode(errors="ignore")
    cut = cut.rsplit(" ", 1)[0] if " " in cut else cut
    return Statement(s.id, cut.rstrip(" ,;:-.") + "…", s.score)
