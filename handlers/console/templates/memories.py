"""The memories list: search box, filters, results (with the score explained on demand), paging;
and the form to add a memory."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from handlers.console.html import Html, h, join, preview, time_tag, with_query
from handlers.console.templates.layout import badge, empty, error_box, hidden_csrf

TYPES = ("note", "fact", "journal")
STATES = ("active", "archived", "deleted", "all")
MODES = (("hybrid", "Hybrid"), ("lexical", "Words only"), ("semantic", "Meaning only"))


@dataclass(frozen=True)
class ListQuery:
    """The list page's query string, as typed (validated by the core models)."""

    q: str = ""
    mode: str = "hybrid"
    type: str = ""
    tag: str = ""
    user: str = ""
    state: str = "active"
    after: str = ""
    before: str = ""
    as_of: str = ""  # valid time: the memories true on that day
    cursor: str = ""

    @classmethod
    def of(cls, params: Mapping[str, str]) -> ListQuery:
        fields = cls.__dataclass_fields__
        return cls(**{k: params[k].strip() for k in fields if k in params})

    def link(self, base: str, **changes: str) -> str:
        values: dict[str, object] = {**asdict(self), **changes}
        if values.get("mode") == "hybrid":
            values["mode"] = ""
        if values.get("state") == "active":
            values["state"] = ""
        return with_query(f"{base}/memories", values)

    @property
    def filtered(self) -> bool:
        return any((self.type, self.tag, self.user, self.after, self.before, self.as_of)) or (
            self.state != "active"
        )


def _options(choices: Sequence[tuple[str, str]], selected: str) -> Html:
    return join(
        h(
            '<option value="{value}"{sel}>{label}</option>',
            value=value,
            sel=Html(" selected") if value == selected else "",
            label=label,
        )
        for value, label in choices
    )


def filter_form(base: str, q: ListQuery) -> Html:
    return h(
        '<form method="get" action="{action}" class="search" role="search">'
        '<div class="searchrow"><label class="sr" for="q">Search memories</label>'
        '<input id="q" name="q" type="search" value="{q}" placeholder="Search memories (press /)"'
        ' autocomplete="off" data-hotkey="/">'
        '<select name="mode" aria-label="Search mode">{modes}</select>'
        '<button type="submit" class="primary">Search</button></div>'
        '<details class="filters"{open}><summary>Filters</summary><div class="grid">'
        '<label>Type<select name="type">{types}</select></label>'
        '<label>Tag<input name="tag" value="{tag}" placeholder="e.g. preferences"></label>'
        '<label>User<input name="user" value="{user}" placeholder="user id"></label>'
        '<label>State<select name="state">{states}</select></label>'
        '<label>Created from<input name="after" type="date" value="{after}"></label>'
        '<label>Created before<input name="before" type="date" value="{before}"></label>'
        '<label>True as of<input name="as_of" type="date" value="{as_of}" '
        'title="The memories that were true at the end of that day, superseded facts '
        'included"></label>'
        "</div>"
        '<p><button type="submit">Apply filters</button> <a href="{clear}">Clear all</a></p>'
        "</details></form>",
        action=f"{base}/memories",
        q=q.q,
        modes=_options(MODES, q.mode),
        open=Html(" open") if q.filtered else "",
        types=_options([("", "Any"), *((t, t) for t in TYPES)], q.type),
        tag=q.tag,
        user=q.user,
        states=_options([(s, s) for s in STATES], q.state),
        after=q.after,
        before=q.before,
        as_of=q.as_of,
        clear=f"{base}/memories",
    )


def memory_card(base: str, memory: Mapping[str, Any], extra: Html | None = None) -> Html:
    named = memory.get("title") or memory.get("key")
    title = named or preview(memory["content"], 90)
    # Untitled memories are named by their text: repeat it only when the name cut it short.
    text = preview(memory["content"], 280) if named or title != memory["content"] else ""
    tags = join(h('<li class="tag">{t}</li>', t=t) for t in memory["tags"])
    state = "" if memory["state"] == "active" else badge(memory["state"], memory["state"])
    return h(
        '<li class="card"><a class="title" href="{href}">{title}</a> {type} {state}'
        '<p class="text">{text}</p><p class="meta">{user}{when}</p>'
        '<ul class="tags" aria-label="Tags">{tags}</ul>{extra}</li>',
        href=f"{base}/m/{memory['id']}",
        title=title,
        type=badge(memory["type"]),
        state=state,
        text=text,
        user=h("user {u} · ", u=memory["user_id"]) if memory.get("user_id") else "",
        when=time_tag(memory["created_at"]),
        tags=tags,
        extra=extra or "",
    )


