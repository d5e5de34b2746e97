"""The write gate: what a memory write becomes before anything is stored.

Every path that saves a memory (REST single and batch, MCP, OpenMemory, the console, inbound
hooks, conversations) goes through `core.memory.store.create`, which asks `screen` here once the
exact-copy check has passed. The brain policy turns the gate on or off (`write_gate`) and holds
its thresholds. A write becomes one of:

- `quarantined`: restated system prompts and instructions ("You are...", "Always respond
  ...", a `system` role), and empty or boilerplate content ("ok", "thanks", "N/A", only
  stopwords) are held in `memory_quarantine` for review (core/memory/quarantine.py) instead of
  becoming memories an agent will later recall as facts about the user;
- `recalled` (the echo guard): content that repeats what a search or context pack returned to
  the same caller within `echo_window_seconds` is what the agent was just told, not new
  evidence: nothing is stored, no importance rises, and the reply names what it repeats;
- `reinforced`: a near-duplicate of an active memory of the same owner (same user, same fact
  key) raises that memory's importance by the policy's `reinforce_step`, with an UPDATE
  history row keeping the new wording, instead of adding a copy;
- `added`: anything else, stored as usual.

A near-duplicate says the same thing in other words: cosine of the two vectors at least
`gate_dedup_threshold`, stemmed terms overlapping at least `gate_text_threshold` (Jaccard),
the same numbers, the same negation, and no term replaced by another (one text's terms contain
the other's). A replaced term ("green" -> "black", "Tuesday" -> "Wednesday") may be a new
value: that write is added and left to the contradiction checks, because reinforcing it would
silently drop what changed. Swapped synonyms ("likes" for "prefers") are therefore added too:
losing a distinction costs more than one extra memory, which the health report then shows as
a near-duplicate cluster.

Each decision comes back in the reply as `gate`: the decision, a machine-readable reason, a
sentence saying why, and the memory and similarities it rests on.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from sqlalchemy import Connection, Engine

from core.embeddings.text import normalize, stem, terms
from core.events import changelog, history
from core.kernel.db.engine import sql, transaction, tuples
from core.kernel.db.id_lists import id_in
from core.kernel.db.planner import no_index
from core.kernel.errors import MnemoError
from core.kernel.ids import new_id, now_ms
from core.kernel.scope import Scope
from core.memory import access
from core.memory.indexing import Candidate, Indexer, document_text
from core.memory.policy import BOUNDS, BrainPolicy, policy_for

if TYPE_CHECKING:
    from core.memory.models import GateDecisionRecord, MemoryIn

Decision = Literal["added", "duplicate", "reinforced", "recalled", "quarantined"]

# Near-duplicate candidates read back per write: the best few full-text matches (a restatement
# shares most of its words, so it ranks first among the owner's memories).
_CANDIDATES = 3
# For an unkeyed write, the owner's best matches of any key (read ahead, or inside the write
# transaction): the gate keeps the same-key ones, and the contradiction check
# (core/curation/on_write.py) compares the note and fact ones, so the two share one search.
SHARED_CANDIDATES = 8
# The echo guard reads this many of the caller's latest recalls within the window, and at most
# this many memories from them: a write costs a bounded amount however much was searched.
_RECALL_ROWS = 20
_RECALL_IDS = 100
# Share of a write's terms found in ONE recalled memory that makes it an echo; a write of at
# least _COMPOSITE_TERMS terms is an echo too when recalled memories together hold nearly all
# of them (an agent summarising several results back into memory).
_ECHO_COVERAGE = 0.8
_COMPOSITE_COVERAGE = 0.95
_COMPOSITE_TERMS = 6
# Words an extracting agent puts around any content ("The user mentioned that..."): no
# evidence either way. Stemmed, as the terms they are taken from.
_FILLER = frozenset(
    stem(w)
    for w in ("user", "mentioned", "said", "says", "noted", "recalled", "remembered", "told",
              "stated", "according", "reminder", "mention", "note", "remember")
)  # fmt: skip

# Words whose swap changes no fact: who is speaking ("I prefer" for "Alice prefers").
_PERSONS = frozenset(
    {"i", "me", "my", "mine", "we", "our", "she", "her", "hers", "he", "him", "his", "they",
     "them", "their", "user", "users", "the"}
)  # fmt: skip
# Words that say a second thing is meant ("another secret", "test two"), not the same one
# again; numbers in words count as numbers do.
_DISTINCT = frozenset(
    {"another", "other", "second", "third", "different", "new", "next", "also", "too",
     "additional", "more", "else", "either", "one", "two", "three", "four", "five", "six",
     "seven", "eight", "nine", "ten", "eleven", "twelve", "first", "last", "once", "twice"}
)  # fmt: skip
_WORD = re.compile(r"[^\W_]+")
_NON_WORD = re.compile(r"[^\w]+")
_NUMBER = re.compile(r"\d+(?:[.,:/]\d+)*")
_NEGATION = re.compile(r"\b(?:not|no|never|none|nor|without|cannot)\b|n['\u2019]t\b", re.IGNORECASE)

# Restated system prompts: an instruction to the assistant, not something about the user.
_INSTRUCTION = re.compile(
    r"^\W*(?:(?:system(?:\s+prompt)?|instructions?|prompt)\s*[:>\-]|(?:"
    r"you\s+are\b|you['\u2019]re\s+(?:a|an|the)\b"
    r"|you\s+(?:will|must|should|shall)\s+(?:always|never|only|respond|answer|reply|act|be)\b"
    r"|act\s+as\b|pretend\s+(?:to\s+be|you)\b|role[- ]?play\s+as\b"
    r"|your\s+(?:role|task|job|goal|purpose|name)\s+is\b"
    r"|as\s+an?\s+(?:ai|assistant|language\s+model)\b"
    r"|(?:always|never|only)\s+(?:respond|answer|reply|use|speak|write|format|say|mention"
    r"|refer|include|output|reveal|disclose|share|keep|be)\b"
    r"|(?:respond|answer|reply)\s+(?:only\s+)?(?:in|with|using|as)\b"
    r"|(?:do\s+not|don['\u2019]t)\s+(?:reveal|mention|disclose|share|discuss)\b"
    r"|ignore\s+(?:all\s+)?(?:previous|prior|the\s+above|earlier)\s+instructions\b"
    r"|follow\s+these\s+(?:rules|instructions)\b"
    r"))",
    re.IGNORECASE,
)
_PROMPT_MARKERS = re.compile(
    r"<\|?(?:system|im_start)\|?>|\[/?INST\]|<<SYS>>|^#{1,3}\s*(?:system|instructions?)\b",
    re.IGNORECASE | re.MULTILINE,
)
# Content that says nothing, as extractors and chat turns produce it.
_BOILERPLATE = frozenset(
    {
        "ok", "okay", "k", "thanks", "thank you", "thx", "hi", "hello", "hey", "bye", "goodbye",
        "yes", "no", "sure", "n a", "na", "none", "null", "nil", "undefined", "test", "testing",
        "todo", "tbd", "no memory", "no memories", "nothing", "nothing to remember",
        "nothing to save", "no new information", "no relevant information", "i don t know",
        "i dont know", "unknown", "as above", "see above", "same as above", "lorem ipsum",
        "got it", "sounds good", "hmm", "lol", "cool", "great", "nice", "yes please",
        "no thanks", "ok thanks", "okay thanks", "thank you so much", "thanks a lot",
        "you re welcome", "np", "no problem", "good morning", "good night", "good evening",
        "see you", "see you later", "alright", "all right", "perfect", "awesome", "right",
    }
)  # fmt: skip


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    reason: str
    message: str
    memory_id: str | None = None
    quarantine_id: str | None = None
    similarity: dict[str, float] | None = None
    recalled_ids: tuple[str, ...] = ()
    importance: dict[str, float] | None = field(default=None)

    @property
    def stops(self) -> bool:
        """Whether the write ends here, with no new memory."""
        return self.decision != "added"

    def explain(self) -> GateDecisionRecord:
        out: GateDecisionRecord = {
            "decision": self.decision,
            "reason": self.reason,
            "message": self.message,
        }
        if self.memory_id is not None:
            out["memory_id"] = self.memory_id
        if self.quarantine_id is not None:
            out["quarantine_id"] = self.quarantine_id
        if self.similarity is not None:
            out["similarity"] = self.similarity
        if self.importance is not None:
            out["importance"] = self.importance
        if self.recalled_ids:
            out["recalled_ids"] = list(self.recalled_ids)
        return out


# -- pure checks ------------------------------------------------------------------------------


def classify(content: str, role: str | None = None) -> tuple[str, str] | None:
    """(reason, explanation) when the content belongs in quarantine, else None."""
    text = content.strip()
    if not any(ch.isalnum() for ch in text):
        return "empty", "the content has no letters or digits"
    if role is not None and role.strip().lower() == "system":
        return "system_role", "written with role 'system': a system prompt, not a memory"
    # Every prompt marker starts with one of "<[#": most texts hold none, and skip its scan.
    markers = ("<" in text or "[" in text or "#" in text) and _PROMPT_MARKERS.search(text)
    if _INSTRUCTION.search(text) or markers:
        return (
            "instruction",
            "reads as an instruction to the assistant (a restated system prompt), "
            "not something learned about the user",
        )
    folded = " ".join(_NON_WORD.sub(" ", text.casefold()).split())
    if folded in _BOILERPLATE or folded.startswith("lorem ipsum"):
        return "boilerplate", f"{text[:40]!r} is boilerplate that says nothing to remember"
    if not _terms(content) and len(_WORD.findall(text)) > 1:
        return "boilerplate", "only stopwords: nothing a search could ever match"
    return None


@lru_cache(maxsize=4096)
def _terms(text: str) -> tuple[str, ...]:
    """`terms`, remembered: `classify` and `comparable_terms` take the same text's terms (10
    microseconds each for a 14-word note)."""
    return tuple(terms(text))


@lru_cache(maxsize=4096)
def comparable_terms(text: str) -> frozenset[str]:
    return frozenset(_terms(text)) - _FILLER


@lru_cache(maxsize=4096)
def _words(text: str) -> frozenset[str]:
    return frozenset(_WORD.findall(normalize(text)))


@lru_cache(maxsize=4096)
def _surface(text: str) -> frozenset[str]:
    """Every word, stopwords and single letters included ("report a" is not "report b"),
    stemmed, less the persons: what a substitution is looked for in."""
    return frozenset(stem(w) for w in _words(text)) - _PERSONS


@lru_cache(maxsize=4096)
def _numbers(text: str) -> tuple[str, ...]:
    """In order: "worker 1 says 11" is not "worker 11 says 1"."""
    return tuple(_NUMBER.findall(text))


@lru_cache(maxsize=4096)
def _negated(text: str) -> bool:
    return _NEGATION.search(text) is not None


def same_statement(
    new: str, old: str, cosine: float | None, policy: BrainPolicy
) -> tuple[bool, dict[str, float], str]:
    """Whether `new` restates `old` (the near-duplicate rule above), the similarities it
    rests on, and, when it does not, why. Without vectors (`cosine` None) the words decide."""
    sims: dict[str, float] = {}
    if cosine is not None:
        sims["cosine"] = round(cosine, 4)
        if cosine < policy.gate_dedup_threshold:  # the cheap test first
            return False, sims, f"cosine {cosine:.2f} < {policy.gate_dedup_threshold:g}"
    a, b = comparable_terms(new), comparable_terms(old)
    jaccard = len(a & b) / len(a | b) if a | b else 1.0
    sims["terms"] = round(jaccard, 4)
    if jaccard < policy.gate_text_threshold:
        return False, sims, f"shared terms {jaccard:.2f} < {policy.gate_text_threshold:g}"
    if _numbers(new) != _numbers(old):
        return False, sims, "the numbers differ"
    if _negated(new) != _negated(old):
        return False, sims, "one is negated"
    sa, sb = _surface(new), _surface(old)
    marked = (_words(new) ^ _words(old)) & _DISTINCT
    if marked:
        return False, sims, f"{sorted(marked)[0]!r} says another thing is meant"
    if (sa - sb) and (sb - sa):
        return False, sims, f"a word changed ({sorted(sb - sa)[0]!r} -> {sorted(sa - sb)[0]!r})"
    return True, sims, ""


# -- the gate ---------------------------------------------------------------------------------


def _foresight(scope: Scope, data: MemoryIn, user: str | None, index: Indexer) -> Foresight | None:
    """What `look_ahead` read for this write, if it read for it (and for this role)."""
    ahead = index.foresight.get(_foresight_key(scope, data, user))
    if not isinstance(ahead, Foresight) or ahead.role != data.role:
        return None
    return ahead


def foreseen_policy(
    scope: Scope, data: MemoryIn, user: str | None, index: Indexer
) -> BrainPolicy | None:
    """The brain's policy as `look_ahead` read it for this write (None: it did not read)."""
    ahead = _foresight(scope, data, user, index)
    return None if ahead is None else ahead.policy


