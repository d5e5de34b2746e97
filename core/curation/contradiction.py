"""Do two statements about the same subject disagree on a number, a date or a negation?

A cheap, conservative heuristic (no model): each text is read as its content words plus the
values it states (numbers, dates, times, weekdays, months) and its negation parity. Two texts
contradict when their content words are nearly the same set and, between them, either the
values of one kind changed (the same count of them, a different value) or exactly one of them
is negated. Values are normalised first ("3pm" is "15:00" on a 12-hour dial, "three" is 3,
"March 5, 2024" is "2024-03-05"), so saying the same thing another way is not a contradiction.
A rewording that changes words is never flagged either, nor are two events ("lunch with Bob on
Monday" / "... on Friday": a changed value counts only between statements of state, unless one
side is a fact), nor a number that names a thing ("ticket 42"). Each of those would be a false
positive, which costs a person's review, where a miss only leaves a pair for a human to notice.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache

# Content words two texts must (nearly) share to be about the same thing.
_MIN_SHARED = 0.8
_MIN_WORDS = 2


def _words(text: str) -> list[str]:
    return text.split()


_NEGATIONS = frozenset(_words("not no never none nobody nothing nowhere neither nor cannot"))
# Function words: they carry no subject, and auxiliaries come and go with negation
# ("likes" / "does not like").
_STOP = frozenset(
    _words(
        """a an the and or but if of to in on at by for with from as into onto about over under
        this that these those there here it its it's he she they them his her their we our you
        your i me my mine is are was were am be been being do does did done has have had having
        will would shall should can could may might must also just still now then so very
        really too any some all each every per than which who whom whose what when where why
        how anymore longer"""
    )
)
_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        _words(
            "zero one two three four five six seven eight nine ten eleven twelve thirteen "
            "fourteen fifteen sixteen seventeen eighteen nineteen twenty"
        )
    )
}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70})
_NUMBER_WORDS.update({"eighty": 80, "ninety": 90, "hundred": 100, "dozen": 12})
_MONTHS = {
    name: i + 1
    for i, name in enumerate(
        _words(
            "january february march april may june july august september october november december"
        )
    )
}
_MONTHS.update({name[:3]: number for name, number in _MONTHS.items()})
_MONTHS["sept"] = 9
_MAY = "may"
del _MONTHS[_MAY]  # "may" is far more often the verb; "May 5" is still read below
_WEEKDAYS = {
    d: i for i, d in enumerate(_words("monday tuesday wednesday thursday friday saturday sunday"))
}

_STATIVE = frozenset(
    _words(
        """is are was were am be been being it's that's he's she's has have had costs cost
        lives live weighs weigh measures equals starts begins ends opens closes leaves departs
        arrives lasts takes due"""
    )
)
# Words after which a number names a thing rather than states a value of it.
_NAMING = frozenset(
    _words(
        """number no id version ticket issue order note item step chapter page section case
        task pr build release sprint phase flight service project route line episode season
        part volume lesson module account invoice"""
    )
)

_TOKEN = re.compile(
    r"""
    (?P<ident>\#\d[\w-]*)
    | (?P<iso>\d{4}-\d{2}-\d{2})
    | (?P<time>\d{1,2}(?::\d{2})?\s*(?:a\.?m\.?|p\.?m\.?)(?![a-z])|\d{1,2}:\d{2})
    | (?P<num>[$€£]?\d(?:[\d,]*\d)?(?:\.\d+)?%?)
    | (?P<word>[a-z]+(?:'[a-z]+)?)
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class Reading:
    words: frozenset[str]
    values: Counter[tuple[str, str]]  # (kind, normalised value) -> count
    negated: bool
    # Says what something is or has ("is", "has", "costs", "opens"), not what happened
    # ("bought", "met"): two events on two dates are two events, not a contradiction.
    stative: bool


def _stem(word: str) -> str:
    if word.endswith("'s"):
        word = word[:-2]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _time(text: str) -> str:
    text = text.replace(".", "").replace(" ", "")
    suffix = text[-2:] if text[-2:] in ("am", "pm") else ""
    clock = text[: -len(suffix)] if suffix else text
    hours, _, minutes = clock.partition(":")
    # On a 12-hour dial: "3:00" may well mean 3pm, and a false alarm costs more than a miss.
    return f"{int(hours) % 12:02d}:{int(minutes or 0):02d}"


def _number(text: str) -> str:
    cleaned = text.strip("$€£%").replace(",", "")
    value = float(cleaned)
    kind = "%" if text.endswith("%") else ""
    return f"{value:g}{kind}"


@lru_cache(maxsize=4096)
def read(text: str) -> Reading:
    """The content words, stated values and negation parity of a text (memoised: a detection
    pass compares each memory with several neighbours)."""
    tokens: list[tuple[str, str]] = []
    for match in _TOKEN.finditer(text.lower()):
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group()))
    words: set[str] = set()
    values: Counter[tuple[str, str]] = Counter()
    negations = 0
    i = 0
    while i < len(tokens):
        kind, token = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else None
        if kind == "iso":
            values["date", token] += 1
        elif kind == "time":
            values["time", _time(token)] += 1
        elif kind == "ident" or (kind == "num" and i > 0 and tokens[i - 1][1] in _NAMING):
            # "ticket 42", "#42": a number that names which thing, so part of the subject
            words.add("#" + token.lstrip("#"))
        elif kind == "num":
            # "5 March" / "5 March 2024": a day before a month name is part of a date
            if (
                following
                and following[1] in _MONTHS
                and "." not in token
                and len(_digits(token)) <= 2  # and int() never meets a 5,000-digit run
                and int(_digits(token)) <= 31
            ):
                i = _date(tokens, i + 1, values, day=int(_digits(token)))
                continue
            values["number", _number(token)] += 1
        elif token in _STOP and not (token == _MAY and following and following[0] == "num"):
            pass  # the commonest case first: most words of a sentence are function words
        elif token in _MONTHS or token == _MAY:
            i = _date(tokens, i, values)
            continue
        elif token in _WEEKDAYS:
            values["weekday", str(_WEEKDAYS[token])] += 1
        elif token in _NUMBER_WORDS:
            values["number", f"{_NUMBER_WORDS[token]:g}"] += 1
        elif token in _NEGATIONS or token.endswith("n't"):
            negations += 1
        else:
            words.add(_stem(token))
        i += 1
    stative = any(kind == "word" and token in _STATIVE for kind, token in tokens)
    return Reading(frozenset(words), values, negations % 2 == 1, stative)


def _digits(token: str) -> str:
    return token.strip("$€£%").replace(",", "")


def _month(token: str) -> int | None:
    return _MONTHS.get(token.rstrip("."))


def _date(
    tokens: list[tuple[str, str]], start: int, values: Counter[tuple[str, str]], day: int = 0
) -> int:
    """Reads "March", "March 5", "March 5, 2024", "March 2024" (or, with `day`, "5 March
    2024") from the month at `start`; returns the index of the first token after the date."""
    month = _month(tokens[start][1]) or 5  # only "may" reaches here without a month entry
    used = start + 1
    year = 0

    def number_at(at: int) -> int | None:
        if at >= len(tokens) or tokens[at][0] != "num":
            return None
        token = tokens[at][1]
        # A day or a year has at most 4 digits; int() refuses a run of over 4,300 of them.
        return int(token) if token.isdigit() and len(token) <= 4 else None

    if not day:
        found = number_at(used)
        if found is not None and 1 <= found <= 31:
            day, used = found, used + 1
    found = number_at(used)
    if found is not None and 1000 <= found <= 9999:
        year, used = found, used + 1
    values["date", f"{year or '?'}-{month:02d}-{f'{day:02d}' if day else '?'}"] += 1
    return used


@dataclass(frozen=True)
class Finding:
    reason: str
    detail: dict[str, object]


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def compare(first: str, second: str, *, facts: bool = False) -> Finding | None:
    """A contradiction between two texts, or None (the usual answer). A changed value counts
    only between statements of state (or when one of them is a fact, which states by
    definition: `facts`); a negation counts between any two."""
    a, b = read(first), read(second)
    if min(len(a.words), len(b.words)) < _MIN_WORDS:
        return None
    shared = _jaccard(a.words, b.words)
    if shared < _MIN_SHARED:
        return None
    changed = sorted(
        kind
        for kind in {k for k, _ in a.values} | {k for k, _ in b.values}
        if not _same(kind, _of_kind(a, kind), _of_kind(b, kind))
    )
    if changed:
        # A changed value, not an added one: as many values of that kind on each side.
        if any(sum(_of_kind(a, k).values()) != sum(_of_kind(b, k).values()) for k in changed):
            return None
        if a.negated != b.negated:
            return None  # two differences at once: more likely two different statements
        if not facts and not (a.stative and b.stative):
            return None
        kind = changed[0]
        return Finding(
            f"{kind}_differs",
            {
                "kind": kind,
                "a": sorted(v for k, v in a.values if k == kind),
                "b": sorted(v for k, v in b.values if k == kind),
                "shared_words": round(shared, 3),
            },
        )
    if a.negated != b.negated:
        return Finding("negation_differs", {"shared_words": round(shared, 3)})
    return None


def _same(kind: str, a: Counter[str], b: Counter[str]) -> bool:
    if kind != "date":
        return a == b
    # A date missing its year or day agrees with any date it could be ("March 5" and
    # "2024-03-05").
    left, right = list(a.elements()), list(b.elements())
    if len(left) != len(right):
        return False
    for value in left:
        match = next((other for other in right if _compatible(value, other)), None)
        if match is None:
            return False
        right.remove(match)
    return True


def _compatible(a: str, b: str) -> bool:
    return all(x == y or "?" in (x, y) for x, y in zip(a.split("-"), b.split("-"), strict=True))


def _of_kind(reading: Reading, kind: str) -> Counter[str]:
    return Counter({v: n for (k, v), n in reading.values.items() if k == kind})