_EXPLAIN_ROWS = (
    ("lexical", "Words matched (weighted z-score)"),
    ("semantic", "Meaning matched (weighted z-score)"),
    ("context", "Borrowed from neighbouring memories"),
    ("relevance", "All evidence, on [0, 1)"),
    ("importance", "Importance"),
    ("confidence", "Confidence"),
    ("trust", "Source trust"),
    ("recency", "Recency"),
    ("superseded", "Superseded"),
    ("score", "Final score"),
)


def explain(factors: Mapping[str, Any]) -> Html:
    rows = join(
        h(
            '<tr><th scope="row">{label}</th><td>{value}</td></tr>',
            label=label,
            value=_number(factors.get(name)),
        )
        for name, label in _EXPLAIN_ROWS
        if name in factors
    )
    return h(
        '<details class="explain"><summary>Why this score</summary>'
        '<table class="kv">{rows}</table></details>',
        rows=rows,
    )


def _number(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.3f}"
    return "" if value is None else str(value)


def list_page(
    base: str,
    q: ListQuery,
    *,
    results: Sequence[Mapping[str, Any]],
    hits: Sequence[Mapping[str, Any]] | None,
    next_cursor: str | None,
    total: int | None,
    error: str | None,
    total_cap: int = 1000,
) -> Html:
    """`results` for a plain list; `hits` ({memory, score, explain}) for a search."""
    if hits is not None:
        items = join(
            memory_card(
                base,
                hit["memory"],
                h(
                    '<p class="score">score <strong>{s}</strong></p>{explain}',
                    s=f"{hit['score']:.3f}",
                    explain=explain(hit.get("explain") or {}),
                ),
            )
            for hit in hits
        )
        count = len(hits)
        heading = h("Results for “{q}”", q=q.q)
    else:
        items = join(memory_card(base, m) for m in results)
        count = len(results)
        shown = "" if total is None else f"{total_cap:,}+" if total > total_cap else f"{total:,}"
        heading = h("Memories{total}", total=f" ({shown})" if shown else "")
    if count:
        listing = h('<ol class="cards">{items}</ol>', items=items)
    elif error:
        listing = Html("")
    elif q.q:
        listing = empty(
            "Nothing matches this search. Try other words, another mode, or fewer filters.",
            h('<a href="{href}">Clear the search</a>', href=f"{base}/memories"),
        )
    elif q.filtered or q.cursor:
        listing = empty(
            "No memories match these filters.",
            h('<a href="{href}">Clear the filters</a>', href=f"{base}/memories"),
        )
    else:
        listing = empty(
            "This brain has no memories yet. Agents save them through the API or MCP; "
            "you can also add one here.",
            h('<a class="button" href="{href}">Add a memory</a>', href=f"{base}/new"),
        )
    paging = []
    if q.cursor:
        paging.append(h('<a href="{href}">First page</a>', href=q.link(base, cursor="")))
    if next_cursor:
        paging.append(
            h('<a href="{href}" rel="next">Next page →</a>', href=q.link(base, cursor=next_cursor))
        )
    return h(
        '<div class="head"><h1>{heading}</h1><a class="button" href="{new}">Add a memory</a>'
        "</div>{form}{error}{listing}"
        '<nav class="paging" aria-label="Pages">{paging}</nav>',
        heading=heading,
        new=f"{base}/new",
        form=filter_form(base, q),
        error=error_box(error),
        listing=listing,
        paging=join(paging, " "),
    )


def new_form(base: str, csrf: str, values: Mapping[str, str], error: str | None) -> Html:
    return h(
        "<h1>Add a memory</h1>{error}"
        '<form method="post" action="{action}" class="stack">{csrf}'
        '<label for="content">Content</label>'
        '<textarea id="content" name="content" rows="6" required>{content}</textarea>'
        '<div class="grid">'
        '<label>Type<select name="type">{types}</select></label>'
        '<label>Title<input name="title" value="{title}"></label>'
        '<label>Key (facts)<input name="key" value="{key}"></label>'
        '<label>User<input name="user_id" value="{user_id}"></label>'
        '<label>Tags<input name="tags" value="{tags}" placeholder="comma, separated"></label>'
        '<label>True from<input name="valid_from" type="date" value="{valid_from}"></label>'
        "</div>"
        '<p><button type="submit" class="primary">Save</button> '
        '<a href="{cancel}">Cancel</a></p></form>',
        error=error_box(error),
        action=f"{base}/new",
        csrf=hidden_csrf(csrf),
        content=values.get("content", ""),
        types=_options([(t, t) for t in TYPES], values.get("type", "note")),
        title=values.get("title", ""),
        key=values.get("key", ""),
        valid_from=values.get("valid_from", ""),
        user_id=values.get("user_id", ""),
        tags=values.get("tags", ""),
        cancel=f"{base}/memories",
    )
