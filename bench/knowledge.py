"""Knowledge updates: facts that change over time, asked now and as of an earlier date.

200 synthetic users, each with six things that change two or three times over the years (home
city, employer, partner, diet, allergies, a number), each value saved when it was learned, with
the date it became true (`valid_from`), among 30 other notes of theirs. Then, through
`POST /v1/search` (limit 5):
- asked now ("where does Ava live?"), does a value true now rank first?
- asked `as_of` a date between two changes, does a value true then rank first?
Twice: once as keyed facts (`type: fact`, one key per attribute: a newer value supersedes the
older one and closes its valid time), once as plain notes with no key (nothing supersedes
anything; valid time, the contradictions caught on write and ranking alone must tell the values
apart). Issue 18's goal: >= 95% on both questions.

Someone has one home, employer, partner, diet and cat count at a time, but allergies add up: a
new one ("Ava is allergic to eggs") is one more, and one ends only when it is said to ("Ava is
no longer allergic to peanuts"). So each allergy change either adds an allergy or, as often,
says one has ended and another begun; a question is answered right by any allergy true at the
moment asked about, never by an ended one (and keyed, each allergy is its own key).

    .venv/bin/python -m bench.knowledge [--users 200] [--seed 7] [--postgres]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any


def _words(text: str, sep: str | None = None) -> list[str]:
    return text.split(sep)


NAMES = _words(
    "Ava Ben Cleo Dev Eli Fay Gus Hana Ivo Jade Kai Lena Milo Nora Omar Pia Quin Rosa Sami Tess "
    "Uma Vic Wren Xavi Yara Zane"
)
CITIES = _words(
    "Lyon Paris Berlin Munich Lisbon Porto Madrid Seville Oslo Bergen Dublin Cork Vienna Graz "
    "Prague Brno Milan Turin Zurich Basel"
)
EMPLOYERS = _words(
    "Acme Globex Initech Umbrella Hooli Stark Wayne Wonka Cyberdyne Soylent Tyrell Aperture "
    "Vandelay Pied Piper Massive Dynamic"
)
PARTNERS = _words("Alex Sam Robin Jordan Casey Morgan Taylor Jamie Riley Avery Quinn Drew")
# Diets that exclude each other: "gluten-free" or "halal" go with any of these (one follows a
# halal keto diet), so a change between them would be two diets at once, not a change.
DIETS = _words("vegetarian vegan pescatarian keto paleo Mediterranean flexitarian low-carb")
ALLERGENS = _words("peanuts shellfish pollen penicillin latex dust eggs soy sesame")


# What else users say, so the attributes' words are as rare as in a real brain (the full-text
# index leaves out words found in over 10% of a big index's memories).
_DID = _words(
    "baked bought painted visited watched read cooked fixed planted photographed sketched "
    "borrowed repaired cleaned organised shared finished started lost found"
)
_THINGS = _words(
    "bread bicycle mural museum documentary novel curry fence tulips sunset portrait ladder "
    "laptop garage bookshelf playlist puzzle scarf umbrella kite lantern violin telescope quilt "
    "canoe teapot notebook garden poster camera"
)
_WHEN = _words(
    "on Saturday|last weekend|after dinner|before breakfast|with a friend|for the neighbours|"
    "in the rain|during the holidays|for fun|at the market",
    "|",
)


def fillers(name: str, count: int, rng: random.Random) -> list[str]:
    return [
        f"{name} {rng.choice(_DID)} a {rng.choice(_THINGS)} {rng.choice(_WHEN)}"
        for _ in range(count)
    ]


@dataclass(frozen=True)
class Attribute:
    key: str
    values: tuple[str, ...]
    statement: str  # {name}, {value}
    question: str  # {name}


ATTRIBUTES = (
    Attribute("home city", tuple(CITIES), "{name} lives in {value}", "where does {name} live"),
    Attribute(
        "employer", tuple(EMPLOYERS), "{name} works at {value}", "where does {name} work now"
    ),
    Attribute(
        "partner", tuple(PARTNERS), "{name}'s partner is {value}", "who is {name}'s partner"
    ),
    Attribute(
        "diet", tuple(DIETS), "{name} follows a {value} diet", "what diet does {name} follow"
    ),
    Attribute(
        "allergy", tuple(ALLERGENS), "{name} is allergic to {value}", "what is {name} allergic to"
    ),
    Attribute(
        "cats", tuple(str(n) for n in range(1, 9)), "{name} has {value} cats",
        "how many cats does {name} have",
    ),
)  # fmt: skip


@dataclass(frozen=True)
class Timeline:
    user: str
    name: str
    attribute: Attribute
    values: tuple[str, ...]
    starts: tuple[datetime, ...]  # when each value became true, ascending
    # Allergies: whether change i (1-based) ended the allergy before it (else added one).
    ended: tuple[bool, ...] = ()

    @property
    def additive(self) -> bool:
        return self.attribute.key == "allergy"

    def saves(self) -> list[tuple[datetime, str, str, str]]:
        """(valid from, content, key, tag) of each statement, in the order they became true;
        `tag` names what a statement says: "i" value i holds, "-i" value i has ended."""
        out = []
        for i, (value, start) in enumerate(zip(self.values, self.starts, strict=True)):
            key = f"{self.attribute.key} {value}" if self.additive else self.attribute.key
            if self.additive and i > 0 and self.ended[i - 1]:
                previous = self.values[i - 1]
                out.append(
                    (start, f"{self.name} is no longer allergic to {previous}",
                     f"{self.attribute.key} {previous}", f"-{i - 1}")
                )  # fmt: skip
            text = self.attribute.statement.format(name=self.name, value=value)
            out.append((start, text, key, str(i)))
        return out

    def true_at(self, moment: datetime | None) -> set[str]:
        """The tags of the statements true at `moment` (None: now)."""
        held: set[str] = set()
        for i, start in enumerate(self.starts):
            if moment is not None and start > moment:
                break
            if not self.additive:
                held = set()
            elif i > 0 and self.ended[i - 1]:
                held.discard(str(i - 1))
            held.add(str(i))
        return held


def timelines(users: int, seed: int) -> list[Timeline]:
    rng = random.Random(seed)
    endings = random.Random(seed + 2)
    out = []
    for u in range(users):
        name = NAMES[u % len(NAMES)]
        for attribute in ATTRIBUTES:
            count = rng.choice((2, 3))
            values = tuple(rng.sample(attribute.values, count))
            first = datetime(2019, 1, 1, tzinfo=UTC) + timedelta(days=rng.randrange(0, 700))
            starts = [first]
            for _ in range(count - 1):
                starts.append(starts[-1] + timedelta(days=rng.randrange(120, 900)))
            ended: tuple[bool, ...] = ()
            if attribute.key == "allergy":
                # From their own stream, so every other draw is as it was before allergies
                # could end.
                ended = tuple(endings.random() < 0.5 for _ in range(count - 1))
            out.append(Timeline(f"user-{u:03d}", name, attribute, values, tuple(starts), ended))
    return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(users: int, seed: int, keyed: bool, url: str | None = None) -> dict[str, Any]:
    """One pass on the database at `url` (a new SQLite file when None)."""
    os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")
    from core.identity.keys import create_key
    from core.kernel.config import settings_from_env
    from core.kernel.db.engine import get_engine, transaction, tuples
    from core.kernel.db.migrations import ensure_schema
    from tests.lambda_client import LambdaClient

    if url is None:
        url = f"sqlite:///{tempfile.mkdtemp(prefix='mnemo-knowledge-')}/ku.db"
    env = {**os.environ, "MNEMO_DATABASE_URL": url}
    settings = settings_from_env(env)
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "knowledge").secret
    client = LambdaClient(settings, key=key)

    lines = timelines(users, seed)
    # Learned in the order they became true, each user's six stories interleaved.
    saves = sorted(
        ((moment, n, line, text, key, tag)
         for n, line in enumerate(lines)
         for moment, text, key, tag in line.saves()),
        key=lambda item: (item[0], item[1]),
    )  # fmt: skip
    ids: dict[tuple[int, str], str] = {}
    conflicts = 0
    started = time.perf_counter()
    rng = random.Random(seed + 1)
    for user in sorted({(t.user, t.name) for t in lines}):
        notes = [{"content": text, "user_id": user[0]} for text in fillers(user[1], 30, rng)]
        reply = client.post("/v1/memories/batch", json_body={"memories": notes})
        assert reply.status == 201, reply.body
    for moment, n, line, text, key, tag in saves:
        body: dict[str, Any] = {"content": text, "user_id": line.user, "valid_from": _iso(moment)}
        if keyed:
            body |= {"type": "fact", "key": key}
        reply = client.post("/v1/memories", json_body=body)
        assert reply.status in (200, 201), reply.body
        ids[n, tag] = reply.json()["id"]
        conflicts += len(reply.json().get("conflicts") or [])
    load_seconds = time.perf_counter() - started
    # Which pairs were flagged, by their texts and owner (ids differ run to run), digested: two
    # runs that flagged the same pairs show the same digest.
    with transaction(engine, write=False) as conn:
        flagged = tuples(
            conn,
            "SELECT a.user_id, a.content, b.content, c.kind, c.reason "
            "FROM memory_conflict_resolutions c JOIN memories a ON a.id = c.a_id "
            "JOIN memories b ON b.id = c.b_id",
            {},
        )
    pairs = sorted("\x1f".join(map(str, (u, *sorted((x, y)), k, r))) for u, x, y, k, r in flagged)
    pairs_digest = hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:12]

    top: list[str] = []

    def first(question: str, user: str, as_of: datetime | None) -> str | None:
        body: dict[str, Any] = {"query": question, "user_id": user, "limit": 5}
        if as_of is not None:
            body["as_of"] = _iso(as_of)
        reply = client.post("/v1/search", json_body=body)
        assert reply.status == 200, reply.body
        results = reply.json()["results"]
        top[:] = [f"{r['memory']['content']} ({r['score']})" for r in results[:3]]
        return results[0]["memory"]["id"] if results else None

    now_right = then_right = then_asked = 0
    misses: list[str] = []
    by_attribute: dict[str, list[int]] = {a.key: [0, 0, 0, 0] for a in ATTRIBUTES}
    for n, line in enumerate(lines):
        question = line.attribute.question.format(name=line.name)
        tally = by_attribute[line.attribute.key]
        tally[1] += 1
        if first(question, line.user, None) in {ids[n, tag] for tag in line.true_at(None)}:
            now_right += 1
            tally[0] += 1
        elif len(misses) < 5:
            misses.append(f"now: {question} ({line.user}): {'; '.join(top)}")
        for i in range(len(line.values) - 1):
            # Halfway between this value's start and the next one's.
            moment = line.starts[i] + (line.starts[i + 1] - line.starts[i]) / 2
            then_asked += 1
            tally[3] += 1
            if first(question, line.user, moment) in {ids[n, t] for t in line.true_at(moment)}:
                then_right += 1
                tally[2] += 1
            elif len(misses) < 10:
                misses.append(
                    f"as of {moment:%Y-%m-%d}: {question} ({line.user}): {'; '.join(top)}"
                )
    from core.memory import access

    access.flush()  # the searches' access counts, while the database is there
    return {
        "stored as": "keyed facts" if keyed else "notes, no key",
        "memories": len(saves) + 30 * users,
        "conflicts recorded on write": conflicts,
        "flagged pairs (digest)": f"{len(pairs)} ({pairs_digest})",
        "asked now": len(lines),
        "current value first": round(now_right / len(lines), 4),
        "asked as_of": then_asked,
        "value then first": round(then_right / then_asked, 4),
        "load s": round(load_seconds, 1),
        "by attribute (now, as_of)": ", ".join(
            f"{key} {r / max(a, 1):.3f}/{tr / max(ta, 1):.3f}"
            for key, (r, a, tr, ta) in by_attribute.items()
        ),
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="on PostgreSQL (a throwaway server, a fresh database each pass) instead of SQLite",
    )
    args = parser.parse_args()
    if args.postgres:
        from bench.common import postgres

        with postgres() as server:
            reports = [
                run(args.users, args.seed, keyed, server.new_database()) for keyed in (True, False)
            ]
    else:
        reports = [run(args.users, args.seed, keyed) for keyed in (True, False)]
    store = "PostgreSQL" if args.postgres else "SQLite"
    print(f"Knowledge updates: {args.users} users, seed {args.seed}, {store}, builtin embedder")
    columns = [k for k in reports[0] if k != "misses"]
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for report in reports:
        print("| " + " | ".join(str(report[c]) for c in columns) + " |")
    for report in reports:
        for miss in report["misses"]:
            print(f"- miss ({report['stored as']}): {miss}")


if __name__ == "__main__":
    main()