def screen(
    conn: Connection,
    scope: Scope,
    data: MemoryIn,
    user: str | None,
    index: Indexer,
    policy: BrainPolicy | None = None,
    recalls: RecallNotes | None = None,
) -> Verdict:
    """Decide what a write becomes, and do it when it is not an add: hold it in quarantine or
    reinforce the memory it restates (in the caller's transaction). `user` is the owner the
    write lands on (already checked against the scope). Call it after the exact-copy check;
    `policy`: the brain's, when the caller read it in this transaction (with that check), and
    `recalls`, the caller's recall notes when it read them with the policy (`recalls_column`).

    When `look_ahead` read for this write, the policy it read decides (a change landing in
    between applies from the next write, as if this one had come a moment earlier)."""
    ahead = _foresight(scope, data, user, index)
    if ahead is not None:
        policy = ahead.policy
    elif policy is None:
        policy = policy_for(conn, scope.brain_id)
    if not policy.write_gate:
        return Verdict("added", "gate_off", "the brain's write gate is off (policy write_gate)")
    # Read ahead under the gate means classified already (look_ahead reads nothing for what
    # it would quarantine).
    held = None if ahead is not None else classify(data.content, data.role)
    if held is not None:
        reason, message = held
        quarantine_id = _quarantine(conn, scope, data, user, reason, message)
        return Verdict(
            "quarantined",
            reason,
            f"held for review: {message}; approve it to save it as a memory",
            quarantine_id=quarantine_id,
        )
    seen = _still_true(conn, scope, user, ahead) if ahead is not None else None
    if seen is not None and seen.echo is not None:
        return seen.echo
    if seen is None and policy.echo_window_seconds and not _from_user(data.role):
        read = None if recalls is None else recalls.within(policy)
        echo = _echo(conn, scope, data.content, policy, read)
        if echo is not None:
            return echo
    if seen is not None:
        candidates = [c for c in seen.candidates if (c.key or "") == (data.key or "")]
    else:
        candidates = _search(conn, scope, data, user, index)
    closest = ""
    for row in candidates[:_CANDIDATES]:
        cosine = row.cosine
        same, sims, why = same_statement(data.content, row.content, cosine, policy)
        if same:
            fresh = _current(conn, scope, row) if seen is not None else row
            if fresh is None:  # gone or changed since it was read ahead: look again, inside
                index.foresight.pop(_foresight_key(scope, data, user), None)
                return screen(conn, scope, data, user, index, policy)
            return _reinforced(conn, scope, fresh, data, policy, sims)
        if not closest:
            closest = f"; closest memory {row.id} is not a restatement: {why}"
    # A write of the same batch or conversation, added before this one in this transaction.
    for earlier in seen.earlier if seen is not None else ():
        added = _added_earlier(conn, scope, user, data, earlier)
        if added is not None:
            return _reinforced(conn, scope, added, data, policy, earlier.similarity)
    return Verdict("added", "new", f"no active memory of this owner says the same{closest}")


