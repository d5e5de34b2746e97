"""Near words: a query word the index does not hold is matched as the indexed words one edit away.

"alergic to penauts" holds two words no memory contains; one edit (a letter inserted, dropped,
changed, or two neighbours swapped: Damerau's four kinds, which cover most typing slips) turns
them into "allergic" and "peanuts", which the index holds. For each unknown word every spelling
one likely edit away is generated (about 22 per letter, ~150 for a 7-letter word) and the index
is asked which of them it holds, in one statement, by exact term lookup: an FTS5 match per
word on SQLite, a GIN probe of the brain's tsvectors on PostgreSQL. No vocabulary is cached
or scanned, so the cost is bounded by the query's length, not by the size of the index: at
most `_MAX_UNKNOWN` words, each at most `_MAX_LENGTH` letters, are corrected per search (~10
ms for one unknown word on SQLite), and a query whose words are all known costs one lookup
statement (~70 us a word).

Only plain ASCII words of at least `_MIN_LENGTH` letters are corrected: one edit away from a
three-letter word is half the dictionary, and the edits are English letters. The vocabulary is
the caller's brain's, on both stores: whether a word is corrected, and to what, must not tell
one tenant which words another tenant's memories hold.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence

from sqlalchemy import Connection

from core.embeddings.text import STOPWORDS
from core.kernel.db.engine import tuples
from core.kernel.db.id_lists import text_array
from core.retrieval.lexical import scope_tokens

__all__ = ["asked", "correct", "edits"]

_MIN_LENGTH = 4
_MAX_LENGTH = 20
_MAX_UNKNOWN = 3  # corrected words per query
_PER_WORD = 2  # corrections kept per unknown word, the commonest first
# Counting stops here: enough to rank a correction by how common it is, cheap for any word.
_COUNT_AT_MOST = 50


# Typing slips hit a neighbouring key; spelling slips swap one vowel for another.
_KEYS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_VOWELS = "aeiouy"


def _neighbours() -> dict[str, str]:
    near: dict[str, set[str]] = {c: set() for row in _KEYS for c in row}
    for r, row in enumerate(_KEYS):
        for i, char in enumerate(row):
            for rr in (r - 1, r, r + 1):
                if 0 <= rr < len(_KEYS):
                    # Rows are staggered: on the rows above and below, keys i - 1 .. i + 1.
                    for j in range(i - 1, i + 2):
                        if 0 <= j < len(_KEYS[rr]) and (rr, j) != (r, i):
                            near[char].add(_KEYS[rr][j])
    return {c: "".join(sorted(n)) for c, n in near.items()}


_NEAR_KEYS = _neighbours()


def _slips(char: str) -> str:
    """Letters typed instead of `char`: its keyboard neighbours, and the vowels for a vowel."""
    return _NEAR_KEYS.get(char, "") + (_VOWELS if char in _VOWELS else "")


def edits(word: str) -> set[str]:
    """The likely misspellings' corrections one edit from `word`: any letter dropped or two
    neighbours swapped; a letter changed to a keyboard neighbour (or a vowel to a vowel);
    a letter added that doubles, neighbours or is a vowel. The first letter stays, as it
    does in most slips: about 22 lookups per letter instead of 54."""
    out: set[str] = set()
    for i in range(1, len(word) + 1):
        head, tail = word[:i], word[i:]
        if tail:
            out.add(head + tail[1:])  # drop
            for char in _slips(tail[0]):
                out.add(head + char + tail[1:])  # change
        if len(tail) > 1:
            out.add(head + tail[1] + tail[0] + tail[2:])  # swap
        added = set(_VOWELS) | set(head[-1] + _NEAR_KEYS.get(head[-1], ""))
        if tail:
            added |= set(tail[0] + _NEAR_KEYS.get(tail[0], ""))
        for char in added:
            out.add(head + char + tail)  # add
    out.add(word[1] + word[0] + word[2:])  # the one slip that moves the first letter
    out.discard(word)
    return out


def _correctable(word: str) -> bool:
    return (
        _MIN_LENGTH <= len(word) <= _MAX_LENGTH
        and word.isascii()
        and word.isalpha()
        and word not in STOPWORDS
    )


def asked(words: Sequence[str]) -> list[str]:
    """The words of `words` that are corrected when the index does not hold them."""
    return [w for w in dict.fromkeys(words) if _correctable(w)]


def correct(
    conn: Connection,
    words: Sequence[str],
    *,
    brain_id: str,
    known: set[str] | None = None,
) -> dict[str, list[str]]:
    """For each of `words` (query words, lower case) that the index does not hold: the indexed
    words one edit away, commonest first, at most `_PER_WORD`. Known words are left out;
    `known` is which of `asked(words)` the brain holds, when the caller asked already."""
    correctable = asked(words)
    if not correctable:
        return {}
    held = _sqlite_held if conn.dialect.name == "sqlite" else _postgres_held
    # Words are looked up as search sends them, so the index's own stemmer (FTS5's Porter,
    # PostgreSQL's English Snowball) decides what "holds" means: "peanuts" finds "peanut".
    if known is None:
        known = set(held(conn, correctable, brain_id, 1))
    unknown = [w for w in correctable if w not in known][:_MAX_UNKNOWN]
    if not unknown:
        return {}
    # Whether a word is held is asked every time (a memory saved a moment ago may hold it);
    # what an unknown word's near words are is remembered a while, per store and brain.
    place = (str(conn.engine.url), brain_id)
    corrections: dict[str, list[str]] = {}
    pending = []
    for word in unknown:
        remembered = _remembered.get((*place, word))
        if remembered is None:
            pending.append(word)
        else:
            corrections[word] = remembered
    unknown = pending
    if not unknown:
        return {w: near for w, near in corrections.items() if near}
    origin: dict[str, set[str]] = {}
    for word in unknown:
        for candidate in edits(word):
            if len(candidate) >= _MIN_LENGTH - 1 and candidate not in STOPWORDS:
                origin.setdefault(candidate, set()).add(word)
    found = held(conn, sorted(origin), brain_id, _COUNT_AT_MOST)
    for word in unknown:
        near = [c for c, words in origin.items() if word in words and c in found]
        near.sort(key=lambda c: (-found[c], c))  # the commonest first
        corrections[word] = near[:_PER_WORD]
        _remembered.put((*place, word), corrections[word])
    return {w: near for w, near in corrections.items() if near}


class _Memo:
    """A small least-recently-used map whose entries expire: near words found for a word stay
    good until memories with new spellings arrive, and the search keeps the word itself, so a
    stale entry costs a missed correction for `_REMEMBER_SECONDS`, never a missed exact match."""

    def __init__(self, size: int, seconds: float) -> None:
        self._size, self._seconds = size, seconds
        self._entries: OrderedDict[tuple[str, str, str], tuple[float, list[str]]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str, str]) -> list[str] | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] < time.monotonic():
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: tuple[str, str, str], value: list[str]) -> None:
        with self._lock:
            self._entries[key] = (time.monotonic() + self._seconds, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


_REMEMBER_SECONDS = 300.0
_remembered = _Memo(4096, _REMEMBER_SECONDS)


# SQLite's index is the whole file's: a word's postings are read in every brain and kept
# in this one. A word common in other brains is read this far at most, then asked again
# through the brain's own scope word (a pass over the brain's postings: rare, and exact).
_POSTINGS_READ = 2_000


def _sqlite_held(conn: Connection, words: list[str], brain_id: str, most: int) -> dict[str, int]:
    """word -> how many of the brain's memories hold it (counted up to `most`), for the words
    held. One FTS5 lookup per word (~70 us for a word no memory holds, which is what most
    candidate spellings are); the vocabulary table computes every term's statistics as it goes
    and is three times slower."""
    rows = tuples(
        conn,
        "SELECT value, "
        "(SELECT count(*) FROM (SELECT 1 FROM (SELECT rowid FROM memory_fts "
        "WHERE memory_fts MATCH '\"' || value || '\"' LIMIT :read) f "
        "JOIN memories m ON m.rowid = f.rowid WHERE m.brain_id = :brain LIMIT :most)), "
        "(SELECT count(*) FROM (SELECT 1 FROM memory_fts "
        "WHERE memory_fts MATCH '\"' || value || '\"' LIMIT :read)) "
        "FROM json_each(:words)",
        {"words": json.dumps(words), "brain": brain_id, "most": most, "read": _POSTINGS_READ},
    )
    held = {str(w): int(n) for w, n, _ in rows if n}
    unsure = [str(w) for w, n, read in rows if n < most and read >= _POSTINGS_READ]
    if unsure:
        brain = scope_tokens(brain_id, None)[0]
        rows = tuples(
            conn,
            "SELECT value, (SELECT count(*) FROM (SELECT 1 FROM memory_fts "
            "WHERE memory_fts MATCH 'scope : \"' || :brain || '\" AND \"' || value || '\"' "
            "LIMIT :most)) FROM json_each(:words)",
            {"words": json.dumps(unsure), "brain": brain, "most": most},
        )
        held.update({str(w): int(n) for w, n in rows if n})
    return held


def _postgres_held(conn: Connection, words: list[str], brain_id: str, most: int) -> dict[str, int]:
    """word -> how many of the brain's memories hold it (counted up to `most`)."""
    rows = tuples(
        conn,
        "SELECT c.w, (SELECT count(*) FROM (SELECT 1 FROM memories m "
        "WHERE m.brain_id = :brain AND m.search_vector @@ plainto_tsquery('english', c.w) "
        "LIMIT :most) AS x) AS n FROM unnest(CAST(:words AS text[])) AS c(w)",
        {"brain": brain_id, "words": text_array(words), "most": most},
    )
    return {w: int(n) for w, n in rows if n}
