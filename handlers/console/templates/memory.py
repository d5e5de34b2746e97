"""One memory: its content and fields, the edit form, state actions, its history with old and new
text side by side, and its links in both directions."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from handlers.console.html import Html, h, join, preview, seg, time_tag, with_query
from handlers.console.templates.layout import badge, empty, error_box, hidden_csrf


def _fields(base: str, m: Mapping[str, Any]) -> Html:
    def link_user(user: str | None) -> Html | str:
        if not user:
            return ""
        return h('<a href="{href}">{u}</a>', href=f"{base}/users/{seg(user)}", u=user)

    superseded: Html | str = ""
    if m.get("superseded_by"):
        superseded = h(
            '<a href="{href}">{id}</a>',
            href=f"{base}/m/{m['superseded_by']}",
            id=m["superseded_by"],
        )
    rows: list[tuple[str, object]] = [
        ("Id", h("<code>{id}</code>", id=m["id"])),
        ("Type", m["type"]),
        ("Key", m.get("key")),
        ("User", link_user(m.get("user_id"))),
        ("Agent", m.get("agent_id")),
        ("Run", m.get("run_id")),
        ("Source", m.get("source")),
        ("Importance", f"{m['importance']:.2f}"),
        ("Confidence", f"{m['confidence']:.2f}"),
        ("Created", time_tag(m["created_at"])),
        ("Updated", time_tag(m["updated_at"])),
        ("Happened", time_tag(m["occurred_at"]) if m.get("occurred_at") else None),
        ("True from", time_tag(m["valid_from"]) if m.get("valid_from") else None),
        ("True until", time_tag(m["valid_to"]) if m.get("valid_to") else None),
        ("Archived", time_tag(m["archived_at"]) if m.get("archived_at") else None),
        ("Deleted", time_tag(m["deleted_at"]) if m.get("deleted_at") else None),
        ("Superseded by", superseded or None),
        ("Recalled", f"{m['access_count']} times"),
    ]
    body = join(
        h('<tr><th scope="row">{k}</th><td>{v}</td></tr>', k=k, v=v)
        for k, v in rows
        if v not in (None, "")
    )
    return h('<table class="kv fields">{body}</table>', body=body)


def _actions(base: str, m: Mapping[str, Any], csrf: str) -> Html:
    action = f"{base}/m/{m['id']}/state"

    def button(target: str, label: str, confirm: str | None = None) -> Html:
        return h(
            '<form method="post" action="{action}" class="inline"{confirm}>{csrf}'
            '<input type="hidden" name="to" value="{target}">'
            '<button type="submit">{label}</button></form>',
            action=action,
            confirm=h(' data-confirm="{c}"', c=confirm) if confirm else "",
            csrf=hidden_csrf(csrf),
            target=target,
            label=label,
        )

    buttons = []
    if m["state"] == "active":
        buttons.append(button("archived", "Archive"))
        buttons.append(button("deleted", "Delete", "Delete this memory? It can be restored."))
    else:
        buttons.append(button("active", "Restore"))
        if m["state"] == "archived":
            buttons.append(button("deleted", "Delete", "Delete this memory? It can be restored."))
    buttons.append(h('<a class="button" href="{href}">Graph</a>', href=f"{base}/m/{m['id']}/graph"))
    return h('<div class="actions">{b}</div>', b=join(buttons, " "))


def edit_form(
    base: str,
    m: Mapping[str, Any],
    csrf: str,
    values: Mapping[str, str] | None = None,
    error: str | None = None,
) -> Html:
    current = {
        "content": m["content"],
        "title": m.get("title") or "",
        "tags": ", ".join(m["tags"]),
        "source": m.get("source") or "",
        "importance": f"{m['importance']:g}",
        "confidence": f"{m['confidence']:g}",
        "metadata": json.dumps(m["metadata"], indent=2, ensure_ascii=False),
    }
    v = {**current, **(values or {})}
    disabled = Html(" disabled") if m["state"] == "deleted" else ""
    note = (
        h('<p class="muted">Restore this memory to edit it.</p>') if m["state"] == "deleted" else ""
    )
    return h(
        '<section aria-labelledby="edit-h"><h2 id="edit-h">Edit</h2>{note}{error}'
        '<form method="post" action="{action}" class="stack" id="edit">{csrf}'
        '<fieldset{disabled}><label for="e-content">Content</label>'
        '<textarea id="e-content" name="content" rows="6" required>{content}</textarea>'
        '<div class="grid"><label>Title<input name="title" value="{title}"></label>'
        '<label>Tags<input name="tags" value="{tags}" placeholder="comma, separated"></label>'
        '<label>Source<input name="source" value="{source}"></label>'
        '<label>Importance<input name="importance" type="number" min="0" max="1" step="0.05" '
        'value="{importance}"></label>'
        '<label>Confidence<input name="confidence" type="number" min="0" max="1" step="0.05" '
        'value="{confidence}"></label></div>'
        '<label for="e-metadata">Metadata (JSON object)</label>'
        '<textarea id="e-metadata" name="metadata" rows="4" class="mono">{metadata}</textarea>'
        '<p><button type="submit" class="primary">Save changes</button></p></fieldset>'
        "</form></section>",
        note=note,
        error=error_box(error),
        action=f"{base}/m/{m['id']}/edit",
        csrf=hidden_csrf(csrf),
        disabled=disabled,
        **v,
    )


def history_table(rows: Sequence[Mapping[str, Any]], older: bool = False) -> Html:
    if not rows:
        return empty("No history recorded.")
    left_out = (
        h(
            '<p class="muted">Showing the newest {n} changes; older ones are left out '
            "(GET /v1/memories/{{id}}/history has them all).</p>",
            n=len(rows),
        )
        if older
        else ""
    )
    body = join(
        h(
            '<tr class="ev-{cls}"><td>{when}</td><td>{event}{detail}</td><td>{actor}</td>'
            '<td class="old"><span class="label">Before</span>{old}</td>'
            '<td class="new"><span class="label">After</span>{new}</td></tr>',
            cls=r["event"].lower(),
            when=time_tag(r["created_at"]),
            event=badge(r["event"]),
            detail=_detail(r.get("detail")),
            actor=r.get("actor_id") or "",
            old=_text_or_dash(r.get("old_memory")),
            new=_text_or_dash(r.get("new_memory")),
        )
        # Newest first: the change just made is the first row.
        for r in reversed(rows)
    )
    return h(
        '<div class="scroll"><table class="history"><thead><tr><th scope="col">When</th>'
        '<th scope="col">Event</th><th scope="col">By</th><th scope="col">Before</th>'
        '<th scope="col">After</th></tr></thead><tbody>{body}</tbody></table></div>{left_out}',
        body=body,
        left_out=left_out,
    )


def _detail(detail: Mapping[str, Any] | None) -> Html | str:
    if not detail:
        return ""
    if "changed" in detail:
        return h('<br><span class="muted">{c}</span>', c=", ".join(detail["changed"]))
    parts = [f"{k}: {v}" for k, v in detail.items() if isinstance(v, str | int | float)]
    return h('<br><span class="muted">{c}</span>', c="; ".join(parts)) if parts else ""


def _text_or_dash(text: str | None) -> Html:
    if text is None:
        return Html('<span class="muted">—</span>')
    return h('<div class="text">{t}</div>', t=text)


def page(
    base: str,
    m: Mapping[str, Any],
    csrf: str,
    *,
    history: Sequence[Mapping[str, Any]],
    links: Html,
    edit: Html | None = None,
    older: bool = False,
) -> Html:
    title = m.get("title") or m.get("key") or preview(m["content"], 70)
    tags = join(
        h(
            '<li class="tag"><a href="{href}">{t}</a></li>',
            href=with_query(f"{base}/memories", {"tag": t}),
            t=t,
        )
        for t in m["tags"]
    )
    state = "" if m["state"] == "active" else badge(m["state"], m["state"])
    metadata: Html | str = ""
    if m["metadata"]:
        metadata = h(
            '<h3>Metadata</h3><pre class="mono">{json}</pre>',
            json=json.dumps(m["metadata"], indent=2, ensure_ascii=False),
        )
    return h(
        '<p class="crumbs"><a href="{list}">Memories</a> /</p>'
        '<div class="head"><h1>{title} {type} {state}</h1></div>{actions}'
        '<div class="columns"><div><section aria-labelledby="content-h">'
        '<h2 id="content-h">Content</h2><div class="content">{content}</div>'
        '<ul class="tags" aria-label="Tags">{tags}</ul></section>{links}{edit}</div>'
        "<aside><h2>Fields</h2>{fields}{metadata}</aside></div>"
        '<section aria-labelledby="history-h"><h2 id="history-h">History</h2>{history}</section>',
        list=f"{base}/memories",
        title=title,
        type=badge(m["type"]),
        state=state,
        actions=_actions(base, m, csrf),
        content=m["content"],
        tags=tags,
        links=links,
        edit=edit if edit is not None else edit_form(base, m, csrf),
        fields=_fields(base, m),
        metadata=metadata,
        history=history_table(history, older),
    )