def _search(
    conn: Connection, scope: Scope, data: MemoryIn, user: str | None, index: Indexer
) -> list[Candidate]:
    """The gate's search inside the write transaction (PostgreSQL's, and SQLite's when
    nothing was read ahead or what was no longer holds): the candidates of this owner and
    key, best first. As `look_ahead` does, an unkeyed write asks for the owner's best matches
    of any key, keeps the unkeyed ones and leaves all of them for the contradiction check
    (`shared_candidates`): one full-text statement for both, where PostgreSQL ran two over the
    same text (3 ms each at 10,000 memories)."""
    doc = document_text(data.title, data.key, data.tags, data.content)
    shared = not data.key
    found = index.similar(
        conn, scope.brain_id, user, content=data.content, key=data.key, doc=doc,
        n=SHARED_CANDIDATES if shared else _CANDIDATES, any_key=shared,
    )  # fmt: skip
    if not shared:
        return found
    index.foresight[_foresight_key(scope, data, user)] = Searched(tuple(found))
    return [c for c in found if not c.key]


def _reinforced(
    conn: Connection,
    scope: Scope,
    row: Candidate,
    data: MemoryIn,
    policy: BrainPolicy,
    sims: dict[str, float],
) -> Verdict:
    change = _reinforce(conn, scope, row, data, policy, sims)
    return Verdict(
        "reinforced",
        "near_duplicate",
        f"restates memory {row.id} ("
        + (f"cosine {sims['cosine']:.2f}, " if "cosine" in sims else "")
        + f"shared terms {sims['terms']:.2f}): its importance was raised instead of "
        "adding a copy",
        memory_id=row.id,
        similarity=sims,
        importance=change,
    )


