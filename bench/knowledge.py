"""Knowledge updates: facts that change over time, asked now and as of an earlier date.

200 synthetic users, each with six things that change two or three times over the years (home
city, employer, partner, diet, allergy, a number), each value saved when it was learned, with
the date it became true (`valid_from`), among 30 other notes of theirs. Then, through
`POST /v1/search` (limit 5):
- asked now ("where does Ava live?"), does the current value rank first?
- asked `as_of` a date between two values, does the value true then rank first?
Twice: once as keyed facts (`type: fact`, one key per attribute: a newer value supersedes the
older one and closes its valid time), once as plain notes with no key (nothing supersedes
anything; valid time and ranking alone must tell the values apart). Issue 18's goal: >= 95% on
both questions.

    .venv/bin/python -m bench.knowledge [--users 200] [--seed 7]
"""

from __future__ import annotations

import argparse
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
DIETS = _words("vegetarian vegan pescatarian keto paleo Mediterranean gluten-free halal")
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


def timelines(users: int, seed: int) -> list[Timeline]:
    rng = random.Random(seed)
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
            out.append(Timeline(f"user-{u:03d}", name, attribute, values, tuple(starts)))
    return out


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def run(users: int, seed: int, keyed: bool) -> dict[str, Any]:
    os.environ.setdefault("MNEMO_LOG_LEVEL", "WARNING")
    from core.identity.keys import create_key
    from core.kernel.config import settings_from_env
    from core.kernel.db.engine import get_engine, transaction
    from core.kernel.db.migrations import ensure_schema
    from tests.lambda_client import LambdaClient

    folder = tempfile.mkdtemp(prefix="mnemo-knowledge-")
    env = {**os.environ, "MNEMO_DATABASE_URL": f"sqlite:///{folder}/ku.db"}
    settings = settings_from_env(env)
    engine = get_engine(settings.database_url)
    ensure_schema(engine)
    with transaction(engine) as conn:
        key = create_key(conn, "knowledge").secret
    client = LambdaClient(settings, key=key)

    lines = timelines(users, seed)
    # Learned in the order they became true, each user's six stories interleaved.
    saves = sorted(
        ((t.starts[i], t, i) for t in lines for i in range(len(t.values))),
        key=lambda item: item[0],
    )
    ids: dict[tuple[str, str, int], str] = {}
    conflicts = 0
    started = time.perf_counter()
    rng = random.Random(seed + 1)
    for user in sorted({(t.user, t.name) for t in lines}):
        notes = [{"content": text, "user_id": user[0]} for text in fillers(user[1], 30, rng)]
        reply = client.post("/v1/memories/batch", json_body={"memories": notes})
        assert reply.status == 201, reply.body
    for moment, line, i in saves:
        body: dict[str, Any] = {
            "content": line.attribute.statement.format(name=line.name, value=line.values[i]),
            "user_id": line.user,
            "valid_from": _iso(moment),
        }
        if keyed:
            body |= {"type": "fact", "key": line.attribute.key}
        reply = client.post("/v1/memories", json_body=body)
        assert reply.status in (200, 201), reply.body
        ids[line.user, line.attribute.key, i] = reply.json()["id"]
        conflicts += len(reply.json().get("conflicts") or [])
    load_seconds = time.perf_counter() - started

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
    for line in lines:
        question = line.attribute.question.format(name=line.name)
        last = len(line.values) - 1
        if first(question, line.user, None) == ids[line.user, line.attribute.key, last]:
            now_right += 1
        elif len(misses) < 5:
            misses.append(f"now: {question} ({line.user}): {'; '.join(top)}")
        for i in range(last):
            # Halfway between this value's start and the next one's.
            moment = line.starts[i] + (line.starts[i + 1] - line.starts[i]) / 2
            then_asked += 1
            if first(question, line.user, moment) == ids[line.user, line.attribute.key, i]:
                then_right += 1
            elif len(misses) < 10:
                misses.append(
                    f"as of {moment:%Y-%m-%d}: {question} ({line.user}): {'; '.join(top)}"
                )
    return {
        "stored as": "keyed facts" if keyed else "notes, no key",
        "memories": len(saves) + 30 * users,
        "conflicts recorded on write": conflicts,
        "asked now": len(lines),
        "current value first": round(now_right / len(lines), 4),
        "asked as_of": then_asked,
        "value then first": round(then_right / then_asked, 4),
        "load s": round(load_seconds, 1),
        "misses": misses,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    reports = [run(args.users, args.seed, keyed) for keyed in (True, False)]
    print(f"Knowledge updates: {args.users} users, seed {args.seed}, SQLite, builtin embedder")
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
