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

Also read as a change of state: a place after a verb of where someone is ("lives in Lyon" /
"moved to Paris", "works at Google", "is from Sweden"); "used to", "no longer", "not ...
anymore" and "former" as a negation of the present; and a negation of part of a statement with
extra conjuncts ("allergic to peanuts and shellfish" / "not allergic to peanuts": the negated
side's words and values all within the other's, at most three words fewer). A possessive stays
its own word ("Sam" is not "Sam's son").

And a relation someone has one value of at a time, whatever the rest of the wording: a partner
("Alex's partner is Jo" / "Alex is dating Kim") and a diet ("Sam is vegetarian" / "Sam is now
vegan" / "Sam eats meat again"). Two present statements of the same subject (the same words
before the relation) naming two different values disagree. Only diets that exclude each other
count: "gluten-free", "halal" or "low-sodium" go with any of them, as several allergies do, and
are never read as a diet value. A past, negated or "used to" side says nothing of now, and a
"business partner" or a "vegan chef" is no relation at all. The corpus that measures this is
tests/fixtures/contradictions.txt (precision and recall in docs/benchmarks.md).
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


_NEGATIONS = frozenset(
    _words("not no never none nobody nothing nowhere neither nor cannot former formerly")
)
# Negated sides that may drop up to this many words of the other ("... and shellfish").
_EXTRA_CONJUNCTS = 3
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
        """is are was were am be been being it's that's he's she's has have costs cost
        lives live weighs weigh measures equals starts begins ends opens closes leaves departs
        arrives lasts takes due owns own runs run seats expires expire works work"""
    )
)
# Words after which a number names a thing rather than states a value of it.
_NAMING = frozenset(
    _words(
        """number no id version ticket issue order note item step chapter page section case
        task pr build release sprint phase flight service project route line episode season
        part volume lesson module account invoice room"""
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
    # Single-valued relations stated: (relation, subject's words, value), e.g.
    # ("diet", ("sam",), "vegan").
    relations: frozenset[tuple[str, tuple[str, ...], str]] = frozenset()


def _stem(word: str) -> str:
    if word.endswith("'s"):
        return word  # a possessive names someone else's thing: "Sam's son" is not Sam
    word = _SAME_AS.get(word, word)
    if len(word) > 3 and word.endswith(("ches", "shes", "xes", "sses", "oes")):
        return word[:-2]
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


# Moving somewhere says where one lives now: "moved to Denver" against "lives in Chicago".
_SAME_AS = {"moved": "live", "relocated": "live", "moving": "live", "living": "live"}
# Where someone or something is: a verb of place (present tense, or a copula) and the proper
# name after its preposition. A past "lived in" is history, not a state that can disagree.
_PLACE = re.compile(
    r"\b(?:lives?|living|moved|moving|relocated|resides|based|located|stationed|works?|"
    r"studies|study|grew\s+up|born|runs?|hosted|is|are|'s)\s+(?:in|at|from|to)\s+"
    r"(?P<place>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*)"
)
_PLACE_WORDS = re.compile(r"[a-z]+(?:'[a-z]+)?")
# A habit is a state: "drinks three cups a day", "runs 10 km every day".
_HABIT = re.compile(
    r"\b(?:every|a|each)\s+(?:day|week|month|year|morning|night|evening)\b|\b(?:daily|"
    r"weekly|usually|always|per)\b"
)
# Having moved from a place says one no longer lives there.
_MOVED_FROM = re.compile(r"\b(?:moved|relocated|emigrated)\s+(?:away\s+)?from\b")
_ORDINAL = frozenset(_words("st nd rd th"))
_USED = frozenset(_words("used"))  # "used to": a habit or state of the past
_COPULAS = frozenset(_words("is are 's"))
# Something done once has one date: "started the job in 2019" / "... in 2021".
_ONCE = re.compile(
    r"\b(?:born|founded|graduated|retired|died|(?:started|joined|began)\s+(?:the|his|her|"
    r"their|my|our))\b"
)


@lru_cache(maxsize=4096)
def read(text: str) -> Reading:
    """The content words, stated values and negation parity of a text (memoised: a detection
    pass compares each memory with several neighbours)."""
    tokens: list[tuple[str, str]] = []
    values: Counter[tuple[str, str]] = Counter()
    places: set[str] = set()
    copula_places: set[str] = set()
    for found in _PLACE.finditer(text):
        name = found.group("place")
        if name.lower().split()[0] in _MONTHS or name.lower() == _MAY:
            continue  # "is in March": a date, read below
        values["place", name.lower()] += 1
        places.update(_PLACE_WORDS.findall(name.lower()))
        verb, preposition = found.group(0).split()[:2]
        if verb.lower() in _COPULAS:
            # "Tim is from Boston": the preposition is all the statement says besides Tim.
            copula_places.add("@" + preposition.lower())
    for match in _TOKEN.finditer(text.lower()):
        kind = match.lastgroup or "word"
        tokens.append((kind, match.group()))
    words: set[str] = set(copula_places)
    negations = len(_MOVED_FROM.findall(text.lower()))
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
        elif token in _NUMBER_WORDS and i > 0 and tokens[i - 1][1] in _NAMING:
            words.add("#" + str(_NUMBER_WORDS[token]))  # "note one", "step two": which one
        elif token in _NUMBER_WORDS:
            values["number", f"{_NUMBER_WORDS[token]:g}"] += 1
        elif token in _NEGATIONS or token.endswith("n't"):
            negations += 1
        elif token in _USED and following and following[1] == "to":
            negations += 1  # "used to live in Lyon": no longer does
        elif token in places:
            pass  # read as the place's value above
        elif token in _ORDINAL and i > 0 and tokens[i - 1][0] == "num":
            pass  # "3rd": the number was read
        else:
            words.add(_stem(token))
        i += 1
    stative = any(kind == "word" and token in _STATIVE for kind, token in tokens)
    lowered = text.lower()
    stative = stative or bool(_HABIT.search(lowered) or _ONCE.search(lowered))
    return Reading(frozenset(words), values, negations % 2 == 1, stative, _relations(text))


# Diets that exclude each other (one at a time), with their other spellings. Restrictions that
# combine with any diet (gluten-free, dairy-free, halal, kosher, low-sodium) are not here: a new
# one is added to the old, like a second allergy.
_DIET_NAMES = {
    "vegan": "vegan",
    "vegetarian": "vegetarian",
    "veggie": "vegetarian",
    "pescatarian": "pescatarian",
    "pescetarian": "pescatarian",
    "flexitarian": "flexitarian",
    "pollotarian": "pollotarian",
    "fruitarian": "fruitarian",
    "omnivore": "omnivore",
    "omnivorous": "omnivore",
    "meat eater": "omnivore",
    "carnivore": "carnivore",
    "keto": "keto",
    "ketogenic": "keto",
    "paleo": "paleo",
    "mediterranean": "mediterranean",
    "atkins": "atkins",
    "whole30": "whole30",
    "low-carb": "low-carb",
    "low carb": "low-carb",
}
_DIET_WORD = "|".join(sorted((re.escape(n) for n in _DIET_NAMES), key=len, reverse=True))
_NOW_VERB = (
    r"(?:is|am|'m|are|'re|'s|has\s+been|have\s+been|'s\s+been|went|goes|turned|became|"
    r"has\s+become|has\s+gone|have\s+gone|switched\s+to\s+being)"
)
_MANNER = r"(?:(?:now|a|an|fully|strictly|totally|completely|mostly|still|again|also)\s+)*"
# "Sam is vegan", "Sam went vegetarian", "Sam is a pescatarian now"; the diet word ends the
# clause or a word that does not make it an adjective follows ("a vegan chef" is a chef).
_DIET_IS = re.compile(
    rf"\b{_NOW_VERB}\s+{_MANNER}(?P<diet>{_DIET_WORD})(?:s)?"
    r"(?=\s*(?:$|[.,;:!?)]|(?:now|again|diet|since|these|nowadays|and|but|for|after|because|"
    r"so|too|as|at|ever|full-time|last|this|in|when|while|during|ago|years?|months?)\b))",
    re.IGNORECASE,
)
# "Sam follows a keto diet", "Sam is on the paleo diet", "Sam switched to a vegan diet".
_DIET_FOLLOWS = re.compile(
    r"\b(?:follows?|following|(?:is|am|'m|are|'re|went|now)\s+on|started|starts|switched\s+to|"
    r"keeps?|sticks?\s+to|eats?)\s+(?:(?:a|an|the|strict|strictly|now|mostly)\s+)*"
    rf"(?P<diet>{_DIET_WORD})\s+(?:diet|lifestyle)\b",
    re.IGNORECASE,
)
# "Sam eats meat again", "Sam started eating meat": no diet that excludes meat.
_EATS_MEAT = re.compile(r"\b(?:eats|eat|started\s+eating|eating)\s+meat\b", re.IGNORECASE)
_NAME = r"(?-i:(?P<name>[A-Z][\w'-]*(?:\s+[A-Z][\w'-]*)*))"
_ROMANCE = r"(?:partner|wife|husband|spouse|boyfriend|girlfriend|fianc[eé]e?)"
_PARTNER = (
    # "Alex's partner is Jo", "my wife is called Kim": the possessive is the subject, so a
    # "business partner" (another word before the relation) is not read.
    re.compile(
        rf"(?:'s|\bmy|\bhis|\bher|\btheir)\s+(?:(?:new|current|longtime|long-time)\s+)?"
        rf"{_ROMANCE}\s+(?:is|'s)\s+(?:now\s+)?(?:(?:called|named)\s+)?{_NAME}",
        re.IGNORECASE,
    ),
    # "Alex is dating Kim", "Alex is married to Jo", "I'm engaged to Sam".
    re.compile(
        rf"\b(?:is|am|'m|are|'re|has\s+been|have\s+been)\s+(?:now\s+|currently\s+)?"
        r"(?:married\s+to|dating|engaged\s+to|going\s+out\s+with|in\s+a\s+relationship\s+with|"
        rf"together\s+with)\s+{_NAME}",
        re.IGNORECASE,
    ),
    # "Alex has a new girlfriend named Kim".
    re.compile(
        rf"\b(?:has|have|'ve)\s+(?:got\s+)?an?\s+(?:new\s+)?{_ROMANCE}\s+(?:called|named)\s+"
        + _NAME,
        re.IGNORECASE,
    ),
)
# Words before a relation that say nothing of whose it is.
_NOT_SUBJECT = frozenset(_words("a an the now also still currently really actually so then and"))
_FIRST_PERSON = {"my": "i", "me": "i", "i'm": "i"}
_OWNERS = {"my": "i", "his": "he", "her": "she", "their": "they"}
# A longer lead-in is a clause of its own ("after the trip Sam went vegan"): not read.
_MOST_SUBJECT_WORDS = 4


def _subject(text: str, end: int) -> tuple[str, ...]:
    words = [
        _FIRST_PERSON.get(w, w)
        for w in _PLACE_WORDS.findall(text[:end].lower())
        if w not in _NOT_SUBJECT
    ]
    return tuple(_stem(w) for w in words)


def _relations(text: str) -> frozenset[tuple[str, tuple[str, ...], str]]:
    """The single-valued relations `text` states of a subject now (see the module's doc)."""
    found: set[tuple[str, tuple[str, ...], str]] = set()

    def add(relation: str, subject: tuple[str, ...], value: str) -> None:
        if 0 < len(subject) <= _MOST_SUBJECT_WORDS:
            found.add((relation, subject, value))

    for pattern in (_DIET_IS, _DIET_FOLLOWS):
        for match in pattern.finditer(text):
            diet = _DIET_NAMES[match.group("diet").lower()]
            add("diet", _subject(text, match.start()), diet)
    for match in _EATS_MEAT.finditer(text):
        add("diet", _subject(text, match.start()), "omnivore")
    for pattern in _PARTNER:
        for match in pattern.finditer(text):
            subject = _subject(text, match.start())
            owner = match.group(0).split()[0].lower()
            if owner in _OWNERS:
                subject = (*subject, _OWNERS[owner])  # "my wife is Kim": I am the subject
            add("partner", subject, match.group("name").lower())
    return frozenset(found)


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


def says_enough(text: str) -> bool:
    """Whether `text` has enough content words to contradict anything: `compare` flags no pair
    with a side that has fewer, so a caller can skip reading partners for it."""
    reading = read(text)
    return len(reading.words) >= _MIN_WORDS or bool(reading.relations)


def _jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    union = a | b
    return len(a & b) / len(union) if union else 0.0


def compare(first: str, second: str, *, facts: bool = False) -> Finding | None:
    """A contradiction between two texts, or None (the usual answer). A changed value counts
    only between statements of state (or when one of them is a fact, which states by
    definition: `facts`); a negation counts between any two."""
    a, b = read(first), read(second)
    changed_relation = _relation_differs(a, b)
    if changed_relation is not None:
        return changed_relation
    if min(len(a.words), len(b.words)) < _MIN_WORDS:
        return None
    shared = _jaccard(a.words, b.words)
    if a.negated != b.negated and _negates_part(a, b):
        detail: dict[str, object] = {"shared_words": round(shared, 3)}
        if a.words != b.words:
            detail["partial"] = True
        return Finding("negation_differs", detail)
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
        # A place is read only after a verb of where someone is: a state by construction.
        if not facts and not (a.stative and b.stative) and changed != ["place"]:
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


def _relation_differs(a: Reading, b: Reading) -> Finding | None:
    """Both state one value of the same single-valued relation of the same subject, and the
    values differ ("Sam is vegetarian" / "Sam is now vegan"). A negated side (parity, as for
    the other rules) states no value now ("Sam is no longer vegetarian")."""
    if a.negated or b.negated or not a.relations or not b.relations:
        return None
    for relation, subject in sorted({(r, s) for r, s, _ in a.relations}):
        left = {v for r, s, v in a.relations if (r, s) == (relation, subject)}
        right = {v for r, s, v in b.relations if (r, s) == (relation, subject)}
        if len(left) != 1 or len(right) != 1 or left == right:
            continue
        (x,), (y,) = left, right
        if set(x.split()) <= set(y.split()) or set(y.split()) <= set(x.split()):
            continue  # "Jo" and "Jo Smith": one person named twice
        return Finding(
            f"{relation}_differs",
            {"kind": relation, "subject": " ".join(subject), "a": [x], "b": [y]},
        )
    return None


def _negates_part(a: Reading, b: Reading) -> bool:
    """One side negates part of the other: its words and values all within the other's, which
    says at most a few things more ("allergic to peanuts and shellfish")."""
    small, large = sorted((a, b), key=lambda r: (len(r.words), sum(r.values.values())))
    if len(small.words) < _MIN_WORDS:
        return False
    if not small.words <= large.words or len(large.words) - len(small.words) > _EXTRA_CONJUNCTS:
        return False
    return all(large.values[item] >= n for item, n in small.values.items())


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