# -- reading ahead, before the write transaction -------------------------------------------


@dataclass
class Marks:
    """How far the store had got when the gate read ahead for one owner (SQLite): its highest
    memory rowid and changelog rowid. Shared by the writes of one look-ahead for that owner.

    `confirmed` is the write transaction in which nothing was found to have changed since:
    inside it SQLite lets no other writer in, so the owner's later writes there only look at
    what the transaction itself changed (its changelog rows since `changes`)."""

    memories: int
    changes: int
    confirmed: object | None = None


@dataclass(frozen=True)
class Earlier:
    """An earlier write of the same look-ahead (a batch, a conversation) that this one
    restates: if it was added, this one reinforces it, as the gate inside the transaction
    would have found it there."""

    content: str
    similarity: dict[str, float]


@dataclass(frozen=True)
class Foresight:
    """What the gate read for one write before its transaction opened: the policy it read
    under, the echo verdict (or None), the owner's best full-text matches of any key, where
    the store was then (`marks`), and the earlier writes of the same look-ahead it restates."""

    policy: BrainPolicy
    role: str | None
    echo: Verdict | None
    candidates: tuple[Candidate, ...]
    marks: Marks
    # Whether `candidates` are the owner's best matches of any key (shared with the
    # contradiction check), or only of the write's own fact key.
    any_key: bool = True
    earlier: tuple[Earlier, ...] = ()


@dataclass(frozen=True)
class Searched:
    """The owner's best full-text matches of any key that the gate's search inside the write
    transaction found for an unkeyed write (`_search`), left for the contradiction check.
    Not a `Foresight`: nothing here was read ahead, so `screen` has nothing to re-check."""

    candidates: tuple[Candidate, ...]


def _foresight_key(scope: Scope, data: MemoryIn, user: str | None) -> tuple[str, ...]:
    return (scope.brain_id, user or "", data.key or "", data.content)


