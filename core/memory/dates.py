"""Dates and relative time phrases in text, resolved against an anchor time.

"I went there yesterday", said on 8 May 2023, is about 7 May 2023; "last summer", asked now, is
last June to August. A memory's content is read against the memory's own time (when it
happened, else when it was saved), a query against the moment it asks about (its `as_of`, else
now). Each phrase becomes a span of whole days [start, end) in epoch milliseconds (UTC), so
"in May 2023" and "yesterday" said on 1 June 2023 meet on the same scale.

A conservative reader, no model: what it cannot place ("before she moved", "recently") it does
not guess a span for; `carries_time` still tells that the text speaks of time, which is what
ranks memories that carry a date for a "when" question.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache

_DAY_MS = 86_400_000


def _words(text: str) -> list[str]:
    return text.split()


MONTH_NAMES = _words(
    "january february march april may june july august september october november december"
)

_MONTHS = {name: i + 1 for i, name in enumerate(MONTH_NAMES)}
_MONTHS.update({name[:3]: n for name, n in _MONTHS.items()})
_MONTHS["sept"] = 9
_WEEKDAYS = {
    name: i
    for i, name in enumerate(_words("monday tuesday wednesday thursday friday saturday sunday"))
}
_WEEKDAYS.update({name[:3]: n for name, n in list(_WEEKDAYS.items())})
_WEEKDAYS.update({"tues": 1, "thur": 3, "thurs": 3})
_NUMBERS = {
    w: i
    for i, w in enumerate(
        _words("zero one two three four five six seven eight nine ten eleven twelve")
    )
}
_NUMBERS.update({"a": 1, "an": 1, "couple": 2, "few": 3, "several": 3, "fifteen": 15})
_NUMBERS.update({"twenty": 20, "thirty": 30})
_SEASONS = {"spring": (3, 5), "summer": (6, 8), "fall": (9, 11), "autumn": (9, 11)}
_SEASONS["winter"] = (12, 14)  # December to February of the next year

_MONTH = r"(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_WEEKDAY = r"(?P<weekday>" + "|".join(sorted(_WEEKDAYS, key=len, reverse=True)) + r")\.?"
_COUNT = r"(?P<count>\d{1,3}|" + "|".join(sorted(_NUMBERS, key=len, reverse=True)) + r")"
_UNIT = r"(?P<unit>day|week|weekend|month|year)s?"

_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, re.IGNORECASE))
    for name, pattern in (
        ("iso", r"\b(?P<year>\d{4})-(?P<mon>\d{2})-(?P<day>\d{2})\b"),
        (
            "day_month",
            r"\b(?P<day>\d{1,2})(?:st|nd|rd|th)?\s+(?:of\s+)?"
            + _MONTH
            + r"(?:,?\s+(?P<year>\d{4}))?\b",
        ),
        (
            "month_day",
            r"\b" + _MONTH + r"\s+(?P<day>\d{1,2})(?:st|nd|rd|th)?(?:,?\s+(?P<year>\d{4}))?\b",
        ),
        ("month_year", r"\b" + _MONTH + r",?\s+(?P<year>\d{4})\b"),
        (
            "in_month",
            r"\b(?:in|during|since|by|until|this|last|next|early|late|mid)\s+" + _MONTH + r"\b",
        ),
        ("year", r"\b(?:in|since|during|by|of|until|from)\s+(?P<year>(?:19|20)\d{2})\b"),
        ("ago", r"\b" + _COUNT + r"\s+(?:of\s+)?" + _UNIT + r"\s+ago\b"),
        ("yesterday", r"\b(?:yesterday|last\s+night)\b"),
        ("today", r"\b(?:today|tonight|this\s+(?:morning|afternoon|evening))\b"),
        ("tomorrow", r"\btomorrow\b"),
        ("rel_weekday", r"\b(?P<rel>last|next|this|past|on)\s+" + _WEEKDAY + r"(?![a-z])"),
        ("rel_unit", r"\b(?P<rel>last|next|this|past)\s+(?P<unit>week|weekend|month|year)\b"),
        (
            "season",
            r"\b(?P<rel>last|next|this|the)\s+(?P<season>spring|summer|fall|autumn|winter)\b",
        ),
    )
)
# Speaks of time without naming a span: still an answer to "when" or "how long".
_TIME_WORDS = re.compile(
    r"\b(?:recently|lately|the\s+other\s+day|ago|since|for\s+(?:\d+|a|an|"
    + "|".join(_NUMBERS)
    + r")\s+(?:days?|weeks?|months?|years?)|years?\s+old|anniversary|birthday|"
    r"weekend|morning|evening|night)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Span:
    """Whole days [start, end) in epoch ms, and the words that named them."""

    start: int
    end: int
    phrase: str

    def overlaps(self, start: int, end: int) -> bool:
        return self.start < end and start < self.end


def _ms(day: date) -> int:
    return int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp() * 1000)


def _days(first: date, count: int = 1) -> tuple[int, int]:
    start = _ms(first)
    return start, start + count * _DAY_MS


def _month_span(year: int, month: int, months: int = 1) -> tuple[int, int]:
    end_year, end_month = divmod(month - 1 + months, 12)
    return _ms(date(year, month, 1)), _ms(date(year + end_year, end_month + 1, 1))


def _count(word: str) -> int:
    return int(word) if word.isdigit() else _NUMBERS.get(word.lower(), 1)


def _month_year(anchor: date, month: int, year: str | None, *, past: bool) -> int:
    """The year of a month named without one: the latest such month not after the anchor
    (people mostly speak of what happened), or the next when `past` is off."""
    if year:
        return int(year)
    if past:
        return anchor.year if month <= anchor.month else anchor.year - 1
    return anchor.year


def _resolve(name: str, m: re.Match[str], anchor: date) -> tuple[int, int] | None:
    groups = m.groupdict()
    if name == "iso":
        return _days(date(int(groups["year"]), int(groups["mon"]), int(groups["day"])))
    if name in ("day_month", "month_day"):
        month = _MONTHS[groups["month"].lower()]
        year = _month_year(anchor, month, groups.get("year"), past=True)
        return _days(date(year, month, int(groups["day"])))
    if name == "month_year":
        return _month_span(int(groups["year"]), _MONTHS[groups["month"].lower()])
    if name == "in_month":
        month = _MONTHS[groups["month"].lower()]
        word = m.group(0).split()[0].lower()
        if word == "next":
            year = anchor.year if month > anchor.month else anchor.year + 1
        elif word == "last":
            year = anchor.year if month < anchor.month else anchor.year - 1
        else:
            year = _month_year(anchor, month, None, past=word != "by")
        return _month_span(year, month)
    if name == "year":
        return _ms(date(int(groups["year"]), 1, 1)), _ms(date(int(groups["year"]) + 1, 1, 1))
    if name == "yesterday":
        return _days(anchor - timedelta(days=1))
    if name == "today":
        return _days(anchor)
    if name == "tomorrow":
        return _days(anchor + timedelta(days=1))
    if name == "ago":
        return _ago(anchor, _count(groups["count"]), groups["unit"].lower())
    if name == "rel_weekday":
        return _weekday(anchor, _WEEKDAYS[groups["weekday"].lower()], groups["rel"].lower())
    if name == "rel_unit":
        return _relative_unit(anchor, groups["rel"].lower(), groups["unit"].lower())
    if name == "season":
        return _season(anchor, groups["rel"].lower(), groups["season"].lower())
    return None


def _ago(anchor: date, n: int, unit: str) -> tuple[int, int]:
    if unit == "day":
        return _days(anchor - timedelta(days=n))
    if unit in ("week", "weekend"):
        return _days(anchor - timedelta(days=7 * n + anchor.weekday()), 7)
    if unit == "month":
        months = anchor.year * 12 + anchor.month - 1 - n
        return _month_span(months // 12, months % 12 + 1)
    return _ms(date(anchor.year - n, 1, 1)), _ms(date(anchor.year - n + 1, 1, 1))


def _weekday(anchor: date, weekday: int, rel: str) -> tuple[int, int]:
    back = (anchor.weekday() - weekday) % 7 or 7
    if rel == "next":
        return _days(anchor + timedelta(days=(weekday - anchor.weekday()) % 7 or 7))
    if rel == "this" and weekday >= anchor.weekday():
        return _days(anchor + timedelta(days=weekday - anchor.weekday()))
    return _days(anchor - timedelta(days=back))


def _relative_unit(anchor: date, rel: str, unit: str) -> tuple[int, int]:
    step = {"last": -1, "past": -1, "this": 0, "next": 1}[rel]
    if unit == "week":
        monday = anchor - timedelta(days=anchor.weekday()) + timedelta(weeks=step)
        return _days(monday, 7)
    if unit == "weekend":
        saturday = anchor - timedelta(days=anchor.weekday()) + timedelta(days=5, weeks=step)
        if step < 0 and anchor.weekday() >= 5:
            saturday = anchor - timedelta(days=anchor.weekday() - 5 + 7)
        return _days(saturday, 2)
    if unit == "month":
        months = anchor.year * 12 + anchor.month - 1 + step
        return _month_span(months // 12, months % 12 + 1)
    year = anchor.year + step
    return _ms(date(year, 1, 1)), _ms(date(year + 1, 1, 1))


def _season(anchor: date, rel: str, season: str) -> tuple[int, int]:
    first, last = _SEASONS[season]
    # The season whose months the anchor is in or is past this year ("this"/"the"); winter
    # runs December to February, so January and February belong to last year's winter.
    current = anchor.year - (1 if season == "winter" and anchor.month <= 2 else 0)
    ended = anchor.year * 12 + anchor.month > current * 12 + last
    if rel == "last":
        year = current if ended else current - 1
    elif rel == "next":
        year = current + 1 if ended or anchor.month >= first else current
    else:
        year = current
    return _month_span(year, first, last - first + 1)


@lru_cache(maxsize=8192)
def _spans(text: str, anchor_day: date) -> tuple[Span, ...]:
    found: list[Span] = []
    taken: list[tuple[int, int]] = []
    for name, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            if any(m.start() < end and start < m.end() for start, end in taken):
                continue  # "8 May 2023" is one date, not also "May 2023"
            try:
                span = _resolve(name, m, anchor_day)
            except (ValueError, OverflowError):
                continue  # "31 February", a year out of range: not a date
            if span is not None:
                taken.append((m.start(), m.end()))
                found.append(Span(span[0], span[1], m.group(0)))
    return tuple(sorted(found, key=lambda s: s.start))


def spans(text: str, anchor_ms: int) -> tuple[Span, ...]:
    """Every date or relative phrase in `text` that names a span, resolved against the anchor
    (epoch ms), in time order."""
    anchor = datetime.fromtimestamp(anchor_ms / 1000, tz=UTC).date()
    return _spans(text, anchor)


def carries_time(text: str) -> bool:
    """The text speaks of when or how long, whether or not a span can be named."""
    return bool(_TIME_WORDS.search(text)) or any(p.search(text) for _, p in _PATTERNS)