def look_ahead(engine: Engine, scope: Scope, items: Sequence[MemoryIn], index: Indexer) -> None:
    """Do the gate's reads for these writes now, before their write transaction opens, and
    leave them on `index` for `screen`: on SQLite a write transaction holds the store's one
    writer lock, and the candidate search and the echo guard's reads (a millisecond or more
    at 10,000 memories) held every other writer back while they ran.

    Inside the transaction `screen` then only re-checks, cheaply, what may have changed in
    between: that no memory of the owner was added or changed since (rowid ranges of the
    memories and the changelog: any sends the write back to the full search, inside), and the
    current row of a memory it is about to reinforce or call echoed. The policy read here
    decides. The writes of a batch or a conversation may restate one another, which the store
    cannot show yet: each is compared here with the earlier ones of its owner and key, and
    reinforces the one it restates if that one was added.

    PostgreSQL reads under MVCC without blocking writers, so there the gate screens inside,
    as before. Writes this cannot read for (no write access, a bad user id) are left to
    `create`, which refuses them."""
    if engine.dialect.name != "sqlite" or not items:
        return
    with transaction(engine, write=False) as conn:
        policy = policy_for(conn, scope.brain_id)
        top = (0, 0)
        recalls: Recalls | None = None
        if policy.write_gate:
            # The echo guard's read of recent recalls rides along (one statement fewer).
            echoing = policy.echo_window_seconds and any(not _from_user(m.role) for m in items)
            top, recalls = _tops(conn, scope if echoing else None, policy)
        marks: dict[str | None, Marks] = {}
        # The writes let through so far, by owner and key, for the batch's restatements.
        before: dict[tuple[str, str], list[tuple[int, MemoryIn]]] = {}
        cosines = None
        if policy.write_gate and len(items) > 1:
            cosines = index.cosines(
                [document_text(m.title, m.key, m.tags, m.content) for m in items]
            )
        for k, data in enumerate(items):
            try:
                scope.require_write()
                user = scope.user_for_write(data.user_id)
            except MnemoError:  # create refuses it, with the right answer
                return
            mark = marks.setdefault(user, Marks(*top))
            if not policy.write_gate:
                # Nothing to read but the policy, which then need not be read again inside;
                # no candidates, so the contradiction check searches on its own.
                index.foresight[_foresight_key(scope, data, user)] = Foresight(
                    policy, data.role, None, (), mark, any_key=False
                )
                continue
            if classify(data.content, data.role) is not None:
                continue  # quarantined inside: nothing to read for it
            echo = None
            if policy.echo_window_seconds and not _from_user(data.role):
                echo = _echo(conn, scope, data.content, policy, recalls)
            candidates: list[Candidate] = []
            earlier: tuple[Earlier, ...] = ()
            # A fact's restatement has its key: asked for any key, other memories sharing its
            # words could fill the shared candidates and leave it out. Keyed writes search
            # their key only (the contradiction check then searches on its own).
            shared = not data.key
            if echo is None:
                doc = document_text(data.title, data.key, data.tags, data.content)
                candidates = index.similar(
                    conn, scope.brain_id, user, content=data.content, key=data.key, doc=doc,
                    n=SHARED_CANDIDATES if shared else _CANDIDATES, any_key=shared,
                )  # fmt: skip
                group = before.setdefault((user or "", data.key or ""), [])
                earlier = _restated(k, data, group, cosines, policy)
                group.append((k, data))
            index.foresight[_foresight_key(scope, data, user)] = Foresight(
                policy, data.role, echo, tuple(candidates), mark, shared, earlier
            )


def _tops(
    conn: Connection, scope: Scope | None = None, policy: BrainPolicy | None = None
) -> tuple[tuple[int, int], Recalls | None]:
    """The highest memory and changelog rowids (SQLite): what a write compares with; with a
    `scope` (and its `policy`), what the echo guard reads too, in the same statement."""
    statement = (
        "SELECT (SELECT coalesce(max(rowid), 0) FROM memories), "
        "(SELECT coalesce(max(rowid), 0) FROM changelog)"
    )
    values: dict[str, Any] = {}
    since = 0
    if scope is not None and policy is not None:
        since = now_ms() - policy.echo_window_seconds * 1000
        statement += f", (SELECT json_group_array(json(memory_ids)) FROM ({_RECALLS_READ}))"
        values = _recalls_params(scope, since)
    row = tuples(conn, statement, values)[0]
    recalls = None
    if scope is not None:
        # Aggregated in the order the read yields them (SQLite feeds an aggregate its
        # subquery's rows in order): newest first, as `_recalled_ids` reads them.
        recalls = Recalls(since, json.loads(row[2]))
    return (int(row[0]), int(row[1])), recalls


def _restated(
    k: int,
    data: MemoryIn,
    group: list[tuple[int, MemoryIn]],
    cosines: np.ndarray | None,
    policy: BrainPolicy,
) -> tuple[Earlier, ...]:
    """The earlier writes of one look-ahead (same owner and key: `group`, by position) that
    write `k` restates, the latest first. Only pairs whose vectors are close are compared
    word by word; without vectors the words decide, as in `screen`."""
    found: list[Earlier] = []
    for j, old in reversed(group):
        cosine = None if cosines is None else float(cosines[k, j])
        if cosine is not None and cosine < policy.gate_dedup_threshold:
            continue
        if old.content == data.content:
            continue  # an exact copy: `create` returns the first as it is
        same, sims, _ = same_statement(data.content, old.content, cosine, policy)
        if same:
            found.append(Earlier(old.content, sims))
    return tuple(found)


def shared_candidates(
    foresight: dict[tuple[str, ...], Any], brain_id: str, memory: Mapping[str, Any]
) -> tuple[Candidate, ...] | None:
    """The owner's best full-text matches of any key that the gate's search found for the
    write that made `memory`, ahead of its transaction (`look_ahead`) or inside it
    (`_search`); None when it searched for none (a keyed write, the gate off, an echo). The
    contradiction check (core/curation/on_write.py) compares them instead of searching."""
    found = foresight.get(
        (brain_id, memory["user_id"] or "", memory["key"] or "", memory["content"])
    )
    if isinstance(found, Foresight):
        return found.candidates if found.any_key and found.echo is None else None
    return found.candidates if isinstance(found, Searched) else None


# What a write transaction's own gated writes leave in the changelog: a batch's adds (compared
# through `Earlier`) and reinforcements (whose rows `_current` reads again).
_OWN_EVENTS = ("memory.created", "memory.reinforced")


def _still_true(
    conn: Connection, scope: Scope, user: str | None, seen: Foresight
) -> Foresight | None:
    """What was read ahead for a write, when it still holds: no memory of the owner added
    or changed since (by another writer, or by this transaction other than through the gate),
    and an echoed memory still there."""
    marks = seen.marks
    # By rowid ranges: the unary + keep the planner off the owner's index, which it prefers
    # and which walks every memory the owner has (6 ms at 10,000). One statement reads what
    # changed since, whether an echoed memory is still there, and the changelog's present end.
    owner = no_index(conn, "user_id") + (" IS NULL" if user is None else " = :user")
    brain = no_index(conn, "brain_id")
    values: dict[str, Any] = {"brain": scope.brain_id, "user": user, "changes": marks.changes}
    here = conn.get_transaction()
    added = own = ""
    if marks.confirmed is not here:
        added = (
            f"SELECT 1 FROM memories WHERE rowid > :memories AND {brain} = :brain AND {owner} "
            "LIMIT 1"
        )
        values["memories"] = marks.memories
    else:
        own = "AND event_type NOT IN (" + ", ".join(f"'{e}'" for e in _OWN_EVENTS) + ") "
    # Changed since: edited, restored, merged, archived (the changelog row every change of a
    # memory writes in its own transaction, with the memory's owner).
    changed = (
        f"SELECT 1 FROM changelog WHERE rowid > :changes AND {brain} = :brain AND {owner} "
        f"AND {no_index(conn, 'entity_type')} = 'memory' {own}LIMIT 1"
    )
    echoed = ""
    if seen.echo is not None:
        assert seen.echo.memory_id is not None
        echoed = (
            f"SELECT 1 FROM memories WHERE {brain} = :brain AND id = :echo AND state = 'active'"
        )
        values["echo"] = seen.echo.memory_id
    row = tuples(
        conn,
        f"SELECT ({added or 'SELECT NULL'}), ({changed}), ({echoed or 'SELECT 1'}), "
        "(SELECT coalesce(max(rowid), 0) FROM changelog)",
        values,
    )[0]
    if row[0] is not None or row[1] is not None or row[2] is None:
        return None
    # Nothing else can change the store inside this transaction: from here on only what the
    # transaction itself writes, which the changelog shows from its present end.
    marks.confirmed = here
    marks.changes = int(row[3])
    return seen


def _current(conn: Connection, scope: Scope, row: Candidate) -> Candidate | None:
    """A candidate as it is now, inside the write transaction; None when it is no longer
    active or says something else than when it was read ahead."""
    found = tuples(
        conn,
        f"SELECT importance, content FROM memories WHERE {no_index(conn, 'brain_id')} = :brain "
        "AND id = :id AND state = 'active'",
        {"brain": scope.brain_id, "id": row.id},
    )
    if not found or found[0][1] != row.content:
        return None
    return Candidate(row.id, row.user_id, row.content, float(found[0][0]), row.key, row.cosine)


def _added_earlier(
    conn: Connection, scope: Scope, user: str | None, data: MemoryIn, earlier: Earlier
) -> Candidate | None:
    """The memory an earlier write of the same transaction became, if it was added (by its
    exact content: the key `create` finds exact copies by)."""
    found = tuples(
        conn,
        "SELECT id, importance FROM memories WHERE brain_id = :brain "
        "AND coalesce(user_id, '') = :user AND coalesce(key, '') = :key "
        "AND content_hash = :hash AND state = 'active'",
        {
            "brain": scope.brain_id,
            "user": user or "",
            "key": data.key or "",
            "hash": hashlib.sha256(earlier.content.encode()).hexdigest(),
        },
    )
    if not found:
        return None
    return Candidate(
        str(found[0][0]), user, earlier.content, float(found[0][1]), data.key,
        earlier.similarity.get("cosine"),
    )  # fmt: skip


def explain_copy(
    conn: Connection, scope: Scope, memory_id: str, role: str | None = None
) -> Verdict:
    """The gate's word on an exact copy (which `create` returns as it is, unchanged): a copy
    of what this caller was just shown is an echo, anything else a duplicate."""
    policy = policy_for(conn, scope.brain_id)
    if (
        policy.write_gate
        and policy.echo_window_seconds
        and not _from_user(role)
        and memory_id in _recalled_ids(conn, scope, policy)
    ):
        return Verdict(
            "recalled",
            "echo",
            f"repeats memory {memory_id}, returned to this caller by a recent search: "
            "not new evidence, so nothing changed",
            memory_id=memory_id,
            recalled_ids=(memory_id,),
        )
    return Verdict(
        "duplicate",
        "exact_copy",
        f"memory {memory_id} already holds exactly this content",
        memory_id=memory_id,
    )


def _reinforce(
    conn: Connection,
    scope: Scope,
    row: Any,
    data: MemoryIn,
    policy: BrainPolicy,
    sims: dict[str, float],
) -> dict[str, float]:
    before = float(row.importance)
    after = policy.reinforced(before)
    now = now_ms()
    conn.execute(
        sql(
            "UPDATE memories SET importance = :after, updated_at = :now "
            "WHERE brain_id = :brain AND id = :id"
        ),
        {"after": after, "now": now, "brain": scope.brain_id, "id": row.id},
    )
    change = {"from": before, "to": after}
    entry = history.entry(
        scope,
        memory_id=row.id,
        user_id=row.user_id,
        event="UPDATE",
        old=row.content,
        new=row.content,
        detail={
            "reinforced": {"importance": change, "step": policy.reinforce_step},
            "gate": {"decision": "reinforced", "wording": data.content, "similarity": sims},
        },
        actor_id=data.actor_id,
        role=data.role,
        at=now,
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.reinforced",
        entity_type="memory",
        entity_id=row.id,
        summary=f"Reinforced by a restatement ({before:g} -> {after:g}): "
        + changelog.preview(row.content),
        user_id=row.user_id,
        actor_id=data.actor_id,
        payload={"importance": change, "gate": "near_duplicate", "similarity": sims},
        at=now,
        history=entry,
    )
    return change


def _quarantine(
    conn: Connection,
    scope: Scope,
    data: MemoryIn,
    user: str | None,
    reason: str,
    message: str,
) -> str:
    quarantine_id = new_id()
    now = now_ms()
    payload = data.model_dump(mode="json", exclude_none=True)
    if user is not None:
        payload["user_id"] = user
    conn.execute(
        sql(
            "INSERT INTO memory_quarantine (id, brain_id, user_id, content, payload, reason, "
            "explanation, status, created_by, created_at) VALUES (:id, :brain, :user, "
            ":content, :payload, :reason, :explanation, 'pending', :by, :now)"
        ),
        {
            "id": quarantine_id,
            "brain": scope.brain_id,
            "user": user,
            "content": data.content,
            "payload": json.dumps(payload),
            "reason": reason,
            "explanation": message,
            "by": data.actor_id or scope.principal,
            "now": now,
        },
    )
    changelog.record(
        conn,
        scope,
        event_type="memory.quarantined",
        entity_type="quarantine",
        entity_id=quarantine_id,
        summary=f"Quarantined ({reason}): {changelog.preview(data.content)}",
        user_id=user,
        actor_id=data.actor_id,
        payload={"reason": reason},
        at=now,
    )
    return quarantine_id


# -- the echo guard ---------------------------------------------------------------------------


def _from_user(role: str | None) -> bool:
    """A write the caller says is the user's own words (`role` user) is evidence, even when
    it repeats what was just recalled: the user said it again."""
    return role is not None and role.strip().lower() == "user"


def may_echo(role: str | None) -> bool:
    """Whether the echo guard looks at a write of this role (when the policy has a window)."""
    return not _from_user(role)


# The caller's latest recall notes within the echo window, newest first.
_RECALLS_READ = (
    "SELECT memory_ids FROM memory_recalls WHERE brain_id = :brain "
    "AND principal = :principal AND created_at >= :since "
    "ORDER BY created_at DESC LIMIT :n"
)


def _recalls_params(scope: Scope, since: int) -> dict[str, Any]:
    return {
        "brain": scope.brain_id,
        "principal": scope.principal,
        "since": since,
        "n": _RECALL_ROWS,
    }


# The echo guard's read of the caller's latest recall notes can ride on the statement that
# reads the brain's policy (core/memory/store.py): that statement does not know the policy's
# window yet, so it reads the widest a policy allows, and `screen` keeps the policy's (the
# newest notes of the window are the newest of the widest window that fall in it).
_WIDEST_WINDOW_MS = int(BOUNDS["echo_window_seconds"].high) * 1000


def recalls_column(conn: Connection) -> str:
    """A scalar subquery of the caller's latest recall notes in the widest echo window, as
    JSON: [[created_at, [memory ids]], ...], newest first (NULL for none). Its parameters
    come from `recalls_values`."""
    widest = _RECALLS_READ.replace("SELECT memory_ids", "SELECT created_at, memory_ids")
    if conn.dialect.name == "postgresql":
        return (
            "(SELECT json_agg(json_build_array(r.created_at, CAST(r.memory_ids AS json)) "
            f"ORDER BY r.created_at DESC) FROM ({widest}) AS r)"
        )
    # SQLite feeds an aggregate its subquery's rows in order (as `_tops` relies on).
    return f"(SELECT json_group_array(json_array(created_at, json(memory_ids))) FROM ({widest}))"


def recalls_values(scope: Scope) -> dict[str, Any]:
    return _recalls_params(scope, now_ms() - _WIDEST_WINDOW_MS)


@dataclass(frozen=True)
class RecallNotes:
    """What `recalls_column` read: (created_at, memory ids) of each note, newest first."""

    notes: list[tuple[int, list[Any]]]

    @classmethod
    def of(cls, value: Any) -> RecallNotes:
        """From the column's value (a string on SQLite, decoded already on PostgreSQL)."""
        rows = json.loads(value) if isinstance(value, str) else value or []
        return cls([(int(at), ids) for at, ids in rows])

    def within(self, policy: BrainPolicy) -> Recalls:
        """The notes in the policy's echo window, as `_recalled_ids` reads them."""
        since = now_ms() - policy.echo_window_seconds * 1000
        return Recalls(since, [ids for at, ids in self.notes if at >= since])


@dataclass(frozen=True)
class Recalls:
    """The recall notes `_tops` read ahead for the echo guard: the window's start then, and
    each note's memory ids, newest first."""

    since: int
    notes: list[list[Any]]


def _recalled_ids(
    conn: Connection, scope: Scope, policy: BrainPolicy, read: Recalls | None = None
) -> list[str]:
    if read is None:
        since = now_ms() - policy.echo_window_seconds * 1000
        rows = tuples(conn, _RECALLS_READ, _recalls_params(scope, since))
        notes: list[list[Any]] = [json.loads(row[0]) for row in rows]
    else:
        since, notes = read.since, read.notes
    # Notes this process has not written yet come first: they are the newest.
    seen = dict.fromkeys(
        access.pending_recalls(conn.engine, scope.brain_id, scope.principal, since)
    )
    for note in notes:
        for memory_id in note:
            seen.setdefault(str(memory_id), None)
    return list(seen)[:_RECALL_IDS]


def _echo(
    conn: Connection,
    scope: Scope,
    content: str,
    policy: BrainPolicy,
    recalls: Recalls | None = None,
) -> Verdict | None:
    recalled = _recalled_ids(conn, scope, policy, recalls)
    if not recalled:
        return None
    words = comparable_terms(content)
    if not words:
        return None
    # The ids as one bound value: 50 parameters cost PostgreSQL's client more to bind (about
    # 1 ms) than the server takes to find the rows.
    among, ids = id_in(conn, recalled)
    rows = tuples(
        conn,
        f"SELECT id, content FROM memories WHERE {no_index(conn, 'brain_id')} = :brain "
        f"AND id {among}",
        {"brain": scope.brain_id, "ids": ids},
    )
    numbers = _numbers(content)
    negated = _negated(content)
    best_id, best = "", 0.0
    union: set[str] = set()
    sources: list[str] = []
    for memory_id, recalled_text in rows:
        theirs = comparable_terms(recalled_text)
        shared = words & theirs
        if not shared or not set(numbers) <= set(_numbers(recalled_text)):
            continue
        # "Dana is not allergic to peanuts" after being shown "Dana is allergic to peanuts":
        # a correction, the opposite of an echo.
        if _negated(recalled_text) != negated:
            continue
        union |= theirs
        sources.append(memory_id)
        coverage = len(shared) / len(words)
        if coverage > best:
            best_id, best = memory_id, coverage
    if best >= _ECHO_COVERAGE:
        return Verdict(
            "recalled",
            "echo",
            f"{best:.0%} of its terms repeat memory {best_id}, returned to this caller by a "
            "recent search or context pack: not new evidence, so nothing was stored and no "
            "importance changed",
            memory_id=best_id,
            similarity={"coverage": round(best, 4)},
            recalled_ids=(best_id,),
        )
    composite = len(words & union) / len(words)
    if len(words) >= _COMPOSITE_TERMS and composite >= _COMPOSITE_COVERAGE:
        return Verdict(
            "recalled",
            "echo",
            f"{composite:.0%} of its terms repeat memories recently returned to this caller: "
            "a restatement of recalled text, so nothing was stored",
            memory_id=best_id,
            similarity={"coverage": round(composite, 4)},
            recalled_ids=tuple(sources),
        )
    return None
